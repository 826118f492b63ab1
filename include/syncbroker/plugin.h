/*
 * syncbroker/plugin.h - the Syncbroker plugin ABI, version 2.0.
 *
 * A plugin is a shared object that exports one function, sb_plugin_entry(). The broker calls
 * it with the ABI versions it implements (an sb_abi_offer) and gets back the descriptor the
 * plugin picked: an sb_source_plugin or an sb_transport_plugin, both starting with an
 * sb_plugin_header. The broker checks the header before it calls any other plugin code.
 * Write a plugin like this (the header macros fill in the version, size and kind; never
 * write those as literals, so a rebuild against a newer header always tells the truth):
 *
 *     static const sb_source_plugin my_source = {
 *         .header = SB_SOURCE_PLUGIN_HEADER("source_mine", "1.0.0", "one line", my_options),
 *         .create = my_create, .start = my_start, .stop = my_stop, .destroy = my_destroy,
 *         .snapshot = my_snapshot, .cancel = my_cancel,
 *     };
 *     SB_PLUGIN_DECLARE(my_source)
 *
 * The broker hands every plugin instance its kind's host API table (sb_source_api or
 * sb_transport_api) and an opaque handle (sb_host). Plugins call the broker only through
 * that table and link against nothing of the broker: no symbol of the daemon is ever
 * resolved by the dynamic linker. A source cannot call a transport's functions (and the
 * reverse): they are not in its table.
 *
 * This header depends on the C standard library only (no libpq, libzmq or msgpack types).
 *
 * RULES EVERY PLUGIN KEEPS (the broker relies on them; nothing else documents them)
 *
 * Versions. SB_ABI_MAJOR changes when a released layout changes (a plugin built for another
 * major is refused); SB_ABI_MINOR grows when members are appended to a descriptor or to a
 * host API table. A plugin built against a newer minor than the broker's is refused (it may
 * rely on members the broker does not fill). A plugin built against an older minor is
 * loaded: the broker reads only the descriptor members its `size` covers, and the plugin
 * tests members newer than its own minor with SB_HOST_HAS() before calling them.
 *
 * One thread. The broker runs one event loop on one thread. Every callback below runs on
 * that thread and every host API function is called from it, never from another thread and
 * never from a signal handler. Plugins do not start threads for I/O: they register file
 * descriptors (and transports ZeroMQ sockets) and timers. A plugin that must use a thread
 * (a blocking library) hands the results to the loop through a pipe or eventfd it watches.
 * Callbacks must not block for long: every other plugin waits meanwhile.
 *
 * Ownership. Unless a comment says otherwise, a pointer passed in either direction is
 * borrowed for the duration of the call; whoever wants to keep the data copies it (the core
 * copies every change, row and key it keeps). Strings the broker hands out (option values,
 * table names, the epoch) stay valid until the plugin's destroy(); the epoch's text changes
 * at each new epoch, so copy it to compare it later.
 *
 * Sources:
 * - Exactly one source per broker ([source.NAME] appears once; the config refuses a second).
 * - Tables are indices. setup->tables lists the [database] tables in config order; a table's
 *   index there is its index in every change, row, fetch and snapshot, in both directions.
 *   The broker owns that list (clients may see these tables and no others).
 * - Versions: an entity's version (sb_change.version, sb_row.version) only grows. A row is
 *   always paired with the version read together with it in the same consistent read: a
 *   row is never handed over with an older version than its contents (the core drops a
 *   change or row whose version is not newer than what it already published, so a stale
 *   pairing would lose an update for good).
 * - Order: emit() the changes of one entity in commit order. Changes of different entities
 *   may be interleaved as the source reads them.
 * - Clocks: sb_change.ts_ms is the wall clock of the commit (ms since the Unix epoch, the
 *   database server's clock). The core compares it with its own wall clock allowing 1 s of
 *   skew (whether a change may already have been exposed by a running snapshot): keep the
 *   database's and the broker's clocks within 1 s of each other (NTP). now_ms() in the host
 *   API is a different, monotonic clock, for timers only.
 * - TRUNCATE: op SB_OP_TRUNCATE with key.nparts == 0 (the whole table).
 * - resync(): the source lost its position (its change log was pruned past what it had
 *   read, a replication slot was dropped). The core starts a new epoch and every client
 *   resynchronises with a snapshot; what was pending is not published. Call it only then:
 *   it costs every client a snapshot.
 * - Requests: fetch() and snapshot() get a request id `req` from the core. The source
 *   answers with rows(h, req, ...) any number of times, then done(h, req, status) exactly
 *   once, unless the core calls cancel(state, req) first: after cancel the source makes no
 *   further call for req (neither rows nor done). The answer (rows, done, snapshot_cut)
 *   never comes from inside the fetch()/snapshot() call itself, only from a later loop
 *   callback (arm a 0 ms timer when the answer is at hand). A fetch() or snapshot() that
 *   returns an error (< 0) has started nothing: no rows, no done for that req.
 * - fetch(): answer one row per key asked (row NULL when the entity no longer exists), each
 *   with the version read together with it. The source keeps reading changes meanwhile.
 * - snapshot(): stream every row of the tables asked, consistent as of one moment (the cut),
 *   in batches; keep reading and emitting changes while it runs.
 * - Snapshot cut: without SB_SOURCE_SETS_SNAPSHOT_CUT the core takes the reply's seq before
 *   it calls snapshot(): everything published so far was committed, so the source's
 *   snapshot, opened in snapshot(), sees it. With the flag (e.g. a replication source whose
 *   snapshot has its own visibility), the source calls snapshot_cut(h, req) exactly once
 *   per snapshot, before its first rows(), at the moment where every change it emitted
 *   before the call is visible in the snapshot and no change emitted after the call is
 *   required to be (emit first what the snapshot already contains, then cut).
 * - Flow: if the source has snapshot_flow(), the core calls snapshot_flow(req, false) when a
 *   transport cannot take more rows now and snapshot_flow(req, true) when it can again; the
 *   source holds back rows() for req in between (changes keep flowing). Without the callback
 *   the transport limits its memory itself.
 * - Lease (a standby broker): the source starts active. lease(h, false, why) says the source
 *   is no longer the one whose changes count (it lost its lock or slot): the core stops
 *   publishing events and heartbeats, so clients see this broker offline and move on,
 *   refuses new snapshots (SB_ERR_BUSY) and drops what is pending and what is emitted
 *   meanwhile. lease(h, true, why) says it is active again: the core starts a new epoch
 *   (fencing: clients resynchronise with a snapshot, which covers what was dropped) and
 *   resumes. The core logs both.
 * - published(state, P): if the source has it, the core calls it at most once per
 *   heartbeat period (when P grew) and when it drains, with the highest P such that every
 *   change the source emitted with 0 < position <= P was published or superseded by a
 *   published event (nothing at or below P is pending). Positions must grow in emit order;
 *   0 means "no position". A logical-replication source confirms its flush position with it.
 *
 * check() and reload() (both kinds, optional):
 * - check(): `syncbroker --check` calls create(), then check() instead of start(), then
 *   destroy(). It may connect to the database (blocking, bounded by the plugin's connect
 *   timeout) and read; it never binds, writes, or registers watches or timers. Report each
 *   refusal with config_error() and return SB_ERR_CONFIG; return SB_ERR_DB when the database
 *   could not be reached (log why: only the file was checked then); 0 when start() would
 *   find nothing to refuse.
 * - reload(): SIGHUP. Re-read what the plugin reads from files of its own (transport_zmq:
 *   its clients_file). Its options are not handed again: a changed config section takes
 *   effect on restart only. Called on the loop, between two iterations, after the broker
 *   re-read its own config file (whether or not that succeeded), for each started plugin in
 *   config order; never during another callback. The plugin logs what changed; it returns 0
 *   when the new state is in force, or an sb_err when it kept its running state (the broker
 *   logs "reload failed: <error>; running state kept"; say why before, e.g. with the file and
 *   line). It must not stop: a reload that fails leaves the instance serving as before.
 */
#ifndef SYNCBROKER_PLUGIN_H
#define SYNCBROKER_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h> /* as in ABI 1: plugins written against it may rely on it */
#include <syncbroker/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SB_ABI_MAJOR 2
#define SB_ABI_MINOR 0

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
 * Options: each plugin declares the keys its config section accepts (a source also the
 * [database] keys it reads). The broker refuses an unknown key, a missing required key or a
 * value of the wrong type, naming the config file, line and key, before the plugin is
 * created.
 */
typedef enum sb_opt_type {
    SB_OPT_STRING = 1,
    SB_OPT_INT = 2, /* decimal integer within [min, max] */
    SB_OPT_BOOL = 3 /* true|false|yes|no|on|off|1|0, any case */
} sb_opt_type;

typedef struct sb_option_spec {
    const char *name;          /* key in the section; NULL ends the array */
    sb_opt_type type;          /* how the value is checked and converted */
    const char *default_value; /* used when the key is absent; NULL = required */
    int64_t min, max;          /* SB_OPT_INT bounds (inclusive) */
    const char *help;          /* one line for --check and the docs */
} sb_option_spec;

/* Resolved option values, one per spec entry and in spec order. Owned by the broker, valid
 * until destroy(). */
typedef struct sb_option_value {
    const char *str; /* the text as written (or the default) */
    int64_t num;     /* SB_OPT_INT value */
    bool flag;       /* SB_OPT_BOOL value */
    bool given;      /* false when the default was used */
} sb_option_value;

/* ---------------------------------------------------------------------------------------
 * Versions and negotiation.
 */
typedef enum sb_plugin_kind {
    SB_PLUGIN_SOURCE = 1, /* reads changes (sb_source_plugin) */
    SB_PLUGIN_TRANSPORT =
        2 /* delivers messages to clients, serves requests (sb_transport_plugin) */
} sb_plugin_kind;

/* What every descriptor of every major starts with. Its layout never changes: ABI 1's
 * descriptor started with the same fields, which is how a v1 plugin is recognised. */
typedef struct sb_plugin_header {
    uint16_t abi_major;            /* SB_ABI_MAJOR of the header the plugin was compiled with */
    uint16_t abi_minor;            /* SB_ABI_MINOR likewise */
    uint32_t size;                 /* sizeof the whole descriptor, as compiled into the plugin */
    uint32_t kind;                 /* an sb_plugin_kind */
    const char *name;              /* e.g. "source_poll"; must match the file name */
    const char *version;           /* the plugin's own version; ours report the project's */
    const char *description;       /* one line */
    const sb_option_spec *options; /* the plugin section's keys; NULL = no options */
} sb_plugin_header;

/* One ABI version. */
typedef struct sb_abi_version {
    uint16_t major;
    uint16_t minor; /* the newest minor of that major the broker implements */
} sb_abi_version;

/* The broker's offer: the ABI versions it implements, one per major. */
typedef struct sb_abi_offer {
    const sb_abi_version *versions;
    size_t n;
} sb_abi_offer;

/* The one exported function. Returns the descriptor the plugin picks from the offer (a
 * plugin built for one major returns its descriptor whatever the offer: the broker then says
 * precisely what does not match), or NULL when it supports none of the offered versions. The
 * descriptor is static and constant: the broker reads it until it unloads the plugin. */
typedef const sb_plugin_header *(*sb_plugin_entry_fn)(const sb_abi_offer *offer);

/* ---------------------------------------------------------------------------------------
 * Data exchanged between the source, the core and transports.
 */
/* One captured change, in commit order per entity. */
typedef struct sb_change {
    uint32_t table;     /* index into setup->tables */
    sb_key key;         /* TRUNCATE: nparts == 0 */
    sb_op op;           /* SB_OP_INSERT ... SB_OP_TRUNCATE */
    uint64_t version;   /* entity version after this change; grows per entity */
    const char *origin; /* the writer's syncbroker.origin, or NULL */
    int64_t ts_ms;      /* commit time, wall clock ms since the Unix epoch */
    uint64_t position;  /* the source's own position (e.g. an LSN), growing; 0 = none */
    bool has_row;       /* true: row/row_len are the entity's state at `version`, and the core
                           publishes from it without a fetch; false: the core fetches */
    const void *row;    /* has_row: packed msgpack map column -> value; NULL = entity absent */
    size_t row_len;     /* bytes at row */
} sb_change;

/* The current state of one entity, as read by the source (fetch and snapshot answers). */
typedef struct sb_row {
    uint32_t table; /* index into setup->tables */
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
    const char *topic; /* not NUL-terminated; topic_len bytes */
    size_t topic_len;
    const void *body; /* packed msgpack map (docs/protocol.md) */
    size_t body_len;
} sb_message;

/* Presence announcement from a client, forwarded by a transport. */
typedef struct sb_presence {
    const char *client; /* client id */
    uint32_t table;     /* index into base.tables() */
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

/* What a transport's snapshot callback receives, per request and in this order: CUT once,
 * ROWS any number of times, DONE once. A snapshot that fails may end with DONE (status < 0)
 * at any point, also before CUT. Nothing follows DONE or a cancel(). */
typedef enum sb_snapshot_event_kind {
    SB_SNAPSHOT_CUT = 1,  /* the reply's position: seq, and tseq per table */
    SB_SNAPSHOT_ROWS = 2, /* a batch of rows */
    SB_SNAPSHOT_DONE = 3  /* the end: status */
} sb_snapshot_event_kind;

typedef struct sb_snapshot_event {
    sb_snapshot_event_kind kind;
    uint64_t seq;         /* CUT: the reply's seq (every event up to it is in the rows) */
    const uint64_t *tseq; /* CUT: each table's tseq at seq, by table index */
    size_t ntables;       /* CUT: entries at tseq (every configured table) */
    const sb_row *rows;   /* ROWS: n rows, borrowed for the call */
    size_t n;             /* ROWS: > 0 */
    int status;           /* DONE: 0, or an sb_err when the snapshot failed */
} sb_snapshot_event;

/* A transport's snapshot callback. Never called from inside api->snapshot() itself. Returns
 * 0 to go on, or SB_ERR_BUSY (after a ROWS event, whose rows it has taken) to ask for a
 * pause until it calls api->snapshot_resume(h, req). A pause is passed on to the source's
 * snapshot_flow(); a source without it keeps sending, so a transport that pauses must still
 * accept ROWS (or cancel the request). */
typedef int (*sb_snapshot_fn)(void *ud, uint64_t req, const sb_snapshot_event *ev);

/* One retained message replayed for `since`, in seq order. */
typedef void (*sb_replay_fn)(void *ud, const sb_message *m);

/* ---------------------------------------------------------------------------------------
 * Host APIs: what the broker offers a plugin. Handed to create(); valid until destroy().
 * Each kind's table starts with sb_host_base. Test members newer than the minor the plugin
 * needs with SB_HOST_HAS() before calling them.
 */
typedef struct sb_host_base {
    uint32_t size;      /* sizeof the whole table (sb_source_api or sb_transport_api) */
    uint16_t abi_major; /* the broker's SB_ABI_MAJOR */
    uint16_t abi_minor; /* the broker's SB_ABI_MINOR */

    /* Log a line prefixed with the plugin's section, e.g. "[source.main]". */
    void (*log)(sb_host *h, sb_log_level level, const char *fmt, ...) SB_PRINTF(3, 4);

    /* Log a configuration refusal as "FILE:LINE: [section] key: message", LINE being where
     * key is set (the section's header when it is not). section NULL = this plugin's own
     * section; "database" (a source's database_options) and "broker" name the broker's.
     * For what create() or check() refuses, so that the operator is sent to the line. */
    void (*config_error)(sb_host *h, const char *section, const char *key, const char *fmt, ...)
        SB_PRINTF(4, 5);

    /* Watch a plain file descriptor (e.g. PQsocket) for SB_IO_READ/SB_IO_WRITE. The callback
     * gets the ready bits (SB_IO_ERROR on error/hang-up). *out is owned by the broker;
     * release it with unwatch(). Level-triggered. */
    int (*watch_fd)(sb_host *h, int fd, unsigned events, sb_io_fn fn, void *ud, sb_watch **out);

    /* Change the interest bits of a watch (0 pauses it). */
    int (*watch_set)(sb_watch *w, unsigned events);

    /* Remove and free a watch. Safe inside its own callback. NULL is ignored. */
    void (*unwatch)(sb_watch *w);

    /* Start a timer: first run after delay_ms, then every repeat_ms (0 = one-shot; a
     * one-shot timer frees itself after its callback returns, so *out is then invalid).
     * out may be NULL for a one-shot the caller never cancels. */
    int (*timer_start)(sb_host *h, uint64_t delay_ms, uint64_t repeat_ms, sb_timer_fn fn, void *ud,
                       sb_timer **out);

    /* Cancel and free a timer that has not fired (one-shot) or is repeating. NULL is ignored. */
    void (*timer_stop)(sb_timer *t);

    /* Monotonic milliseconds (timers; not comparable with ts_ms). */
    uint64_t (*now_ms)(sb_host *h);

    /* This broker run's epoch id (changes on resync and lease); see Ownership above. */
    const char *(*epoch)(sb_host *h);

    /* The [database] tables ("schema.name") in config order: a table's index here is the
     * index every change, row, presence and snapshot carries. Owned by the broker. */
    const char *const *(*tables)(sb_host *h, size_t *n);
} sb_host_base;

/* What a source may call. */
typedef struct sb_source_api {
    sb_host_base base;

    /* Hand the core a batch of changes read together, in commit order per entity. Copied.
     * Returns 0; SB_ERR_INVAL when a change was refused: an unknown table index or op (the
     * core starts a new epoch, as for a lost change) or, from a source without fetch(), a
     * change without its row (logged once); SB_ERR_NOMEM when one could not be queued (new
     * epoch too). The rest of the batch is taken either way. While the lease is lost the
     * changes are dropped and 0 is returned. */
    int (*emit)(sb_host *h, const sb_change *changes, size_t n);

    /* Answer a fetch() or snapshot() request: a batch of rows (copied), any number of times.
     * After SB_SOURCE_SETS_SNAPSHOT_CUT's snapshot_cut() for a snapshot. */
    void (*rows)(sb_host *h, uint64_t req, const sb_row *rows, size_t n);

    /* Finish a fetch() or snapshot() request with 0 or an sb_err. Exactly once per request
     * that was not cancelled. */
    void (*done)(sb_host *h, uint64_t req, int status);

    /* The source lost its position: new epoch, every client resynchronises (see RULES). */
    void (*resync)(sb_host *h, const char *reason);

    /* Only for a source with SB_SOURCE_SETS_SNAPSHOT_CUT: fix the cut of snapshot req, once,
     * before its first rows() (see RULES). Ignored for another source or a second call. */
    void (*snapshot_cut)(sb_host *h, uint64_t req);

    /* The source gained (active) or lost its lease; reason is logged (see RULES). */
    void (*lease)(sb_host *h, bool active, const char *reason);

    /* Fill the core's counters: `pending` is the source's back-pressure signal (a source
     * that can choose its pace reads less while the core holds many entities). */
    void (*stats)(sb_host *h, sb_stats *out);
} sb_source_api;

/* What a transport may call. */
typedef struct sb_transport_api {
    sb_host_base base;

    /* Watch a ZeroMQ socket created in zmq_context(), as watch_fd. */
    int (*watch_zsock)(sb_host *h, void *zsock, unsigned events, sb_io_fn fn, void *ud,
                       sb_watch **out);

    /* The broker's single ZeroMQ context (a void * from zmq_ctx_new). Sockets created in it
     * must be closed (with ZMQ_LINGER set) in stop(). */
    void *(*zmq_context)(sb_host *h);

    /* Start a consistent snapshot of `tables` (indices; n == 0: every table). Events arrive
     * through fn (sb_snapshot_fn), never from inside this call. *req identifies the request
     * for snapshot_resume() and cancel(). Returns SB_ERR_NOTFOUND for an index out of range,
     * SB_ERR_BUSY when the source cannot serve (not started, lease lost, refused). */
    int (*snapshot)(sb_host *h, const uint32_t *tables, size_t n, sb_snapshot_fn fn, void *ud,
                    uint64_t *req);

    /* The transport can take rows of req again after its callback returned SB_ERR_BUSY. */
    void (*snapshot_resume)(sb_host *h, uint64_t req);

    /* Stop a snapshot; fn is not called again for req. Unknown or finished req: ignored. */
    void (*cancel)(sb_host *h, uint64_t req);

    /* Replay retained messages with seq greater than `seq`, synchronously, then return 0;
     * *last gets the last seq published. SB_ERR_NOTFOUND when the epoch differs or the
     * buffer no longer reaches back (the client must take a snapshot). */
    int (*since)(sb_host *h, const char *epoch, uint64_t seq, sb_replay_fn fn, void *ud,
                 uint64_t *last);

    /* Record a presence announcement; the core publishes the entity's editors.
     * SB_ERR_NOTFOUND for a table index out of range, SB_ERR_INVAL for a missing client or
     * state, SB_ERR_BUSY over a presence limit. */
    int (*presence)(sb_host *h, const sb_presence *p);

    /* Fill the core's counters. */
    void (*stats)(sb_host *h, sb_stats *out);
} sb_transport_api;

/* True when the broker's table `api` (an sb_source_api or sb_transport_api, of C type
 * `type`) has `member`: the broker was built for a minor that has it. */
#define SB_HOST_HAS(api, type, member)                                                             \
    ((api)->base.size >= offsetof(type, member) + sizeof((api)->member) && (api)->member)

/* True when a plugin's descriptor `desc` (of C type `type`) has `member` set: its size
 * covers it and it is not NULL. The broker's side of SB_HOST_HAS. */
#define SB_PLUGIN_HAS(desc, type, member)                                                          \
    ((desc)->header.size >= offsetof(type, member) + sizeof((desc)->member) && (desc)->member)

/* (api)->base.config_error(...), for any kind's table. A macro so that a later minor can
 * fall back to log() for a broker without a newer variant, as ABI 1 did. */
#define SB_CONFIG_ERROR(api, host, section, key, ...)                                              \
    ((api)->base.config_error((host), (section), (key), __VA_ARGS__))

/* ---------------------------------------------------------------------------------------
 * Descriptors: one operations table per kind.
 */
/* sb_source_plugin.flags */
#define SB_SOURCE_SETS_SNAPSHOT_CUT 0x1u /* the source calls snapshot_cut() (see RULES) */

/* What the broker hands a source's create(). Everything is owned by the broker and valid
 * until destroy(). */
typedef struct sb_source_setup {
    const sb_option_value *options;  /* the [source.NAME] keys, one per header.options entry */
    const sb_option_value *database; /* the [database] keys, one per database_options entry */
    const char *const *tables;       /* [database] tables, config order: a table's index here is
                                        its index in every call (changes, rows, fetch, snapshot) */
    size_t ntables;
} sb_source_setup;

typedef struct sb_source_plugin {
    sb_plugin_header header; /* SB_SOURCE_PLUGIN_HEADER(...) */

    /* The [database] keys this source reads (e.g. conninfo), checked and resolved by the
     * broker like options and handed over as setup->database; NULL = none. The broker owns
     * `tables` (and the [broker] keys); any other [database] key no entry declares is
     * refused. */
    const sb_option_spec *database_options;

    uint32_t flags; /* SB_SOURCE_SETS_SNAPSHOT_CUT, or 0 */

    /* Mandatory. */

    /* Create an instance. *state is the plugin's and is passed back to every callback. No
     * connections are opened and no watches or timers registered here: --check calls
     * create(), check() and destroy() only. Refuse bad settings with config_error() and
     * SB_ERR_CONFIG. api and host stay valid until destroy(). */
    int (*create)(const sb_source_api *api, sb_host *host, const sb_source_setup *setup,
                  void **state);
    /* Connect, register watches and timers. The source starts before any transport (a
     * source that finds a configured table unknown fails here, before any transport binds);
     * host callbacks flow once the broker's loop runs. Returns 0 or an sb_err (SB_ERR_CONFIG
     * when the [database] tables are refused: the broker points at that line); after an
     * error the broker calls stop(), so a start() that fails half way need not undo itself. */
    int (*start)(void *state);
    /* Close connections, remove watches and timers. No host call for this instance after it;
     * requests still open are dropped (no done() owed). */
    void (*stop)(void *state);
    /* Free the instance. */
    void (*destroy)(void *state);

    /* Optional: see RULES for both. NULL = nothing to check / nothing to reload. */
    int (*check)(void *state);
    int (*reload)(void *state);

    /* Read the current rows of `nkeys` entities of table `table` and answer with rows() (an
     * absent entity has row == NULL) and done(). Keys are borrowed. Optional: NULL when
     * every change the source emits has its row (then a change without one is refused). */
    int (*fetch)(void *state, uint64_t req, uint32_t table, const sb_key *keys, size_t nkeys);

    /* Mandatory. Stream a consistent snapshot of `tables` (indices; every table when
     * n == 0) through rows() in batches, then done(). SB_ERR_NOTFOUND refuses a table, any
     * other error refuses the request for now (the client is told busy). */
    int (*snapshot)(void *state, uint64_t req, const uint32_t *tables, size_t n);

    /* Mandatory. Forget request `req` (a fetch or a snapshot whose requester is gone); no
     * further call for it. Unknown req: ignored. */
    void (*cancel)(void *state, uint64_t req);

    /* Optional. Pause (go false) or resume (go true) the rows of snapshot req. */
    void (*snapshot_flow)(void *state, uint64_t req, bool go);

    /* Optional. Everything up to `position` is published (see RULES). */
    void (*published)(void *state, uint64_t position);
} sb_source_plugin;

typedef struct sb_transport_plugin {
    sb_plugin_header header; /* SB_TRANSPORT_PLUGIN_HEADER(...) */

    /* Mandatory. */

    /* Create an instance. opts has one entry per header.options entry. No sockets are bound
     * here (--check calls create(), check(), destroy() only). api and host stay valid until
     * destroy(). */
    int (*create)(const sb_transport_api *api, sb_host *host, const sb_option_value *opts,
                  void **state);
    /* Bind, register watches and timers (after the source started). After an error the
     * broker calls stop(). */
    int (*start)(void *state);
    /* Flush what can be flushed, close sockets, remove watches and timers; cancel() every
     * snapshot still open is not needed (the core does). No host call afterwards. */
    void (*stop)(void *state);
    /* Free the instance. */
    void (*destroy)(void *state);

    /* Optional: see RULES for both. */
    int (*check)(void *state);
    int (*reload)(void *state);

    /* Mandatory. Deliver one message to subscribers. The message is borrowed. Returns 0 (or
     * any value >= 0) when it was sent or queued, an sb_err when it was not: the core logs it
     * (clients see the seq gap and ask for it with since). */
    int (*publish)(void *state, const sb_message *m);
} sb_transport_plugin;

/* Sizes of the 2.0 descriptors: the loader refuses anything smaller; members appended by
 * later minors are read only when `size` covers them (SB_PLUGIN_HAS). */
#define SB_SOURCE_PLUGIN_SIZE_2_0 (offsetof(sb_source_plugin, published) + sizeof(void (*)(void)))
#define SB_TRANSPORT_PLUGIN_SIZE_2_0                                                               \
    (offsetof(sb_transport_plugin, publish) + sizeof(void (*)(void)))

/* The header of a descriptor, filled from this header file:
 *     .header = SB_SOURCE_PLUGIN_HEADER("source_mine", "1.0.0", "what it reads", options), */
#define SB_PLUGIN_HEADER_(type, kind_, name_, version_, description_, options_)                    \
    {                                                                                              \
        .abi_major = SB_ABI_MAJOR, .abi_minor = SB_ABI_MINOR, .size = (uint32_t)sizeof(type),      \
        .kind = (kind_), .name = (name_), .version = (version_), .description = (description_),    \
        .options = (options_)                                                                      \
    }
#define SB_SOURCE_PLUGIN_HEADER(name, version, description, options)                               \
    SB_PLUGIN_HEADER_(sb_source_plugin, SB_PLUGIN_SOURCE, name, version, description, options)
#define SB_TRANSPORT_PLUGIN_HEADER(name, version, description, options)                            \
    SB_PLUGIN_HEADER_(sb_transport_plugin, SB_PLUGIN_TRANSPORT, name, version, description, options)

/* Use once in a plugin, at file scope: SB_PLUGIN_DECLARE(my_descriptor)
 * Defines sb_plugin_entry() returning the descriptor's header whatever the offer. */
#define SB_PLUGIN_DECLARE(descriptor)                                                              \
    SB_EXPORT const sb_plugin_header *sb_plugin_entry(const sb_abi_offer *offer);                  \
    SB_EXPORT const sb_plugin_header *sb_plugin_entry(const sb_abi_offer *offer)                   \
    {                                                                                              \
        (void)offer;                                                                               \
        return &(descriptor).header;                                                               \
    }

#ifdef __cplusplus
}
#endif

#endif /* SYNCBROKER_PLUGIN_H */
