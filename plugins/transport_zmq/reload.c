/*
 * reload.c - SIGHUP: clients_file again, and the re-bind a removed or changed key needs.
 *
 * libzmq 4.3.4 cannot drop one peer of a socket, so cutting off a key means closing both
 * sockets and binding them again: every connection goes, libzmq reconnects each client on its
 * own, and each one authenticates again (a removed key then fails its handshake). The epoch
 * is the core's and stays; clients fill the gap with `since`.
 */
#include "tz.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define TZ_REBIND_FIRST_MS 5   /* first retry of a port still held by the old listener */
#define TZ_REBIND_MAX_MS 500   /* the back-off stops growing here */
#define TZ_REBIND_WARN_MS 2000 /* a re-bind still waiting this long is worth a warning */

/* The address s is bound to, in place of *endpoint (a port picked by * is kept). */
static int pin_endpoint(void *s, char **endpoint)
{
    char bound[256];
    size_t len = sizeof bound;
    if (zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, bound, &len) < 0 || !bound[0])
        return SB_OK; /* nothing better known: bind what was configured */
    char *copy = strdup(bound);
    if (!copy)
        return SB_ERR_NOMEM;
    free(*endpoint);
    *endpoint = copy;
    return SB_OK;
}

/* An ipc:// listener unlinks its file when libzmq closes it, which a new listener of the same
 * path would lose: bind only once the old file is gone. */
static bool ipc_path_free(const char *endpoint)
{
    struct stat st;
    return strncmp(endpoint, "ipc://", 6) != 0 || stat(endpoint + 6, &st) != 0;
}

static void retry(void *ud);

/* Open whichever socket is missing; 0 once both are bound, SB_ERR_BUSY while a port is held
 * (the retry timer is then armed), or the error a socket failed with (logged). */
static int open_sockets(tz *t)
{
    int rc = SB_OK;
    if (!t->pub && ipc_path_free(t->pub_endpoint) && (rc = tz_pub_start(t)) < 0)
        tz_pub_close(t);
    if (rc == SB_OK && t->pub && !t->router && ipc_path_free(t->service_endpoint) &&
        (rc = tz_service_start(t)) < 0)
        tz_service_stop(t);
    if (rc == SB_OK && (!t->pub || !t->router))
        rc = SB_ERR_BUSY;
    if (rc != SB_ERR_BUSY)
        return rc;
    uint64_t waited = t->api->base.now_ms(t->host) - t->rebind_started_ms;
    if (waited >= TZ_REBIND_WARN_MS && waited < TZ_REBIND_WARN_MS + t->rebind_delay_ms)
        t->api->base.log(t->host, SB_LOG_WARN, "re-bind: %s still in use after %llu ms; retrying",
                         t->pub ? t->service_endpoint : t->pub_endpoint,
                         (unsigned long long)waited);
    if ((rc = t->api->base.timer_start(t->host, t->rebind_delay_ms, 0, retry, t,
                                       &t->rebind_timer)) < 0)
        return rc;
    if (t->rebind_delay_ms < TZ_REBIND_MAX_MS)
        t->rebind_delay_ms *= 2;
    return SB_ERR_BUSY;
}

/* Log how open_sockets() ended; returns 0 for done or still retrying. */
static int opened(tz *t, int rc)
{
    if (rc == SB_ERR_BUSY)
        return SB_OK;
    t->rebinding = false;
    if (rc == SB_OK)
        t->api->base.log(t->host, SB_LOG_INFO, "re-bound after %llu ms: clients reconnect",
                         (unsigned long long)(t->api->base.now_ms(t->host) - t->rebind_started_ms));
    else
        t->api->base.log(t->host, SB_LOG_ERROR,
                         "re-bind failed: %s; this transport serves no client", sb_strerror(rc));
    return rc;
}

static void retry(void *ud)
{
    tz *t = ud;
    t->rebind_timer = NULL; /* a one-shot timer frees itself */
    opened(t, open_sockets(t));
}

int tz_rebind(tz *t, tz_clients *clients)
{
    int rc = SB_OK;
    if (t->pub)
        rc = pin_endpoint(t->pub, &t->pub_endpoint);
    if (rc == SB_OK && t->router)
        rc = pin_endpoint(t->router, &t->service_endpoint);
    if (rc < 0) {
        tz_clients_free(clients);
        return rc;
    }
    /* zmq_unbind first would not help: the listener closes in the I/O thread either way
     * (measured: the first bind finds the port in use about as often). */
    tz_service_stop(t);
    tz_pub_close(t);
    tz_rebind_cancel(t);
    if (clients) {
        tz_clients_free(t->clients);
        t->clients = clients;
    }
    t->rebinding = true;
    t->rebind_delay_ms = TZ_REBIND_FIRST_MS;
    t->rebind_started_ms = t->api->base.now_ms(t->host);
    return opened(t, open_sockets(t));
}

void tz_rebind_cancel(tz *t)
{
    t->api->base.timer_stop(t->rebind_timer);
    t->rebind_timer = NULL;
    t->rebinding = false;
}

/* Names of cur's clients whose key next does not have, comma-separated into buf ("" none). */
static const char *removed_names(const tz_clients *cur, const tz_clients *next, char *buf,
                                 size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < cur->n && used < len; i++) {
        size_t index;
        if (!tz_clients_find(next, cur->v[i]->key, &index)) {
            int n = snprintf(buf + used, len - used, "%s%s", used ? ", " : "", cur->v[i]->name);
            used += n > 0 ? (size_t)n : 0;
        }
    }
    return buf;
}

int tz_reload(void *state)
{
    tz *t = state;
    if (!t->clients)
        return SB_OK; /* plain mode: no file of its own */
    char err[512];
    tz_clients *next;
    int rc = tz_clients_load(t, t->clients_path, &next, err, sizeof err);
    if (rc < 0) {
        t->api->base.log(
            t->host, SB_LOG_ERROR,
            "clients_file not reloaded, the %zu clients loaded before stay allowed: %s",
            t->clients->n, err);
        return rc;
    }
    tz_clients *cur = t->clients;
    if (tz_clients_extends(cur, next)) {
        /* The running principals stay (connections and snapshots point at them); next's
         * equal copies go with cur. */
        for (size_t i = 0; i < cur->n; i++) {
            tz_principal *keep = cur->v[i];
            cur->v[i] = next->v[i];
            next->v[i] = keep;
        }
        t->api->base.log(t->host, SB_LOG_INFO, "clients_file %s reloaded: %zu clients, %zu added%s",
                         t->clients_path, next->n, next->n - cur->n,
                         next->n > cur->n ? "; connections kept" : " (unchanged)");
        tz_clients_free(cur);
        t->clients = next;
        return SB_OK;
    }
    char names[256];
    removed_names(cur, next, names, sizeof names);
    t->api->base.log(t->host, SB_LOG_INFO,
                     "clients_file %s reloaded: %zu clients, %s%s: re-binding both sockets, every "
                     "client reconnects",
                     t->clients_path, next->n, names[0] ? "removed: " : "a client changed", names);
    return tz_rebind(t, next);
}
