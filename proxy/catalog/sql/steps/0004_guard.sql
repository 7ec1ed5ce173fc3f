-- The database-side guard's tables (routines/guard.sql has the functions, event_triggers.sql
-- the triggers). Both tables are closed to PUBLIC: only the guard's SECURITY DEFINER
-- functions, running inside event triggers, write them.

-- What each electrified table looked like after its last allowed change. `shape` is compared
-- with the live catalog after every DDL that may have touched the table; `deps` lists the OIDs
-- whose change may alter the shape (the table, its schema, ancestors, column types and their
-- schemas, collations, constraints, their indexes and referenced tables), so that a DDL on
-- anything else skips the comparison. The row goes with the table's electrified mark.
CREATE TABLE IF NOT EXISTS @extschema@.guard_shapes (
    relid oid PRIMARY KEY REFERENCES @extschema@.electrified (relid) ON DELETE CASCADE,
    shape jsonb NOT NULL,
    deps oid[] NOT NULL
);

-- One row per DDL command (ddl_command_end) and per object dropped by name or by CASCADE
-- (sql_drop), whoever ran it and however: the drift detector's raw material. Temporary objects
-- are not logged. The statement text is kept once per transaction in ddl_statements, since
-- current_query() is the client's whole query string: a 500-statement script sent as one
-- Query would otherwise be stored 500 times.
CREATE TABLE IF NOT EXISTS @extschema@.ddl_log (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    txid xid8 NOT NULL,  -- pg_current_xact_id(): the top-level transaction
    pid integer NOT NULL,
    role_name text NOT NULL,  -- current_user of the command
    session_role text NOT NULL,  -- session_user
    application_name text,
    client_addr inet,  -- the proxy's address when the command came through a proxy
    event text NOT NULL CHECK (event IN ('ddl_command_end', 'sql_drop')),
    command_tag text NOT NULL,
    object_type text,
    object_identity text,
    classid oid,
    objid oid,
    objsubid integer,
    in_extension boolean,
    statement_hash bigint NOT NULL,  -- ddl_statements (txid, hash)
    logged_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp()
);
CREATE INDEX IF NOT EXISTS ddl_log_txid ON @extschema@.ddl_log (txid);

CREATE TABLE IF NOT EXISTS @extschema@.ddl_statements (
    txid xid8 NOT NULL,
    -- hashtextextended(statement, 0); beyond 4 kB, of its length in bytes and its first 4 kB.
    -- Two query strings of one transaction alike in both keep the first one's text.
    hash bigint NOT NULL,
    statement text NOT NULL,
    PRIMARY KEY (txid, hash)
);

REVOKE ALL ON @extschema@.guard_shapes, @extschema@.ddl_log, @extschema@.ddl_statements FROM PUBLIC;
