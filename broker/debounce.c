/* debounce.c - see debounce.h. */
#include "debounce.h"

#include "hash.h"

#include <stdlib.h>
#include <string.h>

enum seen { SEEN_UNKNOWN, SEEN_EXISTS, SEEN_DELETED };
enum where { IN_NONE, IN_READY, IN_ROWS, IN_WINDOW, IN_RETRY };

/* Merged unpublished changes. */
typedef struct merge {
    uint8_t first_op;    /* op of the earliest change merged */
    int64_t first_ts_ms; /* and its time */
    uint32_t n;
    uint64_t version; /* newest */
    int64_t ts_ms;
    char *origin;            /* newest change's origin, owned */
    uint64_t first_position; /* the source's position of the earliest change with one; 0: none */
    bool has_row;            /* the newest change came with its row (row NULL: absent) */
    void *row;               /* that row, owned */
    size_t row_len;
} merge;

typedef struct entity {
    sb_hnode node;                /* first: the entity table's node is the entity */
    struct entity *qprev, *qnext; /* the one queue it is in (see `where`) */
    uint64_t deadline;            /* window end or retry time */
    uint64_t req;                 /* fetch in flight, 0 = none */
    uint32_t req_slot;            /* index in that request's ents[] */
    uint64_t published_version;
    uint32_t gen; /* table's truncate generation when `seen` was set */
    uint32_t table;
    uint8_t where;
    uint8_t seen;
    bool pending;
    merge p; /* pending changes */
    merge f; /* changes being fetched */
    uint16_t nparts;
    uint32_t keylen;
    char key[]; /* parts, each NUL-terminated */
} entity;

typedef struct queue {
    entity *head, *tail;
} queue;

typedef struct request {
    uint64_t req; /* 0 = free slot */
    uint32_t table;
    entity **ents; /* NULL once answered */
    size_t n;
    size_t next;        /* the slot the next row most likely answers (sources answer in order) */
    const char **parts; /* key part pointers handed to fetch */
    sb_key *keys;
} request;

typedef struct table_state {
    uint64_t window_ms;
    uint64_t truncate_version; /* events older than this are stale */
    uint32_t gen;
    queue ready, window; /* ready: waiting for a fetch */
} table_state;

struct sb_debounce {
    const sb_debounce_ops *ops;
    void *ud;
    size_t ntables;
    table_state *tables;
    queue retry;
    queue rows;     /* ready, and the newest pending change has its row: published without fetch */
    sb_htab ents;   /* every entity, keyed by (table, key) */
    sb_hash_key hk; /* keys come from writers: a random SipHash key per broker start */
    size_t npending, nfetching;
    uint64_t coalesced;
    request reqs[SB_DEBOUNCE_MAX_INFLIGHT];
    size_t ninflight;
    size_t rr;                /* round-robin position over tables' ready queues */
    int64_t exposed_until_ms; /* see sb_debounce_set_exposure */
};

/* ---- queues ----------------------------------------------------------------------- */

static void q_push(queue *q, entity *e)
{
    e->qnext = NULL;
    e->qprev = q->tail;
    if (q->tail)
        q->tail->qnext = e;
    else
        q->head = e;
    q->tail = e;
}

static void q_remove(queue *q, entity *e)
{
    if (e->qprev)
        e->qprev->qnext = e->qnext;
    else
        q->head = e->qnext;
    if (e->qnext)
        e->qnext->qprev = e->qprev;
    else
        q->tail = e->qprev;
    e->qprev = e->qnext = NULL;
}

static queue *queue_of(sb_debounce *d, entity *e)
{
    switch (e->where) {
    case IN_READY:
        return &d->tables[e->table].ready;
    case IN_WINDOW:
        return &d->tables[e->table].window;
    case IN_ROWS:
        return &d->rows;
    case IN_RETRY:
        return &d->retry;
    }
    return NULL;
}

static void move_to(sb_debounce *d, entity *e, enum where where, uint64_t deadline)
{
    queue *from = queue_of(d, e);
    if (from)
        q_remove(from, e);
    e->where = (uint8_t)where;
    e->deadline = deadline;
    queue *to = queue_of(d, e);
    if (to)
        q_push(to, e);
}

/* ---- entity table ----------------------------------------------------------------- */

static uint64_t hash_key(const sb_debounce *d, uint32_t table, const char *key, size_t len)
{
    return sb_hash(&d->hk, key, len, (uint64_t)table + 1);
}

/* Flatten key parts into "a\0b\0"; returns the length or 0 if it does not fit. */
static size_t flatten_key(const sb_key *k, char *buf, size_t cap)
{
    size_t len = 0;
    for (uint32_t i = 0; i < k->nparts; i++) {
        size_t n = strlen(k->parts[i]) + 1;
        if (len + n > cap)
            return 0;
        memcpy(buf + len, k->parts[i], n);
        len += n;
    }
    return len;
}

static size_t key_len(const sb_key *k)
{
    size_t len = 0;
    for (uint32_t i = 0; i < k->nparts; i++)
        len += strlen(k->parts[i]) + 1;
    return len;
}

typedef struct entity_ref {
    uint32_t table;
    const char *key;
    size_t len;
} entity_ref;

static bool entity_eq(const sb_hnode *n, const void *ref)
{
    const entity *e = (const entity *)n;
    const entity_ref *r = ref;
    return e->table == r->table && e->keylen == r->len && !memcmp(e->key, r->key, r->len);
}

static entity *lookup(sb_debounce *d, uint32_t table, const char *key, size_t len, uint64_t h)
{
    entity_ref r = {table, key, len};
    return (entity *)sb_htab_find(&d->ents, h, entity_eq, &r);
}

static entity *insert_entity(sb_debounce *d, uint32_t table, const char *key, size_t len,
                             uint16_t nparts, uint64_t h)
{
    entity *e = calloc(1, sizeof *e + len);
    if (!e)
        return NULL;
    e->node.hash = h;
    e->table = table;
    e->nparts = nparts;
    e->keylen = (uint32_t)len;
    e->gen = d->tables[table].gen;
    memcpy(e->key, key, len);
    if (sb_htab_insert(&d->ents, &e->node)) {
        free(e);
        return NULL;
    }
    return e;
}

static void free_entity(sb_debounce *d, entity *e)
{
    queue *q = queue_of(d, e);
    if (q)
        q_remove(q, e);
    sb_htab_remove(&d->ents, &e->node);
    free(e->p.origin);
    free(e->f.origin);
    free(e->p.row);
    free(e->f.row);
    free(e);
}

/* Fill parts[] with pointers into e->key. */
static void entity_parts(const entity *e, const char **parts)
{
    const char *p = e->key;
    for (uint16_t i = 0; i < e->nparts; i++) {
        parts[i] = p;
        p += strlen(p) + 1;
    }
}

/* ---- merging ---------------------------------------------------------------------- */

/* Merge c into m; row is c's row, copied by the caller (NULL when c has none or it is absent). */
static void merge_add(merge *m, bool *pending, const sb_change *c, void *row)
{
    if (!*pending) {
        m->first_op = (uint8_t)c->op;
        m->first_ts_ms = c->ts_ms;
        m->first_position = 0;
        m->n = 0;
        *pending = true;
    }
    if (!m->first_position)
        m->first_position = c->position;
    m->n++;
    m->version = c->version;
    m->ts_ms = c->ts_ms;
    free(m->origin);
    m->origin = c->origin ? strdup(c->origin) : NULL;
    free(m->row);
    m->has_row = c->has_row;
    m->row = row;
    m->row_len = row ? c->row_len : 0;
}

static void drop_pending(sb_debounce *d, entity *e)
{
    if (!e->pending)
        return;
    d->coalesced += e->p.n;
    free(e->p.origin);
    free(e->p.row);
    e->p = (merge){0};
    e->pending = false;
    d->npending--;
}

/* An entity with nothing pending, nothing in flight and no open window is forgotten. */
static void settle(sb_debounce *d, entity *e, uint64_t now)
{
    if (e->req)
        return;
    if (e->pending) {
        if (e->where == IN_NONE)
            move_to(d, e, e->p.has_row ? IN_ROWS : IN_READY, now);
        return;
    }
    if (e->where == IN_NONE)
        free_entity(d, e);
}

int sb_debounce_change(sb_debounce *d, uint32_t table, const sb_change *c, uint64_t now)
{
    if (table >= d->ntables)
        return SB_ERR_INVAL;
    table_state *ts = &d->tables[table];
    if (c->op == SB_OP_TRUNCATE) {
        /* Subscribers drop the whole table: pending changes are moot, and every entity's
         * `seen` is reset lazily through the generation counter. */
        ts->gen++;
        ts->truncate_version = c->version;
        for (size_t b = 0; b < d->ents.nbuckets; b++) {
            for (sb_hnode *n = d->ents.buckets[b], *next; n; n = next) {
                next = n->next;
                entity *e = (entity *)n;
                if (e->table != table)
                    continue;
                drop_pending(d, e);
                if (e->where == IN_READY || e->where == IN_ROWS || e->where == IN_RETRY)
                    move_to(d, e, IN_NONE, 0);
                settle(d, e, now);
            }
        }
        sb_debounce_event ev = {.table = table,
                                .op = SB_OP_TRUNCATE,
                                .version = c->version,
                                .origin = c->origin,
                                .ts_ms = c->ts_ms,
                                .n = 1};
        d->ops->publish(d->ud, &ev);
        return SB_OK;
    }
    if (c->key.nparts == 0 || c->key.nparts > UINT16_MAX)
        return SB_ERR_INVAL;
    /* Copied first: nothing changes when the copy fails. */
    void *row = NULL;
    if (c->has_row && c->row) {
        if (!(row = malloc(c->row_len ? c->row_len : 1)))
            return SB_ERR_NOMEM;
        memcpy(row, c->row, c->row_len);
    }
    size_t len = key_len(&c->key);
    char stackbuf[512];
    char *key = len <= sizeof stackbuf ? stackbuf : malloc(len);
    if (!key) {
        free(row);
        return SB_ERR_NOMEM;
    }
    flatten_key(&c->key, key, len);
    uint64_t h = hash_key(d, table, key, len);
    entity *e = lookup(d, table, key, len, h);
    if (!e)
        e = insert_entity(d, table, key, len, (uint16_t)c->key.nparts, h);
    if (key != stackbuf)
        free(key);
    if (!e) {
        free(row);
        return SB_ERR_NOMEM;
    }

    uint64_t known = e->published_version;
    if (e->req && e->f.version > known)
        known = e->f.version;
    if (e->pending && e->p.version > known)
        known = e->p.version;
    if (c->version <= known || c->version < ts->truncate_version) {
        d->coalesced++; /* a duplicate or an old change: already covered */
        free(row);
        settle(d, e, now);
        return SB_OK;
    }
    if (!e->pending)
        d->npending++;
    merge_add(&e->p, &e->pending, c, row);
    settle(d, e, now);
    return SB_OK;
}

/* ---- fetching --------------------------------------------------------------------- */

static request *find_request(sb_debounce *d, uint64_t req)
{
    for (size_t i = 0; req && i < SB_DEBOUNCE_MAX_INFLIGHT; i++)
        if (d->reqs[i].req == req)
            return &d->reqs[i];
    return NULL;
}

bool sb_debounce_owns(const sb_debounce *d, uint64_t req)
{
    return find_request((sb_debounce *)d, req) != NULL;
}

static void release_request(sb_debounce *d, request *r)
{
    free(r->ents);
    free(r->parts);
    free(r->keys);
    *r = (request){0};
    d->ninflight--;
}

/* Issue one fetch for up to SB_DEBOUNCE_FETCH_KEYS ready entities of table t. */
static size_t fetch_table(sb_debounce *d, uint32_t t, uint64_t now)
{
    request *r = NULL;
    for (size_t i = 0; !r && i < SB_DEBOUNCE_MAX_INFLIGHT; i++)
        if (!d->reqs[i].req)
            r = &d->reqs[i];
    queue *q = &d->tables[t].ready;
    size_t n = 0, nparts = 0;
    for (entity *e = q->head; e && n < SB_DEBOUNCE_FETCH_KEYS; e = e->qnext, n++)
        nparts += e->nparts;
    r->ents = malloc(n * sizeof *r->ents);
    r->keys = malloc(n * sizeof *r->keys);
    r->parts = malloc(nparts * sizeof *r->parts);
    if (!r->ents || !r->keys || !r->parts) {
        free(r->ents);
        free(r->keys);
        free(r->parts);
        *r = (request){0};
        return 0;
    }
    const char **parts = r->parts;
    entity *e = q->head;
    for (size_t i = 0; i < n; i++, e = e->qnext) {
        r->ents[i] = e;
        entity_parts(e, parts);
        r->keys[i] = (sb_key){.parts = parts, .nparts = e->nparts};
        parts += e->nparts;
    }
    r->n = n;
    uint64_t req = 0;
    int rc = d->ops->fetch(d->ud, t, r->keys, n, &req);
    for (size_t i = 0; i < n; i++) {
        entity *x = r->ents[i];
        if (rc < 0 || !req) {
            move_to(d, x, IN_RETRY, now + SB_DEBOUNCE_RETRY_MS);
            continue;
        }
        move_to(d, x, IN_NONE, 0);
        x->req = req;
        x->req_slot = (uint32_t)i;
        d->nfetching++;
        x->f = x->p;
        x->p = (merge){0};
        x->pending = false;
        d->npending--;
    }
    if (rc < 0 || !req) {
        free(r->ents);
        free(r->keys);
        free(r->parts);
        *r = (request){0};
        return n;
    }
    r->req = req;
    r->table = t;
    d->ninflight++;
    return n;
}

/* Decide what subscribers get for a fetched entity; returns false when nothing. */
static bool resolve(sb_debounce *d, entity *e, const sb_row *row, sb_debounce_event *ev)
{
    table_state *ts = &d->tables[e->table];
    if (e->gen != ts->gen) {
        e->gen = ts->gen;
        e->seen = SEEN_DELETED; /* a truncate emptied the table for subscribers */
    }
    uint64_t version = e->f.version > row->version ? e->f.version : row->version;
    if (version <= e->published_version || version < ts->truncate_version)
        return false;
    bool present = row->row != NULL;
    sb_op op;
    if (present) {
        op = e->seen == SEEN_EXISTS          ? SB_OP_UPDATE
             : e->seen == SEEN_DELETED       ? SB_OP_INSERT
             : e->f.first_op == SB_OP_INSERT ? SB_OP_INSERT
                                             : SB_OP_UPDATE;
    } else {
        /* An insert subscribers never saw, deleted again: nothing to say, unless a snapshot
         * may have shown them the row meanwhile. */
        bool unseen = e->seen == SEEN_DELETED || e->f.first_op == SB_OP_INSERT;
        if (e->seen != SEEN_EXISTS && unseen && e->f.first_ts_ms > d->exposed_until_ms)
            return false;
        if (e->seen == SEEN_DELETED && e->f.first_op != SB_OP_INSERT)
            return false;
        op = SB_OP_DELETE;
    }
    *ev = (sb_debounce_event){.table = e->table,
                              .op = op,
                              .version = version,
                              .origin = row->version > e->f.version ? row->origin : e->f.origin,
                              .ts_ms = e->f.ts_ms,
                              .row = row->row,
                              .row_len = row->row_len,
                              .n = e->f.n};
    e->published_version = version;
    e->seen = present ? SEEN_EXISTS : SEEN_DELETED;
    return true;
}

/* A fetch for e finished (row == NULL: failed). */
static void finish_entity(sb_debounce *d, entity *e, const sb_row *row, uint64_t now)
{
    e->req = 0;
    d->nfetching--;
    if (!row) {
        /* Put the fetched changes back in front of anything newer and retry. */
        if (e->pending) {
            e->f.n += e->p.n;
            e->f.version = e->p.version;
            e->f.ts_ms = e->p.ts_ms;
            if (!e->f.first_position)
                e->f.first_position = e->p.first_position;
            free(e->f.origin);
            e->f.origin = e->p.origin;
            free(e->f.row);
            e->f.has_row = e->p.has_row;
            e->f.row = e->p.row;
            e->f.row_len = e->p.row_len;
            e->p = (merge){0};
            d->npending--;
        }
        e->p = e->f;
        e->f = (merge){0};
        e->pending = true;
        d->npending++;
        move_to(d, e, IN_RETRY, now + SB_DEBOUNCE_RETRY_MS);
        return;
    }
    sb_debounce_event ev;
    const char *parts[64];
    bool published = false;
    if (resolve(d, e, row, &ev)) {
        const char **pp = e->nparts <= 64 ? parts : malloc(e->nparts * sizeof *pp);
        if (pp) {
            entity_parts(e, pp);
            ev.key = (sb_key){.parts = pp, .nparts = e->nparts};
            d->coalesced += ev.n - 1;
            d->ops->publish(d->ud, &ev);
            published = true;
            if (pp != parts)
                free((void *)pp);
        }
    } else {
        d->coalesced += e->f.n;
    }
    free(e->f.origin);
    free(e->f.row);
    e->f = (merge){0};
    /* Changes that arrived during the fetch and are already covered by what was read. */
    if (e->pending && e->p.version <= e->published_version)
        drop_pending(d, e);
    uint64_t window = d->tables[e->table].window_ms;
    if (published && window)
        move_to(d, e, IN_WINDOW, now + window);
    settle(d, e, now);
}

/* Whether k is e's key, compared part by part (no hash, no copy). */
static bool is_key_of(const entity *e, const sb_key *k)
{
    if (k->nparts != e->nparts)
        return false;
    const char *p = e->key;
    for (uint32_t i = 0; i < k->nparts; i++) {
        size_t n = strlen(k->parts[i]) + 1;
        if ((size_t)(p - e->key) + n > e->keylen || memcmp(p, k->parts[i], n))
            return false;
        p += n;
    }
    return true;
}

void sb_debounce_rows(sb_debounce *d, uint64_t req, const sb_row *rows, size_t n, uint64_t now)
{
    request *r = find_request(d, req);
    char stackbuf[512];
    for (size_t i = 0; r && i < n; i++) {
        /* Rows in the order asked are matched without hashing their keys a second time. */
        while (r->next < r->n && !r->ents[r->next])
            r->next++;
        entity *next = r->next < r->n ? r->ents[r->next] : NULL;
        if (next && is_key_of(next, &rows[i].key)) {
            r->ents[r->next++] = NULL;
            finish_entity(d, next, &rows[i], now);
            continue;
        }
        size_t len = key_len(&rows[i].key);
        char *key = len <= sizeof stackbuf ? stackbuf : malloc(len);
        if (!key)
            continue;
        flatten_key(&rows[i].key, key, len);
        entity *e = lookup(d, r->table, key, len, hash_key(d, r->table, key, len));
        if (key != stackbuf)
            free(key);
        if (e && e->req == req) {
            r->ents[e->req_slot] = NULL;
            finish_entity(d, e, &rows[i], now);
        }
    }
}

void sb_debounce_done(sb_debounce *d, uint64_t req, int status, uint64_t now)
{
    (void)status; /* unanswered entities are retried whatever the status */
    request *r = find_request(d, req);
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++)
        if (r->ents[i])
            finish_entity(d, r->ents[i], NULL, now);
    release_request(d, r);
}

/* ---- driving ---------------------------------------------------------------------- */

/* Close the due windows and retries of one queue. */
static size_t expire(sb_debounce *d, queue *q, uint64_t now, size_t budget)
{
    size_t touched = 0;
    while (q->head && q->head->deadline <= now && touched < budget) {
        entity *e = q->head;
        move_to(d, e, IN_NONE, 0);
        settle(d, e, now);
        touched++;
    }
    return touched;
}

/* Publish e's pending changes from the row the newest one came with, as a fetch answering
 * it at once would: the same resolution, window and accounting. */
static void publish_own_row(sb_debounce *d, entity *e, uint64_t now)
{
    move_to(d, e, IN_NONE, 0);
    e->f = e->p;
    e->p = (merge){0};
    e->pending = false;
    d->npending--;
    d->nfetching++; /* finish_entity counts it back */
    sb_row row = {.table = e->table,
                  .version = e->f.version,
                  .row = e->f.row,
                  .row_len = e->f.row_len,
                  .origin = e->f.origin};
    finish_entity(d, e, &row, now);
}

/* Entities whose newest change has its row; one that got a change without since is fetched. */
static size_t publish_rows(sb_debounce *d, uint64_t now, size_t budget)
{
    size_t touched = 0;
    while (d->rows.head && touched < budget) {
        entity *e = d->rows.head;
        if (e->p.has_row)
            publish_own_row(d, e, now);
        else
            move_to(d, e, IN_READY, now);
        touched++;
    }
    return touched;
}

size_t sb_debounce_run(sb_debounce *d, uint64_t now, size_t budget)
{
    size_t touched = expire(d, &d->retry, now, budget);
    for (size_t t = 0; t < d->ntables && touched < budget; t++)
        touched += expire(d, &d->tables[t].window, now, budget - touched);
    touched += publish_rows(d, now, budget - touched);
    /* Round-robin over tables so that one busy table cannot starve the others. */
    size_t idle = 0;
    while (touched < budget && d->ninflight < SB_DEBOUNCE_MAX_INFLIGHT && idle < d->ntables) {
        uint32_t t = (uint32_t)(d->rr++ % d->ntables);
        if (!d->tables[t].ready.head) {
            idle++;
            continue;
        }
        idle = 0;
        size_t n = fetch_table(d, t, now);
        if (n == 0)
            break;
        touched += n;
    }
    return touched;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

uint64_t sb_debounce_next_deadline(const sb_debounce *d, uint64_t now)
{
    if (d->rows.head)
        return now; /* nothing is sooner: the tables need not be walked */
    uint64_t next = d->retry.head ? d->retry.head->deadline : UINT64_MAX;
    for (size_t t = 0; t < d->ntables; t++) {
        const table_state *ts = &d->tables[t];
        if (ts->window.head)
            next = min_u64(next, ts->window.head->deadline);
        if (ts->ready.head && d->ninflight < SB_DEBOUNCE_MAX_INFLIGHT)
            next = min_u64(next, now);
    }
    return next;
}

void sb_debounce_flush_all(sb_debounce *d)
{
    for (size_t t = 0; t < d->ntables; t++)
        for (entity *e = d->tables[t].window.head; e; e = e->qnext)
            e->deadline = 0;
    for (entity *e = d->retry.head; e; e = e->qnext)
        e->deadline = 0;
}

/* ---- life ------------------------------------------------------------------------- */

int sb_debounce_new(size_t ntables, const uint64_t *window_ms, const sb_debounce_ops *ops, void *ud,
                    sb_debounce **out)
{
    if (ntables == 0 || ntables > UINT32_MAX - 1)
        return SB_ERR_INVAL;
    sb_debounce *d = calloc(1, sizeof *d);
    if (!d)
        return SB_ERR_NOMEM;
    d->tables = calloc(ntables, sizeof *d->tables);
    if (!d->tables) {
        free(d);
        return SB_ERR_NOMEM;
    }
    d->ntables = ntables;
    d->ops = ops;
    sb_hash_key_random(&d->hk);
    d->ud = ud;
    d->exposed_until_ms = INT64_MIN;
    sb_debounce_set_windows(d, window_ms);
    *out = d;
    return SB_OK;
}

void sb_debounce_set_windows(sb_debounce *d, const uint64_t *window_ms)
{
    for (size_t t = 0; t < d->ntables; t++)
        d->tables[t].window_ms = window_ms[t];
}

void sb_debounce_set_exposure(sb_debounce *d, int64_t until_ms)
{
    d->exposed_until_ms = until_ms;
}

void sb_debounce_free(sb_debounce *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < SB_DEBOUNCE_MAX_INFLIGHT; i++)
        if (d->reqs[i].req)
            release_request(d, &d->reqs[i]);
    for (size_t b = 0; b < d->ents.nbuckets; b++) {
        for (sb_hnode *n = d->ents.buckets[b], *next; n; n = next) {
            next = n->next;
            entity *e = (entity *)n;
            free(e->p.origin);
            free(e->f.origin);
            free(e->p.row);
            free(e->f.row);
            free(e);
        }
    }
    sb_htab_clear(&d->ents);
    free(d->tables);
    free(d);
}

size_t sb_debounce_pending(const sb_debounce *d)
{
    return d->npending + d->nfetching;
}

uint64_t sb_debounce_lowest_position(const sb_debounce *d)
{
    uint64_t low = 0;
    for (size_t b = 0; b < d->ents.nbuckets; b++) {
        for (const sb_hnode *n = d->ents.buckets[b]; n; n = n->next) {
            const entity *e = (const entity *)n;
            uint64_t p = e->pending ? e->p.first_position : 0;
            uint64_t f = e->req ? e->f.first_position : 0;
            if (p && (!low || p < low))
                low = p;
            if (f && (!low || f < low))
                low = f;
        }
    }
    return low;
}

size_t sb_debounce_entities(const sb_debounce *d)
{
    return d->ents.count;
}

uint64_t sb_debounce_coalesced(const sb_debounce *d)
{
    return d->coalesced;
}

size_t sb_debounce_inflight(const sb_debounce *d)
{
    return d->ninflight;
}
