/*
 * sync-keygen - write a CURVE key pair: DIR/NAME.key (secret, 0600) and DIR/NAME.pub (public,
 * 0644), in the key file format of docs/security.md ("Key files"). Existing files are never
 * overwritten. Prints the public key and a clients_file section for the broker.
 */
#include "sb_keyfile.h"

#include <syncbroker/types.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#define NAME_MAX_LEN 64 /* as a clients_file section name */

static const char usage[] =
    "usage: sync-keygen [-d DIR] NAME\n"
    "  Writes DIR/NAME.key (the secret key, mode 0600) and DIR/NAME.pub (the public key);\n"
    "  DIR defaults to the current directory and must exist. Never overwrites a file.\n"
    "  NAME: 1-64 characters of A-Z a-z 0-9 . _ - (the client's name in clients_file).\n"
    "  Prints the public key and a clients_file section for it.\n";

/* The name becomes a file name and a clients_file section: [A-Za-z0-9._-]{1,64}, and not a
 * dot-only name (".", "..") that would name a directory. */
static bool name_valid(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > NAME_MAX_LEN || strspn(name, ".") == len)
        return false;
    return strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == len;
}

static int fail(const char *what, const char *detail)
{
    fprintf(stderr, "sync-keygen: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    return 1;
}

/* Both files or neither: the secret key first (the one that must not leak through a race),
 * and removed again when the public key cannot be written. */
static int write_pair(const char *dir, const char *name)
{
    char key_path[4096], pub_path[4096], err[4200];
    struct stat st;
    if (stat(dir, &st) != 0)
        return fail(dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return fail(dir, "not a directory");
    if (snprintf(key_path, sizeof key_path, "%s/%s.key", dir, name) >= (int)sizeof key_path ||
        snprintf(pub_path, sizeof pub_path, "%s/%s.pub", dir, name) >= (int)sizeof pub_path)
        return fail(dir, "path too long");
    if (lstat(pub_path, &st) == 0) /* checked first so that no .key is left behind */
        return fail(pub_path, "exists (not overwritten)");
    char pub[SB_KEY_Z85_LEN + 1], secret[SB_KEY_Z85_LEN + 1];
    if (zmq_curve_keypair(pub, secret) != 0)
        return fail("zmq_curve_keypair", zmq_strerror(errno));
    int rc = sb_keyfile_write(key_path, SB_KEY_SECRET, name, secret, err, sizeof err);
    memset(secret, 0, sizeof secret);
    if (rc == SB_OK) {
        rc = sb_keyfile_write(pub_path, SB_KEY_PUBLIC, name, pub, err, sizeof err);
        if (rc != SB_OK)
            unlink(key_path);
    }
    if (rc != SB_OK)
        return fail(err, rc == SB_ERR_STATE ? "not overwritten" : NULL);
    printf("# wrote %s (secret key, mode 0600) and %s (public key)\n"
           "# public key: %s\n"
           "# clients_file section for the broker (narrow tables as needed):\n"
           "[%s]\nkey = %s\ntables = *\n",
           key_path, pub_path, pub, name, pub);
    return fflush(stdout) == 0 ? 0 : fail("cannot write the output", NULL);
}

int main(int argc, char **argv)
{
    const char *dir = ".", *name = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        }
        if (strcmp(argv[i], "-d") == 0) {
            if (i + 1 == argc || !argv[i + 1][0]) {
                fprintf(stderr, "sync-keygen: missing DIR after -d\n%s", usage);
                return 1;
            }
            dir = argv[++i];
        } else if (argv[i][0] != '-' && !name) {
            name = argv[i];
        } else {
            fprintf(stderr, "sync-keygen: unexpected argument %s\n%s", argv[i], usage);
            return 1;
        }
    }
    if (!name) {
        fprintf(stderr, "sync-keygen: missing NAME\n%s", usage);
        return 1;
    }
    if (!name_valid(name))
        return fail(name, "not a valid name (1-64 characters of A-Z a-z 0-9 . _ -)");
    if (!zmq_has("curve"))
        return fail("this libzmq was built without CURVE", "no keys can be made or used");
    return write_pair(dir, name);
}
