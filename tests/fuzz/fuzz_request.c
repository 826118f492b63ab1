/*
 * fuzz_request.c - libFuzzer target for the transport's request path: validate, decode and
 * dispatch one request body (tz_request_serve) against the fake host, with the reply sink
 * replaced by a checker. Invariants: no crash or sanitizer report, exactly one reply per
 * request, the envelope echoed, every reply frame one well-formed msgpack object.
 *
 * The last input byte also picks how the fake host answers (all fine and at once, refusals,
 * rows delivered later by hand, a failing source), so every op's paths are reachable.
 *
 * Built with -fsanitize=fuzzer under clang; with gcc, replay_corpus.c replays corpus/request/.
 */
#include "fake_host.h"
#include "fuzz.h"
#include "sb_mp.h"
#include "tz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Exported by transport_zmq.c through SB_PLUGIN_DECLARE; asked as the broker asks. */
const sb_plugin_header *sb_plugin_entry(const sb_abi_offer *offer);
static const sb_abi_version abi_v2 = {SB_ABI_MAJOR, SB_ABI_MINOR};
static const sb_abi_offer offer = {&abi_v2, 1};

static const char envelope[] = "fuzz";
static fake_host *fh;
static const sb_transport_plugin *p;
static tz *t;
static unsigned long replies;

static void check_reply(tz *self, tz_frames *msg)
{
    (void)self;
    if (msg->n < 2 || msg->v[0].len != 4 || memcmp(msg->v[0].data, envelope, 4) != 0)
        sb_fuzz_fail("reply without the request's envelope");
    for (size_t i = 1; i < msg->n; i++)
        if (sb_mp_check(msg->v[i].data, msg->v[i].len, NULL) != SB_OK)
            sb_fuzz_fail("reply frame is not one msgpack object");
    replies++;
    tz_frames_clear(msg);
}

static void init(void)
{
    static const char *const tables[] = {"public.bookings", "public.rooms"};
    fh = fake_host_new();
    if (!fh)
        sb_fuzz_fail("out of memory");
    fake_host_set_tables(fh, tables, 2);
    fake_host_set_epoch(fh, "fuzz-epoch");
    static const uint64_t tseq[] = {4, 2};
    fake_host_script_snapshot_tseq(fh, tseq, 2);
    const sb_plugin_header *h = sb_plugin_entry(&offer);
    if (!h || h->kind != SB_PLUGIN_TRANSPORT)
        sb_fuzz_fail("not a transport");
    p = (const sb_transport_plugin *)h;
    const char *overrides[] = {"snapshot_batch=1", NULL};
    sb_option_value opts[32];
    void *state = NULL;
    if (fake_host_options(p->header.options, overrides, opts, 32) < 0 ||
        p->create(fake_host_transport_api(), fake_host_handle(fh), opts, &state) != SB_OK)
        sb_fuzz_fail("cannot create the transport");
    t = state;
    t->reply = check_reply; /* no sockets: replies go to the checker */
}

static const unsigned char row_bytes[] = {0x81, 0xa2, 'i', 'd', 0x01};
static const char *const key1[] = {"1"};
static const char *const key2[] = {"12", "2026-11-28"};

static void script(unsigned mode)
{
    static const unsigned char body[] = {0x81, 0xa3, 's', 'e', 'q', 0x05};
    const sb_message msgs[] = {{SB_MSG_EVENT, 5, "public.bookings/1", 17, body, sizeof body}};
    const sb_row rows[] = {
        {.table = 0, .key = {key1, 1}, .version = 3, .row = row_bytes, .row_len = sizeof row_bytes},
        {.table = 1, .key = {key2, 2}, .version = 4, .row = row_bytes, .row_len = sizeof row_bytes},
    };
    bool refuse = mode == 1;
    fake_host_script_snapshot(fh, refuse ? SB_ERR_BUSY : SB_OK, 2); /* answered later */
    fake_host_script_since(fh, refuse ? SB_ERR_NOTFOUND : SB_OK, 5, msgs, 1);
    fake_host_script_presence(fh, refuse ? SB_ERR_INVAL : SB_OK);
    /* Modes 0 and 3 answer snapshots at once, on the next loop turn (3 with a failing
     * source); mode 2 answers by hand. */
    if (mode == 0 || mode == 3)
        fake_host_script_snapshot_sync(fh, rows, 2, mode == 3 ? SB_ERR_DB : SB_OK);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!fh)
        init();
    unsigned mode = size ? data[size - 1] & 3u : 0;
    script(mode);
    tz_frames env = {0};
    if (tz_frames_push(&env, envelope, 4) < 0)
        sb_fuzz_fail("out of memory");
    unsigned long before = replies;
    tz_request_serve(t, &env, data, size);
    fake_host_run_once(fh, 0); /* no watches: answers what is due at once */
    for (size_t i = 0; i < fake_host_snapshot_count(fh); i++) {
        const sb_row r = {.table = 0,
                          .key = {key1, 1},
                          .version = 9,
                          .row = row_bytes,
                          .row_len = sizeof row_bytes};
        fake_host_snapshot_rows(fh, i, &r, 1);
        fake_host_snapshot_done(fh, i, SB_OK);
    }
    if (replies != before + 1 || t->nsnaps != 0)
        sb_fuzz_fail("a request did not get exactly one reply");
    fake_host_clear_records(fh);
    return 0;
}

void sb_fuzz_teardown(void)
{
    if (!fh)
        return;
    p->destroy(t);
    fake_host_free(fh);
    fh = NULL;
    t = NULL;
}
