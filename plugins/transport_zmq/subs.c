/*
 * subs.c - which subscriptions the events socket admits, per connection (docs/protocol.md,
 * "Subscriptions"; the libzmq 4.3.4 facts below are from its src/ and were checked by test).
 *
 * The XPUB runs with ZMQ_XPUB_MANUAL: a subscription reaches the distribution trie only when
 * we confirm it with ZMQ_SUBSCRIBE, which applies to the pipe of the message received last
 * (xpub.cpp: xrecv sets _last_pipe, xsetsockopt adds to it). To know who sent it, the
 * handshake of every connection asks our ZAP handler (ZMQ_ZAP_DOMAIN on both sockets; the
 * handler is a ROUTER on inproc://zeromq.zap.01 in the broker's context), which decides (with
 * CURVE: whether the client's key is in clients_file) and answers 200 with a connection id no
 * other connection gets, and with CURVE the client's principal (clients.c). libzmq attaches
 * it to every message of that connection as "User-Id", beside the connection's socket
 * (ZMQ_SRCFD; stream_engine_base.cpp init_properties and zap_client.cpp).
 *
 * Refusing alone bounds nothing: libzmq keeps every subscription a peer sends in a trie of its
 * own until the peer leaves, admitted or not (xpub.cpp, _manual_subscriptions). A connection
 * whose refused subscriptions pass its budget is therefore disconnected: its TCP connection
 * is reset under libzmq (cut()), which libzmq handles as the peer going away.
 *
 * A socket monitor reports ZMQ_EVENT_DISCONNECTED with the socket before libzmq closes it and
 * before the connection's pipe ends (stream_engine_base.cpp error()). We read the monitor after
 * every subscription message and before every ZAP answer, so by the time a message is judged
 * or a connection id handed out, every earlier disconnect on that socket is known: ids below a
 * socket's floor are gone. A gone connection's late messages are ignored, never confirmed:
 * libzmq 4.3.4 would apply a ZMQ_SUBSCRIBE to the ended pipe (fixed later, libzmq 2df7ab6a).
 */
#include "tz.h"

#include "sb_proto.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <zmq.h>

#define TZ_ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define TZ_ZAP_BUDGET 256    /* ZAP requests answered per wake-up */
#define TZ_ZAP_FRAMES 10     /* frames of a request kept (NULL sends 8, CURVE 9) */
#define TZ_MAX_FD (1 << 20)  /* sockets beyond are not tracked (far above any ulimit) */
#define TZ_LOG_EVERY_MS 1000 /* at most one refusal line, and one cut line, this often */
#define TZ_LOG_TOPIC 48      /* bytes of an untrusted topic quoted in a log line */
#define TZ_SET_MIN 16        /* first size of a connection's topic set */

/* A topic and, in a connection's confirmed set, how many of its subscriptions stand for it. */
typedef struct tz_topic {
    size_t refs;
    size_t len;
    unsigned char data[];
} tz_topic;

/* A set of topics: open addressing (v malloc'd; each topic malloc'd). */
typedef struct tz_topic_set {
    tz_topic **v;
    size_t cap, n, bytes;
} tz_topic_set;

/* One events connection that has sent a subscription. Owned by its fd slot (t->fds). */
struct tz_subscriber {
    uint64_t id;             /* the connection id our ZAP handler gave it */
    const tz_principal *who; /* whom it authenticated as (NULL in plain mode) */
    int fd;
    struct sockaddr_storage addr; /* at first sight: a cut checks the socket is still it */
    socklen_t addrlen;
    tz_topic_set sent; /* the subscriptions admitted, as the peer sent them */
    tz_topic_set conf; /* what they stand for, confirmed to libzmq (the same in plain mode) */
    size_t refused, refused_bytes;
    bool hb, warned, cut;
};

/* ---- the rule ------------------------------------------------------------------------ */

static bool is_prefix(const unsigned char *s, size_t len, const char *of)
{
    size_t n = strlen(of);
    return len <= n && memcmp(s, of, len) == 0;
}

/* A table's topics: s is a prefix of "<table>/" or starts with it (any key after). */
static bool data_prefix_valid(const char *const *tables, size_t n, const unsigned char *s,
                              size_t len)
{
    for (size_t i = 0; i < n; i++) {
        size_t tl = strlen(tables[i]);
        if (len <= tl ? memcmp(s, tables[i], len) == 0
                      : memcmp(s, tables[i], tl) == 0 && s[tl] == '/')
            return true;
    }
    return false;
}

bool tz_subscription_valid(const char *const *tables, size_t n, const unsigned char *s, size_t len)
{
    static const char presence[] = SB_PROTO_TOPIC_PRESENCE;
    const size_t pl = sizeof presence - 1;
    if (is_prefix(s, len, SB_PROTO_TOPIC_HB) || is_prefix(s, len, presence))
        return true;
    if (len > pl && memcmp(s, presence, pl) == 0)
        return data_prefix_valid(tables, n, s + pl, len - pl);
    return data_prefix_valid(tables, n, s, len);
}

/* One topic of what a subscription stands for: pieces a, b, c joined (b and c may be NULL). */
static int narrow_emit(tz_topic_fn fn, void *ud, const char *a, const char *b, const char *c)
{
    char buf[TZ_HB_TOPIC_MAX + 160]; /* a table name has at most 127 bytes (broker/config.c) */
    int n = snprintf(buf, sizeof buf, "%s%s%s", a, b ? b : "", c ? c : "");
    if (n < 0 || (size_t)n >= sizeof buf)
        return SB_ERR_INVAL;
    int rc = fn(ud, (const unsigned char *)buf, (size_t)n);
    return rc < 0 ? rc : 1;
}

/* The data topics d (after `prefix`: "" or "@presence/"; s is the whole subscription) stands
 * for inside who's tables: "<table>/" for each table whose "<table>/" starts with d, or s
 * itself when d is inside one table ("<table>/<key prefix>"). */
static int narrow_data(tz *t, const tz_principal *who, const unsigned char *s, size_t len,
                       const char *prefix, tz_topic_fn fn, void *ud)
{
    size_t pl = strlen(prefix), n = 0;
    const unsigned char *d = s + pl;
    size_t dl = len - pl;
    const char *const *tables = t->api->base.tables(t->host, &n);
    int count = 0, rc = 0;
    for (size_t i = 0; rc >= 0 && i < n; i++) {
        size_t tl = strlen(tables[i]);
        if (!tz_principal_reads(who, (int)i))
            continue;
        rc = 0;
        if (dl <= tl && memcmp(d, tables[i], dl) == 0)
            rc = narrow_emit(fn, ud, prefix, tables[i], "/");
        else if (dl > tl && d[tl] == '/' && memcmp(d, tables[i], tl) == 0 &&
                 (rc = fn(ud, s, len)) >= 0)
            rc = 1;
        count += rc > 0 ? rc : 0;
    }
    return rc < 0 ? rc : count;
}

size_t tz_hb_topic(const tz_principal *who, char *buf, size_t cap)
{
    return sb_proto_hb_topic(who ? who->name : NULL, buf, cap);
}

int tz_subs_narrow(tz *t, const tz_principal *who, const unsigned char *s, size_t len,
                   tz_topic_fn fn, void *ud)
{
    static const char presence[] = SB_PROTO_TOPIC_PRESENCE;
    const size_t pl = sizeof presence - 1;
    if (!who) {
        size_t n = 0;
        const char *const *tables = t->api->base.tables(t->host, &n);
        if (!tz_subscription_valid(tables, n, s, len))
            return 0;
        int rc = fn(ud, s, len);
        return rc < 0 ? rc : 1;
    }
    char hb[TZ_HB_TOPIC_MAX];
    size_t hl = tz_hb_topic(who, hb, sizeof hb);
    int count = 0, rc = 0;
    if (hl && is_prefix(s, len, hb))
        rc = narrow_emit(fn, ud, hb, NULL, NULL);
    count += rc > 0 ? rc : 0;
    if (rc >= 0 && is_prefix(s, len, presence)) {
        size_t n = 0;
        const char *const *tables = t->api->base.tables(t->host, &n);
        for (size_t i = 0; rc >= 0 && i < n; i++)
            if (tz_principal_reads(who, (int)i) &&
                (rc = narrow_emit(fn, ud, presence, tables[i], "/")) > 0)
                count++;
    } else if (rc >= 0 && len > pl && memcmp(s, presence, pl) == 0) {
        rc = narrow_data(t, who, s, len, presence, fn, ud);
        count += rc > 0 ? rc : 0;
    }
    if (rc >= 0) {
        rc = narrow_data(t, who, s, len, "", fn, ud);
        count += rc > 0 ? rc : 0;
    }
    return rc < 0 ? rc : count;
}

/* ---- a connection's topic set ---------------------------------------------------------- */

static uint64_t topic_hash(const unsigned char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ s[i]) * 1099511628211ULL;
    return h;
}

/* Slot holding the topic, or the empty slot where it would go. cap > n, a power of 2. */
static size_t set_find(const tz_topic_set *p, const unsigned char *s, size_t len)
{
    size_t mask = p->cap - 1;
    size_t i = topic_hash(s, len) & mask;
    while (p->v[i] && !(p->v[i]->len == len && memcmp(p->v[i]->data, s, len) == 0))
        i = (i + 1) & mask;
    return i;
}

static tz_topic *set_get(const tz_topic_set *p, const unsigned char *s, size_t len)
{
    return p->cap ? p->v[set_find(p, s, len)] : NULL;
}

static int set_grow(tz_topic_set *p)
{
    size_t cap = p->cap ? p->cap * 2 : TZ_SET_MIN;
    tz_topic **old = p->v;
    size_t oldcap = p->cap;
    p->v = calloc(cap, sizeof *p->v);
    if (!p->v) {
        p->v = old;
        return SB_ERR_NOMEM;
    }
    p->cap = cap;
    for (size_t i = 0; i < oldcap; i++)
        if (old[i])
            p->v[set_find(p, old[i]->data, old[i]->len)] = old[i];
    free(old);
    return SB_OK;
}

static int set_add(tz_topic_set *p, const unsigned char *s, size_t len)
{
    if ((p->n + 1) * 4 > p->cap * 3 && set_grow(p) < 0)
        return SB_ERR_NOMEM;
    tz_topic *tp = malloc(sizeof *tp + len);
    if (!tp)
        return SB_ERR_NOMEM;
    tp->refs = 1;
    tp->len = len;
    memcpy(tp->data, s, len);
    p->v[set_find(p, s, len)] = tp;
    p->n++;
    p->bytes += len;
    return SB_OK;
}

static void set_clear(tz_topic_set *p)
{
    for (size_t i = 0; i < p->cap; i++)
        free(p->v[i]);
    free(p->v);
    *p = (tz_topic_set){0};
}

/* Remove with backward shift, so that lookups never need tombstones. */
static bool set_remove(tz_topic_set *p, const unsigned char *s, size_t len)
{
    if (!p->cap)
        return false;
    size_t mask = p->cap - 1;
    size_t i = set_find(p, s, len);
    if (!p->v[i])
        return false;
    p->bytes -= p->v[i]->len;
    p->n--;
    free(p->v[i]);
    p->v[i] = NULL;
    for (size_t j = (i + 1) & mask; p->v[j]; j = (j + 1) & mask) {
        size_t k = topic_hash(p->v[j]->data, p->v[j]->len) & mask;
        /* Move j back into the hole unless its home k lies cyclically in (i, j]. */
        if (i <= j ? i < k && k <= j : i < k || k <= j)
            continue;
        p->v[i] = p->v[j];
        p->v[j] = NULL;
        i = j;
    }
    return true;
}

/* ---- connections ----------------------------------------------------------------------- */

/* The slot of socket fd, growing the table; NULL without memory or for an absurd fd. */
static tz_fd_slot *fd_slot(tz *t, int fd)
{
    if (fd < 0 || fd >= TZ_MAX_FD)
        return NULL;
    if ((size_t)fd >= t->nfds) {
        size_t n = t->nfds ? t->nfds : 64;
        while (n <= (size_t)fd)
            n *= 2;
        tz_fd_slot *v = realloc(t->fds, n * sizeof *v);
        if (!v)
            return NULL;
        memset(v + t->nfds, 0, (n - t->nfds) * sizeof *v);
        t->fds = v;
        t->nfds = n;
    }
    return &t->fds[fd];
}

static void peer_release(tz *t, tz_fd_slot *s)
{
    tz_subscriber *p = s->peer;
    if (!p)
        return;
    if (p->hb && t->subscribers > 0)
        t->subscribers--;
    t->subscriptions -= (int64_t)p->conf.n;
    set_clear(&p->sent);
    set_clear(&p->conf);
    free(p);
    s->peer = NULL;
}

static void on_disconnected(tz *t, int fd)
{
    tz_fd_slot *s = fd_slot(t, fd);
    if (!s)
        return;
    peer_release(t, s);
    s->floor = t->next_conn; /* every id handed out so far is gone from this socket */
}

static void drain_monitor(tz *t)
{
    for (;;) {
        zmq_msg_t ev;
        zmq_msg_init(&ev);
        if (zmq_msg_recv(&ev, t->monitor, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&ev);
            return;
        }
        /* Frame 1: uint16 event, uint32 value (the socket); frame 2: the endpoint. */
        uint16_t event = 0;
        uint32_t value = 0;
        if (zmq_msg_size(&ev) >= 6) {
            memcpy(&event, zmq_msg_data(&ev), 2);
            memcpy(&value, (unsigned char *)zmq_msg_data(&ev) + 2, 4);
        }
        while (zmq_msg_more(&ev) && zmq_msg_recv(&ev, t->monitor, ZMQ_DONTWAIT) >= 0)
            ;
        zmq_msg_close(&ev);
        if (event == ZMQ_EVENT_DISCONNECTED)
            on_disconnected(t, (int)value);
    }
}

static void on_monitor(void *ud, unsigned revents)
{
    (void)revents;
    drain_monitor(ud);
}

/* The live connection that sent msg, or NULL: gone, or no connection metadata (libzmq's own
 * unsubscriptions for an ended pipe, or an inproc peer). */
static tz_subscriber *peer_of(tz *t, zmq_msg_t *msg)
{
    int fd = zmq_msg_get(msg, ZMQ_SRCFD);
    uint64_t id;
    const tz_principal *who;
    if (fd < 0 || tz_user_id_parse(t, zmq_msg_gets(msg, "User-Id"), &id, &who) < 0)
        return NULL;
    tz_fd_slot *s = fd_slot(t, fd);
    if (!s || id < s->floor)
        return NULL;
    if (s->peer) {
        if (s->peer->id == id)
            return s->peer;
        if (s->peer->id > id)
            return NULL;
        peer_release(t, s); /* a newer connection on the socket: the old one is gone */
    }
    s->floor = id;
    tz_subscriber *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->id = id;
    p->who = who;
    p->fd = fd;
    p->addrlen = sizeof p->addr;
    if (getpeername(fd, (struct sockaddr *)&p->addr, &p->addrlen) < 0)
        p->addrlen = 0;
    s->peer = p;
    return p;
}

/* An untrusted topic, printable and short, for a log line. */
static const char *quote(const unsigned char *s, size_t len, char *buf, size_t size)
{
    size_t n = 0;
    for (size_t i = 0; i < len && n + 4 < size; i++, n++)
        buf[n] = s[i] >= 0x20 && s[i] < 0x7f ? (char)s[i] : '?';
    if (n < len)
        buf[n++] = '.', buf[n++] = '.', buf[n++] = '.';
    buf[n] = '\0';
    return buf;
}

/* A flooder that reconnects is a new connection each time: a line of each kind a second. */
static bool may_log(tz *t, uint64_t *last)
{
    uint64_t now = t->api->base.now_ms(t->host);
    if (*last && now - *last < TZ_LOG_EVERY_MS)
        return false;
    *last = now ? now : 1;
    return true;
}

/* Disconnect p, if its socket is still the one we saw first (the fd may have been reused the
 * moment after the monitor was read: a different peer address tells). shutdown() alone lets
 * a peer that goes on sending be read on (Linux queues what arrives after SHUT_RD), and libzmq
 * would store all of it; connect(AF_UNSPEC) resets the TCP connection and drops its queue. */
static void cut(tz *t, tz_subscriber *p)
{
    struct sockaddr_storage now;
    socklen_t len = sizeof now;
    p->cut = true;
    t->peers_cut++;
    if (p->addrlen && getpeername(p->fd, (struct sockaddr *)&now, &len) == 0 && len == p->addrlen &&
        memcmp(&now, &p->addr, len) == 0) {
        struct sockaddr unspec = {.sa_family = AF_UNSPEC};
        shutdown(p->fd, SHUT_RDWR);
        if (now.ss_family != AF_UNIX)
            (void)connect(p->fd, &unspec, sizeof unspec);
    }
    if (may_log(t, &t->cut_logged_ms))
        t->api->base.log(
            t->host, SB_LOG_WARN,
            "events connection %llu disconnected: %zu subscriptions (%zu bytes) refused "
            "(stats: subscribers_cut)",
            (unsigned long long)p->id, p->refused, p->refused_bytes);
}

static void refuse(tz *t, tz_subscriber *p, const unsigned char *s, size_t len, const char *why)
{
    t->subscriptions_refused++;
    p->refused++;
    p->refused_bytes += len;
    if (!p->warned && may_log(t, &t->refusal_logged_ms)) {
        char buf[TZ_LOG_TOPIC];
        p->warned = true;
        t->api->base.log(t->host, SB_LOG_WARN,
                         "events connection %llu: subscription '%s' refused: %s (further refusals "
                         "of this connection are counted in stats)",
                         (unsigned long long)p->id, quote(s, len, buf, sizeof buf), why);
    }
    if (p->refused > t->max_subscriptions || p->refused_bytes > t->max_subscription_bytes)
        cut(t, p);
}

/* What a subscription would add to a connection's confirmed set (tz_subs_narrow walk). */
typedef struct narrow_cost {
    const tz_topic_set *conf;
    size_t n, bytes;
} narrow_cost;

static int count_new(void *ud, const unsigned char *s, size_t len)
{
    narrow_cost *c = ud;
    if (!set_get(c->conf, s, len))
        c->n++, c->bytes += len;
    return 0;
}

/* Why p may not have subscription s (NULL: it may). Both what it sent and what that stands
 * for count against the limits. */
static const char *refusal(tz *t, const tz_subscriber *p, const unsigned char *s, size_t len)
{
    narrow_cost c = {.conf = &p->conf};
    int rc = tz_subs_narrow(t, p->who, s, len, count_new, &c);
    if (rc < 0)
        return "its topics cannot be built";
    if (rc == 0)
        return p->who ? "no topic of the tables this client may read starts with it"
                      : "no topic the broker publishes starts with it";
    if (p->sent.n >= t->max_subscriptions || p->conf.n + c.n > t->max_subscriptions)
        return "over max_subscriptions";
    if (p->sent.bytes + len > t->max_subscription_bytes ||
        p->conf.bytes + c.bytes > t->max_subscription_bytes)
        return "over max_subscription_bytes";
    return NULL;
}

/* A confirm() or release() walk: left counts down the topics release() may still take. */
typedef struct narrow_walk {
    tz *t;
    tz_subscriber *p;
    size_t done, left;
} narrow_walk;

/* Confirm one topic for the pipe of the message read last, once per connection however many
 * of its subscriptions stand for it. */
static int confirm(void *ud, const unsigned char *s, size_t len)
{
    narrow_walk *w = ud;
    tz *t = w->t;
    tz_subscriber *p = w->p;
    w->done++;
    tz_topic *tp = set_get(&p->conf, s, len);
    if (tp) {
        tp->refs++;
        return 0;
    }
    if (set_add(&p->conf, s, len) < 0) {
        w->done--;
        return SB_ERR_NOMEM;
    }
    zmq_setsockopt(t->pub, ZMQ_SUBSCRIBE, s, len);
    t->subscriptions++;
    return 0;
}

/* Undo one confirm(): the last subscription standing for the topic unsubscribes it. */
static int release(void *ud, const unsigned char *s, size_t len)
{
    narrow_walk *w = ud;
    tz *t = w->t;
    tz_subscriber *p = w->p;
    if (w->left == 0)
        return 0;
    w->left--;
    tz_topic *tp = set_get(&p->conf, s, len);
    if (tp && --tp->refs == 0) {
        set_remove(&p->conf, s, len);
        zmq_setsockopt(t->pub, ZMQ_UNSUBSCRIBE, s, len);
        t->subscriptions--;
    }
    return 0;
}

/* p->hb and t->subscribers follow whether p's heartbeat topic is confirmed. */
static void note_hb(tz *t, tz_subscriber *p)
{
    char hb[TZ_HB_TOPIC_MAX];
    size_t hl = tz_hb_topic(p->who, hb, sizeof hb);
    bool now = hl && set_get(&p->conf, (const unsigned char *)hb, hl);
    if (now != p->hb)
        t->subscribers += now ? 1 : -1;
    p->hb = now;
}

void tz_subs_judge(tz *t, zmq_msg_t *msg)
{
    drain_monitor(t); /* first: whether the sender is gone */
    const unsigned char *d = zmq_msg_data(msg);
    size_t len = zmq_msg_size(msg);
    tz_subscriber *p = peer_of(t, msg);
    /* \x01topic = subscribe, \x00topic = unsubscribe; anything else is not ours. */
    if (!p || len < 1 || d[0] > 1 || p->cut)
        return;
    const unsigned char *s = d + 1;
    narrow_walk w = {.t = t, .p = p, .left = SIZE_MAX};
    /* ZMQ_(UN)SUBSCRIBE apply to the pipe of the message read last: all of them before the
     * next recv. What was confirmed for s is walked again to be released: the same s and
     * principal always stand for the same topics. */
    if (d[0] == 0) {
        if (set_remove(&p->sent, s, len - 1)) {
            tz_subs_narrow(t, p->who, s, len - 1, release, &w);
            note_hb(t, p);
        }
        return;
    }
    if (set_get(&p->sent, s, len - 1))
        return; /* libzmq keeps one per topic too: nothing to count */
    const char *why = refusal(t, p, s, len - 1);
    if (!why && set_add(&p->sent, s, len - 1) < 0)
        why = "out of memory";
    if (!why && tz_subs_narrow(t, p->who, s, len - 1, confirm, &w) < 0) {
        /* Out of memory half-way: undo the topics confirmed, which come first in the walk. */
        w.left = w.done;
        tz_subs_narrow(t, p->who, s, len - 1, release, &w);
        set_remove(&p->sent, s, len - 1);
        why = "out of memory";
    }
    if (why)
        refuse(t, p, s, len - 1, why);
    note_hb(t, p);
}

const tz_principal *tz_subs_hb_principal(tz *t, size_t fd)
{
    const tz_subscriber *p = fd < t->nfds ? t->fds[fd].peer : NULL;
    return p && p->hb && !p->cut ? p->who : NULL;
}

/* ---- the ZAP handler (27/ZAP) ---------------------------------------------------------- */

static int send_frames(void *s, zmq_msg_t *f, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (zmq_send(s, zmq_msg_data(&f[i]), zmq_msg_size(&f[i]), i + 1 < n ? ZMQ_SNDMORE : 0) < 0)
            return SB_ERR_ZMQ;
    return SB_OK;
}

/* Who the handshake of req (n frames, n >= 8) is: NULL with its User-Id written into uid,
 * or why it is refused. In plain mode everyone is let in; with CURVE only a key of
 * clients_file, whose index the User-Id carries. A connection id is never handed out twice. */
static const char *zap_judge(tz *t, zmq_msg_t *req, size_t n, char *uid, size_t len)
{
    unsigned long long conn = (unsigned long long)t->next_conn;
    size_t index;
    if (!t->clients) {
        t->next_conn++;
        snprintf(uid, len, "%llu", conn);
        return NULL;
    }
    /* libzmq itself fails a NULL or PLAIN client's handshake on a CURVE server before it asks
     * ZAP; a request of another mechanism can only come from another socket in the context. */
    if (zmq_msg_size(&req[7]) != 5 || memcmp(zmq_msg_data(&req[7]), "CURVE", 5) != 0)
        return "not a CURVE handshake";
    if (n < 9 || zmq_msg_size(&req[8]) != 32)
        return "no CURVE client key";
    if (!tz_clients_find(t->clients, zmq_msg_data(&req[8]), &index))
        return "unknown client key";
    t->next_conn++;
    snprintf(uid, len, "%llu/%zu", conn, index);
    return NULL;
}

/* One line a second at most per socket: a refused client may come back again and again. */
static void log_refusal(tz *t, zmq_msg_t *req, size_t n, const char *why)
{
    bool service = zmq_msg_size(&req[4]) == strlen(TZ_ZAP_SERVICE) &&
                   memcmp(zmq_msg_data(&req[4]), TZ_ZAP_SERVICE, strlen(TZ_ZAP_SERVICE)) == 0;
    if (!may_log(t, &t->zap_logged_ms[service]))
        return;
    char addr[TZ_LOG_TOPIC], key[SB_KEY_Z85_LEN + 1] = "-";
    if (n >= 9 && zmq_msg_size(&req[8]) == 32)
        zmq_z85_encode(key, zmq_msg_data(&req[8]), 32);
    t->api->base.log(
        t->host, SB_LOG_WARN,
        "%s connection from %s refused: %s %s (at most one such line a second per socket)",
        service ? "service" : "events",
        quote(zmq_msg_data(&req[5]), zmq_msg_size(&req[5]), addr, sizeof addr), why, key);
}

/* Request: [routing id][""]["1.0"][request id][domain][address][identity][mechanism][key]...
 * (the key with CURVE). Reply: [routing id][""]["1.0"][request id][status][text][user id]
 * [metadata]. */
static void zap_answer(tz *t, zmq_msg_t *req, size_t n)
{
    if (n < 8 || zmq_msg_size(&req[1]) != 0 || zmq_msg_size(&req[2]) != 3 ||
        memcmp(zmq_msg_data(&req[2]), "1.0", 3) != 0)
        return; /* not from libzmq: no answer */
    char uid[48] = "";
    const char *why = zap_judge(t, req, n, uid, sizeof uid);
    if (why)
        log_refusal(t, req, n, why);
    const char *status = why ? "400" : "200", *text = why ? why : "OK";
    zmq_msg_t rep[8];
    zmq_msg_init(&rep[0]);
    zmq_msg_copy(&rep[0], &req[0]);
    zmq_msg_init(&rep[1]);
    zmq_msg_init(&rep[2]);
    zmq_msg_copy(&rep[2], &req[2]);
    zmq_msg_init(&rep[3]);
    zmq_msg_copy(&rep[3], &req[3]);
    zmq_msg_init_data(&rep[4], (void *)status, 3, NULL, NULL);
    zmq_msg_init_size(&rep[5], strlen(text));
    memcpy(zmq_msg_data(&rep[5]), text, strlen(text));
    zmq_msg_init_size(&rep[6], strlen(uid));
    memcpy(zmq_msg_data(&rep[6]), uid, strlen(uid));
    zmq_msg_init(&rep[7]);
    if (send_frames(t->zap, rep, 8) < 0)
        t->api->base.log(t->host, SB_LOG_WARN, "cannot answer a ZAP request: %s",
                         zmq_strerror(errno));
    for (size_t i = 0; i < 8; i++)
        zmq_msg_close(&rep[i]);
}

static void on_zap(void *ud, unsigned revents)
{
    tz *t = ud;
    (void)revents;
    for (int r = 0; r < TZ_ZAP_BUDGET; r++) {
        zmq_msg_t req[TZ_ZAP_FRAMES], extra;
        size_t n = 0;
        for (int more = 1; more;) {
            zmq_msg_t *m = n < TZ_ZAP_FRAMES ? &req[n] : &extra;
            zmq_msg_init(m);
            if (zmq_msg_recv(m, t->zap, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(m);
                break;
            }
            more = zmq_msg_more(m);
            if (m == &extra)
                zmq_msg_close(m);
            else
                n++;
        }
        if (n == 0)
            return;
        drain_monitor(t); /* first: every disconnect before this connection's id */
        zap_answer(t, req, n);
        for (size_t i = 0; i < n; i++)
            zmq_msg_close(&req[i]);
    }
}

/* ---- life cycle ------------------------------------------------------------------------ */

static int fail(tz *t, const char *what)
{
    t->api->base.log(t->host, SB_LOG_ERROR, "%s: %s", what, zmq_strerror(errno));
    return SB_ERR_ZMQ;
}

int tz_subs_start(tz *t, void *pub)
{
    void *ctx = t->api->zmq_context(t->host);
    int zero = 0;
    char endpoint[64];
    /* A new name each time: the endpoint of a closed socket's monitor goes with the monitor,
     * in libzmq's reaper thread, later. */
    snprintf(endpoint, sizeof endpoint, "inproc://sb-tz-monitor-%p-%u", (void *)t, t->pub_opens++);
    t->zap = zmq_socket(ctx, ZMQ_ROUTER);
    if (!t->zap || zmq_setsockopt(t->zap, ZMQ_LINGER, &zero, sizeof zero) < 0)
        return fail(t, "cannot create the ZAP handler");
    if (zmq_bind(t->zap, TZ_ZAP_ENDPOINT) < 0)
        return fail(t, "cannot bind the ZAP handler to " TZ_ZAP_ENDPOINT
                       " (one transport_zmq per broker)");
    if (zmq_socket_monitor(pub, endpoint, ZMQ_EVENT_DISCONNECTED) < 0)
        return fail(t, "cannot monitor the events socket");
    /* RCVHWM 0: libzmq's monitor blocks its I/O thread on a full pipe; ours never fills. */
    t->monitor = zmq_socket(ctx, ZMQ_PAIR);
    if (!t->monitor || zmq_setsockopt(t->monitor, ZMQ_LINGER, &zero, sizeof zero) < 0 ||
        zmq_setsockopt(t->monitor, ZMQ_RCVHWM, &zero, sizeof zero) < 0 ||
        zmq_connect(t->monitor, endpoint) < 0)
        return fail(t, "cannot read the events socket's monitor");
    t->next_conn = 1;
    int rc = t->api->watch_zsock(t->host, t->zap, SB_IO_READ, on_zap, t, &t->zap_watch);
    if (rc == SB_OK)
        rc = t->api->watch_zsock(t->host, t->monitor, SB_IO_READ, on_monitor, t, &t->monitor_watch);
    if (rc < 0)
        t->api->base.log(t->host, SB_LOG_ERROR, "cannot watch the ZAP handler: %s",
                         sb_strerror(rc));
    return rc;
}

void tz_subs_stop(tz *t)
{
    t->api->base.unwatch(t->zap_watch);
    t->api->base.unwatch(t->monitor_watch);
    t->zap_watch = t->monitor_watch = NULL;
    if (t->monitor)
        zmq_close(t->monitor);
    /* Unbound first: an inproc unbind is immediate, a close is not, and a re-bind binds
     * the ZAP endpoint again at once. */
    if (t->zap) {
        zmq_unbind(t->zap, TZ_ZAP_ENDPOINT);
        zmq_close(t->zap);
    }
    t->monitor = t->zap = NULL;
    for (size_t i = 0; i < t->nfds; i++)
        peer_release(t, &t->fds[i]);
    free(t->fds);
    t->fds = NULL;
    t->nfds = 0;
    t->subscribers = 0;
    t->subscriptions = 0;
}
