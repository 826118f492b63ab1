/*
 * ring.h - the last N published change and presence messages, for `since` requests.
 *
 * Each retained message is one malloc'd block (topic + body) owned by the ring.
 */
#ifndef SB_RING_H
#define SB_RING_H

#include <stddef.h>
#include <stdint.h>
#include <syncbroker/plugin.h>

typedef struct sb_ring sb_ring;

/* capacity 0 keeps nothing (every `since` then answers resync). */
int sb_ring_new(size_t capacity, sb_ring **out);
void sb_ring_free(sb_ring *r);

/* Copy m in, evicting the oldest message when full. m->seq must be the last seq + 1. */
int sb_ring_push(sb_ring *r, const sb_message *m);

/* Replay messages with seq > after, oldest first. SB_ERR_NOTFOUND if the ring no longer
 * holds seq after + 1 (and after is behind the newest). */
int sb_ring_since(const sb_ring *r, uint64_t after, uint64_t last_seq, sb_replay_fn fn, void *ud);

/* Forget everything (new epoch). */
void sb_ring_clear(sb_ring *r);

#endif
