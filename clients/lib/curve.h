/*
 * curve.h - the CURVE client keys of a connection (docs/security.md): checked once, applied to
 * every socket the library opens (SUB, DEALER, and each DEALER a retry reopens).
 *
 * Ownership: an sb_curve is a plain value; its owner wipes it with sb_curve_clear().
 */
#ifndef SB_CLIENT_CURVE_H
#define SB_CLIENT_CURVE_H

#include <stdbool.h>
#include <stddef.h>

#include "sb_keyfile.h"

typedef struct sb_curve {
    bool on; /* false: plain (NULL mechanism) */
    char server[SB_KEY_Z85_LEN + 1], public_key[SB_KEY_Z85_LEN + 1], secret[SB_KEY_Z85_LEN + 1];
} sb_curve;

/* Fill k from the broker's public key and this client's secret key (Z85; both NULL: plain).
 * SB_ERR_INVAL when only one is given or one is not a key, SB_ERR_UNSUPPORTED when libzmq has
 * no CURVE; err gets a one-line message. */
int sb_curve_init(sb_curve *k, const char *server_key, const char *secret_key, char *err,
                  size_t errlen);

/* Make sock a CURVE client of k (nothing when plain); before zmq_connect(). 0 or SB_ERR_ZMQ. */
int sb_curve_apply(const sb_curve *k, void *sock);

void sb_curve_clear(sb_curve *k);

#endif
