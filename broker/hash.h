/*
 * hash.h - a keyed hash and an intrusive chained hash table, for tables whose keys come from
 * peers (presence) and must not be made to collide on purpose.
 *
 * sb_hash is SipHash-2-4 (Aumasson and Bernstein): with a secret random key, a peer cannot
 * pick keys that fall into one chain and turn every lookup into a scan.
 *
 * The table does not own its nodes: a node is embedded in the caller's struct, which the
 * caller allocates and frees (remove it first). The table owns only its bucket array.
 */
#ifndef SB_HASH_H
#define SB_HASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sb_hash_key {
    uint64_t k0, k1;
} sb_hash_key;

/* A fresh random key (getrandom; falls back to the clock and pid if that fails). */
void sb_hash_key_random(sb_hash_key *key);
/* SipHash-2-4 of len bytes, continuing from seed (pass 0 to start), so that several
 * fields can be hashed in turn: h = sb_hash(k, a, alen, 0); h = sb_hash(k, b, blen, h). */
uint64_t sb_hash(const sb_hash_key *key, const void *data, size_t len, uint64_t seed);

typedef struct sb_hnode {
    struct sb_hnode *next;
    uint64_t hash;
} sb_hnode;

typedef struct sb_htab {
    sb_hnode **buckets; /* nbuckets is 0 or a power of two */
    size_t nbuckets, count;
} sb_htab;

/* True when node is the one `key` names (the caller's comparison). */
typedef bool (*sb_hnode_eq)(const sb_hnode *node, const void *key);

/* The node with this hash that eq accepts, or NULL. */
sb_hnode *sb_htab_find(const sb_htab *t, uint64_t hash, sb_hnode_eq eq, const void *key);
/* Add node (node->hash set by the caller); grows the buckets. 0 or SB_ERR_NOMEM. */
int sb_htab_insert(sb_htab *t, sb_hnode *node);
/* Remove a node that is in the table. */
void sb_htab_remove(sb_htab *t, sb_hnode *node);
/* Free the buckets (not the nodes); t is left empty and reusable. */
void sb_htab_clear(sb_htab *t);

#endif
