/*
 * sb_setup.c - the set-up step machine of a source (sb_source_state.h): the reader lock and
 * the steps that bring the main connection to a start position. It is apart from the reading
 * because it runs in two ways (blocking in start(), step by step in the background) and again
 * after a loss, while the reading only ever runs once it is done.
 */
#include "sb_pg.h"
#include "sb_reader_lock.h"
#include "sb_source_state.h"

#include <stdio.h>
#include <string.h>

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

int sb_setup_blocking(sb_source *s, PGconn *conn)
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
        sb_source_after_connect(s);
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

bool sb_setup_holding(const sb_source *s)
{
    return s->locked && sb_pg_ready(s->lock);
}

void sb_setup_start(sb_source *s)
{
    if (s->setup_done || s->setup_running || !sb_setup_holding(s) || !sb_pg_ready(s->main))
        return;
    s->setup_step = 0;
    setup_next(s);
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
            if (!s->setup_done)
                sb_setup_start(s);
            else
                sb_source_wake(s);
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

void sb_setup_take_lock(sb_source *s)
{
    if (s->locked || s->locking || !sb_pg_ready(s->lock))
        return;
    const char *vals[] = {s->reader};
    if (sb_pg_query(s->lock, SB_READER_LOCK_SQL, 1, vals, 0, on_lock_result, s) == SB_OK)
        s->locking = true;
}

void sb_setup_on_lock_ready(void *ud)
{
    sb_source *s = ud;
    if (!s->stopped)
        sb_setup_take_lock(s);
}

void sb_setup_on_lock_lost(void *ud)
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

int sb_setup_lock_blocking(sb_source *s, const sb_pg_config *cfg)
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
