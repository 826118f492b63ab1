/* hash.c - see hash.h. */
#include "hash.h"

#include <stdlib.h>
#include <string.h>
#include <syncbroker/plugin.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

void sb_hash_key_random(sb_hash_key *key)
{
    if (getrandom(key, sizeof *key, 0) == (ssize_t)sizeof *key)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    key->k0 = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)ts.tv_sec;
    key->k1 = (uint64_t)getpid() * 0xc2b2ae3d27d4eb4full ^ key->k0;
}

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

uint64_t sb_hash(const sb_hash_key *key, const void *data, size_t len, uint64_t seed)
{
    uint64_t k0 = key->k0 ^ seed, k1 = key->k1;
    uint64_t v0 = 0x736f6d6570736575ull ^ k0, v1 = 0x646f72616e646f6dull ^ k1;
    uint64_t v2 = 0x6c7967656e657261ull ^ k0, v3 = 0x7465646279746573ull ^ k1;
    const unsigned char *p = data;
    size_t whole = len - len % 8;
    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m;
        memcpy(&m, p + i, 8); /* little-endian hosts only matter for stability, not safety */
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t last = (uint64_t)len << 56;
    for (size_t i = 0; i < len % 8; i++)
        last |= (uint64_t)p[whole + i] << (8 * i);
    v3 ^= last;
    SIPROUND;
    SIPROUND;
    v0 ^= last;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

sb_hnode *sb_htab_find(const sb_htab *t, uint64_t hash, sb_hnode_eq eq, const void *key)
{
    if (!t->nbuckets)
        return NULL;
    for (sb_hnode *n = t->buckets[hash & (t->nbuckets - 1)]; n; n = n->next)
        if (n->hash == hash && eq(n, key))
            return n;
    return NULL;
}

int sb_htab_insert(sb_htab *t, sb_hnode *node)
{
    if (t->count >= t->nbuckets) {
        size_t n = t->nbuckets ? t->nbuckets * 2 : 64;
        sb_hnode **b = calloc(n, sizeof *b);
        if (!b)
            return SB_ERR_NOMEM;
        for (size_t i = 0; i < t->nbuckets; i++) {
            for (sb_hnode *x = t->buckets[i], *next; x; x = next) {
                next = x->next;
                x->next = b[x->hash & (n - 1)];
                b[x->hash & (n - 1)] = x;
            }
        }
        free(t->buckets);
        t->buckets = b;
        t->nbuckets = n;
    }
    sb_hnode **head = &t->buckets[node->hash & (t->nbuckets - 1)];
    node->next = *head;
    *head = node;
    t->count++;
    return SB_OK;
}

void sb_htab_remove(sb_htab *t, sb_hnode *node)
{
    sb_hnode **pp = &t->buckets[node->hash & (t->nbuckets - 1)];
    while (*pp != node)
        pp = &(*pp)->next;
    *pp = node->next;
    t->count--;
}

void sb_htab_clear(sb_htab *t)
{
    free(t->buckets);
    *t = (sb_htab){0};
}
