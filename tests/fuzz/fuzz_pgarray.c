/*
 * fuzz_pgarray.c - libFuzzer target for sb_pgarray_parse (array_out text from a server,
 * untrusted when a proxy or a hostile server sits in between). Invariants: no sanitizer
 * report (the old count/write mismatch overflowed here), the parts come back NULL-ended,
 * and building a literal from them with sb_pgarray_build parses back to the same parts.
 */
#include "fuzz.h"
#include "sb_pgarray.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1); /* the parser reads a C string, as PQgetvalue gives */
    if (!text)
        sb_fuzz_fail("out of memory");
    memcpy(text, data, size);
    text[size] = '\0';
    char **parts = NULL;
    uint32_t n = 0;
    if (sb_pgarray_parse(text, &parts, &n) == SB_OK) {
        if (parts[n] != NULL)
            sb_fuzz_fail("parts not NULL-ended");
        char *lit = NULL, **again = NULL;
        uint32_t m = 0;
        if (sb_pgarray_build((const char *const *)parts, n, &lit) != SB_OK ||
            sb_pgarray_parse(lit, &again, &m) != SB_OK || m != n)
            sb_fuzz_fail("a built literal does not parse back");
        for (uint32_t i = 0; i < n; i++)
            if (strcmp(parts[i], again[i]) != 0)
                sb_fuzz_fail("a built literal parses to other parts");
        free(lit);
        free(again);
        free(parts);
    } else if (parts) {
        sb_fuzz_fail("parts set on failure");
    }
    free(text);
    return 0;
}
