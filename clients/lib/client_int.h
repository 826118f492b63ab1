/*
 * client_int.h - the sb_client structure, shared by client.c (lifecycle, I/O, public API)
 * and sync.c (the synchronisation state machine of docs/protocol.md "Client algorithm").
 */
#ifndef SB_CLIENT_INT_H
#define SB_CLIENT_INT_H

#include <syncbroker/client.h>

#include "cache.h"
#include "msg.h"
#include "svc.h"

#include <msgpack.h>

typedef enum sync_state {
    ST_WAIT_HB = 1, /* waiting for a heartbeat: it proves the subscriptions are live */
    ST_SNAPSHOT,    /* snapshot requested; stream messages are buffered */
    ST_SINCE,       /* `since` requested after a gap; stream messages are buffered */
    ST_STREAM       /* in sync: messages are applied as they arrive */
} sync_state;

typedef enum online_state { ONLINE_UNKNOWN, ONLINE_NO, ONLINE_YES } online_state;

/* Gap tracking for one followed table (tables mode): its last tseq, the seq at which that
 * tseq was reached, and the seq up to which every event of the table is known to have been
 * received. */
typedef struct table_pos {
    char *table;
    uint64_t tseq;
    uint64_t tseq_at;
    uint64_t ok_seq;
} table_pos;

/* A raw stream message kept while a request is in flight. */
typedef struct held_msg {
    void *body;
    size_t len;
} held_msg;

/* An entity this client announces it edits. */
typedef struct edit {
    char *table;
    char **key;
    uint32_t nkey;
    uint64_t next_refresh_ms;
} edit;

struct sb_client {
    /* configuration (owned copies) */
    char *pub_endpoint;
    char *service_endpoint;
    char *client_id;
    table_pos *pos; /* ntables entries; ntables == 0 follows everything by seq */
    size_t ntables;
    /* Configured with no tables. Then a heartbeat on its own topic "@hb/<name>/" (a CURVE
     * broker, which may restrict this client) makes the tables it lists the followed ones,
     * by tseq, until the next synchronisation (pos is rebuilt each time). */
    bool follow_all;
    bool own_hb; /* the latest heartbeat came on "@hb/<name>/", not "@hb" */
    /* heartbeat_ms: the configured period until a heartbeat announces the broker's */
    uint32_t heartbeat_ms, request_timeout_ms, request_retries, presence_ttl_ms;
    bool no_snapshot;
    bool keep_rows;
    sb_client_callbacks cb;
    void *ud;
    sb_curve curve; /* CURVE keys of both sockets (curve.on false: plain); wiped at destroy */

    void *ctx;
    bool own_ctx;
    void *sub;
    sb_svc svc; /* svc.sock == NULL until sb_client_start() */
    sb_cache *cache;
    msgpack_sbuffer rowbuf;  /* re-packed rows of the message being handled */
    msgpack_sbuffer syncreq; /* the snapshot/since request in flight, kept for retries */
    msgpack_sbuffer scratch; /* other requests */

    sync_state st;
    char *epoch;         /* current broker epoch; NULL before the first heartbeat */
    uint64_t seq;        /* all-tables mode: last seq received */
    uint64_t floor_seq;  /* events at or below it are covered by the snapshot: not applied */
    uint64_t gap_seq;    /* seq of the message that started the `since` in flight */
    uint64_t since_from; /* the seq that `since` asked from: a capped reply must go past it */

    uint32_t req_id; /* the snapshot/since request in flight */
    uint32_t req_tries;
    uint64_t req_deadline_ms;

    held_msg *held;
    size_t nheld, capheld;

    /* Resynchronisations close together back off: the next may start at resync_at_ms. */
    uint32_t resyncs;
    uint64_t last_resync_ms, resync_at_ms;

    online_state online;
    bool stale; /* went offline: the next message triggers a `since` */
    uint64_t last_rx_ms;

    edit *edits;
    size_t nedits;

    int pending_err; /* what the current sb_client_poll() returns */
};

/* Log through on_log. */
void sb_client_log(sb_client *c, sb_log_level level, const char *fmt, ...) SB_PRINTF(3, 4);

/* Remember the first error of this sb_client_poll() call. */
void sb_client_fail(sb_client *c, int err);

/* sync.c: a heartbeat arrived on topic (len bytes): notes whether it is the client's own. */
void sb_sync_hb_topic(sb_client *c, const void *topic, size_t len);
/* sync.c: a stream message arrived (body borrowed). */
void sb_sync_feed(sb_client *c, const void *body, size_t len);
/* sync.c: a reply to the snapshot/since request in flight. */
void sb_sync_reply(sb_client *c, const sb_svc_reply *r);
/* sync.c: the request in flight timed out. */
void sb_sync_timeout(sb_client *c);
/* sync.c: no message for 3 heartbeat intervals. */
void sb_sync_set_online(sb_client *c, bool online);
/* sync.c: forget held messages. */
void sb_sync_clear_held(sb_client *c);

#endif
