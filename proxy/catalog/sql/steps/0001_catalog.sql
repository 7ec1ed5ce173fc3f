-- Step 1: the catalog schema and the tables of the ELECTRIC statements (see README.md).
-- Released: never edit; a change is a new step.

CREATE SCHEMA IF NOT EXISTS @extschema@;

-- One row per applied step (sql/steps/NNNN_*.sql).
CREATE TABLE IF NOT EXISTS @extschema@.schema_version (
    version integer PRIMARY KEY,
    installed_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- Keyed by OID so that the mark follows the table through renames done behind the proxy's back;
-- the names are those at electrify time (the live ones are in pg_class).
CREATE TABLE IF NOT EXISTS @extschema@.electrified (
    relid oid PRIMARY KEY,
    schema_name text NOT NULL,
    table_name text NOT NULL,
    electrified_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    electrified_by text NOT NULL DEFAULT session_user,
    migration_id bigint  -- the migration that electrified it; filled once migrations are recorded
);

-- ELECTRIC GRANT: one row per (table, privilege, role, scope). Granting again widens the columns
-- (as SQL GRANT does) and replaces USING and CHECK. Rows go with the table's electrified mark.
CREATE TABLE IF NOT EXISTS @extschema@.grants (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    relid oid NOT NULL REFERENCES @extschema@.electrified (relid) ON DELETE CASCADE,
    schema_name text NOT NULL,
    table_name text NOT NULL,
    privilege text NOT NULL CHECK (privilege IN ('select', 'insert', 'update', 'delete')),
    columns text[],  -- in column order; NULL: every column, including ones added later
    role_name text NOT NULL CHECK (role_name <> ''),  -- an Electric role, not a Postgres role
    scope_relid oid,  -- NULL: the global scope
    scope_schema text,
    scope_table text,
    using_path text[],  -- column names from the table towards the scope, following foreign keys
    check_expr text,  -- as written; Electric evaluates it, Postgres never does
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_by text NOT NULL DEFAULT session_user,
    migration_id bigint,
    CHECK ((scope_relid IS NULL) = (scope_table IS NULL))
);
-- Expression index rather than a constraint: Postgres 13 and 14 have no NULLS NOT DISTINCT, and
-- the global scope (NULL) must be one scope, not many.
CREATE UNIQUE INDEX IF NOT EXISTS grants_identity
    ON @extschema@.grants (relid, privilege, role_name, (COALESCE(scope_relid, 0::oid)));

-- ELECTRIC ASSIGN: users of `user_column` get a role, named literally or read from `role_column`
-- of the same row, in a scope, optionally only IF the expression holds.
CREATE TABLE IF NOT EXISTS @extschema@.assignments (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    relid oid NOT NULL REFERENCES @extschema@.electrified (relid) ON DELETE CASCADE,
    schema_name text NOT NULL,
    table_name text NOT NULL,
    user_column text NOT NULL,
    role_name text CHECK (role_name <> ''),
    role_column text,
    scope_relid oid,
    scope_schema text,
    scope_table text,
    if_expr text,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_by text NOT NULL DEFAULT session_user,
    migration_id bigint,
    CHECK ((role_name IS NULL) <> (role_column IS NULL)),
    CHECK ((scope_relid IS NULL) = (scope_table IS NULL))
);
CREATE UNIQUE INDEX IF NOT EXISTS assignments_identity
    ON @extschema@.assignments (
        relid, user_column, (COALESCE(role_name, '')), (COALESCE(role_column, '')),
        (COALESCE(scope_relid, 0::oid))
    );

-- ELECTRIC SQLITE: statements for the clients' SQLite databases, kept in order.
CREATE TABLE IF NOT EXISTS @extschema@.sqlite_statements (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sql text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_by text NOT NULL DEFAULT session_user,
    migration_id bigint
);

-- Privileges: the schema is usable by PUBLIC, its tables are not (routines open themselves).
REVOKE ALL ON SCHEMA @extschema@ FROM PUBLIC;
GRANT USAGE ON SCHEMA @extschema@ TO PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA @extschema@ FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA @extschema@ FROM PUBLIC;
