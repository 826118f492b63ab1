/*
 * sb_retry.h - pure decisions for reconnecting: how long to back off, and whether a repeated
 * failure deserves another log line. No I/O, no state of its own: unit-tested directly.
 */
#ifndef SB_RETRY_H
#define SB_RETRY_H

#include <stdbool.h>
#include <stdint.h>

/* Log the first failure, then every SB_RETRY_LOG_EVERY-th identical one. */
#define SB_RETRY_LOG_EVERY 10u

/* Delay before reconnect attempt number `attempt` (0 = first retry): min_ms doubled per
 * attempt, capped at max_ms, then "equal jitter" (a random point in the upper half, chosen by
 * rnd) so that many brokers do not reconnect in lockstep. Always within [min_ms, max_ms]
 * (min_ms wins when max_ms < min_ms). */
uint32_t sb_retry_delay_ms(uint32_t min_ms, uint32_t max_ms, unsigned attempt, uint32_t rnd);

/* Whether consecutive failure number `failures` (1-based) should be logged: the first, any
 * whose message differs from the last logged one, and every SB_RETRY_LOG_EVERY-th. */
bool sb_retry_should_log(unsigned failures, bool same_message);

/* xorshift32 step for jitter (state must be non-zero). */
uint32_t sb_retry_rand(uint32_t *state);

#endif /* SB_RETRY_H */
