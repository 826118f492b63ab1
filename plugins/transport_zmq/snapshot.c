/*
 * snapshot.c - the snapshot op. Rows arrive asynchronously through api->snapshot's rows
 * callback, possibly while other requests are served; each request keeps its own state
 * (tz_snap) and its reply is sent whole once the core reports done:
 *   envelope, {epoch, seq, tables, rows, tseq}, then frames of up to snapshot_batch rows,
 *   each a msgpack array of {table, key, version, row}.
 * tseq (each table's tseq at the snapshot's seq) comes from the heartbeat the core publishes
 * just before it takes the snapshot's seq.
 * A multipart message is delivered atomically anyway, so accumulating costs no latency.
 */
#include "tz.h"

#include "sb_mp.h"

#include <stdlib.h>
#include <string.h>

struct tz_snap {
    tz_snap *next;
    tz *t;
    tz_frames env;    /* the requester's envelope (routing id first) */
    tz_frames frames; /* finished row frames */
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
    for (size_t i = 0; i < s->ntables; i++)
        free(s->tables[i]);
    free(s->tables);
    free(s->tseq);
    tz_frames_clear(&s->env);
    tz_frames_clear(&s->frames);
    msgpack_sbuffer_destroy(&s->batch);
    free(s);
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
    int rc = tz_frames_push2(&s->frames, hdr.data, hdr.size, s->batch.data, s->batch.size);
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
        tz_reply_map(t, &s->env, &sb, rc, &s->frames);
    }
    snap_free(s);
}

static void on_rows(void *ud, const sb_row *rows, size_t n, bool done, int status)
{
    tz_snap *s = ud;
    for (size_t i = 0; i < n && s->status == SB_OK; i++) {
        s->status = pack_row(s, &rows[i]);
        s->rows++;
        if (++s->in_batch >= s->t->snapshot_batch && s->status == SB_OK)
            s->status = flush_batch(s);
    }
    if (!done)
        return;
    s->done = true;
    if (s->status == SB_OK)
        s->status = status;
    if (!s->starting)
        finish(s);
}

/* Fill s->tables from the request's `tables` (absent, nil or [] = every configured table).
 * Replies itself and returns false when the request cannot be served. */
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
    s->all = n == 0;
    s->ntables = s->all ? nconf : n;
    s->tables = calloc(s->ntables ? s->ntables : 1, sizeof *s->tables);
    if (!s->tables) {
        tz_reply_error(t, &s->env, "internal", "out of memory");
        return false;
    }
    for (size_t i = 0; i < s->ntables; i++) {
        int rc = s->all ? ((s->tables[i] = strdup(conf[i])) ? SB_OK : SB_ERR_NOMEM)
                        : sb_mp_dup_str(&items[i], &s->tables[i]);
        if (rc == SB_ERR_NOMEM) {
            tz_reply_error(t, &s->env, "internal", "out of memory");
            return false;
        }
        if (rc < 0) {
            tz_reply_error(t, &s->env, "bad_request", "tables must be an array of str");
            return false;
        }
        if (!s->all && !tz_table_known(t, s->tables[i])) {
            tz_reply_unknown_table(t, &s->env, s->tables[i], strlen(s->tables[i]));
            return false;
        }
    }
    return true;
}

/* The tables' tseq at s->seq, from the latest heartbeat if it was published at that seq in
 * this epoch; otherwise (no memory for it) the header goes without tseq. */
static void take_tseq(tz *t, tz_snap *s)
{
    msgpack_unpacked hb;
    uint64_t seq;
    const msgpack_object *map = NULL;
    if (tz_last_heartbeat(t, &hb) == SB_OK &&
        sb_mp_get_uint(sb_mp_map_get(&hb.data, "seq"), &seq) == SB_OK && seq == s->seq &&
        sb_mp_str_eq(sb_mp_map_get(&hb.data, "epoch"), t->api->epoch(t->host)))
        map = sb_mp_map_get(&hb.data, "tseq");
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
    tz_snap *s = calloc(1, sizeof *s);
    if (!s) {
        tz_reply_error(t, env, "internal", "out of memory");
        return;
    }
    s->t = t;
    s->env = *env;
    *env = (tz_frames){0};
    msgpack_sbuffer_init(&s->batch);
    msgpack_packer_init(&s->pk, &s->batch, msgpack_sbuffer_write);
    if (!resolve_tables(t, s, req)) {
        snap_free(s);
        return;
    }
    /* Linked and marked first: the core may deliver rows, even done, before returning. */
    s->next = t->snaps;
    t->snaps = s;
    t->nsnaps++;
    s->starting = true;
    int rc = t->api->snapshot(t->host, s->all ? NULL : (const char *const *)s->tables,
                              s->all ? 0 : s->ntables, on_rows, s, &s->seq, &s->req);
    s->starting = false;
    if (rc == SB_OK) {
        take_tseq(t, s);
        if (s->done)
            finish(s);
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

static void cancel(tz *t, tz_snap *s)
{
    snap_unlink(t, s);
    t->api->cancel(t->host, s->req);
    snap_free(s);
}

void tz_snapshot_cancel_peer(tz *t, const tz_frames *msg)
{
    tz_snap **p = &t->snaps;
    while (*p) {
        tz_snap *s = *p;
        if (tz_frames_same_peer(&s->env, msg))
            cancel(t, s); /* unlinks s: *p now is the next one */
        else
            p = &s->next;
    }
}

void tz_snapshot_cancel_all(tz *t)
{
    while (t->snaps)
        cancel(t, t->snaps);
}
