/*
 * sb_mp.c - msgpack helpers: allocation-free validator, typed readers, pack helpers.
 */
#include "sb_mp.h"

#include <stdlib.h>
#include <string.h>

/* ---- validation ---------------------------------------------------------------------- */

static uint64_t read_be(const unsigned char *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* What one header byte announces. */
typedef struct mp_head {
    size_t size_bytes; /* big-endian length/count bytes that follow the header byte */
    size_t fixed;      /* payload bytes that follow them regardless of the length */
    uint64_t len;      /* payload length or item count when it is in the header byte itself */
    int kind;          /* HEAD_* below */
} mp_head;

enum { HEAD_SCALAR, HEAD_BYTES, HEAD_ARRAY, HEAD_MAP, HEAD_BAD };

static mp_head classify(unsigned char b)
{
    if (b <= 0x7f || b >= 0xe0)
        return (mp_head){0, 0, 0, HEAD_SCALAR}; /* fixint */
    if (b <= 0x8f)
        return (mp_head){0, 0, b & 0x0fu, HEAD_MAP};
    if (b <= 0x9f)
        return (mp_head){0, 0, b & 0x0fu, HEAD_ARRAY};
    if (b <= 0xbf)
        return (mp_head){0, 0, b & 0x1fu, HEAD_BYTES};
    switch (b) {
    case 0xc0: /* nil */
    case 0xc2: /* false */
    case 0xc3: /* true */
        return (mp_head){0, 0, 0, HEAD_SCALAR};
    case 0xc4:
        return (mp_head){1, 0, 0, HEAD_BYTES}; /* bin8 */
    case 0xc5:
        return (mp_head){2, 0, 0, HEAD_BYTES};
    case 0xc6:
        return (mp_head){4, 0, 0, HEAD_BYTES};
    case 0xc7:
        return (mp_head){1, 1, 0, HEAD_BYTES}; /* ext8: length, type, data */
    case 0xc8:
        return (mp_head){2, 1, 0, HEAD_BYTES};
    case 0xc9:
        return (mp_head){4, 1, 0, HEAD_BYTES};
    case 0xca:
        return (mp_head){0, 4, 0, HEAD_SCALAR}; /* float32 */
    case 0xcb:
        return (mp_head){0, 8, 0, HEAD_SCALAR};
    case 0xcc:
    case 0xd0:
        return (mp_head){0, 1, 0, HEAD_SCALAR}; /* (u)int8 */
    case 0xcd:
    case 0xd1:
        return (mp_head){0, 2, 0, HEAD_SCALAR};
    case 0xce:
    case 0xd2:
        return (mp_head){0, 4, 0, HEAD_SCALAR};
    case 0xcf:
    case 0xd3:
        return (mp_head){0, 8, 0, HEAD_SCALAR};
    case 0xd4:
        return (mp_head){0, 2, 0, HEAD_SCALAR}; /* fixext1: type + 1 byte */
    case 0xd5:
        return (mp_head){0, 3, 0, HEAD_SCALAR};
    case 0xd6:
        return (mp_head){0, 5, 0, HEAD_SCALAR};
    case 0xd7:
        return (mp_head){0, 9, 0, HEAD_SCALAR};
    case 0xd8:
        return (mp_head){0, 17, 0, HEAD_SCALAR};
    case 0xd9:
        return (mp_head){1, 0, 0, HEAD_BYTES}; /* str8 */
    case 0xda:
        return (mp_head){2, 0, 0, HEAD_BYTES};
    case 0xdb:
        return (mp_head){4, 0, 0, HEAD_BYTES};
    case 0xdc:
        return (mp_head){2, 0, 0, HEAD_ARRAY};
    case 0xdd:
        return (mp_head){4, 0, 0, HEAD_ARRAY};
    case 0xde:
        return (mp_head){2, 0, 0, HEAD_MAP};
    case 0xdf:
        return (mp_head){4, 0, 0, HEAD_MAP};
    default:
        return (mp_head){0, 0, 0, HEAD_BAD}; /* 0xc1: never used */
    }
}

int sb_mp_check(const void *buf, size_t len, const sb_mp_limits *lim)
{
    uint32_t max_depth = lim ? lim->max_depth : 0;
    if (max_depth == 0 || max_depth > SB_MP_MAX_DEPTH)
        max_depth = SB_MP_MAX_DEPTH;
    uint64_t max_elements = lim && lim->max_elements ? lim->max_elements : UINT64_MAX;
    if (!buf && len)
        return SB_ERR_INVAL;

    const unsigned char *p = buf, *end = p + len;
    /* left[d]: objects still expected at nesting level d; level 0 is the top object. */
    uint64_t left[SB_MP_MAX_DEPTH + 1];
    uint32_t depth = 0;
    uint64_t elements = 0;
    left[0] = 1;
    for (;;) {
        while (depth > 0 && left[depth] == 0)
            depth--;
        if (left[depth] == 0)
            break;
        left[depth]--;
        if (p == end || ++elements > max_elements)
            return SB_ERR_INVAL;
        mp_head h = classify(*p++);
        if (h.kind == HEAD_BAD || (size_t)(end - p) < h.size_bytes)
            return SB_ERR_INVAL;
        uint64_t n = h.size_bytes ? read_be(p, h.size_bytes) : h.len;
        p += h.size_bytes;
        size_t avail = (size_t)(end - p);
        switch (h.kind) {
        case HEAD_SCALAR:
            if (avail < h.fixed)
                return SB_ERR_INVAL;
            p += h.fixed;
            break;
        case HEAD_BYTES:
            if (avail < h.fixed || avail - h.fixed < n)
                return SB_ERR_INVAL;
            p += h.fixed + n;
            break;
        default: /* array or map: each item needs at least one byte */
            if (h.kind == HEAD_MAP)
                n *= 2;
            /* msgpack-c counts empty containers against its depth limit too. */
            if (n > avail || depth + 1 > max_depth)
                return SB_ERR_INVAL;
            if (n > 0)
                left[++depth] = n;
            break;
        }
    }
    return p == end ? SB_OK : SB_ERR_INVAL;
}

int sb_mp_unpack(const void *buf, size_t len, const sb_mp_limits *lim, msgpack_unpacked *out)
{
    int rc = sb_mp_check(buf, len, lim);
    if (rc < 0)
        return rc;
    size_t off = 0;
    msgpack_unpack_return ret = msgpack_unpack_next(out, buf, len, &off);
    if (ret == MSGPACK_UNPACK_NOMEM_ERROR)
        return SB_ERR_NOMEM;
    return ret == MSGPACK_UNPACK_SUCCESS && off == len ? SB_OK : SB_ERR_INVAL;
}

/* ---- readers ------------------------------------------------------------------------- */

const msgpack_object *sb_mp_map_get(const msgpack_object *map, const char *key)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (sb_mp_str_eq(&map->via.map.ptr[i].key, key))
            return &map->via.map.ptr[i].val;
    return NULL;
}

int sb_mp_get_str(const msgpack_object *o, const char **ptr, size_t *len)
{
    if (!o || o->type != MSGPACK_OBJECT_STR)
        return SB_ERR_INVAL;
    *ptr = o->via.str.ptr;
    *len = o->via.str.size;
    return SB_OK;
}

bool sb_mp_str_eq(const msgpack_object *o, const char *s)
{
    size_t n = strlen(s);
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == n &&
           (n == 0 || memcmp(o->via.str.ptr, s, n) == 0);
}

int sb_mp_get_uint(const msgpack_object *o, uint64_t *out)
{
    /* msgpack-c reports every non-negative integer, whatever its encoding, as POSITIVE. */
    if (!o || o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return SB_ERR_INVAL;
    *out = o->via.u64;
    return SB_OK;
}

int sb_mp_get_int(const msgpack_object *o, int64_t *out)
{
    if (o && o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *out = o->via.i64;
        return SB_OK;
    }
    uint64_t u;
    if (sb_mp_get_uint(o, &u) < 0 || u > INT64_MAX)
        return SB_ERR_INVAL;
    *out = (int64_t)u;
    return SB_OK;
}

int sb_mp_get_bool(const msgpack_object *o, bool *out)
{
    if (!o || o->type != MSGPACK_OBJECT_BOOLEAN)
        return SB_ERR_INVAL;
    *out = o->via.boolean;
    return SB_OK;
}

int sb_mp_get_array(const msgpack_object *o, const msgpack_object **items, uint32_t *n)
{
    if (!o || o->type != MSGPACK_OBJECT_ARRAY)
        return SB_ERR_INVAL;
    *items = o->via.array.ptr;
    *n = o->via.array.size;
    return SB_OK;
}

/* A str that can become a C string: no NUL inside. */
static int c_str(const msgpack_object *o, const char **s, size_t *n)
{
    if (sb_mp_get_str(o, s, n) < 0 || (*n > 0 && memchr(*s, '\0', *n)))
        return SB_ERR_INVAL;
    return SB_OK;
}

/* The n bytes of s and a NUL into copy (n + 1 bytes, or NULL: allocating failed). */
static char *fill_c_str(char *copy, const char *s, size_t n)
{
    if (!copy)
        return NULL;
    if (n > 0)
        memcpy(copy, s, n);
    copy[n] = '\0';
    return copy;
}

/* The parts of a key: a non-empty array, or a str (a simple key: one part). */
static int key_items(const msgpack_object *o, const msgpack_object **items, uint32_t *n)
{
    if (sb_mp_get_array(o, items, n) == SB_OK)
        return *n ? SB_OK : SB_ERR_INVAL;
    if (!o || o->type != MSGPACK_OBJECT_STR)
        return SB_ERR_INVAL;
    *items = o;
    *n = 1;
    return SB_OK;
}

int sb_mp_dup_str(const msgpack_object *o, char **out)
{
    const char *s;
    size_t n;
    if (c_str(o, &s, &n) < 0)
        return SB_ERR_INVAL;
    char *copy = fill_c_str(malloc(n + 1), s, n);
    if (!copy)
        return SB_ERR_NOMEM;
    *out = copy;
    return SB_OK;
}

int sb_mp_dup_key(const msgpack_object *o, sb_key *out)
{
    const msgpack_object *items;
    uint32_t n;
    int rc = key_items(o, &items, &n);
    if (rc < 0)
        return rc;
    char **parts = calloc(n, sizeof *parts);
    if (!parts)
        return SB_ERR_NOMEM;
    sb_key key = {.parts = (const char *const *)parts, .nparts = n};
    for (uint32_t i = 0; i < n; i++) {
        rc = sb_mp_dup_str(&items[i], &parts[i]);
        if (rc < 0) {
            sb_mp_key_free(&key);
            return rc;
        }
    }
    *out = key;
    return SB_OK;
}

void sb_mp_key_free(sb_key *key)
{
    if (!key || !key->parts)
        return;
    /* The parts were allocated by sb_mp_dup_key: casting the const away is ours to do. */
    char **parts = (char **)(uintptr_t)key->parts;
    for (uint32_t i = 0; i < key->nparts; i++)
        free(parts[i]);
    free(parts);
    *key = (sb_key){0};
}

/* ---- packing ------------------------------------------------------------------------- */

void sb_mp_buf_init(sb_mp_buf *b)
{
    msgpack_sbuffer_init(&b->sb);
    msgpack_packer_init(&b->pk, &b->sb, msgpack_sbuffer_write);
}

int sb_mp_pack_strn(msgpack_packer *pk, const char *s, size_t len)
{
    if (msgpack_pack_str(pk, len) < 0)
        return -1;
    return len ? msgpack_pack_str_body(pk, s, len) : 0;
}

int sb_mp_pack_cstr(msgpack_packer *pk, const char *s)
{
    return s ? sb_mp_pack_strn(pk, s, strlen(s)) : msgpack_pack_nil(pk);
}

int sb_mp_pack_key(msgpack_packer *pk, const sb_key *key)
{
    if (key->nparts == 0)
        return msgpack_pack_nil(pk);
    if (key->nparts == 1)
        return sb_mp_pack_cstr(pk, key->parts[0]);
    if (msgpack_pack_array(pk, key->nparts) < 0)
        return -1;
    for (uint32_t i = 0; i < key->nparts; i++)
        if (sb_mp_pack_cstr(pk, key->parts[i]) < 0)
            return -1;
    return 0;
}

int sb_mp_pack_raw(msgpack_packer *pk, const void *packed, size_t len)
{
    if (!packed)
        return msgpack_pack_nil(pk);
    return pk->callback(pk->data, (const char *)packed, len);
}

int sb_mp_pack_kv_cstr(msgpack_packer *pk, const char *key, const char *val)
{
    return sb_mp_pack_cstr(pk, key) < 0 ? -1 : sb_mp_pack_cstr(pk, val);
}

int sb_mp_pack_kv_uint(msgpack_packer *pk, const char *key, uint64_t val)
{
    return sb_mp_pack_cstr(pk, key) < 0 ? -1 : msgpack_pack_uint64(pk, val);
}

int sb_mp_pack_kv_int(msgpack_packer *pk, const char *key, int64_t val)
{
    return sb_mp_pack_cstr(pk, key) < 0 ? -1 : msgpack_pack_int64(pk, val);
}

int sb_mp_pack_kv_bool(msgpack_packer *pk, const char *key, bool val)
{
    if (sb_mp_pack_cstr(pk, key) < 0)
        return -1;
    return val ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
}

int sb_mp_zone_str(msgpack_zone *z, const msgpack_object *o, const char **out)
{
    const char *s;
    size_t n;
    if (c_str(o, &s, &n) < 0)
        return SB_ERR_INVAL;
    const char *copy = fill_c_str(msgpack_zone_malloc(z, n + 1), s, n);
    if (!copy)
        return SB_ERR_NOMEM;
    *out = copy;
    return SB_OK;
}

int sb_mp_zone_opt_str(msgpack_zone *z, const msgpack_object *o, const char **out)
{
    if (!o || o->type == MSGPACK_OBJECT_NIL) {
        *out = NULL;
        return SB_OK;
    }
    return sb_mp_zone_str(z, o, out);
}

int sb_mp_zone_key(msgpack_zone *z, const msgpack_object *o, sb_key *out)
{
    if (o && o->type == MSGPACK_OBJECT_NIL) {
        *out = (sb_key){0};
        return SB_OK;
    }
    const msgpack_object *items;
    uint32_t n;
    int rc = key_items(o, &items, &n);
    if (rc < 0)
        return rc;
    const char **parts = msgpack_zone_malloc(z, n * sizeof *parts);
    if (!parts)
        return SB_ERR_NOMEM;
    for (uint32_t i = 0; i < n; i++) {
        rc = sb_mp_zone_str(z, &items[i], &parts[i]);
        if (rc < 0)
            return rc;
    }
    *out = (sb_key){.parts = parts, .nparts = n};
    return SB_OK;
}
