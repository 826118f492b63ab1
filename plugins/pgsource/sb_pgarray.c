/* sb_pgarray.c - see sb_pgarray.h. */
#include "sb_pgarray.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <syncbroker/plugin.h>

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static bool is_null_word(const char *s, size_t len)
{
    static const char word[] = "null";
    if (len != 4)
        return false;
    for (size_t i = 0; i < 4; i++)
        if ((s[i] | 0x20) != word[i])
            return false;
    return true;
}

/* Reads an optional sign and 1 to 10 digits (an int32 bound) into *v; NULL if none. */
static const char *read_bound(const char *s, long long *v)
{
    bool neg = *s == '-';
    if (*s == '-' || *s == '+')
        s++;
    long long x = 0;
    int digits = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (++digits > 10)
            return NULL;
        x = x * 10 + (*s - '0');
    }
    *v = neg ? -x : x;
    return digits ? s : NULL;
}

/* Skips a dimension decoration `[lo:hi]=` (array_out writes one when the lower bound is not
 * 1; array_in also reads `[hi]=`). *declared: the element count it declares, -1 without
 * one. NULL if it is malformed or names more than one dimension. */
static const char *skip_dims(const char *s, long long *declared)
{
    *declared = -1;
    if (*s != '[')
        return s;
    long long lo = 1, hi;
    if (!(s = read_bound(s + 1, &hi)))
        return NULL;
    if (*s == ':') {
        lo = hi;
        if (!(s = read_bound(s + 1, &hi)))
            return NULL;
    }
    if (*s++ != ']' || *s++ != '=' || hi < lo - 1)
        return NULL;
    *declared = hi - lo + 1;
    return s;
}

/* One pass over the literal. With ptrs/buf NULL it only validates and counts (*n, *bytes);
 * otherwise it writes the unescaped, NUL-terminated elements into buf and their addresses
 * into ptrs. Both passes run the same code, so the sizes always agree. */
static int scan(const char *s, uint32_t *n, size_t *bytes, char **ptrs, char *buf)
{
    uint32_t count = 0;
    size_t used = 0;
    long long declared;
    if (!(s = skip_dims(s, &declared)))
        return SB_ERR_INVAL;
    while (is_space(*s))
        s++;
    if (*s++ != '{')
        return SB_ERR_INVAL;
    while (is_space(*s))
        s++;
    if (*s == '}') {
        s++;
    } else {
        for (;;) {
            while (is_space(*s))
                s++;
            char *out = buf ? buf + used : NULL;
            size_t len = 0;
            if (*s == '"') {
                for (s++; *s != '"'; s++) {
                    if (*s == '\\')
                        s++;
                    if (*s == '\0')
                        return SB_ERR_INVAL;
                    if (out)
                        out[len] = *s;
                    len++;
                }
                s++;
                while (is_space(*s))
                    s++;
            } else {
                const char *start = s, *raw_end = s; /* raw_end: after the last non-space */
                size_t spaces = 0; /* unescaped spaces not yet written: kept only if a
                                    * non-space follows, so trailing ones cost nothing */
                for (; *s != ',' && *s != '}'; s++) {
                    if (*s == '\0' || *s == '{' || *s == '"')
                        return SB_ERR_INVAL;
                    if (is_space(*s)) {
                        spaces++;
                        continue;
                    }
                    const char *c = s; /* the spaces lie just before c */
                    if (*s == '\\') {
                        s++;
                        if (*s == '\0')
                            return SB_ERR_INVAL;
                    }
                    if (out) {
                        memcpy(out + len, c - spaces, spaces);
                        out[len + spaces] = *s;
                    }
                    len += spaces + 1;
                    spaces = 0;
                    raw_end = s + 1;
                }
                if (len == 0 || is_null_word(start, (size_t)(raw_end - start)))
                    return SB_ERR_INVAL; /* empty element or NULL */
            }
            if (out) {
                out[len] = '\0';
                ptrs[count] = out;
            }
            used += len + 1;
            count++;
            if (*s == ',') {
                s++;
                continue;
            }
            if (*s++ != '}')
                return SB_ERR_INVAL;
            break;
        }
    }
    while (is_space(*s))
        s++;
    if (*s != '\0' || (declared >= 0 && declared != count))
        return SB_ERR_INVAL;
    *n = count;
    *bytes = used;
    return SB_OK;
}

int sb_pgarray_parse(const char *text, char ***parts, uint32_t *n)
{
    uint32_t count;
    size_t bytes;
    if (!text || scan(text, &count, &bytes, NULL, NULL) != SB_OK)
        return SB_ERR_INVAL;
    size_t head = ((size_t)count + 1) * sizeof(char *);
    char **block = malloc(head + bytes + 1);
    if (!block)
        return SB_ERR_NOMEM;
    scan(text, &count, &bytes, block, (char *)block + head);
    block[count] = NULL;
    *parts = block;
    *n = count;
    return SB_OK;
}

int sb_pgarray_build(const char *const *parts, size_t n, char **out)
{
    size_t len = 3; /* {, } and NUL */
    for (size_t i = 0; i < n; i++) {
        len += 3; /* two quotes and a comma */
        for (const char *p = parts[i]; *p; p++)
            len += (*p == '"' || *p == '\\') ? 2 : 1;
    }
    char *s = malloc(len);
    if (!s)
        return SB_ERR_NOMEM;
    char *w = s;
    *w++ = '{';
    for (size_t i = 0; i < n; i++) {
        if (i)
            *w++ = ',';
        *w++ = '"';
        for (const char *p = parts[i]; *p; p++) {
            if (*p == '"' || *p == '\\')
                *w++ = '\\';
            *w++ = *p;
        }
        *w++ = '"';
    }
    *w++ = '}';
    *w = '\0';
    *out = s;
    return SB_OK;
}
