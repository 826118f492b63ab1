/*
 * peer.c - what is held for each client.
 *
 * ZeroMQ queues up to reply_hwm replies per client and does not say how many bytes that is,
 * nor when they left. So replies go to it without a copy (zmq_msg_init_data): its I/O thread
 * calls frame_free() once a frame is written to the connection or dropped with it, and that
 * counts the frame down from the client's account and the total. The transport checks a
 * client's account before it hands a reply over (service.c), which bounds the bytes ZeroMQ
 * holds per client (max_peer_bytes); snapshots check the total (max_pending_bytes).
 *
 * A client's connection (fd and inode, from the request's frames) tells whether it is still
 * there while its snapshot runs: a closed socket, or one that hung up, means it is gone.
 */
#define _GNU_SOURCE /* POLLRDHUP */
#include "tz.h"

#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zmq.h>

/* Owned by ZeroMQ with its frame from zmq_msg_init_data() until frame_free(). */
typedef struct tz_sent {
    tz_acct *peer, *total; /* one reference each */
    size_t cost;
} tz_sent;

tz_acct *tz_acct_new(void)
{
    tz_acct *a = malloc(sizeof *a);
    if (a) {
        atomic_init(&a->bytes, 0);
        atomic_init(&a->refs, 1);
    }
    return a;
}

void tz_acct_unref(tz_acct *a)
{
    if (a && atomic_fetch_sub(&a->refs, 1) == 1)
        free(a);
}

static void charge(tz_acct *a, size_t cost)
{
    atomic_fetch_add(&a->refs, 1);
    atomic_fetch_add(&a->bytes, cost);
}

static void discharge(tz_acct *a, size_t cost)
{
    atomic_fetch_sub(&a->bytes, cost);
    tz_acct_unref(a);
}

/* Called by ZeroMQ, on any thread: the frame is written or dropped. */
static void frame_free(void *data, void *hint)
{
    tz_sent *s = hint;
    free(data);
    discharge(s->peer, s->cost);
    discharge(s->total, s->cost);
    free(s);
}

void tz_peer_pin_code(tz *t)
{
    /* ZeroMQ's threads call frame_free() until the context ends, after the broker may have
     * closed this plugin: keep its code loaded for good. Linked into a program (the unit
     * tests), there is nothing to pin and dlopen() finds no library by that name. */
    Dl_info info;
    if (!dladdr((void *)frame_free, &info) || !info.dli_fname ||
        !dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE))
        t->api->base.log(t->host, SB_LOG_DEBUG, "plugin code not pinned: %s", dlerror());
}

static tz_peer *find(tz *t, const tz_frames *msg)
{
    for (tz_peer *p = t->peers; p; p = p->next)
        if (p->idlen == msg->v[0].len && memcmp(p->id, msg->v[0].data, p->idlen) == 0)
            return p;
    return NULL;
}

size_t tz_peer_queued(tz *t, const tz_frames *msg)
{
    tz_peer *p = msg->n ? find(t, msg) : NULL;
    return p ? atomic_load(&p->acct->bytes) : 0;
}

static tz_peer *find_or_add(tz *t, const tz_frames *msg)
{
    tz_peer *p = find(t, msg);
    if (p)
        return p;
    tz_peer_prune(t, false); /* forget the clients that are done before adding one */
    p = malloc(sizeof *p + msg->v[0].len);
    if (!p)
        return NULL;
    if (!(p->acct = tz_acct_new())) {
        free(p);
        return NULL;
    }
    p->idlen = msg->v[0].len;
    memcpy(p->id, msg->v[0].data, p->idlen);
    p->next = t->peers;
    t->peers = p;
    return p;
}

void tz_peer_prune(tz *t, bool all)
{
    tz_peer **link = &t->peers;
    while (*link) {
        tz_peer *p = *link;
        if (!all && atomic_load(&p->acct->bytes) > 0) {
            link = &p->next;
            continue;
        }
        *link = p->next;
        tz_acct_unref(p->acct); /* frames still in ZeroMQ keep it alive */
        free(p);
    }
}

int tz_peer_send_rest(tz *t, tz_frames *msg)
{
    /* The routing frame is out: nothing may stop the message halfway, so without memory
     * for the counts the rest goes as uncounted copies. */
    tz_peer *p = find_or_add(t, msg);
    for (size_t i = 1; i < msg->n; i++) {
        tz_frame *f = &msg->v[i];
        tz_sent *s = p ? malloc(sizeof *s) : NULL;
        zmq_msg_t m;
        if (!s || zmq_msg_init_data(&m, f->data, f->len, frame_free, s) != 0) {
            free(s);
            int flags = ZMQ_DONTWAIT | (i + 1 < msg->n ? ZMQ_SNDMORE : 0);
            if (zmq_send(t->router, f->data, f->len, flags) < 0)
                return SB_ERR_ZMQ;
            continue;
        }
        /* ZeroMQ owns the bytes now, whatever happens to the send (msg->bytes stays: the
         * caller's counts of msg still hold). */
        *s = (tz_sent){p->acct, t->total, f->len + TZ_FRAME_COST};
        charge(s->peer, s->cost);
        charge(s->total, s->cost);
        f->data = NULL;
        int flags = ZMQ_DONTWAIT | (i + 1 < msg->n ? ZMQ_SNDMORE : 0);
        if (zmq_msg_send(&m, t->router, flags) < 0) {
            int err = errno;
            zmq_msg_close(&m); /* frame_free() */
            errno = err;
            return SB_ERR_ZMQ;
        }
    }
    return SB_OK;
}

tz_conn tz_conn_of(int fd)
{
    tz_conn c = {.fd = fd, .ino = 0};
    struct stat st;
    if (c.fd >= 0 && fstat(c.fd, &st) == 0)
        c.ino = st.st_ino;
    else
        c.fd = -1;
    return c;
}

bool tz_conn_alive(const tz_conn *c)
{
    if (c->fd < 0)
        return true; /* nothing to ask: the reply's EHOSTUNREACH or the timeout will tell */
    /* ZeroMQ closes a connection's fd when the peer goes, and the number may be reused: the
     * inode tells the socket apart. */
    struct stat st;
    if (fstat(c->fd, &st) != 0 || st.st_ino != c->ino)
        return false;
    struct pollfd pfd = {.fd = c->fd, .events = POLLRDHUP};
    return poll(&pfd, 1, 0) <= 0 || !(pfd.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

size_t tz_reply_bytes(const tz *t)
{
    return (t->total ? atomic_load(&t->total->bytes) : 0) + t->pending_bytes + t->snap_bytes;
}
