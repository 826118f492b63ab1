/*
 * svc.c - DEALER requests with ids, Lazy Pirate reopen, request packing (see svc.h).
 */
#include "svc.h"

#include "msg.h"
#include "sb_mp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

uint64_t sb_svc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int connect_socket(sb_svc *s)
{
    int linger = 0;
    s->sock = zmq_socket(s->ctx, ZMQ_DEALER);
    if (!s->sock)
        return SB_ERR_ZMQ;
    if (zmq_setsockopt(s->sock, ZMQ_LINGER, &linger, sizeof(linger)) != 0 ||
        sb_curve_apply(s->curve, s->sock) != SB_OK || zmq_connect(s->sock, s->endpoint) != 0) {
        int rc = errno == EINVAL || errno == EPROTONOSUPPORT ? SB_ERR_INVAL : SB_ERR_ZMQ;
        zmq_close(s->sock);
        s->sock = NULL;
        return rc;
    }
    return SB_OK;
}

int sb_svc_open(sb_svc *s, void *ctx, const char *endpoint, const sb_curve *curve)
{
    memset(s, 0, sizeof(*s));
    s->ctx = ctx;
    s->curve = curve;
    s->endpoint = strdup(endpoint);
    if (!s->endpoint)
        return SB_ERR_NOMEM;
    /* Ids start at a random point so a restarted client does not take an old reply. */
    s->next_id = (uint32_t)sb_svc_now_ms() * 2654435761u;
    int rc = connect_socket(s);
    if (rc != SB_OK)
        sb_svc_close(s);
    return rc;
}

int sb_svc_reopen(sb_svc *s)
{
    if (s->sock)
        zmq_close(s->sock);
    s->sock = NULL;
    return connect_socket(s);
}

void sb_svc_close(sb_svc *s)
{
    if (s->sock)
        zmq_close(s->sock);
    free(s->endpoint);
    memset(s, 0, sizeof(*s));
}

int sb_svc_send(sb_svc *s, const msgpack_sbuffer *body, uint32_t *id)
{
    if (!s->sock)
        return SB_ERR_STATE;
    uint32_t n = ++s->next_id;
    unsigned char idb[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16),
                            (unsigned char)(n >> 8), (unsigned char)n};
    /* DONTWAIT: a DEALER with no connection yet would block; the caller's retry covers it. */
    if (zmq_send(s->sock, idb, sizeof(idb), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return errno == EAGAIN ? SB_ERR_BUSY : SB_ERR_ZMQ;
    if (zmq_send(s->sock, "", 0, ZMQ_SNDMORE) < 0 ||
        zmq_send(s->sock, body->data, body->size, 0) < 0)
        return SB_ERR_ZMQ;
    *id = n;
    return SB_OK;
}

void sb_svc_reply_clear(sb_svc_reply *r)
{
    for (size_t i = 0; i < r->n; i++)
        zmq_msg_close(&r->frames[i]);
    free(r->frames);
    memset(r, 0, sizeof(*r));
}

/* Append one received frame; *more tells whether others follow. */
static int recv_frame(sb_svc *s, sb_svc_reply *r, int flags, int *more)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 8;
        zmq_msg_t *f = realloc(r->frames, cap * sizeof(*f));
        if (!f)
            return SB_ERR_NOMEM;
        r->frames = f;
        r->cap = cap;
    }
    zmq_msg_t *m = &r->frames[r->n];
    zmq_msg_init(m);
    if (zmq_msg_recv(m, s->sock, flags) < 0) {
        zmq_msg_close(m);
        return errno == EAGAIN ? 0 : SB_ERR_ZMQ;
    }
    r->n++;
    *more = zmq_msg_more(m);
    return 1;
}

int sb_svc_recv(sb_svc *s, sb_svc_reply *r)
{
    memset(r, 0, sizeof(*r));
    if (!s->sock)
        return 0;
    int more = 0;
    int rc = recv_frame(s, r, ZMQ_DONTWAIT, &more);
    /* The rest of a multipart message is already here: ZeroMQ delivers it whole. */
    while (rc == 1 && more)
        rc = recv_frame(s, r, 0, &more);
    if (rc <= 0) {
        sb_svc_reply_clear(r);
        return rc;
    }
    if (r->n < 3 || zmq_msg_size(&r->frames[0]) != 4 || zmq_msg_size(&r->frames[1]) != 0) {
        sb_svc_reply_clear(r);
        return SB_ERR_INVAL;
    }
    const unsigned char *p = zmq_msg_data(&r->frames[0]);
    r->id = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    /* Drop the envelope so frames[0] is the reply's first frame. */
    zmq_msg_close(&r->frames[0]);
    zmq_msg_close(&r->frames[1]);
    memmove(r->frames, r->frames + 2, (r->n - 2) * sizeof(*r->frames));
    r->n -= 2;
    return 1;
}

static void packer(msgpack_sbuffer *b, msgpack_packer *pk)
{
    msgpack_sbuffer_clear(b);
    msgpack_packer_init(pk, b, msgpack_sbuffer_write);
}

int sb_svc_pack_snapshot(msgpack_sbuffer *b, const char *const *tables, size_t ntables)
{
    msgpack_packer pk;
    packer(b, &pk);
    int rc = msgpack_pack_map(&pk, ntables ? 2 : 1) | sb_mp_pack_kv_cstr(&pk, "op", "snapshot");
    if (ntables) {
        rc |= sb_mp_pack_cstr(&pk, "tables") | msgpack_pack_array(&pk, ntables);
        for (size_t i = 0; i < ntables; i++)
            rc |= sb_mp_pack_cstr(&pk, tables[i]);
    }
    return rc ? SB_ERR_NOMEM : SB_OK;
}

int sb_svc_pack_since(msgpack_sbuffer *b, const char *epoch, uint64_t seq)
{
    msgpack_packer pk;
    packer(b, &pk);
    int rc = msgpack_pack_map(&pk, 3) | sb_mp_pack_kv_cstr(&pk, "op", "since") |
             sb_mp_pack_kv_cstr(&pk, "epoch", epoch) | sb_mp_pack_kv_uint(&pk, "seq", seq);
    return rc ? SB_ERR_NOMEM : SB_OK;
}

int sb_svc_pack_presence(msgpack_sbuffer *b, const char *client, const char *table,
                         const char *const *key, uint32_t nkey, const char *state, uint32_t ttl_ms)
{
    msgpack_packer pk;
    packer(b, &pk);
    sb_key k = {key, nkey};
    int rc = msgpack_pack_map(&pk, 6) | sb_mp_pack_kv_cstr(&pk, "op", "presence") |
             sb_mp_pack_kv_cstr(&pk, "client", client) | sb_mp_pack_kv_cstr(&pk, "table", table) |
             sb_mp_pack_cstr(&pk, "key") | sb_mp_pack_key(&pk, &k) |
             sb_mp_pack_kv_cstr(&pk, "state", state) | sb_mp_pack_kv_uint(&pk, "ttl_ms", ttl_ms);
    return rc ? SB_ERR_NOMEM : SB_OK;
}

int sb_svc_snapshot_reply(const sb_svc_reply *r, msgpack_sbuffer *rowbuf,
                          int (*fn)(const sb_client_row *row, void *ud), void *ud, char *epoch,
                          size_t epoch_size, uint64_t *seq, char *err, size_t errlen)
{
    sb_reply h;
    int rc = sb_reply_parse(zmq_msg_data(&r->frames[0]), zmq_msg_size(&r->frames[0]), &h);
    if (rc != SB_OK) {
        snprintf(err, errlen, "malformed snapshot reply");
        return rc;
    }
    const char *ep;
    size_t eplen;
    if (h.error) {
        snprintf(err, errlen, "broker refused the snapshot: %s: %s", h.error, h.message);
        rc = sb_reply_error_code(h.error);
    } else if (sb_mp_get_str(sb_mp_map_get(h.map, "epoch"), &ep, &eplen) != SB_OK ||
               eplen >= epoch_size || sb_mp_get_uint(sb_mp_map_get(h.map, "seq"), seq) != SB_OK) {
        snprintf(err, errlen, "malformed snapshot reply header");
        rc = SB_ERR_INVAL;
    } else {
        memcpy(epoch, ep, eplen);
        epoch[eplen] = '\0';
    }
    sb_reply_release(&h);
    for (size_t i = 1; rc == SB_OK && i < r->n; i++) {
        rc = sb_msg_snapshot_rows(zmq_msg_data(&r->frames[i]), zmq_msg_size(&r->frames[i]), rowbuf,
                                  fn, ud);
        if (rc < 0)
            snprintf(err, errlen, "malformed snapshot row frame %zu", i);
    }
    return rc;
}
