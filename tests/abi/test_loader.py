"""The plugin loader and the config parser refuse bad input with a message naming the file,
line and key (and, for ABI problems, both versions), and syncbroker exits 1 before anything
binds. Runs the real daemon; needs no database (--check tries the configured one, port 1,
and says it checked the file only)."""
import os
import signal
import socket
import subprocess
import threading

import pytest

BUILD = os.environ["SB_BUILD_DIR"]
BAD = os.environ["SB_BAD_PLUGIN_DIR"]
BROKER = os.path.join(BUILD, "broker", "syncbroker")
REAL = os.path.join(BUILD, "plugins")


@pytest.fixture
def plugin_dir(tmp_path):
    """A plugin folder holding the real plugins and the deliberately bad ones."""
    d = tmp_path / "plugins"
    d.mkdir()
    for folder in (REAL, BAD):
        for name in os.listdir(folder):
            if name.endswith(".so"):
                os.symlink(os.path.join(folder, name), d / name)
    return d


def write_config(tmp_path, plugin_dir, transport="transport_file", extra="", source="source_poll",
                 broker_extra="", database=None):
    out = tmp_path / "out.txt"
    database = database or (
        "conninfo = host=127.0.0.1 port=1 dbname=none\n"
        "tables = public.bookings, public.rooms\n")
    text = (
        "[broker]\n"
        f"plugin_dir = {plugin_dir}\n"
        f"{broker_extra}"
        "\n[database]\n"
        f"{database}"
        "\n[source.main]\n"
        f"plugin = {source}\n"
        "\n[transport.t]\n"
        f"plugin = {transport}\n"
        f"{extra}")
    if transport == "transport_file" and "path" not in extra:
        text += f"path = {out}\n"
    path = tmp_path / "sb.ini"
    path.write_text(text)
    return path


def line_of(path, needle):
    for no, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return no
    raise AssertionError(f"{needle!r} not in {path}")


def run_broker(path, *args):
    return subprocess.run([BROKER, "-c", str(path), *args], capture_output=True, text=True,
                          timeout=30)


def refused(path, *args):
    r = run_broker(path, *args)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "AddressSanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr
    return r.stderr


def test_check_prints_resolved_config(tmp_path, plugin_dir):
    cfg = write_config(tmp_path, plugin_dir, transport="abi_good", extra="name = x\n")
    r = run_broker(cfg, "--check")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "[transport.t]" in out and "plugin = abi_good" in out
    assert "level = 3  ; default" in out and "name = x\n" in out
    assert "debounce_ms = 200" in out and "heartbeat_ms = 1000" in out
    assert "tables = public.bookings, public.rooms" in out
    assert "[source.main]" in out and "poll_interval_ms = " in out
    # Nothing listens on port 1: the database side was not checked, and --check says so.
    assert out.rstrip().endswith(f"; {cfg}: configuration OK, file only ([source.main] could "
                                 "not connect to the database)"), out
    assert "could not connect to the database: only the file was checked" in r.stderr


@pytest.mark.parametrize("variant, message", [
    ("abi_not_elf", "cannot load"),
    ("abi_no_entry", "no entry symbol sb_plugin_entry()"),
    ("abi_abi_major", "built for ABI 3.0; this broker has 2.0"),
    ("abi_minor", "built against ABI 2.99, newer than this broker's 2.0: upgrade the broker or "
                  "build the plugin against the 2.0 header"),
    ("abi_v1", "was built for plugin ABI 1 (Syncbroker 0.1); this broker has ABI 2.0: rebuild it "
               "against include/syncbroker/plugin.h 2.0 (docs/plugins.md, Porting from ABI 1)"),
    ("abi_size", "descriptor is 24 bytes, a transport of ABI 2.0 is at least"),
    ("abi_null_start", "mandatory callback 'start' is NULL"),
    ("abi_null_descriptor", "supports none of the ABI versions this broker has (2.0)"),
    ("abi_dup_option", "an option is declared twice"),
    ("abi_missing", "No such file or directory"),
])
def test_loader_refuses(tmp_path, plugin_dir, variant, message):
    cfg = write_config(tmp_path, plugin_dir, transport=variant, extra="name = x\n")
    err = refused(cfg, "--check")
    line = line_of(cfg, f"plugin = {variant}")
    assert f"{cfg}:{line}: [transport.t] plugin: {plugin_dir}/{variant}.so: {message}" in err, err


def test_not_a_shared_object_is_one_dlopen_error(tmp_path, plugin_dir):
    """The dlopen error is the last word: no "plugin ABI mismatch" after it."""
    cfg = write_config(tmp_path, plugin_dir, transport="abi_not_elf")
    lines = refused(cfg).strip().splitlines()
    assert f"{cfg}:{line_of(cfg, 'plugin = abi_not_elf')}: [transport.t] plugin: " in lines[-1]
    assert "cannot load" in lines[-1]
    assert not any("ABI" in line or "not started" in line for line in lines), lines


def test_check_callback_refusal_names_the_line(tmp_path, plugin_dir):
    cfg = write_config(tmp_path, plugin_dir, transport="abi_check", extra="name = x\n")
    err = refused(cfg, "--check")
    assert f"{cfg}:{line_of(cfg, 'name = x')}: [transport.t] name: refused by check()" in err, err
    assert f"{cfg}: start-up would refuse this configuration" in err


def test_v1_plugin_is_refused_before_any_call(tmp_path, plugin_dir):
    """A v1 descriptor is recognised by its first fields: nothing of it is called (its check()
    would refuse), and the refusal is the only error."""
    cfg = write_config(tmp_path, plugin_dir, transport="abi_v1", extra="name = x\n")
    err = refused(cfg, "--check")
    assert "was built for plugin ABI 1" in err and "refused by check()" not in err, err


def test_loader_refuses_wrong_kind(tmp_path, plugin_dir):
    cfg = write_config(tmp_path, plugin_dir, source="transport_file")
    err = refused(cfg, "--check")
    line = line_of(cfg, "plugin = transport_file")
    assert (f"{cfg}:{line}: [source.main] plugin: {plugin_dir}/transport_file.so: is a "
            "transport plugin, but [source.main] needs a source plugin") in err


def test_loader_refuses_a_source_as_transport(tmp_path, plugin_dir):
    cfg = write_config(tmp_path, plugin_dir, transport="abi_source_rows")
    err = refused(cfg, "--check")
    line = line_of(cfg, "plugin = abi_source_rows")
    assert (f"{cfg}:{line}: [transport.t] plugin: {plugin_dir}/abi_source_rows.so: is a "
            "source plugin, but [transport.t] needs a transport plugin") in err, err


def test_loader_refuses_a_transport_as_source(tmp_path, plugin_dir):
    cfg = write_config(tmp_path, plugin_dir, source="abi_good", transport="abi_good",
                       extra="name = x\n")
    err = refused(cfg, "--check")
    line = line_of(cfg, "plugin = abi_good")
    assert (f"{cfg}:{line}: [source.main] plugin: {plugin_dir}/abi_good.so: is a transport "
            "plugin, but [source.main] needs a source plugin") in err, err


NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")


@pytest.fixture
def copied(tmp_path):
    """A private plugin folder (0755) holding copies (0644) of the two plugins the config names."""
    d = tmp_path / "p"
    d.mkdir()
    os.chmod(d, 0o755)
    for name in ("source_poll.so", "transport_file.so"):
        (d / name).write_bytes(open(os.path.join(REAL, name), "rb").read())
        os.chmod(d / name, 0o644)
    return d


def test_loader_accepts_private_copies(tmp_path, copied):
    r = run_broker(write_config(tmp_path, copied), "--check")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("mode", [0o777, 0o666, 0o664, 0o620])
def test_loader_refuses_plugin_writable_by_others(tmp_path, copied, mode):
    os.chmod(copied / "transport_file.so", mode)
    cfg = write_config(tmp_path, copied)
    err = refused(cfg, "--check")
    line = line_of(cfg, "plugin = transport_file")
    assert (f"{cfg}:{line}: [transport.t] plugin: {copied}/transport_file.so: is writable by "
            f"others (mode {mode:04o}): refusing to load it") in err, err
    assert "[source.main] plugin" not in err, err  # the other file is fine


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o1777, 0o730])
def test_loader_refuses_plugin_dir_writable_by_others(tmp_path, copied, mode):
    os.chmod(copied, mode)
    cfg = write_config(tmp_path, copied)
    err = refused(cfg, "--check")
    assert (f"plugin_dir {copied} is writable by others (mode {mode:04o}): refusing to load "
            "plugins from it") in err, err
    assert f"{cfg}:{line_of(cfg, 'plugin = source_poll')}: [source.main] plugin: " in err, err


def test_loader_refuses_link_into_folder_writable_by_others(tmp_path, copied):
    """A safe plugin_dir whose entry links into a folder anyone may write is no safer."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    os.rename(copied / "transport_file.so", shared / "transport_file.so")
    os.symlink(shared / "transport_file.so", copied / "transport_file.so")
    err = refused(write_config(tmp_path, copied), "--check")
    assert (f"{copied}/transport_file.so: links into {shared} is writable by others (mode 0777): "
            "refusing to load plugins from it") in err, err


@needs_root
def test_loader_refuses_plugin_owned_by_another_user(tmp_path, copied):
    os.chown(copied / "transport_file.so", NOBODY, NOBODY)
    err = refused(write_config(tmp_path, copied), "--check")
    assert (f"{copied}/transport_file.so: is owned by uid {NOBODY}, not root or the broker's "
            f"uid 0: refusing to load it") in err, err


@needs_root
def test_loader_refuses_plugin_dir_owned_by_another_user(tmp_path, copied):
    os.chown(copied, NOBODY, NOBODY)
    err = refused(write_config(tmp_path, copied), "--check")
    assert (f"plugin_dir {copied} is owned by uid {NOBODY}, not root or the broker's uid 0: "
            "refusing to load plugins from it") in err, err


@needs_root
def test_loader_accepts_root_group_read_only(tmp_path, copied):
    """Group and owner other than the group's members do not matter without a write bit."""
    os.chown(copied / "transport_file.so", 0, NOBODY)
    os.chmod(copied / "transport_file.so", 0o640)
    assert run_broker(write_config(tmp_path, copied), "--check").returncode == 0


def test_build_plugin_dirs_pass_the_rule():
    """What the demo, the benches and every test load from: built with chmod go-w."""
    for folder in (REAL, BAD):
        plugins = [os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".so")]
        for p in [folder] + plugins:
            st = os.stat(p)
            assert not st.st_mode & 0o022 and st.st_uid in (0, os.geteuid()), (p, oct(st.st_mode))


@pytest.mark.parametrize("extra, key, message", [
    ("name = x\nbogus = 1\n", "bogus", "unknown key for plugin abi_good"),
    ("name = x\nlevel = 9\n", "level", "'9' is not an integer between 1 and 5"),
    ("name = x\nlevel = three\n", "level", "'three' is not an integer between 1 and 5"),
    ("name = x\nverbose = maybe\n", "verbose", "'maybe' is not true or false"),
])
def test_plugin_option_errors(tmp_path, plugin_dir, extra, key, message):
    cfg = write_config(tmp_path, plugin_dir, transport="abi_good", extra=extra)
    err = refused(cfg, "--check")
    line = line_of(cfg, f"{key} =")
    assert f"{cfg}:{line}: [transport.t] {key}: {message}" in err, err


def test_plugin_required_option(tmp_path, plugin_dir):
    cfg = write_config(tmp_path, plugin_dir, transport="abi_good")
    err = refused(cfg, "--check")
    line = line_of(cfg, "[transport.t]")
    assert f"{cfg}:{line}: [transport.t] name: required key is missing" in err, err


@pytest.mark.parametrize("broker_extra, needle, message", [
    ("debounce_ms = soon\n", "debounce_ms =", "[broker] debounce_ms: 'soon' is not an integer"),
    ("heartbeat_ms = 0\n", "heartbeat_ms =", "[broker] heartbeat_ms: '0' is not an integer"),
    ("log_level = loud\n", "log_level =", "[broker] log_level: 'loud' is not one of"),
    ("colour = blue\n", "colour =", "[broker] colour: unknown key"),
    ("debounce_ms = 1\ndebounce_ms = 2\n", "debounce_ms = 2", "set twice (first on line"),
    ("debounce_ms.public.nope = 5\n", "debounce_ms.public.nope",
     "[broker] debounce_ms.public.nope: 'public.nope' is not in [database] tables"),
    ("x" * 300 + " = 1\n", "x" * 300, "line longer than"),
])
def test_broker_key_errors(tmp_path, plugin_dir, broker_extra, needle, message):
    cfg = write_config(tmp_path, plugin_dir, broker_extra=broker_extra)
    err = refused(cfg, "--check")
    assert f"{cfg}:{line_of(cfg, needle)}: " in err and message in err, err


@pytest.mark.parametrize("database, needle, message", [
    ("conninfo = x\ntables = bookings\n", "tables =", "'bookings' is not a table name"),
    ("conninfo = x\ntables = public.a; drop table x\n", "tables =",
     "'public.a;' is not a table name"),
    ("conninfo = x\ntables = public.\"A\"\n", "tables =", "'public.\"A\"' is not a table name"),
    ("conninfo = x\ntables = public.a, public.a\n", "tables =", "'public.a' is listed twice"),
    ("conninfo = x\ntables = public.a,,public.b\n", "tables =",
     "empty entry (a comma with no table before it)"),
    ("conninfo = x\ntables = , public.a\n", "tables =", "empty entry"),
    ("conninfo = x\ntables = public.bookings,,\n", "tables =", "empty entry"),
    ("conninfo = x\ntables = public.a,\n", "tables =", "the list ends with a comma"),
    ("conninfo = x\ntables = public.a,\n    public.b,\n", "    public.b,",
     "the list ends with a comma"),
    ("conninfo = x\ntables = public.a,\n    , public.b\n", "    , public.b", "empty entry"),
    ("conninfo = x\ntables = public.a public.b\n", "tables =", "missing comma before 'public.b'"),
    ("conninfo = x\ntables = public.a\n    public.b\n", "    public.b",
     "missing comma before 'public.b'"),
    ("tables = public.a\n", None, "[database] conninfo: required key is missing"),
    ("conninfo = x\ntables = public.a\ncolour = blue\n", "colour =",
     "[database] colour: unknown key for plugin source_poll"),
])
def test_database_errors(tmp_path, plugin_dir, database, needle, message):
    cfg = write_config(tmp_path, plugin_dir, database=database)
    r = run_broker(cfg, "--check")
    assert r.returncode == 1
    if needle and message.startswith("[database]"):
        assert f"{cfg}:{line_of(cfg, needle)}: {message}" in r.stderr, r.stderr
    elif needle:
        assert f"{cfg}:{line_of(cfg, needle)}: [database] tables: {message}" in r.stderr, r.stderr
    else:
        assert message in r.stderr


def test_tables_continue_over_lines(tmp_path, plugin_dir):
    cfg = write_config(tmp_path, plugin_dir, database=(
        "conninfo = host=127.0.0.1 port=1\ntables = public.a,\n    public.b, public.c\n"
        "    , public.d\n"))
    r = run_broker(cfg, "--check")
    assert r.returncode == 0, r.stderr
    assert "tables = public.a, public.b, public.c, public.d\n" in r.stdout


@pytest.mark.parametrize("conninfo, message", [
    ("this is not a conninfo", 'missing "=" after "this" in connection info string'),
    ("host=127.0.0.1 colour=blue", 'invalid connection option "colour"'),
    ("postgresql://[::1",
     'end of string reached when looking for matching "]" in IPv6 host address in URI'),
])
def test_conninfo_refused(tmp_path, plugin_dir, conninfo, message):
    """libpq would fail every connection attempt: refused instead of retried forever."""
    cfg = write_config(tmp_path, plugin_dir,
                       database=f"conninfo = {conninfo}\ntables = public.a\n")
    err = refused(cfg, "--check")
    assert (f"{cfg}:{line_of(cfg, 'conninfo =')}: [database] conninfo: not a libpq connection "
            f"string (key=value pairs or a postgresql:// URI): {message}") in err, err
    assert "not reachable" not in err
    assert f"{cfg}:{line_of(cfg, 'conninfo =')}: [database] conninfo" in refused(cfg)


@pytest.mark.parametrize("key, value, message", [
    ("pub", "tcp://127.0.0.1:47001x", "port '47001x' is not a number between 0 and 65535 (or *)"),
    ("pub", "tcp://127.0.0.1:-1", "port '-1' is not a number between 0 and 65535"),
    ("pub", "tcp://127.0.0.1:65536", "port '65536' is not a number"),
    ("pub", "tcp://127.0.0.1: 5", "port ' 5' is not a number"),
    ("service", "tcp://127.0.0.1", "expected tcp://HOST:PORT"),
    ("service", "tcp://:5557", "expected tcp://HOST:PORT"),
    ("service", "127.0.0.1:5557", "expected tcp://HOST:PORT, ipc://PATH or inproc://NAME"),
    ("service", "udp://127.0.0.1:5557", "expected tcp://HOST:PORT, ipc://PATH or inproc://NAME"),
    ("service", "ipc://", "the path or name after :// is empty"),
    ("service", "tcp://[::1:5557", "an IPv6 address goes in brackets"),
    ("service", "tcp://local host:5557", "the host has a character"),
])
def test_endpoint_refused(tmp_path, plugin_dir, key, value, message):
    cfg = write_config(tmp_path, plugin_dir, transport="transport_zmq", extra=f"{key} = {value}\n")
    err = refused(cfg, "--check")
    assert (f"{cfg}:{line_of(cfg, f'{key} =')}: [transport.t] {key}: '{value}' is not an "
            f"endpoint: {message}") in err, err


def test_bad_endpoint_binds_nothing(tmp_path, plugin_dir):
    """ZeroMQ would bind tcp://127.0.0.1:PORTx to PORT: start-up refuses it first."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = write_config(tmp_path, plugin_dir, transport="transport_zmq",
                       extra=f"pub = tcp://127.0.0.1:{port}x\nservice = tcp://127.0.0.1:{port}\n")
    assert f"pub: 'tcp://127.0.0.1:{port}x' is not an endpoint" in refused(cfg)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


@pytest.mark.parametrize("pub", ["tcp://127.0.0.1:*", "tcp://127.0.0.1:0", "tcp://127.9.8.7:5556",
                                 "tcp://[::1]:5556", "tcp://localhost:65535",
                                 "tcp://LocalHost:5556", "ipc:///tmp/sb-pub", "inproc://events"])
def test_endpoint_accepted(tmp_path, plugin_dir, pub):
    cfg = write_config(tmp_path, plugin_dir, transport="transport_zmq", extra=f"pub = {pub}\n")
    r = run_broker(cfg, "--check")
    assert r.returncode == 0, r.stderr
    assert f"pub = {pub}\n" in r.stdout


PLAIN = ("is not a loopback address and this transport does not encrypt without "
         "curve_secret_key_file (docs/security.md): set allow_plaintext = on to bind it in plain "
         "text anyway")


@pytest.mark.parametrize("key, value", [
    ("pub", "tcp://*:5556"), ("pub", "tcp://0.0.0.0:5556"), ("service", "tcp://[::]:5557"),
    ("service", "tcp://192.168.1.20:5557"), ("pub", "tcp://128.0.0.1:5556"),
    ("pub", "tcp://[::ffff:10.0.0.1]:5556"), ("service", "tcp://eth0:5557"),
    ("service", "tcp://desk-1.example:5557"), ("pub", "tcp://localhost.evil.example:5556"),
])
def test_plaintext_beyond_loopback_refused(tmp_path, plugin_dir, key, value):
    cfg = write_config(tmp_path, plugin_dir, transport="transport_zmq", extra=f"{key} = {value}\n")
    for args in (("--check",), ()):
        err = refused(cfg, *args)
        at = f"{cfg}:{line_of(cfg, f'{key} =')}: [transport.t] {key}: "
        assert f"{at}'{value}' {PLAIN}" in err, err


def test_plaintext_refusal_binds_nothing(tmp_path, plugin_dir):
    service = free_port()
    cfg = write_config(tmp_path, plugin_dir, transport="transport_zmq",
                       extra=f"pub = tcp://0.0.0.0:{free_port()}\n"
                             f"service = tcp://127.0.0.1:{service}\n")
    assert PLAIN in refused(cfg)
    with socket.socket() as s:
        s.bind(("127.0.0.1", service))


def test_allow_plaintext_starts_with_a_warning(tmp_path, plugin_dir):
    """allow_plaintext = on binds 0.0.0.0 and says so at start (no database needed)."""
    port = free_port()
    cfg = write_config(tmp_path, plugin_dir, transport="transport_zmq",
                       extra=f"pub = tcp://0.0.0.0:{port}\nservice = tcp://127.0.0.1:{free_port()}"
                             "\nallow_plaintext = on\n")
    assert run_broker(cfg, "--check").returncode == 0
    proc = subprocess.Popen([BROKER, "-c", str(cfg)], stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if "ready" in line:
                break
        log = "".join(lines)
        assert (f"warn  [transport.t] pub = tcp://0.0.0.0:{port} is bound in plain text beyond "
                "loopback (allow_plaintext = on)") in log, log
        assert "service = tcp://127.0.0.1" not in log, log  # loopback: no warning
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    finally:
        proc.terminate()
        rest = rest_of(proc, 10)
    assert proc.returncode == 0, rest
    assert "AddressSanitizer" not in rest and "runtime error" not in rest, rest


def rest_of(proc, timeout):
    """The rest of proc's stderr once it exits (killed after timeout s). Read through the same
    file object the caller iterated: communicate() would read the pipe itself and lose what
    that object had read ahead (a line written right after the one the caller waited for)."""
    guard = threading.Timer(timeout, proc.kill)
    guard.start()
    try:
        rest = proc.stderr.read()
        proc.wait()
    finally:
        guard.cancel()
    return rest


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_check_binds_nothing(tmp_path, plugin_dir):
    """--check opens and checks every plugin, and leaves the configured ports free."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen()
        cfg = write_config(tmp_path, plugin_dir, transport="transport_zmq",
                           extra=f"pub = tcp://127.0.0.1:{port}\n"
                                 f"service = tcp://127.0.0.1:{s.getsockname()[1]}\n")
        # The service port is taken: binding it would fail, --check does not try.
        assert run_broker(cfg, "--check").returncode == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_unknown_section_and_missing_sections(tmp_path):
    cfg = tmp_path / "sb.ini"
    cfg.write_text("[broker]\n[databse]\nconninfo = x\n")
    err = refused(cfg, "--check")
    assert f"{cfg}:2: [databse]: unknown section" in err
    assert "no [source.NAME] section" in err and "no [transport.NAME] section" in err
    assert "[database] tables: required key is missing" in err


def test_syntax_error_and_missing_file(tmp_path):
    cfg = tmp_path / "sb.ini"
    cfg.write_text("[broker]\nthis line has no equals sign\n")
    assert f"{cfg}:2: syntax error" in refused(cfg)
    assert "cannot open" in refused(tmp_path / "absent.ini")


def test_directory_as_config(tmp_path):
    err = refused(tmp_path, "--check")
    assert f"{tmp_path}: cannot open: is a directory, not a configuration file" in err
    assert "required key" not in err


def test_refused_before_anything_binds(tmp_path, plugin_dir):
    """A config error in one section stops the daemon before any transport binds."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = write_config(tmp_path, plugin_dir, transport="transport_zmq",
                       extra=f"pub = tcp://127.0.0.1:{port}\n",
                       broker_extra="debounce_ms = -1\n")
    err = refused(cfg)
    assert "debounce_ms" in err and "not started" not in err.split("debounce_ms")[0]
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # still free: nothing was bound


def test_version_and_usage():
    r = subprocess.run([BROKER, "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and "plugin ABI 2.0" in r.stdout
    r = subprocess.run([BROKER, "--frobnicate"], capture_output=True, text=True)
    assert r.returncode == 1 and "unknown argument" in r.stderr


def run_logged(cfg, on_line):
    """Run the broker on cfg and hand each stderr line to on_line(proc, line) until it returns
    True (it has signalled the broker to stop by then); the whole log. The broker must exit 0
    with no sanitizer report."""
    proc = subprocess.Popen([BROKER, "-c", str(cfg)], stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        for line in proc.stderr:
            lines.append(line)
            if on_line(proc, line):
                break
        lines.append(rest_of(proc, 30))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = "".join(lines)
    assert proc.returncode == 0, log
    assert "AddressSanitizer" not in log and "runtime error" not in log, log
    return log


def start_and_reload(cfg):
    """Start the broker, SIGHUP it once it is ready, SIGTERM it once the reload began (the
    plugins' reloads run right after that line, before the next signal is read); its log."""
    steps = [("ready", signal.SIGHUP), ("SIGHUP: reloading", signal.SIGTERM)]

    def on_line(proc, line):
        if steps[0][0] in line:
            proc.send_signal(steps.pop(0)[1])
        return not steps

    return run_logged(cfg, on_line)


def test_reload_called_on_sighup(tmp_path, plugin_dir):
    log = start_and_reload(write_config(tmp_path, plugin_dir, transport="abi_reload",
                                        extra="name = x\n"))
    assert "[transport.t] reload called" in log, log
    assert "reload failed" not in log, log


def test_reload_failure_is_logged_and_the_broker_carries_on(tmp_path, plugin_dir):
    log = start_and_reload(write_config(tmp_path, plugin_dir, transport="abi_reload",
                                        extra="name = x\nlevel = 5\n"))
    assert "[transport.t] reload failed: busy; running state kept" in log, log


def test_no_reload_callback_is_left_alone(tmp_path, plugin_dir):
    """A plugin without reload() loads, and SIGHUP leaves it alone."""
    log = start_and_reload(write_config(tmp_path, plugin_dir, transport="abi_good",
                                        extra="name = x\n"))
    assert "SIGHUP: reloading" in log and "reload called" not in log, log


def test_second_source_section_names_the_first(tmp_path, plugin_dir):
    """The first source section's line, not the file's first section's."""
    cfg = write_config(tmp_path, plugin_dir, extra="\n[source.other]\nplugin = source_poll\n")
    err = refused(cfg, "--check")
    assert (f"{cfg}:{line_of(cfg, '[source.other]')}: [source.other]: only one source section "
            f"is allowed (the first is on line {line_of(cfg, '[source.main]')})") in err, err


def events_published(cfg, count):
    """Start the broker, read its log until the transport logged `count` published events,
    stop it; (events as (topic, row name), the whole log)."""
    events = []

    def on_line(proc, line):
        if "published event" in line:
            _, _, rest = line.partition("published event ")
            seq, topic, row = rest.split()
            events.append((topic, row))
            if len(events) == count:
                proc.terminate()
                return True
        return False

    return events, run_logged(cfg, on_line)


def test_source_with_rows_is_published_without_fetch(tmp_path, plugin_dir):
    cfg = write_config(tmp_path, plugin_dir, source="abi_source_rows", transport="abi_good",
                       extra="name = x\n")
    events, log = events_published(cfg, 2)
    assert sorted(events) == [("public.bookings/1", "row=emitted"),
                              ("public.rooms/2", "row=emitted")], log
    assert "emitted 2 changes: ok" in log and "fetch table=" not in log, log


def test_source_without_rows_is_asked_to_fetch(tmp_path, plugin_dir):
    cfg = write_config(tmp_path, plugin_dir, source="abi_source_fetch", transport="abi_good",
                       extra="name = x\n")
    events, log = events_published(cfg, 2)
    assert sorted(events) == [("public.bookings/1", "row=fetched"),
                              ("public.rooms/2", "row=fetched")], log
    assert "fetch table=0 keys=1" in log and "fetch table=1 keys=1" in log, log
