"""What the fault scenarios share: sb_fault_client driven as a subprocess, the Python Replica
pumped on a thread, a ping-latency monitor, and the final comparison of every client's cache
with the database, row by row and version by version."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import sbpeer
from sbcluster import SANITIZER_MARKS, wait_until
from sbwriter import q

BOOKINGS = "public.bookings"
STAYS = "public.stays"
TABLES = [BOOKINGS, STAYS]
# A reader that never advances: pruning keeps every change made after it, so the database
# knows each entity's exact version for the comparison (a pruned entity is version 0, only
# a lower bound). seen_at in the future: it never times out either.
PIN_SQL = """INSERT INTO syncbroker.reader (name, position, seen_at)
             VALUES ('faults-pin', pg_current_snapshot(), now() + interval '1 day')
             ON CONFLICT (name) DO UPDATE SET position = excluded.position"""


def pin_change_log(conn):
    q(conn, PIN_SQL)


def db_state(conn, tables):
    """{(table, key tuple): (version, row)}: rows as the broker publishes them, version from
    syncbroker.entity (0 when its changes were pruned or emptied by a crash)."""
    rows = {}
    for t in tables:
        rows.update(sbpeer.typed_rows(conn, t))
    versions = {(table, tuple(pk)): v for table, pk, v in q(conn, """
        SELECT format('%%I.%%I', n.nspname, c.relname), e.pk, e.version
        FROM syncbroker.entity e JOIN pg_class c ON c.oid = e.relid
        JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT e.deleted""")}
    return {k: (versions.get(k, 0), row) for k, row in rows.items()}


def differences(got, expected):
    """None when got (same shape as db_state) holds exactly what expected does; else a short
    description. A database version of 0 is a lower bound: any version matches it."""
    wrong = []
    for k, (version, row) in expected.items():
        if k not in got:
            wrong.append(f"{k} missing")
        elif got[k][1] != row:
            wrong.append(f"{k} row {got[k][1]} != {row}")
        elif version and got[k][0] != version:
            wrong.append(f"{k} version {got[k][0]} != {version}")
    extra = [k for k in got if k not in expected]
    if not wrong and not extra:
        return None
    return (f"{len(wrong)} wrong/missing, e.g. {wrong[:3]}; "
            f"{len(extra)} extra, e.g. {extra[:3]}")


def key_tuple(key):
    return tuple(key) if isinstance(key, list) else (key,)


class FaultClient:
    """One sb_fault_client process. Its callback lines are kept in self.lines (each with its
    index "i"); tests wait on them as signals. stderr goes to a file."""

    def __init__(self, binary, broker, name, workdir, tables=None, heartbeat_ms=None, nice=0,
                 keys=None):
        """keys: (broker .pub path, own .key path) to connect with CURVE; None: plain."""
        self.name, self.broker = name, broker
        self.tables = list(tables) if tables else list(broker.tables)
        # nice(1) rather than a preexec_fn, which makes Popen fork instead of vfork.
        args = (["nice", "-n", str(nice)] if nice else []) + [
            binary, "--pub", broker.pub, "--service", broker.service, "--client-id", name]
        if heartbeat_ms:
            args += ["--heartbeat-ms", str(heartbeat_ms)]
        for t in tables or ():
            args += ["--table", t]
        if keys:
            args += ["--server-key", str(keys[0]), "--key", str(keys[1])]
        self.errfile = os.path.join(workdir, f"{name}.stderr")
        # As for the broker (conftest.py): LeakSanitizer's exit-time scan fails on a loaded
        # machine for no leak; the library's leaks are the unit tests' business.
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")
        with open(self.errfile, "wb") as err:
            self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=err, env=env)
        self.cond = threading.Condition()
        self.lines, self.dumps, self.gots = [], [], []
        self._rows, self.eof, self.bad_line = [], False, None
        self.killed = False
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self.proc.stdout:
            try:
                line = json.loads(raw)
            except ValueError:
                self.bad_line = raw
                continue
            with self.cond:
                ev = line["ev"]
                if ev == "row":
                    self._rows.append(line)
                    continue
                if ev == "end":
                    self.dumps.append(self._rows)
                    self._rows = []
                elif ev == "got":
                    self.gots.append(line)
                else:
                    line["i"] = len(self.lines)
                    self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def describe(self):
        with open(self.errfile, errors="replace") as f:
            err = f.read()[-2000:]
        recent = [ln for ln in self.lines if ln["ev"] != "log"][-15:]
        logs = [ln["msg"] for ln in self.lines if ln["ev"] == "log"][-10:]
        return f"{self.name}: events {recent}; last log lines {logs}; stderr: {err!r}"

    def mark(self):
        with self.cond:
            return len(self.lines)

    def events(self, ev, start=0):
        with self.cond:
            return [ln for ln in self.lines[start:] if ln["ev"] == ev]

    def _wait(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                value = pred()
                if value is not None:
                    return value
                if self.eof:
                    raise AssertionError(f"{self.name} exited ({self.proc.poll()}) while "
                                         f"waiting for {what}: {self.describe()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout}s waiting for {what}: "
                                         f"{self.describe()}")
                self.cond.wait(left)

    def wait_event(self, ev, start=0, timeout=30):
        """The first line of kind ev at index >= start."""
        return self._wait(lambda: next((ln for ln in self.lines[start:] if ln["ev"] == ev), None),
                          timeout, f"{self.name} to report {ev!r}")

    def _command(self, text):
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()

    def dump(self, timeout=30):
        """The whole cache: {(table, key tuple): (version, row)}."""
        with self.cond:
            n = len(self.dumps)
            self._command("dump")
        rows = self._wait(lambda: self.dumps[n] if len(self.dumps) > n else None, timeout,
                          f"{self.name}'s dump")
        return {(r["table"], key_tuple(r["key"])): (r["version"], r["row"]) for r in rows}

    def get(self, table, key, timeout=10):
        """The cached (version, row) of one entity, or None."""
        with self.cond:
            n = len(self.gots)
            self._command(" ".join(["get", table, *map(str, key)]))
        got = self._wait(lambda: self.gots[n] if len(self.gots) > n else None, timeout,
                         f"{self.name}'s answer to get")
        return (got["version"], got["row"]) if got["found"] else None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def kill(self):
        self.killed = True
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        """quit on stdin; a clean exit is 0 within 10 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # in case a test left it stopped
            try:
                self._command("quit")
                self.proc.wait(10)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
                return f"{self.name} did not exit on quit"
        self.reader.join(10)
        if not self.killed and self.proc.returncode != 0:
            return f"{self.name} exited {self.proc.returncode}: {self.describe()}"
        if self.bad_line is not None:
            return f"{self.name} printed a line that is not JSON: {self.bad_line!r}"
        return None

    def sanitizer_report(self):
        with open(self.errfile, errors="replace") as f:
            text = f.read()
        return next((text[-6000:] for mark in SANITIZER_MARKS if mark in text), None)


class ReplicaThread(threading.Thread):
    """Pumps a started sbpeer.Replica until stop(). A request the broker does not answer
    (it is down) raises TimeoutError inside pump(): the Replica simply tries again at the
    next message, as a client does. Anything else is a failure, raised by stop()."""

    def __init__(self, replica):
        super().__init__(daemon=True)
        self.replica = replica
        self.halt = threading.Event()
        self.error = None
        self.timeouts = 0

    def run(self):
        while not self.halt.is_set():
            try:
                self.replica.pump(0.05)
            except TimeoutError:
                self.timeouts += 1
            except Exception as e:  # noqa: BLE001 - handed to the test thread by stop()
                self.error = e
                return

    def stop(self):
        self.halt.set()
        self.join(30)
        if self.error is not None:
            raise AssertionError(f"the Replica failed: {self.error!r}") from self.error


class PingMonitor:
    """pingmon.py in a process of its own, pinging every `every` s; `latencies` collects the
    round trips, `slow` those over `limit` s, `sent` counts pings sent (printed just before
    sending: read back here possibly after the broker counted it)."""

    def __init__(self, endpoint, every=0.02, limit=0.1):
        self.limit = limit
        self.latencies, self.sent = [], 0
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pingmon.py")
        self.proc = subprocess.Popen([sys.executable, script, endpoint, str(every)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            if line.strip() == "sent":
                self.sent += 1
            else:
                self.latencies.append(float(line))

    @property
    def slow(self):
        return [t for t in self.latencies if t > self.limit]

    def stop(self):
        self.proc.stdin.close()
        self.proc.wait(10)
        self.reader.join(10)


def wait_seq(broker, seq, timeout, what):
    """Waits until the broker has published up to seq (its stats)."""
    return wait_until(lambda: broker.ping()["seq"] >= seq, timeout, what, interval=0.05)
