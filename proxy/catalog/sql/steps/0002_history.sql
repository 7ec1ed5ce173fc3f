-- Step 2: the migration history's tables (see README.md, THE MIGRATION HISTORY).
-- Released: never edit; a change is a new step.

CREATE TABLE IF NOT EXISTS @extschema@.migrations (
    -- Identity like the step 1 tables; its order is the order in which migrations began.
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    txid xid8 NOT NULL UNIQUE,
    version text NOT NULL CHECK (version <> ''),
    version_source text NOT NULL CHECK (version_source IN ('framework', 'explicit', 'generated')),
    framework text,  -- NULL: no framework seen (an explicit or generated version)
    started_at timestamptz NOT NULL,  -- the transaction's start, now()
    committed_at timestamptz,  -- see COMMIT TIME
    db_user text NOT NULL,  -- session_user: cannot be changed by SET ROLE or a SECURITY DEFINER
    application_name text,
    client_addr text,
    proxy_instance text,
    backend_pid integer NOT NULL
);
CREATE INDEX IF NOT EXISTS migrations_version ON @extschema@.migrations (version);

CREATE TABLE IF NOT EXISTS @extschema@.migration_statements (
    migration_id bigint NOT NULL REFERENCES @extschema@.migrations (id) ON DELETE CASCADE,
    seq integer NOT NULL CHECK (seq > 0),
    sql text NOT NULL,
    tag text,  -- the command tag, as in CommandComplete ("CREATE TABLE", "ALTER TABLE", ...)
    objects jsonb NOT NULL DEFAULT '[]',  -- [{"schema", "name", "type"}], schema resolved
    captured_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (migration_id, seq)
);

CREATE TABLE IF NOT EXISTS @extschema@.migration_objects (
    migration_id bigint NOT NULL REFERENCES @extschema@.migrations (id) ON DELETE CASCADE,
    object_type text NOT NULL CHECK (object_type IN ('relation', 'type', 'routine')),
    schema_name text NOT NULL,
    object_name text NOT NULL,
    relid oid,  -- relations: the OID, which survives renames; NULL when gone, or not a relation
    definition jsonb,  -- NULL: the object does not exist after this migration
    PRIMARY KEY (migration_id, object_type, schema_name, object_name)
);
-- "The latest definition of this object": schema_at() and the index/table refresh.
CREATE INDEX IF NOT EXISTS migration_objects_object
    ON @extschema@.migration_objects (object_type, schema_name, object_name);
-- "The indexes recorded for this table", looked up by every capture that touches a table.
CREATE INDEX IF NOT EXISTS migration_objects_index_table
    ON @extschema@.migration_objects ((definition ->> 'table_schema'), (definition ->> 'table_name'));

-- Which transaction created each step 1 row, so that capture() can link the rows of its own
-- transaction to the migration. xmin cannot say it: a row written inside a savepoint carries the
-- subtransaction's xid, and xmin has no epoch. pg_current_xact_id() is the top-level full id.
-- Rows from before this step keep NULL: they predate the history.
ALTER TABLE @extschema@.electrified ADD COLUMN IF NOT EXISTS created_txid xid8;
ALTER TABLE @extschema@.electrified ALTER COLUMN created_txid SET DEFAULT pg_current_xact_id();
ALTER TABLE @extschema@.grants ADD COLUMN IF NOT EXISTS created_txid xid8;
ALTER TABLE @extschema@.grants ALTER COLUMN created_txid SET DEFAULT pg_current_xact_id();
ALTER TABLE @extschema@.assignments ADD COLUMN IF NOT EXISTS created_txid xid8;
ALTER TABLE @extschema@.assignments ALTER COLUMN created_txid SET DEFAULT pg_current_xact_id();
ALTER TABLE @extschema@.sqlite_statements ADD COLUMN IF NOT EXISTS created_txid xid8;
ALTER TABLE @extschema@.sqlite_statements ALTER COLUMN created_txid SET DEFAULT pg_current_xact_id();

REVOKE ALL ON ALL TABLES IN SCHEMA @extschema@ FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA @extschema@ FROM PUBLIC;
