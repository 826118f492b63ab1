/*
 * bench_latency - commit-to-subscriber latency of one delivery path, at a fixed write rate.
 *
 * Writer threads (each with its own PostgreSQL connection) run single-row autocommit INSERTs
 * into TABLE on a fixed schedule (row i is due at start + i / rate), with a fresh primary key
 * per row so no two changes coalesce. The time just before each INSERT is sent is kept in a
 * local array indexed by key - base: writer and receiver share one CLOCK_MONOTONIC, so no
 * clock crosses a process. Latency = receive time - send time; the send time is used rather
 * than the commit acknowledgement because a LISTENer can be woken before the writer reads its
 * own CommandComplete (the ack is reported separately as the commit round trip).
 *
 * Receivers:
 *   --zmq ENDPOINT   a SUB socket on the broker's events; the key is read from the msgpack body
 *                    (--server-key F --key F: a CURVE client with these key files, whose
 *                    heartbeats come on @hb/<its name>/, docs/security.md)
 *   --listen CHANNEL a bare libpq LISTEN on the same database: the floor, for a table whose
 *                    row trigger runs pg_notify(CHANNEL, NEW.id::text)
 *   --stdin wal2json the output of `pg_recvlogical -P wal2json -o format-version=2 -f -` piped
 *                    in: the logical-decoding floor; the key is the "id" column of an insert.
 *                    Before the writers start, a marker row (key base + rows) is inserted and
 *                    awaited, so that the reader is known to stream.
 *
 * Prints one line "RESULT key=value ..." (ms with 3 decimals); --raw FILE writes every
 * latency in µs, sorted, for CDF plots. A figure, never pass/fail.
 *
 * Usage: bench_latency --conninfo CI --table T (--zmq EP [--server-key F --key F] | --listen CH |
 *        --stdin wal2json) [--rate N] [--seconds S] [--writers W] [--drain-ms MS] [--label L]
 *        [--raw FILE]
 */
#include "bench_curve.h"

#include <libpq-fe.h>
#include <msgpack.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define MAX_WRITERS 32

typedef struct bench {
    const char *conninfo, *table, *zmq_ep, *channel, *stdin_fmt, *label, *raw;
    const char *server_key, *key; /* CURVE key files of --zmq; NULL: plain */
    double rate;
    double seconds;
    int writers;
    int drain_ms;
    int64_t base;          /* first key written */
    size_t total;          /* rows scheduled */
    uint64_t start_ns;     /* schedule origin */
    atomic_size_t next;    /* next row to write */
    atomic_size_t written; /* rows whose INSERT returned */
    atomic_int failed;     /* a writer gave up */
    uint64_t *sent_ns;     /* per row: before the INSERT was sent (0 = not yet) */
    uint64_t *ack_ns;      /* per row: the INSERT's result arrived */
    uint64_t *recv_ns;     /* per row: first delivery (0 = none) */
    size_t dups, foreign;  /* deliveries seen twice / keys outside this run */
} bench;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t ns)
{
    struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000u),
                          .tv_nsec = (long)(ns % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0) {
    }
}

static PGconn *connect_db(const char *conninfo)
{
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "bench_latency: connect: %s", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    return c;
}

static bool exec_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        fprintf(stderr, "bench_latency: %s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    return ok;
}

static void *writer_main(void *arg)
{
    bench *b = arg;
    PGconn *c = connect_db(b->conninfo);
    char sql[256];
    snprintf(sql, sizeof sql, "INSERT INTO %s (id, note) VALUES ($1::bigint, 'bench')", b->table);
    if (!c) {
        atomic_store(&b->failed, 1);
        return NULL;
    }
    PGresult *prep = PQprepare(c, "ins", sql, 1, NULL);
    if (PQresultStatus(prep) != PGRES_COMMAND_OK) {
        fprintf(stderr, "bench_latency: prepare: %s", PQerrorMessage(c));
        atomic_store(&b->failed, 1);
    }
    PQclear(prep);
    for (;;) {
        if (atomic_load(&b->failed))
            break;
        size_t i = atomic_fetch_add(&b->next, 1);
        if (i >= b->total)
            break;
        sleep_until(b->start_ns + (uint64_t)((double)i * 1e9 / b->rate));
        char id[32];
        snprintf(id, sizeof id, "%lld", (long long)(b->base + (int64_t)i));
        const char *params[1] = {id};
        b->sent_ns[i] = now_ns();
        PGresult *r = PQexecPrepared(c, "ins", 1, params, NULL, NULL, 0);
        b->ack_ns[i] = now_ns();
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            fprintf(stderr, "bench_latency: insert: %s", PQerrorMessage(c));
            atomic_store(&b->failed, 1);
        }
        PQclear(r);
        atomic_fetch_add(&b->written, 1);
    }
    PQfinish(c);
    return NULL;
}

static void record(bench *b, int64_t key, uint64_t t)
{
    if (key < b->base || key >= b->base + (int64_t)b->total) {
        b->foreign++;
        return;
    }
    size_t i = (size_t)(key - b->base);
    if (b->recv_ns[i])
        b->dups++;
    else
        b->recv_ns[i] = t;
}

/* The "key" of a change event body: a str holding the decimal id; -1 when absent. */
static int64_t event_key(const void *body, size_t len)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    int64_t key = -1;
    if (msgpack_unpack_next(&u, body, len, NULL) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_MAP) {
        const msgpack_object_map *m = &u.data.via.map;
        for (uint32_t k = 0; k < m->size; k++) {
            const msgpack_object *name = &m->ptr[k].key, *v = &m->ptr[k].val;
            if (name->type == MSGPACK_OBJECT_STR && name->via.str.size == 3 &&
                memcmp(name->via.str.ptr, "key", 3) == 0 && v->type == MSGPACK_OBJECT_STR &&
                v->via.str.size < 24) {
                char txt[24];
                memcpy(txt, v->via.str.ptr, v->via.str.size);
                txt[v->via.str.size] = '\0';
                key = strtoll(txt, NULL, 10);
            }
        }
    }
    msgpack_unpacked_destroy(&u);
    return key;
}

typedef struct receiver {
    void *ctx, *sub;
    PGconn *listen;
    bool pipe;       /* --stdin */
    char line[8192]; /* --stdin: the line read so far (longer lines are skipped) */
    size_t len;
    bool overlong;
} receiver;

/* The "id" value of a wal2json (format-version 2) insert line; -1 for anything else. */
static int64_t wal2json_key(const char *line)
{
    const char *col = strstr(line, "\"action\":\"I\"") ? strstr(line, "{\"name\":\"id\"") : NULL;
    const char *val = col ? strstr(col, "\"value\":") : NULL;
    return val ? strtoll(val + 8, NULL, 10) : -1;
}

/* Reads what stdin holds (waiting up to timeout_ms), handing each complete line's key to
 * fn. -1 at end of input or on a read error. */
static int read_lines(receiver *rx, int timeout_ms, void (*fn)(void *, int64_t, uint64_t), void *ud)
{
    struct pollfd p = {STDIN_FILENO, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0)
        return 0;
    char buf[65536];
    ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
    if (n <= 0) {
        fprintf(stderr, "bench_latency: stdin: %s\n", n ? "read error" : "end of input");
        return -1;
    }
    uint64_t t = now_ns();
    for (ssize_t i = 0; i < n; i++) {
        if (buf[i] != '\n') {
            if (rx->len + 1 < sizeof rx->line)
                rx->line[rx->len++] = buf[i];
            else
                rx->overlong = true;
            continue;
        }
        rx->line[rx->len] = '\0';
        int64_t key = rx->overlong ? -1 : wal2json_key(rx->line);
        if (key >= 0)
            fn(ud, key, t);
        rx->len = 0;
        rx->overlong = false;
    }
    return 0;
}

typedef struct marker_wait {
    int64_t key;
    bool seen;
} marker_wait;

static void on_marker_line(void *ud, int64_t key, uint64_t t)
{
    marker_wait *w = ud;
    (void)t;
    w->seen |= key == w->key;
}

/* --stdin: insert a row just past this run's keys and wait until it comes through. */
static int await_marker(bench *b, receiver *rx)
{
    PGconn *c = connect_db(b->conninfo);
    char sql[256];
    marker_wait w = {.key = b->base + (int64_t)b->total};
    snprintf(sql, sizeof sql, "INSERT INTO %s (id, note) VALUES (%lld, 'marker')", b->table,
             (long long)w.key);
    bool ok = c && exec_ok(c, sql);
    PQfinish(c);
    uint64_t deadline = now_ns() + 10000000000u;
    while (ok && !w.seen && now_ns() < deadline)
        ok = read_lines(rx, 100, on_marker_line, &w) == 0;
    if (ok && !w.seen)
        fprintf(stderr, "bench_latency: the marker row did not come through stdin in 10 s\n");
    return ok && w.seen ? 0 : -1;
}

/* A heartbeat's topic: "@hb", or "@hb/<name>/" for a CURVE client (docs/security.md). */
static bool is_heartbeat(zmq_msg_t *topic)
{
    size_t n = zmq_msg_size(topic);
    const char *t = zmq_msg_data(topic);
    return n >= 3 && memcmp(t, "@hb", 3) == 0 && (n == 3 || t[3] == '/');
}

/* Subscribes (data topic, then @hb last) and waits for the first heartbeat, which proves the
 * subscription is live at the publisher; or LISTENs. */
static int receiver_open(bench *b, receiver *rx)
{
    if (b->stdin_fmt) {
        rx->pipe = true;
        return await_marker(b, rx);
    }
    if (b->channel) {
        char sql[128];
        rx->listen = connect_db(b->conninfo);
        snprintf(sql, sizeof sql, "LISTEN %s", b->channel);
        return rx->listen && exec_ok(rx->listen, sql) ? 0 : -1;
    }
    char topic[256];
    snprintf(topic, sizeof topic, "%s/", b->table);
    rx->ctx = zmq_ctx_new();
    rx->sub = zmq_socket(rx->ctx, ZMQ_SUB);
    int zero = 0, hwm = 1000000;
    zmq_setsockopt(rx->sub, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(rx->sub, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(rx->sub, ZMQ_SUBSCRIBE, topic, strlen(topic));
    zmq_setsockopt(rx->sub, ZMQ_SUBSCRIBE, "@hb", 3);
    bench_curve curve;
    if (bench_curve_load(&curve, b->server_key, b->key) != 0 ||
        bench_curve_client(&curve, rx->sub) != 0)
        return -1;
    if (zmq_connect(rx->sub, b->zmq_ep) != 0) {
        fprintf(stderr, "bench_latency: connect %s: %s\n", b->zmq_ep, zmq_strerror(zmq_errno()));
        return -1;
    }
    uint64_t deadline = now_ns() + 10000000000u;
    while (now_ns() < deadline) {
        zmq_pollitem_t it = {rx->sub, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 100) <= 0)
            continue;
        zmq_msg_t m;
        zmq_msg_init(&m);
        zmq_msg_recv(&m, rx->sub, 0);
        bool hb = is_heartbeat(&m);
        while (zmq_msg_more(&m))
            zmq_msg_recv(&m, rx->sub, 0);
        zmq_msg_close(&m);
        if (hb)
            return 0;
    }
    fprintf(stderr, "bench_latency: no heartbeat from %s within 10 s\n", b->zmq_ep);
    return -1;
}

static void receiver_close(receiver *rx)
{
    if (rx->sub)
        zmq_close(rx->sub);
    if (rx->ctx)
        zmq_ctx_term(rx->ctx);
    PQfinish(rx->listen);
}

static void on_key_line(void *ud, int64_t key, uint64_t t)
{
    record(ud, key, t);
}

/* Receives for up to timeout_ms; records deliveries. */
static int receive_some(bench *b, receiver *rx, int timeout_ms)
{
    if (rx->pipe)
        return read_lines(rx, timeout_ms, on_key_line, b);
    if (rx->listen) {
        struct pollfd p = {PQsocket(rx->listen), POLLIN, 0};
        if (poll(&p, 1, timeout_ms) > 0 && !PQconsumeInput(rx->listen)) {
            fprintf(stderr, "bench_latency: listen: %s", PQerrorMessage(rx->listen));
            return -1;
        }
        uint64_t t = now_ns();
        PGnotify *n;
        while ((n = PQnotifies(rx->listen)) != NULL) {
            record(b, strtoll(n->extra, NULL, 10), t);
            PQfreemem(n);
        }
        return 0;
    }
    zmq_pollitem_t it = {rx->sub, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, timeout_ms) <= 0)
        return 0;
    for (;;) {
        zmq_msg_t topic, body;
        zmq_msg_init(&topic);
        if (zmq_msg_recv(&topic, rx->sub, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&topic);
            return 0;
        }
        uint64_t t = now_ns();
        zmq_msg_init(&body);
        bool have_body = zmq_msg_more(&topic) && zmq_msg_recv(&body, rx->sub, 0) >= 0;
        if (have_body && !is_heartbeat(&topic)) {
            int64_t key = event_key(zmq_msg_data(&body), zmq_msg_size(&body));
            if (key >= 0)
                record(b, key, t);
        }
        while (zmq_msg_more(&body))
            zmq_msg_recv(&body, rx->sub, 0);
        zmq_msg_close(&topic);
        zmq_msg_close(&body);
    }
}

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, c = *(const uint64_t *)y;
    return a < c ? -1 : a > c;
}

static double pct_ms(const uint64_t *v, size_t n, double p)
{
    if (n == 0)
        return -1;
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return (double)v[i] / 1e6;
}

static void report(bench *b, uint64_t elapsed_ns)
{
    uint64_t *lat = malloc(b->total * sizeof *lat), *rtt = malloc(b->total * sizeof *rtt);
    size_t n = 0, nw = 0;
    for (size_t i = 0; i < b->total; i++) {
        if (!b->sent_ns[i] || !b->ack_ns[i])
            continue;
        rtt[nw++] = b->ack_ns[i] - b->sent_ns[i];
        if (b->recv_ns[i])
            lat[n++] = b->recv_ns[i] > b->sent_ns[i] ? b->recv_ns[i] - b->sent_ns[i] : 0;
    }
    qsort(lat, n, sizeof *lat, cmp_u64);
    qsort(rtt, nw, sizeof *rtt, cmp_u64);
    printf("RESULT label=%s rate=%.0f achieved=%.1f written=%zu received=%zu missing=%zu dups=%zu "
           "foreign=%zu p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f commit_p50_ms=%.3f "
           "commit_p99_ms=%.3f\n",
           b->label, b->rate, (double)nw * 1e9 / (double)elapsed_ns, nw, n, nw - n, b->dups,
           b->foreign, pct_ms(lat, n, 0.5), pct_ms(lat, n, 0.9), pct_ms(lat, n, 0.99),
           n ? (double)lat[n - 1] / 1e6 : -1, pct_ms(rtt, nw, 0.5), pct_ms(rtt, nw, 0.99));
    fflush(stdout);
    if (b->raw) {
        FILE *f = fopen(b->raw, "w");
        if (!f) {
            perror(b->raw);
        } else {
            for (size_t i = 0; i < n; i++)
                fprintf(f, "%.1f\n", (double)lat[i] / 1e3);
            fclose(f);
        }
    }
    free(lat);
    free(rtt);
}

static int usage(void)
{
    fprintf(stderr, "usage: bench_latency --conninfo CI --table T (--zmq EP [--server-key F "
                    "--key F] | --listen CH | "
                    "--stdin wal2json) [--rate N] [--seconds S] [--writers W] [--drain-ms MS] "
                    "[--label L] [--raw FILE]\n");
    return 2;
}

static int parse_args(bench *b, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return -1;
        i++;
        if (!strcmp(a, "--conninfo"))
            b->conninfo = v;
        else if (!strcmp(a, "--table"))
            b->table = v;
        else if (!strcmp(a, "--zmq"))
            b->zmq_ep = v;
        else if (!strcmp(a, "--server-key"))
            b->server_key = v;
        else if (!strcmp(a, "--key"))
            b->key = v;
        else if (!strcmp(a, "--listen"))
            b->channel = v;
        else if (!strcmp(a, "--stdin") && !strcmp(v, "wal2json"))
            b->stdin_fmt = v;
        else if (!strcmp(a, "--label"))
            b->label = v;
        else if (!strcmp(a, "--raw"))
            b->raw = v;
        else if (!strcmp(a, "--rate"))
            b->rate = atof(v);
        else if (!strcmp(a, "--seconds"))
            b->seconds = atof(v);
        else if (!strcmp(a, "--writers"))
            b->writers = atoi(v);
        else if (!strcmp(a, "--drain-ms"))
            b->drain_ms = atoi(v);
        else
            return -1;
    }
    int receivers = !!b->zmq_ep + !!b->channel + !!b->stdin_fmt;
    if (!b->conninfo || !b->table || receivers != 1 || b->rate <= 0 || b->seconds <= 0 ||
        b->writers < 1 || b->writers > MAX_WRITERS || ((b->server_key || b->key) && !b->zmq_ep))
        return -1;
    return 0;
}

/* The first key this run writes: one past the table's largest. */
static int find_base(bench *b)
{
    PGconn *c = connect_db(b->conninfo);
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT coalesce(max(id), 0) + 1 FROM %s", b->table);
    PGresult *r = c ? PQexec(c, sql) : NULL;
    int rc = -1;
    if (r && PQresultStatus(r) == PGRES_TUPLES_OK) {
        b->base = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        rc = 0;
    } else if (c) {
        fprintf(stderr, "bench_latency: %s: %s", sql, PQerrorMessage(c));
    }
    PQclear(r);
    PQfinish(c);
    return rc;
}

int main(int argc, char **argv)
{
    static bench b = {.rate = 100, .seconds = 10, .writers = 4, .drain_ms = 3000, .label = "-"};
    if (parse_args(&b, argc, argv))
        return usage();
    if (find_base(&b))
        return 1;
    b.total = (size_t)(b.rate * b.seconds);
    b.sent_ns = calloc(b.total, sizeof *b.sent_ns);
    b.ack_ns = calloc(b.total, sizeof *b.ack_ns);
    b.recv_ns = calloc(b.total, sizeof *b.recv_ns);
    receiver rx = {0};
    if (!b.sent_ns || !b.ack_ns || !b.recv_ns || receiver_open(&b, &rx)) {
        receiver_close(&rx);
        return 1;
    }
    pthread_t th[MAX_WRITERS];
    b.start_ns = now_ns() + 50000000u; /* writers connect first */
    for (int i = 0; i < b.writers; i++)
        pthread_create(&th[i], NULL, writer_main, &b);
    int rc = 0;
    while (atomic_load(&b.written) < b.total && !atomic_load(&b.failed) && rc == 0)
        rc = receive_some(&b, &rx, 50);
    uint64_t elapsed = now_ns() - b.start_ns;
    /* Drain: stop early once every written row was delivered. */
    uint64_t deadline = now_ns() + (uint64_t)b.drain_ms * 1000000u;
    while (rc == 0 && now_ns() < deadline) {
        size_t got = 0;
        for (size_t i = 0; i < b.total; i++)
            got += b.recv_ns[i] != 0;
        if (got >= atomic_load(&b.written))
            break;
        rc = receive_some(&b, &rx, 20);
    }
    for (int i = 0; i < b.writers; i++)
        pthread_join(th[i], NULL);
    report(&b, elapsed);
    receiver_close(&rx);
    free(b.sent_ns);
    free(b.ack_ns);
    free(b.recv_ns);
    return rc || atomic_load(&b.failed) ? 1 : 0;
}
