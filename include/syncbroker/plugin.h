/*
 * syncbroker/plugin.h - the Syncbroker plugin ABI, version 1.2.
 *
 * A plugin is a shared object that exports one function, sb_plugin_entry(), returning a
 * pointer to a constant sb_plugin descriptor. The broker checks the descriptor before it
 * calls any other plugin code: ABI major equal to SB_PLUGIN_ABI_MAJOR, descriptor size at
 * least the v1 size, a known kind, and every mandatory callback non-NULL.
 *
 * The broker hands every plugin instance a host API table (sb_host_api) and an opaque
 * handle (sb_host). Plugins call the broker only through that table and link against
 * nothing of the broker: no symbol of the daemon is ever resolved by the dynamic linker.
 *
 * Threading: the broker runs one event loop on one thread. Every callback below runs on
 * that thread and every host API function must be called from it. Plugins never start
 * threads for I/O; they register file descriptors, ZeroMQ sockets and timers instead.
 *
 * Ownership rule unless a comment says otherwise: pointers passed in either direction are
 * borrowed for the duration of the call; whoever keeps data copies it.
 *
 * This header depends on the C standard library only (no libpq, libzmq or msgpack types).
 * Compatible growth: new members are appended to sb_plugin and sb_host_api, the minor
 * number goes up, and `size` tells the other side which members exist.
 */
#ifndef SYNCBROKER_PLUGIN_H
#define SYNCBROKER_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h> /* snprintf, for SB_CONFIG_ERROR */
#include <syncbroker/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SB_PLUGIN_ABI_MAJOR 1
#define SB_PLUGIN_ABI_MINOR 2

/* Name of the one exported symbol; see SB_PLUGIN_DECLARE below. */
#define SB_PLUGIN_ENTRY_SYMBOL "sb_plugin_entry"

/* I/O interest and readiness bits for watch_fd / watch_zsock. */
#define SB_IO_READ 0x1u
#define SB_IO_WRITE 0x2u
#define SB_IO_ERROR 0x4u /* revents only: error or hang-up on a plain fd */

/* Opaque handles owned by the broker. */
typedef struct sb_host sb_host;   /* one per plugin instance, valid from create to destroy */
typedef struct sb_watch sb_watch; /* an fd or socket registered on the loop */
typedef struct sb_timer sb_timer; /* a one-shot or repeating timer */

typedef void (*sb_io_fn)(void *ud, unsigned revents);
typedef void (*sb_timer_fn)(void *ud);

/* ---------------------------------------------------------------------------------------
 * Options: each plugin declares the keys its config section accepts. The broker refuses
 * an unknown key, a missing required key or a value of the wrong type, naming the config
 * file, line and key, before the plugin is created.
 */
typedef enum sb_opt_type {
    SB_OPT_STRING = 1,
    SB_OPT_INT = 2, /* decimal integer within [min, max] */
    SB_OPT_BOOL = 3 /* true|false|yes|no|on|off|1|0 */
} sb_opt_type;

typedef struct sb_option_spec {
    const char *name;          /* key in the plugin's section; NULL ends the array */
    sb_opt_type type;          /* how the value is checked and converted */
    const char *default_value; /* used when the key is absent; NULL = required */
    int64_t min, max;          /* SB_OPT_INT bounds (inclusive) */
    const char *help;          /* one line for --check and the docs */
} sb_option_spec;

/* Resolved option values, one per spec entry and in spec order. */
typedef struct sb_option_value {
    const char *str; /* the text as written (or the default); owned by the broker */
    int64_t num;     /* SB_OPT_INT value */
    bool flag;       /* SB_OPT_BOOL value */
    bool given;      /* false when the default was used */
} sb_option_value;

/* ---------------------------------------------------------------------------------------
 * Data exchanged between sources, the core and transports.
 */
/* One captured database change, without the row (rows are fetched when published). */
typedef struct sb_change {
    const char *table; /* exactly as configured in [database] tables, e.g. "public.bookings" */
    sb_key key;
    sb_op op;
    uint64_t version;   /* entity version after this change */
    const char *origin; /* writer's syncbroker.origin, or NULL */
    int64_t ts_ms;      /* change time, ms since the Unix epoch */
} sb_change;

/* The current state of one entity, as read by a source. */
typedef struct sb_row {
    const char *table;
    sb_key key;
    uint64_t version;   /* version read together with the row; 0 if never captured */
    const void *row;    /* packed msgpack map column -> typed value; NULL: row absent */
    size_t row_len;     /* bytes at row */
    const char *origin; /* origin of the newest captured change, or NULL when unknown */
} sb_row;

/* A message the core publishes: topic and msgpack body, both encoded once by the core. */
typedef enum sb_msg_kind {
    SB_MSG_EVENT = 1,     /* change event, topic "<table>/<key>" */
    SB_MSG_HEARTBEAT = 2, /* topic "@hb" */
    SB_MSG_PRESENCE = 3   /* topic "@presence/<table>/<key>" */
} sb_msg_kind;

typedef struct sb_message {
    sb_msg_kind kind;
    uint64_t seq;      /* stream position (heartbeat: last seq published) */
    const char *topic; /* not NUL-terminated on the wire; topic_len bytes */
    size_t topic_len;
    const void *body; /* packed msgpack map */
    size_t body_len;
} sb_message;

/* Presence announcement from a client, forwarded by a transport. */
typedef struct sb_presence {
    const char *client; /* client id */
    const char *table;
    sb_key key;
    const char *state; /* "editing", "viewing" or "left" */
    uint32_t ttl_ms;   /* entry expires after this long without a refresh */
} sb_presence;

/* Counters for the `stats` request. */
typedef struct sb_stats {
    uint64_t changes_in;   /* changes received from the source */
    uint64_t events_out;   /* change events published */
    uint64_t coalesced;    /* changes merged into another event or dropped by version */
    uint64_t snapshots;    /* snapshots served */
    uint64_t pending;      /* entities waiting for a debounce window or a row fetch */
    int64_t source_lag_ms; /* receive time - change time of the newest batch; -1 if none */
    uint64_t seq;          /* last seq published */
} sb_stats;

/* Snapshot rows delivered to a transport. Called with batches of rows (n > 0), then once
 * with done = true and status (0, or an sb_err when the snapshot failed). */
typedef void (*sb_rows_fn)(void *ud, const sb_row *rows, size_t n, bool done, int status);

/* One retained message replayed for `since`, in seq order. */
typedef void (*sb_replay_fn)(void *ud, const sb_message *m);

/* ---------------------------------------------------------------------------------------
 * Host API: what the broker offers a plugin. Handed to create(); valid until destroy().
 * Check `size` (offsetof the member + its size) before using members newer than v1.0.
 */
typedef struct sb_host_api {
    uint32_t size; /* sizeof(sb_host_api) as compiled into the broker */
    uint16_t abi_major;
    uint16_t abi_minor;

    /* --- every plugin ------------------------------------------------------------ */

    /* Log a line prefixed with the plugin's section, e.g. "[source.main]". */
    void (*log)(sb_host *h, sb_log_level level, const char *fmt, ...) SB_PRINTF(3, 4);

    /* Watch a plain file descriptor (e.g. PQsocket) for SB_IO_READ/SB_IO_WRITE. The
     * callback gets the ready bits (SB_IO_ERROR on error/hang-up). *out is owned by the
     * broker; release it with unwatch(). Level-triggered. */
    int (*watch_fd)(sb_host *h, int fd, unsigned events, sb_io_fn fn, void *ud, sb_watch **out);

    /* Same for a ZeroMQ socket created in zmq_context(). */
    int (*watch_zsock)(sb_host *h, void *zsock, unsigned events, sb_io_fn fn, void *ud,
                       sb_watch **out);

    /* Change the interest bits of a watch (0 pauses it). */
    int (*watch_set)(sb_watch *w, unsigned events);

    /* Remove and free a watch. Safe inside its own callback. NULL is ignored. */
    void (*unwatch)(sb_watch *w);

    /* Start a timer: first run after delay_ms, then every repeat_ms (0 = one-shot; a
     * one-shot timer frees itself after its callback returns, so *out is then invalid).
     * *out may be NULL for a one-shot the caller never cancels. */
    int (*timer_start)(sb_host *h, uint64_t delay_ms, uint64_t repeat_ms, sb_timer_fn fn, void *ud,
                       sb_timer **out);

    /* Cancel and free a timer that has not fired (one-shot) or is repeating. NULL is ignored. */
    void (*timer_stop)(sb_timer *t);

    /* The broker's single ZeroMQ context (a void * from zmq_ctx_new). Sockets created in it
     * must be closed (with ZMQ_LINGER set) in stop(). */
    void *(*zmq_context)(sb_host *h);

    /* Monotonic milliseconds. */
    uint64_t (*now_ms)(sb_host *h);

    /* [database] conninfo; owned by the broker. */
    const char *(*conninfo)(sb_host *h);

    /* [database] tables as configured ("schema.name"), in config order; owned by the broker. */
    const char *const *(*tables)(sb_host *h, size_t *n);

    /* This broker run's epoch id; owned by the broker. */
    const char *(*epoch)(sb_host *h);

    /* --- sources ----------------------------------------------------------------- */

    /* Hand the core a batch of changes read together, in commit order. Copied. */
    int (*emit)(sb_host *h, const sb_change *changes, size_t n);

    /* Answer a fetch() or snapshot() request: a batch of rows (copied), any number of times. */
    void (*rows)(sb_host *h, uint64_t req, const sb_row *rows, size_t n);

    /* Finish a fetch() or snapshot() request with 0 or an sb_err. Exactly once per request. */
    void (*done)(sb_host *h, uint64_t req, int status);

    /* The source lost its position (e.g. the change log was pruned past it): the core starts
     * a new epoch so that every client resynchronises. */
    void (*resync)(sb_host *h, const char *reason);

    /* --- transports -------------------------------------------------------------- */

    /* Start a consistent snapshot of `tables` (NULL/0 = all configured tables). *seq gets the
     * last seq published before the database snapshot is taken. Rows arrive through fn.
     * Returns SB_ERR_NOTFOUND for an unconfigured table, SB_ERR_BUSY if no source can serve.
     * *req identifies the request for cancel(). */
    int (*snapshot)(sb_host *h, const char *const *tables, size_t n, sb_rows_fn fn, void *ud,
                    uint64_t *seq, uint64_t *req);

    /* Stop delivering a snapshot; fn is not called again for req. */
    void (*cancel)(sb_host *h, uint64_t req);

    /* Replay retained messages with seq greater than `seq`, synchronously, then return 0;
     * *last gets the last seq published. SB_ERR_NOTFOUND when the epoch differs or the
     * buffer no longer reaches back (the client must take a snapshot). */
    int (*since)(sb_host *h, const char *epoch, uint64_t seq, sb_replay_fn fn, void *ud,
                 uint64_t *last);

    /* Record a presence announcement; the core publishes the entity's editors. */
    int (*presence)(sb_host *h, const sb_presence *p);

    /* Fill the core's counters. */
    void (*stats)(sb_host *h, sb_stats *out);

    /* --- added in ABI 1.1 (check with SB_API_HAS) ----------------------------------- */

    /* Log a configuration refusal as "FILE:LINE: [section] key: message", LINE being where
     * key is set (the section's header when it is not). section NULL = this plugin's own
     * section; "database" and "broker" name the broker's. For what create() or check()
     * refuses, so that the operator is sent to the line to fix. */
    void (*config_error)(sb_host *h, const char *section, const char *key, const char *fmt, ...)
        SB_PRINTF(4, 5);
} sb_host_api;

/* True when a table of `size` bytes (sb_host_api from the broker, sb_plugin from a plugin)
 * has `member`, i.e. the other side was built for a minor version that has it. */
#define SB_API_HAS(table, type, member)                                                            \
    ((table)->size >= offsetof(type, member) + sizeof((table)->member) && (table)->member)

/* api->config_error(...) when the broker offers it (ABI 1.1), else the same message through
 * api->log() without the file position. */
#define SB_CONFIG_ERROR(api, host, section, key, ...)                                              \
    do {                                                                                           \
        if (SB_API_HAS(api, sb_host_api, config_error)) {                                          \
            (api)->config_error(host, section, key, __VA_ARGS__);                                  \
        } else {                                                                                   \
            char sb_msg_[512];                                                                     \
            snprintf(sb_msg_, sizeof sb_msg_, __VA_ARGS__);                                        \
            (api)->log(host, SB_LOG_ERROR, "[%s] %s: %s", (section) ? (section) : "this section",  \
                       key, sb_msg_);                                                              \
        }                                                                                          \
    } while (0)

/* ---------------------------------------------------------------------------------------
 * Plugin descriptor.
 */
typedef enum sb_plugin_kind {
    SB_PLUGIN_SOURCE = 1,   /* reads changes from PostgreSQL */
    SB_PLUGIN_TRANSPORT = 2 /* delivers messages to clients and serves their requests */
} sb_plugin_kind;

typedef struct sb_plugin {
    uint16_t abi_major; /* SB_PLUGIN_ABI_MAJOR the plugin was built for (literal) */
    uint16_t abi_minor; /* SB_PLUGIN_ABI_MINOR the plugin was built for */
    uint32_t size;      /* sizeof(sb_plugin) as compiled into the plugin */
    sb_plugin_kind kind;
    const char *name;              /* e.g. "source_poll"; must match the file name */
    const char *version;           /* the plugin's own version, e.g. "1.0.0" */
    const char *description;       /* one line */
    const sb_option_spec *options; /* NULL-name-terminated; NULL = no options */

    /* Mandatory for every kind. */

    /* Create an instance. opts has one entry per options[] entry. *state is the plugin's
     * and is passed back to every callback. No sockets are bound and no connections are
     * opened here: --check calls create() and destroy() only. */
    int (*create)(const sb_host_api *api, sb_host *host, const sb_option_value *opts, void **state);
    /* Connect, bind, register watches and timers. Sources start first (a source that finds
     * a configured table unknown fails here, before any transport binds), then transports;
     * host callbacks start flowing once the broker's loop runs. */
    int (*start)(void *state);
    /* Flush what can be flushed, close sockets and connections, remove watches and timers.
     * No host callback may be made for this instance afterwards. */
    void (*stop)(void *state);
    /* Free the instance. */
    void (*destroy)(void *state);

    /* Sources: mandatory. */

    /* Read the current rows of `nkeys` entities of one table, asynchronously; answer with
     * api->rows() (an absent row has row == NULL) and api->done(). Keys are borrowed. */
    int (*fetch)(void *state, uint64_t req, const char *table, const sb_key *keys, size_t nkeys);
    /* Stream a consistent snapshot of `tables` (every configured table when n == 0) through
     * api->rows() in batches, then api->done(). The source must keep reading changes while a
     * snapshot runs. */
    int (*snapshot)(void *state, uint64_t req, const char *const *tables, size_t n);
    /* Forget request `req` (its requester is gone); api->done() is then not expected. */
    void (*cancel)(void *state, uint64_t req);

    /* Transports: mandatory. */

    /* Deliver one message to subscribers. The message is borrowed. */
    int (*publish)(void *state, const sb_message *m);

    /* --- added in ABI 1.1; optional, for every kind ----------------------------------- */

    /* What start() would refuse, found without starting: `syncbroker --check` calls it after
     * create(), instead of start(), then destroy(). It may connect to the database
     * (blocking, bounded by the plugin's connect timeout) and read; it never binds, writes,
     * or registers watches or timers. Report each refusal with api->config_error() and
     * return SB_ERR_CONFIG; return SB_ERR_DB when the database could not be reached (log why:
     * only the file was checked then); 0 when start() would find nothing to refuse. NULL:
     * the plugin has nothing to check beyond its options. */
    int (*check)(void *state);

    /* --- added in ABI 1.2; optional, for every kind ----------------------------------- */

    /* SIGHUP: re-read what the plugin reads from files of its own (transport_zmq: its
     * clients_file). Its options are not handed again: a changed config section takes effect
     * on restart only. Called on the loop, between two iterations, after the broker re-read
     * its own config file (whether or not that succeeded), for each started plugin in config
     * order; never during another callback. Only for a plugin that declares abi_minor >= 2
     * and whose size covers this member: a 1.0 or 1.1 plugin is left alone. The plugin logs
     * what changed; it returns 0 when the new state is in force, or an sb_err when it kept
     * its running state (the broker logs "reload failed: <error>; running state kept"; say
     * why before, e.g. with the file and line). It must not stop: a reload that fails leaves
     * the instance serving as before. NULL: nothing to reload. */
    int (*reload)(void *state);
} sb_plugin;

/* Size of the v1.0 descriptor: the loader refuses anything smaller; members after publish
 * are used only when `size` covers them (SB_API_HAS). */
#define SB_PLUGIN_V1_SIZE (offsetof(sb_plugin, publish) + sizeof(void (*)(void)))

/* The entry point every plugin exports. */
typedef const sb_plugin *(*sb_plugin_entry_fn)(void);

/* Use once in a plugin: SB_PLUGIN_DECLARE(my_descriptor); */
#define SB_PLUGIN_DECLARE(descriptor)                                                              \
    SB_EXPORT const sb_plugin *sb_plugin_entry(void);                                              \
    SB_EXPORT const sb_plugin *sb_plugin_entry(void)                                               \
    {                                                                                              \
        return &(descriptor);                                                                      \
    }

#ifdef __cplusplus
}
#endif

#endif /* SYNCBROKER_PLUGIN_H */
