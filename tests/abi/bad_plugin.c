/*
 * One deliberately broken transport per BAD_* definition (see CMakeLists.txt): each variant
 * breaks exactly one rule the loader enforces. BAD_GOOD breaks none: it has options, and its
 * publish() logs every event it is handed ("published event SEQ TOPIC row=NAME"), so the
 * tests see what the core published from a source (abi_source.c).
 */
#include <stddef.h>
#include <string.h>
#include <syncbroker/plugin.h>

/* What check() reports through; one instance per process is all --check makes. */
static const sb_transport_api *host_api;
static sb_host *host_handle;
static int64_t level; /* option `level` */

static int bad_create(const sb_transport_api *api, sb_host *host, const sb_option_value *opts,
                      void **state)
{
    host_api = api;
    host_handle = host;
    *state = NULL;
    level = opts[0].num;
    return SB_OK;
}
#ifdef BAD_RELOAD
/* Says it was called (and fails when level = 5). */
static int bad_reload(void *state)
{
    (void)state;
    host_api->base.log(host_handle, SB_LOG_INFO, "reload called");
    return level == 5 ? SB_ERR_BUSY : SB_OK;
}
#endif
#if defined(BAD_CHECK) || defined(BAD_V1)
/* BAD_CHECK refuses in check(); BAD_V1 has it in a v1 descriptor the broker must not call. */
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

/* The name of the row an event carries: abi_source.c packs {"v": NAME}. */
static const char *row_name(const sb_message *m)
{
    static const char *const names[] = {"emitted", "fetched"};
    for (size_t i = 0; i < 2; i++) {
        size_t n = strlen(names[i]);
        for (size_t at = 0; at + n <= m->body_len; at++)
            if (!memcmp((const char *)m->body + at, names[i], n))
                return names[i];
    }
    return "none";
}

static int bad_publish(void *state, const sb_message *m)
{
    (void)state;
    if (m->kind == SB_MSG_EVENT)
        host_api->base.log(host_handle, SB_LOG_INFO, "published event %llu %.*s row=%s",
                           (unsigned long long)m->seq, (int)m->topic_len, m->topic, row_name(m));
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

#ifdef BAD_V1
/* ABI 1's descriptor as plugin.h 1.2 laid it out (that header is gone, so it is written out
 * here): the same first fields as sb_plugin_header, then one table for both kinds. */
typedef struct v1_plugin {
    uint16_t abi_major, abi_minor;
    uint32_t size;
    int kind;
    const char *name, *version, *description;
    const sb_option_spec *options;
    int (*create)(const void *api, sb_host *host, const sb_option_value *opts, void **state);
    int (*start)(void *state);
    void (*stop)(void *state);
    void (*destroy)(void *state);
    int (*fetch)(void *state, uint64_t req, const char *table, const sb_key *keys, size_t n);
    int (*snapshot)(void *state, uint64_t req, const char *const *tables, size_t n);
    void (*cancel)(void *state, uint64_t req);
    int (*publish)(void *state, const sb_message *m);
    int (*check)(void *state);
    int (*reload)(void *state);
} v1_plugin;

/* Never called: the broker refuses the descriptor first. */
static int v1_create(const void *api, sb_host *host, const sb_option_value *opts, void **state)
{
    return bad_create(api, host, opts, state);
}

static const v1_plugin descriptor = {
    .abi_major = 1,
    .abi_minor = 2,
    .size = sizeof(v1_plugin),
    .kind = SB_PLUGIN_TRANSPORT,
    .name = PLUGIN_NAME,
    .version = "0.1.0",
    .options = options,
    .create = v1_create,
    .start = bad_start,
    .stop = bad_void,
    .destroy = bad_void,
    .publish = bad_publish,
    .check = bad_check,
};

/* v1's entry took no argument. */
SB_EXPORT const v1_plugin *sb_plugin_entry(void);
SB_EXPORT const v1_plugin *sb_plugin_entry(void)
{
    return &descriptor;
}
#else
static const sb_transport_plugin descriptor = {
#if defined(BAD_ABI_MAJOR) || defined(BAD_MINOR) || defined(BAD_SIZE)
    /* Written out: the version or size is the rule this variant breaks. */
    .header =
        {
#ifdef BAD_ABI_MAJOR
            .abi_major = 3,
            .abi_minor = 0,
#elif defined(BAD_MINOR)
            .abi_major = SB_ABI_MAJOR,
            .abi_minor = 99,
#else
            .abi_major = SB_ABI_MAJOR,
            .abi_minor = SB_ABI_MINOR,
#endif
#ifdef BAD_SIZE
            .size = 24,
#else
            .size = sizeof(sb_transport_plugin),
#endif
            .kind = SB_PLUGIN_TRANSPORT,
            .name = PLUGIN_NAME,
            .version = "0.0.1",
            .options = options},
#else
    .header = SB_TRANSPORT_PLUGIN_HEADER(PLUGIN_NAME, "0.0.1", "a test transport", options),
#endif
    .create = bad_create,
#ifndef BAD_NULL_START
    .start = bad_start,
#endif
    .stop = bad_void,
    .destroy = bad_void,
    .publish = bad_publish,
#ifdef BAD_CHECK
    .check = bad_check,
#endif
#ifdef BAD_RELOAD
    .reload = bad_reload,
#endif
};

#ifdef BAD_NO_ENTRY
/* Exported under another name: the loader must not find an entry point. */
SB_EXPORT const sb_plugin_header *plugin_entry(const sb_abi_offer *offer);
SB_EXPORT const sb_plugin_header *plugin_entry(const sb_abi_offer *offer)
{
    (void)offer;
    return &descriptor.header;
}
#elif defined(BAD_NULL_DESCRIPTOR)
/* Supports none of the versions offered. */
SB_EXPORT const sb_plugin_header *sb_plugin_entry(const sb_abi_offer *offer);
SB_EXPORT const sb_plugin_header *sb_plugin_entry(const sb_abi_offer *offer)
{
    (void)offer, (void)descriptor;
    return NULL;
}
#else
SB_PLUGIN_DECLARE(descriptor)
#endif
#endif
