/*
 * editors.c - the editors op: who edits an entity now. Presence messages carry the full
 * editor list of one entity, so the latest one published for each entity that has editors
 * is all the answer needs; an entity whose list became empty is forgotten. Lookups scan the
 * list: it holds only the entities being edited at this moment.
 */
#include "tz.h"

#include "sb_mp.h"
#include "sb_proto.h"

#include <stdlib.h>
#include <string.h>

struct tz_editors {
    char *id; /* "table\0part\0part...": unambiguous, unlike a topic */
    size_t idlen;
    unsigned char *body; /* the presence message, as published */
    size_t len;
};

/* Build the id of (table, key) into a malloc'd *id. */
static int make_id(const char *table, const sb_key *key, char **id, size_t *idlen)
{
    size_t n = strlen(table) + 1;
    for (uint32_t i = 0; i < key->nparts; i++)
        n += strlen(key->parts[i]) + 1;
    char *p = malloc(n);
    if (!p)
        return SB_ERR_NOMEM;
    size_t at = 0;
    for (uint32_t i = 0; i <= key->nparts; i++) {
        const char *s = i == 0 ? table : key->parts[i - 1];
        size_t len = strlen(s) + 1;
        memcpy(p + at, s, len);
        at += len;
    }
    *id = p;
    *idlen = n;
    return SB_OK;
}

static tz_editors *find(tz *t, const char *id, size_t idlen)
{
    for (size_t i = 0; i < t->neditors; i++)
        if (t->editors[i].idlen == idlen && memcmp(t->editors[i].id, id, idlen) == 0)
            return &t->editors[i];
    return NULL;
}

static void drop(tz *t, tz_editors *e)
{
    free(e->id);
    free(e->body);
    *e = t->editors[--t->neditors];
}

/* Replace e's body with a copy of m's (e->id is set); SB_ERR_NOMEM leaves e as it was. */
static int keep_body(tz_editors *e, const sb_message *m)
{
    unsigned char *copy = malloc(m->body_len ? m->body_len : 1);
    if (!copy)
        return SB_ERR_NOMEM;
    memcpy(copy, m->body, m->body_len);
    free(e->body);
    e->body = copy;
    e->len = m->body_len;
    return SB_OK;
}

/* Remember m under *id; a new entry takes *id over (and sets it NULL). */
static int remember(tz *t, char **id, size_t idlen, const sb_message *m)
{
    tz_editors *e = find(t, *id, idlen);
    if (e)
        return keep_body(e, m);
    if (t->neditors == t->capeditors) {
        size_t cap = t->capeditors ? t->capeditors * 2 : 16;
        tz_editors *grown = realloc(t->editors, cap * sizeof *grown);
        if (!grown)
            return SB_ERR_NOMEM;
        t->editors = grown;
        t->capeditors = cap;
    }
    e = &t->editors[t->neditors];
    *e = (tz_editors){.id = *id, .idlen = idlen};
    if (keep_body(e, m) != SB_OK)
        return SB_ERR_NOMEM;
    t->neditors++;
    *id = NULL;
    return SB_OK;
}

void tz_editors_note(tz *t, const sb_message *m)
{
    sb_proto_msg pm;
    char *id = NULL;
    size_t idlen = 0;
    int rc = sb_proto_decode(m->body, m->body_len, NULL, &pm);
    if (rc == SB_OK && pm.kind != SB_PROTO_PRESENCE)
        rc = SB_ERR_INVAL;
    const sb_proto_presence *p = rc == SB_OK ? &pm.presence : NULL;
    rc = rc ? rc : make_id(p->table, &p->key, &id, &idlen);
    bool kept = rc == SB_OK && p->n > 0 && (rc = remember(t, &id, idlen, m)) == SB_OK;
    /* Nobody left, or the new list could not be kept (an old one would be a wrong answer):
     * forget the entity. */
    tz_editors *e = !kept && id ? find(t, id, idlen) : NULL;
    if (e)
        drop(t, e);
    if (rc != SB_OK)
        t->api->base.log(t->host, SB_LOG_WARN, "editors of an entity of %s not kept: %s",
                         p ? p->table : "?", sb_strerror(rc));
    free(id);
    sb_proto_release(&pm);
}

void tz_editors_clear(tz *t)
{
    while (t->neditors)
        drop(t, &t->editors[0]);
    free(t->editors);
    t->editors = NULL;
    t->capeditors = 0;
}

void tz_editors_serve(tz *t, tz_frames *env, const msgpack_object *req)
{
    char *table = NULL, *id = NULL;
    size_t idlen = 0;
    sb_key key = {0};
    int rc = sb_mp_dup_str(sb_mp_map_get(req, "table"), &table);
    rc = rc ? rc : sb_mp_dup_key(sb_mp_map_get(req, "key"), &key);
    if (rc == SB_OK && tz_table_allowed(t, env, table, strlen(table)) < 0) {
        free(table);
        sb_mp_key_free(&key);
        return;
    }
    rc = rc ? rc : make_id(table, &key, &id, &idlen);
    const tz_editors *e = rc == SB_OK ? find(t, id, idlen) : NULL;
    sb_proto_msg pm = {0};
    const sb_proto_presence *p = NULL;
    if (e && sb_proto_decode(e->body, e->len, NULL, &pm) == SB_OK && pm.kind == SB_PROTO_PRESENCE)
        p = &pm.presence;
    if (rc == SB_ERR_NOMEM) {
        tz_reply_error(t, env, "internal", "out of memory");
    } else if (rc < 0) {
        tz_reply_error(t, env, "bad_request", "editors needs table (str) and key (str or [str])");
    } else {
        sb_stats s = {0};
        t->api->stats(t->host, &s);
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        int prc = msgpack_pack_map(&pk, 5);
        prc |= sb_mp_pack_kv_cstr(&pk, "epoch", t->api->base.epoch(t->host));
        prc |= sb_mp_pack_kv_uint(&pk, "seq", s.seq);
        prc |= sb_mp_pack_kv_cstr(&pk, "table", table);
        prc |= sb_mp_pack_cstr(&pk, "key") | sb_mp_pack_key(&pk, &key);
        prc |= sb_mp_pack_cstr(&pk, SB_PF_EDITORS);
        prc |= sb_proto_pack_editors(&pk, p ? p->editors : NULL, p ? p->n : 0);
        tz_reply_map(t, env, &sb, prc, NULL);
    }
    sb_proto_release(&pm);
    free(id);
    free(table);
    sb_mp_key_free(&key);
}
