/*
 * tz.h - internals of the transport_zmq plugin, shared by its files and its tests.
 *
 *   transport_zmq.c  descriptor, options, life cycle
 *   pub.c            XPUB events socket: publish(), reading subscriptions
 *   subs.c           which subscriptions are admitted, per connection (ZAP handler, monitor)
 *   service.c        ROUTER service socket: reading requests, sending and queueing replies
 *   request.c        decoding and validating a request, the synchronous ops, error replies
 *   snapshot.c       the asynchronous snapshot op (per-request state)
 *   editors.c        the editors op, from the presence messages published
 *   frames.c         tz_frames, an owned list of message frames
 *   peer.c           what is held for each client: reply bytes in ZeroMQ, its connection
 *   clients.c        who a connection is: clients_file, the principal behind a User-Id
 *   reload.c         SIGHUP: clients_file again, re-binding both sockets when a key went
 *
 * Everything runs on the broker's loop thread, except the frees of sent frames (tz_acct).
 */
#ifndef TZ_H
#define TZ_H

#include "sb_keyfile.h"

#include <msgpack.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <syncbroker/plugin.h>
#include <sys/types.h>
#include <zmq.h>

/* ---- frames -------------------------------------------------------------------------- */

/* One ZeroMQ frame; data is malloc'd (never NULL, even for an empty frame). */
typedef struct tz_frame {
    unsigned char *data;
    size_t len;
} tz_frame;

/* An owned list of frames: one multipart message or a part of one. Zero-initialise. */
typedef struct tz_frames {
    tz_frame *v;
    size_t n, cap;
    size_t bytes; /* sum of the frames' lengths */
} tz_frames;

/* Append a copy of len bytes. 0 or SB_ERR_NOMEM. */
int tz_frames_push(tz_frames *f, const void *data, size_t len);
/* Append one frame made of a followed by b (copies both). */
int tz_frames_push2(tz_frames *f, const void *a, size_t alen, const void *b, size_t blen);
/* Append the sbuffer's bytes as one frame, taking them over (sb is left empty). */
int tz_frames_push_sbuf(tz_frames *f, msgpack_sbuffer *sb);
/* Move every frame of src to the end of dst (src is left empty). */
int tz_frames_move(tz_frames *dst, tz_frames *src);
/* Free every frame and the list; f is left empty and reusable. */
void tz_frames_clear(tz_frames *f);
/* Same routing id: frame 0 of both (the ROUTER's peer identity). */
bool tz_frames_same_peer(const tz_frames *a, const tz_frames *b);

/* ---- what is held for clients (peer.c) ----------------------------------------------- */

/* Bytes of replies handed to ZeroMQ and not yet freed by it (written to the connection or
 * dropped with it). ZeroMQ's I/O thread frees sent frames, so both fields are atomic; the
 * last reference frees the account. */
typedef struct tz_acct {
    atomic_size_t bytes;
    atomic_size_t refs;
} tz_acct;

/* A client's connection as its request came in: the socket's fd and inode (fd -1 when the
 * transport has none, e.g. inproc). */
typedef struct tz_conn {
    int fd;
    ino_t ino;
} tz_conn;

/* A client with reply bytes in ZeroMQ: found by routing id; dropped once they are gone. */
typedef struct tz_peer {
    struct tz_peer *next;
    tz_acct *acct; /* one reference */
    size_t idlen;
    unsigned char id[]; /* the routing id */
} tz_peer;

/* What each frame handed to ZeroMQ costs beyond its bytes (ZeroMQ's message and pipe entry,
 * the allocator, the account's note), so that many small replies count too. */
#define TZ_FRAME_COST 128

/* ---- who a client is (clients.c) ------------------------------------------------------ */

/* One allowed client of clients_file (docs/security.md). Immutable once loaded, and freed
 * only when the transport stops or re-binds its sockets, after every request, snapshot and
 * connection that could point at it is gone: holders keep plain pointers. */
typedef struct tz_principal {
    char *name;            /* the client id its presence must carry; [A-Za-z0-9._-], 1-64 chars */
    unsigned char key[32]; /* its CURVE public key */
    bool all_tables;       /* tables = * */
    bool *may_read;        /* per index of api->base.tables(); NULL when all_tables */
    bool admin;            /* may ask for stats */
} tz_principal;

/* The allowed clients of clients_file, in file order: a principal's index is its place here
 * (the User-Id names it by index). Each principal is its own allocation, owned by the list,
 * so that a reload may hand principals from one list to the next. */
typedef struct tz_clients {
    tz_principal **v;
    size_t n, cap;
    size_t ntables; /* the length of every may_read */
} tz_clients;

/* ---- the plugin instance ------------------------------------------------------------- */

typedef struct tz tz;
typedef struct tz_snap tz_snap;             /* snapshot.c */
typedef struct tz_pending tz_pending;       /* subs.c */
typedef struct tz_editors tz_editors;       /* editors.c */
typedef struct tz_subscriber tz_subscriber; /* subs.c */

/* An events socket (fd) and the connection on it that has subscribed (subs.c). */
typedef struct tz_fd_slot {
    uint64_t floor;      /* connection ids below are gone from this socket */
    tz_subscriber *peer; /* owned; NULL until its first subscription */
} tz_fd_slot;

/* Where a finished reply goes; takes the frames over (msg is left empty). */
typedef void (*tz_reply_fn)(tz *t, tz_frames *msg);

struct tz {
    const sb_transport_api *api;
    sb_host *host;

    /* options (strings are copies owned by tz) */
    char *pub_endpoint, *service_endpoint;
    int sndhwm, reply_hwm;
    int64_t max_request;
    uint32_t snapshot_batch;
    size_t max_pending_replies, max_pending_bytes, max_snapshots;
    size_t max_since_events, max_since_bytes; /* one `since` reply's messages and body bytes */
    size_t max_peer_bytes, max_peer_snapshots;
    int64_t snapshot_timeout_ms;
    size_t max_subscriptions, max_subscription_bytes, max_subscription_len; /* per connection */

    /* sockets, watches, timers: between start() and stop() */
    void *pub, *router;
    sb_watch *pub_watch, *router_watch;
    sb_timer *retry_timer;
    sb_timer *snap_timer; /* checks running snapshots while there are any */

    /* replies waiting for their peer to drop below its HWM, oldest first */
    tz_pending *pending_head, *pending_tail;
    size_t pending_count, pending_bytes;

    /* snapshots started and not yet answered, and the bytes of their finished frames */
    tz_snap *snaps;
    size_t nsnaps, snap_bytes;

    /* reply bytes in ZeroMQ: all clients' (total) and each client's (peers) */
    tz_acct *total;
    tz_peer *peers;

    /* the socket fd of the request being served (read_request sets it; -1: none known).
     * Only a snapshot, which outlives its request, turns it into a tz_conn. */
    int conn_fd;
    /* who sent the request being served (read_request sets it from the User-Id; NULL in
     * plain mode: no restriction). A snapshot keeps the pointer (see tz_principal). */
    const tz_principal *req_who;

    /* tz_service_reply, or a test's sink */
    tz_reply_fn reply;
    /* bytes of the replies built in this wake-up of the service socket (service.c stops
     * reading requests for the turn past a budget) */
    size_t turn_bytes;

    /* The body of the latest heartbeat published (malloc'd; NULL before the first one):
     * ping answers its period and protocol version from it. */
    unsigned char *last_hb;
    size_t last_hb_len;

    /* subs.c: ZAP handler, the events socket's monitor, connections by socket (malloc'd) */
    void *zap, *monitor;
    sb_watch *zap_watch, *monitor_watch;
    uint64_t next_conn;                        /* the connection id the next ZAP answer hands out */
    uint64_t refusal_logged_ms, cut_logged_ms; /* now_ms() of the last such log line */
    tz_fd_slot *fds;
    size_t nfds;

    /* CURVE: the allowed clients (owned; NULL in plain mode, so NULL means CURVE is off) and
     * the broker's secret key (Z85; wiped at destroy) */
    tz_clients *clients;
    char *clients_path; /* clients_file, re-read on SIGHUP (reload.c); NULL in plain mode */
    char curve_secret[SB_KEY_Z85_LEN + 1];
    uint64_t zap_logged_ms[2]; /* now_ms() of the last handshake refusal logged: events, service */

    /* the latest presence message of every entity that has editors (editors.c) */
    tz_editors *editors;
    size_t neditors, capeditors;

    /* reload.c: a re-bind retries a bind that finds its port still held by the old listener
     * (closed in libzmq's I/O thread, soon) on this timer, backing off */
    sb_timer *rebind_timer;
    uint64_t rebind_delay_ms, rebind_started_ms;
    bool rebinding;     /* from the sockets' close until both are bound again */
    unsigned pub_opens; /* events sockets opened so far: names each one's monitor endpoint */

    /* counters for the stats op */
    uint64_t requests, errors, replies_dropped, publish_failed, snapshots_cancelled;
    int64_t subscribers;   /* connections with "@hb" admitted: one per protocol client */
    int64_t subscriptions; /* admitted and live, all connections */
    uint64_t subscriptions_refused, peers_cut;
};

/* peer.c */
/* A new account with one reference (NULL: out of memory). */
tz_acct *tz_acct_new(void);
/* Drop one reference; the last frees it. NULL is ignored. */
void tz_acct_unref(tz_acct *a);
/* Keep this plugin's code loaded until the process ends (ZeroMQ calls into it). */
void tz_peer_pin_code(tz *t);
/* The bytes ZeroMQ holds for the client that routes like msg (0 when none). */
size_t tz_peer_queued(tz *t, const tz_frames *msg);
/* Send msg's frames after its routing id (already sent) without copying them: ZeroMQ frees
 * each one and counts it down from the client's account and the total. Frames handed over
 * are left NULL in msg (msg->bytes is unchanged). 0, or SB_ERR_ZMQ (errno set). */
int tz_peer_send_rest(tz *t, tz_frames *msg);
/* Forget clients ZeroMQ holds nothing for any more; free all of them when all is true. */
void tz_peer_prune(tz *t, bool all);
/* The connection on socket fd now (fd -1: none). */
tz_conn tz_conn_of(int fd);
/* False when the connection is known to be closed (its socket gone or hung up). */
bool tz_conn_alive(const tz_conn *c);
/* Everything held for replies, in bytes: in ZeroMQ, held by the transport, being built. */
size_t tz_reply_bytes(const tz *t);

/* pub.c */
/* Create a socket of ZeroMQ `type` in the broker's context, configure it (linger, SNDHWM
 * hwm, and per type), bind it to endpoint and log the bound address ("<what> listening on
 * tcp://..."). Logs once and returns SB_ERR_ZMQ on failure. */
int tz_bind_socket(tz *t, int type, const char *what, const char *endpoint, int hwm, void **out);
/* The two halves of it: create and configure; bind and log (the caller closes on failure). */
int tz_new_socket(tz *t, int type, const char *what, int hwm, void **out);
int tz_bind(tz *t, void *s, const char *what, const char *endpoint);
int tz_pub_start(tz *t);
/* Close the events socket, the ZAP handler and the monitor, forgetting every connection; the
 * latest heartbeat and the editors stay (a re-bind keeps serving them). */
void tz_pub_close(tz *t);
/* tz_pub_close, and forget the heartbeat and the editors. */
void tz_pub_stop(tz *t);
int tz_publish(void *state, const sb_message *m);
/* Re-encode the heartbeat body (len bytes) for who into out (initialised by the caller): the
 * same map with only the tables who may read in tseq. 0, SB_ERR_INVAL or SB_ERR_NOMEM. */
int tz_hb_encode(tz *t, const tz_principal *who, const void *body, size_t len,
                 msgpack_sbuffer *out);
/* Decode the latest heartbeat into *up (a map; release with msgpack_unpacked_destroy).
 * SB_ERR_NOTFOUND before the first one. */
int tz_last_heartbeat(tz *t, msgpack_unpacked *up);

/* subs.c */
/* The ZAP domains of the two sockets: every handshake on them asks subs.c's ZAP handler. */
#define TZ_ZAP_EVENTS "syncbroker-events"
#define TZ_ZAP_SERVICE "syncbroker-service"
/* Bind the ZAP handler and monitor pub's disconnects: before pub is bound. */
int tz_subs_start(tz *t, void *pub);
/* Close both and forget every connection (after pub is closed). */
void tz_subs_stop(tz *t);
/* Admit (ZMQ_SUBSCRIBE), mirror or refuse the subscription message just received on t->pub. */
void tz_subs_judge(tz *t, zmq_msg_t *msg);
/* Called for each topic a subscription stands for; a negative return stops the walk. */
typedef int (*tz_topic_fn)(void *ud, const unsigned char *s, size_t len);
/* What the subscription s (len bytes, untrusted) of a connection of `who` stands for, one
 * fn call per topic to confirm (docs/protocol.md, "Subscriptions"): s itself in plain mode
 * (who NULL) when tz_subscription_valid(); for a principal, the topics inside its tables
 * matched at the table boundary, and its heartbeat topic for any heartbeat subscription.
 * The same s and who always give the same topics, in the same order. Returns how many
 * (0: s is refused), or fn's negative return. */
int tz_subs_narrow(tz *t, const tz_principal *who, const unsigned char *s, size_t len,
                   tz_topic_fn fn, void *ud);
/* The heartbeat topic of who into buf: "@hb/<name>/", or "@hb" for NULL. Its length. */
#define TZ_HB_TOPIC_MAX 80 /* "@hb/" + a name of at most 64 + "/" */
size_t tz_hb_topic(const tz_principal *who, char *buf, size_t cap);
/* The principal of the connection on socket fd when it has its heartbeat topic confirmed
 * (NULL: none, or plain mode). */
const tz_principal *tz_subs_hb_principal(tz *t, size_t fd);
/* True when some topic the broker publishes (tables: the configured ones) starts with s. */
bool tz_subscription_valid(const char *const *tables, size_t n, const unsigned char *s, size_t len);

/* clients.c */
/* The User-Id our ZAP handler gives a connection names it and its principal. Parse one
 * (untrusted: any NUL-terminated string): *conn its connection id, *who its principal (NULL
 * in plain mode). SB_ERR_INVAL when uid is not one of ours. */
int tz_user_id_parse(tz *t, const char *uid, uint64_t *conn, const tz_principal **who);
/* Whether who may read the table at index `table` of api->base.tables(). NULL (plain mode) may
 * read everything. */
bool tz_principal_reads(const tz_principal *who, int table);
/* Whether who may see the event or presence message published on topic (NULL: anything). */
bool tz_topic_readable(tz *t, const tz_principal *who, const char *topic, size_t len);
/* The index of table (untrusted, len bytes) when the request's principal (t->req_who) may
 * read it; otherwise replies (forbidden for a principal, whether the table exists or not:
 * no existence oracle; unknown_table in plain mode), takes env over and returns -1. */
int tz_table_allowed(tz *t, tz_frames *env, const char *table, size_t len);
/* Read clients_file `path` (docs/security.md, "The clients file"), checking tables against
 * api->base.tables(). 0 with *out a new list (the caller's; tz_clients_free), or a negative sb_err
 * (SB_ERR_IO unreadable, SB_ERR_CONFIG bad content, SB_ERR_NOMEM) with the first error in err,
 * naming path and line. */
int tz_clients_load(tz *t, const char *path, tz_clients **out, char *err, size_t errlen);
/* Free c, its principals and their names (NULL is ignored). */
void tz_clients_free(tz_clients *c);
/* The principal whose public key is key (32 bytes) and its index in c, or NULL. */
const tz_principal *tz_clients_find(const tz_clients *c, const unsigned char *key, size_t *index);
/* True when next holds every principal of cur unchanged (name, key, tables, admin) at the same
 * index: only additions after them. A reload then keeps the connections. */
bool tz_clients_extends(const tz_clients *cur, const tz_clients *next);

/* reload.c */
/* Close both sockets (running snapshots and held replies are cancelled, every connection
 * dropped) and bind them again on the addresses they had (a port picked by * stays), so
 * that every client reconnects and authenticates again. clients, when not NULL, takes the
 * place of t->clients (taken over) once nothing points at the old principals any more. The
 * epoch, the latest heartbeat and the editors stay. A port still held by the old listener
 * is retried on a timer. 0, or the error a socket failed with (logged; then it is missing). */
int tz_rebind(tz *t, tz_clients *clients);
/* The reload() callback (SIGHUP): re-read clients_file. A file that does not load keeps the
 * running list (SB_ERR_CONFIG or SB_ERR_IO, its file:line logged); only additions are taken
 * as they are; a key removed or a client changed takes a re-bind. Plain mode: nothing. */
int tz_reload(void *state);
/* Cancel a re-bind's retry (stop). */
void tz_rebind_cancel(tz *t);

/* service.c */
int tz_service_start(tz *t);
void tz_service_stop(tz *t);
void tz_service_reply(tz *t, tz_frames *msg);
/* What is held for the client that routes like msg, in bytes: in ZeroMQ, held here, and its
 * snapshots' finished frames. max_peer_bytes bounds it. */
size_t tz_service_peer_bytes(tz *t, const tz_frames *msg);

/* request.c: serve one request body for the peer whose envelope (routing id first) is env.
 * env is taken over; the reply goes to t->reply, now or, for a snapshot, later. */
void tz_request_serve(tz *t, tz_frames *env, const void *body, size_t len);
/* Reply {error: code, message: printf(fmt, ...)} and count an error. Takes env over. */
void tz_reply_error(tz *t, tz_frames *env, const char *code, const char *fmt, ...) SB_PRINTF(4, 5);
/* Reply env + the packed map in sb (+ extra frames, may be NULL). pack_rc < 0 means packing
 * failed: the reply is dropped with a log line. Takes env, sb's bytes and extra over. */
void tz_reply_map(tz *t, tz_frames *env, msgpack_sbuffer *sb, int pack_rc, tz_frames *extra);
/* Reply unknown_table naming the (untrusted, len bytes) table. Takes env over. */
void tz_reply_unknown_table(tz *t, tz_frames *env, const char *table, size_t len);
/* table's index in api->base.tables(), or -1 when it is not configured. */
int tz_table_index(tz *t, const char *table, size_t len);

/* editors.c: remember a published presence message; forget everything (stop); serve the
 * editors op. */
void tz_editors_note(tz *t, const sb_message *m);
void tz_editors_clear(tz *t);
void tz_editors_serve(tz *t, tz_frames *env, const msgpack_object *req);

/* snapshot.c */
void tz_snapshot_serve(tz *t, tz_frames *env, const msgpack_object *req);
/* The bytes of the running snapshots' finished frames for the client that routes like msg. */
size_t tz_snapshot_peer_bytes(tz *t, const tz_frames *msg);
/* Cancel the running snapshots of the peer that routes like msg (it is gone). */
void tz_snapshot_cancel_peer(tz *t, const tz_frames *msg);
void tz_snapshot_cancel_all(tz *t);

#endif /* TZ_H */
