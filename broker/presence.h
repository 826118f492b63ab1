/*
 * presence.h - who is editing or viewing which entity, with a TTL per announcement.
 *
 * Entries are kept in one array: presence is a few entries per active user, so linear scans
 * are cheaper than an index at this size (capped at SB_PRESENCE_MAX entries).
 */
#ifndef SB_PRESENCE_H
#define SB_PRESENCE_H

#include "event.h"

#include <stdint.h>
#include <syncbroker/plugin.h>

#define SB_PRESENCE_MAX 65536

typedef struct sb_presence_set sb_presence_set;

/* The full editor list of one entity (empty when the last one left). Borrowed for the call. */
typedef void (*sb_presence_fn)(void *ud, uint32_t table, const sb_key *key,
                               const sb_event_editor *editors, size_t n);

int sb_presence_set_new(sb_presence_set **out);
void sb_presence_set_free(sb_presence_set *ps);

/* Apply one announcement (state "editing", "viewing" or "left"). When the entity's list
 * changed (an editor came, left or changed state) fn is called with the new list; a plain
 * refresh only extends the TTL. SB_ERR_BUSY when the set is full. */
int sb_presence_apply(sb_presence_set *ps, uint32_t table, const sb_key *key, const char *client,
                      const char *state, uint32_t ttl_ms, uint64_t now, int64_t wall_ms,
                      sb_presence_fn fn, void *ud);

/* Drop entries whose TTL passed; fn is called once per entity whose list changed. */
void sb_presence_expire(sb_presence_set *ps, uint64_t now, sb_presence_fn fn, void *ud);

/* Earliest expiry, UINT64_MAX when empty. */
uint64_t sb_presence_next_expiry(const sb_presence_set *ps);

#endif
