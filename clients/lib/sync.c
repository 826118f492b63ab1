/*
 * sync.c - the client algorithm of docs/protocol.md:
 *
 *   WAIT_HB --heartbeat--> SNAPSHOT --reply--> STREAM --gap/offline--> SINCE --reply--> STREAM
 *      ^                       |                 |                      |  ^
 *      |                       |                 |                      +--+ a capped reply:
 *      |                       |                 |                      |    since from its upto
 *      +-- new epoch, error, no answer, `resync`, a contradiction ------+
 *
 * Every stream message goes through sb_sync_feed(). While a request is in flight messages
 * are held (raw), and when it completes they are fed again in arrival order, so the code
 * that checks seq/tseq, epochs and versions exists once.
 *
 * Anything can publish on the events endpoint, so positions are checked for what an honest
 * broker cannot send (a seq the broker's own reply says it never published, a tseq that
 * moves further than seq): such a contradiction is answered by one resynchronisation, and
 * resynchronisations in quick succession back off, so a lie never becomes a request loop.
 */
#include "client_int.h"

#include "sb_mp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum feed_result { FEED_OK, FEED_GAP, FEED_NEW_EPOCH, FEED_LIE } feed_result;

/* Resyncs less than RESYNC_CALM_MS apart form a run: the first starts at the next heartbeat,
 * each later one waits twice as long as the one before (1, 2, 4... heartbeat intervals, at
 * most RESYNC_MAX_WAIT_MS). */
#define RESYNC_CALM_MS 60000u
#define RESYNC_MAX_WAIT_MS 30000u

void sb_sync_set_online(sb_client *c, bool online)
{
    if (online)
        c->stale = false;
    online_state want = online ? ONLINE_YES : ONLINE_NO;
    if (c->online == want)
        return;
    c->online = want;
    if (c->cb.on_online)
        c->cb.on_online(online, c->ud);
}

void sb_sync_clear_held(sb_client *c)
{
    for (size_t i = 0; i < c->nheld; i++)
        free(c->held[i].body);
    c->nheld = 0;
}

static void hold(sb_client *c, const void *body, size_t len)
{
    if (c->nheld == c->capheld) {
        size_t cap = c->capheld ? c->capheld * 2 : 64;
        held_msg *h = realloc(c->held, cap * sizeof(*h));
        if (!h) {
            sb_client_fail(c, SB_ERR_NOMEM);
            return;
        }
        c->held = h;
        c->capheld = cap;
    }
    void *copy = malloc(len ? len : 1);
    if (!copy) {
        sb_client_fail(c, SB_ERR_NOMEM);
        return;
    }
    memcpy(copy, body, len);
    c->held[c->nheld++] = (held_msg){copy, len};
}

static table_pos *find_pos(sb_client *c, const char *table)
{
    for (size_t i = 0; i < c->ntables; i++)
        if (strcmp(c->pos[i].table, table) == 0)
            return &c->pos[i];
    return NULL;
}

/* Send the snapshot/since request in c->syncreq (first try or a retry). */
static void send_sync_request(sb_client *c)
{
    c->req_deadline_ms = sb_svc_now_ms() + c->request_timeout_ms;
    int rc = sb_svc_send(&c->svc, &c->syncreq, &c->req_id);
    if (rc != SB_OK)
        sb_client_log(c, SB_LOG_WARN, "service request not sent: %s", sb_strerror(rc));
}

static void begin_request(sb_client *c, sync_state st)
{
    c->st = st;
    c->req_tries = 1;
    send_sync_request(c);
}

static uint64_t resync_wait_ms(const sb_client *c)
{
    if (c->resyncs == 0)
        return 0;
    uint64_t wait =
        c->resyncs > 16 ? RESYNC_MAX_WAIT_MS : (uint64_t)c->heartbeat_ms << (c->resyncs - 1);
    return wait < RESYNC_MAX_WAIT_MS ? wait : RESYNC_MAX_WAIT_MS;
}

/* Back to square one: a heartbeat starts a fresh synchronisation, after the back-off. A
 * client that knowingly stops following the stream for a while reports itself offline. */
static void restart(sb_client *c)
{
    uint64_t now = sb_svc_now_ms();
    if (now - c->last_resync_ms >= RESYNC_CALM_MS)
        c->resyncs = 0;
    uint64_t wait = resync_wait_ms(c);
    c->resyncs++;
    c->last_resync_ms = now;
    c->resync_at_ms = now + wait;
    c->st = ST_WAIT_HB;
    sb_sync_clear_held(c);
    if (wait) {
        sb_client_log(c, SB_LOG_WARN, "resync %u in a row: waiting %llu ms first", c->resyncs,
                      (unsigned long long)wait);
        sb_sync_set_online(c, false);
    }
}

static void fail_request(sb_client *c, int err)
{
    sb_client_fail(c, err);
    restart(c);
}

static int set_epoch(sb_client *c, const char *epoch)
{
    char *e = strdup(epoch);
    if (!e)
        return SB_ERR_NOMEM;
    free(c->epoch);
    c->epoch = e;
    return SB_OK;
}

void sb_sync_hb_topic(sb_client *c, const void *topic, size_t len)
{
    const size_t hl = sizeof SB_PROTO_TOPIC_HB - 1;
    if (len >= hl && memcmp(topic, SB_PROTO_TOPIC_HB, hl) == 0)
        c->own_hb = len > hl;
}

/* A client that follows all tables follows, from a heartbeat on its own topic, the tables
 * that heartbeat lists by tseq: a CURVE broker sends it only its tables' messages, so seq
 * jumps (docs/client.md). From a plain "@hb" it follows everything by seq. */
static int adopt_tables(sb_client *c, const sb_msg *hb)
{
    for (size_t i = 0; i < c->ntables; i++)
        free(c->pos[i].table);
    c->ntables = 0;
    uint32_t n = c->own_hb ? hb->tseq_map->via.map.size : 0;
    table_pos *pos = realloc(c->pos, (n ? n : 1) * sizeof(*pos));
    if (!pos)
        return SB_ERR_NOMEM;
    c->pos = pos;
    for (uint32_t i = 0; i < n; i++) {
        const char *name;
        size_t len;
        if (sb_mp_get_str(&hb->tseq_map->via.map.ptr[i].key, &name, &len) != SB_OK)
            continue;
        pos[c->ntables] = (table_pos){.table = strndup(name, len)};
        if (!pos[c->ntables].table)
            return SB_ERR_NOMEM;
        c->ntables++;
    }
    return SB_OK;
}

/* The first heartbeat (of an epoch) proves the subscriptions live: everything published
 * after it reaches us, so its positions are the baseline for gap detection. */
static void start_sync(sb_client *c, const sb_msg *hb)
{
    int rc = set_epoch(c, hb->epoch);
    if (rc == SB_OK && c->follow_all)
        rc = adopt_tables(c, hb);
    if (rc != SB_OK) {
        sb_client_fail(c, rc);
        return;
    }
    c->seq = hb->seq;
    c->floor_seq = hb->seq;
    for (size_t i = 0; i < c->ntables; i++) {
        c->pos[i].tseq = sb_msg_hb_tseq(hb, c->pos[i].table);
        c->pos[i].tseq_at = c->pos[i].ok_seq = hb->seq;
    }
    if (c->no_snapshot) {
        c->st = ST_STREAM;
        sb_sync_set_online(c, true);
        return;
    }
    const char **tables = NULL;
    if (c->ntables) {
        tables = malloc(c->ntables * sizeof(*tables));
        if (!tables) {
            sb_client_fail(c, SB_ERR_NOMEM);
            return;
        }
        for (size_t i = 0; i < c->ntables; i++)
            tables[i] = c->pos[i].table;
    }
    rc = sb_svc_pack_snapshot(&c->syncreq, tables, c->ntables);
    free(tables);
    if (rc != SB_OK) {
        sb_client_fail(c, rc);
        return;
    }
    begin_request(c, ST_SNAPSHOT);
}

/* In WAIT_HB: a heartbeat starts the synchronisation once the back-off has passed. */
static void wait_hb_feed(sb_client *c, const sb_msg *m)
{
    if (m->type == SB_PROTO_HEARTBEAT && sb_svc_now_ms() >= c->resync_at_ms)
        start_sync(c, m);
}

/* Ask for everything after seq `from` (a first try or the continuation of a capped reply). */
static void request_since(sb_client *c, uint64_t from)
{
    c->since_from = from;
    int rc = sb_svc_pack_since(&c->syncreq, c->epoch, from);
    if (rc != SB_OK) {
        sb_client_fail(c, rc);
        return;
    }
    sb_client_log(c, SB_LOG_INFO, "resuming from seq %llu with since", (unsigned long long)from);
    begin_request(c, ST_SINCE);
}

/* Ask for what we missed, from the last seq up to which every followed message is known.
 * gap_seq is the seq of the message that showed the gap: the reply must reach it. */
static void start_since(sb_client *c, uint64_t gap_seq)
{
    c->gap_seq = gap_seq;
    uint64_t from = c->seq;
    for (size_t i = 0; i < c->ntables; i++)
        if (i == 0 || c->pos[i].ok_seq < from)
            from = c->pos[i].ok_seq;
    request_since(c, from);
}

static void apply_event(sb_client *c, const sb_msg *m)
{
    const sb_client_event *ev = &m->ev;
    int rc;
    if (ev->op == SB_OP_TRUNCATE)
        rc = sb_cache_drop_table(c->cache, ev->table);
    else
        rc =
            sb_cache_put(c->cache, ev->table, ev->key, ev->nkey, ev->version, ev->row, ev->row_len);
    if (rc < 0) {
        sb_client_fail(c, rc);
        return;
    }
    if (rc == 0 && ev->op != SB_OP_TRUNCATE)
        return; /* not newer than what we hold */
    if (c->cb.on_event) {
        sb_client_event out = *ev;
        out.own = ev->origin && strcmp(ev->origin, c->client_id) == 0;
        c->cb.on_event(&out, c->ud);
    }
}

/* Position check for a seq-numbered message in all-tables mode. */
static feed_result check_seq(sb_client *c, uint64_t seq, bool *fresh)
{
    *fresh = seq > c->seq;
    if (*fresh && seq - c->seq > 1)
        return FEED_GAP;
    if (*fresh)
        c->seq = seq;
    return FEED_OK;
}

static feed_result process_event(sb_client *c, const sb_msg *m)
{
    bool fresh;
    if (!c->ntables) {
        feed_result r = check_seq(c, m->seq, &fresh);
        if (r != FEED_OK)
            return r;
    } else {
        table_pos *p = find_pos(c, m->ev.table);
        if (!p)
            return FEED_OK; /* a table we do not follow (a `since` replay has them all) */
        fresh = m->ev.tseq > p->tseq;
        /* Nothing new can come at a position known complete, and tseq counts a subset of
         * what seq counts, so it cannot move further. */
        if (fresh && (m->seq <= p->ok_seq || m->ev.tseq - p->tseq > m->seq - p->tseq_at))
            return FEED_LIE;
        /* At or below the floor the snapshot holds the event: just follow its tseq. */
        if (m->seq > c->floor_seq && m->ev.tseq - p->tseq > 1)
            return FEED_GAP;
        if (fresh) {
            p->tseq = m->ev.tseq;
            p->tseq_at = p->ok_seq = m->seq;
        }
    }
    if (fresh && m->seq > c->floor_seq)
        apply_event(c, m);
    return FEED_OK;
}

static feed_result process_presence(sb_client *c, const sb_msg *m)
{
    bool fresh = true;
    if (!c->ntables) {
        feed_result r = check_seq(c, m->seq, &fresh);
        if (r != FEED_OK)
            return r;
    } else if (!find_pos(c, m->table)) {
        return FEED_OK;
    }
    if (fresh && c->cb.on_presence)
        c->cb.on_presence(m->table, m->key, m->nkey, m->editors, m->neditors, c->ud);
    return FEED_OK;
}

/* A heartbeat says what was published: more than we received is a gap. One older than our
 * position (held while a reply ran ahead of it) cannot say more than we have; a newer one
 * cannot say less, nor more than seq moved. */
static feed_result process_heartbeat(sb_client *c, const sb_msg *m)
{
    if (!c->ntables)
        return m->seq > c->seq ? FEED_GAP : FEED_OK;
    feed_result r = FEED_OK;
    for (size_t i = 0; i < c->ntables; i++) {
        table_pos *p = &c->pos[i];
        uint64_t t = sb_msg_hb_tseq(m, p->table);
        if (m->seq < p->tseq_at ? t > p->tseq : t < p->tseq || t - p->tseq > m->seq - p->tseq_at)
            return FEED_LIE;
        if (t > p->tseq)
            r = FEED_GAP;
        else if (t == p->tseq && m->seq > p->ok_seq)
            p->ok_seq = m->seq;
    }
    return r;
}

static feed_result process(sb_client *c, const sb_msg *m)
{
    if (strcmp(m->epoch, c->epoch) != 0)
        return FEED_NEW_EPOCH;
    switch (m->type) {
    case SB_PROTO_EVENT:
        return process_event(c, m);
    case SB_PROTO_PRESENCE:
        return process_presence(c, m);
    default:
        return process_heartbeat(c, m);
    }
}

void sb_sync_feed(sb_client *c, const void *body, size_t len)
{
    if (c->st == ST_SNAPSHOT || c->st == ST_SINCE) {
        hold(c, body, len);
        return;
    }
    sb_msg m;
    int rc = sb_msg_parse(body, len, &c->rowbuf, &m);
    if (rc != SB_OK) {
        /* Anything can publish on the endpoint: say enough to tell garbage from a mismatch. */
        sb_client_log(c, SB_LOG_WARN, "dropped a malformed message (%zu bytes): %s", len,
                      rc == SB_ERR_NOMEM             ? "out of memory"
                      : sb_mp_check(body, len, NULL) ? "not one valid msgpack object"
                                                     : "not an event, presence or heartbeat");
        return;
    }
    if (m.type == SB_PROTO_HEARTBEAT && m.hb_ms && m.hb_ms != c->heartbeat_ms) {
        /* Offline detection and back-off follow the broker's period, not our guess. */
        sb_client_log(c, SB_LOG_INFO, "broker heartbeat every %u ms", m.hb_ms);
        c->heartbeat_ms = m.hb_ms;
    }
    if (c->st == ST_WAIT_HB) {
        wait_hb_feed(c, &m);
        sb_msg_release(&m);
        return;
    }
    feed_result r = strcmp(m.epoch, c->epoch) != 0 ? FEED_NEW_EPOCH : FEED_OK;
    if (r == FEED_OK && c->stale) {
        /* Back from offline: whatever we missed comes from `since`. */
        start_since(c, m.seq);
        hold(c, body, len);
    } else if (r == FEED_OK && (r = process(c, &m)) == FEED_GAP) {
        sb_client_log(c, SB_LOG_INFO, "gap before seq %llu", (unsigned long long)m.seq);
        start_since(c, m.seq);
        hold(c, body, len);
    } else if (r == FEED_LIE) {
        sb_client_log(c, SB_LOG_WARN,
                      "a message at seq %llu contradicts the stream: resynchronising",
                      (unsigned long long)m.seq);
        restart(c);
    } else if (r == FEED_NEW_EPOCH) {
        sb_client_log(c, SB_LOG_INFO, "broker epoch changed: resynchronising");
        restart(c);
        wait_hb_feed(c, &m);
    }
    sb_msg_release(&m);
}

/* Feed again what was held while a request was in flight (it may be held again). */
static void feed_held(sb_client *c)
{
    held_msg *held = c->held;
    size_t n = c->nheld;
    c->held = NULL;
    c->nheld = c->capheld = 0;
    for (size_t i = 0; i < n; i++) {
        sb_sync_feed(c, held[i].body, held[i].len);
        free(held[i].body);
    }
    free(held);
}

static int put_snapshot_row(const sb_client_row *r, void *ud)
{
    int rc = sb_cache_put(ud, r->table, r->key, r->nkey, r->version, r->row, r->row_len);
    return rc < 0 ? rc : 0;
}

static void snapshot_reply(sb_client *c, const sb_svc_reply *r)
{
    sb_cache *fresh;
    char epoch[256], err[256];
    uint64_t seq;
    int rc = sb_cache_new(c->keep_rows, &fresh);
    if (rc == SB_OK)
        rc = sb_svc_snapshot_reply(r, &c->rowbuf, put_snapshot_row, fresh, epoch, sizeof(epoch),
                                   &seq, err, sizeof(err));
    if (rc == SB_OK && strcmp(epoch, c->epoch) != 0) {
        snprintf(err, sizeof(err), "epoch changed during the snapshot");
        rc = SB_ERR_STATE;
    } else if (rc == SB_OK && seq < c->floor_seq) {
        /* Asked after the heartbeat, so the snapshot cannot be older than it. */
        snprintf(err, sizeof(err), "its seq %llu is behind the heartbeat's %llu",
                 (unsigned long long)seq, (unsigned long long)c->floor_seq);
        rc = SB_ERR_STATE;
    }
    if (rc != SB_OK) {
        sb_cache_free(fresh);
        sb_client_log(c, SB_LOG_WARN, "snapshot failed: %s", err);
        fail_request(c, rc == SB_ERR_STATE ? SB_OK : rc);
        return;
    }
    sb_cache_free(c->cache);
    c->cache = fresh;
    /* Buffered events at or below the snapshot's seq are in it already. */
    c->floor_seq = seq;
    if (seq > c->seq)
        c->seq = seq;
    c->st = ST_STREAM;
    c->stale = false; /* in sync again: held messages must not start another `since` */
    if (c->cb.on_reset)
        c->cb.on_reset(c->ud);
    feed_held(c);
    if (c->st == ST_STREAM)
        sb_sync_set_online(c, true);
}

/* A capped reply's more/upto: SB_OK (*more false when absent or false), SB_ERR_STATE for
 * what an honest broker cannot send: `more` without an upto above the seq asked (the
 * continuation would not advance). */
static int since_more(sb_client *c, const msgpack_object *map, bool *more, uint64_t *upto)
{
    const msgpack_object *m = sb_mp_map_get(map, "more");
    *more = false;
    if (m && sb_mp_get_bool(m, more) != SB_OK)
        return SB_ERR_STATE;
    if (!*more)
        return SB_OK;
    if (sb_mp_get_uint(sb_mp_map_get(map, "upto"), upto) != SB_OK || *upto <= c->since_from) {
        sb_client_log(c, SB_LOG_WARN,
                      "a since reply from seq %llu says more but %s: resynchronising",
                      (unsigned long long)c->since_from,
                      sb_mp_map_get(map, "upto") ? "its upto does not advance" : "has no upto");
        return SB_ERR_STATE;
    }
    return SB_OK;
}

static void since_reply(sb_client *c, const sb_svc_reply *r)
{
    sb_reply h;
    uint64_t last = 0, upto = 0, replayed = c->since_from;
    bool more = false;
    int rc = sb_reply_parse(zmq_msg_data(&r->frames[0]), zmq_msg_size(&r->frames[0]), &h);
    if (rc == SB_OK && h.error) {
        /* "future": our position is ahead of the broker's, so something we took lied. */
        bool resync = strcmp(h.error, "resync") == 0 || strcmp(h.error, "future") == 0;
        sb_client_log(c, SB_LOG_INFO, "since refused (%s): taking a snapshot", h.error);
        rc = resync ? SB_ERR_STATE : sb_reply_error_code(h.error);
    } else if (rc == SB_OK && (sb_mp_get_uint(sb_mp_map_get(h.map, "seq"), &last) != SB_OK ||
                               !sb_mp_str_eq(sb_mp_map_get(h.map, "epoch"), c->epoch))) {
        rc = SB_ERR_STATE;
    } else if (rc == SB_OK && (rc = since_more(c, h.map, &more, &upto)) == SB_OK && !more &&
               last < c->gap_seq) {
        /* The message that showed the gap was published before we asked, so the broker's
         * last seq reaches it, unless that message was not the broker's. (A capped reply's
         * seq is its upto: the complete one at the end says the broker's last.) */
        sb_client_log(c, SB_LOG_WARN,
                      "seq %llu came from the stream but the broker's last is %llu: "
                      "resynchronising",
                      (unsigned long long)c->gap_seq, (unsigned long long)last);
        rc = SB_ERR_STATE;
    }
    sb_reply_release(&h);
    /* Replay the missed messages; they must continue our positions exactly. */
    c->st = ST_STREAM;
    for (size_t i = 1; rc == SB_OK && i < r->n; i++) {
        sb_msg m;
        rc = sb_msg_parse(zmq_msg_data(&r->frames[i]), zmq_msg_size(&r->frames[i]), &c->rowbuf, &m);
        if (rc == SB_OK) {
            replayed = m.seq;
            rc = process(c, &m) == FEED_OK ? SB_OK : SB_ERR_STATE;
            sb_msg_release(&m);
        }
    }
    /* Complete up to `last`: a capped reply exactly up to its upto, else the broker's last. */
    if (more)
        last = upto;
    if (rc == SB_OK && (more ? replayed != upto : !c->ntables && c->seq < last))
        rc = SB_ERR_STATE;
    if (rc != SB_OK) {
        if (rc != SB_ERR_STATE)
            sb_client_log(c, SB_LOG_WARN, "since failed: %s", sb_strerror(rc));
        /* The next heartbeat starts a snapshot (or, without snapshots, a new baseline). */
        fail_request(c, rc == SB_ERR_STATE ? SB_OK : rc);
        return;
    }
    for (size_t i = 0; i < c->ntables; i++)
        if (c->pos[i].ok_seq < last)
            c->pos[i].ok_seq = last;
    if (more) {
        /* The broker capped its reply: ask for the rest; stream messages stay held. */
        request_since(c, upto);
        return;
    }
    c->stale = false;
    feed_held(c);
    if (c->st == ST_STREAM)
        sb_sync_set_online(c, true);
}

void sb_sync_reply(sb_client *c, const sb_svc_reply *r)
{
    if (c->st == ST_SNAPSHOT)
        snapshot_reply(c, r);
    else
        since_reply(c, r);
}

void sb_sync_timeout(sb_client *c)
{
    /* Lazy Pirate: a fresh socket drops a stuck connection and any late reply. */
    int rc = sb_svc_reopen(&c->svc);
    if (rc == SB_OK && c->req_tries < c->request_retries) {
        c->req_tries++;
        sb_client_log(c, SB_LOG_WARN, "no answer from %s, try %u of %u", c->svc.endpoint,
                      c->req_tries, c->request_retries);
        send_sync_request(c);
        return;
    }
    sb_client_log(c, SB_LOG_ERROR, "no answer from %s after %u tries", c->svc.endpoint,
                  c->req_tries);
    fail_request(c, rc == SB_OK ? SB_ERR_BUSY : rc);
}
