"""The command-line tools against a real database and broker: `syncbroker --check` reports
what start-up would refuse; sync-tail prints events as JSON lines, sync-snapshot prints the
rows, sync-board shows the table and who is editing."""
import json
import os
import re
import subprocess
import threading

from conftest import BUILD_DIR, free_port, wait_until
from sbwriter import q

BOOKINGS = "public.bookings"
TOOLS = os.path.join(BUILD_DIR, "clients")


def tool(name):
    return os.path.join(TOOLS, name)


def check_config(tmp_path, pg, dbname, tables, source_extra="", conninfo=None):
    """A broker config on free ports; the tables one per line, so each has its own line.
    It connects as the broker role unless conninfo says otherwise."""
    cfg = tmp_path / "check.ini"
    cfg.write_text(
        f"[broker]\nplugin_dir = {os.path.join(BUILD_DIR, 'plugins')}\n\n"
        f"[database]\nconninfo = {conninfo or pg.broker_conninfo(dbname)}\n"
        "tables = " + ",\n    ".join(tables) + "\n\n"
        f"[source.main]\nplugin = source_poll\n{source_extra}\n"
        f"[transport.zmq]\nplugin = transport_zmq\npub = tcp://127.0.0.1:{free_port()}\n"
        f"service = tcp://127.0.0.1:{free_port()}\n")
    return cfg


def run_check(cfg):
    r = subprocess.run([os.path.join(BUILD_DIR, "broker", "syncbroker"), "-c", str(cfg),
                        "--check"], capture_output=True, text=True, timeout=60)
    assert "runtime error" not in r.stderr and "AddressSanitizer" not in r.stderr, r.stderr
    return r


def line_of(path, needle):
    return next(no for no, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_check_reports_unknown_and_untracked_tables(pg, hotel, conn, tmp_path):
    cfg = check_config(tmp_path, pg, hotel, [BOOKINGS, "public.stays"])
    ok = run_check(cfg)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.rstrip().endswith(f"; {cfg}: configuration OK (database checked)"), ok.stdout

    q(conn, "CREATE TABLE public.untracked (id int PRIMARY KEY)")
    cfg = check_config(tmp_path, pg, hotel, [BOOKINGS, "public.nope", "public.untracked"])
    r = run_check(cfg)
    assert r.returncode == 1, r.stdout + r.stderr
    at = f"{cfg}:{line_of(cfg, 'tables =')}: [database] tables: "
    # Every bad table is named, not only the first.
    assert at + "table public.nope does not exist in the database" in r.stderr, r.stderr
    assert (at + "table public.untracked is not tracked; run: SELECT "
            "syncbroker.track('public.untracked');") in r.stderr, r.stderr
    assert f"{cfg}: start-up would refuse this configuration" in r.stderr
    assert "configuration OK" not in r.stdout


def test_check_without_the_schema_says_to_migrate(pg, tmp_path):
    # A database never migrated, where the broker role may not exist yet: as the superuser.
    cfg = check_config(tmp_path, pg, "postgres", [BOOKINGS], conninfo=pg.conninfo("postgres"))
    r = run_check(cfg)
    assert r.returncode == 1, r.stdout + r.stderr
    assert (f"{cfg}:{line_of(cfg, 'tables =')}: [database] tables: resolving the configured "
            "tables failed: ") in r.stderr, r.stderr
    assert "scripts/migrate" in r.stderr


def test_check_names_the_holder_of_the_reader(pg, hotel, conn, tmp_path):
    holder = pg.connect(hotel, application_name="syncbroker@desk-7 pid 4242")
    try:
        with holder.cursor() as cur:
            # The lock a running broker holds for its reader (plugins/pgsource/sb_reader_lock.h).
            cur.execute("SELECT pg_try_advisory_lock(1935831652, hashtext('frontdesk')),"
                        " pg_backend_pid()")
            locked, pid = cur.fetchone()
        assert locked
        cfg = check_config(tmp_path, pg, hotel, [BOOKINGS], source_extra="reader = frontdesk\n")
        r = run_check(cfg)
        assert r.returncode == 1, r.stdout + r.stderr
        assert (f"{cfg}:{line_of(cfg, 'reader =')}: [source.main] reader: reader 'frontdesk' is "
                f"held by syncbroker@desk-7 pid 4242 (pid {pid})") in r.stderr, r.stderr
        # Another reader name is free.
        other = check_config(tmp_path, pg, hotel, [BOOKINGS], source_extra="reader = backoffice\n")
        assert run_check(other).returncode == 0
    finally:
        holder.close()
    r = run_check(cfg)
    assert r.returncode == 0, r.stderr
    # --check read, and wrote nothing: the reader was never registered.
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM syncbroker.reader")
        assert cur.fetchone() == (0,)


def test_check_and_a_second_broker_name_a_running_broker_holding_the_reader(broker, hotel):
    b = broker(hotel, [BOOKINGS])
    epoch = b.ping()["epoch"]
    r = run_check(b.config)
    assert r.returncode == 1, r.stdout + r.stderr
    assert re.search(rf"reader 'syncbroker' is held by syncbroker-lock {b.proc.pid}@\S+ "
                     r"\(pid \d+\)", r.stderr), r.stderr
    # The same config started twice: refused before it binds, and the first broker untouched.
    twin = subprocess.run([os.path.join(BUILD_DIR, "broker", "syncbroker"), "-c", b.config],
                          capture_output=True, text=True, timeout=60)
    assert twin.returncode == 1, twin.stderr
    assert f"reader 'syncbroker' is held by another broker (syncbroker-lock {b.proc.pid}@" \
        in twin.stderr, twin.stderr
    assert "listening" not in twin.stderr
    assert b.ping()["epoch"] == epoch and "new epoch" not in b.log
    b.stop()


def test_sync_tail_prints_events_as_json_lines(broker, hotel, conn, tmp_path):
    b = broker(hotel, [BOOKINGS, "public.stays"])
    out, err = tmp_path / "tail.out", tmp_path / "tail.err"
    with open(out, "w") as fo, open(err, "w") as fe:
        tail = subprocess.Popen([tool("sync-tail"), "--pub", b.pub, "--service", b.service,
                                 "--table", BOOKINGS, "--client-id", "desk-b", "--count", "3",
                                 "--timeout-ms", "30000"], stdout=fo, stderr=fe)
    try:
        # "online": subscribed, first heartbeat seen, snapshot applied.
        wait_until(lambda: "online" in err.read_text() or tail.poll() is not None, 20,
                   "sync-tail to go online")
        assert tail.poll() is None, err.read_text()
        q(conn, "SET syncbroker.origin = 'desk-b'")
        q(conn, "INSERT INTO stays VALUES (1, '2026-11-28', 'other table')")
        writes = ["INSERT INTO bookings (id, guest) VALUES (1, 'ann')",
                  "UPDATE bookings SET guest = 'bob' WHERE id = 1",
                  "DELETE FROM bookings WHERE id = 1"]
        for n, sql in enumerate(writes, 1):
            q(conn, sql)  # one at a time: changes read together would coalesce
            wait_until(lambda: len(out.read_text().splitlines()) >= n, 10, f"event {n}")
        assert tail.wait(30) == 0, err.read_text()
    finally:
        if tail.poll() is None:
            tail.kill()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(e["table"], e["key"], e["op"]) for e in lines] == [
        (BOOKINGS, "1", "insert"), (BOOKINGS, "1", "update"), (BOOKINGS, "1", "delete")]
    assert lines[1]["row"]["guest"] == "bob" and lines[2]["row"] is None
    assert all(e["own"] is True and e["origin"] == "desk-b" for e in lines)
    assert [e["tseq"] for e in lines] == [1, 2, 3]
    assert {"seq", "epoch", "version", "ts", "n"} <= set(lines[0])


def test_sync_snapshot_prints_every_row(broker, hotel, conn):
    q(conn, "INSERT INTO bookings (id, guest, rate) SELECT g, 'g' || g, g * 1.5"
            " FROM generate_series(1, 50) g")
    b = broker(hotel, [BOOKINGS])
    r = subprocess.run([tool("sync-snapshot"), "--service", b.service, "--table", BOOKINGS],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert sorted(int(x["key"]) for x in rows) == list(range(1, 51))
    assert all(x["row"]["guest"] == f"g{x['key']}" and x["row"]["rate"] == int(x["key"]) * 1.5
               for x in rows)
    bad = subprocess.run([tool("sync-snapshot"), "--service", b.service, "--table", "public.nope"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1 and "unknown_table" in bad.stderr


def test_sync_board_shows_rows_and_editors(broker, hotel, conn):
    q(conn, "INSERT INTO bookings (id, guest) VALUES (3, 'cy')")
    b = broker(hotel, [BOOKINGS])
    board = subprocess.Popen([tool("sync-board"), "--pub", b.pub, "--service", b.service,
                              "--client-id", "desk-a"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    reader = threading.Thread(target=lambda: seen.extend(iter(board.stdout.readline, "")))
    reader.start()
    try:
        wait_until(lambda: any('"cy"' in line for line in seen), 20, "the board to show row 3")
        board.stdin.write("edit 3\n")
        board.stdin.flush()
        wait_until(lambda: any("desk-a" in line and "edit" in line for line in seen[-20:]), 20,
                   "the board to show desk-a editing row 3")
        q(conn, "UPDATE bookings SET guest = 'dee' WHERE id = 3")
        wait_until(lambda: any('"dee"' in line for line in seen), 20, "the change on the board")
        board.stdin.write("quit\n")
        board.stdin.flush()
        assert board.wait(10) == 0, "".join(seen)
    finally:
        if board.poll() is None:
            board.kill()
        reader.join(10)


def test_broker_raises_its_open_files_limit(broker, hotel, monkeypatch):
    """Each client connection costs a descriptor: the broker takes the hard limit at start."""
    monkeypatch.setenv("SB_BROKER_WRAPPER", "prlimit --nofile=1024:")
    b = broker(hotel, [BOOKINGS])
    with open(f"/proc/{b.proc.pid}/limits") as f:
        soft, hard = next(line for line in f if line.startswith("Max open files")).split()[3:5]
    assert soft == hard, (soft, hard)
    if hard != "1024":
        assert f"open files limit raised from 1024 to {hard}" in b.log
    b.stop()
