/* sb_pg.c - see sb_pg.h. */
#include "sb_pg.h"
#include "sb_retry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum pg_state { ST_IDLE, ST_CONNECTING, ST_READY, ST_BACKOFF } pg_state;

/* A statement prepared on the current connection, found by its SQL text. */
typedef struct stmt {
    struct stmt *next;
    char name[24];
    char sql[];
} stmt;

/* One queued query; sql and params live in the same allocation. */
typedef struct query {
    struct query *next;
    char *sql;
    char **params;
    int nparams;
    unsigned flags;
    bool failed;     /* an error result arrived */
    stmt *preparing; /* SB_PG_PREPARE: the PREPARE in front of this query runs; owned */
    sb_pg_result_fn fn;
    void *ud;
} query;

struct sb_pg {
    sb_pg_config cfg;
    char *app_name, *label; /* owned copies */
    PGconn *conn;
    pg_state state;
    sb_watch *watch;
    int watch_fd;
    unsigned watch_events;
    sb_timer *timer; /* connect timeout while connecting, reconnect delay while backing off */
    query *head, *tail;
    stmt *stmts;       /* prepared on this connection; owned, emptied when it goes away */
    unsigned stmt_seq; /* names stay unique per connection, also after a statement is dropped */
    bool inflight;     /* head has been sent */
    unsigned gen;      /* bumped whenever the connection goes away: stale loops stop */
    unsigned attempt;  /* back-off exponent */
    unsigned failures;
    char last_err[256]; /* last failure logged, for rate limiting */
    uint32_t rnd;
};

/* libpq messages end with a newline and may continue on tab-indented lines: one line. */
static void one_line(const char *in, char *out, size_t len)
{
    size_t w = 0;
    for (; in && *in && w + 1 < len; in++) {
        char c = (*in == '\n' || *in == '\t' || *in == '\r') ? ' ' : *in;
        if (c == ' ' && (w == 0 || out[w - 1] == ' '))
            continue;
        out[w++] = c;
    }
    while (w && out[w - 1] == ' ')
        w--;
    out[w] = '\0';
}

const char *sb_pg_sqlstate(const PGresult *res)
{
    const char *s = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return s ? s : "";
}

const char *sb_pg_errmsg(const PGresult *res, char *buf, size_t len)
{
    const char *m = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    one_line(m ? m : (res ? PQresultErrorMessage(res) : "no result"), buf, len);
    return buf;
}

int sb_pg_create(const sb_pg_config *cfg, sb_pg **out)
{
    sb_pg *pg = calloc(1, sizeof *pg);
    if (!pg)
        return SB_ERR_NOMEM;
    pg->cfg = *cfg;
    pg->app_name = strdup(cfg->app_name);
    pg->label = strdup(cfg->label);
    if (!pg->app_name || !pg->label) {
        sb_pg_free(pg);
        return SB_ERR_NOMEM;
    }
    pg->cfg.app_name = pg->app_name;
    pg->cfg.label = pg->label;
    pg->watch_fd = -1;
    pg->rnd = (uint32_t)cfg->api->base.now_ms(cfg->host) ^ (uint32_t)(uintptr_t)pg;
    *out = pg;
    return SB_OK;
}

/* ---- watch and timer ---------------------------------------------------------------- */

static void on_io(void *ud, unsigned revents);

/* Watch fd for events; libpq may hand us a different socket at any PQconnectPoll. */
static int set_watch(sb_pg *pg, int fd, unsigned events)
{
    const sb_source_api *api = pg->cfg.api;
    if (pg->watch && pg->watch_fd != fd) {
        api->base.unwatch(pg->watch);
        pg->watch = NULL;
    }
    if (!pg->watch) {
        int rc = api->base.watch_fd(pg->cfg.host, fd, events, on_io, pg, &pg->watch);
        if (rc < 0) {
            pg->watch = NULL;
            return rc;
        }
        pg->watch_fd = fd;
    } else if (events != pg->watch_events) {
        api->base.watch_set(pg->watch, events);
    }
    pg->watch_events = events;
    return SB_OK;
}

static void stop_timer(sb_pg *pg)
{
    pg->cfg.api->base.timer_stop(pg->timer);
    pg->timer = NULL;
}

/* Forget the connection: no watch, no timer, no PGconn. Loops still running on it see the
 * generation change and stop. */
static void drop_conn(sb_pg *pg)
{
    pg->gen++;
    pg->cfg.api->base.unwatch(pg->watch);
    pg->watch = NULL;
    pg->watch_fd = -1;
    stop_timer(pg);
    if (pg->conn)
        PQfinish(pg->conn);
    pg->conn = NULL;
    pg->inflight = false;
    while (pg->stmts) {
        stmt *next = pg->stmts->next;
        free(pg->stmts);
        pg->stmts = next;
    }
}

static void query_free(query *q)
{
    free(q->preparing);
    free(q);
}

/* Complete every queued query (the running one included) with status. Queries queued by
 * these callbacks are refused, since the state is no longer connecting or ready. */
static void fail_queries(sb_pg *pg, int status)
{
    query *q = pg->head;
    pg->head = pg->tail = NULL;
    while (q) {
        query *next = q->next;
        q->fn(q->ud, NULL, status);
        query_free(q);
        q = next;
    }
}

/* ---- connecting --------------------------------------------------------------------- */

/* Server notices and errors that arrive outside a query (e.g. "terminating connection due to
 * administrator command") go to the broker's log instead of libpq's stderr default. */
static void on_notice(void *ud, const char *message)
{
    const sb_pg_config *cfg = ud;
    char msg[512];
    one_line(message, msg, sizeof msg);
    cfg->api->base.log(cfg->host, SB_LOG_INFO, "%s: PostgreSQL: %s", cfg->label, msg);
}

static void start_connect(sb_pg *pg);

static void on_reconnect_timer(void *ud)
{
    sb_pg *pg = ud;
    pg->timer = NULL; /* one-shot: freed by the loop */
    pg->state = ST_IDLE;
    start_connect(pg);
}

static void schedule_reconnect(sb_pg *pg)
{
    uint32_t delay = sb_retry_delay_ms(pg->cfg.reconnect_min_ms, pg->cfg.reconnect_max_ms,
                                       pg->attempt++, sb_retry_rand(&pg->rnd));
    pg->state = ST_BACKOFF;
    if (pg->cfg.api->base.timer_start(pg->cfg.host, delay, 0, on_reconnect_timer, pg, &pg->timer) <
        0) {
        pg->timer = NULL;
        pg->state = ST_IDLE; /* the next sb_pg_connect() tries again */
        pg->cfg.api->base.log(pg->cfg.host, SB_LOG_ERROR, "%s: cannot schedule a reconnect",
                              pg->label);
    }
}

static void connect_failed(sb_pg *pg, const char *why)
{
    char msg[sizeof pg->last_err];
    one_line(why, msg, sizeof msg);
    pg->failures++;
    if (sb_retry_should_log(pg->failures, strcmp(msg, pg->last_err) == 0)) {
        if (pg->failures > 1)
            pg->cfg.api->base.log(pg->cfg.host, SB_LOG_WARN,
                                  "%s: cannot connect to PostgreSQL (%u attempts so far): %s",
                                  pg->label, pg->failures, msg);
        else
            pg->cfg.api->base.log(pg->cfg.host, SB_LOG_WARN, "%s: cannot connect to PostgreSQL: %s",
                                  pg->label, msg);
        memcpy(pg->last_err, msg, sizeof msg);
    }
    drop_conn(pg);
    schedule_reconnect(pg);
    fail_queries(pg, SB_ERR_DB);
}

static void on_connect_timeout(void *ud)
{
    sb_pg *pg = ud;
    char why[64];
    pg->timer = NULL; /* one-shot: freed by the loop */
    snprintf(why, sizeof why, "timed out after %u ms", pg->cfg.connect_timeout_ms);
    connect_failed(pg, why);
}

static void dispatch(sb_pg *pg);

static void connected(sb_pg *pg)
{
    stop_timer(pg);
    if (PQsetnonblocking(pg->conn, 1) != 0 || set_watch(pg, PQsocket(pg->conn), SB_IO_READ)) {
        connect_failed(pg, PQerrorMessage(pg->conn));
        return;
    }
    pg->state = ST_READY;
    pg->attempt = 0;
    if (pg->failures)
        pg->cfg.api->base.log(pg->cfg.host, SB_LOG_INFO,
                              "%s: connected to PostgreSQL after %u failed attempts (backend %d)",
                              pg->label, pg->failures, PQbackendPID(pg->conn));
    else
        pg->cfg.api->base.log(pg->cfg.host, SB_LOG_INFO, "%s: connected to PostgreSQL (backend %d)",
                              pg->label, PQbackendPID(pg->conn));
    pg->failures = 0;
    pg->last_err[0] = '\0';
    unsigned gen = pg->gen;
    if (pg->cfg.on_ready)
        pg->cfg.on_ready(pg->cfg.ud);
    if (gen == pg->gen)
        dispatch(pg);
}

static void continue_connect(sb_pg *pg)
{
    switch (PQconnectPoll(pg->conn)) {
    case PGRES_POLLING_READING:
        if (set_watch(pg, PQsocket(pg->conn), SB_IO_READ))
            connect_failed(pg, "cannot watch the socket");
        break;
    case PGRES_POLLING_WRITING:
        if (set_watch(pg, PQsocket(pg->conn), SB_IO_WRITE))
            connect_failed(pg, "cannot watch the socket");
        break;
    case PGRES_POLLING_OK:
        connected(pg);
        break;
    default:
        connect_failed(pg, PQerrorMessage(pg->conn));
        break;
    }
}

static void start_connect(sb_pg *pg)
{
    const char *const keys[] = {"dbname", "application_name", NULL};
    const char *const vals[] = {pg->cfg.conninfo, pg->app_name, NULL};
    /* expand_dbname = 1: dbname holds the whole conninfo; later keywords override it. */
    pg->conn = PQconnectStartParams(keys, vals, 1);
    pg->state = ST_CONNECTING;
    if (!pg->conn || PQstatus(pg->conn) == CONNECTION_BAD) {
        connect_failed(pg, pg->conn ? PQerrorMessage(pg->conn) : "out of memory");
        return;
    }
    PQsetNoticeProcessor(pg->conn, on_notice, &pg->cfg);
    if (pg->cfg.api->base.timer_start(pg->cfg.host, pg->cfg.connect_timeout_ms, 0,
                                      on_connect_timeout, pg, &pg->timer) < 0) {
        pg->timer = NULL;
        connect_failed(pg, "cannot start the connect timer");
        return;
    }
    /* Before the first PQconnectPoll, behave as if it had asked for write-readiness. */
    if (PQsocket(pg->conn) < 0 || set_watch(pg, PQsocket(pg->conn), SB_IO_WRITE))
        connect_failed(pg, "no socket to watch");
}

int sb_pg_connect(sb_pg *pg)
{
    if (pg->state == ST_IDLE)
        start_connect(pg);
    return pg->state == ST_BACKOFF ? SB_ERR_BUSY : SB_OK;
}

PGconn *sb_pg_connect_blocking(const sb_pg_config *cfg, char *err, size_t errlen)
{
    char timeout[16];
    snprintf(timeout, sizeof timeout, "%u", (cfg->connect_timeout_ms + 999) / 1000);
    const char *const keys[] = {"dbname", "application_name", "connect_timeout", NULL};
    const char *const vals[] = {cfg->conninfo, cfg->app_name, timeout, NULL};
    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    if (conn && PQstatus(conn) == CONNECTION_OK) {
        PQsetNoticeProcessor(conn, on_notice, (void *)cfg); /* until sb_pg_adopt() */
        return conn;
    }
    one_line(conn ? PQerrorMessage(conn) : "out of memory", err, errlen);
    PQfinish(conn);
    return NULL;
}

int sb_pg_adopt(sb_pg *pg, PGconn *conn)
{
    drop_conn(pg);
    pg->conn = conn;
    pg->state = ST_CONNECTING;
    PQsetNoticeProcessor(conn, on_notice, &pg->cfg);
    connected(pg);
    return pg->state == ST_READY ? SB_OK : SB_ERR_DB;
}

bool sb_pg_ready(const sb_pg *pg)
{
    return pg->state == ST_READY;
}

bool sb_pg_idle(const sb_pg *pg)
{
    return pg->state == ST_IDLE;
}

/* ---- queries ------------------------------------------------------------------------ */

static void lost(sb_pg *pg, const char *why)
{
    char msg[sizeof pg->last_err];
    one_line(why, msg, sizeof msg);
    pg->cfg.api->base.log(pg->cfg.host, SB_LOG_WARN, "%s: connection to PostgreSQL lost: %s",
                          pg->label, msg[0] ? msg : "no reason given");
    pg->attempt = 0;
    drop_conn(pg);
    schedule_reconnect(pg);
    unsigned gen = pg->gen;
    fail_queries(pg, SB_ERR_DB);
    if (gen == pg->gen && pg->cfg.on_lost)
        pg->cfg.on_lost(pg->cfg.ud);
}

/* Send what libpq still holds; watch for write-readiness while it cannot. -1 when the
 * connection was lost. */
static int flush(sb_pg *pg)
{
    int r = PQflush(pg->conn);
    if (r < 0) {
        lost(pg, PQerrorMessage(pg->conn));
        return -1;
    }
    if (set_watch(pg, PQsocket(pg->conn), r ? SB_IO_READ | SB_IO_WRITE : SB_IO_READ)) {
        lost(pg, "cannot watch the socket");
        return -1;
    }
    return 0;
}

static query *pop(sb_pg *pg)
{
    query *q = pg->head;
    pg->head = q->next;
    if (!pg->head)
        pg->tail = NULL;
    return q;
}

static stmt *find_stmt(const sb_pg *pg, const char *sql)
{
    for (stmt *st = pg->stmts; st; st = st->next)
        if (strcmp(st->sql, sql) == 0)
            return st;
    return NULL;
}

/* Forget a statement a schema change made unusable ("cached plan must not change result
 * type", SQLSTATE 0A000), so that the next use prepares a fresh one. The server keeps the old
 * one until the connection ends; other errors (a bad parameter) keep the statement. */
static void drop_stmt(sb_pg *pg, const char *sql)
{
    for (stmt **p = &pg->stmts; *p; p = &(*p)->next) {
        if (strcmp((*p)->sql, sql) == 0) {
            stmt *st = *p;
            *p = st->next;
            free(st);
            return;
        }
    }
}

/* Send q as it is, through its prepared statement, or as the PREPARE that comes first (q
 * itself follows when the PREPARE succeeded). Without memory for the statement, q goes
 * unprepared. libpq's 0/1. */
static int send_query(sb_pg *pg, query *q)
{
    const char *const *params = (const char *const *)q->params;
    stmt *st = (q->flags & SB_PG_PREPARE) ? find_stmt(pg, q->sql) : NULL;
    if (st)
        return PQsendQueryPrepared(pg->conn, st->name, q->nparams, params, NULL, NULL, 0);
    size_t len = strlen(q->sql) + 1;
    if ((q->flags & SB_PG_PREPARE) && (st = malloc(sizeof *st + len)) != NULL) {
        snprintf(st->name, sizeof st->name, "syncbroker_%u", ++pg->stmt_seq);
        memcpy(st->sql, q->sql, len);
        q->preparing = st;
        return PQsendPrepare(pg->conn, st->name, q->sql, q->nparams, NULL);
    }
    return PQsendQueryParams(pg->conn, q->sql, q->nparams, NULL, params, NULL, NULL, 0);
}

static void dispatch(sb_pg *pg)
{
    unsigned gen = pg->gen;
    while (pg->state == ST_READY && !pg->inflight && pg->head && gen == pg->gen) {
        query *q = pg->head;
        if (!send_query(pg, q)) {
            if (PQstatus(pg->conn) == CONNECTION_BAD) {
                lost(pg, PQerrorMessage(pg->conn));
                return;
            }
            char msg[256];
            one_line(PQerrorMessage(pg->conn), msg, sizeof msg);
            pg->cfg.api->base.log(pg->cfg.host, SB_LOG_ERROR, "%s: cannot send a query: %s",
                                  pg->label, msg);
            pop(pg);
            q->fn(q->ud, NULL, SB_ERR_DB);
            query_free(q);
            continue;
        }
        if ((q->flags & SB_PG_SINGLE_ROW) && !q->preparing)
            PQsetSingleRowMode(pg->conn);
        pg->inflight = true;
        flush(pg);
    }
}

static void drain_notifies(sb_pg *pg, unsigned gen)
{
    PGnotify *n;
    while (gen == pg->gen && (n = PQnotifies(pg->conn)) != NULL) {
        if (pg->cfg.on_notify)
            pg->cfg.on_notify(pg->cfg.ud, n->relname, n->extra);
        PQfreemem(n);
    }
}

/* The PREPARE in front of q finished without error: keep the statement, send q itself. */
static void prepared(sb_pg *pg, query *q)
{
    q->preparing->next = pg->stmts;
    pg->stmts = q->preparing;
    q->preparing = NULL;
    pg->inflight = false;
    dispatch(pg);
}

/* Hand every complete result to its query; start the next query when one finishes. */
static void process(sb_pg *pg)
{
    unsigned gen = pg->gen;
    drain_notifies(pg, gen);
    while (gen == pg->gen && pg->inflight && !PQisBusy(pg->conn)) {
        PGresult *r = PQgetResult(pg->conn);
        query *q = pg->head;
        if (!r) {
            bool bad = PQstatus(pg->conn) == CONNECTION_BAD;
            if (q->preparing && !q->failed && !bad) {
                prepared(pg, q);
                continue;
            }
            pop(pg);
            pg->inflight = false;
            q->fn(q->ud, NULL, q->failed || bad ? SB_ERR_DB : SB_OK);
            query_free(q);
            if (gen != pg->gen)
                return;
            if (bad) {
                lost(pg, PQerrorMessage(pg->conn));
                return;
            }
            dispatch(pg);
            continue;
        }
        ExecStatusType st = PQresultStatus(r);
        bool ok = st == PGRES_TUPLES_OK || st == PGRES_SINGLE_TUPLE || st == PGRES_COMMAND_OK;
        if (!ok) {
            q->failed = true;
            if ((q->flags & SB_PG_PREPARE) && !q->preparing &&
                strcmp(sb_pg_sqlstate(r), "0A000") == 0)
                drop_stmt(pg, q->sql);
        }
        if (!ok || !q->preparing) /* a PREPARE's success is not the owner's business */
            q->fn(q->ud, r, SB_OK);
        PQclear(r);
        drain_notifies(pg, gen);
    }
    if (gen == pg->gen && !pg->inflight && PQstatus(pg->conn) == CONNECTION_BAD)
        lost(pg, PQerrorMessage(pg->conn));
}

static void on_io(void *ud, unsigned revents)
{
    sb_pg *pg = ud;
    if (pg->state == ST_CONNECTING) {
        continue_connect(pg);
        return;
    }
    if (pg->state != ST_READY)
        return;
    if ((revents & SB_IO_WRITE) && flush(pg) < 0)
        return;
    if ((revents & (SB_IO_READ | SB_IO_ERROR)) && !PQconsumeInput(pg->conn)) {
        lost(pg, PQerrorMessage(pg->conn));
        return;
    }
    process(pg);
}

int sb_pg_query(sb_pg *pg, const char *sql, int nparams, const char *const *params, unsigned flags,
                sb_pg_result_fn fn, void *ud)
{
    if (pg->state != ST_CONNECTING && pg->state != ST_READY)
        return SB_ERR_BUSY;
    if (nparams < 0 || (nparams && !params) || !fn)
        return SB_ERR_INVAL;
    size_t size = sizeof(query) + (size_t)nparams * sizeof(char *) + strlen(sql) + 1;
    for (int i = 0; i < nparams; i++)
        size += params[i] ? strlen(params[i]) + 1 : 0;
    query *q = malloc(size);
    if (!q)
        return SB_ERR_NOMEM;
    *q = (query){.nparams = nparams, .flags = flags, .fn = fn, .ud = ud};
    q->params = (char **)(q + 1);
    char *w = (char *)(q->params + nparams);
    for (int i = 0; i < nparams; i++) {
        q->params[i] = NULL; /* SQL NULL stays NULL */
        if (params[i]) {
            size_t n = strlen(params[i]) + 1;
            q->params[i] = memcpy(w, params[i], n);
            w += n;
        }
    }
    q->sql = memcpy(w, sql, strlen(sql) + 1);
    if (pg->tail)
        pg->tail->next = q;
    else
        pg->head = q;
    pg->tail = q;
    dispatch(pg);
    return SB_OK;
}

void sb_pg_close(sb_pg *pg)
{
    if (pg->conn && pg->inflight) {
        /* Stop a long snapshot scan on the server instead of letting it run to the end. */
        PGcancel *c = PQgetCancel(pg->conn);
        char buf[256];
        if (c) {
            PQcancel(c, buf, sizeof buf);
            PQfreeCancel(c);
        }
    }
    drop_conn(pg);
    pg->state = ST_IDLE;
    fail_queries(pg, SB_ERR_STATE);
}

void sb_pg_free(sb_pg *pg)
{
    if (!pg)
        return;
    sb_pg_close(pg);
    free(pg->app_name);
    free(pg->label);
    free(pg);
}
