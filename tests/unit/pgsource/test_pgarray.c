/* Unit tests of sb_pgarray: parsing PostgreSQL array output and building literals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sb_pgarray.h"

static void expect_parts(const char *text, const char *const *want, uint32_t nwant)
{
    char **parts = NULL;
    uint32_t n = 99;
    assert_int_equal(sb_pgarray_parse(text, &parts, &n), SB_OK);
    assert_int_equal(n, nwant);
    for (uint32_t i = 0; i < n; i++)
        assert_string_equal(parts[i], want[i]);
    assert_null(parts[n]);
    free(parts);
}

static void test_parse_plain(void **state)
{
    (void)state;
    expect_parts("{12}", (const char *[]){"12"}, 1);
    expect_parts("{a,2026-11-28}", (const char *[]){"a", "2026-11-28"}, 2);
    expect_parts("{}", NULL, 0);
}

static void test_parse_quoted(void **state)
{
    (void)state;
    /* array_out quotes empty strings, delimiters, braces, quotes, backslashes, spaces, NULL */
    expect_parts("{\"a,b\",\"{r}\",\"x y\"}", (const char *[]){"a,b", "{r}", "x y"}, 3);
    expect_parts("{\"say \\\"hi\\\"\",\"back\\\\slash\"}",
                 (const char *[]){"say \"hi\"", "back\\slash"}, 2);
    expect_parts("{\"\",\"NULL\"}", (const char *[]){"", "NULL"}, 2);
    expect_parts("{\"2026-11-28 10:00:00+00\"}", (const char *[]){"2026-11-28 10:00:00+00"}, 1);
}

static void test_parse_lenient_input(void **state)
{
    (void)state;
    /* array_in accepts white space around elements and a dimension decoration */
    expect_parts(" { a , b c } ", (const char *[]){"a", "b c"}, 2);
    expect_parts("[0:1]={x,y}", (const char *[]){"x", "y"}, 2);
    expect_parts("[-3:-2]={x,y}", (const char *[]){"x", "y"}, 2);
    expect_parts("[2]={x,y}", (const char *[]){"x", "y"}, 2);
    expect_parts("[5:4]={}", NULL, 0);
    expect_parts("{a\\,b}", (const char *[]){"a,b"}, 1);
    expect_parts("{\\NULL}", (const char *[]){"NULL"}, 1);
}

/* The counting pass once sized an unquoted element without its trailing spaces while the
 * writing pass wrote them: the last element's spaces ran past the block (ASan sees it). */
static void test_parse_trailing_spaces(void **state)
{
    (void)state;
    expect_parts("{a,b   }", (const char *[]){"a", "b"}, 2);
    expect_parts("{a,b                                                  }",
                 (const char *[]){"a", "b"}, 2);
    expect_parts("{a \t\n\r\v\f}", (const char *[]){"a"}, 1);
    expect_parts("{a\\ }", (const char *[]){"a "}, 1); /* an escaped space is kept */
    expect_parts("{a\\  \\ ,b \\  }", (const char *[]){"a   ", "b  "}, 2);
    expect_parts("{x\\t\\t      }", (const char *[]){"xtt"}, 1);
    expect_parts("{\"q\"   ,  r s \t }", (const char *[]){"q", "r s"}, 2);
}

static void test_parse_rejects(void **state)
{
    (void)state;
    const char *bad[] = {"", "12", "{", "{a", "{a,}", "{,a}", "{\"a}", "{a}x", "{{1,2}}", "{NULL}",
                         "{null}", "{a,\"b\"c}", "{a\\", "[0:1]{a}", "{a\"b}",
                         /* decorations: malformed, another count, two dimensions, an '='
                          * found only inside the elements */
                         "[0:2]={a,b}", "[1:1]={}", "[x]={a}", "[1:]={a}", "[:1]={a}",
                         "[0:1][0:1]={{a,b},{c,d}}", "[1:1={a}", "[{a=b}", "[12345678901]={a}",
                         "[0:1]= {a,b}x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char **parts = NULL;
        uint32_t n;
        assert_int_equal(sb_pgarray_parse(bad[i], &parts, &n), SB_ERR_INVAL);
        assert_null(parts);
    }
    char **parts = NULL;
    uint32_t n;
    assert_int_equal(sb_pgarray_parse(NULL, &parts, &n), SB_ERR_INVAL);
}

static void test_build_round_trip(void **state)
{
    (void)state;
    const char *in[] = {"plain", "a,b", "{r}", "say \"hi\"", "back\\slash", "", "NULL", "x y"};
    size_t n = sizeof in / sizeof in[0];
    char *lit = NULL;
    assert_int_equal(sb_pgarray_build(in, n, &lit), SB_OK);
    assert_string_equal(lit, "{\"plain\",\"a,b\",\"{r}\",\"say \\\"hi\\\"\",\"back\\\\slash\","
                             "\"\",\"NULL\",\"x y\"}");
    expect_parts(lit, in, (uint32_t)n);
    free(lit);
    assert_int_equal(sb_pgarray_build(NULL, 0, &lit), SB_OK);
    assert_string_equal(lit, "{}");
    free(lit);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_plain),         cmocka_unit_test(test_parse_quoted),
        cmocka_unit_test(test_parse_lenient_input), cmocka_unit_test(test_parse_trailing_spaces),
        cmocka_unit_test(test_parse_rejects),       cmocka_unit_test(test_build_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
