/*
 * test_testhost.c - libsyncbroker-testhost keeps the promises of testhost.h: the broker's
 * refusals (with file and line), a source's calls recorded and the test's calls reaching it,
 * a transport's snapshots answered as scripted and in the order plugin.h promises, a plugin
 * loaded from plugin_dir as the broker loads it, and leftovers at stop() counted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sb_proto.h>
#include <syncbroker/testhost.h>

/* ---- a source linked into the test ------------------------------------------------------ */

typedef struct mini_source {
    const sb_source_api *api;
    sb_host *host;
    int64_t batch;   /* option: changes emitted by the start timer */
    bool forget;     /* option: stop() leaves its timer registered */
    uint32_t table;  /* option: the table index of the changes */
    bool fail;       /* option: start() fails after starting its timer */
    sb_timer *timer; /* emits `batch` changes, once */
} mini_source;

static const sb_option_spec source_options[] = {
    {"batch", SB_OPT_INT, "1", 1, 100, "changes emitted at start"},
    {"forget_timer", SB_OPT_BOOL, "false", 0, 0, "stop() leaves its timer registered"},
    {"table", SB_OPT_INT, "1", 0, 9, "the table index of the changes"},
    {"fail_start", SB_OPT_BOOL, "false", 0, 0, "start() fails after starting its timer"},
    {NULL, 0, NULL, 0, 0, NULL},
};

static const char row_bytes[] = "\x81\xa1"
                                "a\x01"; /* {"a": 1} */

static void source_emit(void *ud)
{
    mini_source *s = ud;
    s->timer = NULL;
    const char *parts[] = {"7"};
    for (int64_t i = 0; i < s->batch; i++) {
        sb_change c = {.table = s->table,
                       .key = {.parts = parts, .nparts = 1},
                       .op = SB_OP_INSERT,
                       .version = (uint64_t)i + 1,
                       .origin = "desk-a",
                       .has_row = true,
                       .row = row_bytes,
                       .row_len = sizeof row_bytes - 1};
        s->api->emit(s->host, &c, 1);
    }
}

static int source_create(const sb_source_api *api, sb_host *host, const sb_source_setup *setup,
                         void **state)
{
    mini_source *s = calloc(1, sizeof *s);
    if (!s)
        return SB_ERR_NOMEM;
    *s = (mini_source){.api = api,
                       .host = host,
                       .batch = setup->options[0].num,
                       .forget = setup->options[1].flag,
                       .table = (uint32_t)setup->options[2].num,
                       .fail = setup->options[3].flag};
    *state = s;
    return SB_OK;
}

static int source_start(void *state)
{
    mini_source *s = state;
    int rc = s->api->base.timer_start(s->host, 0, 0, source_emit, s, &s->timer);
    return rc ? rc : s->fail ? SB_ERR_IO : SB_OK;
}

static void source_stop(void *state)
{
    mini_source *s = state;
    if (!s->forget)
        s->api->base.timer_stop(s->timer);
    s->timer = NULL;
}

static void source_destroy(void *state)
{
    free(state);
}

/* Answers every key with version 3, the row, then done. */
static int source_fetch(void *state, uint64_t req, uint32_t table, const sb_key *keys, size_t n)
{
    mini_source *s = state;
    for (size_t i = 0; i < n; i++) {
        sb_row r = {.table = table,
                    .key = keys[i],
                    .version = 3,
                    .row = row_bytes,
                    .row_len = sizeof row_bytes - 1};
        s->api->rows(s->host, req, &r, 1);
    }
    s->api->done(s->host, req, SB_OK);
    return SB_OK;
}

static int source_snapshot(void *state, uint64_t req, const uint32_t *tables, size_t n)
{
    mini_source *s = state;
    (void)tables;
    (void)n;
    s->api->done(s->host, req, SB_ERR_UNSUPPORTED);
    return SB_OK;
}

static void source_cancel(void *state, uint64_t req)
{
    (void)state;
    (void)req;
}

static const sb_source_plugin mini_source_plugin = {
    .header = SB_SOURCE_PLUGIN_HEADER("mini_source", "1.0", "a test source", source_options),
    .create = source_create,
    .start = source_start,
    .stop = source_stop,
    .destroy = source_destroy,
    .fetch = source_fetch,
    .snapshot = source_snapshot,
    .cancel = source_cancel,
};

static const char source_ini[] = "[database]\n"
                                 "tables = public.rooms, public.bookings\n"
                                 "[source.mini]\n"
                                 "plugin = mini_source\n"
                                 "%s\n";

/* A new test host that loaded ini (named "testhost.ini"; desc linked, or NULL), which
 * returned expect. */
static sb_testhost *loaded(const char *ini, const sb_plugin_header *desc, int expect)
{
    sb_testhost *th;
    assert_int_equal(sb_testhost_new(&th), SB_OK);
    assert_int_equal(sb_testhost_load(th, NULL, ini, desc), expect);
    return th;
}

static sb_testhost *source_host(const char *extra, int expect)
{
    char ini[512];
    snprintf(ini, sizeof ini, source_ini, extra);
    return loaded(ini, &mini_source_plugin.header, expect);
}

static bool changes_at_least(void *ud)
{
    void **args = ud;
    return sb_testhost_change_count(args[0]) >= (size_t)(uintptr_t)args[1];
}

static void test_source_calls_recorded(void **state)
{
    (void)state;
    sb_testhost *th = source_host("batch = 2", SB_OK);
    const char *parts[] = {"7"};
    sb_key key = {.parts = parts, .nparts = 1};
    /* Not started: refused as the broker refuses it. */
    assert_int_equal(sb_testhost_source_fetch(th, 5, 1, &key, 1), SB_ERR_BUSY);
    assert_int_equal(sb_testhost_start(th), SB_OK);
    void *args[] = {th, (void *)(uintptr_t)2};
    assert_true(sb_testhost_run_until(th, changes_at_least, args, 5000));
    const sb_change *c = sb_testhost_change_get(th, 1);
    assert_int_equal(c->table, 1);
    assert_int_equal(c->version, 2);
    assert_string_equal(c->key.parts[0], "7");
    assert_string_equal(c->origin, "desk-a");
    assert_true(c->has_row);
    assert_memory_equal(c->row, row_bytes, sizeof row_bytes - 1);
    assert_null(sb_testhost_change_get(th, 2));

    assert_int_equal(sb_testhost_source_fetch(th, 5, 1, &key, 1), SB_OK);
    assert_int_equal(sb_testhost_row_count(th), 1);
    assert_int_equal(sb_testhost_row_req(th, 0), 5);
    assert_int_equal(sb_testhost_row_get(th, 0)->version, 3);
    assert_int_equal(sb_testhost_done_status(th, 5), SB_OK);
    assert_int_equal(sb_testhost_done_status(th, 6), 1); /* never answered */
    assert_int_equal(sb_testhost_source_snapshot(th, 6, NULL, 0), SB_OK);
    assert_int_equal(sb_testhost_done_status(th, 6), SB_ERR_UNSUPPORTED);
    assert_false(sb_testhost_source_snapshot_flow(th, 6, false));              /* it has none */
    assert_int_equal(sb_testhost_publish(th, &(sb_message){0}), SB_ERR_STATE); /* a source */

    sb_testhost_clear_records(th);
    assert_int_equal(sb_testhost_change_count(th), 0);
    assert_int_equal(sb_testhost_stop(th), 0);
    sb_testhost_free(th);
}

static bool resynced(void *ud)
{
    return sb_testhost_resync_count(ud) > 0;
}

/* host.c's checks of a change run in the test host as in the broker. */
static void test_unknown_table_refused(void **state)
{
    (void)state;
    sb_testhost *th = source_host("table = 7", SB_OK);
    assert_int_equal(sb_testhost_start(th), SB_OK);
    assert_true(sb_testhost_run_until(th, resynced, th, 5000));
    assert_int_equal(sb_testhost_change_count(th), 0);
    assert_non_null(sb_testhost_log_find(th, "unknown table index 7"));
    assert_int_equal(sb_testhost_stop(th), 0);
    sb_testhost_free(th);
}

static void test_option_refused_with_its_line(void **state)
{
    (void)state;
    sb_testhost *th = source_host("batch = 1000", SB_ERR_CONFIG);
    const char *line = sb_testhost_log_find(th, "testhost.ini:5:");
    assert_non_null(line);
    assert_non_null(strstr(line, "batch"));
    assert_int_equal(sb_testhost_start(th), SB_ERR_STATE);
    sb_testhost_free(th);

    th = source_host("colour = blue", SB_ERR_CONFIG);
    assert_non_null(sb_testhost_log_find(th, "testhost.ini:5: [source.mini] colour"));
    sb_testhost_free(th);
}

static void test_one_plugin_section(void **state)
{
    (void)state;
    sb_testhost *th;
    assert_int_equal(sb_testhost_new(&th), SB_OK);
    assert_int_equal(sb_testhost_load(th, "two.ini",
                                      "[database]\ntables = public.a\n[source.a]\nplugin = x\n"
                                      "[transport.b]\nplugin = y\n",
                                      NULL),
                     SB_ERR_CONFIG);
    assert_non_null(sb_testhost_log_find(th, "two.ini: the test host runs one plugin"));
    sb_testhost_free(th);
}

static void test_wrong_descriptor_refused(void **state)
{
    (void)state;
    /* The section names another plugin than the descriptor: the loader's rule. */
    sb_testhost *th = loaded("[database]\ntables = public.a\n[source.a]\nplugin = other_source\n",
                             &mini_source_plugin.header, SB_ERR_ABI);
    assert_non_null(sb_testhost_log_find(th, "mini_source"));
    sb_testhost_free(th);
}

static void test_leftovers_counted(void **state)
{
    (void)state;
    sb_testhost *th = source_host("forget_timer = YES", SB_OK);
    assert_int_equal(sb_testhost_start(th), SB_OK);
    assert_int_equal(sb_testhost_timer_count(th), 1); /* not fired yet: no loop ran */
    assert_int_equal(sb_testhost_stop(th), 1);
    assert_non_null(sb_testhost_log_find(th, "stop() left 0 watches and 1 timers registered"));
    assert_int_equal(sb_testhost_timer_count(th), 0);
    sb_testhost_free(th);

    /* After a failed start the broker calls stop() itself: what that left is counted too. */
    th = source_host("forget_timer = on\nfail_start = on", SB_OK);
    assert_int_equal(sb_testhost_start(th), SB_ERR_IO);
    assert_int_equal(sb_testhost_stop(th), 1);
    sb_testhost_free(th);
}

/* ---- a transport linked into the test -------------------------------------------------- */

typedef struct mini_transport {
    const sb_transport_api *api;
    sb_host *host;
    uint64_t req;
    char events[16]; /* 'C', 'R', 'D' as they came */
    size_t nevents, rows;
    int done_status;
    uint64_t cut_seq;
    size_t cut_ntables;
    size_t published;
    char body[512]; /* the last message published */
    size_t body_len;
} mini_transport;

static mini_transport *created; /* the last instance create() made, for the test to read */

static int transport_create(const sb_transport_api *api, sb_host *host, const sb_option_value *opts,
                            void **state)
{
    (void)opts;
    mini_transport *t = calloc(1, sizeof *t);
    if (!t)
        return SB_ERR_NOMEM;
    t->api = api;
    t->host = host;
    *state = created = t;
    return SB_OK;
}

static int on_snapshot(void *ud, uint64_t req, const sb_snapshot_event *ev)
{
    mini_transport *t = ud;
    assert_int_equal(req, t->req);
    char kind = ev->kind == SB_SNAPSHOT_CUT ? 'C' : ev->kind == SB_SNAPSHOT_ROWS ? 'R' : 'D';
    if (t->nevents < sizeof t->events - 1)
        t->events[t->nevents++] = kind;
    if (kind == 'C') {
        t->cut_seq = ev->seq;
        t->cut_ntables = ev->tseq ? ev->ntables : 0;
    } else if (kind == 'R')
        t->rows += ev->n;
    else
        t->done_status = ev->status;
    return SB_OK;
}

static int transport_start(void *state)
{
    mini_transport *t = state;
    return t->api->snapshot(t->host, NULL, 0, on_snapshot, t, &t->req);
}

static void transport_nop(void *state)
{
    (void)state;
}

static int transport_publish(void *state, const sb_message *m)
{
    mini_transport *t = state;
    t->published++;
    t->body_len = m->body && m->body_len < sizeof t->body ? m->body_len : 0;
    if (t->body_len)
        memcpy(t->body, m->body, t->body_len);
    return m->kind == SB_MSG_EVENT ? SB_OK : SB_ERR_INVAL;
}

static void transport_destroy(void *state)
{
    free(state);
}

static int transport_check(void *state)
{
    return state == created ? SB_OK : SB_ERR_STATE;
}

static const sb_transport_plugin mini_transport_plugin = {
    .header = SB_TRANSPORT_PLUGIN_HEADER("mini_transport", "1.0", "a test transport", NULL),
    .create = transport_create,
    .start = transport_start,
    .stop = transport_nop,
    .destroy = transport_destroy,
    .check = transport_check,
    .publish = transport_publish,
};

/* Two of one kind: the broker would run both transports; the test host runs one. */
static void test_two_transports_refused(void **state)
{
    (void)state;
    sb_testhost *th =
        loaded("[database]\ntables = public.a\n[transport.a]\nplugin = mini_transport\n"
               "[transport.b]\nplugin = mini_transport\n",
               &mini_transport_plugin.header, SB_ERR_CONFIG);
    assert_non_null(sb_testhost_log_find(th, "testhost.ini: the test host runs one plugin"));
    sb_testhost_free(th);
}

static bool snapshot_finished(void *ud)
{
    return sb_testhost_snapshot_count(ud) == 1 && sb_testhost_snapshot_get(ud, 0)->finished;
}

static void test_transport_snapshot_answered_by_the_loop(void **state)
{
    (void)state;
    sb_testhost *th =
        loaded("[database]\ntables = public.rooms\n[transport.t]\nplugin = mini_transport\n",
               &mini_transport_plugin.header, SB_OK);
    const char *parts[] = {"1"};
    sb_row rows[2] = {{.table = 0, .key = {.parts = parts, .nparts = 1}, .version = 4},
                      {.table = 0, .key = {.parts = parts, .nparts = 1}, .version = 5}};
    sb_testhost_script_snapshot(th, SB_OK, 41);
    sb_testhost_script_snapshot_sync(th, rows, 2, SB_OK);
    /* --check's order: create() then check(); start() then uses that instance. */
    created = NULL;
    assert_null(sb_testhost_plugin_state(th)); /* not created yet */
    assert_int_equal(sb_testhost_check(th), SB_OK);
    mini_transport *t = created;
    assert_non_null(t);
    assert_ptr_equal(sb_testhost_plugin_state(th), t);
    assert_int_equal(sb_testhost_start(th), SB_OK);
    assert_ptr_equal(created, t);
    /* Never answered inside api->snapshot(): only the loop delivers. */
    assert_int_equal(t->nevents, 0);
    assert_true(sb_testhost_snapshot_get(th, 0)->due);
    assert_true(sb_testhost_run_until(th, snapshot_finished, th, 5000));
    assert_string_equal(t->events, "CRD");
    assert_int_equal(t->cut_seq, 41);
    assert_int_equal(t->cut_ntables, 1); /* every table's tseq, as the core's cut */
    assert_int_equal(t->rows, 2);
    assert_int_equal(t->done_status, SB_OK);
    /* host.c checks a transport's arguments before the recorder sees them, as before the core. */
    uint64_t req = 0;
    assert_int_equal(t->api->snapshot(t->host, (const uint32_t[]){1}, 1, on_snapshot, t, &req),
                     SB_ERR_NOTFOUND);
    const char *parts1[] = {"1"};
    sb_presence p = {.client = "desk-a", .table = 1, .key = {parts1, 1}, .state = "editing"};
    assert_int_equal(t->api->presence(t->host, &p), SB_ERR_NOTFOUND);
    p.table = 0;
    p.state = NULL;
    assert_int_equal(t->api->presence(t->host, &p), SB_ERR_INVAL);
    assert_int_equal(sb_testhost_snapshot_count(th), 1);
    assert_int_equal(sb_testhost_presence_count(th), 0);

    assert_int_equal(sb_testhost_publish(th, &(sb_message){.kind = SB_MSG_EVENT, .seq = 1}), SB_OK);
    assert_int_equal(sb_testhost_publish(th, &(sb_message){.kind = SB_MSG_HEARTBEAT}),
                     SB_ERR_INVAL);
    assert_int_equal(t->published, 2);
    assert_int_equal(sb_testhost_source_fetch(th, 1, 0, NULL, 0), SB_ERR_STATE); /* no source */
    assert_int_equal(sb_testhost_stop(th), 0);
    /* Stopped: the host refuses the data calls, as the broker does. */
    assert_int_equal(sb_testhost_publish(th, &(sb_message){.kind = SB_MSG_EVENT}), SB_ERR_STATE);
    sb_testhost_free(th);
}

static void test_events_encoded_as_the_core_does(void **state)
{
    (void)state;
    sb_testhost *th = loaded("[database]\ntables = public.rooms, public.bookings\n"
                             "[transport.t]\nplugin = mini_transport\n",
                             &mini_transport_plugin.header, SB_OK);
    sb_testhost_script_snapshot(th, SB_OK, 0);
    assert_int_equal(sb_testhost_start(th), SB_OK);
    mini_transport *t = created;
    sb_testhost_set_epoch(th, "ep9");
    const char *parts[] = {"12"};
    sb_key key = {.parts = parts, .nparts = 1};
    uint64_t seq = 0;
    assert_int_equal(sb_testhost_publish_event(th, 1, SB_OP_UPDATE, &key, 4, "desk-b", row_bytes,
                                               sizeof row_bytes - 1, &seq),
                     SB_OK);
    assert_int_equal(seq, 1);
    assert_int_equal(sb_testhost_publish_event(th, 1, SB_OP_DELETE, &key, 5, NULL, NULL, 0, &seq),
                     SB_OK);
    assert_int_equal(seq, 2);
    msgpack_sbuffer rowbuf;
    msgpack_sbuffer_init(&rowbuf);
    sb_proto_msg m;
    assert_int_equal(sb_proto_decode(t->body, t->body_len, &rowbuf, &m), SB_OK);
    assert_int_equal(m.kind, SB_PROTO_EVENT);
    assert_int_equal(m.ev.seq, 2);
    assert_int_equal(m.ev.tseq, 2); /* the second event of public.bookings */
    assert_string_equal(m.ev.epoch, "ep9");
    assert_string_equal(m.ev.table, "public.bookings");
    assert_int_equal(m.ev.op, SB_OP_DELETE);
    assert_int_equal(m.ev.version, 5);
    assert_string_equal(m.ev.key.parts[0], "12");
    sb_proto_release(&m);
    assert_int_equal(sb_testhost_publish_event(th, 2, SB_OP_INSERT, &key, 1, NULL, NULL, 0, NULL),
                     SB_ERR_NOTFOUND);
    assert_int_equal(sb_testhost_publish_heartbeat(th), SB_ERR_INVAL); /* mini refuses beats */
    assert_int_equal(sb_proto_decode(t->body, t->body_len, &rowbuf, &m), SB_OK);
    assert_int_equal(m.kind, SB_PROTO_HEARTBEAT);
    assert_int_equal(m.hb.seq, 2);
    uint64_t tseq = 0;
    assert_int_equal(sb_proto_hb_tseq(&m.hb, "public.bookings", &tseq), SB_OK);
    assert_int_equal(tseq, 2);
    sb_proto_release(&m);
    msgpack_sbuffer_destroy(&rowbuf);
    assert_int_equal(sb_testhost_stop(th), 0);
    sb_testhost_free(th);
}

/* ---- a plugin from plugin_dir ---------------------------------------------------------- */

static void test_loaded_from_plugin_dir(void **state)
{
    (void)state;
    char dir[] = "/tmp/sb-testhost-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char ini[1024];
    snprintf(ini, sizeof ini,
             "[broker]\nplugin_dir = %s\n[database]\ntables = public.rooms\n"
             "[transport.file]\nplugin = transport_file\npath = %s/out.txt\n",
             SB_PLUGIN_BUILD_DIR, dir);
    sb_testhost *th = loaded(ini, NULL, SB_OK);
    assert_int_equal(sb_testhost_start(th), SB_OK);
    sb_message m = {.kind = SB_MSG_EVENT,
                    .seq = 9,
                    .topic = "public.rooms/1",
                    .topic_len = 14,
                    .body = "\x80",
                    .body_len = 1};
    assert_int_equal(sb_testhost_publish(th, &m), SB_OK);
    assert_int_equal(sb_testhost_stop(th), 0);
    sb_testhost_free(th);
    char path[256], text[256] = "";
    snprintf(path, sizeof path, "%s/out.txt", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    assert_non_null(strstr(text, "public.rooms/1"));
    remove(path);
    rmdir(dir);

    /* A plugin that is not there: the loader's message, with the path it tried. */
    snprintf(ini, sizeof ini,
             "[broker]\nplugin_dir = %s\n[database]\ntables = public.rooms\n"
             "[transport.file]\nplugin = transport_none\n",
             SB_PLUGIN_BUILD_DIR);
    th = loaded(ini, NULL, SB_ERR_CONFIG);
    assert_non_null(sb_testhost_log_find(th, "transport_none.so"));
    sb_testhost_free(th);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_source_calls_recorded),
        cmocka_unit_test(test_unknown_table_refused),
        cmocka_unit_test(test_option_refused_with_its_line),
        cmocka_unit_test(test_one_plugin_section),
        cmocka_unit_test(test_wrong_descriptor_refused),
        cmocka_unit_test(test_two_transports_refused),
        cmocka_unit_test(test_leftovers_counted),
        cmocka_unit_test(test_transport_snapshot_answered_by_the_loop),
        cmocka_unit_test(test_events_encoded_as_the_core_does),
        cmocka_unit_test(test_loaded_from_plugin_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
