/*
 * syncbroker/testhost.h - libsyncbroker-testhost: run one plugin in unit tests exactly as
 * the broker runs it.
 *
 * A test host is the broker without its core: the same configuration parser reads the
 * test's INI text (so options are checked, defaulted and refused with file:line as the
 * broker does), the same loader loads the plugin from plugin_dir (or takes a descriptor
 * linked into the test and checks it the same way), the same host API tables are handed to
 * create(), and the same event loop (zmq_poll over the plugin's watches, plus its timers)
 * runs it. Where the broker's core would be, the test host records what the plugin asks and
 * answers with values the test scripts:
 *
 *   - a source's emit, rows, done, resync, snapshot_cut and lease calls are recorded; the
 *     test calls the source's fetch, snapshot, cancel, snapshot_flow and published through
 *     sb_testhost_source_*();
 *   - a transport's snapshot, since and presence calls are recorded and answered as
 *     scripted; the test publishes messages to it with sb_testhost_publish().
 *
 * One thread; nothing here is thread-safe. The log of the whole process (the plugin's lines
 * and the broker parts', e.g. configuration refusals) is captured by the newest live test
 * host; set SB_TESTHOST_LOG=1 in the environment to echo it to stderr too.
 *
 * Ownership: everything recorded is deep-copied and owned by the test host; pointers the
 * getters return stay valid until sb_testhost_clear_records() or sb_testhost_free().
 * Arguments are copied unless said otherwise.
 *
 * Link with -lsyncbroker-testhost (pkg-config syncbroker-testhost; CMake target
 * Syncbroker::testhost). docs/plugins.md, "Testing a plugin", shows a whole test.
 */
#ifndef SYNCBROKER_TESTHOST_H
#define SYNCBROKER_TESTHOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <syncbroker/plugin.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sb_testhost sb_testhost;

/* ---- life ---------------------------------------------------------------------------- */

/* A new test host: epoch "testhost-epoch", zeroed stats (source_lag_ms -1), every scripted
 * answer SB_OK. *out owned by the caller (sb_testhost_free). SB_ERR_NOMEM or SB_ERR_ZMQ. */
int sb_testhost_new(sb_testhost **out);

/* Read `ini` as the broker reads its configuration file, `name` naming it in messages
 * (NULL: "testhost.ini"; a relative plugin_dir is resolved against the current directory).
 * It holds [broker] and [database] as usual and exactly one plugin section: the plugin under
 * test ([source.NAME] or [transport.NAME]). The test host stands in for the other kind.
 * linked: the plugin's descriptor when the plugin is linked into the test (what its
 * sb_plugin_entry returns), checked as the loader checks a loaded one; NULL: `plugin` is
 * loaded from plugin_dir, exactly as the broker loads it. Options (and a source's [database]
 * keys) are resolved here. Every refusal is logged (captured) as the broker logs it, and
 * its error returned: SB_ERR_CONFIG, or SB_ERR_ABI for a plugin the loader refuses. Once per
 * test host. */
int sb_testhost_load(sb_testhost *th, const char *name, const char *ini,
                     const sb_plugin_header *linked);

/* create() (unless sb_testhost_check did), then start(), as the broker calls them. The
 * plugin's error, logged. */
int sb_testhost_start(sb_testhost *th);
/* stop(). Returns how many watches and timers the plugin left registered: the broker
 * removes them and logs a warning; a well-behaved plugin leaves none. After a failed
 * sb_testhost_start (the broker then calls stop() itself), what that stop() left. */
size_t sb_testhost_stop(sb_testhost *th);
/* The state the plugin's create() returned (NULL before sb_testhost_start or
 * sb_testhost_check created it), for a plugin's own tests that look at its internals. */
void *sb_testhost_plugin_state(sb_testhost *th);
/* Stop if started, destroy if created, unload, free. NULL is ignored. */
void sb_testhost_free(sb_testhost *th);

/* What --check and SIGHUP ask of the plugin: its check() (after create(), as --check does,
 * unless it was created already) and its reload(). SB_ERR_UNSUPPORTED when it has none;
 * reload() also when not started. */
int sb_testhost_check(sb_testhost *th);
int sb_testhost_reload(sb_testhost *th);

/* ---- the loop ------------------------------------------------------------------------ */

/* One iteration of the broker's loop: wait up to timeout_ms (-1: until the next timer or
 * I/O) for the plugin's watches, run the ready callbacks, then the due timers (the test
 * host's own answers, see sb_testhost_script_snapshot_sync, are timers too). 0, or
 * SB_ERR_ZMQ when zmq_poll failed. */
int sb_testhost_run_once(sb_testhost *th, int timeout_ms);

typedef bool (*sb_testhost_pred)(void *ud);
/* Run the loop until pred(ud) holds (checked before every iteration). False when timeout_ms
 * passed first. */
bool sb_testhost_run_until(sb_testhost *th, sb_testhost_pred pred, void *ud, int timeout_ms);
/* A predicate: the ZeroMQ socket ud has a message to read. */
bool sb_testhost_zsock_readable(void *zsock);

/* The watches and timers the plugin has registered now. */
size_t sb_testhost_watch_count(sb_testhost *th);
size_t sb_testhost_timer_count(sb_testhost *th);

/* The broker's ZeroMQ context, the one a transport's api->zmq_context() returns (borrowed):
 * create the test's client sockets in it to use inproc:// endpoints. */
void *sb_testhost_zmq_context(sb_testhost *th);

/* ---- what the host reports ----------------------------------------------------------- */

/* What api->base.epoch() returns. */
void sb_testhost_set_epoch(sb_testhost *th, const char *epoch);
/* The counters api->stats() returns; modify them freely. */
sb_stats *sb_testhost_stats(sb_testhost *th);

/* ---- the log ------------------------------------------------------------------------- */

/* Captured lines, "LEVEL [scope] message", e.g. "warn [transport.zmq] ...". */
size_t sb_testhost_log_count(sb_testhost *th);
const char *sb_testhost_log_line(sb_testhost *th, size_t i);
/* The first captured line containing needle, or NULL. */
const char *sb_testhost_log_find(sb_testhost *th, const char *needle);

/* Forget every recorded call, snapshot and log line (scripts stay). */
void sb_testhost_clear_records(sb_testhost *th);

/* ---- a source: calls into it --------------------------------------------------------- */

/* The source's fetch(), snapshot(), cancel(), snapshot_flow() and published(), with the
 * request ids the test picks; the answers come back through api->rows/done (recorded below).
 * SB_ERR_BUSY when not started (as the broker), SB_ERR_UNSUPPORTED without fetch(),
 * SB_ERR_STATE when the plugin under test is not a source; false from snapshot_flow when the
 * source has none. */
int sb_testhost_source_fetch(sb_testhost *th, uint64_t req, uint32_t table, const sb_key *keys,
                             size_t n);
int sb_testhost_source_snapshot(sb_testhost *th, uint64_t req, const uint32_t *tables, size_t n);
void sb_testhost_source_cancel(sb_testhost *th, uint64_t req);
bool sb_testhost_source_snapshot_flow(sb_testhost *th, uint64_t req, bool go);
void sb_testhost_source_published(sb_testhost *th, uint64_t position);

/* ---- a source: what it called -------------------------------------------------------- */

size_t sb_testhost_change_count(sb_testhost *th);
const sb_change *sb_testhost_change_get(sb_testhost *th, size_t i);
/* Rows from api->rows(), in order, with the request each answered. */
size_t sb_testhost_row_count(sb_testhost *th);
const sb_row *sb_testhost_row_get(sb_testhost *th, size_t i);
uint64_t sb_testhost_row_req(sb_testhost *th, size_t i);
/* The status api->done() gave req, or 1 when done was not called for it. */
int sb_testhost_done_status(sb_testhost *th, uint64_t req);
size_t sb_testhost_resync_count(sb_testhost *th);
/* api->snapshot_cut() calls (requests, in order) and the last api->lease() state (true
 * until the source says it lost its lease). */
size_t sb_testhost_cut_count(sb_testhost *th);
uint64_t sb_testhost_cut_req(sb_testhost *th, size_t i);
bool sb_testhost_lease_active(sb_testhost *th);

/* ---- a transport: calls into it ------------------------------------------------------ */

/* The transport's publish(m): what it returned (SB_ERR_STATE when not started, or when
 * the plugin under test is not a transport). */
int sb_testhost_publish(sb_testhost *th, const sb_message *m);

/* Publish what the core would publish for one change of table (an index of [database]
 * tables): the next seq and that table's next tseq, the host's epoch, encoded by the
 * broker's own protocol module (docs/protocol.md). key is {NULL, 0} for a truncate; row
 * (one packed msgpack map) NULL: nil; origin NULL: nil. *seq (NULL: not wanted) gets the
 * event's seq. What publish() returned, or SB_ERR_NOTFOUND for an unknown table. */
int sb_testhost_publish_event(sb_testhost *th, uint32_t table, sb_op op, const sb_key *key,
                              uint64_t version, const char *origin, const void *row, size_t row_len,
                              uint64_t *seq);
/* Publish a heartbeat as the core does: the host's epoch, the last seq and every table's
 * tseq. What publish() returned. */
int sb_testhost_publish_heartbeat(sb_testhost *th);

/* ---- a transport: snapshots it asked for --------------------------------------------- */

typedef struct sb_testhost_snapshot {
    uint64_t req;     /* the id api->snapshot() handed out (1, 2, ...) */
    uint32_t *tables; /* table indices as asked (NULL/0 = all) */
    size_t ntables;   /* entries at tables */
    bool due;         /* to be answered by a timer of the loop (script_snapshot_sync) */
    bool cut;         /* the SB_SNAPSHOT_CUT event delivered */
    bool finished;    /* SB_SNAPSHOT_DONE delivered */
    bool cancelled;   /* api->cancel() called for it */
    bool paused;      /* the callback returned SB_ERR_BUSY and no resume came since */
    unsigned resumes; /* api->snapshot_resume() calls for it */
} sb_testhost_snapshot;

/* What api->snapshot() does next: return rc; a successful call is recorded and answered
 * later by the test (sb_testhost_snapshot_rows/_done), its cut at `seq` coming with the first
 * rows or a successful done, as from a source that sets the cut itself. The cut carries every
 * table's tseq, as the core's does: those of sb_testhost_script_snapshot_tseq, else the ones
 * sb_testhost_publish_event has reached (0 before any). */
void sb_testhost_script_snapshot(sb_testhost *th, int rc, uint64_t seq);
/* The cut's tseq, one per table index of [database] tables (n must be their number: else
 * SB_ERR_INVAL; call after sb_testhost_load). NULL goes back to publish_event's. Kept until
 * set again. */
int sb_testhost_script_snapshot_tseq(sb_testhost *th, const uint64_t *tseq, size_t n);
/* Call after sb_testhost_script_snapshot: successful calls are then answered by the loop's
 * next iteration (never inside the call, as the core): the cut, these rows (n may be 0) and
 * done(status). */
void sb_testhost_script_snapshot_sync(sb_testhost *th, const sb_row *rows, size_t n, int status);
size_t sb_testhost_snapshot_count(sb_testhost *th);
sb_testhost_snapshot *sb_testhost_snapshot_get(sb_testhost *th, size_t i);
/* Deliver a batch / done to snapshot i now, the cut first when it is still due (before rows,
 * and before a done with status 0). Returns what the transport's callback returned
 * (SB_ERR_BUSY: it asks for a pause), 0 when nothing was delivered (cancelled, finished). */
int sb_testhost_snapshot_rows(sb_testhost *th, size_t i, const sb_row *rows, size_t n);
int sb_testhost_snapshot_done(sb_testhost *th, size_t i, int status);

/* ---- a transport: since and presence ------------------------------------------------- */

/* api->since() next replays msgs with seq > the asked seq, sets *last and returns rc
 * (SB_ERR_NOTFOUND: the client must resync). */
void sb_testhost_script_since(sb_testhost *th, int rc, uint64_t last, const sb_message *msgs,
                              size_t n);
size_t sb_testhost_since_calls(sb_testhost *th);
const char *sb_testhost_since_last_epoch(sb_testhost *th); /* the epoch of the last call */

/* What api->presence() returns next; every call is recorded. */
void sb_testhost_script_presence(sb_testhost *th, int rc);
size_t sb_testhost_presence_count(sb_testhost *th);
const sb_presence *sb_testhost_presence_get(sb_testhost *th, size_t i);

#ifdef __cplusplus
}
#endif

#endif /* SYNCBROKER_TESTHOST_H */
