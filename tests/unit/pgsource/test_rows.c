/* Unit tests of sb_rows: value typing, row packing and row batches. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <math.h>

#include <syncbroker/testhost.h>

#include "pgresult.h"
#include "sb_rows.h"

static sb_value typed(uint32_t oid, const char *text)
{
    return sb_value_from_text(oid, text, text ? strlen(text) : 0);
}

static void test_integers(void **state)
{
    (void)state;
    sb_value v = typed(SB_OID_INT4, "-42");
    assert_int_equal(v.kind, SB_VALUE_INT);
    assert_int_equal(v.i, -42);
    v = typed(SB_OID_INT8, "9223372036854775807");
    assert_int_equal(v.kind, SB_VALUE_INT);
    assert_true(v.i == INT64_MAX);
    v = typed(SB_OID_INT2, "7");
    assert_int_equal(v.i, 7);
    v = typed(SB_OID_OID, "4294967295");
    assert_int_equal(v.kind, SB_VALUE_INT);
    assert_true(v.i == 4294967295LL);
    /* text a server would never send for the type stays text rather than being mangled */
    v = typed(SB_OID_INT4, "12x");
    assert_int_equal(v.kind, SB_VALUE_STR);
    assert_int_equal(v.len, 3);
    assert_int_equal(typed(SB_OID_INT8, "99999999999999999999").kind, SB_VALUE_STR);
    assert_int_equal(typed(SB_OID_INT4, "").kind, SB_VALUE_STR);
}

static void test_floats(void **state)
{
    (void)state;
    sb_value v = typed(SB_OID_FLOAT8, "1.5");
    assert_int_equal(v.kind, SB_VALUE_FLOAT);
    assert_true(v.f == 1.5);
    v = typed(SB_OID_FLOAT4, "-2.5e+10");
    assert_true(v.kind == SB_VALUE_FLOAT && v.f == -2.5e10);
    v = typed(SB_OID_FLOAT8, "NaN");
    assert_true(v.kind == SB_VALUE_FLOAT && isnan(v.f));
    v = typed(SB_OID_FLOAT8, "Infinity");
    assert_true(v.kind == SB_VALUE_FLOAT && isinf(v.f) && v.f > 0);
    v = typed(SB_OID_FLOAT8, "-Infinity");
    assert_true(v.kind == SB_VALUE_FLOAT && isinf(v.f) && v.f < 0);
    assert_int_equal(typed(SB_OID_FLOAT8, "1.5 ").kind, SB_VALUE_STR);
}

static void test_bool_null_other(void **state)
{
    (void)state;
    sb_value v = typed(SB_OID_BOOL, "t");
    assert_true(v.kind == SB_VALUE_BOOL && v.b);
    v = typed(SB_OID_BOOL, "f");
    assert_true(v.kind == SB_VALUE_BOOL && !v.b);
    assert_int_equal(typed(SB_OID_BOOL, "true").kind, SB_VALUE_STR);
    assert_int_equal(typed(SB_OID_INT4, NULL).kind, SB_VALUE_NIL);
    assert_int_equal(typed(1700 /* numeric */, NULL).kind, SB_VALUE_NIL);
    v = typed(1700 /* numeric */, "12.50");
    assert_true(v.kind == SB_VALUE_STR && v.len == 5 && memcmp(v.str, "12.50", 5) == 0);
    v = typed(1184 /* timestamptz */, "2026-11-28 10:00:00+00");
    assert_int_equal(v.kind, SB_VALUE_STR);
}

/* Unpack a packed map and return the value under key. */
static msgpack_object map_get(const msgpack_object *map, const char *key)
{
    assert_int_equal(map->type, MSGPACK_OBJECT_MAP);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[i];
        if (kv->key.via.str.size == strlen(key) &&
            memcmp(kv->key.via.str.ptr, key, kv->key.via.str.size) == 0)
            return kv->val;
    }
    fail_msg("key %s missing", key);
    return (msgpack_object){0};
}

static PGresult *sample_result(void)
{
    static const test_col cols[] = {{"ord", SB_OID_INT8}, {"id", SB_OID_INT4},
                                    {"price", 1700},      {"ok", SB_OID_BOOL},
                                    {"f", SB_OID_FLOAT8}, {"note", 25 /* text */}};
    static const char *const cells[] = {"1", "7", "12.50", "t", "NaN",  NULL,
                                        "2", "8", NULL,    "f", "0.25", "hé \"x\""};
    return test_result(cols, 6, cells, 2);
}

static void test_pack_row(void **state)
{
    (void)state;
    PGresult *res = sample_result();
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
    assert_int_equal(sb_rows_pack(&pk, res, 1, 1), 0);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(&u, buf.data, buf.size, &off), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, buf.size);
    assert_int_equal(u.data.via.map.size, 5); /* "ord" (column 0) is not part of the row */
    msgpack_object o = map_get(&u.data, "id");
    assert_true(o.type == MSGPACK_OBJECT_POSITIVE_INTEGER && o.via.u64 == 8);
    assert_int_equal(map_get(&u.data, "price").type, MSGPACK_OBJECT_NIL);
    o = map_get(&u.data, "ok");
    assert_true(o.type == MSGPACK_OBJECT_BOOLEAN && !o.via.boolean);
    o = map_get(&u.data, "f");
    assert_true(o.type == MSGPACK_OBJECT_FLOAT64 && o.via.f64 == 0.25);
    o = map_get(&u.data, "note");
    assert_true(o.type == MSGPACK_OBJECT_STR && o.via.str.size == strlen("hé \"x\""));
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&buf);
    PQclear(res);
}

/* A source that only keeps the host API table and handle it is handed, so that the test can
 * deliver row batches through the host of a started source as the engine does. */
static struct {
    const sb_source_api *api;
    sb_host *host;
} kept;

static int keeper_create(const sb_source_api *api, sb_host *host, const sb_source_setup *setup,
                         void **state)
{
    (void)setup;
    kept.api = api;
    kept.host = host;
    *state = &kept;
    return SB_OK;
}

static int keeper_start(void *state)
{
    (void)state;
    return SB_OK;
}

static void keeper_nothing(void *state)
{
    (void)state;
}

static int keeper_snapshot(void *state, uint64_t req, const uint32_t *tables, size_t n)
{
    (void)state;
    (void)req;
    (void)tables;
    (void)n;
    return SB_ERR_UNSUPPORTED;
}

static void keeper_cancel(void *state, uint64_t req)
{
    (void)state;
    (void)req;
}

static const sb_source_plugin keeper = {
    .header = SB_SOURCE_PLUGIN_HEADER("keeper", "1.0.0", "keeps its host", NULL),
    .create = keeper_create,
    .start = keeper_start,
    .stop = keeper_nothing,
    .destroy = keeper_nothing,
    .snapshot = keeper_snapshot,
    .cancel = keeper_cancel,
};

static void test_rowbatch_delivers_copies(void **state)
{
    (void)state;
    sb_testhost *th = NULL;
    assert_int_equal(sb_testhost_new(&th), SB_OK);
    /* table indices 1 and 3 below */
    static const char ini[] = "[database]\n"
                              "tables = public.a, public.b, public.c, public.d\n"
                              "[source.main]\n"
                              "plugin = keeper\n";
    assert_int_equal(sb_testhost_load(th, NULL, ini, &keeper.header), SB_OK);
    assert_int_equal(sb_testhost_start(th), SB_OK);
    sb_rowbatch b;
    sb_rowbatch_init(&b);
    PGresult *res = sample_result();
    const char *k1[] = {"7"}, *k2[] = {"a,b", "2026-11-28"};
    assert_int_equal(sb_rowbatch_add(&b, 3, k1, 1, 5, "desk-a", res, 0, 1), SB_OK);
    assert_int_equal(sb_rowbatch_add(&b, 1, k2, 2, 0, NULL, NULL, 0, 0), SB_OK);
    PQclear(res); /* the batch holds copies */
    assert_int_equal(sb_rowbatch_count(&b), 2);
    assert_int_equal(sb_rowbatch_deliver(&b, kept.api, kept.host, 77), SB_OK);
    assert_int_equal(sb_rowbatch_count(&b), 0);
    assert_int_equal(sb_testhost_row_count(th), 2);
    const sb_row *r = sb_testhost_row_get(th, 0);
    assert_int_equal(sb_testhost_row_req(th, 0), 77);
    assert_int_equal(r->table, 3);
    assert_int_equal(r->key.nparts, 1);
    assert_string_equal(r->key.parts[0], "7");
    assert_int_equal(r->version, 5);
    assert_string_equal(r->origin, "desk-a");
    assert_non_null(r->row);
    assert_true(r->row_len > 10);
    r = sb_testhost_row_get(th, 1);
    assert_int_equal(r->table, 1);
    assert_int_equal(r->key.nparts, 2);
    assert_string_equal(r->key.parts[0], "a,b");
    assert_string_equal(r->key.parts[1], "2026-11-28");
    assert_null(r->row); /* absent */
    assert_null(r->origin);
    /* an empty batch delivers nothing */
    assert_int_equal(sb_rowbatch_deliver(&b, kept.api, kept.host, 78), SB_OK);
    assert_int_equal(sb_testhost_row_count(th), 2);
    sb_rowbatch_free(&b);
    assert_int_equal(sb_testhost_stop(th), 0);
    sb_testhost_free(th);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_integers),
        cmocka_unit_test(test_floats),
        cmocka_unit_test(test_bool_null_other),
        cmocka_unit_test(test_pack_row),
        cmocka_unit_test(test_rowbatch_delivers_copies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
