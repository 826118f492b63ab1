/*
 * fuzz.h - what every fuzz target (fuzz_<name>.c) provides. Under clang each is a libFuzzer
 * binary; under gcc replay_corpus.c drives the same function over corpus/<name>/.
 */
#ifndef SB_FUZZ_H
#define SB_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One input. Returns 0; a broken invariant aborts (sb_fuzz_fail). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Optional: frees what a target keeps between inputs, so the replay test's leak check holds. */
void sb_fuzz_teardown(void) __attribute__((weak));

/* A broken invariant: libFuzzer (or the replay test) reports the abort with the input. */
#define sb_fuzz_fail(why)                                                                          \
    do {                                                                                           \
        fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, (why));                                 \
        abort();                                                                                   \
    } while (0)

/* Targets that take several frames split their input at SB_FUZZ_SEP (0xc1 is the byte
 * msgpack never uses). sb_fuzz_next_frame: the next frame of *at..end into *frame and *len and
 * true, or false when none is left. */
#define SB_FUZZ_SEP "\xc1\xc1"

static inline bool sb_fuzz_next_frame(const uint8_t **at, const uint8_t *end, const uint8_t **frame,
                                      size_t *len)
{
    if (!*at)
        return false;
    *frame = *at;
    const uint8_t *p = *at;
    while (p + 1 < end && !(p[0] == 0xc1 && p[1] == 0xc1))
        p++;
    if (p + 1 < end) {
        *len = (size_t)(p - *at);
        *at = p + 2;
    } else {
        *len = (size_t)(end - *at);
        *at = NULL;
    }
    return true;
}

#endif
