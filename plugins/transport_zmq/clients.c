/*
 * clients.c - who a connection is (see tz.h, tz_principal; docs/security.md).
 *
 * The ZAP handler (subs.c) answers every handshake with a User-Id of its own making, which
 * libzmq attaches to every message of that connection: "<connection id>" in plain mode,
 * "<connection id>/<principal index>" with CURVE. Only this file reads it back.
 *
 * clients_file is INI, one section per allowed client (read with inih). Our line reader
 * counts lines and sees section headers itself: inih neither reports a section without keys
 * nor a section that appears twice, and it cuts long lines silently.
 */
#include "tz.h"

#include "sb_keyfile.h"
#include "sb_proto.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TZ_NAME_MAX 64 /* longest client name */

/* ---- the User-Id ----------------------------------------------------------------------- */

/* A decimal number at *s (digits only, no sign or space), moving *s past it. */
static bool parse_number(const char **s, unsigned long long *out)
{
    char *end;
    if (**s < '0' || **s > '9')
        return false;
    errno = 0;
    *out = strtoull(*s, &end, 10);
    *s = end;
    return errno == 0;
}

int tz_user_id_parse(tz *t, const char *uid, uint64_t *conn, const tz_principal **who)
{
    unsigned long long id, index;
    if (!uid || !parse_number(&uid, &id))
        return SB_ERR_INVAL;
    /* With CURVE every connection has a principal; a User-Id without one is not ours. */
    if (t->clients) {
        if (*uid++ != '/' || !parse_number(&uid, &index) || *uid || index >= t->clients->n)
            return SB_ERR_INVAL;
        *who = t->clients->v[index];
    } else {
        if (*uid)
            return SB_ERR_INVAL;
        *who = NULL;
    }
    *conn = id;
    return SB_OK;
}

bool tz_principal_reads(const tz_principal *who, int table)
{
    return !who || who->all_tables || (table >= 0 && who->may_read[table]);
}

/* ---- the list -------------------------------------------------------------------------- */

static void principal_free(tz_principal *p)
{
    if (!p)
        return;
    free(p->name);
    free(p->may_read);
    free(p);
}

void tz_clients_free(tz_clients *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        principal_free(c->v[i]);
    free(c->v);
    free(c);
}

const tz_principal *tz_clients_find(const tz_clients *c, const unsigned char *key, size_t *index)
{
    for (size_t i = 0; c && i < c->n; i++)
        if (memcmp(c->v[i]->key, key, sizeof c->v[i]->key) == 0) {
            *index = i;
            return c->v[i];
        }
    return NULL;
}

static bool principal_same(const tz_principal *a, const tz_principal *b, size_t ntables)
{
    if (strcmp(a->name, b->name) != 0 || memcmp(a->key, b->key, sizeof a->key) != 0 ||
        a->all_tables != b->all_tables || a->admin != b->admin)
        return false;
    return a->all_tables || memcmp(a->may_read, b->may_read, ntables * sizeof *a->may_read) == 0;
}

bool tz_clients_extends(const tz_clients *cur, const tz_clients *next)
{
    if (next->n < cur->n || next->ntables != cur->ntables)
        return false;
    for (size_t i = 0; i < cur->n; i++)
        if (!principal_same(cur->v[i], next->v[i], cur->ntables))
            return false;
    return true;
}

/* ---- reading clients_file -------------------------------------------------------------- */

typedef struct load_state {
    tz *t;
    const char *path;
    FILE *f;
    tz_clients *c;
    const char *const *tables;
    int line;
    bool continuation; /* the line read last starts with a space: inih continues a value */
    /* the section being read (the last principal of c) and where its parts are */
    int section_line, key_line, tables_line;
    int *lines;   /* the section line of each principal, for "first on line N" */
    int err_line; /* the line of the first error (0: none yet) */
    int rc;
    char *err;
    size_t errlen;
} load_state;

/* Record an error at `line` unless an earlier one is known (err keeps the first). */
static void load_error(load_state *ls, int line, const char *fmt, ...) SB_PRINTF(3, 4);
static void load_error(load_state *ls, int line, const char *fmt, ...)
{
    if (ls->rc < 0 && ls->err_line <= line)
        return;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(ls->err, ls->errlen, "%s:%d: %s", ls->path, line, msg);
    ls->err_line = line;
    ls->rc = SB_ERR_CONFIG;
}

static tz_principal *current(load_state *ls)
{
    return ls->c->n ? ls->c->v[ls->c->n - 1] : NULL;
}

/* A finished section must have had a key and tables. */
static void close_section(load_state *ls)
{
    tz_principal *p = current(ls);
    if (!p)
        return;
    if (!ls->key_line)
        load_error(ls, ls->section_line, "[%s] has no key (its public key, Z85)", p->name);
    if (!ls->tables_line)
        load_error(ls, ls->section_line, "[%s] has no tables (a list of tables, or *)", p->name);
}

static bool name_valid(const char *s, size_t len)
{
    if (len < 1 || len > TZ_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("._-", s[i]))
            return false;
    return true;
}

static int open_section(load_state *ls, const char *name, size_t len)
{
    close_section(ls);
    ls->section_line = ls->line;
    ls->key_line = ls->tables_line = 0;
    if (!name_valid(name, len)) {
        load_error(ls, ls->line, "'%.*s' is not a client name ([A-Za-z0-9._-], 1-%d characters)",
                   (int)(len > TZ_NAME_MAX ? TZ_NAME_MAX : len), name, TZ_NAME_MAX);
        /* Keep reading into a throw-away section so its keys are checked too. */
    }
    for (size_t i = 0; i < ls->c->n; i++)
        if (strlen(ls->c->v[i]->name) == len && memcmp(ls->c->v[i]->name, name, len) == 0)
            load_error(ls, ls->line, "[%.*s] appears twice (first on line %d)", (int)len, name,
                       ls->lines[i]);
    tz_clients *c = ls->c;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 8;
        tz_principal **v = realloc(c->v, cap * sizeof *v);
        int *lines = realloc(ls->lines, cap * sizeof *lines);
        if (v)
            c->v = v;
        if (lines)
            ls->lines = lines;
        if (!v || !lines)
            return SB_ERR_NOMEM;
        c->cap = cap;
    }
    tz_principal *p = calloc(1, sizeof *p);
    if (!p || !(p->name = strndup(name, len)) ||
        (c->ntables && !(p->may_read = calloc(c->ntables, sizeof *p->may_read)))) {
        principal_free(p);
        return SB_ERR_NOMEM;
    }
    ls->lines[c->n] = ls->line;
    c->v[c->n++] = p;
    return SB_OK;
}

/* fgets for inih, counting lines, opening sections, refusing lines inih would cut. */
static char *read_line(char *str, int num, void *stream)
{
    load_state *ls = stream;
    for (;;) {
        if (ls->rc == SB_ERR_NOMEM || !fgets(str, num, ls->f))
            return NULL;
        ls->line++;
        size_t len = strlen(str);
        if (len == (size_t)num - 1 && str[len - 1] != '\n' && !feof(ls->f)) {
            int ch;
            while ((ch = fgetc(ls->f)) != EOF && ch != '\n')
                ;
            load_error(ls, ls->line,
                       "line longer than %d characters (continue a list on an "
                       "indented line)",
                       num - 2);
            continue;
        }
        ls->continuation = len > 0 && (str[0] == ' ' || str[0] == '\t');
        const char *p = str;
        while (isspace((unsigned char)*p))
            p++;
        const char *end = *p == '[' ? strchr(p, ']') : NULL;
        if (end && open_section(ls, p + 1, (size_t)(end - p - 1)) < 0)
            ls->rc = SB_ERR_NOMEM;
        return str;
    }
}

/* tables = * or a comma-separated list of configured tables (one line of it; a comma may
 * end the line and an indented line go on). */
static void parse_tables(load_state *ls, tz_principal *p, const char *value)
{
    size_t n = 0;
    const char *const *tables = ls->t->api->base.tables(ls->t->host, &n);
    if (strcmp(value, "*") == 0) {
        if (ls->tables_line)
            load_error(ls, ls->line, "* with other tables: * already means every table");
        p->all_tables = true;
        return;
    }
    if (p->all_tables) {
        load_error(ls, ls->line, "tables after *: * already means every table");
        return;
    }
    for (const char *s = value;;) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        const char *item = s;
        while (len && isspace((unsigned char)*item))
            item++, len--;
        while (len && isspace((unsigned char)item[len - 1]))
            len--;
        if (len == 0) {
            /* "a," goes on on the next line; "a,,b" and "" are slips. */
            if (comma || s == value)
                load_error(ls, ls->line, "an empty table name in the list");
        } else {
            int idx = tz_table_index(ls->t, item, len);
            if (idx < 0)
                load_error(ls, ls->line,
                           "'%.*s' is not one of the tables configured in [database] tables",
                           (int)(len > 128 ? 128 : len), item);
            else if (p->may_read[idx])
                load_error(ls, ls->line, "'%s' is listed twice", tables[idx]);
            else
                p->may_read[idx] = true;
        }
        if (!comma)
            return;
        s = comma + 1;
    }
}

static bool parse_bool(const char *v, bool *out)
{
    static const char *const words[] = {"off", "on", "false", "true", "no", "yes", "0", "1"};
    for (size_t i = 0; i < sizeof words / sizeof *words; i++)
        if (strcasecmp(v, words[i]) == 0) {
            *out = i % 2;
            return true;
        }
    return false;
}

static void set_key(load_state *ls, tz_principal *p, const char *value)
{
    char z85[SB_KEY_Z85_LEN + 1];
    if (ls->key_line) {
        load_error(ls, ls->line, "key set twice (first on line %d)", ls->key_line);
        return;
    }
    ls->key_line = ls->line;
    if (!sb_key_z85_valid(value, strlen(value))) {
        load_error(ls, ls->line, "'%.48s' is not a CURVE public key (40 characters of Z85)", value);
        return;
    }
    memcpy(z85, value, sizeof z85);
    zmq_z85_decode(p->key, z85);
    for (size_t i = 0; i + 1 < ls->c->n; i++)
        if (memcmp(ls->c->v[i]->key, p->key, sizeof p->key) == 0)
            load_error(ls, ls->line, "the key of [%s] again (line %d): one key, one client",
                       ls->c->v[i]->name, ls->lines[i]);
}

static int on_key(void *user, const char *section, const char *name, const char *value)
{
    load_state *ls = user;
    tz_principal *p = current(ls);
    (void)section;
    if (!p) {
        load_error(ls, ls->line, "'%s' before the first [client name] section", name);
    } else if (strcmp(name, "key") == 0) {
        set_key(ls, p, value);
    } else if (strcmp(name, "tables") == 0) {
        /* An indented line continues the list of the line before. */
        if (ls->tables_line && !ls->continuation)
            load_error(ls, ls->line, "tables set twice (first on line %d)", ls->tables_line);
        else
            parse_tables(ls, p, value);
        ls->tables_line = ls->tables_line ? ls->tables_line : ls->line;
    } else if (strcmp(name, "admin") == 0) {
        if (!parse_bool(value, &p->admin))
            load_error(ls, ls->line, "admin = '%.32s': expected on or off", value);
    } else {
        load_error(ls, ls->line, "unknown key '%.32s' (key, tables, admin)", name);
    }
    return 1;
}

int tz_clients_load(tz *t, const char *path, tz_clients **out, char *err, size_t errlen)
{
    tz_clients *c = calloc(1, sizeof *c);
    if (!c)
        return SB_ERR_NOMEM;
    t->api->base.tables(t->host, &c->ntables);
    load_state ls = {.t = t, .path = path, .c = c, .err = err, .errlen = errlen};
    ls.f = fopen(path, "re");
    if (!ls.f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        tz_clients_free(c);
        return SB_ERR_IO;
    }
    int rc = ini_parse_stream(read_line, &ls, on_key, &ls);
    if (ls.rc != SB_ERR_NOMEM) {
        if (ferror(ls.f)) {
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
            ls.rc = SB_ERR_IO;
        } else if (rc > 0) {
            load_error(&ls, rc, "not a [client name] or key = value line");
        }
        close_section(&ls);
    }
    fclose(ls.f);
    free(ls.lines);
    if (ls.rc == SB_ERR_NOMEM)
        snprintf(err, errlen, "%s: out of memory", path);
    if (ls.rc < 0) {
        tz_clients_free(c);
        return ls.rc;
    }
    *out = c;
    return SB_OK;
}

/* The index of the configured table that topic (an event's "<table>/<key>" or a presence
 * message's "@presence/<table>/<key>") belongs to, or -1. */
static int topic_table(tz *t, const char *topic, size_t len)
{
    static const char presence[] = SB_PROTO_TOPIC_PRESENCE;
    const size_t pl = sizeof presence - 1;
    if (len >= pl && memcmp(topic, presence, pl) == 0)
        topic += pl, len -= pl;
    /* A configured name has no '/' (sb_table_name_valid): the table ends at the first one. */
    const char *slash = memchr(topic, '/', len);
    return slash ? tz_table_index(t, topic, (size_t)(slash - topic)) : -1;
}

bool tz_topic_readable(tz *t, const tz_principal *who, const char *topic, size_t len)
{
    return !who || who->all_tables || tz_principal_reads(who, topic_table(t, topic, len));
}

int tz_table_allowed(tz *t, tz_frames *env, const char *table, size_t len)
{
    int k = tz_table_index(t, table, len);
    if (tz_principal_reads(t->req_who, k) && k >= 0)
        return k;
    /* The same answer for a table that does not exist and one it may not read; no name in
     * it, so that nothing a restricted client receives names another table. */
    if (t->req_who)
        tz_reply_error(t, env, "forbidden", "a table asked for is not one this client may read");
    else
        tz_reply_unknown_table(t, env, table, len);
    return -1;
}
