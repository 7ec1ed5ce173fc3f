-- Step 6: every ELECTRIC change recorded, whichever way it was made (README.md, SECURITY MODEL
-- and DIRECT CHANGES). Released: never edit; a change is a new step.

-- One row per change that an ELECTRIC procedure made (electrify, disable, grant, revoke, assign,
-- unassign, sqlite), written by the procedure itself (routines/audit.sql, _audit) in the same
-- transaction. At commit a deferred trigger links each row to the migration that captured it or,
-- when no capture followed it (a CALL made on the database directly, not rewritten by the proxy),
-- records it as a migration of its own: version_source 'direct', the statement as the server
-- received it.
CREATE TABLE IF NOT EXISTS @extschema@.catalog_changes (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    op text NOT NULL CHECK (op IN ('electrify', 'disable', 'grant', 'revoke', 'assign', 'unassign', 'sqlite')),
    relid oid,  -- NULL for sqlite
    schema_name text,
    table_name text,
    query text,  -- current_query(): the client's whole query string
    statement_at timestamptz NOT NULL DEFAULT pg_catalog.statement_timestamp(),
    -- The last history statement of this transaction when the change was made, (0, 0) if none:
    -- a statement recorded after it means that a capture followed the change.
    after_migration bigint NOT NULL DEFAULT 0,
    after_seq integer NOT NULL DEFAULT 0,
    db_user text NOT NULL DEFAULT session_user,
    changed_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    migration_id bigint,  -- set at commit
    recorded_by text CHECK (recorded_by IN ('capture', 'direct'))  -- set at commit
);
CREATE INDEX IF NOT EXISTS catalog_changes_unrecorded
    ON @extschema@.catalog_changes (txid) WHERE migration_id IS NULL;

-- 'direct': the migration was created by an ELECTRIC procedure called without the proxy.
ALTER TABLE @extschema@.migrations DROP CONSTRAINT IF EXISTS migrations_version_source_check;
ALTER TABLE @extschema@.migrations ADD CONSTRAINT migrations_version_source_check
    CHECK (version_source IN ('framework', 'explicit', 'generated', 'direct'));

REVOKE ALL ON ALL TABLES IN SCHEMA @extschema@ FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA @extschema@ FROM PUBLIC;
