/*
 * sb_keyfile.h - CURVE key files (docs/security.md, "Key files").
 *
 * A key file holds one key in Z85 (40 characters, 32 bytes) on a line of its own; blank
 * lines and lines starting with '#' are ignored (no key starts with '#'). sync-keygen writes
 * NAME.key (the secret key, mode 0600) and NAME.pub (the public key). A secret key file that
 * its group or others may read or write is refused, as ssh refuses an exposed private key.
 *
 * Shared by transport_zmq and libsyncclient (compiled into each); needs libzmq for Z85.
 */
#ifndef SB_KEYFILE_H
#define SB_KEYFILE_H

#include <stdbool.h>
#include <stddef.h>

#define SB_KEY_Z85_LEN 40 /* a 32-byte CURVE key in Z85 */

typedef enum sb_key_kind { SB_KEY_PUBLIC, SB_KEY_SECRET } sb_key_kind;

/* Whether s (len characters) is a CURVE key in Z85. */
bool sb_key_z85_valid(const char *s, size_t len);

/* Read the key in `path` into out (NUL-terminated Z85). On error returns a negative sb_err
 * (SB_ERR_IO the file cannot be read, SB_ERR_CONFIG its content or, for a secret key, its
 * mode is wrong) and writes into err a message naming the file (and line, or mode). */
int sb_keyfile_read(const char *path, sb_key_kind kind, char out[SB_KEY_Z85_LEN + 1], char *err,
                    size_t errlen);

/* Write `key` (Z85, NUL-terminated) into a new file `path`, after the comment line
 * "# Syncbroker CURVE secret key of NAME: ..." or "# Syncbroker CURVE public key of NAME".
 * The file is created with O_EXCL, mode 0600 (secret) or 0644 (public), and synced. Returns
 * SB_ERR_STATE when path exists (never overwritten), SB_ERR_IO when it cannot be written (an
 * incomplete file is removed), SB_ERR_INVAL for a bad key or a name with a newline; err gets
 * a message naming the file. */
int sb_keyfile_write(const char *path, sb_key_kind kind, const char *name,
                     const char key[SB_KEY_Z85_LEN + 1], char *err, size_t errlen);

#endif
