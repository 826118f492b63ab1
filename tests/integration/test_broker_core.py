"""The broker's own behaviour end to end: per-entity debounce, flush on SIGTERM, reload on
SIGHUP, presence, start-up refusals that need a database, and a third-party plugin loaded
next to the shipped ones."""
import os
import signal
import subprocess
import time

from conftest import BUILD_DIR, wait_until
from sbpeer import Subscriber, request, write_version
from sbwriter import q

BOOKINGS = "public.bookings"


def events_of(msgs, key):
    return [body for topic, body in msgs if body.get("key") == key and topic != "@hb"]


def test_debounce_bounds_events_and_keeps_the_last_state(broker, hotel, conn):
    """1000 updates to one booking in about a second with debounce_ms = 200: at most
    1000/200 + 2 events, the first within 50 ms of its commit, the last equal to the row."""
    b = broker(hotel, [BOOKINGS], source="source_notify", debounce_ms=200)
    sub = Subscriber(b.pub, [f"{BOOKINGS}/"])
    sub.wait_heartbeat()
    q(conn, "INSERT INTO bookings (id, nights) VALUES (1, 0)")
    sub.collect_until(lambda m: events_of(m, "1"), 10)  # the insert
    time.sleep(0.25)  # let the insert's window close: the first update is a leading edge
    first_commit = None
    started = time.monotonic()
    for i in range(1, 1001):
        # Paced at ~1000 updates/s (a load generator's pacing, not synchronisation).
        ahead = started + i / 1000 - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        if i < 1000:
            q(conn, "UPDATE bookings SET nights = %s WHERE id = 1", (i,))
        else:  # the version to wait for, read before the broker can prune it
            final = write_version(conn, "UPDATE bookings SET nights = %s WHERE id = 1", (i,),
                                  BOOKINGS, ["1"])
        if first_commit is None:
            first_commit = time.monotonic()
            # The leading edge: published at once, not at the end of a window.
            ev = events_of(sub.collect_until(lambda m: events_of(m, "1"), 5), "1")[0]
            first_latency = time.monotonic() - first_commit
            assert ev["row"]["nights"] == 1, ev
    took = time.monotonic() - started
    got = sub.collect_until(lambda m: any(e["version"] == final for e in events_of(m, "1")), 10)
    evs = [ev] + events_of(got, "1")
    assert evs[-1]["row"]["nights"] == 1000 and evs[-1]["op"] == "update"
    limit = int(took * 1000 / 200) + 2
    assert len(evs) <= limit, (len(evs), took)
    # Every change was read; each one went into an event or was covered by one whose row
    # was read after it (n counts the changes merged before publishing).
    stats = request(b.service, {"op": "stats"})[0]
    assert stats["changes_in"] == 1001 and sum(e["n"] for e in evs) <= 1000
    assert stats["events_out"] + stats["coalesced"] == stats["changes_in"], stats
    assert first_latency < 0.050, first_latency
    versions = [e["version"] for e in evs]
    assert versions == sorted(set(versions))
    print(f"1000 updates in {took:.2f}s -> {len(evs)} events (limit {limit}), "
          f"first after {first_latency * 1000:.1f} ms")
    b.stop()


def test_distinct_entities_are_not_coalesced(broker, hotel, conn):
    """1000 updates spread over 1000 bookings deliver 1000 events."""
    q(conn, "INSERT INTO bookings (id, nights) SELECT g, 0 FROM generate_series(1, 1000) g")
    b = broker(hotel, [BOOKINGS], debounce_ms=200)
    sub = Subscriber(b.pub, [f"{BOOKINGS}/"])
    sub.wait_heartbeat()
    for i in range(1, 1001):
        q(conn, "UPDATE bookings SET nights = 1 WHERE id = %s", (i,))
    got = sub.collect_until(lambda m: len({e["key"] for _, e in m}) >= 1000, 30)
    assert len(got) == 1000
    assert all(e["op"] == "update" and e["row"]["nights"] == 1 and e["n"] == 1 for _, e in got)
    b.stop()


def test_sigterm_publishes_pending_changes(broker, hotel, conn):
    b = broker(hotel, [BOOKINGS], debounce_ms=60000)
    sub = Subscriber(b.pub, [f"{BOOKINGS}/"])
    sub.wait_heartbeat()
    q(conn, "INSERT INTO bookings (id, nights) VALUES (1, 1)")
    sub.collect_until(lambda m: events_of(m, "1"), 10)
    q(conn, "UPDATE bookings SET nights = 2 WHERE id = 1")
    # Wait until the broker holds the change in its (minute-long) window.
    wait_until(lambda: request(b.service, {"op": "stats"})[0]["pending"] == 1, 10,
               "the update to be pending")
    b.proc.send_signal(signal.SIGTERM)
    got = sub.collect_until(lambda m: events_of(m, "1"), 10)
    assert events_of(got, "1")[0]["row"]["nights"] == 2
    b.stop()  # exit status 0


def test_sighup_reloads_debounce(broker, hotel, conn):
    b = broker(hotel, [BOOKINGS], debounce_ms=60000)
    sub = Subscriber(b.pub, [f"{BOOKINGS}/"])
    sub.wait_heartbeat()
    with open(b.config) as f:
        text = f.read()
    with open(b.config, "w") as f:
        f.write(text.replace("debounce_ms = 60000", "debounce_ms = 0"))
    b.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "reloading" in b.log, 10, "the reload to be logged")
    b.ping()  # the loop has handled the signal
    q(conn, "INSERT INTO bookings (id, nights) VALUES (5, 1)")
    sub.collect_until(lambda m: events_of(m, "5"), 10)
    q(conn, "UPDATE bookings SET nights = 2 WHERE id = 5")
    got = sub.collect_until(lambda m: events_of(m, "5"), 10)  # no minute-long window now
    assert events_of(got, "5")[0]["row"]["nights"] == 2
    # A broken config on reload is refused and the broker keeps running.
    with open(b.config, "a") as f:
        f.write("[bogus]\n")
    b.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "keeping the running configuration" in b.log, 10, "the refusal")
    assert b.ping()["epoch"] == b.hello["epoch"]
    b.stop()


def test_presence_is_published_and_expires(broker, hotel):
    b = broker(hotel, [BOOKINGS])
    sub = Subscriber(b.pub, [f"@presence/{BOOKINGS}/"])
    sub.wait_heartbeat()
    reply = request(b.service, {"op": "presence", "client": "desk-b", "table": BOOKINGS,
                                "key": "3", "state": "editing", "ttl_ms": 300})
    assert reply == [{"ok": True}]
    got = sub.collect_until(lambda m: len(m) >= 1, 5)
    topic, body = got[0]
    assert topic == f"@presence/{BOOKINGS}/3"
    assert [e["client"] for e in body["editors"]] == ["desk-b"]
    assert body["editors"][0]["state"] == "editing" and body["key"] == "3"
    # Not refreshed: the entry expires and an empty list is published.
    got = sub.collect_until(lambda m: len(m) >= 1, 5)
    assert got[0][1]["editors"] == [] and got[0][1]["seq"] == body["seq"] + 1
    bad = request(b.service, {"op": "presence", "client": "x", "table": "public.nope",
                              "key": "1", "state": "editing", "ttl_ms": 100})
    assert bad[0]["error"] == "unknown_table"
    b.stop()


def test_unknown_or_untracked_table_refuses_to_start(pg, hotel, conn, tmp_path):
    q(conn, "CREATE TABLE public.untracked (id int PRIMARY KEY)")
    for table, why in (("public.nope", "does not exist"), ("public.untracked", "syncbroker.track")):
        cfg = tmp_path / f"{table}.ini"
        cfg.write_text(
            f"[broker]\nplugin_dir = {os.path.join(BUILD_DIR, 'plugins')}\n\n"
            f"[database]\nconninfo = {pg.broker_conninfo(hotel)}\n"
            f"tables = public.bookings, {table}\n\n"
            "[source.main]\nplugin = source_poll\n\n"
            "[transport.zmq]\nplugin = transport_zmq\n"
            "pub = tcp://127.0.0.1:*\nservice = tcp://127.0.0.1:*\n")
        r = subprocess.run([os.path.join(BUILD_DIR, "broker", "syncbroker"), "-c", str(cfg)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 1, r.stderr
        assert f"{cfg}:6: [database] tables: refused by [source.main]" in r.stderr, r.stderr
        assert table in r.stderr and why in r.stderr, r.stderr
        assert "bound" not in r.stderr.lower() and "runtime error" not in r.stderr


def test_third_party_plugin_runs_next_to_the_shipped_ones(broker, hotel, conn, tmp_path):
    """The example of docs/plugins.md, loaded as a second transport of a live broker."""
    out = tmp_path / "messages.txt"
    b = broker(hotel, [BOOKINGS],
               extra={"transport.audit": {"plugin": "transport_file", "path": str(out)}})
    sub = Subscriber(b.pub, [f"{BOOKINGS}/"])
    sub.wait_heartbeat()
    q(conn, "INSERT INTO bookings (id) VALUES (9)")
    _, ev = sub.collect_until(lambda m: events_of(m, "9"), 10)[0]
    wait_until(lambda: f"{ev['seq']} event {BOOKINGS}/9 " in out.read_text(), 10,
               "the example plugin's line")
    assert " heartbeat @hb " in out.read_text()
    b.stop()
    assert "[transport.audit] wrote" in b.log
