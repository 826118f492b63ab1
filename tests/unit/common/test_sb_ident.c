/* test_sb_ident.c - common/sb_ident.h: configured table names and identifiers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sb_ident.h"

#include <string.h>

/* The rule both the broker's config and the PostgreSQL sources apply (moved from
 * tests/unit/pgsource/test_table.c with the function). */
static void table_names(void **state)
{
    (void)state;
    const char *good[] = {"public.bookings", "_s.t_1", "a.b$c", "s9.x"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        assert_true(sb_table_name_valid(good[i]));
    const char *bad[] = {"bookings",   "public.",     ".t",   "public.Bookings",
                         "pub lic.t",  "public.t.x",  "1s.t", "s.1t",
                         "s.t;drop",   "\"s\".\"t\"", "s.$t", "",
                         "public.t-1", "s.t\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(sb_table_name_valid(bad[i]));
    assert_false(sb_table_name_valid(NULL));
    char longname[80] = "s.";
    memset(longname + 2, 'a', 64);
    longname[66] = '\0';
    assert_false(sb_table_name_valid(longname)); /* 64 > NAMEDATALEN - 1 */
    longname[65] = '\0';
    assert_true(sb_table_name_valid(longname));
}

/* Section names ([source.NAME], plugin names) use one part of the same rule. */
static void identifiers(void **state)
{
    (void)state;
    assert_true(sb_ident_valid("source_poll", 11));
    assert_true(sb_ident_valid("public.x", 6)); /* only len bytes are read */
    assert_false(sb_ident_valid("public.x", 8));
    assert_false(sb_ident_valid("", 0));
    assert_false(sb_ident_valid("9a", 2));
    assert_false(sb_ident_valid("Zmq", 3));
    assert_false(sb_ident_valid("\xc3\xa9t\xc3\xa9", 6)); /* no letters beyond ASCII */
    char name[SB_IDENT_MAX + 1];
    memset(name, 'a', sizeof name);
    assert_true(sb_ident_valid(name, SB_IDENT_MAX));
    assert_false(sb_ident_valid(name, SB_IDENT_MAX + 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(table_names),
        cmocka_unit_test(identifiers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
