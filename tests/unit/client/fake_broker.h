/*
 * fake_broker.h - a broker stand-in for the client tests: a real PUB and ROUTER bound on
 * tcp://127.0.0.1 with ports picked at run time, speaking docs/protocol.md. It keeps the
 * body of every change and presence message by seq so it can answer `since`, and it can
 * "lose" a message (record it without publishing) to make a gap.
 *
 * Ownership: the fake owns its sockets, context and history; an fb_req owns its frames.
 */
#ifndef FAKE_BROKER_H
#define FAKE_BROKER_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#define FB_MAX_TABLES 4
#define FB_MAX_HISTORY 256

typedef struct fb_msg {
    uint64_t seq;
    void *body;
    size_t len;
} fb_msg;

typedef struct fake_broker {
    void *ctx, *pub, *router;
    char pub_ep[128], svc_ep[128];
    char epoch[32];
    uint64_t seq;
    const char *tables[FB_MAX_TABLES];
    uint64_t tseq[FB_MAX_TABLES];
    size_t ntables;
    fb_msg hist[FB_MAX_HISTORY];
    size_t nhist;
    bool hb_on;
    uint32_t hb_ms;
    uint32_t announce_hb_ms; /* hb_ms put in heartbeats; 0: none, as older brokers */
    uint64_t last_hb_ms, next_hb_ms;
    size_t since_cap; /* messages per `since` reply (0: all), with more/upto beyond */
    /* As a CURVE broker serves a client restricted to the other tables: heartbeats on
     * "@hb/<principal>/" without `hidden` in tseq; changes of `hidden` take their seq and
     * tseq but are neither published nor replayed. NULL: plain mode. */
    const char *principal, *hidden;
} fake_broker;

/* A row of the test tables: {"id": id, "name": name}; name NULL packs a nil row. */
typedef struct fb_row {
    const char *table;
    const char *key;
    uint64_t version;
    int64_t id;
    const char *name;
} fb_row;

/* A received request: frames[0] is the routing id, frames[1..n-2] the envelope, the last
 * frame the msgpack body (decoded into `body`). */
typedef struct fb_req {
    zmq_msg_t frames[8];
    size_t n;
    msgpack_unpacked up;
    const msgpack_object *body;
} fb_req;

void fb_init(fake_broker *b, const char *epoch, uint32_t hb_ms, const char *const *tables,
             size_t ntables);
void fb_free(fake_broker *b);
/* A broker restart: new epoch, seq and tseq back to 0, history gone. */
void fb_new_epoch(fake_broker *b, const char *epoch);

/* A change event (row from id/name unless op is delete/truncate); published unless
 * `lose`. Returns its seq. */
uint64_t fb_change(fake_broker *b, const char *table, const char *key, const char *op,
                   uint64_t version, const char *origin, int64_t id, const char *name, bool lose);
/* An insert with made-up positions, published but neither recorded nor counted: what
 * anything else that can publish on the endpoint might send. */
void fb_forged_change(fake_broker *b, const char *table, const char *key, uint64_t seq,
                      uint64_t tseq, uint64_t version);
/* A presence message with one editor (client NULL: nobody). Returns its seq. */
uint64_t fb_presence(fake_broker *b, const char *table, const char *key, const char *client);
void fb_heartbeat(fake_broker *b);
/* Publish a heartbeat when hb_on and one is due. */
void fb_tick(fake_broker *b);
/* Publish raw frames (for malformed-input tests). */
void fb_publish_raw(fake_broker *b, const char *topic, const void *body, size_t len);

/* Read one request without waiting; false when none is queued. */
bool fb_poll_request(fake_broker *b, fb_req *r);
void fb_req_free(fb_req *r);
/* The request's op, or "" (static/borrowed until fb_req_free). */
bool fb_req_is(const fb_req *r, const char *op);
const msgpack_object *fb_req_get(const fb_req *r, const char *key);

void fb_reply_map(fake_broker *b, const fb_req *r, const msgpack_sbuffer *const *frames, size_t n);
void fb_reply_snapshot(fake_broker *b, const fb_req *r, uint64_t seq, const fb_row *rows, size_t n);
/* Everything after `from`, or since_cap messages with more: true and seq = upto = their last
 * seq. */
void fb_reply_since(fake_broker *b, const fb_req *r, uint64_t from);
/* A capped reply as a broker may lie: n messages after `from` (fewer if fewer are left),
 * more: true and the given upto as upto and seq (FB_NO_UPTO: no upto, seq the last). */
#define FB_NO_UPTO UINT64_MAX
void fb_reply_since_more(fake_broker *b, const fb_req *r, uint64_t from, size_t n, uint64_t upto);
void fb_reply_error(fake_broker *b, const fb_req *r, const char *code);
void fb_reply_ok(fake_broker *b, const fb_req *r);

uint64_t fb_now_ms(void);

#endif
