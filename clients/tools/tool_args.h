/*
 * tool_args.h - command-line parsing shared by sync-tail, sync-snapshot and sync-board.
 */
#ifndef SB_TOOL_ARGS_H
#define SB_TOOL_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <syncbroker/client.h>

/* Options a tool accepts (bit mask). */
enum {
    ARG_PUB = 1 << 0,         /* --pub EP */
    ARG_SERVICE = 1 << 1,     /* --service EP */
    ARG_TABLE = 1 << 2,       /* --table T (repeatable) */
    ARG_CLIENT_ID = 1 << 3,   /* --client-id ID */
    ARG_COUNT = 1 << 4,       /* --count N */
    ARG_TIMEOUT = 1 << 5,     /* --timeout-ms MS */
    ARG_NO_SNAPSHOT = 1 << 6, /* --no-snapshot */
    ARG_HEARTBEAT = 1 << 7,   /* --heartbeat-ms MS */
    ARG_CURVE = 1 << 8        /* --server-key FILE and --key FILE (both or neither) */
};

typedef struct tool_args {
    const char *pub, *service, *client_id; /* borrowed from argv */
    const char **tables;                   /* malloc'd array of argv pointers */
    size_t ntables;
    uint64_t count;      /* 0: unlimited */
    uint32_t timeout_ms; /* 0: none */
    uint32_t heartbeat_ms;
    bool no_snapshot;
    /* CURVE: read from the key files by tool_parse_args(); NULL for plain, else into keys */
    const char *curve_server_key, *curve_secret_key;
    sb_client_keys keys;
} tool_args;

/* Parse argv and read the key files of --server-key and --key. On a bad or missing argument
 * prints "<prog>: <problem>" (and the usage, unless a key file is the problem) to stderr and
 * returns -1 (exit status 1); returns 1 after printing the usage for --help. */
int tool_parse_args(int argc, char **argv, unsigned allowed, unsigned required, const char *usage,
                    tool_args *out);
void tool_args_free(tool_args *a);

/* A client config from the shared options (endpoints, client id, tables, heartbeat,
 * --no-snapshot, CURVE keys); it borrows from a. The caller adds callbacks and anything else. */
sb_client_config tool_client_config(const tool_args *a);

/* sb_client_new() and sb_client_start(). On failure prints "<prog>: cannot start: ...",
 * leaves *out NULL and returns the error. */
int tool_client_start(const sb_client_config *cfg, const char *prog, sb_client **out);

/* Install SIGINT/SIGTERM handlers that set the flag returned by tool_stopping(). */
void tool_catch_signals(void);
bool tool_stopping(void);

/* Monotonic milliseconds. */
uint64_t tool_now_ms(void);

#endif
