/*
 * Unit tests for broker/host.c and the descriptor checks it shares with the loader: which
 * descriptors are refused and with which message, what a source's setup holds ([database]
 * keys resolved against its database_options), and which plugin callbacks the host calls
 * when. Descriptors are compiled in here; the broker's log (stderr) is captured to check
 * what an operator reads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "core.h"
#include "host.h"
#include "loop.h"

/* ---- stderr capture ------------------------------------------------------------------ */

static FILE *captured;
static int saved_stderr = -1;

static void capture(void)
{
    fflush(stderr);
    captured = tmpfile();
    assert_non_null(captured);
    saved_stderr = dup(STDERR_FILENO);
    assert_true(dup2(fileno(captured), STDERR_FILENO) >= 0);
}

/* Stop capturing; the text logged meanwhile (static buffer). */
static const char *captured_text(void)
{
    static char text[8192];
    fflush(stderr);
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    rewind(captured);
    size_t n = fread(text, 1, sizeof text - 1, captured);
    text[n] = '\0';
    fclose(captured);
    fputs(text, stderr); /* still shown in the test's output */
    return text;
}

#define assert_logged(text, needle)                                                                \
    do {                                                                                           \
        if (!strstr((text), (needle)))                                                             \
            fail_msg("not logged: %s", (needle));                                                  \
    } while (0)

/* ---- plugins --------------------------------------------------------------------------- */

static int calls_check, calls_reload, calls_start;
static const sb_source_api *source_api;
static sb_host *source_host;
static const sb_source_setup *source_setup;

static int p_create(const sb_source_api *api, sb_host *host, const sb_source_setup *setup,
                    void **state)
{
    source_api = api;
    source_host = host;
    source_setup = setup;
    *state = NULL;
    /* Before start(): a data call is a plugin bug, refused. */
    sb_change c = {.table = 0, .op = SB_OP_TRUNCATE, .version = 1};
    assert_int_equal(api->emit(host, &c, 1), SB_ERR_STATE);
    return SB_OK;
}

static int p_start(void *state)
{
    (void)state;
    calls_start++;
    return SB_OK;
}

static void p_void(void *state)
{
    (void)state;
}

static int p_check(void *state)
{
    (void)state;
    calls_check++;
    return SB_OK;
}

static int p_reload(void *state)
{
    (void)state;
    calls_reload++;
    return SB_ERR_BUSY;
}

static int p_snapshot(void *state, uint64_t req, const uint32_t *tables, size_t n)
{
    (void)state, (void)req, (void)tables, (void)n;
    return SB_OK;
}

static void p_cancel(void *state, uint64_t req)
{
    (void)state, (void)req;
}

static int t_create(const sb_transport_api *api, sb_host *host, const sb_option_value *opts,
                    void **state)
{
    (void)api, (void)host, (void)opts;
    *state = NULL;
    return SB_OK;
}

static int t_publish(void *state, const sb_message *m)
{
    (void)state, (void)m;
    return SB_OK;
}

static const sb_option_spec db_options[] = {
    {"conninfo", SB_OPT_STRING, NULL, 0, 0, "required"},
    {"batch", SB_OPT_INT, "100", 1, 1000, "defaulted"},
    {NULL, 0, NULL, 0, 0, NULL},
};

#define SOURCE_CALLBACKS                                                                           \
    .create = p_create, .start = p_start, .stop = p_void, .destroy = p_void,                       \
    .snapshot = p_snapshot, .cancel = p_cancel

static const sb_source_plugin good_source = {
    .header = SB_SOURCE_PLUGIN_HEADER("src", "1", "d", NULL),
    .database_options = db_options,
    SOURCE_CALLBACKS,
    .check = p_check,
    .reload = p_reload,
};

static const sb_source_plugin bare_source = {
    .header = SB_SOURCE_PLUGIN_HEADER("src", "1", "d", NULL),
    SOURCE_CALLBACKS,
};

static const sb_source_plugin newer_minor = {
    .header = {.abi_major = SB_ABI_MAJOR,
               .abi_minor = 99,
               .size = sizeof(sb_source_plugin),
               .kind = SB_PLUGIN_SOURCE,
               .name = "src"},
    SOURCE_CALLBACKS,
};

static const sb_source_plugin other_major = {
    .header = {.abi_major = 3,
               .abi_minor = 1,
               .size = sizeof(sb_source_plugin),
               .kind = SB_PLUGIN_SOURCE,
               .name = "src"},
    SOURCE_CALLBACKS,
};

/* What ABI 1's descriptor started with (plugin.h 1.2): the same three fields, then kind. */
static const struct {
    uint16_t abi_major, abi_minor;
    uint32_t size;
    int kind;
    const char *name;
} v1_plugin = {1, 2, 128, SB_PLUGIN_SOURCE, "src"};

static const sb_source_plugin unknown_kind = {
    .header = {.abi_major = SB_ABI_MAJOR,
               .abi_minor = SB_ABI_MINOR,
               .size = sizeof(sb_source_plugin),
               .kind = 7,
               .name = "src"},
    SOURCE_CALLBACKS,
};

static const sb_source_plugin too_small = {
    .header = {.abi_major = SB_ABI_MAJOR,
               .abi_minor = SB_ABI_MINOR,
               .size = offsetof(sb_source_plugin, published),
               .kind = SB_PLUGIN_SOURCE,
               .name = "src"},
    SOURCE_CALLBACKS,
};

static const sb_source_plugin no_cancel = {
    .header = SB_SOURCE_PLUGIN_HEADER("src", "1", "d", NULL),
    .create = p_create,
    .start = p_start,
    .stop = p_void,
    .destroy = p_void,
    .snapshot = p_snapshot,
};

static const sb_source_plugin wrong_name = {
    .header = SB_SOURCE_PLUGIN_HEADER("other", "1", "d", NULL),
    SOURCE_CALLBACKS,
};

static const sb_transport_plugin transport = {
    .header = SB_TRANSPORT_PLUGIN_HEADER("src", "1", "d", NULL),
    .create = t_create,
    .start = p_start,
    .stop = p_void,
    .destroy = p_void,
    .publish = t_publish,
};

/* ---- fixture --------------------------------------------------------------------------- */

typedef struct fixture {
    sb_config *cfg;
    sb_loop *loop;
    sb_core *core;
} fixture;

static fixture *load(const char *database)
{
    char text[1024];
    snprintf(text, sizeof text,
             "[broker]\nplugin_dir = /nonexistent\n[database]\n%stables = public.a, public.b\n"
             "[source.s]\nplugin = src\n[transport.t]\nplugin = src\n",
             database);
    fixture *f = calloc(1, sizeof *f);
    FILE *in = fmemopen(text, strlen(text), "r");
    assert_non_null(in);
    assert_int_equal(sb_config_read(in, "/test/sb.ini", &f->cfg), SB_OK);
    fclose(in);
    assert_int_equal(sb_loop_new(&f->loop), SB_OK);
    assert_int_equal(sb_core_new(f->loop, f->cfg, &f->core), SB_OK);
    return f;
}

static void unload(fixture *f)
{
    sb_core_free(f->core);
    sb_loop_free(f->loop);
    sb_config_free(f->cfg);
    free(f);
}

/* Open desc for [source.s]; the return code, the log in *log. */
static int open_source(fixture *f, const void *desc, const char **log, sb_host **out)
{
    capture();
    int rc = sb_host_open_descriptor(&sb_core_peer, f->core, f->loop, NULL, f->cfg,
                                     &f->cfg->sections[0], desc, out);
    *log = captured_text();
    return rc;
}

/* ---- tests ----------------------------------------------------------------------------- */

static void refusals_name_line_path_and_versions(void **state)
{
    (void)state;
    fixture *f = load("conninfo = x\n");
    sb_host *h = NULL;
    const char *log;
    const char *at = "/test/sb.ini:7: [source.s] plugin: (linked in): ";
    assert_int_equal(open_source(f, &v1_plugin, &log, &h), SB_ERR_ABI);
    assert_logged(log, at);
    assert_logged(log, "was built for plugin ABI 1 (Syncbroker 0.1); this broker has ABI 2.0: "
                       "rebuild it against include/syncbroker/plugin.h 2.0 (docs/plugins.md, "
                       "Porting from ABI 1)");
    assert_int_equal(open_source(f, &newer_minor, &log, &h), SB_ERR_ABI);
    assert_logged(log, "built against ABI 2.99, newer than this broker's 2.0: upgrade the broker "
                       "or build the plugin against the 2.0 header");
    assert_int_equal(open_source(f, &other_major, &log, &h), SB_ERR_ABI);
    assert_logged(log, "built for ABI 3.1; this broker has 2.0");
    assert_int_equal(open_source(f, &unknown_kind, &log, &h), SB_ERR_ABI);
    assert_logged(log, "unknown plugin kind 7 (plugin ABI 2.0, broker ABI 2.0)");
    assert_int_equal(open_source(f, &too_small, &log, &h), SB_ERR_ABI);
    assert_logged(log, "a source of ABI 2.0 is at least");
    assert_int_equal(open_source(f, &no_cancel, &log, &h), SB_ERR_ABI);
    assert_logged(log, "mandatory callback 'cancel' is NULL");
    assert_int_equal(open_source(f, &wrong_name, &log, &h), SB_ERR_ABI);
    assert_logged(log, "calls itself 'other', expected 'src'");
    assert_int_equal(open_source(f, &transport, &log, &h), SB_ERR_CONFIG);
    assert_logged(log, "is a transport plugin, but [source.s] needs a source plugin");
    capture();
    assert_int_equal(sb_host_open_descriptor(&sb_core_peer, f->core, f->loop, NULL, f->cfg,
                                             &f->cfg->sections[1], &good_source.header, &h),
                     SB_ERR_CONFIG);
    assert_logged(captured_text(), "/test/sb.ini:9: [transport.t] plugin: (linked in): is a source "
                                   "plugin, but [transport.t] needs a transport plugin");
    unload(f);
}

static void database_keys_resolved_against_the_source(void **state)
{
    (void)state;
    fixture *f = load("conninfo = host=x\n");
    sb_host *h = NULL;
    const char *log;
    assert_int_equal(open_source(f, &good_source, &log, &h), SB_OK);
    assert_int_equal(sb_host_create(h), SB_OK);
    assert_string_equal(source_setup->database[0].str, "host=x");
    assert_true(source_setup->database[0].given);
    assert_int_equal(source_setup->database[1].num, 100);
    assert_false(source_setup->database[1].given);
    assert_int_equal(source_setup->ntables, 2);
    assert_string_equal(source_setup->tables[0], "public.a");
    assert_ptr_equal(sb_host_database_specs(h), db_options);
    sb_host_free(h);
    unload(f);

    f = load("conninfo = host=x\ncolour = blue\nbatch = 0\n");
    assert_int_equal(open_source(f, &good_source, &log, &h), SB_ERR_CONFIG);
    assert_logged(log, "/test/sb.ini:5: [database] colour: unknown key for plugin src");
    assert_logged(log,
                  "/test/sb.ini:6: [database] batch: '0' is not an integer between 1 and 1000");
    unload(f);

    f = load("");
    assert_int_equal(open_source(f, &good_source, &log, &h), SB_ERR_CONFIG);
    assert_logged(log, "/test/sb.ini:3: [database] conninfo: required key is missing");
    unload(f);

    /* A source that declares no [database] keys refuses conninfo too. */
    f = load("conninfo = x\n");
    assert_int_equal(open_source(f, &bare_source, &log, &h), SB_ERR_CONFIG);
    assert_logged(log, "/test/sb.ini:4: [database] conninfo: unknown key for plugin src");
    unload(f);
}

static void check_and_reload_reach_the_plugin(void **state)
{
    (void)state;
    fixture *f = load("conninfo = x\n");
    sb_host *h = NULL;
    const char *log;
    calls_check = calls_reload = calls_start = 0;
    assert_int_equal(open_source(f, &good_source, &log, &h), SB_OK);
    assert_int_equal(sb_host_create(h), SB_OK);
    assert_int_equal(sb_host_check(h), SB_OK);
    assert_int_equal(calls_check, 1);
    assert_int_equal(sb_host_reload(h), SB_ERR_UNSUPPORTED); /* not started */
    assert_int_equal(calls_reload, 0);
    sb_core_set_source(f->core, h);
    assert_int_equal(sb_host_start(h), SB_OK);
    assert_int_equal(calls_start, 1);
    capture();
    assert_int_equal(sb_host_reload(h), SB_ERR_BUSY);
    assert_logged(captured_text(), "[source.s] reload failed: busy; running state kept");
    assert_int_equal(calls_reload, 1);
    /* snapshot_cut() from a source without SB_SOURCE_SETS_SNAPSHOT_CUT is ignored. */
    capture();
    source_api->snapshot_cut(source_host, 1);
    assert_logged(captured_text(), "called snapshot_cut() without SB_SOURCE_SETS_SNAPSHOT_CUT");
    sb_host_free(h);

    sb_host *t = NULL;
    assert_int_equal(sb_host_open_descriptor(&sb_core_peer, f->core, f->loop, NULL, f->cfg,
                                             &f->cfg->sections[1], &transport.header, &t),
                     SB_OK);
    assert_int_equal(sb_host_kind(t), SB_PLUGIN_TRANSPORT);
    assert_int_equal(sb_host_create(t), SB_OK);
    assert_int_equal(sb_host_check(t), SB_ERR_UNSUPPORTED);
    sb_message m = {.kind = SB_MSG_HEARTBEAT};
    assert_int_equal(sb_host_publish(t, &m), SB_ERR_STATE); /* not started */
    assert_int_equal(sb_host_start(t), SB_OK);
    assert_int_equal(sb_host_publish(t, &m), SB_OK);
    sb_host_free(t);
    unload(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(refusals_name_line_path_and_versions),
        cmocka_unit_test(database_keys_resolved_against_the_source),
        cmocka_unit_test(check_and_reload_reach_the_plugin),
    };
    return cmocka_run_group_tests_name("host", tests, NULL, NULL);
}
