/* sb_table.c - see sb_table.h. */
#include "sb_table.h"
#include "sb_pgarray.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syncbroker/plugin.h>

/* Column 5 is the table's primary key as it is now, to compare with what track() recorded
 * (and generated the trigger for); the last, whether this role may read the table (track()
 * grants it to syncbroker_reader). */
const char SB_TABLE_RESOLVE_SQL[] =
    "SELECT n.name, c.oid, t.relid IS NOT NULL, t.pk_cols::text, t.pk_types::text,"
    " (SELECT pg_catalog.array_agg(a.attname::text ORDER BY u.ord)::text"
    "  FROM pg_catalog.pg_index i"
    "  CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS u(attnum, ord)"
    "  JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = u.attnum"
    "  WHERE i.indrelid = c.oid AND i.indisprimary),"
    " pg_catalog.has_table_privilege(c.oid, 'SELECT')"
    " FROM unnest($1::text[]) WITH ORDINALITY AS n(name, ord)"
    " LEFT JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass(n.name)"
    " LEFT JOIN syncbroker.tracked t ON t.relid = c.oid"
    " ORDER BY n.ord";

char *sb_quote_ident(const char *ident)
{
    size_t len = 3;
    for (const char *p = ident; *p; p++)
        len += *p == '"' ? 2 : 1;
    char *q = malloc(len), *w = q;
    if (!q)
        return NULL;
    *w++ = '"';
    for (const char *p = ident; *p; p++) {
        if (*p == '"')
            *w++ = '"';
        *w++ = *p;
    }
    *w++ = '"';
    *w = '\0';
    return q;
}

/* A growing SQL text; after an allocation failure every append is a no-op and take()
 * returns NULL, so builders check once at the end. */
typedef struct sql_buf {
    char *s;
    size_t len, cap;
    bool failed;
} sql_buf;

static void add(sql_buf *b, const char *fmt, ...) SB_PRINTF(2, 3);

static void add(sql_buf *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    va_list ap;
    va_start(ap, fmt);
    int need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (need < 0 || b->len + (size_t)need + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (need >= 0 && b->len + (size_t)need + 1 > cap)
            cap *= 2;
        char *grown = need < 0 ? NULL : realloc(b->s, cap);
        if (!grown) {
            b->failed = true;
            return;
        }
        b->s = grown;
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)need;
}

/* Add a quoted identifier. */
static void add_ident(sql_buf *b, const char *ident)
{
    char *q = sb_quote_ident(ident);
    if (!q)
        b->failed = true;
    else
        add(b, "%s", q);
    free(q);
}

/* "schema"."name" from a validated configured name. */
static void add_qualified(sql_buf *b, const char *name)
{
    const char *dot = strchr(name, '.');
    add(b, "\"%.*s\".\"%s\"", (int)(dot - name), name, dot + 1);
}

static char *take(sql_buf *b)
{
    if (b->failed) {
        free(b->s);
        return NULL;
    }
    return b->s;
}

static char *build_fetch_sql(const sb_table *t)
{
    sql_buf b = {0};
    add(&b, "SELECT k.ord, e.version, e.origin, t.");
    add_ident(&b, t->pk_cols[0]);
    add(&b, " IS NOT NULL, t.* FROM unnest(");
    for (uint32_t i = 0; i < t->npk; i++)
        add(&b, "%s$%u::text[]", i ? ", " : "", i + 1);
    add(&b, ") WITH ORDINALITY AS k(");
    for (uint32_t i = 0; i < t->npk; i++)
        add(&b, "c%u, ", i + 1);
    add(&b, "ord) LEFT JOIN ");
    add_qualified(&b, t->name);
    add(&b, " t ON ");
    for (uint32_t i = 0; i < t->npk; i++) {
        add(&b, "%st.", i ? " AND " : "");
        add_ident(&b, t->pk_cols[i]);
        /* format_type() output is valid type syntax, quoted where needed. */
        add(&b, " = k.c%u::%s", i + 1, t->pk_types[i]);
    }
    /* The newest change of each key: an index probe on change_entity_idx. */
    add(&b,
        " LEFT JOIN LATERAL (SELECT c.version, c.origin FROM syncbroker.change c"
        " WHERE c.relid = '%u'::oid AND c.pk = ARRAY[",
        t->relid);
    for (uint32_t i = 0; i < t->npk; i++)
        add(&b, "%sk.c%u", i ? ", " : "", i + 1);
    add(&b, "] ORDER BY c.version DESC LIMIT 1) e ON true ORDER BY k.ord");
    return take(&b);
}

/* A whole table against the newest change of every logged key: one pass over the log's rows
 * of this table joined by hash, where a per-row probe (as fetch_sql does for a few keys) cost
 * 15x more for 100k rows (bench/README.md). */
static char *build_snapshot_sql(const sb_table *t)
{
    sql_buf b = {0};
    add(&b, "SELECT coalesce(e.version, 0), e.origin");
    for (uint32_t i = 0; i < t->npk; i++) {
        add(&b, ", t.");
        add_ident(&b, t->pk_cols[i]);
        add(&b, "::text");
    }
    add(&b, ", t.* FROM ");
    add_qualified(&b, t->name);
    add(&b,
        " t LEFT JOIN (SELECT DISTINCT ON (c.pk) c.pk, c.version, c.origin"
        " FROM syncbroker.change c WHERE c.relid = '%u'::oid AND c.pk IS NOT NULL"
        " ORDER BY c.pk, c.version DESC) e ON e.pk = ARRAY[",
        t->relid);
    for (uint32_t i = 0; i < t->npk; i++) {
        add(&b, "%st.", i ? ", " : "");
        add_ident(&b, t->pk_cols[i]);
        add(&b, "::text");
    }
    add(&b, "]");
    return take(&b);
}

void sb_table_clear(sb_table *t)
{
    free(t->pk_cols);
    free(t->pk_types);
    free(t->fetch_sql);
    free(t->snapshot_sql);
    *t = (sb_table){.name = t->name, .index = t->index}; /* what the configuration gave */
}

static int resolve_one(sb_table *t, const PGresult *res, int row, char *err, size_t errlen)
{
    const char *name = PQgetvalue(res, row, 0);
    if (strcmp(name, t->name) != 0) {
        snprintf(err, errlen, "table resolution answered '%s' for '%s'", name, t->name);
        return SB_ERR_CONFIG;
    }
    if (PQgetisnull(res, row, 1)) {
        snprintf(err, errlen, "table %s does not exist in the database", t->name);
        return SB_ERR_CONFIG;
    }
    if (strcmp(PQgetvalue(res, row, 2), "t") != 0) {
        snprintf(err, errlen, "table %s is not tracked; run: SELECT syncbroker.track('%s');",
                 t->name, t->name);
        return SB_ERR_CONFIG;
    }
    if (strcmp(PQgetvalue(res, row, 6), "t") != 0) {
        snprintf(err, errlen,
                 "this role may not read table %s: make it a member of syncbroker_reader, and "
                 "run SELECT syncbroker.track('%s'); as the owner if the table was tracked "
                 "before sql/003_privileges.sql (scripts/migrate does it)",
                 t->name, t->name);
        return SB_ERR_CONFIG;
    }
    const char *now = PQgetisnull(res, row, 5) ? "(none)" : PQgetvalue(res, row, 5);
    if (strcmp(now, PQgetvalue(res, row, 3)) != 0) {
        snprintf(err, errlen,
                 "the primary key of %s is now %s but it was tracked as %s; run: SELECT "
                 "syncbroker.track('%s');",
                 t->name, now, PQgetvalue(res, row, 3), t->name);
        return SB_ERR_CONFIG;
    }
    sb_table_clear(t);
    uint32_t ncols = 0, ntypes = 0;
    char *end;
    unsigned long relid = strtoul(PQgetvalue(res, row, 1), &end, 10);
    int rc = sb_pgarray_parse(PQgetvalue(res, row, 3), &t->pk_cols, &ncols);
    if (rc == SB_OK)
        rc = sb_pgarray_parse(PQgetvalue(res, row, 4), &t->pk_types, &ntypes);
    if (rc == SB_ERR_NOMEM)
        return rc;
    if (rc != SB_OK || ncols == 0 || ncols != ntypes || *end != '\0' || relid == 0 ||
        relid > UINT32_MAX) {
        snprintf(err, errlen,
                 "syncbroker.tracked has a malformed entry for %s; run: SELECT "
                 "syncbroker.track('%s');",
                 t->name, t->name);
        return SB_ERR_CONFIG;
    }
    t->relid = (uint32_t)relid;
    t->npk = ncols;
    t->fetch_sql = build_fetch_sql(t);
    t->snapshot_sql = build_snapshot_sql(t);
    return t->fetch_sql && t->snapshot_sql ? SB_OK : SB_ERR_NOMEM;
}

int sb_table_resolve(sb_table *tables, size_t n, const PGresult *res, char *err, size_t errlen)
{
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQnfields(res) != 7 ||
        (size_t)PQntuples(res) != n) {
        snprintf(err, errlen, "unexpected answer resolving the configured tables");
        return SB_ERR_CONFIG;
    }
    for (size_t i = 0; i < n; i++) {
        int rc = resolve_one(&tables[i], res, (int)i, err, errlen);
        if (rc != SB_OK)
            return rc;
    }
    return SB_OK;
}

sb_table *sb_table_by_relid(sb_table *tables, size_t n, uint32_t relid)
{
    for (size_t i = 0; i < n; i++)
        if (tables[i].relid == relid)
            return &tables[i];
    return NULL;
}
