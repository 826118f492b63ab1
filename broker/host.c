/* host.c - see host.h. Every host API function is a thin wrapper: it adds the instance as
 * log scope and owner tag, checks what plugin.h asks of the call, then calls the loop or the
 * peer (the core). Every call into a plugin is here too, so the core reads as the data path
 * and nothing else. */
#include "host.h"
#include "log.h"
#include "plugin_loader.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sb_host {
    const sb_host_peer *peer;
    void *peer_ud;
    sb_loop *loop;
    void *zmq_ctx; /* the broker's one ZeroMQ context, borrowed */
    const sb_config *cfg;
    const sb_config_section *sec; /* this instance's, in cfg */
    char *section;                /* "source.main"; the log scope */
    sb_plugin_lib *lib;
    const sb_plugin_header *desc;  /* in lib, or the caller's (sb_host_open_descriptor) */
    const sb_source_plugin *src;   /* desc as a source, or NULL */
    const sb_transport_plugin *tr; /* desc as a transport, or NULL */
    sb_option_value *opts;
    sb_option_value *db;   /* a source's [database] values */
    sb_source_setup setup; /* a source's, pointing at opts, db and cfg->tables */
    void *state;
    bool created, started;
    bool rowless_refused; /* a change without row from a source without fetch, logged */
    size_t leftovers;     /* what the last stop (or failed start) left registered */
};

/* ---- sb_host_base ----------------------------------------------------------------- */

static void api_log(sb_host *h, sb_log_level level, const char *fmt, ...) SB_PRINTF(3, 4);

static void api_log(sb_host *h, sb_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sb_logv(level, h->section, fmt, ap);
    va_end(ap);
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

static int api_watch_fd(sb_host *h, int fd, unsigned events, sb_io_fn fn, void *ud, sb_watch **out)
{
    return sb_loop_watch(h->loop, h, fd, NULL, events, fn, ud, out);
}

static int api_timer_start(sb_host *h, uint64_t delay_ms, uint64_t repeat_ms, sb_timer_fn fn,
                           void *ud, sb_timer **out)
{
    return sb_loop_timer(h->loop, h, delay_ms, repeat_ms, fn, ud, out);
}

static uint64_t api_now_ms(sb_host *h)
{
    return sb_loop_now(h->loop);
}

static const char *api_epoch(sb_host *h)
{
    return h->peer->epoch(h->peer_ud);
}

static const char *const *api_tables(sb_host *h, size_t *n)
{
    *n = h->cfg->ntables;
    return (const char *const *)h->cfg->tables;
}

#define HOST_BASE(type)                                                                            \
    {                                                                                              \
        .size = sizeof(type), .abi_major = SB_ABI_MAJOR, .abi_minor = SB_ABI_MINOR,                \
        .log = api_log, .config_error = api_config_error, .watch_fd = api_watch_fd,                \
        .watch_set = sb_watch_set, .unwatch = sb_watch_remove, .timer_start = api_timer_start,     \
        .timer_stop = sb_timer_remove, .now_ms = api_now_ms, .epoch = api_epoch,                   \
        .tables = api_tables                                                                       \
    }

/* The data calls are for a started instance only: a plugin bug, logged, not a crash. */
static bool live(sb_host *h, const char *call)
{
    if (h->started)
        return true;
    sb_log(SB_LOG_ERROR, h->section, "called %s() before start() or after stop()", call);
    return false;
}

/* ---- sb_source_api ---------------------------------------------------------------- */

static void api_stats(sb_host *h, sb_stats *out)
{
    h->peer->stats(h->peer_ud, out);
}

/* What is wrong with a change the core cannot take (plugin.h, sb_change). */
typedef enum change_fault { CHANGE_OK, CHANGE_UNKNOWN, CHANGE_ROWLESS } change_fault;

static change_fault check_change(const sb_host *h, const sb_change *c)
{
    if (c->table >= h->cfg->ntables || c->op < SB_OP_INSERT || c->op > SB_OP_TRUNCATE)
        return CHANGE_UNKNOWN; /* table index or op */
    if (!c->has_row && !h->src->fetch && c->op != SB_OP_TRUNCATE)
        return CHANGE_ROWLESS;
    return CHANGE_OK;
}

/* Hand changes[0..n) to the core; its error, if any, replaces *rc. */
static void emit_run(sb_host *h, const sb_change *changes, size_t n, int *rc)
{
    int erc = n ? h->peer->emit(h->peer_ud, changes, n) : SB_OK;
    if (erc)
        *rc = erc;
}

/* The slow path of a batch with faulty changes: the runs of good changes between them go on
 * as they are (no copy, so nothing here can fail). A change of an unknown table or op is lost
 * to clients: a new epoch makes them resynchronise. A missing row is a source bug, not a
 * loss to repair: said once. */
static int emit_checked(sb_host *h, const sb_change *changes, size_t n)
{
    int rc = SB_ERR_INVAL;
    char lost[192] = "";
    size_t run = 0; /* where the current run of good changes starts */
    for (size_t i = 0; i < n; i++) {
        const sb_change *c = &changes[i];
        change_fault fault = check_change(h, c);
        if (fault == CHANGE_OK)
            continue;
        emit_run(h, changes + run, i - run, &rc);
        run = i + 1;
        if (fault == CHANGE_UNKNOWN && !lost[0])
            snprintf(lost, sizeof lost,
                     "a change of unknown table index %u or op %d, starting a new epoch so that "
                     "nothing is lost",
                     c->table, (int)c->op);
        else if (fault == CHANGE_ROWLESS && !h->rowless_refused) {
            sb_log(SB_LOG_ERROR, h->section,
                   "the source has no fetch() and emitted a change of %s without its row: "
                   "refused (this is logged once)",
                   h->cfg->tables[c->table]);
            h->rowless_refused = true;
        }
    }
    emit_run(h, changes + run, n - run, &rc);
    if (lost[0])
        h->peer->resync(h->peer_ud, lost);
    return rc;
}

static int api_emit(sb_host *h, const sb_change *changes, size_t n)
{
    if (!live(h, "emit"))
        return SB_ERR_STATE;
    for (size_t i = 0; i < n; i++)
        if (check_change(h, &changes[i]) != CHANGE_OK)
            return emit_checked(h, changes, n);
    return h->peer->emit(h->peer_ud, changes, n);
}

static void api_rows(sb_host *h, uint64_t req, const sb_row *rows, size_t n)
{
    if (live(h, "rows"))
        h->peer->rows(h->peer_ud, req, rows, n);
}

static void api_done(sb_host *h, uint64_t req, int status)
{
    if (live(h, "done"))
        h->peer->done(h->peer_ud, req, status);
}

static void api_resync(sb_host *h, const char *reason)
{
    if (live(h, "resync"))
        h->peer->resync(h->peer_ud, reason);
}

static void api_snapshot_cut(sb_host *h, uint64_t req)
{
    if (!live(h, "snapshot_cut"))
        return;
    if (!(h->src->flags & SB_SOURCE_SETS_SNAPSHOT_CUT)) {
        sb_log(SB_LOG_ERROR, h->section,
               "called snapshot_cut() without SB_SOURCE_SETS_SNAPSHOT_CUT: ignored");
        return;
    }
    h->peer->snapshot_cut(h->peer_ud, req);
}

static void api_lease(sb_host *h, bool active, const char *reason)
{
    if (live(h, "lease"))
        h->peer->lease(h->peer_ud, active, reason);
}

static const sb_source_api source_api = {
    .base = HOST_BASE(sb_source_api),
    .emit = api_emit,
    .rows = api_rows,
    .done = api_done,
    .resync = api_resync,
    .snapshot_cut = api_snapshot_cut,
    .lease = api_lease,
    .stats = api_stats,
};

/* ---- sb_transport_api ------------------------------------------------------------- */

static int api_watch_zsock(sb_host *h, void *zsock, unsigned events, sb_io_fn fn, void *ud,
                           sb_watch **out)
{
    return zsock ? sb_loop_watch(h->loop, h, -1, zsock, events, fn, ud, out) : SB_ERR_INVAL;
}

static void *api_zmq_context(sb_host *h)
{
    return h->zmq_ctx;
}

static int api_snapshot(sb_host *h, const uint32_t *tables, size_t n, sb_snapshot_fn fn, void *ud,
                        uint64_t *req)
{
    if (!live(h, "snapshot"))
        return SB_ERR_STATE;
    for (size_t i = 0; i < n; i++)
        if (tables[i] >= h->cfg->ntables)
            return SB_ERR_NOTFOUND;
    return h->peer->snapshot(h->peer_ud, tables, n, fn, ud, req);
}

static void api_snapshot_resume(sb_host *h, uint64_t req)
{
    if (live(h, "snapshot_resume"))
        h->peer->snapshot_resume(h->peer_ud, req);
}

static void api_cancel(sb_host *h, uint64_t req)
{
    if (live(h, "cancel"))
        h->peer->cancel(h->peer_ud, req);
}

static int api_since(sb_host *h, const char *epoch, uint64_t seq, sb_replay_fn fn, void *ud,
                     uint64_t *last)
{
    return live(h, "since") ? h->peer->since(h->peer_ud, epoch, seq, fn, ud, last) : SB_ERR_STATE;
}

static int api_presence(sb_host *h, const sb_presence *p)
{
    if (!live(h, "presence"))
        return SB_ERR_STATE;
    if (p->table >= h->cfg->ntables)
        return SB_ERR_NOTFOUND;
    return p->client && p->state ? h->peer->presence(h->peer_ud, p) : SB_ERR_INVAL;
}

static const sb_transport_api transport_api = {
    .base = HOST_BASE(sb_transport_api),
    .watch_zsock = api_watch_zsock,
    .zmq_context = api_zmq_context,
    .snapshot = api_snapshot,
    .snapshot_resume = api_snapshot_resume,
    .cancel = api_cancel,
    .since = api_since,
    .presence = api_presence,
    .stats = api_stats,
};

/* ---- life ------------------------------------------------------------------------- */

static int resolve(sb_host *h, const sb_config_section *sec)
{
    int rc = sb_config_resolve_options(h->cfg, sec, h->desc->options, h->desc->name, &h->opts);
    if (h->src) {
        /* [database] is checked even when the section's own keys were refused: every error
         * of the file is reported at once. */
        int drc = sb_config_resolve_options(h->cfg, &h->cfg->database, h->src->database_options,
                                            h->desc->name, &h->db);
        rc = rc ? rc : drc;
        h->setup = (sb_source_setup){.options = h->opts,
                                     .database = h->db,
                                     .tables = (const char *const *)h->cfg->tables,
                                     .ntables = h->cfg->ntables};
    }
    return rc;
}

static sb_host *host_new(const sb_host_peer *peer, void *peer_ud, sb_loop *loop, void *zmq_ctx,
                         const sb_config *cfg, const sb_config_section *sec)
{
    sb_host *h = calloc(1, sizeof *h);
    if (!h || !(h->section = strdup(sec->name))) {
        free(h);
        return NULL;
    }
    h->peer = peer;
    h->peer_ud = peer_ud;
    h->loop = loop;
    h->zmq_ctx = zmq_ctx;
    h->cfg = cfg;
    h->sec = sec;
    return h;
}

static int host_adopt(sb_host *h, const sb_config_section *sec, const sb_plugin_header *desc,
                      sb_host **out)
{
    h->desc = desc;
    if (desc->kind == SB_PLUGIN_SOURCE)
        h->src = (const sb_source_plugin *)desc;
    else
        h->tr = (const sb_transport_plugin *)desc;
    int rc = resolve(h, sec);
    if (rc) {
        sb_host_free(h);
        return rc;
    }
    *out = h;
    return SB_OK;
}

int sb_host_open(const sb_host_peer *peer, void *peer_ud, sb_loop *loop, void *zmq_ctx,
                 const sb_config *cfg, const sb_config_section *sec, sb_host **out)
{
    sb_host *h = host_new(peer, peer_ud, loop, zmq_ctx, cfg, sec);
    if (!h)
        return SB_ERR_NOMEM;
    int rc = sb_plugin_lib_open(cfg, sec, &h->lib);
    if (rc) {
        sb_host_free(h);
        return rc;
    }
    return host_adopt(h, sec, sb_plugin_lib_descriptor(h->lib), out);
}

int sb_host_open_descriptor(const sb_host_peer *peer, void *peer_ud, sb_loop *loop, void *zmq_ctx,
                            const sb_config *cfg, const sb_config_section *sec,
                            const sb_plugin_header *desc, sb_host **out)
{
    int rc = sb_plugin_check_descriptor(cfg, sec, "(linked in)", desc);
    if (rc)
        return rc;
    sb_host *h = host_new(peer, peer_ud, loop, zmq_ctx, cfg, sec);
    return h ? host_adopt(h, sec, desc, out) : SB_ERR_NOMEM;
}

int sb_host_create(sb_host *h)
{
    if (h->created)
        return SB_OK;
    int rc = h->src ? h->src->create(&source_api, h, &h->setup, &h->state)
                    : h->tr->create(&transport_api, h, h->opts, &h->state);
    if (rc) {
        sb_log(SB_LOG_ERROR, h->section, "create failed: %s", sb_strerror(rc));
        return rc;
    }
    h->created = true;
    return SB_OK;
}

static void call_stop(sb_host *h)
{
    if (h->src)
        h->src->stop(h->state);
    else
        h->tr->stop(h->state);
}

/* After stop(): remove what the plugin left registered, a plugin bug said as a warning
 * (also after a failed start). How many. */
static size_t drop_leftovers(sb_host *h)
{
    size_t watches, timers;
    sb_loop_owner_count(h->loop, h, &watches, &timers);
    if (watches || timers)
        sb_log(SB_LOG_WARN, h->section,
               "stop() left %zu watches and %zu timers registered: removed", watches, timers);
    sb_loop_drop_owner(h->loop, h);
    h->leftovers = watches + timers;
    return h->leftovers;
}

int sb_host_start(sb_host *h)
{
    h->started = true; /* the plugin may call the host from start() */
    int rc = h->src ? h->src->start(h->state) : h->tr->start(h->state);
    if (rc == SB_ERR_CONFIG && h->src)
        sb_log(SB_LOG_ERROR, "config", "%s:%d: [database] tables: refused by [%s] (see above)",
               h->cfg->path, h->cfg->tables_line, h->section);
    if (rc) {
        sb_log(SB_LOG_ERROR, h->section, "start failed: %s", sb_strerror(rc));
        h->started = false;
        call_stop(h);
        drop_leftovers(h);
    }
    return rc;
}

/* check() and reload() are inside every 2.0 descriptor (the loader refused smaller ones):
 * members a later minor appends are read through SB_PLUGIN_HAS. */
int sb_host_check(sb_host *h)
{
    int (*check)(void *) = h->src ? h->src->check : h->tr->check;
    return check ? check(h->state) : SB_ERR_UNSUPPORTED;
}

int sb_host_reload(sb_host *h)
{
    int (*reload)(void *) = h->src ? h->src->reload : h->tr->reload;
    if (!h->started || !reload)
        return SB_ERR_UNSUPPORTED;
    int rc = reload(h->state);
    if (rc)
        sb_log(SB_LOG_ERROR, h->section, "reload failed: %s; running state kept", sb_strerror(rc));
    return rc;
}

size_t sb_host_stop(sb_host *h)
{
    if (!h || !h->started)
        return 0;
    call_stop(h);
    h->started = false;
    return drop_leftovers(h);
}

void sb_host_free(sb_host *h)
{
    if (!h)
        return;
    sb_host_stop(h);
    if (h->created && h->src)
        h->src->destroy(h->state);
    else if (h->created)
        h->tr->destroy(h->state);
    free(h->opts);
    free(h->db);
    sb_plugin_lib_close(h->lib);
    free(h->section);
    free(h);
}

sb_plugin_kind sb_host_kind(const sb_host *h)
{
    return h->src ? SB_PLUGIN_SOURCE : SB_PLUGIN_TRANSPORT;
}

void *sb_host_state(const sb_host *h)
{
    return h->state;
}

size_t sb_host_leftovers(const sb_host *h)
{
    return h->leftovers;
}

bool sb_host_started(const sb_host *h)
{
    return h->started;
}

const char *sb_host_section(const sb_host *h)
{
    return h->section;
}

void sb_host_print_section(const sb_host *h, FILE *out)
{
    fprintf(out, "\n[%s]\nplugin = %s  ; %s %s\n", h->section, h->sec->plugin, h->desc->name,
            h->desc->version ? h->desc->version : "");
    sb_config_print_options(out, h->desc->options, h->opts);
}

const sb_option_spec *sb_host_database_specs(const sb_host *h)
{
    return h->src ? h->src->database_options : NULL;
}

const sb_option_value *sb_host_database_values(const sb_host *h)
{
    return h->db;
}

/* ---- calls into a source ---------------------------------------------------------- */

bool sb_host_source_sets_cut(const sb_host *h)
{
    return (h->src->flags & SB_SOURCE_SETS_SNAPSHOT_CUT) != 0;
}

bool sb_host_source_has_published(const sb_host *h)
{
    return h->src->published != NULL;
}

int sb_host_source_fetch(sb_host *h, uint64_t req, uint32_t table, const sb_key *keys, size_t n)
{
    if (!h->started)
        return SB_ERR_BUSY;
    if (!h->src->fetch)
        return SB_ERR_UNSUPPORTED;
    return h->src->fetch(h->state, req, table, keys, n);
}

int sb_host_source_snapshot(sb_host *h, uint64_t req, const uint32_t *tables, size_t n)
{
    return h->started ? h->src->snapshot(h->state, req, tables, n) : SB_ERR_BUSY;
}

void sb_host_source_cancel(sb_host *h, uint64_t req)
{
    if (h->started)
        h->src->cancel(h->state, req);
}

bool sb_host_source_snapshot_flow(sb_host *h, uint64_t req, bool go)
{
    if (!h->started || !h->src->snapshot_flow)
        return false;
    h->src->snapshot_flow(h->state, req, go);
    return true;
}

void sb_host_source_published(sb_host *h, uint64_t position)
{
    if (h->started && h->src->published)
        h->src->published(h->state, position);
}

/* ---- calls into a transport ------------------------------------------------------- */

int sb_host_publish(sb_host *h, const sb_message *m)
{
    return h->started ? h->tr->publish(h->state, m) : SB_ERR_STATE;
}
