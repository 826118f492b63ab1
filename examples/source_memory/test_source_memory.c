/*
 * test_source_memory - source_memory's own unit tests, written as a plugin author writes
 * them: against the installed headers only, linked with libsyncbroker-testhost, no test
 * framework. The built source_memory.so is loaded from the folder named on the command line
 * exactly as the broker loads it (its INI text, its option checks, its loop); the test writes
 * change lines into the source's FIFO and reads what the source handed to the core.
 *
 *     test_source_memory PLUGIN_DIR      (the folder holding source_memory.so)
 *
 * Exit status 0 when every test passed, 1 otherwise; each failed check prints its line, and
 * the failed test's captured log follows.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syncbroker/plugin.h>
#include <syncbroker/testhost.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

/* Every check: on failure say which, then leave the test through its `out` label. */
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);               \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

/* A string literal's bytes and length: the expected msgpack of a row. */
#define BYTES(s) s, sizeof s - 1

enum { WAIT_MS = 10000 }; /* generous: the tests also run under the sanitizers */

static const char *plugin_dir; /* argv[1] */

/* One test's host, the mkdtemp folder holding its FIFO, and the test's end of the FIFO. */
typedef struct fixture {
    sb_testhost *th; /* owned */
    char dir[32];
    char fifo[64];
    int wfd;      /* our writer, opened by the first write_all() */
    size_t want;  /* for enough_changes() */
    uint64_t req; /* for snapshot_done() */
} fixture;

/* The INI every test runs: [source.mem] holds plugin = source_memory on line 6 and then
 * `options` (a printf format: %s is the FIFO's path in f->dir) from line 7, the lines the
 * refusal tests name. Tables: public.ticks is index 0, public.rooms index 1. */
static int load(fixture *f, const char *options)
{
    char opts[512], ini[4096];
    f->wfd = -1;
    strcpy(f->dir, "/tmp/sb-memtest.XXXXXX");
    if (!mkdtemp(f->dir)) {
        perror("mkdtemp");
        return SB_ERR_IO;
    }
    snprintf(f->fifo, sizeof f->fifo, "%s/changes", f->dir);
    snprintf(opts, sizeof opts, options, f->fifo);
    snprintf(ini, sizeof ini,
             "[broker]\n"
             "plugin_dir = %s\n"
             "[database]\n"
             "tables = public.ticks, public.rooms\n"
             "[source.mem]\n"
             "plugin = source_memory\n"
             "%s",
             plugin_dir, opts);
    int rc = sb_testhost_new(&f->th);
    return rc == SB_OK ? sb_testhost_load(f->th, NULL, ini, NULL) : rc;
}

/* load() and sb_testhost_start(). */
static bool start(fixture *f, const char *options)
{
    return load(f, options) == SB_OK && sb_testhost_start(f->th) == SB_OK;
}

/* The test's result; on failure the test host's log, which says what the source saw. */
static bool finish(fixture *f, bool ok)
{
    if (!ok && f->th)
        for (size_t i = 0; i < sb_testhost_log_count(f->th); i++)
            fprintf(stderr, "    log: %s\n", sb_testhost_log_line(f->th, i));
    if (f->wfd >= 0)
        close(f->wfd);
    sb_testhost_free(f->th);
    unlink(f->fifo);
    rmdir(f->dir);
    return ok;
}

/* Writes text into the FIFO, whose read end the source holds (O_NONBLOCK: no reader is an
 * error, not a hang). */
static bool write_all(fixture *f, const char *text)
{
    if (f->wfd < 0) {
        f->wfd = open(f->fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (f->wfd < 0 || fcntl(f->wfd, F_SETFL, 0) < 0) {
            perror(f->fifo);
            return false;
        }
    }
    size_t len = strlen(text);
    while (len) {
        ssize_t n = write(f->wfd, text, len);
        if (n < 0 && errno != EINTR) {
            perror("write");
            return false;
        }
        if (n > 0) {
            text += n;
            len -= (size_t)n;
        }
    }
    return true;
}

/* ---- predicates for sb_testhost_run_until ------------------------------------------------ */

static bool enough_changes(void *ud)
{
    fixture *f = ud;
    return sb_testhost_change_count(f->th) >= f->want;
}

/* Everything written into the FIFO has been read by the source. */
static bool fifo_drained(void *ud)
{
    fixture *f = ud;
    int queued = 0;
    return ioctl(f->wfd, FIONREAD, &queued) == 0 && queued == 0;
}

static bool snapshot_done(void *ud)
{
    fixture *f = ud;
    return sb_testhost_done_status(f->th, f->req) != 1;
}

/* Writes `lines` and runs the loop until the source has emitted n changes in all. */
static bool emit_lines(fixture *f, const char *lines, size_t n)
{
    f->want = n;
    return write_all(f, lines) && sb_testhost_run_until(f->th, enough_changes, f, WAIT_MS);
}

/* ---- comparisons that say what differs --------------------------------------------------- */

static bool key_is(const sb_key *k, const char *want)
{
    if (k->nparts == 1 && strcmp(k->parts[0], want) == 0)
        return true;
    fprintf(stderr, "    key: %u parts, first \"%s\"; want \"%s\"\n", (unsigned)k->nparts,
            k->nparts ? k->parts[0] : "", want);
    return false;
}

static void dump(const char *what, const void *p, size_t n)
{
    fprintf(stderr, "    %s:", what);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, " %02x", ((const unsigned char *)p)[i]);
    fputc('\n', stderr);
}

/* The row's packed msgpack is exactly `want`. */
static bool row_is(const void *row, size_t len, const char *want, size_t want_len)
{
    if (row && len == want_len && memcmp(row, want, len) == 0)
        return true;
    if (row)
        dump("row ", row, len);
    else
        fprintf(stderr, "    row: NULL\n");
    dump("want", want, want_len);
    return false;
}

/* The change i: table, key, op and version as given, with its row (has_row), from now. */
static bool change_is(fixture *f, size_t i, uint32_t table, const char *key, sb_op op,
                      uint64_t version)
{
    const sb_change *c = sb_testhost_change_get(f->th, i);
    int64_t now_ms = (int64_t)time(NULL) * 1000;
    if (c && c->table == table && key_is(&c->key, key) && c->op == op && c->version == version &&
        c->has_row && !c->origin && c->position == 0 && c->ts_ms > now_ms - 60000 &&
        c->ts_ms < now_ms + 60000)
        return true;
    if (c)
        fprintf(stderr,
                "    change %zu: table %u op %d version %llu has_row %d ts_ms %lld; want table "
                "%u op %d version %llu\n",
                i, (unsigned)c->table, (int)c->op, (unsigned long long)c->version, (int)c->has_row,
                (long long)c->ts_ms, (unsigned)table, (int)op, (unsigned long long)version);
    else
        fprintf(stderr, "    no change %zu\n", i);
    return false;
}

/* How many captured log lines contain needle. */
static size_t log_lines(sb_testhost *th, const char *needle)
{
    size_t n = 0;
    for (size_t i = 0; i < sb_testhost_log_count(th); i++)
        n += strstr(sb_testhost_log_line(th, i), needle) != NULL;
    return n;
}

/* ---- the tests ---------------------------------------------------------------------------- */

/* Upserts and deletes become changes with their rows; versions grow per entity, across a
 * delete too; a line written in two parts is one change. */
static bool test_changes(void)
{
    fixture f = {0};
    bool ok = false;
    CHECK(start(&f, "fifo = %s\n"));
    CHECK(sb_testhost_watch_count(f.th) == 1 && sb_testhost_timer_count(f.th) == 0);
    CHECK(emit_lines(&f,
                     "upsert public.rooms 7 name=Blue floor=3\n"
                     "upsert public.rooms 7 name=Green\n"
                     "delete public.rooms 7\n"
                     "upsert public.rooms 7\n"
                     "upsert public.ticks t1 n=-5 s=12a\n",
                     5));
    const sb_change *c = sb_testhost_change_get(f.th, 0);
    CHECK(change_is(&f, 0, 1, "7", SB_OP_INSERT, 1));
    CHECK(row_is(c->row, c->row_len,
                 BYTES("\x82"
                       "\xa4"
                       "name"
                       "\xa4"
                       "Blue"
                       "\xa5"
                       "floor"
                       "\x03")));
    c = sb_testhost_change_get(f.th, 1);
    CHECK(change_is(&f, 1, 1, "7", SB_OP_UPDATE, 2));
    CHECK(row_is(c->row, c->row_len,
                 BYTES("\x81"
                       "\xa4"
                       "name"
                       "\xa5"
                       "Green")));
    c = sb_testhost_change_get(f.th, 2);
    CHECK(change_is(&f, 2, 1, "7", SB_OP_DELETE, 3));
    CHECK(c->row == NULL); /* has_row with no row: the entity is gone */
    c = sb_testhost_change_get(f.th, 3);
    CHECK(change_is(&f, 3, 1, "7", SB_OP_INSERT, 4));
    CHECK(row_is(c->row, c->row_len, BYTES("\x80")));
    c = sb_testhost_change_get(f.th, 4);
    CHECK(change_is(&f, 4, 0, "t1", SB_OP_INSERT, 1));
    CHECK(row_is(c->row, c->row_len,
                 BYTES("\x82"
                       "\xa1"
                       "n"
                       "\xd3\xff\xff\xff\xff\xff\xff\xff\xfb"
                       "\xa1"
                       "s"
                       "\xa3"
                       "12a")));

    CHECK(write_all(&f, "upsert public.rooms 8 na"));
    CHECK(sb_testhost_run_until(f.th, fifo_drained, &f, WAIT_MS));
    CHECK(sb_testhost_change_count(f.th) == 5); /* half a line is no change */
    CHECK(emit_lines(&f, "me=Red\n", 6));
    c = sb_testhost_change_get(f.th, 5);
    CHECK(change_is(&f, 5, 1, "8", SB_OP_INSERT, 1));
    CHECK(row_is(c->row, c->row_len,
                 BYTES("\x81"
                       "\xa4"
                       "name"
                       "\xa3"
                       "Red")));
    CHECK(sb_testhost_stop(f.th) == 0);
    ok = true;
out:
    return finish(&f, ok);
}

/* Lines that do not parse are logged and skipped; the lines after them still count. */
static bool test_bad_lines(void)
{
    fixture f = {0};
    bool ok = false;
    char lines[8192];
    char long_line[5001];
    memset(long_line, 'x', sizeof long_line - 1);
    long_line[sizeof long_line - 1] = '\0';
    snprintf(lines, sizeof lines,
             "frobnicate public.rooms 1\n"
             "delete public.rooms 1 extra=1\n"
             "upsert public.rooms\n"
             "upsert public.nope 1 a=1\n"
             "delete public.rooms 99\n"
             "upsert public.rooms 1 novalue\n"
             "upsert public.rooms 1 a=1=2\n"
             "upsert public.rooms 1 =1\n"
             "\n"
             "upsert public.rooms %s\n"
             "upsert public.rooms ok v=1\n",
             long_line);
    CHECK(start(&f, "fifo = %s\n"));
    CHECK(emit_lines(&f, lines, 1));
    CHECK(sb_testhost_change_count(f.th) == 1);
    CHECK(change_is(&f, 0, 1, "ok", SB_OP_INSERT, 1));
    CHECK(log_lines(f.th, "not \"upsert TABLE KEY COL=VALUE...\" or \"delete TABLE KEY\": line "
                          "skipped") == 3);
    const char *line = sb_testhost_log_find(f.th, "public.nope is not in [database] tables");
    CHECK(line && strncmp(line, "warn [source.mem] ", 18) == 0);
    CHECK(sb_testhost_log_find(f.th, "delete public.rooms 99: no such entity"));
    CHECK(log_lines(f.th, "columns are COLUMN=VALUE: line skipped") == 3);
    CHECK(log_lines(f.th, "line longer than 4095 bytes skipped") == 1);
    CHECK(sb_testhost_stop(f.th) == 0);
    ok = true;
out:
    return finish(&f, ok);
}

/* The timer sets entity "counter" of the first table to {"count": N}. */
static bool test_counter(void)
{
    fixture f = {0};
    bool ok = false;
    CHECK(start(&f, "interval_ms = 5\n"));
    CHECK(sb_testhost_watch_count(f.th) == 0 && sb_testhost_timer_count(f.th) == 1);
    f.want = 3;
    CHECK(sb_testhost_run_until(f.th, enough_changes, &f, WAIT_MS));
    for (size_t i = 0; i < 3; i++) {
        const sb_change *c = sb_testhost_change_get(f.th, i);
        const char want[] = {'\x81', '\xa5', 'c', 'o', 'u', 'n', 't', (char)(i + 1)};
        CHECK(change_is(&f, i, 0, "counter", i ? SB_OP_UPDATE : SB_OP_INSERT, i + 1));
        CHECK(row_is(c->row, c->row_len, want, sizeof want));
    }
    CHECK(sb_testhost_stop(f.th) == 0);
    ok = true;
out:
    return finish(&f, ok);
}

/* The rows of snapshot `req` are, in order, entity keys[i] of table tables[i], each at
 * version 1 with a row. */
static bool rows_are(fixture *f, uint64_t req, const uint32_t *tables, const char *const *keys,
                     size_t n)
{
    size_t got = 0;
    for (size_t i = 0; i < sb_testhost_row_count(f->th); i++) {
        if (sb_testhost_row_req(f->th, i) != req)
            continue;
        const sb_row *r = sb_testhost_row_get(f->th, i);
        if (got == n || r->table != tables[got] || !key_is(&r->key, keys[got]) || r->version != 1 ||
            !r->row) {
            fprintf(stderr, "    snapshot %llu: row %zu is not entity %s of table %u\n",
                    (unsigned long long)req, got, got < n ? keys[got] : "(none)",
                    got < n ? (unsigned)tables[got] : 0u);
            return false;
        }
        got++;
    }
    if (got != n)
        fprintf(stderr, "    snapshot %llu: %zu rows, want %zu\n", (unsigned long long)req, got, n);
    return got == n;
}

/* A snapshot answers the live rows in memory, from the loop, then done 0; cancel and stop
 * drop one that is not answered yet. */
static bool test_snapshot(void)
{
    fixture f = {0};
    bool ok = false;
    CHECK(start(&f, "fifo = %s\n"));
    CHECK(emit_lines(&f,
                     "upsert public.rooms 1 name=Blue\n"
                     "upsert public.rooms 2 name=Green\n"
                     "upsert public.ticks a n=1\n"
                     "delete public.rooms 1\n"
                     "upsert public.rooms 3 name=Red\n",
                     5));

    CHECK(sb_testhost_source_snapshot(f.th, 10, NULL, 0) == SB_OK);
    CHECK(sb_testhost_row_count(f.th) == 0); /* never from inside snapshot() */
    f.req = 10;
    CHECK(sb_testhost_run_until(f.th, snapshot_done, &f, WAIT_MS));
    CHECK(sb_testhost_done_status(f.th, 10) == SB_OK);
    const uint32_t all_tables[] = {0, 1, 1};
    const char *const all_keys[] = {"a", "2", "3"};
    CHECK(rows_are(&f, 10, all_tables, all_keys, 3));
    const sb_row *r = sb_testhost_row_get(f.th, 1);
    CHECK(row_is(r->row, r->row_len,
                 BYTES("\x81"
                       "\xa4"
                       "name"
                       "\xa5"
                       "Green")));

    const uint32_t rooms[] = {1};
    CHECK(sb_testhost_source_snapshot(f.th, 11, rooms, 1) == SB_OK);
    f.req = 11;
    CHECK(sb_testhost_run_until(f.th, snapshot_done, &f, WAIT_MS));
    CHECK(sb_testhost_done_status(f.th, 11) == SB_OK);
    const uint32_t room_tables[] = {1, 1};
    const char *const room_keys[] = {"2", "3"};
    CHECK(rows_are(&f, 11, room_tables, room_keys, 2));

    const uint32_t unknown[] = {2};
    CHECK(sb_testhost_source_snapshot(f.th, 12, unknown, 1) == SB_ERR_NOTFOUND);

    /* Cancelled before its timer ran: the timer is gone, and nothing comes for it. */
    CHECK(sb_testhost_source_snapshot(f.th, 13, NULL, 0) == SB_OK);
    CHECK(sb_testhost_timer_count(f.th) == 1);
    sb_testhost_source_cancel(f.th, 13);
    CHECK(sb_testhost_timer_count(f.th) == 0);
    CHECK(sb_testhost_run_once(f.th, 0) == SB_OK);
    CHECK(rows_are(&f, 13, NULL, NULL, 0) && sb_testhost_done_status(f.th, 13) == 1);

    /* Still pending at stop: dropped with its timer, no done() after stop(). */
    CHECK(sb_testhost_source_snapshot(f.th, 14, NULL, 0) == SB_OK);
    CHECK(sb_testhost_stop(f.th) == 0);
    CHECK(sb_testhost_done_status(f.th, 14) == 1);
    ok = true;
out:
    return finish(&f, ok);
}

/* More rows than one batch of rows() holds (256) all arrive, in order. */
static bool test_snapshot_batches(void)
{
    enum { N = 600 };
    fixture f = {0};
    bool ok = false;
    static char lines[N * 40];
    size_t len = 0;
    for (int i = 0; i < N; i++)
        len += (size_t)snprintf(lines + len, sizeof lines - len, "upsert public.ticks k%d n=%d\n",
                                i, i);
    CHECK(start(&f, "fifo = %s\n"));
    CHECK(emit_lines(&f, lines, N));
    CHECK(sb_testhost_source_snapshot(f.th, 1, NULL, 0) == SB_OK);
    f.req = 1;
    CHECK(sb_testhost_run_until(f.th, snapshot_done, &f, WAIT_MS));
    CHECK(sb_testhost_done_status(f.th, 1) == SB_OK);
    CHECK(sb_testhost_row_count(f.th) == N);
    for (size_t i = 0; i < N; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%zu", i);
        CHECK(key_is(&sb_testhost_row_get(f.th, i)->key, key));
    }
    CHECK(sb_testhost_stop(f.th) == 0);
    ok = true;
out:
    return finish(&f, ok);
}

/* The FIFO and the timer together, and stop() removes both. */
static bool test_stop(void)
{
    fixture f = {0};
    bool ok = false;
    CHECK(start(&f, "fifo = %s\n"
                    "interval_ms = 3600000\n"));
    CHECK(sb_testhost_watch_count(f.th) == 1 && sb_testhost_timer_count(f.th) == 1);
    CHECK(sb_testhost_log_find(f.th, "info [source.mem] reading changes from "));
    CHECK(sb_testhost_stop(f.th) == 0);
    ok = true;
out:
    return finish(&f, ok);
}

/* What the broker refuses, by file:line as --check would say it. */
static bool refused(const char *options, int load_rc, int start_rc, const char *needle)
{
    fixture f = {0};
    bool ok = false;
    CHECK(load(&f, options) == load_rc);
    if (load_rc == SB_OK)
        CHECK(sb_testhost_start(f.th) == start_rc);
    CHECK(sb_testhost_log_find(f.th, needle));
    ok = true;
out:
    if (!ok)
        fprintf(stderr, "    options: %s    want a log line with: %s\n", options, needle);
    return finish(&f, ok);
}

static bool test_options(void)
{
    bool ok = false;
    CHECK(refused("fifo = %s\ninterval_ms = soon\n", SB_ERR_CONFIG, 0,
                  "testhost.ini:8: [source.mem] interval_ms: 'soon' is not an integer"));
    CHECK(refused("interval_ms = 3600001\n", SB_ERR_CONFIG, 0,
                  "testhost.ini:7: [source.mem] interval_ms: '3600001' is not an integer"));
    CHECK(refused("colour = red\n", SB_ERR_CONFIG, 0,
                  "testhost.ini:7: [source.mem] colour: unknown key for plugin source_memory"));
    /* Options the parser accepts but the source refuses when it is created / started; a key
     * not given is named by its section's line. */
    CHECK(refused("", SB_OK, SB_ERR_CONFIG,
                  "testhost.ini:5: [source.mem] fifo: set fifo or interval_ms: nothing to read"));
    CHECK(refused("fifo = /dev/null\n", SB_OK, SB_ERR_CONFIG,
                  "testhost.ini:7: [source.mem] fifo: /dev/null: not a FIFO"));
    ok = true;
out:
    return ok;
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        bool (*run)(void);
    } tests[] = {
        {"changes", test_changes},
        {"bad_lines", test_bad_lines},
        {"counter", test_counter},
        {"snapshot", test_snapshot},
        {"snapshot_batches", test_snapshot_batches},
        {"stop", test_stop},
        {"options", test_options},
    };
    if (argc != 2) {
        fprintf(stderr, "usage: %s PLUGIN_DIR (the folder holding source_memory.so)\n", argv[0]);
        return 1;
    }
    plugin_dir = argv[1];
    int failed = 0;
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        bool ok = tests[i].run();
        printf("%s %s\n", ok ? "ok  " : "FAIL", tests[i].name);
        fflush(stdout); /* before the sanitizers' report, which ends the process */
        failed += !ok;
    }
    printf("%d of %zu failed\n", failed, sizeof tests / sizeof tests[0]);
    return failed ? 1 : 0;
}
