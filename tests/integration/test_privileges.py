"""Roles and privileges (sql/003_privileges.sql, docs/capture.md): a writer with rights on one
tracked table cannot forge a change of another, the broker's role can read and nothing more,
an installation of the older grants is upgraded, and a table name cannot inject SQL."""
import os
import subprocess

import psycopg2
import pytest
from psycopg2 import errors

from conftest import BUILD_DIR
from sbcluster import BROKER_ROLE
from sbpeer import Subscriber, request
from sbwriter import q

BOOKINGS = "public.bookings"
ROOMS = "public.rooms"


def login_role(conn, name):
    """A login role (roles are per cluster: made once) with no right in this database."""
    q(conn, f"""DO $$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{name}') THEN
            CREATE ROLE {name} LOGIN;
        END IF; END $$""")


def connect_as(pg, db, user):
    c = psycopg2.connect(pg.conninfo(db, user=user))
    c.autocommit = True
    return c


def denied(conn, sql, args=None):
    """sql fails for lack of a privilege; the error's text."""
    with pytest.raises(errors.InsufficientPrivilege) as err:
        q(conn, sql, args)
    return str(err.value)


@pytest.fixture
def rooms(hotel, conn):
    q(conn, "CREATE TABLE public.rooms (no int PRIMARY KEY, state text);"
            "SELECT syncbroker.track('public.rooms')")
    return hotel


def test_one_table_writer_is_captured_and_cannot_forge(pg, broker, source, rooms, conn):
    login_role(conn, "desk")
    q(conn, "GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON public.rooms TO desk")
    b = broker(rooms, [BOOKINGS, ROOMS], source=source)
    sub = Subscriber(b.pub, [f"{ROOMS}/", f"{BOOKINGS}/"])
    sub.wait_heartbeat()
    desk = connect_as(pg, rooms, "desk")
    # Its writes are captured (as the owner of the capture tables), with its origin.
    q(desk, "SET syncbroker.origin = 'desk-1'; INSERT INTO rooms VALUES (12, 'clean')")
    got = sub.collect_until(lambda msgs: any(m[1].get("key") == "12" for m in msgs), 10)
    topic, ev = next(m for m in got if m[1].get("key") == "12")
    assert topic == f"{ROOMS}/12" and ev["op"] == "insert" and ev["origin"] == "desk-1", ev
    q(desk, "TRUNCATE rooms")
    assert q(conn, "SELECT op, origin FROM syncbroker.change WHERE relid = 'rooms'::regclass"
                   " ORDER BY version") == [("i", "desk-1"), ("t", "desk-1")]

    # No way into the change log but a write of the table itself.
    before = q(conn, "SELECT count(*), last_value FROM syncbroker.change, syncbroker.version_seq"
                     " GROUP BY last_value")
    assert "permission denied" in denied(
        desk, "INSERT INTO syncbroker.change (relid, pk, op, version)"
              " VALUES ('public.bookings'::regclass, '{1}', 'u', 9e18)")
    for sql in ("SELECT nextval('syncbroker.version_seq')",
                "SELECT syncbroker.track('public.bookings')",
                "SELECT syncbroker.untrack('public.rooms')",
                "SELECT syncbroker.prune(NULL, NULL)",
                "SELECT syncbroker.register_reader('main', pg_current_snapshot())",
                "SELECT * FROM syncbroker.change"):
        assert "permission denied" in denied(desk, sql), sql
    assert "permission denied" in denied(desk, "SELECT * FROM public.bookings")
    assert q(conn, "SELECT count(*), last_value FROM syncbroker.change, syncbroker.version_seq"
                   " GROUP BY last_value") == before
    # Nobody but the owner may execute anything of the schema (a capture function attached to
    # another table would forge that table's changes), bar the broker's two functions.
    callable_by = q(conn, """
        SELECT r.rolname, p.proname FROM pg_proc p, pg_roles r
        WHERE p.pronamespace = 'syncbroker'::regnamespace
          AND r.rolname IN ('desk', 'syncbroker_reader')
          AND has_function_privilege(r.oid, p.oid, 'EXECUTE') ORDER BY 1, 2""")
    assert callable_by == [("syncbroker_reader", "prune"), ("syncbroker_reader", "register_reader")]
    assert q(conn, """SELECT count(*) FROM pg_proc WHERE pronamespace = 'syncbroker'::regnamespace
                      AND prosecdef AND (proconfig IS NULL OR NOT
                          'search_path=pg_catalog, pg_temp' = ANY (proconfig))""") == [(0,)]

    # A real update of bookings still reaches subscribers with its true version.
    q(conn, "UPDATE bookings SET nights = 1 WHERE id = 1; INSERT INTO bookings (id) VALUES (1)")
    got = sub.collect_until(lambda msgs: any(m[0] == f"{BOOKINGS}/1" for m in msgs), 10)
    ev = next(m[1] for m in got if m[0] == f"{BOOKINGS}/1")
    assert ev["version"] < 10**18, ev
    desk.close()
    b.stop()


def test_capture_functions_cannot_be_attached_to_another_table(pg, rooms, conn):
    """Attached to a writer's own table, rooms' capture function would record that table's
    writes as changes of rooms: even with USAGE on the schema (left over from the older
    grants) the writer may not execute it, and so may not attach it."""
    login_role(conn, "desk")
    q(conn, "CREATE SCHEMA own AUTHORIZATION desk; GRANT USAGE ON SCHEMA syncbroker TO desk")
    fn = q(conn, "SELECT format('syncbroker._capture_%s', 'public.rooms'::regclass::oid)")[0][0]
    desk = connect_as(pg, rooms, "desk")
    q(desk, "CREATE TABLE own.fake (no int PRIMARY KEY, state text)")
    for f in (fn, "syncbroker._capture_truncate", "syncbroker._notify"):
        assert "permission denied for function" in denied(
            desk, f"CREATE TRIGGER forge AFTER INSERT ON own.fake"
                  f" FOR EACH STATEMENT EXECUTE FUNCTION {f}()"), f
    q(desk, "INSERT INTO own.fake VALUES (1, 'x')")
    assert q(conn, "SELECT count(*) FROM syncbroker.change") == [(0,)]
    desk.close()
    q(conn, "REVOKE USAGE ON SCHEMA syncbroker FROM desk; DROP SCHEMA own CASCADE")


def test_broker_role_reads_and_nothing_more(pg, hotel, conn):
    broker = connect_as(pg, hotel, BROKER_ROLE)
    q(conn, "INSERT INTO bookings (id) VALUES (1)")
    assert q(broker, "SELECT id FROM public.bookings") == [(1,)]
    assert q(broker, "SELECT count(*) FROM syncbroker.change") == [(1,)]
    q(broker, "SELECT syncbroker.register_reader('r', pg_current_snapshot())")
    q(broker, "SELECT syncbroker.prune('r', pg_current_snapshot())")
    for sql in ("INSERT INTO public.bookings (id) VALUES (2)",
                "UPDATE public.bookings SET nights = 1",
                "DELETE FROM public.bookings",
                "TRUNCATE public.bookings",
                "CREATE TABLE public.x (id int)",
                "CREATE TABLE syncbroker.x (id int)",
                "SELECT syncbroker.track('public.stays')",
                "SELECT syncbroker.untrack('public.stays')",
                "SELECT syncbroker.enable_notify()",
                "SELECT syncbroker.disable_notify()",
                "SELECT nextval('syncbroker.version_seq')",
                "INSERT INTO syncbroker.change (relid, op, version) VALUES (1, 't', 1)",
                "DELETE FROM syncbroker.change",
                "UPDATE syncbroker.reader SET seen_at = now()",
                "UPDATE syncbroker.settings SET value = 'off'"):
        assert "permission denied" in denied(broker, sql), sql
    # untrack() takes back the read right that track() gave.
    q(conn, "SELECT syncbroker.untrack('public.stays')")
    assert "permission denied" in denied(broker, "SELECT * FROM public.stays")
    q(conn, "SELECT syncbroker.track('public.stays')")
    assert q(broker, "SELECT count(*) FROM public.stays") == [(0,)]
    assert q(conn, f"""SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls,
                              ARRAY(SELECT b.rolname FROM pg_auth_members m
                                    JOIN pg_roles b ON b.oid = m.roleid WHERE m.member = r.oid)
                       FROM pg_roles r WHERE rolname = '{BROKER_ROLE}'""") == [
        (False, False, False, False, False, ["syncbroker_reader"])]
    broker.close()


def test_migration_upgrades_the_older_grants(pg, hotel, conn):
    """What the older docs had writers and brokers grant, and a capture function that ran as the
    writer: the migration makes it SECURITY DEFINER and takes the grants back."""
    login_role(conn, "old_writer")
    login_role(conn, "old_broker")
    q(conn, "SELECT syncbroker.enable_notify()")  # the older source_notify broker enabled it
    fn = q(conn, "SELECT format('syncbroker._capture_%s', 'public.bookings'::regclass::oid)")[0][0]
    q(conn, f"""
        ALTER FUNCTION {fn}() SECURITY INVOKER RESET ALL;
        ALTER FUNCTION syncbroker._capture_truncate() SECURITY INVOKER RESET ALL;
        GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA syncbroker TO PUBLIC;
        REVOKE SELECT ON public.bookings FROM syncbroker_reader;
        DROP TRIGGER syncbroker_notify ON public.bookings;
        GRANT USAGE ON SCHEMA syncbroker TO old_writer, PUBLIC;
        GRANT INSERT ON syncbroker.change TO old_writer, PUBLIC;
        GRANT USAGE ON SEQUENCE syncbroker.version_seq TO old_writer, PUBLIC;
        GRANT SELECT, INSERT, UPDATE, DELETE ON public.bookings TO old_writer;
        GRANT USAGE ON SCHEMA syncbroker TO old_broker;
        GRANT SELECT ON ALL TABLES IN SCHEMA syncbroker TO old_broker;
        GRANT INSERT, UPDATE, DELETE ON syncbroker.reader TO old_broker;
        GRANT DELETE ON syncbroker.change TO old_broker;
        GRANT SELECT ON public.bookings TO old_broker;""")
    assert q(conn, f"SELECT prosecdef FROM pg_proc WHERE oid = '{fn}'::regproc") == [(False,)]
    pg.migrate(hotel)

    assert q(conn, f"""SELECT prosecdef, proconfig FROM pg_proc
                       WHERE oid IN ('{fn}'::regproc, 'syncbroker._capture_truncate'::regproc)""") \
        == [(True, ["search_path=pg_catalog, pg_temp"])] * 2
    for role in ("old_writer", "public"):
        assert q(conn, f"""SELECT has_schema_privilege('{role}', 'syncbroker', 'USAGE'),
                           has_table_privilege('{role}', 'syncbroker.change', 'INSERT'),
                           has_sequence_privilege('{role}', 'syncbroker.version_seq', 'USAGE'),
                           has_function_privilege('{role}', 'syncbroker.track(regclass)',
                                                  'EXECUTE')""") == [(False,) * 4], role
    # The former broker role keeps reading, as a member of syncbroker_reader, and lost the rest.
    assert q(conn, """SELECT pg_has_role('old_broker', 'syncbroker_reader', 'MEMBER'),
                      has_table_privilege('old_broker', 'syncbroker.change', 'DELETE'),
                      has_table_privilege('old_broker', 'syncbroker.reader', 'UPDATE'),
                      has_table_privilege('syncbroker_reader', 'public.bookings', 'SELECT')""") \
        == [(True, False, False, True)]
    assert q(conn, "SELECT count(*) FROM pg_trigger WHERE tgname = 'syncbroker_notify'"
                   " AND tgrelid = 'public.bookings'::regclass") == [(1,)]
    # The writer's writes are still captured, now without any right on the schema.
    writer = connect_as(pg, hotel, "old_writer")
    q(writer, "INSERT INTO public.bookings (id) VALUES (5)")
    assert q(conn, "SELECT pk, op FROM syncbroker.change") == [(["5"], "i")]
    assert "permission denied" in denied(
        writer, "INSERT INTO syncbroker.change (relid, op, version) VALUES (1, 't', 1)")
    writer.close()
    # Migrating again changes nothing.
    acl = "SELECT relacl::text FROM pg_class WHERE relnamespace = 'syncbroker'::regnamespace" \
          " ORDER BY relname"
    before = q(conn, acl)
    pg.migrate(hotel)
    assert q(conn, acl) == before


HOSTILE = 'public.x"; DROP TABLE public.bookings; --'
HOSTILE_1 = 'public.x";DROP/**/TABLE/**/public.bookings;--'


def refused_start(pg, db, tmp_path, tables):
    """Runs the broker (as the broker role) on `tables`: it must refuse to start. Its
    config file and stderr."""
    cfg = tmp_path / "refused.ini"
    cfg.write_text(
        f"[broker]\nplugin_dir = {os.path.join(BUILD_DIR, 'plugins')}\n\n"
        f"[database]\nconninfo = {pg.broker_conninfo(db)}\n"
        f"tables = {tables}\n\n"
        "[source.main]\nplugin = source_poll\n\n"
        "[transport.zmq]\nplugin = transport_zmq\n"
        "pub = tcp://127.0.0.1:*\nservice = tcp://127.0.0.1:*\n")
    r = subprocess.run([os.path.join(BUILD_DIR, "broker", "syncbroker"), "-c", str(cfg)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    assert "runtime error" not in r.stderr and "AddressSanitizer" not in r.stderr, r.stderr
    return cfg, r.stderr


def test_a_table_the_broker_may_not_read_is_refused_at_start(pg, hotel, conn, tmp_path):
    """As after tracking with an older track(): tracked, but not readable by the broker."""
    q(conn, "REVOKE SELECT ON public.stays FROM syncbroker_reader")
    cfg, err = refused_start(pg, hotel, tmp_path, "public.bookings, public.stays")
    assert (f"{cfg}:6: [database] tables: refused by [source.main]") in err, err
    assert ("this role may not read table public.stays: make it a member of syncbroker_reader, "
            "and run SELECT syncbroker.track('public.stays');") in err, err


def test_sql_injection_through_a_table_name_fails_cleanly(pg, broker, hotel, conn, tmp_path):
    # The config parser splits the list at blanks: the spaceless variant is one name.
    for hostile, named in ((HOSTILE, 'public.x";'), (HOSTILE_1, HOSTILE_1)):
        cfg, err = refused_start(pg, hotel, tmp_path, f"public.bookings, {hostile}")
        assert (f"{cfg}:6: [database] tables: '{named}' is not a table name of the form "
                "schema.table") in err, err
        assert q(conn, "SELECT to_regclass('public.bookings') IS NOT NULL") == [(True,)]

    # A request naming it (or a quoted variant) is answered with an error naming the table.
    b = broker(hotel, [BOOKINGS])
    for table in (HOSTILE, HOSTILE_1, 'public."bookings"; DROP TABLE public.bookings; --'):
        reply = request(b.service, {"op": "snapshot", "tables": [BOOKINGS, table]})
        assert len(reply) == 1 and reply[0]["error"] == "unknown_table", reply
        assert table in reply[0]["message"], reply
    assert q(conn, "SELECT to_regclass('public.bookings') IS NOT NULL") == [(True,)]
    assert request(b.service, {"op": "snapshot", "tables": [BOOKINGS]})[0]["rows"] == 0
    b.stop()
