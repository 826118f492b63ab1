/*
 * sb_source.h - the change-source engine behind source_poll and source_notify.
 *
 * One engine, two ways to wake it: SB_WAKE_POLL reads the change log every
 * poll_interval_ms; SB_WAKE_NOTIFY LISTENs on channel "syncbroker" and reads when a
 * notification arrives (coalesced: one more read after the running one), with a slow
 * poll_interval_ms safety net. Everything else is shared: the main connection (cursor, row
 * fetches, LISTEN), the snapshot connection, the maintenance connection (pruning), the
 * options and the plugin callbacks.
 *
 * A plugin is SB_SOURCE_PLUGIN(...): a descriptor whose options are SB_SOURCE_OPTIONS(...),
 * whose [database] keys are SB_SOURCE_DATABASE_OPTIONS (conninfo) and whose create() calls
 * sb_source_create() with its wake mode; every other callback is sb_source_*. Its changes
 * carry no row (the core fetches it), and the broker fixes a snapshot's seq before it starts.
 */
#ifndef SB_SOURCE_H
#define SB_SOURCE_H

#include <stddef.h>
#include <stdint.h>
#include <syncbroker/plugin.h>

typedef enum sb_wake_mode { SB_WAKE_POLL = 1, SB_WAKE_NOTIFY = 2 } sb_wake_mode;

/* The NOTIFY channel the capture triggers use (sql/002_capture.sql). */
#define SB_NOTIFY_CHANNEL "syncbroker"

/* Option indexes: the order of SB_SOURCE_OPTIONS. */
enum sb_source_opt {
    SB_SRC_OPT_POLL_INTERVAL_MS,
    SB_SRC_OPT_BATCH_ROWS,
    SB_SRC_OPT_RECONNECT_MIN_MS,
    SB_SRC_OPT_RECONNECT_MAX_MS,
    SB_SRC_OPT_CONNECT_TIMEOUT_MS,
    SB_SRC_OPT_PRUNE_INTERVAL_MS,
    SB_SRC_OPT_READER,
    SB_SRC_OPT_TOMBSTONE_RETENTION_S,
    SB_SRC_OPT_READER_TIMEOUT_S,
    SB_SRC_NOPTS
};

/* The option spec of a source, terminator included; only the poll interval's default and
 * help differ between the plugins. */
// clang-format off
#define SB_SOURCE_OPTIONS(poll_default, poll_help)                                                 \
    {"poll_interval_ms", SB_OPT_INT, poll_default, 1, 3600000, poll_help},                         \
    {"batch_rows", SB_OPT_INT, "1000", 1, 1000000, "snapshot rows per batch"},                     \
    {"reconnect_min_ms", SB_OPT_INT, "100", 1, 3600000, "first reconnect delay (ms)"},             \
    {"reconnect_max_ms", SB_OPT_INT, "5000", 1, 3600000, "longest reconnect delay (ms)"},          \
    {"connect_timeout_ms", SB_OPT_INT, "5000", 100, 3600000,                                       \
     "give up a connection attempt after this long"},                                              \
    {"prune_interval_ms", SB_OPT_INT, "1000", 10, 86400000,                                        \
     "how often to record this broker's position and prune the change log (ms)"},                  \
    {"reader", SB_OPT_STRING, "syncbroker", 0, 0,                                                  \
     "this broker's row in syncbroker.reader (unique per broker)"},                                \
    {"tombstone_retention_s", SB_OPT_INT, "86400", 0, INT32_MAX,                                   \
     "keep the versions of deleted rows this long"},                                               \
    {"reader_timeout_s", SB_OPT_INT, "3600", 1, INT32_MAX,                                         \
     "forget readers not seen this long (the log is kept for them until then)"},                   \
    {NULL, 0, NULL, 0, 0, NULL}
// clang-format on

/* [database] keys a source reads (sb_source_plugin.database_options), in this order in
 * setup->database. */
enum sb_source_db_opt { SB_SRC_DB_CONNINFO, SB_SRC_NDB };

// clang-format off
#define SB_SOURCE_DATABASE_OPTIONS                                                                 \
    {"conninfo", SB_OPT_STRING, NULL, 0, 0,                                                        \
     "libpq connection string (key=value pairs or a postgresql:// URI)"},                          \
    {NULL, 0, NULL, 0, 0, NULL}
// clang-format on

/* setup->options follow SB_SOURCE_OPTIONS, setup->database SB_SOURCE_DATABASE_OPTIONS. */
int sb_source_create(const sb_source_api *api, sb_host *host, const sb_source_setup *setup,
                     sb_wake_mode mode, void **state);
int sb_source_start(void *state);
void sb_source_stop(void *state);
void sb_source_destroy(void *state);
int sb_source_fetch(void *state, uint64_t req, uint32_t table, const sb_key *keys, size_t nkeys);
int sb_source_snapshot(void *state, uint64_t req, const uint32_t *tables, size_t n);
void sb_source_cancel(void *state, uint64_t req);
/* --check: the tables and the reader, as start() would judge them (sb_check.h). */
int sb_source_check(void *state);

/* The whole plugin: its option specs, a create() that picks the wake mode, the descriptor
 * and the entry point. Use once per plugin file. */
#define SB_SOURCE_PLUGIN(plugin_name, wake, poll_default, poll_help, text)                         \
    static const sb_option_spec source_options[] = {                                               \
        SB_SOURCE_OPTIONS(poll_default, poll_help),                                                \
    };                                                                                             \
    static const sb_option_spec source_database_options[] = {SB_SOURCE_DATABASE_OPTIONS};          \
    static int source_create(const sb_source_api *api, sb_host *host,                              \
                             const sb_source_setup *setup, void **state)                           \
    {                                                                                              \
        return sb_source_create(api, host, setup, wake, state);                                    \
    }                                                                                              \
    static const sb_source_plugin source_descriptor = {                                            \
        .header = SB_SOURCE_PLUGIN_HEADER(plugin_name, SB_VERSION, text, source_options),          \
        .database_options = source_database_options,                                               \
        .create = source_create,                                                                   \
        .start = sb_source_start,                                                                  \
        .stop = sb_source_stop,                                                                    \
        .destroy = sb_source_destroy,                                                              \
        .check = sb_source_check,                                                                  \
        .fetch = sb_source_fetch,                                                                  \
        .snapshot = sb_source_snapshot,                                                            \
        .cancel = sb_source_cancel,                                                                \
    };                                                                                             \
    SB_PLUGIN_DECLARE(source_descriptor)

#endif /* SB_SOURCE_H */
