-- Syncbroker roles and privileges (docs/capture.md, "Roles and privileges"). Idempotent: safe
-- to run again, and it upgrades an installation made before capture ran as the owner.
-- Writers need nothing here: the capture triggers run as the owner (002_capture.sql). The
-- broker's login role is a member of syncbroker_reader, which may read the change log and the
-- tracked tables (track() grants, untrack() revokes) and move its own reader row.

-- Roles are per cluster: another database's migration may have created it already.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'syncbroker_reader') THEN
        CREATE ROLE syncbroker_reader NOLOGIN;
    END IF;
EXCEPTION
    WHEN unique_violation OR duplicate_object THEN
        NULL; -- created concurrently
    WHEN insufficient_privilege THEN
        RAISE EXCEPTION 'creating role syncbroker_reader: %', SQLERRM
            USING HINT = 'a superuser or a CREATEROLE role runs once: '
                         'CREATE ROLE syncbroker_reader NOLOGIN; then migrate again';
END
$$;

-- An upgrade: writers were told to grant USAGE on the schema, INSERT on syncbroker.change and
-- USAGE on syncbroker.version_seq; brokers, DML on syncbroker.reader and DELETE on
-- syncbroker.change. A former broker role becomes a member of syncbroker_reader (less than it
-- had); then every right on the capture objects of every role but the owner goes, so that
-- nobody can insert a change row or take a version. PUBLIC is in the same loop (grantee 0).
DO $$
DECLARE
    _role oid;
    _name text;
BEGIN
    FOR _role IN
        SELECT DISTINCT a.grantee
        FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
        WHERE a.grantee <> c.relowner AND a.grantee <> 0
          AND (c.oid = 'syncbroker.reader'::regclass AND a.privilege_type <> 'SELECT'
               OR c.oid = 'syncbroker.change'::regclass AND a.privilege_type = 'DELETE')
    LOOP
        EXECUTE format('GRANT syncbroker_reader TO %I', pg_catalog.pg_get_userbyid(_role));
    END LOOP;
    FOR _role IN
        SELECT a.grantee
        FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
        WHERE c.relnamespace = 'syncbroker'::regnamespace AND a.grantee <> c.relowner
        UNION
        SELECT a.grantee
        FROM pg_catalog.pg_namespace n, pg_catalog.aclexplode(n.nspacl) a
        WHERE n.nspname = 'syncbroker' AND a.grantee <> n.nspowner
        UNION
        SELECT 0
    LOOP
        IF _role = 'syncbroker_reader'::regrole THEN
            CONTINUE;
        END IF;
        _name := CASE WHEN _role = 0 THEN 'PUBLIC'
                      ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(_role)) END;
        EXECUTE format('REVOKE ALL ON SCHEMA syncbroker FROM %s', _name);
        EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA syncbroker FROM %s', _name);
        EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA syncbroker FROM %s', _name);
    END LOOP;
END
$$;

-- Only the broker's two functions may be called by anyone but the owner (002_capture.sql
-- revoked EXECUTE from PUBLIC; track() does on each capture function it creates).
GRANT USAGE ON SCHEMA syncbroker TO syncbroker_reader;
REVOKE ALL ON ALL TABLES IN SCHEMA syncbroker FROM syncbroker_reader;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA syncbroker FROM syncbroker_reader;
GRANT SELECT ON syncbroker.tracked, syncbroker.change, syncbroker.reader, syncbroker.settings
    TO syncbroker_reader;
GRANT EXECUTE ON FUNCTION syncbroker.register_reader(text, pg_snapshot),
                          syncbroker.prune(text, pg_snapshot, interval, interval)
    TO syncbroker_reader;

-- Tables tracked by an older track(): their capture function ran as the writer and the reader
-- role could not read them. track() again upgrades both; tables already upgraded are skipped
-- (track() takes a lock on the table).
DO $$
DECLARE
    _rel oid;
BEGIN
    FOR _rel IN
        SELECT t.relid
        FROM syncbroker.tracked t
        JOIN pg_catalog.pg_class c ON c.oid = t.relid
        LEFT JOIN pg_catalog.pg_proc p ON p.pronamespace = 'syncbroker'::regnamespace
                                      AND p.proname = pg_catalog.format('_capture_%s', t.relid)
        WHERE p.oid IS NULL OR NOT p.prosecdef
           OR NOT pg_catalog.has_table_privilege('syncbroker_reader', t.relid, 'SELECT')
        ORDER BY t.relid
    LOOP
        PERFORM syncbroker.track(_rel::regclass);
    END LOOP;
    -- The broker no longer installs the NOTIFY triggers: when notify is on, every tracked
    -- table has one from here on (enable_notify() skips the tables that do).
    IF EXISTS (SELECT 1 FROM syncbroker.settings WHERE key = 'notify' AND value = 'on') THEN
        PERFORM syncbroker.enable_notify();
    END IF;
END
$$;
