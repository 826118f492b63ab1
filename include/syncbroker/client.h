/*
 * syncbroker/client.h - libsyncclient: a Syncbroker client (docs/protocol.md, docs/client.md).
 *
 * The library subscribes to the broker's PUB socket, takes a consistent snapshot over the
 * service socket, keeps a local cache of (table, key) -> {version, row} current, detects
 * gaps (seq, or tseq per table) and repairs them with `since` or a new snapshot, reports
 * online/offline transitions, marks the client's own writes, and announces presence.
 *
 * Threading: an sb_client is used from one thread. All I/O happens inside sb_client_poll(),
 * and every callback runs from inside it (never from another thread, never re-entrantly).
 * Callbacks must not call sb_client_destroy(); they may call every other function.
 *
 * Ownership rule unless a comment says otherwise: pointers passed in either direction are
 * borrowed for the duration of the call; whoever keeps data copies it. Rows are packed
 * msgpack maps exactly as the broker sent them (render them with sb_client_json()).
 *
 * Errors: functions return 0 or a negative enum sb_err (shared with plugin.h; sb_strerror()
 * gives the text).
 */
#ifndef SYNCBROKER_CLIENT_H
#define SYNCBROKER_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <syncbroker/types.h> /* enum sb_err, sb_strerror(), sb_op, sb_log_level */

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define SB_CLIENT_API __attribute__((visibility("default")))
#else
#define SB_CLIENT_API
#endif

typedef struct sb_client sb_client; /* opaque; created by sb_client_new() */

/* One change event, as delivered to on_event. Every pointer is valid during the callback. */
typedef struct sb_client_event {
    uint64_t seq;           /* position in the broker's stream */
    uint64_t tseq;          /* position among this table's events */
    const char *epoch;      /* broker run id */
    const char *table;      /* e.g. "public.bookings" */
    const char *const *key; /* nkey primary key parts (text form); NULL for truncate */
    uint32_t nkey;          /* 1 for a simple key, more for a composite one, 0 for truncate */
    sb_op op;               /* SB_OP_INSERT, _UPDATE, _DELETE or _TRUNCATE */
    uint64_t version;       /* entity version after the change */
    const char *origin;     /* writer's syncbroker.origin, or NULL */
    bool own;               /* origin equals this client's client_id */
    int64_t ts_ms;          /* ms since the Unix epoch */
    uint32_t n;             /* database changes coalesced into this event */
    const void *row;        /* packed msgpack map of the row; NULL for delete/truncate */
    size_t row_len;         /* bytes at row */
    const void *body;       /* the whole event as received (packed msgpack map) */
    size_t body_len;        /* bytes at body */
} sb_client_event;

/* One editor of an entity, as delivered to on_presence. */
typedef struct sb_client_editor {
    const char *client; /* client id of the editor */
    const char *state;  /* "editing" or "viewing" */
    int64_t since_ms;   /* ms since the Unix epoch */
} sb_client_editor;

/* A cached row, as handed to sb_client_foreach() callbacks. */
typedef struct sb_client_row {
    const char *table;
    const char *const *key; /* nkey parts */
    uint32_t nkey;
    uint64_t version;
    const void *row; /* packed msgpack map; NULL when the client runs with no_cache */
    size_t row_len;
} sb_client_row;

/* Callbacks (each may be NULL). ud is sb_client_config.ud. */
typedef struct sb_client_callbacks {
    /* A change event newer than the cached version was applied (the cache already holds it).
     * Events dropped by the version check are not reported. */
    void (*on_event)(const sb_client_event *ev, void *ud);
    /* The cache was replaced by a snapshot (also the first one): re-read it. */
    void (*on_reset)(void *ud);
    /* Once per transition: true after a (re)synchronisation, false after 3 heartbeat
     * intervals without any message or when a resynchronisation waits out a back-off
     * (docs/client.md). The first report is whichever happens first. */
    void (*on_online)(bool online, void *ud);
    /* The full editor list of one entity (n == 0: nobody edits it any more). */
    void (*on_presence)(const char *table, const char *const *key, uint32_t nkey,
                        const sb_client_editor *editors, size_t n, void *ud);
    /* Diagnostics: retries, broker errors, dropped malformed messages. */
    void (*on_log)(sb_log_level level, const char *msg, void *ud);
} sb_client_callbacks;

/* Configuration. Zero means "default" for every number, so `sb_client_config c = {0};`
 * plus the two endpoints is a valid configuration. Strings are copied by sb_client_new(). */
typedef struct sb_client_config {
    const char *pub_endpoint;     /* broker PUB, e.g. "tcp://127.0.0.1:5556" (required) */
    const char *service_endpoint; /* broker ROUTER, e.g. "tcp://127.0.0.1:5557" (required) */
    const char *client_id;        /* origin marker and presence id; NULL: "client-<pid>-<random>" */
    const char *const *tables;    /* tables to follow ("public.bookings"); NULL/0: every table */
    size_t ntables;
    uint32_t heartbeat_ms;       /* until the first heartbeat says the broker's (default 1000) */
    uint32_t request_timeout_ms; /* per service request try (default 3000) */
    uint32_t request_retries;    /* tries per request before giving up (default 3) */
    uint32_t presence_ttl_ms;    /* presence entry lifetime; refreshed every ttl/3 (6000) */
    bool no_cache;               /* keep versions only, not rows (rows still reach on_event) */
    bool no_snapshot;            /* stream only: never ask for a snapshot (a resync loses events) */
    void *zmq_context; /* a context from zmq_ctx_new() to share (borrowed); NULL: own one */
    sb_client_callbacks cb;
    void *ud; /* handed to every callback */
    /* CURVE (docs/security.md): both set, or both NULL for plain. Z85 strings (40 characters);
     * the client's public key is derived from its secret key. sb_client_config_load_keys()
     * fills them from key files. Applied to both sockets, and to every reopened one. */
    const char *curve_server_key; /* the broker's public key */
    const char *curve_secret_key; /* this client's secret key */
} sb_client_config;

/* Storage for the keys sb_client_config_load_keys() reads (caller-owned, e.g. on the stack;
 * it must outlive the config's use; wipe it afterwards if it should not linger in memory). */
#define SB_CLIENT_KEY_LEN 40 /* a CURVE key in Z85 */
typedef struct sb_client_keys {
    char server_key[SB_CLIENT_KEY_LEN + 1]; /* the broker's public key */
    char secret_key[SB_CLIENT_KEY_LEN + 1]; /* this client's secret key */
} sb_client_keys;

/* Read the broker's public key file (its NAME.pub) and this client's secret key file (NAME.key,
 * refused unless private to its owner) into keys, and point cfg->curve_server_key and
 * cfg->curve_secret_key at them. Key file format: docs/security.md, "Key files". On error
 * cfg is unchanged, err (may be NULL, errlen bytes) names the file and the problem, and the
 * result is SB_ERR_INVAL (a path missing), SB_ERR_IO (unreadable) or SB_ERR_CONFIG (not a
 * key file, or a secret key file open to group or others). */
SB_CLIENT_API int sb_client_config_load_keys(sb_client_config *cfg, sb_client_keys *keys,
                                             const char *server_pub_path,
                                             const char *secret_key_path, char *err, size_t errlen);

/* Create a client (no I/O yet). *out is owned by the caller: release it with
 * sb_client_destroy(). SB_ERR_INVAL for a missing endpoint, an empty table name, or CURVE keys
 * that are not keys or not a pair of both (logged through cb.on_log); SB_ERR_UNSUPPORTED for
 * CURVE keys when libzmq has no CURVE. */
SB_CLIENT_API int sb_client_new(const sb_client_config *cfg, sb_client **out);

/* Connect and subscribe (data topics, then "@hb" last). Synchronisation then proceeds inside
 * sb_client_poll(): first heartbeat, snapshot, buffered events, stream. */
SB_CLIENT_API int sb_client_start(sb_client *c);

/* Do all pending I/O and timers, waiting up to timeout_ms (-1: until something happens,
 * 0: do not wait). Returns 0, or a negative sb_err when a synchronisation attempt failed:
 * SB_ERR_BUSY (broker unavailable or not answering after request_retries tries; the client
 * tries again at the next heartbeat), SB_ERR_NOTFOUND (unknown table), SB_ERR_INVAL (the
 * broker refused the request), SB_ERR_DENIED (beyond this client's rights), SB_ERR_ZMQ,
 * SB_ERR_NOMEM. The client stays usable. */
SB_CLIENT_API int sb_client_poll(sb_client *c, int timeout_ms);

/* For an application's own poll loop: the file descriptors to watch for reading (ZMQ_FD:
 * edge-triggered, so call sb_client_poll(c, 0) whenever one is readable AND when
 * sb_client_timeout_ms() elapses). Fills up to *n fds and sets *n. Ask again after every
 * sb_client_poll(): a retried request reopens a socket. */
SB_CLIENT_API int sb_client_fds(sb_client *c, int *fds, size_t *n);

/* Milliseconds until sb_client_poll() has timer work to do (-1: none). */
SB_CLIENT_API int sb_client_timeout_ms(sb_client *c);

/* True once synchronised and not offline since. */
SB_CLIENT_API bool sb_client_online(const sb_client *c);

/* The client id in use (owned by the client). */
SB_CLIENT_API const char *sb_client_id(const sb_client *c);

/* Look up a cached row. *row and *row_len (each may be NULL) point into the cache and stay
 * valid until the next sb_client_poll() or sb_client_destroy(); *row is NULL with no_cache.
 * SB_ERR_NOTFOUND when the entity is absent or deleted. */
SB_CLIENT_API int sb_client_get(sb_client *c, const char *table, const char *const *key,
                                uint32_t nkey, const void **row, size_t *row_len,
                                uint64_t *version);

/* Call fn for every cached row of `table` (NULL: every table), in no particular order, until
 * fn returns non-zero. The row is borrowed for the call; fn must not change the cache (no
 * sb_client_poll() inside). Returns the number of rows visited. */
SB_CLIENT_API size_t sb_client_foreach(sb_client *c, const char *table,
                                       int (*fn)(const sb_client_row *row, void *ud), void *ud);

/* Announce that this client edits an entity ("editing"), refreshed every presence_ttl_ms/3
 * from sb_client_poll() until sb_client_end_edit(). Beginning an edit already begun just
 * refreshes it. Needs sb_client_start(). */
SB_CLIENT_API int sb_client_begin_edit(sb_client *c, const char *table, const char *const *key,
                                       uint32_t nkey);

/* Stop editing: announces "left". SB_ERR_NOTFOUND when no such edit was begun. */
SB_CLIENT_API int sb_client_end_edit(sb_client *c, const char *table, const char *const *key,
                                     uint32_t nkey);

/* Close sockets (linger 0), free everything. NULL is ignored. */
SB_CLIENT_API void sb_client_destroy(sb_client *c);

/* ---- one-shot snapshot (sync-snapshot) -------------------------------------------------- */

/* Called once per snapshot row; return non-zero to stop early. The row is borrowed. */
typedef int (*sb_client_snapshot_fn)(const sb_client_row *row, void *ud);

/* Ask `service_endpoint` for a snapshot of `tables` (NULL/0: all) with Lazy Pirate retries
 * (timeout_ms per try, `retries` tries; 0 = defaults), call fn per row, and fill *seq (may
 * be NULL) with the snapshot's seq. zmq_context may be NULL. On error, `err` (may be NULL,
 * errlen bytes) gets a one-line message. */
SB_CLIENT_API int sb_client_fetch_snapshot(void *zmq_context, const char *service_endpoint,
                                           const char *const *tables, size_t ntables,
                                           uint32_t timeout_ms, uint32_t retries,
                                           sb_client_snapshot_fn fn, void *ud, uint64_t *seq,
                                           char *err, size_t errlen);

/* The same, configured as a client: cfg's service_endpoint, tables, request_timeout_ms,
 * request_retries, zmq_context and CURVE keys are used (the rest is ignored). Invalid CURVE
 * keys: SB_ERR_INVAL or SB_ERR_UNSUPPORTED as for sb_client_new(), with the reason in err. */
SB_CLIENT_API int sb_client_fetch_snapshot_cfg(const sb_client_config *cfg,
                                               sb_client_snapshot_fn fn, void *ud, uint64_t *seq,
                                               char *err, size_t errlen);

/* ---- helpers ------------------------------------------------------------------------- */

/* Render packed msgpack (one object, validated first) as JSON: maps as objects (non-string
 * keys are rendered and quoted, cut to 1 KiB), arrays, ints, floats (non-finite as null), bool, nil
 * as null, str escaped (control characters as \u00XX, invalid UTF-8 as U+FFFD), bin as a hex
 * string, ext as null. *json is NUL-terminated, malloc'd and owned by the caller (free()).
 * SB_ERR_INVAL for bytes that are not exactly one msgpack object. */
SB_CLIENT_API int sb_client_json(const void *msgpack, size_t len, char **json);

/* Render a row as the JSON object {"table":..,"key":str or [..],"version":..,"row":{..}}
 * (what sync-snapshot prints). *json is malloc'd and owned by the caller (free()). */
SB_CLIENT_API int sb_client_row_json(const sb_client_row *row, char **json);

/* Name of an operation ("insert", ...; "?" when unknown). Static string. */
SB_CLIENT_API const char *sb_client_op_name(sb_op op);

#ifdef __cplusplus
}
#endif

#endif /* SYNCBROKER_CLIENT_H */
