/* main.c - syncbroker: arguments, start-up order, signals, reload and clean shutdown. */
#include "config.h"
#include "core.h"
#include "host.h"
#include "log.h"
#include "loop.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <zmq.h>

/* Longest a shutdown waits for pending entities to be fetched and published. */
#define DRAIN_TIMEOUT_MS 5000

typedef struct broker {
    sb_config *cfg;
    sb_loop *loop;
    sb_core *core;
    void *zmq_ctx;
    sb_host **hosts; /* config order; hosts[source_index] is the source */
    size_t nhosts;
    size_t source_index;
    int sig_pipe[2];
    bool stop;
    bool reload;
} broker;

static int sig_write_fd = -1;

static void on_signal(int sig)
{
    unsigned char c = (unsigned char)sig;
    int saved = errno;
    /* The self-pipe turns an async signal into a loop event. */
    if (write(sig_write_fd, &c, 1) < 0) {
    }
    errno = saved;
}

static void on_signal_pipe(void *ud, unsigned revents)
{
    broker *b = ud;
    (void)revents;
    unsigned char c;
    while (read(b->sig_pipe[0], &c, 1) == 1) {
        if (c == SIGHUP)
            b->reload = true;
        else
            b->stop = true;
    }
}

static int install_signals(broker *b)
{
    if (pipe(b->sig_pipe) != 0)
        return SB_ERR_IO;
    for (int i = 0; i < 2; i++) {
        fcntl(b->sig_pipe[i], F_SETFL, O_NONBLOCK);
        fcntl(b->sig_pipe[i], F_SETFD, FD_CLOEXEC);
    }
    sig_write_fd = b->sig_pipe[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    return sb_loop_watch(b->loop, b, b->sig_pipe[0], NULL, SB_IO_READ, on_signal_pipe, b, NULL);
}

/* Open and create every plugin section; every refusal is reported, not just the first. */
static int open_plugins(broker *b)
{
    b->hosts = calloc(b->cfg->nsections, sizeof *b->hosts);
    if (!b->hosts)
        return SB_ERR_NOMEM;
    int rc = SB_OK;
    for (size_t i = 0; i < b->cfg->nsections; i++) {
        const sb_config_section *sec = &b->cfg->sections[i];
        int hrc =
            sb_host_open(&sb_core_peer, b->core, b->loop, b->zmq_ctx, b->cfg, sec, &b->hosts[i]);
        if (hrc == SB_OK)
            hrc = sb_host_create(b->hosts[i]);
        if (hrc) {
            rc = hrc;
            continue;
        }
        if (sec->kind == SB_PLUGIN_SOURCE) {
            b->source_index = i;
            sb_core_set_source(b->core, b->hosts[i]);
        } else if (sb_core_add_transport(b->core, b->hosts[i])) {
            rc = SB_ERR_NOMEM;
        }
    }
    b->nhosts = b->cfg->nsections;
    return rc;
}

static void print_resolved(const broker *b)
{
    const sb_host *src = b->hosts[b->source_index];
    sb_config_print_core(b->cfg, sb_host_database_specs(src), sb_host_database_values(src), stdout);
    for (size_t i = 0; i < b->nhosts; i++)
        sb_host_print_section(b->hosts[i], stdout);
}

/* --check beyond the file: each plugin's check(), in config order. Nothing is
 * started or bound. Prints the verdict; returns 0 (start-up would refuse nothing that could
 * be checked), SB_ERR_CONFIG, or the error a check failed with (e.g. out of memory). */
static int check_plugins(const broker *b, const char *path)
{
    int rc = SB_OK;
    const char *unchecked = NULL; /* why the database was not checked */
    for (size_t i = 0; i < b->nhosts; i++) {
        sb_host *h = b->hosts[i];
        int crc = sb_host_check(h);
        if (crc == SB_ERR_UNSUPPORTED) {
            if (sb_host_kind(h) == SB_PLUGIN_SOURCE)
                unchecked = "offers no database check";
        } else if (crc == SB_ERR_DB) {
            sb_log(SB_LOG_WARN, sb_host_section(h),
                   "could not connect to the database: only the file was checked");
            unchecked = "could not connect to the database";
        } else if (crc == SB_ERR_CONFIG) {
            rc = crc;
        } else if (crc) {
            sb_log(SB_LOG_ERROR, sb_host_section(h), "check failed: %s", sb_strerror(crc));
            return crc;
        }
    }
    if (rc)
        sb_log(SB_LOG_ERROR, "broker", "%s: start-up would refuse this configuration (see above)",
               path);
    else if (unchecked)
        printf("\n; %s: configuration OK, file only ([%s] %s)\n", path,
               sb_host_section(b->hosts[b->source_index]), unchecked);
    else
        printf("\n; %s: configuration OK (database checked)\n", path);
    return rc;
}

/* Sources first (a source refuses an unknown table before anything binds), then
 * transports. */
static int start_plugins(broker *b)
{
    int rc = sb_host_start(b->hosts[b->source_index]);
    for (size_t i = 0; i < b->nhosts && rc == SB_OK; i++)
        if (i != b->source_index)
            rc = sb_host_start(b->hosts[i]);
    return rc;
}

static bool same_str(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

static bool same_section(const sb_config_section *a, const sb_config_section *c)
{
    bool same = same_str(a->name, c->name) && same_str(a->plugin, c->plugin) && a->nkv == c->nkv;
    for (size_t j = 0; same && j < a->nkv; j++)
        same = same_str(a->kv[j].key, c->kv[j].key) && same_str(a->kv[j].value, c->kv[j].value);
    return same;
}

/* Plugin sections, tables and the source's [database] keys need a restart; say so instead
 * of half-applying. */
static bool same_tables(const sb_config *old, const sb_config *new)
{
    bool same = old->ntables == new->ntables;
    for (size_t i = 0; same && i < old->ntables; i++)
        same = strcmp(old->tables[i], new->tables[i]) == 0;
    return same;
}

static void warn_unreloadable(const sb_config *old, const sb_config *new)
{
    bool same = same_section(&old->database, &new->database) && same_tables(old, new) &&
                old->nsections == new->nsections &&same_str(old->plugin_dir, new->plugin_dir);
    for (size_t i = 0; same && i < old->nsections; i++)
        same = same_section(&old->sections[i], &new->sections[i]);
    if (!same)
        sb_log(SB_LOG_WARN, "broker",
               "reload: [database] and plugin sections changed; they take effect on restart");
}

static void reload_config(broker *b)
{
    sb_config *fresh;
    if (sb_config_load(b->cfg->path, &fresh)) {
        sb_log(SB_LOG_ERROR, "broker", "reload failed; keeping the running configuration");
        return;
    }
    sb_log_set_level(fresh->log_level);
    warn_unreloadable(b->cfg, fresh);
    /* The reloadable values move into the running config, which keeps the rest, so that
     * plugins' borrowed pointers (options, [database] values, tables) stay valid and the core
     * reads one config (also when it rebuilds its debounce engine after a lease loss).
     * Per-table windows follow only while the table list is the one running. */
    b->cfg->debounce_ms = fresh->debounce_ms;
    b->cfg->heartbeat_ms = fresh->heartbeat_ms;
    b->cfg->log_level = fresh->log_level;
    if (same_tables(b->cfg, fresh))
        memcpy(b->cfg->table_debounce_ms, fresh->table_debounce_ms,
               b->cfg->ntables * sizeof *b->cfg->table_debounce_ms);
    sb_core_reload(b->core);
    sb_config_free(fresh);
}

/* SIGHUP: the config file's reloadable values, then each plugin's own files (a plugin's
 * reload does not depend on the config file: a typo there must not keep a revoked client
 * key in force). */
static void reload(broker *b)
{
    sb_log(SB_LOG_INFO, "broker", "SIGHUP: reloading %s", b->cfg->path);
    reload_config(b);
    for (size_t i = 0; i < b->nhosts; i++)
        sb_host_reload(b->hosts[i]);
}

static void run(broker *b)
{
    while (!b->stop) {
        if (sb_loop_run_once(b->loop, -1)) {
            sb_log(SB_LOG_ERROR, "broker", "zmq_poll failed: %s", zmq_strerror(errno));
            break;
        }
        if (b->reload) {
            b->reload = false;
            reload(b);
        }
    }
    sb_log(SB_LOG_INFO, "broker", "stopping: publishing pending changes");
    sb_core_drain(b->core);
    uint64_t deadline = sb_loop_now(b->loop) + DRAIN_TIMEOUT_MS;
    while (!sb_core_drained(b->core) && sb_loop_now(b->loop) < deadline)
        if (sb_loop_run_once(b->loop, 100))
            break;
    if (!sb_core_drained(b->core))
        sb_log(SB_LOG_WARN, "broker", "stopped with entities still pending (database down?)");
}

static void shutdown_broker(broker *b)
{
    if (b->core)
        sb_core_cancel_all(b->core);
    /* Reverse start order: transports stop (and flush) before the source. */
    for (size_t i = b->nhosts; i-- > 0;)
        if (i != b->source_index)
            sb_host_stop(b->hosts[i]);
    if (b->nhosts)
        sb_host_stop(b->hosts[b->source_index]);
    for (size_t i = 0; i < b->nhosts; i++)
        sb_host_free(b->hosts[i]);
    free(b->hosts);
    sb_core_free(b->core);
    if (b->zmq_ctx)
        zmq_ctx_term(b->zmq_ctx);
    sb_loop_free(b->loop);
    for (int i = 0; i < 2; i++)
        if (b->sig_pipe[i] > 0)
            close(b->sig_pipe[i]);
    sb_config_free(b->cfg);
}

/* Every client connection costs a descriptor inside ZeroMQ: take the hard limit, so that a
 * crowd of idle connections exhausts it later (docs/operations.md, Known limits). */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= rl.rlim_max)
        return;
    rlim_t was = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
        sb_log(SB_LOG_INFO, "broker", "open files limit raised from %llu to %llu",
               (unsigned long long)was, (unsigned long long)rl.rlim_max);
}

static void usage(FILE *out)
{
    fprintf(out, "usage: syncbroker -c FILE [--check]\n"
                 "       syncbroker --version\n"
                 "  -c, --config FILE  configuration file (INI)\n"
                 "      --check        validate the config and plugins, print the resolved\n"
                 "                     config, check the database as start-up would (tables,\n"
                 "                     reader) without binding, exit 0 (valid) or 1\n"
                 "      --version      print the version and plugin ABI, exit 0\n");
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    bool check = false;
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && i + 1 < argc) {
            path = argv[++i];
        } else if (!strcmp(argv[i], "--check")) {
            check = true;
        } else if (!strcmp(argv[i], "--version")) {
            printf("syncbroker %s (plugin ABI %d.%d)\n", SB_VERSION, SB_ABI_MAJOR, SB_ABI_MINOR);
            return 0;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "syncbroker: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 1;
        }
    }
    if (!path) {
        usage(stderr);
        return 1;
    }

    broker b = {.sig_pipe = {-1, -1}};
    if (sb_config_load(path, &b.cfg))
        return 1;
    sb_log_set_level(b.cfg->log_level);
    int rc = sb_loop_new(&b.loop);
    if (rc == SB_OK && !(b.zmq_ctx = zmq_ctx_new()))
        rc = SB_ERR_ZMQ;
    if (rc == SB_OK)
        rc = sb_core_new(b.loop, b.cfg, &b.core);
    /* Refusals found while opening and checking plugins were each logged naming the file
     * and line: no summary line after them. */
    bool reported = false;
    if (rc == SB_OK) {
        rc = open_plugins(&b);
        reported = rc != SB_OK && rc != SB_ERR_NOMEM;
    }
    if (rc == SB_OK && check) {
        print_resolved(&b);
        rc = check_plugins(&b, path);
        reported = true;
    } else if (rc == SB_OK) {
        raise_fd_limit();
        rc = install_signals(&b);
        if (rc == SB_OK)
            rc = start_plugins(&b);
        if (rc == SB_OK)
            rc = sb_core_start(b.core);
        if (rc == SB_OK) {
            sb_log(SB_LOG_INFO, "broker", "syncbroker %s ready (%s)", SB_VERSION, path);
            run(&b);
        }
    }
    if (rc && !reported)
        sb_log(SB_LOG_ERROR, "broker", "%s: not started: %s", path, sb_strerror(rc));
    shutdown_broker(&b);
    return rc ? 1 : 0;
}
