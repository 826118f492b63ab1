/*
 * The source engine (sb_source, both wake modes) against a private PostgreSQL 15 cluster,
 * driven through the recording fake host. The cluster runs as an unprivileged user (sbpg
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

#include "fake_host.h"
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
            "SELECT syncbroker.enable_notify();" /* the owner's step for SB_WAKE_NOTIFY */
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

static const sb_option_spec spec[] = {SB_SOURCE_OPTIONS("50", "test")};
static const sb_option_spec db_spec[] = {SB_SOURCE_DATABASE_OPTIONS};

typedef struct src {
    fake_host *fh;
    void *state;
    sb_option_value opts[SB_SRC_NOPTS + 1];
    sb_option_value dbopts[SB_SRC_NDB + 1];
    char conninfo[300]; /* "conninfo=...": dbopts point into it */
    char db[32];
    PGconn *conn; /* the test's own writer connection */
} src;

/* [database] values of a source: conninfo ci (a "conninfo=..." override kept in buf). */
static void database_options(sb_option_value *out, char *buf, size_t len, const char *ci)
{
    snprintf(buf, len, "conninfo=%s", ci);
    const char *overrides[] = {buf, NULL};
    assert_int_equal(fake_host_options(db_spec, overrides, out, SB_SRC_NDB + 1), SB_SRC_NDB);
}

/* A source instance (not started) for database db, or for a fresh database cloned from the
 * template when db is NULL; its conninfo names that database unless ci is given. */
static void src_new_on(src *s, const char *db, sb_wake_mode mode, const char *const *overrides,
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
    s->fh = fake_host_new();
    char own[256];
    conninfo(own, sizeof own, s->db);
    database_options(s->dbopts, s->conninfo, sizeof s->conninfo, ci ? ci : own);
    static const char *const defaults[] = {"public.bookings", "public.stays"};
    fake_host_set_tables(s->fh, tables ? tables : defaults, tables ? ntables : 2);
    assert_int_equal(fake_host_options(spec, overrides, s->opts, SB_SRC_NOPTS + 1), SB_SRC_NOPTS);
    sb_source_setup setup = fake_host_setup(s->fh, s->opts, s->dbopts);
    assert_int_equal(
        sb_source_create(fake_host_source_api(), fake_host_handle(s->fh), &setup, mode, &s->state),
        SB_OK);
}

static void src_new(src *s, sb_wake_mode mode, const char *const *overrides,
                    const char *const *tables, size_t ntables)
{
    src_new_on(s, NULL, mode, overrides, tables, ntables, NULL);
}

static void src_free(src *s)
{
    sb_source_stop(s->state);
    /* stop() leaves nothing on the loop */
    assert_int_equal(fake_host_watch_count(s->fh), 0);
    assert_int_equal(fake_host_timer_count(s->fh), 0);
    sb_source_destroy(s->state);
    fake_host_free(s->fh);
    PQfinish(s->conn);
}

typedef struct count_pred {
    fake_host *fh;
    size_t n;
} count_pred;

static bool has_changes(void *ud)
{
    count_pred *p = ud;
    return fake_host_change_count(p->fh) >= p->n;
}

static void wait_changes(src *s, size_t n, int timeout_ms)
{
    count_pred p = {s->fh, n};
    if (!fake_host_run_until(s->fh, has_changes, &p, timeout_ms))
        fail_msg("waited %d ms for %zu changes, got %zu", timeout_ms, n,
                 fake_host_change_count(s->fh));
}

typedef struct done_pred {
    fake_host *fh;
    uint64_t req;
} done_pred;

static bool is_done(void *ud)
{
    done_pred *p = ud;
    return fake_host_done_status(p->fh, p->req) != 1;
}

static int wait_done(src *s, uint64_t req)
{
    done_pred p = {s->fh, req};
    assert_true(fake_host_run_until(s->fh, is_done, &p, 10000));
    return fake_host_done_status(s->fh, req);
}

/* ---- tests ----------------------------------------------------------------------------- */

static void test_unknown_or_untracked_table_fails_start(void **state)
{
    (void)state;
    src s;
    const char *t1[] = {"public.bookings", "public.nope"};
    src_new(&s, SB_WAKE_POLL, NULL, t1, 2);
    assert_int_equal(sb_source_start(s.state), SB_ERR_CONFIG);
    const char *line = fake_host_log_find(s.fh, "public.nope");
    assert_non_null(line);
    assert_non_null(strstr(line, "does not exist"));
    src_free(&s);

    const char *t2[] = {"public.plain"};
    src_new(&s, SB_WAKE_NOTIFY, NULL, t2, 1);
    assert_int_equal(sb_source_start(s.state), SB_ERR_CONFIG);
    assert_non_null(fake_host_log_find(s.fh, "SELECT syncbroker.track('public.plain')"));
    src_free(&s);
}

static void test_bad_names_refused_at_create(void **state)
{
    (void)state;
    if (!pg_dir[0])
        skip();
    fake_host *fh = fake_host_new();
    const char *t[] = {"public.bookings", "Public.X"};
    fake_host_set_tables(fh, t, 2);
    sb_option_value opts[SB_SRC_NOPTS + 1], dbopts[SB_SRC_NDB + 1];
    fake_host_options(spec, (const char *[]){"reconnect_min_ms=10", NULL}, opts, SB_SRC_NOPTS + 1);
    char buf[64];
    database_options(dbopts, buf, sizeof buf, "");
    sb_source_setup setup = fake_host_setup(fh, opts, dbopts);
    void *st = NULL;
    assert_int_equal(
        sb_source_create(fake_host_source_api(), fake_host_handle(fh), &setup, SB_WAKE_POLL, &st),
        SB_ERR_CONFIG);
    assert_non_null(fake_host_log_find(fh, "Public.X"));
    fake_host_free(fh);
}

/* [database] conninfo reaches the source as its database option, and one libpq cannot parse
 * is refused at create, naming that key (the broker adds the file and line). */
static void test_bad_conninfo_refused_at_create(void **state)
{
    (void)state;
    fake_host *fh = fake_host_new();
    const char *t[] = {"public.bookings"};
    fake_host_set_tables(fh, t, 1);
    sb_option_value opts[SB_SRC_NOPTS + 1], dbopts[SB_SRC_NDB + 1];
    assert_int_equal(fake_host_options(spec, NULL, opts, SB_SRC_NOPTS + 1), SB_SRC_NOPTS);
    char buf[64];
    database_options(dbopts, buf, sizeof buf, "host=127.0.0.1 nonsense");
    sb_source_setup setup = fake_host_setup(fh, opts, dbopts);
    void *st = NULL;
    assert_int_equal(
        sb_source_create(fake_host_source_api(), fake_host_handle(fh), &setup, SB_WAKE_POLL, &st),
        SB_ERR_CONFIG);
    assert_null(st);
    const char *line = fake_host_log_find(fh, "[database] conninfo: not a libpq connection string");
    assert_non_null(line);
    assert_non_null(strstr(line, "nonsense"));
    fake_host_free(fh);
}

/* A transaction that started first but commits last is still delivered (no id watermark). */
static void test_long_transaction_not_lost(void **state)
{
    (void)state;
    src s;
    src_new(&s, SB_WAKE_POLL, NULL, NULL, 0);
    exec_ok(s.conn, "INSERT INTO public.bookings VALUES (100, 'before start')");
    assert_int_equal(sb_source_start(s.state), SB_OK);
    PGconn *longtx = connect_db(s.db);
    exec_ok(longtx, "BEGIN; INSERT INTO public.bookings VALUES (1, 'long')");
    exec_ok(s.conn, "SET syncbroker.origin = 'desk-b'; INSERT INTO public.stays VALUES "
                    "('a,b', '2026-11-28', 'x')");
    wait_changes(&s, 1, 5000);
    const sb_change *c = fake_host_change_get(s.fh, 0);
    assert_int_equal(c->table, 1);    /* public.stays */
    assert_int_equal(c->position, 0); /* ids do not grow across reads: no position */
    assert_false(c->has_row);
    assert_int_equal(c->key.nparts, 2);
    assert_string_equal(c->key.parts[0], "a,b");
    assert_string_equal(c->origin, "desk-b");
    exec_ok(longtx, "COMMIT");
    wait_changes(&s, 2, 5000);
    c = fake_host_change_get(s.fh, 1);
    assert_int_equal(c->table, 0); /* public.bookings */
    assert_string_equal(c->key.parts[0], "1");
    assert_int_equal(c->op, SB_OP_INSERT);
    assert_true(c->version < fake_host_change_get(s.fh, 0)->version); /* took its number first */
    /* let more reads run: nothing is delivered twice, the pre-start insert never */
    fake_host_run_until(s.fh, has_changes, &(count_pred){s.fh, 3}, 300);
    assert_int_equal(fake_host_change_count(s.fh), 2);
    PQfinish(longtx);
    src_free(&s);
}

/* NOTIFY alone wakes the cursor: the safety-net poll is an hour here. */
static void test_notify_wakes_the_cursor(void **state)
{
    (void)state;
    src s;
    src_new(&s, SB_WAKE_NOTIFY, (const char *[]){"poll_interval_ms=3600000", NULL}, NULL, 0);
    assert_int_equal(sb_source_start(s.state), SB_OK);
    fake_host_run_until(s.fh, has_changes, &(count_pred){s.fh, 1}, 200); /* LISTEN goes out */
    exec_ok(s.conn, "INSERT INTO public.bookings VALUES (1, 'a'), (2, 'b')");
    wait_changes(&s, 2, 3000);
    exec_ok(s.conn, "TRUNCATE public.bookings");
    wait_changes(&s, 3, 3000);
    assert_int_equal(fake_host_change_get(s.fh, 2)->op, SB_OP_TRUNCATE);
    assert_int_equal(fake_host_change_get(s.fh, 2)->key.nparts, 0);
    src_free(&s);
}

/* The broker runs no DDL: with notify off it refuses to start and says what the owner runs. */
static void test_notify_off_refuses_start(void **state)
{
    (void)state;
    src s;
    src_new(&s, SB_WAKE_NOTIFY, NULL, NULL, 0);
    exec_ok(s.conn, "SELECT syncbroker.disable_notify()");
    assert_int_equal(sb_source_start(s.state), SB_ERR_CONFIG);
    assert_non_null(fake_host_log_find(s.fh, "run SELECT syncbroker.enable_notify();"));
    PGresult *res =
        PQexec(s.conn, "SELECT count(*) FROM pg_trigger WHERE tgname = 'syncbroker_notify'");
    assert_string_equal(PQgetvalue(res, 0, 0), "0");
    PQclear(res);
    src_free(&s);
}

/* A change committed while the connection is down arrives after the reconnect, in both modes. */
static void reconnect_keeps_position(sb_wake_mode mode)
{
    src s;
    src_new(&s, mode, (const char *[]){"reconnect_min_ms=20", "reconnect_max_ms=200", NULL}, NULL,
            0);
    assert_int_equal(sb_source_start(s.state), SB_OK);
    exec_ok(s.conn, "INSERT INTO public.bookings VALUES (1, 'a')");
    wait_changes(&s, 1, 5000);
    exec_ok(s.conn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name LIKE 'syncbroker %%' AND datname = current_database()");
    exec_ok(s.conn, "UPDATE public.bookings SET n = 2 WHERE id = 1");
    wait_changes(&s, 2, 5000);
    assert_non_null(fake_host_log_find(s.fh, "connection to PostgreSQL lost"));
    assert_int_equal(fake_host_change_get(s.fh, 1)->op, SB_OP_UPDATE);
    assert_int_equal(fake_host_resync_count(s.fh), 0);
    src_free(&s);
}

static void test_reconnect_keeps_position_poll(void **state)
{
    (void)state;
    reconnect_keeps_position(SB_WAKE_POLL);
}

static void test_reconnect_keeps_position_notify(void **state)
{
    (void)state;
    reconnect_keeps_position(SB_WAKE_NOTIFY);
}

static void test_fetch_present_and_absent(void **state)
{
    (void)state;
    src s;
    src_new(&s, SB_WAKE_POLL, NULL, NULL, 0);
    assert_int_equal(sb_source_start(s.state), SB_OK);
    exec_ok(s.conn, "SET syncbroker.origin = 'o1'; INSERT INTO public.stays VALUES "
                    "('r\"1', '2026-01-02', 'w'); INSERT INTO public.bookings VALUES (5, 'x'); "
                    "DELETE FROM public.bookings WHERE id = 5");
    wait_changes(&s, 3, 5000);
    sb_key keys[] = {{(const char *[]){"r\"1", "2026-01-02"}, 2},
                     {(const char *[]){"nobody", "2026-01-02"}, 2}};
    assert_int_equal(sb_source_fetch(s.state, 11, 1 /* public.stays */, keys, 2), SB_OK);
    assert_int_equal(wait_done(&s, 11), SB_OK);
    assert_int_equal(fake_host_row_count(s.fh), 2);
    const sb_row *r = fake_host_row_get(s.fh, 0);
    assert_int_equal(r->table, 1);
    assert_string_equal(r->key.parts[0], "r\"1");
    assert_non_null(r->row);
    assert_int_equal(r->version, fake_host_change_get(s.fh, 0)->version);
    assert_string_equal(r->origin, "o1");
    r = fake_host_row_get(s.fh, 1);
    assert_string_equal(r->key.parts[0], "nobody");
    assert_null(r->row);
    assert_int_equal(r->version, 0);
    /* a deleted row: absent, with the tombstone's version */
    sb_key k5 = {(const char *[]){"5"}, 1};
    assert_int_equal(sb_source_fetch(s.state, 12, 0 /* public.bookings */, &k5, 1), SB_OK);
    assert_int_equal(wait_done(&s, 12), SB_OK);
    r = fake_host_row_get(s.fh, 2);
    assert_int_equal(r->table, 0);
    assert_null(r->row);
    assert_int_equal(r->version, fake_host_change_get(s.fh, 2)->version);
    /* refusals */
    assert_int_equal(sb_source_fetch(s.state, 13, 2 /* not configured */, &k5, 1), SB_ERR_NOTFOUND);
    assert_int_equal(sb_source_fetch(s.state, 14, 1, &k5, 1), SB_ERR_INVAL);
    /* a key the column type cannot read fails the request, not the source */
    sb_key bad = {(const char *[]){"not-a-number"}, 1};
    assert_int_equal(sb_source_fetch(s.state, 15, 0, &bad, 1), SB_OK);
    assert_int_equal(wait_done(&s, 15), SB_ERR_DB);
    src_free(&s);
}

static void test_snapshot_batches_and_cancel(void **state)
{
    (void)state;
    src s;
    src_new(&s, SB_WAKE_POLL, (const char *[]){"batch_rows=10", NULL}, NULL, 0);
    assert_int_equal(sb_source_start(s.state), SB_OK);
    exec_ok(s.conn, "INSERT INTO public.bookings SELECT g, 'g' || g FROM generate_series(1, 25) g;"
                    "INSERT INTO public.stays VALUES ('x', '2026-01-01', NULL)");
    assert_int_equal(sb_source_snapshot(s.state, 21, NULL, 0), SB_OK);
    assert_int_equal(sb_source_snapshot(s.state, 22, NULL, 0), SB_OK);
    const uint32_t one[] = {1}; /* public.stays */
    assert_int_equal(sb_source_snapshot(s.state, 23, one, 1), SB_OK);
    sb_source_cancel(s.state, 22); /* still queued: dropped */
    assert_int_equal(wait_done(&s, 21), SB_OK);
    assert_int_equal(wait_done(&s, 23), SB_OK);
    assert_int_equal(fake_host_done_status(s.fh, 22), 1); /* never answered */
    size_t n21 = 0, n21_stays = 0, n23 = 0, versioned = 0;
    for (size_t i = 0; i < fake_host_row_count(s.fh); i++) {
        uint64_t req = fake_host_row_req(s.fh, i);
        uint32_t table = fake_host_row_get(s.fh, i)->table;
        n21 += req == 21;
        n21_stays += req == 21 && table == 1;
        n23 += req == 23;
        if (req == 23)
            assert_int_equal(table, 1);
        versioned += fake_host_row_get(s.fh, i)->version > 0;
        assert_int_not_equal(req, 22);
    }
    assert_int_equal(n21, 26);
    assert_int_equal(n21_stays, 1);
    assert_int_equal(n23, 1);
    assert_int_equal(versioned, 27);
    const uint32_t unknown[] = {2}; /* not configured */
    assert_int_equal(sb_source_snapshot(s.state, 24, unknown, 1), SB_ERR_NOTFOUND);
    src_free(&s);
}

static bool has_resyncs(void *ud)
{
    count_pred *p = ud;
    return fake_host_resync_count(p->fh) >= p->n;
}

typedef struct log_pred {
    fake_host *fh;
    const char *needle;
} log_pred;

static bool has_log(void *ud)
{
    log_pred *p = ud;
    return fake_host_log_find(p->fh, p->needle) != NULL;
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
    src_new(&s, SB_WAKE_POLL, (const char *[]){prune, "poll_interval_ms=10", NULL}, NULL, 0);
    assert_int_equal(sb_source_start(s.state), SB_OK);
    exec_ok(s.conn, "INSERT INTO public.bookings VALUES (1, 'a')");
    wait_changes(&s, 1, 5000);
    assert_int_equal(fake_host_resync_count(s.fh), 0);
    exec_ok(s.conn, "DELETE FROM syncbroker.reader; INSERT INTO public.bookings VALUES (2, 'b')");
    assert_true(fake_host_run_until(s.fh, has_resyncs, &(count_pred){s.fh, 1}, 5000));
    assert_non_null(fake_host_log_find(s.fh, "no longer guarded"));
    /* ~50 more reads (and prunes, in the fast case): no second resync */
    fake_host_run_until(s.fh, has_resyncs, &(count_pred){s.fh, 2}, 500);
    assert_int_equal(fake_host_resync_count(s.fh), 1);
    assert_int_equal(count_of(s.conn, "SELECT count(*) FROM syncbroker.reader"), 1);
    exec_ok(s.conn, "INSERT INTO public.bookings VALUES (3, 'c')");
    wait_changes(&s, 2, 5000);
    assert_string_equal(fake_host_change_get(s.fh, 1)->key.parts[0], "3");
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
    src_new(&a, SB_WAKE_POLL, NULL, NULL, 0);
    assert_int_equal(sb_source_start(a.state), SB_OK);
    exec_ok(a.conn, "INSERT INTO public.bookings VALUES (1, 'a')");
    wait_changes(&a, 1, 5000);
    src_new_on(&b, a.db, SB_WAKE_NOTIFY, NULL, NULL, 0, NULL);
    assert_int_equal(sb_source_start(b.state), SB_ERR_CONFIG);
    const char *line = fake_host_log_find(b.fh, "reader 'syncbroker' is held by another broker");
    assert_non_null(line);
    char holder[64];
    snprintf(holder, sizeof holder, "syncbroker-lock %ld@", (long)getpid());
    assert_non_null(strstr(line, holder));
    src_free(&b);
    exec_ok(a.conn, "INSERT INTO public.bookings VALUES (2, 'b')");
    wait_changes(&a, 2, 5000);
    assert_int_equal(fake_host_resync_count(a.fh), 0);
    src_free(&a);
}

/* The lock session dies and the lock is free: taken back on the same position, no resync,
 * and what committed meanwhile arrives. (A read that started before the loss may deliver the
 * change before the lock is back: the log line, not the change, says it is.) */
static void test_lock_session_lost_costs_nothing(void **state)
{
    (void)state;
    src s;
    src_new(&s, SB_WAKE_NOTIFY,
            (const char *[]){"reconnect_min_ms=20", "reconnect_max_ms=200", NULL}, NULL, 0);
    assert_int_equal(sb_source_start(s.state), SB_OK);
    exec_ok(s.conn,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name LIKE 'syncbroker-lock %' AND datname = current_database()");
    assert_true(fake_host_run_until(s.fh, has_log,
                                    &(log_pred){s.fh, "lost the session holding the lock"}, 5000));
    exec_ok(s.conn, "INSERT INTO public.bookings VALUES (1, 'a')");
    wait_changes(&s, 1, 5000);
    assert_true(fake_host_run_until(
        s.fh, has_log, &(log_pred){s.fh, "took the lock of reader 'syncbroker' back"}, 5000));
    assert_int_equal(fake_host_resync_count(s.fh), 0);
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
    src_new_on(&s, NULL, SB_WAKE_POLL,
               (const char *[]){"reconnect_min_ms=10", "reconnect_max_ms=50", NULL}, NULL, 0, ci);
    assert_int_equal(sb_source_start(s.state), SB_OK);
    assert_non_null(fake_host_log_find(s.fh, "not reachable"));
    sb_key k = {(const char *[]){"1"}, 1};
    assert_int_equal(sb_source_fetch(s.state, 1, 0, &k, 1), SB_ERR_BUSY);
    assert_int_equal(sb_source_snapshot(s.state, 2, NULL, 0), SB_ERR_BUSY);
    fake_host_clear_records(s.fh);
    /* ~40 attempts in a second: logged once, not every time */
    fake_host_run_until(s.fh, has_changes, &(count_pred){s.fh, 1}, 1000);
    size_t main_lines = 0, lock_lines = 0; /* each connection logs for itself */
    for (size_t i = 0; i < fake_host_log_count(s.fh); i++) {
        const char *line = fake_host_log_line(s.fh, i);
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
