/* Unit tests of sb_table: quoting, resolution and the built SQL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pgresult.h"
#include "sb_table.h"
#include <syncbroker/plugin.h>

static void test_quote_ident(void **state)
{
    (void)state;
    char *q = sb_quote_ident("id");
    assert_string_equal(q, "\"id\"");
    free(q);
    q = sb_quote_ident("we\"ird Col");
    assert_string_equal(q, "\"we\"\"ird Col\"");
    free(q);
}

static const test_col resolve_cols[] = {{"name", 25},    {"oid", 26},      {"tracked", 16},
                                        {"pk_cols", 25}, {"pk_types", 25}, {"pk_now", 25},
                                        {"readable", 16}};

static void test_resolve_builds_sql(void **state)
{
    (void)state;
    sb_table t[2] = {{.name = "public.bookings"}, {.name = "app.stays", .index = 1}};
    const char *cells[] = {
        "public.bookings",
        "16390",
        "t",
        "{id}",
        "{integer}",
        "{id}",
        "t",
        "app.stays",
        "16400",
        "t",
        "{\"Room\",day}",
        "{\"character varying(8)\",date}",
        "{\"Room\",day}",
        "t",
    };
    PGresult *res = test_result(resolve_cols, 7, cells, 2);
    char err[256] = "";
    assert_int_equal(sb_table_resolve(t, 2, res, err, sizeof err), SB_OK);
    PQclear(res);
    assert_int_equal(t[0].relid, 16390);
    assert_int_equal(t[0].npk, 1);
    assert_int_equal(t[1].npk, 2);
    assert_int_equal(t[1].index, 1); /* the configuration's, kept */
    assert_string_equal(t[1].pk_cols[0], "Room");
    assert_string_equal(t[1].pk_types[0], "character varying(8)");
    /* identifiers quoted, key parts cast to the key types, newest change looked up by relid
     * and text key */
    assert_non_null(strstr(t[1].fetch_sql, "unnest($1::text[], $2::text[]) WITH ORDINALITY"));
    assert_non_null(strstr(t[1].fetch_sql,
                           "LEFT JOIN \"app\".\"stays\" t ON t.\"Room\" = "
                           "k.c1::character varying(8) AND t.\"day\" = k.c2::date"));
    assert_non_null(strstr(t[1].fetch_sql, "c.relid = '16400'::oid AND c.pk = ARRAY[k.c1, k.c2] "
                                           "ORDER BY c.version DESC LIMIT 1) e ON true"));
    assert_non_null(strstr(t[1].snapshot_sql, "t.\"Room\"::text, t.\"day\"::text, t.* FROM "
                                              "\"app\".\"stays\" t"));
    for (int i = 0; i < 2; i++)
        sb_table_clear(&t[i]);
    assert_string_equal(t[0].name, "public.bookings"); /* the name survives a clear */
    assert_int_equal(t[1].index, 1);                   /* and so does the index */
    assert_null(t[0].fetch_sql);
}

static void expect_config_error(const char *const *row, const char *needle)
{
    sb_table t = {.name = "public.bookings"};
    PGresult *res = test_result(resolve_cols, 7, row, 1);
    char err[256] = "";
    assert_int_equal(sb_table_resolve(&t, 1, res, err, sizeof err), SB_ERR_CONFIG);
    PQclear(res);
    assert_non_null(strstr(err, "public.bookings"));
    assert_non_null(strstr(err, needle));
    sb_table_clear(&t);
}

static void test_resolve_errors_name_the_table(void **state)
{
    (void)state;
    expect_config_error((const char *[]){"public.bookings", NULL, "f", NULL, NULL, NULL, NULL},
                        "does not exist");
    expect_config_error((const char *[]){"public.bookings", "16390", "f", NULL, NULL, "{id}", "t"},
                        "SELECT syncbroker.track('public.bookings')");
    expect_config_error(
        (const char *[]){"public.bookings", "16390", "t", "{id,x}", "{integer}", "{id,x}", "t"},
        "malformed");
    expect_config_error((const char *[]){"public.bookings", "16390", "t", "{}", "{}", "{}", "t"},
                        "malformed");
    /* the key was altered after track(): the trigger still records the old one */
    expect_config_error(
        (const char *[]){"public.bookings", "16390", "t", "{id}", "{integer}", "{id,guest}", "t"},
        "is now {id,guest} but it was tracked as {id}; run: SELECT "
        "syncbroker.track('public.bookings');");
    expect_config_error(
        (const char *[]){"public.bookings", "16390", "t", "{id}", "{integer}", NULL, "t"},
        "is now (none)");
    /* tracked before syncbroker_reader could read it, or a role outside that group */
    expect_config_error(
        (const char *[]){"public.bookings", "16390", "t", "{id}", "{integer}", "{id}", "f"},
        "this role may not read table public.bookings: make it a member of syncbroker_reader");
    /* a result of another shape is refused, not read out of bounds */
    sb_table t = {.name = "public.bookings"};
    PGresult *res = test_result(resolve_cols, 7, NULL, 0);
    char err[128];
    assert_int_equal(sb_table_resolve(&t, 1, res, err, sizeof err), SB_ERR_CONFIG);
    PQclear(res);
}

static void test_find(void **state)
{
    (void)state;
    sb_table t[2] = {{.name = "public.a", .relid = 5}, {.name = "public.b", .relid = 6}};
    assert_ptr_equal(sb_table_by_relid(t, 2, 5), &t[0]);
    assert_null(sb_table_by_relid(t, 2, 7));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quote_ident),
        cmocka_unit_test(test_resolve_builds_sql),
        cmocka_unit_test(test_resolve_errors_name_the_table),
        cmocka_unit_test(test_find),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
