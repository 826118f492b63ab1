/* sb_rows.c - see sb_rows.h. */
#include "sb_rows.h"
#include "sb_mp.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define NO_OFFSET SIZE_MAX

struct sb_rowbatch_entry {
    uint32_t table;
    size_t parts_off; /* nparts NUL-terminated strings back to back */
    uint32_t nparts;
    uint64_t version;
    size_t origin_off; /* NO_OFFSET: NULL */
    size_t row_off;    /* NO_OFFSET: row absent */
    size_t row_len;
};

/* Numbers are short: copy to a NUL-terminated buffer for strtoll/strtod. */
static bool copy_number(char *dst, size_t cap, const char *text, size_t len)
{
    if (len == 0 || len >= cap)
        return false;
    memcpy(dst, text, len);
    dst[len] = '\0';
    return true;
}

sb_value sb_value_from_text(uint32_t type_oid, const char *text, size_t len)
{
    sb_value v = {.kind = SB_VALUE_STR, .str = text, .len = len};
    char num[64], *end;
    if (!text) {
        v.kind = SB_VALUE_NIL;
        return v;
    }
    switch (type_oid) {
    case SB_OID_INT2:
    case SB_OID_INT4:
    case SB_OID_INT8:
    case SB_OID_OID:
        if (copy_number(num, sizeof num, text, len)) {
            errno = 0;
            long long x = strtoll(num, &end, 10);
            if (errno == 0 && *end == '\0' && end != num) {
                v.kind = SB_VALUE_INT;
                v.i = x;
            }
        }
        break;
    case SB_OID_FLOAT4:
    case SB_OID_FLOAT8:
        /* strtod reads PostgreSQL's NaN, Infinity and -Infinity as well. */
        if (copy_number(num, sizeof num, text, len)) {
            double x = strtod(num, &end);
            if (*end == '\0' && end != num) {
                v.kind = SB_VALUE_FLOAT;
                v.f = x;
            }
        }
        break;
    case SB_OID_BOOL:
        if (len == 1 && (text[0] == 't' || text[0] == 'f')) {
            v.kind = SB_VALUE_BOOL;
            v.b = text[0] == 't';
        }
        break;
    default:
        break;
    }
    return v;
}

int sb_value_pack(msgpack_packer *pk, const sb_value *v)
{
    switch (v->kind) {
    case SB_VALUE_NIL:
        return msgpack_pack_nil(pk);
    case SB_VALUE_INT:
        return msgpack_pack_int64(pk, v->i);
    case SB_VALUE_FLOAT:
        return msgpack_pack_double(pk, v->f);
    case SB_VALUE_BOOL:
        return v->b ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    case SB_VALUE_STR:
        return sb_mp_pack_strn(pk, v->str, v->len);
    }
    return -1;
}

int sb_rows_pack(msgpack_packer *pk, const PGresult *res, int row, int first_col)
{
    int ncols = PQnfields(res);
    if (first_col > ncols)
        first_col = ncols;
    if (msgpack_pack_map(pk, (size_t)(ncols - first_col)))
        return -1;
    for (int c = first_col; c < ncols; c++) {
        bool null = PQgetisnull(res, row, c);
        sb_value v =
            sb_value_from_text((uint32_t)PQftype(res, c), null ? NULL : PQgetvalue(res, row, c),
                               null ? 0 : (size_t)PQgetlength(res, row, c));
        if (sb_mp_pack_cstr(pk, PQfname(res, c)) || sb_value_pack(pk, &v))
            return -1;
    }
    return 0;
}

void sb_rowbatch_init(sb_rowbatch *b)
{
    memset(b, 0, sizeof *b);
    msgpack_sbuffer_init(&b->bytes);
}

void sb_rowbatch_free(sb_rowbatch *b)
{
    msgpack_sbuffer_destroy(&b->bytes);
    free(b->entries);
    memset(b, 0, sizeof *b);
}

size_t sb_rowbatch_count(const sb_rowbatch *b)
{
    return b->n;
}

/* Append s with its NUL; *off gets where it starts. */
static int append_cstr(sb_rowbatch *b, const char *s, size_t *off)
{
    *off = b->bytes.size;
    return msgpack_sbuffer_write(&b->bytes, s, strlen(s) + 1);
}

int sb_rowbatch_add(sb_rowbatch *b, uint32_t table, const char *const *parts, uint32_t nparts,
                    uint64_t version, const char *origin, const PGresult *res, int row,
                    int first_col)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        sb_rowbatch_entry *grown = realloc(b->entries, cap * sizeof *grown);
        if (!grown)
            return SB_ERR_NOMEM;
        b->entries = grown;
        b->cap = cap;
    }
    size_t mark = b->bytes.size; /* rolled back on failure */
    sb_rowbatch_entry e = {.table = table,
                           .parts_off = b->bytes.size,
                           .nparts = nparts,
                           .version = version,
                           .origin_off = NO_OFFSET,
                           .row_off = NO_OFFSET};
    size_t off;
    for (uint32_t i = 0; i < nparts; i++)
        if (append_cstr(b, parts[i], &off))
            goto nomem;
    if (origin && append_cstr(b, origin, &e.origin_off))
        goto nomem;
    if (res) {
        msgpack_packer pk;
        msgpack_packer_init(&pk, &b->bytes, msgpack_sbuffer_write);
        e.row_off = b->bytes.size;
        if (sb_rows_pack(&pk, res, row, first_col))
            goto nomem;
        e.row_len = b->bytes.size - e.row_off;
    }
    b->entries[b->n++] = e;
    if (nparts > b->max_parts)
        b->max_parts = nparts;
    return SB_OK;
nomem:
    b->bytes.size = mark;
    return SB_ERR_NOMEM;
}

int sb_rowbatch_deliver(sb_rowbatch *b, const sb_source_api *api, sb_host *h, uint64_t req)
{
    if (b->n == 0)
        return SB_OK;
    sb_row *rows = malloc(b->n * sizeof *rows);
    const char **parts = malloc((b->n * b->max_parts + 1) * sizeof *parts);
    if (!rows || !parts) {
        free(rows);
        free(parts);
        return SB_ERR_NOMEM;
    }
    const char *base = b->bytes.data;
    const char **next = parts;
    for (size_t i = 0; i < b->n; i++) {
        const sb_rowbatch_entry *e = &b->entries[i];
        const char *p = e->nparts ? base + e->parts_off : NULL;
        rows[i] = (sb_row){
            .table = e->table,
            .key = {.parts = next, .nparts = e->nparts},
            .version = e->version,
            .row = e->row_off == NO_OFFSET ? NULL : base + e->row_off,
            .row_len = e->row_off == NO_OFFSET ? 0 : e->row_len,
            .origin = e->origin_off == NO_OFFSET ? NULL : base + e->origin_off,
        };
        for (uint32_t k = 0; k < e->nparts; k++) {
            *next++ = p;
            p += strlen(p) + 1;
        }
    }
    api->rows(h, req, rows, b->n);
    free(rows);
    free(parts);
    b->n = 0;
    b->max_parts = 0;
    msgpack_sbuffer_clear(&b->bytes);
    return SB_OK;
}
