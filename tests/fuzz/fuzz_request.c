/*
 * fuzz_request.c - libFuzzer target for the transport's request path: validate, decode and
 * dispatch one request body (tz_request_serve) in libsyncbroker-testhost, with the reply
 * sink replaced by a checker. Invariants: no crash or sanitizer report, exactly one reply per
 * request, the envelope echoed, every reply frame one well-formed msgpack object.
 *
 * The last input byte also picks how the test host answers (all fine and at once, refusals,
 * rows delivered later by hand, a failing source), so every op's paths are reachable.
 *
 * Built with -fsanitize=fuzzer under clang; with gcc, replay_corpus.c replays corpus/request/.
 */
#include "fuzz.h"
#include "sb_mp.h"
#include "tz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syncbroker/testhost.h>

/* Exported by transport_zmq.c through SB_PLUGIN_DECLARE; asked as the broker asks. */
const sb_plugin_header *sb_plugin_entry(const sb_abi_offer *offer);
static const sb_abi_version abi_v2 = {SB_ABI_MAJOR, SB_ABI_MINOR};
static const sb_abi_offer offer = {&abi_v2, 1};

static const char envelope[] = "fuzz";
static sb_testhost *th;
static tz *t; /* the plugin's state */
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

/* Once for the whole run: starting a test host per input would dwarf the request. */
static void init(void)
{
    /* inproc endpoints: the sockets exist, no port is taken; nobody connects to them. */
    static const char ini[] = "[database]\n"
                              "tables = public.bookings, public.rooms\n"
                              "[transport.zmq]\n"
                              "plugin = transport_zmq\n"
                              "pub = inproc://fuzz-pub\n"
                              "service = inproc://fuzz-service\n"
                              "snapshot_batch = 1\n";
    if (sb_testhost_new(&th) != SB_OK)
        sb_fuzz_fail("cannot make the test host");
    sb_testhost_set_epoch(th, "fuzz-epoch");
    const sb_plugin_header *h = sb_plugin_entry(&offer);
    if (!h || h->kind != SB_PLUGIN_TRANSPORT || h->size < sizeof(sb_transport_plugin))
        sb_fuzz_fail("not a transport");
    if (sb_testhost_load(th, NULL, ini, h) != SB_OK || sb_testhost_start(th) != SB_OK)
        sb_fuzz_fail("cannot start the transport");
    t = sb_testhost_plugin_state(th);
    static const uint64_t tseq[] = {4, 2};
    if (sb_testhost_script_snapshot_tseq(th, tseq, 2) != SB_OK)
        sb_fuzz_fail("cannot script the cut");
    t->reply = check_reply; /* replies go to the checker, not the ROUTER */
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
    sb_testhost_script_snapshot(th, refuse ? SB_ERR_BUSY : SB_OK, 2); /* answered later */
    sb_testhost_script_since(th, refuse ? SB_ERR_NOTFOUND : SB_OK, 5, msgs, 1);
    sb_testhost_script_presence(th, refuse ? SB_ERR_INVAL : SB_OK);
    /* Modes 0 and 3 answer snapshots at once, on the next loop turn (3 with a failing
     * source); mode 2 answers by hand. */
    if (mode == 0 || mode == 3)
        sb_testhost_script_snapshot_sync(th, rows, 2, mode == 3 ? SB_ERR_DB : SB_OK);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!th)
        init();
    unsigned mode = size ? data[size - 1] & 3u : 0;
    script(mode);
    tz_frames env = {0};
    if (tz_frames_push(&env, envelope, 4) < 0)
        sb_fuzz_fail("out of memory");
    unsigned long before = replies;
    tz_request_serve(t, &env, data, size);
    /* A turn of the loop answers the snapshots due (script_snapshot_sync); only then, as it
     * polls the sockets too, which costs more than most requests. */
    for (size_t i = 0; i < sb_testhost_snapshot_count(th); i++)
        if (sb_testhost_snapshot_get(th, i)->due) {
            sb_testhost_run_once(th, 0);
            break;
        }
    for (size_t i = 0; i < sb_testhost_snapshot_count(th); i++) {
        const sb_row r = {.table = 0,
                          .key = {key1, 1},
                          .version = 9,
                          .row = row_bytes,
                          .row_len = sizeof row_bytes};
        sb_testhost_snapshot_rows(th, i, &r, 1);
        sb_testhost_snapshot_done(th, i, SB_OK);
    }
    if (replies != before + 1 || t->nsnaps != 0)
        sb_fuzz_fail("a request did not get exactly one reply");
    sb_testhost_clear_records(th);
    return 0;
}

void sb_fuzz_teardown(void)
{
    if (!th)
        return;
    if (sb_testhost_stop(th) != 0)
        sb_fuzz_fail("the transport left watches or timers behind");
    sb_testhost_free(th);
    th = NULL;
    t = NULL;
}
