/*
 * sync-tail - print a Syncbroker event stream as JSON lines.
 *
 * Each change event is printed as its msgpack body rendered as JSON (the protocol's fields:
 * seq, tseq, epoch, table, key, op, version, origin, ts, row, n) plus "own", one line per
 * event, flushed at once. Online/offline transitions and diagnostics go to stderr.
 */
#include "tool_args.h"

#include <syncbroker/client.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: sync-tail --pub EP --service EP [--table T ...] [--client-id ID] [--count N]\n"
    "                 [--timeout-ms MS] [--heartbeat-ms MS] [--no-snapshot]\n"
    "                 [--server-key FILE --key FILE]\n"
    "  Prints every change event as one JSON line. --count N exits 0 after N events;\n"
    "  --timeout-ms MS exits after MS ms (status 1 if --count events did not arrive).\n"
    "  --server-key FILE --key FILE: CURVE, with the broker's public key file (its .pub)\n"
    "  and this client's secret key file (its .key, mode 0600); docs/security.md.\n";

typedef struct tail {
    uint64_t printed;
    int status; /* set when printing failed */
} tail;

static void on_event(const sb_client_event *ev, void *ud)
{
    tail *t = ud;
    char *json;
    int rc = sb_client_json(ev->body, ev->body_len, &json);
    if (rc != SB_OK) {
        fprintf(stderr, "sync-tail: cannot render event seq %llu: %s\n",
                (unsigned long long)ev->seq, sb_strerror(rc));
        return;
    }
    /* The body is a map: close it with the client-side "own" flag. */
    size_t len = strlen(json);
    printf("%.*s%s\"own\":%s}\n", (int)(len - 1), json, len > 2 ? "," : "",
           ev->own ? "true" : "false");
    free(json);
    if (fflush(stdout) != 0)
        t->status = 1;
    t->printed++;
}

static void on_online(bool online, void *ud)
{
    (void)ud;
    fprintf(stderr, "%s\n", online ? "online" : "offline");
}

static void on_log(sb_log_level level, const char *msg, void *ud)
{
    (void)ud;
    if (level <= SB_LOG_WARN)
        fprintf(stderr, "sync-tail: %s\n", msg);
}

int main(int argc, char **argv)
{
    tool_args a;
    int rc = tool_parse_args(argc, argv,
                             ARG_PUB | ARG_SERVICE | ARG_TABLE | ARG_CLIENT_ID | ARG_COUNT |
                                 ARG_TIMEOUT | ARG_NO_SNAPSHOT | ARG_HEARTBEAT | ARG_CURVE,
                             ARG_PUB | ARG_SERVICE, usage, &a);
    if (rc != 0) {
        tool_args_free(&a);
        return rc < 0 ? 1 : 0;
    }
    tail t = {0, 0};
    sb_client_config cfg = tool_client_config(&a);
    cfg.no_cache = true; /* versions suffice to drop stale events; rows are printed */
    cfg.cb = (sb_client_callbacks){.on_event = on_event, .on_online = on_online, .on_log = on_log};
    cfg.ud = &t;
    sb_client *c;
    if (tool_client_start(&cfg, "sync-tail", &c) != SB_OK) {
        tool_args_free(&a);
        return 1;
    }
    tool_catch_signals();
    uint64_t start = tool_now_ms();
    int status = 0;
    while (!tool_stopping() && t.status == 0 && (!a.count || t.printed < a.count)) {
        uint64_t now = tool_now_ms();
        if (a.timeout_ms && now - start >= a.timeout_ms) {
            if (a.count) {
                fprintf(stderr, "sync-tail: timeout: %llu of %llu events after %u ms\n",
                        (unsigned long long)t.printed, (unsigned long long)a.count, a.timeout_ms);
                status = 1;
            }
            break;
        }
        int wait = a.timeout_ms ? (int)(a.timeout_ms - (now - start)) : -1;
        rc = sb_client_poll(c, wait);
        /* A refused request (unknown table, bad request, a table beyond this key's rights)
         * will not get better by retrying. */
        if (rc == SB_ERR_NOTFOUND || rc == SB_ERR_INVAL || rc == SB_ERR_DENIED ||
            rc == SB_ERR_UNSUPPORTED || rc == SB_ERR_NOMEM || rc == SB_ERR_ZMQ) {
            fprintf(stderr, "sync-tail: %s\n", sb_strerror(rc));
            status = 1;
            break;
        }
    }
    sb_client_destroy(c);
    tool_args_free(&a);
    return status ? status : t.status;
}
