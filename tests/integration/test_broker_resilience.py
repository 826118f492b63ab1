"""Snapshots under concurrent writes, lost database connections and a PostgreSQL restart:
a Replica following docs/protocol.md ends up holding exactly the database."""
import time

from sbpeer import Replica, typed_rows
from sbwriter import Writer, q

BOOKINGS = "public.bookings"
STAYS = "public.stays"


def database(conn):
    def read():
        rows = typed_rows(conn, BOOKINGS)
        rows.update(typed_rows(conn, STAYS))
        return rows
    return read


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def broker_backends(conn):
    return q(conn, """SELECT pid FROM pg_stat_activity
                      WHERE application_name LIKE 'syncbroker%%' AND pid <> pg_backend_pid()""")


def test_snapshot_during_concurrent_writes(broker, source, pg, hotel, conn):
    q(conn, """INSERT INTO bookings (id, guest, nights, rate, paid)
               SELECT g, 'g', 1, 1.5, false FROM generate_series(1, 200) g""")
    b = broker(hotel, [BOOKINGS, STAYS], source=source)
    writer = Writer(pg, hotel)
    writer.start()
    wait_for(lambda: writer.writes > 50, 20, "the writer to get going")
    replica = Replica(b.pub, b.service, [BOOKINGS, STAYS])
    replica.start()
    wait_for(lambda: writer.writes > 400, 30, "more concurrent writes")
    writer.stop()
    replica.wait_equal(database(conn))
    assert replica.gaps == [] and replica.resyncs == 0
    replica.close()
    b.stop()


def test_broker_survives_terminated_connections(broker, source, pg, hotel, conn):
    b = broker(hotel, [BOOKINGS, STAYS], source=source)
    replica = Replica(b.pub, b.service, [BOOKINGS, STAYS])
    replica.start()
    writer = Writer(pg, hotel)
    writer.start()
    for _ in range(3):
        wait_for(lambda: broker_backends(conn), 30, "the broker to (re)connect")
        done = writer.writes
        killed = q(conn, """SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                            WHERE application_name LIKE 'syncbroker%%'""")
        assert killed and all(ok for (ok,) in killed)
        wait_for(lambda: writer.writes > done + 50, 30, "writes while the broker reconnects")
        replica.pump(0)
    writer.stop()
    replica.wait_equal(database(conn), timeout=30)
    assert b.ping()["epoch"]
    replica.close()
    b.stop()


def test_broker_survives_postgres_restart(broker, source, pg, hotel, conn):
    b = broker(hotel, [BOOKINGS, STAYS], source=source)
    replica = Replica(b.pub, b.service, [BOOKINGS, STAYS])
    replica.start()
    writer = Writer(pg, hotel)
    writer.start()
    wait_for(lambda: writer.writes > 50, 20, "writes before the restart")
    pg.restart()
    after = pg.connect(hotel)
    done = writer.writes
    wait_for(lambda: writer.writes > done + 100, 30, "writes after the restart")
    writer.stop()
    replica.wait_equal(database(after), timeout=30)
    assert writer.failures >= 1, "the restart went unnoticed: did it happen?"
    replica.close()
    after.close()
    b.stop()



def test_postgres_crash_forces_a_resync_not_a_loss(broker, source, pg, hotel, conn):
    """The change log is UNLOGGED: crash recovery empties it. The broker must notice (its
    reader row is gone too) and start a new epoch, so clients resynchronise."""
    b = broker(hotel, [BOOKINGS, STAYS], source=source)
    replica = Replica(b.pub, b.service, [BOOKINGS, STAYS])
    replica.start()
    writer = Writer(pg, hotel)
    writer.start()
    wait_for(lambda: writer.writes > 50, 20, "writes before the crash")
    pg.crash_restart()
    after = pg.connect(hotel)
    done = writer.writes
    wait_for(lambda: writer.writes > done + 100, 30, "writes after the crash")
    writer.stop()
    replica.wait_equal(database(after), timeout=30)
    assert b.ping()["epoch"] != b.hello["epoch"], "no new epoch after the crash"
    assert replica.resyncs >= 1
    replica.close()
    after.close()
    b.stop()
