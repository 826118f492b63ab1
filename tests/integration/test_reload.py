"""SIGHUP re-reads transport_zmq's clients_file (docs/security.md, "Reloading the clients
file"): unchanged or only added clients keep every connection; a removed key is cut off (the
sockets are bound again on the same ports) while the others reconnect on their own and carry
on in the same epoch, `since` covering the moment; a file that does not load keeps the running
list and names the line."""
import os
import signal
import sys
import time

import pytest
import zmq

import sbpeer
from conftest import BUILD_DIR, wait_until
from test_curve import Setup, dealer, is_heartbeat, write_key

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "faults"))
from faultkit import FaultClient  # noqa: E402

TABLES = ["public.bookings", "public.stays"]


class Desks(Setup):
    """desk-a and desk-b (every table) in the clients file; desk-c's keys, not yet in it."""

    def __init__(self, tmp_path):
        super().__init__(tmp_path)
        self.desks = {"desk-a": self.known, "desk-b": self.keys(*zmq.curve_keypair()),
                      "desk-c": self.keys(*zmq.curve_keypair())}
        self.write("desk-a", "desk-b")

    def write(self, *names, extra=""):
        text = "".join(f"[{n}]\nkey = {self.desks[n]['public'].decode()}\ntables = *\n\n"
                       for n in names)
        self.clients_file.write_text(text + extra)


@pytest.fixture
def desks(tmp_path):
    return Desks(tmp_path)


class Watched:
    """A CURVE SUB of heartbeats with a monitor on its connection."""

    def __init__(self, endpoint, keys):
        self.sub = sbpeer.Subscriber(endpoint, topics=(), curve=keys)
        self.mon = self.sub.sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)

    def heartbeats(self, count, timeout=10.0):
        """The next `count` heartbeat bodies."""
        deadline, got = time.monotonic() + timeout, []
        while len(got) < count:
            topic, body = self.sub.recv(max(deadline - time.monotonic(), 0.001))
            if is_heartbeat(topic):
                got.append(body)
        return got

    def heartbeat_where(self, pred, timeout=30.0):
        """The first heartbeat body for which pred holds."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:  # also while other messages keep coming
                raise TimeoutError(f"no matching heartbeat within {timeout}s")
            topic, body = self.sub.recv(left)
            if is_heartbeat(topic) and pred(body):
                return body

    def disconnected(self, timeout=0):
        return bool(self.mon.poll(int(timeout * 1000)))

    def close(self):
        self.sub.sock.disable_monitor()
        self.mon.close()
        self.sub.close()


def reload(b, line, timeout=20):
    """SIGHUP the broker and wait for `line` in its log (after what it logged before)."""
    before = len(b.log)
    b.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: line in b.log[before:], timeout, f"the broker to log '{line}'")
    return b.log[before:]


def start(broker, hotel, desks):
    b = broker(hotel, TABLES, extra=desks.options(), curve=desks.known)
    watched = {n: Watched(b.pub, desks.desks[n]) for n in ("desk-a", "desk-b")}
    for w in watched.values():
        w.heartbeats(1)
    return b, watched


@pytest.mark.parametrize("change", ["unchanged", "added"])
def test_unchanged_or_added_keeps_every_connection(broker, hotel, desks, change):
    b, watched = start(broker, hotel, desks)
    try:
        if change == "added":
            desks.write("desk-a", "desk-b", "desk-c")
        with pytest.raises(TimeoutError):  # desk-c is not allowed yet
            sbpeer.request(b.service, {"op": "ping"}, timeout=1, curve=desks.desks["desk-c"])
        log = reload(b, "reloaded: ")
        if change == "added":
            assert f"clients_file {desks.clients_file} reloaded: 3 clients, 1 added; connections kept" in log, log
            assert sbpeer.request(b.service, {"op": "ping"},
                                  curve=desks.desks["desk-c"])[0]["epoch"] == b.hello["epoch"]
        else:
            assert f"clients_file {desks.clients_file} reloaded: 2 clients, 0 added (unchanged)" in log, log
        for w in watched.values():
            w.heartbeats(3)
            assert not w.disconnected(), "a connection was dropped by a reload that needs none"
        assert "re-bind" not in b.log
    finally:
        for w in watched.values():
            w.close()


def test_removed_key_is_cut_off_and_the_others_carry_on(broker, hotel, conn, desks, tmp_path):
    b, watched = start(broker, hotel, desks)
    a, cut = watched["desk-a"], watched["desk-b"]
    b_req = dealer(b.service, desks.desks["desk-b"])
    # desk-a also as a libsyncclient client (its key files as sync-keygen writes them).
    key = write_key(tmp_path / "desk-a.key", desks.known["secret"], True)
    lib = FaultClient(os.path.join(BUILD_DIR, "tests", "faults", "sb_fault_client"), b,
                      "desk-a", str(tmp_path), keys=(desks.public_file, key))
    try:
        lib.wait_event("online", timeout=60)
        mark = lib.mark()
        with conn.cursor() as cur:
            cur.execute("INSERT INTO public.bookings (id, guest) VALUES (1, 'Ada')")
        before = a.heartbeats(1)[0]
        desks.write("desk-a")
        log = reload(b, "re-bound after")
        assert (f"clients_file {desks.clients_file} reloaded: 1 clients, removed: desk-b: "
                "re-binding both sockets, every client reconnects") in log, log
        # Both sockets listen on the ports they had (the clients connect to those).
        assert f"events (XPUB) listening on {b.pub}" in log and \
            f"service (ROUTER) listening on {b.service}" in log, log
        with conn.cursor() as cur:
            cur.execute("INSERT INTO public.bookings (id, guest) VALUES (2, 'Bo')")

        # desk-a reconnects by itself: heartbeats again, in the same epoch, and `since` from
        # its last heartbeat before the cut covers the gap (no resync, no snapshot).
        assert a.disconnected(10)
        after = a.heartbeats(2)
        assert {h["epoch"] for h in after} == {before["epoch"]} == {b.hello["epoch"]}
        # Once a heartbeat shows both rows' events published (a loaded machine may read the
        # change log after the reconnect), `since` must hold the second one.
        a.heartbeat_where(lambda h: h["tseq"].get("public.bookings", 0) >= 2)
        frames = sbpeer.request(b.service, {"op": "since", "epoch": before["epoch"],
                                            "seq": before["seq"]}, curve=desks.known)
        assert "error" not in frames[0], frames
        guests = [f.get("row", {}).get("guest") for f in frames[1:] if isinstance(f, dict)]
        assert "Bo" in guests, frames
        # The library client carries on as well: the row written after the cut arrives, and
        # it took no snapshot for it (its `since`, if it saw a gap, covered the moment).
        wait_until(lambda: lib.get("public.bookings", ["2"]) is not None, 30,
                   "the libsyncclient desk to hold the row written after the re-bind")
        assert not lib.events("reset", mark), lib.describe()

        # desk-b: its connection went, what it had queued is drained, and from then on it
        # gets no heartbeat while desk-a gets several; its request is never answered.
        assert cut.disconnected(10)
        while cut.sub.sock.poll(0):
            cut.sub.sock.recv_multipart()
        try:  # NOBLOCK: a DEALER whose handshake was refused may have no pipe to queue in
            b_req.send_multipart([b"", sbpeer.msgpack.packb({"op": "ping"})], zmq.NOBLOCK)
        except zmq.Again:
            pass
        z85 = desks.desks["desk-b"]["public"].decode()
        for socket in ("events", "service"):
            line = f"{socket} connection from 127.0.0.1 refused: unknown client key {z85}"
            wait_until(lambda: line in b.log, 20, f"the broker to log '{line}'")
        a.heartbeats(5)
        assert not cut.sub.sock.poll(0), "a removed key still gets heartbeats"
        assert not b_req.poll(0), "a removed key's request was answered"
        assert b.ping()["epoch"] == b.hello["epoch"]
    finally:
        problem = lib.stop()
        b_req.close()
        for w in watched.values():
            w.close()
    assert problem is None, problem


def test_bad_clients_file_keeps_the_running_one(broker, hotel, desks):
    b, watched = start(broker, hotel, desks)
    try:
        desks.write("desk-a", extra="[desk-d]\nkey = not-a-key\ntables = *\n")
        log = reload(b, "reload failed")
        assert f"{desks.clients_file}:6: 'not-a-key' is not a CURVE public key" in log, log
        assert "clients_file not reloaded, the 2 clients loaded before stay allowed" in log, log
        assert "[transport.zmq] reload failed: configuration error; running state kept" in log, log
        for name in ("desk-a", "desk-b"):
            assert sbpeer.request(b.service, {"op": "ping"}, curve=desks.desks[name])[0]
        for w in watched.values():
            w.heartbeats(2)
            assert not w.disconnected()
        assert "re-bind" not in b.log
    finally:
        for w in watched.values():
            w.close()
