/*
 * sync-snapshot - print a snapshot as JSON lines {table, key, version, row}.
 */
#include "tool_args.h"

#include <syncbroker/client.h>

#include <stdio.h>
#include <stdlib.h>

static const char usage[] =
    "usage: sync-snapshot --service EP [--table T ...] [--timeout-ms MS]\n"
    "                     [--server-key FILE --key FILE]\n"
    "  Prints one JSON line per row: {\"table\",\"key\",\"version\",\"row\"}.\n"
    "  --server-key FILE --key FILE: CURVE, with the broker's public key file (its .pub)\n"
    "  and this client's secret key file (its .key, mode 0600); docs/security.md.\n";

static int print_row(const sb_client_row *row, void *ud)
{
    char *json;
    int rc = sb_client_row_json(row, &json);
    if (rc != SB_OK)
        return rc;
    puts(json);
    free(json);
    ++*(size_t *)ud;
    return 0;
}

int main(int argc, char **argv)
{
    tool_args a;
    int rc = tool_parse_args(argc, argv, ARG_SERVICE | ARG_TABLE | ARG_TIMEOUT | ARG_CURVE,
                             ARG_SERVICE, usage, &a);
    if (rc != 0) {
        tool_args_free(&a);
        return rc < 0 ? 1 : 0;
    }
    char err[512];
    size_t rows = 0;
    sb_client_config cfg = tool_client_config(&a);
    cfg.request_timeout_ms = a.timeout_ms;
    rc = sb_client_fetch_snapshot_cfg(&cfg, print_row, &rows, NULL, err, sizeof(err));
    tool_args_free(&a);
    if (fflush(stdout) != 0 && rc == SB_OK)
        rc = SB_ERR_IO, snprintf(err, sizeof(err), "cannot write the output");
    if (rc != SB_OK) {
        fprintf(stderr, "sync-snapshot: %s\n", err[0] ? err : sb_strerror(rc));
        return 1;
    }
    return 0;
}
