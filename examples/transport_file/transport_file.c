/*
 * transport_file - the smallest useful Syncbroker transport, and the example of
 * docs/plugins.md: it appends one line per published message to a file,
 * "<seq> <kind> <topic> <body bytes>", and counts what it wrote.
 *
 * Build: cc -std=c11 -fPIC -shared -fvisibility=hidden $(pkg-config --cflags syncbroker-plugin)
 *        -o transport_file.so transport_file.c
 */
#include <stdio.h>
#include <stdlib.h>
#include <syncbroker/plugin.h>

/* Options, in this order in the sb_option_value array handed to create(). */
enum { OPT_PATH, OPT_FLUSH };

static const sb_option_spec options[] = {
    {"path", SB_OPT_STRING, NULL, 0, 0, "file to append to (required)"},
    {"flush", SB_OPT_BOOL, "true", 0, 0, "flush after every line"},
    {NULL, 0, NULL, 0, 0, NULL},
};

typedef struct file_transport {
    const sb_transport_api *api;
    sb_host *host;
    const char *path; /* the option's value: the broker's, valid until destroy() */
    bool flush;
    FILE *out;
    unsigned long lines;
} file_transport;

static int file_create(const sb_transport_api *api, sb_host *host, const sb_option_value *opts,
                       void **state)
{
    file_transport *t = calloc(1, sizeof *t);
    if (!t)
        return SB_ERR_NOMEM;
    t->api = api;
    t->host = host;
    t->flush = opts[OPT_FLUSH].flag;
    t->path = opts[OPT_PATH].str;
    *state = t;
    return SB_OK;
}

static int file_start(void *state)
{
    file_transport *t = state;
    t->out = fopen(t->path, "a");
    if (!t->out) {
        t->api->base.log(t->host, SB_LOG_ERROR, "cannot open %s", t->path);
        return SB_ERR_IO;
    }
    t->api->base.log(t->host, SB_LOG_INFO, "writing messages to %s", t->path);
    return SB_OK;
}

static int file_publish(void *state, const sb_message *m)
{
    file_transport *t = state;
    static const char *const kinds[] = {"?", "event", "heartbeat", "presence"};
    if (fprintf(t->out, "%llu %s %.*s %zu\n", (unsigned long long)m->seq,
                m->kind <= SB_MSG_PRESENCE ? kinds[m->kind] : "?", (int)m->topic_len, m->topic,
                m->body_len) < 0 ||
        (t->flush && fflush(t->out) != 0))
        return SB_ERR_IO; /* not written: the core logs it */
    t->lines++;
    return SB_OK;
}

static void file_stop(void *state)
{
    file_transport *t = state;
    if (t->out)
        fclose(t->out);
    t->out = NULL;
    t->api->base.log(t->host, SB_LOG_INFO, "wrote %lu lines", t->lines);
}

static void file_destroy(void *state)
{
    free(state);
}

/* The header macro fills in the ABI version this file is compiled against. */
static const sb_transport_plugin descriptor = {
    .header = SB_TRANSPORT_PLUGIN_HEADER(
        "transport_file", "1.0.0", "append one line per published message to a file", options),
    .create = file_create,
    .start = file_start,
    .stop = file_stop,
    .destroy = file_destroy,
    .publish = file_publish,
};

SB_PLUGIN_DECLARE(descriptor)
