/*
 * event.h - encode the messages the core publishes (docs/protocol.md), once per message.
 *
 * Every function writes the topic into `topic` and the msgpack body into `body`; both are
 * caller-owned msgpack_sbuffers, cleared first and reused across calls to avoid churn.
 */
#ifndef SB_EVENT_H
#define SB_EVENT_H

#include "debounce.h"

#include <msgpack.h>
#include <stdint.h>

/* The protocol version heartbeats announce (docs/protocol.md): bumped only when a change is
 * not an addition that v1 clients may ignore. */
#define SB_PROTO_VERSION 1

/* A change or truncate event. */
int sb_event_encode_change(msgpack_sbuffer *topic, msgpack_sbuffer *body,
                           const sb_debounce_event *ev, const char *table, const char *epoch,
                           uint64_t seq, uint64_t tseq);

/* "@hb": epoch, last seq, per-table last tseq, wall-clock ts, the heartbeat period hb_ms
 * and SB_PROTO_VERSION. */
int sb_event_encode_heartbeat(msgpack_sbuffer *topic, msgpack_sbuffer *body, const char *epoch,
                              uint64_t seq, const char *const *tables, const uint64_t *tseq,
                              size_t ntables, int64_t ts_ms, uint64_t hb_ms);

/* One editor in a presence message. */
typedef struct sb_event_editor {
    const char *client;
    const char *state;
    int64_t since_ms;
} sb_event_editor;

/* "@presence/<table>/<key>". */
int sb_event_encode_presence(msgpack_sbuffer *topic, msgpack_sbuffer *body, const char *table,
                             const sb_key *key, const sb_event_editor *editors, size_t n,
                             const char *epoch, uint64_t seq);

/* Wall-clock milliseconds since the Unix epoch. */
int64_t sb_event_wall_ms(void);

#endif
