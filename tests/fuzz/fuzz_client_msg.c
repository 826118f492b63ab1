/*
 * fuzz_client_msg.c - libFuzzer target for what a client does with PUB bodies (untrusted:
 * anyone who can publish on the endpoint, or a broken proxy): sb_msg_parse (common/sb_proto.c
 * decodes), then what sync.c does with each type (events into the cache, heartbeat tseq lookups,
 * presence editors read), and the cached rows rendered as sync-snapshot does. The input is up to 64
 * bodies separated by SB_FUZZ_SEP, all into one cache. Invariants: no sanitizer report, a
 * decoded message's strings and key parts are NUL-terminated and its row is one msgpack
 * map, and a stored event reads back from the cache.
 */
#include "cache.h"
#include "fuzz.h"
#include "msg.h"
#include "sb_mp.h"

/* A decoded string is a NUL-terminated copy of part of the body (strlen: ASan sees a
 * missing NUL). */
static void check_str(const char *s, size_t body_len)
{
    if (s && strlen(s) > body_len)
        sb_fuzz_fail("a decoded string is longer than the message");
}

static int render(const sb_client_row *row, void *ud)
{
    (void)ud;
    char *json = NULL;
    if (sb_client_row_json(row, &json) != SB_OK)
        sb_fuzz_fail("a cached row does not render");
    free(json);
    return 0;
}

static void check_event(sb_cache *cache, const sb_msg *m)
{
    const sb_client_event *ev = &m->ev;
    check_str(ev->epoch, ev->body_len);
    check_str(ev->table, ev->body_len);
    check_str(ev->origin, ev->body_len);
    for (uint32_t i = 0; i < ev->nkey; i++)
        check_str(ev->key[i], ev->body_len);
    if (ev->row && sb_mp_check(ev->row, ev->row_len, NULL) != SB_OK)
        sb_fuzz_fail("an event's row is not one msgpack object");
    if (ev->op == SB_OP_TRUNCATE) {
        sb_cache_drop_table(cache, ev->table);
        return;
    }
    int rc = sb_cache_put(cache, ev->table, ev->key, ev->nkey, ev->version, ev->row, ev->row_len);
    sb_client_row got;
    if (rc == 1 && ev->row &&
        (sb_cache_get(cache, ev->table, ev->key, ev->nkey, &got) != SB_OK ||
         got.version != ev->version || got.row_len != ev->row_len ||
         memcmp(got.row, ev->row, ev->row_len) != 0))
        sb_fuzz_fail("a stored event does not read back");
}

static void check_presence(const sb_msg *m, size_t len)
{
    check_str(m->table, len);
    for (uint32_t i = 0; i < m->nkey; i++)
        check_str(m->key[i], len);
    for (size_t i = 0; i < m->neditors; i++) {
        check_str(m->editors[i].client, len);
        check_str(m->editors[i].state, len);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sb_cache *cache;
    if (sb_cache_new(true, &cache) != SB_OK)
        sb_fuzz_fail("out of memory");
    msgpack_sbuffer rowbuf;
    msgpack_sbuffer_init(&rowbuf);
    const uint8_t *at = data, *body;
    size_t len;
    for (int i = 0; i < 64 && sb_fuzz_next_frame(&at, data + size, &body, &len); i++) {
        sb_msg m;
        if (sb_msg_parse(body, len, &rowbuf, &m) != SB_OK)
            continue;
        check_str(m.epoch, len);
        if (m.type == SB_PROTO_EVENT)
            check_event(cache, &m);
        else if (m.type == SB_PROTO_PRESENCE)
            check_presence(&m, len);
        else
            (void)sb_msg_hb_tseq(&m, "public.bookings"); /* what each heartbeat costs */
        sb_msg_release(&m);
    }
    sb_cache_foreach(cache, NULL, render, NULL);
    sb_cache_free(cache);
    msgpack_sbuffer_destroy(&rowbuf);
    return 0;
}
