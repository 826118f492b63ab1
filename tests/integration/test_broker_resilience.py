"""Snapshots under concurrent writes, lost database connections and a PostgreSQL restart:
a Replica following docs/protocol.md ends up holding exactly the database."""
import random
import threading
import time

import psycopg2

from sbpeer import Replica, typed_rows

BOOKINGS = "public.bookings"
STAYS = "public.stays"


def q(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall() if cur.description else None


class Writer(threading.Thread):
    """Random inserts, updates and deletes until stopped; reconnects when the database goes
    away (a write that fails then simply did not happen)."""

    def __init__(self, pg, db, keys=300):
        super().__init__(daemon=True)
        self.pg, self.db, self.keys = pg, db, keys
        self.halt = threading.Event()
        self.writes = 0
        self.failures = 0
        self.rng = random.Random(7)

    def run(self):
        conn = None
        while not self.halt.is_set():
            try:
                if conn is None:
                    conn = self.pg.connect(self.db)
                    q(conn, "SET syncbroker.origin = 'writer'")
                self.write(conn)
                self.writes += 1
            except psycopg2.Error:
                self.failures += 1
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.05)
        if conn is not None:
            conn.close()

    def write(self, conn):
        k = self.rng.randint(1, self.keys)
        r = self.rng.random()
        if r < 0.5:
            q(conn, """INSERT INTO bookings (id, guest, nights, rate, paid) VALUES (%s, 'w', 1, 0.5, true)
                       ON CONFLICT (id) DO UPDATE SET nights = bookings.nights + 1""", (k,))
        elif r < 0.8:
            q(conn, "UPDATE bookings SET guest = md5(random()::text), paid = NOT paid WHERE id = %s",
              (k,))
        elif r < 0.95:
            q(conn, "DELETE FROM bookings WHERE id = %s", (k,))
        else:
            q(conn, "INSERT INTO stays VALUES (%s, current_date + %s) ON CONFLICT DO NOTHING",
              (k % 20, self.rng.randint(0, 5)))

    def stop(self):
        self.halt.set()
        self.join(30)


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
