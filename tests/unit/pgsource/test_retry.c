/* Unit tests of sb_retry: back-off delays and failure-log rate limiting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sb_retry.h"

static void test_delay_bounds_and_growth(void **state)
{
    (void)state;
    uint32_t rnd = 1;
    for (unsigned attempt = 0; attempt < 40; attempt++) {
        uint64_t base = 100ull << (attempt < 20 ? attempt : 20);
        if (base > 5000)
            base = 5000;
        for (int i = 0; i < 200; i++) {
            uint32_t d = sb_retry_delay_ms(100, 5000, attempt, sb_retry_rand(&rnd));
            assert_true(d >= 100 && d <= 5000);
            assert_true(d >= base / 2 && d <= base); /* equal jitter: upper half of base */
        }
    }
    /* the extremes of rnd reach both ends of the window */
    assert_int_equal(sb_retry_delay_ms(100, 5000, 3, 0), 400);
    assert_int_equal(sb_retry_delay_ms(100, 5000, 3, 400), 800);
    assert_int_equal(sb_retry_delay_ms(100, 5000, 30, 0), 2500);
}

static void test_delay_degenerate(void **state)
{
    (void)state;
    assert_int_equal(sb_retry_delay_ms(300, 300, 5, 12345), 300);
    assert_int_equal(sb_retry_delay_ms(500, 100, 0, 7), 500); /* max below min: min wins */
    assert_true(sb_retry_delay_ms(0, 10, 0, 0) <= 10);
    assert_true(sb_retry_delay_ms(1, UINT32_MAX, 1000, UINT32_MAX) >= 1);
}

static void test_jitter_spreads(void **state)
{
    (void)state;
    uint32_t rnd = 42, lo = UINT32_MAX, hi = 0;
    for (int i = 0; i < 1000; i++) {
        uint32_t d = sb_retry_delay_ms(1000, 60000, 2, sb_retry_rand(&rnd));
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    assert_true(lo < 2200 && hi > 3800); /* window [2000, 4000] is actually used */
}

static void test_should_log(void **state)
{
    (void)state;
    unsigned logged = 0;
    for (unsigned f = 1; f <= 100; f++)
        logged += sb_retry_should_log(f, f > 1);
    assert_int_equal(logged, 1 + 100 / SB_RETRY_LOG_EVERY);
    assert_true(sb_retry_should_log(1, true));
    assert_true(sb_retry_should_log(7, false)); /* a new message is always logged */
    assert_false(sb_retry_should_log(7, true));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_delay_bounds_and_growth),
        cmocka_unit_test(test_delay_degenerate),
        cmocka_unit_test(test_jitter_spreads),
        cmocka_unit_test(test_should_log),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
