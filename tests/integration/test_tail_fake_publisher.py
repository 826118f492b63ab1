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
    # Presence and heartbeat bodies of the wrong shape.
    presence = {"seq": 1, "epoch": EPOCH, "table": TABLE, "key": "1",
                "editors": [{"client": "c", "state": "editing", "since": 1}]}
    for what, override in (("editors str", {"editors": "c"}), ("no key", {"key": None}),
                           ("editor client int", {"editors": [{"client": 1}]}),
                           ("editor since str", {"editors": [dict(presence["editors"][0],
                                                                  since="now")]})):
        out.append((f"presence {what}", pack(dict(presence, **override))))
    hb = {"seq": 1, "epoch": EPOCH, "tseq": {TABLE: 1}}
    for what, override in (("seq str", {"seq": "1"}), ("tseq array", {"tseq": [1]}),
                           ("no tseq", {"tseq": None}), ("epoch int", {"epoch": 5})):
        out.append((f"heartbeat {what}", pack(dict(hb, **override))))
    deep = b"\x91" * 100_000 + b"\xc0"
    out += [("deep row", head + pack("extra") + deep),
            ("deep body", deep), ("deep maps", b"\x81\x00" * 100_000 + b"\xc0")]
    return out


def reason(body):
    """What the client says of a body it drops (its nesting is 3 levels or 10^5)."""
    try:
        msgpack.unpackb(body, raw=True, strict_map_key=False)
        return "not an event, presence or heartbeat"
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        return "not one valid msgpack object"


@pytest.fixture
def fake():
    f = FakeBroker()
    f.start()
    yield f
    f.close()


class Tail:
    """sync-tail on the fake broker (--count events, then it exits 0), its stdout and stderr
    read line by line."""

    def __init__(self, fake, count, *args):
        self.fake = fake
        self.count = count
        self.proc = subprocess.Popen(
            [os.path.join(BUILD_DIR, "clients", "sync-tail"), "--pub", fake.pub_ep, "--service",
             fake.service_ep, "--count", str(count), "--timeout-ms", "120000", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out, self.err = Lines(self.proc.stdout), Lines(self.proc.stderr)
        self.printed = []

    def online(self):
        self.fake.wait_subscribed()
        assert self.fake.snapshots.get(timeout=10) == 0
        self.err.until("online")

    def valid(self, key):
        """Publish a valid event: sync-tail prints it next."""
        self.fake.send_event(key)
        line = json.loads(self.out.next())
        assert line["key"] == key and line["seq"] == self.fake.seq, line
        self.printed.append(key)

    def each_malformed(self):
        """Every malformed body, each followed by a valid event."""
        for i, (what, body) in enumerate(malformed_bodies(self.fake)):
            self.fake.send(f"{TABLE}/x".encode(), body)
            self.err.until(f"dropped a malformed message ({len(body)} bytes): {reason(body)}")
            self.valid(f"after {i} {what}")
        topic = f"{TABLE}/y".encode()  # not [topic][body]: one frame, three
        self.fake.send(topic)
        self.err.until("dropped a message that is not [topic][body]")
        self.fake.send(topic, pack(self.fake.event("y")), b"extra")
        self.err.until("dropped a message that is not [topic][body]")
        self.valid("after frames")

    def resynced(self, timeout=20):
        """The client took a fresh snapshot (after its back-off) at the fake's seq."""
        assert self.fake.snapshots.get(timeout=timeout) == self.fake.seq

    def close(self):
        """Wait for the exit (0 after --count events), then check what it printed."""
        try:
            assert self.proc.wait(30) == 0
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.out.thread.join(5)
            self.err.thread.join(5)
        self.out.drain()
        self.err.drain()
        stderr = "".join(self.err.all)
        assert not any(mark in stderr for mark in SANITIZER_MARKS), stderr[-6000:]
        assert len(self.out.all) == len(self.printed) == self.count, self.out.all[-3:]


def test_sync_tail_survives_a_hostile_publisher(fake):
    tail = Tail(fake, len(malformed_bodies(fake)) + 5)
    try:
        tail.online()
        tail.valid("first")
        tail.each_malformed()
        # A seq going backwards (a replay of what we have): not printed again.
        fake.send(f"{TABLE}/old".encode(), pack(fake.event("old", seq=1, tseq=1)))
        tail.valid("after a seq going backwards")
        # An event of another epoch: the client resynchronises (a fresh snapshot) and goes on.
        fake.send(f"{TABLE}/e".encode(), pack(fake.event("e", epoch="another")))
        tail.resynced()
        tail.valid("after a foreign epoch")
        # A seq far ahead: since shows the broker never published it; snapshot, back-off.
        fake.send(f"{TABLE}/far".encode(), pack(fake.event("far", seq=fake.seq + 1000)))
        tail.err.until("came from the stream but the broker's last is")
        tail.resynced()
        tail.valid("after a seq from nowhere")
    finally:
        tail.close()


def test_sync_tail_following_one_table(fake):
    """--table: positions per table (tseq); a tseq moving further than seq is a lie."""
    tail = Tail(fake, len(malformed_bodies(fake)) + 4, "--table", TABLE)
    try:
        tail.online()
        tail.valid("first")
        tail.each_malformed()
        other = fake.event("o", table="public.stays")
        fake.send(b"public.stays/o", pack(other))  # a table not followed: ignored
        tail.valid("after another table")
        fake.send(f"{TABLE}/lie".encode(), pack(fake.event("lie", tseq=fake.seq + 5)))
        tail.err.until("contradicts the stream: resynchronising")
        tail.resynced()
        tail.valid("after a tseq lie")
    finally:
        tail.close()
