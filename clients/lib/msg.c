/*
 * msg.c - decode broker messages into NUL-terminated, zone-owned views (see msg.h).
 */
#include "msg.h"

#include "sb_mp.h"

#include <string.h>

/* A str as a NUL-terminated copy in the zone; refuses embedded NULs. */
static int zone_str(msgpack_zone *z, const msgpack_object *o, const char **out)
{
    const char *p;
    size_t n;
    if (!o || sb_mp_get_str(o, &p, &n) != SB_OK || (n && memchr(p, 0, n)))
        return SB_ERR_INVAL;
    char *s = msgpack_zone_malloc(z, n + 1);
    if (!s)
        return SB_ERR_NOMEM;
    if (n)
        memcpy(s, p, n);
    s[n] = '\0';
    *out = s;
    return SB_OK;
}

/* str or nil (-> NULL). */
static int zone_opt_str(msgpack_zone *z, const msgpack_object *o, const char **out)
{
    if (!o || o->type == MSGPACK_OBJECT_NIL) {
        *out = NULL;
        return SB_OK;
    }
    return zone_str(z, o, out);
}

/* nil (0 parts), a str (1 part) or an array of strs. */
static int zone_key(msgpack_zone *z, const msgpack_object *o, const char *const **parts,
                    uint32_t *n)
{
    if (!o)
        return SB_ERR_INVAL;
    if (o->type == MSGPACK_OBJECT_NIL) {
        *parts = NULL;
        *n = 0;
        return SB_OK;
    }
    const msgpack_object *items = o;
    uint32_t count = 1;
    if (o->type == MSGPACK_OBJECT_ARRAY && (sb_mp_get_array(o, &items, &count) || !count))
        return SB_ERR_INVAL;
    const char **p = msgpack_zone_malloc(z, count * sizeof(*p));
    if (!p)
        return SB_ERR_NOMEM;
    for (uint32_t i = 0; i < count; i++) {
        int rc = zone_str(z, &items[i], &p[i]);
        if (rc != SB_OK)
            return rc;
    }
    *parts = p;
    *n = count;
    return SB_OK;
}

static int get_int(const msgpack_object *o, int64_t *out)
{
    if (o && o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *out = o->via.i64;
        return SB_OK;
    }
    uint64_t u;
    if (!o || sb_mp_get_uint(o, &u) != SB_OK || u > INT64_MAX)
        return SB_ERR_INVAL;
    *out = (int64_t)u;
    return SB_OK;
}

static int get_uint_field(const msgpack_object *map, const char *key, uint64_t *out)
{
    const msgpack_object *o = sb_mp_map_get(map, key);
    return o ? sb_mp_get_uint(o, out) : SB_ERR_INVAL;
}

/* A row: nil (NULL) or a map, re-packed into rowbuf so the caller gets its bytes. */
static int repack_row(const msgpack_object *o, msgpack_sbuffer *rowbuf, const void **row,
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

static const struct {
    const char *name;
    sb_op op;
} op_names[] = {{"insert", SB_OP_INSERT},
                {"update", SB_OP_UPDATE},
                {"delete", SB_OP_DELETE},
                {"truncate", SB_OP_TRUNCATE}};

static int parse_op(const msgpack_object *o, sb_op *op)
{
    for (size_t i = 0; o && i < sizeof(op_names) / sizeof(op_names[0]); i++) {
        if (sb_mp_str_eq(o, op_names[i].name)) {
            *op = op_names[i].op;
            return SB_OK;
        }
    }
    return SB_ERR_INVAL;
}

const char *sb_client_op_name(sb_op op)
{
    for (size_t i = 0; i < sizeof(op_names) / sizeof(op_names[0]); i++)
        if (op_names[i].op == op)
            return op_names[i].name;
    return "?";
}

static int parse_event(const msgpack_object *map, msgpack_zone *z, msgpack_sbuffer *rowbuf,
                       sb_client_event *ev)
{
    uint64_t n = 1;
    const msgpack_object *n_obj = sb_mp_map_get(map, "n");
    int rc = get_uint_field(map, "seq", &ev->seq);
    rc = rc ? rc : get_uint_field(map, "tseq", &ev->tseq);
    rc = rc ? rc : get_uint_field(map, "version", &ev->version);
    rc = rc ? rc : zone_str(z, sb_mp_map_get(map, "epoch"), &ev->epoch);
    rc = rc ? rc : zone_str(z, sb_mp_map_get(map, "table"), &ev->table);
    rc = rc ? rc : zone_key(z, sb_mp_map_get(map, "key"), &ev->key, &ev->nkey);
    rc = rc ? rc : parse_op(sb_mp_map_get(map, "op"), &ev->op);
    rc = rc ? rc : zone_opt_str(z, sb_mp_map_get(map, "origin"), &ev->origin);
    rc = rc ? rc : get_int(sb_mp_map_get(map, "ts"), &ev->ts_ms);
    rc = rc ? rc : (n_obj ? sb_mp_get_uint(n_obj, &n) : SB_OK);
    rc = rc ? rc : repack_row(sb_mp_map_get(map, "row"), rowbuf, &ev->row, &ev->row_len);
    if (rc != SB_OK)
        return rc;
    /* A truncate has no key; everything else has one and a row unless it is a delete. */
    if ((ev->op == SB_OP_TRUNCATE) != (ev->nkey == 0) ||
        ((ev->op == SB_OP_INSERT || ev->op == SB_OP_UPDATE) && !ev->row))
        return SB_ERR_INVAL;
    if (ev->op == SB_OP_DELETE || ev->op == SB_OP_TRUNCATE)
        ev->row = NULL, ev->row_len = 0;
    ev->n = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
    return SB_OK;
}

static int parse_presence(const msgpack_object *map, msgpack_zone *z, sb_msg *m)
{
    const msgpack_object *items;
    uint32_t n;
    int rc = get_uint_field(map, "seq", &m->seq);
    rc = rc ? rc : zone_str(z, sb_mp_map_get(map, "epoch"), &m->epoch);
    rc = rc ? rc : zone_str(z, sb_mp_map_get(map, "table"), &m->table);
    rc = rc ? rc : zone_key(z, sb_mp_map_get(map, "key"), &m->key, &m->nkey);
    rc = rc ? rc : sb_mp_get_array(sb_mp_map_get(map, "editors"), &items, &n);
    if (rc != SB_OK)
        return rc;
    if (m->nkey == 0)
        return SB_ERR_INVAL;
    m->editors = msgpack_zone_malloc(z, (n ? n : 1) * sizeof(*m->editors));
    if (!m->editors)
        return SB_ERR_NOMEM;
    for (uint32_t i = 0; i < n; i++) {
        sb_client_editor *e = &m->editors[i];
        rc = zone_str(z, sb_mp_map_get(&items[i], "client"), &e->client);
        rc = rc ? rc : zone_str(z, sb_mp_map_get(&items[i], "state"), &e->state);
        rc = rc ? rc : get_int(sb_mp_map_get(&items[i], "since"), &e->since_ms);
        if (rc != SB_OK)
            return rc;
    }
    m->neditors = n;
    return SB_OK;
}

int sb_msg_parse(const void *body, size_t len, msgpack_sbuffer *rowbuf, sb_msg *m)
{
    memset(m, 0, sizeof(*m));
    msgpack_unpacked_init(&m->up);
    int rc = sb_mp_unpack(body, len, NULL, &m->up);
    const msgpack_object *map = &m->up.data;
    if (rc == SB_OK && map->type != MSGPACK_OBJECT_MAP)
        rc = SB_ERR_INVAL;
    if (rc == SB_OK && sb_mp_map_get(map, "op")) {
        m->type = SB_CMSG_EVENT;
        rc = parse_event(map, m->up.zone, rowbuf, &m->ev);
        m->seq = m->ev.seq;
        m->epoch = m->ev.epoch;
        m->ev.body = body;
        m->ev.body_len = len;
    } else if (rc == SB_OK && sb_mp_map_get(map, "editors")) {
        m->type = SB_CMSG_PRESENCE;
        rc = parse_presence(map, m->up.zone, m);
    } else if (rc == SB_OK) {
        m->type = SB_CMSG_HEARTBEAT;
        m->tseq_map = sb_mp_map_get(map, "tseq");
        uint64_t hb_ms = 0;
        const msgpack_object *hb_obj = sb_mp_map_get(map, "hb_ms");
        rc = get_uint_field(map, "seq", &m->seq);
        rc = rc ? rc : zone_str(m->up.zone, sb_mp_map_get(map, "epoch"), &m->epoch);
        rc = rc ? rc : (hb_obj ? sb_mp_get_uint(hb_obj, &hb_ms) : SB_OK);
        if (rc == SB_OK && (!m->tseq_map || m->tseq_map->type != MSGPACK_OBJECT_MAP))
            rc = SB_ERR_INVAL;
        /* Beyond an hour (the broker's own limit) the period cannot be meant. */
        m->hb_ms = hb_ms <= SB_MSG_MAX_HB_MS ? (uint32_t)hb_ms : 0;
    }
    if (rc != SB_OK)
        sb_msg_release(m);
    return rc;
}

void sb_msg_release(sb_msg *m)
{
    msgpack_unpacked_destroy(&m->up);
    memset(m, 0, sizeof(*m));
}

uint64_t sb_msg_hb_tseq(const sb_msg *m, const char *table)
{
    uint64_t v = 0;
    const msgpack_object *o = sb_mp_map_get(m->tseq_map, table);
    return o && sb_mp_get_uint(o, &v) == SB_OK ? v : 0;
}

int sb_reply_parse(const void *buf, size_t len, sb_reply *r)
{
    memset(r, 0, sizeof(*r));
    msgpack_unpacked_init(&r->up);
    int rc = sb_mp_unpack(buf, len, NULL, &r->up);
    if (rc == SB_OK && r->up.data.type != MSGPACK_OBJECT_MAP)
        rc = SB_ERR_INVAL;
    const msgpack_object *err = rc == SB_OK ? sb_mp_map_get(&r->up.data, "error") : NULL;
    if (err) {
        rc = zone_str(r->up.zone, err, &r->error);
        rc = rc ? rc : zone_opt_str(r->up.zone, sb_mp_map_get(&r->up.data, "message"), &r->message);
        if (rc == SB_OK && !r->message)
            r->message = "";
    }
    if (rc != SB_OK) {
        sb_reply_release(r);
        return rc;
    }
    r->map = &r->up.data;
    return SB_OK;
}

void sb_reply_release(sb_reply *r)
{
    msgpack_unpacked_destroy(&r->up);
    memset(r, 0, sizeof(*r));
}

int sb_reply_error_code(const char *error)
{
    static const struct {
        const char *code;
        int err;
    } map[] = {{"bad_request", SB_ERR_INVAL},
               {"too_large", SB_ERR_INVAL},
               {"unknown_op", SB_ERR_UNSUPPORTED},
               {"unknown_table", SB_ERR_NOTFOUND},
               {"resync", SB_ERR_STATE},
               {"unavailable", SB_ERR_BUSY},
               /* over a broker limit (docs/operations.md, Limits): try again later */
               {"busy", SB_ERR_BUSY},
               {"limit", SB_ERR_BUSY},
               /* beyond what this client's key is allowed (docs/security.md) */
               {"forbidden", SB_ERR_DENIED}};
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(error, map[i].code) == 0)
            return map[i].err;
    return SB_ERR_IO;
}

int sb_msg_snapshot_rows(const void *buf, size_t len, msgpack_sbuffer *rowbuf,
                         int (*fn)(const sb_client_row *row, void *ud), void *ud)
{
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    const msgpack_object *items;
    uint32_t n;
    int rc = sb_mp_unpack(buf, len, NULL, &up);
    rc = rc ? rc : sb_mp_get_array(&up.data, &items, &n);
    for (uint32_t i = 0; rc == SB_OK && i < n; i++) {
        sb_client_row r;
        const msgpack_object *row = sb_mp_map_get(&items[i], "row");
        rc = zone_str(up.zone, sb_mp_map_get(&items[i], "table"), &r.table);
        rc = rc ? rc : zone_key(up.zone, sb_mp_map_get(&items[i], "key"), &r.key, &r.nkey);
        rc = rc ? rc : get_uint_field(&items[i], "version", &r.version);
        rc = rc ? rc : repack_row(row, rowbuf, &r.row, &r.row_len);
        if (rc == SB_OK && r.nkey == 0)
            rc = SB_ERR_INVAL;
        if (rc == SB_OK && r.row) /* an absent row (nil) has nothing to hold */
            rc = fn(&r, ud);
    }
    msgpack_unpacked_destroy(&up);
    return rc;
}
