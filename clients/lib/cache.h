/*
 * cache.h - the client's local copy: (table, key) -> {version, row}.
 *
 * Open addressing with linear probing over a power-of-two slot array of entry pointers.
 * Deletes leave a tombstone entry (the version stays known, so a late older event is still
 * dropped). Tombstones are bounded: beyond max(SB_CACHE_MIN_TOMBSTONES, live entries) the
 * older half is forgotten (docs/client.md says why that is safe). Entries leave the table
 * only in a rebuild of the slot array (that, a truncate of their table, or the cache's end),
 * so no probe-chain repair is ever needed.
 *
 * Ownership: the cache owns its entries, their key copies and row copies. Pointers handed
 * out (sb_client_row) stay valid until the next change to the cache.
 */
#ifndef SB_CLIENT_CACHE_H
#define SB_CLIENT_CACHE_H

#include <syncbroker/client.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Tombstones kept at least, whatever the number of live entries. */
#define SB_CACHE_MIN_TOMBSTONES 4096

typedef struct sb_cache sb_cache;

/* keep_rows = false stores versions only. *out is the caller's (sb_cache_free). */
int sb_cache_new(bool keep_rows, sb_cache **out);
void sb_cache_free(sb_cache *c);

/* Store a row (row == NULL: the entity is deleted) unless the cache holds a version >=
 * `version`. Returns 1 when stored, 0 when dropped by the version check, SB_ERR_NOMEM. */
int sb_cache_put(sb_cache *c, const char *table, const char *const *key, uint32_t nkey,
                 uint64_t version, const void *row, size_t row_len);

/* The live row of an entity (SB_ERR_NOTFOUND when absent or deleted). *out is borrowed. */
int sb_cache_get(sb_cache *c, const char *table, const char *const *key, uint32_t nkey,
                 sb_client_row *out);

/* Forget every entry of `table`, tombstones included. */
int sb_cache_drop_table(sb_cache *c, const char *table);

/* Live rows of `table` (NULL: all) until fn returns non-zero; returns the count visited. */
size_t sb_cache_foreach(sb_cache *c, const char *table,
                        int (*fn)(const sb_client_row *row, void *ud), void *ud);

/* Live rows held. */
size_t sb_cache_count(const sb_cache *c);

/* Tombstones held. */
size_t sb_cache_tombstones(const sb_cache *c);

#endif
