/*
 * One deliberately broken plugin per BAD_* definition (see CMakeLists.txt): each variant
 * breaks exactly one rule the loader enforces.
 */
#include <stddef.h>
#include <syncbroker/plugin.h>

/* What check() reports through; one instance per process is all --check makes. */
static const sb_host_api *host_api;
static sb_host *host_handle;
static int64_t level; /* option `level` */

static int bad_create(const sb_host_api *api, sb_host *host, const sb_option_value *opts,
                      void **state)
{
    host_api = api;
    host_handle = host;
    *state = NULL;
    level = opts[0].num;
    return SB_OK;
}
#if defined(BAD_RELOAD) || defined(BAD_V11)
/* BAD_RELOAD says it was called (and fails when level = 5); BAD_V11 has the same reload()
 * in a 1.1 descriptor (minor 1, a 1.1 size), where the broker must not look. */
static int bad_reload(void *state)
{
    (void)state;
    host_api->log(host_handle, SB_LOG_INFO, "reload called");
    return level == 5 ? SB_ERR_BUSY : SB_OK;
}
#endif
#if defined(BAD_CHECK) || defined(BAD_V10)
/* BAD_CHECK refuses in check(); BAD_V10 has the same check() beyond a 1.0 descriptor's size,
 * where the broker must not look. */
static int bad_check(void *state)
{
    (void)state;
    SB_CONFIG_ERROR(host_api, host_handle, NULL, "name", "refused by check()");
    return SB_ERR_CONFIG;
}
#endif
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
#ifdef BAD_RELOAD
    .abi_minor = 2,
#elif defined(BAD_V11)
    .abi_minor = 1,
#else
    .abi_minor = 0,
#endif
#ifdef BAD_SIZE
    .size = 24,
#elif defined(BAD_V10)
    .size = SB_PLUGIN_V1_SIZE,
#elif defined(BAD_V11)
    .size = offsetof(sb_plugin, reload),
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
#if defined(BAD_CHECK) || defined(BAD_V10)
    .check = bad_check,
#endif
#if defined(BAD_RELOAD) || defined(BAD_V11)
    .reload = bad_reload,
#endif
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
