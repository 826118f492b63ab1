/*
 * transport_zmq.c - the ZeroMQ transport: descriptor, options and life cycle.
 * Events go out on an XPUB socket (pub.c), requests come in on a ROUTER (service.c).
 * See README.md next to this file and docs/protocol.md.
 */
#include "tz.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Options, in this order in the sb_option_value array handed to create(). */
enum {
    OPT_PUB,
    OPT_SERVICE,
    OPT_SNDHWM,
    OPT_REPLY_HWM,
    OPT_MAX_REQUEST,
    OPT_SNAPSHOT_BATCH,
    OPT_MAX_PENDING_REPLIES,
    OPT_MAX_PENDING_BYTES,
    OPT_MAX_SNAPSHOTS,
    OPT_MAX_SINCE_EVENTS,
    OPT_MAX_SINCE_BYTES,
    OPT_ALLOW_PLAINTEXT,
    OPT_MAX_PEER_SNAPSHOTS,
    OPT_MAX_PEER_BYTES,
    OPT_SNAPSHOT_TIMEOUT_MS,
    OPT_MAX_SUBSCRIPTIONS,
    OPT_MAX_SUBSCRIPTION_BYTES,
    OPT_MAX_SUBSCRIPTION_LEN,
    OPT_CURVE_SECRET_KEY_FILE,
    OPT_CURVE_PUBLIC_KEY_FILE,
    OPT_CLIENTS_FILE,
};

static const sb_option_spec options[] = {
    {"pub", SB_OPT_STRING, "tcp://127.0.0.1:5556", 0, 0,
     "events endpoint (XPUB, bind); tcp://HOST:* picks a free port"},
    {"service", SB_OPT_STRING, "tcp://127.0.0.1:5557", 0, 0,
     "request endpoint (ROUTER, bind); tcp://HOST:* picks a free port"},
    {"sndhwm", SB_OPT_INT, "100000", 1, INT32_MAX,
     "events queued per subscriber before further events to it are dropped"},
    {"reply_hwm", SB_OPT_INT, "1000", 1, INT32_MAX,
     "replies queued in ZeroMQ per client before the transport holds them"},
    {"max_request", SB_OPT_INT, "65536", 64, 16777216,
     "largest request body in bytes; up to 4x larger gets too_large, more disconnects"},
    {"snapshot_batch", SB_OPT_INT, "1000", 1, 1000000, "rows per snapshot frame"},
    {"max_pending_replies", SB_OPT_INT, "1024", 1, 1000000,
     "replies held for slow clients, in total; the oldest is dropped beyond"},
    {"max_pending_bytes", SB_OPT_INT, "268435456", 1024, INT64_MAX,
     "bytes of replies held for all clients (built, waiting, or queued in ZeroMQ)"},
    {"max_snapshots", SB_OPT_INT, "32", 1, 100000,
     "snapshots running at once; more are answered unavailable"},
    {"max_since_events", SB_OPT_INT, "1000", 1, 1000000,
     "messages in one since reply; beyond, it says more and upto and the client asks again"},
    {"max_since_bytes", SB_OPT_INT, "1048576", 1024, 1073741824,
     "message bytes in one since reply (at least one message goes); beyond, more and upto"},
    {"allow_plaintext", SB_OPT_BOOL, "off", 0, 0,
     "bind pub/service beyond loopback without encryption (warned at every start)"},
    {"max_peer_snapshots", SB_OPT_INT, "1", 1, 100000,
     "snapshots one client runs at once; more are answered busy"},
    {"max_peer_bytes", SB_OPT_INT, "67108864", 65536, INT64_MAX,
     "bytes of replies held for one client (built, waiting, or queued in ZeroMQ)"},
    {"snapshot_timeout_ms", SB_OPT_INT, "30000", 100, 86400000,
     "a snapshot not done in this time is cancelled and answered unavailable"},
    {"max_subscriptions", SB_OPT_INT, "1000", 1, 1000000,
     "subscriptions admitted per events connection; as many more refused disconnect it"},
    {"max_subscription_bytes", SB_OPT_INT, "65536", 64, 67108864,
     "bytes of topic admitted per events connection; as many more refused disconnect it"},
    {"max_subscription_len", SB_OPT_INT, "1024", 16, 65536,
     "longest subscription in bytes; a longer one disconnects its connection"},
    {"curve_secret_key_file", SB_OPT_STRING, "", 0, 0,
     "the broker's CURVE secret key (sync-keygen; mode 0600): set, both sockets use CURVE"},
    {"curve_public_key_file", SB_OPT_STRING, "", 0, 0,
     "the broker's CURVE public key, which clients are given (required with CURVE)"},
    {"clients_file", SB_OPT_STRING, "", 0, 0,
     "the clients allowed in, their keys and tables (required with CURVE; docs/security.md)"},
    {NULL, 0, NULL, 0, 0, NULL},
};

/* Why endpoint is not one this transport binds, or NULL. ZeroMQ itself reads
 * "tcp://127.0.0.1:47001x" as port 47001, so the checks are ours: tcp://HOST:PORT with PORT
 * 0..65535 (0 or *: any free port) and HOST a name, an address, [IPv6] or *; ipc://PATH;
 * inproc://NAME. */
static const char *endpoint_problem(const char *endpoint, char *buf, size_t len)
{
    if (strncmp(endpoint, "ipc://", 6) == 0 || strncmp(endpoint, "inproc://", 9) == 0) {
        const char *rest = strstr(endpoint, "://") + 3;
        return *rest ? NULL : "the path or name after :// is empty";
    }
    if (strncmp(endpoint, "tcp://", 6) != 0)
        return "expected tcp://HOST:PORT, ipc://PATH or inproc://NAME";
    const char *host = endpoint + 6;
    const char *colon = strrchr(host, ':');
    if (!colon || colon == host)
        return "expected tcp://HOST:PORT";
    if (host[0] == '[' ? colon[-1] != ']' || colon - host < 3
                       : memchr(host, ']', (size_t)(colon - host)) != NULL)
        return "an IPv6 address goes in brackets: tcp://[ADDRESS]:PORT";
    for (const char *p = host; p < colon; p++)
        if (isspace((unsigned char)*p) || *p == '/' || *p == ';')
            return "the host has a character no host name or address has";
    const char *port = colon + 1;
    if (strcmp(port, "*") == 0)
        return NULL;
    char *end;
    long n = strtol(port, &end, 10);
    if (!isdigit((unsigned char)port[0]) || *end || n < 0 || n > 65535) {
        snprintf(buf, len, "port '%s' is not a number between 0 and 65535 (or *)", port);
        return buf;
    }
    return NULL;
}

/* True for an endpoint only this machine can reach: ipc://, inproc://, or tcp:// on
 * localhost, 127.0.0.0/8 or [::1]. Any other name (an interface, a host name) may be
 * reachable from the network. endpoint passed endpoint_problem(). */
static bool endpoint_is_local(const char *endpoint)
{
    if (strncmp(endpoint, "tcp://", 6) != 0)
        return true;
    const char *host = endpoint + 6;
    size_t len = (size_t)(strrchr(host, ':') - host);
    if (host[0] == '[') {
        host++;
        len -= 2;
    }
    char name[INET6_ADDRSTRLEN + 16];
    if (len >= sizeof name)
        return false;
    memcpy(name, host, len);
    name[len] = '\0';
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, name, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, name, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return strcasecmp(name, "localhost") == 0;
}

/* Read the broker's key pair and the clients file into t (CURVE is on when the secret key
 * file is set). Each problem is a config error naming its option; returns how many. */
static int curve_configure(tz *t, const sb_option_value *opts)
{
    const sb_transport_api *api = t->api;
    bool on = opts[OPT_CURVE_SECRET_KEY_FILE].str[0] != '\0';
    int bad = 0;
    for (int i = OPT_CURVE_PUBLIC_KEY_FILE; i <= OPT_CLIENTS_FILE; i++) {
        if (on && !opts[i].str[0]) {
            SB_CONFIG_ERROR(api, t->host, NULL, options[i].name,
                            "required with curve_secret_key_file (CURVE is on)");
            bad++;
        } else if (!on && opts[i].str[0]) {
            SB_CONFIG_ERROR(api, t->host, NULL, options[i].name,
                            "set without curve_secret_key_file: CURVE is on only with it");
            bad++;
        }
    }
    if (!on || bad)
        return bad;
    char err[512], pub[SB_KEY_Z85_LEN + 1], derived[SB_KEY_Z85_LEN + 1];
    if (sb_keyfile_read(opts[OPT_CURVE_SECRET_KEY_FILE].str, SB_KEY_SECRET, t->curve_secret, err,
                        sizeof err) < 0) {
        SB_CONFIG_ERROR(api, t->host, NULL, "curve_secret_key_file", "%s", err);
        bad++;
    }
    if (sb_keyfile_read(opts[OPT_CURVE_PUBLIC_KEY_FILE].str, SB_KEY_PUBLIC, pub, err, sizeof err) <
        0) {
        SB_CONFIG_ERROR(api, t->host, NULL, "curve_public_key_file", "%s", err);
        bad++;
    } else if (!bad && (zmq_curve_public(derived, t->curve_secret) < 0 || strcmp(derived, pub))) {
        /* Clients given this public key could never complete a handshake. */
        SB_CONFIG_ERROR(api, t->host, NULL, "curve_public_key_file",
                        "%s is not the public key of %s", opts[OPT_CURVE_PUBLIC_KEY_FILE].str,
                        opts[OPT_CURVE_SECRET_KEY_FILE].str);
        bad++;
    }
    if (tz_clients_load(t, opts[OPT_CLIENTS_FILE].str, &t->clients, err, sizeof err) < 0) {
        SB_CONFIG_ERROR(api, t->host, NULL, "clients_file", "%s", err);
        bad++;
    } else if (!(t->clients_path = strdup(opts[OPT_CLIENTS_FILE].str))) {
        bad++; /* SIGHUP re-reads it */
    }
    return bad;
}

static void tz_destroy(void *state)
{
    tz *t = state;
    tz_clients_free(t->clients);
    free(t->clients_path);
    /* volatile: a plain memset before free() may be optimised away. */
    for (volatile char *p = t->curve_secret; p < t->curve_secret + sizeof t->curve_secret; p++)
        *p = 0;
    free(t->pub_endpoint);
    free(t->service_endpoint);
    free(t);
}

static int tz_create(const sb_transport_api *api, sb_host *host, const sb_option_value *opts,
                     void **state)
{
    int bad = 0;
    bool curve = opts[OPT_CURVE_SECRET_KEY_FILE].str[0] != '\0';
    for (int i = OPT_PUB; i <= OPT_SERVICE; i++) {
        char buf[128];
        const char *why = endpoint_problem(opts[i].str, buf, sizeof buf);
        if (why) {
            SB_CONFIG_ERROR(api, host, NULL, options[i].name, "'%s' is not an endpoint: %s",
                            opts[i].str, why);
            bad++;
        } else if (!endpoint_is_local(opts[i].str) && !curve && !opts[OPT_ALLOW_PLAINTEXT].flag) {
            SB_CONFIG_ERROR(api, host, NULL, options[i].name,
                            "'%s' is not a loopback address and this transport does not encrypt "
                            "without curve_secret_key_file (docs/security.md): set "
                            "allow_plaintext = on to bind it in plain text anyway",
                            opts[i].str);
            bad++;
        }
    }
    if (bad)
        return SB_ERR_CONFIG;
    tz *t = calloc(1, sizeof *t);
    if (!t)
        return SB_ERR_NOMEM;
    t->api = api;
    t->host = host;
    if (curve_configure(t, opts) > 0) {
        tz_destroy(t);
        return SB_ERR_CONFIG;
    }
    t->reply = tz_service_reply;
    t->conn_fd = -1; /* no request's connection yet (0 is stdin, not "none") */
    /* Copies: a re-bind replaces a port picked by * with the one bound (reload.c). */
    t->pub_endpoint = strdup(opts[OPT_PUB].str);
    t->service_endpoint = strdup(opts[OPT_SERVICE].str);
    if (!t->pub_endpoint || !t->service_endpoint) {
        tz_destroy(t);
        return SB_ERR_NOMEM;
    }
    t->sndhwm = (int)opts[OPT_SNDHWM].num;
    t->reply_hwm = (int)opts[OPT_REPLY_HWM].num;
    t->max_request = opts[OPT_MAX_REQUEST].num;
    t->snapshot_batch = (uint32_t)opts[OPT_SNAPSHOT_BATCH].num;
    t->max_pending_replies = (size_t)opts[OPT_MAX_PENDING_REPLIES].num;
    t->max_pending_bytes = (size_t)opts[OPT_MAX_PENDING_BYTES].num;
    t->max_snapshots = (size_t)opts[OPT_MAX_SNAPSHOTS].num;
    t->max_since_events = (size_t)opts[OPT_MAX_SINCE_EVENTS].num;
    t->max_since_bytes = (size_t)opts[OPT_MAX_SINCE_BYTES].num;
    t->max_peer_snapshots = (size_t)opts[OPT_MAX_PEER_SNAPSHOTS].num;
    t->max_peer_bytes = (size_t)opts[OPT_MAX_PEER_BYTES].num;
    t->snapshot_timeout_ms = opts[OPT_SNAPSHOT_TIMEOUT_MS].num;
    t->max_subscriptions = (size_t)opts[OPT_MAX_SUBSCRIPTIONS].num;
    t->max_subscription_bytes = (size_t)opts[OPT_MAX_SUBSCRIPTION_BYTES].num;
    t->max_subscription_len = (size_t)opts[OPT_MAX_SUBSCRIPTION_LEN].num;
    *state = t;
    return SB_OK;
}

static void tz_stop(void *state)
{
    tz *t = state;
    tz_rebind_cancel(t);
    tz_service_stop(t);
    tz_pub_stop(t);
}

static int tz_start(void *state)
{
    tz *t = state;
    /* Without CURVE create() refused these unless allow_plaintext = on: say so at every
     * start. */
    const char *endpoints[] = {t->pub_endpoint, t->service_endpoint};
    for (int i = OPT_PUB; i <= OPT_SERVICE; i++)
        if (!t->clients && !endpoint_is_local(endpoints[i]))
            t->api->base.log(
                t->host, SB_LOG_WARN,
                "%s = %s is bound in plain text beyond loopback (allow_plaintext = on): "
                "whoever reaches it reads every event and may send requests",
                options[i].name, endpoints[i]);
    if (t->clients)
        t->api->base.log(t->host, SB_LOG_INFO, "CURVE on both sockets: %zu client(s) allowed",
                         t->clients->n);
    int rc = tz_pub_start(t);
    if (rc == SB_OK)
        rc = tz_service_start(t);
    if (rc < 0)
        tz_stop(t);
    return rc;
}

static const sb_transport_plugin descriptor = {
    .header = SB_TRANSPORT_PLUGIN_HEADER(
        "transport_zmq", SB_VERSION,
        "ZeroMQ events (PUB) and request service (ROUTER) with msgpack bodies", options),
    .create = tz_create,
    .start = tz_start,
    .stop = tz_stop,
    .destroy = tz_destroy,
    .reload = tz_reload,
    .publish = tz_publish,
};

SB_PLUGIN_DECLARE(descriptor)
