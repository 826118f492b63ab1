/*
 * debounce.h - per-entity coalescing: at most one event per entity per window, the
 * latest state never lost.
 *
 * An entity is (table, primary key). The first change of an idle entity is published at
 * once (leading edge); changes inside the entity's window are merged and, when the window
 * closes, one event carries the latest state. The window restarts only if something was
 * published, so an idle entity is forgotten one window after its last event and costs
 * nothing.
 *
 * The engine does no I/O and reads no clock: rows are requested through ops->fetch and
 * handed back with sb_debounce_rows/sb_debounce_done; time is the `now` argument. The core
 * drives it from the loop; the unit tests drive it with a fake clock.
 *
 * Op algebra, relative to what subscribers last saw of the entity:
 *   nothing published + insert..update  -> insert
 *   insert (unpublished) + delete        -> nothing
 *   published + ..delete                 -> delete
 *   published as deleted + insert        -> insert
 *   published as existing + delete..insert -> update (subscribers still hold the old row)
 * "Nothing" needs care: a snapshot may have shown a client the row of an insert that was
 * never published. Changes written before the time set with sb_debounce_set_exposure()
 * are treated as possibly seen, so their delete is published.
 *
 * The row and version published are those read at flush time (the newest committed state),
 * so an event never pairs a row with an older version. A change that comes with its row
 * (sb_change.has_row) keeps it with the pending entity: when the newest pending change has
 * its row, the entity is published from it without a fetch.
 */
#ifndef SB_DEBOUNCE_H
#define SB_DEBOUNCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <syncbroker/plugin.h>

typedef struct sb_debounce sb_debounce;

/* An event ready to publish; every pointer is borrowed for the call. */
typedef struct sb_debounce_event {
    uint32_t table; /* index into the configured tables */
    sb_key key;     /* nparts == 0 for TRUNCATE */
    sb_op op;
    uint64_t version;
    const char *origin;
    int64_t ts_ms;
    const void *row; /* packed msgpack map, NULL for delete/truncate */
    size_t row_len;
    uint32_t n; /* database changes coalesced into this event */
} sb_debounce_event;

typedef struct sb_debounce_ops {
    /* Ask for the current rows of keys (borrowed) of one table; set *req to an id unique
     * among requests in flight. A negative return leaves the entities pending for retry. */
    int (*fetch)(void *ud, uint32_t table, const sb_key *keys, size_t n, uint64_t *req);
    void (*publish)(void *ud, const sb_debounce_event *ev);
} sb_debounce_ops;

/* window_ms: one window per table (0 = off), copied. ops/ud are borrowed for the engine's
 * life. *out is owned by the caller (sb_debounce_free). */
int sb_debounce_new(size_t ntables, const uint64_t *window_ms, const sb_debounce_ops *ops, void *ud,
                    sb_debounce **out);
void sb_debounce_free(sb_debounce *d);

/* Replace the per-table windows (config reload); open windows keep their deadline. */
void sb_debounce_set_windows(sb_debounce *d, const uint64_t *window_ms);

/* Snapshots may have exposed rows written before until_ms (change ts, ms since the Unix
 * epoch; INT64_MAX while a snapshot runs). Initially INT64_MIN: nothing exposed. */
void sb_debounce_set_exposure(sb_debounce *d, int64_t until_ms);

/* Feed one change read from the database (copied, with its row if it has one). TRUNCATE is
 * published at once. */
int sb_debounce_change(sb_debounce *d, uint32_t table, const sb_change *c, uint64_t now);

/* True if req is a fetch this engine issued and has not seen finish. */
bool sb_debounce_owns(const sb_debounce *d, uint64_t req);

/* Rows answering fetch req (copied as needed); may publish. */
void sb_debounce_rows(sb_debounce *d, uint64_t req, const sb_row *rows, size_t n, uint64_t now);

/* Fetch req finished; entities it did not answer (or all, on error) are retried later. */
void sb_debounce_done(sb_debounce *d, uint64_t req, int status, uint64_t now);

/* Close due windows, publish ready entities that have their row and issue fetches for the
 * other ready ones, touching at most `budget` entities so the loop never stalls. Returns how
 * many it touched. */
size_t sb_debounce_run(sb_debounce *d, uint64_t now, size_t budget);

/* When sb_debounce_run next has work: a time <= now means "now"; UINT64_MAX means never. */
uint64_t sb_debounce_next_deadline(const sb_debounce *d, uint64_t now);

/* Shutdown: close every window now so that every pending entity is fetched and published. */
void sb_debounce_flush_all(sb_debounce *d);

/* Entities with changes not yet published (pending or being fetched). */
size_t sb_debounce_pending(const sb_debounce *d);
/* The lowest source position (sb_change.position) of a change not yet published, pending or
 * being fetched; 0 when none is. Walks every entity: for the core's once-a-heartbeat use. */
uint64_t sb_debounce_lowest_position(const sb_debounce *d);
/* Entities held in memory (pending, in flight, or with an open window). */
size_t sb_debounce_entities(const sb_debounce *d);
/* Changes merged into another event or dropped as already published. */
uint64_t sb_debounce_coalesced(const sb_debounce *d);
/* Fetch requests in flight. */
size_t sb_debounce_inflight(const sb_debounce *d);

/* Keys asked for per fetch request and fetch requests in flight at most. */
#define SB_DEBOUNCE_FETCH_KEYS 500
#define SB_DEBOUNCE_MAX_INFLIGHT 8
/* Wait before fetching again after a failed fetch. */
#define SB_DEBOUNCE_RETRY_MS 250

#endif
