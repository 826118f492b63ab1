"""Table rights with CURVE (issue 10; docs/security.md "Table rights", docs/protocol.md
"Subscriptions"): a desk allowed public.rooms only gets nothing of public.bookings, whatever
it subscribes to and asks; presence under another desk's name is refused. The peers are
pyzmq CURVE clients; every byte desk-a receives is kept and scanned for "bookings"."""
import os
import time

import msgpack
import pytest
import zmq

from conftest import wait_until
from sbpeer import CTX, unpack
from sbwriter import q

BOOKINGS = "public.bookings"
ROOMS = "public.rooms"


def write_key(path, key, secret):
    with open(path, "w") as f:
        f.write("# written by test_rights.py\n" + key.decode() + "\n")
    os.chmod(path, 0o600 if secret else 0o644)


class Desk:
    """One client of the clients file; keeps every frame it receives in `received`."""

    def __init__(self, name, tables, admin=False):
        self.name, self.tables, self.admin = name, tables, admin
        self.public, self.secret = zmq.curve_keypair()
        self.received = []
        self.broker = None

    def section(self):
        return (f"[{self.name}]\nkey = {self.public.decode()}\ntables = {self.tables}\n"
                f"admin = {'on' if self.admin else 'off'}\n\n")

    def socket(self, kind, endpoint):
        s = CTX.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        s.curve_secretkey = self.secret
        s.curve_publickey = self.public
        s.curve_serverkey = self.broker.server_public
        s.connect(endpoint)
        return s

    def request(self, body, timeout=5.0):
        s = self.socket(zmq.REQ, self.broker.service)
        try:
            s.send(msgpack.packb(body, use_bin_type=True))
            assert s.poll(int(timeout * 1000)), f"no reply to {body!r} within {timeout}s"
            frames = s.recv_multipart()
        finally:
            s.close()
        self.received.extend(frames)
        return [unpack(f) for f in frames]

    def subscribe(self, topics):
        """A SUB socket: topics, then @hb last."""
        s = self.socket(zmq.SUB, self.broker.pub)
        s.setsockopt(zmq.RCVHWM, 0)
        for topic in topics:
            s.setsockopt(zmq.SUBSCRIBE, topic.encode())
        s.setsockopt(zmq.SUBSCRIBE, b"@hb")
        return s

    def recv(self, sock, timeout):
        """(topic, body) or None."""
        if not sock.poll(int(timeout * 1000)):
            return None
        frames = sock.recv_multipart()
        self.received.extend(frames)
        assert len(frames) == 2, f"a message of {len(frames)} frames"
        return frames[0].decode(), unpack(frames[1])

    def until_heartbeat(self, sock, seq=0, timeout=10.0):
        """Messages before the first heartbeat whose seq is at least seq (that heartbeat
        last): a PUB stream is ordered, so anything published before it has arrived."""
        got, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = self.recv(sock, 0.2)
            if m is None:
                continue
            got.append(m)
            if m[0].startswith("@hb") and m[1]["seq"] >= seq:
                return got
        raise AssertionError(f"{self.name}: no heartbeat at seq >= {seq}; received {got!r}")


@pytest.fixture
def rooms(hotel, conn):
    q(conn, "CREATE TABLE public.rooms (no int PRIMARY KEY, state text);"
            "SELECT syncbroker.track('public.rooms')")
    return hotel


@pytest.fixture
def desks(broker, rooms, tmp_path):
    """A CURVE broker on bookings and rooms; desk-a may read rooms, ops every table (admin)."""
    d = {"desk-a": Desk("desk-a", ROOMS), "ops": Desk("ops", "*", admin=True)}
    public, secret = zmq.curve_keypair()
    write_key(tmp_path / "broker.key", secret, True)
    write_key(tmp_path / "broker.pub", public, False)
    with open(tmp_path / "clients.ini", "w") as f:
        f.write("".join(desk.section() for desk in d.values()))
    ops = d["ops"]
    b = broker(rooms, [BOOKINGS, ROOMS], extra={"transport.zmq": {
        "curve_secret_key_file": tmp_path / "broker.key",
        "curve_public_key_file": tmp_path / "broker.pub",
        "clients_file": tmp_path / "clients.ini"}},
        curve={"server": public, "public": ops.public, "secret": ops.secret})
    b.server_public = public
    for desk in d.values():
        desk.broker = b
    return d


def data(msgs):
    return [m for m in msgs if not m[0].startswith("@hb")]


def test_restricted_desk_gets_nothing_of_bookings(desks, conn):
    a, ops = desks["desk-a"], desks["ops"]
    subs = {topic: a.subscribe([topic]) for topic in (f"{BOOKINGS}/", ROOMS, "")}
    watch = ops.subscribe([""])
    for sock in list(subs.values()) + [watch]:
        sock_owner = ops if sock is watch else a
        hb = sock_owner.until_heartbeat(sock)[-1]
        assert hb[0] == f"@hb/{sock_owner.name}/"
    assert set(hb[1]["tseq"]) == {BOOKINGS, ROOMS}  # ops: every table
    hb_a = a.until_heartbeat(subs[""])[-1]
    assert set(hb_a[1]["tseq"]) == {ROOMS}

    q(conn, "INSERT INTO public.bookings (id, guest) VALUES (1, 'Ms Secret')")
    q(conn, "INSERT INTO public.rooms (no, state) VALUES (101, 'free')")
    assert ops.request({"op": "presence", "client": "ops", "table": BOOKINGS, "key": "1",
                        "state": "editing"})[0] == {"ok": True}
    assert a.request({"op": "presence", "client": "desk-a", "table": ROOMS, "key": "101",
                      "state": "editing"})[0] == {"ok": True}
    # ops sees all four; the last seq it saw bounds what desk-a's sockets must have seen.
    seen, deadline = [], time.monotonic() + 20
    while len(data(seen)) < 4 and time.monotonic() < deadline:
        m = ops.recv(watch, 0.2)
        seen += [m] if m else []
    assert sorted(t.split("/")[0] for t, _ in data(seen)) == [
        "@presence", "@presence", BOOKINGS, ROOMS], seen
    last = max(body["seq"] for _, body in data(seen))

    got = {topic: data(a.until_heartbeat(sock, last)) for topic, sock in subs.items()}
    assert got[f"{BOOKINGS}/"] == []
    assert [t for t, _ in got[ROOMS]] == [f"{ROOMS}/101"]
    assert sorted(t for t, _ in got[""]) == [f"@presence/{ROOMS}/101", f"{ROOMS}/101"]

    # Requests: its tables only, forbidden beyond them whether the table exists or not.
    head, *frames = a.request({"op": "snapshot"})
    assert head["tables"] == [ROOMS] and set(head["tseq"]) == {ROOMS} and head["rows"] == 1
    assert [r["table"] for frame in frames for r in frame] == [ROOMS]
    for tables in ([BOOKINGS], [ROOMS, BOOKINGS], ["public.nope"]):
        assert a.request({"op": "snapshot", "tables": tables})[0]["error"] == "forbidden"
    head, *replay = a.request({"op": "since", "epoch": head["epoch"], "seq": 0})
    assert "error" not in head and "more" not in head
    assert sorted(m["table"] for m in replay) == [ROOMS, ROOMS]  # its event and presence
    assert a.request({"op": "editors", "table": BOOKINGS, "key": "1"})[0]["error"] == "forbidden"
    assert a.request({"op": "editors", "table": ROOMS, "key": "101"})[0]["editors"][0][
        "client"] == "desk-a"
    # Presence under another desk's name, or on a table it may not read: refused.
    for client, table in (("ops", ROOMS), ("desk-a", BOOKINGS)):
        reply = a.request({"op": "presence", "client": client, "table": table, "key": "1",
                           "state": "editing"})[0]
        assert reply["error"] == "forbidden", reply
    assert a.request({"op": "stats"})[0]["error"] == "forbidden"
    assert "error" not in a.request({"op": "ping"})[0]
    stats = ops.request({"op": "stats"})[0]
    assert stats["subscribers"] == 4
    # Confirmed: desk-a 1 (its hb; bookings/ refused) + 2 (rooms/, its hb) + 3 (its hb,
    # rooms/ and @presence/rooms/ for "", the hb shared with @hb), ops 5 (its hb, 2 x 2).
    assert stats["subscriptions"] == 11, stats

    # Unsubscribing "" withdraws what it stood for; @hb, subscribed too, keeps the heartbeat.
    subs[""].setsockopt(zmq.UNSUBSCRIBE, b"")
    wait_until(lambda: ops.request({"op": "stats"})[0]["subscriptions"] == 9, 10,
               "the unsubscription of '' to withdraw its 2 topics")
    q(conn, "INSERT INTO public.rooms (no, state) VALUES (102, 'free')")
    seen = []
    while not any(t == f"{ROOMS}/102" for t, _ in seen):
        m = ops.recv(watch, 10)
        assert m, "ops did not see rooms/102"
        seen.append(m)
    last = seen[-1][1]["seq"]
    assert data(a.until_heartbeat(subs[""], last)) == []
    assert [t for t, _ in data(a.until_heartbeat(subs[ROOMS], last))] == [f"{ROOMS}/102"]

    for frame in a.received:
        assert b"bookings" not in frame, frame
    for sock in list(subs.values()) + [watch]:
        sock.close()
