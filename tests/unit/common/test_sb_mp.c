/*
 * test_sb_mp.c - the msgpack validator, readers and pack helpers of common/sb_mp.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sb_mp.h"

#include <stdlib.h>
#include <string.h>

/* A map using every kind of msgpack object and every length encoding we can reach. */
static void pack_everything(sb_mp_buf *b)
{
    static char big[70000];
    memset(big, 'x', sizeof big);
    msgpack_packer *pk = &b->pk;
    msgpack_pack_map(pk, 12);
    sb_mp_pack_kv_cstr(pk, "fixstr", "abc");
    sb_mp_pack_cstr(pk, "str8");
    sb_mp_pack_strn(pk, big, 200);
    sb_mp_pack_cstr(pk, "str32");
    sb_mp_pack_strn(pk, big, sizeof big);
    sb_mp_pack_cstr(pk, "ints");
    msgpack_pack_array(pk, 9);
    msgpack_pack_int64(pk, 1);
    msgpack_pack_int64(pk, -1);
    msgpack_pack_int64(pk, 200);
    msgpack_pack_int64(pk, -200);
    msgpack_pack_int64(pk, 70000);
    msgpack_pack_int64(pk, -70000);
    msgpack_pack_int64(pk, INT64_MAX);
    msgpack_pack_int64(pk, INT64_MIN);
    msgpack_pack_uint64(pk, UINT64_MAX);
    sb_mp_pack_cstr(pk, "floats");
    msgpack_pack_array(pk, 2);
    msgpack_pack_float(pk, 1.5f);
    msgpack_pack_double(pk, 2.5);
    sb_mp_pack_cstr(pk, "misc");
    msgpack_pack_array(pk, 3);
    msgpack_pack_nil(pk);
    msgpack_pack_true(pk);
    msgpack_pack_false(pk);
    sb_mp_pack_cstr(pk, "bin");
    msgpack_pack_bin_with_body(pk, big, 300);
    sb_mp_pack_cstr(pk, "ext");
    msgpack_pack_array(pk, 6);
    for (size_t n = 1; n <= 16; n *= 2)
        msgpack_pack_ext_with_body(pk, big, n, 7); /* fixext 1, 2, 4, 8, 16 */
    msgpack_pack_ext_with_body(pk, big, 3, 7);     /* ext8 */
    sb_mp_pack_cstr(pk, "array16");
    msgpack_pack_array(pk, 20);
    for (int i = 0; i < 20; i++)
        msgpack_pack_int(pk, i);
    sb_mp_pack_cstr(pk, "map16");
    msgpack_pack_map(pk, 16);
    for (int i = 0; i < 16; i++) {
        msgpack_pack_int(pk, i);
        msgpack_pack_map(pk, 0);
    }
    sb_mp_pack_cstr(pk, "empty");
    msgpack_pack_array(pk, 0);
    sb_mp_pack_kv_uint(pk, "last", 5);
}

static void test_good_inputs_pass_and_unpack(void **state)
{
    (void)state;
    sb_mp_buf b;
    sb_mp_buf_init(&b);
    pack_everything(&b);
    assert_int_equal(sb_mp_check(b.sb.data, b.sb.size, NULL), SB_OK);

    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    assert_int_equal(sb_mp_unpack(b.sb.data, b.sb.size, NULL, &up), SB_OK);
    uint64_t last = 0;
    assert_int_equal(sb_mp_get_uint(sb_mp_map_get(&up.data, "last"), &last), SB_OK);
    assert_int_equal(last, 5);
    msgpack_unpacked_destroy(&up);

    /* Scalars on their own are whole objects too. */
    static const unsigned char scalars[][1] = {{0x00}, {0x7f}, {0xe0}, {0xc0}, {0xc3}, {0xa0}};
    for (size_t i = 0; i < sizeof scalars / sizeof scalars[0]; i++)
        assert_int_equal(sb_mp_check(scalars[i], 1, NULL), SB_OK);
    msgpack_sbuffer_destroy(&b.sb);
}

static void test_every_truncation_is_rejected(void **state)
{
    (void)state;
    sb_mp_buf b;
    sb_mp_buf_init(&b);
    pack_everything(&b);
    for (size_t len = 0; len < b.sb.size; len++)
        assert_int_equal(sb_mp_check(b.sb.data, len, NULL), SB_ERR_INVAL);
    msgpack_sbuffer_destroy(&b.sb);
}

static void test_trailing_bytes_are_rejected(void **state)
{
    (void)state;
    static const unsigned char two[] = {0x01, 0x02};
    static const unsigned char map_then_nil[] = {0x80, 0xc0};
    assert_int_equal(sb_mp_check(two, 2, NULL), SB_ERR_INVAL);
    assert_int_equal(sb_mp_check(map_then_nil, 2, NULL), SB_ERR_INVAL);
}

static void test_declared_sizes_beyond_the_input_are_rejected(void **state)
{
    (void)state;
    static const struct {
        unsigned char b[8];
        size_t len;
    } cases[] = {
        {{0xdb, 0xff, 0xff, 0xff, 0xff}, 5},       /* str32 of 4 GiB */
        {{0xc4, 0x0a, 1, 2, 3}, 5},                /* bin8 of 10, 3 present */
        {{0xc7, 0x02, 0x07, 0x01}, 4},             /* ext8 of 2, 1 present */
        {{0xd8, 0x07, 1, 2}, 4},                   /* fixext16, 2 present */
        {{0xdc, 0x00, 0x03, 0x01, 0x02}, 5},       /* array16 of 3, 2 items */
        {{0xde, 0x00, 0x02, 0x01, 0x02, 0x03}, 6}, /* map16 of 2 = 4 items, 3 present */
        {{0x81, 0xa1, 'a'}, 3},                    /* map of 1: key without value */
        {{0xcf, 0, 0, 0}, 4},                      /* uint64 cut short */
        {{0xdd}, 1},                               /* array32 without its count */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_int_equal(sb_mp_check(cases[i].b, cases[i].len, NULL), SB_ERR_INVAL);
}

static void test_reserved_byte_is_rejected(void **state)
{
    (void)state;
    static const unsigned char alone[] = {0xc1};
    static const unsigned char nested[] = {0x92, 0x01, 0xc1};
    assert_int_equal(sb_mp_check(alone, 1, NULL), SB_ERR_INVAL);
    assert_int_equal(sb_mp_check(nested, 3, NULL), SB_ERR_INVAL);
}

/* n nested arrays, the innermost holding inner (0 or 1 items). */
static size_t nested(unsigned char *out, size_t n, bool inner)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (i + 1 == n && !inner) ? 0x90 : 0x91;
    if (inner)
        out[n++] = 0x01;
    return n;
}

static void test_depth_limit_matches_msgpack_c(void **state)
{
    (void)state;
    unsigned char b[64];
    msgpack_unpacked up;

    /* 32 nested containers: fine for us and for msgpack-c. */
    size_t len = nested(b, 32, true);
    assert_int_equal(sb_mp_check(b, len, NULL), SB_OK);
    msgpack_unpacked_init(&up);
    assert_int_equal(sb_mp_unpack(b, len, NULL, &up), SB_OK);
    msgpack_unpacked_destroy(&up);

    /* 33, even when the innermost is empty: msgpack-c refuses it, so do we. */
    len = nested(b, 33, false);
    assert_int_equal(sb_mp_check(b, len, NULL), SB_ERR_INVAL);
    size_t off = 0;
    msgpack_unpacked_init(&up);
    assert_int_not_equal(msgpack_unpack_next(&up, (const char *)b, len, &off),
                         MSGPACK_UNPACK_SUCCESS);
    msgpack_unpacked_destroy(&up);

    /* A smaller limit is honoured; a larger one is clamped to 32. */
    sb_mp_limits two = {.max_depth = 2};
    len = nested(b, 2, true);
    assert_int_equal(sb_mp_check(b, len, &two), SB_OK);
    len = nested(b, 3, true);
    assert_int_equal(sb_mp_check(b, len, &two), SB_ERR_INVAL);
    sb_mp_limits huge = {.max_depth = 1000};
    len = nested(b, 33, true);
    assert_int_equal(sb_mp_check(b, len, &huge), SB_ERR_INVAL);
}

static void test_element_limit(void **state)
{
    (void)state;
    static const unsigned char three[] = {0x93, 0x01, 0x02, 0x03}; /* 4 objects */
    static const unsigned char map[] = {0x81, 0x01, 0x02};         /* 3 objects */
    sb_mp_limits four = {.max_elements = 4}, three_max = {.max_elements = 3};
    assert_int_equal(sb_mp_check(three, sizeof three, &four), SB_OK);
    assert_int_equal(sb_mp_check(three, sizeof three, &three_max), SB_ERR_INVAL);
    assert_int_equal(sb_mp_check(map, sizeof map, &three_max), SB_OK);
    sb_mp_limits two = {.max_elements = 2};
    assert_int_equal(sb_mp_check(map, sizeof map, &two), SB_ERR_INVAL);
}

static void test_allocation_bomb_is_refused_before_msgpack_sees_it(void **state)
{
    (void)state;
    /* array32 of 16 M elements: msgpack-c alone would allocate ~512 MiB for it. */
    static const unsigned char bomb[] = {0xdd, 0x01, 0x00, 0x00, 0x00};
    assert_int_equal(sb_mp_check(bomb, sizeof bomb, NULL), SB_ERR_INVAL);
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    assert_int_equal(sb_mp_unpack(bomb, sizeof bomb, NULL, &up), SB_ERR_INVAL);
    /* msgpack_unpack_next creates its zone first thing: none means it never ran. */
    assert_null(up.zone);
    msgpack_unpacked_destroy(&up);

    static const unsigned char map_bomb[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0x01};
    assert_int_equal(sb_mp_check(map_bomb, sizeof map_bomb, NULL), SB_ERR_INVAL);
}

static void test_unpack_rejects_what_check_rejects(void **state)
{
    (void)state;
    static const unsigned char trailing[] = {0x80, 0x01};
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    assert_int_equal(sb_mp_unpack(trailing, sizeof trailing, NULL, &up), SB_ERR_INVAL);
    assert_int_equal(sb_mp_unpack(NULL, 0, NULL, &up), SB_ERR_INVAL);
    msgpack_unpacked_destroy(&up);
}

static void test_readers(void **state)
{
    (void)state;
    sb_mp_buf b;
    sb_mp_buf_init(&b);
    msgpack_pack_map(&b.pk, 6);
    sb_mp_pack_kv_cstr(&b.pk, "s", "hello");
    sb_mp_pack_kv_uint(&b.pk, "u", 7);
    sb_mp_pack_kv_int(&b.pk, "neg", -3);
    sb_mp_pack_kv_bool(&b.pk, "b", true);
    sb_mp_pack_cstr(&b.pk, "a");
    msgpack_pack_array(&b.pk, 2);
    sb_mp_pack_cstr(&b.pk, "x");
    sb_mp_pack_cstr(&b.pk, "y");
    sb_mp_pack_cstr(&b.pk, "nul");
    sb_mp_pack_strn(&b.pk, "a\0b", 3);

    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    assert_int_equal(sb_mp_unpack(b.sb.data, b.sb.size, NULL, &up), SB_OK);
    const msgpack_object *m = &up.data;

    const char *s;
    size_t n;
    assert_int_equal(sb_mp_get_str(sb_mp_map_get(m, "s"), &s, &n), SB_OK);
    assert_int_equal(n, 5);
    assert_memory_equal(s, "hello", 5);
    assert_true(sb_mp_str_eq(sb_mp_map_get(m, "s"), "hello"));
    assert_false(sb_mp_str_eq(sb_mp_map_get(m, "s"), "hell"));
    assert_null(sb_mp_map_get(m, "missing"));
    assert_null(sb_mp_map_get(sb_mp_map_get(m, "u"), "s")); /* not a map */

    uint64_t u = 0;
    bool flag = false;
    assert_int_equal(sb_mp_get_uint(sb_mp_map_get(m, "u"), &u), SB_OK);
    assert_int_equal(u, 7);
    assert_int_equal(sb_mp_get_uint(sb_mp_map_get(m, "neg"), &u), SB_ERR_INVAL);
    assert_int_equal(u, 7); /* untouched on error */
    assert_int_equal(sb_mp_get_uint(sb_mp_map_get(m, "s"), &u), SB_ERR_INVAL);
    assert_int_equal(sb_mp_get_uint(NULL, &u), SB_ERR_INVAL);
    assert_int_equal(sb_mp_get_bool(sb_mp_map_get(m, "b"), &flag), SB_OK);
    assert_true(flag);
    assert_int_equal(sb_mp_get_bool(sb_mp_map_get(m, "u"), &flag), SB_ERR_INVAL);
    assert_int_equal(sb_mp_get_str(sb_mp_map_get(m, "u"), &s, &n), SB_ERR_INVAL);

    const msgpack_object *items;
    uint32_t count;
    assert_int_equal(sb_mp_get_array(sb_mp_map_get(m, "a"), &items, &count), SB_OK);
    assert_int_equal(count, 2);
    assert_true(sb_mp_str_eq(&items[1], "y"));
    assert_int_equal(sb_mp_get_array(sb_mp_map_get(m, "s"), &items, &count), SB_ERR_INVAL);

    char *copy = NULL;
    assert_int_equal(sb_mp_dup_str(sb_mp_map_get(m, "s"), &copy), SB_OK);
    assert_string_equal(copy, "hello");
    free(copy);
    assert_int_equal(sb_mp_dup_str(sb_mp_map_get(m, "nul"), &copy), SB_ERR_INVAL);
    assert_int_equal(sb_mp_dup_str(sb_mp_map_get(m, "u"), &copy), SB_ERR_INVAL);

    sb_key key = {0};
    assert_int_equal(sb_mp_dup_key(sb_mp_map_get(m, "s"), &key), SB_OK);
    assert_int_equal(key.nparts, 1);
    assert_string_equal(key.parts[0], "hello");
    sb_mp_key_free(&key);
    assert_int_equal(sb_mp_dup_key(sb_mp_map_get(m, "a"), &key), SB_OK);
    assert_int_equal(key.nparts, 2);
    assert_string_equal(key.parts[1], "y");
    sb_mp_key_free(&key);
    assert_null(key.parts);
    assert_int_equal(sb_mp_dup_key(sb_mp_map_get(m, "u"), &key), SB_ERR_INVAL);
    assert_int_equal(sb_mp_dup_key(NULL, &key), SB_ERR_INVAL);
    msgpack_unpacked_destroy(&up);
    msgpack_sbuffer_destroy(&b.sb);
}

static void test_dup_key_refuses_empty_and_mixed_arrays(void **state)
{
    (void)state;
    static const unsigned char empty[] = {0x90};
    static const unsigned char mixed[] = {0x92, 0xa1, 'a', 0x01};
    sb_key key = {0};
    msgpack_unpacked a, b;
    msgpack_unpacked_init(&a);
    msgpack_unpacked_init(&b);
    assert_int_equal(sb_mp_unpack(empty, sizeof empty, NULL, &a), SB_OK);
    assert_int_equal(sb_mp_dup_key(&a.data, &key), SB_ERR_INVAL);
    assert_int_equal(sb_mp_unpack(mixed, sizeof mixed, NULL, &b), SB_OK);
    assert_int_equal(sb_mp_dup_key(&b.data, &key), SB_ERR_INVAL);
    assert_null(key.parts);
    msgpack_unpacked_destroy(&a);
    msgpack_unpacked_destroy(&b);
}

/* The zone copies (what decoders keep) follow the malloc'd ones' rules; ints of both signs. */
static void test_zone_readers_and_ints(void **state)
{
    (void)state;
    sb_mp_buf b;
    sb_mp_buf_init(&b);
    msgpack_pack_array(&b.pk, 8);
    sb_mp_pack_cstr(&b.pk, "hello");
    sb_mp_pack_strn(&b.pk, "a\0b", 3);
    msgpack_pack_nil(&b.pk);
    msgpack_pack_array(&b.pk, 2);
    sb_mp_pack_cstr(&b.pk, "x");
    sb_mp_pack_cstr(&b.pk, "y");
    msgpack_pack_array(&b.pk, 0);
    msgpack_pack_int64(&b.pk, INT64_MIN);
    msgpack_pack_uint64(&b.pk, (uint64_t)INT64_MAX + 1);
    msgpack_pack_uint64(&b.pk, 5);
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    assert_int_equal(sb_mp_unpack(b.sb.data, b.sb.size, NULL, &up), SB_OK);
    const msgpack_object *o = up.data.via.array.ptr;
    msgpack_zone *z = up.zone;

    const char *s = "untouched";
    assert_int_equal(sb_mp_zone_str(z, &o[0], &s), SB_OK);
    assert_string_equal(s, "hello");
    assert_int_equal(sb_mp_zone_str(z, &o[1], &s), SB_ERR_INVAL); /* embedded NUL */
    assert_int_equal(sb_mp_zone_str(z, &o[2], &s), SB_ERR_INVAL); /* nil */
    assert_int_equal(sb_mp_zone_str(z, NULL, &s), SB_ERR_INVAL);
    assert_string_equal(s, "hello");
    assert_int_equal(sb_mp_zone_opt_str(z, &o[2], &s), SB_OK);
    assert_null(s);
    assert_int_equal(sb_mp_zone_opt_str(z, NULL, &s), SB_OK);
    assert_null(s);
    assert_int_equal(sb_mp_zone_opt_str(z, &o[0], &s), SB_OK);
    assert_string_equal(s, "hello");
    assert_int_equal(sb_mp_zone_opt_str(z, &o[7], &s), SB_ERR_INVAL);

    sb_key key;
    assert_int_equal(sb_mp_zone_key(z, &o[0], &key), SB_OK);
    assert_int_equal(key.nparts, 1);
    assert_string_equal(key.parts[0], "hello");
    assert_int_equal(sb_mp_zone_key(z, &o[3], &key), SB_OK);
    assert_int_equal(key.nparts, 2);
    assert_string_equal(key.parts[1], "y");
    assert_int_equal(sb_mp_zone_key(z, &o[2], &key), SB_OK); /* nil: a truncate's key */
    assert_int_equal(key.nparts, 0);
    assert_int_equal(sb_mp_zone_key(z, &o[4], &key), SB_ERR_INVAL); /* [] */
    assert_int_equal(sb_mp_zone_key(z, &o[7], &key), SB_ERR_INVAL);
    assert_int_equal(sb_mp_zone_key(z, NULL, &key), SB_ERR_INVAL);

    int64_t i = 1;
    assert_int_equal(sb_mp_get_int(&o[5], &i), SB_OK);
    assert_true(i == INT64_MIN);
    assert_int_equal(sb_mp_get_int(&o[7], &i), SB_OK);
    assert_int_equal(i, 5);
    assert_int_equal(sb_mp_get_int(&o[6], &i), SB_ERR_INVAL); /* beyond int64_t */
    assert_int_equal(sb_mp_get_int(&o[0], &i), SB_ERR_INVAL);
    assert_int_equal(sb_mp_get_int(NULL, &i), SB_ERR_INVAL);
    assert_int_equal(i, 5);
    msgpack_unpacked_destroy(&up);
    msgpack_sbuffer_destroy(&b.sb);
}

static void test_pack_helpers_round_trip(void **state)
{
    (void)state;
    const char *one[] = {"12"};
    const char *two[] = {"12", "2026-11-28"};
    sb_key k0 = {.parts = NULL, .nparts = 0}, k1 = {one, 1}, k2 = {two, 2};
    static const unsigned char row[] = {0x81, 0xa2, 'i', 'd', 0x05};
    sb_mp_buf b;
    sb_mp_buf_init(&b);
    msgpack_pack_array(&b.pk, 6);
    assert_int_equal(sb_mp_pack_key(&b.pk, &k0), 0);
    assert_int_equal(sb_mp_pack_key(&b.pk, &k1), 0);
    assert_int_equal(sb_mp_pack_key(&b.pk, &k2), 0);
    assert_int_equal(sb_mp_pack_raw(&b.pk, row, sizeof row), 0);
    assert_int_equal(sb_mp_pack_raw(&b.pk, NULL, 0), 0);
    assert_int_equal(sb_mp_pack_cstr(&b.pk, NULL), 0);

    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    assert_int_equal(sb_mp_unpack(b.sb.data, b.sb.size, NULL, &up), SB_OK);
    const msgpack_object *it = up.data.via.array.ptr;
    assert_int_equal(it[0].type, MSGPACK_OBJECT_NIL);
    assert_true(sb_mp_str_eq(&it[1], "12"));
    assert_int_equal(it[2].type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal(it[2].via.array.size, 2);
    assert_true(sb_mp_str_eq(&it[2].via.array.ptr[1], "2026-11-28"));
    uint64_t id = 0;
    assert_int_equal(sb_mp_get_uint(sb_mp_map_get(&it[3], "id"), &id), SB_OK);
    assert_int_equal(id, 5);
    assert_int_equal(it[4].type, MSGPACK_OBJECT_NIL);
    assert_int_equal(it[5].type, MSGPACK_OBJECT_NIL);
    /* Raw bytes are copied verbatim. */
    bool found = false;
    for (size_t i = 0; i + sizeof row <= b.sb.size && !found; i++)
        found = memcmp(b.sb.data + i, row, sizeof row) == 0;
    assert_true(found);
    msgpack_unpacked_destroy(&up);
    msgpack_sbuffer_destroy(&b.sb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_inputs_pass_and_unpack),
        cmocka_unit_test(test_every_truncation_is_rejected),
        cmocka_unit_test(test_trailing_bytes_are_rejected),
        cmocka_unit_test(test_declared_sizes_beyond_the_input_are_rejected),
        cmocka_unit_test(test_reserved_byte_is_rejected),
        cmocka_unit_test(test_depth_limit_matches_msgpack_c),
        cmocka_unit_test(test_element_limit),
        cmocka_unit_test(test_allocation_bomb_is_refused_before_msgpack_sees_it),
        cmocka_unit_test(test_unpack_rejects_what_check_rejects),
        cmocka_unit_test(test_readers),
        cmocka_unit_test(test_dup_key_refuses_empty_and_mixed_arrays),
        cmocka_unit_test(test_zone_readers_and_ints),
        cmocka_unit_test(test_pack_helpers_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
