/*
 * test_cache.c - the client's entity cache: versions, tombstones and their bound, truncate,
 * growth, composite keys.
 */
#include "cache.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* cmocka needs the headers above first. */
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

static int count(const sb_client_row *row, void *ud)
{
    (void)row;
    ++*(size_t *)ud;
    return 0;
}

static void test_versions_and_tombstones(void **state)
{
    (void)state;
    sb_cache *c;
    assert_int_equal(sb_cache_new(true, &c), SB_OK);
    const char *k1[1] = {"1"};
    sb_client_row r;
    assert_int_equal(sb_cache_put(c, "t", k1, 1, 5, "abc", 3), 1);
    assert_int_equal(sb_cache_put(c, "t", k1, 1, 5, "zzz", 3), 0); /* same version */
    assert_int_equal(sb_cache_put(c, "t", k1, 1, 4, "old", 3), 0);
    assert_int_equal(sb_cache_get(c, "t", k1, 1, &r), SB_OK);
    assert_int_equal(r.version, 5);
    assert_memory_equal(r.row, "abc", 3);
    assert_int_equal(sb_cache_put(c, "t", k1, 1, 6, NULL, 0), 1); /* delete */
    assert_int_equal(sb_cache_get(c, "t", k1, 1, &r), SB_ERR_NOTFOUND);
    assert_int_equal(sb_cache_count(c), 0);
    assert_int_equal(sb_cache_put(c, "t", k1, 1, 5, "late", 4), 0); /* older than tombstone */
    assert_int_equal(sb_cache_put(c, "t", k1, 1, 7, "new", 3), 1);
    assert_int_equal(sb_cache_count(c), 1);
    sb_cache_free(c);
}

/* ("a","bc") and ("ab","c") are different entities; so are tables "t" and "t2". */
static void test_composite_keys(void **state)
{
    (void)state;
    sb_cache *c;
    assert_int_equal(sb_cache_new(false, &c), SB_OK);
    const char *a[2] = {"a", "bc"}, *b[2] = {"ab", "c"}, *one[1] = {"abc"};
    assert_int_equal(sb_cache_put(c, "t", a, 2, 1, "x", 1), 1);
    assert_int_equal(sb_cache_put(c, "t", b, 2, 1, "y", 1), 1);
    assert_int_equal(sb_cache_put(c, "t", one, 1, 1, "z", 1), 1);
    assert_int_equal(sb_cache_put(c, "t2", one, 1, 1, "z", 1), 1);
    sb_client_row r;
    assert_int_equal(sb_cache_get(c, "t", b, 2, &r), SB_OK);
    assert_int_equal(r.nkey, 2);
    assert_string_equal(r.key[0], "ab");
    assert_string_equal(r.key[1], "c");
    assert_null(r.row); /* versions only */
    assert_int_equal(sb_cache_count(c), 4);
    sb_cache_free(c);
}

static void test_growth_and_truncate(void **state)
{
    (void)state;
    sb_cache *c;
    assert_int_equal(sb_cache_new(true, &c), SB_OK);
    char buf[32];
    const char *k[1] = {buf};
    for (int i = 0; i < 5000; i++) {
        snprintf(buf, sizeof(buf), "%d", i);
        assert_int_equal(
            sb_cache_put(c, i % 2 ? "odd" : "even", k, 1, (uint64_t)i + 1, buf, strlen(buf)), 1);
    }
    size_t n = 0;
    assert_int_equal(sb_cache_foreach(c, "odd", count, &n), 2500);
    assert_int_equal(sb_cache_drop_table(c, "odd"), SB_OK);
    n = 0;
    assert_int_equal(sb_cache_foreach(c, "odd", count, &n), 0);
    assert_int_equal(sb_cache_foreach(c, NULL, count, &n), 2500);
    for (int i = 0; i < 5000; i += 2) {
        snprintf(buf, sizeof(buf), "%d", i);
        sb_client_row r;
        assert_int_equal(sb_cache_get(c, "even", k, 1, &r), SB_OK);
        assert_int_equal(r.version, (uint64_t)i + 1);
        assert_memory_equal(r.row, buf, strlen(buf));
    }
    /* After a truncate versions are forgotten: version 1 is accepted again. */
    snprintf(buf, sizeof(buf), "1");
    assert_int_equal(sb_cache_put(c, "odd", k, 1, 1, "v", 1), 1);
    sb_cache_free(c);
}

/* 200k keys inserted then deleted: the tombstones stay bounded (the newest kept, the older
 * forgotten), while live rows keep theirs up to as many as there are rows. */
static void test_tombstones_are_bounded(void **state)
{
    (void)state;
    sb_cache *c;
    assert_int_equal(sb_cache_new(true, &c), SB_OK);
    char buf[32];
    const char *k[1] = {buf};
    for (int i = 0; i < 200000; i++) {
        snprintf(buf, sizeof(buf), "%d", i);
        assert_int_equal(sb_cache_put(c, "t", k, 1, 2 * (uint64_t)i + 1, "r", 1), 1);
        assert_int_equal(sb_cache_put(c, "t", k, 1, 2 * (uint64_t)i + 2, NULL, 0), 1);
        assert_true(sb_cache_tombstones(c) <= SB_CACHE_MIN_TOMBSTONES);
    }
    assert_int_equal(sb_cache_count(c), 0);
    assert_true(sb_cache_tombstones(c) >= SB_CACHE_MIN_TOMBSTONES / 2);
    /* The newest delete still refuses an older event; the oldest was forgotten. */
    snprintf(buf, sizeof(buf), "%d", 199999);
    assert_int_equal(sb_cache_put(c, "t", k, 1, 1, "late", 4), 0);
    snprintf(buf, sizeof(buf), "%d", 0);
    assert_int_equal(sb_cache_put(c, "t", k, 1, 1, "late", 4), 1);
    sb_cache_free(c);
    /* With many live rows the bound is their number: 20000 rows, then 20000 deletes of
     * other keys, all remembered. */
    assert_int_equal(sb_cache_new(false, &c), SB_OK);
    for (int i = 0; i < 20000; i++) {
        snprintf(buf, sizeof(buf), "live%d", i);
        assert_int_equal(sb_cache_put(c, "u", k, 1, 1, "r", 1), 1);
    }
    for (int i = 0; i < 20000; i++) {
        snprintf(buf, sizeof(buf), "gone%d", i);
        assert_int_equal(sb_cache_put(c, "u", k, 1, 1, "r", 1), 1);
        assert_int_equal(sb_cache_put(c, "u", k, 1, 2, NULL, 0), 1);
    }
    assert_int_equal(sb_cache_count(c), 20000);
    assert_int_equal(sb_cache_tombstones(c), 20000);
    snprintf(buf, sizeof(buf), "gone%d", 0);
    assert_int_equal(sb_cache_put(c, "u", k, 1, 1, "late", 4), 0);
    sb_cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_versions_and_tombstones),
        cmocka_unit_test(test_composite_keys),
        cmocka_unit_test(test_growth_and_truncate),
        cmocka_unit_test(test_tombstones_are_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
