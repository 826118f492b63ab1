/* loop.c - see loop.h. */
#include "loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

struct sb_watch {
    sb_loop *loop;
    void *owner;
    int fd;
    void *zsock;
    unsigned events;
    sb_io_fn fn;
    void *ud;
    bool removed;
};

struct sb_timer {
    sb_loop *loop;
    void *owner;
    uint64_t due;
    uint64_t repeat;
    sb_timer_fn fn;
    void *ud;
    size_t heap_index;
    bool firing;  /* its callback is running */
    bool removed; /* removed while firing: free after the callback */
};

struct sb_loop {
    sb_watch **watches;
    size_t nwatches, cap_watches;
    bool dirty; /* a watch was removed: compact before the next poll */

    zmq_pollitem_t *items;
    sb_watch **item_watch; /* items[i] belongs to item_watch[i] */
    size_t cap_items, cap_item_watch;

    sb_timer **heap; /* min-heap on due */
    size_t nheap, cap_heap;

    uint64_t now;
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return SB_OK;
    size_t ncap = *cap ? *cap * 2 : 16;
    while (ncap < need)
        ncap *= 2;
    void *p = realloc(*arr, ncap * elem);
    if (!p)
        return SB_ERR_NOMEM;
    *arr = p;
    *cap = ncap;
    return SB_OK;
}

int sb_loop_new(sb_loop **out)
{
    sb_loop *loop = calloc(1, sizeof *loop);
    if (!loop)
        return SB_ERR_NOMEM;
    loop->now = mono_ms();
    *out = loop;
    return SB_OK;
}

uint64_t sb_loop_now(sb_loop *loop)
{
    loop->now = mono_ms();
    return loop->now;
}

/* ---- watches ---------------------------------------------------------------------- */

int sb_loop_watch(sb_loop *loop, void *owner, int fd, void *zsock, unsigned events, sb_io_fn fn,
                  void *ud, sb_watch **out)
{
    if (!fn || (!zsock && fd < 0))
        return SB_ERR_INVAL;
    if (grow((void **)&loop->watches, &loop->cap_watches, loop->nwatches + 1,
             sizeof *loop->watches))
        return SB_ERR_NOMEM;
    sb_watch *w = calloc(1, sizeof *w);
    if (!w)
        return SB_ERR_NOMEM;
    *w = (sb_watch){.loop = loop,
                    .owner = owner,
                    .fd = fd,
                    .zsock = zsock,
                    .events = events,
                    .fn = fn,
                    .ud = ud};
    loop->watches[loop->nwatches++] = w;
    if (out)
        *out = w;
    return SB_OK;
}

int sb_watch_set(sb_watch *w, unsigned events)
{
    if (!w || w->removed)
        return SB_ERR_INVAL;
    w->events = events;
    return SB_OK;
}

void sb_watch_remove(sb_watch *w)
{
    if (!w || w->removed)
        return;
    w->removed = true;
    w->loop->dirty = true;
}

static void compact_watches(sb_loop *loop)
{
    size_t j = 0;
    for (size_t i = 0; i < loop->nwatches; i++) {
        if (loop->watches[i]->removed)
            free(loop->watches[i]);
        else
            loop->watches[j++] = loop->watches[i];
    }
    loop->nwatches = j;
    loop->dirty = false;
}

/* ---- timers ----------------------------------------------------------------------- */

static void heap_swap(sb_loop *loop, size_t a, size_t b)
{
    sb_timer *t = loop->heap[a];
    loop->heap[a] = loop->heap[b];
    loop->heap[b] = t;
    loop->heap[a]->heap_index = a;
    loop->heap[b]->heap_index = b;
}

static void heap_up(sb_loop *loop, size_t i)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (loop->heap[parent]->due <= loop->heap[i]->due)
            break;
        heap_swap(loop, i, parent);
        i = parent;
    }
}

static void heap_down(sb_loop *loop, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < loop->nheap && loop->heap[l]->due < loop->heap[m]->due)
            m = l;
        if (r < loop->nheap && loop->heap[r]->due < loop->heap[m]->due)
            m = r;
        if (m == i)
            return;
        heap_swap(loop, i, m);
        i = m;
    }
}

static int heap_push(sb_loop *loop, sb_timer *t)
{
    if (grow((void **)&loop->heap, &loop->cap_heap, loop->nheap + 1, sizeof *loop->heap))
        return SB_ERR_NOMEM;
    t->heap_index = loop->nheap;
    loop->heap[loop->nheap++] = t;
    heap_up(loop, t->heap_index);
    return SB_OK;
}

static void heap_remove(sb_loop *loop, sb_timer *t)
{
    size_t i = t->heap_index;
    size_t last = --loop->nheap;
    if (i != last) {
        heap_swap(loop, i, last);
        heap_down(loop, i);
        heap_up(loop, i);
    }
    t->heap_index = SIZE_MAX;
}

int sb_loop_timer(sb_loop *loop, void *owner, uint64_t delay_ms, uint64_t repeat_ms, sb_timer_fn fn,
                  void *ud, sb_timer **out)
{
    if (!fn)
        return SB_ERR_INVAL;
    sb_timer *t = calloc(1, sizeof *t);
    if (!t)
        return SB_ERR_NOMEM;
    *t = (sb_timer){.loop = loop,
                    .owner = owner,
                    .due = sb_loop_now(loop) + delay_ms,
                    .repeat = repeat_ms,
                    .fn = fn,
                    .ud = ud,
                    .heap_index = SIZE_MAX};
    if (heap_push(loop, t)) {
        free(t);
        return SB_ERR_NOMEM;
    }
    if (out)
        *out = t;
    return SB_OK;
}

void sb_timer_remove(sb_timer *t)
{
    if (!t || t->removed)
        return;
    if (t->firing) {
        t->removed = true;
        return;
    }
    if (t->heap_index != SIZE_MAX)
        heap_remove(t->loop, t);
    free(t);
}

static void run_timers(sb_loop *loop)
{
    uint64_t now = sb_loop_now(loop);
    /* Timers added by callbacks with delay 0 wait for the next iteration, so a callback
     * that re-arms itself cannot starve I/O. */
    size_t budget = loop->nheap;
    while (budget-- > 0 && loop->nheap > 0 && loop->heap[0]->due <= now) {
        sb_timer *t = loop->heap[0];
        heap_remove(loop, t);
        if (t->repeat) {
            t->due = now + t->repeat;
            if (heap_push(loop, t)) {
                free(t);
                continue;
            }
        }
        t->firing = true;
        t->fn(t->ud);
        t->firing = false;
        if (t->removed) {
            if (t->heap_index != SIZE_MAX)
                heap_remove(loop, t);
            free(t);
        } else if (!t->repeat) {
            free(t);
        }
    }
}

void sb_loop_drop_owner(sb_loop *loop, void *owner)
{
    for (size_t i = 0; i < loop->nwatches; i++)
        if (loop->watches[i]->owner == owner)
            sb_watch_remove(loop->watches[i]);
    for (size_t i = 0; i < loop->nheap;) {
        if (loop->heap[i]->owner == owner && !loop->heap[i]->firing)
            sb_timer_remove(loop->heap[i]); /* moves another timer into slot i */
        else
            i++;
    }
}

void sb_loop_owner_count(const sb_loop *loop, const void *owner, size_t *watches, size_t *timers)
{
    *watches = *timers = 0;
    for (size_t i = 0; i < loop->nwatches; i++)
        *watches += loop->watches[i]->owner == owner && !loop->watches[i]->removed;
    for (size_t i = 0; i < loop->nheap; i++)
        *timers += loop->heap[i]->owner == owner && !loop->heap[i]->removed;
}

void sb_loop_free(sb_loop *loop)
{
    if (!loop)
        return;
    for (size_t i = 0; i < loop->nwatches; i++)
        free(loop->watches[i]);
    for (size_t i = 0; i < loop->nheap; i++)
        free(loop->heap[i]);
    free(loop->watches);
    free(loop->items);
    free(loop->item_watch);
    free(loop->heap);
    free(loop);
}

/* ---- iteration -------------------------------------------------------------------- */

int sb_loop_run_once(sb_loop *loop, int max_wait_ms)
{
    if (loop->dirty)
        compact_watches(loop);

    size_t n = 0;
    if (grow((void **)&loop->items, &loop->cap_items, loop->nwatches, sizeof *loop->items) ||
        grow((void **)&loop->item_watch, &loop->cap_item_watch, loop->nwatches,
             sizeof *loop->item_watch))
        return SB_ERR_NOMEM;

    for (size_t i = 0; i < loop->nwatches; i++) {
        sb_watch *w = loop->watches[i];
        if (!w->events)
            continue;
        short ev = 0;
        if (w->events & SB_IO_READ)
            ev |= ZMQ_POLLIN;
        if (w->events & SB_IO_WRITE)
            ev |= ZMQ_POLLOUT;
        loop->items[n] =
            (zmq_pollitem_t){.socket = w->zsock, .fd = w->zsock ? 0 : w->fd, .events = ev};
        loop->item_watch[n++] = w;
    }

    long timeout = max_wait_ms;
    uint64_t now = sb_loop_now(loop);
    if (loop->nheap > 0) {
        uint64_t due = loop->heap[0]->due;
        long until = due > now ? (long)(due - now) : 0;
        if (timeout < 0 || until < timeout)
            timeout = until;
    }

    int rc = zmq_poll(loop->items, (int)n, timeout);
    if (rc < 0 && errno != EINTR)
        return SB_ERR_ZMQ;
    for (size_t i = 0; rc > 0 && i < n; i++) {
        sb_watch *w = loop->item_watch[i];
        short re = loop->items[i].revents;
        if (!re || w->removed)
            continue;
        unsigned bits = 0;
        if (re & ZMQ_POLLIN)
            bits |= SB_IO_READ;
        if (re & ZMQ_POLLOUT)
            bits |= SB_IO_WRITE;
        if (re & ZMQ_POLLERR)
            bits |= SB_IO_ERROR;
        w->fn(w->ud, bits);
    }
    run_timers(loop);
    return SB_OK;
}
