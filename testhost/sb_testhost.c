/*
 * sb_testhost.c - see include/syncbroker/testhost.h.
 *
 * The broker's own config.c, plugin_loader.c, host.c and loop.c run the plugin; this file is
 * only the recorder that host.c's data calls reach in the core's place (an sb_host_peer),
 * the test's calls into the plugin, and the log capture. It is a test tool: out of memory,
 * it aborts rather than make every recorder fallible.
 */
#include <syncbroker/testhost.h>

#include "config.h"
#include "host.h"
#include "log.h"
#include "loop.h"
#include "sb_proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

/* A growable array of fixed-size items. */
typedef struct vec {
    void *v;
    size_t n, cap, size;
} vec;

typedef struct snapshot_rec {
    sb_testhost_snapshot pub;
    sb_snapshot_fn fn;
    void *ud;
} snapshot_rec;

struct sb_testhost {
    void *zctx;
    sb_loop *loop;
    sb_config *cfg;
    sb_host *host;
    char *epoch;
    sb_stats stats;
    bool loaded;

    /* the log sink and level this test host replaced, restored by sb_testhost_free */
    sb_log_sink prev_sink;
    void *prev_sink_ud;
    sb_log_level prev_level;
    bool echo;
    vec logs; /* char * */

    /* a source's calls */
    vec changes;  /* sb_change (owned copies) */
    vec rows;     /* sb_row (owned copies) */
    vec row_reqs; /* uint64_t */
    vec dones;    /* uint64_t pairs: req, (uint64_t)status */
    vec cuts;     /* uint64_t */
    size_t resyncs;
    bool lease_active;

    /* a transport's calls */
    int snap_rc;
    uint64_t snap_seq;
    uint64_t *snap_tseq; /* cfg->ntables entries, or NULL: the cut carries th->tseq */
    bool snap_sync;
    vec snap_rows; /* sb_row (owned copies) for answers by the loop */
    int snap_status;
    vec snaps; /* snapshot_rec * */
    uint64_t next_req;
    sb_timer *answer; /* armed while a snapshot is due */
    uint64_t seq;     /* the last seq sb_testhost_publish_event gave */
    uint64_t *tseq;   /* per table, likewise (cfg->ntables entries once loaded) */

    int since_rc;
    uint64_t since_last;
    vec since_msgs; /* sb_message (owned copies) */
    size_t since_calls;
    char *since_epoch;

    int presence_rc;
    vec presences; /* sb_presence (owned copies) */
};

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p) {
        fprintf(stderr, "sb_testhost: out of memory\n");
        abort();
    }
    return p;
}

static void *xmalloc(size_t n)
{
    return xrealloc(NULL, n);
}

static char *xstrdup(const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    return memcpy(xmalloc(n), s, n);
}

static void *xmemdup(const void *p, size_t n)
{
    return p ? memcpy(xmalloc(n), p, n) : NULL;
}

static void *vec_push(vec *v, size_t size)
{
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 8;
        v->v = xrealloc(v->v, v->cap * size);
    }
    v->size = size;
    return (char *)v->v + size * v->n++;
}

static void *vec_at(const vec *v, size_t i)
{
    return (char *)v->v + v->size * i;
}

static void vec_free(vec *v)
{
    free(v->v);
    *v = (vec){0};
}

/* ---- deep copies --------------------------------------------------------------------- */

static sb_key key_copy(const sb_key *k)
{
    char **parts = xmalloc(k->nparts * sizeof *parts);
    for (uint32_t i = 0; i < k->nparts; i++)
        parts[i] = xstrdup(k->parts[i]);
    return (sb_key){.parts = (const char *const *)parts, .nparts = k->nparts};
}

static void key_free(sb_key *k)
{
    char **parts = (char **)(uintptr_t)k->parts;
    for (uint32_t i = 0; i < k->nparts; i++)
        free(parts[i]);
    free(parts);
}

static sb_row row_copy(const sb_row *r)
{
    return (sb_row){.table = r->table,
                    .key = key_copy(&r->key),
                    .version = r->version,
                    .row = xmemdup(r->row, r->row_len),
                    .row_len = r->row_len,
                    .origin = xstrdup(r->origin)};
}

static void rows_free(vec *v)
{
    for (size_t i = 0; i < v->n; i++) {
        sb_row *r = vec_at(v, i);
        key_free(&r->key);
        free((void *)(uintptr_t)r->row);
        free((void *)(uintptr_t)r->origin);
    }
    vec_free(v);
}

/* ---- the log ------------------------------------------------------------------------- */

static void capture(void *ud, sb_log_level level, const char *scope, const char *msg)
{
    sb_testhost *th = ud;
    size_t len = strlen(msg) + (scope ? strlen(scope) : 0) + 16;
    char *line = xmalloc(len);
    if (scope)
        snprintf(line, len, "%s [%s] %s", sb_log_level_name(level), scope, msg);
    else
        snprintf(line, len, "%s %s", sb_log_level_name(level), msg);
    *(char **)vec_push(&th->logs, sizeof line) = line;
    if (th->echo)
        fprintf(stderr, "[testhost] %s\n", line);
}

/* ---- the peer: what the plugin's host API calls reach -------------------------------- */

static const char *peer_epoch(void *ud)
{
    return ((sb_testhost *)ud)->epoch;
}

static void peer_stats(void *ud, sb_stats *out)
{
    *out = ((sb_testhost *)ud)->stats;
}

static int peer_emit(void *ud, const sb_change *changes, size_t n)
{
    sb_testhost *th = ud;
    for (size_t i = 0; i < n; i++) {
        sb_change *c = vec_push(&th->changes, sizeof *c);
        *c = changes[i];
        c->key = key_copy(&changes[i].key);
        c->origin = xstrdup(changes[i].origin);
        c->row = c->has_row ? xmemdup(changes[i].row, changes[i].row_len) : NULL;
    }
    return SB_OK;
}

static void peer_rows(void *ud, uint64_t req, const sb_row *rows, size_t n)
{
    sb_testhost *th = ud;
    for (size_t i = 0; i < n; i++) {
        *(sb_row *)vec_push(&th->rows, sizeof(sb_row)) = row_copy(&rows[i]);
        *(uint64_t *)vec_push(&th->row_reqs, sizeof(uint64_t)) = req;
    }
}

static void peer_done(void *ud, uint64_t req, int status)
{
    uint64_t *d = vec_push(&((sb_testhost *)ud)->dones, 2 * sizeof(uint64_t));
    d[0] = req;
    d[1] = (uint64_t)(int64_t)status;
}

static void peer_resync(void *ud, const char *reason)
{
    ((sb_testhost *)ud)->resyncs++;
    sb_log(SB_LOG_WARN, "testhost", "resync: %s", reason ? reason : "");
}

static void peer_snapshot_cut(void *ud, uint64_t req)
{
    *(uint64_t *)vec_push(&((sb_testhost *)ud)->cuts, sizeof(uint64_t)) = req;
}

static void peer_lease(void *ud, bool active, const char *reason)
{
    ((sb_testhost *)ud)->lease_active = active;
    sb_log(SB_LOG_INFO, "testhost", "lease %s: %s", active ? "active" : "lost",
           reason ? reason : "");
}

static snapshot_rec *snapshot_at(sb_testhost *th, size_t i)
{
    return i < th->snaps.n ? *(snapshot_rec **)vec_at(&th->snaps, i) : NULL;
}

static snapshot_rec *snapshot_find(sb_testhost *th, uint64_t req)
{
    for (size_t i = 0; i < th->snaps.n; i++)
        if (snapshot_at(th, i)->pub.req == req)
            return snapshot_at(th, i);
    return NULL;
}

static int deliver(snapshot_rec *s, const sb_snapshot_event *ev)
{
    int rc = s->fn(s->ud, s->pub.req, ev);
    if (rc == SB_ERR_BUSY && ev->kind == SB_SNAPSHOT_ROWS)
        s->pub.paused = true;
    return rc;
}

/* The cut, when it is still due. */
static void deliver_cut(sb_testhost *th, snapshot_rec *s)
{
    if (s->pub.cut)
        return;
    s->pub.cut = true;
    /* Every table's tseq, as the core's cut carries: scripted, or what publish_event gave. */
    sb_snapshot_event ev = {.kind = SB_SNAPSHOT_CUT,
                            .seq = th->snap_seq,
                            .tseq = th->snap_tseq ? th->snap_tseq : th->tseq,
                            .ntables = th->cfg->ntables};
    deliver(s, &ev);
}

static int deliver_rows(sb_testhost *th, snapshot_rec *s, const sb_row *rows, size_t n)
{
    deliver_cut(th, s);
    if (s->pub.cancelled || !n)
        return SB_OK;
    return deliver(s, &(sb_snapshot_event){.kind = SB_SNAPSHOT_ROWS, .rows = rows, .n = n});
}

static int deliver_done(sb_testhost *th, snapshot_rec *s, int status)
{
    if (status == SB_OK)
        deliver_cut(th, s);
    if (s->pub.cancelled)
        return SB_OK;
    s->pub.finished = true;
    return deliver(s, &(sb_snapshot_event){.kind = SB_SNAPSHOT_DONE, .status = status});
}

/* The loop's timer: answer the snapshots due (cut, the scripted rows, done). */
static void answer_due(void *ud)
{
    sb_testhost *th = ud;
    th->answer = NULL;
    for (size_t i = 0; i < th->snaps.n; i++) { /* a callback may ask for more */
        snapshot_rec *s = snapshot_at(th, i);
        if (!s->pub.due)
            continue;
        s->pub.due = false;
        if (!s->pub.cancelled)
            deliver_rows(th, s, th->snap_rows.v, th->snap_rows.n);
        if (!s->pub.finished)
            deliver_done(th, s, th->snap_status);
    }
}

static int peer_snapshot(void *ud, const uint32_t *tables, size_t n, sb_snapshot_fn fn, void *fn_ud,
                         uint64_t *req)
{
    sb_testhost *th = ud;
    if (th->snap_rc < 0)
        return th->snap_rc;
    if (!fn)
        return SB_ERR_INVAL;
    if (th->snap_sync && !th->answer &&
        sb_loop_timer(th->loop, th, 0, 0, answer_due, th, &th->answer) != SB_OK)
        return SB_ERR_NOMEM;
    snapshot_rec *s = xmalloc(sizeof *s);
    *s = (snapshot_rec){
        .pub = {.req = ++th->next_req, .ntables = n, .due = th->snap_sync}, .fn = fn, .ud = fn_ud};
    s->pub.tables = xmemdup(tables, n * sizeof *tables);
    *(snapshot_rec **)vec_push(&th->snaps, sizeof s) = s;
    *req = s->pub.req;
    return SB_OK;
}

static void peer_snapshot_resume(void *ud, uint64_t req)
{
    snapshot_rec *s = snapshot_find(ud, req);
    if (s) {
        s->pub.resumes++;
        s->pub.paused = false;
    }
}

static void peer_cancel(void *ud, uint64_t req)
{
    snapshot_rec *s = snapshot_find(ud, req);
    if (s && !s->pub.finished)
        s->pub.cancelled = true;
}

static int peer_since(void *ud, const char *epoch, uint64_t seq, sb_replay_fn fn, void *fn_ud,
                      uint64_t *last)
{
    sb_testhost *th = ud;
    th->since_calls++;
    free(th->since_epoch);
    th->since_epoch = xstrdup(epoch);
    *last = th->since_last;
    if (th->since_rc < 0)
        return th->since_rc;
    for (size_t i = 0; i < th->since_msgs.n; i++) {
        const sb_message *m = vec_at(&th->since_msgs, i);
        if (m->seq > seq)
            fn(fn_ud, m);
    }
    return SB_OK;
}

static int peer_presence(void *ud, const sb_presence *p)
{
    sb_testhost *th = ud;
    sb_presence *c = vec_push(&th->presences, sizeof *c);
    *c = (sb_presence){.client = xstrdup(p->client),
                       .table = p->table,
                       .key = key_copy(&p->key),
                       .state = xstrdup(p->state),
                       .ttl_ms = p->ttl_ms};
    return th->presence_rc;
}

static const sb_host_peer recorder = {
    .epoch = peer_epoch,
    .stats = peer_stats,
    .emit = peer_emit,
    .rows = peer_rows,
    .done = peer_done,
    .resync = peer_resync,
    .snapshot_cut = peer_snapshot_cut,
    .lease = peer_lease,
    .snapshot = peer_snapshot,
    .snapshot_resume = peer_snapshot_resume,
    .cancel = peer_cancel,
    .since = peer_since,
    .presence = peer_presence,
};

/* ---- life ---------------------------------------------------------------------------- */

int sb_testhost_new(sb_testhost **out)
{
    sb_testhost *th = calloc(1, sizeof *th);
    if (!th)
        return SB_ERR_NOMEM;
    if (sb_loop_new(&th->loop) != SB_OK) {
        free(th);
        return SB_ERR_NOMEM;
    }
    if (!(th->zctx = zmq_ctx_new())) {
        sb_loop_free(th->loop);
        free(th);
        return SB_ERR_ZMQ;
    }
    th->epoch = xstrdup("testhost-epoch");
    th->stats.source_lag_ms = -1;
    th->lease_active = true;
    th->echo = getenv("SB_TESTHOST_LOG") != NULL;
    /* Every level is captured: a test may look for a debug line. */
    th->prev_level = sb_log_get_level();
    sb_log_get_sink(&th->prev_sink, &th->prev_sink_ud);
    sb_log_set_sink(capture, th);
    sb_log_set_level(SB_LOG_DEBUG);
    *out = th;
    return SB_OK;
}

/* The kind of the plugin section(s) in ini, read before parsing to know which kind the test
 * host stands in for; 0 when both or neither occur. Parsing then checks there is exactly one. */
static sb_plugin_kind section_kind(const char *ini)
{
    bool source = false, transport = false;
    for (const char *line = ini; line; line = strchr(line, '\n')) {
        line += *line == '\n';
        line += strspn(line, " \t");
        source |= strncmp(line, "[source.", 8) == 0;
        transport |= strncmp(line, "[transport.", 11) == 0;
    }
    return source == transport ? 0 : source ? SB_PLUGIN_SOURCE : SB_PLUGIN_TRANSPORT;
}

static int not_one_plugin(const char *name)
{
    sb_log(SB_LOG_ERROR, "config",
           "%s: the test host runs one plugin: give exactly one [source.NAME] or "
           "[transport.NAME] section",
           name);
    return SB_ERR_CONFIG;
}

int sb_testhost_load(sb_testhost *th, const char *name, const char *ini,
                     const sb_plugin_header *linked)
{
    name = name ? name : "testhost.ini";
    if (th->loaded) {
        sb_log(SB_LOG_ERROR, "testhost", "sb_testhost_load: called twice");
        return SB_ERR_STATE;
    }
    th->loaded = true;
    sb_plugin_kind kind = section_kind(ini);
    if (!kind)
        return not_one_plugin(name);
    /* The test host stands in for the other kind: its section, appended, keeps the test's
     * line numbers and satisfies the parser's "a source and a transport" rule. */
    const char *other = kind == SB_PLUGIN_SOURCE ? "\n[transport.testhost]\nplugin = testhost\n"
                                                 : "\n[source.testhost]\nplugin = testhost\n";
    size_t len = strlen(ini) + strlen(other) + 1;
    char *text = xmalloc(len);
    snprintf(text, len, "%s%s", ini, other);
    FILE *f = fmemopen(text, strlen(text), "r");
    if (!f) {
        free(text);
        return SB_ERR_NOMEM;
    }
    int rc = sb_config_read(f, name, &th->cfg);
    fclose(f);
    free(text);
    if (rc)
        return rc;
    th->tseq = calloc(th->cfg->ntables ? th->cfg->ntables : 1, sizeof *th->tseq);
    if (!th->tseq)
        return SB_ERR_NOMEM;
    const sb_config_section *sec = NULL;
    size_t nsec = 0;
    for (size_t i = 0; i < th->cfg->nsections; i++)
        if (th->cfg->sections[i].kind == kind && nsec++ == 0)
            sec = &th->cfg->sections[i];
    if (nsec != 1)
        return not_one_plugin(name);
    return linked ? sb_host_open_descriptor(&recorder, th, th->loop, th->zctx, th->cfg, sec, linked,
                                            &th->host)
                  : sb_host_open(&recorder, th, th->loop, th->zctx, th->cfg, sec, &th->host);
}

int sb_testhost_start(sb_testhost *th)
{
    if (!th->host)
        return SB_ERR_STATE;
    int rc = sb_host_create(th->host);
    return rc ? rc : sb_host_start(th->host);
}

size_t sb_testhost_stop(sb_testhost *th)
{
    if (!th->host)
        return 0;
    sb_host_stop(th->host);
    return sb_host_leftovers(th->host);
}

static void clear_snapshots(sb_testhost *th)
{
    for (size_t i = 0; i < th->snaps.n; i++) {
        snapshot_rec *s = snapshot_at(th, i);
        free(s->pub.tables);
        free(s);
    }
    vec_free(&th->snaps);
}

static void clear_since_script(sb_testhost *th)
{
    for (size_t i = 0; i < th->since_msgs.n; i++) {
        sb_message *m = vec_at(&th->since_msgs, i);
        free((void *)(uintptr_t)m->topic);
        free((void *)(uintptr_t)m->body);
    }
    vec_free(&th->since_msgs);
}

void sb_testhost_clear_records(sb_testhost *th)
{
    clear_snapshots(th);
    for (size_t i = 0; i < th->presences.n; i++) {
        sb_presence *p = vec_at(&th->presences, i);
        free((void *)(uintptr_t)p->client);
        free((void *)(uintptr_t)p->state);
        key_free(&p->key);
    }
    vec_free(&th->presences);
    for (size_t i = 0; i < th->changes.n; i++) {
        sb_change *c = vec_at(&th->changes, i);
        free((void *)(uintptr_t)c->origin);
        free((void *)(uintptr_t)c->row);
        key_free(&c->key);
    }
    vec_free(&th->changes);
    rows_free(&th->rows);
    vec_free(&th->row_reqs);
    vec_free(&th->dones);
    vec_free(&th->cuts);
    for (size_t i = 0; i < th->logs.n; i++)
        free(*(char **)vec_at(&th->logs, i));
    vec_free(&th->logs);
    th->since_calls = 0;
    th->resyncs = 0;
}

void sb_testhost_free(sb_testhost *th)
{
    if (!th)
        return;
    sb_host_free(th->host);
    sb_loop_free(th->loop);
    sb_config_free(th->cfg);
    sb_log_set_sink(th->prev_sink, th->prev_sink_ud);
    sb_log_set_level(th->prev_level);
    sb_testhost_clear_records(th);
    rows_free(&th->snap_rows);
    clear_since_script(th);
    free(th->epoch);
    free(th->snap_tseq);
    free(th->since_epoch);
    free(th->tseq);
    zmq_ctx_term(th->zctx);
    free(th);
}

void *sb_testhost_plugin_state(sb_testhost *th)
{
    return th->host ? sb_host_state(th->host) : NULL;
}

int sb_testhost_check(sb_testhost *th)
{
    if (!th->host)
        return SB_ERR_STATE;
    int rc = sb_host_create(th->host);
    return rc ? rc : sb_host_check(th->host);
}

int sb_testhost_reload(sb_testhost *th)
{
    return th->host ? sb_host_reload(th->host) : SB_ERR_STATE;
}

/* ---- the loop ------------------------------------------------------------------------ */

int sb_testhost_run_once(sb_testhost *th, int timeout_ms)
{
    return sb_loop_run_once(th->loop, timeout_ms);
}

bool sb_testhost_run_until(sb_testhost *th, sb_testhost_pred pred, void *ud, int timeout_ms)
{
    uint64_t deadline = sb_loop_now(th->loop) + (uint64_t)timeout_ms;
    while (!pred(ud)) {
        uint64_t now = sb_loop_now(th->loop);
        if (now >= deadline)
            return false;
        /* Short slices: the predicate may watch sockets the loop does not poll. */
        uint64_t left = deadline - now;
        sb_loop_run_once(th->loop, left < 10 ? (int)left : 10);
    }
    return true;
}

bool sb_testhost_zsock_readable(void *zsock)
{
    zmq_pollitem_t item = {.socket = zsock, .events = ZMQ_POLLIN};
    return zmq_poll(&item, 1, 0) > 0;
}

/* The plugin's watches (which 0) or timers (which 1). */
static size_t registered(sb_testhost *th, int which)
{
    size_t n[2] = {0, 0};
    if (th->host)
        sb_loop_owner_count(th->loop, th->host, &n[0], &n[1]);
    return n[which];
}

size_t sb_testhost_watch_count(sb_testhost *th)
{
    return registered(th, 0);
}

size_t sb_testhost_timer_count(sb_testhost *th)
{
    return registered(th, 1);
}

void *sb_testhost_zmq_context(sb_testhost *th)
{
    return th->zctx;
}

/* ---- what the host reports ----------------------------------------------------------- */

void sb_testhost_set_epoch(sb_testhost *th, const char *epoch)
{
    free(th->epoch);
    th->epoch = xstrdup(epoch);
}

sb_stats *sb_testhost_stats(sb_testhost *th)
{
    return &th->stats;
}

size_t sb_testhost_log_count(sb_testhost *th)
{
    return th->logs.n;
}

const char *sb_testhost_log_line(sb_testhost *th, size_t i)
{
    return i < th->logs.n ? *(char **)vec_at(&th->logs, i) : NULL;
}

const char *sb_testhost_log_find(sb_testhost *th, const char *needle)
{
    for (size_t i = 0; i < th->logs.n; i++) {
        const char *line = *(char **)vec_at(&th->logs, i);
        if (strstr(line, needle))
            return line;
    }
    return NULL;
}

/* ---- a source ------------------------------------------------------------------------ */

/* Calls into a source: SB_ERR_STATE when what was loaded is not one. */
static bool is_source(sb_testhost *th)
{
    return th->host && sb_host_kind(th->host) == SB_PLUGIN_SOURCE;
}

int sb_testhost_source_fetch(sb_testhost *th, uint64_t req, uint32_t table, const sb_key *keys,
                             size_t n)
{
    return is_source(th) ? sb_host_source_fetch(th->host, req, table, keys, n) : SB_ERR_STATE;
}

int sb_testhost_source_snapshot(sb_testhost *th, uint64_t req, const uint32_t *tables, size_t n)
{
    return is_source(th) ? sb_host_source_snapshot(th->host, req, tables, n) : SB_ERR_STATE;
}

void sb_testhost_source_cancel(sb_testhost *th, uint64_t req)
{
    if (is_source(th))
        sb_host_source_cancel(th->host, req);
}

bool sb_testhost_source_snapshot_flow(sb_testhost *th, uint64_t req, bool go)
{
    return is_source(th) && sb_host_source_snapshot_flow(th->host, req, go);
}

void sb_testhost_source_published(sb_testhost *th, uint64_t position)
{
    if (is_source(th))
        sb_host_source_published(th->host, position);
}

size_t sb_testhost_change_count(sb_testhost *th)
{
    return th->changes.n;
}

const sb_change *sb_testhost_change_get(sb_testhost *th, size_t i)
{
    return i < th->changes.n ? vec_at(&th->changes, i) : NULL;
}

size_t sb_testhost_row_count(sb_testhost *th)
{
    return th->rows.n;
}

const sb_row *sb_testhost_row_get(sb_testhost *th, size_t i)
{
    return i < th->rows.n ? vec_at(&th->rows, i) : NULL;
}

uint64_t sb_testhost_row_req(sb_testhost *th, size_t i)
{
    return i < th->row_reqs.n ? *(uint64_t *)vec_at(&th->row_reqs, i) : 0;
}

int sb_testhost_done_status(sb_testhost *th, uint64_t req)
{
    for (size_t i = 0; i < th->dones.n; i++) {
        const uint64_t *d = vec_at(&th->dones, i);
        if (d[0] == req)
            return (int)(int64_t)d[1];
    }
    return 1;
}

size_t sb_testhost_resync_count(sb_testhost *th)
{
    return th->resyncs;
}

size_t sb_testhost_cut_count(sb_testhost *th)
{
    return th->cuts.n;
}

uint64_t sb_testhost_cut_req(sb_testhost *th, size_t i)
{
    return i < th->cuts.n ? *(uint64_t *)vec_at(&th->cuts, i) : 0;
}

bool sb_testhost_lease_active(sb_testhost *th)
{
    return th->lease_active;
}

/* ---- a transport --------------------------------------------------------------------- */

int sb_testhost_publish(sb_testhost *th, const sb_message *m)
{
    if (!th->host || sb_host_kind(th->host) != SB_PLUGIN_TRANSPORT)
        return SB_ERR_STATE;
    return sb_host_publish(th->host, m);
}

/* Publish the message encoded in topic/body (when encoding returned rc 0), as the core's
 * fan-out does, and free the buffers. */
static int publish_encoded(sb_testhost *th, int rc, sb_msg_kind kind, uint64_t seq,
                           msgpack_sbuffer *topic, msgpack_sbuffer *body)
{
    if (rc == SB_OK) {
        sb_message m = {.kind = kind,
                        .seq = seq,
                        .topic = topic->data,
                        .topic_len = topic->size,
                        .body = body->data,
                        .body_len = body->size};
        rc = sb_testhost_publish(th, &m);
    }
    msgpack_sbuffer_destroy(topic);
    msgpack_sbuffer_destroy(body);
    return rc;
}

int sb_testhost_publish_event(sb_testhost *th, uint32_t table, sb_op op, const sb_key *key,
                              uint64_t version, const char *origin, const void *row, size_t row_len,
                              uint64_t *seq)
{
    if (!th->cfg || table >= th->cfg->ntables)
        return SB_ERR_NOTFOUND;
    sb_proto_event ev = {.seq = th->seq + 1,
                         .tseq = th->tseq[table] + 1,
                         .epoch = th->epoch,
                         .table = th->cfg->tables[table],
                         .key = key ? *key : (sb_key){0},
                         .op = op,
                         .version = version,
                         .origin = origin,
                         .ts_ms = sb_proto_wall_ms(),
                         .row = row,
                         .row_len = row_len,
                         .n = 1};
    msgpack_sbuffer topic, body;
    msgpack_sbuffer_init(&topic);
    msgpack_sbuffer_init(&body);
    int rc = sb_proto_encode_event(&topic, &body, &ev);
    if (rc == SB_OK) {
        th->seq = ev.seq;
        th->tseq[table] = ev.tseq;
        if (seq)
            *seq = ev.seq;
    }
    return publish_encoded(th, rc, SB_MSG_EVENT, ev.seq, &topic, &body);
}

int sb_testhost_publish_heartbeat(sb_testhost *th)
{
    if (!th->cfg)
        return SB_ERR_STATE;
    msgpack_sbuffer topic, body;
    msgpack_sbuffer_init(&topic);
    msgpack_sbuffer_init(&body);
    int rc = sb_proto_encode_heartbeat(
        &topic, &body, th->epoch, th->seq, (const char *const *)th->cfg->tables, th->tseq,
        th->cfg->ntables, sb_proto_wall_ms(), (uint64_t)th->cfg->heartbeat_ms);
    return publish_encoded(th, rc, SB_MSG_HEARTBEAT, th->seq, &topic, &body);
}

void sb_testhost_script_snapshot(sb_testhost *th, int rc, uint64_t seq)
{
    th->snap_rc = rc;
    th->snap_seq = seq;
    th->snap_sync = false;
}

int sb_testhost_script_snapshot_tseq(sb_testhost *th, const uint64_t *tseq, size_t n)
{
    if (tseq && (!th->cfg || n != th->cfg->ntables))
        return SB_ERR_INVAL;
    free(th->snap_tseq);
    th->snap_tseq = xmemdup(tseq, n * sizeof *tseq);
    return SB_OK;
}

void sb_testhost_script_snapshot_sync(sb_testhost *th, const sb_row *rows, size_t n, int status)
{
    rows_free(&th->snap_rows);
    for (size_t i = 0; i < n; i++)
        *(sb_row *)vec_push(&th->snap_rows, sizeof(sb_row)) = row_copy(&rows[i]);
    th->snap_status = status;
    th->snap_sync = true;
}

size_t sb_testhost_snapshot_count(sb_testhost *th)
{
    return th->snaps.n;
}

sb_testhost_snapshot *sb_testhost_snapshot_get(sb_testhost *th, size_t i)
{
    snapshot_rec *s = snapshot_at(th, i);
    return s ? &s->pub : NULL;
}

int sb_testhost_snapshot_rows(sb_testhost *th, size_t i, const sb_row *rows, size_t n)
{
    snapshot_rec *s = snapshot_at(th, i);
    return s && !s->pub.finished && !s->pub.cancelled ? deliver_rows(th, s, rows, n) : SB_OK;
}

int sb_testhost_snapshot_done(sb_testhost *th, size_t i, int status)
{
    snapshot_rec *s = snapshot_at(th, i);
    return s && !s->pub.finished && !s->pub.cancelled ? deliver_done(th, s, status) : SB_OK;
}

void sb_testhost_script_since(sb_testhost *th, int rc, uint64_t last, const sb_message *msgs,
                              size_t n)
{
    clear_since_script(th);
    th->since_rc = rc;
    th->since_last = last;
    for (size_t i = 0; i < n; i++) {
        sb_message *m = vec_push(&th->since_msgs, sizeof *m);
        *m = msgs[i];
        m->topic = xmemdup(msgs[i].topic, msgs[i].topic_len);
        m->body = xmemdup(msgs[i].body, msgs[i].body_len);
    }
}

size_t sb_testhost_since_calls(sb_testhost *th)
{
    return th->since_calls;
}

const char *sb_testhost_since_last_epoch(sb_testhost *th)
{
    return th->since_epoch;
}

void sb_testhost_script_presence(sb_testhost *th, int rc)
{
    th->presence_rc = rc;
}

size_t sb_testhost_presence_count(sb_testhost *th)
{
    return th->presences.n;
}

const sb_presence *sb_testhost_presence_get(sb_testhost *th, size_t i)
{
    return i < th->presences.n ? vec_at(&th->presences, i) : NULL;
}
