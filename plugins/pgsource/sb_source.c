/*
 * sb_source.c - see sb_source.h: the plugin's callbacks, and what a source does once set up
 * (sb_setup.c): waking and reading the cursor, LISTEN, fetches, snapshots, pruning. The
 * instance is shared with sb_setup.c through sb_source_state.h.
 */
#include "sb_check.h"
#include "sb_fetch.h"
#include "sb_pgarray.h"
#include "sb_retry.h"
#include "sb_source_state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HOST_LEN 65 /* HOST_NAME_MAX + 1 */
static const char *const app_roles[SB_APP_N] = {"syncbroker", "syncbroker-snapshot",
                                                "syncbroker-maintenance", "syncbroker-lock",
                                                "syncbroker-check"};

/* ---- reading ---------------------------------------------------------------------------- */

void sb_source_wake(sb_source *s)
{
    if (s->reading) {
        s->dirty = true; /* one more read after this one */
        return;
    }
    if (!s->setup_done || !sb_setup_holding(s) || !sb_pg_ready(s->main))
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
    if (!s->setup_done)
        sb_setup_start(s); /* the position was lost */
    else if (s->dirty)
        sb_source_wake(s);
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

/* LISTEN first, then read what committed meanwhile, so that nothing falls between the
 * catch-up read and the first notification. */
void sb_source_after_connect(sb_source *s)
{
    if (s->mode == SB_WAKE_NOTIFY &&
        sb_pg_query(s->main, "LISTEN " SB_NOTIFY_CHANNEL, 0, NULL, 0, on_listen, s) != SB_OK)
        return;
    sb_source_wake(s);
}

static void on_ready(void *ud)
{
    sb_source *s = ud;
    if (s->stopped)
        return;
    if (s->setup_done)
        sb_source_after_connect(s);
    else
        sb_setup_start(s);
}

static void on_notify(void *ud, const char *channel, const char *payload)
{
    sb_source *s = ud;
    (void)payload; /* the relid: a wake-up only, the cursor reads every table */
    if (strcmp(channel, SB_NOTIFY_CHANNEL) == 0)
        sb_source_wake(s);
}

static void on_poll(void *ud)
{
    sb_source *s = ud;
    sb_setup_take_lock(s);
    if (!s->setup_done) {
        if (s->api->base.now_ms(s->host) >= s->setup_retry_at)
            sb_setup_start(s);
        return;
    }
    if (!s->reading) /* poll mode never queues reads behind a running one */
        sb_source_wake(s);
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
    if (!s->setup_done || !sb_setup_holding(s) || s->pruning || !pos ||
        sb_pg_connect(s->maint) != SB_OK)
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
        .reader = opts[SB_SRC_OPT_READER].str,
        .conninfo = conninfo,
        .table_names = names,
        .ntables = n,
    };
    snprintf(s->retention_s, sizeof s->retention_s, "%lld",
             (long long)opts[SB_SRC_OPT_TOMBSTONE_RETENTION_S].num);
    snprintf(s->reader_timeout_s, sizeof s->reader_timeout_s, "%lld",
             (long long)opts[SB_SRC_OPT_READER_TIMEOUT_S].num);
    s->tables = calloc(n ? n : 1, sizeof *s->tables);
    if (!s->tables || sb_pgarray_build(names, n, &s->names) != SB_OK) {
        source_free(s);
        return SB_ERR_NOMEM;
    }
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
    for (int i = 0; i < SB_APP_N; i++) /* the host goes last: PostgreSQL cuts what is too long */
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

int sb_source_start(void *state)
{
    sb_source *s = state;
    name_sessions(s);
    sb_pg_config main_cfg = pg_config(s, SB_APP_MAIN, "main connection");
    main_cfg.on_ready = on_ready;
    main_cfg.on_notify = on_notify;
    main_cfg.ud = s;
    sb_pg_config snap_cfg = pg_config(s, SB_APP_SNAPSHOT, "snapshot connection");
    sb_pg_config maint_cfg = pg_config(s, SB_APP_MAINT, "maintenance connection");
    sb_pg_config lock_cfg = pg_config(s, SB_APP_LOCK, "lock connection");
    lock_cfg.on_ready = sb_setup_on_lock_ready;
    lock_cfg.on_lost = sb_setup_on_lock_lost;
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

    rc = sb_setup_lock_blocking(s, &lock_cfg);
    if (rc == SB_ERR_CONFIG)
        return rc;
    char err[512];
    PGconn *conn = sb_pg_connect_blocking(&main_cfg, err, sizeof err);
    if (conn && s->locked) {
        rc = sb_setup_blocking(s, conn);
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
    sb_pg_config cfg = pg_config(s, SB_APP_CHECK, "check connection");
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
