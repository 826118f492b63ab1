/* sb_proto.c - see sb_proto.h. */
#include "sb_proto.h"

#include "sb_mp.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static const struct {
    const char *name;
    sb_op op;
} op_names[] = {{"insert", SB_OP_INSERT},
                {"update", SB_OP_UPDATE},
                {"delete", SB_OP_DELETE},
                {"truncate", SB_OP_TRUNCATE}};

#define NOPS (sizeof op_names / sizeof op_names[0])

const char *sb_proto_op_name(sb_op op)
{
    for (size_t i = 0; i < NOPS; i++)
        if (op_names[i].op == op)
            return op_names[i].name;
    return NULL;
}

/* ---- encoding -------------------------------------------------------------------------- */

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

int sb_proto_encode_event(msgpack_sbuffer *topic, msgpack_sbuffer *body, const sb_proto_event *ev)
{
    if (write_topic(topic, "", ev->table, &ev->key))
        return SB_ERR_NOMEM;
    msgpack_sbuffer_clear(body);
    msgpack_packer pk;
    msgpack_packer_init(&pk, body, msgpack_sbuffer_write);
    const char *op = sb_proto_op_name(ev->op);
    int rc = msgpack_pack_map(&pk, 11);
    rc |= sb_mp_pack_kv_uint(&pk, SB_PF_SEQ, ev->seq);
    rc |= sb_mp_pack_kv_uint(&pk, SB_PF_TSEQ, ev->tseq);
    rc |= sb_mp_pack_kv_cstr(&pk, SB_PF_EPOCH, ev->epoch);
    rc |= sb_mp_pack_kv_cstr(&pk, SB_PF_TABLE, ev->table);
    rc |= sb_mp_pack_cstr(&pk, SB_PF_KEY) | sb_mp_pack_key(&pk, &ev->key);
    rc |= sb_mp_pack_kv_cstr(&pk, SB_PF_OP, op ? op : "");
    rc |= sb_mp_pack_kv_uint(&pk, SB_PF_VERSION, ev->version);
    rc |= sb_mp_pack_kv_cstr(&pk, SB_PF_ORIGIN, ev->origin);
    rc |= sb_mp_pack_kv_int(&pk, SB_PF_TS, ev->ts_ms);
    /* The source packed the row once; it is copied in verbatim. */
    bool has_row = ev->op != SB_OP_DELETE && ev->op != SB_OP_TRUNCATE;
    rc |= sb_mp_pack_cstr(&pk, SB_PF_ROW) |
          sb_mp_pack_raw(&pk, has_row ? ev->row : NULL, ev->row_len);
    rc |= sb_mp_pack_kv_uint(&pk, SB_PF_N, ev->n);
    return rc ? SB_ERR_NOMEM : SB_OK;
}

int sb_proto_encode_heartbeat(msgpack_sbuffer *topic, msgpack_sbuffer *body, const char *epoch,
                              uint64_t seq, const char *const *tables, const uint64_t *tseq,
                              size_t ntables, int64_t ts_ms, uint64_t hb_ms)
{
    msgpack_sbuffer_clear(topic);
    msgpack_sbuffer_clear(body);
    msgpack_packer pk;
    msgpack_packer_init(&pk, body, msgpack_sbuffer_write);
    int rc = put(topic, SB_PROTO_TOPIC_HB);
    rc |= msgpack_pack_map(&pk, 6);
    rc |= sb_mp_pack_kv_cstr(&pk, SB_PF_EPOCH, epoch);
    rc |= sb_mp_pack_kv_uint(&pk, SB_PF_SEQ, seq);
    rc |= sb_mp_pack_cstr(&pk, SB_PF_TSEQ) | msgpack_pack_map(&pk, ntables);
    for (size_t i = 0; i < ntables; i++)
        rc |= sb_mp_pack_kv_uint(&pk, tables[i], tseq[i]);
    rc |= sb_mp_pack_kv_int(&pk, SB_PF_TS, ts_ms);
    rc |= sb_mp_pack_kv_uint(&pk, SB_PF_HB_MS, hb_ms);
    rc |= sb_mp_pack_kv_uint(&pk, SB_PF_PROTO, SB_PROTO_VERSION);
    return rc ? SB_ERR_NOMEM : SB_OK;
}

int sb_proto_pack_editors(msgpack_packer *pk, const sb_proto_editor *editors, size_t n)
{
    int rc = msgpack_pack_array(pk, n);
    for (size_t i = 0; i < n; i++) {
        rc |= msgpack_pack_map(pk, 3);
        rc |= sb_mp_pack_kv_cstr(pk, SB_PF_CLIENT, editors[i].client);
        rc |= sb_mp_pack_kv_cstr(pk, SB_PF_STATE, editors[i].state);
        rc |= sb_mp_pack_kv_int(pk, SB_PF_SINCE, editors[i].since_ms);
    }
    return rc ? -1 : 0;
}

int sb_proto_encode_presence(msgpack_sbuffer *topic, msgpack_sbuffer *body, const char *table,
                             const sb_key *key, const sb_proto_editor *editors, size_t n,
                             const char *epoch, uint64_t seq)
{
    if (write_topic(topic, SB_PROTO_TOPIC_PRESENCE, table, key))
        return SB_ERR_NOMEM;
    msgpack_sbuffer_clear(body);
    msgpack_packer pk;
    msgpack_packer_init(&pk, body, msgpack_sbuffer_write);
    int rc = msgpack_pack_map(&pk, 5);
    rc |= sb_mp_pack_kv_uint(&pk, SB_PF_SEQ, seq);
    rc |= sb_mp_pack_kv_cstr(&pk, SB_PF_EPOCH, epoch);
    rc |= sb_mp_pack_kv_cstr(&pk, SB_PF_TABLE, table);
    rc |= sb_mp_pack_cstr(&pk, SB_PF_KEY) | sb_mp_pack_key(&pk, key);
    rc |= sb_mp_pack_cstr(&pk, SB_PF_EDITORS) | sb_proto_pack_editors(&pk, editors, n);
    return rc ? SB_ERR_NOMEM : SB_OK;
}

/* Pack the tseq map v keeping only the tables keep() accepts. */
static int pack_tseq(msgpack_packer *pk, const msgpack_object *v,
                     bool (*keep)(void *ud, const char *name, size_t len), void *ud)
{
    uint32_t n = 0;
    for (int pass = 0; pass < 2; pass++) {
        int rc = pass ? msgpack_pack_map(pk, n) : 0;
        for (uint32_t i = 0; rc == 0 && i < v->via.map.size; i++) {
            const msgpack_object_kv *kv = &v->via.map.ptr[i];
            const char *name;
            size_t len;
            if (sb_mp_get_str(&kv->key, &name, &len) < 0 || !keep(ud, name, len))
                continue;
            if (pass == 0)
                n++;
            else
                rc = msgpack_pack_object(pk, kv->key) | msgpack_pack_object(pk, kv->val);
        }
        if (rc < 0)
            return SB_ERR_NOMEM;
    }
    return SB_OK;
}

int sb_proto_heartbeat_filter(const void *body, size_t len,
                              bool (*keep)(void *ud, const char *name, size_t len), void *ud,
                              msgpack_sbuffer *out)
{
    msgpack_unpacked up;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    msgpack_unpacked_init(&up);
    int rc = sb_mp_unpack(body, len, NULL, &up);
    const msgpack_object *map = &up.data;
    if (rc == SB_OK && map->type != MSGPACK_OBJECT_MAP)
        rc = SB_ERR_INVAL;
    if (rc == SB_OK && msgpack_pack_map(&pk, map->via.map.size) < 0)
        rc = SB_ERR_NOMEM;
    for (uint32_t i = 0; rc == SB_OK && i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[i];
        if (msgpack_pack_object(&pk, kv->key) < 0)
            rc = SB_ERR_NOMEM;
        else if (sb_mp_str_eq(&kv->key, SB_PF_TSEQ) && kv->val.type == MSGPACK_OBJECT_MAP)
            rc = pack_tseq(&pk, &kv->val, keep, ud);
        else if (msgpack_pack_object(&pk, kv->val) < 0)
            rc = SB_ERR_NOMEM;
    }
    msgpack_unpacked_destroy(&up);
    return rc;
}

size_t sb_proto_hb_topic(const char *name, char *buf, size_t cap)
{
    int n = name ? snprintf(buf, cap, SB_PROTO_TOPIC_HB "/%s/", name)
                 : snprintf(buf, cap, SB_PROTO_TOPIC_HB);
    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

int64_t sb_proto_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- decoding -------------------------------------------------------------------------- */

static int get_uint_field(const msgpack_object *map, const char *key, uint64_t *out)
{
    return sb_mp_get_uint(sb_mp_map_get(map, key), out);
}

/* An optional uint or int: untouched when absent. */
static int opt_uint_field(const msgpack_object *map, const char *key, uint64_t *out)
{
    const msgpack_object *o = sb_mp_map_get(map, key);
    return o ? sb_mp_get_uint(o, out) : SB_OK;
}

static int opt_int_field(const msgpack_object *map, const char *key, int64_t *out)
{
    const msgpack_object *o = sb_mp_map_get(map, key);
    return o ? sb_mp_get_int(o, out) : SB_OK;
}

int sb_proto_decode_row(const msgpack_object *o, msgpack_sbuffer *rowbuf, const void **row,
                        size_t *len)
{
    *row = NULL;
    *len = 0;
    if (!o || o->type == MSGPACK_OBJECT_NIL)
        return SB_OK;
    if (o->type != MSGPACK_OBJECT_MAP)
        return SB_ERR_INVAL;
    msgpack_sbuffer_clear(rowbuf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, rowbuf, msgpack_sbuffer_write);
    if (msgpack_pack_object(&pk, *o) != 0)
        return SB_ERR_NOMEM;
    *row = rowbuf->data;
    *len = rowbuf->size;
    return SB_OK;
}

static int decode_op(const msgpack_object *o, sb_op *op)
{
    for (size_t i = 0; o && i < NOPS; i++) {
        if (sb_mp_str_eq(o, op_names[i].name)) {
            *op = op_names[i].op;
            return SB_OK;
        }
    }
    return SB_ERR_INVAL;
}

static int decode_event(const msgpack_object *map, msgpack_zone *z, msgpack_sbuffer *rowbuf,
                        sb_proto_event *ev)
{
    uint64_t n = 1; /* brokers before `n` was added published one change per event */
    int rc = rowbuf ? SB_OK : SB_ERR_INVAL;
    rc = rc ? rc : get_uint_field(map, SB_PF_SEQ, &ev->seq);
    rc = rc ? rc : get_uint_field(map, SB_PF_TSEQ, &ev->tseq);
    rc = rc ? rc : get_uint_field(map, SB_PF_VERSION, &ev->version);
    rc = rc ? rc : sb_mp_zone_str(z, sb_mp_map_get(map, SB_PF_EPOCH), &ev->epoch);
    rc = rc ? rc : sb_mp_zone_str(z, sb_mp_map_get(map, SB_PF_TABLE), &ev->table);
    rc = rc ? rc : sb_mp_zone_key(z, sb_mp_map_get(map, SB_PF_KEY), &ev->key);
    rc = rc ? rc : decode_op(sb_mp_map_get(map, SB_PF_OP), &ev->op);
    rc = rc ? rc : sb_mp_zone_opt_str(z, sb_mp_map_get(map, SB_PF_ORIGIN), &ev->origin);
    rc = rc ? rc : sb_mp_get_int(sb_mp_map_get(map, SB_PF_TS), &ev->ts_ms);
    rc = rc ? rc : opt_uint_field(map, SB_PF_N, &n);
    rc = rc ? rc
            : sb_proto_decode_row(sb_mp_map_get(map, SB_PF_ROW), rowbuf, &ev->row, &ev->row_len);
    if (rc != SB_OK)
        return rc;
    /* A truncate has no key; everything else has one and a row unless it is a delete. */
    if ((ev->op == SB_OP_TRUNCATE) != (ev->key.nparts == 0) ||
        ((ev->op == SB_OP_INSERT || ev->op == SB_OP_UPDATE) && !ev->row))
        return SB_ERR_INVAL;
    if (ev->op == SB_OP_DELETE || ev->op == SB_OP_TRUNCATE)
        ev->row = NULL, ev->row_len = 0;
    ev->n = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
    return SB_OK;
}

static int decode_presence(const msgpack_object *map, msgpack_zone *z, sb_proto_presence *p)
{
    const msgpack_object *items;
    uint32_t n;
    int rc = get_uint_field(map, SB_PF_SEQ, &p->seq);
    rc = rc ? rc : sb_mp_zone_str(z, sb_mp_map_get(map, SB_PF_EPOCH), &p->epoch);
    rc = rc ? rc : sb_mp_zone_str(z, sb_mp_map_get(map, SB_PF_TABLE), &p->table);
    rc = rc ? rc : sb_mp_zone_key(z, sb_mp_map_get(map, SB_PF_KEY), &p->key);
    rc = rc ? rc : sb_mp_get_array(sb_mp_map_get(map, SB_PF_EDITORS), &items, &n);
    if (rc != SB_OK)
        return rc;
    if (p->key.nparts == 0)
        return SB_ERR_INVAL;
    sb_proto_editor *ed = msgpack_zone_malloc(z, (n ? n : 1) * sizeof *ed);
    if (!ed)
        return SB_ERR_NOMEM;
    for (uint32_t i = 0; i < n; i++) {
        rc = sb_mp_zone_str(z, sb_mp_map_get(&items[i], SB_PF_CLIENT), &ed[i].client);
        rc = rc ? rc : sb_mp_zone_str(z, sb_mp_map_get(&items[i], SB_PF_STATE), &ed[i].state);
        rc = rc ? rc : sb_mp_get_int(sb_mp_map_get(&items[i], SB_PF_SINCE), &ed[i].since_ms);
        if (rc != SB_OK)
            return rc;
    }
    p->editors = ed;
    p->n = n;
    return SB_OK;
}

static int decode_heartbeat(const msgpack_object *map, msgpack_zone *z, sb_proto_heartbeat *hb)
{
    hb->tseq = sb_mp_map_get(map, SB_PF_TSEQ);
    int rc = get_uint_field(map, SB_PF_SEQ, &hb->seq);
    rc = rc ? rc : sb_mp_zone_str(z, sb_mp_map_get(map, SB_PF_EPOCH), &hb->epoch);
    rc = rc ? rc : opt_int_field(map, SB_PF_TS, &hb->ts_ms);
    rc = rc ? rc : opt_uint_field(map, SB_PF_HB_MS, &hb->hb_ms);
    rc = rc ? rc : opt_uint_field(map, SB_PF_PROTO, &hb->proto);
    if (rc == SB_OK && (!hb->tseq || hb->tseq->type != MSGPACK_OBJECT_MAP))
        rc = SB_ERR_INVAL;
    return rc;
}

int sb_proto_decode(const void *body, size_t len, msgpack_sbuffer *rowbuf, sb_proto_msg *m)
{
    memset(m, 0, sizeof(*m));
    msgpack_unpacked_init(&m->up);
    int rc = sb_mp_unpack(body, len, NULL, &m->up);
    const msgpack_object *map = &m->up.data;
    if (rc == SB_OK && map->type != MSGPACK_OBJECT_MAP)
        rc = SB_ERR_INVAL;
    if (rc == SB_OK && sb_mp_map_get(map, SB_PF_OP)) {
        m->kind = SB_PROTO_EVENT;
        rc = decode_event(map, m->up.zone, rowbuf, &m->ev);
    } else if (rc == SB_OK && sb_mp_map_get(map, SB_PF_EDITORS)) {
        m->kind = SB_PROTO_PRESENCE;
        rc = decode_presence(map, m->up.zone, &m->presence);
    } else if (rc == SB_OK) {
        m->kind = SB_PROTO_HEARTBEAT;
        rc = decode_heartbeat(map, m->up.zone, &m->hb);
    }
    if (rc != SB_OK)
        sb_proto_release(m);
    return rc;
}

void sb_proto_release(sb_proto_msg *m)
{
    msgpack_unpacked_destroy(&m->up);
    memset(m, 0, sizeof(*m));
}

int sb_proto_hb_tseq(const sb_proto_heartbeat *hb, const char *table, uint64_t *tseq)
{
    const msgpack_object *o = sb_mp_map_get(hb->tseq, table);
    return o ? sb_mp_get_uint(o, tseq) : SB_ERR_NOTFOUND;
}
