/*
 * test_sb_proto.c - common/sb_proto.h: the PUB messages' encoders against docs/protocol.md
 * (bytes packed here with msgpack-c, field by field) and against the decoder, and the
 * decoder against malformed input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sb_mp.h"
#include "sb_proto.h"

#include <stdlib.h>
#include <string.h>

static void str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

/* A row {"id": id, "name": name}. */
static void pack_row(sb_mp_buf *b, int64_t id, const char *name)
{
    msgpack_pack_map(&b->pk, 2);
    str(&b->pk, "id");
    msgpack_pack_int64(&b->pk, id);
    str(&b->pk, "name");
    str(&b->pk, name);
}

static const msgpack_object *field(const msgpack_object *map, const char *name)
{
    const msgpack_object *o = sb_mp_map_get(map, name);
    if (!o)
        fail_msg("no field %s", name);
    return o;
}

/* ---- golden bytes ---------------------------------------------------------------------- */

/* The event of docs/protocol.md "Change event", in the table's order, packed by hand. */
static void pack_event_by_hand(sb_mp_buf *b, const sb_proto_event *ev, const char *op,
                               bool with_row)
{
    msgpack_packer *pk = &b->pk;
    msgpack_pack_map(pk, 11);
    str(pk, "seq");
    msgpack_pack_uint64(pk, ev->seq);
    str(pk, "tseq");
    msgpack_pack_uint64(pk, ev->tseq);
    str(pk, "epoch");
    str(pk, ev->epoch);
    str(pk, "table");
    str(pk, ev->table);
    str(pk, "key");
    if (ev->key.nparts == 0)
        msgpack_pack_nil(pk);
    else if (ev->key.nparts == 1)
        str(pk, ev->key.parts[0]);
    else
        msgpack_pack_array(pk, ev->key.nparts);
    for (uint32_t i = 0; ev->key.nparts > 1 && i < ev->key.nparts; i++)
        str(pk, ev->key.parts[i]);
    str(pk, "op");
    str(pk, op);
    str(pk, "version");
    msgpack_pack_uint64(pk, ev->version);
    str(pk, "origin");
    if (ev->origin)
        str(pk, ev->origin);
    else
        msgpack_pack_nil(pk);
    str(pk, "ts");
    msgpack_pack_int64(pk, ev->ts_ms);
    str(pk, "row");
    if (with_row)
        msgpack_sbuffer_write(&b->sb, ev->row, ev->row_len);
    else
        msgpack_pack_nil(pk);
    str(pk, "n");
    msgpack_pack_uint64(pk, ev->n);
}

static void assert_same_bytes(const msgpack_sbuffer *got, const msgpack_sbuffer *want)
{
    assert_int_equal(got->size, want->size);
    assert_memory_equal(got->data, want->data, want->size);
}

static void encoded_event_matches_the_protocol_bytes(void **state)
{
    (void)state;
    sb_mp_buf row, want;
    sb_mp_buf_init(&row);
    pack_row(&row, 7, "Ada");
    msgpack_sbuffer topic, body;
    msgpack_sbuffer_init(&topic);
    msgpack_sbuffer_init(&body);
    const char *parts[] = {"7", "2026-11-28"};
    sb_proto_event ev = {.seq = 70000,
                         .tseq = 300,
                         .epoch = "e1a2",
                         .table = "public.stays",
                         .key = {parts, 2},
                         .op = SB_OP_UPDATE,
                         .version = 5000000000ull,
                         .origin = "desk-3",
                         .ts_ms = 1764288000123,
                         .row = row.sb.data,
                         .row_len = row.sb.size,
                         .n = 3};
    static const struct {
        sb_op op;
        const char *name;
        uint32_t nparts;
        bool row;
    } cases[] = {{SB_OP_INSERT, "insert", 1, true},
                 {SB_OP_UPDATE, "update", 2, true},
                 {SB_OP_DELETE, "delete", 1, false}, /* the row handed over is not sent */
                 {SB_OP_TRUNCATE, "truncate", 0, false}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ev.op = cases[i].op;
        ev.key.nparts = cases[i].nparts;
        ev.origin = i % 2 ? NULL : "desk-3";
        sb_mp_buf_init(&want);
        pack_event_by_hand(&want, &ev, cases[i].name, cases[i].row);
        assert_int_equal(sb_proto_encode_event(&topic, &body, &ev), SB_OK);
        assert_same_bytes(&body, &want.sb);
        msgpack_sbuffer_destroy(&want.sb);
    }
    /* Topics: "<table>/<key parts joined by />", "<table>/" for a truncate. */
    assert_int_equal(topic.size, strlen("public.stays/"));
    assert_memory_equal(topic.data, "public.stays/", topic.size);
    ev.op = SB_OP_UPDATE;
    ev.key.nparts = 2;
    assert_int_equal(sb_proto_encode_event(&topic, &body, &ev), SB_OK);
    assert_int_equal(topic.size, strlen("public.stays/7/2026-11-28"));
    assert_memory_equal(topic.data, "public.stays/7/2026-11-28", topic.size);
    msgpack_sbuffer_destroy(&topic);
    msgpack_sbuffer_destroy(&body);
    msgpack_sbuffer_destroy(&row.sb);
}

static void encoded_heartbeat_and_presence_match_the_protocol_bytes(void **state)
{
    (void)state;
    msgpack_sbuffer topic, body;
    msgpack_sbuffer_init(&topic);
    msgpack_sbuffer_init(&body);
    sb_mp_buf want;
    sb_mp_buf_init(&want);
    const char *tables[] = {"public.a", "public.b"};
    const uint64_t tseq[] = {3, 0};
    assert_int_equal(
        sb_proto_encode_heartbeat(&topic, &body, "e1", 11, tables, tseq, 2, 1764288000123, 5000),
        SB_OK);
    msgpack_packer *pk = &want.pk;
    msgpack_pack_map(pk, 6);
    str(pk, "epoch");
    str(pk, "e1");
    str(pk, "seq");
    msgpack_pack_uint64(pk, 11);
    str(pk, "tseq");
    msgpack_pack_map(pk, 2);
    str(pk, "public.a");
    msgpack_pack_uint64(pk, 3);
    str(pk, "public.b");
    msgpack_pack_uint64(pk, 0);
    str(pk, "ts");
    msgpack_pack_int64(pk, 1764288000123);
    str(pk, "hb_ms");
    msgpack_pack_uint64(pk, 5000);
    str(pk, "proto");
    msgpack_pack_uint64(pk, 1);
    assert_same_bytes(&body, &want.sb);
    assert_int_equal(topic.size, 3);
    assert_memory_equal(topic.data, "@hb", 3);

    msgpack_sbuffer_clear(&want.sb);
    const char *parts[] = {"12", "b"};
    sb_key key = {parts, 2};
    sb_proto_editor ed[] = {{"ada", "editing", 1000}, {"bob", "viewing", 2000}};
    assert_int_equal(sb_proto_encode_presence(&topic, &body, "public.rooms", &key, ed, 2, "e1", 12),
                     SB_OK);
    msgpack_pack_map(pk, 5);
    str(pk, "seq");
    msgpack_pack_uint64(pk, 12);
    str(pk, "epoch");
    str(pk, "e1");
    str(pk, "table");
    str(pk, "public.rooms");
    str(pk, "key");
    msgpack_pack_array(pk, 2);
    str(pk, "12");
    str(pk, "b");
    str(pk, "editors");
    msgpack_pack_array(pk, 2);
    for (size_t i = 0; i < 2; i++) {
        msgpack_pack_map(pk, 3);
        str(pk, "client");
        str(pk, ed[i].client);
        str(pk, "state");
        str(pk, ed[i].state);
        str(pk, "since");
        msgpack_pack_int64(pk, ed[i].since_ms);
    }
    assert_same_bytes(&body, &want.sb);
    assert_int_equal(topic.size, strlen("@presence/public.rooms/12/b"));
    assert_memory_equal(topic.data, "@presence/public.rooms/12/b", topic.size);
    msgpack_sbuffer_destroy(&want.sb);
    msgpack_sbuffer_destroy(&topic);
    msgpack_sbuffer_destroy(&body);
}

/* ---- round trips ----------------------------------------------------------------------- */

static void assert_event_equal(const sb_proto_event *got, const sb_proto_event *want)
{
    assert_int_equal(got->seq, want->seq);
    assert_int_equal(got->tseq, want->tseq);
    assert_string_equal(got->epoch, want->epoch);
    assert_string_equal(got->table, want->table);
    assert_int_equal(got->key.nparts, want->key.nparts);
    for (uint32_t i = 0; i < want->key.nparts; i++)
        assert_string_equal(got->key.parts[i], want->key.parts[i]);
    assert_int_equal(got->op, want->op);
    assert_int_equal(got->version, want->version);
    if (want->origin)
        assert_string_equal(got->origin, want->origin);
    else
        assert_null(got->origin);
    assert_int_equal(got->ts_ms, want->ts_ms);
    bool has_row = want->op == SB_OP_INSERT || want->op == SB_OP_UPDATE;
    if (has_row) {
        assert_int_equal(got->row_len, want->row_len);
        assert_memory_equal(got->row, want->row, want->row_len);
    } else {
        assert_null(got->row);
        assert_int_equal(got->row_len, 0);
    }
    assert_int_equal(got->n, want->n);
}

static void events_round_trip(void **state)
{
    (void)state;
    sb_mp_buf row;
    sb_mp_buf_init(&row);
    pack_row(&row, -42, "a/b"); /* a negative int and a slash survive */
    msgpack_sbuffer topic, body, rowbuf;
    msgpack_sbuffer_init(&topic);
    msgpack_sbuffer_init(&body);
    msgpack_sbuffer_init(&rowbuf);
    const char *parts[] = {"12", "2026-11-28", ""};
    const sb_op ops[] = {SB_OP_INSERT, SB_OP_UPDATE, SB_OP_DELETE, SB_OP_TRUNCATE};
    for (size_t i = 0; i < 4; i++) {
        for (uint32_t nparts = 1; nparts <= 3; nparts++) {
            sb_proto_event ev = {.seq = UINT64_MAX - i,
                                 .tseq = i,
                                 .epoch = "0123abcd",
                                 .table = "public.stays",
                                 .key = {parts, ops[i] == SB_OP_TRUNCATE ? 0 : nparts},
                                 .op = ops[i],
                                 .version = 1ull << (nparts * 20),
                                 .origin = nparts == 2 ? NULL : "desk",
                                 .ts_ms = nparts == 3 ? -5 : 1764288000123,
                                 .row = ops[i] == SB_OP_INSERT && nparts == 3 ? NULL : row.sb.data,
                                 .row_len = row.sb.size,
                                 .n = nparts};
            if (!ev.row) /* an insert without its row is not a message: see the refusals */
                continue;
            assert_int_equal(sb_proto_encode_event(&topic, &body, &ev), SB_OK);
            sb_proto_msg m;
            assert_int_equal(sb_proto_decode(body.data, body.size, &rowbuf, &m), SB_OK);
            assert_int_equal(m.kind, SB_PROTO_EVENT);
            assert_event_equal(&m.ev, &ev);
            sb_proto_release(&m);
        }
    }
    msgpack_sbuffer_destroy(&topic);
    msgpack_sbuffer_destroy(&body);
    msgpack_sbuffer_destroy(&rowbuf);
    msgpack_sbuffer_destroy(&row.sb);
}

static void heartbeats_round_trip(void **state)
{
    (void)state;
    msgpack_sbuffer topic, body;
    msgpack_sbuffer_init(&topic);
    msgpack_sbuffer_init(&body);
    const char *tables[] = {"public.a", "public.b", "s.c"};
    const uint64_t tseq[] = {3, 0, UINT64_MAX};
    for (size_t n = 0; n <= 3; n++) {
        assert_int_equal(
            sb_proto_encode_heartbeat(&topic, &body, "ep", 99 + n, tables, tseq, n, 1234, 250),
            SB_OK);
        sb_proto_msg m;
        assert_int_equal(sb_proto_decode(body.data, body.size, NULL, &m), SB_OK);
        assert_int_equal(m.kind, SB_PROTO_HEARTBEAT);
        assert_int_equal(m.hb.seq, 99 + n);
        assert_string_equal(m.hb.epoch, "ep");
        assert_int_equal(m.hb.ts_ms, 1234);
        assert_int_equal(m.hb.hb_ms, 250);
        assert_int_equal(m.hb.proto, SB_PROTO_VERSION);
        assert_int_equal(m.hb.tseq->via.map.size, n);
        for (size_t i = 0; i < 3; i++) {
            uint64_t t = 7;
            assert_int_equal(sb_proto_hb_tseq(&m.hb, tables[i], &t),
                             i < n ? SB_OK : SB_ERR_NOTFOUND);
            assert_int_equal(t, i < n ? tseq[i] : 7);
        }
        sb_proto_release(&m);
    }
    msgpack_sbuffer_destroy(&topic);
    msgpack_sbuffer_destroy(&body);
}

static void presence_round_trips(void **state)
{
    (void)state;
    msgpack_sbuffer topic, body;
    msgpack_sbuffer_init(&topic);
    msgpack_sbuffer_init(&body);
    const char *parts[] = {"12", "b"};
    sb_proto_editor ed[] = {{"ada", "editing", 1000}, {"bob", "viewing", -1}, {"c", "x", 0}};
    for (size_t n = 0; n <= 3; n++) {
        sb_key key = {parts, n % 2 ? 2 : 1};
        assert_int_equal(
            sb_proto_encode_presence(&topic, &body, "public.rooms", &key, ed, n, "ep", 40 + n),
            SB_OK);
        sb_proto_msg m;
        assert_int_equal(sb_proto_decode(body.data, body.size, NULL, &m), SB_OK);
        assert_int_equal(m.kind, SB_PROTO_PRESENCE);
        assert_int_equal(m.presence.seq, 40 + n);
        assert_string_equal(m.presence.epoch, "ep");
        assert_string_equal(m.presence.table, "public.rooms");
        assert_int_equal(m.presence.key.nparts, key.nparts);
        for (uint32_t i = 0; i < key.nparts; i++)
            assert_string_equal(m.presence.key.parts[i], parts[i]);
        assert_int_equal(m.presence.n, n);
        for (size_t i = 0; i < n; i++) {
            assert_string_equal(m.presence.editors[i].client, ed[i].client);
            assert_string_equal(m.presence.editors[i].state, ed[i].state);
            assert_int_equal(m.presence.editors[i].since_ms, ed[i].since_ms);
        }
        sb_proto_release(&m);
    }
    msgpack_sbuffer_destroy(&topic);
    msgpack_sbuffer_destroy(&body);
}

/* ---- refusals -------------------------------------------------------------------------- */

enum { F_SEQ, F_TSEQ, F_EPOCH, F_TABLE, F_KEY, F_OP, F_VERSION, F_ORIGIN, F_TS, F_ROW, F_N, NF };

/* An update of public.t/1 with field `omit` left out and field `wrong` of a wrong type
 * (-1: none). */
static void pack_event_with(sb_mp_buf *b, int omit, int wrong)
{
    static const char *const names[NF] = {"seq",     "tseq",   "epoch", "table", "key", "op",
                                          "version", "origin", "ts",    "row",   "n"};
    msgpack_packer *pk = &b->pk;
    msgpack_pack_map(pk, omit >= 0 ? NF - 1 : NF);
    for (int f = 0; f < NF; f++) {
        if (f == omit)
            continue;
        str(pk, names[f]);
        if (f == wrong) {
            /* a str where a number or map goes, a number where a str or key goes */
            if (f == F_SEQ || f == F_TSEQ || f == F_VERSION || f == F_TS || f == F_N || f == F_ROW)
                str(pk, "1");
            else
                msgpack_pack_uint64(pk, 1);
            continue;
        }
        switch (f) {
        case F_EPOCH:
            str(pk, "ep");
            break;
        case F_TABLE:
            str(pk, "public.t");
            break;
        case F_KEY:
            str(pk, "1");
            break;
        case F_OP:
            str(pk, "update");
            break;
        case F_ORIGIN:
            msgpack_pack_nil(pk);
            break;
        case F_ROW:
            pack_row(b, 1, "x");
            break;
        default:
            msgpack_pack_uint64(pk, 5);
        }
    }
}

static int decode_buf(const sb_mp_buf *b, msgpack_sbuffer *rowbuf, sb_proto_msg *m)
{
    return sb_proto_decode(b->sb.data, b->sb.size, rowbuf, m);
}

static void events_missing_or_mistyped_fields_are_refused(void **state)
{
    (void)state;
    msgpack_sbuffer rowbuf;
    msgpack_sbuffer_init(&rowbuf);
    sb_proto_msg m;
    sb_mp_buf b;
    sb_mp_buf_init(&b);
    pack_event_with(&b, -1, -1);
    assert_int_equal(decode_buf(&b, &rowbuf, &m), SB_OK);
    assert_int_equal(m.kind, SB_PROTO_EVENT);
    sb_proto_release(&m);
    /* Without rowbuf an event cannot be decoded. */
    assert_int_equal(decode_buf(&b, NULL, &m), SB_ERR_INVAL);
    assert_null(m.up.zone); /* released */
    for (int f = 0; f < NF; f++) {
        msgpack_sbuffer_clear(&b.sb);
        pack_event_with(&b, -1, f);
        assert_int_equal(decode_buf(&b, &rowbuf, &m), SB_ERR_INVAL);
        msgpack_sbuffer_clear(&b.sb);
        pack_event_with(&b, f, -1);
        int rc = decode_buf(&b, &rowbuf, &m);
        if (f == F_ORIGIN || f == F_N) { /* optional: nil and one change */
            assert_int_equal(rc, SB_OK);
            assert_null(m.ev.origin);
            assert_int_equal(m.ev.n, f == F_N ? 1 : 5);
            sb_proto_release(&m);
        } else {
            /* every other field is required (an update needs its row; without op it is no
             * event, and no heartbeat either) */
            assert_int_equal(rc, SB_ERR_INVAL);
        }
    }
    msgpack_sbuffer_destroy(&b.sb);
    msgpack_sbuffer_destroy(&rowbuf);
}

/* Encode ev, then check that the decoder refuses it. */
static void assert_event_refused(const sb_proto_event *ev)
{
    msgpack_sbuffer topic, body, rowbuf;
    msgpack_sbuffer_init(&topic);
    msgpack_sbuffer_init(&body);
    msgpack_sbuffer_init(&rowbuf);
    assert_int_equal(sb_proto_encode_event(&topic, &body, ev), SB_OK);
    sb_proto_msg m;
    assert_int_equal(sb_proto_decode(body.data, body.size, &rowbuf, &m), SB_ERR_INVAL);
    msgpack_sbuffer_destroy(&topic);
    msgpack_sbuffer_destroy(&body);
    msgpack_sbuffer_destroy(&rowbuf);
}

static void events_that_contradict_their_op_are_refused(void **state)
{
    (void)state;
    const char *parts[] = {"1"};
    sb_mp_buf row;
    sb_mp_buf_init(&row);
    pack_row(&row, 1, "x");
    sb_proto_event ev = {.epoch = "e", .table = "public.t", .key = {parts, 1}, .op = SB_OP_INSERT};
    assert_event_refused(&ev); /* an insert without its row */
    ev.op = SB_OP_UPDATE;
    assert_event_refused(&ev);
    ev.op = SB_OP_DELETE;
    ev.key.nparts = 0; /* a delete of no key */
    assert_event_refused(&ev);
    ev.op = SB_OP_TRUNCATE;
    ev.key.nparts = 1; /* a truncate of one key */
    assert_event_refused(&ev);
    ev.op = 0; /* an unknown op */
    ev.row = row.sb.data;
    ev.row_len = row.sb.size;
    assert_event_refused(&ev);
    ev.op = SB_OP_INSERT;
    ev.epoch = NULL; /* nil where a str goes */
    assert_event_refused(&ev);
    msgpack_sbuffer_destroy(&row.sb);
}

static void other_malformed_messages_are_refused(void **state)
{
    (void)state;
    sb_proto_msg m;
    msgpack_sbuffer rowbuf;
    msgpack_sbuffer_init(&rowbuf);
    sb_mp_buf b;
    sb_mp_buf_init(&b);
    /* not a map */
    msgpack_pack_array(&b.pk, 0);
    assert_int_equal(decode_buf(&b, &rowbuf, &m), SB_ERR_INVAL);
    /* not msgpack at all, and nothing */
    assert_int_equal(sb_proto_decode("\xc1", 1, &rowbuf, &m), SB_ERR_INVAL);
    assert_int_equal(sb_proto_decode("", 0, &rowbuf, &m), SB_ERR_INVAL);
    /* a heartbeat without its tseq map, or with a list there */
    msgpack_sbuffer_clear(&b.sb);
    msgpack_pack_map(&b.pk, 2);
    str(&b.pk, "seq");
    msgpack_pack_uint64(&b.pk, 1);
    str(&b.pk, "epoch");
    str(&b.pk, "e");
    assert_int_equal(decode_buf(&b, &rowbuf, &m), SB_ERR_INVAL);
    msgpack_sbuffer_clear(&b.sb);
    msgpack_pack_map(&b.pk, 4);
    str(&b.pk, "seq");
    msgpack_pack_uint64(&b.pk, 1);
    str(&b.pk, "epoch");
    str(&b.pk, "e");
    str(&b.pk, "tseq");
    msgpack_pack_map(&b.pk, 0);
    str(&b.pk, "hb_ms");
    msgpack_pack_int64(&b.pk, -1);
    assert_int_equal(decode_buf(&b, &rowbuf, &m), SB_ERR_INVAL); /* a negative period */
    /* presence: editors not a list, an editor without client, an empty composite key */
    for (int c = 0; c < 3; c++) {
        msgpack_sbuffer_clear(&b.sb);
        msgpack_pack_map(&b.pk, 5);
        str(&b.pk, "seq");
        msgpack_pack_uint64(&b.pk, 1);
        str(&b.pk, "epoch");
        str(&b.pk, "e");
        str(&b.pk, "table");
        str(&b.pk, "public.t");
        str(&b.pk, "key");
        if (c == 2)
            msgpack_pack_array(&b.pk, 0);
        else
            str(&b.pk, "1");
        str(&b.pk, "editors");
        if (c == 0) {
            msgpack_pack_map(&b.pk, 0);
        } else {
            msgpack_pack_array(&b.pk, 1);
            msgpack_pack_map(&b.pk, c == 1 ? 2 : 3);
            if (c != 1) {
                str(&b.pk, "client");
                str(&b.pk, "ada");
            }
            str(&b.pk, "state");
            str(&b.pk, "editing");
            str(&b.pk, "since");
            msgpack_pack_uint64(&b.pk, 1);
        }
        assert_int_equal(decode_buf(&b, &rowbuf, &m), SB_ERR_INVAL);
    }
    msgpack_sbuffer_destroy(&b.sb);
    msgpack_sbuffer_destroy(&rowbuf);
}

/* Every strict prefix of a valid message is refused, and nothing is read beyond it. */
static void truncated_messages_are_refused(void **state)
{
    (void)state;
    msgpack_sbuffer topic, body, rowbuf;
    msgpack_sbuffer_init(&topic);
    msgpack_sbuffer_init(&body);
    msgpack_sbuffer_init(&rowbuf);
    sb_mp_buf row;
    sb_mp_buf_init(&row);
    pack_row(&row, 1, "x");
    const char *parts[] = {"1", "2"};
    const char *tables[] = {"public.a", "public.b"};
    const uint64_t tseq[] = {1, 2};
    sb_proto_editor ed[] = {{"ada", "editing", 1000}};
    sb_key key = {parts, 2};
    sb_proto_event ev = {.seq = 1,
                         .epoch = "e",
                         .table = "public.t",
                         .key = key,
                         .op = SB_OP_INSERT,
                         .row = row.sb.data,
                         .row_len = row.sb.size};
    for (int kind = 0; kind < 3; kind++) {
        int rc = kind == 0 ? sb_proto_encode_event(&topic, &body, &ev)
                 : kind == 1
                     ? sb_proto_encode_heartbeat(&topic, &body, "e", 1, tables, tseq, 2, 5, 100)
                     : sb_proto_encode_presence(&topic, &body, "public.t", &key, ed, 1, "e", 2);
        assert_int_equal(rc, SB_OK);
        for (size_t len = 0; len < body.size; len++) {
            /* a copy of exactly len bytes, so that the sanitizer sees a read past it */
            char *cut = malloc(len ? len : 1);
            memcpy(cut, body.data, len);
            sb_proto_msg m;
            assert_int_equal(sb_proto_decode(cut, len, &rowbuf, &m), SB_ERR_INVAL);
            free(cut);
        }
        sb_proto_msg m;
        assert_int_equal(sb_proto_decode(body.data, body.size, &rowbuf, &m), SB_OK);
        assert_int_equal(m.kind, (sb_proto_kind)(kind + 1));
        sb_proto_release(&m);
    }
    msgpack_sbuffer_destroy(&topic);
    msgpack_sbuffer_destroy(&body);
    msgpack_sbuffer_destroy(&rowbuf);
    msgpack_sbuffer_destroy(&row.sb);
}

/* ---- heartbeat per client, topics, ops ------------------------------------------------- */

static bool keep_b(void *ud, const char *name, size_t len)
{
    (*(int *)ud)++;
    return len == 8 && memcmp(name, "public.b", 8) == 0;
}

static void heartbeat_filter_keeps_only_the_tables_asked(void **state)
{
    (void)state;
    msgpack_sbuffer topic, body, out, want_topic, want;
    msgpack_sbuffer_init(&topic);
    msgpack_sbuffer_init(&body);
    msgpack_sbuffer_init(&out);
    msgpack_sbuffer_init(&want_topic);
    msgpack_sbuffer_init(&want);
    const char *tables[] = {"public.a", "public.b", "public.c"};
    const uint64_t tseq[] = {3, 4, 5};
    assert_int_equal(
        sb_proto_encode_heartbeat(&topic, &body, "e1", 11, tables, tseq, 3, 1234, 5000), SB_OK);
    int asked = 0;
    assert_int_equal(sb_proto_heartbeat_filter(body.data, body.size, keep_b, &asked, &out), SB_OK);
    assert_int_equal(asked, 6); /* two passes over three tables */
    /* The same bytes as the broker's heartbeat of that one table. */
    assert_int_equal(sb_proto_encode_heartbeat(&want_topic, &want, "e1", 11, tables + 1, tseq + 1,
                                               1, 1234, 5000),
                     SB_OK);
    assert_same_bytes(&out, &want);
    /* Not a heartbeat's bytes: refused. */
    msgpack_sbuffer_clear(&out);
    assert_int_equal(sb_proto_heartbeat_filter(body.data, body.size - 1, keep_b, &asked, &out),
                     SB_ERR_INVAL);
    msgpack_sbuffer_destroy(&topic);
    msgpack_sbuffer_destroy(&body);
    msgpack_sbuffer_destroy(&out);
    msgpack_sbuffer_destroy(&want_topic);
    msgpack_sbuffer_destroy(&want);
}

static void heartbeat_topics_and_op_names(void **state)
{
    (void)state;
    char hb[16];
    assert_int_equal(sb_proto_hb_topic("desk-a", hb, sizeof hb), 11);
    assert_string_equal(hb, "@hb/desk-a/");
    assert_int_equal(sb_proto_hb_topic(NULL, hb, sizeof hb), 3);
    assert_string_equal(hb, "@hb");
    assert_int_equal(sb_proto_hb_topic("a-name-too-long", hb, sizeof hb), 0);
    assert_string_equal(sb_proto_op_name(SB_OP_INSERT), "insert");
    assert_string_equal(sb_proto_op_name(SB_OP_TRUNCATE), "truncate");
    assert_null(sb_proto_op_name(0));
    assert_null(sb_proto_op_name(5));
    /* Both clocks of a test run are past 2020 and within a minute of each other. */
    int64_t a = sb_proto_wall_ms(), b = sb_proto_wall_ms();
    assert_true(a > 1577836800000 && b >= a && b - a < 60000);
}

/* The encoder's ownership contract: buffers are cleared, so reuse gives the same bytes. */
static void encoders_clear_their_buffers(void **state)
{
    (void)state;
    msgpack_sbuffer topic, body, first;
    msgpack_sbuffer_init(&topic);
    msgpack_sbuffer_init(&body);
    msgpack_sbuffer_init(&first);
    const char *parts[] = {"1"};
    sb_proto_event ev = {.epoch = "e", .table = "t", .key = {parts, 1}, .op = SB_OP_DELETE};
    assert_int_equal(sb_proto_encode_event(&topic, &body, &ev), SB_OK);
    msgpack_sbuffer_write(&first, body.data, body.size);
    assert_int_equal(sb_proto_encode_event(&topic, &body, &ev), SB_OK);
    assert_same_bytes(&body, &first);
    assert_int_equal(topic.size, 3);
    const msgpack_object *o;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    assert_int_equal(sb_mp_unpack(body.data, body.size, NULL, &u), SB_OK);
    o = field(&u.data, "row");
    assert_int_equal(o->type, MSGPACK_OBJECT_NIL);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&topic);
    msgpack_sbuffer_destroy(&body);
    msgpack_sbuffer_destroy(&first);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(encoded_event_matches_the_protocol_bytes),
        cmocka_unit_test(encoded_heartbeat_and_presence_match_the_protocol_bytes),
        cmocka_unit_test(events_round_trip),
        cmocka_unit_test(heartbeats_round_trip),
        cmocka_unit_test(presence_round_trips),
        cmocka_unit_test(events_missing_or_mistyped_fields_are_refused),
        cmocka_unit_test(events_that_contradict_their_op_are_refused),
        cmocka_unit_test(other_malformed_messages_are_refused),
        cmocka_unit_test(truncated_messages_are_refused),
        cmocka_unit_test(heartbeat_filter_keeps_only_the_tables_asked),
        cmocka_unit_test(heartbeat_topics_and_op_names),
        cmocka_unit_test(encoders_clear_their_buffers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
