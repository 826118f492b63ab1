/*
 * fake_broker.c - see fake_broker.h.
 */
#include "fake_broker.h"

#include "sb_mp.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* cmocka needs the headers above first. */
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

uint64_t fb_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void *bind_any(fake_broker *b, int type, char *ep, size_t eplen)
{
    void *s = zmq_socket(b->ctx, type);
    int linger = 0;
    assert_non_null(s);
    assert_int_equal(zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger)), 0);
    assert_int_equal(zmq_bind(s, "tcp://127.0.0.1:*"), 0);
    assert_int_equal(zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, ep, &eplen), 0);
    return s;
}

void fb_init(fake_broker *b, const char *epoch, uint32_t hb_ms, const char *const *tables,
             size_t ntables)
{
    memset(b, 0, sizeof(*b));
    assert_true(ntables <= FB_MAX_TABLES);
    b->ctx = zmq_ctx_new();
    assert_non_null(b->ctx);
    b->pub = bind_any(b, ZMQ_PUB, b->pub_ep, sizeof(b->pub_ep));
    b->router = bind_any(b, ZMQ_ROUTER, b->svc_ep, sizeof(b->svc_ep));
    for (size_t i = 0; i < ntables; i++)
        b->tables[i] = tables[i];
    b->ntables = ntables;
    b->hb_ms = hb_ms;
    b->hb_on = true;
    fb_new_epoch(b, epoch);
}

static void clear_history(fake_broker *b)
{
    for (size_t i = 0; i < b->nhist; i++)
        free(b->hist[i].body);
    b->nhist = 0;
}

void fb_free(fake_broker *b)
{
    clear_history(b);
    zmq_close(b->pub);
    zmq_close(b->router);
    zmq_ctx_term(b->ctx);
}

void fb_new_epoch(fake_broker *b, const char *epoch)
{
    snprintf(b->epoch, sizeof(b->epoch), "%s", epoch);
    b->seq = 0;
    memset(b->tseq, 0, sizeof(b->tseq));
    clear_history(b);
}

static void send_frames(void *sock, const void *a, size_t alen, const void *c, size_t clen)
{
    assert_true(zmq_send(sock, a, alen, ZMQ_SNDMORE) >= 0);
    assert_true(zmq_send(sock, c, clen, 0) >= 0);
}

void fb_publish_raw(fake_broker *b, const char *topic, const void *body, size_t len)
{
    send_frames(b->pub, topic, strlen(topic), body, len);
}

static void record(fake_broker *b, uint64_t seq, const msgpack_sbuffer *body)
{
    assert_true(b->nhist < FB_MAX_HISTORY);
    fb_msg *m = &b->hist[b->nhist++];
    m->seq = seq;
    m->len = body->size;
    m->body = malloc(body->size);
    assert_non_null(m->body);
    memcpy(m->body, body->data, body->size);
}

static size_t table_index(fake_broker *b, const char *table)
{
    for (size_t i = 0; i < b->ntables; i++)
        if (strcmp(b->tables[i], table) == 0)
            return i;
    fail_msg("fake broker: unknown table %s", table);
    return 0;
}

static void pack_row(msgpack_packer *pk, int64_t id, const char *name)
{
    msgpack_pack_map(pk, 2);
    sb_mp_pack_kv_int(pk, "id", id);
    sb_mp_pack_kv_cstr(pk, "name", name);
}

static void pack_change(fake_broker *b, msgpack_sbuffer *body, uint64_t seq, uint64_t tseq,
                        const char *table, const char *key, const char *op, uint64_t version,
                        const char *origin, int64_t id, const char *name)
{
    bool has_row = strcmp(op, "delete") != 0 && strcmp(op, "truncate") != 0;
    msgpack_packer pk;
    msgpack_packer_init(&pk, body, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 11);
    sb_mp_pack_kv_uint(&pk, "seq", seq);
    sb_mp_pack_kv_uint(&pk, "tseq", tseq);
    sb_mp_pack_kv_cstr(&pk, "epoch", b->epoch);
    sb_mp_pack_kv_cstr(&pk, "table", table);
    sb_mp_pack_kv_cstr(&pk, "key", key); /* NULL (truncate) packs nil */
    sb_mp_pack_kv_cstr(&pk, "op", op);
    sb_mp_pack_kv_uint(&pk, "version", version);
    sb_mp_pack_kv_cstr(&pk, "origin", origin);
    sb_mp_pack_kv_int(&pk, "ts", 1764331200000);
    sb_mp_pack_cstr(&pk, "row");
    if (has_row)
        pack_row(&pk, id, name);
    else
        msgpack_pack_nil(&pk);
    sb_mp_pack_kv_uint(&pk, "n", 1);
}

static void publish_change(fake_broker *b, const char *table, const char *key,
                           const msgpack_sbuffer *body)
{
    char topic[256];
    snprintf(topic, sizeof(topic), "%s/%s", table, key ? key : "");
    fb_publish_raw(b, topic, body->data, body->size);
}

uint64_t fb_change(fake_broker *b, const char *table, const char *key, const char *op,
                   uint64_t version, const char *origin, int64_t id, const char *name, bool lose)
{
    size_t t = table_index(b, table);
    uint64_t seq = ++b->seq, tseq = ++b->tseq[t];
    msgpack_sbuffer body;
    msgpack_sbuffer_init(&body);
    pack_change(b, &body, seq, tseq, table, key, op, version, origin, id, name);
    bool hidden = b->hidden && strcmp(table, b->hidden) == 0;
    if (!hidden)
        record(b, seq, &body);
    if (!lose && !hidden)
        publish_change(b, table, key, &body);
    msgpack_sbuffer_destroy(&body);
    return seq;
}

void fb_forged_change(fake_broker *b, const char *table, const char *key, uint64_t seq,
                      uint64_t tseq, uint64_t version)
{
    msgpack_sbuffer body;
    msgpack_sbuffer_init(&body);
    pack_change(b, &body, seq, tseq, table, key, "insert", version, NULL, 0, "forged");
    publish_change(b, table, key, &body);
    msgpack_sbuffer_destroy(&body);
}

uint64_t fb_presence(fake_broker *b, const char *table, const char *key, const char *client)
{
    uint64_t seq = ++b->seq;
    msgpack_sbuffer body;
    msgpack_sbuffer_init(&body);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &body, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    sb_mp_pack_kv_uint(&pk, "seq", seq);
    sb_mp_pack_kv_cstr(&pk, "epoch", b->epoch);
    sb_mp_pack_kv_cstr(&pk, "table", table);
    sb_mp_pack_kv_cstr(&pk, "key", key);
    sb_mp_pack_cstr(&pk, "editors");
    msgpack_pack_array(&pk, client ? 1 : 0);
    if (client) {
        msgpack_pack_map(&pk, 3);
        sb_mp_pack_kv_cstr(&pk, "client", client);
        sb_mp_pack_kv_cstr(&pk, "state", "editing");
        sb_mp_pack_kv_int(&pk, "since", 1764331200000);
    }
    record(b, seq, &body);
    char topic[256];
    snprintf(topic, sizeof(topic), "@presence/%s/%s", table, key);
    fb_publish_raw(b, topic, body.data, body.size);
    msgpack_sbuffer_destroy(&body);
    return seq;
}

void fb_heartbeat(fake_broker *b)
{
    msgpack_sbuffer body;
    msgpack_sbuffer_init(&body);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &body, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, b->announce_hb_ms ? 6 : 4);
    sb_mp_pack_kv_cstr(&pk, "epoch", b->epoch);
    sb_mp_pack_kv_uint(&pk, "seq", b->seq);
    sb_mp_pack_cstr(&pk, "tseq");
    msgpack_pack_map(&pk, b->ntables - (b->hidden != NULL));
    for (size_t i = 0; i < b->ntables; i++)
        if (!b->hidden || strcmp(b->tables[i], b->hidden) != 0)
            sb_mp_pack_kv_uint(&pk, b->tables[i], b->tseq[i]);
    sb_mp_pack_kv_int(&pk, "ts", 1764331200000);
    if (b->announce_hb_ms) {
        sb_mp_pack_kv_uint(&pk, "hb_ms", b->announce_hb_ms);
        sb_mp_pack_kv_uint(&pk, "proto", 1);
    }
    char topic[128];
    snprintf(topic, sizeof(topic), b->principal ? "@hb/%s/" : "@hb",
             b->principal ? b->principal : "");
    fb_publish_raw(b, topic, body.data, body.size);
    msgpack_sbuffer_destroy(&body);
    b->last_hb_ms = fb_now_ms();
    b->next_hb_ms = b->last_hb_ms + b->hb_ms;
}

void fb_tick(fake_broker *b)
{
    if (b->hb_on && fb_now_ms() >= b->next_hb_ms)
        fb_heartbeat(b);
}

bool fb_poll_request(fake_broker *b, fb_req *r)
{
    memset(r, 0, sizeof(*r));
    int more = 1;
    while (more) {
        assert_true(r->n < 8);
        zmq_msg_init(&r->frames[r->n]);
        if (zmq_msg_recv(&r->frames[r->n], b->router, r->n ? 0 : ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&r->frames[r->n]);
            return false;
        }
        more = zmq_msg_more(&r->frames[r->n]);
        r->n++;
    }
    assert_true(r->n >= 2);
    msgpack_unpacked_init(&r->up);
    zmq_msg_t *last = &r->frames[r->n - 1];
    assert_int_equal(sb_mp_unpack(zmq_msg_data(last), zmq_msg_size(last), NULL, &r->up), 0);
    r->body = &r->up.data;
    return true;
}

void fb_req_free(fb_req *r)
{
    for (size_t i = 0; i < r->n; i++)
        zmq_msg_close(&r->frames[i]);
    msgpack_unpacked_destroy(&r->up);
    memset(r, 0, sizeof(*r));
}

bool fb_req_is(const fb_req *r, const char *op)
{
    return sb_mp_str_eq(sb_mp_map_get(r->body, "op"), op);
}

const msgpack_object *fb_req_get(const fb_req *r, const char *key)
{
    return sb_mp_map_get(r->body, key);
}

/* Echo every frame before the body (routing id, the client's envelope), then the reply. */
void fb_reply_map(fake_broker *b, const fb_req *r, const msgpack_sbuffer *const *frames, size_t n)
{
    for (size_t i = 0; i + 1 < r->n; i++) {
        zmq_msg_t copy;
        zmq_msg_init(&copy);
        zmq_msg_copy(&copy, (zmq_msg_t *)&r->frames[i]);
        assert_true(zmq_msg_send(&copy, b->router, ZMQ_SNDMORE) >= 0);
    }
    for (size_t i = 0; i < n; i++)
        assert_true(zmq_send(b->router, frames[i]->data, frames[i]->size,
                             i + 1 < n ? ZMQ_SNDMORE : 0) >= 0);
}

void fb_reply_snapshot(fake_broker *b, const fb_req *r, uint64_t seq, const fb_row *rows, size_t n)
{
    msgpack_sbuffer head, body;
    msgpack_sbuffer_init(&head);
    msgpack_sbuffer_init(&body);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &head, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    sb_mp_pack_kv_cstr(&pk, "epoch", b->epoch);
    sb_mp_pack_kv_uint(&pk, "seq", seq);
    sb_mp_pack_cstr(&pk, "tables");
    msgpack_pack_array(&pk, 0);
    sb_mp_pack_kv_uint(&pk, "rows", n);
    msgpack_packer_init(&pk, &body, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, n);
    for (size_t i = 0; i < n; i++) {
        msgpack_pack_map(&pk, 4);
        sb_mp_pack_kv_cstr(&pk, "table", rows[i].table);
        sb_mp_pack_kv_cstr(&pk, "key", rows[i].key);
        sb_mp_pack_kv_uint(&pk, "version", rows[i].version);
        sb_mp_pack_cstr(&pk, "row");
        pack_row(&pk, rows[i].id, rows[i].name);
    }
    const msgpack_sbuffer *frames[2] = {&head, &body};
    fb_reply_map(b, r, frames, n ? 2 : 1);
    msgpack_sbuffer_destroy(&head);
    msgpack_sbuffer_destroy(&body);
}

/* Header {epoch, seq[, more: true, upto]}, then at most n messages after `from`. */
static void reply_since(fake_broker *b, const fb_req *r, uint64_t from, size_t n, bool more,
                        uint64_t upto)
{
    msgpack_sbuffer head;
    msgpack_sbuffer_init(&head);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &head, msgpack_sbuffer_write);
    bool has_upto = more && upto != FB_NO_UPTO;
    msgpack_pack_map(&pk, 2 + more + has_upto);
    sb_mp_pack_kv_cstr(&pk, "epoch", b->epoch);
    sb_mp_pack_kv_uint(&pk, "seq", has_upto ? upto : b->seq);
    if (more)
        sb_mp_pack_kv_bool(&pk, "more", true);
    if (has_upto)
        sb_mp_pack_kv_uint(&pk, "upto", upto);
    msgpack_sbuffer frames[FB_MAX_HISTORY];
    const msgpack_sbuffer *ptrs[FB_MAX_HISTORY + 1] = {&head};
    size_t k = 1;
    for (size_t i = 0; i < b->nhist && k <= n; i++) {
        if (b->hist[i].seq <= from)
            continue;
        /* A view of the stored body; never written to, so no init/destroy. */
        frames[k - 1] = (msgpack_sbuffer){b->hist[i].len, b->hist[i].body, b->hist[i].len};
        ptrs[k] = &frames[k - 1];
        k++;
    }
    fb_reply_map(b, r, ptrs, k);
    msgpack_sbuffer_destroy(&head);
}

void fb_reply_since(fake_broker *b, const fb_req *r, uint64_t from)
{
    /* The cap'th message after `from`: the reply stops there when more follow it. */
    size_t after = 0;
    uint64_t upto = 0;
    for (size_t i = 0; i < b->nhist; i++)
        if (b->hist[i].seq > from && ++after == b->since_cap)
            upto = b->hist[i].seq;
    bool more = b->since_cap && after > b->since_cap;
    reply_since(b, r, from, b->since_cap ? b->since_cap : SIZE_MAX, more, upto);
}

void fb_reply_since_more(fake_broker *b, const fb_req *r, uint64_t from, size_t n, uint64_t upto)
{
    reply_since(b, r, from, n, true, upto);
}

static void reply_one(fake_broker *b, const fb_req *r, const char *k1, const char *v1,
                      const char *k2, const char *v2)
{
    msgpack_sbuffer body;
    msgpack_sbuffer_init(&body);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &body, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, k2 ? 2 : 1);
    if (v1)
        sb_mp_pack_kv_cstr(&pk, k1, v1);
    else
        sb_mp_pack_kv_bool(&pk, k1, true);
    if (k2)
        sb_mp_pack_kv_cstr(&pk, k2, v2);
    const msgpack_sbuffer *frames[1] = {&body};
    fb_reply_map(b, r, frames, 1);
    msgpack_sbuffer_destroy(&body);
}

void fb_reply_error(fake_broker *b, const fb_req *r, const char *code)
{
    reply_one(b, r, "error", code, "message", "refused by the fake broker");
}

void fb_reply_ok(fake_broker *b, const fb_req *r)
{
    reply_one(b, r, "ok", NULL, NULL, NULL);
}
