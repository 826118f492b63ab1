/* sb_snapshot.c - see sb_snapshot.h. */
#include "sb_snapshot.h"
#include "sb_rows.h"

#include <stdlib.h>
#include <string.h>

typedef struct snap_req {
    struct snap_req *next;
    sb_snapshot *owner;
    uint64_t req;
    const sb_table **tables; /* n, borrowed */
    size_t n;
    /* Queries of a running request, in order: BEGIN, one scan per table, COMMIT. Query k
     * is running while nfinished == k. */
    size_t nqueued, nfinished;
    bool started, enqueuing, cancelled;
    int status;
    sb_rowbatch batch;
} snap_req;

struct sb_snapshot {
    const sb_source_api *api;
    sb_host *host;
    sb_pg *pg;
    size_t batch_rows;
    snap_req *head, *tail; /* FIFO; head runs when started */
    sb_timer *kick;        /* starts the head from the loop, never inside request() */
    bool closing;
};

static void req_free(snap_req *r)
{
    sb_rowbatch_free(&r->batch);
    free(r->tables);
    free(r);
}

static void unlink_req(sb_snapshot *s, snap_req *r)
{
    snap_req **pp = &s->head, *prev = NULL;
    while (*pp && *pp != r) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (!*pp)
        return;
    *pp = r->next;
    if (s->tail == r)
        s->tail = prev;
}

static void deliver(sb_snapshot *s, snap_req *r)
{
    if (r->cancelled || r->status)
        return;
    int rc = sb_rowbatch_deliver(&r->batch, s->api, s->host, r->req);
    if (rc)
        r->status = rc;
}

static void finish(sb_snapshot *s, snap_req *r)
{
    unlink_req(s, r);
    if (!r->cancelled && !s->closing)
        s->api->done(s->host, r->req, r->status);
    req_free(r);
}

static void on_result(void *ud, const PGresult *res, int status);

/* Queue BEGIN, the scans and COMMIT. Stops at the first refusal (the connection dropped while
 * sending, or out of memory); what was queued still completes through on_result. */
static void enqueue_all(sb_snapshot *s, snap_req *r)
{
    int rc = sb_pg_query(s->pg, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, 0,
                         on_result, r);
    for (size_t i = 0; rc == SB_OK && i <= r->n; i++) {
        r->nqueued++;
        rc = i < r->n ? sb_pg_query(s->pg, r->tables[i]->snapshot_sql, 0, NULL, SB_PG_SINGLE_ROW,
                                    on_result, r)
                      : sb_pg_query(s->pg, "COMMIT", 0, NULL, 0, on_result, r);
    }
    if (rc == SB_OK) {
        r->nqueued++;
        return;
    }
    if (!r->status)
        r->status = rc == SB_ERR_NOMEM ? rc : SB_ERR_DB;
    if (r->nqueued && rc != SB_ERR_BUSY) {
        /* A transaction is open without its COMMIT: start afresh on a new connection. */
        sb_pg_close(s->pg);
    }
}

/* Start queued requests until one is running. */
static void begin(sb_snapshot *s)
{
    while (!s->closing && s->head && !s->head->started) {
        snap_req *r = s->head;
        r->started = true;
        r->enqueuing = true;
        if (sb_pg_connect(s->pg) == SB_OK)
            enqueue_all(s, r);
        else
            r->status = SB_ERR_DB;
        r->enqueuing = false;
        if (r->nfinished < r->nqueued)
            return;
        finish(s, r);
    }
}

static void on_kick(void *ud)
{
    sb_snapshot *s = ud;
    s->kick = NULL; /* one-shot: freed by the loop */
    begin(s);
}

static void add_row(sb_snapshot *s, snap_req *r, const sb_table *t, const PGresult *res)
{
    const char *parts[64];
    uint32_t npk = t->npk;
    if (npk > sizeof parts / sizeof parts[0]) { /* PostgreSQL allows 32 key columns */
        r->status = SB_ERR_INVAL;
        return;
    }
    for (uint32_t i = 0; i < npk; i++)
        parts[i] = PQgetvalue(res, 0, SB_SNAPSHOT_COL_KEY + (int)i);
    uint64_t version = strtoull(PQgetvalue(res, 0, SB_SNAPSHOT_COL_VERSION), NULL, 10);
    const char *origin = PQgetisnull(res, 0, SB_SNAPSHOT_COL_ORIGIN)
                             ? NULL
                             : PQgetvalue(res, 0, SB_SNAPSHOT_COL_ORIGIN);
    if (sb_rowbatch_add(&r->batch, t->index, parts, npk, version, origin, res, 0,
                        SB_SNAPSHOT_COL_KEY + (int)npk)) {
        r->status = SB_ERR_NOMEM;
        return;
    }
    if (sb_rowbatch_count(&r->batch) >= s->batch_rows)
        deliver(s, r);
}

static void on_result(void *ud, const PGresult *res, int status)
{
    snap_req *r = ud;
    sb_snapshot *s = r->owner;
    size_t k = r->nfinished; /* 0 BEGIN, 1..n scans, n + 1 COMMIT */
    if (res) {
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_SINGLE_TUPLE && k >= 1 && k <= r->n) {
            if (!r->cancelled && !r->status)
                add_row(s, r, r->tables[k - 1], res);
        } else if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK && !r->status) {
            char msg[256];
            s->api->base.log(s->host, SB_LOG_WARN, "snapshot failed: %s",
                             sb_pg_errmsg(res, msg, sizeof msg));
            r->status = SB_ERR_DB;
        }
        return;
    }
    r->nfinished++;
    if (status && !r->status)
        r->status = status == SB_ERR_STATE ? SB_ERR_DB : status;
    if (k >= 1 && k <= r->n && !s->closing)
        deliver(s, r);
    if (r->enqueuing || r->nfinished < r->nqueued)
        return;
    finish(s, r);
    begin(s);
}

int sb_snapshot_create(const sb_pg_config *pg_cfg, size_t batch_rows, sb_snapshot **out)
{
    sb_snapshot *s = calloc(1, sizeof *s);
    if (!s)
        return SB_ERR_NOMEM;
    s->api = pg_cfg->api;
    s->host = pg_cfg->host;
    s->batch_rows = batch_rows ? batch_rows : 1;
    sb_pg_config cfg = *pg_cfg;
    cfg.on_ready = NULL;
    cfg.on_lost = NULL;
    cfg.on_notify = NULL;
    int rc = sb_pg_create(&cfg, &s->pg);
    if (rc) {
        free(s);
        return rc;
    }
    *out = s;
    return SB_OK;
}

int sb_snapshot_request(sb_snapshot *s, uint64_t req, const sb_table *const *tables, size_t n)
{
    if (s->closing)
        return SB_ERR_STATE;
    if (sb_pg_connect(s->pg) != SB_OK)
        return SB_ERR_BUSY; /* the last connect failed: the client hears "unavailable" now */
    snap_req *r = calloc(1, sizeof *r);
    if (!r)
        return SB_ERR_NOMEM;
    r->tables = malloc((n ? n : 1) * sizeof *r->tables);
    if (!r->tables) {
        free(r);
        return SB_ERR_NOMEM;
    }
    memcpy(r->tables, tables, n * sizeof *r->tables);
    r->owner = s;
    r->req = req;
    r->n = n;
    sb_rowbatch_init(&r->batch);
    if (!s->head && !s->kick && s->api->base.timer_start(s->host, 0, 0, on_kick, s, &s->kick) < 0) {
        s->kick = NULL;
        req_free(r);
        return SB_ERR_NOMEM;
    }
    if (s->tail)
        s->tail->next = r;
    else
        s->head = r;
    s->tail = r;
    return SB_OK;
}

bool sb_snapshot_cancel(sb_snapshot *s, uint64_t req)
{
    for (snap_req *r = s->head; r; r = r->next) {
        if (r->req != req || r->cancelled)
            continue;
        if (r->started) {
            r->cancelled = true; /* its queries finish; their rows are dropped */
        } else {
            unlink_req(s, r);
            req_free(r);
        }
        return true;
    }
    return false;
}

void sb_snapshot_close(sb_snapshot *s)
{
    s->closing = true;
    s->api->base.timer_stop(s->kick);
    s->kick = NULL;
    sb_pg_close(s->pg); /* completes the running request's queries without host calls */
    while (s->head) {
        snap_req *r = s->head;
        unlink_req(s, r);
        req_free(r);
    }
}

void sb_snapshot_free(sb_snapshot *s)
{
    if (!s)
        return;
    sb_snapshot_close(s);
    sb_pg_free(s->pg);
    free(s);
}
