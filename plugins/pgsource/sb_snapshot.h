/*
 * sb_snapshot.h - consistent snapshots streamed on a connection of their own, so that a large
 * snapshot never stalls the change cursor. Per request: BEGIN ISOLATION LEVEL REPEATABLE
 * READ READ ONLY, one scan per table in single-row mode (rows handed to api->rows() in
 * batches), COMMIT, api->done(). Requests are served one after the other (FIFO). The
 * connection opens on the first request and stays open for the next.
 */
#ifndef SB_SNAPSHOT_H
#define SB_SNAPSHOT_H

#include "sb_pg.h"
#include "sb_table.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sb_snapshot sb_snapshot;

/* pg_cfg describes the snapshot connection (its callbacks are set here); batch_rows rows per
 * api->rows() call. */
int sb_snapshot_create(const sb_pg_config *pg_cfg, size_t batch_rows, sb_snapshot **out);

/* Queue a snapshot of the given (resolved) tables; the array is copied, the tables are
 * borrowed. SB_ERR_BUSY while the connection waits to reconnect; SB_ERR_NOMEM. On success
 * api->done(req) follows exactly once unless the request is cancelled or the streamer closed. */
int sb_snapshot_request(sb_snapshot *s, uint64_t req, const sb_table *const *tables, size_t n);

/* Forget a request: dropped if queued, silenced if running (its SQL finishes and is
 * discarded). False when unknown. */
bool sb_snapshot_cancel(sb_snapshot *s, uint64_t req);

/* Close the connection and forget every request, without host calls. */
void sb_snapshot_close(sb_snapshot *s);

/* Close and free. NULL is ignored. */
void sb_snapshot_free(sb_snapshot *s);

#endif /* SB_SNAPSHOT_H */
