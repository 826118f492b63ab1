/* sb_cursor.c - see sb_cursor.h. */
#include "sb_cursor.h"
#include "sb_pgarray.h"
#include "sb_retry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* $1 prev (pg_snapshot text), $2 relids (oid[] literal), $3 reader name. A change belongs to
 * this batch when its transaction is visible to the statement (MVCC) but was not in prev:
 * committed since the last read, whatever order the transactions started in.
 * The relid test is wrapped in IS TRUE so that it is a filter, never an index condition:
 * otherwise, after a bulk write and before autovacuum, the planner ANDs a bitmap of every
 * (dead) log entry of these tables with the xid range, 5 ms a read instead of 0.02 ms. */
static const char CURSOR_SQL[] =
    "WITH s AS (SELECT pg_catalog.pg_current_snapshot() AS cur),"
    " r AS (SELECT count(*) > 0 AS ok FROM syncbroker.reader"
    "       WHERE name = $3 AND pg_catalog.pg_snapshot_xmin(position)"
    "                        <= pg_catalog.pg_snapshot_xmin($1::pg_snapshot))"
    " SELECT s.cur::text, NOT r.ok, c.relid, c.pk::text, c.op, c.version, c.origin,"
    "        (extract(epoch FROM c.ts) * 1000)::int8"
    " FROM s CROSS JOIN r"
    " LEFT JOIN syncbroker.change c"
    "   ON c.xid >= pg_catalog.pg_snapshot_xmin($1::pg_snapshot)"
    "  AND NOT pg_catalog.pg_visible_in_snapshot(c.xid, $1::pg_snapshot)"
    "  AND (c.relid = ANY ($2::oid[])) IS TRUE"
    " ORDER BY c.version";

struct sb_cursor {
    sb_cursor_config cfg;
    char *prev;   /* position: snapshot of the last read; owned */
    char *relids; /* oid[] literal of the configured tables; owned, built at the first read */
    unsigned errors;
    char last_error[512];
};

int sb_cursor_create(const sb_cursor_config *cfg, sb_cursor **out)
{
    sb_cursor *c = calloc(1, sizeof *c);
    if (!c)
        return SB_ERR_NOMEM;
    c->cfg = *cfg;
    *out = c;
    return SB_OK;
}

void sb_cursor_free(sb_cursor *c)
{
    if (!c)
        return;
    free(c->prev);
    free(c->relids);
    free(c);
}

int sb_cursor_set_position(sb_cursor *c, const char *snapshot)
{
    char *copy = strdup(snapshot);
    if (!copy)
        return SB_ERR_NOMEM;
    free(c->prev);
    c->prev = copy;
    return SB_OK;
}

const char *sb_cursor_position(const sb_cursor *c)
{
    return c->prev;
}

void sb_cursor_batch_free(sb_cursor_batch *b)
{
    for (size_t i = 0; b->keys && i < b->n; i++)
        free(b->keys[i]);
    free(b->keys);
    free(b->changes);
    memset(b, 0, sizeof *b);
}

static bool parse_op(const char *s, sb_op *op)
{
    if (s[0] == '\0' || s[1] != '\0')
        return false;
    switch (s[0]) {
    case 'i':
        *op = SB_OP_INSERT;
        return true;
    case 'u':
        *op = SB_OP_UPDATE;
        return true;
    case 'd':
        *op = SB_OP_DELETE;
        return true;
    case 't':
        *op = SB_OP_TRUNCATE;
        return true;
    default:
        return false;
    }
}

/* Convert row r into b->changes[b->n]. SB_ERR_INVAL skips the row, saying why in why. */
static int convert_row(sb_cursor_batch *b, sb_table *tables, size_t ntables, const PGresult *res,
                       int r, char *why, size_t whylen)
{
    char *end;
    const char *relid_text = PQgetvalue(res, r, SB_CURSOR_COL_RELID);
    unsigned long relid = strtoul(relid_text, &end, 10);
    sb_table *t = *end ? NULL : sb_table_by_relid(tables, ntables, (uint32_t)relid);
    sb_change *ch = &b->changes[b->n];
    if (!t) {
        snprintf(why, whylen, "a change of relid %s, which is none of the configured tables",
                 relid_text);
        return SB_ERR_INVAL;
    }
    if (!parse_op(PQgetvalue(res, r, SB_CURSOR_COL_OP), &ch->op)) {
        snprintf(why, whylen, "a change of %s with unknown operation '%s'", t->name,
                 PQgetvalue(res, r, SB_CURSOR_COL_OP));
        return SB_ERR_INVAL;
    }
    char **parts = NULL;
    uint32_t nparts = 0;
    if (ch->op != SB_OP_TRUNCATE) {
        int rc = PQgetisnull(res, r, SB_CURSOR_COL_PK)
                     ? SB_ERR_INVAL
                     : sb_pgarray_parse(PQgetvalue(res, r, SB_CURSOR_COL_PK), &parts, &nparts);
        if (rc == SB_ERR_NOMEM)
            return rc;
        if (rc == SB_OK && nparts != t->npk)
            free(parts);
        if (rc != SB_OK || nparts != t->npk) { /* the key changed under a running broker */
            snprintf(why, whylen,
                     "a change of %s whose key has %u columns where its primary key had %u when "
                     "the broker resolved it: was the primary key altered? Run SELECT "
                     "syncbroker.track('%s'); and restart the broker (a new epoch)",
                     t->name, rc == SB_OK ? nparts : 0, t->npk, t->name);
            return SB_ERR_INVAL;
        }
    }
    ch->table = t->index;
    ch->key = (sb_key){.parts = (const char *const *)parts, .nparts = nparts};
    ch->version = strtoull(PQgetvalue(res, r, SB_CURSOR_COL_VERSION), NULL, 10);
    /* No position: the change log's id (the version) grows within a read but not across
     * reads (a long transaction's changes come later with lower ids), and plugin.h asks
     * positions to grow in emit order. The cursor's position is its snapshot, which it
     * records itself (pruning). No row: the core fetches it. */
    ch->position = 0;
    ch->origin =
        PQgetisnull(res, r, SB_CURSOR_COL_ORIGIN) ? NULL : PQgetvalue(res, r, SB_CURSOR_COL_ORIGIN);
    ch->ts_ms = strtoll(PQgetvalue(res, r, SB_CURSOR_COL_TS_MS), NULL, 10);
    b->keys[b->n++] = parts;
    return SB_OK;
}

int sb_cursor_batch_from_result(sb_cursor_batch *b, sb_table *tables, size_t ntables,
                                const PGresult *res)
{
    memset(b, 0, sizeof *b);
    int nrows = PQntuples(res);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQnfields(res) != SB_CURSOR_NCOLS || nrows < 1)
        return SB_ERR_INVAL;
    b->next_position = PQgetvalue(res, 0, SB_CURSOR_COL_SNAPSHOT);
    b->lost = strcmp(PQgetvalue(res, 0, SB_CURSOR_COL_LOST), "t") == 0;
    if (PQgetisnull(res, 0, SB_CURSOR_COL_RELID))
        return SB_OK; /* the LEFT JOIN's lone row: nothing committed since prev */
    b->changes = calloc((size_t)nrows, sizeof *b->changes);
    b->keys = calloc((size_t)nrows, sizeof *b->keys);
    if (!b->changes || !b->keys) {
        sb_cursor_batch_free(b);
        return SB_ERR_NOMEM;
    }
    for (int r = 0; r < nrows; r++) {
        char why[sizeof b->skip_why];
        int rc = convert_row(b, tables, ntables, res, r, why, sizeof why);
        if (rc == SB_ERR_NOMEM) {
            sb_cursor_batch_free(b);
            return rc;
        }
        if (rc != SB_OK && b->skipped++ == 0)
            memcpy(b->skip_why, why, sizeof why);
    }
    return SB_OK;
}

static void log_error(sb_cursor *c, sb_log_level level, const char *msg)
{
    c->errors++;
    if (sb_retry_should_log(c->errors, strcmp(msg, c->last_error) == 0)) {
        c->cfg.api->base.log(c->cfg.host, level, "reading changes failed: %s", msg);
        snprintf(c->last_error, sizeof c->last_error, "%s", msg);
    }
}

/* The whole batch arrives in one result: emit it while the result is alive. */
static void handle_result(sb_cursor *c, const PGresult *res)
{
    const sb_source_api *api = c->cfg.api;
    char msg[256];
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        log_error(c, SB_LOG_WARN, sb_pg_errmsg(res, msg, sizeof msg));
        return;
    }
    sb_cursor_batch b;
    int rc = sb_cursor_batch_from_result(&b, c->cfg.tables, c->cfg.ntables, res);
    if (rc != SB_OK) {
        log_error(c, SB_LOG_WARN, rc == SB_ERR_NOMEM ? "out of memory" : "unexpected result shape");
        return;
    }
    if (b.lost) {
        /* Nothing read since prev is trustworthy: the owner starts over at a new position. */
        sb_cursor_batch_free(&b);
        free(c->prev);
        c->prev = NULL;
        c->errors = 0;
        if (c->cfg.lost)
            c->cfg.lost(c->cfg.ud);
        return;
    }
    if (b.skipped) {
        /* Emitting the rest would skip these for good: stay at prev and read them again. */
        char why[sizeof b.skip_why + 128];
        snprintf(why, sizeof why,
                 "%zu change rows cannot be read (%s); holding the position, "
                 "nothing is lost",
                 b.skipped, b.skip_why);
        sb_cursor_batch_free(&b);
        log_error(c, SB_LOG_ERROR, why);
        return;
    }
    c->errors = 0;
    if (b.n)
        api->emit(c->cfg.host, b.changes, b.n);
    rc = sb_cursor_set_position(c, b.next_position);
    sb_cursor_batch_free(&b);
    if (rc != SB_OK)
        log_error(c, SB_LOG_WARN, "out of memory");
}

static void on_result(void *ud, const PGresult *res, int status)
{
    sb_cursor *c = ud;
    if (res) {
        handle_result(c, res);
        return;
    }
    if (c->cfg.done)
        c->cfg.done(c->cfg.ud, status);
}

static int build_relids(sb_cursor *c)
{
    char(*nums)[12] = malloc(c->cfg.ntables * sizeof *nums + 1);
    const char **parts = malloc(c->cfg.ntables * sizeof *parts + 1);
    int rc = SB_ERR_NOMEM;
    if (nums && parts) {
        for (size_t i = 0; i < c->cfg.ntables; i++) {
            snprintf(nums[i], sizeof nums[i], "%u", c->cfg.tables[i].relid);
            parts[i] = nums[i];
        }
        rc = sb_pgarray_build(parts, c->cfg.ntables, &c->relids);
    }
    free(nums);
    free(parts);
    return rc;
}

int sb_cursor_read(sb_cursor *c, sb_pg *pg)
{
    if (!c->prev)
        return SB_ERR_STATE;
    if (!c->relids) {
        int rc = build_relids(c);
        if (rc != SB_OK)
            return rc;
    }
    const char *params[] = {c->prev, c->relids, c->cfg.reader};
    return sb_pg_query(pg, CURSOR_SQL, 3, params, SB_PG_PREPARE, on_result, c);
}
