/*
 * snapshot.c - sb_client_fetch_snapshot{,_cfg}(): one blocking snapshot request with Lazy Pirate
 * retries (a try that times out reopens the socket), for tools like sync-snapshot.
 */
#include <syncbroker/client.h>

#include "svc.h"

#include <errno.h>
#include <stdio.h>
#include <zmq.h>

/* Wait for the reply to `id` until deadline: 1 (handled, *rc set), 0 (timed out). */
static int await_reply(sb_svc *svc, uint32_t id, uint64_t deadline, msgpack_sbuffer *rowbuf,
                       sb_client_snapshot_fn fn, void *ud, uint64_t *seq, char *err, size_t errlen,
                       int *rc)
{
    for (uint64_t now = sb_svc_now_ms(); now < deadline; now = sb_svc_now_ms()) {
        zmq_pollitem_t item = {svc->sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, (long)(deadline - now)) < 0 && errno != EINTR) {
            snprintf(err, errlen, "zmq_poll: %s", zmq_strerror(errno));
            *rc = SB_ERR_ZMQ;
            return 1;
        }
        sb_svc_reply r;
        int got;
        while ((got = sb_svc_recv(svc, &r)) != 0) {
            if (got < 0)
                continue; /* malformed envelope: not our reply */
            bool ours = r.id == id;
            if (ours) {
                char epoch[256];
                *rc = sb_svc_snapshot_reply(&r, rowbuf, fn, ud, epoch, sizeof(epoch), seq, err,
                                            errlen);
            }
            sb_svc_reply_clear(&r);
            if (ours)
                return 1;
        }
    }
    return 0;
}

int sb_client_fetch_snapshot_cfg(const sb_client_config *cfg, sb_client_snapshot_fn fn, void *ud,
                                 uint64_t *seq, char *err, size_t errlen)
{
    char no_err[1];
    uint64_t no_seq;
    if (!err || !errlen)
        err = no_err, errlen = sizeof(no_err);
    err[0] = '\0';
    seq = seq ? seq : &no_seq;
    if (!cfg || !cfg->service_endpoint || !fn || (cfg->ntables && !cfg->tables)) {
        snprintf(err, errlen, "missing service endpoint or row callback");
        return SB_ERR_INVAL;
    }
    const char *service_endpoint = cfg->service_endpoint;
    uint32_t timeout_ms = cfg->request_timeout_ms ? cfg->request_timeout_ms : 3000;
    uint32_t retries = cfg->request_retries ? cfg->request_retries : 3;
    sb_curve curve;
    int rc = sb_curve_init(&curve, cfg->curve_server_key, cfg->curve_secret_key, err, errlen);
    if (rc != SB_OK)
        return rc;
    void *ctx = cfg->zmq_context ? cfg->zmq_context : zmq_ctx_new();
    if (!ctx) {
        snprintf(err, errlen, "zmq_ctx_new failed");
        return SB_ERR_ZMQ;
    }
    sb_svc svc;
    msgpack_sbuffer req, rowbuf;
    msgpack_sbuffer_init(&req);
    msgpack_sbuffer_init(&rowbuf);
    rc = sb_svc_open(&svc, ctx, service_endpoint, &curve);
    if (rc != SB_OK)
        snprintf(err, errlen, "cannot connect to %s: %s", service_endpoint, zmq_strerror(errno));
    rc = rc ? rc : sb_svc_pack_snapshot(&req, cfg->tables, cfg->ntables);
    bool done = rc != SB_OK;
    for (uint32_t try = 0; !done && try < retries; try++) {
        uint32_t id = 0;
        if (try > 0 && (rc = sb_svc_reopen(&svc)) != SB_OK) {
            snprintf(err, errlen, "cannot reconnect to %s", service_endpoint);
            done = true;
        } else if (sb_svc_send(&svc, &req, &id) == SB_OK) {
            done = await_reply(&svc, id, sb_svc_now_ms() + timeout_ms, &rowbuf, fn, ud, seq, err,
                               errlen, &rc);
        }
    }
    if (!done) {
        /* With CURVE a refused key looks the same: libzmq drops the handshake silently. */
        snprintf(err, errlen, "no answer from %s after %u tries of %u ms%s", service_endpoint,
                 retries, timeout_ms, curve.on ? " (or the broker refused this CURVE key)" : "");
        rc = SB_ERR_BUSY;
    }
    sb_svc_close(&svc);
    sb_curve_clear(&curve);
    msgpack_sbuffer_destroy(&req);
    msgpack_sbuffer_destroy(&rowbuf);
    if (!cfg->zmq_context)
        zmq_ctx_term(ctx);
    return rc > 0 ? SB_OK : rc;
}

int sb_client_fetch_snapshot(void *zmq_context, const char *service_endpoint,
                             const char *const *tables, size_t ntables, uint32_t timeout_ms,
                             uint32_t retries, sb_client_snapshot_fn fn, void *ud, uint64_t *seq,
                             char *err, size_t errlen)
{
    sb_client_config cfg = {.service_endpoint = service_endpoint,
                            .tables = tables,
                            .ntables = ntables,
                            .request_timeout_ms = timeout_ms,
                            .request_retries = retries,
                            .zmq_context = zmq_context};
    return sb_client_fetch_snapshot_cfg(&cfg, fn, ud, seq, err, errlen);
}
