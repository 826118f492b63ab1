/* event.c - see event.h. */
#include "event.h"

#include <sb_mp.h>

#include <string.h>
#include <time.h>

static const char *const op_names[] = {"", "insert", "update", "delete", "truncate"};

/* msgpack_sbuffer_write memcpy's into a NULL buffer for zero-length input (UB). */
static int put(msgpack_sbuffer *buf, const char *s)
{
    size_t len = strlen(s);
    return len ? msgpack_sbuffer_write(buf, s, len) : 0;
}

/* topic = prefix + table + "/" + parts joined with "/" */
static int write_topic(msgpack_sbuffer *topic, const char *prefix, const char *table,
                       const sb_key *key)
{
    msgpack_sbuffer_clear(topic);
    int rc = put(topic, prefix) | put(topic, table) | put(topic, "/");
    for (uint32_t i = 0; i < key->nparts; i++)
        rc |= (i ? put(topic, "/") : 0) | put(topic, key->parts[i]);
    return rc ? SB_ERR_NOMEM : SB_OK;
}

int sb_event_encode_change(msgpack_sbuffer *topic, msgpack_sbuffer *body,
                           const sb_debounce_event *ev, const char *table, const char *epoch,
                           uint64_t seq, uint64_t tseq)
{
    if (write_topic(topic, "", table, &ev->key))
        return SB_ERR_NOMEM;
    msgpack_sbuffer_clear(body);
    msgpack_packer pk;
    msgpack_packer_init(&pk, body, msgpack_sbuffer_write);
    int rc = msgpack_pack_map(&pk, 11);
    rc |= sb_mp_pack_kv_uint(&pk, "seq", seq);
    rc |= sb_mp_pack_kv_uint(&pk, "tseq", tseq);
    rc |= sb_mp_pack_kv_cstr(&pk, "epoch", epoch);
    rc |= sb_mp_pack_kv_cstr(&pk, "table", table);
    rc |= sb_mp_pack_cstr(&pk, "key") | sb_mp_pack_key(&pk, &ev->key);
    rc |= sb_mp_pack_kv_cstr(&pk, "op", op_names[ev->op]);
    rc |= sb_mp_pack_kv_uint(&pk, "version", ev->version);
    rc |= sb_mp_pack_kv_cstr(&pk, "origin", ev->origin);
    rc |= sb_mp_pack_kv_int(&pk, "ts", ev->ts_ms);
    /* The source packed the row once; it is copied in verbatim. */
    bool has_row = ev->op != SB_OP_DELETE && ev->op != SB_OP_TRUNCATE;
    rc |= sb_mp_pack_cstr(&pk, "row") | sb_mp_pack_raw(&pk, has_row ? ev->row : NULL, ev->row_len);
    rc |= sb_mp_pack_kv_uint(&pk, "n", ev->n);
    return rc ? SB_ERR_NOMEM : SB_OK;
}

int sb_event_encode_heartbeat(msgpack_sbuffer *topic, msgpack_sbuffer *body, const char *epoch,
                              uint64_t seq, const char *const *tables, const uint64_t *tseq,
                              size_t ntables, int64_t ts_ms, uint64_t hb_ms)
{
    msgpack_sbuffer_clear(topic);
    msgpack_sbuffer_clear(body);
    msgpack_packer pk;
    msgpack_packer_init(&pk, body, msgpack_sbuffer_write);
    int rc = put(topic, "@hb");
    rc |= msgpack_pack_map(&pk, 6);
    rc |= sb_mp_pack_kv_cstr(&pk, "epoch", epoch);
    rc |= sb_mp_pack_kv_uint(&pk, "seq", seq);
    rc |= sb_mp_pack_cstr(&pk, "tseq") | msgpack_pack_map(&pk, ntables);
    for (size_t i = 0; i < ntables; i++)
        rc |= sb_mp_pack_kv_uint(&pk, tables[i], tseq[i]);
    rc |= sb_mp_pack_kv_int(&pk, "ts", ts_ms);
    rc |= sb_mp_pack_kv_uint(&pk, "hb_ms", hb_ms);
    rc |= sb_mp_pack_kv_uint(&pk, "proto", SB_PROTO_VERSION);
    return rc ? SB_ERR_NOMEM : SB_OK;
}

int sb_event_encode_presence(msgpack_sbuffer *topic, msgpack_sbuffer *body, const char *table,
                             const sb_key *key, const sb_event_editor *editors, size_t n,
                             const char *epoch, uint64_t seq)
{
    if (write_topic(topic, "@presence/", table, key))
        return SB_ERR_NOMEM;
    msgpack_sbuffer_clear(body);
    msgpack_packer pk;
    msgpack_packer_init(&pk, body, msgpack_sbuffer_write);
    int rc = msgpack_pack_map(&pk, 5);
    rc |= sb_mp_pack_kv_uint(&pk, "seq", seq);
    rc |= sb_mp_pack_kv_cstr(&pk, "epoch", epoch);
    rc |= sb_mp_pack_kv_cstr(&pk, "table", table);
    rc |= sb_mp_pack_cstr(&pk, "key") | sb_mp_pack_key(&pk, key);
    rc |= sb_mp_pack_cstr(&pk, "editors") | msgpack_pack_array(&pk, n);
    for (size_t i = 0; i < n; i++) {
        rc |= msgpack_pack_map(&pk, 3);
        rc |= sb_mp_pack_kv_cstr(&pk, "client", editors[i].client);
        rc |= sb_mp_pack_kv_cstr(&pk, "state", editors[i].state);
        rc |= sb_mp_pack_kv_int(&pk, "since", editors[i].since_ms);
    }
    return rc ? SB_ERR_NOMEM : SB_OK;
}

int64_t sb_event_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
