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

-- The change log. Readers select by transaction visibility (the gap-free cursor), hence the
-- index on xid. No primary key: version identifies a change, and every index here is paid for
-- by every tracked write.
CREATE TABLE IF NOT EXISTS syncbroker.change (
    xid     xid8 NOT NULL DEFAULT pg_current_xact_id(),
    relid   oid NOT NULL,
    pk      text[],                    -- NULL for a truncate
    op      "char" NOT NULL CHECK (op IN ('i', 'u', 'd', 't')),
    version bigint NOT NULL,
    origin  text,
    ts      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS change_xid_idx ON syncbroker.change (xid);

-- The newest version of every captured entity; deletes stay as tombstones until pruned.
CREATE TABLE IF NOT EXISTS syncbroker.entity (
    relid      oid NOT NULL,
    pk         text[] NOT NULL,
    version    bigint NOT NULL,
    deleted    bool NOT NULL,
    origin     text,
    changed_at timestamptz NOT NULL,
    PRIMARY KEY (relid, pk)
) WITH (fillfactor = 90);   -- room on the page for HOT updates
-- No secondary index: an index on any column the trigger updates (a partial index on
-- `deleted` included) would rule out HOT updates and add an index insertion to every tracked
-- write. Tombstone pruning scans the table instead, at most once a minute (prune()).

-- Where each reader's cursor is, so pruning never removes what a live reader still needs.
CREATE TABLE IF NOT EXISTS syncbroker.reader (
    name     text PRIMARY KEY,
    position pg_snapshot NOT NULL,
    seen_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS syncbroker.settings (
    key   text PRIMARY KEY,
    value text NOT NULL
);
INSERT INTO syncbroker.settings (key, value) VALUES ('notify', 'off') ON CONFLICT (key) DO NOTHING;
INSERT INTO syncbroker.settings (key, value) VALUES ('tombstones_pruned_at', '-infinity')
ON CONFLICT (key) DO NOTHING;
