/* sb_retry.c - see sb_retry.h. */
#include "sb_retry.h"

uint32_t sb_retry_delay_ms(uint32_t min_ms, uint32_t max_ms, unsigned attempt, uint32_t rnd)
{
    if (max_ms < min_ms)
        max_ms = min_ms;
    uint64_t base = min_ms ? min_ms : 1;
    for (unsigned i = 0; i < attempt && base < max_ms; i++)
        base *= 2;
    if (base > max_ms)
        base = max_ms;
    uint64_t half = base / 2;
    uint64_t delay = half + rnd % (base - half + 1);
    return (uint32_t)(delay < min_ms ? min_ms : delay);
}

bool sb_retry_should_log(unsigned failures, bool same_message)
{
    return failures <= 1 || !same_message || failures % SB_RETRY_LOG_EVERY == 0;
}

uint32_t sb_retry_rand(uint32_t *state)
{
    uint32_t x = *state ? *state : 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    return x;
}
