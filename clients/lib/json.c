/*
 * json.c - render packed msgpack as JSON (sb_client_json), for the CLI tools and apps.
 */
#include <syncbroker/client.h>

#include "sb_mp.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Growable output; `failed` makes every later append a no-op after an allocation failure. */
typedef struct json_buf {
    char *p;
    size_t len, cap;
    bool failed;
} json_buf;

static void put(json_buf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->len + n + 1 > cap)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void puts_(json_buf *b, const char *s)
{
    put(b, s, strlen(s));
}

static void putf(json_buf *b, const char *fmt, ...) SB_PRINTF(2, 3);
static void putf(json_buf *b, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    put(b, tmp, n > 0 ? (size_t)n : 0);
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when it is invalid (overlong forms,
 * surrogates and code points above U+10FFFF included). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t len;
    uint32_t cp;
    if (s[0] < 0x80)
        return 1;
    if ((s[0] & 0xe0) == 0xc0)
        len = 2, cp = s[0] & 0x1fu;
    else if ((s[0] & 0xf0) == 0xe0)
        len = 3, cp = s[0] & 0x0fu;
    else if ((s[0] & 0xf8) == 0xf0)
        len = 4, cp = s[0] & 0x07u;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3fu);
    }
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

static void put_string(json_buf *b, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    put(b, "\"", 1);
    for (size_t i = 0; i < n;) {
        unsigned char c = u[i];
        const char *esc = NULL;
        switch (c) {
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        case '\b':
            esc = "\\b";
            break;
        case '\f':
            esc = "\\f";
            break;
        default:
            break;
        }
        if (esc) {
            puts_(b, esc);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            putf(b, "\\u%04x", c);
            i++;
        } else {
            size_t len = utf8_len(u + i, n - i);
            if (len)
                put(b, s + i, len);
            else
                puts_(b, "\\ufffd");
            i += len ? len : 1;
        }
    }
    put(b, "\"", 1);
}

/* Shortest of %.15g/%.17g that reads back exactly, with ".0" when it looks like an int. */
static void put_double(json_buf *b, double d)
{
    if (!isfinite(d)) {
        puts_(b, "null");
        return;
    }
    char tmp[40];
    snprintf(tmp, sizeof(tmp), "%.15g", d);
    if (strtod(tmp, NULL) != d)
        snprintf(tmp, sizeof(tmp), "%.17g", d);
    puts_(b, tmp);
    if (!strpbrk(tmp, ".eE"))
        puts_(b, ".0");
}

static void put_value(json_buf *b, const msgpack_object *o);

/* A rendered non-string key is cut here: keys nested in keys are quoted once per level, so
 * their escapes double at each one (no broker sends such keys; a hostile body could). */
#define KEY_MAX 1024

/* JSON object keys must be strings: other key types are rendered, then quoted. */
static void put_key(json_buf *b, const msgpack_object *k)
{
    if (k->type == MSGPACK_OBJECT_STR) {
        put_string(b, k->via.str.ptr, k->via.str.size);
        return;
    }
    json_buf tmp = {0};
    put_value(&tmp, k);
    if (tmp.failed)
        b->failed = true;
    put_string(b, tmp.p ? tmp.p : "", tmp.len < KEY_MAX ? tmp.len : KEY_MAX);
    free(tmp.p);
}

static void put_value(json_buf *b, const msgpack_object *o)
{
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        puts_(b, "null");
        break;
    case MSGPACK_OBJECT_BOOLEAN:
        puts_(b, o->via.boolean ? "true" : "false");
        break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        putf(b, "%llu", (unsigned long long)o->via.u64);
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        putf(b, "%lld", (long long)o->via.i64);
        break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        put_double(b, o->via.f64);
        break;
    case MSGPACK_OBJECT_STR:
        put_string(b, o->via.str.ptr, o->via.str.size);
        break;
    case MSGPACK_OBJECT_BIN:
        put(b, "\"", 1);
        for (uint32_t i = 0; i < o->via.bin.size; i++)
            putf(b, "%02x", (unsigned char)o->via.bin.ptr[i]);
        put(b, "\"", 1);
        break;
    case MSGPACK_OBJECT_ARRAY:
        put(b, "[", 1);
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            if (i)
                put(b, ",", 1);
            put_value(b, &o->via.array.ptr[i]);
        }
        put(b, "]", 1);
        break;
    case MSGPACK_OBJECT_MAP:
        put(b, "{", 1);
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            if (i)
                put(b, ",", 1);
            put_key(b, &o->via.map.ptr[i].key);
            put(b, ":", 1);
            put_value(b, &o->via.map.ptr[i].val);
        }
        put(b, "}", 1);
        break;
    default: /* ext: no JSON meaning */
        puts_(b, "null");
        break;
    }
}

/* Hand the text over, or free it on error (an allocation failure included). */
static int finish(json_buf *b, int rc, char **json)
{
    if (rc == SB_OK && b->failed)
        rc = SB_ERR_NOMEM;
    if (rc != SB_OK) {
        free(b->p);
        return rc;
    }
    *json = b->p;
    return SB_OK;
}

int sb_client_json(const void *msgpack, size_t len, char **json)
{
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    int rc = sb_mp_unpack(msgpack, len, NULL, &up);
    json_buf b = {0};
    if (rc == SB_OK) {
        put_value(&b, &up.data);
    }
    msgpack_unpacked_destroy(&up);
    return finish(&b, rc, json);
}

int sb_client_row_json(const sb_client_row *row, char **json)
{
    if (!row || !row->table || !json || (row->nkey && !row->key))
        return SB_ERR_INVAL;
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    int rc = row->row ? sb_mp_unpack(row->row, row->row_len, NULL, &up) : SB_OK;
    json_buf b = {0};
    if (rc == SB_OK) {
        puts_(&b, "{\"table\":");
        put_string(&b, row->table, strlen(row->table));
        puts_(&b, ",\"key\":");
        if (row->nkey != 1)
            put(&b, "[", 1);
        for (uint32_t i = 0; i < row->nkey; i++) {
            if (i)
                put(&b, ",", 1);
            put_string(&b, row->key[i], strlen(row->key[i]));
        }
        if (row->nkey != 1)
            put(&b, "]", 1);
        putf(&b, ",\"version\":%llu,\"row\":", (unsigned long long)row->version);
        if (row->row)
            put_value(&b, &up.data);
        else
            puts_(&b, "null");
        put(&b, "}", 1);
    }
    msgpack_unpacked_destroy(&up);
    return finish(&b, rc, json);
}
