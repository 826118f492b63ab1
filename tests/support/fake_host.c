/*
 * fake_host.c - see fake_host.h.
 */
#include "fake_host.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <zmq.h>

struct sb_watch {
    fake_host *fh;
    int fd;
    void *zsock;
    unsigned events;
    sb_io_fn fn;
    void *ud;
    bool removed;
};

struct sb_timer {
    uint64_t due, repeat;
    sb_timer_fn fn;
    void *ud;
    bool removed;
};

/* A growable array of fixed-size items. */
typedef struct vec {
    void *v;
    size_t n, cap, size;
} vec;

struct fake_host {
    void *zctx;
    vec watches; /* sb_watch * */
    vec timers;  /* sb_timer * */
    char **tables;
    size_t ntables;
    char *epoch;
    sb_stats stats;
    uint64_t next_req;

    int snap_rc;
    uint64_t snap_seq;
    uint64_t *snap_tseq; /* snap_ntseq, or NULL: the cut carries none */
    size_t snap_ntseq;
    bool snap_sync;
    vec snap_rows; /* sb_row (owned copies) scripted for synchronous delivery */
    int snap_status;
    vec snaps; /* fake_snapshot * */

    int since_rc;
    uint64_t since_last;
    vec since_msgs; /* sb_message (owned copies) */
    size_t since_calls;
    char *since_epoch;

    int presence_rc;
    vec presences; /* sb_presence (owned copies) */
    vec changes;   /* sb_change (owned copies) */
    vec rows;      /* sb_row (owned copies) */
    vec row_reqs;  /* uint64_t */
    vec dones;     /* uint64_t pairs: req, (uint64_t)status */
    size_t resyncs;
    vec logs; /* char * */
};

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "fake_host: out of memory\n");
        abort();
    }
    return p;
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
        void *grown = realloc(v->v, v->cap * size);
        if (!grown)
            abort();
        v->v = grown;
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

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
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

static void row_free(sb_row *r)
{
    key_free(&r->key);
    free((void *)(uintptr_t)r->row);
    free((void *)(uintptr_t)r->origin);
}

static void rows_free(vec *v)
{
    for (size_t i = 0; i < v->n; i++)
        row_free(vec_at(v, i));
    vec_free(v);
}

static void strs_free(char **s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(s[i]);
    free(s);
}

/* ---- host API ------------------------------------------------------------------------ */

static void api_log(sb_host *h, sb_log_level level, const char *fmt, ...) SB_PRINTF(3, 4);
static void api_log(sb_host *h, sb_log_level level, const char *fmt, ...)
{
    fake_host *fh = (fake_host *)h;
    static const char *const names[] = {"error", "warn", "info", "debug"};
    char line[1024];
    int off = snprintf(line, sizeof line, "%s: ", level <= SB_LOG_DEBUG ? names[level] : "?");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + off, sizeof line - (size_t)off, fmt, ap);
    va_end(ap);
    *(char **)vec_push(&fh->logs, sizeof(char *)) = xstrdup(line);
    if (getenv("FAKE_HOST_LOG"))
        fprintf(stderr, "[fake_host] %s\n", line);
}

/* As the broker's, without the file position: "[section] key: message". */
static void api_config_error(sb_host *h, const char *section, const char *key, const char *fmt, ...)
    SB_PRINTF(4, 5);
static void api_config_error(sb_host *h, const char *section, const char *key, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    api_log(h, SB_LOG_ERROR, "[%s] %s: %s", section ? section : "this section", key, msg);
}

static int add_watch(fake_host *fh, int fd, void *zsock, unsigned events, sb_io_fn fn, void *ud,
                     sb_watch **out)
{
    if (!fn || (!zsock && fd < 0))
        return SB_ERR_INVAL;
    sb_watch *w = xmalloc(sizeof *w);
    *w = (sb_watch){.fh = fh, .fd = fd, .zsock = zsock, .events = events, .fn = fn, .ud = ud};
    *(sb_watch **)vec_push(&fh->watches, sizeof w) = w;
    if (out)
        *out = w;
    return SB_OK;
}

static int api_watch_fd(sb_host *h, int fd, unsigned events, sb_io_fn fn, void *ud, sb_watch **out)
{
    return add_watch((fake_host *)h, fd, NULL, events, fn, ud, out);
}

static int api_watch_zsock(sb_host *h, void *zsock, unsigned events, sb_io_fn fn, void *ud,
                           sb_watch **out)
{
    return add_watch((fake_host *)h, -1, zsock, events, fn, ud, out);
}

static int api_watch_set(sb_watch *w, unsigned events)
{
    if (!w || w->removed)
        return SB_ERR_INVAL;
    w->events = events;
    return SB_OK;
}

static void api_unwatch(sb_watch *w)
{
    if (w)
        w->removed = true; /* freed by the loop: safe inside the watch's own callback */
}

static int api_timer_start(sb_host *h, uint64_t delay_ms, uint64_t repeat_ms, sb_timer_fn fn,
                           void *ud, sb_timer **out)
{
    fake_host *fh = (fake_host *)h;
    if (!fn)
        return SB_ERR_INVAL;
    sb_timer *t = xmalloc(sizeof *t);
    *t = (sb_timer){.due = mono_ms() + delay_ms, .repeat = repeat_ms, .fn = fn, .ud = ud};
    *(sb_timer **)vec_push(&fh->timers, sizeof t) = t;
    if (out)
        *out = t;
    return SB_OK;
}

static void api_timer_stop(sb_timer *t)
{
    if (t)
        t->removed = true;
}

static void *api_zmq_context(sb_host *h)
{
    return ((fake_host *)h)->zctx;
}

static uint64_t api_now_ms(sb_host *h)
{
    (void)h;
    return mono_ms();
}

static const char *const *api_tables(sb_host *h, size_t *n)
{
    fake_host *fh = (fake_host *)h;
    *n = fh->ntables;
    return (const char *const *)fh->tables;
}

static const char *api_epoch(sb_host *h)
{
    return ((fake_host *)h)->epoch;
}

static int api_emit(sb_host *h, const sb_change *changes, size_t n)
{
    fake_host *fh = (fake_host *)h;
    for (size_t i = 0; i < n; i++) {
        sb_change *c = vec_push(&fh->changes, sizeof *c);
        *c = changes[i];
        c->key = key_copy(&changes[i].key);
        c->origin = xstrdup(changes[i].origin);
        c->row = c->has_row ? xmemdup(changes[i].row, changes[i].row_len) : NULL;
    }
    return SB_OK;
}

static void api_rows(sb_host *h, uint64_t req, const sb_row *rows, size_t n)
{
    fake_host *fh = (fake_host *)h;
    for (size_t i = 0; i < n; i++) {
        *(sb_row *)vec_push(&fh->rows, sizeof(sb_row)) = row_copy(&rows[i]);
        *(uint64_t *)vec_push(&fh->row_reqs, sizeof(uint64_t)) = req;
    }
}

static void api_done(sb_host *h, uint64_t req, int status)
{
    fake_host *fh = (fake_host *)h;
    uint64_t *d = vec_push(&fh->dones, 2 * sizeof(uint64_t));
    d[0] = req;
    d[1] = (uint64_t)(int64_t)status;
}

static void api_resync(sb_host *h, const char *reason)
{
    fake_host *fh = (fake_host *)h;
    fh->resyncs++;
    api_log(h, SB_LOG_WARN, "resync: %s", reason ? reason : "");
}

static void api_snapshot_cut(sb_host *h, uint64_t req)
{
    api_log(h, SB_LOG_DEBUG, "snapshot_cut %llu", (unsigned long long)req);
}

static void api_lease(sb_host *h, bool active, const char *reason)
{
    api_log(h, SB_LOG_INFO, "lease %s: %s", active ? "active" : "lost", reason ? reason : "");
}

/* What fn returns is not looked at: nothing in the fake pauses (snapshot_resume is logged). */
static void deliver(fake_snapshot *s, const sb_snapshot_event *ev)
{
    (void)s->fn(s->ud, s->req, ev);
}

/* The cut, when it is still due. */
static void deliver_cut(fake_host *fh, fake_snapshot *s)
{
    if (s->cut)
        return;
    s->cut = true;
    sb_snapshot_event ev = {.kind = SB_SNAPSHOT_CUT,
                            .seq = fh->snap_seq,
                            .tseq = fh->snap_tseq,
                            .ntables = fh->snap_ntseq};
    deliver(s, &ev);
}

static void deliver_rows(fake_host *fh, fake_snapshot *s, const sb_row *rows, size_t n)
{
    deliver_cut(fh, s);
    if (!s->cancelled)
        deliver(s, &(sb_snapshot_event){.kind = SB_SNAPSHOT_ROWS, .rows = rows, .n = n});
}

static void deliver_done(fake_host *fh, fake_snapshot *s, int status)
{
    if (status == SB_OK)
        deliver_cut(fh, s);
    if (s->cancelled)
        return;
    s->finished = true;
    deliver(s, &(sb_snapshot_event){.kind = SB_SNAPSHOT_DONE, .status = status});
}

static int api_snapshot(sb_host *h, const uint32_t *tables, size_t n, sb_snapshot_fn fn, void *ud,
                        uint64_t *req)
{
    fake_host *fh = (fake_host *)h;
    if (fh->snap_rc < 0)
        return fh->snap_rc;
    fake_snapshot *s = xmalloc(sizeof *s);
    *s = (fake_snapshot){.req = ++fh->next_req, .ntables = n, .fn = fn, .ud = ud};
    s->tables = xmemdup(tables, n * sizeof *tables);
    s->due = fh->snap_sync; /* answered by the next fake_host_run_once, never in here */
    *(fake_snapshot **)vec_push(&fh->snaps, sizeof s) = s;
    if (req)
        *req = s->req;
    return SB_OK;
}

/* Answer the snapshots due at once: cut, the scripted rows, done. How many. */
static int answer_due(fake_host *fh)
{
    int ran = 0;
    for (size_t i = 0; i < fh->snaps.n; i++) { /* a callback may append more */
        fake_snapshot *s = *(fake_snapshot **)vec_at(&fh->snaps, i);
        if (!s->due)
            continue;
        s->due = false;
        if (fh->snap_rows.n && !s->cancelled)
            deliver_rows(fh, s, fh->snap_rows.v, fh->snap_rows.n);
        if (!s->finished)
            deliver_done(fh, s, fh->snap_status);
        ran++;
    }
    return ran;
}

static bool any_due(const fake_host *fh)
{
    for (size_t i = 0; i < fh->snaps.n; i++)
        if ((*(fake_snapshot **)vec_at(&fh->snaps, i))->due)
            return true;
    return false;
}

static void api_snapshot_resume(sb_host *h, uint64_t req)
{
    api_log(h, SB_LOG_DEBUG, "snapshot_resume %llu", (unsigned long long)req);
}

static void api_cancel(sb_host *h, uint64_t req)
{
    fake_host *fh = (fake_host *)h;
    for (size_t i = 0; i < fh->snaps.n; i++) {
        fake_snapshot *s = *(fake_snapshot **)vec_at(&fh->snaps, i);
        if (s->req == req && !s->finished)
            s->cancelled = true;
    }
}

static int api_since(sb_host *h, const char *epoch, uint64_t seq, sb_replay_fn fn, void *ud,
                     uint64_t *last)
{
    fake_host *fh = (fake_host *)h;
    fh->since_calls++;
    free(fh->since_epoch);
    fh->since_epoch = xstrdup(epoch);
    *last = fh->since_last;
    if (fh->since_rc < 0)
        return fh->since_rc;
    for (size_t i = 0; i < fh->since_msgs.n; i++) {
        const sb_message *m = vec_at(&fh->since_msgs, i);
        if (m->seq > seq)
            fn(ud, m);
    }
    return SB_OK;
}

static int api_presence(sb_host *h, const sb_presence *p)
{
    fake_host *fh = (fake_host *)h;
    sb_presence *c = vec_push(&fh->presences, sizeof *c);
    *c = (sb_presence){.client = xstrdup(p->client),
                       .table = p->table,
                       .key = key_copy(&p->key),
                       .state = xstrdup(p->state),
                       .ttl_ms = p->ttl_ms};
    return fh->presence_rc;
}

static void api_stats(sb_host *h, sb_stats *out)
{
    *out = ((fake_host *)h)->stats;
}

#define FAKE_BASE                                                                                  \
    {                                                                                              \
        .size = sizeof(sb_host_base), .abi_major = SB_ABI_MAJOR, .abi_minor = SB_ABI_MINOR,        \
        .log = api_log, .config_error = api_config_error, .watch_fd = api_watch_fd,                \
        .watch_set = api_watch_set, .unwatch = api_unwatch, .timer_start = api_timer_start,        \
        .timer_stop = api_timer_stop, .now_ms = api_now_ms, .epoch = api_epoch,                    \
        .tables = api_tables,                                                                      \
    }

static const sb_source_api fake_source_api = {
    .base = FAKE_BASE,
    .emit = api_emit,
    .rows = api_rows,
    .done = api_done,
    .resync = api_resync,
    .snapshot_cut = api_snapshot_cut,
    .lease = api_lease,
    .stats = api_stats,
};

static const sb_transport_api fake_transport_api = {
    .base = FAKE_BASE,
    .watch_zsock = api_watch_zsock,
    .zmq_context = api_zmq_context,
    .snapshot = api_snapshot,
    .snapshot_resume = api_snapshot_resume,
    .cancel = api_cancel,
    .since = api_since,
    .presence = api_presence,
    .stats = api_stats,
};

const sb_source_api *fake_host_source_api(void)
{
    return &fake_source_api;
}

const sb_transport_api *fake_host_transport_api(void)
{
    return &fake_transport_api;
}

sb_host *fake_host_handle(fake_host *fh)
{
    return (sb_host *)fh;
}

void *fake_host_zmq_context(fake_host *fh)
{
    return fh->zctx;
}

/* ---- life cycle ---------------------------------------------------------------------- */

fake_host *fake_host_new(void)
{
    fake_host *fh = calloc(1, sizeof *fh);
    if (!fh)
        return NULL;
    fh->zctx = zmq_ctx_new();
    if (!fh->zctx) {
        free(fh);
        return NULL;
    }
    fh->epoch = xstrdup("fake-epoch");
    fh->stats.source_lag_ms = -1;
    return fh;
}

static void clear_snapshots(fake_host *fh)
{
    for (size_t i = 0; i < fh->snaps.n; i++) {
        fake_snapshot *s = *(fake_snapshot **)vec_at(&fh->snaps, i);
        free(s->tables);
        free(s);
    }
    vec_free(&fh->snaps);
}

static void clear_since_script(fake_host *fh)
{
    for (size_t i = 0; i < fh->since_msgs.n; i++) {
        sb_message *m = vec_at(&fh->since_msgs, i);
        free((void *)(uintptr_t)m->topic);
        free((void *)(uintptr_t)m->body);
    }
    vec_free(&fh->since_msgs);
}

void fake_host_clear_records(fake_host *fh)
{
    clear_snapshots(fh);
    for (size_t i = 0; i < fh->presences.n; i++) {
        sb_presence *p = vec_at(&fh->presences, i);
        free((void *)(uintptr_t)p->client);
        free((void *)(uintptr_t)p->state);
        key_free(&p->key);
    }
    vec_free(&fh->presences);
    for (size_t i = 0; i < fh->changes.n; i++) {
        sb_change *c = vec_at(&fh->changes, i);
        free((void *)(uintptr_t)c->origin);
        free((void *)(uintptr_t)c->row);
        key_free(&c->key);
    }
    vec_free(&fh->changes);
    rows_free(&fh->rows);
    vec_free(&fh->row_reqs);
    vec_free(&fh->dones);
    for (size_t i = 0; i < fh->logs.n; i++)
        free(*(char **)vec_at(&fh->logs, i));
    vec_free(&fh->logs);
    fh->since_calls = 0;
    fh->resyncs = 0;
}

void fake_host_free(fake_host *fh)
{
    if (!fh)
        return;
    fake_host_clear_records(fh);
    for (size_t i = 0; i < fh->watches.n; i++)
        free(*(sb_watch **)vec_at(&fh->watches, i));
    vec_free(&fh->watches);
    for (size_t i = 0; i < fh->timers.n; i++)
        free(*(sb_timer **)vec_at(&fh->timers, i));
    vec_free(&fh->timers);
    rows_free(&fh->snap_rows);
    clear_since_script(fh);
    strs_free(fh->tables, fh->ntables);
    free(fh->epoch);
    free(fh->snap_tseq);
    free(fh->since_epoch);
    zmq_ctx_term(fh->zctx);
    free(fh);
}

/* ---- options ------------------------------------------------------------------------- */

int fake_host_options(const sb_option_spec *spec, const char *const *overrides,
                      sb_option_value *out, size_t cap)
{
    size_t n = 0;
    for (; spec && spec[n].name; n++) {
        if (n == cap)
            return -1;
        out[n] = (sb_option_value){.str = spec[n].default_value};
    }
    for (size_t o = 0; overrides && overrides[o]; o++) {
        const char *eq = strchr(overrides[o], '=');
        size_t i = 0;
        while (eq && i < n &&
               (strlen(spec[i].name) != (size_t)(eq - overrides[o]) ||
                strncmp(spec[i].name, overrides[o], (size_t)(eq - overrides[o])) != 0))
            i++;
        if (!eq || i == n)
            return -1;
        out[i].str = eq + 1;
        out[i].given = true;
    }
    for (size_t i = 0; i < n; i++) {
        const char *s = out[i].str;
        if (!s)
            return -1; /* required and not given */
        if (spec[i].type == SB_OPT_INT) {
            char *end;
            errno = 0;
            out[i].num = strtoll(s, &end, 10);
            if (errno || *end || end == s || out[i].num < spec[i].min || out[i].num > spec[i].max)
                return -1;
        } else if (spec[i].type == SB_OPT_BOOL) {
            /* As plugin.h says the broker reads them: these words, any case. */
            static const char *const words[] = {"true",  "yes", "on",  "1",
                                                "false", "no",  "off", "0"};
            size_t w = 0;
            while (w < 8 && strcasecmp(s, words[w]) != 0)
                w++;
            if (w == 8)
                return -1;
            out[i].flag = w < 4;
        }
    }
    return (int)n;
}

/* ---- loop ---------------------------------------------------------------------------- */

static void compact_watches(fake_host *fh)
{
    size_t j = 0;
    for (size_t i = 0; i < fh->watches.n; i++) {
        sb_watch *w = *(sb_watch **)vec_at(&fh->watches, i);
        if (w->removed)
            free(w);
        else
            ((sb_watch **)fh->watches.v)[j++] = w;
    }
    fh->watches.n = j;
}

static void compact_timers(fake_host *fh)
{
    size_t j = 0;
    for (size_t i = 0; i < fh->timers.n; i++) {
        sb_timer *t = *(sb_timer **)vec_at(&fh->timers, i);
        if (t->removed)
            free(t);
        else
            ((sb_timer **)fh->timers.v)[j++] = t;
    }
    fh->timers.n = j;
}

static int run_timers(fake_host *fh)
{
    int ran = 0;
    uint64_t now = mono_ms();
    /* Timers started by callbacks are appended: only look at those present now. */
    size_t n = fh->timers.n;
    for (size_t i = 0; i < n; i++) {
        sb_timer *t = *(sb_timer **)vec_at(&fh->timers, i);
        if (t->removed || t->due > now)
            continue;
        if (t->repeat)
            t->due = now + t->repeat;
        else
            t->removed = true; /* a one-shot frees itself after its callback */
        t->fn(t->ud);
        ran++;
    }
    compact_timers(fh);
    return ran;
}

int fake_host_run_once(fake_host *fh, int timeout_ms)
{
    compact_watches(fh);
    size_t n = fh->watches.n;
    zmq_pollitem_t *items = xmalloc(n * sizeof *items);
    sb_watch **owners = xmalloc(n * sizeof *owners);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        sb_watch *w = *(sb_watch **)vec_at(&fh->watches, i);
        if (!w->events)
            continue;
        short ev = (short)((w->events & SB_IO_READ ? ZMQ_POLLIN : 0) |
                           (w->events & SB_IO_WRITE ? ZMQ_POLLOUT : 0));
        items[k] = (zmq_pollitem_t){.socket = w->zsock, .fd = w->zsock ? 0 : w->fd, .events = ev};
        owners[k++] = w;
    }
    uint64_t now = mono_ms();
    long timeout = any_due(fh) ? 0 : timeout_ms;
    for (size_t i = 0; i < fh->timers.n; i++) {
        sb_timer *t = *(sb_timer **)vec_at(&fh->timers, i);
        long until = t->due > now ? (long)(t->due - now) : 0;
        if (!t->removed && (timeout < 0 || until < timeout))
            timeout = until;
    }
    int ran = 0;
    int rc = zmq_poll(items, (int)k, timeout);
    for (size_t i = 0; rc > 0 && i < k; i++) {
        short re = items[i].revents;
        if (!re || owners[i]->removed)
            continue;
        unsigned bits = (re & ZMQ_POLLIN ? SB_IO_READ : 0) | (re & ZMQ_POLLOUT ? SB_IO_WRITE : 0) |
                        (re & ZMQ_POLLERR ? SB_IO_ERROR : 0);
        owners[i]->fn(owners[i]->ud, bits);
        ran++;
    }
    free(items);
    free(owners);
    ran += run_timers(fh);
    return ran + answer_due(fh);
}

bool fake_host_run_until(fake_host *fh, fake_host_pred pred, void *ud, int timeout_ms)
{
    uint64_t deadline = mono_ms() + (uint64_t)timeout_ms;
    while (!pred(ud)) {
        uint64_t now = mono_ms();
        if (now >= deadline)
            return false;
        /* Short slices: the predicate may watch sockets the loop does not poll. */
        long left = (long)(deadline - now);
        fake_host_run_once(fh, left < 10 ? (int)left : 10);
    }
    return true;
}

bool fake_host_zsock_readable(void *zsock)
{
    zmq_pollitem_t item = {.socket = zsock, .events = ZMQ_POLLIN};
    return zmq_poll(&item, 1, 0) > 0;
}

size_t fake_host_watch_count(fake_host *fh)
{
    compact_watches(fh);
    return fh->watches.n;
}

size_t fake_host_timer_count(fake_host *fh)
{
    compact_timers(fh);
    return fh->timers.n;
}

/* ---- configuration ------------------------------------------------------------------- */

void fake_host_set_tables(fake_host *fh, const char *const *tables, size_t n)
{
    strs_free(fh->tables, fh->ntables);
    fh->tables = xmalloc(n * sizeof *fh->tables);
    for (size_t i = 0; i < n; i++)
        fh->tables[i] = xstrdup(tables[i]);
    fh->ntables = n;
}

void fake_host_set_epoch(fake_host *fh, const char *epoch)
{
    free(fh->epoch);
    fh->epoch = xstrdup(epoch);
}

sb_source_setup fake_host_setup(fake_host *fh, const sb_option_value *options,
                                const sb_option_value *database)
{
    return (sb_source_setup){.options = options,
                             .database = database,
                             .tables = (const char *const *)fh->tables,
                             .ntables = fh->ntables};
}

sb_stats *fake_host_stats(fake_host *fh)
{
    return &fh->stats;
}

/* ---- snapshot ------------------------------------------------------------------------ */

void fake_host_script_snapshot(fake_host *fh, int rc, uint64_t seq)
{
    fh->snap_rc = rc;
    fh->snap_seq = seq;
    fh->snap_sync = false;
}

void fake_host_script_snapshot_tseq(fake_host *fh, const uint64_t *tseq, size_t n)
{
    free(fh->snap_tseq);
    fh->snap_tseq = xmemdup(tseq, n * sizeof *tseq);
    fh->snap_ntseq = tseq ? n : 0;
}

void fake_host_script_snapshot_sync(fake_host *fh, const sb_row *rows, size_t n, int status)
{
    rows_free(&fh->snap_rows);
    for (size_t i = 0; i < n; i++)
        *(sb_row *)vec_push(&fh->snap_rows, sizeof(sb_row)) = row_copy(&rows[i]);
    fh->snap_status = status;
    fh->snap_sync = true;
}

size_t fake_host_snapshot_count(fake_host *fh)
{
    return fh->snaps.n;
}

fake_snapshot *fake_host_snapshot_get(fake_host *fh, size_t i)
{
    return i < fh->snaps.n ? *(fake_snapshot **)vec_at(&fh->snaps, i) : NULL;
}

void fake_host_snapshot_rows(fake_host *fh, size_t i, const sb_row *rows, size_t n)
{
    fake_snapshot *s = fake_host_snapshot_get(fh, i);
    if (s && !s->finished && !s->cancelled)
        deliver_rows(fh, s, rows, n);
}

void fake_host_snapshot_done(fake_host *fh, size_t i, int status)
{
    fake_snapshot *s = fake_host_snapshot_get(fh, i);
    if (s && !s->finished && !s->cancelled)
        deliver_done(fh, s, status);
}

/* ---- since, presence ----------------------------------------------------------------- */

void fake_host_script_since(fake_host *fh, int rc, uint64_t last, const sb_message *msgs, size_t n)
{
    clear_since_script(fh);
    fh->since_rc = rc;
    fh->since_last = last;
    for (size_t i = 0; i < n; i++) {
        sb_message *m = vec_push(&fh->since_msgs, sizeof *m);
        *m = msgs[i];
        m->topic = xmemdup(msgs[i].topic, msgs[i].topic_len);
        m->body = xmemdup(msgs[i].body, msgs[i].body_len);
    }
}

size_t fake_host_since_calls(fake_host *fh)
{
    return fh->since_calls;
}

const char *fake_host_since_last_epoch(fake_host *fh)
{
    return fh->since_epoch;
}

void fake_host_script_presence(fake_host *fh, int rc)
{
    fh->presence_rc = rc;
}

size_t fake_host_presence_count(fake_host *fh)
{
    return fh->presences.n;
}

const sb_presence *fake_host_presence_get(fake_host *fh, size_t i)
{
    return i < fh->presences.n ? vec_at(&fh->presences, i) : NULL;
}

/* ---- sources ------------------------------------------------------------------------- */

size_t fake_host_change_count(fake_host *fh)
{
    return fh->changes.n;
}

const sb_change *fake_host_change_get(fake_host *fh, size_t i)
{
    return i < fh->changes.n ? vec_at(&fh->changes, i) : NULL;
}

size_t fake_host_row_count(fake_host *fh)
{
    return fh->rows.n;
}

const sb_row *fake_host_row_get(fake_host *fh, size_t i)
{
    return i < fh->rows.n ? vec_at(&fh->rows, i) : NULL;
}

uint64_t fake_host_row_req(fake_host *fh, size_t i)
{
    return i < fh->row_reqs.n ? *(uint64_t *)vec_at(&fh->row_reqs, i) : 0;
}

int fake_host_done_status(fake_host *fh, uint64_t req)
{
    for (size_t i = 0; i < fh->dones.n; i++) {
        const uint64_t *d = vec_at(&fh->dones, i);
        if (d[0] == req)
            return (int)(int64_t)d[1];
    }
    return 1;
}

size_t fake_host_resync_count(fake_host *fh)
{
    return fh->resyncs;
}

/* ---- log ----------------------------------------------------------------------------- */

size_t fake_host_log_count(fake_host *fh)
{
    return fh->logs.n;
}

const char *fake_host_log_line(fake_host *fh, size_t i)
{
    return i < fh->logs.n ? *(char **)vec_at(&fh->logs, i) : NULL;
}

const char *fake_host_log_find(fake_host *fh, const char *needle)
{
    for (size_t i = 0; i < fh->logs.n; i++) {
        const char *line = *(char **)vec_at(&fh->logs, i);
        if (strstr(line, needle))
            return line;
    }
    return NULL;
}
