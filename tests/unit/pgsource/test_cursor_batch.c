/* Unit tests of the cursor's result conversion (sb_cursor_batch_from_result). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "pgresult.h"
#include "sb_cursor.h"

static const test_col cols[SB_CURSOR_NCOLS] = {{"cur", 25},    {"lost", 16}, {"relid", 26},
                                               {"pk", 25},     {"op", 18},   {"version", 20},
                                               {"origin", 25}, {"ts", 20}};

static sb_table tables[2] = {{.name = "public.bookings", .index = 0, .relid = 100, .npk = 1},
                             {.name = "public.stays", .index = 1, .relid = 200, .npk = 2}};

static void test_no_changes(void **state)
{
    (void)state;
    const char *cells[] = {"10:12:", "f", NULL, NULL, NULL, NULL, NULL, NULL};
    PGresult *res = test_result(cols, SB_CURSOR_NCOLS, cells, 1);
    sb_cursor_batch b;
    assert_int_equal(sb_cursor_batch_from_result(&b, tables, 2, res), SB_OK);
    assert_int_equal(b.n, 0);
    assert_false(b.lost);
    assert_string_equal(b.next_position, "10:12:");
    sb_cursor_batch_free(&b);
    PQclear(res);
}

static void test_changes_in_order(void **state)
{
    (void)state;
    const char *cells[] = {
        "20:25:22", "t",  "100",    "{7}",
        "i",        "41", "desk-a", "1700000000123",
        "20:25:22", "t",  "200",    "{\"a,b\",2026-11-28}",
        "u",        "42", NULL,     "1700000000124",
        "20:25:22", "t",  "200",    NULL,
        "t",        "43", NULL,     "1700000000125",
        "20:25:22", "t",  "100",    "{8}",
        "d",        "44", "x",      "1700000000126",
    };
    PGresult *res = test_result(cols, SB_CURSOR_NCOLS, cells, 4);
    sb_cursor_batch b;
    assert_int_equal(sb_cursor_batch_from_result(&b, tables, 2, res), SB_OK);
    assert_int_equal(b.n, 4);
    assert_int_equal(b.skipped, 0);
    assert_true(b.lost);
    assert_string_equal(b.next_position, "20:25:22");
    const sb_change *c = b.changes;
    assert_int_equal(c[0].table, 0);
    assert_int_equal(c[0].op, SB_OP_INSERT);
    assert_int_equal(c[0].key.nparts, 1);
    assert_string_equal(c[0].key.parts[0], "7");
    assert_int_equal(c[0].version, 41);
    assert_int_equal(c[0].position, 0); /* no position: ids do not grow across reads */
    assert_false(c[0].has_row);         /* the core fetches it */
    assert_string_equal(c[0].origin, "desk-a");
    assert_true(c[0].ts_ms == 1700000000123LL);
    assert_int_equal(c[1].table, 1);
    assert_int_equal(c[1].op, SB_OP_UPDATE);
    assert_int_equal(c[1].key.nparts, 2);
    assert_string_equal(c[1].key.parts[0], "a,b");
    assert_string_equal(c[1].key.parts[1], "2026-11-28");
    assert_null(c[1].origin);
    assert_int_equal(c[2].op, SB_OP_TRUNCATE);
    assert_int_equal(c[2].key.nparts, 0);
    assert_int_equal(c[3].op, SB_OP_DELETE);
    assert_int_equal(c[3].version, 44);
    sb_cursor_batch_free(&b);
    PQclear(res);
}

static void test_bad_rows_are_skipped(void **state)
{
    (void)state;
    const char *cells[] = {
        "5:5:", "f", "999", "{1}",   "i", "1", NULL, "0", /* relid not configured */
        "5:5:", "f", "100", "{1}",   "x", "2", NULL, "0", /* unknown op */
        "5:5:", "f", "100", "{1,2}", "u", "3", NULL, "0", /* key shape changed */
        "5:5:", "f", "100", "{1",    "u", "4", NULL, "0", /* malformed key */
        "5:5:", "f", "100", NULL,    "d", "5", NULL, "0", /* delete without key */
        "5:5:", "f", "100", "{9}",   "u", "6", NULL, "0", /* fine */
    };
    PGresult *res = test_result(cols, SB_CURSOR_NCOLS, cells, 6);
    sb_cursor_batch b;
    assert_int_equal(sb_cursor_batch_from_result(&b, tables, 2, res), SB_OK);
    assert_int_equal(b.n, 1);
    assert_int_equal(b.skipped, 5);
    assert_int_equal(b.changes[0].version, 6);
    assert_non_null(strstr(b.skip_why, "relid 999")); /* the first one is described */
    sb_cursor_batch_free(&b);
    PQclear(res);
    /* a key of the wrong shape names the table and what the operator runs */
    res = test_result(cols, SB_CURSOR_NCOLS, cells + 2 * SB_CURSOR_NCOLS, 1);
    assert_int_equal(sb_cursor_batch_from_result(&b, tables, 2, res), SB_OK);
    assert_int_equal(b.skipped, 1);
    assert_non_null(strstr(b.skip_why, "SELECT syncbroker.track('"));
    assert_non_null(strstr(b.skip_why, "2 columns where its primary key had 1"));
    sb_cursor_batch_free(&b);
    PQclear(res);
}

static void test_wrong_shape(void **state)
{
    (void)state;
    sb_cursor_batch b;
    PGresult *res = test_result(cols, 3, (const char *[]){"1:1:", "f", NULL}, 1);
    assert_int_equal(sb_cursor_batch_from_result(&b, tables, 2, res), SB_ERR_INVAL);
    PQclear(res);
    res = test_result(cols, SB_CURSOR_NCOLS, NULL, 0);
    assert_int_equal(sb_cursor_batch_from_result(&b, tables, 2, res), SB_ERR_INVAL);
    PQclear(res);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_changes),
        cmocka_unit_test(test_changes_in_order),
        cmocka_unit_test(test_bad_rows_are_skipped),
        cmocka_unit_test(test_wrong_shape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
