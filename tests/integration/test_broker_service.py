"""The service socket: ping, snapshot, since over REQ and DEALER, and refusals of malformed
requests that leave the broker serving."""
import signal
import time

import msgpack
import pytest
import zmq

from sbpeer import Subscriber, request
from sbwriter import q

BOOKINGS = "public.bookings"


def pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


BAD_REQUESTS = [
    ("not msgpack", b"\xc1\xc1\xc1", "bad_request"),
    ("empty frame", b"", "bad_request"),
    ("truncated map", b"\x82\xa2op", "bad_request"),
    ("not a map", pack([1, 2, 3]), "bad_request"),
    ("a string", pack("ping"), "bad_request"),
    ("missing op", pack({"tables": [BOOKINGS]}), "bad_request"),
    ("op not a string", pack({"op": 5}), "bad_request"),
    ("unknown op", pack({"op": "drop_database"}), "unknown_op"),
    ("unknown table", pack({"op": "snapshot", "tables": ["public.nope"]}), "unknown_table"),
    ("tables not a list", pack({"op": "snapshot", "tables": BOOKINGS}), "bad_request"),
    ("table not a string", pack({"op": "snapshot", "tables": [7]}), "bad_request"),
    ("since seq a string", pack({"op": "since", "epoch": "x", "seq": "1"}), "bad_request"),
    ("presence without client", pack({"op": "presence", "table": BOOKINGS, "key": "1",
                                      "state": "editing", "ttl_ms": 1000}), "bad_request"),
    ("presence bad state", pack({"op": "presence", "client": "c", "table": BOOKINGS, "key": "1",
                                 "state": "dancing", "ttl_ms": 1000}), "bad_request"),
    ("huge", pack({"op": "ping", "pad": "x" * 70_000}), "too_large"),
    ("deeply nested", b"\x91" * 100_000, "too_large"),
]


def test_malformed_requests_get_errors_and_the_broker_carries_on(broker, hotel):
    b = broker(hotel, [BOOKINGS])
    for name, payload, code in BAD_REQUESTS:
        reply = request(b.service, payload)
        assert len(reply) == 1 and isinstance(reply[0], dict), (name, reply)
        assert reply[0].get("error") == code, (name, reply)
        assert isinstance(reply[0].get("message"), str) and reply[0]["message"], (name, reply)
        assert b.ping()["epoch"] == b.hello["epoch"], name
    b.stop()


@pytest.mark.parametrize("socket_type", [zmq.REQ, zmq.DEALER], ids=["REQ", "DEALER"])
def test_req_and_dealer_clients(broker, hotel, conn, socket_type):
    b = broker(hotel, [BOOKINGS])
    q(conn, "INSERT INTO bookings (id, guest) SELECT g, 'g' || g FROM generate_series(1, 25) g")
    ping = request(b.service, {"op": "ping"}, socket_type=socket_type)[0]
    assert isinstance(ping["epoch"], str) and isinstance(ping["seq"], int)
    assert isinstance(ping["ts"], int)
    frames = request(b.service, {"op": "snapshot", "tables": [BOOKINGS]}, socket_type=socket_type)
    head = frames[0]
    assert head["epoch"] == ping["epoch"] and head["tables"] == [BOOKINGS] and head["rows"] == 25
    items = [item for frame in frames[1:] for item in frame]
    assert sorted(int(i["key"]) for i in items) == list(range(1, 26))
    assert all(i["table"] == BOOKINGS and i["row"]["guest"] == "g" + i["key"] for i in items)
    stats = request(b.service, {"op": "stats"}, socket_type=socket_type)[0]
    assert stats["epoch"] == ping["epoch"] and stats["snapshots"] >= 1
    b.stop()


def test_since_returns_missed_events(broker, hotel, conn):
    b = broker(hotel, [BOOKINGS])
    sub = Subscriber(b.pub, [f"{BOOKINGS}/"])
    sub.wait_heartbeat()
    start = b.ping()
    live = []
    for sql in ("INSERT INTO bookings (id, guest) VALUES (1, 'a')",
                "UPDATE bookings SET guest = 'b' WHERE id = 1",
                "INSERT INTO bookings (id, guest) VALUES (2, 'c')"):
        q(conn, sql)  # one at a time: changes the broker reads together coalesce
        live += [e for _, e in sub.collect_until(lambda m: len(m) >= 1)]
    assert [e["op"] for e in live] == ["insert", "update", "insert"]
    frames = request(b.service, {"op": "since", "epoch": start["epoch"], "seq": start["seq"]})
    assert frames[0]["epoch"] == start["epoch"] and frames[0]["seq"] == live[-1]["seq"]
    assert frames[1:] == live  # the exact PUB bodies, in seq order
    one = request(b.service, {"op": "since", "epoch": start["epoch"], "seq": live[0]["seq"]})
    assert one[1:] == live[1:]
    stale = request(b.service, {"op": "since", "epoch": "not-this-run", "seq": 0})
    assert stale[0]["error"] == "resync"
    sub.close()
    b.stop()


def test_heartbeats_and_ping_announce_period_and_protocol(broker, hotel):
    b = broker(hotel, [BOOKINGS], heartbeat_ms=200)
    sub = Subscriber(b.pub, [])
    hb = sub.wait_heartbeat()
    assert hb["hb_ms"] == 200 and hb["proto"] == 1
    ping = b.ping()
    assert ping["hb_ms"] == 200 and ping["proto"] == 1
    # A new period is announced at once, not one new period later: a client that still
    # expects 200 ms must not go without a heartbeat for 1000 ms.
    with open(b.config) as f:
        text = f.read()
    with open(b.config, "w") as f:
        f.write(text.replace("heartbeat_ms = 200", "heartbeat_ms = 1000"))
    b.proc.send_signal(signal.SIGHUP)
    last_old = time.monotonic()
    deadline = last_old + 10
    while True:
        assert time.monotonic() < deadline, "no heartbeat announcing 1000 ms"
        topic, body = sub.recv(deadline - time.monotonic())
        if topic != "@hb":
            continue
        if body["hb_ms"] == 200:
            last_old = time.monotonic()
            continue
        # Re-armed for one new period the gap would be >= 1 s; at once, under 200 ms + the reload.
        assert body["hb_ms"] == 1000 and time.monotonic() - last_old < 0.8
        break
    assert b.ping()["hb_ms"] == 1000
    sub.close()
    b.stop()


def test_snapshot_tseq_future_since_and_presence_default(broker, hotel, conn):
    b = broker(hotel, [BOOKINGS])
    sub = Subscriber(b.pub, [f"{BOOKINGS}/"])
    sub.wait_heartbeat()
    live = []
    for i in range(3):
        q(conn, f"INSERT INTO bookings (id, guest) VALUES ({i + 1}, 'g')")
        live += [e for _, e in sub.collect_until(lambda m: len(m) >= 1)]
    # The header gives each table's tseq at the snapshot's seq: tracking starts from it.
    head = request(b.service, {"op": "snapshot", "tables": [BOOKINGS]})[0]
    assert head["seq"] == live[-1]["seq"] and head["tseq"] == {BOOKINGS: live[-1]["tseq"]}
    # A row's version is a lower bound of the entity's: never above what events said.
    published = {e["key"]: e["version"] for e in live}
    rows = [i for f in request(b.service, {"op": "snapshot"})[1:] for i in f]
    assert sorted(i["key"] for i in rows) == sorted(published)
    assert all(i["version"] <= published[i["key"]] for i in rows)
    # since is exclusive: at the last seq, nothing to replay; beyond it, "future".
    at_last = request(b.service, {"op": "since", "epoch": head["epoch"], "seq": head["seq"]})
    assert at_last == [{"epoch": head["epoch"], "seq": head["seq"]}]
    ahead = request(b.service, {"op": "since", "epoch": head["epoch"], "seq": head["seq"] + 5})
    assert ahead[0]["error"] == "future"
    # presence without ttl_ms: the documented default keeps the entry.
    ok = request(b.service, {"op": "presence", "client": "c", "table": BOOKINGS, "key": "1",
                             "state": "editing"})
    assert ok == [{"ok": True}]
    # editors reads who edits an entity now (a late joiner has seen no presence message).
    now = request(b.service, {"op": "editors", "table": BOOKINGS, "key": "1"})[0]
    assert [(e["client"], e["state"]) for e in now["editors"]] == [("c", "editing")]
    assert now["key"] == "1" and now["epoch"] == head["epoch"]
    request(b.service, {"op": "presence", "client": "c", "table": BOOKINGS, "key": "1",
                        "state": "left"})
    assert request(b.service, {"op": "editors", "table": BOOKINGS, "key": "1"})[0]["editors"] == []
    sub.close()
    b.stop()
