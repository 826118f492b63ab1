/*
 * curve.c - CURVE client keys (see curve.h).
 */
#include "curve.h"

#include <syncbroker/client.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

_Static_assert(SB_CLIENT_KEY_LEN == SB_KEY_Z85_LEN, "client.h and sb_keyfile.h agree");

int sb_curve_init(sb_curve *k, const char *server_key, const char *secret_key, char *err,
                  size_t errlen)
{
    memset(k, 0, sizeof(*k));
    if (!server_key && !secret_key)
        return SB_OK;
    if (!server_key || !secret_key) {
        snprintf(err, errlen, "CURVE needs both the broker's public key and a secret key");
        return SB_ERR_INVAL;
    }
    if (!zmq_has("curve")) {
        snprintf(err, errlen, "this libzmq was built without CURVE");
        return SB_ERR_UNSUPPORTED;
    }
    const char *bad = !sb_key_z85_valid(server_key, strlen(server_key))   ? "broker's public key"
                      : !sb_key_z85_valid(secret_key, strlen(secret_key)) ? "secret key"
                                                                          : NULL;
    if (bad) {
        snprintf(err, errlen, "the %s is not a CURVE key (40 characters of Z85)", bad);
        return SB_ERR_INVAL;
    }
    memcpy(k->server, server_key, sizeof(k->server));
    memcpy(k->secret, secret_key, sizeof(k->secret));
    if (zmq_curve_public(k->public_key, k->secret) != 0) {
        snprintf(err, errlen, "cannot derive the public key: %s", zmq_strerror(errno));
        sb_curve_clear(k);
        return SB_ERR_INVAL;
    }
    k->on = true;
    return SB_OK;
}

int sb_curve_apply(const sb_curve *k, void *sock)
{
    if (!k->on)
        return SB_OK;
    return zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, k->server, sizeof(k->server)) == 0 &&
                   zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, k->public_key,
                                  sizeof(k->public_key)) == 0 &&
                   zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, k->secret, sizeof(k->secret)) == 0
               ? SB_OK
               : SB_ERR_ZMQ;
}

void sb_curve_clear(sb_curve *k)
{
    /* volatile: a memset right before the memory dies may be optimised away. */
    volatile char *p = (volatile char *)k;
    for (size_t i = 0; i < sizeof(*k); i++)
        p[i] = 0;
}

int sb_client_config_load_keys(sb_client_config *cfg, sb_client_keys *keys,
                               const char *server_pub_path, const char *secret_key_path, char *err,
                               size_t errlen)
{
    char no_err[1];
    if (!err || !errlen)
        err = no_err, errlen = sizeof(no_err);
    if (!cfg || !keys || !server_pub_path || !secret_key_path) {
        snprintf(err, errlen, "CURVE needs the broker's public key file and a secret key file");
        return SB_ERR_INVAL;
    }
    int rc = sb_keyfile_read(server_pub_path, SB_KEY_PUBLIC, keys->server_key, err, errlen);
    rc = rc ? rc : sb_keyfile_read(secret_key_path, SB_KEY_SECRET, keys->secret_key, err, errlen);
    if (rc != SB_OK)
        return rc;
    cfg->curve_server_key = keys->server_key;
    cfg->curve_secret_key = keys->secret_key;
    return SB_OK;
}
