/*
 * bench_throughput - events/s delivered to N subscribers, and its floor.
 *
 *   --pub EP --service EP   N SUB sockets on a broker (run with source_synthetic); the
 *                           broker's own events_out over the window comes from `stats`
 *   --floor                 a bare libzmq PUB (a thread of this process, TCP on 127.0.0.1)
 *                           sending [topic][body] of --topic-len/--body-len bytes as fast as
 *                           it can, to the same N SUB sockets: what libzmq alone delivers
 *   --server-key F --key F  CURVE: every socket is a CURVE client of the broker (F: key files,
 *                           docs/security.md); with --floor, --floor-key F (the secret key
 *                           whose public key is --server-key) makes the floor a CURVE server
 *
 * One thread receives on all N sockets with one zmq_poll (as a client process would), so
 * both cases share the receive side's cost. After --warmup seconds (every socket has had a
 * message) it counts for --seconds. Prints "RESULT key=value ...": delivered/s per
 * subscriber (mean, min), published/s, mean topic and body sizes. A figure, never pass/fail.
 */
#include "bench_curve.h"

#include <msgpack.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#define MAX_SUBS 1000

typedef struct opts {
    const char *pub, *service;
    const char *server_key, *key, *floor_key; /* key files; NULL: plain */
    bool floor;
    int subs;
    double seconds, warmup;
    int topic_len, body_len;
} opts;

typedef struct floor_pub {
    void *sock;
    int topic_len, body_len;
    atomic_bool stop;
    atomic_ullong sent;
} floor_pub;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *floor_main(void *arg)
{
    floor_pub *f = arg;
    char *topic = malloc((size_t)f->topic_len), *body = malloc((size_t)f->body_len);
    memset(topic, 't', (size_t)f->topic_len);
    memset(body, 'b', (size_t)f->body_len);
    while (!atomic_load(&f->stop)) {
        zmq_send(f->sock, topic, (size_t)f->topic_len, ZMQ_SNDMORE);
        zmq_send(f->sock, body, (size_t)f->body_len, 0);
        atomic_fetch_add(&f->sent, 1);
    }
    free(topic);
    free(body);
    return NULL;
}

/* events_out from the broker's stats, or -1. */
static long long broker_events_out(void *ctx, const char *service, const bench_curve *curve)
{
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    long long out = -1;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    if (bench_curve_client(curve, s) != 0) {
        zmq_close(s);
        return -1;
    }
    zmq_connect(s, service);
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "op", 2);
    msgpack_pack_str_with_body(&pk, "stats", 5);
    zmq_send(s, "", 0, ZMQ_SNDMORE);
    zmq_send(s, buf.data, buf.size, 0);
    msgpack_sbuffer_destroy(&buf);
    zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, 5000) == 1) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        do {
            zmq_msg_recv(&m, s, 0);
        } while (zmq_msg_more(&m));
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        if (msgpack_unpack_next(&u, zmq_msg_data(&m), zmq_msg_size(&m), NULL) ==
                MSGPACK_UNPACK_SUCCESS &&
            u.data.type == MSGPACK_OBJECT_MAP) {
            for (uint32_t i = 0; i < u.data.via.map.size; i++) {
                const msgpack_object_kv *kv = &u.data.via.map.ptr[i];
                if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 10 &&
                    !memcmp(kv->key.via.str.ptr, "events_out", 10) &&
                    kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                    out = (long long)kv->val.via.u64;
            }
        }
        msgpack_unpacked_destroy(&u);
        zmq_msg_close(&m);
    }
    zmq_close(s);
    return out;
}

typedef struct counts {
    unsigned long long msgs[MAX_SUBS];
    unsigned long long topic_bytes, body_bytes, total;
} counts;

/* Receives everything ready on every socket until `until`; counts when `c` is set. */
static void receive(void **subs, zmq_pollitem_t *items, int n, double until, counts *c, bool *seen)
{
    zmq_msg_t topic, body;
    zmq_msg_init(&topic);
    zmq_msg_init(&body);
    while (now_s() < until) {
        if (zmq_poll(items, n, 50) <= 0)
            continue;
        for (int i = 0; i < n; i++) {
            if (!(items[i].revents & ZMQ_POLLIN))
                continue;
            /* Bounded per socket per turn, so one busy socket cannot starve the others. */
            for (int k = 0; k < 256; k++) {
                if (zmq_msg_recv(&topic, subs[i], ZMQ_DONTWAIT) < 0)
                    break;
                size_t blen = 0;
                while (zmq_msg_more(&topic) || zmq_msg_more(&body)) {
                    zmq_msg_recv(&body, subs[i], 0);
                    blen += zmq_msg_size(&body);
                    if (!zmq_msg_more(&body))
                        break;
                }
                if (seen)
                    seen[i] = true;
                if (c) {
                    c->msgs[i]++;
                    c->total++;
                    c->topic_bytes += zmq_msg_size(&topic);
                    c->body_bytes += blen;
                }
            }
        }
    }
    zmq_msg_close(&topic);
    zmq_msg_close(&body);
}

static int parse(opts *o, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--floor")) {
            o->floor = true;
            continue;
        }
        if (i + 1 >= argc)
            return -1;
        const char *v = argv[++i];
        if (!strcmp(a, "--pub"))
            o->pub = v;
        else if (!strcmp(a, "--service"))
            o->service = v;
        else if (!strcmp(a, "--server-key"))
            o->server_key = v;
        else if (!strcmp(a, "--key"))
            o->key = v;
        else if (!strcmp(a, "--floor-key"))
            o->floor_key = v;
        else if (!strcmp(a, "--subs"))
            o->subs = atoi(v);
        else if (!strcmp(a, "--seconds"))
            o->seconds = atof(v);
        else if (!strcmp(a, "--warmup"))
            o->warmup = atof(v);
        else if (!strcmp(a, "--topic-len"))
            o->topic_len = atoi(v);
        else if (!strcmp(a, "--body-len"))
            o->body_len = atoi(v);
        else
            return -1;
    }
    if (o->subs < 1 || o->subs > MAX_SUBS || o->seconds <= 0 || (!o->floor && !o->pub) ||
        o->topic_len < 1 || o->body_len < 1 || (o->floor_key && (!o->floor || !o->key)))
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    opts o = {.subs = 1, .seconds = 5, .warmup = 1, .topic_len = 20, .body_len = 150};
    if (parse(&o, argc, argv)) {
        fprintf(stderr, "usage: bench_throughput (--pub EP [--service EP] | --floor "
                        "[--topic-len N] [--body-len N] [--floor-key F]) [--server-key F --key F] "
                        "[--subs N] [--seconds S] [--warmup S]\n");
        return 2;
    }
    bench_curve curve;
    if (bench_curve_load(&curve, o.server_key, o.key) != 0)
        return 1;
    void *ctx = zmq_ctx_new();
    floor_pub fp = {.topic_len = o.topic_len, .body_len = o.body_len};
    pthread_t th;
    char ep[256];
    if (o.floor) {
        int hwm = 100000, zero = 0; /* transport_zmq's default sndhwm */
        fp.sock = zmq_socket(ctx, ZMQ_PUB);
        zmq_setsockopt(fp.sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
        zmq_setsockopt(fp.sock, ZMQ_LINGER, &zero, sizeof zero);
        size_t len = sizeof ep;
        if ((o.floor_key && bench_curve_server(fp.sock, o.floor_key) != 0) ||
            zmq_bind(fp.sock, "tcp://127.0.0.1:*") != 0 ||
            zmq_getsockopt(fp.sock, ZMQ_LAST_ENDPOINT, ep, &len) != 0) {
            fprintf(stderr, "bench_throughput: bind: %s\n", zmq_strerror(zmq_errno()));
            return 1;
        }
        o.pub = ep;
    }
    void **subs = calloc((size_t)o.subs, sizeof *subs);
    zmq_pollitem_t *items = calloc((size_t)o.subs, sizeof *items);
    bool *seen = calloc((size_t)o.subs, sizeof *seen);
    counts *c = calloc(1, sizeof *c);
    for (int i = 0; i < o.subs; i++) {
        int hwm = 100000, zero = 0;
        subs[i] = zmq_socket(ctx, ZMQ_SUB);
        zmq_setsockopt(subs[i], ZMQ_RCVHWM, &hwm, sizeof hwm);
        zmq_setsockopt(subs[i], ZMQ_LINGER, &zero, sizeof zero);
        /* The floor's topics are all 't's; the broker's events are "<table>/<key>". */
        zmq_setsockopt(subs[i], ZMQ_SUBSCRIBE, o.floor ? "t" : "public.", o.floor ? 1 : 7);
        if (bench_curve_client(&curve, subs[i]) != 0)
            return 1;
        zmq_connect(subs[i], o.pub);
        items[i] = (zmq_pollitem_t){subs[i], 0, ZMQ_POLLIN, 0};
    }
    if (o.floor)
        pthread_create(&th, NULL, floor_main, &fp);
    /* Warm-up: at least o.warmup seconds and until every socket has had a message (<= 30 s). */
    double t0 = now_s();
    for (;;) {
        receive(subs, items, o.subs, now_s() + 0.1, NULL, seen);
        int all = 1;
        for (int i = 0; i < o.subs; i++)
            all &= seen[i];
        if ((all && now_s() - t0 >= o.warmup) || now_s() - t0 > 30)
            break;
    }
    long long out0 = o.service ? broker_events_out(ctx, o.service, &curve) : 0;
    unsigned long long sent0 = atomic_load(&fp.sent);
    double start = now_s();
    receive(subs, items, o.subs, start + o.seconds, c, NULL);
    double elapsed = now_s() - start;
    long long out1 = o.service ? broker_events_out(ctx, o.service, &curve) : 0;
    unsigned long long sent1 = atomic_load(&fp.sent);
    if (o.floor) {
        atomic_store(&fp.stop, true);
        pthread_join(th, NULL);
        /* Its queues (sndhwm per subscriber) would take CURVE subscribers longer to drain
         * than the loop below waits: closed with linger 0, they are dropped. */
        zmq_close(fp.sock);
    }
    /* Drain what is in flight before closing: a SUB closed while its session is still writing
     * a multipart message trips a libzmq assertion (session_base.cpp, zeromq/libzmq#3442).
     * The floor's publisher has closed: drain until quiet. The broker keeps publishing:
     * unsubscribe, then let the SUBs discard what still arrives for a moment. */
    if (!o.floor)
        for (int i = 0; i < o.subs; i++)
            zmq_setsockopt(subs[i], ZMQ_UNSUBSCRIBE, "public.", 7);
    counts *rest = calloc(1, sizeof *rest);
    for (int pass = 0; rest && pass < 100; pass++) {
        unsigned long long before = rest->total;
        receive(subs, items, o.subs, now_s() + (o.floor ? 0.1 : 0.3), rest, NULL);
        if (!o.floor || rest->total == before)
            break;
    }
    free(rest);
    unsigned long long mn = c->msgs[0];
    for (int i = 1; i < o.subs; i++)
        mn = c->msgs[i] < mn ? c->msgs[i] : mn;
    double published = o.floor                                 ? (double)(sent1 - sent0) / elapsed
                       : (o.service && out0 >= 0 && out1 >= 0) ? (double)(out1 - out0) / elapsed
                                                               : -1;
    printf("RESULT subs=%d per_sub=%.0f min_sub=%.0f total=%.0f published=%.0f topic_len=%.1f "
           "body_len=%.1f\n",
           o.subs, (double)c->total / o.subs / elapsed, (double)mn / elapsed,
           (double)c->total / elapsed, published,
           c->total ? (double)c->topic_bytes / (double)c->total : 0,
           c->total ? (double)c->body_bytes / (double)c->total : 0);
    for (int i = 0; i < o.subs; i++)
        zmq_close(subs[i]);
    zmq_ctx_term(ctx);
    free(subs);
    free(items);
    free(seen);
    free(c);
    return 0;
}
