/*
 * sb_proto.h - the messages the broker publishes (docs/protocol.md, "Events (PUB)"): change
 * events, heartbeats and presence messages, their topics and their field names. The broker
 * encodes with it, libsyncclient decodes with it, transports re-read what the broker
 * encoded with it; nothing else spells a field name of these messages.
 *
 * Encoders write the topic into `topic` and the msgpack body into `body`, both caller-owned
 * msgpack_sbuffers, cleared first (reused across calls to avoid churn), and borrow
 * everything else. They return 0 or SB_ERR_NOMEM.
 *
 * Decoders validate every byte (sb_mp_unpack) before msgpack-c sees it and refuse a
 * malformed message with SB_ERR_INVAL. A decoded sb_proto_msg owns its msgpack_unpacked:
 * every string, key part and editor it points to is a NUL-terminated copy in that zone and
 * dies with sb_proto_release(); an event's `row` points into the caller's `rowbuf`, valid
 * until that buffer is next used. Only a heartbeat's `tseq` map points into the input bytes
 * (its table names): it is valid while both the message and the input are.
 */
#ifndef SB_PROTO_H
#define SB_PROTO_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <syncbroker/types.h>

/* The protocol version heartbeats announce: bumped only when a change is not an addition
 * that v1 clients may ignore. */
#define SB_PROTO_VERSION 1

/* Topics: "<table>/<key>" (parts joined with "/"), "<table>/" for a truncate, and these. */
#define SB_PROTO_TOPIC_HB "@hb" /* with CURVE, per client: "@hb/<name>/" */
#define SB_PROTO_TOPIC_PRESENCE "@presence/"

/* Field names. */
#define SB_PF_SEQ "seq"
#define SB_PF_TSEQ "tseq"
#define SB_PF_EPOCH "epoch"
#define SB_PF_TABLE "table"
#define SB_PF_KEY "key"
#define SB_PF_OP "op"
#define SB_PF_VERSION "version"
#define SB_PF_ORIGIN "origin"
#define SB_PF_TS "ts"
#define SB_PF_ROW "row"
#define SB_PF_N "n"
#define SB_PF_HB_MS "hb_ms"
#define SB_PF_PROTO "proto"
#define SB_PF_EDITORS "editors"
#define SB_PF_CLIENT "client"
#define SB_PF_STATE "state"
#define SB_PF_SINCE "since"

/* A change or truncate event. Encoding writes row as nil for delete and truncate whatever
 * it holds; decoding leaves it NULL for them. */
typedef struct sb_proto_event {
    uint64_t seq;
    uint64_t tseq;
    const char *epoch;
    const char *table;
    sb_key key; /* nparts == 0 for truncate */
    sb_op op;
    uint64_t version;
    const char *origin; /* NULL: nil */
    int64_t ts_ms;
    const void *row; /* one packed msgpack map, NULL: nil */
    size_t row_len;
    uint32_t n; /* database changes coalesced */
} sb_proto_event;

/* One editor in a presence message. */
typedef struct sb_proto_editor {
    const char *client;
    const char *state;
    int64_t since_ms;
} sb_proto_editor;

/* A decoded heartbeat. */
typedef struct sb_proto_heartbeat {
    uint64_t seq;
    const char *epoch;
    const msgpack_object *tseq; /* a map of table name -> tseq (see the top) */
    int64_t ts_ms;              /* 0 when absent */
    uint64_t hb_ms;             /* 0 when absent (brokers before it was added) */
    uint64_t proto;             /* 0 when absent (such brokers speak version 1) */
} sb_proto_heartbeat;

/* A decoded presence message. */
typedef struct sb_proto_presence {
    uint64_t seq;
    const char *epoch;
    const char *table;
    sb_key key; /* at least one part */
    const sb_proto_editor *editors;
    size_t n; /* 0: nobody edits the entity any more */
} sb_proto_presence;

/* ---- encoding -------------------------------------------------------------------------- */

/* A change or truncate event on "<table>/<key>". */
int sb_proto_encode_event(msgpack_sbuffer *topic, msgpack_sbuffer *body, const sb_proto_event *ev);

/* "@hb": epoch, last seq, tseq[i] for tables[i], wall-clock ts, the heartbeat period hb_ms
 * and SB_PROTO_VERSION. */
int sb_proto_encode_heartbeat(msgpack_sbuffer *topic, msgpack_sbuffer *body, const char *epoch,
                              uint64_t seq, const char *const *tables, const uint64_t *tseq,
                              size_t ntables, int64_t ts_ms, uint64_t hb_ms);

/* "@presence/<table>/<key>" with the full editor list of the entity. */
int sb_proto_encode_presence(msgpack_sbuffer *topic, msgpack_sbuffer *body, const char *table,
                             const sb_key *key, const sb_proto_editor *editors, size_t n,
                             const char *epoch, uint64_t seq);

/* The editor list as presence messages carry it (the editors reply has the same). 0 or -1. */
int sb_proto_pack_editors(msgpack_packer *pk, const sb_proto_editor *editors, size_t n);

/* Re-encode the heartbeat body (len bytes) into out (initialised by the caller, appended
 * to): the same map with only the tables keep() accepts (name, len: not NUL-terminated) in
 * tseq, for a client that may read only those. 0, SB_ERR_INVAL or SB_ERR_NOMEM. */
int sb_proto_heartbeat_filter(const void *body, size_t len,
                              bool (*keep)(void *ud, const char *name, size_t len), void *ud,
                              msgpack_sbuffer *out);

/* The heartbeat topic of the client `name` into buf: "@hb/<name>/", or "@hb" for NULL. Its
 * length, 0 when it does not fit in cap bytes with a NUL. */
size_t sb_proto_hb_topic(const char *name, char *buf, size_t cap);

/* Wall-clock milliseconds since the Unix epoch: the clock of every ts the messages carry. */
int64_t sb_proto_wall_ms(void);

/* "insert", "update", "delete", "truncate"; NULL for anything else. */
const char *sb_proto_op_name(sb_op op);

/* ---- decoding -------------------------------------------------------------------------- */

typedef enum sb_proto_kind {
    SB_PROTO_EVENT = 1,
    SB_PROTO_HEARTBEAT,
    SB_PROTO_PRESENCE
} sb_proto_kind;

typedef struct sb_proto_msg {
    sb_proto_kind kind;
    union {
        sb_proto_event ev;
        sb_proto_heartbeat hb;
        sb_proto_presence presence;
    };
    msgpack_unpacked up;
} sb_proto_msg;

/* Decode one PUB body (or one `since` replay frame). The kind comes from the body: `op`
 * means an event, `editors` presence, anything else must be a heartbeat (with a tseq map).
 * rowbuf is where an event's row is re-packed (NULL refuses events). On error *m is
 * released. */
int sb_proto_decode(const void *body, size_t len, msgpack_sbuffer *rowbuf, sb_proto_msg *m);
void sb_proto_release(sb_proto_msg *m);

/* The tseq of `table` in a heartbeat: SB_ERR_NOTFOUND when the table is not listed,
 * SB_ERR_INVAL when its value is not a uint. */
int sb_proto_hb_tseq(const sb_proto_heartbeat *hb, const char *table, uint64_t *tseq);

/* A row as events and snapshot frames carry it: nil or absent (o NULL) gives *row = NULL,
 * a map is re-packed into rowbuf (cleared first) and *row points to its bytes. */
int sb_proto_decode_row(const msgpack_object *o, msgpack_sbuffer *rowbuf, const void **row,
                        size_t *len);

#endif /* SB_PROTO_H */
