/*
 * bench_curve.c - CURVE options of the benchmark clients (see bench_curve.h).
 */
#include "bench_curve.h"

#include <stdio.h>
#include <string.h>
#include <zmq.h>

int bench_curve_load(bench_curve *c, const char *server_key_file, const char *key_file)
{
    char err[512];
    memset(c, 0, sizeof(*c));
    if (!server_key_file && !key_file)
        return 0;
    if (!server_key_file || !key_file) {
        fprintf(stderr, "CURVE needs both --server-key and --key\n");
        return -1;
    }
    if (sb_keyfile_read(server_key_file, SB_KEY_PUBLIC, c->server, err, sizeof(err)) != 0 ||
        sb_keyfile_read(key_file, SB_KEY_SECRET, c->secret, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    if (zmq_curve_public(c->public_, c->secret) != 0) {
        fprintf(stderr, "%s: %s\n", key_file, zmq_strerror(zmq_errno()));
        return -1;
    }
    c->on = true;
    return 0;
}

int bench_curve_client(const bench_curve *c, void *sock)
{
    if (!c->on)
        return 0;
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, c->server, SB_KEY_Z85_LEN) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, c->public_, SB_KEY_Z85_LEN) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, c->secret, SB_KEY_Z85_LEN) != 0) {
        fprintf(stderr, "CURVE client options: %s\n", zmq_strerror(zmq_errno()));
        return -1;
    }
    return 0;
}

int bench_curve_server(void *sock, const char *secret_key_file)
{
    char secret[SB_KEY_Z85_LEN + 1], err[512];
    int one = 1;
    if (sb_keyfile_read(secret_key_file, SB_KEY_SECRET, secret, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof(one)) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, secret, SB_KEY_Z85_LEN) != 0) {
        fprintf(stderr, "CURVE server options: %s\n", zmq_strerror(zmq_errno()));
        return -1;
    }
    return 0;
}
