/*
 * fuzz_client_reply.c - libFuzzer target for the client's service reply decoders, the
 * frames a DEALER receives (a broker, or whatever answers on its endpoint): a snapshot
 * reply through sb_svc_snapshot_reply into a fresh cache, as sync.c and
 * sb_client_fetch_snapshot do, or a `since` reply (header by sb_reply_parse, replayed
 * messages by sb_msg_parse), as sync.c's since_reply does. The first byte picks which; the
 * rest is up to 64 frames separated by SB_FUZZ_SEP. Invariants: no sanitizer report, an error
 * message on every failure, an epoch that fits its buffer, every stored row one msgpack
 * object.
 */
#include "cache.h"
#include "fuzz.h"
#include "msg.h"
#include "sb_mp.h"
#include "svc.h"

#include <zmq.h>

static int put_row(const sb_client_row *r, void *ud)
{
    if (sb_mp_check(r->row, r->row_len, NULL) != SB_OK)
        sb_fuzz_fail("a snapshot row is not one msgpack object");
    int rc = sb_cache_put(ud, r->table, r->key, r->nkey, r->version, r->row, r->row_len);
    return rc < 0 ? rc : 0;
}

static void snapshot_reply(const sb_svc_reply *r, msgpack_sbuffer *rowbuf)
{
    sb_cache *cache;
    if (sb_cache_new(true, &cache) != SB_OK)
        sb_fuzz_fail("out of memory");
    char epoch[16], err[256] = "";
    uint64_t seq;
    int rc = sb_svc_snapshot_reply(r, rowbuf, put_row, cache, epoch, sizeof epoch, &seq, err,
                                   sizeof err);
    if (rc != SB_OK && err[0] == '\0')
        sb_fuzz_fail("a failed snapshot reply without a message");
    if (rc == SB_OK && strlen(epoch) >= sizeof epoch)
        sb_fuzz_fail("the epoch overran its buffer");
    sb_cache_free(cache);
}

static void since_reply(const sb_svc_reply *r, msgpack_sbuffer *rowbuf)
{
    sb_reply h;
    uint64_t last;
    if (sb_reply_parse(zmq_msg_data(&r->frames[0]), zmq_msg_size(&r->frames[0]), &h) != SB_OK)
        return;
    if (h.error && sb_reply_error_code(h.error) >= 0)
        sb_fuzz_fail("a broker error code reads as success");
    bool ok = !h.error && sb_mp_get_uint(sb_mp_map_get(h.map, "seq"), &last) == SB_OK;
    sb_reply_release(&h);
    for (size_t i = 1; ok && i < r->n; i++) {
        sb_msg m;
        ok = sb_msg_parse(zmq_msg_data(&r->frames[i]), zmq_msg_size(&r->frames[i]), rowbuf, &m) ==
             SB_OK;
        if (ok)
            sb_msg_release(&m);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    sb_svc_reply r = {.cap = 64};
    r.frames = malloc(r.cap * sizeof *r.frames);
    if (!r.frames)
        sb_fuzz_fail("out of memory");
    const uint8_t *at = data + 1, *frame;
    size_t len;
    while (r.n < r.cap && sb_fuzz_next_frame(&at, data + size, &frame, &len)) {
        if (zmq_msg_init_size(&r.frames[r.n], len) != 0)
            sb_fuzz_fail("out of memory");
        memcpy(zmq_msg_data(&r.frames[r.n]), frame, len);
        r.n++;
    }
    msgpack_sbuffer rowbuf;
    msgpack_sbuffer_init(&rowbuf);
    if (data[0] & 1)
        since_reply(&r, &rowbuf);
    else
        snapshot_reply(&r, &rowbuf);
    msgpack_sbuffer_destroy(&rowbuf);
    sb_svc_reply_clear(&r);
    return 0;
}
