/*
 * Unit tests for broker/core.c driven through broker/host.c exactly as the daemon drives it:
 * a fake source and a fake transport, compiled in here, are opened from their descriptors,
 * created and started, and talk to the core only through the host API tables they were
 * handed. The loop is the broker's; the core's timers (debounce, heartbeat) run on it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "core.h"
#include "host.h"
#include "loop.h"

#define MAX_RECORDS 64

/* ---- the fake source ---------------------------------------------------------------- */

typedef struct fake_source {
    const sb_source_api *api;
    sb_host *host;
    const sb_source_setup *setup;
    uint64_t fetch_req[MAX_RECORDS];
    uint32_t fetch_table[MAX_RECORDS];
    char fetch_key[MAX_RECORDS][16];
    size_t nfetches;
    uint64_t snapshot_req;
    size_t nsnapshots;
    uint64_t cancelled;
    int flow_pauses, flow_resumes;
    uint64_t published[MAX_RECORDS];
    size_t npublished;
} fake_source;

static fake_source src;

static int src_create(const sb_source_api *api, sb_host *host, const sb_source_setup *setup,
                      void **state)
{
    src.api = api;
    src.host = host;
    src.setup = setup;
    *state = &src;
    return SB_OK;
}

static int src_start(void *state)
{
    (void)state;
    return SB_OK;
}

static void src_void(void *state)
{
    (void)state;
}

static int src_fetch(void *state, uint64_t req, uint32_t table, const sb_key *keys, size_t n)
{
    (void)state;
    assert_true(src.nfetches + n <= MAX_RECORDS);
    for (size_t i = 0; i < n; i++) {
        src.fetch_req[src.nfetches] = req;
        src.fetch_table[src.nfetches] = table;
        snprintf(src.fetch_key[src.nfetches++], 16, "%s", keys[i].parts[0]);
    }
    return SB_OK;
}

static int src_snapshot(void *state, uint64_t req, const uint32_t *tables, size_t n)
{
    (void)state, (void)tables, (void)n;
    src.snapshot_req = req;
    src.nsnapshots++;
    return SB_OK;
}

static void src_cancel(void *state, uint64_t req)
{
    (void)state;
    src.cancelled = req;
}

static void src_flow(void *state, uint64_t req, bool go)
{
    (void)state;
    assert_int_equal(req, src.snapshot_req);
    if (go)
        src.flow_resumes++;
    else
        src.flow_pauses++;
}

static void src_published(void *state, uint64_t position)
{
    (void)state;
    assert_true(src.npublished < MAX_RECORDS);
    src.published[src.npublished++] = position;
}

static const sb_option_spec db_options[] = {
    {"conninfo", SB_OPT_STRING, NULL, 0, 0, "where the rows are"},
    {NULL, 0, NULL, 0, 0, NULL},
};

/* Needs fetches: the changes it emits may come without their rows. */
static const sb_source_plugin fetching_source = {
    .header = SB_SOURCE_PLUGIN_HEADER("fake_source", "1", "test source", NULL),
    .database_options = db_options,
    .create = src_create,
    .start = src_start,
    .stop = src_void,
    .destroy = src_void,
    .fetch = src_fetch,
    .snapshot = src_snapshot,
    .cancel = src_cancel,
    .snapshot_flow = src_flow,
    .published = src_published,
};

/* Every change has its row; sets the snapshot cut itself. */
static const sb_source_plugin row_source = {
    .header = SB_SOURCE_PLUGIN_HEADER("fake_source", "1", "test source", NULL),
    .database_options = db_options,
    .flags = SB_SOURCE_SETS_SNAPSHOT_CUT,
    .create = src_create,
    .start = src_start,
    .stop = src_void,
    .destroy = src_void,
    .snapshot = src_snapshot,
    .cancel = src_cancel,
};

/* ---- the fake transport ------------------------------------------------------------- */

typedef struct rec_msg {
    sb_msg_kind kind;
    uint64_t seq;
    char topic[64];
    char body[512];
    size_t body_len;
} rec_msg;

typedef struct rec_snap {
    sb_snapshot_event_kind kind;
    uint64_t seq;
    uint64_t tseq[2];
    size_t n;
    int status;
} rec_snap;

typedef struct fake_transport {
    const sb_transport_api *api;
    sb_host *host;
    rec_msg msgs[MAX_RECORDS];
    size_t nmsgs;
    int publish_rc; /* what publish() returns */
    rec_snap snaps[MAX_RECORDS];
    size_t nsnaps;
    int rows_rc; /* what the snapshot callback returns for ROWS */
} fake_transport;

static fake_transport tr;

static int tr_create(const sb_transport_api *api, sb_host *host, const sb_option_value *opts,
                     void **state)
{
    (void)opts;
    tr.api = api;
    tr.host = host;
    *state = &tr;
    return SB_OK;
}

static int tr_publish(void *state, const sb_message *m)
{
    (void)state;
    assert_true(tr.nmsgs < MAX_RECORDS);
    rec_msg *r = &tr.msgs[tr.nmsgs++];
    r->kind = m->kind;
    r->seq = m->seq;
    snprintf(r->topic, sizeof r->topic, "%.*s", (int)m->topic_len, m->topic);
    assert_true(m->body_len <= sizeof r->body);
    memcpy(r->body, m->body, m->body_len);
    r->body_len = m->body_len;
    return tr.publish_rc;
}

static const sb_transport_plugin fake_transport_plugin = {
    .header = SB_TRANSPORT_PLUGIN_HEADER("fake_transport", "1", "test transport", NULL),
    .create = tr_create,
    .start = src_start,
    .stop = src_void,
    .destroy = src_void,
    .publish = tr_publish,
};

static int on_snapshot(void *ud, uint64_t req, const sb_snapshot_event *ev)
{
    (void)ud, (void)req;
    assert_true(tr.nsnaps < MAX_RECORDS);
    rec_snap *r = &tr.snaps[tr.nsnaps++];
    r->kind = ev->kind;
    r->seq = ev->seq;
    if (ev->kind == SB_SNAPSHOT_CUT) {
        assert_int_equal(ev->ntables, 2);
        memcpy(r->tseq, ev->tseq, sizeof r->tseq);
    }
    r->n = ev->n;
    r->status = ev->status;
    return ev->kind == SB_SNAPSHOT_ROWS ? tr.rows_rc : 0;
}

/* ---- the broker around them --------------------------------------------------------- */

typedef struct broker {
    sb_config *cfg;
    sb_loop *loop;
    sb_core *core;
    sb_host *source, *transport;
} broker;

static const char CONFIG[] = "[broker]\nplugin_dir = /nonexistent\nheartbeat_ms = 10\n"
                             "debounce_ms = 3600000\n"
                             "[database]\nconninfo = fake\ntables = public.a, public.b\n"
                             "[source.s]\nplugin = fake_source\n"
                             "[transport.t]\nplugin = fake_transport\n";

static broker *start(const sb_source_plugin *source)
{
    memset(&src, 0, sizeof src);
    memset(&tr, 0, sizeof tr);
    broker *b = calloc(1, sizeof *b);
    FILE *f = fmemopen((void *)CONFIG, strlen(CONFIG), "r");
    assert_non_null(f);
    assert_int_equal(sb_config_read(f, "/test/sb.ini", &b->cfg), SB_OK);
    fclose(f);
    assert_int_equal(sb_loop_new(&b->loop), SB_OK);
    assert_int_equal(sb_core_new(b->loop, b->cfg, &b->core), SB_OK);
    assert_int_equal(sb_host_open_descriptor(&sb_core_peer, b->core, b->loop, NULL, b->cfg,
                                             &b->cfg->sections[0], &source->header, &b->source),
                     SB_OK);
    assert_int_equal(sb_host_open_descriptor(&sb_core_peer, b->core, b->loop, NULL, b->cfg,
                                             &b->cfg->sections[1], &fake_transport_plugin.header,
                                             &b->transport),
                     SB_OK);
    assert_int_equal(sb_host_create(b->source), SB_OK);
    assert_int_equal(sb_host_create(b->transport), SB_OK);
    sb_core_set_source(b->core, b->source);
    assert_int_equal(sb_core_add_transport(b->core, b->transport), SB_OK);
    assert_int_equal(sb_host_start(b->source), SB_OK);
    assert_int_equal(sb_host_start(b->transport), SB_OK);
    assert_int_equal(sb_core_start(b->core), SB_OK);
    assert_int_equal(sb_loop_run_once(b->loop, 0), SB_OK); /* the first heartbeat */
    return b;
}

static void stop(broker *b)
{
    sb_core_cancel_all(b->core);
    sb_host_free(b->transport);
    sb_host_free(b->source);
    sb_core_free(b->core);
    sb_loop_free(b->loop);
    sb_config_free(b->cfg);
    free(b);
}

/* Run what is due now (the debounce timer is a 0 ms one-shot). */
static void run_due(broker *b)
{
    for (int i = 0; i < 3; i++)
        assert_int_equal(sb_loop_run_once(b->loop, 0), SB_OK);
}

/* The msgpack map {"x": v}: the rows the fakes hand over. */
#define ROW(v) ((const char[]){'\x81', '\xa1', 'x', (char)(v)})

static sb_change change(uint32_t table, const char *const *key, uint64_t version, uint64_t position,
                        const char *row)
{
    return (sb_change){.table = table,
                       .key = {key, 1},
                       .op = SB_OP_UPDATE,
                       .version = version,
                       .ts_ms = 1,
                       .position = position,
                       .has_row = row != NULL,
                       .row = row,
                       .row_len = row ? 4 : 0};
}

static const rec_msg *last_event(void)
{
    for (size_t i = tr.nmsgs; i-- > 0;)
        if (tr.msgs[i].kind == SB_MSG_EVENT)
            return &tr.msgs[i];
    return NULL;
}

static size_t count(sb_msg_kind kind)
{
    size_t n = 0;
    for (size_t i = 0; i < tr.nmsgs; i++)
        n += tr.msgs[i].kind == kind;
    return n;
}

static bool body_has(const rec_msg *m, const char *bytes, size_t len)
{
    for (size_t i = 0; i + len <= m->body_len; i++)
        if (!memcmp(m->body + i, bytes, len))
            return true;
    return false;
}

/* ---- tests -------------------------------------------------------------------------- */

static void setup_carries_options_and_tables(void **state)
{
    (void)state;
    broker *b = start(&fetching_source);
    assert_int_equal(src.setup->ntables, 2);
    assert_string_equal(src.setup->tables[1], "public.b");
    assert_string_equal(src.setup->database[0].str, "fake");
    assert_true(src.setup->database[0].given);
    size_t n;
    assert_ptr_equal(src.api->base.tables(src.host, &n), src.setup->tables);
    assert_int_equal(src.api->base.size, sizeof(sb_source_api));
    assert_int_equal(tr.api->base.size, sizeof(sb_transport_api));
    assert_int_equal(src.api->base.abi_major, SB_ABI_MAJOR);
    stop(b);
}

static void change_with_row_is_published_without_fetch(void **state)
{
    (void)state;
    broker *b = start(&fetching_source);
    const char *key[] = {"7"};
    sb_change c = change(1, key, 3, 0, ROW(5));
    assert_int_equal(src.api->emit(src.host, &c, 1), SB_OK);
    run_due(b);
    assert_int_equal(src.nfetches, 0);
    const rec_msg *ev = last_event();
    assert_non_null(ev);
    assert_string_equal(ev->topic, "public.b/7");
    assert_int_equal(ev->seq, 1);
    assert_true(body_has(ev, ROW(5), 4));
    stop(b);
}

static void change_without_row_is_fetched(void **state)
{
    (void)state;
    broker *b = start(&fetching_source);
    const char *key[] = {"9"};
    sb_change c = change(0, key, 4, 0, NULL);
    assert_int_equal(src.api->emit(src.host, &c, 1), SB_OK);
    run_due(b);
    assert_int_equal(src.nfetches, 1);
    assert_int_equal(src.fetch_table[0], 0);
    assert_string_equal(src.fetch_key[0], "9");
    assert_null(last_event());
    sb_row row = {.table = 0, .key = {key, 1}, .version = 4, .row = ROW(6), .row_len = 4};
    src.api->rows(src.host, src.fetch_req[0], &row, 1);
    src.api->done(src.host, src.fetch_req[0], SB_OK);
    const rec_msg *ev = last_event();
    assert_non_null(ev);
    assert_string_equal(ev->topic, "public.a/9");
    assert_true(body_has(ev, ROW(6), 4));
    stop(b);
}

static void rowless_change_refused_without_fetch(void **state)
{
    (void)state;
    broker *b = start(&row_source);
    const char *key[] = {"1"};
    sb_change c[2] = {change(0, key, 1, 0, NULL), change(0, key, 2, 0, ROW(1))};
    assert_int_equal(src.api->emit(src.host, c, 2), SB_ERR_INVAL);
    run_due(b);
    /* The one with its row was taken. */
    assert_int_equal(count(SB_MSG_EVENT), 1);
    assert_true(body_has(last_event(), ROW(1), 4));
    c[0].table = 2; /* no such table */
    assert_int_equal(src.api->emit(src.host, c, 1), SB_ERR_INVAL);
    stop(b);
}

static void default_cut_is_taken_when_the_snapshot_starts(void **state)
{
    (void)state;
    broker *b = start(&fetching_source);
    const char *key[] = {"1"};
    sb_change c = change(0, key, 1, 0, ROW(1));
    src.api->emit(src.host, &c, 1);
    run_due(b);
    uint64_t req = 0;
    assert_int_equal(tr.api->snapshot(tr.host, NULL, 0, on_snapshot, NULL, &req), SB_OK);
    assert_int_equal(src.snapshot_req, req);
    assert_int_equal(tr.nsnaps, 0); /* never from inside snapshot() */
    /* An event published after the cut does not move it. */
    c = change(1, key, 1, 0, ROW(2));
    src.api->emit(src.host, &c, 1);
    run_due(b);
    assert_int_equal(count(SB_MSG_EVENT), 2);
    sb_row row = {.table = 0, .key = {key, 1}, .version = 1, .row = ROW(1), .row_len = 4};
    src.api->rows(src.host, req, &row, 1);
    src.api->done(src.host, req, SB_OK);
    assert_int_equal(tr.nsnaps, 3);
    assert_int_equal(tr.snaps[0].kind, SB_SNAPSHOT_CUT);
    assert_int_equal(tr.snaps[0].seq, 1);
    assert_int_equal(tr.snaps[0].tseq[0], 1);
    assert_int_equal(tr.snaps[0].tseq[1], 0);
    assert_int_equal(tr.snaps[1].kind, SB_SNAPSHOT_ROWS);
    assert_int_equal(tr.snaps[1].n, 1);
    assert_int_equal(tr.snaps[2].kind, SB_SNAPSHOT_DONE);
    assert_int_equal(tr.snaps[2].status, SB_OK);
    /* Out-of-range indices are refused before the source hears of it. */
    uint32_t bad = 2;
    assert_int_equal(tr.api->snapshot(tr.host, &bad, 1, on_snapshot, NULL, &req), SB_ERR_NOTFOUND);
    assert_int_equal(src.nsnapshots, 1);
    stop(b);
}

static void source_sets_the_cut(void **state)
{
    (void)state;
    broker *b = start(&row_source);
    uint64_t req = 0;
    assert_int_equal(tr.api->snapshot(tr.host, NULL, 0, on_snapshot, NULL, &req), SB_OK);
    /* Emitted before the cut: inside the reply's position. */
    const char *key[] = {"1"};
    sb_change c = change(1, key, 1, 0, ROW(1));
    src.api->emit(src.host, &c, 1);
    run_due(b);
    assert_int_equal(tr.nsnaps, 0);
    src.api->snapshot_cut(src.host, req);
    assert_int_equal(tr.nsnaps, 1);
    assert_int_equal(tr.snaps[0].kind, SB_SNAPSHOT_CUT);
    assert_int_equal(tr.snaps[0].seq, 1);
    assert_int_equal(tr.snaps[0].tseq[1], 1);
    src.api->snapshot_cut(src.host, req); /* a second one is ignored */
    src.api->done(src.host, req, SB_OK);
    assert_int_equal(tr.nsnaps, 2);
    assert_int_equal(tr.snaps[1].kind, SB_SNAPSHOT_DONE);
    assert_int_equal(tr.snaps[1].status, SB_OK);
    /* Finished without a cut: the reply cannot be trusted, and is refused. */
    assert_int_equal(tr.api->snapshot(tr.host, NULL, 0, on_snapshot, NULL, &req), SB_OK);
    src.api->done(src.host, req, SB_OK);
    assert_int_equal(tr.nsnaps, 3);
    assert_int_equal(tr.snaps[2].kind, SB_SNAPSHOT_DONE);
    assert_int_equal(tr.snaps[2].status, SB_ERR_STATE);
    stop(b);
}

static void busy_transport_pauses_the_source(void **state)
{
    (void)state;
    broker *b = start(&fetching_source);
    uint64_t req = 0;
    assert_int_equal(tr.api->snapshot(tr.host, NULL, 0, on_snapshot, NULL, &req), SB_OK);
    const char *key[] = {"1"};
    sb_row row = {.table = 0, .key = {key, 1}, .version = 1, .row = ROW(1), .row_len = 4};
    tr.rows_rc = SB_ERR_BUSY;
    src.api->rows(src.host, req, &row, 1);
    src.api->rows(src.host, req, &row, 1); /* already paused: asked once */
    assert_int_equal(src.flow_pauses, 1);
    tr.api->snapshot_resume(tr.host, req);
    assert_int_equal(src.flow_resumes, 1);
    tr.api->cancel(tr.host, req);
    assert_int_equal(src.cancelled, req);
    size_t seen = tr.nsnaps;
    src.api->done(src.host, req, SB_OK); /* after cancel: nothing more for the transport */
    assert_int_equal(tr.nsnaps, seen);
    stop(b);
}

static void lease_lost_stops_everything_and_regained_fences(void **state)
{
    (void)state;
    broker *b = start(&fetching_source);
    char epoch[32];
    snprintf(epoch, sizeof epoch, "%s", src.api->base.epoch(src.host));
    uint64_t req = 0;
    assert_int_equal(tr.api->snapshot(tr.host, NULL, 0, on_snapshot, NULL, &req), SB_OK);
    src.api->lease(src.host, false, "lock taken by the other broker");
    /* The running snapshot ends busy, and the source forgets it. */
    assert_int_equal(tr.snaps[tr.nsnaps - 1].kind, SB_SNAPSHOT_DONE);
    assert_int_equal(tr.snaps[tr.nsnaps - 1].status, SB_ERR_BUSY);
    assert_int_equal(src.cancelled, req);
    assert_int_equal(tr.api->snapshot(tr.host, NULL, 0, on_snapshot, NULL, &req), SB_ERR_BUSY);
    size_t before = tr.nmsgs;
    const char *key[] = {"1"};
    sb_change c = change(0, key, 1, 0, ROW(1));
    assert_int_equal(src.api->emit(src.host, &c, 1), SB_OK);
    run_due(b);
    /* Three heartbeat periods (10 ms) pass on the loop's clock: nothing may come of them. */
    uint64_t until = sb_loop_now(b->loop) + 30;
    while (sb_loop_now(b->loop) < until)
        assert_int_equal(sb_loop_run_once(b->loop, 10), SB_OK);
    assert_int_equal(tr.nmsgs, before); /* no event, no heartbeat */
    src.api->lease(src.host, true, "lock acquired");
    assert_string_not_equal(src.api->base.epoch(src.host), epoch);
    assert_int_equal(tr.msgs[tr.nmsgs - 1].kind, SB_MSG_HEARTBEAT);
    c.version = 2;
    src.api->emit(src.host, &c, 1);
    run_due(b);
    assert_int_equal(count(SB_MSG_EVENT), 1);
    assert_int_equal(last_event()->seq, 1);
    stop(b);
}

static void published_position_waits_for_pending_changes(void **state)
{
    (void)state;
    broker *b = start(&fetching_source);
    const char *a[] = {"a"}, *k2[] = {"b"};
    sb_change c[3] = {change(0, a, 1, 5, ROW(1)), change(0, a, 2, 6, ROW(2)),
                      change(0, k2, 1, 7, ROW(3))};
    src.api->emit(src.host, &c[0], 1);
    run_due(b); /* a v1 published; its window (an hour) now holds a v2 */
    src.api->emit(src.host, &c[1], 2);
    run_due(b); /* b published, a v2 pending */
    assert_int_equal(count(SB_MSG_EVENT), 2);
    while (src.npublished == 0)
        assert_int_equal(sb_loop_run_once(b->loop, 20), SB_OK); /* the next heartbeat */
    assert_int_equal(src.published[0], 5);
    sb_core_drain(b->core);
    while (!sb_core_drained(b->core))
        assert_int_equal(sb_loop_run_once(b->loop, 20), SB_OK);
    assert_int_equal(count(SB_MSG_EVENT), 3);
    assert_int_equal(src.published[src.npublished - 1], 7);
    stop(b);
}

static void count_replay(void *ud, const sb_message *m)
{
    assert_int_equal(m->kind, SB_MSG_EVENT);
    ++*(size_t *)ud;
}

static void publish_errors_are_checked(void **state)
{
    (void)state;
    broker *b = start(&fetching_source);
    char epoch[32];
    snprintf(epoch, sizeof epoch, "%s", src.api->base.epoch(src.host));
    tr.publish_rc = SB_ERR_IO;
    const char *key[] = {"1"};
    sb_change c = change(0, key, 1, 0, ROW(1));
    src.api->emit(src.host, &c, 1);
    run_due(b);
    size_t beats = count(SB_MSG_HEARTBEAT);
    while (count(SB_MSG_HEARTBEAT) < beats + 2) /* heartbeats go on, and fail too */
        assert_int_equal(sb_loop_run_once(b->loop, 20), SB_OK);
    /* Retained: no new epoch, and since replays what the transport could not send. */
    assert_string_equal(src.api->base.epoch(src.host), epoch);
    size_t replayed = 0;
    uint64_t last = 0;
    assert_int_equal(tr.api->since(tr.host, epoch, 0, count_replay, &replayed, &last), SB_OK);
    assert_int_equal(last, 1);
    assert_int_equal(replayed, 1);
    stop(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(setup_carries_options_and_tables),
        cmocka_unit_test(change_with_row_is_published_without_fetch),
        cmocka_unit_test(change_without_row_is_fetched),
        cmocka_unit_test(rowless_change_refused_without_fetch),
        cmocka_unit_test(default_cut_is_taken_when_the_snapshot_starts),
        cmocka_unit_test(source_sets_the_cut),
        cmocka_unit_test(busy_transport_pauses_the_source),
        cmocka_unit_test(lease_lost_stops_everything_and_regained_fences),
        cmocka_unit_test(published_position_waits_for_pending_changes),
        cmocka_unit_test(publish_errors_are_checked),
    };
    return cmocka_run_group_tests_name("core", tests, NULL, NULL);
}
