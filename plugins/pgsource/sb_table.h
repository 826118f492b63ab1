/*
 * sb_table.h - the configured tables a source serves: resolution against
 * syncbroker.tracked (relid, key columns and types), and the per-table SQL built once from
 * them (row fetch by key, snapshot scan). Identifiers are quoted here, never concatenated raw.
 */
#ifndef SB_TABLE_H
#define SB_TABLE_H

#include "sb_ident.h" /* sb_table_name_valid(): the broker checks names by the same rule */

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <syncbroker/plugin.h> /* sb_err */

typedef struct sb_table {
    const char *name; /* as configured ("schema.name"); borrowed from its owner */
    uint32_t index;   /* its place in the configured list: the table of its changes and rows */
    uint32_t relid;   /* 0 until resolved */
    uint32_t npk;
    char **pk_cols;     /* npk column names (one sb_pgarray block, owned) */
    char **pk_types;    /* npk format_type() names (one sb_pgarray block, owned) */
    char *fetch_sql;    /* $1..$npk: text[] of key parts per column; owned */
    char *snapshot_sql; /* owned */
} sb_table;

/* Column layout of fetch_sql: ord (1-based key index), version, origin, present, then the
 * table's columns. */
#define SB_FETCH_COL_ORD 0
#define SB_FETCH_COL_VERSION 1
#define SB_FETCH_COL_ORIGIN 2
#define SB_FETCH_COL_PRESENT 3
#define SB_FETCH_COL_ROW 4

/* Column layout of snapshot_sql: version, origin, the npk key parts as text, then the
 * table's columns (from SB_SNAPSHOT_COL_KEY + npk on). */
#define SB_SNAPSHOT_COL_VERSION 0
#define SB_SNAPSHOT_COL_ORIGIN 1
#define SB_SNAPSHOT_COL_KEY 2

/* Resolves the names given as $1 (text[] literal) in order: name, relid (NULL: no such
 * table), tracked (bool), pk_cols, pk_types (text[] literals, NULL when untracked). */
extern const char SB_TABLE_RESOLVE_SQL[];

/* "ident" with embedded quotes doubled (quote_ident() that always quotes). malloc'd; NULL
 * when out of memory. */
char *sb_quote_ident(const char *ident);

/* Fill each table from a result of SB_TABLE_RESOLVE_SQL run with the same names in the same
 * order, and build its SQL. On SB_ERR_CONFIG, err names the offending table and says what to
 * do; SB_ERR_NOMEM. Tables already resolved are rebuilt. */
int sb_table_resolve(sb_table *tables, size_t n, const PGresult *res, char *err, size_t errlen);

/* Release what sb_table_resolve() built, keeping name and index (the array itself is the
 * caller's). */
void sb_table_clear(sb_table *t);

/* The table with this relid, or NULL. (Everything else names a table by its index.) */
sb_table *sb_table_by_relid(sb_table *tables, size_t n, uint32_t relid);

#endif /* SB_TABLE_H */
