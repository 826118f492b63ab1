/*
 * The source plugins (source_poll and source_notify, the engine sb_source in both wake modes)
 * against a private PostgreSQL 15 cluster, loaded from the build's plugin folder and run by
 * libsyncbroker-testhost as the broker runs them. The cluster runs as an unprivileged user (sbpg
 * when we are root), on 127.0.0.1 and a free port, and is removed at the end; every test
 * gets its own database cloned from a template holding the migrations and tracked tables.
 * Skipped when the PostgreSQL binaries are missing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <syncbroker/testhost.h>

#include "sb_reader_lock.h"
#include "sb_source.h"

#define PG_BIN "/usr/lib/postgresql/15/bin"

static char pg_dir[64];
static int pg_port;
static const char *as_user = ""; /* "runuser -u sbpg -- " when root */
static int db_counter;

static int sh(const char *fmt, ...) SB_PRINTF(1, 2);
static int sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd);
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

static void conninfo(char *buf, size_t len, const char *db)
{
    snprintf(buf, len, "host=127.0.0.1 port=%d user=postgres dbname=%s", pg_port, db);
}

static PGconn *connect_db(const char *db)
{
    char ci[256];
    conninfo(ci, sizeof ci, db);
    PGconn *c = PQconnectdb(ci);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    return c;
}

static void exec_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
}

static int cluster_up(void **state)
{
    (void)state;
    if (access(PG_BIN "/postgres", X_OK) != 0)
        return 0; /* tests skip */
    if (geteuid() == 0) {
        if (sh("id sbpg >/dev/null 2>&1 || useradd --system --user-group --no-create-home "
               "--home-dir /nonexistent --shell /usr/sbin/nologin sbpg") != 0)
            return -1;
        as_user = "runuser -u sbpg -- ";
    }
    strcpy(pg_dir, "/tmp/sb-srctest-XXXXXX");
    if (!mkdtemp(pg_dir) || chmod(pg_dir, 0755) != 0)
        return -1;
    if (geteuid() == 0 && sh("chown sbpg:sbpg %s", pg_dir) != 0)
        return -1;
    pg_port = free_port();
    if (sh("%s" PG_BIN "/initdb -D %s/data -A trust -U postgres -E UTF8 --locale=C.UTF-8 "
           "--no-sync >%s/initdb.log 2>&1",
           as_user, pg_dir, pg_dir) != 0 ||
        sh("%s" PG_BIN "/pg_ctl -D %s/data -l %s/data/log -w -o \"-p %d -c listen_addresses="
           "127.0.0.1 -c unix_socket_directories=%s -c fsync=off\" start >/dev/null",
           as_user, pg_dir, pg_dir, pg_port, pg_dir) != 0)
        return -1;
    PGconn *c = connect_db("postgres");
    exec_ok(c, "CREATE DATABASE sbtemplate");
    PQfinish(c);
    char ci[256];
    conninfo(ci, sizeof ci, "sbtemplate");
    if (sh("for f in %s/sql/*.sql; do psql -q -v ON_ERROR_STOP=1 '%s' -f \"$f\" >/dev/null || "
           "exit 1; done",
           SB_SOURCE_DIR, ci) != 0)
        return -1;
    c = connect_db("sbtemplate");
    exec_ok(c,
            "CREATE TABLE public.bookings (id int PRIMARY KEY, guest text, n int);"
            "CREATE TABLE public.stays (room text, day date, who text, PRIMARY KEY (room, day));"
            "CREATE TABLE public.plain (id int PRIMARY KEY);"
            "SELECT syncbroker.enable_notify();" /* the owner's step for source_notify */
            "SELECT syncbroker.track('public.bookings'); SELECT syncbroker.track('public.stays');");
    PQfinish(c);
    return 0;
}

static int cluster_down(void **state)
{
    (void)state;
    if (pg_dir[0]) {
        sh("%s" PG_BIN "/pg_ctl -D %s/data -m immediate stop >/dev/null 2>&1", as_user, pg_dir);
        sh("rm -rf %s", pg_dir);
    }
    return 0;
}

/* ---- one source instance ------------------------------------------------------------- */

typedef struct src {
    sb_testhost *th;
    char db[32];
    PGconn *conn; /* the test's own writer connection */
} src;

/* The configuration of a source: plugin (source_poll or source_notify) in [source.main] with
 * the "key=value" lines of overrides (NULL-terminated, may be NULL), conninfo ci and the
 * tables in [database]. conninfo is on line 4, tables on line 5 (the refusals name them).
 * Owned by the caller (free). */
static char *source_ini(const char *plugin, const char *ci, const char *const *tables,
                        size_t ntables, const char *const *overrides)
{
    char *ini = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&ini, &len);
    assert_non_null(f);
    fprintf(f, "[broker]\nplugin_dir = %s\n[database]\nconninfo = %s\ntables =", SB_PLUGIN_DIR, ci);
    for (size_t i = 0; i < ntables; i++)
        fprintf(f, "%s %s", i ? "," : "", tables[i]);
    fprintf(f, "\n[source.main]\nplugin = %s\n", plugin);
    for (size_t i = 0; overrides && overrides[i]; i++)
        fprintf(f, "%s\n", overrides[i]);
    assert_int_equal(fclose(f), 0);
    return ini;
}

/* A test host with the configuration of source_ini loaded (the plugin not started yet). */
static sb_testhost *host_loaded(const char *plugin, const char *ci, const char *const *tables,
                                size_t ntables, const char *const *overrides)
{
    sb_testhost *th = NULL;
    assert_int_equal(sb_testhost_new(&th), SB_OK);
    char *ini = source_ini(plugin, ci, tables, ntables, overrides);
    int rc = sb_testhost_load(th, NULL, ini, NULL);
    free(ini);
    assert_int_equal(rc, SB_OK);
    return th;
}

/* A source instance (not started) for database db, or for a fresh database cloned from the
 * template when db is NULL; its conninfo names that database unless ci is given. */
static void src_new_on(src *s, const char *db, const char *plugin, const char *const *overrides,
                       const char *const *tables, size_t ntables, const char *ci)
{
    if (!pg_dir[0])
        skip();
    memset(s, 0, sizeof *s);
    if (db) {
        snprintf(s->db, sizeof s->db, "%s", db);
    } else {
        snprintf(s->db, sizeof s->db, "t%d", ++db_counter);
        PGconn *c = connect_db("postgres");
        char sql[128];
        snprintf(sql, sizeof sql, "CREATE DATABASE %s TEMPLATE sbtemplate", s->db);
        exec_ok(c, sql);
        PQfinish(c);
    }
    s->conn = connect_db(s->db);
    char own[256];
    conninfo(own, sizeof own, s->db);
    static const char *const defaults[] = {"public.bookings", "public.stays"};
    s->th = host_loaded(plugin, ci ? ci : own, tables ? tables : defaults, tables ? ntables : 2,
                        overrides);
}

static void src_new(src *s, const char *plugin, const char *const *overrides,
                    const char *const *tables, size_t ntables)
{
    src_new_on(s, NULL, plugin, overrides, tables, ntables, NULL);
}

static void src_free(src *s)
{
    /* stop() leaves nothing on the loop */
    assert_int_equal(sb_testhost_stop(s->th), 0);
    sb_testhost_free(s->th);
    PQfinish(s->conn);
}

typedef struct count_pred {
    sb_testhost *th;
    size_t n;
} count_pred;

static bool has_changes(void *ud)
{
    count_pred *p = ud;
    return sb_testhost_change_count(p->th) >= p->n;
}

static void wait_changes(src *s, size_t n, int timeout_ms)
{
    count_pred p = {s->th, n};
    if (!sb_testhost_run_until(s->th, has_changes, &p, timeout_ms))
        fail_msg("waited %d ms for %zu changes, got %zu", timeout_ms, n,
                 sb_testhost_change_count(s->th));
}

typedef struct done_pred {
    sb_testhost *th;
    uint64_t req;
} done_pred;

static bool is_done(void *ud)
{
    done_pred *p = ud;
    return sb_testhost_done_status(p->th, p->req) != 1;
}

static int wait_done(src *s, uint64_t req)
{
    done_pred p = {s->th, req};
    assert_true(sb_testhost_run_until(s->th, is_done, &p, 10000));
    return sb_testhost_done_status(s->th, req);
}

/* ---- tests ----------------------------------------------------------------------------- */

static void test_unknown_or_untracked_table_fails_start(void **state)
{
    (void)state;
    src s;
    const char *t1[] = {"public.bookings", "public.nope"};
    src_new(&s, "source_poll", NULL, t1, 2);
    assert_int_equal(sb_testhost_start(s.th), SB_ERR_CONFIG);
    assert_int_equal(sb_testhost_stop(s.th), 0); /* it cleaned up */
    const char *line = sb_testhost_log_find(s.th, "public.nope");
    assert_non_null(line);
    assert_non_null(strstr(line, "does not exist"));
    src_free(&s);

    const char *t2[] = {"public.plain"};
    src_new(&s, "source_notify", NULL, t2, 1);
    assert_int_equal(sb_testhost_start(s.th), SB_ERR_CONFIG);
    assert_int_equal(sb_testhost_stop(s.th), 0); /* it cleaned up */
    assert_non_null(sb_testhost_log_find(s.th, "SELECT syncbroker.track('public.plain')"));
    src_free(&s);
}

/* Bad table names: the broker's configuration refuses them, naming the line, before any
 * plugin is created; the engine's create() refuses them as well when a host hands them over
 * (a linked source that hands the engine this setup with one table renamed). */
static const sb_option_spec poll_options[] = {SB_SOURCE_OPTIONS("100", "test")};
static const sb_option_spec database_options[] = {SB_SOURCE_DATABASE_OPTIONS};

static int renaming_create(const sb_source_api *api, sb_host *host, const sb_source_setup *setup,
                           void **state)
{
    static const char *tables[2]; /* the engine keeps the list it is handed */
    tables[0] = setup->tables[0];
    tables[1] = "Public.X";
    sb_source_setup renamed = *setup;
    renamed.tables = tables;
    renamed.ntables = 2;
    return sb_source_create(api, host, &renamed, SB_WAKE_POLL, state);
}

static const sb_source_plugin renaming_source = {
    .header = SB_SOURCE_PLUGIN_HEADER("renaming_source", "1.0.0", "source_poll, one table renamed",
                                      poll_options),
    .database_options = database_options,
    .create = renaming_create,
    .start = sb_source_start,
    .stop = sb_source_stop,
    .destroy = sb_source_destroy,
    .fetch = sb_source_fetch,
    .snapshot = sb_source_snapshot,
    .cancel = sb_source_cancel,
};

static void test_bad_names_refused_at_create(void **state)
{
    (void)state;
    if (!pg_dir[0])
        skip();
    char ci[256];
    conninfo(ci, sizeof ci, "postgres");
    const char *t[] = {"public.bookings", "Public.X"};
    const char *overrides[] = {"reconnect_min_ms=10", NULL};
    sb_testhost *th = NULL;
    assert_int_equal(sb_testhost_new(&th), SB_OK);
    char *ini = source_ini("source_poll", ci, t, 2, overrides);
    assert_int_equal(sb_testhost_load(th, NULL, ini, NULL), SB_ERR_CONFIG);
    free(ini);
    const char *line = sb_testhost_log_find(th, "testhost.ini:5: [database] tables: 'Public.X'");
    assert_non_null(line);
    sb_testhost_free(th);

    assert_int_equal(sb_testhost_new(&th), SB_OK);
    ini = source_ini("renaming_source", ci, (const char *[]){"public.bookings", "public.x"}, 2,
                     overrides);
    assert_int_equal(sb_testhost_load(th, NULL, ini, &renaming_source.header), SB_OK);
    free(ini);
    assert_int_equal(sb_testhost_start(th), SB_ERR_CONFIG);
    assert_int_equal(sb_testhost_stop(th), 0); /* it cleaned up */
    line = sb_testhost_log_find(th, "Public.X");
    assert_non_null(line);
    assert_non_null(strstr(line, "[source.main] table 'Public.X' in [database] tables"));
    sb_testhost_free(th);
}

/* [database] conninfo reaches the source as its database option, and one libpq cannot parse
 * is refused at create, naming that key, its file and line. */
static void test_bad_conninfo_refused_at_create(void **state)
{
    (void)state;
    const char *t[] = {"public.bookings"};
    sb_testhost *th = host_loaded("source_poll", "host=127.0.0.1 nonsense", t, 1, NULL);
    assert_int_equal(sb_testhost_start(th), SB_ERR_CONFIG);
    assert_int_equal(sb_testhost_stop(th), 0); /* it cleaned up */
    const char *line = sb_testhost_log_find(
        th, "testhost.ini:4: [database] conninfo: not a libpq connection string");
    assert_non_null(line);
    assert_non_null(strstr(line, "nonsense"));
    sb_testhost_free(th);
}

/* A transaction that started first but commits last is still delivered (no id watermark). */
static void test_long_transaction_not_lost(void **state)
{
    (void)state;
    src s;
    src_new(&s, "source_poll", NULL, NULL, 0);
    exec_ok(s.conn, "INSERT INTO public.bookings VALUES (100, 'before start')");
    assert_int_equal(sb_testhost_start(s.th), SB_OK);
    PGconn *longtx = connect_db(s.db);
    exec_ok(longtx, "BEGIN; INSERT INTO public.bookings VALUES (1, 'long')");
    exec_ok(s.conn, "SET syncbroker.origin = 'desk-b'; INSERT INTO public.stays VALUES "
                    "('a,b', '2026-11-28', 'x')");
    wait_changes(&s, 1, 5000);
    const sb_change *c = sb_testhost_change_get(s.th, 0);
    assert_int_equal(c->table, 1);    /* public.stays */
    assert_int_equal(c->position, 0); /* ids do not grow across reads: no position */
    assert_false(c->has_row);
    assert_int_equal(c->key.nparts, 2);
    assert_string_equal(c->key.parts[0], "a,b");
    assert_string_equal(c->origin, "desk-b");
    exec_ok(longtx, "COMMIT");
    wait_changes(&s, 2, 5000);
    c = sb_testhost_change_get(s.th, 1);
    assert_int_equal(c->table, 0); /* public.bookings */
    assert_string_equal(c->key.parts[0], "1");
    assert_int_equal(c->op, SB_OP_INSERT);
    assert_true(c->version < sb_testhost_change_get(s.th, 0)->version); /* took its number first */
    /* let more reads run: nothing is delivered twice, the pre-start insert never */
    sb_testhost_run_until(s.th, has_changes, &(count_pred){s.th, 3}, 300);
    assert_int_equal(sb_testhost_change_count(s.th), 2);
    PQfinish(longtx);
    src_free(&s);
}

/* NOTIFY alone wakes the cursor: the safety-net poll is an hour here. */
static void test_notify_wakes_the_cursor(void **state)
{
    (void)state;
    src s;
    src_new(&s, "source_notify", (const char *[]){"poll_interval_ms=3600000", NULL}, NULL, 0);
    assert_int_equal(sb_testhost_start(s.th), SB_OK);
    sb_testhost_run_until(s.th, has_changes, &(count_pred){s.th, 1}, 200); /* LISTEN goes out */
    exec_ok(s.conn, "INSERT INTO public.bookings VALUES (1, 'a'), (2, 'b')");
    wait_changes(&s, 2, 3000);
    exec_ok(s.conn, "TRUNCATE public.bookings");
    wait_changes(&s, 3, 3000);
    assert_int_equal(sb_testhost_change_get(s.th, 2)->op, SB_OP_TRUNCATE);
    assert_int_equal(sb_testhost_change_get(s.th, 2)->key.nparts, 0);
    src_free(&s);
}

/* The broker runs no DDL: with notify off it refuses to start and says what the owner runs. */
static void test_notify_off_refuses_start(void **state)
{
    (void)state;
    src s;
    src_new(&s, "source_notify", NULL, NULL, 0);
    exec_ok(s.conn, "SELECT syncbroker.disable_notify()");
    assert_int_equal(sb_testhost_start(s.th), SB_ERR_CONFIG);
    assert_int_equal(sb_testhost_stop(s.th), 0); /* it cleaned up */
    assert_non_null(sb_testhost_log_find(s.th, "run SELECT syncbroker.enable_notify();"));
    PGresult *res =
        PQexec(s.conn, "SELECT count(*) FROM pg_trigger WHERE tgname = 'syncbroker_notify'");
    assert_string_equal(PQgetvalue(res, 0, 0), "0");
    PQclear(res);
    src_free(&s);
}

/* A change committed while the connection is down arrives after the reconnect, in both modes. */
static void reconnect_keeps_position(const char *plugin)
{
    src s;
    src_new(&s, plugin, (const char *[]){"reconnect_min_ms=20", "reconnect_max_ms=200", NULL}, NULL,
            0);
    assert_int_equal(sb_testhost_start(s.th), SB_OK);
    exec_ok(s.conn, "INSERT INTO public.bookings VALUES (1, 'a')");
    wait_changes(&s, 1, 5000);
    exec_ok(s.conn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name LIKE 'syncbroker %%' AND datname = current_database()");
    exec_ok(s.conn, "UPDATE public.bookings SET n = 2 WHERE id = 1");
    wait_changes(&s, 2, 5000);
    assert_non_null(sb_testhost_log_find(s.th, "connection to PostgreSQL lost"));
    assert_int_equal(sb_testhost_change_get(s.th, 1)->op, SB_OP_UPDATE);
    assert_int_equal(sb_testhost_resync_count(s.th), 0);
    src_free(&s);
}

static void test_reconnect_keeps_position_poll(void **state)
{
    (void)state;
    reconnect_keeps_position("source_poll");
}

static void test_reconnect_keeps_position_notify(void **state)
{
    (void)state;
    reconnect_keeps_position("source_notify");
}

static void test_fetch_present_and_absent(void **state)
{
    (void)state;
    src s;
    src_new(&s, "source_poll", NULL, NULL, 0);
    assert_int_equal(sb_testhost_start(s.th), SB_OK);
    exec_ok(s.conn, "SET syncbroker.origin = 'o1'; INSERT INTO public.stays VALUES "
                    "('r\"1', '2026-01-02', 'w'); INSERT INTO public.bookings VALUES (5, 'x'); "
                    "DELETE FROM public.bookings WHERE id = 5");
    wait_changes(&s, 3, 5000);
    sb_key keys[] = {{(const char *[]){"r\"1", "2026-01-02"}, 2},
                     {(const char *[]){"nobody", "2026-01-02"}, 2}};
    assert_int_equal(sb_testhost_source_fetch(s.th, 11, 1 /* public.stays */, keys, 2), SB_OK);
    assert_int_equal(wait_done(&s, 11), SB_OK);
    assert_int_equal(sb_testhost_row_count(s.th), 2);
    const sb_row *r = sb_testhost_row_get(s.th, 0);
    assert_int_equal(r->table, 1);
    assert_string_equal(r->key.parts[0], "r\"1");
    assert_non_null(r->row);
    assert_int_equal(r->version, sb_testhost_change_get(s.th, 0)->version);
    assert_string_equal(r->origin, "o1");
    r = sb_testhost_row_get(s.th, 1);
    assert_string_equal(r->key.parts[0], "nobody");
    assert_null(r->row);
    assert_int_equal(r->version, 0);
    /* a deleted row: absent, with the tombstone's version */
    sb_key k5 = {(const char *[]){"5"}, 1};
    assert_int_equal(sb_testhost_source_fetch(s.th, 12, 0 /* public.bookings */, &k5, 1), SB_OK);
    assert_int_equal(wait_done(&s, 12), SB_OK);
    r = sb_testhost_row_get(s.th, 2);
    assert_int_equal(r->table, 0);
    assert_null(r->row);
    assert_int_equal(r->version, sb_testhost_change_get(s.th, 2)->version);
    /* refusals */
    assert_int_equal(sb_testhost_source_fetch(s.th, 13, 2 /* not configured */, &k5, 1),
                     SB_ERR_NOTFOUND);
    assert_int_equal(sb_testhost_source_fetch(s.th, 14, 1, &k5, 1), SB_ERR_INVAL);
    /* a key the column type cannot read fails the request, not the source */
    sb_key bad = {(const char *[]){"not-a-number"}, 1};
    assert_int_equal(sb_testhost_source_fetch(s.th, 15, 0, &bad, 1), SB_OK);
    assert_int_equal(wait_done(&s, 15), SB_ERR_DB);
    src_free(&s);
}

static void test_snapshot_batches_and_cancel(void **state)
{
    (void)state;
    src s;
    src_new(&s, "source_poll", (const char *[]){"batch_rows=10", NULL}, NULL, 0);
    assert_int_equal(sb_testhost_start(s.th), SB_OK);
    exec_ok(s.conn, "INSERT INTO public.bookings SELECT g, 'g' || g FROM generate_series(1, 25) g;"
                    "INSERT INTO public.stays VALUES ('x', '2026-01-01', NULL)");
    assert_int_equal(sb_testhost_source_snapshot(s.th, 21, NULL, 0), SB_OK);
    assert_int_equal(sb_testhost_source_snapshot(s.th, 22, NULL, 0), SB_OK);
    const uint32_t one[] = {1}; /* public.stays */
    assert_int_equal(sb_testhost_source_snapshot(s.th, 23, one, 1), SB_OK);
    sb_testhost_source_cancel(s.th, 22); /* still queued: dropped */
    assert_int_equal(wait_done(&s, 21), SB_OK);
    assert_int_equal(wait_done(&s, 23), SB_OK);
    assert_int_equal(sb_testhost_done_status(s.th, 22), 1); /* never answered */
    size_t n21 = 0, n21_stays = 0, n23 = 0, versioned = 0;
    for (size_t i = 0; i < sb_testhost_row_count(s.th); i++) {
        uint64_t req = sb_testhost_row_req(s.th, i);
        uint32_t table = sb_testhost_row_get(s.th, i)->table;
        n21 += req == 21;
        n21_stays += req == 21 && table == 1;
        n23 += req == 23;
        if (req == 23)
            assert_int_equal(table, 1);
        versioned += sb_testhost_row_get(s.th, i)->version > 0;
        assert_int_not_equal(req, 22);
    }
    assert_int_equal(n21, 26);
    assert_int_equal(n21_stays, 1);
    assert_int_equal(n23, 1);
    assert_int_equal(versioned, 27);
    const uint32_t unknown[] = {2}; /* not configured */
    assert_int_equal(sb_testhost_source_snapshot(s.th, 24, unknown, 1), SB_ERR_NOTFOUND);
    src_free(&s);
}

static bool has_resyncs(void *ud)
{
    count_pred *p = ud;
    return sb_testhost_resync_count(p->th) >= p->n;
}

typedef struct log_pred {
    sb_testhost *th;
    const char *needle;
} log_pred;

static bool has_log(void *ud)
{
    log_pred *p = ud;
    return sb_testhost_log_find(p->th, p->needle) != NULL;
}

static int64_t count_of(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    int64_t n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return n;
}

/* The reader row is gone (a crash empties the unlogged table; here an operator deletes it):
 * the position was unguarded, so the source registers a new one and asks for exactly one
 * resync, however many reads and prunes run before and after. What committed before the new
 * position is covered by the resync, not emitted; what commits after it arrives. */
static void reader_gone_costs_one_resync(const char *prune_ms)
{
    char prune[48];
    snprintf(prune, sizeof prune, "prune_interval_ms=%s", prune_ms);
    src s;
    src_new(&s, "source_poll", (const char *[]){prune, "poll_interval_ms=10", NULL}, NULL, 0);
    assert_int_equal(sb_testhost_start(s.th), SB_OK);
    exec_ok(s.conn, "INSERT INTO public.bookings VALUES (1, 'a')");
    wait_changes(&s, 1, 5000);
    assert_int_equal(sb_testhost_resync_count(s.th), 0);
    exec_ok(s.conn, "DELETE FROM syncbroker.reader; INSERT INTO public.bookings VALUES (2, 'b')");
    assert_true(sb_testhost_run_until(s.th, has_resyncs, &(count_pred){s.th, 1}, 5000));
    assert_non_null(sb_testhost_log_find(s.th, "no longer guarded"));
    /* ~50 more reads (and prunes, in the fast case): no second resync */
    sb_testhost_run_until(s.th, has_resyncs, &(count_pred){s.th, 2}, 500);
    assert_int_equal(sb_testhost_resync_count(s.th), 1);
    assert_int_equal(count_of(s.conn, "SELECT count(*) FROM syncbroker.reader"), 1);
    exec_ok(s.conn, "INSERT INTO public.bookings VALUES (3, 'c')");
    wait_changes(&s, 2, 5000);
    assert_string_equal(sb_testhost_change_get(s.th, 1)->key.parts[0], "3");
    src_free(&s);
}

static void test_reader_gone_costs_one_resync(void **state)
{
    (void)state;
    reader_gone_costs_one_resync("3600000");
}

/* The maintenance connection prunes every 10 ms meanwhile: it must not bring the row back at
 * the old position (which would hide the loss). */
static void test_reader_gone_costs_one_resync_while_pruning(void **state)
{
    (void)state;
    reader_gone_costs_one_resync("10");
}

/* One reader name, one active source: a second one on the same database and reader refuses
 * to start, naming the holder, and the first goes on untouched. */
static void test_second_source_on_the_same_reader_is_refused(void **state)
{
    (void)state;
    src a, b;
    src_new(&a, "source_poll", NULL, NULL, 0);
    assert_int_equal(sb_testhost_start(a.th), SB_OK);
    exec_ok(a.conn, "INSERT INTO public.bookings VALUES (1, 'a')");
    wait_changes(&a, 1, 5000);
    src_new_on(&b, a.db, "source_notify", NULL, NULL, 0, NULL);
    assert_int_equal(sb_testhost_start(b.th), SB_ERR_CONFIG);
    assert_int_equal(sb_testhost_stop(b.th), 0); /* it cleaned up */
    const char *line = sb_testhost_log_find(b.th, "reader 'syncbroker' is held by another broker");
    assert_non_null(line);
    char holder[64];
    snprintf(holder, sizeof holder, "syncbroker-lock %ld@", (long)getpid());
    assert_non_null(strstr(line, holder));
    src_free(&b);
    exec_ok(a.conn, "INSERT INTO public.bookings VALUES (2, 'b')");
    wait_changes(&a, 2, 5000);
    assert_int_equal(sb_testhost_resync_count(a.th), 0);
    src_free(&a);
}

/* The lock session dies and the lock is free: taken back on the same position, no resync,
 * and what committed meanwhile arrives. (A read that started before the loss may deliver the
 * change before the lock is back: the log line, not the change, says it is.) */
static void test_lock_session_lost_costs_nothing(void **state)
{
    (void)state;
    src s;
    src_new(&s, "source_notify",
            (const char *[]){"reconnect_min_ms=20", "reconnect_max_ms=200", NULL}, NULL, 0);
    assert_int_equal(sb_testhost_start(s.th), SB_OK);
    exec_ok(s.conn,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name LIKE 'syncbroker-lock %' AND datname = current_database()");
    assert_true(sb_testhost_run_until(
        s.th, has_log, &(log_pred){s.th, "lost the session holding the lock"}, 5000));
    exec_ok(s.conn, "INSERT INTO public.bookings VALUES (1, 'a')");
    wait_changes(&s, 1, 5000);
    assert_true(sb_testhost_run_until(
        s.th, has_log, &(log_pred){s.th, "took the lock of reader 'syncbroker' back"}, 5000));
    assert_int_equal(sb_testhost_resync_count(s.th), 0);
    assert_int_equal(count_of(s.conn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                      "AND granted AND classid = " SB_READER_LOCK_CLASS),
                     1);
    src_free(&s);
}

static void test_unreachable_at_start_retries(void **state)
{
    (void)state;
    src s;
    char ci[128];
    snprintf(ci, sizeof ci, "host=127.0.0.1 port=%d user=postgres dbname=x", free_port());
    src_new_on(&s, NULL, "source_poll",
               (const char *[]){"reconnect_min_ms=10", "reconnect_max_ms=50", NULL}, NULL, 0, ci);
    assert_int_equal(sb_testhost_start(s.th), SB_OK);
    assert_non_null(sb_testhost_log_find(s.th, "not reachable"));
    sb_key k = {(const char *[]){"1"}, 1};
    assert_int_equal(sb_testhost_source_fetch(s.th, 1, 0, &k, 1), SB_ERR_BUSY);
    assert_int_equal(sb_testhost_source_snapshot(s.th, 2, NULL, 0), SB_ERR_BUSY);
    sb_testhost_clear_records(s.th);
    /* ~40 attempts in a second: logged once, not every time */
    sb_testhost_run_until(s.th, has_changes, &(count_pred){s.th, 1}, 1000);
    size_t main_lines = 0, lock_lines = 0; /* each connection logs for itself */
    for (size_t i = 0; i < sb_testhost_log_count(s.th); i++) {
        const char *line = sb_testhost_log_line(s.th, i);
        if (strstr(line, "cannot connect")) {
            main_lines += strstr(line, "main connection") != NULL;
            lock_lines += strstr(line, "lock connection") != NULL;
        }
    }
    assert_true(main_lines >= 1 && main_lines <= 6);
    assert_true(lock_lines >= 1 && lock_lines <= 6);
    src_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unknown_or_untracked_table_fails_start),
        cmocka_unit_test(test_bad_names_refused_at_create),
        cmocka_unit_test(test_bad_conninfo_refused_at_create),
        cmocka_unit_test(test_long_transaction_not_lost),
        cmocka_unit_test(test_notify_wakes_the_cursor),
        cmocka_unit_test(test_notify_off_refuses_start),
        cmocka_unit_test(test_reconnect_keeps_position_poll),
        cmocka_unit_test(test_reconnect_keeps_position_notify),
        cmocka_unit_test(test_fetch_present_and_absent),
        cmocka_unit_test(test_snapshot_batches_and_cancel),
        cmocka_unit_test(test_reader_gone_costs_one_resync),
        cmocka_unit_test(test_reader_gone_costs_one_resync_while_pruning),
        cmocka_unit_test(test_second_source_on_the_same_reader_is_refused),
        cmocka_unit_test(test_lock_session_lost_costs_nothing),
        cmocka_unit_test(test_unreachable_at_start_retries),
    };
    return cmocka_run_group_tests(tests, cluster_up, cluster_down);
}
