/*
 * loop.h - the broker's single event loop: zmq_poll over plain fds and ZeroMQ sockets,
 * plus a timer heap.
 *
 * zmq_poll is level-triggered for both kinds of item, which avoids the edge-triggered
 * ZMQ_FD pitfalls. Watches and timers are owned by the loop; callers hold borrowed handles
 * until they remove them. Every watch and timer carries an `owner` tag so that a plugin
 * instance's leftovers can be dropped in one call when it stops.
 */
#ifndef SB_LOOP_H
#define SB_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <syncbroker/plugin.h>

typedef struct sb_loop sb_loop;

/* Create/free a loop. sb_loop_free drops every remaining watch and timer. */
int sb_loop_new(sb_loop **out);
void sb_loop_free(sb_loop *loop);

/* Monotonic milliseconds, read once per iteration and on demand. */
uint64_t sb_loop_now(sb_loop *loop);

/* Watch fd (zsock == NULL) or a ZeroMQ socket. *out is owned by the loop. */
int sb_loop_watch(sb_loop *loop, void *owner, int fd, void *zsock, unsigned events, sb_io_fn fn,
                  void *ud, sb_watch **out);
int sb_watch_set(sb_watch *w, unsigned events);
/* Remove a watch; safe inside any callback, including its own. */
void sb_watch_remove(sb_watch *w);

/* Timer: first run after delay_ms, then every repeat_ms (0 = one-shot, freed after it runs). */
int sb_loop_timer(sb_loop *loop, void *owner, uint64_t delay_ms, uint64_t repeat_ms, sb_timer_fn fn,
                  void *ud, sb_timer **out);
void sb_timer_remove(sb_timer *t);

/* Remove every watch and timer tagged with owner. */
void sb_loop_drop_owner(sb_loop *loop, void *owner);
/* The watches and armed timers tagged with owner (a removed one no longer counts). */
void sb_loop_owner_count(const sb_loop *loop, const void *owner, size_t *watches, size_t *timers);

/* Run one iteration: wait at most max_wait_ms (-1 = until the next timer or I/O), dispatch
 * ready I/O, then due timers. Returns 0, or SB_ERR_ZMQ if zmq_poll failed (EINTR is not a
 * failure). */
int sb_loop_run_once(sb_loop *loop, int max_wait_ms);

#endif
