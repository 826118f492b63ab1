/*
 * replay_corpus.c - runs every file of one target's seed corpus (SB_FUZZ_CORPUS_DIR) through
 * its LLVMFuzzerTestOneInput (the gcc stand-in for a libFuzzer run), plus every prefix of
 * each seed: truncated inputs are the commonest malformed ones.
 */
#include "fuzz.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_replay_seed_corpus(void **state)
{
    (void)state;
    DIR *dir = opendir(SB_FUZZ_CORPUS_DIR);
    assert_non_null(dir);
    size_t files = 0;
    for (struct dirent *e; (e = readdir(dir));) {
        if (e->d_name[0] == '.')
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", SB_FUZZ_CORPUS_DIR, e->d_name);
        FILE *fp = fopen(path, "rb");
        assert_non_null(fp);
        uint8_t buf[65536];
        size_t n = fread(buf, 1, sizeof buf, fp);
        fclose(fp);
        for (size_t len = 0; len <= n; len++)
            assert_int_equal(LLVMFuzzerTestOneInput(buf, len), 0);
        files++;
    }
    closedir(dir);
    assert_true(files >= 3);
    if (sb_fuzz_teardown)
        sb_fuzz_teardown();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replay_seed_corpus),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
