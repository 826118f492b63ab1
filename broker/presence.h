/*
 * presence.h - who is editing or viewing which entity, with a TTL per announcement.
 *
 * Announcements come from peers, so everything is bounded (sb_presence_limits, from the
 * [broker] presence_* options) and indexed: entities and clients in keyed hash tables
 * (hash.h), expiries in a min-heap, so one announcement costs O(log n + editors of its
 * entity) whatever the number of entries.
 *
 * The set owns every entry, key and client name it holds (copies of the caller's).
 */
#ifndef SB_PRESENCE_H
#define SB_PRESENCE_H

#include "sb_proto.h"

#include <stdint.h>
#include <syncbroker/plugin.h>

/* Longest client id in bytes (docs/protocol.md). */
#define SB_PRESENCE_CLIENT_MAX 128

typedef struct sb_presence_limits {
    size_t max_entries;    /* in all */
    size_t max_per_client; /* entries of one client id */
    size_t max_per_entity; /* editors listed for one entity */
    uint32_t max_ttl_ms;   /* longest ttl_ms accepted */
} sb_presence_limits;

typedef struct sb_presence_set sb_presence_set;

/* The full editor list of one entity (empty when the last one left). Borrowed for the call. */
typedef void (*sb_presence_fn)(void *ud, uint32_t table, const sb_key *key,
                               const sb_proto_editor *editors, size_t n);

int sb_presence_set_new(const sb_presence_limits *limits, sb_presence_set **out);
void sb_presence_set_free(sb_presence_set *ps);

/* Apply one announcement (state "editing", "viewing" or "left"). When the entity's list
 * changed (an editor came, left or changed state) fn is called with the new list; a plain
 * refresh only extends the TTL.
 * SB_ERR_INVAL: unknown state, no key part or more than 64, a client id empty or longer than
 * SB_PRESENCE_CLIENT_MAX, or ttl_ms above max_ttl_ms. SB_ERR_BUSY: a new entry over a count
 * limit; *limit (may be NULL) then names the option ("presence_max_per_client", ...). */
int sb_presence_apply(sb_presence_set *ps, uint32_t table, const sb_key *key, const char *client,
                      const char *state, uint32_t ttl_ms, uint64_t now, int64_t wall_ms,
                      sb_presence_fn fn, void *ud, const char **limit);

/* Drop entries whose TTL passed; fn is called once per entry dropped, with its entity's list. */
void sb_presence_expire(sb_presence_set *ps, uint64_t now, sb_presence_fn fn, void *ud);

/* Earliest expiry, UINT64_MAX when empty. */
uint64_t sb_presence_next_expiry(const sb_presence_set *ps);

/* Entries held now. */
size_t sb_presence_count(const sb_presence_set *ps);

#endif
