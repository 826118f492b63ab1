"""bench/run: every scenario of issue 5 against a private PostgreSQL and broker, each beside its
floor measured in the same run, written to <out>/report.md with PNG plots (gnuplot).
Figures only: nothing here passes or fails on time."""
import argparse
import math
import os
import signal
import statistics
import subprocess
import sys
import threading
import time

import msgpack
import zmq

import latency_bench
import sbbench

PROFILES = {
    # latency: seconds per case, rates; throughput: seconds, subscriber counts; snapshot rows and
    # repeats; pgbench seconds and scale; soak seconds, changes/s and subscribed clients.
    "smoke": dict(lat_s=1, rates=[100], tp_s=1, subs=[1, 10], snap_rows=2000, snap_n=1,
                  pgb_s=3, pgb_scale=1, soak_s=3, soak_rows=100, soak_changes=300, soak_clients=2,
                  sample=0.25),
    "quick": dict(lat_s=3, rates=[100, 1000, 5000], tp_s=3, subs=[1, 10, 100],
                  snap_rows=100000, snap_n=3, pgb_s=10, pgb_scale=10, soak_s=30, soak_rows=1000,
                  soak_changes=2000, soak_clients=20, sample=0.5),
    "full": dict(lat_s=10, rates=[100, 1000, 5000], tp_s=10, subs=[1, 10, 100],
                 snap_rows=100000, snap_n=5, pgb_s=60, pgb_scale=10, soak_s=600, soak_rows=10000,
                 soak_changes=2000, soak_clients=20, sample=2),
}
# The soak's table: soak_rows keys (every key is touched within the warm-up), NOTIFY on.
SOAK_SQL = """
CREATE TABLE public.soak (id int PRIMARY KEY, n int NOT NULL DEFAULT 0, note text);
INSERT INTO public.soak (id, note) SELECT g, 'room ' || g FROM generate_series(1, %(rows)d) g;
SELECT syncbroker.track('public.soak');
SELECT syncbroker.enable_notify();
"""
SOAK_SCRIPT = """\\set id random(1, %(rows)d)
UPDATE public.soak SET n = n + 1 WHERE id = :id;
"""


def soak_warmup(p):
    """Seconds until every soak key has most likely been written (twice the expected time to
    collect n coupons, n ln n / rate), at least 15% of the soak, at most half of it."""
    n = p["soak_rows"]
    collect = 2 * n * math.log(n) / p["soak_changes"]
    return min(max(0.15 * p["soak_s"], collect), 0.5 * p["soak_s"])


def exe(name):
    return os.path.join(sbbench.build_dir(), "bench", name)


def tool(name):
    return os.path.join(sbbench.build_dir(), "clients", name)


# ---- b. throughput ------------------------------------------------------------------------

def broker_throughput(work, p, curve=None):
    """source_synthetic -> core -> transport_zmq -> N subscribers, per count in p["subs"]; with
    curve (an sbbench.Curve) CURVE on both sockets."""
    # No conninfo: the synthetic source declares no [database] keys, and one would be refused.
    broker = sbbench.Broker(work, None, ["public.synth"],
                            "source_synthetic", {}, debounce_ms=0, heartbeat_ms=1000, curve=curve)
    results = []
    try:
        for n in p["subs"]:
            sbbench.log(f"throughput: broker{' (CURVE)' if curve else ''} -> {n} subscribers "
                        f"for {p['tp_s']} s")
            r = subprocess.run([exe("bench_throughput"), "--pub", broker.pub, "--service",
                                broker.service, "--subs", str(n), "--seconds", str(p["tp_s"]),
                                *(curve.client_args() if curve else [])],
                               capture_output=True, text=True, check=True)
            results.append(sbbench.parse_result(r.stdout))
    finally:
        broker.stop()
    return results


def floor_throughput(p, res, curve=None):
    """A bare libzmq PUB with the broker's message sizes to res["subs"] subscribers; with
    curve, a CURVE server (no ZAP handler) and CURVE subscribers."""
    n = res["subs"]
    sbbench.log(f"throughput: floor (bare libzmq{', CURVE' if curve else ''}) -> {n} subscribers")
    keys = curve.client_args() + ["--floor-key", curve.server_secret] if curve else []
    r = subprocess.run([exe("bench_throughput"), "--floor", "--subs", str(n), "--seconds",
                        str(p["tp_s"]), "--topic-len", str(round(res["topic_len"])),
                        "--body-len", str(round(res["body_len"])), *keys],
                       capture_output=True, text=True, check=True)
    return sbbench.parse_result(r.stdout)


def ratio(a, b):
    return f"{a / b * 100:.0f}%" if b else "-"


def missed(res):
    """What the broker published that the mean subscriber did not get, as a percentage."""
    return f"{max(0.0, 1 - res['per_sub'] / res['published']) * 100:.0f}%" \
        if res["published"] > 0 else "-"


def throughput(work, p, out):
    """The broker and the bare PUB->SUB floor, each in plain text and with CURVE."""
    curve = sbbench.Curve(work)
    plain, with_curve = broker_throughput(work, p), broker_throughput(work, p, curve)
    rows, curve_rows, series = [], [], []
    for res, cres in zip(plain, with_curve):
        n = res["subs"]
        fl, cfl = floor_throughput(p, res), floor_throughput(p, res, curve)
        rows.append([n, f"{res['published']:.0f}", f"{res['per_sub']:.0f}", f"{res['min_sub']:.0f}",
                     missed(res), f"{fl['published']:.0f}", f"{fl['per_sub']:.0f}",
                     ratio(res["per_sub"], fl["per_sub"]),
                     f"{res['topic_len']:.0f} + {res['body_len']:.0f}"])
        curve_rows.append([n, f"{res['per_sub']:.0f}", f"{cres['per_sub']:.0f}",
                           ratio(cres["per_sub"], res["per_sub"]), missed(cres),
                           f"{fl['per_sub']:.0f}", f"{cfl['per_sub']:.0f}",
                           ratio(cfl["per_sub"], fl["per_sub"])])
        series.append((n, res["per_sub"], fl["per_sub"], cres["per_sub"], cfl["per_sub"]))
    data = os.path.join(out, "raw", "throughput.dat")
    with open(data, "w") as f:
        for n, *figures in series:
            f.write(f"{n} " + " ".join(f"{x:.0f}" for x in figures) + "\n")
    png = os.path.join(out, "throughput.png")
    plots = []
    if sbbench.gnuplot(f"""set terminal png noenhanced size 900,560
set output '{png}'
set title 'events delivered per subscriber per second'
set xlabel 'subscribers (log scale)'
set ylabel 'msgs/s per subscriber (log scale)'
set logscale xy
set grid
plot '{data}' using 1:2 with linespoints lw 2 title 'syncbroker (source_synthetic, debounce 0)', \\
     '{data}' using 1:3 with linespoints lw 2 title 'floor: bare libzmq PUB->SUB', \\
     '{data}' using 1:4 with linespoints lw 2 dt 2 title 'syncbroker, CURVE', \\
     '{data}' using 1:5 with linespoints lw 2 dt 2 title 'floor, CURVE'
"""):
        plots.append("throughput.png")
    table = sbbench.md_table(["subscribers", "broker published/s", "delivered/s per sub (mean)",
                              "min sub", "missed (over sndhwm)", "floor sent/s",
                              "floor delivered/s per sub", "delivered ratio vs floor",
                              "bytes topic + body"], rows)
    table += "\n\nCURVE on both sockets against plain text (same run, same sizes):\n\n"
    table += sbbench.md_table(["subscribers", "plain delivered/s per sub",
                               "CURVE delivered/s per sub", "CURVE vs plain",
                               "CURVE missed (over sndhwm)", "floor plain per sub",
                               "floor CURVE per sub", "floor CURVE vs plain"], curve_rows)
    text = ("One receiving thread polls every SUB socket (bench/bench_throughput.c) in both cases, "
            "so the receiver's cost is shared; on 2 cores the receiver competes with the "
            "publisher. `missed` = events the broker published that the mean subscriber did not "
            "get (ZeroMQ drops beyond `sndhwm` per subscriber; clients recover with `since`). The floor's "
            "publisher sends unthrottled, so its `sent/s` includes what ZeroMQ dropped; the "
            "comparison is delivered/s per subscriber. With CURVE (docs/security.md; keys made by "
            "the run, the bench client allowed every table) every message is encrypted once per "
            "subscriber; the CURVE floor is the same bare PUB as a CURVE server, its subscribers "
            "CURVE clients: what libzmq's encryption alone costs.")
    return table, text, plots


# ---- c. snapshot --------------------------------------------------------------------------

BOOKINGS_SQL = """
CREATE TABLE public.bookings (id int PRIMARY KEY, guest text, nights int, rate float8, paid bool,
    note text, amount numeric(10, 2), arrives timestamptz);
SELECT syncbroker.track('public.bookings');
"""


def snapshot_once(service):
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(service)
    t0 = time.monotonic()
    s.send_multipart([b"", msgpack.packb({"op": "snapshot", "tables": ["public.bookings"]})])
    if not s.poll(120000):
        raise TimeoutError("no snapshot reply in 120 s")
    frames = [f for f in s.recv_multipart() if f]
    elapsed = time.monotonic() - t0  # received; decoding is the client's business, as for COPY
    head = msgpack.unpackb(frames[0], raw=False)
    nrows = head.get("rows", -1)
    s.close()
    if "error" in head:
        raise RuntimeError(f"snapshot refused: {head}")
    return elapsed, sum(len(f) for f in frames), nrows


def snapshot(pg, work, p, out, lat_results):
    db = "snap"
    pg.create_db(db)
    latency_bench.setup(pg, db)
    pg.sql(db, BOOKINGS_SQL)
    sbbench.log(f"snapshot: inserting {p['snap_rows']} bookings")
    pg.sql(db, f"""INSERT INTO public.bookings
        SELECT g, 'guest ' || g, 1 + g % 14, 80 + g % 50, g % 2 = 0, repeat('n', 40),
               (g % 1000) * 1.5, now() + g * interval '1 hour'
        FROM generate_series(1, {p['snap_rows']}) g""")
    # Floor: the same rows straight out of PostgreSQL (COPY text), same run.
    conn = pg.connect(db)

    class Counter:
        n = 0

        def write(self, data):
            self.n += len(data)

    copy_times, sink = [], Counter()
    for _ in range(p["snap_n"]):
        sink.n = 0
        t0 = time.monotonic()
        conn.cursor().copy_expert("COPY public.bookings TO STDOUT", sink)
        copy_times.append(time.monotonic() - t0)
    conn.close()
    pg.sql(db, "SELECT syncbroker.enable_notify()")  # the latency cases may have turned it off
    broker = sbbench.Broker(work, pg.broker_conninfo(db), ["public.bookings", "public.bench_live"],
                            "source_notify", {}, debounce_ms=0)
    try:
        # Live events at 100 changes/s while snapshots run back to back.
        seconds = max(2, p["lat_s"] * 2)
        raw = os.path.join(out, "raw")
        lat = subprocess.Popen([exe("bench_latency"), "--conninfo", pg.conninfo(db), "--table",
                                "public.bench_live", "--zmq", broker.pub, "--rate", "100",
                                "--seconds", str(seconds), "--label", "during_snapshot",
                                "--raw", os.path.join(raw, "latency-during_snapshot-100.txt")],
                               stdout=subprocess.PIPE, text=True)
        snaps = [snapshot_once(broker.service)]
        while lat.poll() is None and len(snaps) < max(p["snap_n"], 1) * 10:
            snaps.append(snapshot_once(broker.service))
        live = sbbench.parse_result(lat.communicate()[0])
    finally:
        broker.stop()
    base = next((r for r in lat_results if r["case"] == "source_notify" and r["rate"] == 100), None)
    times = [s[0] for s in snaps]
    rows = [["syncbroker snapshot (DEALER, all frames received)", len(snaps), snaps[0][2],
             f"{statistics.median(times) * 1000:.0f}", f"{max(times) * 1000:.0f}",
             f"{snaps[0][1] / 1e6:.2f}", f"{statistics.median(copy_times) / statistics.median(times) * 100:.0f}%"],
            ["floor: COPY table TO STDOUT (psycopg2)", len(copy_times), p["snap_rows"],
             f"{statistics.median(copy_times) * 1000:.0f}", f"{max(copy_times) * 1000:.0f}",
             f"{sink.n / 1e6:.2f}", "100%"]]
    table = sbbench.md_table(["what", "runs", "rows", "median ms", "max ms", "MB",
                              "speed vs floor"], rows)
    live_line = (f"Live events during the snapshots (source_notify, 100 changes/s, "
                 f"{live['received']}/{live['written']} delivered): p50 {live['p50_ms']:.2f} ms, "
                 f"p99 {live['p99_ms']:.2f} ms, max {live['max_ms']:.2f} ms")
    if base:
        live_line += (f"; without snapshots (scenario a, same run): p99 {base['p99_ms']:.2f} ms "
                      f"({live['p99_ms'] / base['p99_ms']:.2f}x).")
    return table, live_line


# ---- d. pgbench and soak -----------------------------------------------------------------

def sample_broker(broker, clients, stop, every, samples):
    """Appends (t, source_lag_ms, pending, rss_kb, cpu_share, clients' mean rss_kb) every
    `every` s until stop."""
    proc = sbbench.ProcSampler(broker.pid)
    subs = [sbbench.ProcSampler(c.pid) for c in clients]
    t0 = time.monotonic()
    while not stop.wait(every):
        try:
            st = broker.stats()
        except TimeoutError:
            continue
        rss = [c.rss_kb() for c in subs]
        samples.append((time.monotonic() - t0, st.get("source_lag_ms", -1), st.get("pending", 0),
                        proc.rss_kb(), proc.cpu_share(), sum(rss) / len(rss) if rss else -1))


def pgbench(pg, db, seconds, rate=None, script=None):
    args = [f"{sbbench.PG_BIN}/pgbench", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres",
            "-c", "4", "-j", "2", "-T", str(seconds), db]
    if rate:
        args[-1:-1] = ["-R", str(rate)]
    if script:
        args[-1:-1] = ["-n", "-f", script]
    r = subprocess.run(args, capture_output=True, text=True)
    for line in r.stdout.splitlines():
        if line.startswith("tps = "):
            return float(line.split()[2])
    raise RuntimeError(f"pgbench: {r.stdout[-500:]} {r.stderr[-500:]}")


def growth_after_warmup(samples, col, warm_s):
    """RSS growth from the first sample after warm-up to the last, as a fraction."""
    after = [s for s in samples if s[0] >= warm_s and s[col] > 0]
    return (after[-1][col] - after[0][col]) / after[0][col] if len(after) > 1 else float("nan")


def loaded_run(pg, work, db, tables, p, seconds, load, label, nclients, warm=0.0):
    """Broker (source_notify, default debounce 200 ms) + `nclients` sync-tail clients (the C
    client library, JSON to /dev/null) + `load`, sampled."""
    broker = sbbench.Broker(work, pg.broker_conninfo(db), tables, "source_notify", {},
                            debounce_ms=200)
    samples, stop = [], threading.Event()
    clients = [subprocess.Popen([tool("sync-tail"), "--pub", broker.pub, "--service",
                                 broker.service, "--no-snapshot"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL) for _ in range(nclients)]
    sampler = threading.Thread(target=sample_broker,
                               args=(broker, clients, stop, p["sample"], samples))
    sampler.start()
    try:
        result = load()
        st = broker.stats()
    finally:
        stop.set()
        sampler.join()
        for c in clients:
            c.terminate()
            c.wait()
        broker.stop()
    lags = [s[1] for s in samples if s[1] >= 0]
    return result, st, samples, {
        "label": label, "clients": nclients,
        "growth": growth_after_warmup(samples, 3, warm),
        "client_growth": growth_after_warmup(samples, 5, warm) if nclients else float("nan"),
        "client_rss": (samples[0][5], max(s[5] for s in samples), samples[-1][5])
        if samples and nclients else (-1, -1, -1), "warm": warm,
        "lag_p50": sbbench.percentile(lags, 0.5), "lag_p99": sbbench.percentile(lags, 0.99),
        "lag_max": max(lags) if lags else float("nan"),
        "cpu": samples[-1][4] if samples else float("nan"),
        "rss_first": samples[0][3] if samples else -1,
        "rss_max": max(s[3] for s in samples) if samples else -1,
        "rss_last": samples[-1][3] if samples else -1,
        "pending_max": max(s[2] for s in samples) if samples else -1,
    }


def keeping_up(pg, work, p, out):
    db = "pgb"
    pg.create_db(db)
    sbbench.log(f"pgbench: init scale {p['pgb_scale']}")
    subprocess.run([f"{sbbench.PG_BIN}/pgbench", "-h", "127.0.0.1", "-p", str(pg.port), "-U",
                    "postgres", "-i", "-q", "-s", str(p["pgb_scale"]), db], check=True,
                   capture_output=True)
    pg.sql(db, "SELECT syncbroker.track(t) FROM unnest(ARRAY['pgbench_accounts', "
               "'pgbench_tellers', 'pgbench_branches']::regclass[]) t; "
               "SELECT syncbroker.enable_notify()")
    tables = ["public.pgbench_accounts", "public.pgbench_tellers", "public.pgbench_branches"]
    sbbench.log(f"pgbench: floor (capture on, no broker) for {p['pgb_s']} s")
    tps_floor = pgbench(pg, db, p["pgb_s"])
    sbbench.log(f"pgbench: with broker for {p['pgb_s']} s")
    tps, st, s_pgb, m_pgb = loaded_run(pg, work, db, tables, p, p["pgb_s"],
                                       lambda: pgbench(pg, db, p["pgb_s"]), "pgbench", 1)
    # The floor again after: the database ages during the runs (history, bloat, checkpoints).
    sbbench.log(f"pgbench: floor again for {p['pgb_s']} s")
    tps_floor = (tps_floor + pgbench(pg, db, p["pgb_s"])) / 2
    # Soak: soak_changes single-row updates a second over a fixed key space, so that after the
    # warm-up every key has been seen and memory has no reason to grow.
    pg.sql(db, SOAK_SQL % {"rows": p["soak_rows"]})
    script = os.path.join(work, "soak.pgbench")
    with open(script, "w") as f:
        f.write(SOAK_SCRIPT % {"rows": p["soak_rows"]})
    soak_rate = p["soak_changes"]
    sbbench.log(f"soak: pgbench -R {soak_rate} for {p['soak_s']} s with broker and "
                f"{p['soak_clients']} clients")
    tps_soak, st2, s_soak, m_soak = loaded_run(
        pg, work, db, ["public.soak"], p, p["soak_s"],
        lambda: pgbench(pg, db, p["soak_s"], soak_rate, script), "soak", p["soak_clients"],
        soak_warmup(p))
    for name, samples in (("pgbench", s_pgb), ("soak", s_soak)):
        with open(os.path.join(out, "raw", f"{name}-samples.dat"), "w") as f:
            f.write("# t_s source_lag_ms pending rss_kb cpu_share clients_mean_rss_kb\n")
            for s in samples:
                f.write(" ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in s) + "\n")
    rows = []
    for m, t, stats, extra in ((m_pgb, tps, st, f"{tps / tps_floor * 100:.0f}% of floor {tps_floor:.0f} (mean of before and after)"),
                               (m_soak, tps_soak, st2, f"-R {soak_rate}")):
        rows.append([m["label"], f"{t:.0f} ({extra})", stats.get("changes_in"),
                     stats.get("events_out"), f"{m['lag_p50']:.0f}", f"{m['lag_p99']:.0f}",
                     f"{m['lag_max']:.0f}", m["pending_max"], f"{m['cpu'] * 100:.0f}%",
                     f"{m['rss_first'] / 1024:.1f} / {m['rss_max'] / 1024:.1f} / {m['rss_last'] / 1024:.1f}",
                     m["clients"], " / ".join(f"{v / 1024:.1f}" for v in m["client_rss"])])
    table = sbbench.md_table(["run", "tps", "changes in", "events out", "lag p50 ms", "lag p99 ms",
                              "lag max ms", "pending max", "broker CPU (1 core = 100%)",
                              "broker RSS MiB first / max / last", "clients",
                              "client RSS MiB first / max / last (mean)"], rows)
    soak_s = p["soak_s"]
    met = all(abs(g) <= 0.05 for g in (m_soak["growth"], m_soak["client_growth"]))
    goals = (f"Soak goal (broker and client RSS flat within 5% after warm-up): "
             f"{'met' if met else 'NOT met'}: from {m_soak['warm']:.0f} s to {soak_s} s the "
             f"broker's RSS changed {m_soak['growth'] * 100:+.1f}%, the clients' (mean of "
             f"{m_soak['clients']}) {m_soak['client_growth'] * 100:+.1f}%; "
             f"{st2.get('changes_in', 0) / max(soak_s, 1):.0f} changes/s in. pgbench goal (lag p99 "
             f"under 50 ms, broker under 30% of a core): "
             f"{'met' if m_pgb['lag_p99'] < 50 and m_pgb['cpu'] < 0.3 else 'NOT met'}.")
    plots = []
    png = os.path.join(out, "rss.png")
    files = ", ".join(f"'{os.path.join(out, 'raw', n + '-samples.dat')}' using 1:($4/1024) "
                      f"with lines lw 2 title 'broker, {n}'" for n in ("pgbench", "soak"))
    files += (f", '{os.path.join(out, 'raw', 'soak-samples.dat')}' using 1:($6/1024) "
              f"with lines lw 2 title 'sync-tail client (mean of {m_soak['clients']}), soak'")
    if sbbench.gnuplot(f"""set terminal png noenhanced size 900,560
set output '{png}'
set title 'RSS over time (source_notify, debounce 200 ms)'
set xlabel 'seconds'
set ylabel 'RSS (MiB)'
set grid
set yrange [0:*]
plot {files}
"""):
        plots.append("rss.png")
    text = (f"pgbench TPC-B-like, scale {p['pgb_scale']}, -c 4 -j 2, the three keyed tables "
            "tracked with NOTIFY on; the floor is the same pgbench with capture on and no broker "
            "(capture's own cost: bench/capture_overhead). Broker: source_notify, debounce_ms "
            "200; clients: `sync-tail --no-snapshot` (the C client library, JSON to /dev/null), "
            f"one during pgbench, {p['soak_clients']} during the soak, which runs pgbench -R "
            f"{soak_rate} with a one-statement script (`UPDATE public.soak SET n = n + 1` of a "
            f"random id among {p['soak_rows']}: {p['soak_changes']} tracked changes/s). Lag = the broker's "
            "`source_lag_ms` (receive time - change time of the newest batch) from `stats` every "
            f"{p['sample']} s; CPU from /proc/PID/stat over the run; RSS from /proc/PID/status; "
            "warm-up: until every soak key has most likely been written "
            f"({soak_warmup(p):.0f} s).")
    return table, text + "\n\n" + goals, plots


# ---- driver -------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description="Syncbroker benchmarks (figures, never pass/fail)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--smoke", action="store_true", help="seconds: proves the harness works")
    mode.add_argument("--quick", action="store_true", help="about two minutes")
    ap.add_argument("--out", help="results folder (default bench/results/<date>)")
    ap.add_argument("--no-build", action="store_true",
                    help="use SB_BUILD_DIR as it is (ctest: the tree is already built)")
    ap.add_argument("--only", default="latency,throughput,snapshot,pgbench",
                    help="comma-separated subset of the scenarios")
    args = ap.parse_args()
    profile = "smoke" if args.smoke else "quick" if args.quick else "full"
    p = PROFILES[profile]
    only = set(args.only.split(","))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # atexit stops PostgreSQL and brokers

    if not args.no_build:
        sbbench.build(["bench_latency", "bench_throughput", "source_synthetic", "sync-tail",
                       "sync-keygen"])
    out = args.out or sbbench.results_dir()
    os.makedirs(os.path.join(out, "raw"), exist_ok=True)
    load_before = sbbench.loadavg()
    started = time.monotonic()
    work = sbbench.workdir()
    pg = sbbench.PgCluster(work)
    m = sbbench.machine()
    sections = [f"# Syncbroker benchmarks ({profile})", "",
                f"Machine: {m['nproc']} cores, {m['cpu']}, {m['ram_gb']} GiB RAM; PostgreSQL 15 "
                f"({pg.describe()}); load average at start {load_before} (a shared machine: other "
                "work may run). Every figure sits beside its floor measured in the same run.", ""]
    lat = []
    if "latency" in only:
        pg.create_db("lat")
        latency_bench.setup(pg, "lat")
        lat = latency_bench.run(pg, "lat", work, os.path.join(out, "raw"), p["rates"], p["lat_s"],
                                "run-latency")
        sbbench.log(f"latency: {latency_bench.NAIVE} at {p['rates'][0]} changes/s")
        lat.append(latency_bench.naive_poll(pg, "lat", p["rates"][0], p["lat_s"]))
        plots = latency_bench.plot(lat, os.path.join(out, "raw"), out, "run-latency")
        sections += ["## a. Latency", "", latency_bench.explain(pg, p["lat_s"]), "",
                     latency_bench.table(lat), "", latency_bench.verdict(lat), "",
                     "CURVE on both sockets against plain text (same run):", "",
                     latency_bench.curve_table(lat), "",
                     "The last row is the usual alternative to Syncbroker: a client polling "
                     "`updated_at` every 3 s (2 writers, every 10th write a delete). It never sees "
                     "a delete, and a row whose transaction commits after a newer updated_at was "
                     "seen is missed as well.", "",
                     *[f"![{x}]({x})" for x in plots], ""]
    if "throughput" in only:
        table, text, plots = throughput(work, p, out)
        sections += ["## b. Throughput", "", text, "", table, "",
                     *[f"![{x}]({x})" for x in plots], ""]
    if "snapshot" in only:
        table, live = snapshot(pg, work, p, out, lat)
        sections += ["## c. Snapshot", "", table, "", live, ""]
    if "pgbench" in only:
        table, text, plots = keeping_up(pg, work, p, out)
        sections += ["## d. Keeping up with pgbench, and soak", "", text, "", table, "",
                     *[f"![{x}]({x})" for x in plots], ""]
    sections += [f"Took {time.monotonic() - started:.0f} s; load average at the end "
                 f"{sbbench.loadavg()}. Command: `bench/run"
                 f"{' --' + profile if profile != 'full' else ''}`.", ""]
    path = os.path.join(out, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(sections))
    print("\n".join(sections))
    sbbench.log(f"wrote {path}")
    if sbbench.PROBLEMS:
        sys.exit(f"{len(sbbench.PROBLEMS)} broker run(s) ended badly (see above)")


if __name__ == "__main__":
    main()
