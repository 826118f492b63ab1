/*
 * sb_check.h - what a source's start-up would refuse, found beforehand: a conninfo libpq
 * cannot parse (checked in create(), so the broker never retries it forever), and for
 * `syncbroker --check` the database side: every configured table resolves and is tracked,
 * and no other session holds the reader's lock (sb_reader_lock.h). Each refusal is reported
 * through api->config_error(), naming the config line to fix.
 */
#ifndef SB_CHECK_H
#define SB_CHECK_H

#include "sb_pg.h"

#include <syncbroker/plugin.h>

/* [database] conninfo parses as a libpq connection string (key=value pairs or a URI):
 * 0, SB_ERR_CONFIG (reported) or SB_ERR_NOMEM. */
int sb_check_conninfo(const sb_source_api *api, sb_host *host, const char *conninfo);

/* Connect once (blocking, cfg's connect timeout) and check the n configured tables `names`
 * and the reader `reader`: 0, SB_ERR_CONFIG (each refusal reported), or SB_ERR_DB when
 * PostgreSQL could not be reached or the connection was lost (logged). The connection is
 * closed again. */
int sb_check_database(const sb_pg_config *cfg, const char *const *names, size_t n,
                      const char *reader);

#endif /* SB_CHECK_H */
