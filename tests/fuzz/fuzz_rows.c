/*
 * fuzz_rows.c - libFuzzer target for the text-to-msgpack row conversion (sb_rows_pack over
 * sb_value_from_text): a text-format result row whose cells come from the input. Lines are
 * cells; a cell's first byte picks its column type (and SQL NULL), the rest is its text.
 * Invariants: no sanitizer report, the packed row is one msgpack map of every column.
 */
#include "fuzz.h"
#include "sb_mp.h"
#include "sb_rows.h"

#include <string.h>

#define MAX_COLS 16

static const uint32_t types[] = {SB_OID_BOOL, SB_OID_INT8,   SB_OID_INT2,   SB_OID_INT4,
                                 SB_OID_OID,  SB_OID_FLOAT4, SB_OID_FLOAT8, 25 /* text */};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char names[MAX_COLS][8];
    PGresAttDesc attrs[MAX_COLS];
    const uint8_t *cell[MAX_COLS];
    size_t len[MAX_COLS];
    int ncols = 0;
    for (size_t at = 0; at < size && ncols < MAX_COLS; ncols++) {
        const uint8_t *nl = memchr(data + at, '\n', size - at);
        size_t end = nl ? (size_t)(nl - data) : size;
        cell[ncols] = data + at;
        len[ncols] = end - at;
        at = end + 1;
    }
    PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    if (!res)
        sb_fuzz_fail("out of memory");
    for (int c = 0; c < ncols; c++) {
        snprintf(names[c], sizeof names[c], "c%d", c);
        uint8_t pick = len[c] ? cell[c][0] : 0;
        attrs[c] = (PGresAttDesc){.name = names[c],
                                  .typid = types[pick % (sizeof types / sizeof types[0])],
                                  .typlen = -1,
                                  .atttypmod = -1};
    }
    if (!PQsetResultAttrs(res, ncols, attrs))
        sb_fuzz_fail("PQsetResultAttrs");
    for (int c = 0; c < ncols; c++) {
        bool null = len[c] && (cell[c][0] & 0x80);
        const char *text = len[c] ? (const char *)cell[c] + 1 : "";
        if (!PQsetvalue(res, 0, c, null ? NULL : (char *)text,
                        null ? -1 : (int)(len[c] ? len[c] - 1 : 0)))
            sb_fuzz_fail("PQsetvalue");
    }
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (ncols > 0) {
        if (sb_rows_pack(&pk, res, 0, 0) != 0)
            sb_fuzz_fail("sb_rows_pack failed");
        msgpack_unpacked up;
        msgpack_unpacked_init(&up);
        if (sb_mp_unpack(sb.data, sb.size, NULL, &up) != SB_OK ||
            up.data.type != MSGPACK_OBJECT_MAP || up.data.via.map.size != (uint32_t)ncols)
            sb_fuzz_fail("the packed row is not a map of every column");
        msgpack_unpacked_destroy(&up);
    }
    msgpack_sbuffer_destroy(&sb);
    PQclear(res);
    return 0;
}
