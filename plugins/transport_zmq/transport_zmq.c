/*
 * transport_zmq.c - the ZeroMQ transport: descriptor, options and life cycle.
 * Events go out on an XPUB socket (pub.c), requests come in on a ROUTER (service.c).
 * See README.md next to this file and docs/protocol.md.
 */
#include "tz.h"

#include <stdlib.h>
#include <string.h>

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
     "bytes of replies held for slow clients, in total"},
    {"max_snapshots", SB_OPT_INT, "32", 1, 100000,
     "snapshots running at once; more are answered unavailable"},
    {NULL, 0, NULL, 0, 0, NULL},
};

static int tz_create(const sb_host_api *api, sb_host *host, const sb_option_value *opts,
                     void **state)
{
    tz *t = calloc(1, sizeof *t);
    if (!t)
        return SB_ERR_NOMEM;
    t->api = api;
    t->host = host;
    t->reply = tz_service_reply;
    /* Option strings belong to the broker (and may go on reload): keep copies. */
    t->pub_endpoint = strdup(opts[OPT_PUB].str);
    t->service_endpoint = strdup(opts[OPT_SERVICE].str);
    if (!t->pub_endpoint || !t->service_endpoint) {
        free(t->pub_endpoint);
        free(t->service_endpoint);
        free(t);
        return SB_ERR_NOMEM;
    }
    t->sndhwm = (int)opts[OPT_SNDHWM].num;
    t->reply_hwm = (int)opts[OPT_REPLY_HWM].num;
    t->max_request = opts[OPT_MAX_REQUEST].num;
    t->snapshot_batch = (uint32_t)opts[OPT_SNAPSHOT_BATCH].num;
    t->max_pending_replies = (size_t)opts[OPT_MAX_PENDING_REPLIES].num;
    t->max_pending_bytes = (size_t)opts[OPT_MAX_PENDING_BYTES].num;
    t->max_snapshots = (size_t)opts[OPT_MAX_SNAPSHOTS].num;
    *state = t;
    return SB_OK;
}

static void tz_stop(void *state)
{
    tz *t = state;
    tz_service_stop(t);
    tz_pub_stop(t);
}

static int tz_start(void *state)
{
    tz *t = state;
    int rc = tz_pub_start(t);
    if (rc == SB_OK)
        rc = tz_service_start(t);
    if (rc < 0)
        tz_stop(t);
    return rc;
}

static void tz_destroy(void *state)
{
    tz *t = state;
    free(t->pub_endpoint);
    free(t->service_endpoint);
    free(t);
}

static const sb_plugin descriptor = {
    .abi_major = 1, /* literal: the ABI this file was written for */
    .abi_minor = 0,
    .size = sizeof(sb_plugin),
    .kind = SB_PLUGIN_TRANSPORT,
    .name = "transport_zmq",
    .version = "1.0.0",
    .description = "ZeroMQ events (PUB) and request service (ROUTER) with msgpack bodies",
    .options = options,
    .create = tz_create,
    .start = tz_start,
    .stop = tz_stop,
    .destroy = tz_destroy,
    .publish = tz_publish,
};

SB_PLUGIN_DECLARE(descriptor)
