/* event.c - see event.h. */
#include "event.h"

#include <string.h>
#include <time.h>

static const char *const op_names[] = {"", "insert", "update", "delete", "truncate"};

static int pack_str(msgpack_packer *pk, const char *s)
{
    size_t len = strlen(s);
    return msgpack_pack_str(pk, len) || msgpack_pack_str_body(pk, s, len);
}

static int pack_opt_str(msgpack_packer *pk, const char *s)
{
    return s ? pack_str(pk, s) : msgpack_pack_nil(pk);
}

/* A key is a str for one part, an array for several, nil for none. */
static int pack_key(msgpack_packer *pk, const sb_key *key)
{
    if (key->nparts == 0)
        return msgpack_pack_nil(pk);
    if (key->nparts == 1)
        return pack_str(pk, key->parts[0]);
    int rc = msgpack_pack_array(pk, key->nparts);
    for (uint32_t i = 0; i < key->nparts && !rc; i++)
        rc = pack_str(pk, key->parts[i]);
    return rc;
}

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
    rc |= pack_str(&pk, "seq") | msgpack_pack_uint64(&pk, seq);
    rc |= pack_str(&pk, "tseq") | msgpack_pack_uint64(&pk, tseq);
    rc |= pack_str(&pk, "epoch") | pack_str(&pk, epoch);
    rc |= pack_str(&pk, "table") | pack_str(&pk, table);
    rc |= pack_str(&pk, "key") | pack_key(&pk, &ev->key);
    rc |= pack_str(&pk, "op") | pack_str(&pk, op_names[ev->op]);
    rc |= pack_str(&pk, "version") | msgpack_pack_uint64(&pk, ev->version);
    rc |= pack_str(&pk, "origin") | pack_opt_str(&pk, ev->origin);
    rc |= pack_str(&pk, "ts") | msgpack_pack_int64(&pk, ev->ts_ms);
    rc |= pack_str(&pk, "row");
    /* The source packed the row once; it is copied in verbatim. */
    if (ev->row && ev->op != SB_OP_DELETE && ev->op != SB_OP_TRUNCATE)
        rc |= msgpack_sbuffer_write(body, ev->row, ev->row_len);
    else
        rc |= msgpack_pack_nil(&pk);
    rc |= pack_str(&pk, "n") | msgpack_pack_uint32(&pk, ev->n);
    return rc ? SB_ERR_NOMEM : SB_OK;
}

int sb_event_encode_heartbeat(msgpack_sbuffer *topic, msgpack_sbuffer *body, const char *epoch,
                              uint64_t seq, const char *const *tables, const uint64_t *tseq,
                              size_t ntables, int64_t ts_ms)
{
    msgpack_sbuffer_clear(topic);
    msgpack_sbuffer_clear(body);
    msgpack_packer pk;
    msgpack_packer_init(&pk, body, msgpack_sbuffer_write);
    int rc = put(topic, "@hb");
    rc |= msgpack_pack_map(&pk, 4);
    rc |= pack_str(&pk, "epoch") | pack_str(&pk, epoch);
    rc |= pack_str(&pk, "seq") | msgpack_pack_uint64(&pk, seq);
    rc |= pack_str(&pk, "tseq") | msgpack_pack_map(&pk, ntables);
    for (size_t i = 0; i < ntables; i++)
        rc |= pack_str(&pk, tables[i]) | msgpack_pack_uint64(&pk, tseq[i]);
    rc |= pack_str(&pk, "ts") | msgpack_pack_int64(&pk, ts_ms);
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
    rc |= pack_str(&pk, "seq") | msgpack_pack_uint64(&pk, seq);
    rc |= pack_str(&pk, "epoch") | pack_str(&pk, epoch);
    rc |= pack_str(&pk, "table") | pack_str(&pk, table);
    rc |= pack_str(&pk, "key") | pack_key(&pk, key);
    rc |= pack_str(&pk, "editors") | msgpack_pack_array(&pk, n);
    for (size_t i = 0; i < n; i++) {
        rc |= msgpack_pack_map(&pk, 3);
        rc |= pack_str(&pk, "client") | pack_str(&pk, editors[i].client);
        rc |= pack_str(&pk, "state") | pack_str(&pk, editors[i].state);
        rc |= pack_str(&pk, "since") | msgpack_pack_int64(&pk, editors[i].since_ms);
    }
    return rc ? SB_ERR_NOMEM : SB_OK;
}

int64_t sb_event_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
