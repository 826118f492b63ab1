"""General abuse of the service socket by one hostile peer (issue 9): random bytes, wrong
types for every field of every op, deep nesting, headers declaring 2^32 elements, oversize
and multi-frame requests, many frames, empty frames, envelope mix-ups and a 10k requests/s
flood. Each bad request that the protocol can answer gets an error naming what was wrong;
what it cannot answer is dropped and counted in `stats.errors`. After each case the broker
answers ping within 100 ms, serves a snapshot equal to the database, its peak RSS stayed
within BUDGET_KB of what it was before the abuse, and (the fixture) no sanitizer report.

Other limits (snapshot amplification, non-reading peers, since, subscriptions, presence) are
tested in their own files."""
import os
import random
import subprocess
import sys
import time

import msgpack
import pytest
import zmq

import zmtp
from sbpeer import CTX, request

TABLES = ["public.bookings", "public.stays"]
# Big enough that 10^5 levels of nesting reach the decoder instead of too_large.
MAX_REQUEST = 262144
# Peak RSS growth allowed per case: ASan's quarantine (16 MiB, conftest), msgpack-c's and
# the sbuffer's 8 kB chunks, a few requests in flight, ZeroMQ's buffers: a correct broker
# stays under 10 MiB here; 32 MiB is far below a decoder that would allocate what a header
# declares (2^32 elements: 96 GiB) or a peer that could make the broker keep what it sends.
BUDGET_KB = 32 * 1024
# The one case allowed more: a message of 16 frames of 4 x max_request (ZMQ_MAXMSGSIZE) is
# held by ZeroMQ, copied into tz_frames, its envelope echoed into the reply and copied into
# ZeroMQ again: 4 copies of 16 MiB.
FRAMES_BUDGET_KB = BUDGET_KB + 4 * 16 * 4 * MAX_REQUEST // 1024
# Clients vanishing mid-request, 50 connected at a time: each open connection costs the ASan
# build ~90 kB (ZeroMQ's engine and pipes), 32 snapshots run at once, the quarantine fills;
# measured +26 MB for 250 clients, +38 MB for 1000, +43 MB for 3000: it levels off, where
# anything kept per client would keep growing.
VANISH_BUDGET_KB = 64 * 1024


def pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


@pytest.fixture
def target(broker, hotel, conn):
    with conn.cursor() as cur:
        cur.execute("INSERT INTO bookings (id, guest, nights, note) "
                    "SELECT g, 'guest ' || g, g % 7, repeat('n', g % 50) "
                    "FROM generate_series(1, 300) g")
        cur.execute("INSERT INTO stays (room, day, note) "
                    "SELECT g % 20, date '2026-01-01' + g, 'stay' FROM generate_series(1, 100) g")
    b = broker(hotel, TABLES, extra={"transport.zmq": {"max_request": MAX_REQUEST}})
    b.conn = conn
    healthy(b, "warm-up")  # the first snapshot's allocations belong to the baseline
    b.baseline_kb = b.peak_rss_kb()
    yield b
    b.stop()


class Dealer:
    """A DEALER peer: sends frames as they are, receives whole replies."""

    def __init__(self, endpoint):
        self.sock = CTX.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)

    def send(self, frames):
        self.sock.send_multipart(frames)

    def recv(self, timeout=5.0):
        if not self.sock.poll(int(timeout * 1000)):
            raise TimeoutError(f"no reply within {timeout}s")
        return self.sock.recv_multipart()

    def ask(self, body, timeout=5.0):
        """[b"", body] (what a REQ sends); the decoded reply map."""
        self.send([b"", body if isinstance(body, bytes) else pack(body)])
        frames = self.recv(timeout)
        assert frames[0] == b"", frames[:2]
        return msgpack.unpackb(frames[1], raw=False)

    def close(self):
        self.sock.close()


@pytest.fixture
def dealer(target):
    d = Dealer(target.service)
    yield d
    d.close()


def stats(b):
    return request(b.service, {"op": "stats"})[0]


def healthy(b, case, budget_kb=BUDGET_KB):
    """Broker.assert_healthy (ping within 100 ms, a snapshot equal to the database) and peak
    RSS within budget_kb of the baseline. Prints the figures."""
    b.assert_healthy(b.conn)
    peak = b.peak_rss_kb()
    base = getattr(b, "baseline_kb", peak)
    print(f"\nabuse {case}: ping {b.ping_ms():.1f} ms, peak RSS {peak} kB (+{peak - base} kB)")
    assert peak - base < budget_kb, f"{case}: peak RSS grew by {peak - base} kB"


def assert_error(reply, code, *words):
    assert isinstance(reply, dict) and reply.get("error") == code, reply
    message = reply.get("message")
    assert isinstance(message, str) and message, reply
    for word in words:
        assert word in message, (word, reply)


# ---- malformed bodies ---------------------------------------------------------------------

def test_random_bytes(target, dealer):
    rng = random.Random(9)
    for i in range(500):
        blob = rng.randbytes(rng.randint(1, 4000))
        reply = dealer.ask(blob)
        assert reply.get("error") in ("bad_request", "unknown_op"), (i, blob[:20], reply)
        assert reply.get("message"), reply
    healthy(target, "random bytes")


VALID = {
    "snapshot": {"op": "snapshot", "tables": ["public.bookings"]},
    "since": {"op": "since", "epoch": "e", "seq": 1},
    "presence": {"op": "presence", "client": "c", "table": "public.bookings", "key": "1",
                 "state": "editing", "ttl_ms": 1000},
    "editors": {"op": "editors", "table": "public.bookings", "key": "1"},
}
# Values of every msgpack type; for each field, those of a type it does not take.
ANY = {"int": -1, "uint": 7, "float": 1.5, "nil": None, "bool": True, "str": "x",
       "bin": b"\x00\xff", "array": [1], "map": {"a": 1}, "ext": msgpack.ExtType(5, b"x")}
# nil tables: every table (documented)
TAKES = {("snapshot", "tables"): {"array", "nil"}, ("since", "epoch"): {"str"},
         ("since", "seq"): {"uint"}, ("presence", "client"): {"str"},
         ("presence", "table"): {"str"}, ("presence", "key"): {"str", "array"},
         ("presence", "state"): {"str"}, ("presence", "ttl_ms"): {"uint"},
         ("editors", "table"): {"str"}, ("editors", "key"): {"str", "array"}}
WRONG = [(op, field, kind) for (op, field), ok in TAKES.items() for kind in ANY if kind not in ok]


def test_wrong_types_for_every_field(target, dealer):
    """Each op with each field of each wrong type: bad_request naming the field."""
    for op, field, kind in WRONG:
        body = dict(VALID[op], **{field: ANY[kind]})
        assert_error(dealer.ask(body), "bad_request", field)
    # Containers of the right type holding the wrong type.
    for kind in ANY:
        if kind != "str":
            assert_error(dealer.ask(dict(VALID["snapshot"], tables=[ANY[kind]])), "bad_request",
                         "tables")
            for op in ("presence", "editors"):
                assert_error(dealer.ask(dict(VALID[op], key=[ANY[kind]])), "bad_request", "key")
    for kind, value in ANY.items():
        if kind != "str":
            assert_error(dealer.ask({"op": value}), "bad_request", "str op")
        if kind != "map":
            assert_error(dealer.ask(pack(value)), "bad_request", "not a map")
    # Keys that are not strings are skipped, not confused with "op".
    assert_error(dealer.ask({1: "ping", None: "ping", b"op": "ping"}), "bad_request", "str op")
    assert stats(target)["errors"] >= len(WRONG)
    healthy(target, "wrong types")


@pytest.mark.parametrize("levels", [60_000, 100_000])
@pytest.mark.parametrize("kind, container", [("arrays", b"\x91"), ("maps", b"\x81\x00")])
def test_deep_nesting(target, dealer, levels, kind, container):
    """10^5 levels: beyond msgpack-c's 32 (which it would also refuse), refused by the
    validator before msgpack-c allocates anything; also as a field of a valid request."""
    deep = container * levels + b"\xc0"
    assert_error(dealer.ask(deep), "bad_request", "msgpack")
    # {"op": "snapshot", "tables": [[[...]]]}: the nesting inside a valid map.
    inner = b"\x82" + pack("op") + pack("snapshot") + pack("tables") + deep
    assert_error(dealer.ask(inner), "bad_request", "msgpack")
    healthy(target, f"{levels} levels of {kind}")


HUGE_HEADERS = {
    "array32": b"\xdd\xff\xff\xff\xff", "map32": b"\xdf\xff\xff\xff\xff",
    "str32": b"\xdb\xff\xff\xff\xff", "bin32": b"\xc6\xff\xff\xff\xff",
    "ext32": b"\xc9\xff\xff\xff\xff\x01", "array16": b"\xdc\xff\xff",
}


def test_headers_declaring_2_32_elements(target, dealer):
    """5 bytes declaring 2^32-1 elements (msgpack-c would allocate 96 GiB for the array
    before reading one): refused without allocating, alone and as a field's value."""
    for name, head in HUGE_HEADERS.items():
        assert_error(dealer.ask(head), "bad_request", "msgpack")
        field = b"\x82" + pack("op") + pack("snapshot") + pack("tables") + head + b"\x00" * 64
        assert_error(dealer.ask(field), "bad_request", "msgpack")
    healthy(target, "2^32-element headers")


# ---- frames ---------------------------------------------------------------------------------

def test_oversize_bodies(target, dealer):
    assert_error(dealer.ask(pack({"op": "ping", "pad": "x" * MAX_REQUEST})), "too_large",
                 "max_request")
    assert_error(dealer.ask(b"\x00" * (4 * MAX_REQUEST)), "too_large", f"{MAX_REQUEST}")
    # Beyond 4 x max_request ZeroMQ (ZMQ_MAXMSGSIZE) disconnects the peer: no reply, ever.
    lost = Dealer(target.service)
    lost.send([b"", b"\x00" * (4 * MAX_REQUEST + 1)])
    with pytest.raises(TimeoutError):
        lost.recv(timeout=1)
    lost.close()
    healthy(target, "oversize bodies")


def test_multi_frame_request_echoes_its_envelope(target, dealer):
    """Up to 16 frames (routing id included): every frame up to 4 x max_request, the frames
    before the body echoed, the body still bounded by max_request."""
    big = b"e" * (4 * MAX_REQUEST)
    envelope = [b""] + [big] * 13
    dealer.send(envelope + [pack({"op": "ping"})])
    reply = dealer.recv()
    assert reply[:-1] == envelope and "epoch" in msgpack.unpackb(reply[-1]), reply[-1][:80]
    dealer.send([b"", big])
    assert_error(msgpack.unpackb(dealer.recv()[-1]), "too_large", "max_request")
    healthy(target, "16-frame requests of 4 x max_request frames", FRAMES_BUDGET_KB)


@pytest.mark.parametrize("nframes", [15, 16, 1000, 100_000])
def test_many_frames_in_one_message(target, dealer, nframes):
    """The peer's frames plus the routing id: over 16 the message is dropped, unanswered
    (there is no trustworthy envelope), and counted in errors."""
    before = stats(target)
    dealer.send([b""] * (nframes - 1) + [pack({"op": "ping"})])
    if nframes <= 15:
        assert "epoch" in msgpack.unpackb(dealer.recv()[-1])
    else:
        with pytest.raises(TimeoutError):
            dealer.recv(timeout=0.5)
    after = stats(target)
    assert after["requests"] - before["requests"] == 2  # this one and the first stats
    assert after["errors"] - before["errors"] == (0 if nframes <= 15 else 1)
    healthy(target, f"{nframes} frames")


def test_empty_frames(target, dealer):
    """An empty body is answered (bad_request) behind whatever envelope came with it."""
    for envelope in ([], [b""], [b"", b""], [b""] * 14):
        dealer.send(envelope + [b""])
        reply = dealer.recv()
        assert reply[:-1] == envelope, reply
        assert_error(msgpack.unpackb(reply[-1]), "bad_request", "msgpack")
    healthy(target, "empty frames")


def test_req_dealer_envelope_mix_up(target, dealer):
    """A DEALER without the REQ delimiter, or with it after the body: the reply mirrors
    exactly what was sent before the last frame; a REQ is unaffected meanwhile."""
    ping = pack({"op": "ping"})
    dealer.send([ping])
    reply = dealer.recv()
    assert len(reply) == 1 and "epoch" in msgpack.unpackb(reply[0]), reply
    dealer.send([ping, b""])  # the delimiter last: the body is the empty frame
    reply = dealer.recv()
    assert reply[0] == ping and len(reply) == 2, reply
    assert_error(msgpack.unpackb(reply[1]), "bad_request", "msgpack")
    dealer.send([b"not-a-delimiter", ping])
    reply = dealer.recv()
    assert reply[0] == b"not-a-delimiter" and "epoch" in msgpack.unpackb(reply[1]), reply
    assert "epoch" in request(target.service, {"op": "ping"})[0]
    healthy(target, "envelope mix-up")


def test_clients_vanishing_mid_request(target):
    """1000 clients, 50 connected at a time, each sending a snapshot, a since and a ping and
    closing its connection at once: the broker drops their replies (EHOSTUNREACH) and
    cancels their snapshots; everyone else is served as before."""
    requests = [zmtp.frame(b"", True) + zmtp.frame(pack(body)) for body in (
        {"op": "snapshot", "tables": TABLES}, {"op": "since", "epoch": "e", "seq": 0},
        {"op": "ping"})]
    before = stats(target)["requests"]
    for _ in range(20):
        peers = [zmtp.connect(target.service) for _ in range(50)]
        for peer in peers:
            peer.sendall(b"".join(requests))
        for peer in peers:
            peer.close()
    # Most requests reached the broker before their client vanished (stats counts them; a
    # connection closed before ZeroMQ has attached it may lose its requests: 2896 of 3000
    # arrived on a loaded machine).
    assert stats(target)["requests"] - before >= 1500
    healthy(target, "1000 clients vanishing mid-request", VANISH_BUDGET_KB)


# A peer sending RATE pings a second for SECONDS over raw ZMTP, from its own process (no GIL
# shared with the ping measurement), reading the replies as they come; prints "sent answered".
FLOOD = r"""
import select, sys, time
sys.path.insert(0, sys.argv[4])
import msgpack, zmtp
endpoint, rate, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = zmtp.connect(endpoint)
batch = 50
burst = (zmtp.frame(b"", True) + zmtp.frame(msgpack.packb({"op": "ping"}))) * batch
counter = zmtp.Counter()
sent = 0
print("ready", flush=True)
start = time.monotonic()
while time.monotonic() - start < seconds:
    if sent < rate * (time.monotonic() - start):
        s.sendall(burst)
        sent += batch
    if select.select([s], [], [], 0.001)[0]:
        counter.feed(s.recv(1 << 20))
s.settimeout(10)
while counter.messages < sent:
    counter.feed(s.recv(1 << 20))
print(sent, counter.messages, flush=True)
"""


def test_flood_of_10k_requests_a_second(target):
    """One peer at 10k requests/s for 5 s: every request answered, and a second peer's ping
    (a new connection each time, as a client's first request) answers meanwhile."""
    rate, seconds = 10_000, 5.0
    proc = subprocess.Popen([sys.executable, "-c", FLOOD, target.service, str(rate),
                             str(seconds), os.path.dirname(os.path.abspath(__file__))],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        pings = []
        while proc.poll() is None and len(pings) < 1000:
            pings.append(target.ping_ms())
            if len(pings) * 0.02 > seconds:
                break
            time.sleep(0.02)  # the sampling period, not a synchronisation
        out = proc.communicate(timeout=30)[0].split()
    finally:
        if proc.poll() is None:
            proc.kill()
    sent, answered = int(out[0]), int(out[1])
    pings.sort()
    p50, p99 = pings[len(pings) // 2], pings[int(len(pings) * 0.99)]
    print(f"\nflood: {sent} sent in {seconds:.0f} s, {answered} answered; second peer's ping "
          f"during it: {len(pings)} samples, p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
          f"max {pings[-1]:.1f} ms")
    assert sent >= rate * seconds * 0.95 and answered == sent, (sent, answered)
    assert p50 < 100 and pings[-1] < 1000, pings
    healthy(target, "10k requests/s for 5 s")


@pytest.mark.xfail(strict=True, reason="open: ZeroMQ buffers a multipart message whole before "
                   "the broker sees any frame; ZMQ_MAXMSGSIZE bounds one frame, not the message")
def test_one_unfinished_message_of_many_frames(target):
    """128 MiB in frames under 4 x max_request, never finished: the broker's memory grows by
    as much, whatever its limits (libzmq has no bound on a message's frames)."""
    s = zmtp.connect(target.service)
    frame = zmtp.frame(b"f" * (4 * MAX_REQUEST - 16), True)
    for _ in range(128 * 1024 * 1024 // len(frame)):
        s.sendall(frame)
    s.sendall(zmtp.frame(pack({"op": "ping"})))
    s.close()
    healthy(target, "one message of 128 MiB in 512 frames")
