/*
 * sb_rows.h - typed rows: PostgreSQL text-format values to msgpack (docs/protocol.md, "Row
 * values"), and a batch of sb_row answers built from query results.
 *
 * Typing: int2/int4/int8/oid -> int, float4/float8 -> float (NaN and +-Infinity included),
 * bool -> bool, SQL NULL -> nil, every other type -> its text form as str.
 */
#ifndef SB_ROWS_H
#define SB_ROWS_H

#include <libpq-fe.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <syncbroker/plugin.h>

/* Built-in type OIDs (stable since PostgreSQL 7; the client headers do not export them). */
#define SB_OID_BOOL 16u
#define SB_OID_INT8 20u
#define SB_OID_INT2 21u
#define SB_OID_INT4 23u
#define SB_OID_OID 26u
#define SB_OID_FLOAT4 700u
#define SB_OID_FLOAT8 701u

typedef enum sb_value_kind {
    SB_VALUE_NIL,
    SB_VALUE_INT,
    SB_VALUE_FLOAT,
    SB_VALUE_BOOL,
    SB_VALUE_STR
} sb_value_kind;

/* One typed value. For SB_VALUE_STR, str/len borrow the text given to sb_value_from_text. */
typedef struct sb_value {
    sb_value_kind kind;
    int64_t i;
    double f;
    bool b;
    const char *str;
    size_t len;
} sb_value;

/* Type the text form `text` (len bytes; NULL = SQL NULL) of a value of type `type_oid`. A
 * text the type's parser would not have produced (e.g. "12x" for int4) falls back to str, so
 * no input is ever lost or refused. */
sb_value sb_value_from_text(uint32_t type_oid, const char *text, size_t len);

/* Pack one value. 0, or -1 when the packer's write fails. */
int sb_value_pack(msgpack_packer *pk, const sb_value *v);

/* Pack row `row` of a text-format result as a map {column name: typed value} of the columns
 * from first_col on. 0, or -1 when the packer's write fails. */
int sb_rows_pack(msgpack_packer *pk, const PGresult *res, int row, int first_col);

/*
 * sb_rowbatch: sb_row answers collected from one or more results and delivered with
 * api->rows(). Everything added is copied into the batch (one byte buffer plus offsets), so
 * results may be cleared right after sb_rowbatch_add(). Owned by whoever embeds it.
 */
typedef struct sb_rowbatch_entry sb_rowbatch_entry;
typedef struct sb_rowbatch {
    msgpack_sbuffer bytes;      /* packed rows, key parts and origins, back to back */
    sb_rowbatch_entry *entries; /* malloc'd */
    size_t n, cap;
    size_t max_parts; /* largest key seen, to size the delivery arrays */
} sb_rowbatch;

void sb_rowbatch_init(sb_rowbatch *b);
void sb_rowbatch_free(sb_rowbatch *b);
size_t sb_rowbatch_count(const sb_rowbatch *b);

/* Add one answer of the table at index `table` of the configured list. The row is row `row`
 * of `res` from column first_col on, or absent when res is NULL. origin may be NULL.
 * SB_ERR_NOMEM. */
int sb_rowbatch_add(sb_rowbatch *b, uint32_t table, const char *const *parts, uint32_t nparts,
                    uint64_t version, const char *origin, const PGresult *res, int row,
                    int first_col);

/* Hand every collected answer to api->rows(h, req, ...) in one call (nothing when empty) and
 * empty the batch. SB_ERR_NOMEM (the batch is then kept). */
int sb_rowbatch_deliver(sb_rowbatch *b, const sb_source_api *api, sb_host *h, uint64_t req);

#endif /* SB_ROWS_H */
