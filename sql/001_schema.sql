-- Syncbroker capture schema (docs/capture.md). Idempotent: safe to run again.
CREATE SCHEMA IF NOT EXISTS syncbroker;

CREATE TABLE IF NOT EXISTS syncbroker.schema_version (
    version    int PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- One database-wide sequence: a key deleted, pruned and inserted again never reuses a version.
CREATE SEQUENCE IF NOT EXISTS syncbroker.version_seq AS bigint;

CREATE TABLE IF NOT EXISTS syncbroker.tracked (
    relid      oid PRIMARY KEY,
    relname    text NOT NULL,          -- schema.name, as the broker's `tables` names it
    pk_cols    text[] NOT NULL,        -- key columns in key order
    pk_types   text[] NOT NULL,        -- format_type() of each key column
    tracked_at timestamptz NOT NULL DEFAULT now()
);

-- The change log, and the only thing a tracked write adds: one row per changed row.
-- Readers select by transaction visibility (the gap-free cursor), hence the index on xid;
-- the newest version of an entity is the newest row of its (relid, pk), hence the second
-- index. No primary key: version identifies a change, and every index costs every write.
-- UNLOGGED: the log is transient (pruned within seconds) and writing it to WAL would double
-- the writers' WAL. After a crash PostgreSQL empties it, and the reader rows with it: each
-- broker notices its reader row is gone and starts a new epoch, so clients resynchronise
-- instead of missing the changes the crash took.
CREATE UNLOGGED TABLE IF NOT EXISTS syncbroker.change (
    xid     xid8 NOT NULL DEFAULT pg_current_xact_id(),
    relid   oid NOT NULL,
    pk      text[],                    -- NULL for a truncate
    op      "char" NOT NULL CHECK (op IN ('i', 'u', 'd', 't')),
    version bigint NOT NULL,
    origin  text,
    ts      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS change_xid_idx ON syncbroker.change (xid);
CREATE INDEX IF NOT EXISTS change_entity_idx ON syncbroker.change (relid, pk, version);

-- The newest captured state of every entity still in the log. Deletes stay in the log for
-- the tombstone retention (prune()), other changes until every reader has passed them: an
-- entity whose changes are all pruned has no row here (version 0 to readers), which is a
-- lower bound of its version, all a snapshot needs. A truncate ends every older entity.
CREATE OR REPLACE VIEW syncbroker.entity AS
SELECT DISTINCT ON (relid, pk) relid, pk, version, op = 'd' AS deleted, origin, ts AS changed_at
FROM syncbroker.change c
WHERE pk IS NOT NULL
  AND version > coalesce((SELECT max(t.version) FROM syncbroker.change t
                          WHERE t.relid = c.relid AND t.pk IS NULL), 0)
ORDER BY relid, pk, version DESC;

-- Where each reader's cursor is, so pruning never removes what a live reader still needs.
CREATE UNLOGGED TABLE IF NOT EXISTS syncbroker.reader (
    name     text PRIMARY KEY,
    position pg_snapshot NOT NULL,
    seen_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS syncbroker.settings (
    key   text PRIMARY KEY,
    value text NOT NULL
);
-- notify: whether track() installs the NOTIFY trigger (source_notify needs it; the broker never
-- installs it itself). Off for a new installation, so that writers of a database read by
-- source_poll never pay for NOTIFY (a database-wide lock at commit); enable_notify() turns it on.
INSERT INTO syncbroker.settings (key, value) VALUES ('notify', 'off') ON CONFLICT (key) DO NOTHING;

