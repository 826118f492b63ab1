/*
 * request.c - decode, validate and serve one service request (docs/protocol.md, Service).
 * Every request gets exactly one reply: the op's answer or {error, message}.
 */
#include "tz.h"

#include "sb_mp.h"
#include "sb_proto.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Presence entry lifetime when a request gives no ttl_ms (libsyncclient's default too). */
#define TZ_PRESENCE_TTL_MS 6000
#define TZ_PRESENCE_CLIENT_MAX 128 /* bytes of a client id (docs/protocol.md) */

/* Requests are small maps: no need for msgpack-c's full depth. */
static const sb_mp_limits request_limits = {.max_depth = 8, .max_elements = 4096};

void tz_reply_map(tz *t, tz_frames *env, msgpack_sbuffer *sb, int pack_rc, tz_frames *extra)
{
    if (pack_rc < 0 || tz_frames_push_sbuf(env, sb) < 0 ||
        (extra && tz_frames_move(env, extra) < 0)) {
        t->api->base.log(t->host, SB_LOG_ERROR, "out of memory building a reply: dropped");
        t->errors++;
        msgpack_sbuffer_destroy(sb);
        tz_frames_clear(env);
        if (extra)
            tz_frames_clear(extra);
        return;
    }
    t->turn_bytes += env->bytes;
    t->reply(t, env);
}

void tz_reply_error(tz *t, tz_frames *env, const char *code, const char *fmt, ...)
{
    char message[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    t->errors++;
    t->api->base.log(t->host, SB_LOG_DEBUG, "request refused: %s: %s", code, message);
    sb_mp_buf o;
    sb_mp_buf_init(&o);
    int rc = msgpack_pack_map(&o.pk, 2);
    rc |= sb_mp_pack_kv_cstr(&o.pk, "error", code);
    rc |= sb_mp_pack_kv_cstr(&o.pk, "message", message);
    tz_reply_map(t, env, &o.sb, rc, NULL);
}

/* Copy at most 64 bytes of untrusted text into buf (cap > 68), replacing anything but
 * printable ASCII: it goes into a log line and a UTF-8 reply string. */
static const char *printable(const char *s, size_t n, char *buf, size_t cap)
{
    size_t limit = n > 64 ? 64 : n, j = 0;
    for (size_t i = 0; i < limit && j + 4 < cap; i++)
        buf[j++] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
    if (limit < n) {
        memcpy(buf + j, "...", 3);
        j += 3;
    }
    buf[j] = '\0';
    return buf;
}

void tz_reply_unknown_table(tz *t, tz_frames *env, const char *table, size_t len)
{
    char name[80];
    tz_reply_error(t, env, "unknown_table", "table '%s' is not configured",
                   printable(table, len, name, sizeof name));
}

int tz_table_index(tz *t, const char *table, size_t len)
{
    size_t n = 0;
    const char *const *tables = t->api->base.tables(t->host, &n);
    for (size_t i = 0; i < n; i++)
        if (strlen(tables[i]) == len && memcmp(tables[i], table, len) == 0)
            return (int)i;
    return -1;
}

static uint64_t current_seq(tz *t)
{
    sb_stats s = {0};
    t->api->stats(t->host, &s);
    return s.seq;
}

/* ---- ops ----------------------------------------------------------------------------- */

/* ping also answers what the latest heartbeat says of the protocol: its period and version. */
static void serve_ping(tz *t, tz_frames *env, const msgpack_object *req)
{
    (void)req;
    static const char *const from_hb[] = {SB_PF_HB_MS, SB_PF_PROTO};
    msgpack_unpacked hb;
    uint64_t v[2];
    bool have = tz_last_heartbeat(t, &hb) == SB_OK;
    for (size_t i = 0; have && i < 2; i++)
        have = sb_mp_get_uint(sb_mp_map_get(&hb.data, from_hb[i]), &v[i]) == SB_OK;
    msgpack_unpacked_destroy(&hb);
    sb_mp_buf o;
    sb_mp_buf_init(&o);
    int rc = msgpack_pack_map(&o.pk, have ? 5 : 3);
    rc |= sb_mp_pack_kv_cstr(&o.pk, "epoch", t->api->base.epoch(t->host));
    rc |= sb_mp_pack_kv_uint(&o.pk, "seq", current_seq(t));
    rc |= sb_mp_pack_kv_int(&o.pk, "ts", sb_proto_wall_ms());
    for (size_t i = 0; have && i < 2; i++)
        rc |= sb_mp_pack_kv_uint(&o.pk, from_hb[i], v[i]);
    tz_reply_map(t, env, &o.sb, rc, NULL);
}

static void serve_stats(tz *t, tz_frames *env, const msgpack_object *req)
{
    (void)req;
    if (t->req_who && !t->req_who->admin) {
        tz_reply_error(t, env, "forbidden", "stats is for admin clients (clients_file: admin)");
        return;
    }
    sb_stats s = {0};
    t->api->stats(t->host, &s);
    sb_mp_buf o;
    sb_mp_buf_init(&o);
    int rc = msgpack_pack_map(&o.pk, 17);
    rc |= sb_mp_pack_kv_cstr(&o.pk, "epoch", t->api->base.epoch(t->host));
    rc |= sb_mp_pack_kv_uint(&o.pk, "seq", s.seq);
    rc |= sb_mp_pack_kv_uint(&o.pk, "changes_in", s.changes_in);
    rc |= sb_mp_pack_kv_uint(&o.pk, "events_out", s.events_out);
    rc |= sb_mp_pack_kv_uint(&o.pk, "coalesced", s.coalesced);
    rc |= sb_mp_pack_kv_uint(&o.pk, "snapshots", s.snapshots);
    rc |= sb_mp_pack_kv_uint(&o.pk, "pending", s.pending);
    rc |= sb_mp_pack_kv_int(&o.pk, "source_lag_ms", s.source_lag_ms);
    rc |= sb_mp_pack_kv_int(&o.pk, "subscribers", t->pub ? t->subscribers : -1);
    rc |= sb_mp_pack_kv_int(&o.pk, "subscriptions", t->subscriptions);
    rc |= sb_mp_pack_kv_uint(&o.pk, "subscriptions_refused", t->subscriptions_refused);
    rc |= sb_mp_pack_kv_uint(&o.pk, "subscribers_cut", t->peers_cut);
    rc |= sb_mp_pack_kv_uint(&o.pk, "requests", t->requests);
    rc |= sb_mp_pack_kv_uint(&o.pk, "errors", t->errors);
    rc |= sb_mp_pack_kv_uint(&o.pk, "snapshots_running", t->nsnaps);
    rc |= sb_mp_pack_kv_uint(&o.pk, "snapshots_cancelled", t->snapshots_cancelled);
    rc |= sb_mp_pack_kv_uint(&o.pk, "replies_dropped", t->replies_dropped);
    tz_reply_map(t, env, &o.sb, rc, NULL);
}

/* A `since` reply being built: at most max_events messages and max_bytes of bodies, but
 * always the first one, so that a client advances even past a message larger than the cap.
 * Only messages of the tables `who` may read are included, and only they count. */
typedef struct replay_ctx {
    tz *t;
    const tz_principal *who;
    tz_frames frames;
    size_t max_events, max_bytes;
    uint64_t upto; /* seq of the last message included */
    bool more;     /* a cap left messages out: the reply says so and where it stopped */
    int rc;
} replay_ctx;

static void on_replay(void *ud, const sb_message *m)
{
    replay_ctx *c = ud;
    if (c->rc != SB_OK || c->more || !tz_topic_readable(c->t, c->who, m->topic, m->topic_len))
        return;
    if (c->frames.n &&
        (c->frames.n >= c->max_events || c->frames.bytes + m->body_len > c->max_bytes)) {
        c->more = true;
        return;
    }
    c->rc = tz_frames_push(&c->frames, m->body, m->body_len);
    c->upto = m->seq;
}

/* Answer a request whose fields could not be read: rc is SB_ERR_INVAL or SB_ERR_NOMEM. */
static void reply_parse_error(tz *t, tz_frames *env, int rc, const char *why)
{
    if (rc == SB_ERR_NOMEM)
        tz_reply_error(t, env, "internal", "out of memory");
    else
        tz_reply_error(t, env, "bad_request", "%s", why);
}

static void serve_since(tz *t, tz_frames *env, const msgpack_object *req)
{
    char *epoch = NULL;
    uint64_t seq;
    int rc = sb_mp_get_uint(sb_mp_map_get(req, "seq"), &seq);
    if (rc == SB_OK)
        rc = sb_mp_dup_str(sb_mp_map_get(req, "epoch"), &epoch);
    if (rc < 0) {
        reply_parse_error(t, env, rc, "since needs epoch (str) and seq (uint)");
        return;
    }
    replay_ctx c = {.t = t,
                    .who = t->req_who,
                    .max_events = t->max_since_events,
                    .max_bytes = t->max_since_bytes,
                    .rc = SB_OK};
    uint64_t last = 0;
    rc = t->api->since(t->host, epoch, seq, on_replay, &c, &last);
    if (rc == SB_OK)
        rc = c.rc;
    if (rc < 0) {
        tz_frames_clear(&c.frames);
        if (rc == SB_ERR_NOTFOUND && seq > last && strcmp(epoch, t->api->base.epoch(t->host)) == 0)
            tz_reply_error(t, env, "future",
                           "seq %llu is beyond the last seq published, %llu: take a snapshot",
                           (unsigned long long)seq, (unsigned long long)last);
        else if (rc == SB_ERR_NOTFOUND)
            tz_reply_error(t, env, "resync",
                           "epoch changed or seq %llu is no longer retained: take a snapshot",
                           (unsigned long long)seq);
        else
            tz_reply_error(t, env, "internal", "since failed: %s", sb_strerror(rc));
        free(epoch);
        return;
    }
    free(epoch);
    sb_mp_buf o;
    sb_mp_buf_init(&o);
    /* A capped reply's seq is upto, where it leaves the client: one that does not know
     * `more` then sees the rest as a gap, never as covered (docs/protocol.md). */
    int prc = msgpack_pack_map(&o.pk, c.more ? 4 : 2);
    prc |= sb_mp_pack_kv_cstr(&o.pk, "epoch", t->api->base.epoch(t->host));
    prc |= sb_mp_pack_kv_uint(&o.pk, "seq", c.more ? c.upto : last);
    if (c.more) {
        prc |= sb_mp_pack_kv_bool(&o.pk, "more", true);
        prc |= sb_mp_pack_kv_uint(&o.pk, "upto", c.upto);
    }
    tz_reply_map(t, env, &o.sb, prc, &c.frames);
}

/* Owned copies of a presence request's fields. */
typedef struct presence_req {
    char *client, *table, *state;
    sb_key key;
    uint64_t ttl_ms;
} presence_req;

static void presence_free(presence_req *p)
{
    free(p->client);
    free(p->table);
    free(p->state);
    sb_mp_key_free(&p->key);
}

/* 0, SB_ERR_INVAL (with *why set) or SB_ERR_NOMEM. */
static int presence_parse(const msgpack_object *req, presence_req *p, const char **why)
{
    int rc;
    *why =
        "presence needs client, table, state (str), key (str or [str]); ttl_ms (uint) is optional";
    if ((rc = sb_mp_dup_str(sb_mp_map_get(req, "client"), &p->client)) < 0 ||
        (rc = sb_mp_dup_str(sb_mp_map_get(req, "table"), &p->table)) < 0 ||
        (rc = sb_mp_dup_str(sb_mp_map_get(req, "state"), &p->state)) < 0 ||
        (rc = sb_mp_dup_key(sb_mp_map_get(req, "key"), &p->key)) < 0)
        return rc;
    if (strcmp(p->state, "editing") && strcmp(p->state, "viewing") && strcmp(p->state, "left")) {
        *why = "state must be editing, viewing or left";
        return SB_ERR_INVAL;
    }
    if (p->client[0] == '\0' || strlen(p->client) > TZ_PRESENCE_CLIENT_MAX) {
        *why = "client must be 1 to 128 bytes";
        return SB_ERR_INVAL;
    }
    /* Without a TTL an entry lives TZ_PRESENCE_TTL_MS (docs/protocol.md). */
    const msgpack_object *ttl = sb_mp_map_get(req, "ttl_ms");
    p->ttl_ms = TZ_PRESENCE_TTL_MS;
    if (ttl && (sb_mp_get_uint(ttl, &p->ttl_ms) < 0 || p->ttl_ms > UINT32_MAX)) {
        *why = "ttl_ms must be a uint of at most 2^32-1";
        return SB_ERR_INVAL;
    }
    return SB_OK;
}

static void serve_presence(tz *t, tz_frames *env, const msgpack_object *req)
{
    presence_req p = {0};
    const char *why;
    int rc = presence_parse(req, &p, &why);
    if (rc == SB_OK && t->req_who && strcmp(p.client, t->req_who->name) != 0) {
        tz_reply_error(t, env, "forbidden", "this client announces presence as '%s' only",
                       t->req_who->name);
        presence_free(&p);
        return;
    }
    int table = rc == SB_OK ? tz_table_allowed(t, env, p.table, strlen(p.table)) : -1;
    if (rc == SB_OK && table < 0) {
        presence_free(&p);
        return;
    }
    if (rc == SB_OK) {
        sb_presence sp = {.client = p.client,
                          .table = (uint32_t)table,
                          .key = p.key,
                          .state = p.state,
                          .ttl_ms = (uint32_t)p.ttl_ms};
        rc = t->api->presence(t->host, &sp);
        /* The host refuses what its limits (presence_max_* options) do not allow. */
        why = "ttl_ms is above the broker's presence_max_ttl_ms";
    }
    if (rc == SB_OK) {
        sb_mp_buf o;
        sb_mp_buf_init(&o);
        int prc = msgpack_pack_map(&o.pk, 1);
        prc |= sb_mp_pack_kv_bool(&o.pk, "ok", true);
        tz_reply_map(t, env, &o.sb, prc, NULL);
    } else if (rc == SB_ERR_INVAL || rc == SB_ERR_NOMEM) {
        reply_parse_error(t, env, rc, why);
    } else if (rc == SB_ERR_NOTFOUND) {
        tz_reply_unknown_table(t, env, p.table, strlen(p.table));
    } else if (rc == SB_ERR_BUSY) {
        tz_reply_error(t, env, "limit",
                       "presence of '%.128s' refused: the broker holds its maximum of presence "
                       "entries for this client, this entity or in all (presence_max_*)",
                       p.client);
    } else {
        tz_reply_error(t, env, "internal", "presence failed: %s", sb_strerror(rc));
    }
    presence_free(&p);
}

/* ---- dispatch ------------------------------------------------------------------------ */

typedef void (*op_fn)(tz *t, tz_frames *env, const msgpack_object *req);

static const struct {
    const char *name;
    op_fn fn;
} ops[] = {
    {"ping", serve_ping},         {"snapshot", tz_snapshot_serve}, {"since", serve_since},
    {"presence", serve_presence}, {"stats", serve_stats},          {"editors", tz_editors_serve},
};

void tz_request_serve(tz *t, tz_frames *env, const void *body, size_t len)
{
    t->requests++;
    if (len > (uint64_t)t->max_request) {
        tz_reply_error(t, env, "too_large", "request of %zu bytes exceeds max_request %lld", len,
                       (long long)t->max_request);
        return;
    }
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    int rc = sb_mp_unpack(body, len, &request_limits, &up);
    const msgpack_object *req = &up.data;
    const char *op;
    size_t oplen;
    if (rc == SB_ERR_NOMEM)
        tz_reply_error(t, env, "internal", "out of memory");
    else if (rc < 0)
        tz_reply_error(t, env, "bad_request",
                       "request is not one valid msgpack object (truncated, trailing bytes, a "
                       "size beyond the bytes sent, over %u levels or %u objects)",
                       request_limits.max_depth, request_limits.max_elements);
    else if (req->type != MSGPACK_OBJECT_MAP)
        tz_reply_error(t, env, "bad_request", "request is not a map");
    else if (sb_mp_get_str(sb_mp_map_get(req, "op"), &op, &oplen) < 0)
        tz_reply_error(t, env, "bad_request", "request has no str op");
    else {
        char name[80];
        size_t i = 0;
        while (i < sizeof ops / sizeof ops[0] &&
               (strlen(ops[i].name) != oplen || memcmp(ops[i].name, op, oplen) != 0))
            i++;
        if (i < sizeof ops / sizeof ops[0])
            ops[i].fn(t, env, req);
        else
            tz_reply_error(t, env, "unknown_op", "unknown op '%s'",
                           printable(op, oplen, name, sizeof name));
    }
    msgpack_unpacked_destroy(&up);
}
