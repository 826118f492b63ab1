/*
 * sb_ident.h - the names operators configure that PostgreSQL must read unquoted: table
 * names (the broker's [database] tables, checked again by the PostgreSQL sources), and the
 * plugin and instance names of section headers, which follow the same rule.
 */
#ifndef SB_IDENT_H
#define SB_IDENT_H

#include <stdbool.h>
#include <stddef.h>

/* At most NAMEDATALEN - 1 bytes. */
#define SB_IDENT_MAX 63

/* len bytes of s are [a-z_][a-z0-9_$]*, 1 to SB_IDENT_MAX of them: the unquoted spelling
 * PostgreSQL folds to itself, so the configured name is also the catalog name. */
bool sb_ident_valid(const char *s, size_t len);

/* `schema.name`, each part an sb_ident_valid() identifier; NULL is not. */
bool sb_table_name_valid(const char *name);

#endif /* SB_IDENT_H */
