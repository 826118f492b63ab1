/* host.c - see host.h. Every function of the sb_host_api table is a thin wrapper: it adds
 * the instance as log scope and owner tag, then calls the loop or the core. */
#include "host.h"
#include "core.h"
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void api_log(sb_host *h, sb_log_level level, const char *fmt, ...) SB_PRINTF(3, 4);

static void api_log(sb_host *h, sb_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sb_logv(level, h->section, fmt, ap);
    va_end(ap);
}

static int api_watch_fd(sb_host *h, int fd, unsigned events, sb_io_fn fn, void *ud, sb_watch **out)
{
    return sb_loop_watch(h->loop, h, fd, NULL, events, fn, ud, out);
}

static int api_watch_zsock(sb_host *h, void *zsock, unsigned events, sb_io_fn fn, void *ud,
                           sb_watch **out)
{
    return zsock ? sb_loop_watch(h->loop, h, -1, zsock, events, fn, ud, out) : SB_ERR_INVAL;
}

static int api_timer_start(sb_host *h, uint64_t delay_ms, uint64_t repeat_ms, sb_timer_fn fn,
                           void *ud, sb_timer **out)
{
    return sb_loop_timer(h->loop, h, delay_ms, repeat_ms, fn, ud, out);
}

static void *api_zmq_context(sb_host *h)
{
    return h->zmq_ctx;
}

static uint64_t api_now_ms(sb_host *h)
{
    return sb_loop_now(h->loop);
}

static const char *api_conninfo(sb_host *h)
{
    return h->cfg->conninfo;
}

static const char *const *api_tables(sb_host *h, size_t *n)
{
    *n = h->cfg->ntables;
    return (const char *const *)h->cfg->tables;
}

static const char *api_epoch(sb_host *h)
{
    return sb_core_epoch(h->core);
}

/* Source-only and transport-only calls refuse the other kind: a plugin bug, not a crash. */
static bool kind_ok(sb_host *h, sb_plugin_kind kind, const char *call)
{
    if (h->desc->kind == kind && h->started)
        return true;
    sb_log(SB_LOG_ERROR, h->section, "called %s() %s", call,
           h->started ? "but is not allowed to" : "before start() or after stop()");
    return false;
}

static int api_emit(sb_host *h, const sb_change *changes, size_t n)
{
    return kind_ok(h, SB_PLUGIN_SOURCE, "emit") ? sb_core_emit(h->core, changes, n) : SB_ERR_STATE;
}

static void api_rows(sb_host *h, uint64_t req, const sb_row *rows, size_t n)
{
    if (kind_ok(h, SB_PLUGIN_SOURCE, "rows"))
        sb_core_rows(h->core, req, rows, n);
}

static void api_done(sb_host *h, uint64_t req, int status)
{
    if (kind_ok(h, SB_PLUGIN_SOURCE, "done"))
        sb_core_done(h->core, req, status);
}

static void api_resync(sb_host *h, const char *reason)
{
    if (kind_ok(h, SB_PLUGIN_SOURCE, "resync"))
        sb_core_resync(h->core, reason);
}

static int api_snapshot(sb_host *h, const char *const *tables, size_t n, sb_rows_fn fn, void *ud,
                        uint64_t *seq, uint64_t *req)
{
    return kind_ok(h, SB_PLUGIN_TRANSPORT, "snapshot")
               ? sb_core_snapshot(h->core, tables, n, fn, ud, seq, req)
               : SB_ERR_STATE;
}

static void api_cancel(sb_host *h, uint64_t req)
{
    if (kind_ok(h, SB_PLUGIN_TRANSPORT, "cancel"))
        sb_core_cancel(h->core, req);
}

static int api_since(sb_host *h, const char *epoch, uint64_t seq, sb_replay_fn fn, void *ud,
                     uint64_t *last)
{
    return kind_ok(h, SB_PLUGIN_TRANSPORT, "since")
               ? sb_core_since(h->core, epoch, seq, fn, ud, last)
               : SB_ERR_STATE;
}

static int api_presence(sb_host *h, const sb_presence *p)
{
    return kind_ok(h, SB_PLUGIN_TRANSPORT, "presence") ? sb_core_presence(h->core, p)
                                                       : SB_ERR_STATE;
}

static void api_stats(sb_host *h, sb_stats *out)
{
    sb_core_stats(h->core, out);
}

static void api_config_error(sb_host *h, const char *section, const char *key, const char *fmt, ...)
    SB_PRINTF(4, 5);

static void api_config_error(sb_host *h, const char *section, const char *key, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    section = section ? section : h->section;
    int line = sb_config_key_line(h->cfg, section, key);
    if (line)
        sb_log(SB_LOG_ERROR, "config", "%s:%d: [%s] %s: %s", h->cfg->path, line, section, key, msg);
    else
        sb_log(SB_LOG_ERROR, "config", "%s: [%s] %s: %s", h->cfg->path, section, key, msg);
}

static const sb_host_api host_api = {
    .size = sizeof(sb_host_api),
    .abi_major = SB_PLUGIN_ABI_MAJOR,
    .abi_minor = SB_PLUGIN_ABI_MINOR,
    .log = api_log,
    .watch_fd = api_watch_fd,
    .watch_zsock = api_watch_zsock,
    .watch_set = sb_watch_set,
    .unwatch = sb_watch_remove,
    .timer_start = api_timer_start,
    .timer_stop = sb_timer_remove,
    .zmq_context = api_zmq_context,
    .now_ms = api_now_ms,
    .conninfo = api_conninfo,
    .tables = api_tables,
    .epoch = api_epoch,
    .emit = api_emit,
    .rows = api_rows,
    .done = api_done,
    .resync = api_resync,
    .snapshot = api_snapshot,
    .cancel = api_cancel,
    .since = api_since,
    .presence = api_presence,
    .stats = api_stats,
    .config_error = api_config_error,
};

int sb_host_open(sb_core *core, sb_loop *loop, void *zmq_ctx, const sb_config *cfg,
                 const sb_config_section *sec, sb_host **out)
{
    sb_host *h = calloc(1, sizeof *h);
    if (!h || !(h->section = strdup(sec->name))) {
        free(h);
        return SB_ERR_NOMEM;
    }
    h->core = core;
    h->loop = loop;
    h->zmq_ctx = zmq_ctx;
    h->cfg = cfg;
    int rc = sb_plugin_lib_open(cfg, sec, &h->lib);
    if (rc == SB_OK) {
        h->desc = sb_plugin_lib_descriptor(h->lib);
        rc = sb_plugin_resolve_options(cfg, sec, h->desc, &h->opts);
    }
    if (rc) {
        sb_host_free(h);
        return rc;
    }
    *out = h;
    return SB_OK;
}

int sb_host_create(sb_host *h)
{
    int rc = h->desc->create(&host_api, h, h->opts, &h->state);
    if (rc) {
        sb_log(SB_LOG_ERROR, h->section, "create failed: %s", sb_strerror(rc));
        return rc;
    }
    h->created = true;
    return SB_OK;
}

int sb_host_start(sb_host *h)
{
    h->started = true; /* the plugin may call the host from start() */
    int rc = h->desc->start(h->state);
    if (rc == SB_ERR_CONFIG && h->desc->kind == SB_PLUGIN_SOURCE)
        sb_log(SB_LOG_ERROR, "config", "%s:%d: [database] tables: refused by [%s] (see above)",
               h->cfg->path, h->cfg->tables_line, h->section);
    if (rc) {
        sb_log(SB_LOG_ERROR, h->section, "start failed: %s", sb_strerror(rc));
        h->started = false;
        h->desc->stop(h->state);
        sb_loop_drop_owner(h->loop, h);
    }
    return rc;
}

int sb_host_reload(sb_host *h)
{
    /* A 1.0 or 1.1 descriptor may end before reload: neither its minor nor its size says it
     * has one, and nothing beyond its size is read. */
    if (!h->started || h->desc->abi_minor < 2 || !SB_API_HAS(h->desc, sb_plugin, reload))
        return SB_ERR_UNSUPPORTED;
    int rc = h->desc->reload(h->state);
    if (rc)
        sb_log(SB_LOG_ERROR, h->section, "reload failed: %s; running state kept", sb_strerror(rc));
    return rc;
}

void sb_host_stop(sb_host *h)
{
    if (!h || !h->started)
        return;
    h->desc->stop(h->state);
    h->started = false;
    sb_loop_drop_owner(h->loop, h);
}

void sb_host_free(sb_host *h)
{
    if (!h)
        return;
    sb_host_stop(h);
    if (h->created)
        h->desc->destroy(h->state);
    free(h->opts);
    sb_plugin_lib_close(h->lib);
    free(h->section);
    free(h);
}
