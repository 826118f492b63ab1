/*
 * fuzz_config.c - libFuzzer target for the broker's configuration parser: the input is the
 * INI file, read from memory (fmemopen) by sb_config_read, then printed back as
 * `syncbroker --check` does (into memory) and every table's window asked for.
 * Invariants: no sanitizer report, no exit(), nothing leaked on any path (libFuzzer's
 * -detect_leaks), and a file that loads prints back to a file that loads to the same
 * [broker] and [database] settings.
 *
 * sb_log is wrapped (-Wl,--wrap=sb_log): the parser reports every error of every input,
 * which would flood the run; the wrapper still formats each message.
 */
#include "config.h"
#include "fuzz.h"

#include <stdarg.h>

void __wrap_sb_log(sb_log_level level, const char *scope, const char *fmt, ...);

void __wrap_sb_log(sb_log_level level, const char *scope, const char *fmt, ...)
{
    (void)level;
    (void)scope;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
}

static sb_config *load(const void *text, size_t len)
{
    FILE *f = fmemopen((void *)text, len, "r");
    if (!f)
        sb_fuzz_fail("fmemopen");
    sb_config *cfg = NULL;
    int rc = sb_config_read(f, "/fuzz/syncbroker.ini", &cfg);
    fclose(f);
    if ((rc == SB_OK) != (cfg != NULL))
        sb_fuzz_fail("a result without a config, or a config with an error");
    return cfg;
}

static char *print_core(const sb_config *cfg, size_t *len)
{
    char *text = NULL;
    FILE *f = open_memstream(&text, len);
    if (!f)
        sb_fuzz_fail("open_memstream");
    sb_config_print_core(cfg, NULL, NULL, f);
    fclose(f);
    return text;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0; /* fmemopen refuses an empty buffer */
    sb_config *cfg = load(data, size);
    if (!cfg)
        return 0;
    for (size_t i = 0; i < cfg->ntables; i++)
        (void)sb_config_table_debounce(cfg, i);
    (void)sb_config_key_line(cfg, "database", "tables");
    size_t len;
    char *text = print_core(cfg, &len);
    sb_config_free(cfg);
    /* The printed core keys alone lack the plugin sections: add one of each. */
    static const char plugins[] = "[source.s]\nplugin = s\n[transport.t]\nplugin = t\n";
    char *again = malloc(len + sizeof plugins);
    if (!again)
        sb_fuzz_fail("out of memory");
    memcpy(again, text, len);
    memcpy(again + len, plugins, sizeof plugins);
    sb_config *back = load(again, len + sizeof plugins - 1);
    if (!back)
        sb_fuzz_fail("a printed configuration does not load");
    size_t len2;
    char *text2 = print_core(back, &len2);
    if (len2 != len || memcmp(text, text2, len) != 0) {
        fprintf(stderr, "printed:\n%s\nloaded back:\n%s\n", text, text2);
        sb_fuzz_fail("a printed configuration loads to other settings");
    }
    sb_config_free(back);
    free(text2);
    free(again);
    free(text);
    return 0;
}
