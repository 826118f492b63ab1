"""The capture SQL (sql/, docs/capture.md) against a private PostgreSQL 15: triggers, keys,
truncate, notify folding, pruning, and the gap-free cursor."""
import select
import threading
import time

import psycopg2
import pytest

from sbwriter import q

CURSOR_SQL = """
WITH s AS (SELECT pg_current_snapshot() AS cur)
SELECT s.cur::text, c.relid, c.pk, c.op, c.version, c.origin,
       (extract(epoch FROM c.ts) * 1000)::bigint
FROM s LEFT JOIN syncbroker.change c
  ON c.xid >= pg_snapshot_xmin(%(prev)s::pg_snapshot)
 AND NOT pg_visible_in_snapshot(c.xid, %(prev)s::pg_snapshot)
 AND c.relid = ANY(%(relids)s::oid[])
ORDER BY c.version"""


def changes(conn, table):
    return q(conn, """SELECT pk, op, version, origin FROM syncbroker.change
                      WHERE relid = %s::regclass ORDER BY version""", (table,))


def entities(conn, table):
    return {tuple(pk): (version, deleted, origin) for pk, version, deleted, origin in q(
        conn, """SELECT pk, version, deleted, origin FROM syncbroker.entity
                 WHERE relid = %s::regclass""", (table,))}


@pytest.fixture
def bookings(conn):
    q(conn, """CREATE TABLE public.bookings (id int PRIMARY KEY, guest text, nights int);
               SELECT syncbroker.track('public.bookings')""")
    return "public.bookings"


def test_migrations_are_rerunnable(pg, db, conn, bookings):
    q(conn, "INSERT INTO bookings VALUES (1, 'ann', 2)")
    pg.migrate(db)
    pg.migrate(db)
    assert q(conn, "SELECT version, name FROM syncbroker.schema_version ORDER BY 1") == [
        (1, "001_schema"), (2, "002_capture"), (3, "003_privileges")]
    # Re-applying kept the data and the capture working.
    q(conn, "UPDATE bookings SET nights = 3 WHERE id = 1")
    assert [op for _, op, _, _ in changes(conn, bookings)] == ["i", "u"]


def test_track_twice_is_harmless(conn, bookings):
    q(conn, "SELECT syncbroker.track('public.bookings')")
    q(conn, "INSERT INTO bookings VALUES (1, 'ann', 2)")
    assert len(changes(conn, bookings)) == 1, "a second track() must not add a second trigger"
    assert q(conn, "SELECT relname, pk_cols, pk_types FROM syncbroker.tracked") == [
        ("public.bookings", ["id"], ["integer"])]


def test_insert_update_delete_with_versions_and_origin(conn, bookings):
    q(conn, "SET syncbroker.origin = 'desk-a'")
    q(conn, "INSERT INTO bookings VALUES (1, 'ann', 2), (2, 'bob', 1)")
    q(conn, "SET syncbroker.origin = ''")  # empty means no origin
    q(conn, "UPDATE bookings SET nights = 5 WHERE id = 1")
    q(conn, "SET syncbroker.origin = 'desk-b'")
    q(conn, "DELETE FROM bookings WHERE id = 2")
    rows = changes(conn, bookings)
    assert [(pk, op, origin) for pk, op, _, origin in rows] == [
        (["1"], "i", "desk-a"), (["2"], "i", "desk-a"), (["1"], "u", None), (["2"], "d", "desk-b")]
    versions = [v for _, _, v, _ in rows]
    assert versions == sorted(versions) and len(set(versions)) == 4
    assert entities(conn, bookings) == {
        ("1",): (versions[2], False, None), ("2",): (versions[3], True, "desk-b")}
    assert q(conn, "SELECT count(DISTINCT xid) FROM syncbroker.change")[0][0] == 3


def test_versions_follow_commit_order_under_contention(pg, db, conn, bookings):
    q(conn, "INSERT INTO bookings VALUES (1, 'ann', 1)")
    first = pg.connect(db)
    second = pg.connect(db)
    first.autocommit = False
    q(first, "UPDATE bookings SET nights = 2 WHERE id = 1")
    t = threading.Thread(target=q, args=(second, "UPDATE bookings SET nights = 3 WHERE id = 1"))
    t.start()
    # The second writer holds no version until the first commits (it waits for the row lock).
    pid = second.get_backend_pid()
    deadline = time.monotonic() + 10
    while not q(conn, "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'",
                (pid,)):
        assert time.monotonic() < deadline, "second writer never blocked"
        time.sleep(0.01)
    first.commit()
    t.join(10)
    rows = changes(conn, bookings)
    assert [op for _, op, _, _ in rows] == ["i", "u", "u"]
    assert rows[1][2] < rows[2][2]
    assert entities(conn, bookings)[("1",)][0] == rows[2][2]
    first.close()
    second.close()


def test_composite_key_in_key_order(conn):
    q(conn, """CREATE TABLE public."Stays" ("Room No" int, day date, note text,
                                             PRIMARY KEY (day, "Room No"));
               SELECT syncbroker.track('public."Stays"')""")
    q(conn, """INSERT INTO "Stays" VALUES (12, '2026-11-28', 'x')""")
    q(conn, """UPDATE "Stays" SET note = 'y'""")
    assert [(pk, op) for pk, op, _, _ in changes(conn, 'public."Stays"')] == [
        (["2026-11-28", "12"], "i"), (["2026-11-28", "12"], "u")]
    assert q(conn, "SELECT relname, pk_cols, pk_types FROM syncbroker.tracked") == [
        ("public.Stays", ["day", "Room No"], ["date", "integer"])]


def test_key_change_is_delete_then_insert(conn, bookings):
    q(conn, "INSERT INTO bookings VALUES (1, 'ann', 2)")
    q(conn, "UPDATE bookings SET id = 7, nights = 4 WHERE id = 1")
    rows = changes(conn, bookings)
    assert [(pk, op) for pk, op, _, _ in rows] == [(["1"], "i"), (["1"], "d"), (["7"], "i")]
    assert rows[1][2] < rows[2][2]
    ent = entities(conn, bookings)
    assert ent[("1",)][1] is True and ent[("7",)][1] is False


def test_truncate_is_captured_and_entities_go(conn, bookings):
    q(conn, "CREATE TABLE other (id int PRIMARY KEY); SELECT syncbroker.track('other')")
    q(conn, "INSERT INTO bookings VALUES (1, 'ann', 2), (2, 'bob', 1); INSERT INTO other VALUES (1)")
    q(conn, "SET syncbroker.origin = 'night-audit'; TRUNCATE bookings")
    last = changes(conn, bookings)[-1]
    assert last[0] is None and last[1] == "t" and last[3] == "night-audit"
    assert entities(conn, bookings) == {}
    assert len(entities(conn, "other")) == 1, "truncate touched another table's entities"


def test_untrack_stops_capture(conn, bookings):
    q(conn, "SELECT syncbroker.enable_notify()")
    q(conn, "INSERT INTO bookings VALUES (1, 'ann', 2)")
    q(conn, "SELECT syncbroker.untrack('public.bookings')")
    q(conn, "INSERT INTO bookings VALUES (2, 'bob', 1); DELETE FROM bookings; TRUNCATE bookings")
    assert q(conn, "SELECT count(*) FROM syncbroker.change")[0][0] == 0
    assert q(conn, "SELECT count(*) FROM syncbroker.entity")[0][0] == 0
    assert q(conn, "SELECT count(*) FROM syncbroker.tracked")[0][0] == 0
    assert q(conn, "SELECT tgname FROM pg_trigger WHERE tgrelid = 'bookings'::regclass") == []
    assert q(conn, "SELECT proname FROM pg_proc WHERE proname ~ '^_capture_[0-9]+$'") == []


def test_table_without_primary_key_is_refused(conn):
    q(conn, "CREATE TABLE log (msg text)")
    with pytest.raises(psycopg2.Error) as err:
        q(conn, "SELECT syncbroker.track('log')")
    assert "has no primary key" in str(err.value)
    with pytest.raises(psycopg2.Error) as err:
        q(conn, "SELECT syncbroker.track('no_such_table')")
    assert "does not exist" in str(err.value)


def test_hostile_identifiers_are_quoted(conn):
    table = 'we\'ird$body$ "t'
    column = 'k$f$ " ;--\nx'
    ident = '"' + table.replace('"', '""') + '"'
    col = '"' + column.replace('"', '""') + '"'
    q(conn, f"CREATE TABLE {ident} ({col} text PRIMARY KEY, v int)")
    q(conn, "SELECT syncbroker.track(%s)", (ident,))
    q(conn, f"INSERT INTO {ident} VALUES ('a', 1)")
    assert [(pk, op) for pk, op, _, _ in changes(conn, ident)] == [(["a"], "i")]
    assert q(conn, "SELECT relname, pk_cols FROM syncbroker.tracked") == [
        ("public." + table, [column])]


def test_large_row_commits_with_notify_on(conn, bookings):
    q(conn, "SELECT syncbroker.enable_notify()")
    big = "x" * 200_000
    q(conn, "INSERT INTO bookings VALUES (1, %s, 1)", (big,))
    q(conn, "UPDATE bookings SET guest = guest || %s", (big,))
    assert q(conn, "SELECT length(guest) FROM bookings")[0][0] == 400_000
    assert [op for _, op, _, _ in changes(conn, bookings)] == ["i", "u"]


def test_notify_folds_per_table_per_transaction(pg, db, conn, bookings):
    q(conn, "CREATE TABLE rooms (no int PRIMARY KEY); SELECT syncbroker.track('rooms')")
    q(conn, "SELECT syncbroker.enable_notify()")
    listener = pg.connect(db)
    q(listener, "LISTEN syncbroker; LISTEN test_done")
    writer = pg.connect(db)
    writer.autocommit = False
    q(writer, "INSERT INTO bookings SELECT g, 'g', 1 FROM generate_series(1, 200) g")
    q(writer, "UPDATE bookings SET nights = 2")
    q(writer, "INSERT INTO rooms SELECT generate_series(1, 50)")
    writer.commit()
    # Notifications arrive in commit order: once this one is in, the others are too.
    writer.autocommit = True
    q(writer, "NOTIFY test_done")
    got = []
    deadline = time.monotonic() + 10
    while not any(n.channel == "test_done" for n in got):
        assert time.monotonic() < deadline, f"notifications so far: {got}"
        select.select([listener], [], [], 0.5)
        listener.poll()
        got.extend(listener.notifies)
        listener.notifies.clear()
    payloads = sorted(n.payload for n in got if n.channel == "syncbroker")
    relids = sorted(str(r) for (r,) in q(
        conn, "SELECT oid FROM pg_class WHERE relname IN ('bookings', 'rooms')"))
    assert payloads == relids
    assert q(conn, "SELECT value FROM syncbroker.settings WHERE key = 'notify'") == [("on",)]
    # Tracking after enable_notify() installs the notify trigger too; disable removes them all.
    q(conn, "CREATE TABLE guests (id int PRIMARY KEY); SELECT syncbroker.track('guests')")
    assert q(conn, "SELECT count(*) FROM pg_trigger WHERE tgname = 'syncbroker_notify'") == [(3,)]
    q(conn, "SELECT syncbroker.disable_notify()")
    assert q(conn, "SELECT count(*) FROM pg_trigger WHERE tgname = 'syncbroker_notify'") == [(0,)]
    listener.close()
    writer.close()


def snapshot(conn):
    return q(conn, "SELECT pg_current_snapshot()::text")[0][0]


def prune(conn, reader, position, retention="7 days", timeout="1 hour"):
    return q(conn, "SELECT syncbroker.prune(%s, %s::pg_snapshot, %s::interval, %s::interval)",
             (reader, position, retention, timeout))[0][0]


def register(conn, reader, position):
    q(conn, "SELECT syncbroker.register_reader(%s, %s::pg_snapshot)", (reader, position))


def readers(conn):
    return q(conn, "SELECT name, position::text FROM syncbroker.reader ORDER BY name")


def test_only_register_reader_creates_a_reader_row(conn, bookings):
    """After a crash (or an operator) removed a reader row, a prune from that reader's broker
    must not bring it back at the old position: the cursor would take the missing row's
    return for a position that was guarded all along, and miss what the crash took."""
    pos = snapshot(conn)
    prune(conn, "b1", pos)
    assert readers(conn) == []
    register(conn, "b1", pos)
    q(conn, "INSERT INTO bookings VALUES (1, 'ann', 1)")
    later = snapshot(conn)
    prune(conn, "b1", later)
    assert readers(conn) == [("b1", later)]
    register(conn, "b1", pos)                    # re-registering moves it (a new epoch)
    assert readers(conn) == [("b1", pos)]


def test_prune_respects_readers_and_retention(conn, bookings):
    q(conn, "INSERT INTO bookings VALUES (1, 'ann', 1)")
    slow_pos = snapshot(conn)                    # slow reader has seen the insert only
    register(conn, "slow", slow_pos)
    q(conn, "UPDATE bookings SET nights = 2")
    fast_pos = snapshot(conn)                    # fast reader has seen both
    register(conn, "fast", slow_pos)
    assert prune(conn, "slow", slow_pos) == 1    # the insert: every reader has passed it
    assert [op for _, op, _, _ in changes(conn, bookings)] == ["u"]
    assert prune(conn, "fast", fast_pos) == 0    # slow still needs the update
    assert [op for _, op, _, _ in changes(conn, bookings)] == ["u"]
    # A reader not seen within reader_timeout no longer holds anything back.
    q(conn, "UPDATE syncbroker.reader SET seen_at = now() - interval '2 hours' WHERE name = 'slow'")
    assert prune(conn, "fast", fast_pos) == 1
    assert changes(conn, bookings) == []
    assert q(conn, "SELECT name FROM syncbroker.reader") == [("fast",)]

    # Tombstones older than the retention go; recent ones and live entities stay.
    q(conn, "INSERT INTO bookings VALUES (2, 'bob', 1), (3, 'cy', 1)")
    q(conn, "DELETE FROM bookings WHERE id IN (1, 2)")
    q(conn, """UPDATE syncbroker.change SET ts = now() - interval '8 days'
               WHERE pk = '{1}' AND op = 'd'""")
    entities_before = entities(conn, bookings)
    prune(conn, "fast", snapshot(conn))
    # 1's tombstone is past the retention, 2's stays; 3's insert was read by every reader, so
    # it left the log too (readers then take version 0 for it, a lower bound).
    assert entities(conn, bookings) == {("2",): (entities_before[("2",)][0], True, None)}


def test_capture_tables_stay_bounded_with_periodic_prune(pg, db, conn, bookings):
    q(conn, "INSERT INTO bookings SELECT g, 'g', 0 FROM generate_series(1, 20) g")
    writer = pg.connect(db)
    sizes = []
    register(conn, "broker", snapshot(conn))
    for rnd in range(30):
        for i in range(50):
            q(writer, "UPDATE bookings SET nights = nights + 1 WHERE id = %s", (i % 20 + 1,))
        q(writer, "DELETE FROM bookings WHERE id = 20; INSERT INTO bookings VALUES (20, 'again', 0)")
        prune(conn, "broker", snapshot(conn), retention="0")
        sizes.append(q(conn, "SELECT (SELECT count(*) FROM syncbroker.change),"
                             " (SELECT count(*) FROM syncbroker.entity)")[0])
    assert max(c for c, _ in sizes) <= 2, sizes   # at most the writes racing the prune
    assert max(e for _, e in sizes) <= 20, sizes
    writer.close()


def read_batch(conn, prev, relids):
    rows = q(conn, CURSOR_SQL, {"prev": prev, "relids": relids})
    return rows[0][0], [r[1:] for r in rows if r[1] is not None]


def test_gap_free_cursor_survives_long_transactions(pg, db, conn, bookings):
    relids = [q(conn, "SELECT 'bookings'::regclass::oid")[0][0]]
    reader = pg.connect(db)
    prev = snapshot(reader)
    t1 = pg.connect(db)
    t1.autocommit = False
    q(t1, "INSERT INTO bookings VALUES (1, 'long', 1)")         # T1 writes first ...
    q(conn, "INSERT INTO bookings VALUES (2, 'short', 1)")      # ... T2 writes and commits
    prev, batch = read_batch(reader, prev, relids)
    assert [pk for _, pk, *_ in batch] == [["2"]]
    high_water = q(reader, "SELECT max(version) FROM syncbroker.change")[0][0]
    t1.commit()                                                 # T1 commits last
    prev, batch = read_batch(reader, prev, relids)
    assert [pk for _, pk, *_ in batch] == [["1"]], "the cursor lost the long transaction's change"
    # A version (or serial) high-water mark would have missed it: T1's row has the smaller one.
    assert q(reader, "SELECT pk FROM syncbroker.change WHERE version > %s", (high_water,)) == []
    # Nothing is delivered twice.
    prev, batch = read_batch(reader, prev, relids)
    assert batch == []
    t1.close()
    reader.close()
