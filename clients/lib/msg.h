/*
 * msg.h - what the broker sends (docs/protocol.md) as libsyncclient's callbacks see it:
 * PUB messages (decoded by sb_proto), service replies, snapshot rows. Every byte is validated
 * (sb_mp_unpack) before msgpack-c sees it; a malformed message is refused with SB_ERR_INVAL,
 * never trusted.
 *
 * Ownership: an sb_msg owns its decoded sb_proto_msg; every string, key part and editor it
 * points to is allocated in that message's zone (NUL-terminated copies) and dies with
 * sb_msg_release(). `row` points into the caller's `rowbuf` sbuffer (the row re-packed),
 * valid until that buffer is next used. Only `body` (the input itself) and a heartbeat's
 * tseq map point into the input bytes (borrowed).
 */
#ifndef SB_CLIENT_MSG_H
#define SB_CLIENT_MSG_H

#include "sb_proto.h"

#include <syncbroker/client.h>

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The longest heartbeat period a broker may announce (its heartbeat_ms limit). */
#define SB_MSG_MAX_HB_MS 3600000u

typedef struct sb_msg {
    sb_proto_kind type;
    uint64_t seq;
    const char *epoch;
    /* events: every field of sb_client_event (own is left to the caller) */
    sb_client_event ev;
    /* heartbeats: the tseq map (borrowed from the decoded message and the body), the broker's
     * heartbeat period (0: not sent, as by brokers before it was added, or beyond SB_MSG_MAX_HB_MS)
     */
    const msgpack_object *tseq_map;
    uint32_t hb_ms;
    /* presence: table, key and editors */
    const char *table;
    const char *const *key;
    uint32_t nkey;
    sb_client_editor *editors;
    size_t neditors;
    sb_proto_msg p;
} sb_msg;

/* Decode one PUB body (or one `since` replay frame) with sb_proto_decode(). On error *m is
 * released. */
int sb_msg_parse(const void *body, size_t len, msgpack_sbuffer *rowbuf, sb_msg *m);
void sb_msg_release(sb_msg *m);

/* tseq of `table` in a heartbeat (0 when the table is not listed). */
uint64_t sb_msg_hb_tseq(const sb_msg *m, const char *table);

/* A decoded service reply frame: a map, or {error, message}. */
typedef struct sb_reply {
    const msgpack_object *map;
    const char *error;   /* NULL unless the reply is an error; zone copy */
    const char *message; /* error text or "" */
    msgpack_unpacked up;
} sb_reply;

/* Decode a reply's first frame. SB_ERR_INVAL when it is not a map. On error *r is released. */
int sb_reply_parse(const void *buf, size_t len, sb_reply *r);
void sb_reply_release(sb_reply *r);

/* The sb_err a broker error code stands for. */
int sb_reply_error_code(const char *error);

/* Call fn for each {table, key, version, row} of one snapshot row frame. Stops at the
 * first non-zero fn return and returns it; SB_ERR_INVAL for a malformed frame. */
int sb_msg_snapshot_rows(const void *buf, size_t len, msgpack_sbuffer *rowbuf,
                         int (*fn)(const sb_client_row *row, void *ud), void *ud);

#endif
