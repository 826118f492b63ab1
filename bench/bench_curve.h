/*
 * bench_curve.h - CURVE options of the benchmark clients, from key files (docs/security.md,
 * "Key files"): the broker's public key and the client's secret key, the client's public key
 * derived from it, as libsyncclient takes them.
 */
#ifndef SB_BENCH_CURVE_H
#define SB_BENCH_CURVE_H

#include "sb_keyfile.h"

#include <stdbool.h>

typedef struct bench_curve {
    bool on; /* false: plain sockets */
    char server[SB_KEY_Z85_LEN + 1], secret[SB_KEY_Z85_LEN + 1], public_[SB_KEY_Z85_LEN + 1];
} bench_curve;

/* Reads server_key_file (a public key) and key_file (a secret key); both NULL leaves CURVE
 * off. 0, or -1 after printing why to stderr. */
int bench_curve_load(bench_curve *c, const char *server_key_file, const char *key_file);

/* Makes sock a CURVE client of the broker (before zmq_connect); nothing when c is off. */
int bench_curve_client(const bench_curve *c, void *sock);

/* Makes sock a CURVE server with the secret key in secret_key_file (the throughput floor's
 * publisher; without a ZAP handler libzmq lets in every client that knows its public key). */
int bench_curve_server(void *sock, const char *secret_key_file);

#endif
