/*
 * pub.c - the events socket. An XPUB rather than a PUB so that subscriptions are ours to
 * admit: with ZMQ_XPUB_MANUAL every subscribe and unsubscribe of every peer is handed to us
 * as a message and applied only when subs.c says so.
 * A PUB/XPUB never blocks: a subscriber over its HWM silently misses messages (clients see
 * the seq gap and call `since`), so publish() only fails when ZeroMQ itself fails.
 */
#include "tz.h"

#include "sb_mp.h"
#include "sb_proto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define TZ_LINGER_MS 100    /* a stop() may flush for this long, then drops */
#define TZ_DRAIN_BUDGET 256 /* subscription messages read per wake-up */
#define TZ_PUB_RCVBUF 65536 /* SO_RCVBUF of an events connection */

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
        tz_subs_judge(t, &msg);
        zmq_msg_close(&msg);
    }
}

int tz_new_socket(tz *t, int type, const char *what, int hwm, void **out)
{
    void *s = zmq_socket(t->api->zmq_context(t->host), type);
    if (!s) {
        t->api->base.log(t->host, SB_LOG_ERROR, "cannot create the %s socket: %s", what,
                         zmq_strerror(errno));
        return SB_ERR_ZMQ;
    }
    int linger = TZ_LINGER_MS;
    int one = 1;
    /* The ZAP domain makes every handshake ask subs.c's handler, which decides (with CURVE)
     * and names the connection (User-Id). */
    const char *domain = type == ZMQ_XPUB ? TZ_ZAP_EVENTS : TZ_ZAP_SERVICE;
    int rc = zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    if (rc == 0)
        rc = zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    if (rc == 0)
        rc = zmq_setsockopt(s, ZMQ_ZAP_DOMAIN, domain, strlen(domain));
    /* Both sockets are CURVE servers when CURVE is on; a NULL client's handshake fails. */
    if (rc == 0 && t->clients)
        rc = zmq_setsockopt(s, ZMQ_CURVE_SERVER, &one, sizeof one);
    if (rc == 0 && t->clients)
        rc = zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, t->curve_secret, sizeof t->curve_secret);
    if (rc == 0 && type == ZMQ_XPUB) {
        /* Manual: subs.c admits each subscription, knowing its connection by the User-Id.
         * libzmq stores each subscription it reads from a connection's pipe, and reads on as
         * long as the pipe refills, which a flooding peer does faster than we judge. With RCVHWM 2
         * the pipe holds one message (the other place is taken for good by the credential message
         * libzmq writes first and never counts as read: pipe.cpp; with 1 nothing would ever pass),
         * so libzmq reads about one per recv and a cut stops the flood. A peer never needs more
         * than a small receive buffer either (it only subscribes). A subscription longer than
         * max_subscription_len disconnects (ZeroMQ). */
        int64_t cap = (int64_t)t->max_subscription_len + 1;
        int rcvbuf = TZ_PUB_RCVBUF, two = 2;
        rc = zmq_setsockopt(s, ZMQ_XPUB_MANUAL, &one, sizeof one);
        if (rc == 0)
            rc = zmq_setsockopt(s, ZMQ_RCVHWM, &two, sizeof two);
        if (rc == 0)
            rc = zmq_setsockopt(s, ZMQ_RCVBUF, &rcvbuf, sizeof rcvbuf);
        if (rc == 0)
            rc = zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &cap, sizeof cap);
    }
    if (rc == 0 && type == ZMQ_ROUTER) {
        /* EAGAIN/EHOSTUNREACH instead of silent drops; cap what a peer may make us read
         * (a peer that sends more is disconnected by ZeroMQ). */
        int64_t cap = t->max_request * 4;
        rc = zmq_setsockopt(s, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
        if (rc == 0)
            rc = zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &cap, sizeof cap);
    }
    if (rc < 0) {
        t->api->base.log(t->host, SB_LOG_ERROR, "cannot configure the %s socket: %s", what,
                         zmq_strerror(errno));
        zmq_close(s);
        return SB_ERR_ZMQ;
    }
    *out = s;
    return SB_OK;
}

int tz_bind(tz *t, void *s, const char *what, const char *endpoint)
{
    if (zmq_bind(s, endpoint) < 0) {
        if (errno == EADDRINUSE && t->rebinding)
            return SB_ERR_BUSY; /* the old listener's port, not yet released: retried */
        t->api->base.log(t->host, SB_LOG_ERROR, "cannot bind the %s socket to %s: %s", what,
                         endpoint, zmq_strerror(errno));
        return SB_ERR_ZMQ;
    }
    char bound[256];
    size_t blen = sizeof bound;
    if (zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, bound, &blen) < 0)
        strcpy(bound, endpoint);
    t->api->base.log(t->host, SB_LOG_INFO, "%s listening on %s", what, bound);
    return SB_OK;
}

int tz_bind_socket(tz *t, int type, const char *what, const char *endpoint, int hwm, void **out)
{
    int rc = tz_new_socket(t, type, what, hwm, out);
    if (rc == SB_OK && (rc = tz_bind(t, *out, what, endpoint)) < 0) {
        zmq_close(*out);
        *out = NULL;
    }
    return rc;
}

int tz_pub_start(tz *t)
{
    /* The ZAP handler and the monitor before the first peer can connect. */
    int rc = tz_new_socket(t, ZMQ_XPUB, "events (XPUB)", t->sndhwm, &t->pub);
    if (rc == SB_OK)
        rc = tz_subs_start(t, t->pub);
    if (rc == SB_OK)
        rc = tz_bind(t, t->pub, "events (XPUB)", t->pub_endpoint);
    if (rc < 0)
        return rc;
    rc = t->api->watch_zsock(t->host, t->pub, SB_IO_READ, on_pub, t, &t->pub_watch);
    if (rc < 0)
        t->api->base.log(t->host, SB_LOG_ERROR, "cannot watch the events socket: %s",
                         sb_strerror(rc));
    return rc;
}

void tz_pub_close(tz *t)
{
    t->api->base.unwatch(t->pub_watch);
    t->pub_watch = NULL;
    if (t->pub)
        zmq_close(t->pub);
    t->pub = NULL;
    tz_subs_stop(t);
}

void tz_pub_stop(tz *t)
{
    tz_pub_close(t);
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

typedef struct hb_reader {
    tz *t;
    const tz_principal *who;
} hb_reader;

static bool reads_table(void *ud, const char *name, size_t len)
{
    const hb_reader *r = ud;
    return tz_principal_reads(r->who, tz_table_index(r->t, name, len));
}

int tz_hb_encode(tz *t, const tz_principal *who, const void *body, size_t len, msgpack_sbuffer *out)
{
    hb_reader r = {t, who};
    return sb_proto_heartbeat_filter(body, len, reads_table, &r, out);
}

/* The heartbeat m for every principal with a connection subscribed to heartbeats, on its own
 * topic and with its own tables' tseq only. Each principal's once, however many connections
 * it has. */
static void publish_hb_per_principal(tz *t, const sb_message *m)
{
    const tz_principal **sent = NULL;
    size_t nsent = 0;
    for (size_t i = 0; i < t->nfds; i++) {
        const tz_principal *who = tz_subs_hb_principal(t, i);
        size_t k = 0;
        while (k < nsent && sent[k] != who)
            k++;
        if (!who || k < nsent)
            continue;
        const tz_principal **grown = realloc(sent, (nsent + 1) * sizeof *sent);
        if (!grown)
            break;
        sent = grown;
        sent[nsent++] = who;
        char topic[TZ_HB_TOPIC_MAX];
        size_t tl = tz_hb_topic(who, topic, sizeof topic);
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        int rc = tz_hb_encode(t, who, m->body, m->body_len, &sb);
        if (rc == SB_OK && (zmq_send(t->pub, topic, tl, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
                            zmq_send(t->pub, sb.data, sb.size, ZMQ_DONTWAIT) < 0))
            rc = SB_ERR_ZMQ;
        if (rc < 0 && t->publish_failed++ == 0)
            t->api->base.log(t->host, SB_LOG_WARN, "cannot publish the heartbeat of %s: %s",
                             who->name, rc == SB_ERR_ZMQ ? zmq_strerror(errno) : sb_strerror(rc));
        msgpack_sbuffer_destroy(&sb);
    }
    free(sent);
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
    /* With CURVE every heartbeat subscription stands for @hb/<name>/: nobody could receive
     * the core's @hb, which names every table. */
    if (m->kind == SB_MSG_HEARTBEAT && t->clients) {
        publish_hb_per_principal(t, m);
        return SB_OK;
    }
    static const unsigned char empty[1];
    const void *body = m->body_len ? m->body : empty;
    const void *topic = m->topic_len ? (const void *)m->topic : empty;
    if (zmq_send(t->pub, topic, m->topic_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(t->pub, body, m->body_len, ZMQ_DONTWAIT) < 0) {
        if (t->publish_failed++ == 0)
            t->api->base.log(t->host, SB_LOG_WARN, "cannot publish (seq %llu): %s",
                             (unsigned long long)m->seq, zmq_strerror(errno));
        return SB_ERR_ZMQ;
    }
    return SB_OK;
}
