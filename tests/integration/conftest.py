"""Fixtures for the integration tests: a private PostgreSQL 15 cluster per pytest process
(`pg`) and a factory that runs the real broker against it (`broker`). Everything listens on
127.0.0.1 on ports picked at run time and is stopped at the end, also on failure."""
import atexit
import os
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import sbpeer  # noqa: E402
# wait_until is imported by test modules from here.
from sbcluster import SANITIZER_MARKS, PgCluster, free_port, wait_until  # noqa: E402,F401

SOURCE_DIR = os.environ.get("SB_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD_DIR = os.environ.get("SB_BUILD_DIR", os.path.join(SOURCE_DIR, "build-test"))


@pytest.fixture(scope="session")
def pg():
    cluster = PgCluster()
    atexit.register(cluster.destroy)  # also when pytest dies between here and teardown
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def db(pg):
    return pg.create_db()


@pytest.fixture
def conn(pg, db):
    c = pg.connect(db)
    yield c
    c.close()


def terminate(proc, timeout=10):
    """SIGTERM proc (started with start_new_session); SIGKILL its group if it is still there
    after timeout s. False when it had to be killed."""
    if proc.poll() is not None:
        return True
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return False


class Broker:
    """The real syncbroker on its own ports, stderr captured to a file. It connects as the
    login role sb_broker, only a member of syncbroker_reader; the tests' `conn` is the
    superuser."""

    def __init__(self, pg, workdir, dbname, tables, source, debounce_ms, heartbeat_ms, extra,
                 curve=None):
        self.tables = list(tables)
        self.curve = curve  # the keys ping() uses (sbpeer.use_curve), for a CURVE broker
        self.pub = f"tcp://127.0.0.1:{free_port()}"
        self.service = f"tcp://127.0.0.1:{free_port()}"
        sections = {
            "broker": {"plugin_dir": os.path.join(BUILD_DIR, "plugins"),
                       "debounce_ms": debounce_ms, "heartbeat_ms": heartbeat_ms,
                       "log_level": os.environ.get("SB_TEST_LOG_LEVEL", "info")},
            # Continuation lines keep a long list under inih's line limit.
            # As the least-privileged broker role (sbcluster.BROKER_ROLE), not the superuser.
            "database": {"conninfo": pg.broker_conninfo(dbname),
                         "tables": ",\n    ".join(self.tables)},
            "source.main": {"plugin": source},
            "transport.zmq": {"plugin": "transport_zmq", "pub": self.pub, "service": self.service},
        }
        for section, values in (extra or {}).items():
            sections.setdefault(section, {}).update(values)
        self.config = os.path.join(workdir, "syncbroker.ini")
        with open(self.config, "w") as f:
            for section, values in sections.items():
                f.write(f"[{section}]\n")
                for key, value in values.items():
                    f.write(f"{key} = {value}\n")
                f.write("\n")
        self.logfile = os.path.join(workdir, "syncbroker.log")
        self.proc = None
        self.start()

    def start(self):
        binary = os.path.join(BUILD_DIR, "broker", "syncbroker")
        assert os.access(binary, os.X_OK), f"{binary} is missing: build the broker first"
        # SB_BROKER_WRAPPER runs the broker under a tool, e.g. "valgrind --error-exitcode=99".
        wrapper = os.environ.get("SB_BROKER_WRAPPER", "").split()
        # LeakSanitizer's exit-time scan needs ptrace and fails now and then on a loaded
        # machine ("does not work under ptrace"), failing the run for no leak: the daemon's
        # leaks are checked by valgrind instead (scripts/test's last stage); ASan and UBSan
        # stay on. ASan's quarantine keeps up to 256 MB of freed memory resident, which would
        # hide what the abuse tests bound (the broker's peak RSS): 16 MB still catches a
        # use-after-free of anything recently freed.
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:quarantine_size_mb=16")
        with open(self.logfile, "ab") as log:
            self.proc = subprocess.Popen(wrapper + [binary, "-c", self.config], stdout=log,
                                         stderr=log, start_new_session=True, env=env)

        def answers():
            if self.proc.poll() is not None:
                raise AssertionError(f"syncbroker exited {self.proc.returncode}:\n{self.log}")
            try:
                return sbpeer.request(self.service, {"op": "ping"}, timeout=0.5,
                                      curve=self.curve)[0]
            except TimeoutError:
                return None
        self.hello = wait_until(answers, 60 if wrapper else 30, "syncbroker to answer ping")

    @property
    def log(self):
        with open(self.logfile, errors="replace") as f:
            return f.read()

    def ping(self, timeout=5):
        return sbpeer.request(self.service, {"op": "ping"}, timeout=timeout, curve=self.curve)[0]

    def stop(self, check=True):
        """SIGTERM; a clean stop exits 0 within 10 s (SIGKILL otherwise)."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if not terminate(proc) and check:
            raise AssertionError(f"syncbroker ignored SIGTERM for 10 s:\n{self.log[-4000:]}")
        if check:
            assert proc.returncode == 0, f"syncbroker exited {proc.returncode}:\n{self.log[-4000:]}"

    def peak_rss_kb(self):
        """The broker's peak resident set (VmHWM, kB) since it started: what an abuse test
        bounds, since the allocator keeps freed memory and the current RSS hides peaks."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        raise AssertionError("no VmHWM in /proc/<broker>/status")

    def ping_ms(self, timeout=5):
        """One ping on a new connection; its round trip in milliseconds."""
        start = time.monotonic()
        self.ping(timeout)
        return (time.monotonic() - start) * 1000

    def ping_best_ms(self):
        """The best of three pings: one scheduling hiccup of a loaded machine is not taken
        for a stuck loop."""
        return min(self.ping_ms() for _ in range(3))

    def assert_healthy(self, conn):
        """What every abuse test checks afterwards: ping answers within 100 ms (best of three)
        and a snapshot of every table equals the database."""
        best = self.ping_best_ms()
        assert best < 100, f"ping took {best:.0f} ms"
        replica = sbpeer.Replica(self.pub, self.service, self.tables)
        try:
            replica.snapshot()
            expected = {}
            for table in self.tables:
                expected.update(sbpeer.typed_rows(conn, table))
            assert replica.rows == expected
        finally:
            replica.close()

    def sanitizer_report(self):
        text = self.log
        return next((text for mark in SANITIZER_MARKS if mark in text), None)


@pytest.fixture
def broker(pg, tmp_path):
    """Factory: broker(db, tables=[...], source=..., debounce_ms=0, heartbeat_ms=200, extra=...,
    curve=...)."""
    started = []

    def make(dbname, tables, source="source_poll", debounce_ms=0, heartbeat_ms=200, extra=None,
             curve=None):
        workdir = tmp_path / f"broker{len(started)}"
        workdir.mkdir()
        if source == "source_notify":
            # The owner's one-time step for source_notify (the broker runs no DDL).
            pg.sql(dbname, "SELECT syncbroker.enable_notify()")
        b = Broker(pg, str(workdir), dbname, tables, source, debounce_ms, heartbeat_ms, extra,
                   curve)
        started.append(b)
        return b

    yield make
    reports = []
    for b in started:
        b.stop(check=False)
        report = b.sanitizer_report()
        if report:
            reports.append(report[-6000:])
    if reports:
        pytest.fail("sanitizer report in syncbroker's stderr:\n" + "\n----\n".join(reports))


@pytest.fixture(params=["source_poll", "source_notify"])
def source(request):
    """Broker tests run against both source plugins."""
    return request.param


HOTEL_SQL = """
CREATE TABLE public.bookings (
    id int PRIMARY KEY, guest text, nights int, rate float8, paid bool, note text,
    amount numeric(10, 2), arrives timestamptz, small smallint, big bigint, ratio real);
CREATE TABLE public.stays (room int, day date, note text, PRIMARY KEY (room, day));
SELECT syncbroker.track('public.bookings');
SELECT syncbroker.track('public.stays');
"""


@pytest.fixture
def hotel(pg, db, conn):
    """A database with public.bookings (many column types) and public.stays (composite key)."""
    with conn.cursor() as cur:
        cur.execute(HOTEL_SQL)
    return db
