/*
 * source_memory - a complete Syncbroker source that needs no database, and the source
 * example of docs/plugins.md. It keeps its tables in memory. Changes come from lines written
 * into a FIFO and from a timer; each is emitted with its row (so the broker never asks for a
 * fetch: there is no fetch callback), and snapshots are answered from memory.
 *
 * FIFO lines (option fifo), one change each, fields separated by single spaces:
 *     upsert <schema.table> <key> [<column>=<value> ...]
 *     delete <schema.table> <key>
 * The table is one of [database] tables; the key is one word (a one-column primary key). An
 * upsert replaces the entity's row with the columns given, each once: a value that is a
 * decimal integer becomes an integer, any other a string (values hold no spaces). A line
 * that does not parse is logged and skipped.
 * Timer (option interval_ms): every period, entity "counter" of the first table gets the
 * row {"count": N}.
 *
 * Built against include/syncbroker/plugin.h alone (README.md: with find_package(Syncbroker)
 * or pkg-config syncbroker-plugin). One thread: every callback runs on the broker's loop.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <syncbroker/plugin.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { LINE_BYTES = 4096, SNAPSHOT_BATCH = 256 };

/* Options, in this order in setup->options. */
enum { OPT_FIFO, OPT_INTERVAL_MS };

static const sb_option_spec options[] = {
    {"fifo", SB_OPT_STRING, "", 0, 0, "FIFO to read change lines from (made if missing)"},
    {"interval_ms", SB_OPT_INT, "0", 0, 3600000, "period of the counter row, 0 = none"},
    {NULL, 0, NULL, 0, 0, NULL},
};

/* One entity. A deleted one stays (row NULL), so that its version keeps growing if it comes
 * back: versions only grow per entity. */
typedef struct entity {
    char *key;          /* owned */
    uint64_t version;   /* 1 after the first change */
    unsigned char *row; /* owned packed msgpack map, NULL when deleted */
    size_t row_len;
} entity;

/* A table's entities, in insertion order (found by a linear search: an example, not an
 * index). */
typedef struct table {
    entity *v; /* owned */
    size_t n, cap;
} table;

typedef struct memory_source memory_source;

/* A snapshot waiting for its timer, or being sent. */
typedef struct snapshot_req {
    memory_source *s;
    uint64_t req;
    uint32_t *tables; /* owned copy of what was asked; n == 0: every table */
    size_t n;
    sb_timer *timer;
    bool sending;   /* inside send_snapshot(): cancel() only marks it */
    bool cancelled; /* cancel() came while sending: no more rows, no done() */
    struct snapshot_req *next;
} snapshot_req;

struct memory_source {
    const sb_source_api *api;
    sb_host *host;
    const char *const *names; /* setup->tables, owned by the broker */
    size_t ntables;
    table *tables; /* owned, one per name */
    const char *fifo;
    int64_t interval_ms;
    int rfd, wfd;
    sb_watch *watch;
    sb_timer *timer;
    uint64_t count; /* the counter row's value */
    char line[LINE_BYTES];
    size_t len;              /* bytes of an unfinished line in `line` */
    bool skipping;           /* inside a line longer than `line`: drop up to its end */
    snapshot_req *snapshots; /* owned list */
};

/* ---- msgpack, just what a row needs: a map of strings to strings and integers ---------- */

typedef struct packer {
    unsigned char *p;
    size_t len, cap;
} packer;

static bool put(packer *k, const void *bytes, size_t n)
{
    if (k->cap - k->len < n)
        return false;
    memcpy(k->p + k->len, bytes, n);
    k->len += n;
    return true;
}

/* A type byte followed by `width` bytes of v, big-endian. */
static bool put_tag(packer *k, unsigned tag, uint64_t v, int width)
{
    unsigned char b[9] = {(unsigned char)tag};
    for (int i = 0; i < width; i++)
        b[1 + i] = (unsigned char)(v >> (8 * (width - 1 - i)));
    return put(k, b, 1 + (size_t)width);
}

static bool pack_map(packer *k, size_t n)
{
    return n < 16 ? put_tag(k, 0x80 | (unsigned)n, 0, 0) : put_tag(k, 0xde, n, 2);
}

static bool pack_str(packer *k, const char *s, size_t n)
{
    bool ok = n < 32    ? put_tag(k, 0xa0 | (unsigned)n, 0, 0)
              : n < 256 ? put_tag(k, 0xd9, n, 1)
                        : put_tag(k, 0xda, n, 2);
    return ok && put(k, s, n);
}

static bool pack_int(packer *k, int64_t v)
{
    return v >= 0 && v < 128 ? put_tag(k, (unsigned)v, 0, 0) : put_tag(k, 0xd3, (uint64_t)v, 8);
}

/* ---- the tables ------------------------------------------------------------------------ */

static entity *find_entity(table *t, const char *key)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->v[i].key, key) == 0)
            return &t->v[i];
    return NULL;
}

static entity *add_entity(table *t, const char *key)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 16;
        entity *v = realloc(t->v, cap * sizeof *v);
        if (!v)
            return NULL;
        t->v = v;
        t->cap = cap;
    }
    char *copy = strdup(key);
    if (!copy)
        return NULL;
    t->v[t->n] = (entity){.key = copy};
    return &t->v[t->n++];
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sets entity `key` of table t to row (NULL: deletes it) and hands the change to the core
 * together with the row. SB_ERR_NOTFOUND: a delete of an entity that does not exist. */
static int apply(memory_source *s, uint32_t t, const char *key, const void *row, size_t row_len)
{
    entity *e = find_entity(&s->tables[t], key);
    if (!row && (!e || !e->row))
        return SB_ERR_NOTFOUND;
    unsigned char *copy = NULL;
    if (row && !(copy = malloc(row_len)))
        return SB_ERR_NOMEM;
    if (!e && !(e = add_entity(&s->tables[t], key))) {
        free(copy);
        return SB_ERR_NOMEM;
    }
    sb_op op = !row ? SB_OP_DELETE : e->row ? SB_OP_UPDATE : SB_OP_INSERT;
    if (copy)
        memcpy(copy, row, row_len);
    free(e->row);
    e->row = copy;
    e->row_len = row_len;
    e->version++;
    const char *parts[] = {e->key};
    sb_change c = {.table = t,
                   .key = {parts, 1},
                   .op = op,
                   .version = e->version,
                   .ts_ms = wall_ms(),
                   .has_row = true,
                   .row = e->row,
                   .row_len = e->row_len};
    return s->api->emit(s->host, &c, 1);
}

/* ---- FIFO lines ------------------------------------------------------------------------ */

/* Packs the columns of an upsert ("name=x floor=3", modified in place). */
static bool pack_columns(char *cols, packer *k)
{
    size_t n = 0;
    for (const char *c = cols; *c; c++)
        n += *c == '=';
    if (!pack_map(k, n))
        return false;
    char *save = NULL;
    for (char *col = strtok_r(cols, " ", &save); col; col = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(col, '=');
        if (!eq || eq == col || strchr(eq + 1, '='))
            return false;
        *eq = '\0';
        char *end;
        errno = 0;
        long long num = strtoll(eq + 1, &end, 10);
        bool is_int = eq[1] && !*end && errno == 0;
        if (!pack_str(k, col, (size_t)(eq - col)) ||
            !(is_int ? pack_int(k, num) : pack_str(k, eq + 1, strlen(eq + 1))))
            return false;
    }
    return true;
}

/* One line: "upsert TABLE KEY COLUMNS..." or "delete TABLE KEY". */
static void handle_line(memory_source *s, char *line)
{
    char *save = NULL;
    const char *verb = strtok_r(line, " ", &save);
    const char *name = strtok_r(NULL, " ", &save);
    const char *key = strtok_r(NULL, " ", &save);
    char *cols = strtok_r(NULL, "", &save);
    if (!verb) /* an empty line */
        return;
    uint32_t t = 0;
    while (name && t < s->ntables && strcmp(s->names[t], name) != 0)
        t++;
    bool upsert = strcmp(verb, "upsert") == 0;
    if (!key || (!upsert && strcmp(verb, "delete") != 0) || (!upsert && cols)) {
        s->api->base.log(s->host, SB_LOG_WARN,
                         "%s: not \"upsert TABLE KEY COL=VALUE...\" or "
                         "\"delete TABLE KEY\": line skipped",
                         s->fifo);
        return;
    }
    if (t == s->ntables) {
        s->api->base.log(s->host, SB_LOG_WARN, "%s: %s is not in [database] tables: line skipped",
                         s->fifo, name);
        return;
    }
    char none[] = "";
    unsigned char row[2 * LINE_BYTES];
    packer k = {row, 0, sizeof row};
    if (upsert && !pack_columns(cols ? cols : none, &k)) {
        s->api->base.log(s->host, SB_LOG_WARN, "%s: columns are COLUMN=VALUE: line skipped",
                         s->fifo);
        return;
    }
    int rc = apply(s, t, key, upsert ? row : NULL, k.len);
    if (rc != SB_OK)
        s->api->base.log(s->host, SB_LOG_WARN, "%s: %s %s %s: %s", s->fifo, verb, name, key,
                         rc == SB_ERR_NOTFOUND ? "no such entity" : sb_strerror(rc));
}

static void on_fifo(void *ud, unsigned revents)
{
    memory_source *s = ud;
    (void)revents;
    ssize_t got = read(s->rfd, s->line + s->len, sizeof s->line - s->len);
    if (got <= 0) {
        if (got < 0 && errno != EAGAIN && errno != EINTR)
            s->api->base.log(s->host, SB_LOG_ERROR, "%s: %s", s->fifo, strerror(errno));
        return;
    }
    size_t end = s->len + (size_t)got, start = 0;
    char *nl;
    while ((nl = memchr(s->line + start, '\n', end - start))) {
        *nl = '\0';
        if (!s->skipping)
            handle_line(s, s->line + start);
        s->skipping = false;
        start = (size_t)(nl - s->line) + 1;
    }
    s->len = end - start;
    memmove(s->line, s->line + start, s->len);
    if (s->len == sizeof s->line) { /* a full buffer and no end of line */
        if (!s->skipping)
            s->api->base.log(s->host, SB_LOG_WARN, "%s: line longer than %d bytes skipped", s->fifo,
                             LINE_BYTES - 1);
        s->skipping = true;
        s->len = 0;
    }
}

static void on_timer(void *ud)
{
    memory_source *s = ud;
    unsigned char row[32];
    packer k = {row, 0, sizeof row};
    s->count++;
    pack_map(&k, 1);
    pack_str(&k, "count", 5);
    pack_int(&k, (int64_t)s->count);
    int rc = apply(s, 0, "counter", row, k.len);
    if (rc != SB_OK)
        s->api->base.log(s->host, SB_LOG_WARN, "counter: %s", sb_strerror(rc));
}

/* ---- snapshots ------------------------------------------------------------------------- */

static void unlink_snapshot(memory_source *s, snapshot_req *r)
{
    snapshot_req **p = &s->snapshots;
    while (*p != r)
        p = &(*p)->next;
    *p = r->next;
    free(r->tables);
    free(r);
}

/* The snapshot's answer, from a loop callback (never from inside snapshot()): every live row
 * of the tables asked, in batches, read in one go so they are consistent with each other. */
static void send_snapshot(void *ud)
{
    snapshot_req *r = ud;
    memory_source *s = r->s;
    sb_row batch[SNAPSHOT_BATCH];
    const char *keys[SNAPSHOT_BATCH];
    size_t nb = 0;
    r->sending = true;
    for (size_t i = 0; i < (r->n ? r->n : s->ntables) && !r->cancelled; i++) {
        uint32_t t = r->n ? r->tables[i] : (uint32_t)i;
        for (size_t j = 0; j < s->tables[t].n && !r->cancelled; j++) {
            const entity *e = &s->tables[t].v[j];
            if (!e->row)
                continue;
            keys[nb] = e->key;
            batch[nb] = (sb_row){.table = t,
                                 .key = {&keys[nb], 1},
                                 .version = e->version,
                                 .row = e->row,
                                 .row_len = e->row_len};
            if (++nb == SNAPSHOT_BATCH) {
                s->api->rows(s->host, r->req, batch, nb);
                nb = 0;
            }
        }
    }
    if (!r->cancelled) {
        if (nb)
            s->api->rows(s->host, r->req, batch, nb);
        s->api->done(s->host, r->req, SB_OK);
    }
    unlink_snapshot(s, r); /* the one-shot timer frees itself */
}

static int memory_snapshot(void *state, uint64_t req, const uint32_t *tables, size_t n)
{
    memory_source *s = state;
    for (size_t i = 0; i < n; i++)
        if (tables[i] >= s->ntables)
            return SB_ERR_NOTFOUND;
    snapshot_req *r = calloc(1, sizeof *r);
    if (!r || (n && !(r->tables = malloc(n * sizeof *tables)))) {
        free(r);
        return SB_ERR_NOMEM;
    }
    if (n)
        memcpy(r->tables, tables, n * sizeof *tables);
    r->s = s;
    r->req = req;
    r->n = n;
    int rc = s->api->base.timer_start(s->host, 0, 0, send_snapshot, r, &r->timer);
    if (rc != SB_OK) {
        free(r->tables);
        free(r);
        return rc;
    }
    r->next = s->snapshots;
    s->snapshots = r;
    return SB_OK;
}

static void memory_cancel(void *state, uint64_t req)
{
    memory_source *s = state;
    snapshot_req *r = s->snapshots;
    while (r && r->req != req)
        r = r->next;
    if (!r)
        return;
    if (r->sending) { /* called from inside rows(): send_snapshot() stops and frees it */
        r->cancelled = true;
        return;
    }
    s->api->base.timer_stop(r->timer);
    unlink_snapshot(s, r);
}

/* ---- life cycle ------------------------------------------------------------------------ */

static int memory_create(const sb_source_api *api, sb_host *host, const sb_source_setup *setup,
                         void **state)
{
    if (!setup->options[OPT_FIFO].str[0] && setup->options[OPT_INTERVAL_MS].num == 0) {
        SB_CONFIG_ERROR(api, host, NULL, "fifo", "set fifo or interval_ms: nothing to read");
        return SB_ERR_CONFIG;
    }
    memory_source *s = calloc(1, sizeof *s);
    if (!s || !(s->tables = calloc(setup->ntables, sizeof *s->tables))) {
        free(s);
        return SB_ERR_NOMEM;
    }
    s->api = api;
    s->host = host;
    s->names = setup->tables;
    s->ntables = setup->ntables;
    s->fifo = setup->options[OPT_FIFO].str; /* the broker's, valid until destroy() */
    s->interval_ms = setup->options[OPT_INTERVAL_MS].num;
    s->rfd = s->wfd = -1;
    *state = s;
    return SB_OK;
}

static int open_fifo(memory_source *s)
{
    struct stat st;
    if (mkfifo(s->fifo, 0600) < 0 && errno != EEXIST) {
        s->api->base.log(s->host, SB_LOG_ERROR, "cannot make FIFO %s: %s", s->fifo,
                         strerror(errno));
        return SB_ERR_IO;
    }
    s->rfd = open(s->fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (s->rfd < 0 || fstat(s->rfd, &st) < 0 || !S_ISFIFO(st.st_mode)) {
        SB_CONFIG_ERROR(s->api, s->host, NULL, "fifo", "%s: %s", s->fifo,
                        s->rfd < 0 ? strerror(errno) : "not a FIFO");
        return SB_ERR_CONFIG;
    }
    /* A writer of our own: without one the read end reports end-of-file, and stays readable,
     * each time the last writer closes. */
    s->wfd = open(s->fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (s->wfd < 0) {
        s->api->base.log(s->host, SB_LOG_ERROR, "%s: %s", s->fifo, strerror(errno));
        return SB_ERR_IO;
    }
    int rc = s->api->base.watch_fd(s->host, s->rfd, SB_IO_READ, on_fifo, s, &s->watch);
    if (rc == SB_OK)
        s->api->base.log(s->host, SB_LOG_INFO, "reading changes from %s", s->fifo);
    return rc;
}

static void memory_stop(void *state)
{
    memory_source *s = state;
    s->api->base.unwatch(s->watch);
    s->api->base.timer_stop(s->timer);
    s->watch = NULL;
    s->timer = NULL;
    while (s->snapshots) { /* dropped: no done() is owed after stop() */
        s->api->base.timer_stop(s->snapshots->timer);
        unlink_snapshot(s, s->snapshots);
    }
    if (s->rfd >= 0)
        close(s->rfd);
    if (s->wfd >= 0)
        close(s->wfd);
    s->rfd = s->wfd = -1;
}

static int memory_start(void *state)
{
    memory_source *s = state;
    int rc = s->fifo[0] ? open_fifo(s) : SB_OK;
    if (rc == SB_OK && s->interval_ms > 0)
        rc = s->api->base.timer_start(s->host, (uint64_t)s->interval_ms, (uint64_t)s->interval_ms,
                                      on_timer, s, &s->timer);
    if (rc != SB_OK)
        memory_stop(s);
    return rc;
}

static void memory_destroy(void *state)
{
    memory_source *s = state;
    for (size_t t = 0; t < s->ntables; t++) {
        for (size_t i = 0; i < s->tables[t].n; i++) {
            free(s->tables[t].v[i].key);
            free(s->tables[t].v[i].row);
        }
        free(s->tables[t].v);
    }
    free(s->tables);
    free(s);
}

static const sb_source_plugin source_memory = {
    .header = SB_SOURCE_PLUGIN_HEADER(
        "source_memory", "1.0.0", "tables in memory, changed through a FIFO and a timer", options),
    .database_options = NULL, /* [database] holds only `tables` */
    .create = memory_create,
    .start = memory_start,
    .stop = memory_stop,
    .destroy = memory_destroy,
    .fetch = NULL, /* every change carries its row */
    .snapshot = memory_snapshot,
    .cancel = memory_cancel,
};

SB_PLUGIN_DECLARE(source_memory)
