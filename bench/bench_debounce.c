/*
 * bench_debounce - the per-entity debounce engine under a change storm.
 *
 * A synthetic source feeds changes as fast as the engine takes them, round-robin over
 * 1, 1k and 1M keys, and answers every row fetch on the next loop turn (like a source whose
 * database is infinitely fast). Each loop turn does what the broker's loop does: feed a
 * batch, run one debounce slice (budget as in the core), answer fetches. Printed per case:
 * changes in/s, events out/s, the slice time p50/p99/max (the loop stall the engine causes),
 * entities held at most and RSS. The baseline is the same run with debounce_ms = 0 (the
 * coalescing engine as a pass-through), so figures read as ratios measured in one run.
 *
 * Usage: bench_debounce [seconds-per-case]   (default 3)
 */
#include "debounce.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH 1000  /* changes a source hands over per read */
#define BUDGET 2000 /* the core's DEBOUNCE_BUDGET */

typedef struct pending_fetch {
    uint64_t req;
    size_t n;
    char (*keys)[24];
} pending_fetch;

typedef struct bench {
    sb_debounce *d;
    pending_fetch fetches[SB_DEBOUNCE_MAX_INFLIGHT];
    size_t nfetches;
    uint64_t next_req;
    uint64_t events;
} bench;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

static int fetch(void *ud, uint32_t table, const sb_key *keys, size_t n, uint64_t *req)
{
    (void)table;
    bench *b = ud;
    pending_fetch *p = &b->fetches[b->nfetches++];
    p->req = *req = ++b->next_req;
    p->n = n;
    p->keys = malloc(n * sizeof *p->keys);
    for (size_t i = 0; i < n; i++)
        snprintf(p->keys[i], sizeof p->keys[i], "%s", keys[i].parts[0]);
    return SB_OK;
}

static void publish(void *ud, const sb_debounce_event *ev)
{
    (void)ev;
    ((bench *)ud)->events++;
}

static const sb_debounce_ops ops = {.fetch = fetch, .publish = publish};

static void answer(bench *b, uint64_t version, uint64_t now)
{
    static const char row[] = "\x81\xa2id\x01"; /* {"id": 1} */
    size_t n = b->nfetches;
    b->nfetches = 0;
    for (size_t f = 0; f < n; f++) {
        pending_fetch *p = &b->fetches[f];
        sb_row *rows = malloc(p->n * sizeof *rows);
        const char **parts = malloc(p->n * sizeof *parts);
        for (size_t i = 0; i < p->n; i++) {
            parts[i] = p->keys[i];
            rows[i] = (sb_row){
                .key = {&parts[i], 1}, .version = version, .row = row, .row_len = sizeof row - 1};
        }
        sb_debounce_rows(b->d, p->req, rows, p->n, now);
        sb_debounce_done(b->d, p->req, SB_OK, now);
        free(rows);
        free(parts);
        free(p->keys);
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

typedef struct result {
    double in_per_s, out_per_s;
    double p50_us, p99_us, max_us;
    size_t max_entities;
    long rss_kb;
} result;

static result run_case(size_t nkeys, uint64_t window_ms, double seconds)
{
    bench b = {0};
    uint64_t w = window_ms;
    sb_debounce_new(1, &w, &ops, &b, &b.d);
    size_t cap = 1 << 20, nslices = 0;
    uint64_t *slices = malloc(cap * sizeof *slices);
    uint64_t start = now_ns(), end = start + (uint64_t)(seconds * 1e9), changes = 0;
    uint64_t version = 0, key = 0, t;
    size_t max_entities = 0;
    char keybuf[24];
    const char *parts[] = {keybuf};
    while ((t = now_ns()) < end) {
        uint64_t now_ms = t / 1000000u;
        for (int i = 0; i < BATCH; i++) {
            snprintf(keybuf, sizeof keybuf, "%llu", (unsigned long long)(key++ % nkeys));
            sb_change c = {.table = 0,
                           .key = {parts, 1},
                           .op = SB_OP_UPDATE,
                           .version = ++version,
                           .ts_ms = 0};
            sb_debounce_change(b.d, 0, &c, now_ms);
        }
        changes += BATCH;
        uint64_t s0 = now_ns();
        sb_debounce_run(b.d, now_ms, BUDGET);
        uint64_t s1 = now_ns();
        if (nslices < cap)
            slices[nslices++] = s1 - s0;
        answer(&b, version, now_ms);
        size_t held = sb_debounce_entities(b.d);
        if (held > max_entities)
            max_entities = held;
    }
    double elapsed = (double)(now_ns() - start) / 1e9;
    qsort(slices, nslices, sizeof *slices, cmp_u64);
    result r = {
        .in_per_s = (double)changes / elapsed,
        .out_per_s = (double)b.events / elapsed,
        .p50_us = (double)slices[nslices / 2] / 1e3,
        .p99_us = (double)slices[(size_t)((double)nslices * 0.99)] / 1e3,
        .max_us = (double)slices[nslices - 1] / 1e3,
        .max_entities = max_entities,
        .rss_kb = rss_kb(),
    };
    free(slices);
    sb_debounce_free(b.d);
    return r;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 3.0;
    static const size_t keys[] = {1, 1000, 1000000};
    printf("# debounce engine, %.1f s per case, batches of %d changes, slice budget %d\n", seconds,
           BATCH, BUDGET);
    printf("%-8s %-7s %12s %12s %10s %10s %10s %10s %10s %10s\n", "keys", "window", "changes/s",
           "events/s", "slice_p50", "slice_p99", "slice_max", "entities", "rss_MiB", "in_ratio");
    for (size_t k = 0; k < 3; k++) {
        result base = run_case(keys[k], 0, seconds);
        result deb = run_case(keys[k], 200, seconds);
        const result *rs[] = {&base, &deb};
        const char *names[] = {"0ms", "200ms"};
        for (int i = 0; i < 2; i++)
            printf("%-8zu %-7s %12.0f %12.0f %8.1fus %8.1fus %8.1fus %10zu %10.1f %10.2f\n",
                   keys[k], names[i], rs[i]->in_per_s, rs[i]->out_per_s, rs[i]->p50_us,
                   rs[i]->p99_us, rs[i]->max_us, rs[i]->max_entities,
                   (double)rs[i]->rss_kb / 1024.0, rs[i]->in_per_s / base.in_per_s);
    }
    printf("# in_ratio: changes/s relative to debounce_ms=0 with the same keys (same run)\n");
    return 0;
}
