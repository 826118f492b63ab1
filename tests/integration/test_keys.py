"""sync-keygen and the client side of CURVE (docs/security.md, "Key files"): the files it
writes (modes, format, never overwritten), and that the pair it writes works: the tools
(libsyncclient) and the Python peer connect with --server-key/--key to a fake broker whose
XPUB and ROUTER are CURVE servers. The fake runs a ZAP handler that admits every key and
records which key each handshake presented, so a test sees that the SUB, the DEALER and a
DEALER reopened after a timeout all authenticate with the client's public key."""
import json
import os
import stat
import subprocess
import threading
import time

import msgpack
import pytest
import zmq
from zmq.utils import z85

import sbpeer
from conftest import BUILD_DIR, free_port

TOOLS = os.path.join(BUILD_DIR, "clients")
EPOCH = "c0ffeec0ffeec0ff"
TABLE = "public.rooms"
HB_MS = 100

pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="pyzmq without CURVE")


def tool(name):
    return os.path.join(TOOLS, name)


def keygen(directory, name):
    return subprocess.run([tool("sync-keygen"), "-d", str(directory), name],
                          capture_output=True, text=True, timeout=30)


def pair(directory, name):
    r = keygen(directory, name)
    assert r.returncode == 0, r.stderr
    return directory / f"{name}.pub", directory / f"{name}.key"


def pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


class CurveFake:
    """A broker stand-in: XPUB and ROUTER as CURVE servers with the given secret key, a ZAP
    handler that admits every client and records (mechanism, client public key) per handshake,
    heartbeats every HB_MS, snapshots of one row and, after the first snapshot, one event; it
    ignores the first `skip` requests (a client's retry must reopen its DEALER). One thread
    owns every socket."""

    def __init__(self, secret, skip=0, forbid=False):
        self.ctx = zmq.Context()
        self.zap = self.ctx.socket(zmq.REP)
        self.zap.bind("inproc://zeromq.zap.01")  # before any handshake can ask for it
        self.pub = self.ctx.socket(zmq.XPUB)
        self.router = self.ctx.socket(zmq.ROUTER)
        for sock in (self.pub, self.router):
            sock.curve_server = True
            sock.curve_secretkey = secret
            sock.linger = 0
        self.pub_ep = f"tcp://127.0.0.1:{free_port()}"
        self.service_ep = f"tcp://127.0.0.1:{free_port()}"
        self.pub.bind(self.pub_ep)
        self.router.bind(self.service_ep)
        self.skip = skip
        self.forbid = forbid  # answer every request `forbidden`, as to a key without rights
        self.handshakes = []  # (mechanism, Z85 public key of the client)
        self.requests = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def close(self):
        self.stop.set()
        self.thread.join()
        self.ctx.destroy(linger=0)

    def _run(self):
        poller = zmq.Poller()
        for sock in (self.zap, self.pub, self.router):
            poller.register(sock, zmq.POLLIN)
        next_hb, seq = 0.0, 0
        while not self.stop.is_set():
            now = time.monotonic()
            if now >= next_hb:
                hb = {"seq": seq, "epoch": EPOCH, "tseq": {TABLE: seq}, "hb_ms": HB_MS,
                      "proto": 1, "ts": 0}
                self.pub.send_multipart([b"@hb", pack(hb)])
                next_hb = now + HB_MS / 1000
            ready = dict(poller.poll(20))
            if self.zap in ready:
                version, req_id, _domain, _addr, _identity, mechanism, *cred = \
                    self.zap.recv_multipart()
                if mechanism == b"CURVE":
                    self.handshakes.append((mechanism, z85.encode(cred[0])))
                else:
                    self.handshakes.append((mechanism, None))
                self.zap.send_multipart([version, req_id, b"200", b"OK", b"desk", b""])
            if self.pub in ready:
                self.pub.recv()  # a subscription: every one is let in
            if self.router in ready:
                frames = self.router.recv_multipart()
                self.requests += 1
                if self.requests <= self.skip:
                    continue
                req = msgpack.unpackb(frames[-1], raw=False)
                if self.forbid:
                    reply = [pack({"error": "forbidden", "message": "not for this key"})]
                elif req["op"] == "snapshot":
                    reply = [pack({"epoch": EPOCH, "seq": seq, "tables": [TABLE], "rows": 1,
                                   "tseq": {TABLE: seq}}),
                             pack([{"table": TABLE, "key": "3", "version": 2,
                                    "row": {"id": 3, "name": "double"}}])]
                else:
                    reply = [pack({"error": "resync", "message": "take a snapshot"})]
                self.router.send_multipart(frames[:-1] + reply)
                if req["op"] == "snapshot" and seq == 0 and not self.forbid:
                    # One change after the first snapshot: a client gets it from the stream.
                    seq = 1
                    event = {"seq": 1, "tseq": 1, "epoch": EPOCH, "table": TABLE, "key": "7",
                             "op": "insert", "version": 1, "origin": None,
                             "ts": 1764600000000, "row": {"id": 7, "name": "suite"}, "n": 1}
                    self.pub.send_multipart([f"{TABLE}/7".encode(), pack(event)])

    def client_keys(self):
        return [key for mech, key in self.handshakes if mech == b"CURVE"]


@pytest.fixture
def keys(tmp_path):
    broker_pub, broker_key = pair(tmp_path, "broker")
    desk_pub, desk_key = pair(tmp_path, "desk-a")
    return {"broker_pub": broker_pub, "broker_secret": sbpeer.read_key_file(broker_key),
            "desk_pub": desk_pub, "desk_key": desk_key,
            "desk_public": sbpeer.read_key_file(desk_pub)}


def test_keygen_writes_private_secret_and_public_key(tmp_path):
    r = keygen(tmp_path, "desk-a")
    assert r.returncode == 0, r.stderr
    key, pub = tmp_path / "desk-a.key", tmp_path / "desk-a.pub"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(pub.stat().st_mode) == 0o644
    key_lines, pub_lines = key.read_text().splitlines(), pub.read_text().splitlines()
    assert key_lines[0].startswith("# Syncbroker CURVE secret key of desk-a")
    assert pub_lines[0] == "# Syncbroker CURVE public key of desk-a"
    assert len(key_lines) == len(pub_lines) == 2
    secret, public = key_lines[1].encode(), pub_lines[1].encode()
    assert zmq.curve_public(secret) == public  # one pair
    # What it prints: the public key and a clients_file section ready to paste.
    assert f"# public key: {public.decode()}\n" in r.stdout
    assert r.stdout.endswith(f"[desk-a]\nkey = {public.decode()}\ntables = *\n"), r.stdout
    assert secret.decode() not in r.stdout
    # Another run, another pair.
    other = pair(tmp_path, "desk-b")[0]
    assert sbpeer.read_key_file(other) != public


def test_keygen_never_overwrites(tmp_path):
    pub, key = pair(tmp_path, "desk-a")
    before = (pub.read_bytes(), key.read_bytes())
    r = keygen(tmp_path, "desk-a")
    assert r.returncode == 1
    assert f"{pub}: exists (not overwritten)" in r.stderr, r.stderr
    assert (pub.read_bytes(), key.read_bytes()) == before
    # A .key alone (the .pub deleted): still not replaced, and no new .pub beside it.
    pub.unlink()
    r = keygen(tmp_path, "desk-a")
    assert r.returncode == 1
    assert f"{key}: File exists: not overwritten" in r.stderr, r.stderr
    assert key.read_bytes() == before[1] and not pub.exists()
    # A .pub alone: refused before a .key is written.
    (tmp_path / "desk-c.pub").write_text("x\n")
    r = keygen(tmp_path, "desk-c")
    assert r.returncode == 1 and not (tmp_path / "desk-c.key").exists(), r.stderr


def test_keygen_errors(tmp_path):
    r = keygen(tmp_path / "nope", "desk-a")
    assert r.returncode == 1
    assert f"{tmp_path / 'nope'}: No such file or directory" in r.stderr, r.stderr
    for bad in ("../desk", "a/b", "..", "x" * 65, "desk a"):
        r = keygen(tmp_path, bad)
        assert r.returncode == 1 and "not a valid name" in r.stderr, (bad, r.stderr)
    r = subprocess.run([tool("sync-keygen")], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "missing NAME" in r.stderr
    assert os.listdir(tmp_path) == []


def test_tail_over_curve_sub_and_dealer(keys):
    fake = CurveFake(keys["broker_secret"])
    try:
        r = subprocess.run([tool("sync-tail"), "--pub", fake.pub_ep, "--service",
                            fake.service_ep, "--server-key", str(keys["broker_pub"]), "--key",
                            str(keys["desk_key"]), "--count", "1", "--timeout-ms", "20000"],
                           capture_output=True, text=True, timeout=60)
    finally:
        fake.close()
    assert r.returncode == 0, r.stderr
    assert '"key":"7"' in r.stdout and '"name":"suite"' in r.stdout, r.stdout
    # Both sockets authenticated with the desk's public key (derived from its secret key).
    assert len(fake.client_keys()) >= 2
    assert set(fake.client_keys()) == {keys["desk_public"]}
    assert all(mech == b"CURVE" for mech, _ in fake.handshakes)


def test_snapshot_retry_reopens_a_curve_dealer(keys):
    fake = CurveFake(keys["broker_secret"], skip=1)
    try:
        r = subprocess.run([tool("sync-snapshot"), "--service", fake.service_ep, "--timeout-ms",
                            "500", "--server-key", str(keys["broker_pub"]), "--key",
                            str(keys["desk_key"])], capture_output=True, text=True, timeout=60)
    finally:
        fake.close()
    assert r.returncode == 0, r.stderr
    assert r.stdout == ('{"table":"public.rooms","key":"3","version":2,'
                        '"row":{"id":3,"name":"double"}}\n')
    assert fake.requests == 2
    # The first DEALER and the one the retry opened: each a CURVE handshake with the desk key.
    assert fake.client_keys() == [keys["desk_public"]] * 2


def test_wrong_server_key_gets_no_answer(keys, tmp_path):
    other_pub, _ = pair(tmp_path, "impostor")
    fake = CurveFake(keys["broker_secret"])
    try:
        r = subprocess.run([tool("sync-snapshot"), "--service", fake.service_ep, "--timeout-ms",
                            "200", "--server-key", str(other_pub), "--key",
                            str(keys["desk_key"])], capture_output=True, text=True, timeout=60)
    finally:
        fake.close()
    assert r.returncode == 1
    assert "or the broker refused this CURVE key" in r.stderr, r.stderr
    assert fake.requests == 0 and fake.client_keys() == []


def test_secret_key_open_to_group_is_refused(keys):
    os.chmod(keys["desk_key"], 0o640)
    for name, args in (("sync-snapshot", ["--service", "tcp://127.0.0.1:1"]),
                       ("sync-tail", ["--pub", "tcp://127.0.0.1:1", "--service",
                                      "tcp://127.0.0.1:2"])):
        r = subprocess.run([tool(name), *args, "--server-key", str(keys["broker_pub"]),
                            "--key", str(keys["desk_key"])],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 1
        assert r.stderr == (f"{tool(name)}: {keys['desk_key']}: a secret key file must be "
                            "private to its owner, but its mode is 0640 (chmod 600 it)\n")
    r = subprocess.run([tool("sync-snapshot"), "--service", "tcp://127.0.0.1:1", "--key",
                        str(keys["desk_key"])], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "--server-key and --key go together" in r.stderr


def test_python_peer_as_curve_client(keys):
    fake = CurveFake(keys["broker_secret"])
    curve = sbpeer.curve_from_files(keys["broker_pub"], keys["desk_key"])
    sub = sbpeer.Subscriber(fake.pub_ep, [f"{TABLE}/"], curve=curve)
    try:
        assert sub.wait_heartbeat()["epoch"] == EPOCH
        frames = sbpeer.request(fake.service_ep, {"op": "snapshot"}, socket_type=zmq.DEALER,
                                curve=curve)
        assert frames[0]["epoch"] == EPOCH and frames[1][0]["key"] == "3"
    finally:
        sub.close()
        fake.close()
    assert set(fake.client_keys()) == {keys["desk_public"]} and len(fake.client_keys()) == 2
    # The Replica follows the algorithm over CURVE: snapshot row 3, then event 7.
    fake = CurveFake(keys["broker_secret"])
    replica = sbpeer.Replica(fake.pub_ep, fake.service_ep, [TABLE], curve=curve)
    try:
        replica.start()
        replica.wait_equal(lambda: {(TABLE, ("3",)): {"id": 3, "name": "double"},
                                    (TABLE, ("7",)): {"id": 7, "name": "suite"}}, timeout=10)
    finally:
        replica.close()
        fake.close()
    assert set(fake.client_keys()) == {keys["desk_public"]}


def test_forbidden_is_permission_denied(keys):
    """The broker's `forbidden` (a table beyond the key's rights) is final for the tools."""
    fake = CurveFake(keys["broker_secret"], forbid=True)
    curve = ["--server-key", str(keys["broker_pub"]), "--key", str(keys["desk_key"])]
    try:
        tail = subprocess.run([tool("sync-tail"), "--pub", fake.pub_ep, "--service",
                               fake.service_ep, "--table", "public.bookings", *curve],
                              capture_output=True, text=True, timeout=60)
        snap = subprocess.run([tool("sync-snapshot"), "--service", fake.service_ep, *curve],
                              capture_output=True, text=True, timeout=60)
    finally:
        fake.close()
    assert tail.returncode == 1 and tail.stdout == ""
    assert tail.stderr.splitlines()[-1] == "sync-tail: permission denied", tail.stderr
    assert snap.returncode == 1
    assert snap.stderr == ("sync-snapshot: broker refused the snapshot: forbidden: "
                           "not for this key\n"), snap.stderr


def test_fault_client_over_curve(keys):
    """sb_fault_client (the fault suite's cache) takes the same options."""
    fake = CurveFake(keys["broker_secret"])
    try:
        proc = subprocess.Popen([os.path.join(BUILD_DIR, "tests", "faults", "sb_fault_client"),
                                 "--pub", fake.pub_ep, "--service", fake.service_ep,
                                 "--server-key", str(keys["broker_pub"]), "--key",
                                 str(keys["desk_key"])], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ, ASAN_OPTIONS="detect_leaks=0"))
        # Lines are signals: wait for the cache to be online, then dump it.
        for line in proc.stdout:
            if json.loads(line)["ev"] == "online":
                break
        out, err = proc.communicate("dump\nquit\n", timeout=30)
    finally:
        fake.close()
    assert proc.returncode == 0, err
    rows = [json.loads(line) for line in out.splitlines() if '"ev":"row"' in line]
    assert {r["key"] for r in rows} >= {"3"}, out
    assert set(fake.client_keys()) == {keys["desk_public"]}
