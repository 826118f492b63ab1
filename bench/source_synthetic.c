/*
 * source_synthetic - a benchmark source with an infinitely fast database: it emits changes
 * at the highest rate the core takes them and answers every fetch on the next loop turn with
 * a small packed row, so a throughput run measures core + debounce + transport alone.
 *
 * Every tick_ms it emits `batch` changes of the first configured table (keys round-robin over
 * `keys`), unless the core already holds `max_pending` entities: that is the back-pressure
 * that makes "max rate" mean "as fast as the core publishes". Its changes come without their
 * rows, so the core fetches them as it does for the trigger sources: the benchmark keeps
 * measuring the fetch path. snapshot() answers done at once with no rows. Nothing touches
 * PostgreSQL. Built NO_INSTALL: a benchmark tool, not a product.
 *
 * Ownership: the instance owns its answer queue (keys copied at fetch()).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syncbroker/plugin.h>
#include <time.h>

enum { OPT_TICK_MS, OPT_BATCH, OPT_MAX_PENDING, OPT_KEYS };

static const sb_option_spec synth_options[] = {
    {"tick_ms", SB_OPT_INT, "1", 1, 1000, "emit a batch this often (ms)"},
    {"batch", SB_OPT_INT, "500", 1, 100000, "changes per tick"},
    {"max_pending", SB_OPT_INT, "5000", 1, 10000000, "skip a tick while the core holds this many"},
    {"keys", SB_OPT_INT, "100000", 1, 100000000, "distinct keys, used round-robin"},
    {NULL, 0, NULL, 0, 0, NULL}};

typedef char key_text[24];

/* A fetch (n keys) or a snapshot (n == 0) waiting for the next loop turn. */
typedef struct answer {
    uint64_t req;
    size_t n;
    key_text *keys; /* owned */
} answer;

typedef struct synth {
    const sb_source_api *api;
    sb_host *host;
    int64_t tick_ms, batch, max_pending, keys;
    sb_timer *tick;
    bool answer_armed; /* a one-shot answer timer is pending */
    uint64_t next_key, version;
    answer *queue; /* owned */
    size_t nqueue, cap;
} synth;

/* The row every fetch returns: {"id": 1, "note": "synthetic"}. */
static const char row_bytes[] = "\x82\xa2id\x01\xa4note\xa9synthetic";

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_tick(void *ud)
{
    synth *s = ud;
    sb_stats st;
    s->api->stats(s->host, &st);
    if ((int64_t)st.pending >= s->max_pending)
        return;
    size_t n = (size_t)s->batch;
    sb_change *ch = malloc(n * sizeof *ch);
    key_text *txt = malloc(n * sizeof *txt);
    const char **parts = malloc(n * sizeof *parts);
    if (!ch || !txt || !parts) {
        s->api->base.log(s->host, SB_LOG_ERROR, "out of memory for a batch of %zu", n);
        free(ch);
        free(txt);
        free(parts);
        return;
    }
    int64_t now = wall_ms();
    for (size_t i = 0; i < n; i++) {
        snprintf(txt[i], sizeof txt[i], "%llu",
                 (unsigned long long)(s->next_key++ % (uint64_t)s->keys));
        parts[i] = txt[i];
        ch[i] = (sb_change){.table = 0, /* the first configured table */
                            .key = {.parts = &parts[i], .nparts = 1},
                            .op = SB_OP_UPDATE,
                            .version = ++s->version,
                            .ts_ms = now};
    }
    int rc = s->api->emit(s->host, ch, n);
    if (rc < 0)
        s->api->base.log(s->host, SB_LOG_WARN, "emit: %s", sb_strerror(rc));
    free(ch);
    free(txt);
    free(parts);
}

static void on_answer(void *ud)
{
    synth *s = ud;
    s->answer_armed = false;
    /* Answers may queue more requests (the core fetches again): take the queue first. */
    answer *q = s->queue;
    size_t nq = s->nqueue;
    s->queue = NULL;
    s->nqueue = s->cap = 0;
    for (size_t a = 0; a < nq; a++) {
        size_t n = q[a].n;
        sb_row *rows = n ? malloc(n * sizeof *rows) : NULL;
        const char **parts = n ? malloc(n * sizeof *parts) : NULL;
        int status = SB_OK;
        if (n && (!rows || !parts)) {
            status = SB_ERR_NOMEM;
        } else if (n) {
            for (size_t i = 0; i < n; i++) {
                parts[i] = q[a].keys[i];
                rows[i] = (sb_row){.table = 0,
                                   .key = {.parts = &parts[i], .nparts = 1},
                                   .version = s->version,
                                   .row = row_bytes,
                                   .row_len = sizeof row_bytes - 1};
            }
            s->api->rows(s->host, q[a].req, rows, n);
        }
        s->api->done(s->host, q[a].req, status);
        free(rows);
        free(parts);
        free(q[a].keys);
    }
    free(q);
}

static int enqueue(synth *s, uint64_t req, const sb_key *keys, size_t n)
{
    if (s->nqueue == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        answer *q = realloc(s->queue, cap * sizeof *q);
        if (!q)
            return SB_ERR_NOMEM;
        s->queue = q;
        s->cap = cap;
    }
    answer *a = &s->queue[s->nqueue];
    *a = (answer){.req = req, .n = n, .keys = n ? malloc(n * sizeof *a->keys) : NULL};
    if (n && !a->keys)
        return SB_ERR_NOMEM;
    for (size_t i = 0; i < n; i++)
        snprintf(a->keys[i], sizeof a->keys[i], "%s", keys[i].nparts ? keys[i].parts[0] : "");
    s->nqueue++;
    if (!s->answer_armed) {
        int rc = s->api->base.timer_start(s->host, 0, 0, on_answer, s, NULL);
        if (rc < 0)
            return rc;
        s->answer_armed = true;
    }
    return SB_OK;
}

static int synth_create(const sb_source_api *api, sb_host *host, const sb_source_setup *setup,
                        void **state)
{
    const sb_option_value *opts = setup->options;
    synth *s = calloc(1, sizeof *s);
    if (!s)
        return SB_ERR_NOMEM;
    s->api = api;
    s->host = host;
    s->tick_ms = opts[OPT_TICK_MS].num;
    s->batch = opts[OPT_BATCH].num;
    s->max_pending = opts[OPT_MAX_PENDING].num;
    s->keys = opts[OPT_KEYS].num;
    *state = s;
    return SB_OK;
}

static int synth_start(void *state)
{
    synth *s = state;
    return s->api->base.timer_start(s->host, (uint64_t)s->tick_ms, (uint64_t)s->tick_ms, on_tick, s,
                                    &s->tick);
}

static void synth_stop(void *state)
{
    synth *s = state;
    s->api->base.timer_stop(s->tick);
    s->tick = NULL;
}

static void synth_destroy(void *state)
{
    synth *s = state;
    for (size_t i = 0; i < s->nqueue; i++)
        free(s->queue[i].keys);
    free(s->queue);
    free(s);
}

static int synth_fetch(void *state, uint64_t req, uint32_t table, const sb_key *keys, size_t nkeys)
{
    (void)table;
    return enqueue(state, req, keys, nkeys);
}

static int synth_snapshot(void *state, uint64_t req, const uint32_t *tables, size_t n)
{
    (void)tables;
    (void)n;
    return enqueue(state, req, NULL, 0);
}

static void synth_cancel(void *state, uint64_t req)
{
    synth *s = state;
    for (size_t i = 0; i < s->nqueue; i++) {
        if (s->queue[i].req == req) {
            free(s->queue[i].keys);
            s->queue[i] = s->queue[--s->nqueue];
            return;
        }
    }
}

static const sb_source_plugin synth_plugin = {
    .header = SB_SOURCE_PLUGIN_HEADER(
        "source_synthetic", SB_VERSION,
        "benchmark source: changes at the core's max rate, rows answered at once", synth_options),
    .create = synth_create,
    .start = synth_start,
    .stop = synth_stop,
    .destroy = synth_destroy,
    .fetch = synth_fetch,
    .snapshot = synth_snapshot,
    .cancel = synth_cancel,
};

SB_PLUGIN_DECLARE(synth_plugin)
