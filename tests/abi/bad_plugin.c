/*
 * One deliberately broken plugin per BAD_* definition (see CMakeLists.txt): each variant
 * breaks exactly one rule the loader enforces.
 */
#include <stddef.h>
#include <syncbroker/plugin.h>

static int bad_create(const sb_host_api *api, sb_host *host, const sb_option_value *opts,
                      void **state)
{
    (void)api, (void)host, (void)opts;
    *state = NULL;
    return SB_OK;
}
#ifndef BAD_NULL_START
static int bad_start(void *state)
{
    (void)state;
    return SB_OK;
}
#endif
static void bad_void(void *state)
{
    (void)state;
}
static int bad_publish(void *state, const sb_message *m)
{
    (void)state, (void)m;
    return SB_OK;
}

static const sb_option_spec options[] = {
    {"level", SB_OPT_INT, "3", 1, 5, "an integer option"},
    {"name", SB_OPT_STRING, NULL, 0, 0, "a required option"},
    {"verbose", SB_OPT_BOOL, "false", 0, 0, "a boolean option"},
#ifdef BAD_DUP_OPTION
    {"level", SB_OPT_INT, "3", 1, 5, "declared twice"},
#endif
    {NULL, 0, NULL, 0, 0, NULL},
};

static const sb_plugin descriptor = {
#ifdef BAD_ABI_MAJOR
    .abi_major = 2,
#else
    .abi_major = 1,
#endif
    .abi_minor = 0,
#ifdef BAD_SIZE
    .size = 24,
#else
    .size = sizeof(sb_plugin),
#endif
    .kind = SB_PLUGIN_TRANSPORT,
    .name = PLUGIN_NAME,
    .version = "0.0.1",
    .options = options,
    .create = bad_create,
#ifndef BAD_NULL_START
    .start = bad_start,
#endif
    .stop = bad_void,
    .destroy = bad_void,
    .publish = bad_publish,
};

#ifndef BAD_NO_ENTRY
SB_EXPORT const sb_plugin *sb_plugin_entry(void);
SB_EXPORT const sb_plugin *sb_plugin_entry(void)
{
#ifdef BAD_NULL_DESCRIPTOR
    (void)descriptor;
    return NULL;
#else
    return &descriptor;
#endif
}
#else
/* Exported under another name: the loader must not find an entry point. */
SB_EXPORT const sb_plugin *plugin_entry(void);
SB_EXPORT const sb_plugin *plugin_entry(void)
{
    return &descriptor;
}
#endif
