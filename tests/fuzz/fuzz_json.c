/*
 * fuzz_json.c - libFuzzer target for the client's JSON renderer (sb_client_json), which
 * sync-tail and sync-snapshot run on rows and bodies from the network. Invariants: no
 * sanitizer report, and on success the text is valid UTF-8 with no raw control character
 * (the renderer escapes them and replaces invalid UTF-8), NUL-terminated.
 */
#include "fuzz.h"

#include <syncbroker/client.h>

/* Length of the valid UTF-8 sequence at s (shortest form, no surrogates), 0 if invalid. */
static size_t utf8_seq(const unsigned char *s)
{
    unsigned c = s[0];
    size_t n = c < 0x80                ? 1
               : c >= 0xc2 && c < 0xe0 ? 2
               : c >= 0xe0 && c < 0xf0 ? 3
               : c >= 0xf0 && c < 0xf5 ? 4
                                       : 0;
    unsigned cp = n == 1 ? c : n == 2 ? c & 0x1f : n == 3 ? c & 0x0f : c & 0x07;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp < 0xe000))) ||
        (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *json = NULL;
    if (sb_client_json(data, size, &json) != SB_OK) {
        if (json)
            sb_fuzz_fail("output set on failure");
        return 0;
    }
    for (const unsigned char *p = (const unsigned char *)json; *p;) {
        size_t n = utf8_seq(p);
        if (n == 0)
            sb_fuzz_fail("the JSON text is not valid UTF-8");
        if (*p < 0x20)
            sb_fuzz_fail("a raw control character in the JSON text");
        p += n;
    }
    free(json);
    return 0;
}
