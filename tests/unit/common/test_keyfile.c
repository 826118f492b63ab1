/* Unit tests of sb_keyfile: reading and writing CURVE key files (docs/security.md). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sb_keyfile.h"
#include "syncbroker/types.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

/* Z85 of 32 bytes of 0xff: the largest key, so no key starts with a digit above '%' (such as
 * '#', the comment marker). */
#define MAX_KEY "%nSc0%nSc0%nSc0%nSc0%nSc0%nSc0%nSc0%nSc0"
#define HASH_KEY "#nSc0%nSc0%nSc0%nSc0%nSc0%nSc0%nSc0%nSc0" /* beyond 2^32 in its first group */

typedef struct dir {
    char path[64];
    char file[128];
} dir;

static int setup(void **state)
{
    dir *d = calloc(1, sizeof(*d));
    snprintf(d->path, sizeof(d->path), "/tmp/sb_keyfile_XXXXXX");
    if (!mkdtemp(d->path))
        return -1;
    *state = d;
    return 0;
}

static int teardown(void **state)
{
    dir *d = *state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d->path);
    int rc = system(cmd);
    free(d);
    return rc;
}

/* Write text into DIR/name with mode; returns the path (in d). */
static const char *put(dir *d, const char *name, const char *text, mode_t mode)
{
    snprintf(d->file, sizeof(d->file), "%s/%s", d->path, name);
    unlink(d->file);
    int fd = open(d->file, O_WRONLY | O_CREAT | O_EXCL, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(fchmod(fd, mode), 0); /* whatever the umask */
    close(fd);
    return d->file;
}

static void keypair(char pub[SB_KEY_Z85_LEN + 1], char secret[SB_KEY_Z85_LEN + 1])
{
    assert_int_equal(zmq_curve_keypair(pub, secret), 0);
}

static void test_read_good_and_comments(void **state)
{
    dir *d = *state;
    char pub[41], secret[41], out[41], err[512], text[256];
    keypair(pub, secret);
    snprintf(text, sizeof(text), "%s\n", pub);
    assert_int_equal(
        sb_keyfile_read(put(d, "a.pub", text, 0644), SB_KEY_PUBLIC, out, err, sizeof(err)), SB_OK);
    assert_string_equal(out, pub);
    /* Comments, blank lines, spaces, CRLF and no final newline. */
    snprintf(text, sizeof(text), "# the key of desk-a\r\n\n   # indented comment\n  %s \r", secret);
    assert_int_equal(
        sb_keyfile_read(put(d, "a.key", text, 0600), SB_KEY_SECRET, out, err, sizeof(err)), SB_OK);
    assert_string_equal(out, secret);
    /* A line starting with '#' is a comment: no key starts so. */
    assert_true(sb_key_z85_valid(MAX_KEY, strlen(MAX_KEY)));
    assert_false(sb_key_z85_valid(HASH_KEY, strlen(HASH_KEY)));
    assert_int_equal(sb_keyfile_read(put(d, "m.pub", HASH_KEY "\n" MAX_KEY "\n", 0644),
                                     SB_KEY_PUBLIC, out, err, sizeof(err)),
                     SB_OK);
    assert_string_equal(out, MAX_KEY);
}

static void test_read_refuses_bad_content(void **state)
{
    dir *d = *state;
    char pub[41], secret[41], out[41], err[512], text[256], want[256];
    keypair(pub, secret);
    /* Two keys: both lines named. */
    snprintf(text, sizeof(text), "# two\n%s\n\n%s\n", pub, MAX_KEY);
    const char *path = put(d, "two.pub", text, 0644);
    assert_int_equal(sb_keyfile_read(path, SB_KEY_PUBLIC, out, err, sizeof(err)), SB_ERR_CONFIG);
    snprintf(want, sizeof(want), "%s:4: a second key (the first is on line 2)", path);
    assert_string_equal(err, want);
    /* Not Z85: a character outside the alphabet, a wrong length. */
    snprintf(text, sizeof(text), "%.39s,\n", pub);
    path = put(d, "bad.pub", text, 0644);
    assert_int_equal(sb_keyfile_read(path, SB_KEY_PUBLIC, out, err, sizeof(err)), SB_ERR_CONFIG);
    snprintf(want, sizeof(want), "%s:1: not a CURVE key (40 characters of Z85)", path);
    assert_string_equal(err, want);
    snprintf(text, sizeof(text), "#\n%.39s\n", pub);
    path = put(d, "short.pub", text, 0644);
    assert_int_equal(sb_keyfile_read(path, SB_KEY_PUBLIC, out, err, sizeof(err)), SB_ERR_CONFIG);
    assert_non_null(strstr(err, ":2: not a CURVE key"));
    /* Only comments. */
    path = put(d, "empty.pub", "# nothing here\n\n", 0644);
    assert_int_equal(sb_keyfile_read(path, SB_KEY_PUBLIC, out, err, sizeof(err)), SB_ERR_CONFIG);
    snprintf(want, sizeof(want), "%s: no key in the file", path);
    assert_string_equal(err, want);
}

static void test_read_secret_mode_and_missing(void **state)
{
    dir *d = *state;
    char pub[41], secret[41], out[41], err[512], text[64], want[512];
    keypair(pub, secret);
    snprintf(text, sizeof(text), "%s\n", secret);
    const char *path = put(d, "open.key", text, 0640);
    assert_int_equal(sb_keyfile_read(path, SB_KEY_SECRET, out, err, sizeof(err)), SB_ERR_CONFIG);
    snprintf(want, sizeof(want),
             "%s: a secret key file must be private to its owner, but its mode is 0640 "
             "(chmod 600 it)",
             path);
    assert_string_equal(err, want);
    /* The same file as a public key: its mode does not matter. */
    assert_int_equal(sb_keyfile_read(path, SB_KEY_PUBLIC, out, err, sizeof(err)), SB_OK);
    path = put(d, "other.key", text, 0604);
    assert_int_equal(sb_keyfile_read(path, SB_KEY_SECRET, out, err, sizeof(err)), SB_ERR_CONFIG);
    assert_non_null(strstr(err, "its mode is 0604"));
    snprintf(d->file, sizeof(d->file), "%s/missing.key", d->path);
    assert_int_equal(sb_keyfile_read(d->file, SB_KEY_SECRET, out, err, sizeof(err)), SB_ERR_IO);
    snprintf(want, sizeof(want), "%s: No such file or directory", d->file);
    assert_string_equal(err, want);
    assert_int_equal(sb_keyfile_read(d->path, SB_KEY_PUBLIC, out, err, sizeof(err)), SB_ERR_CONFIG);
    assert_non_null(strstr(err, "not a regular file"));
}

static void test_write_then_read(void **state)
{
    dir *d = *state;
    char pub[41], secret[41], out[41], err[512], key_path[128], pub_path[128];
    keypair(pub, secret);
    snprintf(key_path, sizeof(key_path), "%s/desk-a.key", d->path);
    snprintf(pub_path, sizeof(pub_path), "%s/desk-a.pub", d->path);
    mode_t old = umask(077); /* the written modes do not depend on the umask */
    assert_int_equal(sb_keyfile_write(key_path, SB_KEY_SECRET, "desk-a", secret, err, sizeof(err)),
                     SB_OK);
    assert_int_equal(sb_keyfile_write(pub_path, SB_KEY_PUBLIC, "desk-a", pub, err, sizeof(err)),
                     SB_OK);
    umask(old);
    struct stat st;
    assert_int_equal(stat(key_path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(stat(pub_path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0644);
    assert_int_equal(sb_keyfile_read(key_path, SB_KEY_SECRET, out, err, sizeof(err)), SB_OK);
    assert_string_equal(out, secret);
    assert_int_equal(sb_keyfile_read(pub_path, SB_KEY_PUBLIC, out, err, sizeof(err)), SB_OK);
    assert_string_equal(out, pub);
    /* The comment line says what the file is and whose. */
    FILE *f = fopen(pub_path, "r");
    char line[128];
    assert_non_null(fgets(line, sizeof(line), f));
    fclose(f);
    assert_string_equal(line, "# Syncbroker CURVE public key of desk-a\n");
    f = fopen(key_path, "r");
    assert_non_null(fgets(line, sizeof(line), f));
    fclose(f);
    assert_non_null(strstr(line, "# Syncbroker CURVE secret key of desk-a"));
    /* Never overwritten: the old key stays. */
    char pub2[41], secret2[41];
    keypair(pub2, secret2);
    assert_int_equal(sb_keyfile_write(key_path, SB_KEY_SECRET, "desk-a", secret2, err, sizeof(err)),
                     SB_ERR_STATE);
    assert_non_null(strstr(err, key_path));
    assert_int_equal(sb_keyfile_read(key_path, SB_KEY_SECRET, out, err, sizeof(err)), SB_OK);
    assert_string_equal(out, secret);
    /* Not a key, a name with a newline, a directory that is not there: nothing written. */
    snprintf(key_path, sizeof(key_path), "%s/x.key", d->path);
    assert_int_equal(sb_keyfile_write(key_path, SB_KEY_SECRET, "x",
                                      "012345678901234567890123456789012345678,", err, sizeof(err)),
                     SB_ERR_INVAL);
    assert_int_equal(sb_keyfile_write(key_path, SB_KEY_SECRET, "x\ny", secret, err, sizeof(err)),
                     SB_ERR_INVAL);
    assert_int_equal(access(key_path, F_OK), -1);
    snprintf(key_path, sizeof(key_path), "%s/no/x.key", d->path);
    assert_int_equal(sb_keyfile_write(key_path, SB_KEY_SECRET, "x", secret, err, sizeof(err)),
                     SB_ERR_IO);
    assert_non_null(strstr(err, "No such file or directory"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_read_good_and_comments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_refuses_bad_content, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_secret_mode_and_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_then_read, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
