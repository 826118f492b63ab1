/*
 * service.c - the ROUTER service socket.
 *
 * Requests: each message is [routing id][envelope...][body]; the frames before the body are
 * echoed in front of the reply (a REQ's empty delimiter, a DEALER's own envelope).
 *
 * Replies never block the loop. With ZMQ_ROUTER_MANDATORY and ZMQ_DONTWAIT a send answers
 * EAGAIN when the peer is at its HWM and EHOSTUNREACH when the peer is gone (the reply is
 * dropped and the peer's running snapshots cancelled). A reply also waits while what ZeroMQ
 * holds for its peer (peer.c) would go over max_peer_bytes. A reply that waits is held
 * here, in order per peer, and the socket is watched for writability (or retried after a
 * back-off). Held replies are bounded in number and bytes, per peer and in total; beyond,
 * the oldest is dropped with a log line.
 */
#include "tz.h"

#include <errno.h>
#include <stdlib.h>
#include <zmq.h>

#define TZ_RECV_BUDGET 64 /* requests read per wake-up, so one busy client cannot hog the loop */
/* Reply bytes built per wake-up: past them the other requests wait for the next turn, so a
 * flood of `since` requests (up to 1 MiB of copying each) stalls the loop for one at most. */
#define TZ_TURN_BYTES (1u << 20)
#define TZ_MAX_FRAMES 16 /* frames per request: routing id, envelope, body */
#define TZ_RETRY_MS 20   /* back-off when POLLOUT fired but no held reply could go */

struct tz_pending {
    tz_pending *next;
    tz_frames msg;
};

/* What msg costs once ZeroMQ holds it (peer.c counts the same). */
static size_t cost(const tz_frames *msg)
{
    return msg->bytes + msg->n * TZ_FRAME_COST;
}

/* 0 sent; SB_ERR_BUSY peer at its HWM or over its byte budget (nothing sent); SB_ERR_NOTFOUND
 * peer gone; SB_ERR_ZMQ. A reply goes anyway when ZeroMQ holds nothing for its peer, so that
 * one larger than the budget is not held for ever. The total is not checked here: clients
 * that do not read must not stop the replies of those that do (snapshots and held replies
 * are checked against it instead). */
static int send_now(tz *t, tz_frames *msg)
{
    size_t peer = tz_peer_queued(t, msg);
    if (peer > 0 && peer + cost(msg) > t->max_peer_bytes)
        return SB_ERR_BUSY;
    int rc = SB_OK;
    /* Only the routing frame can be refused: the rest of a message always follows it. */
    if (zmq_send(t->router, msg->v[0].data, msg->v[0].len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        rc = errno == EAGAIN ? SB_ERR_BUSY : errno == EHOSTUNREACH ? SB_ERR_NOTFOUND : SB_ERR_ZMQ;
    else
        rc = tz_peer_send_rest(t, msg);
    if (rc == SB_ERR_ZMQ)
        t->api->base.log(t->host, SB_LOG_WARN, "cannot send a reply: %s", zmq_strerror(errno));
    return rc;
}

static void drop_reply(tz *t, tz_frames *msg)
{
    t->replies_dropped++;
    tz_frames_clear(msg);
}

static void peer_gone(tz *t, tz_frames *msg)
{
    t->api->base.log(t->host, SB_LOG_DEBUG, "client gone, reply of %zu bytes dropped", msg->bytes);
    tz_snapshot_cancel_peer(t, msg);
    drop_reply(t, msg);
}

static void free_pending(tz *t, tz_pending *p)
{
    t->pending_count--;
    t->pending_bytes -= p->msg.bytes;
    tz_frames_clear(&p->msg);
    free(p);
}

static void drop_oldest(tz *t)
{
    tz_pending *p = t->pending_head;
    t->pending_head = p->next;
    if (!t->pending_head)
        t->pending_tail = NULL;
    t->api->base.log(t->host, SB_LOG_WARN,
                     "too many replies held for slow clients (%zu, %zu bytes): dropping the "
                     "oldest (%zu bytes)",
                     t->pending_count, t->pending_bytes, p->msg.bytes);
    t->replies_dropped++;
    free_pending(t, p);
}

static void want_write(tz *t, bool on)
{
    if (t->router_watch)
        t->api->base.watch_set(t->router_watch, SB_IO_READ | (on ? SB_IO_WRITE : 0));
}

/* Bytes of held replies for the peer that routes like msg. */
static size_t held_for(tz *t, const tz_frames *msg)
{
    size_t n = 0;
    for (tz_pending *p = t->pending_head; p; p = p->next)
        if (tz_frames_same_peer(&p->msg, msg))
            n += p->msg.bytes;
    return n;
}

size_t tz_service_peer_bytes(tz *t, const tz_frames *msg)
{
    return tz_peer_queued(t, msg) + held_for(t, msg) + tz_snapshot_peer_bytes(t, msg);
}

static void hold(tz *t, tz_frames *msg)
{
    size_t peer = tz_service_peer_bytes(t, msg);
    if (peer > 0 && peer + msg->bytes > t->max_peer_bytes) {
        /* It does not read what it asked for: its own reply goes, not someone else's. */
        t->api->base.log(t->host, SB_LOG_WARN,
                         "a client holds %zu bytes of unread replies: a reply of %zu bytes over "
                         "max_peer_bytes is dropped",
                         peer, msg->bytes);
        drop_reply(t, msg);
        return;
    }
    while (t->pending_head && (t->pending_count >= t->max_pending_replies ||
                               tz_reply_bytes(t) + msg->bytes > t->max_pending_bytes))
        drop_oldest(t);
    if (tz_reply_bytes(t) + msg->bytes > t->max_pending_bytes) {
        t->api->base.log(
            t->host, SB_LOG_WARN,
            "a reply of %zu bytes for a slow client exceeds max_pending_bytes: dropped",
            msg->bytes);
        drop_reply(t, msg);
        return;
    }
    tz_pending *p = calloc(1, sizeof *p);
    if (!p) {
        t->api->base.log(t->host, SB_LOG_ERROR, "out of memory holding a reply: dropped");
        drop_reply(t, msg);
        return;
    }
    p->msg = *msg;
    *msg = (tz_frames){0};
    if (t->pending_tail)
        t->pending_tail->next = p;
    else
        t->pending_head = p;
    t->pending_tail = p;
    t->pending_count++;
    t->pending_bytes += p->msg.bytes;
    want_write(t, true);
}

static bool peer_has_pending(tz *t, const tz_frames *msg)
{
    for (tz_pending *p = t->pending_head; p; p = p->next)
        if (tz_frames_same_peer(&p->msg, msg))
            return true;
    return false;
}

void tz_service_reply(tz *t, tz_frames *msg)
{
    if (!t->router || msg->n < 2) {
        drop_reply(t, msg);
        return;
    }
    /* Replies to one peer leave in request order: behind its held ones. */
    if (peer_has_pending(t, msg)) {
        hold(t, msg);
        return;
    }
    int rc = send_now(t, msg);
    if (rc == SB_ERR_BUSY)
        hold(t, msg);
    else if (rc == SB_ERR_NOTFOUND)
        peer_gone(t, msg);
    else
        tz_frames_clear(msg);
}

static void on_retry(void *ud)
{
    tz *t = ud;
    t->retry_timer = NULL; /* one-shot: freed by the host after this call */
    want_write(t, true);
}

/* Send held replies, oldest first, skipping peers still at their HWM. */
static void flush_pending(tz *t)
{
    bool progress = false;
    tz_pending **link = &t->pending_head, *prev = NULL;
    while (*link) {
        tz_pending *p = *link;
        bool blocked = false;
        /* A peer refused an earlier reply in this pass: keep its order. */
        for (tz_pending *q = t->pending_head; q != p && !blocked; q = q->next)
            blocked = tz_frames_same_peer(&q->msg, &p->msg);
        int rc = blocked ? SB_ERR_BUSY : send_now(t, &p->msg);
        if (rc == SB_ERR_BUSY) {
            prev = p;
            link = &p->next;
            continue;
        }
        *link = p->next;
        if (t->pending_tail == p)
            t->pending_tail = prev;
        progress = true;
        if (rc == SB_ERR_NOTFOUND) {
            /* Move the frames out first: cancelling may not see a half-freed entry. */
            tz_frames msg = p->msg;
            p->msg = (tz_frames){0};
            t->pending_bytes -= msg.bytes;
            t->pending_count--;
            free(p);
            peer_gone(t, &msg);
        } else {
            free_pending(t, p);
        }
    }
    if (!t->pending_head) {
        want_write(t, false);
    } else if (!progress) {
        /* POLLOUT on a ROUTER means "some peer can take a message", not ours: back off
         * instead of spinning until one of ours can. */
        want_write(t, false);
        if (!t->retry_timer &&
            t->api->base.timer_start(t->host, TZ_RETRY_MS, 0, on_retry, t, &t->retry_timer) < 0)
            want_write(t, true);
    }
}

/* Read one request. Returns false when none is waiting. */
static bool read_request(tz *t)
{
    tz_frames frames = {0};
    bool more = true, overflow = false, first = true, known = false;
    while (more) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, t->router, ZMQ_DONTWAIT) < 0) {
            if (!first)
                t->api->base.log(t->host, SB_LOG_WARN, "cannot read a request: %s",
                                 zmq_strerror(errno));
            zmq_msg_close(&part);
            tz_frames_clear(&frames);
            return !first;
        }
        /* ZeroMQ does not tell the connection on every frame (a routing id prefetched by
         * ZMQ_EVENTS has no metadata): take the first that does, its socket fd and the
         * User-Id our ZAP handler gave the connection. */
        if (first || t->conn_fd < 0)
            t->conn_fd = zmq_msg_get(&part, ZMQ_SRCFD);
        if (first)
            t->req_who = NULL;
        uint64_t conn;
        if (!known)
            known = tz_user_id_parse(t, zmq_msg_gets(&part, "User-Id"), &conn, &t->req_who) == 0;
        first = false;
        more = zmq_msg_more(&part);
        if (frames.n >= TZ_MAX_FRAMES || overflow ||
            tz_frames_push(&frames, zmq_msg_data(&part), zmq_msg_size(&part)) < 0)
            overflow = true;
        zmq_msg_close(&part);
    }
    /* Without a User-Id (an inproc peer: no handshake) plain mode restricts nothing, and
     * CURVE does not serve it. */
    bool stranger = !known && t->clients;
    if (overflow || frames.n < 2 || stranger) {
        /* Without a trustworthy envelope there is nobody to answer. */
        t->requests++;
        t->errors++;
        t->api->base.log(t->host, SB_LOG_DEBUG, "request with %zu+ frames%s dropped", frames.n,
                         stranger ? " from an unauthenticated peer" : "");
        tz_frames_clear(&frames);
        return true;
    }
    tz_frame body = frames.v[--frames.n];
    frames.bytes -= body.len;
    tz_request_serve(t, &frames, body.data, body.len);
    free(body.data);
    return true;
}

static void on_router(void *ud, unsigned revents)
{
    tz *t = ud;
    if (revents & SB_IO_WRITE)
        flush_pending(t);
    t->turn_bytes = 0;
    if (revents & SB_IO_READ)
        for (int i = 0;
             i < TZ_RECV_BUDGET && t->turn_bytes < TZ_TURN_BYTES && t->router && read_request(t);
             i++)
            ;
}

int tz_service_start(tz *t)
{
    if (!t->total && !(t->total = tz_acct_new()))
        return SB_ERR_NOMEM;
    tz_peer_pin_code(t);
    int rc = tz_bind_socket(t, ZMQ_ROUTER, "service (ROUTER)", t->service_endpoint, t->reply_hwm,
                            &t->router);
    if (rc < 0)
        return rc;
    rc = t->api->watch_zsock(t->host, t->router, SB_IO_READ, on_router, t, &t->router_watch);
    if (rc < 0)
        t->api->base.log(t->host, SB_LOG_ERROR, "cannot watch the service socket: %s",
                         sb_strerror(rc));
    return rc;
}

void tz_service_stop(tz *t)
{
    tz_snapshot_cancel_all(t);
    while (t->pending_head) {
        tz_pending *p = t->pending_head;
        t->pending_head = p->next;
        free_pending(t, p);
    }
    t->pending_tail = NULL;
    t->api->base.timer_stop(t->retry_timer);
    t->retry_timer = NULL;
    t->api->base.unwatch(t->router_watch);
    t->router_watch = NULL;
    if (t->router)
        zmq_close(t->router);
    t->router = NULL;
    /* Frames ZeroMQ still holds keep their accounts until it frees them. */
    tz_peer_prune(t, true);
    tz_acct_unref(t->total);
    t->total = NULL;
}
