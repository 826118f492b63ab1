"""CURVE on both sockets (docs/security.md, "Authentication (CURVE)"): only a key of the
clients file gets in, a plain client gets nothing, and a broken CURVE set-up refuses to start
naming the file (and line) to fix."""
import os
import subprocess
import time

import pytest
import zmq

import sbpeer
from conftest import BUILD_DIR, wait_until

TABLES = ["public.bookings", "public.stays"]


def write_key(path, key, secret):
    """A key file as sync-keygen writes it (sb_keyfile.h): a comment and the Z85 key."""
    with open(path, "w") as f:
        f.write(f"# {'secret' if secret else 'public'} CURVE key\n{key.decode()}\n")
    os.chmod(path, 0o600 if secret else 0o644)
    return path


class Setup:
    """The broker's key pair, a known client (desk-a, all tables) and an unknown one."""

    def __init__(self, tmp_path):
        self.server_public, server_secret = zmq.curve_keypair()
        self.known = self.keys(*zmq.curve_keypair())
        self.stranger = self.keys(*zmq.curve_keypair())
        self.secret_file = write_key(tmp_path / "broker.key", server_secret, True)
        self.public_file = write_key(tmp_path / "broker.pub", self.server_public, False)
        self.clients_file = tmp_path / "clients.ini"
        self.clients_file.write_text(f"[desk-a]\nkey = {self.known['public'].decode()}\n"
                                     "tables = *\nadmin = off\n")

    def keys(self, public, secret):
        return {"server": self.server_public, "public": public, "secret": secret}

    def options(self, **override):
        opts = {"curve_secret_key_file": self.secret_file,
                "curve_public_key_file": self.public_file,
                "clients_file": self.clients_file}
        opts.update(override)
        return {"transport.zmq": {k: v for k, v in opts.items() if v is not None}}


@pytest.fixture
def curve(tmp_path):
    return Setup(tmp_path)


def is_heartbeat(topic):
    """"@hb", or a principal's own heartbeat topic ("@hb/<name>/", docs/security.md)."""
    return topic == "@hb" or topic.startswith("@hb/")


def heartbeats(sub, count, timeout=10.0):
    """Waits for `count` heartbeats on sub."""
    deadline = time.monotonic() + timeout
    got = 0
    while got < count:
        topic, _ = sub.recv(max(deadline - time.monotonic(), 0.001))
        got += is_heartbeat(topic)


def dealer(endpoint, curve=None):
    sock = sbpeer.CTX.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sbpeer.use_curve(sock, curve)
    sock.connect(endpoint)
    return sock


def send_ping(sock):
    sock.send_multipart([b"", sbpeer.msgpack.packb({"op": "ping"})])


def test_known_key_gets_heartbeats_and_answers(broker, hotel, conn, curve):
    with conn.cursor() as cur:
        cur.execute("INSERT INTO public.bookings (id, guest) VALUES (1, 'Ada')")
    b = broker(hotel, TABLES, extra=curve.options(), curve=curve.known)
    sub = sbpeer.Subscriber(b.pub, topics=(), curve=curve.known)
    try:
        heartbeats(sub, 2)
    finally:
        sub.close()
    ping = sbpeer.request(b.service, {"op": "ping"}, curve=curve.known)[0]
    assert isinstance(ping["epoch"], str), ping
    frames = sbpeer.request(b.service, {"op": "snapshot", "tables": ["public.bookings"]},
                            socket_type=zmq.DEALER, curve=curve.known)
    assert frames[0]["epoch"] == ping["epoch"] and frames[0]["rows"] == 1, frames
    assert [i["row"]["guest"] for f in frames[1:] for i in f] == ["Ada"], frames
    assert "info  [transport.zmq] CURVE on both sockets: 1 client(s) allowed" in b.log
    assert "plain text" not in b.log


@pytest.mark.parametrize("who", ["stranger", "plain"])
def test_unknown_and_plain_clients_get_nothing(broker, hotel, curve, who):
    """An unknown key, and a client without CURVE, get no heartbeat on the events socket and
    no answer on the service socket, while a known client beside them gets both."""
    b = broker(hotel, TABLES, extra=curve.options(), curve=curve.known)
    keys = curve.stranger if who == "stranger" else None
    intruder_sub = sbpeer.Subscriber(b.pub, topics=(), curve=keys)
    intruder_req = dealer(b.service, keys)
    known_sub = sbpeer.Subscriber(b.pub, topics=(), curve=curve.known)
    try:
        send_ping(intruder_req)
        if who == "stranger":
            # Both handshakes reach our ZAP handler and are refused with the key and address.
            z85 = curve.stranger["public"].decode()
            for socket in ("events", "service"):
                line = f"{socket} connection from 127.0.0.1 refused: unknown client key {z85}"
                wait_until(lambda: line in b.log, 20, f"the broker to log '{line}'")
        # Long enough for both intruders to have had their share: the known client, which
        # connected last, has its heartbeats and its ping answered.
        heartbeats(known_sub, 3)
        assert "epoch" in b.ping()
        assert not intruder_sub.sock.poll(0), "a heartbeat reached a client the broker refused"
        assert not intruder_req.poll(0), "a request of a refused client was answered"
    finally:
        intruder_sub.close()
        intruder_req.close()
        known_sub.close()


def refused_start(broker, hotel, extra):
    """Starts a broker that must exit; returns its log."""
    with pytest.raises(AssertionError, match="syncbroker exited") as failure:
        broker(hotel, TABLES, extra=extra)
    return str(failure.value)


def test_curve_needs_the_public_key_and_clients_file(broker, hotel, curve):
    log = refused_start(broker, hotel, curve.options(curve_public_key_file=None))
    assert "[transport.zmq] curve_public_key_file: required with curve_secret_key_file" in log


def test_bad_clients_file_line_is_named(broker, hotel, curve):
    with open(curve.clients_file, "a") as f:
        f.write("[desk-b]\nkey = not-a-key\ntables = public.bookings\n")
    log = refused_start(broker, hotel, curve.options())
    assert f"{curve.clients_file}:6: 'not-a-key' is not a CURVE public key" in log


def test_secret_key_file_open_to_others_is_refused(broker, hotel, curve):
    os.chmod(curve.secret_file, 0o644)
    log = refused_start(broker, hotel, curve.options())
    assert (f"[transport.zmq] curve_secret_key_file: {curve.secret_file}: a secret key file must "
            "be private to its owner, but its mode is 0644") in log


def test_curve_may_bind_beyond_loopback(pg, hotel, curve, tmp_path):
    """With CURVE, tcp://0.0.0.0 needs no allow_plaintext (checked with --check, which binds
    nothing; the same file without the keys is refused)."""
    keys = "".join(f"{k} = {v}\n" for k, v in curve.options()["transport.zmq"].items())
    base = (f"[broker]\nplugin_dir = {os.path.join(BUILD_DIR, 'plugins')}\n"
            f"[database]\nconninfo = {pg.broker_conninfo(hotel)}\ntables = public.bookings\n"
            "[source.main]\nplugin = source_poll\n"
            "[transport.zmq]\nplugin = transport_zmq\npub = tcp://0.0.0.0:5556\n")
    results = []
    for text in (base + keys, base):
        cfg = tmp_path / "check.ini"
        cfg.write_text(text)
        results.append(subprocess.run([os.path.join(BUILD_DIR, "broker", "syncbroker"), "-c",
                                       str(cfg), "--check"], capture_output=True, text=True))
    with_curve, plain = results
    assert with_curve.returncode == 0, with_curve.stderr
    assert "loopback" not in with_curve.stderr + with_curve.stdout
    assert plain.returncode != 0 and "is not a loopback address" in plain.stderr, plain.stderr
