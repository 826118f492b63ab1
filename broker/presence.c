/* presence.c - see presence.h. */
#include "presence.h"

#include "hash.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PARTS 64

typedef struct pentry pentry;

/* One client id and how many entries it holds; freed with its last entry. */
typedef struct pclient {
    sb_hnode node; /* first: the table's node is the struct */
    size_t entries;
    size_t len;
    char name[]; /* NUL-terminated */
} pclient;

/* One entity and its editors, in arrival order; freed with its last editor. */
typedef struct pentity {
    sb_hnode node;
    uint32_t table, nparts;
    pentry **ed;
    size_t n, cap;
    size_t keylen;
    char key[]; /* parts, each NUL-terminated */
} pentity;

struct pentry {
    pentity *entity;
    pclient *client;
    const char *state; /* static string */
    int64_t since_ms;
    uint64_t expires;
    size_t heap_pos;
};

struct sb_presence_set {
    sb_presence_limits lim;
    sb_hash_key hk;
    sb_htab entities, clients;
    pentry **heap; /* min-heap on expires */
    size_t n, cap;
};

int sb_presence_set_new(const sb_presence_limits *limits, sb_presence_set **out)
{
    sb_presence_set *ps = calloc(1, sizeof *ps);
    if (!ps)
        return SB_ERR_NOMEM;
    ps->lim = *limits;
    sb_hash_key_random(&ps->hk);
    *out = ps;
    return SB_OK;
}

void sb_presence_set_free(sb_presence_set *ps)
{
    if (!ps)
        return;
    /* Every entity and client is reachable from an entry; free each once, on its last. */
    for (size_t i = 0; i < ps->n; i++) {
        pentry *x = ps->heap[i];
        if (--x->entity->n == 0) {
            free(x->entity->ed);
            free(x->entity);
        }
        if (--x->client->entries == 0)
            free(x->client);
        free(x);
    }
    free(ps->heap);
    sb_htab_clear(&ps->entities);
    sb_htab_clear(&ps->clients);
    free(ps);
}

size_t sb_presence_count(const sb_presence_set *ps)
{
    return ps->n;
}

uint64_t sb_presence_next_expiry(const sb_presence_set *ps)
{
    return ps->n ? ps->heap[0]->expires : UINT64_MAX;
}

/* ---- the expiry heap --------------------------------------------------------------- */

static void heap_set(sb_presence_set *ps, size_t i, pentry *x)
{
    ps->heap[i] = x;
    x->heap_pos = i;
}

static void sift_up(sb_presence_set *ps, size_t i)
{
    pentry *x = ps->heap[i];
    while (i > 0 && ps->heap[(i - 1) / 2]->expires > x->expires) {
        heap_set(ps, i, ps->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    heap_set(ps, i, x);
}

static void sift_down(sb_presence_set *ps, size_t i)
{
    pentry *x = ps->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= ps->n)
            break;
        if (c + 1 < ps->n && ps->heap[c + 1]->expires < ps->heap[c]->expires)
            c++;
        if (ps->heap[c]->expires >= x->expires)
            break;
        heap_set(ps, i, ps->heap[c]);
        i = c;
    }
    heap_set(ps, i, x);
}

/* x's expiry changed: move it to its place. */
static void heap_fix(sb_presence_set *ps, pentry *x)
{
    sift_up(ps, x->heap_pos);
    sift_down(ps, x->heap_pos);
}

static void heap_remove(sb_presence_set *ps, pentry *x)
{
    size_t i = x->heap_pos;
    pentry *last = ps->heap[--ps->n];
    if (last != x) {
        heap_set(ps, i, last);
        heap_fix(ps, last);
    }
}

/* ---- lookups ----------------------------------------------------------------------- */

typedef struct entity_ref {
    uint32_t table;
    const char *key;
    size_t len;
} entity_ref;

static bool entity_eq(const sb_hnode *n, const void *key)
{
    const pentity *e = (const pentity *)n;
    const entity_ref *r = key;
    return e->table == r->table && e->keylen == r->len && memcmp(e->key, r->key, r->len) == 0;
}

static bool client_eq(const sb_hnode *n, const void *key)
{
    const pclient *c = (const pclient *)n;
    return strcmp(c->name, key) == 0;
}

static uint64_t entity_hash(const sb_presence_set *ps, const entity_ref *r)
{
    return sb_hash(&ps->hk, r->key, r->len, (uint64_t)r->table + 1);
}

/* Flatten key parts into "a\0b\0" (malloc'd, owned by the caller). */
static char *flatten(const sb_key *key, size_t *len)
{
    *len = 0;
    for (uint32_t i = 0; i < key->nparts; i++)
        *len += strlen(key->parts[i]) + 1;
    char *buf = malloc(*len);
    if (!buf)
        return NULL;
    size_t off = 0;
    for (uint32_t i = 0; i < key->nparts; i++) {
        size_t n = strlen(key->parts[i]) + 1;
        memcpy(buf + off, key->parts[i], n);
        off += n;
    }
    return buf;
}

/* ---- entries ----------------------------------------------------------------------- */

static void publish(const pentity *e, sb_presence_fn fn, void *ud)
{
    sb_proto_editor stack[16] = {{0}}; /* zeroed: gcc -O2 warns of an empty list otherwise */
    sb_proto_editor *ed = e->n <= 16 ? stack : malloc(e->n * sizeof *ed);
    if (!ed)
        return;
    for (size_t i = 0; i < e->n; i++)
        ed[i] = (sb_proto_editor){e->ed[i]->client->name, e->ed[i]->state, e->ed[i]->since_ms};
    const char *parts[MAX_PARTS];
    const char *p = e->key;
    for (uint32_t i = 0; i < e->nparts; i++) {
        parts[i] = p;
        p += strlen(p) + 1;
    }
    sb_key sk = {.parts = parts, .nparts = e->nparts};
    fn(ud, e->table, &sk, ed, e->n);
    if (ed != stack)
        free(ed);
}

/* Unlink and free an entry; its client goes with its last entry. The entity stays (the
 * caller publishes its list, then calls drop_if_empty). */
static void remove_entry(sb_presence_set *ps, pentry *x)
{
    heap_remove(ps, x);
    pentity *e = x->entity;
    for (size_t i = 0; i < e->n; i++) {
        if (e->ed[i] == x) {
            memmove(&e->ed[i], &e->ed[i + 1], (e->n - i - 1) * sizeof *e->ed);
            e->n--;
            break;
        }
    }
    pclient *c = x->client;
    if (--c->entries == 0) {
        sb_htab_remove(&ps->clients, &c->node);
        free(c);
    }
    free(x);
}

static void drop_if_empty(sb_presence_set *ps, pentity *e)
{
    if (e->n)
        return;
    sb_htab_remove(&ps->entities, &e->node);
    free(e->ed);
    free(e);
}

static const char *canonical_state(const char *state)
{
    if (strcmp(state, "editing") == 0)
        return "editing";
    if (strcmp(state, "viewing") == 0)
        return "viewing";
    if (strcmp(state, "left") == 0)
        return "left";
    return NULL;
}

/* The limit a new entry would break, or NULL. */
static const char *over_limit(const sb_presence_set *ps, const pentity *e, const pclient *c)
{
    if (ps->n >= ps->lim.max_entries)
        return "presence_max_entries";
    if (c && c->entries >= ps->lim.max_per_client)
        return "presence_max_per_client";
    if (e && e->n >= ps->lim.max_per_entity)
        return "presence_max_per_entity";
    return NULL;
}

static pclient *client_get(sb_presence_set *ps, const char *name, size_t len, uint64_t h)
{
    pclient *c = (pclient *)sb_htab_find(&ps->clients, h, client_eq, name);
    if (c)
        return c;
    c = calloc(1, sizeof *c + len + 1);
    if (!c)
        return NULL;
    c->node.hash = h;
    c->len = len;
    memcpy(c->name, name, len + 1);
    if (sb_htab_insert(&ps->clients, &c->node)) {
        free(c);
        return NULL;
    }
    return c;
}

static pentity *entity_get(sb_presence_set *ps, const entity_ref *r, uint32_t nparts, uint64_t h)
{
    pentity *e = (pentity *)sb_htab_find(&ps->entities, h, entity_eq, r);
    if (e)
        return e;
    e = calloc(1, sizeof *e + r->len);
    if (!e)
        return NULL;
    e->node.hash = h;
    e->table = r->table;
    e->nparts = nparts;
    e->keylen = r->len;
    memcpy(e->key, r->key, r->len);
    if (sb_htab_insert(&ps->entities, &e->node)) {
        free(e);
        return NULL;
    }
    return e;
}

/* Room for one more in the entry array *v of n used and *cap allocated (first: the first
 * capacity, doubled after). 0 or SB_ERR_NOMEM (the array is unchanged). */
static int room_for_one(pentry ***v, size_t n, size_t *cap, size_t first)
{
    if (n < *cap)
        return SB_OK;
    size_t want = *cap ? *cap * 2 : first;
    pentry **grown = realloc(*v, want * sizeof *grown);
    if (!grown)
        return SB_ERR_NOMEM;
    *v = grown;
    *cap = want;
    return SB_OK;
}

/* A new entry for client c on entity e (both held by the set). */
static int add_entry(sb_presence_set *ps, pentity *e, pclient *c, const char *state,
                     int64_t wall_ms, uint64_t expires)
{
    if (room_for_one(&e->ed, e->n, &e->cap, 4) != SB_OK ||
        room_for_one(&ps->heap, ps->n, &ps->cap, 64) != SB_OK)
        return SB_ERR_NOMEM;
    pentry *x = malloc(sizeof *x);
    if (!x)
        return SB_ERR_NOMEM;
    *x =
        (pentry){.entity = e, .client = c, .state = state, .since_ms = wall_ms, .expires = expires};
    e->ed[e->n++] = x;
    c->entries++;
    ps->heap[ps->n] = x;
    x->heap_pos = ps->n++;
    sift_up(ps, x->heap_pos);
    return SB_OK;
}

static pentry *find_entry(const pentity *e, const pclient *c)
{
    for (size_t i = 0; e && c && i < e->n; i++)
        if (e->ed[i]->client == c)
            return e->ed[i];
    return NULL;
}

int sb_presence_apply(sb_presence_set *ps, uint32_t table, const sb_key *key, const char *client,
                      const char *state, uint32_t ttl_ms, uint64_t now, int64_t wall_ms,
                      sb_presence_fn fn, void *ud, const char **limit)
{
    const char *st = canonical_state(state);
    size_t clen = strlen(client);
    if (!st || key->nparts == 0 || key->nparts > MAX_PARTS || clen == 0 ||
        clen > SB_PRESENCE_CLIENT_MAX || (st[0] != 'l' && ttl_ms > ps->lim.max_ttl_ms))
        return SB_ERR_INVAL;
    entity_ref r = {.table = table};
    char *flat = flatten(key, &r.len);
    if (!flat)
        return SB_ERR_NOMEM;
    r.key = flat;
    uint64_t eh = entity_hash(ps, &r), ch = sb_hash(&ps->hk, client, clen, 0);
    pentity *e = (pentity *)sb_htab_find(&ps->entities, eh, entity_eq, &r);
    pclient *c = (pclient *)sb_htab_find(&ps->clients, ch, client_eq, client);
    pentry *x = find_entry(e, c);
    const char *hit;
    int rc = SB_OK;
    if (st[0] == 'l') {
        if (x) {
            remove_entry(ps, x);
            publish(e, fn, ud);
            drop_if_empty(ps, e);
        }
    } else if (x) {
        x->expires = now + ttl_ms;
        heap_fix(ps, x);
        if (x->state != st) {
            x->state = st;
            x->since_ms = wall_ms;
            publish(e, fn, ud);
        }
    } else if ((hit = over_limit(ps, e, c))) {
        if (limit)
            *limit = hit;
        rc = SB_ERR_BUSY;
    } else {
        rc = SB_ERR_NOMEM;
        if ((c = client_get(ps, client, clen, ch)) && (e = entity_get(ps, &r, key->nparts, eh)))
            rc = add_entry(ps, e, c, st, wall_ms, now + ttl_ms);
        if (rc == SB_OK) {
            publish(e, fn, ud);
        } else {
            /* Undo what a failed allocation left half-made. */
            if (c && c->entries == 0) {
                sb_htab_remove(&ps->clients, &c->node);
                free(c);
            }
            if (e)
                drop_if_empty(ps, e);
        }
    }
    free(flat);
    return rc;
}

void sb_presence_expire(sb_presence_set *ps, uint64_t now, sb_presence_fn fn, void *ud)
{
    while (ps->n && ps->heap[0]->expires <= now) {
        pentity *e = ps->heap[0]->entity;
        remove_entry(ps, ps->heap[0]);
        publish(e, fn, ud);
        drop_if_empty(ps, e);
    }
}
