/*
 * pub.c - the events socket. An XPUB rather than a PUB so that subscriptions can be
 * counted: with ZMQ_XPUB_VERBOSER every subscribe and unsubscribe of every peer (also the
 * implicit unsubscribes of a peer that disconnects) is handed to us as a message.
 * A PUB/XPUB never blocks: a subscriber over its HWM silently misses messages (clients see
 * the seq gap and call `since`), so publish() only fails when ZeroMQ itself fails.
 */
#include "tz.h"

#include "sb_mp.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define TZ_LINGER_MS 100    /* a stop() may flush for this long, then drops */
#define TZ_DRAIN_BUDGET 256 /* subscription messages read per wake-up */

/* Every protocol client subscribes to exactly "@hb" (last, see docs/protocol.md), so one
 * live "@hb" subscription is one subscriber. Prefixes of it ("" of an all-tables client)
 * also receive heartbeats but come next to an "@hb" of the same peer: not counted. */
static bool is_heartbeat_subscription(const unsigned char *topic, size_t len)
{
    return len == 3 && memcmp(topic, "@hb", 3) == 0;
}

static void on_pub(void *ud, unsigned revents)
{
    tz *t = ud;
    (void)revents;
    for (int i = 0; i < TZ_DRAIN_BUDGET; i++) {
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, t->pub, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&msg);
            return;
        }
        const unsigned char *d = zmq_msg_data(&msg);
        size_t len = zmq_msg_size(&msg);
        /* \x01topic = subscribe, \x00topic = unsubscribe; anything else is not ours. */
        if (len >= 1 && d[0] <= 1 && is_heartbeat_subscription(d + 1, len - 1)) {
            t->subscribers += d[0] == 1 ? 1 : -1;
            if (t->subscribers < 0)
                t->subscribers = 0;
        }
        zmq_msg_close(&msg);
    }
}

int tz_bind_socket(tz *t, int type, const char *what, const char *endpoint, int hwm, void **out)
{
    void *s = zmq_socket(t->api->zmq_context(t->host), type);
    if (!s) {
        t->api->log(t->host, SB_LOG_ERROR, "cannot create the %s socket: %s", what,
                    zmq_strerror(errno));
        return SB_ERR_ZMQ;
    }
    int linger = TZ_LINGER_MS;
    int one = 1;
    int rc = zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    if (rc == 0)
        rc = zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    if (rc == 0 && type == ZMQ_XPUB)
        rc = zmq_setsockopt(s, ZMQ_XPUB_VERBOSER, &one, sizeof one);
    if (rc == 0 && type == ZMQ_ROUTER) {
        /* EAGAIN/EHOSTUNREACH instead of silent drops; cap what a peer may make us read
         * (a peer that sends more is disconnected by ZeroMQ). */
        int64_t cap = t->max_request * 4;
        rc = zmq_setsockopt(s, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
        if (rc == 0)
            rc = zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &cap, sizeof cap);
    }
    if (rc < 0) {
        t->api->log(t->host, SB_LOG_ERROR, "cannot configure the %s socket: %s", what,
                    zmq_strerror(errno));
        zmq_close(s);
        return SB_ERR_ZMQ;
    }
    if (zmq_bind(s, endpoint) < 0) {
        t->api->log(t->host, SB_LOG_ERROR, "cannot bind the %s socket to %s: %s", what, endpoint,
                    zmq_strerror(errno));
        zmq_close(s);
        return SB_ERR_ZMQ;
    }
    char bound[256];
    size_t blen = sizeof bound;
    if (zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, bound, &blen) < 0)
        strcpy(bound, endpoint);
    t->api->log(t->host, SB_LOG_INFO, "%s listening on %s", what, bound);
    *out = s;
    return SB_OK;
}

int tz_pub_start(tz *t)
{
    int rc = tz_bind_socket(t, ZMQ_XPUB, "events (XPUB)", t->pub_endpoint, t->sndhwm, &t->pub);
    if (rc < 0)
        return rc;
    rc = t->api->watch_zsock(t->host, t->pub, SB_IO_READ, on_pub, t, &t->pub_watch);
    if (rc < 0)
        t->api->log(t->host, SB_LOG_ERROR, "cannot watch the events socket: %s", sb_strerror(rc));
    return rc;
}

void tz_pub_stop(tz *t)
{
    t->api->unwatch(t->pub_watch);
    t->pub_watch = NULL;
    if (t->pub)
        zmq_close(t->pub);
    t->pub = NULL;
    t->subscribers = 0;
    free(t->last_hb);
    t->last_hb = NULL;
    t->last_hb_len = 0;
    tz_editors_clear(t);
}

/* Keep a copy of a heartbeat's body; without memory, forget the old one (it would lie). */
static void keep_heartbeat(tz *t, const sb_message *m)
{
    unsigned char *copy = realloc(t->last_hb, m->body_len ? m->body_len : 1);
    if (!copy) {
        free(t->last_hb);
        t->last_hb = NULL;
        t->last_hb_len = 0;
        return;
    }
    if (m->body_len)
        memcpy(copy, m->body, m->body_len);
    t->last_hb = copy;
    t->last_hb_len = m->body_len;
}

int tz_last_heartbeat(tz *t, msgpack_unpacked *up)
{
    msgpack_unpacked_init(up);
    if (!t->last_hb)
        return SB_ERR_NOTFOUND;
    int rc = sb_mp_unpack(t->last_hb, t->last_hb_len, NULL, up);
    if (rc == SB_OK && up->data.type != MSGPACK_OBJECT_MAP)
        rc = SB_ERR_INVAL;
    return rc;
}

int tz_publish(void *state, const sb_message *m)
{
    tz *t = state;
    if (!t->pub)
        return SB_ERR_STATE;
    if (m->kind == SB_MSG_HEARTBEAT)
        keep_heartbeat(t, m);
    else if (m->kind == SB_MSG_PRESENCE)
        tz_editors_note(t, m);
    static const unsigned char empty[1];
    const void *body = m->body_len ? m->body : empty;
    const void *topic = m->topic_len ? (const void *)m->topic : empty;
    if (zmq_send(t->pub, topic, m->topic_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(t->pub, body, m->body_len, ZMQ_DONTWAIT) < 0) {
        if (t->publish_failed++ == 0)
            t->api->log(t->host, SB_LOG_WARN, "cannot publish (seq %llu): %s",
                        (unsigned long long)m->seq, zmq_strerror(errno));
        return SB_ERR_ZMQ;
    }
    return SB_OK;
}
