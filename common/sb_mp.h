/*
 * sb_mp.h - small msgpack-c helpers shared by the broker, the plugins and the clients:
 * a validator for untrusted bytes, typed readers over msgpack_object, and pack helpers.
 *
 * Why a validator: msgpack-c allocates n * sizeof(msgpack_object) as soon as it parses a
 * container header, before any element arrives, and has no element-count limit in C. The
 * 5-byte input `dd 01 00 00 00` (array32 of 16 M elements) costs ~512 MiB. sb_mp_check()
 * walks the raw bytes without allocating and refuses anything whose declared sizes cannot
 * be backed by the bytes present; only then is msgpack_unpack_next() safe. sb_mp_unpack()
 * does both, and is the one way to decode bytes from the network.
 *
 * Ownership: readers return pointers into the msgpack_object (and so into the input buffer
 * the object was unpacked from): they are valid as long as both are. Strings read from
 * msgpack are NOT NUL-terminated; sb_mp_dup_str() and sb_mp_dup_key() make malloc'd C copies
 * owned by the caller, sb_mp_zone_str() and sb_mp_zone_key() copies owned by a msgpack zone
 * (freed with it). Pack helpers borrow everything they are given.
 */
#ifndef SB_MP_H
#define SB_MP_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <syncbroker/types.h>

/* msgpack-c refuses more than 32 nested containers (MSGPACK_EMBED_STACK_SIZE). */
#define SB_MP_MAX_DEPTH 32

typedef struct sb_mp_limits {
    uint32_t max_depth;    /* nested containers allowed; 0 or > SB_MP_MAX_DEPTH means 32 */
    uint32_t max_elements; /* objects in total (every key, value and item); 0 = no limit */
} sb_mp_limits;

/* ---- validation and decoding --------------------------------------------------------- */

/* 0 when buf holds exactly one well-formed msgpack object within lim (NULL = defaults),
 * SB_ERR_INVAL otherwise: truncated input, trailing bytes, a declared str/bin/ext length or
 * array/map count larger than the bytes left, nesting deeper than max_depth, more than
 * max_elements objects, the reserved byte 0xc1. Allocates nothing. */
int sb_mp_check(const void *buf, size_t len, const sb_mp_limits *lim);

/* sb_mp_check() then msgpack_unpack_next() of the whole buffer into *out. out must have been
 * msgpack_unpacked_init()'ed; the caller msgpack_unpacked_destroy()s it, also after an error.
 * out->data's strings point into buf. Returns 0, SB_ERR_INVAL or SB_ERR_NOMEM; when the bytes
 * are refused, msgpack-c is never called (out->zone stays NULL). */
int sb_mp_unpack(const void *buf, size_t len, const sb_mp_limits *lim, msgpack_unpacked *out);

/* ---- readers (SB_ERR_INVAL on a wrong type; outputs untouched then) -------------------- */

/* The value stored under the string key `key` in a map, or NULL when the object is not a
 * map or has no such key. The first match wins. */
const msgpack_object *sb_mp_map_get(const msgpack_object *map, const char *key);

/* A str: *ptr (not NUL-terminated) and *len. */
int sb_mp_get_str(const msgpack_object *o, const char **ptr, size_t *len);

/* True when o is a str equal to the C string s. */
bool sb_mp_str_eq(const msgpack_object *o, const char *s);

/* A non-negative integer of any encoding. */
int sb_mp_get_uint(const msgpack_object *o, uint64_t *out);

/* An integer of any encoding and sign that fits int64_t. */
int sb_mp_get_int(const msgpack_object *o, int64_t *out);

int sb_mp_get_bool(const msgpack_object *o, bool *out);

/* An array: *items (owned by the object) and *n. */
int sb_mp_get_array(const msgpack_object *o, const msgpack_object **items, uint32_t *n);

/* A malloc'd, NUL-terminated copy of a str (the caller frees it). SB_ERR_INVAL also when the
 * str contains a NUL byte (it could not round-trip as a C string), SB_ERR_NOMEM. */
int sb_mp_dup_str(const msgpack_object *o, char **out);

/* A key as the protocol writes it: a str (1 part) or an array of 1..n strs. Fills *out with
 * malloc'd parts; release with sb_mp_key_free(). Same errors as sb_mp_dup_str(). */
int sb_mp_dup_key(const msgpack_object *o, sb_key *out);

/* Free what sb_mp_dup_key() allocated and zero *key. NULL and zeroed keys are fine. */
void sb_mp_key_free(sb_key *key);

/* As sb_mp_dup_str(), the copy allocated in zone z (o NULL: SB_ERR_INVAL). */
int sb_mp_zone_str(msgpack_zone *z, const msgpack_object *o, const char **out);

/* A str copied as sb_mp_zone_str(), or nil or absent (o NULL): *out = NULL. */
int sb_mp_zone_opt_str(msgpack_zone *z, const msgpack_object *o, const char **out);

/* As sb_mp_dup_key(), the parts allocated in zone z; nil is the key of 0 parts (truncate). */
int sb_mp_zone_key(msgpack_zone *z, const msgpack_object *o, sb_key *out);

/* ---- packing (0, or -1 when the packer's write callback fails, e.g. out of memory) ---- */

/* A packer writing into its own growing buffer. Initialised in place (pk points at sb); the
 * caller frees it with msgpack_sbuffer_destroy(&b->sb). */
typedef struct sb_mp_buf {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} sb_mp_buf;

void sb_mp_buf_init(sb_mp_buf *b);

/* A C string as str; NULL packs nil. */
int sb_mp_pack_cstr(msgpack_packer *pk, const char *s);

/* len bytes as str (s may be NULL when len is 0). */
int sb_mp_pack_strn(msgpack_packer *pk, const char *s, size_t len);

/* An sb_key: nil for 0 parts (truncate), str for 1 part, array of str for more. */
int sb_mp_pack_key(msgpack_packer *pk, const sb_key *key);

/* Bytes that already are one packed msgpack object, copied verbatim; NULL packs nil. */
int sb_mp_pack_raw(msgpack_packer *pk, const void *packed, size_t len);

/* Map entries with a C-string key: key then value. */
int sb_mp_pack_kv_cstr(msgpack_packer *pk, const char *key, const char *val);
int sb_mp_pack_kv_uint(msgpack_packer *pk, const char *key, uint64_t val);
int sb_mp_pack_kv_int(msgpack_packer *pk, const char *key, int64_t val);
int sb_mp_pack_kv_bool(msgpack_packer *pk, const char *key, bool val);

#endif /* SB_MP_H */
