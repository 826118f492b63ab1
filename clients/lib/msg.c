/*
 * msg.c - decode broker messages into NUL-terminated, zone-owned views (see msg.h).
 */
#include "msg.h"

#include "sb_mp.h"
#include "sb_proto.h"

#include <string.h>

const char *sb_client_op_name(sb_op op)
{
    const char *name = sb_proto_op_name(op);
    return name ? name : "?";
}

/* The client's view of a decoded event: sb_client_event's key is parts and a count. */
static void take_event(sb_msg *m, const void *body, size_t len)
{
    const sb_proto_event *e = &m->p.ev;
    m->ev = (sb_client_event){.seq = e->seq,
                              .tseq = e->tseq,
                              .epoch = e->epoch,
                              .table = e->table,
                              .key = e->key.parts,
                              .nkey = e->key.nparts,
                              .op = e->op,
                              .version = e->version,
                              .origin = e->origin,
                              .ts_ms = e->ts_ms,
                              .n = e->n,
                              .row = e->row,
                              .row_len = e->row_len,
                              .body = body,
                              .body_len = len};
    m->seq = e->seq;
    m->epoch = e->epoch;
}

/* The editors as the callbacks take them, copied into the message's zone. */
static int take_presence(sb_msg *m)
{
    const sb_proto_presence *p = &m->p.presence;
    m->seq = p->seq;
    m->epoch = p->epoch;
    m->table = p->table;
    m->key = p->key.parts;
    m->nkey = p->key.nparts;
    m->editors = msgpack_zone_malloc(m->p.up.zone, (p->n ? p->n : 1) * sizeof *m->editors);
    if (!m->editors)
        return SB_ERR_NOMEM;
    for (size_t i = 0; i < p->n; i++)
        m->editors[i] =
            (sb_client_editor){p->editors[i].client, p->editors[i].state, p->editors[i].since_ms};
    m->neditors = p->n;
    return SB_OK;
}

int sb_msg_parse(const void *body, size_t len, msgpack_sbuffer *rowbuf, sb_msg *m)
{
    memset(m, 0, sizeof(*m));
    int rc = sb_proto_decode(body, len, rowbuf, &m->p);
    if (rc != SB_OK)
        return rc;
    m->type = m->p.kind;
    if (m->type == SB_PROTO_EVENT) {
        take_event(m, body, len);
    } else if (m->type == SB_PROTO_PRESENCE) {
        rc = take_presence(m);
    } else {
        const sb_proto_heartbeat *hb = &m->p.hb;
        m->seq = hb->seq;
        m->epoch = hb->epoch;
        m->tseq_map = hb->tseq;
        /* Beyond an hour (the broker's own limit) the period cannot be meant. */
        m->hb_ms = hb->hb_ms <= SB_MSG_MAX_HB_MS ? (uint32_t)hb->hb_ms : 0;
    }
    if (rc != SB_OK)
        sb_msg_release(m);
    return rc;
}

void sb_msg_release(sb_msg *m)
{
    sb_proto_release(&m->p);
    memset(m, 0, sizeof(*m));
}

uint64_t sb_msg_hb_tseq(const sb_msg *m, const char *table)
{
    uint64_t v;
    return sb_proto_hb_tseq(&m->p.hb, table, &v) == SB_OK ? v : 0;
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
        rc = sb_mp_zone_str(r->up.zone, err, &r->error);
        rc =
            rc ? rc
               : sb_mp_zone_opt_str(r->up.zone, sb_mp_map_get(&r->up.data, "message"), &r->message);
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
        sb_key key;
        const msgpack_object *item = &items[i];
        rc = sb_mp_zone_str(up.zone, sb_mp_map_get(item, SB_PF_TABLE), &r.table);
        rc = rc ? rc : sb_mp_zone_key(up.zone, sb_mp_map_get(item, SB_PF_KEY), &key);
        rc = rc ? rc : sb_mp_get_uint(sb_mp_map_get(item, SB_PF_VERSION), &r.version);
        rc = rc ? rc
                : sb_proto_decode_row(sb_mp_map_get(item, SB_PF_ROW), rowbuf, &r.row, &r.row_len);
        if (rc == SB_OK && key.nparts == 0)
            rc = SB_ERR_INVAL;
        r.key = key.parts;
        r.nkey = key.nparts;
        if (rc == SB_OK && r.row) /* an absent row (nil) has nothing to hold */
            rc = fn(&r, ud);
    }
    msgpack_unpacked_destroy(&up);
    return rc;
}
