/*
 * test_transport_zmq.c - the transport_zmq plugin against real REQ, DEALER and SUB peers
 * over tcp://127.0.0.1 (ports picked by the OS), run by libsyncbroker-testhost's loop.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sb_mp.h"
#include "tz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syncbroker/testhost.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define WAIT_MS 5000

/* Exported by transport_zmq.c through SB_PLUGIN_DECLARE; asked as the broker asks. */
const sb_plugin_header *sb_plugin_entry(const sb_abi_offer *offer);
static const sb_abi_version abi_v2 = {SB_ABI_MAJOR, SB_ABI_MINOR};
static const sb_abi_offer offer = {&abi_v2, 1};

static const char *const tables[] = {"public.bookings", "public.rooms"};
enum { BOOKINGS, ROOMS }; /* their indices */

typedef struct fixture {
    sb_testhost *th;
    tz *t;              /* the plugin's state (sb_testhost_plugin_state), for tz.h's internals */
    const char *tables; /* [database] tables */
    bool started;
    char pub[256], service[256];
    void *socks[16]; /* client sockets, closed at teardown */
    void *watched;   /* a client socket a predicate looks at */
    size_t nsocks;
} fixture;

static const sb_transport_plugin *plugin; /* transport_zmq's descriptor, linked in */

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_int_equal(sb_testhost_new(&f->th), SB_OK);
    const sb_plugin_header *h = sb_plugin_entry(&offer);
    assert_int_equal(h->kind, SB_PLUGIN_TRANSPORT);
    assert_true(h->size >= sizeof(sb_transport_plugin));
    assert_string_equal(h->version, SB_VERSION); /* the project's version */
    plugin = (const sb_transport_plugin *)h;
    f->tables = "public.bookings, public.rooms";
    sb_testhost_set_epoch(f->th, "ep1");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    for (size_t i = 0; i < f->nsocks; i++)
        if (f->socks[i])
            zmq_close(f->socks[i]);
    if (f->started)
        assert_int_equal(sb_testhost_stop(f->th), 0);
    sb_testhost_free(f->th);
    free(f);
    return 0;
}

/* The address after "<what> listening on " in the log. */
static void bound_endpoint(fixture *f, const char *what, char *out, size_t cap)
{
    char needle[64];
    snprintf(needle, sizeof needle, "%s listening on ", what);
    const char *line = sb_testhost_log_find(f->th, needle);
    assert_non_null(line);
    snprintf(out, cap, "%s", strstr(line, needle) + strlen(needle));
}

/* Whether one of the "key=value" options (NULL-terminated, may be NULL) sets key. */
static bool sets(const char *const *extra, const char *key)
{
    size_t len = strlen(key);
    for (size_t i = 0; extra && extra[i]; i++)
        if (strncmp(extra[i], key, len) == 0 && extra[i][len] == '=')
            return true;
    return false;
}

/* Load the plugin with f->tables, free ports and the extra "key=value" options (a
 * NULL-terminated list, may be NULL; pub= or service= replaces the free port). */
static void load_with_all(fixture *f, const char *const *extra)
{
    char ini[2048];
    int at =
        snprintf(ini, sizeof ini,
                 "[database]\ntables = %s\n[transport.zmq]\nplugin = transport_zmq\n", f->tables);
    if (!sets(extra, "pub"))
        at += snprintf(ini + at, sizeof ini - (size_t)at, "pub = tcp://127.0.0.1:*\n");
    if (!sets(extra, "service"))
        at += snprintf(ini + at, sizeof ini - (size_t)at, "service = tcp://127.0.0.1:*\n");
    for (size_t i = 0; extra && extra[i]; i++)
        at += snprintf(ini + at, sizeof ini - (size_t)at, "%s\n", extra[i]);
    assert_true((size_t)at < sizeof ini);
    assert_int_equal(sb_testhost_load(f->th, NULL, ini, &plugin->header), SB_OK);
}

/* Load and start the plugin (load_with_all); its endpoints into f->pub and f->service. */
static int start_with_all(fixture *f, const char *const *extra)
{
    load_with_all(f, extra);
    int rc = sb_testhost_start(f->th);
    f->t = sb_testhost_plugin_state(f->th);
    f->started = rc == SB_OK;
    if (rc == SB_OK) {
        bound_endpoint(f, "events (XPUB)", f->pub, sizeof f->pub);
        bound_endpoint(f, "service (ROUTER)", f->service, sizeof f->service);
    }
    return rc;
}

/* The same with up to two extra options (NULL for none). */
static int start_with(fixture *f, const char *extra1, const char *extra2)
{
    const char *const extra[] = {extra1, extra1 ? extra2 : NULL, NULL};
    return start_with_all(f, extra);
}

static void *client(fixture *f, int type, const char *endpoint)
{
    void *s = zmq_socket(sb_testhost_zmq_context(f->th), type);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    assert_int_equal(zmq_connect(s, endpoint), 0);
    assert_true(f->nsocks < 16);
    f->socks[f->nsocks++] = s;
    return s;
}

static void close_client(fixture *f, void *s)
{
    for (size_t i = 0; i < f->nsocks; i++)
        if (f->socks[i] == s)
            f->socks[i] = NULL;
    zmq_close(s);
}

static void send_body(void *s, const void *body, size_t len)
{
    assert_true(zmq_send(s, body, len, 0) >= 0);
}

/* Pack a request map of n entries: key, kind, value with kind 's' (const char *), 'u'
 * (uint64_t), 'i' (int64_t), 'a' (NULL-terminated const char **: array of str), 'x' (packed
 * bytes: const char *, size_t). */
static void pack_req(msgpack_sbuffer *sb, int n, ...)
{
    msgpack_packer pk;
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, (size_t)n);
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++) {
        sb_mp_pack_cstr(&pk, va_arg(ap, const char *));
        switch (va_arg(ap, int)) {
        case 's':
            sb_mp_pack_cstr(&pk, va_arg(ap, const char *));
            break;
        case 'u':
            msgpack_pack_uint64(&pk, va_arg(ap, uint64_t));
            break;
        case 'i':
            msgpack_pack_int64(&pk, va_arg(ap, int64_t));
            break;
        case 'a': {
            const char **a = va_arg(ap, const char **);
            size_t k = 0;
            while (a[k])
                k++;
            msgpack_pack_array(&pk, k);
            for (size_t j = 0; j < k; j++)
                sb_mp_pack_cstr(&pk, a[j]);
            break;
        }
        default: {
            const char *raw = va_arg(ap, const char *);
            sb_mp_pack_raw(&pk, raw, va_arg(ap, size_t));
        }
        }
    }
    va_end(ap);
}

#define SEND_REQ(sock, ...)                                                                        \
    do {                                                                                           \
        msgpack_sbuffer sb_;                                                                       \
        pack_req(&sb_, __VA_ARGS__);                                                               \
        send_body((sock), sb_.data, sb_.size);                                                     \
        msgpack_sbuffer_destroy(&sb_);                                                             \
    } while (0)

/* Run the loop until s has a message, then read all its frames. */
static void recv_reply(fixture *f, void *s, tz_frames *out)
{
    assert_true(sb_testhost_run_until(f->th, sb_testhost_zsock_readable, s, WAIT_MS));
    *out = (tz_frames){0};
    int more = 1;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        assert_true(zmq_msg_recv(&m, s, 0) >= 0);
        more = zmq_msg_more(&m);
        assert_int_equal(tz_frames_push(out, zmq_msg_data(&m), zmq_msg_size(&m)), 0);
        zmq_msg_close(&m);
    }
}

/* Decoded frame i of r; free with msgpack_unpacked_destroy. */
static const msgpack_object *decode(const tz_frames *r, size_t i, msgpack_unpacked *up)
{
    assert_true(i < r->n);
    msgpack_unpacked_init(up);
    assert_int_equal(sb_mp_unpack(r->v[i].data, r->v[i].len, NULL, up), SB_OK);
    assert_int_equal(up->data.type, MSGPACK_OBJECT_MAP);
    return &up->data;
}

static uint64_t get_uint(const msgpack_object *m, const char *key)
{
    uint64_t v = 0;
    assert_int_equal(sb_mp_get_uint(sb_mp_map_get(m, key), &v), SB_OK);
    return v;
}

/* Assert a one-frame reply {error: code, message: ...containing needle}. */
static void assert_error_reply(fixture *f, void *s, const char *code, const char *needle)
{
    tz_frames r;
    recv_reply(f, s, &r);
    assert_int_equal(r.n, 1);
    msgpack_unpacked up;
    const msgpack_object *m = decode(&r, 0, &up);
    const char *got;
    size_t len;
    assert_int_equal(sb_mp_get_str(sb_mp_map_get(m, "error"), &got, &len), 0);
    if (len != strlen(code) || memcmp(got, code, len) != 0)
        fail_msg("expected error %s, got %.*s", code, (int)len, got);
    const char *msg;
    assert_int_equal(sb_mp_get_str(sb_mp_map_get(m, "message"), &msg, &len), 0);
    if (needle) {
        char text[512];
        snprintf(text, sizeof text, "%.*s", (int)len, msg);
        if (!strstr(text, needle))
            fail_msg("message '%s' lacks '%s'", text, needle);
    }
    msgpack_unpacked_destroy(&up);
    tz_frames_clear(&r);
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Publish a heartbeat as the core encodes it: epoch ep1, seq, the two tables' tseq. */
static void publish_heartbeat(fixture *f, uint64_t seq, uint64_t bookings, uint64_t rooms)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 6);
    sb_mp_pack_kv_cstr(&pk, "epoch", "ep1");
    sb_mp_pack_kv_uint(&pk, "seq", seq);
    sb_mp_pack_cstr(&pk, "tseq");
    msgpack_pack_map(&pk, 2);
    sb_mp_pack_kv_uint(&pk, tables[0], bookings);
    sb_mp_pack_kv_uint(&pk, tables[1], rooms);
    sb_mp_pack_kv_int(&pk, "ts", wall_ms());
    sb_mp_pack_kv_uint(&pk, "hb_ms", 5000);
    sb_mp_pack_kv_uint(&pk, "proto", 1);
    sb_message beat = {SB_MSG_HEARTBEAT, seq, "@hb", 3, sb.data, sb.size};
    assert_int_equal(sb_testhost_publish(f->th, &beat), 0);
    msgpack_sbuffer_destroy(&sb);
}

/* ---- ops ----------------------------------------------------------------------------- */

static void test_ping(void **state)
{
    fixture *f = *state;
    assert_int_equal(start_with(f, NULL, NULL), 0);
    sb_testhost_stats(f->th)->seq = 42;
    void *req = client(f, ZMQ_REQ, f->service);
    int64_t before = wall_ms();
    SEND_REQ(req, 1, "op", 's', "ping");
    tz_frames r;
    recv_reply(f, req, &r);
    int64_t after = wall_ms();
    assert_int_equal(r.n, 1);
    msgpack_unpacked up;
    const msgpack_object *m = decode(&r, 0, &up);
    assert_true(sb_mp_str_eq(sb_mp_map_get(m, "epoch"), "ep1"));
    assert_int_equal(get_uint(m, "seq"), 42);
    uint64_t ts = get_uint(m, "ts");
    assert_true((int64_t)ts >= before && (int64_t)ts <= after);
    assert_null(sb_mp_map_get(m, "hb_ms")); /* no heartbeat published yet */
    msgpack_unpacked_destroy(&up);
    tz_frames_clear(&r);

    /* Once a heartbeat went out, ping answers its period and protocol version. */
    publish_heartbeat(f, 42, 0, 0);
    SEND_REQ(req, 1, "op", 's', "ping");
    recv_reply(f, req, &r);
    m = decode(&r, 0, &up);
    assert_int_equal(m->via.map.size, 5);
    assert_int_equal(get_uint(m, "hb_ms"), 5000);
    assert_int_equal(get_uint(m, "proto"), 1);
    msgpack_unpacked_destroy(&up);
    tz_frames_clear(&r);
}

static const unsigned char row_a[] = {0x81, 0xa2, 'i', 'd', 0x01};
static const unsigned char row_b[] = {0x82, 0xa2, 'i', 'd', 0x02, 0xa1, 'n', 0xc0};

static sb_row make_row(uint32_t table, const char *const *parts, uint32_t nparts, uint64_t version,
                       const unsigned char *row, size_t len)
{
    return (sb_row){
        .table = table, .key = {parts, nparts}, .version = version, .row = row, .row_len = len};
}

static bool one_snapshot_started(void *ud)
{
    return sb_testhost_snapshot_count(((fixture *)ud)->th) >= 1;
}

/* Check a row frame: an array of `n` row maps; returns the first row map's key object. */
static void assert_row_frame(const tz_frame *fr, uint32_t n, uint64_t first_version)
{
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    assert_int_equal(sb_mp_unpack(fr->data, fr->len, NULL, &up), SB_OK);
    const msgpack_object *items;
    uint32_t count;
    assert_int_equal(sb_mp_get_array(&up.data, &items, &count), 0);
    assert_int_equal(count, n);
    assert_int_equal(get_uint(&items[0], "version"), first_version);
    assert_true(sb_mp_str_eq(sb_mp_map_get(&items[0], "table"), "public.bookings"));
    msgpack_unpacked_destroy(&up);
}

static void test_snapshot_req_multi_frame(void **state)
{
    fixture *f = *state;
    assert_int_equal(start_with(f, "snapshot_batch=2", NULL), 0);
    sb_testhost_script_snapshot(f->th, SB_OK, 7);
    void *req = client(f, ZMQ_REQ, f->service);
    SEND_REQ(req, 1, "op", 's', "snapshot");
    assert_true(sb_testhost_run_until(f->th, one_snapshot_started, f, WAIT_MS));
    sb_testhost_snapshot *s = sb_testhost_snapshot_get(f->th, 0);
    assert_int_equal(s->ntables, 0); /* all tables: NULL/0 */

    const char *k1[] = {"1"}, *k2[] = {"2"}, *kc[] = {"12", "2026-11-28"};
    sb_row first[] = {make_row(BOOKINGS, k1, 1, 10, row_a, sizeof row_a),
                      make_row(BOOKINGS, k2, 1, 11, row_b, sizeof row_b),
                      make_row(BOOKINGS, kc, 2, 12, row_a, sizeof row_a)};
    sb_row second[] = {make_row(BOOKINGS, k1, 1, 13, row_b, sizeof row_b),
                       make_row(BOOKINGS, k2, 1, 14, row_a, sizeof row_a)};
    sb_testhost_snapshot_rows(f->th, 0, first, 3);
    sb_testhost_snapshot_rows(f->th, 0, second, 2);
    sb_testhost_run_once(f->th, 0);
    assert_false(sb_testhost_zsock_readable(req)); /* nothing before done */
    sb_testhost_snapshot_done(f->th, 0, SB_OK);

    tz_frames r;
    recv_reply(f, req, &r);
    assert_int_equal(r.n, 4); /* header + 2 + 2 + 1 rows */
    msgpack_unpacked up;
    const msgpack_object *h = decode(&r, 0, &up);
    assert_true(sb_mp_str_eq(sb_mp_map_get(h, "epoch"), "ep1"));
    assert_int_equal(get_uint(h, "seq"), 7);
    assert_int_equal(get_uint(h, "rows"), 5);
    /* The cut (with the rows) gave every table's tseq, as the core's does: 0, nothing was
     * published. */
    const msgpack_object *cut_tseq = sb_mp_map_get(h, "tseq");
    assert_non_null(cut_tseq);
    assert_int_equal(get_uint(cut_tseq, "public.bookings"), 0);
    const msgpack_object *tl;
    uint32_t nt;
    assert_int_equal(sb_mp_get_array(sb_mp_map_get(h, "tables"), &tl, &nt), 0);
    assert_int_equal(nt, 2);
    assert_true(sb_mp_str_eq(&tl[0], "public.bookings"));
    assert_true(sb_mp_str_eq(&tl[1], "public.rooms"));
    msgpack_unpacked_destroy(&up);
    assert_row_frame(&r.v[1], 2, 10);
    assert_row_frame(&r.v[2], 2, 12);
    assert_row_frame(&r.v[3], 1, 14);

    /* Frame 2, first row: the composite key is an array, the row bytes are verbatim. */
    msgpack_unpacked_init(&up);
    assert_int_equal(sb_mp_unpack(r.v[2].data, r.v[2].len, NULL, &up), 0);
    const msgpack_object *row = &up.data.via.array.ptr[0];
    const msgpack_object *key = sb_mp_map_get(row, "key");
    assert_int_equal(key->type, MSGPACK_OBJECT_ARRAY);
    assert_true(sb_mp_str_eq(&key->via.array.ptr[1], "2026-11-28"));
    const msgpack_object *cols = sb_mp_map_get(row, "row");
    assert_int_equal(get_uint(cols, "id"), 1);
    msgpack_unpacked_destroy(&up);
    tz_frames_clear(&r);
    assert_int_equal(f->t->nsnaps, 0);
}

static void test_snapshot_dealer_tables_sync_answer(void **state)
{
    fixture *f = *state;
    assert_int_equal(start_with(f, NULL, NULL), 0);
    const char *k[] = {"101"};
    sb_row rows[] = {make_row(ROOMS, k, 1, 3, row_b, sizeof row_b)};
    sb_testhost_script_snapshot(f->th, SB_OK, 9);
    assert_int_equal(sb_testhost_script_snapshot_tseq(f->th, (const uint64_t[]){4, 2}, 2),
                     SB_OK);                                 /* in the cut */
    sb_testhost_script_snapshot_sync(f->th, rows, 1, SB_OK); /* answered at once */
    publish_heartbeat(f, 9, 40, 20); /* not what the reply's tseq comes from */
    void *d = client(f, ZMQ_DEALER, f->service);
    const char *want[] = {"public.rooms", NULL};
    /* A DEALER with its own envelope: an empty delimiter, like REQ. */
    assert_true(zmq_send(d, "", 0, ZMQ_SNDMORE) == 0);
    SEND_REQ(d, 2, "op", 's', "snapshot", "tables", 'a', want);
    tz_frames r;
    recv_reply(f, d, &r);
    assert_int_equal(r.n, 3);
    assert_int_equal(r.v[0].len, 0); /* the envelope comes back */
    msgpack_unpacked up;
    const msgpack_object *h = decode(&r, 1, &up);
    assert_int_equal(get_uint(h, "rows"), 1);
    assert_int_equal(get_uint(h, "seq"), 9);
    const msgpack_object *tl;
    uint32_t nt;
    assert_int_equal(sb_mp_get_array(sb_mp_map_get(h, "tables"), &tl, &nt), 0);
    assert_int_equal(nt, 1);
    assert_true(sb_mp_str_eq(&tl[0], "public.rooms"));
    const msgpack_object *tseq = sb_mp_map_get(h, "tseq");
    assert_int_equal(tseq->via.map.size, 1); /* the requested tables only */
    assert_int_equal(get_uint(tseq, "public.rooms"), 2);
    msgpack_unpacked_destroy(&up);
    sb_testhost_snapshot *s = sb_testhost_snapshot_get(f->th, 0);
    assert_int_equal(s->ntables, 1);
    assert_int_equal(s->tables[0], ROOMS);
    tz_frames_clear(&r);

    /* A DEALER without an envelope gets the bare reply. */
    SEND_REQ(d, 1, "op", 's', "snapshot");
    recv_reply(f, d, &r);
    assert_int_equal(r.n, 2);
    h = decode(&r, 0, &up);
    assert_int_equal(get_uint(sb_mp_map_get(h, "tseq"), "public.bookings"), 4);
    msgpack_unpacked_destroy(&up);
    tz_frames_clear(&r);
}

/* A cut that comes after the call (a source that sets it) gives the reply's seq and tseq. */
static void test_snapshot_late_cut(void **state)
{
    fixture *f = *state;
    assert_int_equal(start_with(f, NULL, NULL), 0);
    sb_testhost_script_snapshot(f->th, SB_OK, 12);
    assert_int_equal(sb_testhost_script_snapshot_tseq(f->th, (const uint64_t[]){5, 6}, 2), SB_OK);
    void *req = client(f, ZMQ_REQ, f->service);
    const char *want[] = {"public.rooms", "public.bookings", NULL};
    SEND_REQ(req, 2, "op", 's', "snapshot", "tables", 'a', want);
    assert_true(sb_testhost_run_until(f->th, one_snapshot_started, f, WAIT_MS));
    assert_false(sb_testhost_snapshot_get(f->th, 0)->cut);
    sb_testhost_snapshot_done(f->th, 0, SB_OK); /* the cut, then the end */
    tz_frames r;
    recv_reply(f, req, &r);
    assert_int_equal(r.n, 1);
    msgpack_unpacked up;
    const msgpack_object *h = decode(&r, 0, &up);
    assert_int_equal(get_uint(h, "seq"), 12);
    assert_int_equal(get_uint(h, "rows"), 0);
    const msgpack_object *tseq = sb_mp_map_get(h, "tseq");
    assert_int_equal(tseq->via.map.size, 2);
    assert_int_equal(get_uint(tseq, "public.rooms"), 6);
    assert_int_equal(get_uint(tseq, "public.bookings"), 5);
    msgpack_unpacked_destroy(&up);
    tz_frames_clear(&r);
}

static bool two_snapshots_started(void *ud)
{
    return sb_testhost_snapshot_count(((fixture *)ud)->th) >= 2;
}

static void test_concurrent_snapshots_keep_their_own_rows(void **state)
{
    fixture *f = *state;
    assert_int_equal(start_with(f, NULL, NULL), 0);
    sb_testhost_script_snapshot(f->th, SB_OK, 1);
    void *a = client(f, ZMQ_REQ, f->service);
    void *b = client(f, ZMQ_REQ, f->service);
    SEND_REQ(a, 1, "op", 's', "snapshot");
    assert_true(sb_testhost_run_until(f->th, one_snapshot_started, f, WAIT_MS));
    SEND_REQ(b, 1, "op", 's', "snapshot");
    assert_true(sb_testhost_run_until(f->th, two_snapshots_started, f, WAIT_MS));
    const char *k[] = {"1"};
    sb_row ra = make_row(BOOKINGS, k, 1, 100, row_a, sizeof row_a);
    sb_row rb = make_row(BOOKINGS, k, 1, 200, row_b, sizeof row_b);
    sb_testhost_snapshot_rows(f->th, 0, &ra, 1);
    sb_testhost_snapshot_rows(f->th, 1, &rb, 1);
    sb_testhost_snapshot_rows(f->th, 1, &rb, 1);
    sb_testhost_snapshot_done(f->th, 1, SB_OK); /* the second finishes first */
    tz_frames r;
    recv_reply(f, b, &r);
    assert_int_equal(r.n, 2);
    assert_row_frame(&r.v[1], 2, 200);
    tz_frames_clear(&r);
    assert_false(sb_testhost_zsock_readable(a));
    sb_testhost_snapshot_done(f->th, 0, SB_OK);
    recv_reply(f, a, &r);
    assert_int_equal(r.n, 2);
    assert_row_frame(&r.v[1], 1, 100);
    tz_frames_clear(&r);
}

static void test_snapshot_errors(void **state)
{
    fixture *f = *state;
    assert_int_equal(start_with(f, NULL, NULL), 0);
    void *req = client(f, ZMQ_REQ, f->service);
    const char *unknown[] = {"public.bookings", "public.nope", NULL};
    SEND_REQ(req, 2, "op", 's', "snapshot", "tables", 'a', unknown);
    assert_error_reply(f, req, "unknown_table", "public.nope");
    assert_int_equal(sb_testhost_snapshot_count(f->th), 0);

    SEND_REQ(req, 2, "op", 's', "snapshot", "tables", 's', "public.bookings");
    assert_error_reply(f, req, "bad_request", "tables");
    SEND_REQ(req, 2, "op", 's', "snapshot", "tables", 'x', "\x91\x01", (size_t)2);
    assert_error_reply(f, req, "bad_request", "tables");

    sb_testhost_script_snapshot(f->th, SB_ERR_BUSY, 0);
    SEND_REQ(req, 1, "op", 's', "snapshot");
    assert_error_reply(f, req, "unavailable", NULL);
    sb_testhost_script_snapshot(f->th, SB_ERR_NOTFOUND, 0);
    SEND_REQ(req, 1, "op", 's', "snapshot");
    assert_error_reply(f, req, "unknown_table", NULL);

    /* The source fails midway: the rows already packed are thrown away. */
    sb_testhost_script_snapshot(f->th, SB_OK, 0);
    SEND_REQ(req, 1, "op", 's', "snapshot");
    assert_true(sb_testhost_run_until(f->th, one_snapshot_started, f, WAIT_MS));
    const char *k[] = {"1"};
    sb_row ra = make_row(BOOKINGS, k, 1, 1, row_a, sizeof row_a);
    sb_testhost_snapshot_rows(f->th, 0, &ra, 1);
    sb_testhost_snapshot_done(f->th, 0, SB_ERR_DB);
    assert_error_reply(f, req, "unavailable", "database");
    assert_int_equal(f->t->nsnaps, 0);
}

static void test_snapshot_limit(void **state)
{
    fixture *f = *state;
    assert_int_equal(start_with(f, "max_snapshots=1", NULL), 0);
    sb_testhost_script_snapshot(f->th, SB_OK, 0);
    void *a = client(f, ZMQ_REQ, f->service);
    void *b = client(f, ZMQ_REQ, f->service);
    SEND_REQ(a, 1, "op", 's', "snapshot");
    assert_true(sb_testhost_run_until(f->th, one_snapshot_started, f, WAIT_MS));
    SEND_REQ(b, 1, "op", 's', "snapshot");
    assert_error_reply(f, b, "unavailable", "snapshots are running");
    sb_testhost_snapshot_done(f->th, 0, SB_OK);
    tz_frames r;
    recv_reply(f, a, &r);
    assert_int_equal(r.n, 1);
    tz_frames_clear(&r);
}

static void test_since(void **state)
{
    fixture *f = *state;
    assert_int_equal(start_with(f, NULL, NULL), 0);
    static const unsigned char b1[] = {0x81, 0xa3, 's', 'e', 'q', 0x05};
    static const unsigned char b2[] = {0x81, 0xa3, 's', 'e', 'q', 0x06};
    sb_message msgs[] = {
        {SB_MSG_EVENT, 4, "public.bookings/1", 17, b1, sizeof b1}, /* not after seq 4 */
        {SB_MSG_EVENT, 5, "public.bookings/1", 17, b1, sizeof b1},
        {SB_MSG_PRESENCE, 6, "@presence/public.bookings/1", 27, b2, sizeof b2},
    };
    sb_testhost_script_since(f->th, SB_OK, 6, msgs, 3);
    void *req = client(f, ZMQ_REQ, f->service);
    SEND_REQ(req, 3, "op", 's', "since", "epoch", 's', "ep1", "seq", 'u', (uint64_t)4);
    tz_frames r;
    recv_reply(f, req, &r);
    assert_int_equal(r.n, 3);
    msgpack_unpacked up;
    const msgpack_object *h = decode(&r, 0, &up);
    assert_int_equal(get_uint(h, "seq"), 6);
    assert_true(sb_mp_str_eq(sb_mp_map_get(h, "epoch"), "ep1"));
    msgpack_unpacked_destroy(&up);
    assert_int_equal(r.v[1].len, sizeof b1);
    assert_memory_equal(r.v[1].data, b1, sizeof b1);
    assert_memory_equal(r.v[2].data, b2, sizeof b2);
    tz_frames_clear(&r);
    assert_string_equal(sb_testhost_since_last_epoch(f->th), "ep1");

    sb_testhost_script_since(f->th, SB_ERR_NOTFOUND, 6, NULL, 0);
    SEND_REQ(req, 3, "op", 's', "since", "epoch", 's', "old", "seq", 'u', (uint64_t)1);
    assert_error_reply(f, req, "resync", "snapshot");
    SEND_REQ(req, 3, "op", 's', "since", "epoch", 's', "ep1", "seq", 'u', (uint64_t)2);
    assert_error_reply(f, req, "resync", "no longer retained");
    /* Beyond the last seq of this epoch: not "no longer retained", but "future". */
    SEND_REQ(req, 3, "op", 's', "since", "epoch", 's', "ep1", "seq", 'u', (uint64_t)7);
    assert_error_reply(f, req, "future", "beyond");
    SEND_REQ(req, 3, "op", 's', "since", "epoch", 's', "old", "seq", 'u', (uint64_t)7);
    assert_error_reply(f, req, "resync", NULL);

    SEND_REQ(req, 3, "op", 's', "since", "epoch", 'u', (uint64_t)1, "seq", 'u', (uint64_t)1);
    assert_error_reply(f, req, "bad_request", "epoch");
    SEND_REQ(req, 3, "op", 's', "since", "epoch", 's', "ep1", "seq", 'i', (int64_t)-1);
    assert_error_reply(f, req, "bad_request", "seq");
    SEND_REQ(req, 2, "op", 's', "since", "epoch", 's', "ep1");
    assert_error_reply(f, req, "bad_request", "seq");
    assert_int_equal(sb_testhost_since_calls(f->th), 5);
}

/* Messages seq 1..n for the capped-since tests; body i is len[i] bytes of (i + 1). */
#define SINCE_MAX 16
typedef struct since_script {
    sb_message m[SINCE_MAX];
    unsigned char body[SINCE_MAX][2048];
    size_t n;
} since_script;

static void script_since(fixture *f, since_script *s, const size_t *len, size_t n)
{
    assert_true(n <= SINCE_MAX);
    s->n = n;
    for (size_t i = 0; i < n; i++) {
        assert_true(len[i] <= sizeof s->body[i]);
        memset(s->body[i], (int)(i + 1), len[i]);
        s->m[i] = (sb_message){SB_MSG_EVENT, i + 1, "public.bookings/1", 17, s->body[i], len[i]};
    }
    sb_testhost_script_since(f->th, SB_OK, n, s->m, n);
}

/* One `since` from `from`: checks the header (epoch ep1; complete: seq = the last; capped:
 * more, and seq = upto = the last message included) and that the frames are the script's
 * messages from + 1 onwards, in order.
 * Returns how many came; *upto gets upto when more is set, else 0. */
static size_t since_round(fixture *f, void *req, const since_script *s, uint64_t from,
                          uint64_t *upto)
{
    SEND_REQ(req, 3, "op", 's', "since", "epoch", 's', "ep1", "seq", 'u', from);
    tz_frames r;
    recv_reply(f, req, &r);
    msgpack_unpacked up;
    const msgpack_object *h = decode(&r, 0, &up);
    assert_true(sb_mp_str_eq(sb_mp_map_get(h, "epoch"), "ep1"));
    const msgpack_object *more = sb_mp_map_get(h, "more");
    *upto = 0;
    if (more) {
        assert_int_equal(more->type, MSGPACK_OBJECT_BOOLEAN);
        assert_true(more->via.boolean);
        *upto = get_uint(h, "upto");
        assert_int_equal(*upto, from + r.n - 1); /* the last message included */
        assert_int_equal(get_uint(h, "seq"), *upto);
        assert_true(*upto < s->n);
    } else {
        assert_int_equal(h->via.map.size, 2); /* complete: the reply of older brokers */
        assert_int_equal(get_uint(h, "seq"), s->n);
        assert_int_equal(from + r.n - 1, s->n);
    }
    msgpack_unpacked_destroy(&up);
    for (size_t i = 1; i < r.n; i++) {
        const sb_message *m = &s->m[from + i - 1];
        assert_int_equal(r.v[i].len, m->body_len);
        assert_memory_equal(r.v[i].data, m->body, m->body_len);
    }
    size_t got = r.n - 1;
    tz_frames_clear(&r);
    return got;
}

/* Follow more/upto from `from` to the end; returns the number of requests it took. */
static int since_follow(fixture *f, void *req, const since_script *s, uint64_t from)
{
    int rounds = 0;
    uint64_t upto;
    do {
        size_t got = since_round(f, req, s, from, &upto);
        assert_true(got >= 1);
        rounds++;
        from = upto;
    } while (upto);
    return rounds;
}

static void test_since_capped_by_events(void **state)
{
    fixture *f = *state;
    assert_int_equal(start_with(f, "max_since_events=3", NULL), 0);
    since_script s;
    const size_t len[10] = {10, 10, 10, 10, 10, 10, 10, 10, 10, 10};
    script_since(f, &s, len, 10);
    void *req = client(f, ZMQ_REQ, f->service);
    uint64_t upto;
    assert_int_equal(since_round(f, req, &s, 0, &upto), 3);
    assert_int_equal(upto, 3);
    /* Exactly the cap left: complete, no more. One over: capped. */
    assert_int_equal(since_round(f, req, &s, 7, &upto), 3);
    assert_int_equal(upto, 0);
    assert_int_equal(since_round(f, req, &s, 6, &upto), 3);
    assert_int_equal(upto, 9);
    /* Following upto reaches the end, every message once and in order (since_round checks
     * each reply continues exactly where the last one stopped): 1-3, 4-6, 7-9, 10. */
    assert_int_equal(since_follow(f, req, &s, 0), 4);
    /* Nothing after the last seq: an empty, complete reply. */
    assert_int_equal(since_round(f, req, &s, 10, &upto), 0);
    assert_int_equal(upto, 0);
}

static void test_since_capped_by_bytes(void **state)
{
    fixture *f = *state;
    assert_int_equal(start_with(f, "max_since_bytes=1024", NULL), 0);
    since_script s;
    /* 4 x 256 fill the cap exactly; 2000 alone exceeds it (and still goes, alone);
     * 3 x 256 + 300 exceed it by 44. */
    const size_t len[9] = {256, 256, 256, 256, 2000, 256, 256, 256, 300};
    script_since(f, &s, len, 9);
    void *req = client(f, ZMQ_REQ, f->service);
    uint64_t upto;
    assert_int_equal(since_round(f, req, &s, 0, &upto), 4);
    assert_int_equal(upto, 4);
    assert_int_equal(since_round(f, req, &s, 4, &upto), 1);
    assert_int_equal(upto, 5);
    assert_int_equal(since_round(f, req, &s, 5, &upto), 3);
    assert_int_equal(upto, 8);
    assert_int_equal(since_round(f, req, &s, 8, &upto), 1);
    assert_int_equal(upto, 0);
    assert_int_equal(since_follow(f, req, &s, 0), 4);
    /* The same messages uncapped: one reply with all of them (what the rounds added up to). */
    f->t->max_since_bytes = SIZE_MAX;
    assert_int_equal(since_follow(f, req, &s, 0), 1);
}

static void test_presence(void **state)
{
    fixture *f = *state;
    assert_int_equal(start_with(f, NULL, NULL), 0);
    void *req = client(f, ZMQ_REQ, f->service);
    const char *key[] = {"12", "2026-11-28", NULL};
    SEND_REQ(req, 6, "op", 's', "presence", "client", 's', "desk-a", "table", 's',
             "public.bookings", "key", 'a', key, "state", 's', "editing", "ttl_ms", 'u',
             (uint64_t)5000);
    tz_frames r;
    recv_reply(f, req, &r);
    msgpack_unpacked up;
    const msgpack_object *m = decode(&r, 0, &up);
    bool ok = false;
    assert_int_equal(sb_mp_get_bool(sb_mp_map_get(m, "ok"), &ok), 0);
    assert_true(ok);
    msgpack_unpacked_destroy(&up);
    tz_frames_clear(&r);
    assert_int_equal(sb_testhost_presence_count(f->th), 1);
    const sb_presence *p = sb_testhost_presence_get(f->th, 0);
    assert_string_equal(p->client, "desk-a");
    assert_int_equal(p->table, BOOKINGS);
    assert_string_equal(p->state, "editing");
    assert_int_equal(p->ttl_ms, 5000);
    assert_int_equal(p->key.nparts, 2);
    assert_string_equal(p->key.parts[1], "2026-11-28");

    /* "left" may omit the TTL. */
    SEND_REQ(req, 5, "op", 's', "presence", "client", 's', "desk-a", "table", 's',
             "public.bookings", "key", 's', "12", "state", 's', "left");
    recv_reply(f, req, &r);
    tz_frames_clear(&r);
    assert_int_equal(sb_testhost_presence_count(f->th), 2);
    assert_int_equal(sb_testhost_presence_get(f->th, 1)->key.nparts, 1);

    SEND_REQ(req, 6, "op", 's', "presence", "client", 's', "desk-a", "table", 's', "public.nope",
             "key", 's', "1", "state", 's', "editing", "ttl_ms", 'u', (uint64_t)1);
    assert_error_reply(f, req, "unknown_table", "public.nope");
    SEND_REQ(req, 6, "op", 's', "presence", "client", 's', "desk-a", "table", 's',
             "public.bookings", "key", 's', "1", "state", 's', "typing", "ttl_ms", 'u',
             (uint64_t)1);
    assert_error_reply(f, req, "bad_request", "state");
    /* Without ttl_ms an entry lives the documented default. */
    SEND_REQ(req, 5, "op", 's', "presence", "client", 's', "desk-a", "table", 's',
             "public.bookings", "key", 's', "1", "state", 's', "editing");
    recv_reply(f, req, &r);
    tz_frames_clear(&r);
    assert_int_equal(sb_testhost_presence_count(f->th), 3);
    assert_int_equal(sb_testhost_presence_get(f->th, 2)->ttl_ms, 6000);
    SEND_REQ(req, 6, "op", 's', "presence", "client", 's', "desk-a", "table", 's',
             "public.bookings", "key", 'u', (uint64_t)1, "state", 's', "editing", "ttl_ms", 'u',
             (uint64_t)1);
    assert_error_reply(f, req, "bad_request", NULL);
    SEND_REQ(req, 6, "op", 's', "presence", "client", 's', "desk-a", "table", 's',
             "public.bookings", "key", 's', "1", "state", 's', "editing", "ttl_ms", 'u',
             (uint64_t)1 << 40);
    assert_error_reply(f, req, "bad_request", "ttl_ms");
    assert_int_equal(sb_testhost_presence_count(f->th), 3);

    sb_testhost_script_presence(f->th, SB_ERR_NOMEM);
    SEND_REQ(req, 6, "op", 's', "presence", "client", 's', "desk-a", "table", 's',
             "public.bookings", "key", 's', "1", "state", 's', "viewing", "ttl_ms", 'u',
             (uint64_t)1);
    assert_error_reply(f, req, "internal", NULL);
}

/* Publish a presence message of public.bookings/<key> with one editor (NULL: nobody). */
static void publish_presence(fixture *f, uint64_t seq, const char *key, const char *client)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    sb_mp_pack_kv_uint(&pk, "seq", seq);
    sb_mp_pack_kv_cstr(&pk, "epoch", "ep1");
    sb_mp_pack_kv_cstr(&pk, "table", tables[0]);
    sb_mp_pack_kv_cstr(&pk, "key", key);
    sb_mp_pack_cstr(&pk, "editors");
    msgpack_pack_array(&pk, client ? 1 : 0);
    if (client) {
        msgpack_pack_map(&pk, 3);
        sb_mp_pack_kv_cstr(&pk, "client", client);
        sb_mp_pack_kv_cstr(&pk, "state", "editing");
        sb_mp_pack_kv_int(&pk, "since", 1764331200000);
    }
    sb_message m = {SB_MSG_PRESENCE, seq, "@presence/public.bookings/x", 27, sb.data, sb.size};
    assert_int_equal(sb_testhost_publish(f->th, &m), 0);
    msgpack_sbuffer_destroy(&sb);
}

/* The editors of public.bookings/<key> as the editors op answers them: their count, and the
 * first one's client copied into first (cap bytes). */
static uint32_t editors_of(fixture *f, void *req, const char *key, char *first, size_t cap)
{
    SEND_REQ(req, 3, "op", 's', "editors", "table", 's', "public.bookings", "key", 's', key);
    tz_frames r;
    recv_reply(f, req, &r);
    msgpack_unpacked up;
    const msgpack_object *m = decode(&r, 0, &up);
    assert_true(sb_mp_str_eq(sb_mp_map_get(m, "epoch"), "ep1"));
    assert_int_equal(get_uint(m, "seq"), 30);
    assert_true(sb_mp_str_eq(sb_mp_map_get(m, "key"), key));
    const msgpack_object *items;
    uint32_t n;
    assert_int_equal(sb_mp_get_array(sb_mp_map_get(m, "editors"), &items, &n), 0);
    const char *s;
    size_t len;
    if (n && sb_mp_get_str(sb_mp_map_get(&items[0], "client"), &s, &len) == 0)
        snprintf(first, cap, "%.*s", (int)len, s);
    msgpack_unpacked_destroy(&up);
    tz_frames_clear(&r);
    return n;
}

/* editors answers the latest list published for an entity, and nobody once it emptied. */
static void test_editors(void **state)
{
    fixture *f = *state;
    assert_int_equal(start_with(f, NULL, NULL), 0);
    sb_testhost_stats(f->th)->seq = 30;
    void *req = client(f, ZMQ_REQ, f->service);
    char who[32] = "";
    assert_int_equal(editors_of(f, req, "1", who, sizeof who), 0);
    publish_presence(f, 10, "1", "desk-a");
    publish_presence(f, 11, "2", "desk-b");
    publish_presence(f, 12, "1", "desk-c"); /* the latest list wins */
    assert_int_equal(editors_of(f, req, "1", who, sizeof who), 1);
    assert_string_equal(who, "desk-c");
    assert_int_equal(editors_of(f, req, "2", who, sizeof who), 1);
    assert_string_equal(who, "desk-b");
    publish_presence(f, 13, "1", NULL);
    assert_int_equal(editors_of(f, req, "1", who, sizeof who), 0);
    assert_int_equal(f->t->neditors, 1); /* an entity nobody edits is forgotten */
    SEND_REQ(req, 3, "op", 's', "editors", "table", 's', "public.nope", "key", 's', "1");
    assert_error_reply(f, req, "unknown_table", "public.nope");
    SEND_REQ(req, 2, "op", 's', "editors", "table", 's', "public.bookings");
    assert_error_reply(f, req, "bad_request", "key");
}

static void test_stats(void **state)
{
    fixture *f = *state;
    assert_int_equal(start_with(f, NULL, NULL), 0);
    *sb_testhost_stats(f->th) = (sb_stats){.changes_in = 11,
                                           .events_out = 7,
                                           .coalesced = 4,
                                           .snapshots = 2,
                                           .pending = 1,
                                           .source_lag_ms = 35,
                                           .seq = 99};
    void *req = client(f, ZMQ_REQ, f->service);
    SEND_REQ(req, 1, "op", 's', "nope");
    assert_error_reply(f, req, "unknown_op", "nope");
    SEND_REQ(req, 1, "op", 's', "stats");
    tz_frames r;
    recv_reply(f, req, &r);
    msgpack_unpacked up;
    const msgpack_object *m = decode(&r, 0, &up);
    assert_int_equal(m->via.map.size, 17);
    assert_true(sb_mp_str_eq(sb_mp_map_get(m, "epoch"), "ep1"));
    assert_int_equal(get_uint(m, "seq"), 99);
    assert_int_equal(get_uint(m, "changes_in"), 11);
    assert_int_equal(get_uint(m, "events_out"), 7);
    assert_int_equal(get_uint(m, "coalesced"), 4);
    assert_int_equal(get_uint(m, "snapshots"), 2);
    assert_int_equal(get_uint(m, "pending"), 1);
    assert_int_equal(get_uint(m, "source_lag_ms"), 35);
    assert_int_equal(get_uint(m, "subscribers"), 0);
    assert_int_equal(get_uint(m, "subscriptions"), 0);
    assert_int_equal(get_uint(m, "subscriptions_refused"), 0);
    assert_int_equal(get_uint(m, "subscribers_cut"), 0);
    assert_int_equal(get_uint(m, "requests"), 2);
    assert_int_equal(get_uint(m, "errors"), 1);
    assert_int_equal(get_uint(m, "snapshots_running"), 0);
    assert_int_equal(get_uint(m, "snapshots_cancelled"), 0);
    assert_int_equal(get_uint(m, "replies_dropped"), 0);
    msgpack_unpacked_destroy(&up);
    tz_frames_clear(&r);
}

static void test_malformed_requests(void **state)
{
    fixture *f = *state;
    assert_int_equal(start_with(f, NULL, NULL), 0);
    static const struct {
        const char *bytes;
        size_t len;
        const char *code, *needle;
    } cases[] = {
        {"\xc1", 1, "bad_request", "msgpack"},       /* reserved byte */
        {"\x91\x01", 2, "bad_request", "not a map"}, /* array */
        {"\xa4ping", 5, "bad_request", "not a map"}, /* bare str */
        {"\x81\xa1"
         "a\x01",
         4, "bad_request", "op"},                                 /* no op */
        {"\x81\xa2op\x01", 5, "bad_request", "op"},               /* op not a str */
        {"\x81\xa2op\xa4ping\x00", 10, "bad_request", "msgpack"}, /* trailing byte */
        {"\x81\xa2op\xa4pin", 8, "bad_request", "msgpack"},       /* truncated */
        {"\xdd\x01\x00\x00\x00", 5, "bad_request", "msgpack"},    /* allocation bomb */
        {"", 0, "bad_request", "msgpack"},                        /* empty body */
        {"\x81\xa2op\xa4"
         "zap\xff",
         9, "unknown_op", "zap?"}, /* non-ASCII op */
    };
    void *req = client(f, ZMQ_REQ, f->service);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        send_body(req, cases[i].bytes, cases[i].len);
        assert_error_reply(f, req, cases[i].code, cases[i].needle);
    }
    /* Still serving. */
    SEND_REQ(req, 1, "op", 's', "ping");
    tz_frames r;
    recv_reply(f, req, &r);
    tz_frames_clear(&r);
    assert_int_equal(f->t->errors, sizeof cases / sizeof cases[0]);
}

static bool peer_disconnected(void *mon)
{
    return sb_testhost_zsock_readable(mon);
}

static void *monitor_disconnects(fixture *f, const char *name)
{
    assert_int_equal(zmq_socket_monitor(f->t->router, name, ZMQ_EVENT_DISCONNECTED), 0);
    void *mon = zmq_socket(sb_testhost_zmq_context(f->th), ZMQ_PAIR);
    assert_int_equal(zmq_connect(mon, name), 0);
    f->socks[f->nsocks++] = mon;
    return mon;
}

static void test_oversize_requests(void **state)
{
    fixture *f = *state;
    assert_int_equal(start_with(f, "max_request=256", NULL), 0);
    void *mon = monitor_disconnects(f, "inproc://tz-oversize");
    char pad[4096];
    memset(pad, 'p', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    pad[300] = '\0';
    void *req = client(f, ZMQ_REQ, f->service);
    SEND_REQ(req, 2, "op", 's', "ping", "pad", 's', pad);
    assert_error_reply(f, req, "too_large", "256");

    /* Beyond 4 x max_request ZeroMQ itself drops the peer: no reply, everyone else served. */
    pad[300] = 'p';
    void *big = client(f, ZMQ_REQ, f->service);
    SEND_REQ(big, 2, "op", 's', "ping", "pad", 's', pad);
    assert_true(sb_testhost_run_until(f->th, peer_disconnected, mon, WAIT_MS));
    SEND_REQ(req, 1, "op", 's', "ping");
    tz_frames r;
    recv_reply(f, req, &r);
    tz_frames_clear(&r);
    assert_false(sb_testhost_zsock_readable(big));
    assert_int_equal(f->t->requests, 2);
}

static bool both_cancelled(void *ud)
{
    sb_testhost *th = ((fixture *)ud)->th;
    return sb_testhost_snapshot_get(th, 0)->cancelled && sb_testhost_snapshot_get(th, 1)->cancelled;
}

/* A client that closes its socket while its snapshots wait for the source: they are
 * cancelled once its connection is gone, without waiting for a reply to bounce. */
static void test_vanished_client_during_snapshot(void **state)
{
    fixture *f = *state;
    assert_int_equal(start_with(f, "max_peer_snapshots=2", NULL), 0);
    void *mon = monitor_disconnects(f, "inproc://tz-vanish");
    sb_testhost_script_snapshot(f->th, SB_OK, 0);
    void *gone = client(f, ZMQ_DEALER, f->service);
    SEND_REQ(gone, 1, "op", 's', "snapshot");
    SEND_REQ(gone, 1, "op", 's', "snapshot");
    assert_true(sb_testhost_run_until(f->th, two_snapshots_started, f, WAIT_MS));
    close_client(f, gone);
    assert_true(sb_testhost_run_until(f->th, peer_disconnected, mon, WAIT_MS));
    assert_true(sb_testhost_run_until(f->th, both_cancelled, f, WAIT_MS));
    assert_int_equal(f->t->nsnaps, 0);
    assert_int_equal(f->t->snapshots_cancelled, 2);
    assert_int_equal(f->t->replies_dropped, 0);

    /* Another client is served as before. */
    void *other = client(f, ZMQ_REQ, f->service);
    sb_testhost_script_snapshot_sync(f->th, NULL, 0, SB_OK);
    SEND_REQ(other, 1, "op", 's', "snapshot");
    tz_frames r;
    recv_reply(f, other, &r);
    assert_int_equal(r.n, 1);
    tz_frames_clear(&r);
}

/* The table list is deduplicated: 500 times one table scans it once, and the reply names it
 * once. */
static void test_snapshot_tables_deduplicated(void **state)
{
    fixture *f = *state;
    assert_int_equal(start_with(f, NULL, NULL), 0);
    const char *want[503];
    for (int i = 0; i < 500; i++)
        want[i] = "public.bookings";
    want[500] = "public.rooms";
    want[501] = "public.bookings";
    want[502] = NULL;
    sb_testhost_script_snapshot(f->th, SB_OK, 3);
    sb_testhost_script_snapshot_sync(f->th, NULL, 0, SB_OK);
    void *req = client(f, ZMQ_REQ, f->service);
    SEND_REQ(req, 2, "op", 's', "snapshot", "tables", 'a', want);
    tz_frames r;
    recv_reply(f, req, &r);
    sb_testhost_snapshot *fs = sb_testhost_snapshot_get(f->th, 0);
    assert_int_equal(fs->ntables, 2);
    assert_int_equal(fs->tables[0], BOOKINGS);
    assert_int_equal(fs->tables[1], ROOMS);
    msgpack_unpacked up;
    const msgpack_object *m = decode(&r, 0, &up);
    const msgpack_object *names;
    uint32_t n;
    assert_int_equal(sb_mp_get_array(sb_mp_map_get(m, "tables"), &names, &n), 0);
    assert_int_equal(n, 2);
    msgpack_unpacked_destroy(&up);
    tz_frames_clear(&r);
}

/* One client runs max_peer_snapshots (1) at once: a second is answered busy, another client
 * is not affected, and once the first is answered the client may ask again. */
static void test_snapshot_busy_per_client(void **state)
{
    fixture *f = *state;
    assert_int_equal(start_with(f, NULL, NULL), 0);
    sb_testhost_script_snapshot(f->th, SB_OK, 0);
    void *d = client(f, ZMQ_DEALER, f->service);
    SEND_REQ(d, 1, "op", 's', "snapshot");
    assert_true(sb_testhost_run_until(f->th, one_snapshot_started, f, WAIT_MS));
    SEND_REQ(d, 1, "op", 's', "snapshot");
    assert_error_reply(f, d, "busy", "max_peer_snapshots");
    void *other = client(f, ZMQ_REQ, f->service);
    SEND_REQ(other, 1, "op", 's', "snapshot");
    assert_true(sb_testhost_run_until(f->th, two_snapshots_started, f, WAIT_MS));
    sb_testhost_snapshot_done(f->th, 0, SB_OK);
    tz_frames r;
    recv_reply(f, d, &r);
    assert_int_equal(r.n, 1);
    tz_frames_clear(&r);
    sb_testhost_snapshot_done(f->th, 1, SB_OK);
    recv_reply(f, other, &r);
    tz_frames_clear(&r);
    sb_testhost_script_snapshot_sync(f->th, NULL, 0, SB_OK);
    SEND_REQ(d, 1, "op", 's', "snapshot");
    recv_reply(f, d, &r);
    assert_int_equal(r.n, 1);
    tz_frames_clear(&r);
}

/* A snapshot the source does not finish within snapshot_timeout_ms is cancelled: its
 * client hears unavailable and its slot is free again. */
static void test_snapshot_timeout(void **state)
{
    fixture *f = *state;
    assert_int_equal(start_with(f, "snapshot_timeout_ms=200", NULL), 0);
    sb_testhost_script_snapshot(f->th, SB_OK, 0);
    void *req = client(f, ZMQ_REQ, f->service);
    SEND_REQ(req, 1, "op", 's', "snapshot");
    assert_error_reply(f, req, "unavailable", "snapshot_timeout_ms");
    assert_true(sb_testhost_snapshot_get(f->th, 0)->cancelled);
    assert_int_equal(f->t->nsnaps, 0);
    assert_int_equal(f->t->snapshots_cancelled, 1);
}

/* A reply that would make a client's snapshot outgrow max_peer_bytes is refused too_large
 * as soon as the rows show it, not built to the end. */
static void test_snapshot_over_peer_bytes(void **state)
{
    fixture *f = *state;
    assert_int_equal(start_with(f, "max_peer_bytes=65536", "snapshot_batch=100"), 0);
    sb_testhost_script_snapshot(f->th, SB_OK, 0);
    void *req = client(f, ZMQ_REQ, f->service);
    SEND_REQ(req, 1, "op", 's', "snapshot");
    assert_true(sb_testhost_run_until(f->th, one_snapshot_started, f, WAIT_MS));
    static unsigned char big[1024];
    big[0] = 0xc5; /* bin16 of 1021 bytes */
    big[1] = 0x03;
    big[2] = 0xfd;
    const char *k[] = {"1"};
    sb_row rows[100];
    for (int i = 0; i < 100; i++)
        rows[i] = make_row(BOOKINGS, k, 1, 1, big, sizeof big);
    sb_testhost_snapshot_rows(f->th, 0, rows, 100); /* 100 kB: over the 64 kB */
    assert_true(sb_testhost_snapshot_get(f->th, 0)->cancelled);
    assert_error_reply(f, req, "too_large", "max_peer_bytes");
    assert_int_equal(f->t->snap_bytes, 0);
}

/* ---- slow clients -------------------------------------------------------------------- */

#define SLOW_REPLIES 32
#define STR(x) #x
#define XSTR(x) STR(x)

static bool replies_held(void *ud)
{
    fixture *f = ud;
    return sb_testhost_snapshot_count(f->th) == SLOW_REPLIES && f->t->pending_count > 0;
}

/* A DEALER asks for SLOW_REPLIES snapshots of ~1 MiB and does not read. Returns it once the
 * transport holds replies for it (ZeroMQ answered EAGAIN). */
static void *flood_slow_client(fixture *f, unsigned char **blob, bool until_held)
{
    size_t size = 1 << 20;
    *blob = malloc(size);
    (*blob)[0] = 0x81;
    (*blob)[1] = 0xa1;
    (*blob)[2] = 'b';
    (*blob)[3] = 0xc6; /* bin32 */
    uint32_t n = (uint32_t)(size - 8);
    for (int i = 0; i < 4; i++)
        (*blob)[4 + i] = (unsigned char)(n >> (24 - 8 * i));
    memset(*blob + 8, 'z', n);
    const char *k[] = {"1"};
    sb_row row = make_row(BOOKINGS, k, 1, 1, *blob, size);
    sb_testhost_script_snapshot(f->th, SB_OK, 0);
    sb_testhost_script_snapshot_sync(f->th, &row, 1, SB_OK);

    void *slow = zmq_socket(sb_testhost_zmq_context(f->th), ZMQ_DEALER);
    int one = 1, zero = 0, small = 4096;
    zmq_setsockopt(slow, ZMQ_RCVHWM, &one, sizeof one);
    zmq_setsockopt(slow, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(slow, ZMQ_RCVBUF, &small, sizeof small); /* the kernel takes little */
    assert_int_equal(zmq_connect(slow, f->service), 0);
    f->socks[f->nsocks++] = slow;
    for (int i = 0; i < SLOW_REPLIES; i++)
        SEND_REQ(slow, 1, "op", 's', "snapshot");
    if (until_held)
        assert_true(sb_testhost_run_until(f->th, replies_held, f, 20000));
    return slow;
}

static void assert_others_served(fixture *f)
{
    void *other = client(f, ZMQ_REQ, f->service);
    SEND_REQ(other, 1, "op", 's', "ping");
    tz_frames r;
    recv_reply(f, other, &r);
    assert_int_equal(r.n, 1);
    tz_frames_clear(&r);
}

static void test_client_at_hwm_does_not_block_others(void **state)
{
    fixture *f = *state;
    /* The snapshots of one client all run at once: the core answers them on a later turn. */
    assert_int_equal(start_with(f, "reply_hwm=1", "max_peer_snapshots=" XSTR(SLOW_REPLIES)), 0);
    unsigned char *blob;
    void *slow = flood_slow_client(f, &blob, true);
    assert_others_served(f);

    /* The slow client catches up and gets every reply: nothing was lost. */
    for (int i = 0; i < SLOW_REPLIES; i++) {
        tz_frames r;
        recv_reply(f, slow, &r);
        assert_int_equal(r.n, 2);
        /* array, map, keys and values, then the row verbatim */
        assert_true(r.v[1].len > (1 << 20));
        assert_memory_equal(r.v[1].data + r.v[1].len - (1 << 20), blob, 1 << 20);
        tz_frames_clear(&r);
    }
    assert_int_equal(f->t->pending_count, 0);
    assert_int_equal(f->t->replies_dropped, 0);
    free(blob);
}

static void test_held_replies_are_bounded(void **state)
{
    fixture *f = *state;
    assert_int_equal(
        start_with_all(f, (const char *[]){"reply_hwm=1", "max_pending_replies=2",
                                           "max_peer_snapshots=" XSTR(SLOW_REPLIES), NULL}),
        0);
    unsigned char *blob;
    void *slow = flood_slow_client(f, &blob, true);
    assert_true(f->t->pending_count <= 2);
    assert_true(f->t->replies_dropped > 0);
    assert_non_null(sb_testhost_log_find(f->th, "dropping the oldest"));
    size_t expected = SLOW_REPLIES - f->t->replies_dropped;
    for (size_t i = 0; i < expected; i++) {
        tz_frames r;
        recv_reply(f, slow, &r);
        tz_frames_clear(&r);
    }
    assert_int_equal(f->t->pending_count, 0);
    assert_int_equal(f->t->replies_dropped, SLOW_REPLIES - expected);
    free(blob);
}

static bool all_answered(void *ud)
{
    fixture *f = ud;
    return f->t->requests == SLOW_REPLIES && f->t->nsnaps == 0;
}

static bool nothing_in_zeromq(void *ud)
{
    return atomic_load(&((fixture *)ud)->t->total->bytes) == 0;
}

/* A client that asks for SLOW_REPLIES replies of 1 MiB and does not read: ZeroMQ's queue
 * would take them all (reply_hwm 1000), but the transport counts what it handed over and
 * stops at max_peer_bytes; the rest is refused or dropped. What ZeroMQ frees is counted
 * down again, to zero once the client has read everything. */
static void test_bytes_in_zeromq_bounded_per_client(void **state)
{
    fixture *f = *state;
    assert_int_equal(
        start_with(f, "max_peer_bytes=4194304", "max_peer_snapshots=" XSTR(SLOW_REPLIES)), 0);
    unsigned char *blob;
    void *slow = flood_slow_client(f, &blob, false);
    assert_true(sb_testhost_run_until(f->th, all_answered, f, 20000));
    size_t queued = atomic_load(&f->t->total->bytes);
    assert_true(queued > 0);
    assert_true(queued <= (4u << 20) + (1u << 20) + 4 * TZ_FRAME_COST);
    assert_true(f->t->replies_dropped + f->t->errors > 0);
    /* The client reads whatever reached it; ZeroMQ then frees every frame. */
    while (sb_testhost_run_until(f->th, sb_testhost_zsock_readable, slow, 500)) {
        tz_frames r;
        recv_reply(f, slow, &r);
        tz_frames_clear(&r);
    }
    assert_true(sb_testhost_run_until(f->th, nothing_in_zeromq, f, WAIT_MS));
    free(blob);
}

/* ---- events -------------------------------------------------------------------------- */

static bool subscribers_are(fixture *f, int64_t n)
{
    return f->t->subscribers == n;
}

static bool one_subscriber(void *ud)
{
    return subscribers_are(ud, 1);
}

static bool no_subscriber(void *ud)
{
    return subscribers_are(ud, 0);
}

static void test_publish_two_frames_and_count_subscribers(void **state)
{
    fixture *f = *state;
    assert_int_equal(start_with(f, NULL, NULL), 0);
    void *sub = client(f, ZMQ_SUB, f->pub);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "public.bookings/", 16);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "@hb", 3);
    assert_true(sb_testhost_run_until(f->th, one_subscriber, f, WAIT_MS));

    static const unsigned char body[] = {0x81, 0xa3, 's', 'e', 'q', 0x05};
    sb_message other = {SB_MSG_EVENT, 4, "public.rooms/1", 14, body, sizeof body};
    sb_message m = {SB_MSG_EVENT, 5, "public.bookings/1", 17, body, sizeof body};
    assert_int_equal(sb_testhost_publish(f->th, &other), 0); /* filtered out by the subscription */
    assert_int_equal(sb_testhost_publish(f->th, &m), 0);
    tz_frames r;
    recv_reply(f, sub, &r);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.v[0].len, 17);
    assert_memory_equal(r.v[0].data, "public.bookings/1", 17);
    assert_int_equal(r.v[1].len, sizeof body);
    assert_memory_equal(r.v[1].data, body, sizeof body);
    tz_frames_clear(&r);

    close_client(f, sub);
    assert_true(sb_testhost_run_until(f->th, no_subscriber, f, WAIT_MS));
}

static bool pub_drained(void *ud)
{
    return !sb_testhost_zsock_readable(((fixture *)ud)->t->pub);
}

/* An all-tables client subscribes "" and "@hb": both match heartbeats, yet it is one
 * subscriber. Counted once each, two clients make 2 subscribers, not 3. */
static void test_all_tables_client_counts_once(void **state)
{
    fixture *f = *state;
    assert_int_equal(start_with(f, NULL, NULL), 0);
    void *all = client(f, ZMQ_SUB, f->pub);
    zmq_setsockopt(all, ZMQ_SUBSCRIBE, "", 0);
    zmq_setsockopt(all, ZMQ_SUBSCRIBE, "@hb", 3);
    void *some = client(f, ZMQ_SUB, f->pub);
    zmq_setsockopt(some, ZMQ_SUBSCRIBE, "public.rooms/", 13);
    zmq_setsockopt(some, ZMQ_SUBSCRIBE, "@hb", 3);
    /* Beat until both have a heartbeat: every subscription before it reached the XPUB. */
    static const unsigned char body[] = {0x80};
    sb_message hb = {SB_MSG_HEARTBEAT, 0, "@hb", 3, body, sizeof body};
    for (int i = 0; !sb_testhost_zsock_readable(all) || !sb_testhost_zsock_readable(some); i++) {
        assert_true(i < WAIT_MS / 10);
        assert_int_equal(sb_testhost_publish(f->th, &hb), 0);
        sb_testhost_run_until(f->th, sb_testhost_zsock_readable, some, 10);
    }
    assert_true(sb_testhost_run_until(f->th, pub_drained, f, WAIT_MS));
    assert_int_equal(f->t->subscribers, 2);
    close_client(f, all);
    assert_true(sb_testhost_run_until(f->th, one_subscriber, f, WAIT_MS));
    assert_true(sb_testhost_run_until(f->th, pub_drained, f, WAIT_MS));
    assert_int_equal(f->t->subscribers, 1);
}

/* ---- subscriptions (subs.c) ------------------------------------------------------------ */

static void test_subscription_rule(void **state)
{
    (void)state;
    static const char *const valid[] = {
        "",
        "@",
        "@h",
        "@hb",
        "@pres",
        "@presence/",
        "@presence/public.roo",
        "@presence/public.rooms",
        "@presence/public.rooms/",
        "@presence/public.rooms/7/x",
        "p",
        "public.roo",
        "public.rooms",
        "public.rooms/",
        "public.rooms/12",
        "public.bookings/a/b",
    };
    static const char *const invalid[] = {
        "@hbx",
        "@hb/",
        "@x",
        "@presencex",
        "@presence/x",
        "@presence/public.roomsX",
        "x",
        "public.roomsx",
        "public.rooms_x/",
        "public.bookings_x/1",
        "publicX",
    };
    for (size_t i = 0; i < sizeof valid / sizeof *valid; i++)
        if (!tz_subscription_valid(tables, 2, (const unsigned char *)valid[i], strlen(valid[i])))
            fail_msg("'%s' should be valid", valid[i]);
    for (size_t i = 0; i < sizeof invalid / sizeof *invalid; i++)
        if (tz_subscription_valid(tables, 2, (const unsigned char *)invalid[i], strlen(invalid[i])))
            fail_msg("'%s' should be invalid", invalid[i]);
    /* A table's name as a prefix of another's: the boundary is the '/'. */
    static const char *const nested[] = {"public.a", "public.ab"};
    assert_true(tz_subscription_valid(nested, 2, (const unsigned char *)"public.ab/1", 11));
    assert_false(tz_subscription_valid(nested, 1, (const unsigned char *)"public.ab/1", 11));
}

typedef struct sub_counts {
    fixture *f;
    int64_t subscriptions;
    uint64_t refused, cut;
} sub_counts;

static bool counts_are(void *ud)
{
    sub_counts *c = ud;
    tz *t = c->f->t;
    return !sb_testhost_zsock_readable(t->pub) && t->subscriptions == c->subscriptions &&
           t->subscriptions_refused == c->refused && t->peers_cut == c->cut;
}

static void wait_counts(fixture *f, int64_t subscriptions, uint64_t refused, uint64_t cut)
{
    sub_counts c = {f, subscriptions, refused, cut};
    if (!sb_testhost_run_until(f->th, counts_are, &c, WAIT_MS))
        fail_msg("subscriptions %lld refused %llu cut %llu, expected %lld %llu %llu",
                 (long long)f->t->subscriptions, (unsigned long long)f->t->subscriptions_refused,
                 (unsigned long long)f->t->peers_cut, (long long)subscriptions,
                 (unsigned long long)refused, (unsigned long long)cut);
}

static void subscribe(void *sub, const char *topic)
{
    assert_int_equal(zmq_setsockopt(sub, ZMQ_SUBSCRIBE, topic, strlen(topic)), 0);
}

static void publish_event(fixture *f, uint64_t seq, const char *topic)
{
    static const unsigned char body[] = {0x80};
    sb_message m = {SB_MSG_EVENT, seq, topic, strlen(topic), body, sizeof body};
    assert_int_equal(sb_testhost_publish(f->th, &m), 0);
}

/* The next message on sub has this topic (events to one peer keep their order, so an event
 * published before it and not received was not sent). */
static void expect_topic(fixture *f, void *sub, const char *topic)
{
    tz_frames r;
    recv_reply(f, sub, &r);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.v[0].len, strlen(topic));
    assert_memory_equal(r.v[0].data, topic, strlen(topic));
    tz_frames_clear(&r);
}

static void test_subscriptions_bounded_per_connection(void **state)
{
    fixture *f = *state;
    assert_int_equal(start_with(f, "max_subscriptions=3", NULL), 0);
    void *sub = client(f, ZMQ_SUB, f->pub);
    subscribe(sub, "public.bookings/1");
    subscribe(sub, "public.bookings/1"); /* the same again: neither counted nor refused */
    subscribe(sub, "bogus");             /* no topic starts with it */
    subscribe(sub, "@hb");
    subscribe(sub, "public.rooms/");
    subscribe(sub, "public.bookings/2"); /* the 4th */
    wait_counts(f, 3, 2, 0);
    assert_int_equal(f->t->subscribers, 1);
    assert_non_null(sb_testhost_log_find(f->th, "subscription 'bogus' refused: no topic"));
    assert_null(sb_testhost_log_find(f->th, "'public.bookings/2' refused")); /* once per peer */

    publish_event(f, 1, "public.bookings/2");
    publish_event(f, 2, "bogus");
    publish_event(f, 3, "public.bookings/1");
    expect_topic(f, sub, "public.bookings/1");

    /* An unsubscription frees its place, also for a peer that was refused before. */
    assert_int_equal(zmq_setsockopt(sub, ZMQ_UNSUBSCRIBE, "public.rooms/", 13), 0);
    wait_counts(f, 2, 2, 0);
    subscribe(sub, "public.bookings/2");
    wait_counts(f, 3, 2, 0);
    publish_event(f, 4, "public.rooms/1");
    publish_event(f, 5, "public.bookings/2");
    expect_topic(f, sub, "public.bookings/2");
}

static void test_subscription_bytes_bounded(void **state)
{
    fixture *f = *state;
    assert_int_equal(start_with(f, "max_subscription_bytes=64", NULL), 0);
    void *sub = client(f, ZMQ_SUB, f->pub);
    subscribe(sub, "public.bookings/0123456789012345678901234567890123456789"); /* 56 */
    subscribe(sub, "public.rooms/");                                            /* 69 */
    subscribe(sub, "@hb");                                                      /* 59 */
    wait_counts(f, 2, 1, 0);
    assert_non_null(sb_testhost_log_find(f->th, "over max_subscription_bytes"));
}

/* Refused subscriptions stay in libzmq's own trie: as many refused as admitted disconnect the
 * connection, and its place is free again once it is gone. */
static void test_subscription_flood_disconnects(void **state)
{
    fixture *f = *state;
    assert_int_equal(start_with(f, "max_subscriptions=3", NULL), 0);
    void *sub = zmq_socket(sb_testhost_zmq_context(f->th), ZMQ_SUB);
    int never = -1, zero = 0;
    zmq_setsockopt(sub, ZMQ_RECONNECT_IVL, &never, sizeof never); /* stays gone once cut */
    zmq_setsockopt(sub, ZMQ_LINGER, &zero, sizeof zero);
    f->socks[f->nsocks++] = sub;
    assert_int_equal(zmq_connect(sub, f->pub), 0);
    subscribe(sub, "@hb");
    subscribe(sub, "public.rooms/");
    for (int i = 0; i < 4; i++) {
        char topic[32];
        snprintf(topic, sizeof topic, "x%d", i);
        subscribe(sub, topic);
    }
    /* The 4th refusal cuts it; its disconnect releases its 2 subscriptions and "@hb". */
    wait_counts(f, 0, 4, 1);
    assert_int_equal(f->t->subscribers, 0);
    assert_non_null(sb_testhost_log_find(f->th, "disconnected: 4 subscriptions (8 bytes) refused"));
    publish_event(f, 1, "public.rooms/1");
    assert_false(sb_testhost_run_until(f->th, sb_testhost_zsock_readable, sub, 100));

    void *next = client(f, ZMQ_SUB, f->pub);
    subscribe(next, "public.rooms/");
    subscribe(next, "public.bookings/");
    subscribe(next, "@hb");
    wait_counts(f, 3, 4, 1);
    publish_event(f, 2, "public.rooms/1");
    expect_topic(f, next, "public.rooms/1");
}

/* ---- table rights (a principal built by hand: CURVE hands them out) ------------------- */

/* tables[] is {public.bookings, public.rooms}: desk-a may read rooms only. */
static bool rooms_only[] = {false, true};
static tz_principal desk_a = {.name = "desk-a", .may_read = rooms_only};
static tz_principal admin_all = {.name = "ops", .all_tables = true, .admin = true};

static tz_frames sunk; /* the reply tz_request_serve() produced */

static void sink(tz *t, tz_frames *msg)
{
    (void)t;
    tz_frames_clear(&sunk);
    sunk = *msg;
    *msg = (tz_frames){0};
}

/* Serve one request (pack_req arguments) as `who`, as service.c would after reading it;
 * the reply (routing id first) lands in sunk. */
#define SERVE_AS(f, who, ...)                                                                      \
    do {                                                                                           \
        msgpack_sbuffer sb_;                                                                       \
        tz_frames env_ = {0};                                                                      \
        pack_req(&sb_, __VA_ARGS__);                                                               \
        assert_int_equal(tz_frames_push(&env_, "peer", 4), 0);                                     \
        (f)->t->reply = sink;                                                                      \
        (f)->t->req_who = (who);                                                                   \
        (f)->t->conn_fd = -1;                                                                      \
        tz_request_serve((f)->t, &env_, sb_.data, sb_.size);                                       \
        (f)->t->req_who = NULL;                                                                    \
        tz_frames_clear(&env_);                                                                    \
        msgpack_sbuffer_destroy(&sb_);                                                             \
    } while (0)

/* The error code of the reply in sunk ("" when it is not an error). */
static const char *sunk_error(char *buf, size_t cap)
{
    msgpack_unpacked up;
    const msgpack_object *m = decode(&sunk, 1, &up);
    const char *code = "";
    size_t len = 0;
    sb_mp_get_str(sb_mp_map_get(m, "error"), &code, &len);
    snprintf(buf, cap, "%.*s", (int)len, code);
    msgpack_unpacked_destroy(&up);
    return buf;
}

/* No byte of the reply in sunk names bookings. */
static void assert_sunk_free_of_bookings(void)
{
    for (size_t i = 0; i < sunk.n; i++)
        for (size_t j = 0; j + 8 <= sunk.v[i].len; j++)
            if (memcmp(sunk.v[i].data + j, "bookings", 8) == 0)
                fail_msg("frame %zu of the reply names bookings", i);
}

static void test_rights_snapshot(void **state)
{
    fixture *f = *state;
    char code[32];
    assert_int_equal(start_with(f, NULL, NULL), 0);
    const char *k[] = {"101"};
    sb_row rows[] = {make_row(ROOMS, k, 1, 3, row_b, sizeof row_b)};
    sb_testhost_script_snapshot(f->th, SB_OK, 9);
    assert_int_equal(sb_testhost_script_snapshot_tseq(f->th, (const uint64_t[]){4, 2}, 2), SB_OK);
    sb_testhost_script_snapshot_sync(f->th, rows, 1, SB_OK);

    /* No tables: the client's tables, asked of the core by index. */
    SERVE_AS(f, &desk_a, 1, "op", 's', "snapshot");
    sb_testhost_run_once(f->th, 0); /* the core answers on a later loop turn */
    assert_string_equal(sunk_error(code, sizeof code), "");
    assert_int_equal(sb_testhost_snapshot_count(f->th), 1);
    sb_testhost_snapshot *s = sb_testhost_snapshot_get(f->th, 0);
    assert_int_equal(s->ntables, 1);
    assert_int_equal(s->tables[0], ROOMS);
    msgpack_unpacked up;
    const msgpack_object *h = decode(&sunk, 1, &up);
    assert_int_equal(get_uint(sb_mp_map_get(h, "tseq"), "public.rooms"), 2);
    assert_int_equal(sb_mp_map_get(h, "tseq")->via.map.size, 1);
    msgpack_unpacked_destroy(&up);
    assert_sunk_free_of_bookings();

    /* A table it may not read, configured or not: the same refusal, nothing started. */
    const char *bookings[] = {"public.bookings", NULL}, *nope[] = {"public.nope", NULL};
    const char *both[] = {"public.rooms", "public.bookings", NULL};
    SERVE_AS(f, &desk_a, 2, "op", 's', "snapshot", "tables", 'a', bookings);
    assert_string_equal(sunk_error(code, sizeof code), "forbidden");
    SERVE_AS(f, &desk_a, 2, "op", 's', "snapshot", "tables", 'a', both);
    assert_string_equal(sunk_error(code, sizeof code), "forbidden");
    SERVE_AS(f, &desk_a, 2, "op", 's', "snapshot", "tables", 'a', nope);
    assert_string_equal(sunk_error(code, sizeof code), "forbidden");
    assert_int_equal(sb_testhost_snapshot_count(f->th), 1);

    /* Plain mode and a principal of every table: all of them, as before. */
    sb_testhost_script_snapshot(f->th, SB_OK, 9);
    sb_testhost_script_snapshot_sync(f->th, rows, 1, SB_OK);
    SERVE_AS(f, &admin_all, 1, "op", 's', "snapshot");
    sb_testhost_run_once(f->th, 0);
    assert_string_equal(sunk_error(code, sizeof code), "");
    assert_int_equal(sb_testhost_snapshot_get(f->th, 1)->ntables, 0);
    SERVE_AS(f, NULL, 2, "op", 's', "snapshot", "tables", 'a', nope);
    assert_string_equal(sunk_error(code, sizeof code), "unknown_table");
    tz_frames_clear(&sunk);
}

static void test_rights_since_filters_and_caps(void **state)
{
    fixture *f = *state;
    char code[32];
    assert_int_equal(start_with(f, "max_since_events=2", NULL), 0);
    static const unsigned char b[] = {0x81, 0xa3, 's', 'e', 'q', 0x05};
    sb_message msgs[] = {
        {SB_MSG_EVENT, 1, "public.bookings/1", 17, b, sizeof b},
        {SB_MSG_EVENT, 2, "public.rooms/1", 14, b, sizeof b},
        {SB_MSG_PRESENCE, 3, "@presence/public.bookings/1", 27, b, sizeof b},
        {SB_MSG_PRESENCE, 4, "@presence/public.rooms/1", 24, b, sizeof b},
        {SB_MSG_EVENT, 5, "public.bookings/2", 17, b, sizeof b},
        {SB_MSG_EVENT, 6, "public.rooms/2", 14, b, sizeof b},
        {SB_MSG_EVENT, 7, "public.bookings/3", 17, b, sizeof b},
    };
    sb_testhost_script_since(f->th, SB_OK, 7, msgs, 7);
    /* The cap counts what is included: 2 and 4, then more from upto 4. */
    SERVE_AS(f, &desk_a, 3, "op", 's', "since", "epoch", 's', "ep1", "seq", 'u', (uint64_t)0);
    assert_string_equal(sunk_error(code, sizeof code), "");
    assert_int_equal(sunk.n, 4);
    msgpack_unpacked up;
    const msgpack_object *h = decode(&sunk, 1, &up);
    assert_true(sb_mp_map_get(h, "more")->via.boolean);
    assert_int_equal(get_uint(h, "upto"), 4);
    assert_int_equal(get_uint(h, "seq"), 4);
    msgpack_unpacked_destroy(&up);
    /* From upto: 6 only; complete, seq the broker's last. */
    SERVE_AS(f, &desk_a, 3, "op", 's', "since", "epoch", 's', "ep1", "seq", 'u', (uint64_t)4);
    assert_int_equal(sunk.n, 3);
    h = decode(&sunk, 1, &up);
    assert_null(sb_mp_map_get(h, "more"));
    assert_int_equal(get_uint(h, "seq"), 7);
    msgpack_unpacked_destroy(&up);
    /* Nothing of its tables after 6: an empty complete reply. */
    SERVE_AS(f, &desk_a, 3, "op", 's', "since", "epoch", 's', "ep1", "seq", 'u', (uint64_t)6);
    assert_int_equal(sunk.n, 2);
    /* Plain mode: every message counts. */
    SERVE_AS(f, NULL, 3, "op", 's', "since", "epoch", 's', "ep1", "seq", 'u', (uint64_t)4);
    assert_int_equal(sunk.n, 4);
    h = decode(&sunk, 1, &up);
    assert_int_equal(get_uint(h, "upto"), 6);
    msgpack_unpacked_destroy(&up);
    tz_frames_clear(&sunk);
}

static void test_rights_since_has_only_its_tables(void **state)
{
    fixture *f = *state;
    assert_int_equal(start_with(f, NULL, NULL), 0);
    static const unsigned char b[] = {0x80};
    sb_message msgs[] = {
        {SB_MSG_EVENT, 1, "public.bookings/1", 17, b, sizeof b},
        {SB_MSG_EVENT, 2, "public.rooms/1", 14, b, sizeof b},
        {SB_MSG_PRESENCE, 3, "@presence/public.bookings/1", 27, b, sizeof b},
        {SB_MSG_EVENT, 4, "public.rooms_x/1", 16, b, sizeof b}, /* not rooms: the boundary */
        {SB_MSG_PRESENCE, 5, "@presence/public.rooms/1", 24, b, sizeof b},
    };
    sb_testhost_script_since(f->th, SB_OK, 5, msgs, 5);
    SERVE_AS(f, &desk_a, 3, "op", 's', "since", "epoch", 's', "ep1", "seq", 'u', (uint64_t)0);
    assert_int_equal(sunk.n, 4); /* routing id, header, seq 2 and 5 */
    tz_frames_clear(&sunk);
}

static void test_rights_presence_editors_stats_ping(void **state)
{
    fixture *f = *state;
    char code[32];
    assert_int_equal(start_with(f, NULL, NULL), 0);
    publish_heartbeat(f, 9, 4, 2);
    /* Presence under its own name on its table only. */
    SERVE_AS(f, &desk_a, 5, "op", 's', "presence", "client", 's', "desk-b", "table", 's',
             "public.rooms", "key", 's', "1", "state", 's', "editing");
    assert_string_equal(sunk_error(code, sizeof code), "forbidden");
    SERVE_AS(f, &desk_a, 5, "op", 's', "presence", "client", 's', "desk-a", "table", 's',
             "public.bookings", "key", 's', "1", "state", 's', "editing");
    assert_string_equal(sunk_error(code, sizeof code), "forbidden");
    assert_int_equal(sb_testhost_presence_count(f->th), 0);
    SERVE_AS(f, &desk_a, 5, "op", 's', "presence", "client", 's', "desk-a", "table", 's',
             "public.rooms", "key", 's', "1", "state", 's', "editing");
    assert_string_equal(sunk_error(code, sizeof code), "");
    assert_int_equal(sb_testhost_presence_count(f->th), 1);
    /* Editors of its tables only; a table it may not read is refused like an unknown one. */
    SERVE_AS(f, &desk_a, 3, "op", 's', "editors", "table", 's', "public.bookings", "key", 's', "1");
    assert_string_equal(sunk_error(code, sizeof code), "forbidden");
    SERVE_AS(f, &desk_a, 3, "op", 's', "editors", "table", 's', "public.nope", "key", 's', "1");
    assert_string_equal(sunk_error(code, sizeof code), "forbidden");
    SERVE_AS(f, &desk_a, 3, "op", 's', "editors", "table", 's', "public.rooms", "key", 's', "1");
    assert_string_equal(sunk_error(code, sizeof code), "");
    /* Stats for admins only. */
    SERVE_AS(f, &desk_a, 1, "op", 's', "stats");
    assert_string_equal(sunk_error(code, sizeof code), "forbidden");
    SERVE_AS(f, &admin_all, 1, "op", 's', "stats");
    assert_string_equal(sunk_error(code, sizeof code), "");
    /* Ping names no table. */
    SERVE_AS(f, &desk_a, 1, "op", 's', "ping");
    assert_string_equal(sunk_error(code, sizeof code), "");
    assert_sunk_free_of_bookings();
    tz_frames_clear(&sunk);
}

/* What a subscription stands for, as one "|"-separated string. */
static int collect(void *ud, const unsigned char *s, size_t len)
{
    char *out = ud;
    size_t at = strlen(out);
    snprintf(out + at, 1024 - at, "%s%.*s", at ? "|" : "", (int)len, (const char *)s);
    return 0;
}

static const char *narrowed(tz *t, const tz_principal *who, const char *s, char *out)
{
    out[0] = '\0';
    int n = tz_subs_narrow(t, who, (const unsigned char *)s, strlen(s), collect, out);
    assert_true(n >= 0);
    return out;
}

static void test_rights_subscriptions_narrowed(void **state)
{
    fixture *f = *state;
    char got[1024];
    static bool rooms3[] = {false, true, false}, rooms_x_only[] = {false, false, true};
    tz_principal rooms = {.name = "desk-a", .may_read = rooms3};
    tz_principal desk_x = {.name = "desk-x", .may_read = rooms_x_only};
    f->tables = "public.bookings, public.rooms, public.rooms_x";
    assert_int_equal(start_with(f, NULL, NULL), 0);
    static const struct {
        const char *sub, *want;
    } cases[] = {
        {"", "@hb/desk-a/|@presence/public.rooms/|public.rooms/"},
        {"@", "@hb/desk-a/|@presence/public.rooms/"},
        {"@hb", "@hb/desk-a/"},
        {"@hb/desk-a/", "@hb/desk-a/"},
        {"@hb/desk-b/", ""},
        {"@presence/", "@presence/public.rooms/"},
        {"@presence/public.rooms", "@presence/public.rooms/"},
        {"@presence/public.rooms/1", "@presence/public.rooms/1"},
        {"@presence/public.bookings/", ""},
        {"public.rooms", "public.rooms/"},
        {"public.rooms/", "public.rooms/"},
        {"public.rooms/12", "public.rooms/12"},
        {"public.roo", "public.rooms/"},
        {"public.bookings/", ""},
        {"public.bookings", ""},
        {"public.rooms_x/", ""},
        {"public.roomsx", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (strcmp(narrowed(f->t, &rooms, cases[i].sub, got), cases[i].want) != 0)
            fail_msg("'%s' stands for '%s', not '%s'", cases[i].sub, got, cases[i].want);
    /* The table boundary the other way: rooms_x does not let in rooms. */
    assert_string_equal(narrowed(f->t, &desk_x, "public.rooms", got), "public.rooms_x/");
    assert_string_equal(narrowed(f->t, &desk_x, "public.rooms/", got), "");
    /* Plain mode: the subscription itself, if valid. */
    assert_string_equal(narrowed(f->t, NULL, "", got), "");
    assert_int_equal(tz_subs_narrow(f->t, NULL, (const unsigned char *)"", 0, collect, got), 1);
    assert_string_equal(narrowed(f->t, NULL, "public.rooms", got), "public.rooms");
    assert_string_equal(narrowed(f->t, NULL, "public.roomsx", got), "");
}

static void test_rights_heartbeat_per_principal(void **state)
{
    fixture *f = *state;
    assert_int_equal(start_with(f, NULL, NULL), 0);
    publish_heartbeat(f, 9, 4, 2);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(tz_hb_encode(f->t, &desk_a, f->t->last_hb, f->t->last_hb_len, &sb), 0);
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    assert_int_equal(sb_mp_unpack(sb.data, sb.size, NULL, &up), 0);
    const msgpack_object *tseq = sb_mp_map_get(&up.data, "tseq");
    assert_int_equal(tseq->via.map.size, 1);
    assert_int_equal(get_uint(tseq, "public.rooms"), 2);
    assert_int_equal(get_uint(&up.data, "seq"), 9);
    assert_int_equal(get_uint(&up.data, "hb_ms"), 5000);
    assert_true(sb_mp_str_eq(sb_mp_map_get(&up.data, "epoch"), "ep1"));
    assert_int_equal(up.data.via.map.size, 6);
    msgpack_unpacked_destroy(&up);
    for (size_t j = 0; j + 8 <= sb.size; j++)
        assert_false(memcmp(sb.data + j, "bookings", 8) == 0);
    msgpack_sbuffer_destroy(&sb);
    char topic[TZ_HB_TOPIC_MAX];
    assert_int_equal(tz_hb_topic(&desk_a, topic, sizeof topic), 11);
    assert_string_equal(topic, "@hb/desk-a/");
    assert_int_equal(tz_hb_topic(NULL, topic, sizeof topic), 3);
}

static bool rebound(void *ud)
{
    return !((tz *)ud)->rebinding;
}

/* The client socket f->watched is polled too: libzmq resends a SUB's subscriptions after a
 * reconnect only once its application thread touches the socket, as a client's loop does. */
static bool one_subscriber_polled(void *ud)
{
    fixture *f = ud;
    sb_testhost_zsock_readable(f->watched);
    return one_subscriber(f);
}

/* A re-bind closes every connection and binds the same ports again; running snapshots are
 * cancelled; libzmq reconnects the clients, which carry on; the heartbeat stays. */
static void test_rebind_keeps_ports_and_clients_reconnect(void **state)
{
    fixture *f = *state;
    assert_int_equal(start_with(f, NULL, NULL), 0);
    void *sub = client(f, ZMQ_SUB, f->pub);
    assert_int_equal(zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "@hb", 3), 0);
    assert_true(sb_testhost_run_until(f->th, one_subscriber, f, WAIT_MS));
    void *req = client(f, ZMQ_REQ, f->service);
    void *dealer = client(f, ZMQ_DEALER, f->service);
    SEND_REQ(dealer, 1, "op", 's', "snapshot");
    assert_true(sb_testhost_run_until(f->th, one_snapshot_started, f, WAIT_MS));
    publish_heartbeat(f, 7, 0, 0);
    tz_frames r;
    recv_reply(f, sub, &r);
    tz_frames_clear(&r);

    char pub[256], service[256];
    snprintf(pub, sizeof pub, "%s", f->pub);
    snprintf(service, sizeof service, "%s", f->service);
    assert_int_equal(tz_rebind(f->t, NULL), 0);
    assert_true(sb_testhost_snapshot_get(f->th, 0)->cancelled);
    assert_int_equal(f->t->nsnaps, 0);
    assert_true(sb_testhost_run_until(f->th, rebound, f->t, WAIT_MS));
    assert_non_null(sb_testhost_log_find(f->th, "re-bound after"));
    /* Bound twice, on the same addresses. */
    size_t binds = 0;
    for (size_t i = 0; i < sb_testhost_log_count(f->th); i++) {
        const char *line = sb_testhost_log_line(f->th, i);
        const char *at = strstr(line, " listening on ");
        if (at) {
            binds++;
            assert_string_equal(at + 14, strstr(line, "events") ? pub : service);
        }
    }
    assert_int_equal(binds, 4);

    /* The SUB subscribes again on its own and gets the next heartbeat; the REQ is served. */
    f->watched = sub;
    assert_true(sb_testhost_run_until(f->th, one_subscriber_polled, f, WAIT_MS));
    publish_heartbeat(f, 8, 0, 0);
    recv_reply(f, sub, &r);
    tz_frames_clear(&r);
    SEND_REQ(req, 1, "op", 's', "ping");
    recv_reply(f, req, &r);
    msgpack_unpacked up;
    const msgpack_object *m = decode(&r, 0, &up);
    assert_int_equal(get_uint(m, "hb_ms"), 5000); /* the heartbeat kept over the re-bind */
    msgpack_unpacked_destroy(&up);
    tz_frames_clear(&r);
}

static void test_bind_failure_and_check_mode(void **state)
{
    fixture *f = *state;
    void *squatter = zmq_socket(sb_testhost_zmq_context(f->th), ZMQ_ROUTER);
    f->socks[f->nsocks++] = squatter;
    assert_int_equal(zmq_bind(squatter, "tcp://127.0.0.1:*"), 0);
    char taken[256], opt[300];
    size_t len = sizeof taken;
    zmq_getsockopt(squatter, ZMQ_LAST_ENDPOINT, taken, &len);
    snprintf(opt, sizeof opt, "service=%s", taken);
    load_with_all(f, (const char *const[]){opt, NULL});
    /* create() alone (what --check runs, before check()) binds nothing. */
    assert_int_equal(sb_testhost_check(f->th), SB_ERR_UNSUPPORTED); /* it has no check() */
    f->t = sb_testhost_plugin_state(f->th);
    assert_null(f->t->router);
    assert_int_equal(sb_testhost_watch_count(f->th), 0);
    assert_int_equal(sb_testhost_start(f->th), SB_ERR_ZMQ);
    char expect[400];
    snprintf(expect, sizeof expect, "cannot bind the service (ROUTER) socket to %s", taken);
    assert_non_null(sb_testhost_log_find(f->th, expect));
    /* The stop() the host calls after a failed start left nothing behind. */
    assert_int_equal(sb_testhost_stop(f->th), 0);
}

/* Write text to a new temporary file; its path into path (unlink it after). */
static void temp_file(char *path, size_t cap, const char *text)
{
    snprintf(path, cap, "/tmp/sb-tz-clients-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

/* Load text as a clients file: the rc, the list into *out (on success), the error into err. */
static int load_clients(tz *t, const char *text, tz_clients **out, char *err, size_t errlen)
{
    char path[64];
    temp_file(path, sizeof path, text);
    int rc = tz_clients_load(t, path, out, err, errlen);
    unlink(path);
    if (rc == SB_OK)
        assert_string_equal(err, ""); /* untouched */
    return rc;
}

#define KEY_A "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
#define KEY_B "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID"

static void test_clients_file(void **state)
{
    fixture *f = *state;
    assert_int_equal(start_with(f, NULL, NULL), 0);
    tz *t = f->t;
    tz_clients *c = NULL, *more = NULL;
    char err[512] = "";
    assert_int_equal(load_clients(t,
                                  "# desks\n[desk-a]\nkey = " KEY_A "   ; its key\n"
                                  "tables = public.rooms\n\n[desk.b_2]\nkey=" KEY_B "\n"
                                  "tables = public.rooms,\n  public.bookings\nadmin = on\n",
                                  &c, err, sizeof err),
                     SB_OK);
    assert_int_equal(c->n, 2);
    assert_string_equal(c->v[0]->name, "desk-a");
    assert_false(c->v[0]->admin);
    assert_true(tz_principal_reads(c->v[0], 1));
    assert_false(tz_principal_reads(c->v[0], 0));
    assert_true(c->v[1]->admin && tz_principal_reads(c->v[1], 0) && tz_principal_reads(c->v[1], 1));
    unsigned char raw[32];
    size_t index = 9;
    assert_non_null(zmq_z85_decode(raw, KEY_B));
    assert_ptr_equal(tz_clients_find(c, raw, &index), c->v[1]);
    assert_int_equal(index, 1);
    raw[0] ^= 1;
    assert_null(tz_clients_find(c, raw, &index));

    /* The User-Id names the principal by index, only with CURVE. */
    uint64_t conn;
    const tz_principal *who;
    assert_int_equal(tz_user_id_parse(t, "7", &conn, &who), SB_OK);
    assert_null(who);
    assert_int_equal(tz_user_id_parse(t, "7/1", &conn, &who), SB_ERR_INVAL);
    t->clients = c;
    assert_int_equal(tz_user_id_parse(t, "7/1", &conn, &who), SB_OK);
    assert_int_equal(conn, 7);
    assert_ptr_equal(who, c->v[1]);
    assert_int_equal(tz_user_id_parse(t, "7", &conn, &who), SB_ERR_INVAL);
    assert_int_equal(tz_user_id_parse(t, "7/2", &conn, &who), SB_ERR_INVAL);
    assert_int_equal(tz_user_id_parse(t, "7/+1", &conn, &who), SB_ERR_INVAL);
    assert_int_equal(tz_user_id_parse(t, "7/1x", &conn, &who), SB_ERR_INVAL);
    t->clients = NULL;

    /* Only additions extend a list. */
    assert_int_equal(load_clients(t,
                                  "[desk-a]\nkey = " KEY_A "\ntables = public.rooms\n"
                                  "[desk.b_2]\nkey=" KEY_B "\ntables = *\n",
                                  &more, err, sizeof err),
                     SB_OK);
    assert_true(tz_clients_extends(c, c));
    assert_false(tz_clients_extends(c, more)); /* desk.b_2 changed its tables */
    tz_principal *removed = c->v[1];
    c->n = 1;
    assert_true(tz_clients_extends(c, more));
    assert_false(tz_clients_extends(more, c));
    c->n = 2;
    assert_ptr_equal(c->v[1], removed);
    tz_clients_free(more);
    tz_clients_free(c);

    /* Each error names the file and the line. */
    static const struct {
        const char *text, *error;
    } bad[] = {
        {"[desk-a]\nkey = " KEY_A "\ntables = public.nope\n",
         ":3: 'public.nope' is not one of the tables"},
        {"[desk-a]\nkey = short\ntables = *\n", ":2: 'short' is not a CURVE public key"},
        {"[desk a]\nkey = " KEY_A "\ntables = *\n", ":1: 'desk a' is not a client name"},
        {"[desk-a]\nkey = " KEY_A "\ntables = *\n[desk-a]\nkey = " KEY_B "\ntables = *\n",
         ":4: [desk-a] appears twice (first on line 1)"},
        {"[desk-a]\nkey = " KEY_A "\ntables = *\n[desk-b]\nkey = " KEY_A "\ntables = *\n",
         ":5: the key of [desk-a] again (line 1)"},
        {"[desk-a]\nkey = " KEY_A "\ntables = *\nwho = me\n", ":4: unknown key 'who'"},
        {"[desk-a]\ntables = *\n", ":1: [desk-a] has no key"},
        {"[desk-a]\nkey = " KEY_A "\n", ":1: [desk-a] has no tables"},
        {"[desk-a]\nkey = " KEY_A "\ntables = public.rooms, public.rooms\n",
         ":3: 'public.rooms' is listed twice"},
        {"[desk-a]\nkey = " KEY_A "\ntables = *\nadmin = maybe\n", ":4: admin = 'maybe'"},
        {"key = " KEY_A "\n", ":1: 'key' before the first [client name] section"},
        {"[desk-a]\nkey = " KEY_A "\ntables = *\njunk\n", ":4: not a [client name] or key"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = '\0';
        c = NULL;
        assert_int_equal(load_clients(t, bad[i].text, &c, err, sizeof err), SB_ERR_CONFIG);
        assert_null(c);
        if (!strstr(err, bad[i].error))
            fail_msg("case %zu: '%s' lacks '%s'", i, err, bad[i].error);
        assert_non_null(strstr(err, "/tmp/sb-tz-clients-"));
    }
    assert_int_equal(tz_clients_load(t, "/nonexistent/clients", &c, err, sizeof err), SB_ERR_IO);
    assert_non_null(strstr(err, "/nonexistent/clients: "));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_req_multi_frame, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_dealer_tables_sync_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_late_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_snapshots_keep_their_own_rows, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_since, setup, teardown),
        cmocka_unit_test_setup_teardown(test_since_capped_by_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_since_capped_by_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_presence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_editors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversize_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vanished_client_during_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_tables_deduplicated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_busy_per_client, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_over_peer_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_at_hwm_does_not_block_others, setup, teardown),
        cmocka_unit_test_setup_teardown(test_held_replies_are_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bytes_in_zeromq_bounded_per_client, setup, teardown),
        cmocka_unit_test_setup_teardown(test_publish_two_frames_and_count_subscribers, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_all_tables_client_counts_once, setup, teardown),
        cmocka_unit_test(test_subscription_rule),
        cmocka_unit_test_setup_teardown(test_subscriptions_bounded_per_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subscription_bytes_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subscription_flood_disconnects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rights_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rights_since_filters_and_caps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rights_since_has_only_its_tables, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rights_presence_editors_stats_ping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rights_subscriptions_narrowed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rights_heartbeat_per_principal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bind_failure_and_check_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rebind_keeps_ports_and_clients_reconnect, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_clients_file, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
