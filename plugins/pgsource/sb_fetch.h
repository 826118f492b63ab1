/*
 * sb_fetch.h - answer a fetch() request: the current rows of some keys of one table, read in
 * one statement together with their versions (sb_table.fetch_sql), delivered with
 * api->rows() (absent rows with row == NULL) and finished with api->done().
 */
#ifndef SB_FETCH_H
#define SB_FETCH_H

#include "sb_pg.h"
#include "sb_table.h"

#include <stddef.h>
#include <stdint.h>
#include <syncbroker/plugin.h>

/* Queue the fetch on pg. Keys are copied. SB_ERR_INVAL when a key has the wrong number of
 * parts or n is 0; SB_ERR_BUSY / SB_ERR_NOMEM from the queue. On success api->done(req) follows
 * exactly once, unless the connection is closed by its owner first. */
int sb_fetch_start(sb_pg *pg, const sb_source_api *api, sb_host *host, const sb_table *t,
                   uint64_t req, const sb_key *keys, size_t n);

#endif /* SB_FETCH_H */
