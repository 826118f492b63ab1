/*
 * sb_pgarray.h - PostgreSQL one-dimensional text array literals, both ways: parsing the
 * server's output (array_out: `{a,"b c","d\"e"}`) and building a literal to send as a
 * parameter. Pure functions, unit-tested without a server.
 */
#ifndef SB_PGARRAY_H
#define SB_PGARRAY_H

#include <stddef.h>
#include <stdint.h>
#include <syncbroker/plugin.h> /* sb_err */

/* Parse a one-dimensional array literal. On success *parts is ONE malloc'd block holding the
 * pointer array and the unescaped strings (the caller free()s *parts once), *n the element
 * count (0 for `{}`; *parts is then still a valid block). An optional dimension decoration
 * (`[0:1]={...}`) is accepted if it declares as many elements as there are. SB_ERR_INVAL
 * for anything malformed, a nested array or a NULL element (keys and column lists never hold
 * NULLs); SB_ERR_NOMEM. */
int sb_pgarray_parse(const char *text, char ***parts, uint32_t *n);

/* Build `{"a","b\"c"}` from n strings (every element quoted, `"` and `\` escaped): a literal
 * that array_in reads back as exactly these strings. *out is malloc'd, owned by the caller. */
int sb_pgarray_build(const char *const *parts, size_t n, char **out);

#endif /* SB_PGARRAY_H */
