/*
 * client.c - sb_client lifecycle, sockets, the poll loop, timers, cache access, presence.
 * The synchronisation logic itself lives in sync.c.
 */
#include "client_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

/* Messages read from the SUB socket per sb_client_poll() round, so that timers and the
 * service socket are never starved by a busy stream. */
#define MAX_READS_PER_ROUND 4096

void sb_client_log(sb_client *c, sb_log_level level, const char *fmt, ...)
{
    if (!c->cb.on_log)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    c->cb.on_log(level, msg, c->ud);
}

void sb_client_fail(sb_client *c, int err)
{
    if (err < 0 && c->pending_err == SB_OK)
        c->pending_err = err;
}

static char *dup_or_default(const char *s)
{
    if (s)
        return strdup(s);
    /* Unique enough to tell two desks apart: pid and clock. */
    char id[64];
    snprintf(id, sizeof(id), "client-%ld-%llx", (long)getpid(),
             (unsigned long long)(sb_svc_now_ms() * 2654435761u & 0xffffffu));
    return strdup(id);
}

int sb_client_new(const sb_client_config *cfg, sb_client **out)
{
    if (!cfg || !out || !cfg->pub_endpoint || !cfg->service_endpoint ||
        (cfg->ntables && !cfg->tables))
        return SB_ERR_INVAL;
    for (size_t i = 0; i < cfg->ntables; i++)
        if (!cfg->tables[i] || !*cfg->tables[i])
            return SB_ERR_INVAL;
    sb_client *c = calloc(1, sizeof(*c));
    if (!c)
        return SB_ERR_NOMEM;
    c->cb = cfg->cb;
    c->ud = cfg->ud;
    char why[160];
    int krc =
        sb_curve_init(&c->curve, cfg->curve_server_key, cfg->curve_secret_key, why, sizeof(why));
    if (krc != SB_OK) {
        sb_client_log(c, SB_LOG_ERROR, "CURVE: %s", why);
        free(c);
        return krc;
    }
    c->pub_endpoint = strdup(cfg->pub_endpoint);
    c->service_endpoint = strdup(cfg->service_endpoint);
    c->client_id = dup_or_default(cfg->client_id);
    c->pos = calloc(cfg->ntables ? cfg->ntables : 1, sizeof(*c->pos));
    int rc =
        c->pub_endpoint && c->service_endpoint && c->client_id && c->pos ? SB_OK : SB_ERR_NOMEM;
    for (size_t i = 0; rc == SB_OK && i < cfg->ntables; i++, c->ntables++)
        if (!(c->pos[i].table = strdup(cfg->tables[i])))
            rc = SB_ERR_NOMEM;
    c->heartbeat_ms = cfg->heartbeat_ms ? cfg->heartbeat_ms : 1000;
    c->request_timeout_ms = cfg->request_timeout_ms ? cfg->request_timeout_ms : 3000;
    c->request_retries = cfg->request_retries ? cfg->request_retries : 3;
    c->presence_ttl_ms = cfg->presence_ttl_ms ? cfg->presence_ttl_ms : 6000;
    c->follow_all = cfg->ntables == 0;
    c->no_snapshot = cfg->no_snapshot;
    c->keep_rows = !cfg->no_cache;
    c->ctx = cfg->zmq_context;
    c->st = ST_WAIT_HB;
    msgpack_sbuffer_init(&c->rowbuf);
    msgpack_sbuffer_init(&c->syncreq);
    msgpack_sbuffer_init(&c->scratch);
    if (rc == SB_OK)
        rc = sb_cache_new(c->keep_rows, &c->cache);
    if (rc != SB_OK) {
        sb_client_destroy(c);
        return rc;
    }
    *out = c;
    return SB_OK;
}

static int subscribe(sb_client *c, const char *prefix, const char *table)
{
    size_t n = strlen(prefix) + (table ? strlen(table) + 1 : 0);
    char *topic = malloc(n + 1);
    if (!topic)
        return SB_ERR_NOMEM;
    snprintf(topic, n + 1, "%s%s%s", prefix, table ? table : "", table ? "/" : "");
    int rc = zmq_setsockopt(c->sub, ZMQ_SUBSCRIBE, topic, n) == 0 ? SB_OK : SB_ERR_ZMQ;
    free(topic);
    return rc;
}

int sb_client_start(sb_client *c)
{
    if (!c || c->sub)
        return SB_ERR_STATE;
    if (!c->ctx) {
        c->ctx = zmq_ctx_new();
        if (!c->ctx)
            return SB_ERR_ZMQ;
        c->own_ctx = true;
    }
    int linger = 0;
    c->sub = zmq_socket(c->ctx, ZMQ_SUB);
    if (!c->sub)
        return SB_ERR_ZMQ;
    if (sb_curve_apply(&c->curve, c->sub) != SB_OK) {
        sb_client_log(c, SB_LOG_ERROR, "CURVE keys refused by libzmq: %s", zmq_strerror(errno));
        return SB_ERR_ZMQ;
    }
    if (zmq_setsockopt(c->sub, ZMQ_LINGER, &linger, sizeof(linger)) != 0 ||
        zmq_connect(c->sub, c->pub_endpoint) != 0) {
        sb_client_log(c, SB_LOG_ERROR, "cannot connect to %s: %s", c->pub_endpoint,
                      zmq_strerror(errno));
        return SB_ERR_INVAL;
    }
    /* Data topics first and "@hb" last: the first heartbeat proves the others are live. */
    int rc = SB_OK;
    if (!c->ntables)
        rc = subscribe(c, "", NULL);
    for (size_t i = 0; rc == SB_OK && i < c->ntables; i++) {
        rc = subscribe(c, "", c->pos[i].table);
        rc = rc ? rc : subscribe(c, SB_PROTO_TOPIC_PRESENCE, c->pos[i].table);
    }
    rc = rc ? rc : subscribe(c, SB_PROTO_TOPIC_HB, NULL);
    if (rc != SB_OK)
        return rc;
    rc = sb_svc_open(&c->svc, c->ctx, c->service_endpoint, &c->curve);
    if (rc != SB_OK) {
        sb_client_log(c, SB_LOG_ERROR, "cannot connect the service socket: %s", sb_strerror(rc));
        return rc;
    }
    c->last_rx_ms = sb_svc_now_ms();
    return SB_OK;
}

static void edit_free(edit *e)
{
    free(e->table);
    for (uint32_t i = 0; i < e->nkey; i++)
        free(e->key[i]);
    free(e->key);
}

void sb_client_destroy(sb_client *c)
{
    if (!c)
        return;
    if (c->sub)
        zmq_close(c->sub);
    sb_svc_close(&c->svc);
    if (c->own_ctx)
        zmq_ctx_term(c->ctx);
    for (size_t i = 0; i < c->ntables; i++)
        free(c->pos[i].table);
    free(c->pos);
    for (size_t i = 0; i < c->nedits; i++)
        edit_free(&c->edits[i]);
    free(c->edits);
    sb_sync_clear_held(c);
    free(c->held);
    sb_cache_free(c->cache);
    msgpack_sbuffer_destroy(&c->rowbuf);
    msgpack_sbuffer_destroy(&c->syncreq);
    msgpack_sbuffer_destroy(&c->scratch);
    free(c->epoch);
    free(c->pub_endpoint);
    free(c->service_endpoint);
    free(c->client_id);
    sb_curve_clear(&c->curve);
    free(c);
}

/* ---- I/O ------------------------------------------------------------------------------ */

/* Read up to MAX_READS_PER_ROUND [topic][body] messages; returns how many were read. */
static size_t read_sub(sb_client *c)
{
    size_t n = 0;
    zmq_msg_t topic, body;
    for (; n < MAX_READS_PER_ROUND; n++) {
        zmq_msg_init(&topic);
        if (zmq_msg_recv(&topic, c->sub, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&topic);
            break;
        }
        bool two = zmq_msg_more(&topic);
        zmq_msg_init(&body);
        if (two)
            zmq_msg_recv(&body, c->sub, 0);
        c->last_rx_ms = sb_svc_now_ms();
        /* Anything but exactly two frames is not ours: drain the rest and drop it. */
        bool more = two && zmq_msg_more(&body);
        while (more) {
            zmq_msg_t extra;
            zmq_msg_init(&extra);
            more = zmq_msg_recv(&extra, c->sub, 0) >= 0 && zmq_msg_more(&extra);
            zmq_msg_close(&extra);
            two = false;
        }
        if (two) {
            sb_sync_hb_topic(c, zmq_msg_data(&topic), zmq_msg_size(&topic));
            sb_sync_feed(c, zmq_msg_data(&body), zmq_msg_size(&body));
        } else
            sb_client_log(c, SB_LOG_WARN, "dropped a message that is not [topic][body]");
        zmq_msg_close(&topic);
        zmq_msg_close(&body);
    }
    return n;
}

/* Replies: the one to the snapshot/since in flight drives the state machine; the others
 * answer presence announcements and only matter when they report an error. */
static size_t read_svc(sb_client *c)
{
    size_t n = 0;
    for (;;) {
        sb_svc_reply r;
        int rc = sb_svc_recv(&c->svc, &r);
        if (rc == 0)
            break;
        n++;
        if (rc < 0) {
            sb_client_log(c, SB_LOG_WARN, "dropped a malformed service reply");
            continue;
        }
        c->last_rx_ms = sb_svc_now_ms();
        if ((c->st == ST_SNAPSHOT || c->st == ST_SINCE) && r.id == c->req_id) {
            sb_sync_reply(c, &r);
        } else {
            sb_reply h;
            if (sb_reply_parse(zmq_msg_data(&r.frames[0]), zmq_msg_size(&r.frames[0]), &h) ==
                SB_OK) {
                if (h.error)
                    sb_client_log(c, SB_LOG_WARN, "broker: %s: %s", h.error, h.message);
                sb_reply_release(&h);
            }
        }
        sb_svc_reply_clear(&r);
    }
    return n;
}

static int send_presence(sb_client *c, const edit *e, const char *state)
{
    uint32_t id;
    int rc = sb_svc_pack_presence(&c->scratch, c->client_id, e->table, (const char *const *)e->key,
                                  e->nkey, state, c->presence_ttl_ms);
    return rc ? rc : sb_svc_send(&c->svc, &c->scratch, &id);
}

/* Presence is refreshed three times per TTL so one lost refresh does not expire it. */
static uint32_t refresh_every(const sb_client *c)
{
    return c->presence_ttl_ms / 3 ? c->presence_ttl_ms / 3 : 1;
}

static uint64_t offline_at(const sb_client *c)
{
    return c->online == ONLINE_NO ? UINT64_MAX : c->last_rx_ms + 3ull * c->heartbeat_ms;
}

static uint64_t next_timer(const sb_client *c)
{
    uint64_t t = offline_at(c);
    if ((c->st == ST_SNAPSHOT || c->st == ST_SINCE) && c->req_deadline_ms < t)
        t = c->req_deadline_ms;
    for (size_t i = 0; i < c->nedits; i++)
        if (c->edits[i].next_refresh_ms < t)
            t = c->edits[i].next_refresh_ms;
    return t;
}

/* Run due timers; returns whether any ran. */
static bool run_timers(sb_client *c, uint64_t now)
{
    bool ran = false;
    if (now >= offline_at(c)) {
        sb_client_log(c, SB_LOG_WARN, "no message for %u ms: offline", 3 * c->heartbeat_ms);
        c->stale = true;
        sb_sync_set_online(c, false);
        ran = true;
    }
    if ((c->st == ST_SNAPSHOT || c->st == ST_SINCE) && now >= c->req_deadline_ms) {
        sb_sync_timeout(c);
        ran = true;
    }
    for (size_t i = 0; i < c->nedits; i++) {
        edit *e = &c->edits[i];
        if (now < e->next_refresh_ms)
            continue;
        e->next_refresh_ms = now + refresh_every(c);
        int rc = send_presence(c, e, "editing");
        if (rc != SB_OK)
            sb_client_log(c, SB_LOG_WARN, "presence refresh not sent: %s", sb_strerror(rc));
        ran = true;
    }
    return ran;
}

int sb_client_poll(sb_client *c, int timeout_ms)
{
    if (!c || !c->sub)
        return SB_ERR_STATE;
    c->pending_err = SB_OK;
    uint64_t now = sb_svc_now_ms();
    uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : now + (uint64_t)timeout_ms;
    for (;;) {
        uint64_t until = next_timer(c);
        if (deadline < until)
            until = deadline;
        long wait = until > now ? (long)(until - now) : 0;
        if (until == UINT64_MAX)
            wait = -1;
        zmq_pollitem_t items[2] = {{c->sub, 0, ZMQ_POLLIN, 0}, {c->svc.sock, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(items, 2, wait) < 0)
            return errno == EINTR ? c->pending_err : SB_ERR_ZMQ;
        size_t done = read_sub(c) + read_svc(c);
        now = sb_svc_now_ms();
        if (run_timers(c, now))
            done++;
        if (done || now >= deadline)
            return c->pending_err;
    }
}

int sb_client_fds(sb_client *c, int *fds, size_t *n)
{
    if (!c || !c->sub || !fds || !n || *n < 2)
        return SB_ERR_INVAL;
    size_t len = sizeof(int);
    if (zmq_getsockopt(c->sub, ZMQ_FD, &fds[0], &len) != 0 ||
        zmq_getsockopt(c->svc.sock, ZMQ_FD, &fds[1], &len) != 0)
        return SB_ERR_ZMQ;
    *n = 2;
    return SB_OK;
}

/* ZMQ_FD is edge-triggered: messages already queued never wake the app's poll again. */
static bool readable(void *sock)
{
    int events = 0;
    size_t len = sizeof(events);
    return sock && zmq_getsockopt(sock, ZMQ_EVENTS, &events, &len) == 0 && (events & ZMQ_POLLIN);
}

int sb_client_timeout_ms(sb_client *c)
{
    if (!c || !c->sub || readable(c->sub) || readable(c->svc.sock))
        return 0;
    uint64_t t = next_timer(c), now = sb_svc_now_ms();
    if (t == UINT64_MAX)
        return -1;
    return t <= now ? 0 : (int)(t - now > INT32_MAX ? INT32_MAX : t - now);
}

bool sb_client_online(const sb_client *c)
{
    return c && c->online == ONLINE_YES;
}

const char *sb_client_id(const sb_client *c)
{
    return c->client_id;
}

/* ---- cache access ---------------------------------------------------------------------- */

int sb_client_get(sb_client *c, const char *table, const char *const *key, uint32_t nkey,
                  const void **row, size_t *row_len, uint64_t *version)
{
    if (!c || !table || !key || !nkey)
        return SB_ERR_INVAL;
    sb_client_row r;
    int rc = sb_cache_get(c->cache, table, key, nkey, &r);
    if (rc != SB_OK)
        return rc;
    if (row)
        *row = r.row;
    if (row_len)
        *row_len = r.row_len;
    if (version)
        *version = r.version;
    return SB_OK;
}

size_t sb_client_foreach(sb_client *c, const char *table,
                         int (*fn)(const sb_client_row *row, void *ud), void *ud)
{
    return c && fn ? sb_cache_foreach(c->cache, table, fn, ud) : 0;
}

/* ---- presence ------------------------------------------------------------------------- */

static edit *find_edit(sb_client *c, const char *table, const char *const *key, uint32_t nkey)
{
    for (size_t i = 0; i < c->nedits; i++) {
        edit *e = &c->edits[i];
        bool same = e->nkey == nkey && strcmp(e->table, table) == 0;
        for (uint32_t k = 0; same && k < nkey; k++)
            same = strcmp(e->key[k], key[k]) == 0;
        if (same)
            return e;
    }
    return NULL;
}

static int check_edit_args(sb_client *c, const char *table, const char *const *key, uint32_t nkey)
{
    if (!c || !table || !key || !nkey)
        return SB_ERR_INVAL;
    for (uint32_t i = 0; i < nkey; i++)
        if (!key[i])
            return SB_ERR_INVAL;
    return c->svc.sock ? SB_OK : SB_ERR_STATE;
}

int sb_client_begin_edit(sb_client *c, const char *table, const char *const *key, uint32_t nkey)
{
    int rc = check_edit_args(c, table, key, nkey);
    if (rc != SB_OK)
        return rc;
    edit *e = find_edit(c, table, key, nkey);
    if (!e) {
        edit *grown = realloc(c->edits, (c->nedits + 1) * sizeof(*grown));
        if (!grown)
            return SB_ERR_NOMEM;
        c->edits = grown;
        e = &c->edits[c->nedits];
        memset(e, 0, sizeof(*e));
        e->table = strdup(table);
        e->key = calloc(nkey, sizeof(*e->key));
        rc = e->table && e->key ? SB_OK : SB_ERR_NOMEM;
        for (uint32_t i = 0; rc == SB_OK && i < nkey; i++, e->nkey++)
            if (!(e->key[i] = strdup(key[i])))
                rc = SB_ERR_NOMEM;
        if (rc != SB_OK) {
            edit_free(e);
            return rc;
        }
        c->nedits++;
    }
    e->next_refresh_ms = sb_svc_now_ms() + refresh_every(c);
    return send_presence(c, e, "editing");
}

int sb_client_end_edit(sb_client *c, const char *table, const char *const *key, uint32_t nkey)
{
    int rc = check_edit_args(c, table, key, nkey);
    if (rc != SB_OK)
        return rc;
    edit *e = find_edit(c, table, key, nkey);
    if (!e)
        return SB_ERR_NOTFOUND;
    rc = send_presence(c, e, "left");
    edit_free(e);
    *e = c->edits[--c->nedits];
    return rc;
}
