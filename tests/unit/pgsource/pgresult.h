/*
 * pgresult.h - hand-made text-format PGresults for unit tests (PQmakeEmptyPGresult,
 * PQsetResultAttrs, PQsetvalue), so result conversion is tested without a server.
 */
#ifndef TEST_PGRESULT_H
#define TEST_PGRESULT_H

#include <libpq-fe.h>
#include <stdint.h>

typedef struct test_col {
    const char *name;
    uint32_t type_oid;
} test_col;

/* A TUPLES_OK result with ncols columns and nrows rows; cells[r * ncols + c] is the text of
 * a cell, NULL for SQL NULL. The caller PQclear()s it. */
static inline PGresult *test_result(const test_col *cols, int ncols, const char *const *cells,
                                    int nrows)
{
    PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    PGresAttDesc attrs[32];
    for (int c = 0; c < ncols; c++)
        attrs[c] = (PGresAttDesc){.name = (char *)cols[c].name,
                                  .format = 0,
                                  .typid = cols[c].type_oid,
                                  .typlen = -1,
                                  .atttypmod = -1};
    PQsetResultAttrs(res, ncols, attrs);
    for (int r = 0; r < nrows; r++)
        for (int c = 0; c < ncols; c++) {
            const char *v = cells[r * ncols + c];
            PQsetvalue(res, r, c, (char *)v, v ? (int)strlen(v) : -1);
        }
    return res;
}

#endif /* TEST_PGRESULT_H */
