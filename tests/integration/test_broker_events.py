"""End to end: writes in PostgreSQL arrive as PUB events with the right fields, against both
source plugins."""
import time

from sbpeer import Subscriber, write_version
from sbwriter import q

BOOKINGS = "public.bookings"
STAYS = "public.stays"


def wait_event(sub, pred, timeout=10):
    """The first event matching pred (others before it are dropped)."""
    got = sub.collect_until(lambda msgs: any(pred(m) for m in msgs), timeout)
    return next(m for m in got if pred(m))


def is_change(op, key):
    return lambda m: m[1].get("op") == op and m[1].get("key") == key


def test_insert_update_delete_arrive_typed(broker, source, hotel, conn):
    b = broker(hotel, [BOOKINGS, STAYS], source=source)
    sub = Subscriber(b.pub, [f"{BOOKINGS}/"])
    sub.wait_heartbeat()
    q(conn, "SET syncbroker.origin = 'desk-a'")
    version = write_version(conn, """INSERT INTO bookings VALUES (1, 'ann', 2, 1.5, true, NULL,
                            12.5, '2026-11-28 14:00+00', -3, 9007199254740993, 0.25)""", None,
                            BOOKINGS, ["1"])
    topic, ev = wait_event(sub, is_change("insert", "1"))
    assert topic == f"{BOOKINGS}/1"
    arrives = q(conn, "SELECT arrives::text FROM bookings WHERE id = 1")[0][0]
    assert ev["row"] == {"id": 1, "guest": "ann", "nights": 2, "rate": 1.5, "paid": True,
                         "note": None, "amount": "12.50", "arrives": arrives, "small": -3,
                         "big": 9007199254740993, "ratio": 0.25}
    assert ev["table"] == BOOKINGS and ev["origin"] == "desk-a" and ev["n"] >= 1
    assert ev["version"] == version
    assert isinstance(ev["epoch"], str) and ev["epoch"]
    assert abs(ev["ts"] - time.time() * 1000) < 60_000
    first = ev

    q(conn, "SET syncbroker.origin = 'desk-b'")
    version = write_version(conn, "UPDATE bookings SET nights = 3, paid = false, note = 'late'"
                            " WHERE id = 1", None, BOOKINGS, ["1"])
    _, ev = wait_event(sub, is_change("update", "1"))
    assert ev["row"]["nights"] == 3 and ev["row"]["paid"] is False and ev["row"]["note"] == "late"
    assert ev["origin"] == "desk-b"
    assert ev["version"] == version > first["version"]
    assert ev["seq"] > first["seq"] and ev["tseq"] == first["tseq"] + 1

    q(conn, "RESET syncbroker.origin")
    version = write_version(conn, "DELETE FROM bookings WHERE id = 1", None, BOOKINGS, ["1"])
    _, ev = wait_event(sub, is_change("delete", "1"))
    assert ev["row"] is None and ev["origin"] is None
    assert ev["version"] == version
    sub.close()
    b.stop()


def test_column_added_while_running_appears_in_rows(broker, source, hotel, conn):
    """The row fetch is a prepared statement reading t.*: after ALTER TABLE its cached plan
    no longer fits, and the broker must prepare it afresh rather than fail every fetch."""
    b = broker(hotel, [BOOKINGS, STAYS], source=source, debounce_ms=0)
    sub = Subscriber(b.pub, [f"{BOOKINGS}/"])
    sub.wait_heartbeat()
    q(conn, "INSERT INTO bookings (id, guest) VALUES (7, 'eve')")
    _, ev = wait_event(sub, is_change("insert", "7"))
    assert "floor" not in ev["row"]
    q(conn, "ALTER TABLE bookings ADD COLUMN floor int DEFAULT 4")
    version = write_version(conn, "UPDATE bookings SET nights = 9 WHERE id = 7", None, BOOKINGS,
                            ["7"])
    _, ev = wait_event(sub, is_change("update", "7"))
    assert ev["row"]["floor"] == 4 and ev["row"]["nights"] == 9
    assert ev["version"] == version
    sub.close()
    b.stop()


def test_composite_key_arrives_as_array(broker, source, hotel, conn):
    b = broker(hotel, [BOOKINGS, STAYS], source=source)
    sub = Subscriber(b.pub, [f"{STAYS}/"])
    sub.wait_heartbeat()
    q(conn, "INSERT INTO stays VALUES (12, '2026-11-28', 'sea view')")
    topic, ev = wait_event(sub, is_change("insert", ["12", "2026-11-28"]))
    assert topic == f"{STAYS}/12/2026-11-28"
    assert ev["row"] == {"room": 12, "day": "2026-11-28", "note": "sea view"}
    q(conn, "UPDATE stays SET day = '2026-11-29'")  # a key change: delete + insert
    got = sub.collect_until(lambda m: any(e.get("op") == "insert" and e["key"][1] == "2026-11-29"
                                          for _, e in m))
    assert any(e["op"] == "delete" and e["key"] == ["12", "2026-11-28"] for _, e in got)
    sub.close()
    b.stop()


def test_truncate_event(broker, source, hotel, conn):
    b = broker(hotel, [BOOKINGS], source=source)
    sub = Subscriber(b.pub, [f"{BOOKINGS}/"])
    sub.wait_heartbeat()
    q(conn, "INSERT INTO bookings (id, guest) VALUES (1, 'ann'), (2, 'bob')")
    sub.collect_until(lambda m: {e["key"] for _, e in m} >= {"1", "2"})
    q(conn, "SET syncbroker.origin = 'audit'; TRUNCATE bookings")
    topic, ev = wait_event(sub, lambda m: m[1].get("op") == "truncate")
    assert topic == f"{BOOKINGS}/"
    assert ev["key"] is None and ev["row"] is None and ev["table"] == BOOKINGS
    assert ev["origin"] == "audit"
    sub.close()
    b.stop()


def test_long_transaction_is_not_lost(broker, source, pg, hotel, conn):
    b = broker(hotel, [BOOKINGS], source=source)
    sub = Subscriber(b.pub, [f"{BOOKINGS}/"])
    sub.wait_heartbeat()
    t1 = pg.connect(hotel)
    t1.autocommit = False
    q(t1, "INSERT INTO bookings (id, guest) VALUES (1, 'long')")    # T1 writes first
    q(conn, "INSERT INTO bookings (id, guest) VALUES (2, 'short')")  # T2 writes, commits
    wait_event(sub, is_change("insert", "2"))
    t1.commit()                                                      # T1 commits last
    _, ev = wait_event(sub, is_change("insert", "1"))
    assert ev["row"]["guest"] == "long"
    t1.close()
    sub.close()
    b.stop()


def test_seq_and_tseq_have_no_gaps_and_heartbeat_reports_them(broker, source, hotel, conn):
    b = broker(hotel, [BOOKINGS, STAYS], source=source)
    sub = Subscriber(b.pub, [f"{BOOKINGS}/", f"{STAYS}/"])
    sub.wait_heartbeat()
    for i in range(1, 31):
        q(conn, "INSERT INTO bookings (id, guest) VALUES (%s, 'g')", (i,))
        if i % 3 == 0:
            q(conn, "INSERT INTO stays VALUES (%s, '2026-01-01')", (i,))
    got = sub.collect_until(lambda m: len(m) >= 40, timeout=20)
    events = [e for _, e in got]
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
    for table, count in ((BOOKINGS, 30), (STAYS, 10)):
        tseqs = [e["tseq"] for e in events if e["table"] == table]
        assert len(tseqs) == count
        assert tseqs == list(range(tseqs[0], tseqs[0] + count)), tseqs
    assert {e["epoch"] for e in events} == {b.ping()["epoch"]}
    hb = sub.collect_until(lambda m: any(t == "@hb" and e["seq"] >= seqs[-1] for t, e in m),
                           heartbeats=True)[-1][1]
    assert hb["epoch"] == events[0]["epoch"] and hb["seq"] == seqs[-1]
    assert hb["tseq"][BOOKINGS] == max(e["tseq"] for e in events if e["table"] == BOOKINGS)
    assert hb["tseq"][STAYS] == max(e["tseq"] for e in events if e["table"] == STAYS)
    assert abs(hb["ts"] - time.time() * 1000) < 60_000
    sub.close()
    b.stop()


def test_oversize_row_and_composite_key_commit_and_arrive(broker, source, hotel, conn):
    """NOTIFY carries no row: a row far over PostgreSQL's 8000-byte payload limit commits
    and its event carries the whole row."""
    b = broker(hotel, [BOOKINGS, STAYS], source=source)
    sub = Subscriber(b.pub, [f"{BOOKINGS}/", f"{STAYS}/"])
    sub.wait_heartbeat()
    big = "x" * 100_000
    q(conn, "INSERT INTO bookings (id, note) VALUES (77, %s)", (big,))
    q(conn, "INSERT INTO stays VALUES (4, '2026-11-28', %s)", (big,))
    _, ev = wait_event(sub, is_change("insert", "77"))
    assert ev["row"]["note"] == big
    _, ev = wait_event(sub, is_change("insert", ["4", "2026-11-28"]))
    assert ev["row"]["note"] == big
    b.stop()


def test_one_transaction_many_rows_delivers_every_entity(broker, source, hotel, conn):
    """PostgreSQL folds identical notifications of one transaction into one; every changed
    entity is still delivered (the notification is a wake-up, the change log the truth)."""
    b = broker(hotel, [BOOKINGS], source=source)
    sub = Subscriber(b.pub, [f"{BOOKINGS}/"])
    sub.wait_heartbeat()
    q(conn, "BEGIN; INSERT INTO bookings (id) SELECT g FROM generate_series(1, 300) g;"
            " UPDATE bookings SET nights = 1 WHERE id <= 100; COMMIT")
    got = sub.collect_until(lambda m: len({e["key"] for _, e in m}) >= 300, 20)
    assert sorted(int(e["key"]) for _, e in got) == list(range(1, 301))
    assert all(e["op"] == "insert" for _, e in got)
    assert all(e["row"]["nights"] == (1 if int(e["key"]) <= 100 else None) for _, e in got)
    b.stop()
