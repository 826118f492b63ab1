/*
 * syncbroker/types.h - what the plugin ABI (plugin.h) and the client library (client.h)
 * share: error codes, log levels, change operations and entity keys. Values never change
 * once released; new ones are appended.
 *
 * Depends on the C standard library only.
 */
#ifndef SYNCBROKER_TYPES_H
#define SYNCBROKER_TYPES_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define SB_EXPORT __attribute__((visibility("default")))
#define SB_PRINTF(fmt_idx, args_idx) __attribute__((format(printf, fmt_idx, args_idx)))
#else
#define SB_EXPORT
#define SB_PRINTF(fmt_idx, args_idx)
#endif

/* ---------------------------------------------------------------------------------------
 * Error codes. 0 is success; errors are negative. Values never change once released.
 */
enum sb_err {
    SB_OK = 0,
    SB_ERR_NOMEM = -1,        /* allocation failed */
    SB_ERR_INVAL = -2,        /* bad argument or malformed input */
    SB_ERR_IO = -3,           /* system call failed */
    SB_ERR_DB = -4,           /* PostgreSQL error or connection lost */
    SB_ERR_ZMQ = -5,          /* ZeroMQ error */
    SB_ERR_ABI = -6,          /* plugin ABI mismatch */
    SB_ERR_CONFIG = -7,       /* configuration error */
    SB_ERR_NOTFOUND = -8,     /* no such table, request, entry */
    SB_ERR_BUSY = -9,         /* try again later (queue full, not connected) */
    SB_ERR_STATE = -10,       /* call not allowed in the current state */
    SB_ERR_UNSUPPORTED = -11, /* feature not offered by this plugin or host */
    SB_ERR_DENIED = -12       /* the peer is not allowed to do this (docs/security.md) */
};

/* Human-readable text for an sb_err value. Never NULL. */
static inline const char *sb_strerror(int rc)
{
    switch (rc) {
    case SB_OK:
        return "ok";
    case SB_ERR_NOMEM:
        return "out of memory";
    case SB_ERR_INVAL:
        return "invalid argument";
    case SB_ERR_IO:
        return "I/O error";
    case SB_ERR_DB:
        return "database error";
    case SB_ERR_ZMQ:
        return "ZeroMQ error";
    case SB_ERR_ABI:
        return "plugin ABI mismatch";
    case SB_ERR_CONFIG:
        return "configuration error";
    case SB_ERR_NOTFOUND:
        return "not found";
    case SB_ERR_BUSY:
        return "busy";
    case SB_ERR_STATE:
        return "wrong state";
    case SB_ERR_UNSUPPORTED:
        return "unsupported";
    case SB_ERR_DENIED:
        return "permission denied";
    default:
        return "unknown error";
    }
}

typedef enum sb_log_level {
    SB_LOG_ERROR = 0,
    SB_LOG_WARN = 1,
    SB_LOG_INFO = 2,
    SB_LOG_DEBUG = 3
} sb_log_level;

/* ---------------------------------------------------------------------------------------
 * Changes.
 */
typedef enum sb_op {
    SB_OP_INSERT = 1,
    SB_OP_UPDATE = 2,
    SB_OP_DELETE = 3,
    SB_OP_TRUNCATE = 4 /* whole table; key has no parts */
} sb_op;

/* An entity key: the primary key columns' values in PostgreSQL text form, in key order. */
typedef struct sb_key {
    const char *const *parts; /* nparts NUL-terminated strings */
    uint32_t nparts;          /* 1 for a simple key, 0 for TRUNCATE */
} sb_key;

#ifdef __cplusplus
}
#endif

#endif /* SYNCBROKER_TYPES_H */
