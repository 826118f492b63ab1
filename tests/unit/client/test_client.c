/*
 * test_client.c - libsyncclient against a fake broker (real PUB + ROUTER on 127.0.0.1):
 * snapshot then stream, buffered events, gaps (seq and tseq), since, resync, new epochs,
 * offline/online, own writes, truncate, presence, retries, malformed input.
 *
 * Synchronisation: the tests drive sb_client_poll() in short slices until the condition
 * they wait for holds, with a deadline; the fake publishes heartbeats while they do.
 */
#include "fake_broker.h"
#include "msg.h"

#include <syncbroker/client.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* cmocka needs the headers above first. */
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BOOKINGS "public.bookings"
#define GUESTS "public.guests"
#define DEADLINE_MS 5000

typedef struct rec_event {
    uint64_t seq;
    char table[32];
    char key[32];
    sb_op op;
    uint64_t version;
    bool own;
} rec_event;

typedef struct tctx {
    fake_broker b;
    sb_client *c;
    rec_event ev[64];
    size_t nev;
    int resets;
    int online_true, online_false;
    int npresence;
    char presence_key[32], presence_editor[32];
    size_t presence_n;
    int warnings;
    int last_rc;
} tctx;

static void on_event(const sb_client_event *ev, void *ud)
{
    tctx *t = ud;
    assert_true(t->nev < 64);
    rec_event *r = &t->ev[t->nev++];
    r->seq = ev->seq;
    snprintf(r->table, sizeof(r->table), "%s", ev->table);
    snprintf(r->key, sizeof(r->key), "%s", ev->nkey ? ev->key[0] : "");
    r->op = ev->op;
    r->version = ev->version;
    r->own = ev->own;
}

static void on_reset(void *ud)
{
    ((tctx *)ud)->resets++;
}

static void on_online(bool online, void *ud)
{
    tctx *t = ud;
    if (online)
        t->online_true++;
    else
        t->online_false++;
}

static void on_presence(const char *table, const char *const *key, uint32_t nkey,
                        const sb_client_editor *editors, size_t n, void *ud)
{
    tctx *t = ud;
    assert_string_equal(table, BOOKINGS);
    assert_int_equal(nkey, 1);
    t->npresence++;
    snprintf(t->presence_key, sizeof(t->presence_key), "%s", key[0]);
    snprintf(t->presence_editor, sizeof(t->presence_editor), "%s", n ? editors[0].client : "");
    t->presence_n = n;
}

static void on_log(sb_log_level level, const char *msg, void *ud)
{
    if (getenv("SB_TEST_VERBOSE"))
        fprintf(stderr, "client log: %s\n", msg);
    if (level <= SB_LOG_WARN)
        ((tctx *)ud)->warnings++;
}

static const char *const fake_tables[] = {BOOKINGS, GUESTS};

/* Options a test may change before the client starts. */
typedef struct topts {
    const char *const *tables;
    size_t ntables;
    uint32_t heartbeat_ms, request_timeout_ms, request_retries, presence_ttl_ms;
    bool no_snapshot;
} topts;

static tctx *start(const topts *o)
{
    tctx *t = calloc(1, sizeof(*t));
    assert_non_null(t);
    /* The fake beats every 50 ms; a client may expect them less often (a slow run, e.g.
     * under valgrind, must not look offline where the test checks it never went offline). */
    uint32_t hb = o && o->heartbeat_ms ? o->heartbeat_ms : 50;
    fb_init(&t->b, "epoch-1", 50, fake_tables, 2);
    sb_client_config cfg = {
        .pub_endpoint = t->b.pub_ep,
        .service_endpoint = t->b.svc_ep,
        .client_id = "desk-a",
        .tables = o ? o->tables : NULL,
        .ntables = o ? o->ntables : 0,
        .heartbeat_ms = hb,
        .request_timeout_ms = o && o->request_timeout_ms ? o->request_timeout_ms : 2000,
        .request_retries = o ? o->request_retries : 0,
        .presence_ttl_ms = o ? o->presence_ttl_ms : 0,
        .no_snapshot = o && o->no_snapshot,
        .cb = {on_event, on_reset, on_online, on_presence, on_log},
        .ud = t,
    };
    assert_int_equal(sb_client_new(&cfg, &t->c), SB_OK);
    assert_int_equal(sb_client_start(t->c), SB_OK);
    return t;
}

static void stop(tctx *t)
{
    sb_client_destroy(t->c);
    fb_free(&t->b);
    free(t);
}

/* One slice: the fake's heartbeat timer, then the client's I/O. */
static void slice(tctx *t)
{
    fb_tick(&t->b);
    int rc = sb_client_poll(t->c, 5);
    if (rc != SB_OK)
        t->last_rc = rc;
}

typedef bool (*pred_fn)(tctx *t, const void *arg);

static bool drive(tctx *t, pred_fn pred, const void *arg, uint64_t max_ms)
{
    uint64_t end = fb_now_ms() + max_ms;
    while (!pred(t, arg)) {
        if (fb_now_ms() >= end)
            return false;
        slice(t);
    }
    return true;
}

static bool never(tctx *t, const void *arg)
{
    (void)t;
    (void)arg;
    return false;
}

static bool online_count(tctx *t, const void *n)
{
    return t->online_true >= *(const int *)n;
}

static bool offline_count(tctx *t, const void *n)
{
    return t->online_false >= *(const int *)n;
}

static bool event_count(tctx *t, const void *n)
{
    return t->nev >= *(const size_t *)n;
}

static bool reset_count(tctx *t, const void *n)
{
    return t->resets >= *(const int *)n;
}

static bool presence_count(tctx *t, const void *n)
{
    return t->npresence >= *(const int *)n;
}

static bool got_rc(tctx *t, const void *rc)
{
    return t->last_rc == *(const int *)rc;
}

/* Wait for the client's next request; it must be `op`. */
static void expect_request(tctx *t, const char *op, fb_req *r)
{
    uint64_t end = fb_now_ms() + DEADLINE_MS;
    while (!fb_poll_request(&t->b, r)) {
        assert_true(fb_now_ms() < end);
        slice(t);
    }
    if (!fb_req_is(r, op))
        fail_msg("expected a %s request", op);
}

static void wait_online(tctx *t, int n)
{
    assert_true(drive(t, online_count, &n, DEADLINE_MS));
}

static void wait_events(tctx *t, size_t n)
{
    assert_true(drive(t, event_count, &n, DEADLINE_MS));
}

static uint64_t req_uint(const fb_req *r, const char *key)
{
    const msgpack_object *o = fb_req_get(r, key);
    assert_non_null(o);
    assert_int_equal(o->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    return o->via.u64;
}

static bool req_str_is(const fb_req *r, const char *key, const char *want)
{
    const msgpack_object *o = fb_req_get(r, key);
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(want) &&
           memcmp(o->via.str.ptr, want, o->via.str.size) == 0;
}

/* Snapshot at the fake's current seq with `rows`, then wait until the client is online. */
static void sync_with(tctx *t, const fb_row *rows, size_t n)
{
    fb_req r;
    expect_request(t, "snapshot", &r);
    fb_reply_snapshot(&t->b, &r, t->b.seq, rows, n);
    fb_req_free(&r);
    int resets = t->resets + 1;
    assert_true(drive(t, reset_count, &resets, DEADLINE_MS));
    assert_true(sb_client_online(t->c));
}

static uint64_t version_of(tctx *t, const char *table, const char *key)
{
    uint64_t v = 0;
    const char *k[1] = {key};
    return sb_client_get(t->c, table, k, 1, NULL, NULL, &v) == SB_OK ? v : 0;
}

static int count_row(const sb_client_row *row, void *ud)
{
    (void)row;
    ++*(int *)ud;
    return 0;
}

static size_t rows_of(tctx *t, const char *table)
{
    int n = 0;
    size_t visited = sb_client_foreach(t->c, table, count_row, &n);
    assert_int_equal(visited, (size_t)n);
    return visited;
}

/* ---- tests ----------------------------------------------------------------------------- */

static void test_snapshot_then_stream(void **state)
{
    (void)state;
    topts o = {.heartbeat_ms = 1000};
    tctx *t = start(&o);
    fb_change(&t->b, BOOKINGS, "1", "insert", 1, NULL, 1, "a", false);
    fb_change(&t->b, BOOKINGS, "2", "insert", 2, NULL, 2, "b", false);
    fb_req r;
    expect_request(t, "snapshot", &r);
    assert_null(fb_req_get(&r, "tables")); /* all tables */
    /* While the snapshot is cut: seq 3 is in it, seq 4.. are not. */
    uint64_t snap = fb_change(&t->b, BOOKINGS, "3", "insert", 3, NULL, 3, "c", false);
    fb_change(&t->b, BOOKINGS, "4", "insert", 4, NULL, 4, "d", false);
    fb_change(&t->b, BOOKINGS, "1", "update", 9, NULL, 1, "old", false); /* snapshot has v10 */
    fb_change(&t->b, BOOKINGS, "2", "update", 20, NULL, 2, "b2", false);
    const fb_row rows[] = {
        {BOOKINGS, "1", 10, 1, "a10"}, {BOOKINGS, "2", 2, 2, "b"}, {BOOKINGS, "3", 3, 3, "c"}};
    fb_reply_snapshot(&t->b, &r, snap, rows, 3);
    fb_req_free(&r);
    wait_online(t, 1);
    wait_events(t, 2);
    assert_int_equal(t->resets, 1);
    assert_int_equal(t->ev[0].seq, 4);
    assert_string_equal(t->ev[0].key, "4");
    assert_int_equal(t->ev[1].seq, 6);
    assert_int_equal(t->ev[1].version, 20);
    assert_int_equal(version_of(t, BOOKINGS, "1"), 10);
    assert_int_equal(version_of(t, BOOKINGS, "2"), 20);
    assert_int_equal(version_of(t, BOOKINGS, "3"), 3);
    assert_int_equal(version_of(t, BOOKINGS, "4"), 4);
    /* Streaming: a delete removes the row. */
    fb_change(&t->b, BOOKINGS, "3", "delete", 30, NULL, 0, NULL, false);
    wait_events(t, 3);
    assert_int_equal(t->ev[2].op, SB_OP_DELETE);
    assert_int_equal(version_of(t, BOOKINGS, "3"), 0);
    assert_int_equal(rows_of(t, BOOKINGS), 3);
    /* The row bytes are the broker's row. */
    const void *row;
    size_t len;
    char *json;
    const char *k[1] = {"2"};
    assert_int_equal(sb_client_get(t->c, BOOKINGS, k, 1, &row, &len, NULL), SB_OK);
    assert_int_equal(sb_client_json(row, len, &json), SB_OK);
    assert_string_equal(json, "{\"id\":2,\"name\":\"b2\"}");
    free(json);
    assert_int_equal(t->nev, 3);
    assert_int_equal(t->online_true, 1);
    assert_int_equal(t->online_false, 0);
    stop(t);
}

/* Events the snapshot already holds may arrive after its reply: they are not applied (a
 * truncate among them would otherwise wipe rows the snapshot has). */
static void test_covered_events_after_reply(void **state)
{
    (void)state;
    tctx *t = start(NULL);
    fb_req r;
    expect_request(t, "snapshot", &r);
    const fb_row rows[] = {{BOOKINGS, "1", 5, 1, "a"}};
    fb_reply_snapshot(&t->b, &r, t->b.seq + 2, rows, 1);
    fb_req_free(&r);
    wait_online(t, 1);
    fb_change(&t->b, BOOKINGS, NULL, "truncate", 1, NULL, 0, NULL, false);
    fb_change(&t->b, BOOKINGS, "1", "insert", 5, NULL, 1, "a", false);
    fb_change(&t->b, BOOKINGS, "2", "insert", 6, NULL, 2, "b", false);
    wait_events(t, 1);
    assert_int_equal(t->ev[0].seq, 3);
    assert_int_equal(rows_of(t, BOOKINGS), 2);
    assert_int_equal(version_of(t, BOOKINGS, "1"), 5);
    stop(t);
}

static void test_gap_since(void **state)
{
    (void)state;
    topts o = {.heartbeat_ms = 1000};
    tctx *t = start(&o);
    sync_with(t, NULL, 0);
    uint64_t k = fb_change(&t->b, BOOKINGS, "1", "insert", 1, NULL, 1, "a", false);
    fb_change(&t->b, BOOKINGS, "2", "insert", 2, NULL, 2, "b", true); /* lost */
    fb_presence(&t->b, BOOKINGS, "1", "desk-b");                      /* lost too */
    fb_change(&t->b, GUESTS, "7", "insert", 3, NULL, 7, "g", false);
    fb_req r;
    expect_request(t, "since", &r);
    assert_int_equal(req_uint(&r, "seq"), k);
    assert_true(req_str_is(&r, "epoch", "epoch-1"));
    fb_reply_since(&t->b, &r, k);
    fb_req_free(&r);
    wait_events(t, 3);
    assert_int_equal(t->ev[0].seq, k);
    assert_int_equal(t->ev[1].seq, k + 1);
    assert_string_equal(t->ev[1].key, "2");
    assert_int_equal(t->ev[2].seq, k + 3);
    assert_string_equal(t->ev[2].table, GUESTS);
    assert_int_equal(t->npresence, 1);
    assert_string_equal(t->presence_editor, "desk-b");
    /* Back in the stream, nothing twice. */
    fb_change(&t->b, BOOKINGS, "5", "insert", 9, NULL, 5, "e", false);
    wait_events(t, 4);
    assert_int_equal(t->ev[3].seq, k + 4);
    assert_int_equal(t->online_true, 1);
    stop(t);
}

/* Following some tables: gaps come from tseq, here announced by a heartbeat. */
static void test_gap_tables_heartbeat(void **state)
{
    (void)state;
    const char *const tables[] = {BOOKINGS};
    topts o = {.tables = tables, .ntables = 1};
    tctx *t = start(&o);
    fb_req r;
    expect_request(t, "snapshot", &r);
    const msgpack_object *tl = fb_req_get(&r, "tables");
    assert_non_null(tl);
    assert_int_equal(tl->type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal(tl->via.array.size, 1);
    fb_reply_snapshot(&t->b, &r, t->b.seq, NULL, 0);
    fb_req_free(&r);
    wait_online(t, 1);
    fb_change(&t->b, GUESTS, "7", "insert", 1, NULL, 7, "g", false); /* not followed */
    uint64_t first = fb_change(&t->b, BOOKINGS, "1", "insert", 2, NULL, 1, "a", false);
    wait_events(t, 1);
    fb_change(&t->b, BOOKINGS, "2", "insert", 3, NULL, 2, "b", true); /* lost */
    fb_heartbeat(&t->b);
    expect_request(t, "since", &r);
    assert_int_equal(req_uint(&r, "seq"), first); /* bookings was complete up to there */
    fb_reply_since(&t->b, &r, req_uint(&r, "seq"));
    fb_req_free(&r);
    wait_events(t, 2);
    assert_string_equal(t->ev[1].key, "2");
    assert_int_equal(t->nev, 2); /* the guests event in the replay is not ours */
    assert_int_equal(version_of(t, GUESTS, "7"), 0);
    stop(t);
}

/* Following all tables of a CURVE broker that restricts it: its heartbeat comes on
 * "@hb/desk-a/" and lists its tables, which it then follows by tseq, so the seqs the other
 * table takes are no gap; a lost message of its own table still is. */
static void test_restricted_follows_heartbeat_tables(void **state)
{
    (void)state;
    tctx *t = calloc(1, sizeof(*t));
    assert_non_null(t);
    fb_init(&t->b, "epoch-1", 50, fake_tables, 2);
    t->b.principal = "desk-a";
    t->b.hidden = BOOKINGS;
    sb_client_config cfg = {
        .pub_endpoint = t->b.pub_ep,
        .service_endpoint = t->b.svc_ep,
        .client_id = "desk-a",
        .heartbeat_ms = 50,
        .request_timeout_ms = 2000,
        .cb = {on_event, on_reset, on_online, on_presence, on_log},
        .ud = t,
    };
    assert_int_equal(sb_client_new(&cfg, &t->c), SB_OK);
    assert_int_equal(sb_client_start(t->c), SB_OK);
    fb_change(&t->b, BOOKINGS, "1", "insert", 1, NULL, 1, "a", false);
    fb_req r;
    expect_request(t, "snapshot", &r);
    const msgpack_object *tl = fb_req_get(&r, "tables");
    assert_non_null(tl); /* its tables, from the heartbeat */
    assert_int_equal(tl->via.array.size, 1);
    fb_reply_snapshot(&t->b, &r, t->b.seq, NULL, 0);
    fb_req_free(&r);
    wait_online(t, 1);
    fb_change(&t->b, BOOKINGS, "2", "insert", 2, NULL, 2, "b", false); /* seq jumps */
    uint64_t first = fb_change(&t->b, GUESTS, "7", "insert", 3, NULL, 7, "g", false);
    fb_change(&t->b, BOOKINGS, "3", "insert", 4, NULL, 3, "c", false);
    fb_change(&t->b, GUESTS, "8", "insert", 5, NULL, 8, "h", false);
    wait_events(t, 2);
    fb_heartbeat(&t->b);
    fb_change(&t->b, GUESTS, "9", "insert", 6, NULL, 9, "i", true); /* lost */
    fb_change(&t->b, GUESTS, "10", "insert", 7, NULL, 10, "j", false);
    expect_request(t, "since", &r);
    assert_true(req_uint(&r, "seq") > first);
    fb_reply_since(&t->b, &r, req_uint(&r, "seq"));
    fb_req_free(&r);
    wait_events(t, 4);
    assert_string_equal(t->ev[2].key, "9");
    assert_string_equal(t->ev[3].key, "10");
    assert_int_equal(t->resets, 1); /* no resync: the seq jumps were not gaps */
    assert_int_equal(t->online_false, 0);
    stop(t);
}

static void test_since_resync_takes_snapshot(void **state)
{
    (void)state;
    tctx *t = start(NULL);
    const fb_row old[] = {{BOOKINGS, "1", 1, 1, "a"}};
    sync_with(t, old, 1);
    fb_change(&t->b, BOOKINGS, "2", "insert", 2, NULL, 2, "b", true); /* lost */
    fb_change(&t->b, BOOKINGS, "3", "insert", 3, NULL, 3, "c", false);
    fb_req r;
    expect_request(t, "since", &r);
    fb_reply_error(&t->b, &r, "resync");
    fb_req_free(&r);
    const fb_row now[] = {{BOOKINGS, "2", 2, 2, "b"}, {BOOKINGS, "3", 3, 3, "c"}};
    sync_with(t, now, 2);
    assert_int_equal(t->resets, 2);
    assert_int_equal(version_of(t, BOOKINGS, "1"), 0);
    assert_int_equal(version_of(t, BOOKINGS, "2"), 2);
    assert_int_equal(rows_of(t, BOOKINGS), 2);
    stop(t);
}

/* A broker that answers `since` with "future" says our position is ahead of it: snapshot. */
static void test_since_future_takes_snapshot(void **state)
{
    (void)state;
    tctx *t = start(NULL);
    sync_with(t, NULL, 0);
    fb_change(&t->b, BOOKINGS, "1", "insert", 1, NULL, 1, "a", true); /* lost */
    fb_change(&t->b, BOOKINGS, "2", "insert", 2, NULL, 2, "b", false);
    fb_req r;
    expect_request(t, "since", &r);
    fb_reply_error(&t->b, &r, "future");
    fb_req_free(&r);
    const fb_row now[] = {{BOOKINGS, "1", 0, 1, "a"}, {BOOKINGS, "2", 0, 2, "b"}};
    sync_with(t, now, 2);
    assert_int_equal(t->resets, 2);
    assert_int_equal(rows_of(t, BOOKINGS), 2);
    /* Snapshot versions are lower bounds (0 here): the next event of the entity wins. */
    fb_change(&t->b, BOOKINGS, "1", "update", 3, NULL, 1, "a3", false);
    wait_events(t, 1);
    assert_int_equal(version_of(t, BOOKINGS, "1"), 3);
    stop(t);
}

static void test_new_epoch_resyncs(void **state)
{
    (void)state;
    tctx *t = start(NULL);
    const fb_row old[] = {{BOOKINGS, "1", 1, 1, "a"}};
    sync_with(t, old, 1);
    fb_change(&t->b, BOOKINGS, "1", "update", 5, NULL, 1, "a5", false);
    wait_events(t, 1);
    fb_new_epoch(&t->b, "epoch-2"); /* broker restarted: seq starts again */
    fb_req r;
    expect_request(t, "snapshot", &r); /* not since: the old seq means nothing now */
    const fb_row rows[] = {{BOOKINGS, "9", 2, 9, "z"}};
    fb_reply_snapshot(&t->b, &r, t->b.seq, rows, 1);
    fb_req_free(&r);
    int two = 2;
    assert_true(drive(t, reset_count, &two, DEADLINE_MS));
    assert_int_equal(t->resets, 2);
    assert_int_equal(version_of(t, BOOKINGS, "1"), 0);
    assert_int_equal(version_of(t, BOOKINGS, "9"), 2);
    fb_change(&t->b, BOOKINGS, "9", "update", 3, NULL, 9, "z3", false);
    wait_events(t, 2);
    assert_int_equal(t->ev[1].seq, 1);
    stop(t);
}

static void test_offline_then_online(void **state)
{
    (void)state;
    tctx *t = start(NULL);
    sync_with(t, NULL, 0);
    t->b.hb_on = false;
    int one = 1;
    assert_true(drive(t, offline_count, &one, DEADLINE_MS));
    assert_false(sb_client_online(t->c));
    /* Four more silent intervals: still exactly one offline report. */
    assert_false(drive(t, never, NULL, 4 * t->b.hb_ms));
    assert_int_equal(t->online_false, 1);
    /* The broker is back (and missed nothing): since, then online again once. */
    t->b.hb_on = true;
    fb_req r;
    expect_request(t, "since", &r);
    fb_reply_since(&t->b, &r, req_uint(&r, "seq"));
    fb_req_free(&r);
    wait_online(t, 2);
    assert_true(sb_client_online(t->c));
    assert_false(drive(t, never, NULL, 2 * t->b.hb_ms));
    assert_int_equal(t->online_true, 2);
    assert_int_equal(t->online_false, 1);
    stop(t);
}

/* Answer every queued request as an honest broker would; counts them. */
typedef struct served {
    int since, snapshot;
    uint64_t last_snapshot_ms;
} served;

static void serve(tctx *t, served *sv)
{
    fb_req r;
    while (fb_poll_request(&t->b, &r)) {
        if (fb_req_is(&r, "since")) {
            sv->since++;
            fb_reply_since(&t->b, &r, req_uint(&r, "seq"));
        } else if (fb_req_is(&r, "snapshot")) {
            sv->snapshot++;
            sv->last_snapshot_ms = fb_now_ms();
            fb_reply_snapshot(&t->b, &r, t->b.seq, NULL, 0);
        }
        fb_req_free(&r);
    }
}

/* Drive and serve until pred holds or max_ms pass. */
static bool drive_serving(tctx *t, served *sv, pred_fn pred, const void *arg, uint64_t max_ms)
{
    uint64_t end = fb_now_ms() + max_ms;
    while (!pred(t, arg)) {
        if (fb_now_ms() >= end)
            return false;
        slice(t);
        serve(t, sv);
    }
    return true;
}

/* One forged event from the future (seq 2^64-1): the `since` it triggers answers a last seq
 * below it, so the stream lied; the client resynchronises once and streams on, instead of
 * asking `since` forever. */
static void test_future_seq_resyncs_once(void **state)
{
    (void)state;
    tctx *t = start(NULL);
    sync_with(t, NULL, 0);
    fb_change(&t->b, BOOKINGS, "1", "insert", 1, NULL, 1, "a", false);
    wait_events(t, 1);
    fb_forged_change(&t->b, BOOKINGS, "2", UINT64_MAX, UINT64_MAX, 2);
    fb_req r;
    expect_request(t, "since", &r);
    fb_reply_since(&t->b, &r, req_uint(&r, "seq"));
    fb_req_free(&r);
    expect_request(t, "snapshot", &r);
    fb_reply_snapshot(&t->b, &r, t->b.seq, NULL, 0);
    fb_req_free(&r);
    int two = 2;
    assert_true(drive(t, reset_count, &two, DEADLINE_MS));
    assert_true(sb_client_online(t->c));
    /* In sync again: nothing more is asked, and the stream is applied. */
    assert_false(drive(t, never, NULL, 10 * t->b.hb_ms));
    assert_false(fb_poll_request(&t->b, &r));
    fb_change(&t->b, BOOKINGS, "3", "insert", 3, NULL, 3, "c", false);
    wait_events(t, 2);
    assert_string_equal(t->ev[1].key, "3");
    assert_int_equal(version_of(t, BOOKINGS, "2"), 0);
    assert_int_equal(t->nev, 2);
    stop(t);
}

/* A publisher that keeps lying: resyncs back off (each waits longer), so the broker sees a
 * handful of requests, not thousands; once the lies stop the client is in sync again. */
static void test_repeated_lies_back_off(void **state)
{
    (void)state;
    tctx *t = start(NULL);
    sync_with(t, NULL, 0);
    served sv = {0};
    uint64_t end = fb_now_ms() + 40 * t->b.hb_ms;
    while (fb_now_ms() < end) {
        fb_forged_change(&t->b, BOOKINGS, "9", UINT64_MAX, UINT64_MAX, 9);
        slice(t);
        serve(t, &sv);
    }
    /* Waits of 0, 1, 2, 4, 8, 16 heartbeat intervals fit in 40: at most 6 rounds. */
    assert_true(sv.snapshot >= 2);
    assert_true(sv.snapshot <= 6);
    assert_true(sv.since <= sv.snapshot + 1);
    assert_true(t->online_false >= 1); /* a resync put off is reported offline */
    int again = t->online_true + 1;
    if (sb_client_online(t->c))
        again--;
    assert_true(drive_serving(t, &sv, online_count, &again, DEADLINE_MS));
    fb_change(&t->b, BOOKINGS, "1", "insert", 1, NULL, 1, "a", false);
    size_t one = 1;
    assert_true(drive_serving(t, &sv, event_count, &one, DEADLINE_MS));
    assert_int_equal(version_of(t, BOOKINGS, "9"), 0);
    stop(t);
}

/* Following some tables: a tseq jump larger than the seq jump cannot be true (tseq counts a
 * subset of what seq counts), so the client resyncs at once, without a `since`. */
static void test_forged_tseq_resyncs(void **state)
{
    (void)state;
    const char *const tables[] = {BOOKINGS};
    topts o = {.tables = tables, .ntables = 1};
    tctx *t = start(&o);
    sync_with(t, NULL, 0);
    fb_change(&t->b, BOOKINGS, "1", "insert", 1, NULL, 1, "a", false);
    wait_events(t, 1);
    fb_forged_change(&t->b, BOOKINGS, "2", t->b.seq + 1, UINT64_MAX, 2);
    fb_req r;
    expect_request(t, "snapshot", &r);
    fb_reply_snapshot(&t->b, &r, t->b.seq, NULL, 0);
    fb_req_free(&r);
    int two = 2;
    assert_true(drive(t, reset_count, &two, DEADLINE_MS));
    fb_change(&t->b, BOOKINGS, "3", "insert", 3, NULL, 3, "c", false);
    wait_events(t, 2);
    assert_string_equal(t->ev[1].key, "3");
    assert_false(fb_poll_request(&t->b, &r));
    stop(t);
}

/* ---- capped since replies (more/upto) ------------------------------------------------ */

/* What a client ended with: the events applied (seq order) and the versions it holds. */
typedef struct outcome {
    uint64_t seqs[64];
    size_t n;
    uint64_t versions[14];
    int sinces;
} outcome;

#define BURST 12

/* A client following `tables` (NULL: all) streams one event, then misses BURST changes (every
 * third of guests), then gets one that shows the gap. The fake caps its `since` replies at
 * `cap` messages (0: no cap). Each since must ask from where the previous reply stopped;
 * none may be a snapshot. */
static void lost_burst(size_t cap, const char *const *tables, size_t ntables, outcome *out)
{
    topts o = {.tables = tables, .ntables = ntables, .heartbeat_ms = 1000};
    tctx *t = start(&o);
    sync_with(t, NULL, 0);
    t->b.since_cap = cap;
    uint64_t k = fb_change(&t->b, BOOKINGS, "0", "insert", 1, NULL, 0, "a", false);
    wait_events(t, 1);
    size_t followed = 1;
    for (int i = 1; i <= BURST; i++) {
        char key[8];
        snprintf(key, sizeof key, "%d", i);
        bool guest = i % 3 == 0;
        followed += !guest || !ntables;
        fb_change(&t->b, guest ? GUESTS : BOOKINGS, key, "insert", 1 + (uint64_t)i, NULL, i, "b",
                  true);
    }
    fb_change(&t->b, BOOKINGS, "13", "insert", 20, NULL, 13, "c", false);
    followed++;
    uint64_t from = k, end = fb_now_ms() + DEADLINE_MS;
    *out = (outcome){0};
    while (t->nev < followed || from < k + BURST + 1) {
        assert_true(fb_now_ms() < end);
        slice(t);
        fb_req r;
        if (!fb_poll_request(&t->b, &r))
            continue;
        if (!fb_req_is(&r, "since"))
            fail_msg("expected only since requests");
        assert_int_equal(req_uint(&r, "seq"), from);
        fb_reply_since(&t->b, &r, from);
        from = cap && t->b.seq - from > cap ? from + cap : t->b.seq;
        out->sinces++;
        fb_req_free(&r);
    }
    /* Back in the stream: nothing asked again, nothing applied twice. */
    assert_false(drive(t, never, NULL, 200));
    fb_req r;
    assert_false(fb_poll_request(&t->b, &r));
    assert_int_equal(t->nev, followed);
    assert_int_equal(t->resets, 1);
    assert_true(sb_client_online(t->c));
    for (size_t i = 0; i < t->nev; i++)
        out->seqs[out->n++] = t->ev[i].seq;
    for (int i = 0; i <= BURST + 1; i++) {
        char key[8];
        snprintf(key, sizeof key, "%d", i);
        out->versions[i] = version_of(t, i && i % 3 == 0 ? GUESTS : BOOKINGS, key);
    }
    stop(t);
}

static void assert_same_outcome(const outcome *a, const outcome *b)
{
    assert_int_equal(a->n, b->n);
    assert_memory_equal(a->seqs, b->seqs, a->n * sizeof a->seqs[0]);
    assert_memory_equal(a->versions, b->versions, sizeof a->versions);
}

/* A capped reply is applied and followed from its upto until complete: the client ends
 * where one uncapped reply takes it, in ceil(13 / cap) requests, without a snapshot. */
static void test_since_follows_more(void **state)
{
    (void)state;
    outcome whole, capped;
    lost_burst(0, NULL, 0, &whole);
    assert_int_equal(whole.sinces, 1);
    assert_int_equal(whole.n, BURST + 2);
    for (size_t i = 1; i < whole.n; i++)
        assert_int_equal(whole.seqs[i], whole.seqs[i - 1] + 1);
    lost_burst(3, NULL, 0, &capped);
    assert_int_equal(capped.sinces, 5);
    assert_same_outcome(&whole, &capped);
    /* Exactly the cap left: one complete reply. One under: a second request for the last. */
    lost_burst(BURST + 1, NULL, 0, &capped);
    assert_int_equal(capped.sinces, 1);
    assert_same_outcome(&whole, &capped);
    lost_burst(BURST, NULL, 0, &capped);
    assert_int_equal(capped.sinces, 2);
    assert_same_outcome(&whole, &capped);
}

/* Following one table: the replay also holds the other table's messages, and upto (not the
 * table's own last event) is where the next request starts. */
static void test_since_follows_more_tables(void **state)
{
    (void)state;
    const char *const tables[] = {BOOKINGS};
    outcome whole, capped;
    lost_burst(0, tables, 1, &whole);
    assert_int_equal(whole.n, BURST - BURST / 3 + 2);
    lost_burst(2, tables, 1, &capped);
    assert_int_equal(capped.sinces, 7);
    assert_same_outcome(&whole, &capped);
}

/* A gap of two lost messages; returns the since request (to be answered by the test). */
static tctx *gap_then_since(fb_req *r)
{
    tctx *t = start(NULL);
    sync_with(t, NULL, 0);
    fb_change(&t->b, BOOKINGS, "1", "insert", 1, NULL, 1, "a", false);
    wait_events(t, 1);
    fb_change(&t->b, BOOKINGS, "2", "insert", 2, NULL, 2, "b", true);
    fb_change(&t->b, BOOKINGS, "3", "insert", 3, NULL, 3, "c", true);
    fb_change(&t->b, BOOKINGS, "4", "insert", 4, NULL, 4, "d", false);
    expect_request(t, "since", r);
    return t;
}

/* `more` that cannot be true: an upto that does not advance, one behind the seq asked, one
 * past the messages sent, none at all. Each is answered by a snapshot, never by another
 * since. */
static void test_since_lying_more_resyncs(void **state)
{
    (void)state;
    enum { UPTO_FROM, UPTO_BEHIND, UPTO_PAST_SENT, UPTO_NONE };
    static const struct {
        size_t sent;
        int upto;
    } lies[] = {{0, UPTO_FROM}, {1, UPTO_BEHIND}, {1, UPTO_PAST_SENT}, {1, UPTO_NONE}};
    for (size_t i = 0; i < sizeof lies / sizeof lies[0]; i++) {
        fb_req r;
        tctx *t = gap_then_since(&r);
        uint64_t from = req_uint(&r, "seq");
        uint64_t upto = lies[i].upto == UPTO_FROM        ? from
                        : lies[i].upto == UPTO_BEHIND    ? from - 1
                        : lies[i].upto == UPTO_PAST_SENT ? from + lies[i].sent + 1
                                                         : FB_NO_UPTO;
        fb_reply_since_more(&t->b, &r, from, lies[i].sent, upto);
        fb_req_free(&r);
        const fb_row now[] = {{BOOKINGS, "2", 2, 2, "b"}, {BOOKINGS, "3", 3, 3, "c"}};
        sync_with(t, now, 2);
        assert_int_equal(t->resets, 2);
        assert_int_equal(version_of(t, BOOKINGS, "3"), 3);
        stop(t);
    }
}

/* A broker that answers every `since` with a `more` that does not advance: the resyncs it
 * causes back off as for any contradiction, so the client never loops on since. */
static void test_since_lying_more_backs_off(void **state)
{
    (void)state;
    tctx *t = start(NULL);
    sync_with(t, NULL, 0);
    served sv = {0};
    uint64_t now = fb_now_ms(), end = now + 40 * t->b.hb_ms, next_gap = now;
    while ((now = fb_now_ms()) < end) {
        if (now >= next_gap) {
            fb_change(&t->b, BOOKINGS, "1", "update", t->b.seq + 1, NULL, 1, "x", true);
            fb_change(&t->b, BOOKINGS, "2", "update", t->b.seq + 1, NULL, 2, "y", false);
            next_gap = now + t->b.hb_ms / 2;
        }
        slice(t);
        fb_req r;
        while (fb_poll_request(&t->b, &r)) {
            if (fb_req_is(&r, "since")) {
                sv.since++;
                uint64_t from = req_uint(&r, "seq");
                fb_reply_since_more(&t->b, &r, from, 0, from);
            } else if (fb_req_is(&r, "snapshot")) {
                sv.snapshot++;
                fb_reply_snapshot(&t->b, &r, t->b.seq, NULL, 0);
            }
            fb_req_free(&r);
        }
    }
    /* As test_repeated_lies_back_off: waits of 0, 1, 2, 4, 8, 16 intervals fit in 40. */
    assert_true(sv.snapshot >= 2);
    assert_true(sv.snapshot <= 6);
    assert_true(sv.since <= sv.snapshot + 1);
    stop(t);
}

/* The broker's period (hb_ms in heartbeats) drives offline detection once known: a client
 * configured for 50 ms stays online when the broker, as after a SIGHUP, announces and keeps
 * a 300 ms period, and goes offline 3 of the broker's intervals after the last heartbeat.
 * (test_offline_then_online: a broker that does not announce its period leaves the
 * configured one in force.) */
static void test_heartbeat_period_from_broker(void **state)
{
    (void)state;
    tctx *t = start(NULL);
    sync_with(t, NULL, 0);
    t->b.hb_ms = t->b.announce_hb_ms = 300;
    fb_heartbeat(&t->b);
    assert_false(drive(t, never, NULL, 5 * 300));
    assert_int_equal(t->online_false, 0);
    t->b.hb_on = false;
    int one = 1;
    assert_true(drive(t, offline_count, &one, DEADLINE_MS));
    assert_true(fb_now_ms() - t->b.last_hb_ms >= 3 * 300);
    assert_int_equal(t->online_true, 1);
    stop(t);
}

static void test_own_writes(void **state)
{
    (void)state;
    tctx *t = start(NULL);
    sync_with(t, NULL, 0);
    assert_string_equal(sb_client_id(t->c), "desk-a");
    fb_change(&t->b, BOOKINGS, "1", "insert", 1, "desk-a", 1, "mine", false);
    fb_change(&t->b, BOOKINGS, "2", "insert", 2, "desk-b", 2, "theirs", false);
    fb_change(&t->b, BOOKINGS, "3", "insert", 3, NULL, 3, "nobody", false);
    wait_events(t, 3);
    assert_true(t->ev[0].own);
    assert_false(t->ev[1].own);
    assert_false(t->ev[2].own);
    stop(t);
}

static void test_truncate_clears_table(void **state)
{
    (void)state;
    tctx *t = start(NULL);
    const fb_row rows[] = {
        {BOOKINGS, "1", 7, 1, "a"}, {BOOKINGS, "2", 8, 2, "b"}, {GUESTS, "1", 9, 1, "g"}};
    sync_with(t, rows, 3);
    assert_int_equal(rows_of(t, BOOKINGS), 2);
    assert_int_equal(rows_of(t, NULL), 3);
    fb_change(&t->b, BOOKINGS, NULL, "truncate", 10, NULL, 0, NULL, false);
    wait_events(t, 1);
    assert_int_equal(t->ev[0].op, SB_OP_TRUNCATE);
    assert_int_equal(rows_of(t, BOOKINGS), 0);
    assert_int_equal(rows_of(t, GUESTS), 1);
    /* Versions were forgotten with the rows. */
    fb_change(&t->b, BOOKINGS, "1", "insert", 1, NULL, 1, "again", false);
    wait_events(t, 2);
    assert_int_equal(version_of(t, BOOKINGS, "1"), 1);
    stop(t);
}

static void test_presence(void **state)
{
    (void)state;
    topts o = {.presence_ttl_ms = 300};
    tctx *t = start(&o);
    sync_with(t, NULL, 0);
    const char *key[1] = {"3"};
    assert_int_equal(sb_client_begin_edit(t->c, BOOKINGS, key, 1), SB_OK);
    fb_req r;
    expect_request(t, "presence", &r);
    assert_true(req_str_is(&r, "client", "desk-a"));
    assert_true(req_str_is(&r, "table", BOOKINGS));
    assert_true(req_str_is(&r, "key", "3"));
    assert_true(req_str_is(&r, "state", "editing"));
    assert_int_equal(req_uint(&r, "ttl_ms"), 300);
    uint64_t first = fb_now_ms();
    fb_reply_ok(&t->b, &r);
    fb_req_free(&r);
    /* Refreshed before the TTL runs out. */
    expect_request(t, "presence", &r);
    assert_true(req_str_is(&r, "state", "editing"));
    assert_true(fb_now_ms() - first < 300);
    fb_reply_error(&t->b, &r, "bad_request"); /* reported, not fatal */
    fb_req_free(&r);
    assert_int_equal(sb_client_end_edit(t->c, BOOKINGS, key, 1), SB_OK);
    expect_request(t, "presence", &r);
    assert_true(req_str_is(&r, "state", "left"));
    fb_req_free(&r);
    assert_int_equal(sb_client_end_edit(t->c, BOOKINGS, key, 1), SB_ERR_NOTFOUND);
    /* Presence from the broker reaches on_presence. */
    fb_presence(&t->b, BOOKINGS, "3", "desk-b");
    int n = 1;
    assert_true(drive(t, presence_count, &n, DEADLINE_MS));
    assert_string_equal(t->presence_key, "3");
    assert_string_equal(t->presence_editor, "desk-b");
    fb_presence(&t->b, BOOKINGS, "3", NULL);
    n = 2;
    assert_true(drive(t, presence_count, &n, DEADLINE_MS));
    assert_int_equal(t->presence_n, 0);
    assert_true(t->warnings >= 1); /* the bad_request reply */
    stop(t);
}

/* Lazy Pirate: an unanswered snapshot is asked again (fresh socket, new request id). */
static void test_snapshot_retry(void **state)
{
    (void)state;
    topts o = {.request_timeout_ms = 100, .request_retries = 3};
    tctx *t = start(&o);
    fb_req first, second;
    expect_request(t, "snapshot", &first);
    expect_request(t, "snapshot", &second);
    assert_int_equal(first.n, 4); /* routing id, request id, delimiter, body */
    assert_int_equal(second.n, 4);
    assert_int_equal(zmq_msg_size(&second.frames[2]), 0);
    assert_memory_not_equal(zmq_msg_data(&first.frames[1]), zmq_msg_data(&second.frames[1]), 4);
    fb_reply_snapshot(&t->b, &first, t->b.seq, NULL, 0); /* too late: dropped */
    fb_reply_snapshot(&t->b, &second, t->b.seq, NULL, 0);
    fb_req_free(&first);
    fb_req_free(&second);
    wait_online(t, 1);
    assert_int_equal(t->resets, 1);
    stop(t);
}

static void test_snapshot_gives_up(void **state)
{
    (void)state;
    topts o = {.request_timeout_ms = 50, .request_retries = 2};
    tctx *t = start(&o);
    int busy = SB_ERR_BUSY;
    fb_req r;
    expect_request(t, "snapshot", &r);
    fb_req_free(&r);
    assert_true(drive(t, got_rc, &busy, DEADLINE_MS));
    assert_int_equal(t->online_true, 0);
    /* The next heartbeat starts over; tries sent before giving up may still be queued at
     * the fake, so answer every snapshot request until the client is in sync. */
    uint64_t end = fb_now_ms() + DEADLINE_MS;
    while (t->online_true == 0 && fb_now_ms() < end) {
        slice(t);
        while (fb_poll_request(&t->b, &r)) {
            fb_reply_snapshot(&t->b, &r, t->b.seq, NULL, 0);
            fb_req_free(&r);
        }
    }
    assert_int_equal(t->online_true, 1);
    assert_int_equal(t->resets, 1);
    stop(t);
}

static void test_broker_error_reported(void **state)
{
    (void)state;
    const char *const tables[] = {"public.nope"};
    topts o = {.tables = tables, .ntables = 1};
    tctx *t = start(&o);
    fb_req r;
    expect_request(t, "snapshot", &r);
    fb_reply_error(&t->b, &r, "unknown_table");
    fb_req_free(&r);
    int notfound = SB_ERR_NOTFOUND;
    assert_true(drive(t, got_rc, &notfound, DEADLINE_MS));
    assert_int_equal(t->online_true, 0);
    stop(t);
}

/* A table beyond this client's key: the broker says `forbidden`, the caller gets DENIED. */
static void test_broker_forbidden_denied(void **state)
{
    (void)state;
    const char *const tables[] = {BOOKINGS};
    topts o = {.tables = tables, .ntables = 1};
    tctx *t = start(&o);
    fb_req r;
    expect_request(t, "snapshot", &r);
    fb_reply_error(&t->b, &r, "forbidden");
    fb_req_free(&r);
    int denied = SB_ERR_DENIED;
    assert_true(drive(t, got_rc, &denied, DEADLINE_MS));
    assert_int_equal(t->online_true, 0);
    stop(t);
}

static void test_malformed_input_ignored(void **state)
{
    (void)state;
    tctx *t = start(NULL);
    sync_with(t, NULL, 0);
    static const unsigned char garbage[] = {0xdd, 0x01, 0x00, 0x00, 0x00}; /* array32 16M */
    static const unsigned char not_map[] = {0x93, 0x01, 0x02, 0x03};
    static const unsigned char bad_op[] = {0x81, 0xa2, 'o', 'p', 0xa3, 'z', 'a', 'p'};
    fb_publish_raw(&t->b, BOOKINGS "/1", garbage, sizeof(garbage));
    fb_publish_raw(&t->b, BOOKINGS "/1", not_map, sizeof(not_map));
    fb_publish_raw(&t->b, BOOKINGS "/1", bad_op, sizeof(bad_op));
    fb_change(&t->b, BOOKINGS, "1", "insert", 1, NULL, 1, "ok", false);
    wait_events(t, 1);
    assert_int_equal(t->ev[0].version, 1);
    assert_true(t->warnings >= 3);
    assert_int_equal(t->nev, 1);
    stop(t);
}

/* Stream only: online at the first heartbeat, never a snapshot request. */
static void test_no_snapshot(void **state)
{
    (void)state;
    topts o = {.no_snapshot = true};
    tctx *t = start(&o);
    wait_online(t, 1);
    fb_change(&t->b, BOOKINGS, "1", "insert", 1, NULL, 1, "a", false);
    wait_events(t, 1);
    assert_int_equal(t->resets, 0);
    assert_int_equal(version_of(t, BOOKINGS, "1"), 1);
    fb_req r;
    assert_false(fb_poll_request(&t->b, &r));
    stop(t);
}

static void test_bad_config(void **state)
{
    (void)state;
    sb_client *c = NULL;
    sb_client_config cfg = {.pub_endpoint = "tcp://127.0.0.1:1"};
    assert_int_equal(sb_client_new(&cfg, &c), SB_ERR_INVAL);
    const char *const empty[] = {""};
    cfg.service_endpoint = "tcp://127.0.0.1:2";
    cfg.tables = empty;
    cfg.ntables = 1;
    assert_int_equal(sb_client_new(&cfg, &c), SB_ERR_INVAL);
    cfg.ntables = 0;
    cfg.pub_endpoint = "nonsense";
    assert_int_equal(sb_client_new(&cfg, &c), SB_OK);
    assert_int_equal(sb_client_poll(c, 0), SB_ERR_STATE); /* not started */
    assert_int_equal(sb_client_start(c), SB_ERR_INVAL);
    sb_client_destroy(c);
}

/* ---- one-shot snapshot: the fake answers from a thread, skipping the first try ---------- */

typedef struct responder {
    fake_broker *b;
    int requests;
} responder;

static void *respond(void *arg)
{
    responder *s = arg;
    uint64_t end = fb_now_ms() + DEADLINE_MS;
    while (s->requests < 2 && fb_now_ms() < end) {
        zmq_pollitem_t item = {s->b->router, 0, ZMQ_POLLIN, 0};
        zmq_poll(&item, 1, 50);
        fb_req r;
        while (fb_poll_request(s->b, &r)) {
            if (++s->requests == 2) {
                const fb_row rows[] = {{BOOKINGS, "1", 4, 1, "a"}, {GUESTS, "2", 5, 2, "q\"x"}};
                fb_reply_snapshot(s->b, &r, 42, rows, 2);
            }
            fb_req_free(&r);
        }
    }
    return NULL;
}

static int collect_json(const sb_client_row *row, void *ud)
{
    char *json, **lines = ud;
    assert_int_equal(sb_client_row_json(row, &json), SB_OK);
    lines[lines[0] ? 1 : 0] = json;
    return 0;
}

static void test_fetch_snapshot(void **state)
{
    (void)state;
    fake_broker b;
    fb_init(&b, "epoch-1", 1000, fake_tables, 2);
    responder s = {&b, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, respond, &s), 0);
    char *lines[2] = {NULL, NULL};
    char err[256];
    uint64_t seq = 0;
    int rc = sb_client_fetch_snapshot(NULL, b.svc_ep, NULL, 0, 150, 3, collect_json, lines, &seq,
                                      err, sizeof(err));
    pthread_join(th, NULL);
    assert_int_equal(rc, SB_OK);
    assert_int_equal(s.requests, 2);
    assert_int_equal(seq, 42);
    assert_string_equal(lines[0], "{\"table\":\"public.bookings\",\"key\":\"1\",\"version\":4,"
                                  "\"row\":{\"id\":1,\"name\":\"a\"}}");
    assert_string_equal(lines[1], "{\"table\":\"public.guests\",\"key\":\"2\",\"version\":5,"
                                  "\"row\":{\"id\":2,\"name\":\"q\\\"x\"}}");
    free(lines[0]);
    free(lines[1]);
    /* Nobody answers: a clear error after the tries. */
    rc = sb_client_fetch_snapshot(NULL, b.svc_ep, NULL, 0, 30, 2, collect_json, lines, NULL, err,
                                  sizeof(err));
    assert_int_equal(rc, SB_ERR_BUSY);
    assert_non_null(strstr(err, "no answer"));
    fb_req r;
    while (fb_poll_request(&b, &r))
        fb_req_free(&r);
    fb_free(&b);
}

static void keep_log(sb_log_level level, const char *msg, void *ud)
{
    (void)level;
    snprintf(ud, 256, "%s", msg);
}

/* CURVE keys: both or neither, each a key; the reason is logged (or put in err). */
static void test_curve_config(void **state)
{
    (void)state;
    char pub[41], secret[41], logged[256] = "";
    assert_int_equal(zmq_curve_keypair(pub, secret), 0);
    sb_client *c = NULL;
    sb_client_config cfg = {.pub_endpoint = "tcp://127.0.0.1:1",
                            .service_endpoint = "tcp://127.0.0.1:2",
                            .curve_server_key = pub,
                            .cb = {.on_log = keep_log},
                            .ud = logged};
    assert_int_equal(sb_client_new(&cfg, &c), SB_ERR_INVAL);
    assert_null(c);
    assert_string_equal(logged, "CURVE: CURVE needs both the broker's public key and a secret key");
    cfg.curve_secret_key = "012345678901234567890123456789012345678,";
    assert_int_equal(sb_client_new(&cfg, &c), SB_ERR_INVAL);
    assert_string_equal(logged, "CURVE: the secret key is not a CURVE key (40 characters of Z85)");
    cfg.curve_server_key = "short";
    cfg.curve_secret_key = secret;
    assert_int_equal(sb_client_new(&cfg, &c), SB_ERR_INVAL);
    assert_non_null(strstr(logged, "broker's public key is not a CURVE key"));
    cfg.curve_server_key = pub;
    assert_int_equal(sb_client_new(&cfg, &c), SB_OK);
    assert_int_equal(sb_client_start(c), SB_OK);
    sb_client_destroy(c);
    /* The one-shot snapshot checks them the same way. */
    char err[256];
    cfg.curve_secret_key = NULL;
    assert_int_equal(sb_client_fetch_snapshot_cfg(&cfg, collect_json, NULL, NULL, err, sizeof(err)),
                     SB_ERR_INVAL);
    assert_string_equal(err, "CURVE needs both the broker's public key and a secret key");
    /* Key files: both paths needed; the reader's message comes through. */
    sb_client_keys keys;
    sb_client_config plain = {0};
    assert_int_equal(
        sb_client_config_load_keys(&plain, &keys, "/nonexistent.pub", NULL, err, sizeof(err)),
        SB_ERR_INVAL);
    assert_int_equal(sb_client_config_load_keys(&plain, &keys, "/nonexistent.pub",
                                                "/nonexistent.key", err, sizeof(err)),
                     SB_ERR_IO);
    assert_string_equal(err, "/nonexistent.pub: No such file or directory");
    assert_null(plain.curve_server_key);
    assert_null(plain.curve_secret_key);
}

/* The broker's error codes as the library's errors: the limits' codes mean "later". */
static void test_reply_error_codes(void **state)
{
    (void)state;
    assert_int_equal(sb_reply_error_code("busy"), SB_ERR_BUSY);
    assert_int_equal(sb_reply_error_code("limit"), SB_ERR_BUSY);
    assert_int_equal(sb_reply_error_code("unavailable"), SB_ERR_BUSY);
    assert_int_equal(sb_reply_error_code("too_large"), SB_ERR_INVAL);
    assert_int_equal(sb_reply_error_code("resync"), SB_ERR_STATE);
    assert_int_equal(sb_reply_error_code("forbidden"), SB_ERR_DENIED);
    assert_string_equal(sb_strerror(SB_ERR_DENIED), "permission denied");
    assert_int_equal(sb_reply_error_code("no such code"), SB_ERR_IO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reply_error_codes),
        cmocka_unit_test(test_snapshot_then_stream),
        cmocka_unit_test(test_covered_events_after_reply),
        cmocka_unit_test(test_gap_since),
        cmocka_unit_test(test_gap_tables_heartbeat),
        cmocka_unit_test(test_restricted_follows_heartbeat_tables),
        cmocka_unit_test(test_since_resync_takes_snapshot),
        cmocka_unit_test(test_since_future_takes_snapshot),
        cmocka_unit_test(test_new_epoch_resyncs),
        cmocka_unit_test(test_offline_then_online),
        cmocka_unit_test(test_future_seq_resyncs_once),
        cmocka_unit_test(test_repeated_lies_back_off),
        cmocka_unit_test(test_forged_tseq_resyncs),
        cmocka_unit_test(test_since_follows_more),
        cmocka_unit_test(test_since_follows_more_tables),
        cmocka_unit_test(test_since_lying_more_resyncs),
        cmocka_unit_test(test_since_lying_more_backs_off),
        cmocka_unit_test(test_heartbeat_period_from_broker),
        cmocka_unit_test(test_own_writes),
        cmocka_unit_test(test_truncate_clears_table),
        cmocka_unit_test(test_presence),
        cmocka_unit_test(test_snapshot_retry),
        cmocka_unit_test(test_snapshot_gives_up),
        cmocka_unit_test(test_broker_error_reported),
        cmocka_unit_test(test_broker_forbidden_denied),
        cmocka_unit_test(test_malformed_input_ignored),
        cmocka_unit_test(test_no_snapshot),
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_fetch_snapshot),
        cmocka_unit_test(test_curve_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
