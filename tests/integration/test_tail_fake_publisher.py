"""sync-tail (libsyncclient, ASan+UBSan build) against a fake broker: a Python PUB that
sends malformed bodies among valid events (PUB bodies are untrusted for a client too:
anything can publish on the events endpoint) and a fake service answering snapshot and
since from what it published. sync-tail must not crash, must say on stderr that it dropped
each bad message, and must still print every valid event that follows, exactly once."""
import json
import os
import queue
import random
import subprocess
import threading

import msgpack
import pytest
import zmq

from conftest import BUILD_DIR, SANITIZER_MARKS, free_port

EPOCH = "fa4efa4efa4efa4e"
TABLE = "public.bookings"
HB_MS = 200  # the client's offline limit and resync back-off follow it


def pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


class FakeBroker:
    """XPUB + ROUTER on free ports. Heartbeats every HB_MS from a thread; every send holds
    the lock (one socket, two threads)."""

    def __init__(self):
        self.ctx = zmq.Context()
        self.pub = self.ctx.socket(zmq.XPUB)
        self.pub_ep = f"tcp://127.0.0.1:{free_port()}"
        self.pub.bind(self.pub_ep)
        self.router = self.ctx.socket(zmq.ROUTER)
        self.service_ep = f"tcp://127.0.0.1:{free_port()}"
        self.router.bind(self.service_ep)
        self.lock = threading.Lock()
        self.seq = 0
        self.published = []  # (seq, body) of the valid events, for since
        self.snapshots = queue.Queue()  # the seq of each snapshot answered
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._beat), threading.Thread(target=self._serve)]

    def start(self):
        for t in self.threads:
            t.start()

    def close(self):
        self.stop.set()
        for t in self.threads:
            t.join()
        self.ctx.destroy(linger=0)

    def wait_subscribed(self, timeout=10):
        """The XPUB hands over each subscription: sync-tail subscribes to @hb last."""
        while self.pub.poll(timeout * 1000):
            if self.pub.recv() == b"\x01@hb":
                return
        raise TimeoutError("sync-tail did not subscribe")

    def send(self, *frames):
        with self.lock:
            self.pub.send_multipart(list(frames))

    def event(self, name, /, **override):
        """A valid insert of key name at the next seq; any field overridden."""
        body = {"seq": self.seq + 1, "tseq": self.seq + 1, "epoch": EPOCH, "table": TABLE,
                "key": name, "op": "insert", "version": 1, "origin": None,
                "ts": 1764600000000, "row": {"id": name, "guest": f"guest {name}"}, "n": 1}
        body.update(override)
        return body

    def send_event(self, key):
        with self.lock:
            self.seq += 1
            body = pack(self.event(key, seq=self.seq, tseq=self.seq))
            self.published.append((self.seq, body))
            self.pub.send_multipart([f"{TABLE}/{key}".encode(), body])

    def _beat(self):
        while not self.stop.wait(HB_MS / 1000):
            with self.lock:
                hb = {"seq": self.seq, "epoch": EPOCH, "tseq": {TABLE: self.seq}, "hb_ms": HB_MS,
                      "proto": 1, "ts": 0}
                self.pub.send_multipart([b"@hb", pack(hb)])

    def _serve(self):
        while not self.stop.is_set():
            if not self.router.poll(50):
                continue
            frames = self.router.recv_multipart()
            req = msgpack.unpackb(frames[-1], raw=False)
            with self.lock:
                seq = self.seq
                missed = [body for s, body in self.published if s > req.get("seq", seq)]
            if req["op"] == "snapshot":
                reply = [pack({"epoch": EPOCH, "seq": seq, "tables": [TABLE], "rows": 0,
                               "tseq": {TABLE: seq}})]
            elif req["op"] == "since" and req.get("epoch") == EPOCH and req["seq"] <= seq:
                reply = [pack({"epoch": EPOCH, "seq": seq})] + missed
            else:
                reply = [pack({"error": "resync", "message": "take a snapshot"})]
            self.router.send_multipart(frames[:-1] + reply)
            if req["op"] == "snapshot":
                self.snapshots.put(seq)


class Lines:
    """A pipe read line by line on a thread."""

    def __init__(self, pipe):
        self.q = queue.Queue()
        self.all = []
        self.thread = threading.Thread(target=self._read, args=(pipe,))
        self.thread.start()

    def _read(self, pipe):
        for line in pipe:
            self.q.put(line)
        self.q.put(None)

    def next(self, timeout=10):
        line = self.q.get(timeout=timeout)
        assert line is not None, "sync-tail closed the pipe"
        self.all.append(line)
        return line

    def until(self, needle, timeout=10):
        while needle not in self.next(timeout):
            pass

    def drain(self):
        while True:
            try:
                line = self.q.get_nowait()
            except queue.Empty:
                return
            if line is None:
                return
            self.all.append(line)


ANY = {"int": -5, "uint": 7, "float": 1.5, "nil": None, "bool": True, "str": "x",
       "bin": b"\x00\xff", "array": ["1"], "map": {"a": 1}, "ext": msgpack.ExtType(5, b"x")}
# What each field of an insert takes (docs/protocol.md); every other type is malformed.
TAKES = {"seq": {"uint"}, "tseq": {"uint"}, "version": {"uint"}, "epoch": {"str"},
         "table": {"str"}, "key": {"str", "array"}, "op": {"str"}, "origin": {"str", "nil"},
         "ts": {"int", "uint"}, "n": {"uint"}, "row": {"map"}}


def malformed_bodies(fake):
    """(what, body) pairs that a client must drop, each one alone."""
    rng = random.Random(9)
    good = pack(fake.event("x"))
    out = [("random bytes", rng.randbytes(rng.randint(1, 300))) for _ in range(40)]
    out += [("truncated", good[:n]) for n in (1, 2, len(good) // 2, len(good) - 1)]
    out += [("not a map", pack(v)) for k, v in ANY.items() if k != "map"]
    out += [("empty", b"")]
    for field, ok in TAKES.items():
        out += [(f"{field} {kind}", pack(fake.event("x", **{field: v})))
                for kind, v in ANY.items() if kind not in ok]
        if field not in ("origin", "n"):  # optional
            body = fake.event("x")
            del body[field]
            out.append((f"no {field}", pack(body)))
    out += [("key []", pack(fake.event("x", key=[]))), ("key [1]", pack(fake.event("x", key=[1]))),
            ("op dance", pack(fake.event("x", op="dance"))),
            ("str with NUL", pack(fake.event("x", table="public.book\x00ings")))]
    # Declared lengths far beyond the bytes sent, alone and as a field's value.
    head = b"\x8c" + good[1:]  # the 11 pairs of good and a 12th
    for huge in (b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff", b"\xdb\xff\xff\xff\xff",
                 b"\xc6\xff\xff\xff\xff"):
        out += [("huge header", huge), ("huge field", head + pack("row") + huge + b"\x00" * 16)]
    deep = b"\x91" * 100_000 + b"\xc0"
    out += [("deep row", head + pack("extra") + deep),
            ("deep body", deep), ("deep maps", b"\x81\x00" * 100_000 + b"\xc0")]
    return out


@pytest.fixture
def fake():
    f = FakeBroker()
    f.start()
    yield f
    f.close()


def test_sync_tail_survives_a_hostile_publisher(fake):
    bad = malformed_bodies(fake)
    tail = subprocess.Popen(
        [os.path.join(BUILD_DIR, "clients", "sync-tail"), "--pub", fake.pub_ep, "--service",
         fake.service_ep, "--count", str(len(bad) + 5), "--timeout-ms", "120000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = Lines(tail.stdout), Lines(tail.stderr)
    printed = []

    def valid(key):
        fake.send_event(key)
        line = json.loads(out.next())
        assert line["key"] == key and line["seq"] == fake.seq, line
        printed.append(key)

    try:
        fake.wait_subscribed()
        assert fake.snapshots.get(timeout=10) == 0
        err.until("online")
        valid("first")
        for i, (what, body) in enumerate(bad):
            fake.send(f"{TABLE}/x".encode(), body)
            err.until(f"dropped a malformed message ({len(body)} bytes)")
            valid(f"after {i} {what}")
        # Not [topic][body]: one frame, three frames.
        fake.send(pack(fake.event("y")))
        err.until("dropped a message that is not [topic][body]")
        fake.send(b"t", pack(fake.event("y")), b"extra")
        err.until("dropped a message that is not [topic][body]")
        valid("after frames")
        # A seq going backwards (a replay of what we have): not printed again.
        fake.send(f"{TABLE}/old".encode(), pack(fake.event("old", seq=1, tseq=1)))
        valid("after a seq going backwards")
        # An event of another epoch: the client resynchronises (a fresh snapshot) and goes on.
        fake.send(f"{TABLE}/e".encode(), pack(fake.event("e", epoch="another")))
        assert fake.snapshots.get(timeout=10) == fake.seq
        valid("after a foreign epoch")
        # A seq far ahead: since shows the broker never published it; snapshot, back-off.
        fake.send(f"{TABLE}/far".encode(), pack(fake.event("far", seq=fake.seq + 1000)))
        err.until("came from the stream but the broker's last is")
        assert fake.snapshots.get(timeout=20) == fake.seq
        valid("after a seq from nowhere")
        assert tail.wait(30) == 0
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.wait()
        out.thread.join(5)
        err.thread.join(5)
    out.drain()
    err.drain()
    stderr = "".join(err.all)
    assert not any(mark in stderr for mark in SANITIZER_MARKS), stderr[-6000:]
    assert "".join(out.all).count("\n") == len(printed) == len(bad) + 5, (printed, out.all[-3:])
