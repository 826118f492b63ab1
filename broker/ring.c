/* ring.c - see ring.h. */
#include "ring.h"

#include <stdlib.h>
#include <string.h>

typedef struct slot {
    sb_message m; /* topic and body point into `data` */
    char *data;
} slot;

struct sb_ring {
    slot *slots;
    size_t cap, start, count;
};

int sb_ring_new(size_t capacity, sb_ring **out)
{
    sb_ring *r = calloc(1, sizeof *r);
    if (!r)
        return SB_ERR_NOMEM;
    if (capacity && !(r->slots = calloc(capacity, sizeof *r->slots))) {
        free(r);
        return SB_ERR_NOMEM;
    }
    r->cap = capacity;
    *out = r;
    return SB_OK;
}

void sb_ring_clear(sb_ring *r)
{
    for (size_t i = 0; i < r->count; i++)
        free(r->slots[(r->start + i) % r->cap].data);
    r->start = r->count = 0;
}

void sb_ring_free(sb_ring *r)
{
    if (!r)
        return;
    sb_ring_clear(r);
    free(r->slots);
    free(r);
}

int sb_ring_push(sb_ring *r, const sb_message *m)
{
    if (!r->cap)
        return SB_OK;
    char *data = malloc(m->topic_len + m->body_len + 1);
    if (!data)
        return SB_ERR_NOMEM;
    memcpy(data, m->topic, m->topic_len);
    memcpy(data + m->topic_len, m->body, m->body_len);
    if (r->count == r->cap) {
        free(r->slots[r->start].data);
        r->start = (r->start + 1) % r->cap;
        r->count--;
    }
    slot *s = &r->slots[(r->start + r->count++) % r->cap];
    s->data = data;
    s->m = *m;
    s->m.topic = data;
    s->m.body = data + m->topic_len;
    return SB_OK;
}

static const sb_message *at(const sb_ring *r, size_t i)
{
    return &r->slots[(r->start + i) % r->cap].m;
}

int sb_ring_since(const sb_ring *r, uint64_t after, uint64_t last_seq, sb_replay_fn fn, void *ud)
{
    if (after > last_seq)
        return SB_ERR_NOTFOUND; /* the client is ahead of us: it belongs to another run */
    if (after == last_seq)
        return SB_OK;
    if (!r->count || at(r, 0)->seq > after + 1)
        return SB_ERR_NOTFOUND;
    /* Seqs grow along the ring (with holes where a message could not be kept): find the
     * first one after `after` by bisection rather than walking a large ring per request. */
    size_t lo = 0, hi = r->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (at(r, mid)->seq > after)
            hi = mid;
        else
            lo = mid + 1;
    }
    for (size_t i = lo; i < r->count; i++)
        fn(ud, at(r, i));
    return SB_OK;
}
