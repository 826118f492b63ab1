"""`since` amplification (issue 9): a 40-byte `since` used to return the whole replay buffer
in one reply (9,991 frames, 20 MB). With the replay buffer holding 10,000 events (5000 of
about 250 bytes, then 5000 of about 2.3 kB), one `since` from the start returns at most
max_since_events (1000) messages and max_since_bytes (1 MiB) with `more` and `upto`;
following `upto` replays every event exactly once, in order; a flood of such requests from a
peer that never reads leaves the broker's peak RSS within what the capped replies explain and
its ping fast; and a libsyncclient client stopped across more than the cap repairs with
several `since` calls and no snapshot."""
import os
import signal
import sys
import time

import msgpack
import pytest
import zmq

from conftest import BUILD_DIR
from sbcluster import wait_until
from sbpeer import CTX, Replica, request, typed_rows, unpack

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "faults"))
from faultkit import FaultClient  # noqa: E402
from sbwriter import q

BOOKINGS = "public.bookings"
SMALL = BIG = 5000
CAP_EVENTS, CAP_BYTES = 1000, 1 << 20  # the transport's defaults
BIG_NOTE = "repeat(md5(g::text), 64)"  # 2 kB


def fill(conn, first=1):
    """SMALL events of a short row, then BIG of a 2 kB one (ids first..)."""
    q(conn, "INSERT INTO bookings (id, guest) SELECT g, 'g' FROM generate_series(%s, %s) g",
      (first, first + SMALL - 1))
    q(conn, f"""INSERT INTO bookings (id, guest, note) SELECT g, 'g', {BIG_NOTE}
                FROM generate_series(%s, %s) g""", (first + SMALL, first + SMALL + BIG - 1))


def wait_seq(b, seq, timeout=120):
    wait_until(lambda: b.ping()["seq"] >= seq, timeout, f"the broker to publish seq {seq}",
               interval=0.05)


def since_raw(b, epoch, seq):
    """One `since`: (header, [raw message frames])."""
    sock = CTX.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(b.service)
    try:
        sock.send_multipart([b"", msgpack.packb({"op": "since", "epoch": epoch, "seq": seq})])
        assert sock.poll(10000), "no since reply within 10 s"
        frames = sock.recv_multipart()
        assert frames[0] == b""
        return unpack(frames[1]), frames[2:]
    finally:
        sock.close()


@pytest.fixture
def full(broker, hotel, conn):
    """A broker whose replay buffer holds the 10,000 events of fill(); (broker, seq before)."""
    b = broker(hotel, [BOOKINGS], extra={"broker": {"replay_buffer": 20000}})
    start = b.ping()["seq"]
    fill(conn)
    wait_seq(b, start + SMALL + BIG)
    return b, start


def test_since_is_capped_and_upto_replays_everything_once(full):
    b, start = full
    epoch = b.hello["epoch"]
    last = start + SMALL + BIG
    head, frames = since_raw(b, epoch, start)
    assert head["more"] is True and head["upto"] == head["seq"] == start + CAP_EVENTS, head
    assert len(frames) == CAP_EVENTS
    seen, asked, rounds, bytes_capped = [], start, 0, 0
    while True:
        head, frames = since_raw(b, epoch, asked)
        rounds += 1
        size = sum(len(f) for f in frames)
        assert 1 <= len(frames) <= CAP_EVENTS and size <= CAP_BYTES, (asked, len(frames), size)
        events = [unpack(f) for f in frames]
        assert events[0]["seq"] == asked + 1
        seen += events
        if not head.get("more"):
            break
        assert head["upto"] == head["seq"] == events[-1]["seq"] > asked, head
        # Stopped at a cap: the events cap, or no room for one more 2.3 kB event.
        assert len(frames) == CAP_EVENTS or size > CAP_BYTES - 2500, (len(frames), size)
        bytes_capped += len(frames) < CAP_EVENTS
        asked = head["upto"]
    assert head["seq"] == last  # the complete reply's seq: the broker's last
    assert [e["seq"] for e in seen] == list(range(start + 1, last + 1))
    assert sorted(int(e["key"]) for e in seen) == list(range(1, SMALL + BIG + 1))
    # 5 rounds of 1000 small events, then about 450 big ones per MiB.
    assert bytes_capped >= 10 and rounds == 5 + bytes_capped + 1, (rounds, bytes_capped)
    assert b.ping_best_ms() < 100


def test_since_flood_from_a_peer_that_never_reads(full, conn):
    """40 `since` requests for the 2 kB part, on a DEALER that takes one message and then
    reads nothing more (its TCP window fills, then the broker's queue for it): the broker
    holds at most 40 capped replies (40 MiB; uncapped they would be 40 x 11.5 MB), stays
    responsive meanwhile, and serves a correct snapshot after."""
    b, start = full
    epoch = b.hello["epoch"]
    before = b.peak_rss_kb()
    flood = CTX.socket(zmq.DEALER)
    flood.setsockopt(zmq.LINGER, 0)
    flood.setsockopt(zmq.RCVHWM, 1)
    flood.setsockopt(zmq.RCVBUF, 4096)
    flood.connect(b.service)
    body = msgpack.packb({"op": "since", "epoch": epoch, "seq": start + SMALL})
    n = 40
    try:
        for _ in range(n):
            flood.send_multipart([b"", body])
        pings = [b.ping_ms() for _ in range(20)]
        # Every request served: the broker's request count says so (ping, stats and the
        # flood), so the peak below is the flood's whole cost.
        wait_until(lambda: request(b.service, {"op": "stats"})[0]["requests"] >= n + 20, 30,
                   "the broker to read the flood")
        grown_mb = (b.peak_rss_kb() - before) / 1024
        print(f"since flood: peak RSS +{grown_mb:.1f} MB, ping max {max(pings):.1f} ms")
        # Each reply held twice at most: ZeroMQ's copy queued for the peer, and the freed
        # one the allocator (ASan's quarantine) keeps. Uncapped: 2 x 11.5 MB each.
        assert grown_mb < n * 2 * CAP_BYTES / (1 << 20) + 32, f"peak RSS grew {grown_mb:.0f} MB"
        # One capped reply per turn: under 1 ms in a release build, 30-40 ms under ASan, and
        # a ping waits for two turns at most (more on a loaded machine). Uncapped, one turn
        # served all 40 replies: 400 ms each under ASan.
        assert max(pings) < 500, pings
    finally:
        flood.close()
    assert b.ping_best_ms() < 100
    head = request(b.service, {"op": "snapshot", "tables": [BOOKINGS]}, timeout=30)
    assert head[0]["rows"] == SMALL + BIG
    got = {(BOOKINGS, (item["key"],)): item["row"] for frame in head[1:] for item in frame}
    assert got == typed_rows(conn, BOOKINGS)


def test_replica_follows_more(full, conn):
    """The Python peer (sbpeer.Replica) repairs a 10,000-event gap with since calls only."""
    b, start = full
    replica = Replica(b.pub, b.service, [BOOKINGS])
    try:
        replica.start()
        # as if it had missed all of fill()'s events
        replica.seq, replica.known_at = start, {BOOKINGS: start}
        replica.rows, replica.versions = {}, {}
        assert replica.since()
        assert replica.sinces >= 16 and replica.resyncs == 0
        assert replica.rows == typed_rows(conn, BOOKINGS)
    finally:
        replica.close()


def test_stopped_client_repairs_with_several_since_calls(broker, hotel, conn, tmp_path):
    """sb_fault_client (libsyncclient), SIGSTOPped while 10,000 events go out through
    sndhwm = 100: after SIGCONT it misses far more than one capped reply holds and catches
    up with several `since` calls, without a snapshot. Heartbeats every 5 s keep the stop
    shorter than the 3 silent periods after which it would call itself offline."""
    b = broker(hotel, [BOOKINGS], heartbeat_ms=5000,
               extra={"broker": {"replay_buffer": 20000}, "transport.zmq": {"sndhwm": 100}})
    binary = os.path.join(BUILD_DIR, "tests", "faults", "sb_fault_client")
    client = FaultClient(binary, b, "stopped", str(tmp_path), heartbeat_ms=5000)
    try:
        client.wait_event("online", timeout=60)
        mark = client.mark()
        seq = b.ping()["seq"]
        client.signal(signal.SIGSTOP)
        stopped = time.monotonic()
        fill(conn)
        wait_seq(b, seq + SMALL + BIG)
        client.signal(signal.SIGCONT)
        assert time.monotonic() - stopped < 12, "stopped too long for a gap to show"
        client.wait_event("gap", mark, 60)
        last = (BOOKINGS, [str(SMALL + BIG)])
        wait_until(lambda: client.get(*last) is not None, 60, "the client to hold the last row")
        sinces = client.events("since", mark)
        assert len(sinces) >= 3, client.describe()
        assert not client.events("since_refused", mark), client.describe()
        assert not client.events("reset", mark), client.describe()
        dump = client.dump()
        assert {k: row for k, (_, row) in dump.items()} == typed_rows(conn, BOOKINGS)
    finally:
        problem = client.stop()
    assert problem is None, problem
