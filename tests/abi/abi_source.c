/*
 * A source for the loader tests, loaded by the real broker: once started it emits two changes
 * (public.bookings key 1, public.rooms key 2). SOURCE_ROWS hands each over with its row
 * ({"v": "emitted"}) and has no fetch(); SOURCE_FETCH emits them without rows and answers
 * the core's fetch() with {"v": "fetched"}, logging "fetch table=I keys=N". abi_good (a
 * transport, bad_plugin.c) logs what the core publishes. Snapshots are answered empty.
 */
#include <stddef.h>
#include <string.h>
#include <syncbroker/plugin.h>
#include <time.h>

static const sb_source_api *api;
static sb_host *host;

/* The msgpack map {"v": "emitted"} (with the change) or {"v": "fetched"} (fetch's answer). */
#ifdef SOURCE_ROWS
static const char row_bytes[] = "\x81\xa1v\xa7"
                                "emitted";
#else
static const char row_bytes[] = "\x81\xa1v\xa7"
                                "fetched";
#endif

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void emit_two(void *ud)
{
    (void)ud;
    static const char *const k1[] = {"1"}, *const k2[] = {"2"};
    sb_change c[2];
    for (size_t i = 0; i < 2; i++)
        c[i] = (sb_change){.table = (uint32_t)i,
                           .key = {i ? k2 : k1, 1},
                           .op = SB_OP_INSERT,
                           .version = 1,
                           .ts_ms = wall_ms(),
                           .position = i + 1,
#ifdef SOURCE_ROWS
                           .has_row = true,
                           .row = row_bytes,
                           .row_len = sizeof row_bytes - 1
#endif
        };
    int rc = api->emit(host, c, 2);
    api->base.log(host, SB_LOG_INFO, "emitted 2 changes: %s", sb_strerror(rc));
}

static int src_create(const sb_source_api *a, sb_host *h, const sb_source_setup *setup,
                      void **state)
{
    api = a;
    host = h;
    *state = NULL;
    return setup->ntables == 2 ? SB_OK : SB_ERR_CONFIG;
}

static int src_start(void *state)
{
    (void)state;
    return api->base.timer_start(host, 0, 0, emit_two, NULL, NULL);
}

static void src_void(void *state)
{
    (void)state;
}

#ifdef SOURCE_FETCH
typedef struct pending_fetch {
    uint64_t req;
    uint32_t table;
    char key[16];
} pending_fetch;

static pending_fetch fetches[8];
static size_t nfetches;

/* Answered on the next loop turn: never from inside fetch() itself. */
static void answer(void *ud)
{
    (void)ud;
    for (size_t i = 0; i < nfetches; i++) {
        const char *parts[] = {fetches[i].key};
        sb_row row = {.table = fetches[i].table,
                      .key = {parts, 1},
                      .version = 1,
                      .row = row_bytes,
                      .row_len = sizeof row_bytes - 1};
        api->rows(host, fetches[i].req, &row, 1);
        api->done(host, fetches[i].req, SB_OK);
    }
    nfetches = 0;
}

static int src_fetch(void *state, uint64_t req, uint32_t table, const sb_key *keys, size_t n)
{
    (void)state;
    api->base.log(host, SB_LOG_INFO, "fetch table=%u keys=%zu", table, n);
    for (size_t i = 0; i < n && nfetches < 8; i++) {
        pending_fetch *f = &fetches[nfetches++];
        f->req = req;
        f->table = table;
        strncpy(f->key, keys[i].parts[0], sizeof f->key - 1);
    }
    return api->base.timer_start(host, 0, 0, answer, NULL, NULL);
}
#endif

static uint64_t snapshot_req;

static void snapshot_done(void *ud)
{
    (void)ud;
    api->done(host, snapshot_req, SB_OK);
}

static int src_snapshot(void *state, uint64_t req, const uint32_t *tables, size_t n)
{
    (void)state, (void)tables, (void)n;
    snapshot_req = req;
    return api->base.timer_start(host, 0, 0, snapshot_done, NULL, NULL);
}

static void src_cancel(void *state, uint64_t req)
{
    (void)state, (void)req;
}

static const sb_option_spec database_options[] = {
    {"conninfo", SB_OPT_STRING, NULL, 0, 0, "read and ignored"},
    {NULL, 0, NULL, 0, 0, NULL},
};

static const sb_source_plugin descriptor = {
    .header = SB_SOURCE_PLUGIN_HEADER(PLUGIN_NAME, "0.0.1", "a test source", NULL),
    .database_options = database_options,
    .create = src_create,
    .start = src_start,
    .stop = src_void,
    .destroy = src_void,
#ifdef SOURCE_FETCH
    .fetch = src_fetch,
#endif
    .snapshot = src_snapshot,
    .cancel = src_cancel,
};

SB_PLUGIN_DECLARE(descriptor)
