/*
 * sb_cursor.h - the gap-free change cursor of docs/capture.md.
 *
 * The cursor remembers the snapshot `prev` of its last read (in memory, so it survives
 * reconnects) and reads, in one statement, every change whose transaction committed since:
 * visible to the statement but not in prev. It hands them to api->emit() as one batch in
 * version order, then moves prev to the statement's snapshot. The same statement checks that
 * the reader row still guards prev (pruning never removed what the cursor still needs); if
 * not, the cursor emits nothing, drops its position and calls cfg.lost: its owner registers
 * a new position and starts a new epoch there, once. A change row the cursor cannot convert
 * (an unknown table or operation, or a key that no longer fits the table's primary key) holds
 * the cursor where it is: nothing is emitted or skipped, the error is logged, and every later
 * read tries again.
 */
#ifndef SB_CURSOR_H
#define SB_CURSOR_H

#include "sb_pg.h"
#include "sb_table.h"

#include <stdbool.h>
#include <stddef.h>
#include <syncbroker/plugin.h>

typedef struct sb_cursor sb_cursor;

typedef struct sb_cursor_config {
    const sb_source_api *api;
    sb_host *host;
    sb_table *tables; /* borrowed; resolved before the first read */
    size_t ntables;
    const char *reader;                 /* syncbroker.reader name; borrowed */
    void (*done)(void *ud, int status); /* a read finished (after emitting); may be NULL */
    void (*lost)(void *ud); /* the reader row no longer guards the position, now dropped */
    void *ud;
} sb_cursor_config;

int sb_cursor_create(const sb_cursor_config *cfg, sb_cursor **out);
void sb_cursor_free(sb_cursor *c);

/* Place the cursor at a snapshot (text form "xmin:xmax:xip,..."). Copied. */
int sb_cursor_set_position(sb_cursor *c, const char *snapshot);

/* The current position (NULL before the first set_position). Valid until the next read
 * completes. */
const char *sb_cursor_position(const sb_cursor *c);

/* Queue one read on pg. SB_ERR_STATE when not positioned; sb_pg_query() errors. */
int sb_cursor_read(sb_cursor *c, sb_pg *pg);

/* ---- exposed for unit tests: one read's result as changes ----------------------------- */

/* Columns of the cursor statement. */
enum {
    SB_CURSOR_COL_SNAPSHOT, /* the statement's snapshot: the next prev */
    SB_CURSOR_COL_LOST,     /* bool: the reader row no longer guards prev */
    SB_CURSOR_COL_RELID,
    SB_CURSOR_COL_PK, /* text[] literal; NULL for a truncate */
    SB_CURSOR_COL_OP, /* i u d t */
    SB_CURSOR_COL_VERSION,
    SB_CURSOR_COL_ORIGIN,
    SB_CURSOR_COL_TS_MS,
    SB_CURSOR_NCOLS
};

/* The changes of one result: strings point into the result and into `keys` (parsed key
 * blocks). Owned by the caller: release with sb_cursor_batch_free() before clearing res. */
typedef struct sb_cursor_batch {
    sb_change *changes;
    size_t n;
    char ***keys; /* one sb_pgarray block per change (NULL for truncates) */
    const char *next_position;
    bool lost;
    size_t skipped;     /* rows that could not be converted (logged by the caller) */
    char skip_why[256]; /* what was wrong with the first of them, for the log */
} sb_cursor_batch;

/* Convert a cursor result. Rows of an unknown relid, op or malformed key are counted in
 * skipped, the first one described in skip_why. SB_ERR_INVAL when the result does not have
 * the cursor's shape; SB_ERR_NOMEM. */
int sb_cursor_batch_from_result(sb_cursor_batch *b, sb_table *tables, size_t ntables,
                                const PGresult *res);
void sb_cursor_batch_free(sb_cursor_batch *b);

#endif /* SB_CURSOR_H */
