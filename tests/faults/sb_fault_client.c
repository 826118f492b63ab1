/*
 * sb_fault_client - a libsyncclient cache that the fault suite (test_faults.py) drives and
 * inspects. Every notable callback becomes one JSON line on stdout, so tests wait on lines
 * as signals; "t" is CLOCK_MONOTONIC in seconds, the clock of Python's time.monotonic():
 *
 *   ready      started; "id" is the client id
 *   online     on_online(true)             offline  on_online(false)
 *   reset      on_reset: a snapshot replaced the cache ("n": 1 for the first, "rows")
 *   gap        the library saw a seq/tseq gap ("seq": the message after it)
 *   since      a `since` was sent ("from")  since_refused  it failed: a snapshot follows
 *   repair     the gap or offline period was repaired, "by": "since" or "snapshot"
 *   epoch      a message of another epoch: resynchronising
 *   regress    a version went backwards for one entity ("was", and the entity as in a dump)
 *   log        every library diagnostic ("level", "msg")
 *   error      sb_client_poll() failed ("msg"; the client stays usable)
 *
 * The library has no callback for gaps and repairs: they are recognised from its on_log
 * messages (the prefixes below), and a `since` counts as the repair once an event is applied
 * or the client is back online with no snapshot in between (while a request is in flight the
 * library applies nothing).
 *
 * stdin: "dump" prints every cached row as {"ev":"row","table","key","version","row"}, then
 * {"ev":"end","rows":N,"online":bool}; "get TABLE KEYPART..." prints {"ev":"got","found":..}
 * with the entity's table, key, version and row when cached; "quit" or end of input exits 0.
 */
#include "tool_args.h"

#include <syncbroker/client.h>

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char usage[] =
    "usage: sb_fault_client --pub EP --service EP [--table T ...] [--client-id ID]\n"
    "                       [--heartbeat-ms MS] [--server-key FILE --key FILE]\n"
    "  Keeps a libsyncclient cache; JSON lines per callback on stdout.\n"
    "  --server-key FILE --key FILE: CURVE (the broker's .pub, this client's .key).\n"
    "  stdin: dump | get TABLE KEYPART... | quit\n";

/* Highest version seen per entity, to report one that goes backwards. Keys are
 * "table\x1fpart\x1fpart..." strings owned by the map. */
typedef struct version_slot {
    char *key;
    uint64_t version;
} version_slot;

typedef struct version_map {
    version_slot *slots; /* owned; nslots is a power of two, at most half full */
    size_t nslots, used;
} version_map;

#define MAX_KEY_PARTS 8 /* in a "get" command */

typedef enum repair_state { REPAIR_NONE, REPAIR_SINCE, REPAIR_SNAPSHOT } repair_state;

typedef struct fault_client {
    sb_client *c;
    version_map versions;
    repair_state repair;
    unsigned resets;
    bool failed; /* out of memory in the version map: reported, then exit 1 */
} fault_client;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void put_json_string(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

/* Starts a line {"ev":"<ev>","t":<now>; the caller adds fields and calls end_line(). */
static void begin_line(const char *ev)
{
    printf("{\"ev\":\"%s\",\"t\":%.6f", ev, now_s());
}

static void end_line(void)
{
    fputs("}\n", stdout);
    fflush(stdout);
}

static void event_line(const char *ev)
{
    begin_line(ev);
    end_line();
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 14695981039346656037ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static version_slot *map_find(const version_map *m, const char *key)
{
    size_t mask = m->nslots - 1;
    for (size_t i = hash_str(key) & mask;; i = (i + 1) & mask)
        if (!m->slots[i].key || strcmp(m->slots[i].key, key) == 0)
            return &m->slots[i];
}

static int map_grow(version_map *m)
{
    size_t n = m->nslots ? m->nslots * 2 : 1024;
    version_slot *old = m->slots;
    size_t nold = m->nslots;
    m->slots = calloc(n, sizeof(*m->slots));
    if (!m->slots) {
        m->slots = old;
        return SB_ERR_NOMEM;
    }
    m->nslots = n;
    for (size_t i = 0; i < nold; i++)
        if (old[i].key)
            *map_find(m, old[i].key) = old[i];
    free(old);
    return SB_OK;
}

static void map_free(version_map *m)
{
    for (size_t i = 0; i < m->nslots; i++)
        free(m->slots[i].key);
    free(m->slots);
}

static char *entity_key(const char *table, const char *const *key, uint32_t nkey)
{
    size_t len = strlen(table) + 1;
    for (uint32_t i = 0; i < nkey; i++)
        len += strlen(key[i]) + 1;
    char *out = malloc(len);
    if (!out)
        return NULL;
    char *p = out + sprintf(out, "%s", table);
    for (uint32_t i = 0; i < nkey; i++)
        p += sprintf(p, "\x1f%s", key[i]);
    return out;
}

/* Records that the client now holds `version` of the entity; reports a step backwards.
 * Version 0 (a snapshot row whose changes were pruned) is a lower bound, not a position. */
static void note_version(fault_client *f, const char *table, const char *const *key, uint32_t nkey,
                         uint64_t version)
{
    if (version == 0)
        return;
    char *k = entity_key(table, key, nkey);
    if (!k || ((f->versions.used + 1) * 2 > f->versions.nslots && map_grow(&f->versions))) {
        free(k);
        f->failed = true;
        return;
    }
    version_slot *s = map_find(&f->versions, k);
    if (s->key && version < s->version) {
        sb_client_row r = {.table = table, .key = key, .nkey = nkey, .version = version};
        char *json;
        if (sb_client_row_json(&r, &json) == SB_OK) {
            begin_line("regress");
            printf(",\"was\":%llu,%s\n", (unsigned long long)s->version, json + 1);
            fflush(stdout);
            free(json);
        }
    }
    if (!s->key) {
        s->key = k;
        f->versions.used++;
    } else {
        free(k);
    }
    if (version > s->version)
        s->version = version;
}

static void repaired(fault_client *f, const char *by)
{
    f->repair = REPAIR_NONE;
    begin_line("repair");
    printf(",\"by\":\"%s\"", by);
    end_line();
}

static void on_event(const sb_client_event *ev, void *ud)
{
    fault_client *f = ud;
    if (ev->op != SB_OP_TRUNCATE)
        note_version(f, ev->table, ev->key, ev->nkey, ev->version);
    if (f->repair == REPAIR_SINCE)
        repaired(f, "since");
}

static int check_snapshot_row(const sb_client_row *r, void *ud)
{
    note_version(ud, r->table, r->key, r->nkey, r->version);
    return 0;
}

static void on_reset(void *ud)
{
    fault_client *f = ud;
    size_t rows = sb_client_foreach(f->c, NULL, check_snapshot_row, f);
    begin_line("reset");
    printf(",\"n\":%u,\"rows\":%zu", ++f->resets, rows);
    end_line();
    if (f->repair != REPAIR_NONE)
        repaired(f, "snapshot");
}

static void on_online(bool online, void *ud)
{
    fault_client *f = ud;
    event_line(online ? "online" : "offline");
    if (online && f->repair == REPAIR_SINCE)
        repaired(f, "since");
}

/* The library's messages for what it does about a gap (clients/lib/sync.c). */
static void classify(fault_client *f, const char *msg)
{
    unsigned long long seq;
    if (sscanf(msg, "gap before seq %llu", &seq) == 1) {
        begin_line("gap");
        printf(",\"seq\":%llu", seq);
        end_line();
    } else if (sscanf(msg, "resuming from seq %llu with since", &seq) == 1) {
        f->repair = REPAIR_SINCE;
        begin_line("since");
        printf(",\"from\":%llu", seq);
        end_line();
    } else if (strncmp(msg, "since refused", 13) == 0 || strncmp(msg, "since failed", 12) == 0) {
        f->repair = REPAIR_SNAPSHOT;
        event_line("since_refused");
    } else if (strncmp(msg, "broker epoch changed", 20) == 0) {
        event_line("epoch");
    }
}

static void on_log(sb_log_level level, const char *msg, void *ud)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    begin_line("log");
    printf(",\"level\":\"%s\",\"msg\":",
           (unsigned)level < sizeof(names) / sizeof(names[0]) ? names[level] : "?");
    put_json_string(msg);
    end_line();
    classify(ud, msg);
}

static int dump_row(const sb_client_row *r, void *ud)
{
    char *json;
    int rc = sb_client_row_json(r, &json);
    if (rc != SB_OK) {
        ((fault_client *)ud)->failed = true;
        return 1;
    }
    printf("{\"ev\":\"row\",%s\n", json + 1);
    free(json);
    return 0;
}

static void dump(fault_client *f)
{
    size_t rows = sb_client_foreach(f->c, NULL, dump_row, f);
    begin_line("end");
    printf(",\"rows\":%zu,\"online\":%s", rows, sb_client_online(f->c) ? "true" : "false");
    end_line();
}

/* "get TABLE KEYPART...": one cached entity, {"ev":"got","found":bool} plus, when found, its
 * table, key, version and row as in a dump. */
static void get(fault_client *f, char *args)
{
    const char *parts[MAX_KEY_PARTS];
    uint32_t nkey = 0;
    char *save = NULL, *table = strtok_r(args, " ", &save), *part;
    while (nkey < MAX_KEY_PARTS && (part = strtok_r(NULL, " ", &save)))
        parts[nkey++] = part;
    sb_client_row r = {.table = table, .key = parts, .nkey = nkey};
    char *json = NULL;
    bool found = table && nkey &&
                 sb_client_get(f->c, table, parts, nkey, &r.row, &r.row_len, &r.version) == SB_OK &&
                 sb_client_row_json(&r, &json) == SB_OK;
    begin_line("got");
    printf(",\"found\":%s%s%s", found ? "true" : "false", found ? "," : "", found ? json + 1 : "}");
    free(json);
    fputc('\n', stdout);
    fflush(stdout);
}

/* One command line; false to exit. */
static bool command(fault_client *f, char *line)
{
    if (strcmp(line, "dump") == 0) {
        dump(f);
        return true;
    }
    if (strncmp(line, "get ", 4) == 0) {
        get(f, line + 4);
        return true;
    }
    if (strcmp(line, "quit") != 0)
        fprintf(stderr, "sb_fault_client: unknown command '%s' (dump | get | quit)\n", line);
    return strcmp(line, "quit") != 0;
}

/* Reads what stdin has (raw read(): stdio buffering would hide a second queued line from
 * poll()) and runs each complete line; false on "quit" or end of input. */
static bool read_commands(fault_client *f, char *buf, size_t *len, size_t cap)
{
    ssize_t n = read(0, buf + *len, cap - 1 - *len);
    if (n <= 0)
        return false;
    *len += (size_t)n;
    buf[*len] = '\0';
    char *line = buf, *nl;
    bool running = true;
    while (running && (nl = strchr(line, '\n'))) {
        *nl = '\0';
        running = command(f, line);
        line = nl + 1;
    }
    *len = strlen(line);
    memmove(buf, line, *len + 1);
    if (*len == cap - 1) /* a line longer than any command */
        *len = 0;
    return running;
}

static int run(fault_client *f)
{
    char buf[256];
    size_t len = 0;
    bool running = true;
    while (running && !tool_stopping() && !f->failed) {
        struct pollfd fds[3] = {{0, POLLIN, 0}, {-1, POLLIN, 0}, {-1, POLLIN, 0}};
        int zfd[2];
        size_t nz = 2;
        if (sb_client_fds(f->c, zfd, &nz) == SB_OK)
            fds[1].fd = zfd[0], fds[2].fd = zfd[1];
        poll(fds, 3, sb_client_timeout_ms(f->c));
        if (fds[0].revents)
            running = read_commands(f, buf, &len, sizeof(buf));
        int rc = sb_client_poll(f->c, 0);
        if (rc != SB_OK) {
            begin_line("error");
            fputs(",\"msg\":", stdout);
            put_json_string(sb_strerror(rc));
            end_line();
        }
    }
    if (f->failed)
        fprintf(stderr, "sb_fault_client: out of memory\n");
    return f->failed ? 1 : 0;
}

int main(int argc, char **argv)
{
    tool_args a;
    int rc = tool_parse_args(
        argc, argv, ARG_PUB | ARG_SERVICE | ARG_TABLE | ARG_CLIENT_ID | ARG_HEARTBEAT | ARG_CURVE,
        ARG_PUB | ARG_SERVICE, usage, &a);
    if (rc != 0) {
        tool_args_free(&a);
        return rc < 0 ? 1 : 0;
    }
    fault_client f = {0};
    sb_client_config cfg = tool_client_config(&a);
    cfg.cb = (sb_client_callbacks){
        .on_event = on_event, .on_reset = on_reset, .on_online = on_online, .on_log = on_log};
    cfg.ud = &f;
    if (tool_client_start(&cfg, "sb_fault_client", &f.c) != SB_OK) {
        tool_args_free(&a);
        return 1;
    }
    tool_catch_signals();
    begin_line("ready");
    fputs(",\"id\":", stdout);
    put_json_string(sb_client_id(f.c));
    end_line();
    rc = run(&f);
    sb_client_destroy(f.c);
    map_free(&f.versions);
    tool_args_free(&a);
    return rc;
}
