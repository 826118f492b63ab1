/*
 * svc.h - requests to the broker's service socket (ROUTER) over a DEALER.
 *
 * Each request goes out as [request id (4 bytes)][empty delimiter][msgpack map]; the broker
 * echoes every frame before the map, so a reply arrives as [id][empty][frames...]. The id
 * lets several requests (a snapshot and presence refreshes) share one socket and lets a late
 * reply to an abandoned try be recognised and dropped. A try that times out closes and
 * reopens the socket (Lazy Pirate): a stuck connection and its queue go away with it.
 *
 * Ownership: sb_svc owns its socket and its endpoint copy, and borrows its CURVE keys (they
 * must outlive it); an sb_svc_reply owns its frames (released by sb_svc_reply_clear()).
 */
#ifndef SB_CLIENT_SVC_H
#define SB_CLIENT_SVC_H

#include <syncbroker/client.h>

#include "curve.h"

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

typedef struct sb_svc {
    void *ctx;             /* borrowed */
    const sb_curve *curve; /* borrowed: applied to every socket opened */
    char *endpoint;
    void *sock;
    uint32_t next_id;
} sb_svc;

typedef struct sb_svc_reply {
    uint32_t id;
    zmq_msg_t *frames; /* the reply's own frames, envelope removed */
    size_t n, cap;
} sb_svc_reply;

int sb_svc_open(sb_svc *s, void *ctx, const char *endpoint, const sb_curve *curve);
/* Drop the socket (with anything queued on it) and connect a fresh one. */
int sb_svc_reopen(sb_svc *s);
void sb_svc_close(sb_svc *s);

/* Send one request; *id gets its id. SB_ERR_BUSY when the socket cannot take it now. */
int sb_svc_send(sb_svc *s, const msgpack_sbuffer *body, uint32_t *id);

/* Read one reply without waiting: 1 (r filled), 0 (nothing queued), or an sb_err. A message
 * whose envelope is not [4-byte id][empty] is dropped and reported as SB_ERR_INVAL. */
int sb_svc_recv(sb_svc *s, sb_svc_reply *r);
void sb_svc_reply_clear(sb_svc_reply *r);

/* Request bodies (docs/protocol.md), packed into b (cleared first). */
int sb_svc_pack_snapshot(msgpack_sbuffer *b, const char *const *tables, size_t ntables);
int sb_svc_pack_since(msgpack_sbuffer *b, const char *epoch, uint64_t seq);
int sb_svc_pack_presence(msgpack_sbuffer *b, const char *client, const char *table,
                         const char *const *key, uint32_t nkey, const char *state, uint32_t ttl_ms);

/* Decode a snapshot reply: header {epoch, seq} (epoch copied into `epoch`, epoch_size bytes,
 * NUL-terminated), then fn per row. A broker error reply returns its sb_err and puts the
 * broker's code and text into err. */
int sb_svc_snapshot_reply(const sb_svc_reply *r, msgpack_sbuffer *rowbuf,
                          int (*fn)(const sb_client_row *row, void *ud), void *ud, char *epoch,
                          size_t epoch_size, uint64_t *seq, char *err, size_t errlen);

/* Monotonic milliseconds. */
uint64_t sb_svc_now_ms(void);

#endif
