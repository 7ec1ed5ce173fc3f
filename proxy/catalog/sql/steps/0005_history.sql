-- Step 5: one history entry per framework version, versions tied to their DDL across
-- connections, and capture whose cost does not grow with the history (README.md, THE MIGRATION
-- HISTORY and CAPTURE COST). Released: never edit; a change is a new step.

-- Several migrations per transaction: Alembic, TypeORM, node-pg-migrate and Flyway (group) run
-- several versions in one transaction, each its own entry. txid names the transaction, no longer
-- the migration.
ALTER TABLE @extschema@.migrations DROP CONSTRAINT IF EXISTS migrations_txid_key;
CREATE INDEX IF NOT EXISTS migrations_txid ON @extschema@.migrations (txid, id);

-- sealed: closed by a version written after its DDL; the transaction's next capture opens a new
-- migration. Its definitions were read when it was sealed.
ALTER TABLE @extschema@.migrations ADD COLUMN IF NOT EXISTS sealed boolean NOT NULL DEFAULT false;
-- awaiting_ddl: a version written before any DDL (Prisma's row, golang-migrate's dirty mark),
-- still without statements. The session's next capture takes the version over and the row goes;
-- if no DDL follows, it stays as a version-only entry.
ALTER TABLE @extschema@.migrations ADD COLUMN IF NOT EXISTS awaiting_ddl boolean NOT NULL DEFAULT false;
-- How the framework version reached the migration (README.md, VERSION TIES); NULL otherwise.
ALTER TABLE @extschema@.migrations ADD COLUMN IF NOT EXISTS version_tie text;
ALTER TABLE @extschema@.migrations DROP CONSTRAINT IF EXISTS migrations_version_tie_check;
ALTER TABLE @extschema@.migrations ADD CONSTRAINT migrations_version_tie_check CHECK (
    version_tie IN ('transaction', 'session before', 'session after', 'other connection'));
-- The backend's start: with backend_pid, names the session (pids are reused).
ALTER TABLE @extschema@.migrations ADD COLUMN IF NOT EXISTS session_start timestamptz;
-- The client's host without its port (client_addr is "host:port" from the proxy): the same
-- tool's connections share it.
ALTER TABLE @extschema@.migrations ADD COLUMN IF NOT EXISTS client_host text;

-- "This session's last migration" and "this client's last migration" (README.md, VERSION TIES).
CREATE INDEX IF NOT EXISTS migrations_session ON @extschema@.migrations (backend_pid, session_start, id);
CREATE INDEX IF NOT EXISTS migrations_client ON @extschema@.migrations (db_user, client_host, committed_at);

-- "The latest definition of this object", one index probe whatever the history's length.
CREATE INDEX IF NOT EXISTS migration_objects_latest
    ON @extschema@.migration_objects (object_type, schema_name, object_name, migration_id DESC);
-- Superseded: the index above has its columns first; the refresh finds a table's indexes in the
-- table's own definition and in pg_index, not through an expression index written per row.
DROP INDEX IF EXISTS @extschema@.migration_objects_object;
DROP INDEX IF EXISTS @extschema@.migration_objects_index_table;

-- Step 1 rows not yet linked to their migration: found without reading the linked ones.
CREATE INDEX IF NOT EXISTS electrified_unlinked ON @extschema@.electrified (created_txid) WHERE migration_id IS NULL;
CREATE INDEX IF NOT EXISTS grants_unlinked ON @extschema@.grants (created_txid) WHERE migration_id IS NULL;
CREATE INDEX IF NOT EXISTS assignments_unlinked ON @extschema@.assignments (created_txid) WHERE migration_id IS NULL;
CREATE INDEX IF NOT EXISTS sqlite_statements_unlinked
    ON @extschema@.sqlite_statements (created_txid) WHERE migration_id IS NULL;
