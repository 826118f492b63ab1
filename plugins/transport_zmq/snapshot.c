/*
 * snapshot.c - the snapshot op. Rows arrive asynchronously through api->snapshot's rows
 * callback, possibly while other requests are served; each request keeps its own state
 * (tz_snap) and its reply is sent whole once the core reports done:
 *   envelope, {epoch, seq, tables, rows, tseq}, then frames of up to snapshot_batch rows,
 *   each a msgpack array of {table, key, version, row}.
 * tseq (each table's tseq at the snapshot's seq) comes from the heartbeat the core publishes
 * just before it takes the snapshot's seq.
 * A multipart message is delivered atomically anyway, so accumulating costs no latency.
 *
 * Bounds (docs/operations.md, Limits): the table list is deduplicated, so a snapshot scans
 * each configured table at most once; a client runs max_peer_snapshots at once (more are
 * answered busy); a reply being built counts towards its client's max_peer_bytes and the
 * total max_pending_bytes, and is cancelled when it would exceed them. Work for a client
 * that is gone stops: its connection is checked with every batch of rows and every
 * TZ_CHECK_MS, and a snapshot not done within snapshot_timeout_ms is cancelled.
 */
#include "tz.h"

#include "sb_mp.h"
#include "sb_proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TZ_CHECK_MS 100 /* how often running snapshots' clients are checked */

struct tz_snap {
    tz_snap *next;
    tz *t;
    tz_frames env;    /* the requester's envelope (routing id first) */
    tz_conn conn;     /* the requester's connection */
    uint64_t started; /* api->now_ms() */
    tz_frames frames; /* finished row frames (their bytes count in t->snap_bytes) */
    char **tables;    /* the resolved table list for the header; owned */
    uint64_t *tseq;   /* ntables tseqs at seq, or NULL when no heartbeat tells them; owned */
    size_t ntables;
    bool all;              /* no tables requested: ask the core for all of them */
    msgpack_sbuffer batch; /* packed rows not yet in a frame */
    msgpack_packer pk;
    uint32_t in_batch;
    uint64_t seq, req, rows;
    bool starting; /* inside api->snapshot(): done must wait for it to return */
    bool done;
    int status; /* the core's status, or our own SB_ERR_NOMEM */
};

static void snap_free(tz_snap *s)
{
    s->t->snap_bytes -= s->frames.bytes;
    for (size_t i = 0; i < s->ntables; i++)
        free(s->tables[i]);
    free(s->tables);
    free(s->tseq);
    tz_frames_clear(&s->env);
    tz_frames_clear(&s->frames);
    msgpack_sbuffer_destroy(&s->batch);
    free(s);
}

static void on_check(void *ud);

static void snap_link(tz *t, tz_snap *s)
{
    s->next = t->snaps;
    t->snaps = s;
    t->nsnaps++;
    if (!t->snap_timer &&
        t->api->timer_start(t->host, TZ_CHECK_MS, 0, on_check, t, &t->snap_timer) < 0)
        t->snap_timer = NULL; /* then only the batches and the reply notice a client gone */
}

static void snap_unlink(tz *t, tz_snap *s)
{
    for (tz_snap **p = &t->snaps; *p; p = &(*p)->next) {
        if (*p == s) {
            *p = s->next;
            t->nsnaps--;
            return;
        }
    }
}

/* Close the current batch into a frame: array header + the packed row maps. */
static int flush_batch(tz_snap *s)
{
    if (s->in_batch == 0)
        return SB_OK;
    msgpack_sbuffer hdr;
    msgpack_packer hpk;
    msgpack_sbuffer_init(&hdr);
    msgpack_packer_init(&hpk, &hdr, msgpack_sbuffer_write);
    if (msgpack_pack_array(&hpk, s->in_batch) < 0) {
        msgpack_sbuffer_destroy(&hdr);
        return SB_ERR_NOMEM;
    }
    size_t before = s->frames.bytes;
    int rc = tz_frames_push2(&s->frames, hdr.data, hdr.size, s->batch.data, s->batch.size);
    s->t->snap_bytes += s->frames.bytes - before;
    msgpack_sbuffer_destroy(&hdr);
    msgpack_sbuffer_clear(&s->batch);
    s->in_batch = 0;
    return rc;
}

static int pack_row(tz_snap *s, const sb_row *r)
{
    int rc = msgpack_pack_map(&s->pk, 4);
    rc |= sb_mp_pack_kv_cstr(&s->pk, "table", r->table);
    rc |= sb_mp_pack_cstr(&s->pk, "key");
    rc |= sb_mp_pack_key(&s->pk, &r->key);
    rc |= sb_mp_pack_kv_uint(&s->pk, "version", r->version);
    rc |= sb_mp_pack_cstr(&s->pk, "row");
    rc |= sb_mp_pack_raw(&s->pk, r->row, r->row_len);
    return rc < 0 ? SB_ERR_NOMEM : SB_OK;
}

static void finish(tz_snap *s)
{
    tz *t = s->t;
    snap_unlink(t, s);
    int status = s->status;
    if (status == SB_OK)
        status = flush_batch(s);
    if (status == SB_ERR_DB || status == SB_ERR_BUSY || status == SB_ERR_IO) {
        tz_reply_error(t, &s->env, "unavailable", "the snapshot failed: %s", sb_strerror(status));
    } else if (status < 0) {
        tz_reply_error(t, &s->env, "internal", "the snapshot failed: %s", sb_strerror(status));
    } else {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        int rc = msgpack_pack_map(&pk, s->tseq ? 5 : 4);
        rc |= sb_mp_pack_kv_cstr(&pk, "epoch", t->api->epoch(t->host));
        rc |= sb_mp_pack_kv_uint(&pk, "seq", s->seq);
        rc |= sb_mp_pack_cstr(&pk, "tables");
        rc |= msgpack_pack_array(&pk, s->ntables);
        for (size_t i = 0; i < s->ntables; i++)
            rc |= sb_mp_pack_cstr(&pk, s->tables[i]);
        rc |= sb_mp_pack_kv_uint(&pk, "rows", s->rows);
        if (s->tseq) {
            rc |= sb_mp_pack_cstr(&pk, "tseq") | msgpack_pack_map(&pk, s->ntables);
            for (size_t i = 0; i < s->ntables; i++)
                rc |= sb_mp_pack_kv_uint(&pk, s->tables[i], s->tseq[i]);
        }
        t->snap_bytes -= s->frames.bytes; /* from here on they count as a reply */
        tz_reply_map(t, &s->env, &sb, rc, &s->frames);
    }
    snap_free(s);
}

/* Stop s for good: the core delivers nothing more. Replies {error: code, message} unless
 * code is NULL (nobody to tell). */
static void cancel_with(tz *t, tz_snap *s, const char *code, const char *message)
{
    snap_unlink(t, s);
    t->api->cancel(t->host, s->req);
    t->snapshots_cancelled++;
    if (code)
        tz_reply_error(t, &s->env, code, "%s", message);
    else
        t->api->log(t->host, SB_LOG_DEBUG, "client gone: its snapshot is cancelled");
    snap_free(s);
}

/* After a batch: stop a snapshot whose client is gone or whose reply outgrows the bounds.
 * False when s was cancelled (and freed). */
static bool within_bounds(tz *t, tz_snap *s)
{
    char why[192];
    const char *code = NULL;
    size_t peer = tz_service_peer_bytes(t, &s->env), total = tz_reply_bytes(t);
    if (!tz_conn_alive(&s->conn)) {
        cancel_with(t, s, NULL, NULL);
        return false;
    }
    if (s->frames.bytes > t->max_peer_bytes) {
        code = "too_large";
        snprintf(why, sizeof why,
                 "the snapshot exceeds max_peer_bytes (%zu bytes) after %llu rows: ask for fewer "
                 "tables",
                 t->max_peer_bytes, (unsigned long long)s->rows);
    } else if (peer > t->max_peer_bytes) {
        code = "busy";
        snprintf(why, sizeof why,
                 "%zu bytes of earlier replies to this client are unread (max_peer_bytes %zu)",
                 peer - s->frames.bytes, t->max_peer_bytes);
    } else if (total > t->max_pending_bytes) {
        code = "unavailable";
        snprintf(why, sizeof why,
                 "the broker holds %zu bytes of replies (max_pending_bytes %zu): try again later",
                 total, t->max_pending_bytes);
    }
    if (code)
        cancel_with(t, s, code, why);
    return code == NULL;
}

static void on_rows(void *ud, const sb_row *rows, size_t n, bool done, int status)
{
    tz_snap *s = ud;
    tz *t = s->t;
    size_t frames = s->frames.n;
    for (size_t i = 0; i < n && s->status == SB_OK; i++) {
        s->status = pack_row(s, &rows[i]);
        s->rows++;
        if (++s->in_batch >= t->snapshot_batch && s->status == SB_OK)
            s->status = flush_batch(s);
    }
    /* Not while api->snapshot() runs: serve() still holds s then. */
    if (!s->starting && s->frames.n > frames && !within_bounds(t, s))
        return;
    if (!done)
        return;
    s->done = true;
    if (s->status == SB_OK)
        s->status = status;
    if (!s->starting)
        finish(s);
}

/* Fill s->tables from the request's `tables` (absent, nil or [] = every configured table the
 * client may read), each table once, in the order first asked: the list cannot outgrow the
 * configured one. Replies itself and returns false when the request cannot be served. */
static bool resolve_tables(tz *t, tz_snap *s, const msgpack_object *req)
{
    const msgpack_object *want = sb_mp_map_get(req, "tables"), *items = NULL;
    uint32_t n = 0;
    if (want && want->type != MSGPACK_OBJECT_NIL && sb_mp_get_array(want, &items, &n) < 0) {
        tz_reply_error(t, &s->env, "bad_request", "tables must be an array of str");
        return false;
    }
    size_t nconf = 0;
    const char *const *conf = t->api->tables(t->host, &nconf);
    /* "All" for a client restricted to some tables is the list of them. */
    bool every = n == 0;
    s->all = every && tz_principal_reads(t->req_who, -1);
    s->tables = calloc(nconf ? nconf : 1, sizeof *s->tables);
    bool *taken = calloc(nconf ? nconf : 1, sizeof *taken);
    bool ok = s->tables && taken;
    if (!ok)
        tz_reply_error(t, &s->env, "internal", "out of memory");
    for (size_t i = 0; ok && i < (every ? nconf : n); i++) {
        const char *name;
        size_t len;
        int k = (int)i;
        if (!every && sb_mp_get_str(&items[i], &name, &len) < 0) {
            tz_reply_error(t, &s->env, "bad_request", "tables must be an array of str");
            ok = false;
        } else if (!every && (k = tz_table_allowed(t, &s->env, name, len)) < 0) {
            ok = false;
        } else if (every && !tz_principal_reads(t->req_who, k)) {
            continue;
        } else if (!taken[k]) {
            taken[k] = true;
            if (!(s->tables[s->ntables++] = strdup(conf[k]))) {
                tz_reply_error(t, &s->env, "internal", "out of memory");
                ok = false;
            }
        }
    }
    free(taken);
    if (ok && s->ntables == 0 && !s->all) {
        /* An empty list would ask the core for every table. */
        tz_reply_error(t, &s->env, "forbidden", "this client may read no table");
        ok = false;
    }
    return ok;
}

/* The tables' tseq at s->seq, from the latest heartbeat if it was published at that seq in
 * this epoch; otherwise (no memory for it) the header goes without tseq. */
static void take_tseq(tz *t, tz_snap *s)
{
    msgpack_unpacked hb;
    uint64_t seq;
    const msgpack_object *map = NULL;
    if (tz_last_heartbeat(t, &hb) == SB_OK &&
        sb_mp_get_uint(sb_mp_map_get(&hb.data, SB_PF_SEQ), &seq) == SB_OK && seq == s->seq &&
        sb_mp_str_eq(sb_mp_map_get(&hb.data, SB_PF_EPOCH), t->api->epoch(t->host)))
        map = sb_mp_map_get(&hb.data, SB_PF_TSEQ);
    s->tseq = map ? calloc(s->ntables ? s->ntables : 1, sizeof *s->tseq) : NULL;
    for (size_t i = 0; s->tseq && i < s->ntables; i++) {
        if (sb_mp_get_uint(sb_mp_map_get(map, s->tables[i]), &s->tseq[i]) != SB_OK) {
            free(s->tseq);
            s->tseq = NULL;
        }
    }
    msgpack_unpacked_destroy(&hb);
}

void tz_snapshot_serve(tz *t, tz_frames *env, const msgpack_object *req)
{
    if (t->nsnaps >= t->max_snapshots) {
        tz_reply_error(t, env, "unavailable", "%zu snapshots are running: try again later",
                       t->nsnaps);
        return;
    }
    size_t mine = 0;
    for (tz_snap *o = t->snaps; o; o = o->next)
        mine += tz_frames_same_peer(&o->env, env);
    if (mine >= t->max_peer_snapshots) {
        tz_reply_error(t, env, "busy",
                       "this client's %zu snapshots are running (max_peer_snapshots): wait for "
                       "their replies",
                       mine);
        return;
    }
    size_t held = tz_service_peer_bytes(t, env);
    if (held >= t->max_peer_bytes) {
        tz_reply_error(t, env, "busy",
                       "%zu bytes of earlier replies to this client are unread (max_peer_bytes "
                       "%zu): read them first",
                       held, t->max_peer_bytes);
        return;
    }
    tz_snap *s = calloc(1, sizeof *s);
    if (!s) {
        tz_reply_error(t, env, "internal", "out of memory");
        return;
    }
    s->t = t;
    s->env = *env;
    *env = (tz_frames){0};
    s->conn = tz_conn_of(t->conn_fd);
    s->started = t->api->now_ms(t->host);
    msgpack_sbuffer_init(&s->batch);
    msgpack_packer_init(&s->pk, &s->batch, msgpack_sbuffer_write);
    if (!resolve_tables(t, s, req)) {
        snap_free(s);
        return;
    }
    /* Linked and marked first: the core may deliver rows, even done, before returning. */
    snap_link(t, s);
    s->starting = true;
    int rc = t->api->snapshot(t->host, s->all ? NULL : (const char *const *)s->tables,
                              s->all ? 0 : s->ntables, on_rows, s, &s->seq, &s->req);
    s->starting = false;
    if (rc == SB_OK) {
        take_tseq(t, s);
        if (s->done)
            finish(s);
        else
            within_bounds(t, s); /* what arrived inside the call */
        return;
    }
    snap_unlink(t, s);
    if (rc == SB_ERR_NOTFOUND)
        tz_reply_error(t, &s->env, "unknown_table", "a requested table is not configured");
    else if (rc == SB_ERR_BUSY)
        tz_reply_error(t, &s->env, "unavailable", "no source can serve a snapshot now");
    else
        tz_reply_error(t, &s->env, "internal", "snapshot failed: %s", sb_strerror(rc));
    snap_free(s);
}

static void on_check(void *ud)
{
    tz *t = ud;
    t->snap_timer = NULL; /* one-shot: freed by the host after this call */
    uint64_t now = t->api->now_ms(t->host);
    tz_snap **p = &t->snaps;
    while (*p) {
        tz_snap *s = *p;
        if (!tz_conn_alive(&s->conn))
            cancel_with(t, s, NULL, NULL); /* unlinks s: *p now is the next one */
        else if (now - s->started >= (uint64_t)t->snapshot_timeout_ms)
            cancel_with(t, s, "unavailable",
                        "the snapshot took longer than snapshot_timeout_ms: try again later");
        else
            p = &s->next;
    }
    if (t->snaps && t->api->timer_start(t->host, TZ_CHECK_MS, 0, on_check, t, &t->snap_timer) < 0)
        t->snap_timer = NULL;
}

size_t tz_snapshot_peer_bytes(tz *t, const tz_frames *msg)
{
    size_t n = 0;
    for (tz_snap *s = t->snaps; s; s = s->next)
        if (tz_frames_same_peer(&s->env, msg))
            n += s->frames.bytes;
    return n;
}

void tz_snapshot_cancel_peer(tz *t, const tz_frames *msg)
{
    tz_snap **p = &t->snaps;
    while (*p) {
        tz_snap *s = *p;
        if (tz_frames_same_peer(&s->env, msg))
            cancel_with(t, s, NULL, NULL); /* unlinks s: *p now is the next one */
        else
            p = &s->next;
    }
}

void tz_snapshot_cancel_all(tz *t)
{
    while (t->snaps) {
        tz_snap *s = t->snaps;
        snap_unlink(t, s);
        t->api->cancel(t->host, s->req);
        snap_free(s);
    }
    t->api->timer_stop(t->snap_timer);
    t->snap_timer = NULL;
}
