/* sb_fetch.c - see sb_fetch.h. */
#include "sb_fetch.h"
#include "sb_pgarray.h"
#include "sb_rows.h"

#include <stdlib.h>
#include <string.h>

typedef struct fetch_req {
    const sb_source_api *api;
    sb_host *host;
    const sb_table *t;
    uint64_t req;
    size_t n;
    const char **parts; /* n * npk pointers into strings, key-major */
    char *strings;      /* the copied parts */
    sb_rowbatch batch;
    int status;
} fetch_req;

static void fetch_free(fetch_req *f)
{
    sb_rowbatch_free(&f->batch);
    free(f->parts);
    free(f->strings);
    free(f);
}

static void collect(fetch_req *f, const PGresult *res)
{
    char msg[256];
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        f->api->base.log(f->host, SB_LOG_WARN, "fetching %zu rows of %s failed: %s", f->n,
                         f->t->name, sb_pg_errmsg(res, msg, sizeof msg));
        f->status = SB_ERR_DB;
        return;
    }
    for (int r = 0; r < PQntuples(res); r++) {
        unsigned long ord = strtoul(PQgetvalue(res, r, SB_FETCH_COL_ORD), NULL, 10);
        if (ord < 1 || ord > f->n)
            continue; /* not one of ours: the key stays unanswered and the core retries */
        bool present = strcmp(PQgetvalue(res, r, SB_FETCH_COL_PRESENT), "t") == 0;
        uint64_t version = PQgetisnull(res, r, SB_FETCH_COL_VERSION)
                               ? 0
                               : strtoull(PQgetvalue(res, r, SB_FETCH_COL_VERSION), NULL, 10);
        const char *origin = PQgetisnull(res, r, SB_FETCH_COL_ORIGIN)
                                 ? NULL
                                 : PQgetvalue(res, r, SB_FETCH_COL_ORIGIN);
        if (sb_rowbatch_add(&f->batch, f->t->index, &f->parts[(ord - 1) * f->t->npk], f->t->npk,
                            version, origin, present ? res : NULL, r, SB_FETCH_COL_ROW)) {
            f->status = SB_ERR_NOMEM;
            return;
        }
    }
}

static void on_result(void *ud, const PGresult *res, int status)
{
    fetch_req *f = ud;
    if (res) {
        collect(f, res);
        return;
    }
    if (status != SB_ERR_STATE) { /* SB_ERR_STATE: the source stopped; no host calls */
        if (status == SB_OK && f->status == SB_OK)
            f->status = sb_rowbatch_deliver(&f->batch, f->api, f->host, f->req);
        f->api->done(f->host, f->req, status ? status : f->status);
    }
    fetch_free(f);
}

/* One text[] literal per key column: column i holds part i of every key. */
static int build_params(const fetch_req *f, char **params)
{
    uint32_t npk = f->t->npk;
    const char **column = malloc(f->n * sizeof *column);
    if (!column)
        return SB_ERR_NOMEM;
    int rc = SB_OK;
    for (uint32_t i = 0; i < npk && rc == SB_OK; i++) {
        for (size_t k = 0; k < f->n; k++)
            column[k] = f->parts[k * npk + i];
        rc = sb_pgarray_build(column, f->n, &params[i]);
    }
    free(column);
    return rc;
}

int sb_fetch_start(sb_pg *pg, const sb_source_api *api, sb_host *host, const sb_table *t,
                   uint64_t req, const sb_key *keys, size_t n)
{
    if (n == 0)
        return SB_ERR_INVAL;
    size_t bytes = 0;
    for (size_t k = 0; k < n; k++) {
        if (keys[k].nparts != t->npk || !keys[k].parts)
            return SB_ERR_INVAL;
        for (uint32_t i = 0; i < t->npk; i++) {
            if (!keys[k].parts[i])
                return SB_ERR_INVAL;
            bytes += strlen(keys[k].parts[i]) + 1;
        }
    }
    fetch_req *f = calloc(1, sizeof *f);
    char **params = calloc(t->npk, sizeof *params);
    if (!f || !params) {
        free(f);
        free(params);
        return SB_ERR_NOMEM;
    }
    *f = (fetch_req){.api = api, .host = host, .t = t, .req = req, .n = n};
    sb_rowbatch_init(&f->batch);
    f->parts = malloc(n * t->npk * sizeof *f->parts);
    f->strings = malloc(bytes);
    int rc = SB_ERR_NOMEM;
    if (f->parts && f->strings) {
        char *w = f->strings;
        for (size_t k = 0; k < n; k++)
            for (uint32_t i = 0; i < t->npk; i++) {
                size_t len = strlen(keys[k].parts[i]) + 1;
                f->parts[k * t->npk + i] = memcpy(w, keys[k].parts[i], len);
                w += len;
            }
        rc = build_params(f, params);
    }
    if (rc == SB_OK)
        rc = sb_pg_query(pg, t->fetch_sql, (int)t->npk, (const char *const *)params, SB_PG_PREPARE,
                         on_result, f);
    for (uint32_t i = 0; i < t->npk; i++)
        free(params[i]);
    free(params);
    if (rc != SB_OK)
        fetch_free(f);
    return rc;
}
