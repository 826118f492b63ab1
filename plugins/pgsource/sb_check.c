/* sb_check.c - see sb_check.h. */
#include "sb_check.h"
#include "sb_pgarray.h"
#include "sb_reader_lock.h"
#include "sb_table.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

int sb_check_conninfo(const sb_source_api *api, sb_host *host, const char *conninfo)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &err);
    if (opts) {
        PQconninfoFree(opts);
        return SB_OK;
    }
    if (!err) /* libpq's way of saying it ran out of memory */
        return SB_ERR_NOMEM;
    size_t len = strlen(err);
    while (len > 0 && (err[len - 1] == '\n' || err[len - 1] == ' '))
        err[--len] = '\0';
    SB_CONFIG_ERROR(api, host, "database", "conninfo",
                    "not a libpq connection string (key=value pairs or a postgresql:// URI): %s",
                    err);
    PQfreemem(err);
    return SB_ERR_CONFIG;
}

/* One table at a time, through the resolution start() runs, so that every bad table is
 * reported and not only the first. *stop when the query itself failed (no schema, lost
 * connection): the other tables would fail the same way. */
static int check_table(const sb_pg_config *cfg, PGconn *conn, const char *name, bool *stop)
{
    char *names;
    int rc = sb_pgarray_build(&name, 1, &names);
    if (rc != SB_OK)
        return rc;
    const char *vals[] = {names};
    PGresult *res = PQexecParams(conn, SB_TABLE_RESOLVE_SQL, 1, NULL, vals, NULL, NULL, 0);
    free(names);
    char msg[512];
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        *stop = true;
        rc = PQstatus(conn) == CONNECTION_BAD ? SB_ERR_DB : SB_ERR_CONFIG;
        if (rc == SB_ERR_CONFIG)
            SB_CONFIG_ERROR(cfg->api, cfg->host, "database", "tables",
                            "resolving the configured tables failed: %s; are the sql/ "
                            "migrations applied (scripts/migrate)?",
                            sb_pg_errmsg(res, msg, sizeof msg));
        PQclear(res);
        return rc;
    }
    sb_table t = {.name = name};
    rc = sb_table_resolve(&t, 1, res, msg, sizeof msg);
    sb_table_clear(&t);
    PQclear(res);
    if (rc == SB_ERR_CONFIG)
        SB_CONFIG_ERROR(cfg->api, cfg->host, "database", "tables", "%s", msg);
    return rc;
}

static int check_reader(const sb_pg_config *cfg, PGconn *conn, const char *reader)
{
    const char *vals[] = {reader};
    PGresult *res = PQexecParams(conn, SB_READER_HOLDER_SQL, 1, NULL, vals, NULL, NULL, 0);
    int rc = SB_OK;
    char msg[256];
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = PQstatus(conn) == CONNECTION_BAD ? SB_ERR_DB : SB_OK;
        if (rc == SB_OK) /* not a refusal: start-up takes the lock whoever may read it */
            cfg->api->base.log(cfg->host, SB_LOG_WARN, "could not check who holds reader '%s': %s",
                               reader, sb_pg_errmsg(res, msg, sizeof msg));
    }
    for (int i = 0; rc == SB_OK && i < PQntuples(res); i++) {
        const char *app = PQgetvalue(res, i, 1);
        SB_CONFIG_ERROR(cfg->api, cfg->host, NULL, "reader", "reader '%s' is held by %s (pid %s)",
                        reader, app[0] ? app : "a session without application_name",
                        PQgetvalue(res, i, 0));
    }
    if (rc == SB_OK && PQntuples(res) > 0)
        rc = SB_ERR_CONFIG;
    PQclear(res);
    return rc;
}

int sb_check_database(const sb_pg_config *cfg, const char *const *names, size_t n,
                      const char *reader)
{
    char err[512];
    PGconn *conn = sb_pg_connect_blocking(cfg, err, sizeof err);
    if (!conn) {
        cfg->api->base.log(cfg->host, SB_LOG_WARN, "PostgreSQL is not reachable: %s", err);
        return SB_ERR_DB;
    }
    int rc = SB_OK;
    bool stop = false;
    for (size_t i = 0; i < n && !stop && rc != SB_ERR_NOMEM; i++) {
        int trc = check_table(cfg, conn, names[i], &stop);
        rc = trc ? trc : rc;
    }
    if (rc != SB_ERR_DB && rc != SB_ERR_NOMEM) {
        int rrc = check_reader(cfg, conn, reader);
        rc = rrc ? rrc : rc;
    }
    if (rc == SB_ERR_DB)
        cfg->api->base.log(cfg->host, SB_LOG_WARN,
                           "connection to PostgreSQL lost during the check");
    PQfinish(conn);
    return rc;
}
