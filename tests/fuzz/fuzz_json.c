/*
 * fuzz_json.c - libFuzzer target for the client's JSON renderer (sb_client_json), which
 * sync-tail and sync-snapshot run on rows and bodies from the network. Invariants: no
 * sanitizer report, and on success the text is one JSON value (RFC 8259 grammar, checked by
 * a small recursive reader below), valid UTF-8 with no raw control character (the renderer
 * escapes them and replaces invalid UTF-8), NUL-terminated.
 */
#include "fuzz.h"

#include <syncbroker/client.h>

#include <ctype.h>

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

/* The JSON grammar, on a NUL-terminated text: each reader returns the end of what it
 * read, NULL on a syntax error. */
static const char *json_value(const char *p);

static const char *json_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

static const char *json_string(const char *p)
{
    if (*p++ != '"')
        return NULL;
    for (; *p != '"'; p++) {
        if ((unsigned char)*p < 0x20)
            return NULL;
        if (*p == '\\') {
            p++;
            if (*p == 'u') {
                for (int i = 0; i < 4; i++)
                    if (!isxdigit((unsigned char)*++p))
                        return NULL;
            } else if (!*p || !strchr("\"\\/bfnrt", *p)) {
                return NULL;
            }
        }
    }
    return p + 1;
}

static const char *json_digits(const char *p)
{
    if (!isdigit((unsigned char)*p))
        return NULL;
    while (isdigit((unsigned char)*p))
        p++;
    return p;
}

static const char *json_number(const char *p)
{
    if (*p == '-')
        p++;
    if (*p == '0')
        p++;
    else if (!(p = json_digits(p)))
        return NULL;
    if (*p == '.' && !(p = json_digits(p + 1)))
        return NULL;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        p = json_digits(p);
    }
    return p;
}

/* Members of an object (close '}') or items of an array (close ']'). */
static const char *json_list(const char *p, char close)
{
    p = json_ws(p + 1);
    if (*p == close)
        return p + 1;
    for (;;) {
        if (close == '}') {
            if (!(p = json_string(json_ws(p))))
                return NULL;
            p = json_ws(p);
            if (*p++ != ':')
                return NULL;
        }
        if (!(p = json_value(p)))
            return NULL;
        if (*p == close)
            return p + 1;
        if (*p++ != ',')
            return NULL;
    }
}

static const char *json_value(const char *p)
{
    p = json_ws(p);
    if (*p == '{' || *p == '[')
        p = json_list(p, *p == '{' ? '}' : ']');
    else if (*p == '"')
        p = json_string(p);
    else if (!strncmp(p, "null", 4) || !strncmp(p, "true", 4))
        p += 4;
    else if (!strncmp(p, "false", 5))
        p += 5;
    else
        p = json_number(p);
    return p ? json_ws(p) : NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *json = NULL;
    if (sb_client_json(data, size, &json) != SB_OK) {
        if (json)
            sb_fuzz_fail("output set on failure");
        return 0;
    }
    const char *end = json_value(json);
    if (!end || *end)
        sb_fuzz_fail("the text is not one JSON value");
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
