/*
 * sb_keyfile.c - CURVE key files (see sb_keyfile.h).
 */
#include "sb_keyfile.h"

#include "syncbroker/types.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#define SB_KEYFILE_MAX 4096 /* a key file is a key and a few comment lines */

bool sb_key_z85_valid(const char *s, size_t len)
{
    char z85[SB_KEY_Z85_LEN + 1];
    uint8_t raw[32];
    if (len != SB_KEY_Z85_LEN)
        return false;
    memcpy(z85, s, len);
    z85[len] = '\0';
    return zmq_z85_decode(raw, z85) != NULL;
}

/* Trim spaces, tabs and a CR at both ends of [*s, *s + *len). */
static void trim(const char **s, size_t *len)
{
    while (*len && strchr(" \t\r", (*s)[0]))
        (*s)++, (*len)--;
    while (*len && strchr(" \t\r", (*s)[*len - 1]))
        (*len)--;
}

/* Find the one key line of text; 0 or SB_ERR_CONFIG with err set. */
static int parse(const char *path, const char *text, size_t size, char out[SB_KEY_Z85_LEN + 1],
                 char *err, size_t errlen)
{
    unsigned lineno = 0, found = 0;
    for (const char *p = text; p < text + size;) {
        const char *nl = memchr(p, '\n', (size_t)(text + size - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(text + size - p);
        const char *line = p;
        p += len + (nl != NULL);
        lineno++;
        trim(&line, &len);
        /* '#' is a Z85 digit but never a key's first: that digit is at most '%' (< 2^32). */
        if (len == 0 || line[0] == '#')
            continue;
        if (!sb_key_z85_valid(line, len)) {
            snprintf(err, errlen, "%s:%u: not a CURVE key (40 characters of Z85)", path, lineno);
            return SB_ERR_CONFIG;
        }
        if (found) {
            snprintf(err, errlen, "%s:%u: a second key (the first is on line %u)", path, lineno,
                     found);
            return SB_ERR_CONFIG;
        }
        memcpy(out, line, SB_KEY_Z85_LEN);
        out[SB_KEY_Z85_LEN] = '\0';
        found = lineno;
    }
    if (!found) {
        snprintf(err, errlen, "%s: no key in the file", path);
        return SB_ERR_CONFIG;
    }
    return SB_OK;
}

int sb_keyfile_read(const char *path, sb_key_kind kind, char out[SB_KEY_Z85_LEN + 1], char *err,
                    size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return SB_ERR_IO;
    }
    struct stat st;
    char text[SB_KEYFILE_MAX];
    ssize_t got = -1;
    int rc = SB_OK;
    if (fstat(fd, &st) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        rc = SB_ERR_IO;
    } else if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        rc = SB_ERR_CONFIG;
    } else if (kind == SB_KEY_SECRET && (st.st_mode & 077)) {
        snprintf(err, errlen,
                 "%s: a secret key file must be private to its owner, but its mode is %04o "
                 "(chmod 600 it)",
                 path, (unsigned)(st.st_mode & 07777));
        rc = SB_ERR_CONFIG;
    } else if ((got = read(fd, text, sizeof text)) < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        rc = SB_ERR_IO;
    } else if ((size_t)got == sizeof text) {
        snprintf(err, errlen, "%s: larger than %d bytes: not a key file", path, SB_KEYFILE_MAX);
        rc = SB_ERR_CONFIG;
    } else {
        rc = parse(path, text, (size_t)got, out, err, errlen);
    }
    close(fd);
    /* The secret's copy on the stack goes with this frame; wipe it first. */
    memset(text, 0, sizeof text);
    return rc;
}

int sb_keyfile_write(const char *path, sb_key_kind kind, const char *name,
                     const char key[SB_KEY_Z85_LEN + 1], char *err, size_t errlen)
{
    if (strchr(name, '\n') || !sb_key_z85_valid(key, strlen(key))) {
        snprintf(err, errlen, "%s: not written: bad name or key", path);
        return SB_ERR_INVAL;
    }
    bool secret = kind == SB_KEY_SECRET;
    mode_t mode = secret ? 0600 : 0644;
    /* O_EXCL: a key is never replaced by accident (nor through a planted symlink). */
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, mode);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return errno == EEXIST ? SB_ERR_STATE : SB_ERR_IO;
    }
    char text[256];
    int len =
        snprintf(text, sizeof text,
                 secret ? "# Syncbroker CURVE secret key of %s: keep it private (mode 0600)\n%s\n"
                        : "# Syncbroker CURVE public key of %s\n%s\n",
                 name, key);
    int rc = SB_OK;
    if (len < 0 || (size_t)len >= sizeof text) {
        snprintf(err, errlen, "%s: not written: the name is too long", path);
        rc = SB_ERR_INVAL;
    } else if (fchmod(fd, mode) != 0 || write(fd, text, (size_t)len) != len || fsync(fd) != 0) {
        /* fchmod: the umask must not make the public key unreadable to the broker's user. */
        snprintf(err, errlen, "%s: %s", path, strerror(errno ? errno : EIO));
        rc = SB_ERR_IO;
    }
    if (close(fd) != 0 && rc == SB_OK) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        rc = SB_ERR_IO;
    }
    if (rc != SB_OK)
        unlink(path); /* ours (O_EXCL), and incomplete */
    memset(text, 0, sizeof text);
    return rc;
}
