-- Step 3: the bookkeeping of the repeatable routine files (sql/routines/*.sql, see README.md).
-- install.py applies a routine file when the sha256 of its rendered text differs from the
-- checksum recorded here, then records it. Before this step the routines were part of steps 1
-- and 2; a database upgraded from there has no checksum yet, so every file is applied once.
-- Released: never edit; a change is a new step.

CREATE TABLE IF NOT EXISTS @extschema@.schema_routines (
    name text PRIMARY KEY,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);

REVOKE ALL ON @extschema@.schema_routines FROM PUBLIC;
