/*
 * sb_pg.h - one asynchronous PostgreSQL connection on the broker's loop.
 *
 * Connects with PQconnectStartParams/PQconnectPoll (its own connect timeout: libpq ignores
 * connect_timeout there), re-watches the socket whenever libpq changes it, and reconnects
 * with exponential back-off and jitter after any failure or loss. Queries wait in a FIFO and
 * run one at a time (PQsendQueryParams or a prepared statement, PQflush until done,
 * PQconsumeInput/PQisBusy/ PQgetResult as the socket becomes readable); NOTIFY messages are drained
 * after every read and every result. Connection failures are logged here, rate-limited; query
 * errors are left to the query's owner, who knows what the query was for.
 *
 * Every connection sets application_name (e.g. "syncbroker-snapshot"), overriding the
 * conninfo's, so operators and tests can find the broker's backends.
 *
 * Callbacks run on the loop thread, may queue further queries, and must not free the sb_pg.
 */
#ifndef SB_PG_H
#define SB_PG_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>
#include <syncbroker/plugin.h>

typedef struct sb_pg sb_pg;

typedef struct sb_pg_config {
    const sb_source_api *api;
    sb_host *host;
    const char *conninfo; /* borrowed: must outlive the sb_pg */
    const char *app_name; /* application_name; copied */
    const char *label; /* names the connection in log lines, e.g. "snapshot connection"; copied */
    uint32_t reconnect_min_ms, reconnect_max_ms, connect_timeout_ms;
    void (*on_ready)(void *ud); /* connected; may be NULL */
    void (*on_lost)(void *ud);  /* may be NULL */
    void (*on_notify)(void *ud, const char *channel, const char *payload); /* may be NULL */
    void *ud;
} sb_pg_config;

/* Called with every PGresult of a query (borrowed: cleared after the call; error results
 * included), then once more with res == NULL and the outcome: 0, SB_ERR_DB (the query failed
 * or the connection dropped) or SB_ERR_STATE (the owner closed the connection: make no host
 * calls then, just release what ud holds). */
typedef void (*sb_pg_result_fn)(void *ud, const PGresult *res, int status);

#define SB_PG_SINGLE_ROW 0x1u /* PQsetSingleRowMode: one PGRES_SINGLE_TUPLE result per row */
/* Prepare sql once per connection (found again by its text) and execute the statement: for
 * the queries run on every read, whose parsing and planning cost more than their execution.
 * A statement a schema change broke (e.g. a column added to a table read with t.*: "cached
 * plan must not change result type") is prepared afresh next time: it costs one failed query. */
#define SB_PG_PREPARE 0x2u

int sb_pg_create(const sb_pg_config *cfg, sb_pg **out);

/* Start connecting in the background: 0 when connecting or connected (no-op then),
 * SB_ERR_BUSY while waiting to reconnect after a failure. */
int sb_pg_connect(sb_pg *pg);

/* Blocking connect for use before the loop runs (start()): PQconnectdbParams with
 * connect_timeout. Returns the connection, or NULL with err filled. */
PGconn *sb_pg_connect_blocking(const sb_pg_config *cfg, char *err, size_t errlen);

/* Take over a connection made by sb_pg_connect_blocking(): it becomes non-blocking and
 * on_ready runs. The sb_pg owns conn from here on, also when this fails. */
int sb_pg_adopt(sb_pg *pg, PGconn *conn);

/* Connected and able to run queries now. */
bool sb_pg_ready(const sb_pg *pg);

/* Neither connecting, connected nor waiting to reconnect (never started, or closed). */
bool sb_pg_idle(const sb_pg *pg);

/* Queue a query (text parameters, text results). sql and params are copied. Accepted while
 * connecting or connected; SB_ERR_BUSY while waiting to reconnect or idle; SB_ERR_NOMEM.
 * When this returns an error, fn is never called. */
int sb_pg_query(sb_pg *pg, const char *sql, int nparams, const char *const *params, unsigned flags,
                sb_pg_result_fn fn, void *ud);

/* Disconnect: cancel the running query (blocking briefly), PQfinish, remove the watch and
 * timers, fail every queued query with SB_ERR_STATE. The sb_pg can connect again later. */
void sb_pg_close(sb_pg *pg);

/* Close and free. NULL is ignored. */
void sb_pg_free(sb_pg *pg);

/* SQLSTATE of an error result, or "" (never NULL). */
const char *sb_pg_sqlstate(const PGresult *res);

/* The primary error message of a result without the trailing newline, copied into buf. */
const char *sb_pg_errmsg(const PGresult *res, char *buf, size_t len);

#endif /* SB_PG_H */
