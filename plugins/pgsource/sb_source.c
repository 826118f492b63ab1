/* sb_source.c - see sb_source.h. */
#include "sb_source.h"
#include "sb_check.h"
#include "sb_cursor.h"
#include "sb_fetch.h"
#include "sb_pg.h"
#include "sb_pgarray.h"
#include "sb_reader_lock.h"
#include "sb_retry.h"
#include "sb_snapshot.h"
#include "sb_table.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* application_name of each session: role, pid and host, so that an operator (or a second
 * broker refused the reader lock) can tell which broker a backend belongs to. */
#define HOST_LEN 65      /* HOST_NAME_MAX + 1 */
#define APP_NAME_LEN 128 /* room for all; PostgreSQL keeps 63 bytes, cutting the host first */
enum { APP_MAIN, APP_SNAPSHOT, APP_MAINT, APP_LOCK, APP_CHECK, APP_N };
static const char *const app_roles[APP_N] = {"syncbroker", "syncbroker-snapshot",
                                             "syncbroker-maintenance", "syncbroker-lock",
                                             "syncbroker-check"};

typedef struct sb_source {
    const sb_source_api *api;
    sb_host *host;
    sb_wake_mode mode;
    uint32_t poll_ms, prune_ms, reconnect_min_ms, reconnect_max_ms, connect_timeout_ms;
    size_t batch_rows;
    char *reader;         /* owned copy of the option */
    char retention_s[24]; /* tombstone_retention_s as a query parameter */
    char reader_timeout_s[24];
    const char *conninfo;           /* [database] conninfo; the broker's */
    const char *const *table_names; /* setup->tables; the broker's */
    sb_table *tables; /* one per configured table, in setup order; owned (names the broker's) */
    size_t ntables;
    char *names;  /* text[] literal of the configured names; owned */
    sb_pg *main;  /* cursor, fetches, LISTEN */
    sb_pg *maint; /* pruning: a DELETE of a large backlog never holds up the cursor */
    sb_pg *lock;  /* holds the reader lock (sb_reader_lock.h) and nothing else */
    char app_names[APP_N][APP_NAME_LEN];
    sb_cursor *cursor;
    sb_snapshot *snap; /* its own connection */
    sb_timer *poll_timer, *prune_timer;
    bool started, stopped;
    /* Setup (table resolution, NOTIFY triggers, initial position) runs once: blocking in
     * start() when the database is up, else step by step on the first connection. */
    bool setup_done, setup_running;
    size_t setup_step;
    int setup_rc;
    uint64_t setup_retry_at;
    char setup_err[512], last_setup_err[512];
    bool resolved;
    /* Reading, pruning and registering need the reader lock: held while `locked` and the
     * lock session is up. */
    bool locked, locking;
    bool lock_lost; /* it was held and its session died: say so when it is back */
    char lock_err[256];
    bool resync_pending; /* the position was lost: a new epoch once re-registered */
    bool reading, dirty, pruning;
    unsigned prune_errors;
} sb_source;

/* ---- setup steps ---------------------------------------------------------------------- */

typedef enum step_params { P_NONE, P_NAMES, P_START } step_params;

typedef struct setup_step {
    const char *what; /* for error messages */
    const char *sql;
    step_params params;
    bool (*needed)(const sb_source *s);
    int (*handle)(sb_source *s, const PGresult *res); /* a successful result */
    const char *hint;                                 /* appended when the step fails */
} setup_step;

static bool notify_mode(const sb_source *s)
{
    return s->mode == SB_WAKE_NOTIFY;
}

static bool unresolved(const sb_source *s)
{
    return !s->resolved;
}

static bool unpositioned(const sb_source *s)
{
    return sb_cursor_position(s->cursor) == NULL;
}

static int handle_resolve(sb_source *s, const PGresult *res)
{
    int rc = sb_table_resolve(s->tables, s->ntables, res, s->setup_err, sizeof s->setup_err);
    s->resolved = rc == SB_OK;
    return rc;
}

/* track() installs the NOTIFY triggers while notify is on: the broker runs no DDL (its role
 * may not), so with notify off it refuses to start rather than fall back to the safety net. */
static int handle_notify_check(sb_source *s, const PGresult *res)
{
    if (PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0)
        return SB_OK;
    snprintf(s->setup_err, sizeof s->setup_err,
             "NOTIFY triggers are off (syncbroker.settings notify): run SELECT "
             "syncbroker.enable_notify(); as the owner of the tracked tables, or use source_poll");
    return SB_ERR_CONFIG;
}

static int handle_start(sb_source *s, const PGresult *res)
{
    if (PQntuples(res) != 1) {
        snprintf(s->setup_err, sizeof s->setup_err, "no snapshot returned");
        return SB_ERR_DB;
    }
    int rc = sb_cursor_set_position(s->cursor, PQgetvalue(res, 0, 0));
    if (rc == SB_OK && s->resync_pending) {
        s->resync_pending = false;
        char reason[256];
        snprintf(reason, sizeof reason,
                 "the row of reader '%s' no longer guarded this broker's position (a PostgreSQL "
                 "crash, an operator, or expiry after reader_timeout_s); registered a new one",
                 s->reader);
        s->api->resync(s->host, reason);
    }
    return rc;
}

/* In order. The start position is the snapshot at start: changes committed earlier are not
 * replayed (this run is a new epoch). Registering the reader in the same statement keeps
 * other brokers' pruning away from what this one still has to read. After the position is
 * lost, only the steps still needed run again: registering, and a new epoch there. */
static const setup_step steps[] = {
    {"resolving the configured tables", SB_TABLE_RESOLVE_SQL, P_NAMES, unresolved, handle_resolve,
     "are the sql/ migrations applied (scripts/migrate)?"},
    {"checking NOTIFY triggers",
     "SELECT coalesce((SELECT value = 'on' FROM syncbroker.settings WHERE key = 'notify'), "
     "false)",
     P_NONE, notify_mode, handle_notify_check, NULL},
    {"registering the reader",
     "SELECT s::text FROM pg_catalog.pg_current_snapshot() AS s,"
     " syncbroker.register_reader($1, s)",
     P_START, unpositioned, handle_start, "are the sql/ migrations up to date (scripts/migrate)?"},
};
#define NSTEPS (sizeof steps / sizeof steps[0])

static int step_params_of(const sb_source *s, const setup_step *st, const char **vals)
{
    switch (st->params) {
    case P_NAMES:
        vals[0] = s->names;
        return 1;
    case P_START:
        vals[0] = s->reader;
        return 1;
    case P_NONE:
        break;
    }
    return 0;
}

/* Judge one step's result; on failure s->setup_err says what happened. */
static int step_result(sb_source *s, const setup_step *st, const PGresult *res)
{
    ExecStatusType status = PQresultStatus(res);
    if (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK) {
        s->setup_err[0] = '\0';
        return st->handle(s, res);
    }
    char msg[256];
    sb_pg_errmsg(res, msg, sizeof msg);
    snprintf(s->setup_err, sizeof s->setup_err, "%s failed: %s%s%s", st->what, msg,
             st->hint ? "; " : "", st->hint ? st->hint : "");
    return SB_ERR_CONFIG;
}

/* start() with the database up: every step now, in order. A connection lost meanwhile
 * returns SB_ERR_DB (retry in the background); anything else is a configuration error. */
static int setup_blocking(sb_source *s, PGconn *conn)
{
    for (size_t i = 0; i < NSTEPS; i++) {
        const setup_step *st = &steps[i];
        if (!st->needed(s))
            continue;
        const char *vals[3];
        int n = step_params_of(s, st, vals);
        PGresult *res = PQexecParams(conn, st->sql, n, NULL, vals, NULL, NULL, 0);
        int rc = step_result(s, st, res);
        PQclear(res);
        if (rc != SB_OK)
            return PQstatus(conn) == CONNECTION_BAD ? SB_ERR_DB : rc;
    }
    return SB_OK;
}

static void after_connect(sb_source *s);
static void setup_next(sb_source *s);

static void setup_failed(sb_source *s)
{
    s->setup_running = false;
    s->setup_retry_at = s->api->base.now_ms(s->host) + s->reconnect_max_ms;
    if (s->setup_err[0] && strcmp(s->setup_err, s->last_setup_err) != 0) {
        s->api->base.log(s->host, SB_LOG_ERROR, "%s (retrying)", s->setup_err);
        memcpy(s->last_setup_err, s->setup_err, sizeof s->setup_err);
    }
}

static void on_setup_result(void *ud, const PGresult *res, int status)
{
    sb_source *s = ud;
    if (res) {
        s->setup_rc = step_result(s, &steps[s->setup_step], res);
        return;
    }
    if (status == SB_ERR_STATE)
        return;
    if (status != SB_OK || s->setup_rc != SB_OK) {
        setup_failed(s);
        return;
    }
    s->setup_step++;
    setup_next(s);
}

static void setup_next(sb_source *s)
{
    while (s->setup_step < NSTEPS && !steps[s->setup_step].needed(s))
        s->setup_step++;
    if (s->setup_step == NSTEPS) {
        s->setup_running = false;
        s->setup_done = true;
        s->api->base.log(s->host, SB_LOG_INFO,
                         "PostgreSQL reachable: tables resolved, reading changes");
        after_connect(s);
        return;
    }
    const setup_step *st = &steps[s->setup_step];
    const char *vals[3];
    int n = step_params_of(s, st, vals);
    s->setup_rc = SB_OK;
    s->setup_err[0] = '\0';
    s->setup_running = true;
    if (sb_pg_query(s->main, st->sql, n, vals, 0, on_setup_result, s) != SB_OK)
        setup_failed(s);
}

static bool holding(const sb_source *s)
{
    return s->locked && sb_pg_ready(s->lock);
}

static void setup_start(sb_source *s)
{
    if (!holding(s) || !sb_pg_ready(s->main))
        return;
    s->setup_step = 0;
    setup_next(s);
}

/* ---- reading ---------------------------------------------------------------------------- */

static void wake(sb_source *s)
{
    if (s->reading) {
        s->dirty = true; /* one more read after this one */
        return;
    }
    if (!s->setup_done || !holding(s) || !sb_pg_ready(s->main))
        return;
    s->dirty = false;
    if (sb_cursor_read(s->cursor, s->main) == SB_OK)
        s->reading = true;
}

static void on_read_done(void *ud, int status)
{
    sb_source *s = ud;
    s->reading = false;
    if (status == SB_ERR_STATE)
        return;
    if (!s->setup_done && !s->setup_running)
        setup_start(s); /* the position was lost */
    else if (s->dirty)
        wake(s);
}

/* The cursor found its position unguarded and dropped it: register anew, then resync. */
static void on_position_lost(void *ud)
{
    sb_source *s = ud;
    s->setup_done = false;
    s->resync_pending = true;
    s->api->base.log(
        s->host, SB_LOG_WARN,
        "reader '%s': the position is no longer guarded by its reader row; registering "
        "a new one (clients will resynchronise once)",
        s->reader);
}

static void on_listen(void *ud, const PGresult *res, int status)
{
    sb_source *s = ud;
    char msg[256];
    if (res && PQresultStatus(res) != PGRES_COMMAND_OK)
        s->api->base.log(s->host, SB_LOG_WARN, "LISTEN %s failed: %s (the %u ms poll still runs)",
                         SB_NOTIFY_CHANNEL, sb_pg_errmsg(res, msg, sizeof msg), s->poll_ms);
    (void)status;
}

/* After every (re)connection: LISTEN first, then read what committed meanwhile, so that
 * nothing falls between the catch-up read and the first notification. */
static void after_connect(sb_source *s)
{
    if (s->mode == SB_WAKE_NOTIFY &&
        sb_pg_query(s->main, "LISTEN " SB_NOTIFY_CHANNEL, 0, NULL, 0, on_listen, s) != SB_OK)
        return;
    wake(s);
}

static void on_ready(void *ud)
{
    sb_source *s = ud;
    if (s->stopped)
        return;
    if (s->setup_done)
        after_connect(s);
    else if (!s->setup_running)
        setup_start(s);
}

/* ---- the reader lock -------------------------------------------------------------------- */

/* One result of SB_READER_LOCK_SQL: true when taken, else the holder described in err. */
static bool lock_taken(const sb_source *s, const PGresult *res, char *err, size_t len)
{
    char msg[256];
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        snprintf(err, len, "taking the lock of reader '%s' failed: %s", s->reader,
                 PQresultStatus(res) == PGRES_TUPLES_OK ? "no answer"
                                                        : sb_pg_errmsg(res, msg, sizeof msg));
        return false;
    }
    if (strcmp(PQgetvalue(res, 0, 0), "t") == 0)
        return true;
    snprintf(err, len,
             "reader '%s' is held by another broker (%s, backend pid %s): one reader name, one "
             "active broker; give this one a reader of its own ([source.*] reader) or stop the "
             "other",
             s->reader, PQgetisnull(res, 0, 2) ? "just released" : PQgetvalue(res, 0, 2),
             PQgetisnull(res, 0, 1) ? "?" : PQgetvalue(res, 0, 1));
    return false;
}

static void on_lock_result(void *ud, const PGresult *res, int status)
{
    sb_source *s = ud;
    if (!res) {
        s->locking = false;
        if (status == SB_OK && s->locked) {
            /* Taken (back): whatever waited for it goes on, on the same position. */
            if (!s->setup_done && !s->setup_running)
                setup_start(s);
            else
                wake(s);
        }
        return;
    }
    char err[sizeof s->lock_err];
    if (lock_taken(s, res, err, sizeof err)) {
        if (s->lock_err[0] || s->lock_lost)
            s->api->base.log(s->host, SB_LOG_INFO, "took the lock of reader '%s'%s", s->reader,
                             s->lock_lost ? " back: reading goes on" : "");
        s->lock_err[0] = '\0';
        s->lock_lost = false;
        s->locked = true;
    } else if (strcmp(err, s->lock_err) != 0) {
        s->api->base.log(s->host, SB_LOG_ERROR, "%s (retrying)", err);
        memcpy(s->lock_err, err, sizeof err);
    }
}

static void take_lock(sb_source *s)
{
    if (s->locked || s->locking || !sb_pg_ready(s->lock))
        return;
    const char *vals[] = {s->reader};
    if (sb_pg_query(s->lock, SB_READER_LOCK_SQL, 1, vals, 0, on_lock_result, s) == SB_OK)
        s->locking = true;
}

static void on_lock_ready(void *ud)
{
    sb_source *s = ud;
    if (!s->stopped)
        take_lock(s);
}

static void on_lock_lost(void *ud)
{
    sb_source *s = ud;
    if (s->locked)
        s->api->base.log(
            s->host, SB_LOG_WARN,
            "lost the session holding the lock of reader '%s': reading paused until it is "
            "taken back (the position is kept)",
            s->reader);
    s->lock_lost |= s->locked;
    s->locked = false;
}

static void on_notify(void *ud, const char *channel, const char *payload)
{
    sb_source *s = ud;
    (void)payload; /* the relid: a wake-up only, the cursor reads every table */
    if (strcmp(channel, SB_NOTIFY_CHANNEL) == 0)
        wake(s);
}

static void on_poll(void *ud)
{
    sb_source *s = ud;
    take_lock(s);
    if (!s->setup_done) {
        if (!s->setup_running && s->api->base.now_ms(s->host) >= s->setup_retry_at)
            setup_start(s);
        return;
    }
    if (!s->reading) /* poll mode never queues reads behind a running one */
        wake(s);
}

static void on_prune_result(void *ud, const PGresult *res, int status)
{
    sb_source *s = ud;
    char msg[256];
    if (res) {
        if (PQresultStatus(res) == PGRES_TUPLES_OK) {
            s->prune_errors = 0;
            return;
        }
        s->prune_errors++;
        if (sb_retry_should_log(s->prune_errors, true))
            s->api->base.log(s->host, SB_LOG_WARN, "pruning the change log failed: %s",
                             sb_pg_errmsg(res, msg, sizeof msg));
        return;
    }
    (void)status;
    s->pruning = false;
}

static void on_prune(void *ud)
{
    sb_source *s = ud;
    const char *pos = sb_cursor_position(s->cursor);
    if (!s->setup_done || !holding(s) || s->pruning || !pos || sb_pg_connect(s->maint) != SB_OK)
        return;
    const char *vals[] = {s->reader, pos, s->retention_s, s->reader_timeout_s};
    if (sb_pg_query(s->maint,
                    "SELECT syncbroker.prune($1, $2::pg_snapshot, $3::int8 * interval '1 second',"
                    " $4::int8 * interval '1 second')",
                    4, vals, 0, on_prune_result, s) == SB_OK)
        s->pruning = true;
}

/* ---- plugin callbacks ------------------------------------------------------------------- */

static void source_free(sb_source *s)
{
    sb_snapshot_free(s->snap);
    sb_pg_free(s->main);
    sb_pg_free(s->maint);
    sb_pg_free(s->lock);
    sb_cursor_free(s->cursor);
    for (size_t i = 0; i < s->ntables; i++)
        sb_table_clear(&s->tables[i]);
    free(s->tables);
    free(s->names);
    free(s->reader);
    free(s);
}

int sb_source_create(const sb_source_api *api, sb_host *host, const sb_source_setup *setup,
                     sb_wake_mode mode, void **state)
{
    const sb_option_value *opts = setup->options;
    const char *conninfo = setup->database[SB_SRC_DB_CONNINFO].str;
    size_t n = setup->ntables;
    const char *const *names = setup->tables;
    for (size_t i = 0; i < n; i++) {
        if (!sb_table_name_valid(names[i])) {
            api->base.log(host, SB_LOG_ERROR,
                          "table '%s' in [database] tables: expected schema.name in lowercase "
                          "letters, digits, _ and $",
                          names[i]);
            return SB_ERR_CONFIG;
        }
    }
    int crc = sb_check_conninfo(api, host, conninfo);
    if (crc != SB_OK)
        return crc;
    if (opts[SB_SRC_OPT_RECONNECT_MIN_MS].num > opts[SB_SRC_OPT_RECONNECT_MAX_MS].num) {
        api->base.log(host, SB_LOG_ERROR, "reconnect_min_ms (%lld) exceeds reconnect_max_ms (%lld)",
                      (long long)opts[SB_SRC_OPT_RECONNECT_MIN_MS].num,
                      (long long)opts[SB_SRC_OPT_RECONNECT_MAX_MS].num);
        return SB_ERR_CONFIG;
    }
    sb_source *s = calloc(1, sizeof *s);
    if (!s)
        return SB_ERR_NOMEM;
    *s = (sb_source){
        .api = api,
        .host = host,
        .mode = mode,
        .poll_ms = (uint32_t)opts[SB_SRC_OPT_POLL_INTERVAL_MS].num,
        .prune_ms = (uint32_t)opts[SB_SRC_OPT_PRUNE_INTERVAL_MS].num,
        .reconnect_min_ms = (uint32_t)opts[SB_SRC_OPT_RECONNECT_MIN_MS].num,
        .reconnect_max_ms = (uint32_t)opts[SB_SRC_OPT_RECONNECT_MAX_MS].num,
        .connect_timeout_ms = (uint32_t)opts[SB_SRC_OPT_CONNECT_TIMEOUT_MS].num,
        .batch_rows = (size_t)opts[SB_SRC_OPT_BATCH_ROWS].num,
        .conninfo = conninfo,
        .table_names = names,
        .ntables = n,
    };
    snprintf(s->retention_s, sizeof s->retention_s, "%lld",
             (long long)opts[SB_SRC_OPT_TOMBSTONE_RETENTION_S].num);
    snprintf(s->reader_timeout_s, sizeof s->reader_timeout_s, "%lld",
             (long long)opts[SB_SRC_OPT_READER_TIMEOUT_S].num);
    size_t rlen = strlen(opts[SB_SRC_OPT_READER].str) + 1;
    s->reader = malloc(rlen);
    s->tables = calloc(n ? n : 1, sizeof *s->tables);
    if (!s->reader || !s->tables || sb_pgarray_build(names, n, &s->names) != SB_OK) {
        source_free(s);
        return SB_ERR_NOMEM;
    }
    memcpy(s->reader, opts[SB_SRC_OPT_READER].str, rlen);
    for (size_t i = 0; i < n; i++)
        s->tables[i] = (sb_table){.name = names[i], .index = (uint32_t)i};
    *state = s;
    return SB_OK;
}

static void name_sessions(sb_source *s)
{
    char host[HOST_LEN] = "";
    if (gethostname(host, sizeof host - 1) != 0)
        host[0] = '\0';
    for (int i = 0; i < APP_N; i++) /* the host goes last: PostgreSQL cuts what is too long */
        snprintf(s->app_names[i], sizeof s->app_names[i], "%s %ld@%s", app_roles[i], (long)getpid(),
                 host);
}

static sb_pg_config pg_config(const sb_source *s, int app, const char *label)
{
    return (sb_pg_config){.api = s->api,
                          .host = s->host,
                          .conninfo = s->conninfo,
                          .app_name = s->app_names[app],
                          .label = label,
                          .reconnect_min_ms = s->reconnect_min_ms,
                          .reconnect_max_ms = s->reconnect_max_ms,
                          .connect_timeout_ms = s->connect_timeout_ms};
}

/* The reader lock, before anything touches the reader's position. SB_ERR_CONFIG when another
 * broker holds it (start-up refuses); SB_ERR_DB when the database cannot say now (taken in
 * the background). */
static int lock_blocking(sb_source *s, const sb_pg_config *cfg)
{
    char err[512];
    PGconn *conn = sb_pg_connect_blocking(cfg, err, sizeof err);
    if (!conn)
        return SB_ERR_DB;
    const char *vals[] = {s->reader};
    PGresult *res = PQexecParams(conn, SB_READER_LOCK_SQL, 1, NULL, vals, NULL, NULL, 0);
    bool taken = lock_taken(s, res, err, sizeof err);
    bool answered = PQresultStatus(res) == PGRES_TUPLES_OK;
    PQclear(res);
    if (!taken) {
        PQfinish(conn);
        if (!answered)
            return SB_ERR_DB;
        s->api->base.log(s->host, SB_LOG_ERROR, "%s", err);
        return SB_ERR_CONFIG;
    }
    s->locked = true;
    return sb_pg_adopt(s->lock, conn) == SB_OK ? SB_OK : SB_ERR_DB;
}

int sb_source_start(void *state)
{
    sb_source *s = state;
    name_sessions(s);
    sb_pg_config main_cfg = pg_config(s, APP_MAIN, "main connection");
    main_cfg.on_ready = on_ready;
    main_cfg.on_notify = on_notify;
    main_cfg.ud = s;
    sb_pg_config snap_cfg = pg_config(s, APP_SNAPSHOT, "snapshot connection");
    sb_pg_config maint_cfg = pg_config(s, APP_MAINT, "maintenance connection");
    sb_pg_config lock_cfg = pg_config(s, APP_LOCK, "lock connection");
    lock_cfg.on_ready = on_lock_ready;
    lock_cfg.on_lost = on_lock_lost;
    lock_cfg.ud = s;
    sb_cursor_config cur_cfg = {.api = s->api,
                                .host = s->host,
                                .tables = s->tables,
                                .ntables = s->ntables,
                                .reader = s->reader,
                                .done = on_read_done,
                                .lost = on_position_lost,
                                .ud = s};
    int rc = sb_pg_create(&main_cfg, &s->main);
    if (rc == SB_OK)
        rc = sb_pg_create(&maint_cfg, &s->maint);
    if (rc == SB_OK)
        rc = sb_pg_create(&lock_cfg, &s->lock);
    if (rc == SB_OK)
        rc = sb_cursor_create(&cur_cfg, &s->cursor);
    if (rc == SB_OK)
        rc = sb_snapshot_create(&snap_cfg, s->batch_rows, &s->snap);
    if (rc != SB_OK)
        return rc;
    s->started = true;

    rc = lock_blocking(s, &lock_cfg);
    if (rc == SB_ERR_CONFIG)
        return rc;
    char err[512];
    PGconn *conn = sb_pg_connect_blocking(&main_cfg, err, sizeof err);
    if (conn && s->locked) {
        rc = setup_blocking(s, conn);
        if (rc == SB_ERR_CONFIG) {
            s->api->base.log(s->host, SB_LOG_ERROR, "%s", s->setup_err);
            PQfinish(conn);
            return rc;
        }
        if (rc != SB_OK) { /* lost while setting up: carry on in the background */
            PQfinish(conn);
            conn = NULL;
        } else {
            s->setup_done = true;
        }
    } else if (!conn) {
        s->api->base.log(s->host, SB_LOG_WARN,
                         "PostgreSQL is not reachable (%s); retrying in the background", err);
    }
    if (s->api->base.timer_start(s->host, s->poll_ms, s->poll_ms, on_poll, s, &s->poll_timer) < 0 ||
        s->api->base.timer_start(s->host, s->prune_ms, s->prune_ms, on_prune, s, &s->prune_timer) <
            0) {
        PQfinish(conn);
        return SB_ERR_NOMEM;
    }
    s->api->base.log(s->host, SB_LOG_INFO, "%zu tables; %s every %u ms", s->ntables,
                     s->mode == SB_WAKE_NOTIFY ? "woken by NOTIFY, safety-net read" : "reading",
                     s->poll_ms);
    if (conn)
        sb_pg_adopt(s->main, conn); /* when that fails, it reconnects in the background */
    else
        sb_pg_connect(s->main);
    if (!s->locked)
        sb_pg_connect(s->lock);
    return SB_OK;
}

int sb_source_check(void *state)
{
    sb_source *s = state;
    name_sessions(s);
    sb_pg_config cfg = pg_config(s, APP_CHECK, "check connection");
    return sb_check_database(&cfg, s->table_names, s->ntables, s->reader);
}

void sb_source_stop(void *state)
{
    sb_source *s = state;
    if (!s->started || s->stopped)
        return;
    s->stopped = true;
    s->api->base.timer_stop(s->poll_timer);
    s->api->base.timer_stop(s->prune_timer);
    s->poll_timer = s->prune_timer = NULL;
    sb_snapshot_close(s->snap);
    sb_pg_close(s->main); /* pending queries end with SB_ERR_STATE: no host calls */
    sb_pg_close(s->maint);
    sb_pg_close(s->lock); /* last: nothing reads or prunes once another broker may */
}

void sb_source_destroy(void *state)
{
    sb_source *s = state;
    if (s)
        source_free(s);
}

int sb_source_fetch(void *state, uint64_t req, uint32_t table, const sb_key *keys, size_t nkeys)
{
    sb_source *s = state;
    if (!s->started || s->stopped)
        return SB_ERR_STATE;
    if (table >= s->ntables)
        return SB_ERR_NOTFOUND;
    const sb_table *t = &s->tables[table];
    if (!s->setup_done || !sb_pg_ready(s->main))
        return SB_ERR_BUSY;
    return sb_fetch_start(s->main, s->api, s->host, t, req, keys, nkeys);
}

int sb_source_snapshot(void *state, uint64_t req, const uint32_t *tables, size_t n)
{
    sb_source *s = state;
    if (!s->started || s->stopped)
        return SB_ERR_STATE;
    size_t count = n ? n : s->ntables;
    const sb_table **list = malloc((count ? count : 1) * sizeof *list);
    if (!list)
        return SB_ERR_NOMEM;
    int rc = SB_OK;
    for (size_t i = 0; i < count && rc == SB_OK; i++) {
        size_t k = n ? tables[i] : i;
        list[i] = k < s->ntables ? &s->tables[k] : NULL;
        if (!list[i])
            rc = SB_ERR_NOTFOUND;
    }
    if (rc == SB_OK)
        rc = s->setup_done ? sb_snapshot_request(s->snap, req, list, count) : SB_ERR_BUSY;
    free(list);
    return rc;
}

void sb_source_cancel(void *state, uint64_t req)
{
    sb_source *s = state;
    if (s->started && !s->stopped)
        sb_snapshot_cancel(s->snap, req);
}
