"""docs/security.md, "Two desks on two machines", followed verbatim: every block marked
`<!-- walkthrough: ... -->` is run in order, each machine a folder of its own, the broker on
127.0.0.1 and ports picked here, `scp` a copy between the folders. Only the placeholders the
doc lists are substituted. What the doc says a command prints is checked against what it
printed, so the doc cannot drift from the broker (desk-b gets the rooms, never the bookings).

Markers: `sql` (run on the database as its owner), `file MACHINE PATH` (write the block),
`shell MACHINE [fails]` (bash; every command succeeds, or with `fails` all but the last,
which must fail), `start MACHINE "READY"` (runs in the background until READY is printed),
`c` (compiles against the installed header, inside a function), `output [MACHINE]` (what the previous shell block, or MACHINE's started command once it has
exited, printed, placeholders substituted: a JSON line matches a printed JSON line holding those fields with those
values, the JSON lines in any order and no others; any other line must occur in the output).
"""
import json
import os
import re
import shlex
import signal
import subprocess
import textwrap

import zmq

from conftest import BUILD_DIR, SANITIZER_MARKS, SOURCE_DIR, free_port, terminate, wait_until

DOC = os.path.join(SOURCE_DIR, "docs", "security.md")
SECTION = "## Two desks on two machines"
BROKER_FOLDER = "/etc/syncbroker"  # a placeholder of the doc: the broker machine's folder
WRAPPER = os.environ.get("SB_BROKER_WRAPPER", "")  # e.g. valgrind (conftest.Broker.start)
MARKER = re.compile(r"^\s*<!-- walkthrough: (.*?) -->\s*$")
# A network copy between machines: HOST:PATH is PATH here (PATH already substituted).
# What a `c` block may use beyond <syncbroker/client.h>: the application's own parts.
C_PRELUDE = """#include <syncbroker/client.h>
static void on_event(const sb_client_event *ev, void *ud) { (void)ev; (void)ud; }
static void die(const char *why) { (void)why; }
int main(void)
{
"""
FAKE_SCP = """#!/bin/sh
[ $# -eq 2 ] || { echo "scp: this walkthrough copies one file at a time" >&2; exit 2; }
exec cp -- "${1#*:}" "${2#*:}"
"""


def walkthrough_blocks():
    """[(marker words, block text)] of the walkthrough section, in order."""
    with open(DOC) as f:
        text = f.read()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    lines = text[start:end if end >= 0 else len(text)].splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = MARKER.match(lines[i])
        i += 1
        if not m:
            continue
        while not lines[i].strip():
            i += 1
        fence = lines[i]
        indent = len(fence) - len(fence.lstrip())
        assert fence.strip().startswith("```"), f"a walkthrough marker without a block: {fence}"
        body = []
        i += 1
        while lines[i].strip() != "```":
            body.append(lines[i][indent:])
            i += 1
        i += 1
        blocks.append((shlex.split(m.group(1)), "\n".join(body) + "\n"))
    return blocks


def key_line(path):
    """The Z85 key of a key file: its one line that is neither blank nor a comment."""
    with open(path) as f:
        keys = [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
    assert len(keys) == 1 and len(keys[0]) == 40, f"{path}: {keys}"
    return keys[0]


def tool_path():
    """The folders of the daemon and of the tools in this build, for PATH."""
    want = {"syncbroker", "sync-snapshot", "sync-tail", "sync-keygen"}
    found = {}
    for root, _, files in os.walk(BUILD_DIR):
        for name in want & set(files):
            path = os.path.join(root, name)
            if os.access(path, os.X_OK):
                found.setdefault(name, root)
    assert set(found) == want, f"not built in {BUILD_DIR}: {sorted(want - set(found))}"
    return sorted(set(found.values()))


def check_output(expected, out, err, what):
    """expected (an output block) against what a command printed (see the module doc)."""
    printed = []
    for line in out.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            printed.append(value)
    wanted = [line.strip() for line in expected.splitlines() if line.strip()]
    objects = [json.loads(line) for line in wanted if line.startswith("{")]
    for line in wanted:
        if not line.startswith("{"):
            assert line in out + err, f"{what}: {line!r} not printed:\n{out}\n{err}"
    assert len(printed) == len(objects), f"{what}: printed\n{out}\nexpected\n{expected}"
    unmatched = list(printed)
    for obj in objects:
        match = next((p for p in unmatched if all(p.get(k) == v for k, v in obj.items())), None)
        assert match is not None, f"{what}: nothing printed matches {obj}:\n{out}"
        unmatched.remove(match)


def no_sanitizer_report(text, what):
    assert not any(mark in text for mark in SANITIZER_MARKS), f"{what}:\n{text[-6000:]}"


def test_two_desks_walkthrough(pg, db, conn, tmp_path):
    blocks = walkthrough_blocks()
    assert len(blocks) > 10, "the walkthrough lost its marked blocks"
    machines = {}

    def folder(machine):
        if machine not in machines:
            path = tmp_path / machine
            path.mkdir(mode=0o700)
            machines[machine] = str(path)
        return machines[machine]

    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "scp").write_text(FAKE_SCP)
    (bindir / "scp").chmod(0o755)
    values = {"BROKER_HOST": "127.0.0.1", "PORT_EVENTS": str(free_port()),
              "PORT_SERVICE": str(free_port()), "CONNINFO": pg.broker_conninfo(db),
              "PLUGIN_DIR": os.path.join(BUILD_DIR, "plugins")}
    env = dict(os.environ, **values,
               PATH=os.pathsep.join([str(bindir), *tool_path(), os.environ["PATH"]]))

    def in_folders(text):
        """Shell blocks: the broker's folder; their $PLACEHOLDERS come from env."""
        return text.replace(BROKER_FOLDER, folder("broker"))

    def substitute(text):
        """Files: every placeholder."""
        text = in_folders(text)
        for name, value in values.items():
            text = text.replace(f"${name}", value)
        unknown = set(re.findall(r"\$[A-Z_]+", text)) - {"$DESK_A_KEY", "$DESK_B_KEY"}
        assert not unknown, f"placeholders the test does not know: {unknown} in:\n{text}"
        # $DESK_A_KEY: the key line of desk-a.pub as the broker machine received it (last:
        # Z85 has '$' among its characters).
        return re.sub(r"\$DESK_([AB])_KEY", lambda m: key_line(os.path.join(
            folder("broker"), f"desk-{m.group(1).lower()}.pub")), text)

    started = {}  # machine -> (Popen, stdout path, stderr path)
    last = None   # (stdout, stderr, what) of the latest shell block

    def run(machine, script, what):
        r = subprocess.run(["bash", "-e", "-c", in_folders(script)], cwd=folder(machine), env=env,
                           capture_output=True, text=True, timeout=60)
        no_sanitizer_report(r.stdout + r.stderr, what)
        return r

    try:
        for words, body in blocks:
            kind, what = words[0], f"{' '.join(words)}: {body.strip()}"
            if kind == "sql":
                with conn.cursor() as cur:
                    cur.execute(body)
            elif kind == "file":
                machine, path = words[1], substitute(words[2])
                assert path.startswith(folder(machine)), what
                with open(path, "w") as f:
                    f.write(substitute(body))
            elif kind == "shell":
                machine, fails = words[1], words[2:] == ["fails"]
                assert words[2:] in ([], ["fails"]), what
                commands = [c for c in body.splitlines() if c.strip()]
                if fails:
                    if commands[:-1]:
                        r = run(machine, "\n".join(commands[:-1]), what)
                        assert r.returncode == 0, f"{what}\n{r.stdout}\n{r.stderr}"
                    r = run(machine, commands[-1], what)
                    assert r.returncode == 1, f"{what}: exited {r.returncode}\n{r.stderr}"
                else:
                    r = run(machine, body, what)
                    assert r.returncode == 0, f"{what}\n{r.stdout}\n{r.stderr}"
                last = (r.stdout, r.stderr, what)
            elif kind == "start":
                machine, ready = words[1], words[2]
                assert machine not in started, what
                out, err = (os.path.join(str(tmp_path), f"{machine}.{n}") for n in ("out", "err"))
                penv, command = dict(env), in_folders(body.strip())
                if machine == "broker":  # as conftest starts brokers: no exit-time leak scan,
                    penv["ASAN_OPTIONS"] = "detect_leaks=0:quarantine_size_mb=16"
                    command = f"{WRAPPER} {command}"  # and under SB_BROKER_WRAPPER
                with open(out, "w") as fo, open(err, "w") as fe:
                    proc = subprocess.Popen(["bash", "-c", "exec " + command],
                                            cwd=folder(machine), env=penv, stdout=fo, stderr=fe,
                                            start_new_session=True)
                started[machine] = (proc, out, err)

                def printed_ready():
                    text = open(out).read() + open(err).read()
                    assert proc.poll() is None, f"{what}: exited {proc.returncode}\n{text}"
                    return ready in text
                wait_until(printed_ready, 60 if WRAPPER else 30, f"{machine} to print {ready!r}")
                if machine == "broker":
                    curve_ping_until_answered(machines, values)
            elif kind == "c":
                source = tmp_path / "app.c"
                source.write_text(C_PRELUDE + textwrap.indent(body, "    ") + "    return 0;\n}\n")
                r = subprocess.run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror",
                                    "-fsyntax-only", "-I", os.path.join(SOURCE_DIR, "include"),
                                    str(source)], capture_output=True, text=True)
                assert r.returncode == 0, f"{what}\n{r.stderr}"
            elif kind == "output":
                body = substitute(body)
                if len(words) == 1:
                    assert last, f"{what}: no shell block before it"
                    check_output(body, *last)
                else:
                    proc, out, err = started[words[1]]
                    try:
                        rc = proc.wait(30)
                    except subprocess.TimeoutExpired:
                        rc = None
                    text_out, text_err = open(out).read(), open(err).read()
                    no_sanitizer_report(text_out + text_err, what)
                    assert rc == 0, f"{what}: {rc}\n{text_out}\n{text_err}"
                    check_output(body, text_out, text_err, what)
            else:
                raise AssertionError(f"unknown walkthrough marker: {what}")
        assert "broker" in started, "the walkthrough never started the broker"
    finally:
        for machine, (proc, out, err) in started.items():
            if machine != "broker" and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if "broker" in started:
            proc, out, err = started["broker"]
            terminate(proc)
            log = open(err).read() + open(out).read()
            no_sanitizer_report(log, "the broker")
            assert proc.returncode == 0, f"the broker exited {proc.returncode}:\n{log[-4000:]}"


def curve_ping_until_answered(machines, values):
    """The broker answers ping (what conftest waits for), asked with the first desk's keys the
    walkthrough made: its ports are bound and its loop runs."""
    desk = next(m for m in machines if m != "broker")
    secret = key_line(os.path.join(machines[desk], f"{desk}.key")).encode()
    server = key_line(os.path.join(machines[desk], "broker.pub")).encode()
    endpoint = f"tcp://{values['BROKER_HOST']}:{values['PORT_SERVICE']}"
    ctx = zmq.Context.instance()

    def answers():
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.curve_secretkey = secret
        s.curve_publickey = zmq.curve_public(secret)
        s.curve_serverkey = server
        s.connect(endpoint)
        try:
            s.send_multipart([b"", b"\x81\xa2op\xa4ping"])  # msgpack {"op": "ping"}
            return s.poll(500) != 0
        finally:
            s.close()
    wait_until(answers, 30, "the broker to answer a CURVE ping")
