/* presence.c - see presence.h. */
#include "presence.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
    uint32_t table;
    uint32_t nparts;
    char *key; /* parts, each NUL-terminated */
    size_t keylen;
    char *client;
    const char *state; /* static string */
    int64_t since_ms;
    uint64_t expires;
} entry;

struct sb_presence_set {
    entry *e;
    size_t n, cap;
};

int sb_presence_set_new(sb_presence_set **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? SB_OK : SB_ERR_NOMEM;
}

static void free_entry(entry *x)
{
    free(x->key);
    free(x->client);
}

void sb_presence_set_free(sb_presence_set *ps)
{
    if (!ps)
        return;
    for (size_t i = 0; i < ps->n; i++)
        free_entry(&ps->e[i]);
    free(ps->e);
    free(ps);
}

static char *flatten(const sb_key *key, size_t *len)
{
    *len = 0;
    for (uint32_t i = 0; i < key->nparts; i++)
        *len += strlen(key->parts[i]) + 1;
    char *buf = malloc(*len ? *len : 1);
    if (!buf)
        return NULL;
    size_t off = 0;
    for (uint32_t i = 0; i < key->nparts; i++) {
        size_t n = strlen(key->parts[i]) + 1;
        memcpy(buf + off, key->parts[i], n);
        off += n;
    }
    return buf;
}

static bool same_entity(const entry *x, uint32_t table, const char *key, size_t len)
{
    return x->table == table && x->keylen == len && memcmp(x->key, key, len) == 0;
}

/* Publish the editor list of the entity stored in `model`. */
static void publish(sb_presence_set *ps, uint32_t table, const char *key, size_t len,
                    uint32_t nparts, sb_presence_fn fn, void *ud)
{
    sb_event_editor stack[16] = {{0}};
    size_t count = 0;
    for (size_t i = 0; i < ps->n; i++)
        count += same_entity(&ps->e[i], table, key, len);
    sb_event_editor *ed = count <= 16 ? stack : malloc(count * sizeof *ed);
    const char *parts[64];
    if (!ed || nparts > 64) {
        if (ed != stack)
            free(ed);
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < ps->n; i++) {
        const entry *x = &ps->e[i];
        if (same_entity(x, table, key, len))
            ed[k++] = (sb_event_editor){x->client, x->state, x->since_ms};
    }
    const char *p = key;
    for (uint32_t i = 0; i < nparts; i++) {
        parts[i] = p;
        p += strlen(p) + 1;
    }
    sb_key sk = {.parts = parts, .nparts = nparts};
    fn(ud, table, &sk, ed, k);
    if (ed != stack)
        free(ed);
}

static const char *canonical_state(const char *state)
{
    if (strcmp(state, "editing") == 0)
        return "editing";
    if (strcmp(state, "viewing") == 0)
        return "viewing";
    if (strcmp(state, "left") == 0)
        return "left";
    return NULL;
}

int sb_presence_apply(sb_presence_set *ps, uint32_t table, const sb_key *key, const char *client,
                      const char *state, uint32_t ttl_ms, uint64_t now, int64_t wall_ms,
                      sb_presence_fn fn, void *ud)
{
    const char *st = canonical_state(state);
    if (!st || key->nparts == 0 || key->nparts > 64)
        return SB_ERR_INVAL;
    size_t len;
    char *flat = flatten(key, &len);
    if (!flat)
        return SB_ERR_NOMEM;
    size_t i = 0;
    while (i < ps->n &&
           !(same_entity(&ps->e[i], table, flat, len) && strcmp(ps->e[i].client, client) == 0))
        i++;
    bool changed = false;
    int rc = SB_OK;
    if (st[0] == 'l') {
        if (i < ps->n) {
            free_entry(&ps->e[i]);
            ps->e[i] = ps->e[--ps->n];
            changed = true;
        }
    } else if (i < ps->n) {
        entry *x = &ps->e[i];
        if (x->state != st) {
            x->state = st;
            x->since_ms = wall_ms;
            changed = true;
        }
        x->expires = now + ttl_ms;
    } else if (ps->n >= SB_PRESENCE_MAX) {
        rc = SB_ERR_BUSY;
    } else {
        if (ps->n == ps->cap) {
            size_t cap = ps->cap ? ps->cap * 2 : 16;
            entry *grown = realloc(ps->e, cap * sizeof *grown);
            if (!grown) {
                free(flat);
                return SB_ERR_NOMEM;
            }
            ps->e = grown;
            ps->cap = cap;
        }
        char *flat_copy = malloc(len ? len : 1);
        char *client_copy = strdup(client);
        if (!flat_copy || !client_copy) {
            free(flat_copy);
            free(client_copy);
            free(flat);
            return SB_ERR_NOMEM;
        }
        memcpy(flat_copy, flat, len);
        ps->e[ps->n++] = (entry){.table = table,
                                 .nparts = key->nparts,
                                 .key = flat_copy,
                                 .keylen = len,
                                 .client = client_copy,
                                 .state = st,
                                 .since_ms = wall_ms,
                                 .expires = now + ttl_ms};
        changed = true;
    }
    if (changed)
        publish(ps, table, flat, len, key->nparts, fn, ud);
    free(flat);
    return rc;
}

void sb_presence_expire(sb_presence_set *ps, uint64_t now, sb_presence_fn fn, void *ud)
{
    for (size_t i = 0; i < ps->n;) {
        entry *x = &ps->e[i];
        if (x->expires > now) {
            i++;
            continue;
        }
        entry gone = *x;
        ps->e[i] = ps->e[--ps->n];
        publish(ps, gone.table, gone.key, gone.keylen, gone.nparts, fn, ud);
        free_entry(&gone);
    }
}

uint64_t sb_presence_next_expiry(const sb_presence_set *ps)
{
    uint64_t next = UINT64_MAX;
    for (size_t i = 0; i < ps->n; i++)
        if (ps->e[i].expires < next)
            next = ps->e[i].expires;
    return next;
}
