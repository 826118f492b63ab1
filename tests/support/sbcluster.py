"""A private PostgreSQL 15 cluster for the integration tests and the benchmarks, and the small
helpers both need. Everything listens on 127.0.0.1 on a port picked at run time; as root the
server runs as the unprivileged user sbpg (PostgreSQL refuses root). The caller stops it
(destroy()), also on failure."""
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import psycopg2

SOURCE_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PG_BIN = "/usr/lib/postgresql/15/bin"
PG_USER = "sbpg"
# The login role brokers connect as: a member of syncbroker_reader and nothing else
# (docs/capture.md, "Roles and privileges"). Created per cluster by migrate().
BROKER_ROLE = "sb_broker"
# What a sanitizer or valgrind prints when it found something: a broker log holding one failed.
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer",
                   "definitely lost in", "Invalid read", "Invalid write",
                   "uninitialised value")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond, timeout, what, interval=0.02):
    """Polls cond() until it returns a truthy value (returned) or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def process_states():
    """(state letter, process group) of every process, from /proc."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        out.append((fields[0], int(fields[2])))
    return out


def server_user():
    """As root, the unprivileged user sbpg (created once); otherwise None (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                        "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", PG_USER],
                       check=True)
    return PG_USER


class PgCluster:
    """A throw-away cluster: superuser `postgres`, trust auth, wal_level=logical, in a new
    folder under `parent` (default: the system's temporary folder). fast=True turns fsync,
    synchronous_commit and full_page_writes off (tests); benchmarks keep them on. `settings`
    adds server settings ("name=value")."""

    def __init__(self, parent=None, fast=True, settings=()):
        self.user = server_user()
        self.dir = tempfile.mkdtemp(prefix="sb-pg-", dir=parent)
        os.chmod(self.dir, 0o755)
        self.datadir = os.path.join(self.dir, "data")
        self.logfile = os.path.join(self.dir, "log")
        self.port = free_port()
        self.fast = fast
        self.settings = ["listen_addresses=127.0.0.1", f"port={self.port}",
                         f"unix_socket_directories={self.dir}", "max_connections=200",
                         "wal_level=logical", *settings]
        if fast:
            self.settings += ["fsync=off", "synchronous_commit=off", "full_page_writes=off"]
        self.proc = None
        self._names = itertools.count(1)
        if self.user:
            shutil.chown(self.dir, self.user, self.user)
        subprocess.run([f"{PG_BIN}/initdb", "-D", self.datadir, "-A", "trust", "-U", "postgres",
                        "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
                       check=True, capture_output=True, cwd=self.dir, **self._as_user())
        self.start()

    def _as_user(self):
        return {"user": self.user, "group": self.user, "extra_groups": []} if self.user else {}

    def describe(self):
        return ("fsync=off, synchronous_commit=off" if self.fast
                else "fsync=on, synchronous_commit=on")

    def start(self):
        args = [f"{PG_BIN}/postgres", "-D", self.datadir]
        for s in self.settings:
            args += ["-c", s]
        with open(self.logfile, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True, cwd=self.dir, **self._as_user())

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"postgres exited {self.proc.returncode}:\n{self.log()}")
            try:
                psycopg2.connect(self.conninfo("postgres"), connect_timeout=2).close()
                return True
            except psycopg2.OperationalError:
                return False
        wait_until(ready, 60, "PostgreSQL to accept connections", interval=0.05)

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)  # fast shutdown
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def restart(self):
        self.stop()
        self.start()

    def crash_restart(self):
        """Immediate shutdown (no checkpoint: recovery runs at start, as after a crash)."""
        self.proc.send_signal(signal.SIGQUIT)
        self.proc.wait(30)
        self.start()

    def kill_restart(self):
        """kill -9 of the postmaster, then a start: its backends exit on their own once they
        notice (the new postmaster refuses to start beside them), and recovery runs as after
        a crash (UNLOGGED tables come back empty)."""
        group = self.proc.pid  # start_new_session: the postmaster leads its children's group
        self.proc.kill()
        self.proc.wait(30)

        def children_gone():  # zombies count as gone: whoever adopted them may not reap
            return not any(state != "Z" and pgid == group for state, pgid in process_states())
        wait_until(children_gone, 30, "the killed postmaster's backends to exit", interval=0.05)
        self.start()

    def destroy(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self):
        with open(self.logfile, errors="replace") as f:
            return f.read()[-4000:]

    def conninfo(self, dbname, user="postgres"):
        """The superuser's by default; user=BROKER_ROLE for what a broker runs as."""
        return f"host=127.0.0.1 port={self.port} user={user} dbname={dbname}"

    def broker_conninfo(self, dbname):
        return self.conninfo(dbname, user=BROKER_ROLE)

    def connect(self, dbname, **kw):
        conn = psycopg2.connect(self.conninfo(dbname), **kw)
        conn.autocommit = True
        return conn

    def migrate(self, dbname):
        subprocess.run([os.path.join(SOURCE_DIR, "scripts", "migrate"), self.conninfo(dbname)],
                       check=True, capture_output=True, text=True)
        # The migration created the group role (roles are per cluster, like this one).
        self.sql(dbname, f"""DO $$ BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{BROKER_ROLE}') THEN
                CREATE ROLE {BROKER_ROLE} LOGIN IN ROLE syncbroker_reader;
            END IF; END $$""")

    def create_db(self, name=None):
        """A fresh database with sql/ applied; returns its name (made up when None)."""
        name = name or f"t{os.getpid()}_{next(self._names)}"
        conn = self.connect("postgres")
        try:
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        self.migrate(name)
        return name

    def sql(self, dbname, text):
        """Runs text (autocommit); the last statement's rows, or None."""
        conn = self.connect(dbname)
        try:
            with conn.cursor() as cur:
                cur.execute(text)
                return cur.fetchall() if cur.description else None
        finally:
            conn.close()
