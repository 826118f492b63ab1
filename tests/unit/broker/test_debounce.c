/* Unit tests for broker/debounce.c with a fake clock and a scripted source. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "debounce.h"

#define MAX_EVENTS 4096
#define MAX_FETCHES 4096

typedef struct rec_event {
    uint32_t table;
    char key[64];
    sb_op op;
    uint64_t version;
    uint32_t n;
    char origin[32];
    char row[32]; /* the fake row bytes, "" when NULL */
} rec_event;

typedef struct rec_fetch {
    uint64_t req;
    uint32_t table;
    size_t n;
    char keys[SB_DEBOUNCE_FETCH_KEYS][64];
} rec_fetch;

/* The fake database: the current row (as a short string) and version of each key. */
typedef struct db_row {
    char key[64];
    char row[32]; /* "" = absent */
    uint64_t version;
} db_row;

typedef struct fixture {
    sb_debounce *d;
    uint64_t now;
    rec_event events[MAX_EVENTS];
    size_t nevents;
    rec_fetch *fetches;
    size_t nfetches;
    uint64_t next_req;
    int fail_fetch; /* fetch() returns this when negative */
    db_row db[4096];
    size_t ndb;
} fixture;

static int fake_fetch(void *ud, uint32_t table, const sb_key *keys, size_t n, uint64_t *req)
{
    fixture *f = ud;
    if (f->fail_fetch)
        return f->fail_fetch;
    assert_true(f->nfetches < MAX_FETCHES);
    assert_true(n <= SB_DEBOUNCE_FETCH_KEYS);
    rec_fetch *r = &f->fetches[f->nfetches++];
    r->req = *req = ++f->next_req;
    r->table = table;
    r->n = n;
    for (size_t i = 0; i < n; i++) {
        char *dst = r->keys[i];
        dst[0] = '\0';
        for (uint32_t p = 0; p < keys[i].nparts; p++) {
            if (p)
                strcat(dst, "|");
            strcat(dst, keys[i].parts[p]);
        }
    }
    return SB_OK;
}

static void fake_publish(void *ud, const sb_debounce_event *ev)
{
    fixture *f = ud;
    assert_true(f->nevents < MAX_EVENTS);
    rec_event *e = &f->events[f->nevents++];
    memset(e, 0, sizeof *e);
    e->table = ev->table;
    for (uint32_t p = 0; p < ev->key.nparts; p++) {
        if (p)
            strcat(e->key, "|");
        strcat(e->key, ev->key.parts[p]);
    }
    e->op = ev->op;
    e->version = ev->version;
    e->n = ev->n;
    if (ev->origin)
        snprintf(e->origin, sizeof e->origin, "%s", ev->origin);
    if (ev->row)
        snprintf(e->row, sizeof e->row, "%.*s", (int)ev->row_len, (const char *)ev->row);
}

static const sb_debounce_ops ops = {.fetch = fake_fetch, .publish = fake_publish};

static fixture *make(const uint64_t *windows, size_t ntables)
{
    fixture *f = calloc(1, sizeof *f);
    f->fetches = calloc(MAX_FETCHES, sizeof *f->fetches);
    f->now = 1000;
    assert_int_equal(sb_debounce_new(ntables, windows, &ops, f, &f->d), SB_OK);
    return f;
}

static int setup_200(void **state)
{
    static const uint64_t w[] = {200, 50};
    *state = make(w, 2);
    return 0;
}

static int setup_0(void **state)
{
    static const uint64_t w[] = {0, 0};
    *state = make(w, 2);
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sb_debounce_free(f->d);
    free(f->fetches);
    free(f);
    return 0;
}

static db_row *db_find(fixture *f, const char *key)
{
    for (size_t i = 0; i < f->ndb; i++)
        if (!strcmp(f->db[i].key, key))
            return &f->db[i];
    assert_true(f->ndb < 4096);
    db_row *r = &f->db[f->ndb++];
    memset(r, 0, sizeof *r);
    snprintf(r->key, sizeof r->key, "%s", key);
    return r;
}

/* Apply a change to the fake database and feed it to the engine. */
static void change(fixture *f, uint32_t table, const char *key, sb_op op, uint64_t version,
                   const char *row)
{
    db_row *r = db_find(f, key);
    r->version = version;
    snprintf(r->row, sizeof r->row, "%s", op == SB_OP_DELETE ? "" : row);
    const char *parts[] = {key};
    sb_change c = {.table = table,
                   .key = {parts, 1},
                   .op = op,
                   .version = version,
                   .origin = "desk-a",
                   .ts_ms = 42};
    assert_int_equal(sb_debounce_change(f->d, table, &c, f->now), SB_OK);
}

static void run(fixture *f)
{
    sb_debounce_run(f->d, f->now, 100000);
}

/* Answer every outstanding fetch from the fake database. */
static void answer_all(fixture *f)
{
    for (size_t i = 0; i < f->nfetches; i++) {
        rec_fetch *r = &f->fetches[i];
        if (!sb_debounce_owns(f->d, r->req))
            continue;
        sb_row *rows = calloc(r->n, sizeof *rows);
        const char **parts = calloc(r->n, sizeof *parts);
        for (size_t k = 0; k < r->n; k++) {
            db_row *d = db_find(f, r->keys[k]);
            parts[k] = r->keys[k];
            rows[k] = (sb_row){.table = r->table,
                               .key = {&parts[k], 1},
                               .version = d->version,
                               .row = d->row[0] ? d->row : NULL,
                               .row_len = strlen(d->row)};
        }
        sb_debounce_rows(f->d, r->req, rows, r->n, f->now);
        sb_debounce_done(f->d, r->req, SB_OK, f->now);
        free(rows);
        free(parts);
    }
}

static void cycle(fixture *f)
{
    run(f);
    answer_all(f);
}

static void advance(fixture *f, uint64_t ms)
{
    f->now += ms;
    cycle(f);
}

/* ---- tests ------------------------------------------------------------------------ */

static void leading_edge_is_immediate(void **state)
{
    fixture *f = *state;
    change(f, 0, "1", SB_OP_INSERT, 10, "a");
    assert_int_equal(sb_debounce_next_deadline(f->d, f->now), f->now);
    cycle(f);
    assert_int_equal(f->nevents, 1);
    assert_int_equal(f->events[0].op, SB_OP_INSERT);
    assert_int_equal(f->events[0].version, 10);
    assert_int_equal(f->events[0].n, 1);
    assert_string_equal(f->events[0].row, "a");
    assert_string_equal(f->events[0].origin, "desk-a");
}

static void window_coalesces_to_latest(void **state)
{
    fixture *f = *state;
    change(f, 0, "1", SB_OP_INSERT, 10, "a");
    cycle(f);
    for (uint64_t v = 11; v <= 20; v++) {
        f->now += 10;
        change(f, 0, "1", SB_OP_UPDATE, v, v == 20 ? "last" : "mid");
        cycle(f);
    }
    assert_int_equal(f->nevents, 1); /* still inside the window */
    assert_int_equal(sb_debounce_pending(f->d), 1);
    advance(f, 100); /* 200 ms after the first event */
    assert_int_equal(f->nevents, 2);
    assert_int_equal(f->events[1].op, SB_OP_UPDATE);
    assert_int_equal(f->events[1].version, 20);
    assert_int_equal(f->events[1].n, 10);
    assert_string_equal(f->events[1].row, "last");
    assert_int_equal(sb_debounce_coalesced(f->d), 9);
}

static void window_restarts_only_after_publish(void **state)
{
    fixture *f = *state;
    change(f, 0, "1", SB_OP_INSERT, 10, "a");
    cycle(f);
    advance(f, 200); /* window closes with nothing pending: entity forgotten */
    assert_int_equal(sb_debounce_entities(f->d), 0);
    assert_int_equal(sb_debounce_next_deadline(f->d, f->now), UINT64_MAX);
    change(f, 0, "1", SB_OP_UPDATE, 11, "b");
    cycle(f); /* idle again: leading edge */
    assert_int_equal(f->nevents, 2);
    assert_int_equal(f->events[1].version, 11);
}

static void many_updates_bounded_events(void **state)
{
    fixture *f = *state;
    /* 1000 updates over ~1 s with a 200 ms window: at most 1000/200 + 2 events. */
    change(f, 0, "7", SB_OP_INSERT, 1, "v1");
    cycle(f);
    for (uint64_t v = 2; v <= 1000; v++) {
        f->now += 1;
        char row[16];
        snprintf(row, sizeof row, "v%llu", (unsigned long long)v);
        change(f, 0, "7", SB_OP_UPDATE, v, row);
        cycle(f);
    }
    advance(f, 200);
    advance(f, 200);
    assert_true(f->nevents <= 1000 / 200 + 2);
    assert_string_equal(f->events[f->nevents - 1].row, "v1000");
    assert_int_equal(f->events[f->nevents - 1].version, 1000);
    uint32_t total = 0;
    for (size_t i = 0; i < f->nevents; i++)
        total += f->events[i].n;
    assert_int_equal(total, 1000);
    assert_int_equal(sb_debounce_entities(f->d), 0);
}

static void insert_then_delete_unpublished_is_nothing(void **state)
{
    fixture *f = *state;
    change(f, 0, "1", SB_OP_UPDATE, 10, "a");
    cycle(f); /* published: an update (entity existed before) */
    change(f, 0, "2", SB_OP_INSERT, 11, "x");
    change(f, 0, "2", SB_OP_DELETE, 12, "");
    cycle(f);
    assert_int_equal(f->nevents, 1);
    assert_string_equal(f->events[0].key, "1");
    assert_int_equal(sb_debounce_entities(f->d), 1); /* key 1's window only */
}

static void insert_delete_exposed_by_snapshot_is_delete(void **state)
{
    fixture *f = *state;
    /* A snapshot ran after the insert was written: a client may hold the row. */
    sb_debounce_set_exposure(f->d, 42);
    change(f, 0, "2", SB_OP_INSERT, 11, "x");
    change(f, 0, "2", SB_OP_DELETE, 12, "");
    cycle(f);
    assert_int_equal(f->nevents, 1);
    assert_int_equal(f->events[0].op, SB_OP_DELETE);
    /* Written after the snapshot: nobody can have it. */
    sb_debounce_set_exposure(f->d, 41);
    change(f, 0, "3", SB_OP_INSERT, 13, "x");
    change(f, 0, "3", SB_OP_DELETE, 14, "");
    cycle(f);
    assert_int_equal(f->nevents, 1);
}

static void published_then_delete_is_delete(void **state)
{
    fixture *f = *state;
    change(f, 0, "1", SB_OP_INSERT, 10, "a");
    cycle(f);
    change(f, 0, "1", SB_OP_UPDATE, 11, "b");
    change(f, 0, "1", SB_OP_DELETE, 12, "");
    advance(f, 200);
    assert_int_equal(f->nevents, 2);
    assert_int_equal(f->events[1].op, SB_OP_DELETE);
    assert_int_equal(f->events[1].version, 12);
    assert_string_equal(f->events[1].row, "");
    assert_int_equal(f->events[1].n, 2);
}

static void insert_in_window_of_unpublished_insert_then_delete(void **state)
{
    fixture *f = *state;
    /* Published insert, then delete + insert inside the window: subscribers still hold the
     * old row, so they get an update carrying the new row. */
    change(f, 0, "1", SB_OP_INSERT, 10, "a");
    cycle(f);
    change(f, 0, "1", SB_OP_DELETE, 11, "");
    change(f, 0, "1", SB_OP_INSERT, 12, "new");
    advance(f, 200);
    assert_int_equal(f->nevents, 2);
    assert_int_equal(f->events[1].op, SB_OP_UPDATE);
    assert_string_equal(f->events[1].row, "new");
}

static void delete_published_then_insert_is_insert(void **state)
{
    fixture *f = *state;
    change(f, 0, "1", SB_OP_DELETE, 10, "");
    cycle(f);
    assert_int_equal(f->events[0].op, SB_OP_DELETE);
    change(f, 0, "1", SB_OP_INSERT, 11, "again");
    advance(f, 200);
    assert_int_equal(f->nevents, 2);
    assert_int_equal(f->events[1].op, SB_OP_INSERT);
}

static void insert_update_unpublished_is_insert(void **state)
{
    fixture *f = *state;
    change(f, 0, "1", SB_OP_INSERT, 10, "a");
    change(f, 0, "1", SB_OP_UPDATE, 11, "b");
    cycle(f); /* read together: one event even without a window */
    assert_int_equal(f->nevents, 1);
    assert_int_equal(f->events[0].op, SB_OP_INSERT);
    assert_int_equal(f->events[0].version, 11);
    assert_int_equal(f->events[0].n, 2);
}

static void zero_window_read_together_coalesce(void **state)
{
    fixture *f = *state;
    change(f, 0, "1", SB_OP_INSERT, 10, "a");
    change(f, 0, "1", SB_OP_DELETE, 11, "");
    cycle(f);
    assert_int_equal(f->nevents, 0);
    change(f, 0, "2", SB_OP_INSERT, 12, "a");
    cycle(f);
    change(f, 0, "2", SB_OP_UPDATE, 13, "b");
    cycle(f); /* no window: published at once */
    assert_int_equal(f->nevents, 2);
    assert_int_equal(f->events[1].op, SB_OP_UPDATE);
    assert_int_equal(sb_debounce_entities(f->d), 0);
}

static void newer_row_version_wins_and_stale_changes_drop(void **state)
{
    fixture *f = *state;
    change(f, 0, "1", SB_OP_INSERT, 10, "a");
    /* Before the fetch runs, the database moves on to version 15. */
    db_find(f, "1")->version = 15;
    snprintf(db_find(f, "1")->row, 32, "%s", "newer");
    cycle(f);
    assert_int_equal(f->events[0].version, 15);
    assert_string_equal(f->events[0].row, "newer");
    /* The change for version 15 arrives later: already covered. */
    const char *parts[] = {"1"};
    sb_change c = {.table = 0, .key = {parts, 1}, .op = SB_OP_UPDATE, .version = 15};
    assert_int_equal(sb_debounce_change(f->d, 0, &c, f->now), SB_OK);
    advance(f, 200);
    assert_int_equal(f->nevents, 1);
    assert_int_equal(sb_debounce_entities(f->d), 0);
}

static void duplicate_versions_dropped(void **state)
{
    fixture *f = *state;
    change(f, 0, "1", SB_OP_INSERT, 10, "a");
    cycle(f);
    change(f, 0, "1", SB_OP_INSERT, 10, "a"); /* re-read after a reconnect */
    advance(f, 200);
    assert_int_equal(f->nevents, 1);
}

static void per_table_windows(void **state)
{
    fixture *f = *state; /* table 0: 200 ms, table 1: 50 ms */
    change(f, 0, "1", SB_OP_INSERT, 10, "a");
    change(f, 1, "1", SB_OP_INSERT, 11, "a");
    cycle(f);
    assert_int_equal(f->nevents, 2);
    change(f, 0, "1", SB_OP_UPDATE, 12, "b");
    change(f, 1, "1", SB_OP_UPDATE, 13, "b");
    advance(f, 50);
    assert_int_equal(f->nevents, 3);
    assert_int_equal(f->events[2].table, 1);
    advance(f, 150);
    assert_int_equal(f->nevents, 4);
    assert_int_equal(f->events[3].table, 0);
}

static void set_windows_applies_to_new_windows(void **state)
{
    fixture *f = *state;
    const uint64_t w[] = {0, 0};
    sb_debounce_set_windows(f->d, w);
    change(f, 0, "1", SB_OP_INSERT, 10, "a");
    cycle(f);
    change(f, 0, "1", SB_OP_UPDATE, 11, "b");
    cycle(f);
    assert_int_equal(f->nevents, 2);
}

static void many_keys_sliced_fetches(void **state)
{
    fixture *f = *state;
    enum { N = 3000 };
    for (int i = 0; i < N; i++) {
        char key[16];
        snprintf(key, sizeof key, "%d", i);
        change(f, 0, key, SB_OP_INSERT, (uint64_t)(100 + i), "r");
    }
    /* A small budget touches a bounded number of entities per call. */
    size_t touched = sb_debounce_run(f->d, f->now, 1000);
    assert_true(touched <= 1000);
    assert_true(f->nfetches <= 2);
    for (size_t i = 0; i < f->nfetches; i++)
        assert_true(f->fetches[i].n <= SB_DEBOUNCE_FETCH_KEYS);
    for (int guard = 0; f->nevents < N && guard < 100; guard++)
        cycle(f);
    assert_int_equal(f->nevents, N);
    /* Every fetch asked for at most SB_DEBOUNCE_FETCH_KEYS keys of one table. */
    assert_true(f->nfetches >= N / SB_DEBOUNCE_FETCH_KEYS);
    advance(f, 200);
    assert_int_equal(sb_debounce_entities(f->d), 0);
}

static void failed_fetch_is_retried_nothing_lost(void **state)
{
    fixture *f = *state;
    f->fail_fetch = SB_ERR_BUSY;
    change(f, 0, "1", SB_OP_INSERT, 10, "a");
    run(f);
    assert_int_equal(f->nevents, 0);
    assert_int_equal(sb_debounce_pending(f->d), 1);
    f->fail_fetch = 0;
    advance(f, SB_DEBOUNCE_RETRY_MS - 1);
    assert_int_equal(f->nevents, 0);
    advance(f, 1);
    assert_int_equal(f->nevents, 1);
    assert_int_equal(f->events[0].version, 10);
}

static void fetch_error_after_issue_keeps_changes(void **state)
{
    fixture *f = *state;
    change(f, 0, "1", SB_OP_INSERT, 10, "a");
    run(f);
    assert_int_equal(f->nfetches, 1);
    change(f, 0, "1", SB_OP_UPDATE, 11, "b"); /* arrives while the fetch is in flight */
    sb_debounce_done(f->d, f->fetches[0].req, SB_ERR_DB, f->now);
    assert_int_equal(sb_debounce_pending(f->d), 1);
    advance(f, SB_DEBOUNCE_RETRY_MS);
    assert_int_equal(f->nevents, 1);
    assert_int_equal(f->events[0].op, SB_OP_INSERT); /* first op kept: never published */
    assert_int_equal(f->events[0].version, 11);
    assert_int_equal(f->events[0].n, 2);
}

static void truncate_published_at_once_and_clears(void **state)
{
    fixture *f = *state;
    change(f, 0, "1", SB_OP_INSERT, 10, "a");
    cycle(f);
    change(f, 0, "1", SB_OP_UPDATE, 11, "b"); /* pending in the window */
    sb_change t = {.table = 0, .op = SB_OP_TRUNCATE, .version = 12, .ts_ms = 1};
    assert_int_equal(sb_debounce_change(f->d, 0, &t, f->now), SB_OK);
    assert_int_equal(f->nevents, 2);
    assert_int_equal(f->events[1].op, SB_OP_TRUNCATE);
    assert_string_equal(f->events[1].key, "");
    db_find(f, "1")->row[0] = '\0';
    db_find(f, "1")->version = 0;
    advance(f, 200);
    assert_int_equal(f->nevents, 2); /* the pending update died with the table */
    /* A new insert after the truncate is an insert. */
    change(f, 0, "1", SB_OP_INSERT, 13, "c");
    advance(f, 200);
    assert_int_equal(f->nevents, 3);
    assert_int_equal(f->events[2].op, SB_OP_INSERT);
}

static void flush_all_publishes_pending_now(void **state)
{
    fixture *f = *state;
    change(f, 0, "1", SB_OP_INSERT, 10, "a");
    cycle(f);
    change(f, 0, "1", SB_OP_UPDATE, 11, "b");
    sb_debounce_flush_all(f->d);
    assert_true(sb_debounce_next_deadline(f->d, f->now) <= f->now);
    cycle(f);
    assert_int_equal(f->nevents, 2);
    assert_int_equal(sb_debounce_pending(f->d), 0);
}

static void composite_keys(void **state)
{
    fixture *f = *state;
    const char *parts[] = {"12", "2026-11-28"};
    sb_change c = {.table = 0, .key = {parts, 2}, .op = SB_OP_INSERT, .version = 5};
    assert_int_equal(sb_debounce_change(f->d, 0, &c, f->now), SB_OK);
    run(f);
    assert_int_equal(f->nfetches, 1);
    assert_string_equal(f->fetches[0].keys[0], "12|2026-11-28");
    sb_row row = {.key = {parts, 2}, .version = 5, .row = "r", .row_len = 1};
    sb_debounce_rows(f->d, f->fetches[0].req, &row, 1, f->now);
    sb_debounce_done(f->d, f->fetches[0].req, SB_OK, f->now);
    assert_int_equal(f->nevents, 1);
    assert_string_equal(f->events[0].key, "12|2026-11-28");
}

static void unanswered_key_is_retried(void **state)
{
    fixture *f = *state;
    change(f, 0, "1", SB_OP_INSERT, 10, "a");
    run(f);
    sb_debounce_done(f->d, f->fetches[0].req, SB_OK, f->now); /* no rows at all */
    assert_int_equal(f->nevents, 0);
    advance(f, SB_DEBOUNCE_RETRY_MS);
    assert_int_equal(f->nevents, 1);
}

/* A change that comes with its row (and a position), fed to the engine. */
static void change_with_row(fixture *f, const char *key, sb_op op, uint64_t version,
                            const char *row, uint64_t position)
{
    const char *parts[] = {key};
    sb_change c = {.table = 0,
                   .key = {parts, 1},
                   .op = op,
                   .version = version,
                   .origin = "stream",
                   .ts_ms = 42,
                   .position = position,
                   .has_row = true,
                   .row = row,
                   .row_len = row ? strlen(row) : 0};
    assert_int_equal(sb_debounce_change(f->d, 0, &c, f->now), SB_OK);
}

static void change_with_row_is_published_without_fetch(void **state)
{
    fixture *f = *state;
    char row[] = "r10";
    change_with_row(f, "1", SB_OP_INSERT, 10, row, 0);
    memcpy(row, "xxx", 3); /* copied: the caller's buffer is the caller's */
    run(f);
    assert_int_equal(f->nfetches, 0);
    assert_int_equal(f->nevents, 1);
    assert_int_equal(f->events[0].op, SB_OP_INSERT);
    assert_int_equal(f->events[0].version, 10);
    assert_string_equal(f->events[0].row, "r10");
    assert_string_equal(f->events[0].origin, "stream");
    /* Inside the window, the newest row wins; a delete comes without one (row NULL). */
    change_with_row(f, "1", SB_OP_UPDATE, 11, "r11", 0);
    change_with_row(f, "1", SB_OP_UPDATE, 12, "r12", 0);
    advance(f, 200);
    assert_int_equal(f->nevents, 2);
    assert_int_equal(f->events[1].version, 12);
    assert_string_equal(f->events[1].row, "r12");
    assert_int_equal(f->events[1].n, 2);
    change_with_row(f, "1", SB_OP_DELETE, 13, NULL, 0);
    advance(f, 200);
    assert_int_equal(f->nevents, 3);
    assert_int_equal(f->events[2].op, SB_OP_DELETE);
    assert_string_equal(f->events[2].row, "");
    assert_int_equal(f->nfetches, 0);
}

static void change_without_row_after_one_with_is_fetched(void **state)
{
    fixture *f = *state;
    change_with_row(f, "1", SB_OP_INSERT, 10, "r10", 0);
    change(f, 0, "1", SB_OP_UPDATE, 11, "db11"); /* the newest has no row: fetch */
    cycle(f);
    assert_int_equal(f->nfetches, 1);
    assert_int_equal(f->nevents, 1);
    assert_int_equal(f->events[0].version, 11);
    assert_string_equal(f->events[0].row, "db11");
}

static void lowest_pending_position(void **state)
{
    fixture *f = *state;
    assert_int_equal(sb_debounce_lowest_position(f->d), 0);
    change_with_row(f, "1", SB_OP_INSERT, 10, "a", 5);
    change_with_row(f, "2", SB_OP_INSERT, 10, "b", 6);
    assert_int_equal(sb_debounce_lowest_position(f->d), 5);
    run(f); /* both published at once (leading edge) */
    assert_int_equal(sb_debounce_lowest_position(f->d), 0);
    change_with_row(f, "1", SB_OP_UPDATE, 11, "a2", 7); /* held by the window */
    change_with_row(f, "2", SB_OP_UPDATE, 11, "b2", 8);
    change_with_row(f, "2", SB_OP_UPDATE, 12, "b3", 9);
    assert_int_equal(sb_debounce_lowest_position(f->d), 7);
    /* A fetched entity's changes count while the fetch is in flight. */
    change(f, 0, "3", SB_OP_INSERT, 1, "c");
    run(f);
    assert_int_equal(f->nfetches, 1);
    assert_int_equal(sb_debounce_lowest_position(f->d), 7);
    advance(f, 200); /* windows close: everything published */
    assert_int_equal(sb_debounce_lowest_position(f->d), 0);
    assert_int_equal(f->nevents, 5);
}

static void rows_answered_out_of_order(void **state)
{
    fixture *f = *state;
    const char *keys[] = {"1", "2", "3"};
    for (size_t i = 0; i < 3; i++)
        change(f, 0, keys[i], SB_OP_INSERT, 10 + i, keys[i]);
    run(f);
    assert_int_equal(f->nfetches, 1);
    assert_int_equal(f->fetches[0].n, 3);
    /* The source answers 3, 1, 2 (and 1 twice): every entity gets its own row, once. */
    static const size_t order[] = {2, 0, 1, 0};
    for (size_t j = 0; j < 4; j++) {
        const char *k = f->fetches[0].keys[order[j]];
        sb_row row = {.table = 0,
                      .key = {&k, 1},
                      .version = db_find(f, k)->version,
                      .row = db_find(f, k)->row,
                      .row_len = strlen(db_find(f, k)->row)};
        sb_debounce_rows(f->d, f->fetches[0].req, &row, 1, f->now);
    }
    sb_debounce_done(f->d, f->fetches[0].req, SB_OK, f->now);
    assert_int_equal(f->nevents, 3);
    assert_string_equal(f->events[0].key, "3");
    assert_string_equal(f->events[0].row, "3");
    assert_string_equal(f->events[1].key, "1");
    assert_int_equal(f->events[1].version, 10);
    assert_string_equal(f->events[2].key, "2");
    assert_string_equal(f->events[2].row, "2");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(leading_edge_is_immediate, setup_200, teardown),
        cmocka_unit_test_setup_teardown(window_coalesces_to_latest, setup_200, teardown),
        cmocka_unit_test_setup_teardown(window_restarts_only_after_publish, setup_200, teardown),
        cmocka_unit_test_setup_teardown(many_updates_bounded_events, setup_200, teardown),
        cmocka_unit_test_setup_teardown(insert_then_delete_unpublished_is_nothing, setup_200,
                                        teardown),
        cmocka_unit_test_setup_teardown(insert_delete_exposed_by_snapshot_is_delete, setup_0,
                                        teardown),
        cmocka_unit_test_setup_teardown(published_then_delete_is_delete, setup_200, teardown),
        cmocka_unit_test_setup_teardown(insert_in_window_of_unpublished_insert_then_delete,
                                        setup_200, teardown),
        cmocka_unit_test_setup_teardown(delete_published_then_insert_is_insert, setup_200,
                                        teardown),
        cmocka_unit_test_setup_teardown(insert_update_unpublished_is_insert, setup_0, teardown),
        cmocka_unit_test_setup_teardown(zero_window_read_together_coalesce, setup_0, teardown),
        cmocka_unit_test_setup_teardown(newer_row_version_wins_and_stale_changes_drop, setup_200,
                                        teardown),
        cmocka_unit_test_setup_teardown(duplicate_versions_dropped, setup_200, teardown),
        cmocka_unit_test_setup_teardown(per_table_windows, setup_200, teardown),
        cmocka_unit_test_setup_teardown(set_windows_applies_to_new_windows, setup_200, teardown),
        cmocka_unit_test_setup_teardown(many_keys_sliced_fetches, setup_200, teardown),
        cmocka_unit_test_setup_teardown(failed_fetch_is_retried_nothing_lost, setup_200, teardown),
        cmocka_unit_test_setup_teardown(fetch_error_after_issue_keeps_changes, setup_200, teardown),
        cmocka_unit_test_setup_teardown(truncate_published_at_once_and_clears, setup_200, teardown),
        cmocka_unit_test_setup_teardown(flush_all_publishes_pending_now, setup_200, teardown),
        cmocka_unit_test_setup_teardown(composite_keys, setup_200, teardown),
        cmocka_unit_test_setup_teardown(unanswered_key_is_retried, setup_0, teardown),
        cmocka_unit_test_setup_teardown(change_with_row_is_published_without_fetch, setup_200,
                                        teardown),
        cmocka_unit_test_setup_teardown(change_without_row_after_one_with_is_fetched, setup_200,
                                        teardown),
        cmocka_unit_test_setup_teardown(lowest_pending_position, setup_200, teardown),
        cmocka_unit_test_setup_teardown(rows_answered_out_of_order, setup_0, teardown),
    };
    return cmocka_run_group_tests_name("debounce", tests, NULL, NULL);
}
