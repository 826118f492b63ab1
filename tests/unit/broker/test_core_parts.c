/* Unit tests for the loop, the replay ring and presence. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "loop.h"
#include "presence.h"
#include "ring.h"

/* ---- loop ------------------------------------------------------------------------- */

typedef struct counter {
    int runs;
    sb_timer *self;
    sb_watch *watch;
    int fd;
} counter;

static void count_timer(void *ud)
{
    ((counter *)ud)->runs++;
}

static void stop_self(void *ud)
{
    counter *c = ud;
    if (++c->runs == 3)
        sb_timer_remove(c->self);
}

static void read_and_unwatch(void *ud, unsigned revents)
{
    counter *c = ud;
    char buf[8];
    assert_true(revents & SB_IO_READ);
    assert_true(read(c->fd, buf, sizeof buf) > 0);
    c->runs++;
    sb_watch_remove(c->watch); /* removing itself inside its callback is allowed */
}

static void loop_timers_fire_in_order_and_repeat(void **state)
{
    (void)state;
    sb_loop *loop;
    assert_int_equal(sb_loop_new(&loop), SB_OK);
    counter once = {0}, rep = {0}, cancelled = {0};
    assert_int_equal(sb_loop_timer(loop, NULL, 0, 0, count_timer, &once, NULL), SB_OK);
    assert_int_equal(sb_loop_timer(loop, NULL, 1, 1, stop_self, &rep, &rep.self), SB_OK);
    sb_timer *t;
    assert_int_equal(sb_loop_timer(loop, NULL, 1, 0, count_timer, &cancelled, &t), SB_OK);
    sb_timer_remove(t);
    uint64_t deadline = sb_loop_now(loop) + 2000;
    while (rep.runs < 3 && sb_loop_now(loop) < deadline)
        assert_int_equal(sb_loop_run_once(loop, 50), SB_OK);
    assert_int_equal(once.runs, 1);
    assert_int_equal(rep.runs, 3);
    assert_int_equal(cancelled.runs, 0);
    /* The repeating timer removed itself: nothing is left to wait for. */
    assert_int_equal(sb_loop_run_once(loop, 0), SB_OK);
    assert_int_equal(rep.runs, 3);
    sb_loop_free(loop);
}

static void loop_watches_fds_and_drops_owner(void **state)
{
    (void)state;
    sb_loop *loop;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    assert_int_equal(sb_loop_new(&loop), SB_OK);
    counter c = {.fd = fds[0]};
    int owner;
    assert_int_equal(
        sb_loop_watch(loop, &owner, fds[0], NULL, SB_IO_READ, read_and_unwatch, &c, &c.watch),
        SB_OK);
    assert_int_equal(write(fds[1], "x", 1), 1);
    assert_int_equal(sb_loop_run_once(loop, 1000), SB_OK);
    assert_int_equal(c.runs, 1);
    assert_int_equal(write(fds[1], "y", 1), 1);
    assert_int_equal(sb_loop_run_once(loop, 0), SB_OK);
    assert_int_equal(c.runs, 1); /* unwatched */

    counter t = {0};
    assert_int_equal(sb_loop_timer(loop, &owner, 0, 1, count_timer, &t, NULL), SB_OK);
    sb_loop_drop_owner(loop, &owner);
    assert_int_equal(sb_loop_run_once(loop, 5), SB_OK);
    assert_int_equal(t.runs, 0);
    sb_loop_free(loop);
    close(fds[0]);
    close(fds[1]);
}

/* ---- ring ------------------------------------------------------------------------- */

typedef struct replay {
    uint64_t seqs[16];
    size_t n;
} replay;

static void collect(void *ud, const sb_message *m)
{
    replay *r = ud;
    char expect[16];
    snprintf(expect, sizeof expect, "t/%llu", (unsigned long long)m->seq);
    assert_int_equal(m->topic_len, strlen(expect));
    assert_memory_equal(m->topic, expect, m->topic_len);
    r->seqs[r->n++] = m->seq;
}

static void push(sb_ring *ring, uint64_t seq)
{
    char topic[16];
    snprintf(topic, sizeof topic, "t/%llu", (unsigned long long)seq);
    sb_message m = {.kind = SB_MSG_EVENT,
                    .seq = seq,
                    .topic = topic,
                    .topic_len = strlen(topic),
                    .body = "b",
                    .body_len = 1};
    assert_int_equal(sb_ring_push(ring, &m), SB_OK);
}

static void ring_replays_and_refuses_what_it_lost(void **state)
{
    (void)state;
    sb_ring *ring;
    assert_int_equal(sb_ring_new(4, &ring), SB_OK);
    for (uint64_t s = 1; s <= 6; s++)
        push(ring, s); /* holds 3..6 */
    replay r = {0};
    assert_int_equal(sb_ring_since(ring, 2, 6, collect, &r), SB_OK);
    assert_int_equal(r.n, 4);
    assert_int_equal(r.seqs[0], 3);
    assert_int_equal(r.seqs[3], 6);
    r.n = 0;
    /* From the middle of a ring that has wrapped: the bisection finds 5 past the wrap. */
    assert_int_equal(sb_ring_since(ring, 4, 6, collect, &r), SB_OK);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.seqs[0], 5);
    assert_int_equal(r.seqs[1], 6);
    r.n = 0;
    assert_int_equal(sb_ring_since(ring, 1, 6, collect, &r), SB_ERR_NOTFOUND); /* 2 is gone */
    assert_int_equal(sb_ring_since(ring, 6, 6, collect, &r), SB_OK);
    assert_int_equal(r.n, 0);
    assert_int_equal(sb_ring_since(ring, 9, 6, collect, &r), SB_ERR_NOTFOUND);
    sb_ring_clear(ring);
    assert_int_equal(sb_ring_since(ring, 5, 6, collect, &r), SB_ERR_NOTFOUND);
    /* A message the core could not keep leaves a hole: what follows it still replays. */
    push(ring, 1);
    push(ring, 2);
    push(ring, 4);
    assert_int_equal(sb_ring_since(ring, 2, 4, collect, &r), SB_OK);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.seqs[0], 4);
    sb_ring_free(ring);
}

/* ---- presence --------------------------------------------------------------------- */

typedef struct seen_list {
    int calls;
    size_t last_n;
    char first_client[32];
    char first_state[16];
} seen_list;

static void on_list(void *ud, uint32_t table, const sb_key *key, const sb_proto_editor *ed,
                    size_t n)
{
    seen_list *s = ud;
    assert_int_equal(table, 1);
    assert_int_equal(key->nparts, 1);
    assert_string_equal(key->parts[0], "42");
    s->calls++;
    s->last_n = n;
    if (n) {
        snprintf(s->first_client, sizeof s->first_client, "%s", ed[0].client);
        snprintf(s->first_state, sizeof s->first_state, "%s", ed[0].state);
    }
}

static const sb_presence_limits roomy = {
    .max_entries = 1000, .max_per_client = 100, .max_per_entity = 100, .max_ttl_ms = 60000};

static void presence_lists_refreshes_and_expires(void **state)
{
    (void)state;
    sb_presence_set *ps;
    assert_int_equal(sb_presence_set_new(&roomy, &ps), SB_OK);
    const char *parts[] = {"42"};
    sb_key key = {parts, 1};
    seen_list s = {0};
    assert_int_equal(
        sb_presence_apply(ps, 1, &key, "desk-a", "editing", 1000, 0, 5, on_list, &s, NULL), SB_OK);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.last_n, 1);
    assert_string_equal(s.first_client, "desk-a");
    /* A refresh extends the TTL without publishing. */
    assert_int_equal(
        sb_presence_apply(ps, 1, &key, "desk-a", "editing", 1000, 900, 6, on_list, &s, NULL),
        SB_OK);
    assert_int_equal(s.calls, 1);
    assert_int_equal(sb_presence_next_expiry(ps), 1900);
    assert_int_equal(
        sb_presence_apply(ps, 1, &key, "desk-b", "viewing", 500, 900, 7, on_list, &s, NULL), SB_OK);
    assert_int_equal(s.calls, 2);
    assert_int_equal(s.last_n, 2);
    sb_presence_expire(ps, 1400, on_list, &s); /* desk-b's TTL passed */
    assert_int_equal(s.calls, 3);
    assert_int_equal(s.last_n, 1);
    assert_int_equal(
        sb_presence_apply(ps, 1, &key, "desk-a", "left", 0, 1500, 8, on_list, &s, NULL), SB_OK);
    assert_int_equal(s.calls, 4);
    assert_int_equal(s.last_n, 0);
    assert_int_equal(sb_presence_next_expiry(ps), UINT64_MAX);
    assert_int_equal(
        sb_presence_apply(ps, 1, &key, "desk-a", "dancing", 0, 0, 0, on_list, &s, NULL),
        SB_ERR_INVAL);
    sb_presence_set_free(ps);
}

static void count_lists(void *ud, uint32_t table, const sb_key *key, const sb_proto_editor *ed,
                        size_t n)
{
    (void)table, (void)key, (void)ed, (void)n;
    (*(int *)ud)++;
}

static int announce(sb_presence_set *ps, const char *client, const char *k, uint32_t ttl,
                    uint64_t now, int *calls, const char **limit)
{
    const char *parts[] = {k};
    sb_key key = {parts, 1};
    return sb_presence_apply(ps, 0, &key, client, "editing", ttl, now, 0, count_lists, calls,
                             limit);
}

static void presence_limits_are_named(void **state)
{
    (void)state;
    sb_presence_limits lim = {
        .max_entries = 6, .max_per_client = 3, .max_per_entity = 2, .max_ttl_ms = 10000};
    sb_presence_set *ps;
    assert_int_equal(sb_presence_set_new(&lim, &ps), SB_OK);
    int calls = 0;
    const char *limit = NULL;
    char key[8];
    for (int i = 0; i < 3; i++) {
        snprintf(key, sizeof key, "%d", i);
        assert_int_equal(announce(ps, "a", key, 1000, 0, &calls, &limit), SB_OK);
    }
    assert_int_equal(announce(ps, "a", "3", 1000, 0, &calls, &limit), SB_ERR_BUSY);
    assert_string_equal(limit, "presence_max_per_client");
    /* A refresh of an entry held is no new entry. */
    assert_int_equal(announce(ps, "a", "0", 1000, 10, &calls, &limit), SB_OK);
    assert_int_equal(announce(ps, "b", "0", 1000, 0, &calls, &limit), SB_OK);
    assert_int_equal(announce(ps, "c", "0", 1000, 0, &calls, &limit), SB_ERR_BUSY);
    assert_string_equal(limit, "presence_max_per_entity");
    assert_int_equal(announce(ps, "c", "1", 1000, 0, &calls, &limit), SB_OK);
    assert_int_equal(announce(ps, "d", "2", 1000, 0, &calls, &limit), SB_OK);
    assert_int_equal(sb_presence_count(ps), 6);
    assert_int_equal(announce(ps, "e", "4", 1000, 0, &calls, &limit), SB_ERR_BUSY);
    assert_string_equal(limit, "presence_max_entries");
    /* ttl_ms above the maximum, or a client id that is too long: invalid. */
    assert_int_equal(announce(ps, "a", "0", 10001, 0, &calls, &limit), SB_ERR_INVAL);
    char longid[SB_PRESENCE_CLIENT_MAX + 2];
    memset(longid, 'x', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    assert_int_equal(announce(ps, longid, "9", 1000, 0, &calls, &limit), SB_ERR_INVAL);
    assert_int_equal(calls, 6); /* one list per new entry, none for refusals or refreshes */
    /* Expiry frees room again. */
    sb_presence_expire(ps, 1000, count_lists, &calls);
    assert_int_equal(sb_presence_count(ps), 1); /* a's refreshed "0" lives until 1010 */
    assert_int_equal(sb_presence_next_expiry(ps), 1010);
    assert_int_equal(announce(ps, "e", "4", 1000, 1000, &calls, &limit), SB_OK);
    sb_presence_set_free(ps);
}

/* Random announcements, refreshes, leaves and expiries against a plain array: the index
 * and the heap must give the same entries, lists and next expiry as a scan would. */
typedef struct model_entry {
    int client, entity;
    uint64_t expires;
    bool live;
} model_entry;

typedef struct list_seen {
    size_t n;
    int entity;
} list_seen;

static void remember_list(void *ud, uint32_t table, const sb_key *key, const sb_proto_editor *ed,
                          size_t n)
{
    (void)table, (void)ed;
    list_seen *l = ud;
    l->n = n;
    l->entity = atoi(key->parts[0]);
}

static void presence_index_matches_a_scan(void **state)
{
    (void)state;
    enum { CLIENTS = 40, ENTITIES = 30 };
    sb_presence_limits lim = {
        .max_entries = 100000, .max_per_client = 1000, .max_per_entity = 1000, .max_ttl_ms = 60000};
    sb_presence_set *ps;
    assert_int_equal(sb_presence_set_new(&lim, &ps), SB_OK);
    static model_entry m[CLIENTS][ENTITIES];
    memset(m, 0, sizeof m);
    unsigned seed = 12345;
    uint64_t now = 0;
    for (int step = 0; step < 20000; step++) {
        seed = seed * 1103515245u + 12345u;
        int c = (int)(seed >> 8) % CLIENTS, e = (int)(seed >> 16) % ENTITIES;
        char client[16], key[16];
        snprintf(client, sizeof client, "c%d", c);
        snprintf(key, sizeof key, "%d", e);
        const char *parts[] = {key};
        sb_key k = {parts, 1};
        list_seen seen = {(size_t)-1, -1};
        bool leave = (seed >> 28) % 4 == 0;
        uint32_t ttl = 1 + (seed >> 4) % 500;
        assert_int_equal(sb_presence_apply(ps, 0, &k, client, leave ? "left" : "editing", ttl, now,
                                           0, remember_list, &seen, NULL),
                         SB_OK);
        bool was = m[c][e].live;
        m[c][e].live = !leave;
        if (!leave)
            m[c][e].expires = now + ttl;
        if (was != m[c][e].live) {
            size_t n = 0;
            for (int i = 0; i < CLIENTS; i++)
                n += m[i][e].live;
            assert_int_equal(seen.entity, e);
            assert_int_equal(seen.n, n);
        } else {
            assert_int_equal(seen.entity, -1); /* refresh or leave of nothing: no list */
        }
        now += (seed >> 3) % 7;
        if (step % 50 == 0) {
            sb_presence_expire(ps, now, remember_list, &seen);
            for (int i = 0; i < CLIENTS; i++)
                for (int j = 0; j < ENTITIES; j++)
                    if (m[i][j].live && m[i][j].expires <= now)
                        m[i][j].live = false;
        }
        uint64_t next = UINT64_MAX;
        size_t live = 0;
        for (int i = 0; i < CLIENTS; i++)
            for (int j = 0; j < ENTITIES; j++)
                if (m[i][j].live) {
                    live++;
                    if (m[i][j].expires < next)
                        next = m[i][j].expires;
                }
        assert_int_equal(sb_presence_count(ps), live);
        assert_int_equal(sb_presence_next_expiry(ps), next);
    }
    sb_presence_set_free(ps);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(loop_timers_fire_in_order_and_repeat),
        cmocka_unit_test(loop_watches_fds_and_drops_owner),
        cmocka_unit_test(ring_replays_and_refuses_what_it_lost),
        cmocka_unit_test(presence_lists_refreshes_and_expires),
        cmocka_unit_test(presence_limits_are_named),
        cmocka_unit_test(presence_index_matches_a_scan),
    };
    return cmocka_run_group_tests_name("broker parts", tests, NULL, NULL);
}
