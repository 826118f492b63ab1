/*
 * tool_args.c - command-line parsing shared by the CLI tools (see tool_args.h).
 */
#include "tool_args.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const struct {
    const char *name;
    unsigned bit;
    bool has_value;
} options[] = {{"--pub", ARG_PUB, true},
               {"--service", ARG_SERVICE, true},
               {"--table", ARG_TABLE, true},
               {"--client-id", ARG_CLIENT_ID, true},
               {"--count", ARG_COUNT, true},
               {"--timeout-ms", ARG_TIMEOUT, true},
               {"--no-snapshot", ARG_NO_SNAPSHOT, false},
               {"--heartbeat-ms", ARG_HEARTBEAT, true},
               {"--server-key", ARG_CURVE, true},
               {"--key", ARG_CURVE, true}};

static int bad(const char *prog, const char *usage, const char *what, const char *arg)
{
    fprintf(stderr, "%s: %s%s%s\n%s", prog, what, arg ? " " : "", arg ? arg : "", usage);
    return -1;
}

/* A decimal number in [1, max]. */
static bool parse_number(const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || *s == '-' || v == 0 || v > max)
        return false;
    *out = v;
    return true;
}

int tool_parse_args(int argc, char **argv, unsigned allowed, unsigned required, const char *usage,
                    tool_args *out)
{
    const char *prog = argv[0];
    memset(out, 0, sizeof(*out));
    out->tables = calloc((size_t)argc, sizeof(*out->tables));
    if (!out->tables)
        return bad(prog, usage, "out of memory", NULL);
    unsigned seen = 0;
    const char *server_key_file = NULL, *key_file = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage, stdout);
            return 1;
        }
        size_t k = 0;
        while (k < sizeof(options) / sizeof(options[0]) &&
               ((options[k].bit & allowed) == 0 || strcmp(argv[i], options[k].name) != 0))
            k++;
        if (k == sizeof(options) / sizeof(options[0]))
            return bad(prog, usage, "unknown argument", argv[i]);
        const char *val = NULL;
        if (options[k].has_value) {
            if (i + 1 >= argc || !argv[i + 1][0])
                return bad(prog, usage, "missing value for", argv[i]);
            val = argv[++i];
        }
        uint64_t num = 0;
        seen |= options[k].bit;
        switch (options[k].bit) {
        case ARG_PUB:
            out->pub = val;
            break;
        case ARG_SERVICE:
            out->service = val;
            break;
        case ARG_CLIENT_ID:
            out->client_id = val;
            break;
        case ARG_TABLE:
            out->tables[out->ntables++] = val;
            break;
        case ARG_NO_SNAPSHOT:
            out->no_snapshot = true;
            break;
        case ARG_CURVE:
            *(strcmp(options[k].name, "--key") == 0 ? &key_file : &server_key_file) = val;
            break;
        default:
            if (!parse_number(val, options[k].bit == ARG_COUNT ? UINT64_MAX : INT32_MAX, &num))
                return bad(prog, usage, "expected a positive number after", argv[i - 1]);
            if (options[k].bit == ARG_COUNT)
                out->count = num;
            else if (options[k].bit == ARG_TIMEOUT)
                out->timeout_ms = (uint32_t)num;
            else
                out->heartbeat_ms = (uint32_t)num;
        }
    }
    for (size_t k = 0; k < sizeof(options) / sizeof(options[0]); k++)
        if ((required & options[k].bit) && !(seen & options[k].bit))
            return bad(prog, usage, "missing required", options[k].name);
    if (!server_key_file != !key_file)
        return bad(prog, usage, "--server-key and --key go together: missing",
                   key_file ? "--server-key" : "--key");
    if (key_file) {
        sb_client_config keyed = {0};
        char err[512];
        int rc = sb_client_config_load_keys(&keyed, &out->keys, server_key_file, key_file, err,
                                            sizeof(err));
        if (rc != SB_OK) {
            fprintf(stderr, "%s: %s\n", prog, err);
            return -1;
        }
        out->curve_server_key = keyed.curve_server_key;
        out->curve_secret_key = keyed.curve_secret_key;
    }
    return 0;
}

void tool_args_free(tool_args *a)
{
    free(a->tables);
    a->tables = NULL;
    memset(&a->keys, 0, sizeof(a->keys));
}

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

sb_client_config tool_client_config(const tool_args *a)
{
    return (sb_client_config){.pub_endpoint = a->pub,
                              .service_endpoint = a->service,
                              .client_id = a->client_id,
                              .tables = a->tables,
                              .ntables = a->ntables,
                              .heartbeat_ms = a->heartbeat_ms,
                              .no_snapshot = a->no_snapshot,
                              .curve_server_key = a->curve_server_key,
                              .curve_secret_key = a->curve_secret_key};
}

int tool_client_start(const sb_client_config *cfg, const char *prog, sb_client **out)
{
    *out = NULL;
    sb_client *c = NULL;
    int rc = sb_client_new(cfg, &c);
    rc = rc ? rc : sb_client_start(c);
    if (rc != SB_OK) {
        fprintf(stderr, "%s: cannot start: %s\n", prog, sb_strerror(rc));
        sb_client_destroy(c);
        return rc;
    }
    *out = c;
    return SB_OK;
}

void tool_catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

bool tool_stopping(void)
{
    return stopping != 0;
}

uint64_t tool_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
