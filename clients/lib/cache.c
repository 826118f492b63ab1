/*
 * cache.c - open-addressing hash table of entities (see cache.h).
 */
#include "cache.h"

#include <stdlib.h>
#include <string.h>

/* One entity. Allocated in one block: the struct, the parts array, then the key bytes
 * "table\0part1\0part2\0". */
typedef struct cache_entry {
    uint64_t hash;
    uint64_t version;
    void *row; /* malloc'd copy, NULL when deleted or rows are not kept */
    size_t row_len;
    bool live;
    uint64_t deleted; /* tombstones: c->deletes when this one was made (its age) */
    uint32_t nkey;
    const char *table;
    const char **parts;
} cache_entry;

struct sb_cache {
    cache_entry **slots;
    size_t nslots; /* power of two */
    size_t used;   /* entries, tombstones included */
    size_t live;
    uint64_t deletes; /* tombstones ever made */
    bool keep_rows;
};

#define CACHE_MIN_SLOTS 64

/* FNV-1a over "table\0part\0...": NUL separators keep ("a","bc") apart from ("ab","c"). */
static uint64_t hash_key(const char *table, const char *const *key, uint32_t nkey)
{
    uint64_t h = 14695981039346656037ull;
    for (uint32_t i = 0; i <= nkey; i++) {
        const unsigned char *s = (const unsigned char *)(i == 0 ? table : key[i - 1]);
        do {
            h ^= *s;
            h *= 1099511628211ull;
        } while (*s++);
    }
    return h;
}

static bool entry_matches(const cache_entry *e, uint64_t h, const char *table,
                          const char *const *key, uint32_t nkey)
{
    if (e->hash != h || e->nkey != nkey || strcmp(e->table, table) != 0)
        return false;
    for (uint32_t i = 0; i < nkey; i++)
        if (strcmp(e->parts[i], key[i]) != 0)
            return false;
    return true;
}

/* Slot holding the entity, or the empty slot where it belongs. */
static cache_entry **find_slot(const sb_cache *c, uint64_t h, const char *table,
                               const char *const *key, uint32_t nkey)
{
    size_t mask = c->nslots - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        cache_entry **s = &c->slots[i];
        if (!*s || entry_matches(*s, h, table, key, nkey))
            return s;
    }
}

static void place(cache_entry **slots, size_t nslots, cache_entry *e)
{
    size_t mask = nslots - 1;
    size_t i = (size_t)e->hash & mask;
    while (slots[i])
        i = (i + 1) & mask;
    slots[i] = e;
}

static void entry_free(cache_entry *e)
{
    free(e->row);
    free(e);
}

/* Whether a rebuild lets go of e: an entry of drop_table (NULL: none), or a tombstone made
 * before the forget_before-th delete. */
static bool dropped(const cache_entry *e, const char *drop_table, uint64_t forget_before)
{
    return (drop_table && strcmp(e->table, drop_table) == 0) ||
           (!e->live && e->deleted < forget_before);
}

/* Rebuild into nslots slots, dropping what dropped() says. */
static int rebuild(sb_cache *c, size_t nslots, const char *drop_table, uint64_t forget_before)
{
    cache_entry **slots = calloc(nslots, sizeof(*slots));
    if (!slots)
        return SB_ERR_NOMEM;
    c->used = c->live = 0;
    for (size_t i = 0; i < c->nslots; i++) {
        cache_entry *e = c->slots[i];
        if (!e)
            continue;
        if (dropped(e, drop_table, forget_before)) {
            entry_free(e);
            continue;
        }
        place(slots, nslots, e);
        c->used++;
        c->live += e->live;
    }
    free(c->slots);
    c->slots = slots;
    c->nslots = nslots;
    return SB_OK;
}

int sb_cache_new(bool keep_rows, sb_cache **out)
{
    sb_cache *c = calloc(1, sizeof(*c));
    if (!c)
        return SB_ERR_NOMEM;
    c->slots = calloc(CACHE_MIN_SLOTS, sizeof(*c->slots));
    if (!c->slots) {
        free(c);
        return SB_ERR_NOMEM;
    }
    c->nslots = CACHE_MIN_SLOTS;
    c->keep_rows = keep_rows;
    *out = c;
    return SB_OK;
}

void sb_cache_free(sb_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->nslots; i++)
        if (c->slots[i])
            entry_free(c->slots[i]);
    free(c->slots);
    free(c);
}

/* Power-of-two slots, at least CACHE_MIN_SLOTS, that hold n entries at most half full. */
static size_t slots_for(size_t n)
{
    size_t nslots = CACHE_MIN_SLOTS;
    while (nslots < 2 * n)
        nslots *= 2;
    return nslots;
}

/* Past max(SB_CACHE_MIN_TOMBSTONES, live) tombstones, forget all but those of the last
 * half-bound deletes: at most that many remain, so the next forgetting is at least as many
 * deletes away and the rebuild costs O(1) per delete. Without memory for the rebuild the
 * tombstones just stay until the next delete tries again. */
static void bound_tombstones(sb_cache *c)
{
    size_t bound = c->live > SB_CACHE_MIN_TOMBSTONES ? c->live : SB_CACHE_MIN_TOMBSTONES;
    if (c->used - c->live <= bound)
        return;
    uint64_t keep_from = c->deletes - bound / 2 + 1;
    rebuild(c, slots_for(c->live + bound / 2), NULL, keep_from);
}

static cache_entry *entry_new(uint64_t h, const char *table, const char *const *key, uint32_t nkey)
{
    size_t bytes = strlen(table) + 1;
    for (uint32_t i = 0; i < nkey; i++)
        bytes += strlen(key[i]) + 1;
    cache_entry *e = calloc(1, sizeof(*e) + nkey * sizeof(char *) + bytes);
    if (!e)
        return NULL;
    e->hash = h;
    e->nkey = nkey;
    e->parts = (const char **)(e + 1);
    char *p = (char *)(e->parts + nkey);
    for (uint32_t i = 0; i <= nkey; i++) {
        const char *s = i == 0 ? table : key[i - 1];
        size_t n = strlen(s) + 1;
        memcpy(p, s, n);
        if (i == 0)
            e->table = p;
        else
            e->parts[i - 1] = p;
        p += n;
    }
    return e;
}

int sb_cache_put(sb_cache *c, const char *table, const char *const *key, uint32_t nkey,
                 uint64_t version, const void *row, size_t row_len)
{
    uint64_t h = hash_key(table, key, nkey);
    cache_entry **s = find_slot(c, h, table, key, nkey);
    if (*s && (*s)->version >= version)
        return 0;
    void *copy = NULL;
    if (row && c->keep_rows) {
        copy = malloc(row_len ? row_len : 1);
        if (!copy)
            return SB_ERR_NOMEM;
        memcpy(copy, row, row_len);
    }
    cache_entry *e = *s;
    if (!e) {
        /* Keep the load factor under 3/4 so probe chains stay short. */
        if ((c->used + 1) * 4 > c->nslots * 3) {
            if (rebuild(c, c->nslots * 2, NULL, 0) != SB_OK) {
                free(copy);
                return SB_ERR_NOMEM;
            }
            s = find_slot(c, h, table, key, nkey);
        }
        e = entry_new(h, table, key, nkey);
        if (!e) {
            free(copy);
            return SB_ERR_NOMEM;
        }
        *s = e;
        c->used++;
    }
    c->live += (row != NULL) - e->live;
    free(e->row);
    e->row = copy;
    e->row_len = copy ? row_len : 0;
    if (!row)
        e->deleted = ++c->deletes;
    e->live = row != NULL;
    e->version = version;
    bound_tombstones(c);
    return 1;
}

static void entry_view(const cache_entry *e, sb_client_row *out)
{
    out->table = e->table;
    out->key = e->parts;
    out->nkey = e->nkey;
    out->version = e->version;
    out->row = e->row;
    out->row_len = e->row_len;
}

int sb_cache_get(sb_cache *c, const char *table, const char *const *key, uint32_t nkey,
                 sb_client_row *out)
{
    cache_entry *e = *find_slot(c, hash_key(table, key, nkey), table, key, nkey);
    if (!e || !e->live)
        return SB_ERR_NOTFOUND;
    entry_view(e, out);
    return SB_OK;
}

int sb_cache_drop_table(sb_cache *c, const char *table)
{
    return rebuild(c, c->nslots, table, 0);
}

size_t sb_cache_foreach(sb_cache *c, const char *table,
                        int (*fn)(const sb_client_row *row, void *ud), void *ud)
{
    size_t n = 0;
    for (size_t i = 0; i < c->nslots; i++) {
        const cache_entry *e = c->slots[i];
        if (!e || !e->live || (table && strcmp(e->table, table) != 0))
            continue;
        sb_client_row r;
        entry_view(e, &r);
        n++;
        if (fn(&r, ud))
            break;
    }
    return n;
}

size_t sb_cache_count(const sb_cache *c)
{
    return c->live;
}

size_t sb_cache_tombstones(const sb_cache *c)
{
    return c->used - c->live;
}
