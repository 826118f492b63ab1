/* core.c - see core.h. */
#include "core.h"
#include "debounce.h"
#include "fault.h"
#include "log.h"
#include "presence.h"
#include "ring.h"
#include "sb_proto.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Entities touched per debounce slice: keeps one loop iteration to a few milliseconds. */
#define DEBOUNCE_BUDGET 2000
/* Tolerated difference between the database's clock (change ts) and ours. */
#define CLOCK_SKEW_MS 1000

/* A running snapshot. Its transport's callback may cancel it (or others): after any call of
 * fn, a snapshot_req is found again by its id. */
typedef struct snapshot_req {
    uint64_t req;
    sb_snapshot_fn fn;
    void *ud;
    bool cut;      /* seq and tseq taken */
    bool cut_sent; /* SB_SNAPSHOT_CUT delivered */
    bool paused;   /* the source was asked to hold back rows (snapshot_flow) */
    uint64_t seq;
    uint64_t *tseq; /* per table at seq, owned */
} snapshot_req;

struct sb_core {
    sb_loop *loop;
    const sb_config *cfg;
    char epoch[17];
    uint64_t seq;
    uint64_t *tseq; /* per table */

    sb_host *source;
    sb_host **transports;
    size_t ntransports;
    bool active;                /* the source holds its lease (core_lease) */
    bool draining;              /* sb_core_drain was called */
    uint64_t max_position;      /* highest sb_change.position queued */
    uint64_t reported_position; /* last position handed to the source's published() */

    sb_debounce *debounce;
    sb_timer *debounce_timer;
    uint64_t debounce_due; /* when debounce_timer fires; UINT64_MAX if none */
    sb_timer *heartbeat_timer;
    uint64_t heartbeat_ms;

    sb_ring *ring;
    sb_presence_set *presence;
    sb_timer *presence_timer;
    uint64_t presence_due;
    uint64_t presence_refused; /* over a presence limit; logged 1st, 2nd, 4th, 8th, ... */

    snapshot_req **snapshots;
    size_t nsnapshots, cap_snapshots;
    uint64_t next_req;

    msgpack_sbuffer topic, body; /* reused encode buffers */

    uint64_t changes_in, events_out, snapshots_served;
    uint64_t publish_failures;    /* transport publish() errors, logged 1st and every 1000th */
    int64_t last_snapshot_end_ms; /* wall clock; INT64_MIN before the first snapshot */
    int64_t source_lag_ms;        /* receive time - change time, newest batch; -1 before any */
};

static const char *SCOPE = "core";

static void new_epoch(sb_core *core)
{
    unsigned char raw[8];
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    ssize_t got = fd >= 0 ? read(fd, raw, sizeof raw) : -1;
    if (fd >= 0)
        close(fd);
    if (got != (ssize_t)sizeof raw) {
        /* No urandom (chroot): the clock and pid still differ between runs. */
        uint64_t x = (uint64_t)sb_proto_wall_ms() ^ ((uint64_t)getpid() << 32);
        memcpy(raw, &x, sizeof raw);
    }
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(core->epoch + 2 * i, 3, "%02x", raw[i]);
}

/* ---- publishing ------------------------------------------------------------------- */

static void core_resync(void *ud, const char *reason);

/* A message that may be lost to a client: new epoch, clients resynchronise once. */
static void resync_after_loss(sb_core *core, const char *what)
{
    char reason[256];
    snprintf(reason, sizeof reason, "%s, starting a new epoch so that nothing is lost", what);
    core_resync(core, reason);
}

static void fan_out(sb_core *core, sb_msg_kind kind, uint64_t seq)
{
    sb_message m = {.kind = kind,
                    .seq = seq,
                    .topic = core->topic.data,
                    .topic_len = core->topic.size,
                    .body = core->body.data,
                    .body_len = core->body.size};
    bool data = kind != SB_MSG_HEARTBEAT; /* a missed heartbeat is only late news */
    bool retained = data && !SB_FAULT("core.retain") && sb_ring_push(core->ring, &m) == SB_OK;
    if (data && !retained)
        sb_log(SB_LOG_WARN, SCOPE, "replay buffer: out of memory, message %llu not retained",
               (unsigned long long)seq);
    bool lost = false;
    for (size_t i = 0; i < core->ntransports; i++) {
        sb_host *t = core->transports[i];
        if (!sb_host_started(t))
            continue;
        int rc = data && SB_FAULT("core.publish") ? SB_ERR_IO : sb_host_publish(t, &m);
        if (rc >= 0)
            continue;
        lost |= data && !retained;
        if (core->publish_failures++ % 1000 == 0)
            sb_log(SB_LOG_WARN, SCOPE, "%s could not publish %s %llu: %s; %s", sb_host_section(t),
                   data ? "message" : "heartbeat", (unsigned long long)seq, sb_strerror(rc),
                   !data      ? "clients hear of the stream at the next one"
                   : retained ? "clients see the gap and fetch it with since (replay buffer)"
                              : "it is not in the replay buffer either");
    }
    if (lost)
        resync_after_loss(core, "a message was neither published nor retained");
}

static void publish_event(void *ud, const sb_debounce_event *ev)
{
    sb_core *core = ud;
    if (!core->active)
        return; /* a fetch answered after the lease was lost */
    uint64_t seq = core->seq + 1;
    uint64_t tseq = core->tseq[ev->table] + 1;
    sb_proto_event pe = {.seq = seq,
                         .tseq = tseq,
                         .epoch = core->epoch,
                         .table = core->cfg->tables[ev->table],
                         .key = ev->key,
                         .op = ev->op,
                         .version = ev->version,
                         .origin = ev->origin,
                         .ts_ms = ev->ts_ms,
                         .row = ev->row,
                         .row_len = ev->row_len,
                         .n = ev->n};
    if (SB_FAULT("core.encode") || sb_proto_encode_event(&core->topic, &core->body, &pe)) {
        char what[160];
        snprintf(what, sizeof what, "out of memory encoding an event of %s",
                 core->cfg->tables[ev->table]);
        resync_after_loss(core, what);
        return;
    }
    core->seq = seq;
    core->tseq[ev->table] = tseq;
    core->events_out++;
    fan_out(core, SB_MSG_EVENT, seq);
}

static void report_published(sb_core *core);

static void heartbeat(void *ud)
{
    sb_core *core = ud;
    if (!core->active)
        return; /* clients see this broker offline and move on */
    report_published(core);
    if (sb_proto_encode_heartbeat(&core->topic, &core->body, core->epoch, core->seq,
                                  (const char *const *)core->cfg->tables, core->tseq,
                                  core->cfg->ntables, sb_proto_wall_ms(),
                                  core->heartbeat_ms) == SB_OK)
        fan_out(core, SB_MSG_HEARTBEAT, core->seq);
}

/* ---- debounce glue ---------------------------------------------------------------- */

static uint64_t next_request_id(sb_core *core)
{
    return ++core->next_req;
}

static int fetch_rows(void *ud, uint32_t table, const sb_key *keys, size_t n, uint64_t *req)
{
    sb_core *core = ud;
    if (!core->source)
        return SB_ERR_BUSY;
    *req = next_request_id(core);
    int rc = sb_host_source_fetch(core->source, *req, table, keys, n);
    if (rc < 0)
        sb_log(SB_LOG_WARN, SCOPE, "fetching %zu rows of %s failed: %s (will retry)", n,
               core->cfg->tables[table], sb_strerror(rc));
    return rc;
}

static const sb_debounce_ops debounce_ops = {.fetch = fetch_rows, .publish = publish_event};

static void debounce_tick(void *ud);

/* Make sure the debounce timer fires when the engine next has work. */
static void schedule_debounce(sb_core *core)
{
    uint64_t now = sb_loop_now(core->loop);
    uint64_t due = sb_debounce_next_deadline(core->debounce, now);
    if (due == UINT64_MAX || (core->debounce_timer && core->debounce_due <= due))
        return;
    sb_timer_remove(core->debounce_timer);
    core->debounce_timer = NULL;
    core->debounce_due = due;
    if (sb_loop_timer(core->loop, core, due > now ? due - now : 0, 0, debounce_tick, core,
                      &core->debounce_timer))
        sb_log(SB_LOG_ERROR, SCOPE, "out of memory arming the debounce timer");
}

static void debounce_tick(void *ud)
{
    sb_core *core = ud;
    core->debounce_timer = NULL; /* one-shot: freed after this callback */
    sb_debounce_run(core->debounce, sb_loop_now(core->loop), DEBOUNCE_BUDGET);
    schedule_debounce(core);
    if (core->draining && sb_core_drained(core))
        report_published(core);
}

/* Every change with a position <= P was published or superseded by a published event. */
static void report_published(sb_core *core)
{
    if (!core->source || !core->active || !sb_host_source_has_published(core->source))
        return;
    uint64_t low = sb_debounce_lowest_position(core->debounce);
    uint64_t p = low ? low - 1 : core->max_position;
    if (p <= core->reported_position)
        return;
    core->reported_position = p;
    sb_host_source_published(core->source, p);
}

/* ---- life ------------------------------------------------------------------------- */

static uint64_t *table_windows(const sb_config *cfg)
{
    uint64_t *w = malloc(cfg->ntables * sizeof *w);
    for (size_t i = 0; w && i < cfg->ntables; i++)
        w[i] = (uint64_t)sb_config_table_debounce(cfg, i);
    return w;
}

/* An empty engine with cfg's windows (at start, and to forget everything at lease loss). */
static int new_debounce(sb_core *core, sb_debounce **out)
{
    const sb_config *cfg = core->cfg;
    uint64_t *windows = table_windows(cfg);
    int rc =
        windows ? sb_debounce_new(cfg->ntables, windows, &debounce_ops, core, out) : SB_ERR_NOMEM;
    free(windows);
    return rc;
}

int sb_core_new(sb_loop *loop, const sb_config *cfg, sb_core **out)
{
    sb_core *core = calloc(1, sizeof *core);
    if (!core)
        return SB_ERR_NOMEM;
    core->loop = loop;
    core->cfg = cfg;
    core->heartbeat_ms = (uint64_t)cfg->heartbeat_ms;
    core->source_lag_ms = -1;
    core->active = true;
    core->last_snapshot_end_ms = INT64_MIN;
    core->debounce_due = UINT64_MAX;
    msgpack_sbuffer_init(&core->topic);
    msgpack_sbuffer_init(&core->body);
    new_epoch(core);
    int rc = SB_ERR_NOMEM;
    core->tseq = calloc(cfg->ntables, sizeof *core->tseq);
    sb_presence_limits limits = {.max_entries = (size_t)cfg->presence_max_entries,
                                 .max_per_client = (size_t)cfg->presence_max_per_client,
                                 .max_per_entity = (size_t)cfg->presence_max_per_entity,
                                 .max_ttl_ms = (uint32_t)cfg->presence_max_ttl_ms};
    if (core->tseq && sb_ring_new((size_t)cfg->replay_buffer, &core->ring) == SB_OK &&
        sb_presence_set_new(&limits, &core->presence) == SB_OK)
        rc = new_debounce(core, &core->debounce);
    if (rc) {
        sb_core_free(core);
        return rc;
    }
    *out = core;
    return SB_OK;
}

void sb_core_free(sb_core *core)
{
    if (!core)
        return;
    sb_loop_drop_owner(core->loop, core);
    sb_debounce_free(core->debounce);
    sb_ring_free(core->ring);
    sb_presence_set_free(core->presence);
    msgpack_sbuffer_destroy(&core->topic);
    msgpack_sbuffer_destroy(&core->body);
    for (size_t i = 0; i < core->nsnapshots; i++) {
        free(core->snapshots[i]->tseq);
        free(core->snapshots[i]);
    }
    free(core->snapshots);
    free(core->transports);
    free(core->tseq);
    free(core);
}

void sb_core_set_source(sb_core *core, sb_host *source)
{
    core->source = source;
}

int sb_core_add_transport(sb_core *core, sb_host *transport)
{
    sb_host **grown = realloc(core->transports, (core->ntransports + 1) * sizeof *grown);
    if (!grown)
        return SB_ERR_NOMEM;
    core->transports = grown;
    core->transports[core->ntransports++] = transport;
    return SB_OK;
}

int sb_core_start(sb_core *core)
{
    sb_log(SB_LOG_INFO, SCOPE, "epoch %s, %zu table(s), heartbeat every %llu ms", core->epoch,
           core->cfg->ntables, (unsigned long long)core->heartbeat_ms);
    return sb_loop_timer(core->loop, core, 0, core->heartbeat_ms, heartbeat, core,
                         &core->heartbeat_timer);
}

void sb_core_reload(sb_core *core)
{
    const sb_config *cfg = core->cfg;
    uint64_t *windows = table_windows(cfg);
    if (windows)
        sb_debounce_set_windows(core->debounce, windows);
    free(windows);
    if ((uint64_t)cfg->heartbeat_ms != core->heartbeat_ms) {
        sb_timer_remove(core->heartbeat_timer);
        core->heartbeat_ms = (uint64_t)cfg->heartbeat_ms;
        /* At once: clients take the period from the heartbeat, before they miss one. */
        if (sb_loop_timer(core->loop, core, 0, core->heartbeat_ms, heartbeat, core,
                          &core->heartbeat_timer))
            sb_log(SB_LOG_ERROR, SCOPE, "out of memory re-arming the heartbeat");
    }
}

void sb_core_drain(sb_core *core)
{
    core->draining = true;
    sb_debounce_flush_all(core->debounce);
    schedule_debounce(core);
    if (sb_core_drained(core))
        report_published(core);
}

bool sb_core_drained(const sb_core *core)
{
    return sb_debounce_pending(core->debounce) == 0;
}

/* ---- host API ----------------------------------------------------------------------- */

static const char *core_epoch(void *ud)
{
    sb_core *core = ud;
    return core->epoch;
}

static int core_emit(void *ud, const sb_change *changes, size_t n)
{
    sb_core *core = ud;
    if (!core->active)
        return SB_OK; /* no lease: the new epoch at lease(true) covers what is dropped */
    uint64_t now = sb_loop_now(core->loop);
    int64_t wall = sb_proto_wall_ms();
    int rc = SB_OK;
    char dropped[192] = ""; /* the first change this batch could not queue */
    for (size_t i = 0; i < n; i++) {
        const sb_change *c = &changes[i]; /* checked against plugin.h's rules by host.c */
        core->changes_in++;
        if (i + 1 == n)
            core->source_lag_ms = wall > c->ts_ms ? wall - c->ts_ms : 0;
        int crc = SB_FAULT("core.queue") ? SB_ERR_NOMEM
                                         : sb_debounce_change(core->debounce, c->table, c, now);
        if (crc) {
            if (!dropped[0])
                snprintf(dropped, sizeof dropped, "a change of %s could not be queued (%s)",
                         core->cfg->tables[c->table], sb_strerror(crc));
            rc = crc;
        } else if (c->position > core->max_position) {
            core->max_position = c->position;
        }
    }
    /* The rest of the batch is queued: a snapshot after the new epoch covers the dropped. */
    if (dropped[0])
        resync_after_loss(core, dropped);
    schedule_debounce(core);
    return rc;
}

static snapshot_req *find_snapshot(sb_core *core, uint64_t req)
{
    for (size_t i = 0; i < core->nsnapshots; i++)
        if (core->snapshots[i]->req == req)
            return core->snapshots[i];
    return NULL;
}

/* A running snapshot may show clients rows whose inserts were never published; tell the
 * debounce engine which changes may have been seen that way. */
static void update_exposure(sb_core *core)
{
    int64_t until = core->nsnapshots ? INT64_MAX
                    : core->last_snapshot_end_ms == INT64_MIN
                        ? INT64_MIN
                        : core->last_snapshot_end_ms + CLOCK_SKEW_MS;
    sb_debounce_set_exposure(core->debounce, until);
}

/* Take s out of the running list and free it. */
static void remove_snapshot(sb_core *core, snapshot_req *s)
{
    for (size_t i = 0; i < core->nsnapshots; i++) {
        if (core->snapshots[i] == s) {
            core->snapshots[i] = core->snapshots[--core->nsnapshots];
            break;
        }
    }
    free(s->tseq);
    free(s);
    core->last_snapshot_end_ms = sb_proto_wall_ms();
    update_exposure(core);
}

static void take_cut(sb_core *core, snapshot_req *s)
{
    s->seq = core->seq;
    memcpy(s->tseq, core->tseq, core->cfg->ntables * sizeof *s->tseq);
    s->cut = true;
}

/* Deliver s's CUT if it is due; s, or NULL when its transport cancelled it meanwhile. */
static snapshot_req *send_cut(sb_core *core, snapshot_req *s)
{
    if (s->cut_sent)
        return s;
    s->cut_sent = true;
    uint64_t id = s->req;
    sb_snapshot_event ev = {
        .kind = SB_SNAPSHOT_CUT, .seq = s->seq, .tseq = s->tseq, .ntables = core->cfg->ntables};
    s->fn(s->ud, id, &ev);
    return find_snapshot(core, id);
}

/* Finish s with DONE(status), after its CUT when it succeeded. */
static void finish_snapshot(sb_core *core, snapshot_req *s, int status)
{
    uint64_t id = s->req;
    if (status == SB_OK && !(s = send_cut(core, s)))
        return;
    sb_snapshot_fn fn = s->fn;
    void *ud = s->ud;
    remove_snapshot(core, s);
    if (status == SB_OK)
        core->snapshots_served++;
    sb_snapshot_event ev = {.kind = SB_SNAPSHOT_DONE, .status = status};
    fn(ud, id, &ev);
}

static void snapshot_rows(sb_core *core, snapshot_req *s, const sb_row *rows, size_t n)
{
    uint64_t id = s->req;
    if (!s->cut) {
        sb_log(SB_LOG_ERROR, SCOPE,
               "the source sent rows of snapshot %llu before snapshot_cut(): "
               "cut taken now",
               (unsigned long long)id);
        take_cut(core, s);
    }
    if (!(s = send_cut(core, s)))
        return;
    sb_snapshot_event ev = {.kind = SB_SNAPSHOT_ROWS, .rows = rows, .n = n};
    int rc = s->fn(s->ud, id, &ev);
    if (rc == SB_ERR_BUSY && (s = find_snapshot(core, id)) && !s->paused)
        s->paused = sb_host_source_snapshot_flow(core->source, id, false);
}

static void core_rows(void *ud, uint64_t req, const sb_row *rows, size_t n)
{
    sb_core *core = ud;
    if (sb_debounce_owns(core->debounce, req)) {
        sb_debounce_rows(core->debounce, req, rows, n, sb_loop_now(core->loop));
        schedule_debounce(core);
        return;
    }
    snapshot_req *s = find_snapshot(core, req);
    if (s && n)
        snapshot_rows(core, s, rows, n);
}

static void core_done(void *ud, uint64_t req, int status)
{
    sb_core *core = ud;
    if (sb_debounce_owns(core->debounce, req)) {
        if (status)
            sb_log(SB_LOG_WARN, SCOPE, "row fetch failed: %s (will retry)", sb_strerror(status));
        sb_debounce_done(core->debounce, req, status, sb_loop_now(core->loop));
        schedule_debounce(core);
        return;
    }
    snapshot_req *s = find_snapshot(core, req);
    if (!s)
        return;
    if (status == SB_OK && !s->cut) {
        sb_log(SB_LOG_ERROR, SCOPE,
               "the source finished snapshot %llu without snapshot_cut(): the reply is refused",
               (unsigned long long)req);
        status = SB_ERR_STATE;
    }
    finish_snapshot(core, s, status);
}

static void core_snapshot_cut(void *ud, uint64_t req)
{
    sb_core *core = ud;
    snapshot_req *s = find_snapshot(core, req);
    if (!s)
        return;
    if (s->cut) {
        sb_log(SB_LOG_ERROR, SCOPE, "second snapshot_cut() for snapshot %llu: ignored",
               (unsigned long long)req);
        return;
    }
    take_cut(core, s);
    send_cut(core, s);
}

static void core_resync(void *ud, const char *reason)
{
    sb_core *core = ud;
    char old[sizeof core->epoch];
    memcpy(old, core->epoch, sizeof old);
    new_epoch(core);
    core->seq = 0;
    memset(core->tseq, 0, core->cfg->ntables * sizeof *core->tseq);
    sb_ring_clear(core->ring);
    sb_log(SB_LOG_WARN, SCOPE, "new epoch %s (was %s): %s; clients resynchronise", core->epoch, old,
           reason ? reason : "source asked");
    heartbeat(core);
}

/* Lease lost: what is pending is forgotten with the engine (a fetch still answering is
 * then nobody's), running snapshots end busy. */
static void forget_everything(sb_core *core)
{
    sb_debounce *fresh;
    if (new_debounce(core, &fresh) == SB_OK) {
        sb_debounce_free(core->debounce);
        core->debounce = fresh;
    } else {
        sb_log(SB_LOG_ERROR, SCOPE, "out of memory: pending changes kept, not published");
    }
    while (core->nsnapshots) {
        snapshot_req *s = core->snapshots[core->nsnapshots - 1];
        uint64_t id = s->req;
        sb_snapshot_fn fn = s->fn;
        void *ud = s->ud;
        remove_snapshot(core, s);
        if (core->source)
            sb_host_source_cancel(core->source, id);
        sb_snapshot_event ev = {.kind = SB_SNAPSHOT_DONE, .status = SB_ERR_BUSY};
        fn(ud, id, &ev);
    }
    update_exposure(core);
}

static void core_lease(void *ud, bool active, const char *reason)
{
    sb_core *core = ud;
    reason = reason ? reason : "no reason given";
    if (active == core->active) {
        sb_log(SB_LOG_INFO, SCOPE, "lease still %s: %s", active ? "held" : "lost", reason);
        return;
    }
    if (!active) {
        sb_log(SB_LOG_WARN, SCOPE,
               "lease lost: %s; not publishing, refusing snapshots, %zu pending entities dropped",
               reason, sb_debounce_pending(core->debounce));
        core->active = false;
        forget_everything(core);
        return;
    }
    core->active = true;
    sb_log(SB_LOG_INFO, SCOPE, "lease gained: %s; publishing again", reason);
    core_resync(core, "the source regained its lease (fencing what was dropped)");
}

static int core_snapshot(void *ud, const uint32_t *tables, size_t n, sb_snapshot_fn fn, void *fn_ud,
                         uint64_t *req)
{
    sb_core *core = ud; /* host.c checked the table indices */
    sb_host *src = core->source;
    if (!src || !sb_host_started(src) || !fn || !core->active)
        return SB_ERR_BUSY;
    if (core->nsnapshots == core->cap_snapshots) {
        size_t cap = core->cap_snapshots ? core->cap_snapshots * 2 : 8;
        snapshot_req **grown = realloc(core->snapshots, cap * sizeof *grown);
        if (!grown)
            return SB_ERR_NOMEM;
        core->snapshots = grown;
        core->cap_snapshots = cap;
    }
    snapshot_req *s = calloc(1, sizeof *s);
    uint64_t *tseq = calloc(core->cfg->ntables, sizeof *tseq);
    if (!s || !tseq) {
        free(s);
        free(tseq);
        return SB_ERR_NOMEM;
    }
    uint64_t id = next_request_id(core);
    *s = (snapshot_req){.req = id, .fn = fn, .ud = fn_ud, .tseq = tseq};
    /* Unless the source sets the cut: taken before the source opens its database snapshot,
     * anything published so far is committed and therefore inside it (docs/protocol.md,
     * snapshot consistency). */
    if (!sb_host_source_sets_cut(src))
        take_cut(core, s);
    core->snapshots[core->nsnapshots++] = s;
    update_exposure(core);
    int rc = sb_host_source_snapshot(src, id, tables, n);
    if (rc < 0) {
        remove_snapshot(core, s);
        sb_log(SB_LOG_WARN, SCOPE, "snapshot refused by the source: %s", sb_strerror(rc));
        return rc == SB_ERR_NOTFOUND ? rc : SB_ERR_BUSY;
    }
    *req = id;
    return SB_OK;
}

static void core_snapshot_resume(void *ud, uint64_t req)
{
    sb_core *core = ud;
    snapshot_req *s = find_snapshot(core, req);
    if (s && s->paused) {
        s->paused = false;
        sb_host_source_snapshot_flow(core->source, req, true);
    }
}

static void core_cancel(void *ud, uint64_t req)
{
    sb_core *core = ud;
    snapshot_req *s = find_snapshot(core, req);
    if (!s)
        return;
    remove_snapshot(core, s);
    if (core->source)
        sb_host_source_cancel(core->source, req);
}

void sb_core_cancel_all(sb_core *core)
{
    while (core->nsnapshots)
        core_cancel(core, core->snapshots[0]->req);
}

static int core_since(void *ud, const char *epoch, uint64_t seq, sb_replay_fn fn, void *fn_ud,
                      uint64_t *last)
{
    sb_core *core = ud;
    *last = core->seq;
    if (!epoch || strcmp(epoch, core->epoch) != 0)
        return SB_ERR_NOTFOUND;
    return sb_ring_since(core->ring, seq, core->seq, fn, fn_ud);
}

static void publish_presence(void *ud, uint32_t table, const sb_key *key,
                             const sb_proto_editor *editors, size_t n)
{
    sb_core *core = ud;
    if (!core->active)
        return;
    uint64_t seq = core->seq + 1;
    if (sb_proto_encode_presence(&core->topic, &core->body, core->cfg->tables[table], key, editors,
                                 n, core->epoch, seq))
        return;
    core->seq = seq;
    fan_out(core, SB_MSG_PRESENCE, seq);
}

static void presence_tick(void *ud);

static void schedule_presence(sb_core *core)
{
    uint64_t due = sb_presence_next_expiry(core->presence);
    if (due == UINT64_MAX || (core->presence_timer && core->presence_due <= due))
        return;
    sb_timer_remove(core->presence_timer);
    core->presence_timer = NULL;
    uint64_t now = sb_loop_now(core->loop);
    core->presence_due = due;
    if (sb_loop_timer(core->loop, core, due > now ? due - now : 0, 0, presence_tick, core,
                      &core->presence_timer))
        sb_log(SB_LOG_ERROR, SCOPE, "out of memory arming the presence timer");
}

static void presence_tick(void *ud)
{
    sb_core *core = ud;
    core->presence_timer = NULL;
    sb_presence_expire(core->presence, sb_loop_now(core->loop), publish_presence, core);
    schedule_presence(core);
}

static int core_presence(void *ud, const sb_presence *p)
{
    sb_core *core = ud; /* host.c checked the table index, client and state */
    const char *limit = NULL;
    int rc = sb_presence_apply(core->presence, p->table, &p->key, p->client, p->state, p->ttl_ms,
                               sb_loop_now(core->loop), sb_proto_wall_ms(), publish_presence, core,
                               &limit);
    if (rc == SB_ERR_BUSY) {
        uint64_t n = ++core->presence_refused;
        if ((n & (n - 1)) == 0) /* a flood costs log lines in log2 of its size */
            sb_log(SB_LOG_WARN, SCOPE,
                   "presence of client '%.128s' refused: %s reached (%llu refused)", p->client,
                   limit, (unsigned long long)n);
    }
    schedule_presence(core);
    return rc;
}

static void core_stats(void *ud, sb_stats *out)
{
    sb_core *core = ud;
    *out = (sb_stats){
        .changes_in = core->changes_in,
        .events_out = core->events_out,
        .coalesced = sb_debounce_coalesced(core->debounce),
        .snapshots = core->snapshots_served,
        .pending = sb_debounce_pending(core->debounce),
        .source_lag_ms = core->source_lag_ms,
        .seq = core->seq,
    };
}

const sb_host_peer sb_core_peer = {
    .epoch = core_epoch,
    .stats = core_stats,
    .emit = core_emit,
    .rows = core_rows,
    .done = core_done,
    .resync = core_resync,
    .snapshot_cut = core_snapshot_cut,
    .lease = core_lease,
    .snapshot = core_snapshot,
    .snapshot_resume = core_snapshot_resume,
    .cancel = core_cancel,
    .since = core_since,
    .presence = core_presence,
};
