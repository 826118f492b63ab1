/*
 * test_config_print.c - what sb_config_print_core prints (syncbroker --check) reads back as
 * the same settings. Found by tests/fuzz/fuzz_config.c: `conninfo =;x` was printed as
 * `conninfo = ;x`, which inih reads as an empty value and a comment.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sb_config *load(const char *text)
{
    FILE *f = fmemopen((void *)text, strlen(text), "r");
    assert_non_null(f);
    sb_config *cfg = NULL;
    assert_int_equal(sb_config_read(f, "/etc/syncbroker.ini", &cfg), SB_OK);
    fclose(f);
    return cfg;
}

/* The core sections as printed, with plugin sections appended so that the text loads. */
static char *print_loadable(const sb_config *cfg)
{
    char *text = NULL;
    size_t len;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    sb_config_print_core(cfg, NULL, NULL, f);
    fputs("[source.s]\nplugin = s\n[transport.t]\nplugin = t\n", f);
    fclose(f);
    return text;
}

static void test_value_starting_with_semicolon(void **state)
{
    (void)state;
    sb_config *cfg = load("[broker]\nplugin_dir =;plugins\n[database]\nconninfo =;x=1\n"
                          "tables = public.a\n[source.s]\nplugin = s\n[transport.t]\nplugin = t\n");
    assert_int_equal(cfg->database.nkv, 1);
    assert_string_equal(cfg->database.kv[0].key, "conninfo");
    assert_string_equal(cfg->database.kv[0].value, ";x=1");
    assert_string_equal(cfg->plugin_dir, "/etc/;plugins");
    char *text = print_loadable(cfg);
    sb_config *back = load(text);
    assert_int_equal(back->database.nkv, 1);
    assert_string_equal(back->database.kv[0].value, ";x=1");
    assert_string_equal(back->plugin_dir, "/etc/;plugins");
    sb_config_free(back);
    sb_config_free(cfg);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_value_starting_with_semicolon),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
