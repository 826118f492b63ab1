"""A background writer for tests under faults: random inserts, updates and deletes over a few
hundred keys of public.bookings (and a few public.stays rows) as fast as one connection goes,
reconnecting when the database goes away (a write that fails then simply did not happen)."""
import random
import threading
import time

import psycopg2


def q(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall() if cur.description else None


class Writer(threading.Thread):
    """Writes until stop(). durable=True waits for each commit's WAL write (a session-level
    synchronous_commit = on on a cluster running with it off), so a PostgreSQL crash cannot
    take back a write the broker already published. rate: at most that many writes per
    second (None: as fast as one connection goes)."""

    def __init__(self, pg, db, keys=300, durable=False, rate=None):
        super().__init__(daemon=True)
        self.pg, self.db, self.keys, self.durable = pg, db, keys, durable
        self.interval = 1.0 / rate if rate else 0.0
        self.halt = threading.Event()
        self.writes = 0
        self.failures = 0
        self.rng = random.Random(7)
        self.started_at = self.stopped_at = None

    def run(self):
        self.started_at = next_at = time.monotonic()
        conn = None
        while not self.halt.is_set():
            if self.interval:
                # Pacing, not waiting for anything: a write falling behind is not made up.
                next_at = max(next_at + self.interval, time.monotonic() - self.interval)
                if self.halt.wait(max(0.0, next_at - time.monotonic())):
                    break
            try:
                if conn is None:
                    conn = self.pg.connect(self.db)
                    q(conn, "SET syncbroker.origin = 'writer'")
                    if self.durable:
                        q(conn, "SET synchronous_commit = on")
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
        self.stopped_at = time.monotonic()

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

    def wait_writes(self, n, timeout, what):
        """Waits until n more writes than now succeeded (the writer is making progress)."""
        target = self.writes + n
        deadline = time.monotonic() + timeout
        while self.writes < target:
            assert self.is_alive(), "the writer thread died"
            assert time.monotonic() < deadline, \
                f"timed out after {timeout}s waiting for {what} ({self.writes}/{target} writes)"
            time.sleep(0.02)

    def rate(self):
        """Successful writes per second over the writer's run so far."""
        end = self.stopped_at or time.monotonic()
        return self.writes / max(end - self.started_at, 1e-9)

    def stop(self):
        self.halt.set()
        self.join(30)
