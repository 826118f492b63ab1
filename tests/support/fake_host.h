/*
 * fake_host.h - a recording fake of the broker's host APIs (sb_source_api, sb_transport_api)
 * for plugin unit tests.
 *
 * One fake_host stands for one plugin instance's host: hand fake_host_source_api() or
 * fake_host_transport_api(), and fake_host_handle(fh), to the plugin's create() (a source
 * also gets fake_host_setup()). It owns a real ZeroMQ context and a tiny
 * single-threaded loop (zmq_poll over the plugin's watches, plus timers), so a test drives
 * real sockets in one thread: send from a client socket, then fake_host_run_until() a
 * predicate (e.g. "the client socket is readable") holds.
 *
 * It records what the plugin asks (emitted changes with their rows, fetched rows, done
 * statuses, snapshot and since calls, presence announcements, cancels, log lines; tables as
 * indices, as they cross the ABI) and answers with scripted
 * values. Everything recorded is deep-copied and owned by the fake_host; pointers returned by
 * the getters stay valid until fake_host_clear_records() or fake_host_free().
 *
 * Set FAKE_HOST_LOG=1 in the environment to echo log lines to stderr.
 */
#ifndef FAKE_HOST_H
#define FAKE_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <syncbroker/plugin.h>

typedef struct fake_host fake_host;

/* A new host with a fresh ZeroMQ context, epoch "fake-epoch", no tables, zeroed stats,
 * snapshot/since/presence answering SB_OK. NULL when out of memory. */
fake_host *fake_host_new(void);
/* Free everything; closes nothing of the plugin's (stop it first), terminates the context. */
void fake_host_free(fake_host *fh);

const sb_source_api *fake_host_source_api(void);
const sb_transport_api *fake_host_transport_api(void);
sb_host *fake_host_handle(fake_host *fh);
void *fake_host_zmq_context(fake_host *fh);

/* ---- options ------------------------------------------------------------------------- */

/* Resolve a plugin's option spec like the broker does: defaults, overridden by
 * "name=value" strings (NULL-terminated list, may be NULL). out needs one entry per spec
 * entry; strings point into spec/overrides. Returns the number of entries, or -1 for an
 * override naming an unknown key, a bad number or a bad boolean, or a required key not
 * given. */
int fake_host_options(const sb_option_spec *spec, const char *const *overrides,
                      sb_option_value *out, size_t cap);

/* ---- loop ---------------------------------------------------------------------------- */

/* Poll the watches once for up to timeout_ms (shortened by due timers and snapshots), run
 * the callbacks of ready watches, then due timers, then answer the snapshots due at once.
 * Returns the number of callbacks run. */
int fake_host_run_once(fake_host *fh, int timeout_ms);

typedef bool (*fake_host_pred)(void *ud);
/* Run the loop until pred(ud) is true (checked before every iteration). Returns false when
 * timeout_ms passed first. */
bool fake_host_run_until(fake_host *fh, fake_host_pred pred, void *ud, int timeout_ms);

/* A predicate for fake_host_run_until: the ZeroMQ socket ud has a message to read. */
bool fake_host_zsock_readable(void *zsock);

/* Number of live watches and timers (leak checks after a plugin's stop()). */
size_t fake_host_watch_count(fake_host *fh);
size_t fake_host_timer_count(fake_host *fh);

/* ---- configuration the plugin reads -------------------------------------------------- */

/* The broker's table list, which api->base.tables() returns and fake_host_setup() hands a
 * source (the same indices). Copied. */
void fake_host_set_tables(fake_host *fh, const char *const *tables, size_t n);
void fake_host_set_epoch(fake_host *fh, const char *epoch); /* copied */
/* A source's setup as the broker builds it: its option values (resolved with
 * fake_host_options, from header.options and database_options) and the host's tables.
 * Borrows everything: valid while the arrays live and the tables are not set again. */
sb_source_setup fake_host_setup(fake_host *fh, const sb_option_value *options,
                                const sb_option_value *database);
/* The counters api->stats() returns; modify them freely. */
sb_stats *fake_host_stats(fake_host *fh);

/* ---- transports: snapshot ------------------------------------------------------------ */

typedef struct fake_snapshot {
    uint64_t req;
    uint32_t *tables; /* table indices as asked (NULL/0 = all) */
    size_t ntables;
    sb_snapshot_fn fn;
    void *ud;
    bool due;       /* to be answered at once, by the next fake_host_run_once */
    bool cut;       /* the SB_SNAPSHOT_CUT event delivered */
    bool finished;  /* SB_SNAPSHOT_DONE delivered */
    bool cancelled; /* api->cancel() called for it */
} fake_snapshot;

/* What api->snapshot() does next: return rc; a successful call is recorded and answered
 * later by the test (fake_host_snapshot_rows/_done), its cut at `seq` (and the tseq of
 * fake_host_script_snapshot_tseq) coming with the first rows or a successful done, as from a
 * source that sets the cut itself. */
void fake_host_script_snapshot(fake_host *fh, int rc, uint64_t seq);
/* The cut's tseq, one per table index (copied; NULL: the cut carries none). Kept until set
 * again. */
void fake_host_script_snapshot_tseq(fake_host *fh, const uint64_t *tseq, size_t n);
/* Call after fake_host_script_snapshot: successful calls are now answered at once, by the
 * next fake_host_run_once (never inside the call, as the core): the cut, these rows (copied;
 * n may be 0) and done(status). */
void fake_host_script_snapshot_sync(fake_host *fh, const sb_row *rows, size_t n, int status);
size_t fake_host_snapshot_count(fake_host *fh);
fake_snapshot *fake_host_snapshot_get(fake_host *fh, size_t i);
/* Deliver a batch / done to snapshot i now (asynchronous answer), the cut first when it is
 * still due (before rows, and before a done with status 0). */
void fake_host_snapshot_rows(fake_host *fh, size_t i, const sb_row *rows, size_t n);
void fake_host_snapshot_done(fake_host *fh, size_t i, int status);

/* ---- transports: since, presence ----------------------------------------------------- */

/* api->since() next replays msgs (copied) with seq > the asked seq, sets *last and returns
 * rc (SB_ERR_NOTFOUND: resync). */
void fake_host_script_since(fake_host *fh, int rc, uint64_t last, const sb_message *msgs, size_t n);
size_t fake_host_since_calls(fake_host *fh);
const char *fake_host_since_last_epoch(fake_host *fh); /* epoch of the last call */

void fake_host_script_presence(fake_host *fh, int rc);
size_t fake_host_presence_count(fake_host *fh);
const sb_presence *fake_host_presence_get(fake_host *fh, size_t i);

/* ---- sources: emit, rows, done, resync (snapshot_cut and lease are logged) ------------ */

size_t fake_host_change_count(fake_host *fh);
const sb_change *fake_host_change_get(fake_host *fh, size_t i);
size_t fake_host_row_count(fake_host *fh);
const sb_row *fake_host_row_get(fake_host *fh, size_t i);
uint64_t fake_host_row_req(fake_host *fh, size_t i);
/* Status passed to api->done() for req, or 1 when done was not called for it. */
int fake_host_done_status(fake_host *fh, uint64_t req);
size_t fake_host_resync_count(fake_host *fh);

/* ---- log ----------------------------------------------------------------------------- */

size_t fake_host_log_count(fake_host *fh);
const char *fake_host_log_line(fake_host *fh, size_t i);
/* First captured line containing needle, or NULL. */
const char *fake_host_log_find(fake_host *fh, const char *needle);

/* Forget every recorded call, snapshot and log line (scripts stay). */
void fake_host_clear_records(fake_host *fh);

#endif /* FAKE_HOST_H */
