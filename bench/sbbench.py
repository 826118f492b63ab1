"""Shared pieces of the benchmark drivers (bench/latency, bench/run): a private PostgreSQL 15
cluster (fsync on unless asked otherwise), the broker under a given configuration, service
requests, process sampling and report helpers. Everything listens on 127.0.0.1 on ports picked
at run time and is stopped at exit, also on failure. Figures only: nothing here asserts a time."""
import atexit
import datetime
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import msgpack
import zmq

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.dirname(BENCH_DIR)
sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "support"))
import sbcluster  # noqa: E402
# PG_BIN and free_port are used by the drivers through this module.
from sbcluster import PG_BIN, SANITIZER_MARKS, free_port, wait_until  # noqa: E402,F401
# Brokers that exited badly or printed a sanitizer report; the drivers exit 1 if any.
PROBLEMS = []


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def build_dir():
    return os.environ.get("SB_BUILD_DIR", os.path.join(SOURCE_DIR, "build-bench"))


def build(extra_targets=()):
    """Configures and builds the Release tree the benchmarks use (SB_BUILD_DIR or build-bench)."""
    bdir = build_dir()
    if not os.path.exists(os.path.join(bdir, "CMakeCache.txt")):
        subprocess.run(["cmake", "-S", SOURCE_DIR, "-B", bdir, "-DCMAKE_BUILD_TYPE=Release",
                        "-DSB_BUILD_TESTS=OFF"], check=True, stdout=subprocess.DEVNULL)
    targets = ["syncbroker", "source_poll", "source_notify", "transport_zmq", *extra_targets]
    subprocess.run(["cmake", "--build", bdir, "-j2", "--target", *targets], check=True,
                   stdout=subprocess.DEVNULL)
    return bdir


def PgCluster(workdir, fast=False):
    """The shared private cluster (tests/support/sbcluster.py) with fsync on unless fast, a
    larger shared_buffers, under workdir, stopped at exit."""
    pg = sbcluster.PgCluster(parent=workdir, fast=fast, settings=["shared_buffers=256MB"])
    atexit.register(pg.destroy)
    return pg


def key_line(path):
    """The Z85 key of a key file (docs/security.md, "Key files"): its line that is neither
    blank nor a comment."""
    with open(path) as f:
        return next(ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#"))


class Curve:
    """Key pairs made by this run with sync-keygen: the broker's, and one client `bench`
    allowed every table and `stats` (admin) in a clients file. What a CURVE broker's
    transport section needs, and what its clients do, as docs/security.md sets them up."""

    def __init__(self, workdir):
        self.dir = tempfile.mkdtemp(prefix="curve-", dir=workdir)  # sync-keygen never overwrites
        for name in ("broker", "bench"):
            subprocess.run([os.path.join(build_dir(), "clients", "sync-keygen"), name],
                           cwd=self.dir, check=True, capture_output=True)
        self.server_secret = os.path.join(self.dir, "broker.key")
        self.server_key = os.path.join(self.dir, "broker.pub")
        self.key = os.path.join(self.dir, "bench.key")
        self.clients_file = os.path.join(self.dir, "clients.ini")
        with open(self.clients_file, "w") as f:
            f.write(f"[bench]\nkey = {key_line(os.path.join(self.dir, 'bench.pub'))}\n"
                    "tables = *\nadmin = on\n")

    def transport_options(self):
        return {"curve_secret_key_file": self.server_secret,
                "curve_public_key_file": self.server_key, "clients_file": self.clients_file}

    def client_args(self):
        """The bench clients' and the tools' options."""
        return ["--server-key", self.server_key, "--key", self.key]

    def client(self, sock):
        """Makes a pyzmq socket a CURVE client of the broker (before connect)."""
        secret = key_line(self.key).encode()
        sock.curve_secretkey = secret
        sock.curve_publickey = zmq.curve_public(secret)
        sock.curve_serverkey = key_line(self.server_key).encode()


def request(endpoint, body, timeout=10.0, curve=None):
    """One service request over a DEALER (a CURVE client with curve); returns the reply's
    frames, decoded."""
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    if curve:
        curve.client(s)
    s.connect(endpoint)
    try:
        s.send_multipart([b"", msgpack.packb(body)])
        if not s.poll(int(timeout * 1000)):
            raise TimeoutError(f"no reply to {body} from {endpoint}")
        frames = s.recv_multipart()
        return [msgpack.unpackb(f, raw=False, strict_map_key=False) for f in frames if f]
    finally:
        s.close()


class Broker:
    """syncbroker from the benchmark build, on its own ports, stderr to a file in workdir;
    with curve (a Curve), both sockets run CURVE and its requests here use the bench key."""

    def __init__(self, workdir, conninfo, tables, source, source_opts=None, debounce_ms=0,
                 heartbeat_ms=200, plugin_dir=None, extra_transport=None, curve=None):
        bdir = build_dir()
        self.curve = curve
        self.pub = f"tcp://127.0.0.1:{free_port()}"
        self.service = f"tcp://127.0.0.1:{free_port()}"
        name = f"broker-{source}-{int(time.monotonic() * 1000)}"
        self.config = os.path.join(workdir, f"{name}.ini")
        self.logfile = os.path.join(workdir, f"{name}.log")
        transport = {"plugin": "transport_zmq", "pub": self.pub, "service": self.service}
        transport.update(curve.transport_options() if curve else {})
        transport.update(extra_transport or {})
        sections = {
            "broker": {"plugin_dir": plugin_dir or os.path.join(bdir, "plugins"),
                       "debounce_ms": debounce_ms, "heartbeat_ms": heartbeat_ms,
                       "log_level": "warn"},
            "database": {**({"conninfo": conninfo} if conninfo else {}),
                         "tables": ",\n    ".join(tables)},
            "source.main": {"plugin": source, **(source_opts or {})},
            "transport.zmq": transport,
        }
        with open(self.config, "w") as f:
            for section, values in sections.items():
                f.write(f"[{section}]\n")
                for key, value in values.items():
                    f.write(f"{key} = {value}\n")
        with open(self.logfile, "ab") as logf:
            self.proc = subprocess.Popen([os.path.join(bdir, "broker", "syncbroker"), "-c",
                                          self.config], stdout=logf, stderr=logf,
                                         start_new_session=True)
        atexit.register(self.stop)

        def answers():
            if self.proc.poll() is not None:
                raise RuntimeError(f"syncbroker exited {self.proc.returncode}: "
                                   f"{open(self.logfile).read()[-2000:]}")
            try:
                return request(self.service, {"op": "ping"}, timeout=0.5, curve=curve)
            except TimeoutError:
                return None
        wait_until(answers, 30, "syncbroker to answer ping")

    @property
    def pid(self):
        return self.proc.pid

    def stats(self):
        return request(self.service, {"op": "stats"}, curve=self.curve)[0]

    def stop(self):
        if self.proc.returncode is not None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        with open(self.logfile, errors="replace") as f:
            text = f.read()
        if self.proc.returncode != 0 or any(m in text for m in SANITIZER_MARKS):
            PROBLEMS.append(f"syncbroker ({self.config}) exited {self.proc.returncode}:\n"
                            f"{text[-3000:]}")
            log(PROBLEMS[-1])


class ProcSampler:
    """CPU share and RSS of one process from /proc/PID/stat and /proc/PID/status."""

    def __init__(self, pid):
        self.pid = pid
        self.hz = os.sysconf("SC_CLK_TCK")
        self.t0 = time.monotonic()
        self.cpu0 = self._cpu()

    def _cpu(self):
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self.hz  # utime + stime, s

    def rss_kb(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return -1

    def cpu_share(self):
        """CPU seconds per wall second since creation (1.0 = one core busy)."""
        return (self._cpu() - self.cpu0) / max(time.monotonic() - self.t0, 1e-9)


def percentile(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(p * (len(v) - 1) + 0.5))]


def parse_result(stdout):
    """The RESULT line of a bench_* program as a dict (numbers converted)."""
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            out = {}
            for item in line.split()[1:]:
                k, _, v = item.partition("=")
                try:
                    out[k] = float(v) if "." in v or "e" in v else int(v)
                except ValueError:
                    out[k] = v
            return out
    raise RuntimeError(f"no RESULT line in:\n{stdout}")


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    return {"nproc": os.cpu_count(), "cpu": model, "ram_gb": round(mem_kb / 1048576, 1)}


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def results_dir(date=None):
    d = os.path.join(BENCH_DIR, "results", date or datetime.date.today().isoformat())
    os.makedirs(d, exist_ok=True)
    return d


def md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def workdir():
    d = tempfile.mkdtemp(prefix="sb-bench-")
    os.chmod(d, 0o755)
    atexit.register(shutil.rmtree, d, True)
    return d


def gnuplot(script):
    """Runs a gnuplot script; returns False (and says why) when gnuplot is missing or fails."""
    if not shutil.which("gnuplot"):
        log("gnuplot not found: no plots (apt-get install gnuplot-nox)")
        return False
    r = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True)
    if r.returncode != 0:
        log(f"gnuplot failed: {r.stderr.strip()[:500]}")
    return r.returncode == 0
