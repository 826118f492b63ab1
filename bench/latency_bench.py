"""Commit-to-subscriber latency (issue 4): bench_latency against each delivery path, beside the
floors measured in the same run: a bare libpq LISTEN on a plain pg_notify row trigger, and a
bare pg_recvlogical reading the wal2json output plugin.
Used by bench/latency (alone) and bench/run (scenario a)."""
import os
import subprocess
import threading
import time

import sbbench

SETUP_SQL = """
CREATE TABLE public.bench_live (id bigint PRIMARY KEY, note text,
                                created timestamptz NOT NULL DEFAULT clock_timestamp());
SELECT syncbroker.track('public.bench_live');
-- The floor: an untracked table whose row trigger notifies every insert, and nothing else.
CREATE TABLE public.bench_floor (id bigint PRIMARY KEY, note text,
                                 created timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE FUNCTION public.bench_floor_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('bench_floor', NEW.id::text);
    RETURN NULL;
END $$;
CREATE TRIGGER bench_floor_notify AFTER INSERT ON public.bench_floor
    FOR EACH ROW EXECUTE FUNCTION public.bench_floor_notify();
-- The logical-decoding floor: a plain table, no trigger; pg_recvlogical + wal2json read it.
CREATE TABLE public.bench_wal (id bigint PRIMARY KEY, note text,
                               created timestamptz NOT NULL DEFAULT clock_timestamp());
-- The alternative without Syncbroker: a client polling updated_at.
CREATE TABLE public.bench_naive (id bigint PRIMARY KEY, note text,
                                 updated_at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE INDEX ON public.bench_naive (updated_at);
"""
NAIVE = "naive poll of updated_at (3 s)"
LISTEN = "floor (libpq LISTEN)"  # the reference of every ratio
WAL2JSON = "floor (pg_recvlogical wal2json)"
SLOT = "sb_bench_wal2json"
CURVE = "source_notify, CURVE"  # beside "source_notify": what encryption costs

# (label, source plugin, source options, CURVE on both sockets); a floor has no broker.
CASES = [
    (LISTEN, None, None, False),
    (WAL2JSON, None, None, False),
    ("source_notify", "source_notify", {}, False),
    (CURVE, "source_notify", {}, True),
    ("source_poll 50 ms", "source_poll", {"poll_interval_ms": 50}, False),
    ("source_poll 100 ms", "source_poll", {"poll_interval_ms": 100}, False),
]


def setup(pg, dbname):
    pg.sql(dbname, SETUP_SQL)


def slug(label):
    return "".join(c if c.isalnum() else "_" for c in label).strip("_")


def writers_for(rate):
    """Writer connections: one commit takes ~0.5-1 ms with fsync on here, so 4 carry 1000/s;
    higher rates get more (the achieved rate is reported either way)."""
    return 4 if rate <= 1000 else 8


def run_one(pg, dbname, label, rate, seconds, rawdir, endpoint, prefix, curve=None):
    exe = os.path.join(sbbench.build_dir(), "bench", "bench_latency")
    args = [exe, "--conninfo", pg.conninfo(dbname), "--rate", str(rate), "--seconds",
            str(seconds), "--label", slug(label), "--writers", str(writers_for(rate)),
            "--raw", os.path.join(rawdir, f"{prefix}-{slug(label)}-{rate}.txt")]
    if endpoint:
        args += ["--table", "public.bench_live", "--zmq", endpoint]
        args += curve.client_args() if curve else []
        r = subprocess.run(args, capture_output=True, text=True)
    elif label == WAL2JSON:
        args += ["--table", "public.bench_wal", "--stdin", "wal2json"]
        r = run_recvlogical(pg, dbname, args)
    else:
        args += ["--table", "public.bench_floor", "--listen", "bench_floor"]
        r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        sbbench.log(f"bench_latency {label} @ {rate}/s exited {r.returncode}: {r.stderr[-800:]}")
    res = sbbench.parse_result(r.stdout)
    res["case"], res["rate"] = label, rate
    return res


def run_recvlogical(pg, dbname, args):
    """bench_latency reading `pg_recvlogical --start` through a pipe. The slot is made for this
    run and dropped after it, also on failure: a slot left behind would keep WAL forever."""
    pg.sql(dbname, f"SELECT pg_create_logical_replication_slot('{SLOT}', 'wal2json')")
    reader = None
    try:
        reader = subprocess.Popen(
            [f"{sbbench.PG_BIN}/pg_recvlogical", "-h", "127.0.0.1", "-p", str(pg.port),
             "-U", "postgres", "-d", dbname, "--slot", SLOT, "--start", "-f", "-",
             "--fsync-interval=0", "-o", "format-version=2", "-o", "add-tables=public.bench_wal"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return subprocess.run(args, stdin=reader.stdout, capture_output=True, text=True)
    finally:
        if reader:
            reader.stdout.close()
            reader.terminate()
            try:
                reader.wait(10)
            except subprocess.TimeoutExpired:
                reader.kill()
                reader.wait()
            err = reader.stderr.read().decode(errors="replace").strip()
            reader.stderr.close()
            if err:
                sbbench.log(f"pg_recvlogical: {err[-800:]}")
        drop_slot(pg, dbname)


def drop_slot(pg, dbname):
    """Drops the slot, waiting up to 10 s for its walsender to let go of it (after a reader
    that was killed rather than stopped)."""
    def dropped():
        try:
            pg.sql(dbname, f"SELECT pg_drop_replication_slot('{SLOT}')")
            return True
        except Exception as e:  # psycopg2's ObjectInUse while the walsender holds the slot
            if "is active" not in str(e):
                raise
            return False
    sbbench.wait_until(dropped, 10, f"replication slot {SLOT} to be released", interval=0.1)


def run(pg, dbname, work, rawdir, rates, seconds, prefix="latency"):
    """Every case at every rate; returns the result dicts. One broker per case, started
    fresh; poll cases run with the NOTIFY trigger removed so writers pay what they would. The
    CURVE case's keys are made once per run (sbbench.Curve)."""
    results = []
    keys = None
    for label, source, opts, curve in CASES:
        broker = None
        if curve and not keys:
            keys = sbbench.Curve(work)
        if source == "source_poll":
            pg.sql(dbname, "SELECT syncbroker.disable_notify()")
        elif source == "source_notify":
            pg.sql(dbname, "SELECT syncbroker.enable_notify()")  # the owner's step
        if source:
            broker = sbbench.Broker(work, pg.broker_conninfo(dbname), ["public.bench_live"], source,
                                    opts, debounce_ms=0, curve=keys if curve else None)
        try:
            for rate in rates:
                sbbench.log(f"latency: {label} at {rate} changes/s for {seconds} s")
                res = run_one(pg, dbname, label, rate, seconds, rawdir,
                              broker.pub if broker else None, prefix, keys if curve else None)
                sbbench.log(f"  p50 {res['p50_ms']:.2f} ms, p99 {res['p99_ms']:.2f} ms, "
                            f"max {res['max_ms']:.2f} ms, achieved {res['achieved']:.0f}/s, "
                            f"missing {res['missing']}")
                results.append(res)
        finally:
            if broker:
                broker.stop()
    return results


def naive_poll(pg, dbname, rate, seconds, interval=3.0, writers=2):
    """What apps do without Syncbroker: every `interval` s, SELECT rows whose updated_at is
    newer than the newest seen. Writers insert at `rate`; every 10th operation deletes a row
    written 5 operations earlier, which such a poller cannot see at all. Latency is on one
    clock (time.time() in this process), from the INSERT being sent to the poll that saw it."""
    seconds = max(seconds, 2 * interval)
    total = int(rate * seconds)
    sent, ack, seen = {}, {}, {}
    deletes = []
    lock = threading.Lock()
    counter = iter(range(total))
    start = time.time() + 0.2

    def writer():
        conn = pg.connect(dbname)
        cur = conn.cursor()
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            time.sleep(max(0.0, start + i / rate - time.time()))
            if i % 10 == 9:
                t = time.time()
                cur.execute("DELETE FROM public.bench_naive WHERE id = %s", (i - 5,))
                deletes.append(i - 5)
                with lock:
                    ack[-i] = (t, time.time())  # writes done, not rows
            else:
                sent[i] = time.time()
                cur.execute("INSERT INTO public.bench_naive (id, note) VALUES (%s, 'naive')", (i,))
                ack[i] = (sent[i], time.time())
        conn.close()

    threads = [threading.Thread(target=writer) for _ in range(writers)]
    for t in threads:
        t.start()
    poller = pg.connect(dbname)
    cur = poller.cursor()
    watermark = "-infinity"
    end = start + seconds + interval
    while time.time() < end:
        time.sleep(interval)
        cur.execute("SELECT id, updated_at FROM public.bench_naive WHERE updated_at > %s "
                    "ORDER BY updated_at", (watermark,))
        now = time.time()
        for rid, ts in cur.fetchall():
            seen.setdefault(rid, now)
            watermark = ts
    for t in threads:
        t.join()
    poller.close()
    gone = set(deletes)  # deleted before any poll could matter: not counted as inserts
    inserted = [i for i in sent if i in ack and i not in gone]
    lat = sorted((seen[i] - sent[i]) * 1000 for i in inserted if i in seen)
    rtt = sorted((b - a) * 1000 for a, b in ack.values())
    pct = sbbench.percentile
    return {"case": NAIVE, "rate": rate, "achieved": len(ack) / seconds, "written": len(inserted),
            "received": len(lat), "missing": len(inserted) - len(lat), "p50_ms": pct(lat, 0.5),
            "p90_ms": pct(lat, 0.9), "p99_ms": pct(lat, 0.99), "max_ms": lat[-1] if lat else -1,
            "commit_p50_ms": pct(rtt, 0.5), "commit_p99_ms": pct(rtt, 0.99),
            "deletes": len(deletes), "deletes_seen": 0}


def table(results):
    floor = {r["rate"]: r for r in results if r["case"] == LISTEN}
    rows = []
    order = [c[0] for c in CASES] + [NAIVE]
    for r in sorted(results, key=lambda x: (x["rate"], order.index(x["case"]))):
        f = floor.get(r["rate"])
        ratio = f"{r['p99_ms'] / f['p99_ms']:.2f}x" if f and f["p99_ms"] > 0 else "-"
        rows.append([r["case"], r["rate"], f"{r['achieved']:.0f}",
                     f"{r['received']}/{r['written']}" + (
                         f"; deletes seen {r['deletes_seen']}/{r['deletes']}" if "deletes" in r
                         else ""), f"{r['p50_ms']:.2f}",
                     f"{r['p90_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['max_ms']:.2f}", ratio,
                     f"{r['commit_p50_ms']:.2f} / {r['commit_p99_ms']:.2f}"])
    return sbbench.md_table(["case", "changes/s", "achieved/s", "delivered", "p50 ms", "p90 ms",
                             "p99 ms", "max ms", "p99 vs LISTEN floor p99",
                             "writer commit p50/p99 ms"], rows)


def verdict(results):
    """The issue-4 goal line: source_notify p99 vs the floor's p99 at 1000 changes/s."""
    by = {(r["case"], r["rate"]): r for r in results}
    n, f = by.get(("source_notify", 1000)), by.get((LISTEN, 1000))
    if not n or not f or f["p99_ms"] <= 0:
        return "Goal (source_notify p99 within 3x the floor's p99 at 1000 changes/s): not measured."
    ratio = n["p99_ms"] / f["p99_ms"]
    met = "met" if ratio <= 3 else "NOT met"
    return (f"Goal (source_notify p99 within 3x the floor's p99 at 1000 changes/s): {met}: "
            f"{n['p99_ms']:.2f} ms vs {f['p99_ms']:.2f} ms = {ratio:.2f}x.")


def curve_table(results):
    """source_notify with CURVE on both sockets beside the same case in plain text, per rate,
    as ratios (same run, same database)."""
    by = {(r["case"], r["rate"]): r for r in results}
    rows = []
    for rate in sorted({r["rate"] for r in results}):
        plain, curve = by.get(("source_notify", rate)), by.get((CURVE, rate))
        if not plain or not curve:
            continue
        ratio = [f"{curve[k] / plain[k]:.2f}x" if plain[k] > 0 else "-"
                 for k in ("p50_ms", "p99_ms")]
        rows.append([rate, f"{plain['p50_ms']:.2f} / {plain['p99_ms']:.2f}",
                     f"{curve['p50_ms']:.2f} / {curve['p99_ms']:.2f}", *ratio,
                     f"{curve['received']}/{curve['written']}"])
    if not rows:
        return "CURVE vs plain: not measured."
    return sbbench.md_table(["changes/s", "plain p50 / p99 ms", "CURVE p50 / p99 ms",
                             "p50 CURVE vs plain", "p99 CURVE vs plain", "CURVE delivered"], rows)


def plot(results, rawdir, outdir, prefix="latency"):
    """One CDF per rate, every case: <prefix>-cdf-<rate>.png."""
    made = []
    for rate in sorted({r["rate"] for r in results}):
        series = []
        for r in results:
            path = os.path.join(rawdir, f"{prefix}-{slug(r['case'])}-{rate}.txt")
            if r["rate"] == rate and r["received"] > 0 and os.path.exists(path):
                series.append(f"'{path}' using ($1/1000.0):(($0+1)/{r['received']}.0) "
                              f"with lines lw 2 title '{r['case']}'")
        if not series:
            continue
        png = os.path.join(outdir, f"{prefix}-cdf-{rate}.png")
        ok = sbbench.gnuplot(f"""set terminal png noenhanced size 900,560
set output '{png}'
set title 'commit-to-subscriber latency CDF, {rate} changes/s'
set xlabel 'latency (ms, log scale)'
set ylabel 'fraction delivered'
set logscale x
set grid
set key bottom right
plot {', '.join(series)}
""")
        if ok:
            made.append(os.path.basename(png))
    return made


def explain(pg, seconds):
    return ("Each case writes single-row autocommit INSERTs at a fixed rate from 4 writer "
            f"connections (8 above 1000/s) for {seconds} s, a fresh key per row (nothing coalesces). Latency = "
            "subscriber receive time - the time the INSERT was sent (one CLOCK_MONOTONIC in one "
            "process: bench/bench_latency.c), so it includes the commit; the last column is the "
            "writer's own INSERT+COMMIT round trip. Broker: debounce_ms = 0, transport_zmq over "
            "TCP on 127.0.0.1, a fresh broker per case; `source_notify, CURVE` is the same "
            "broker with CURVE on both sockets (docs/security.md; keys made by the run, the "
            "client allowed every table). Floors: a bare libpq LISTEN on an "
            "untracked table whose plain `AFTER INSERT ... FOR EACH ROW` trigger calls "
            "pg_notify(id) (the reference of the ratios), and a bare `pg_recvlogical` with the "
            "wal2json output plugin (format-version 2) on a plain table, its output piped into "
            "bench_latency (logical decoding: what a replication-based source could reach). "
            f"PostgreSQL 15: {pg.describe()}, wal_level=logical.")
