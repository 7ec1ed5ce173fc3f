-- The proxy's catalog, kept in the backend database itself (DESIGN.md, "Catalog in the database").
--
-- HOW THIS FILE IS APPLIED
--   Only through proxy/catalog/install.py, never fed to psql as is:
--   * `@extschema@` stands for the catalog schema (config `catalog.schema`, default `electric`;
--     a lower-case identifier, so it is substituted bare). The name is borrowed from extension
--     scripts, which use the same placeholder for the same purpose.
--   * The file is cut into numbered steps at the `-- step: N` lines. install() takes an advisory
--     lock, reads the highest version in @extschema@.schema_version and applies only the steps
--     above it, recording each, all in one transaction: replicas starting together serialise on
--     the lock and the later ones find nothing left to do.
--   * A released step is never edited: a change is a new step at the end. Bodies change with
--     CREATE OR REPLACE; a changed signature needs DROP ... IF EXISTS first. Every statement is
--     also idempotent (IF NOT EXISTS, OR REPLACE), so re-running a step does no harm.
--   * Each step that creates objects ends with its own privilege block (new routines are
--     executable by PUBLIC by default, and default privileges belong to whichever role installs).
--
-- SECURITY MODEL
--   * Tables: no privileges for PUBLIC. Application roles change the catalog only through the
--     procedures, which run as the installing role (SECURITY DEFINER) with search_path pinned to
--     pg_catalog, pg_temp, and name our own objects and user tables with their schema.
--   * The procedures act on a table only for a session whose session_user has the privileges of
--     the table's owner (pg_has_role USAGE; superusers pass): the same people who could ALTER the
--     table. session_user, not current_user: inside SECURITY DEFINER current_user is the definer,
--     and session_user cannot be forged by the caller. ELECTRIC SQLITE, which names no table,
--     needs the privileges of the database owner.
--   * Electrifying sets REPLICA IDENTITY FULL as the definer: when the catalog was installed by
--     a non-superuser, only that role's own tables can be electrified (Postgres's own
--     "must be owner of table" error otherwise).
--   * Name resolution is the one thing that must happen as the caller: `CALL electric.electrify('t')`
--     means the `t` of the caller's search_path, and a SECURITY DEFINER function sees its pinned
--     path instead. So the public procedures that take table names are thin SECURITY INVOKER
--     wrappers without SET clauses: they resolve the names with _resolve() (also INVOKER) and pass
--     regclass values to the SECURITY DEFINER procedures that do the work (_electrify, _grant, ...).
--     The wrappers and _resolve() name every function with its schema (pg_catalog too) and use no
--     operators, so the caller's path decides only what the table *argument* means. The
--     regclass-taking procedures are executable by PUBLIC as well and check everything
--     themselves: calling them directly gains nothing.
--
-- THE PROXY'S TAG MARKER
--   Every public procedure takes a last parameter `proxy_tag text DEFAULT NULL`. When it is not
--   NULL, the procedure's last act is a NOTICE with SQLSTATE EXTAG and the tag as its message. The
--   proxy, which rewrote an ELECTRIC statement into a CALL, swallows that notice and reports the
--   tag instead of `CALL` in CommandComplete. The notice is raised by _proxy_tag(), which has its
--   own `SET client_min_messages = notice`, so it arrives even when the client raised that
--   setting above NOTICE. (Routines with SET clauses cannot COMMIT; these never need to.)
--
-- NOTIFICATIONS
--   Each change to the catalog sends pg_notify('electric_catalog', <json>) with keys catalog,
--   op (electrify | disable | grant | revoke | assign | unassign | sqlite), relid, schema, table.
--   Notifications are transactional: delivered on commit, dropped on rollback. The proxy
--   LISTENs to refresh its in-memory view (proxy/catalog/cache.py).
--
-- SQLSTATES RAISED HERE
--   EX014  the table cannot be electrified: not an ordinary permanent table, unsupported column
--          types, column DEFAULTs (identity and generated columns count), no PRIMARY KEY,
--          constraints other than PRIMARY KEY / FOREIGN KEY / NOT NULL. Same code, messages and
--          type allow-list as proxy/ddl/rules.py (check_electrifiable); the DETAIL adds the
--          offending columns or constraints.
--   EX015  GRANT, REVOKE, ASSIGN or UNASSIGN names a table that is not electrified.
--   EX016  an ELECTRIC GRANT/REVOKE/ASSIGN/UNASSIGN/SQLITE argument is invalid: unknown
--          privilege, unknown column (the COLUMN field names it), bad USING path, bad role
--          column, missing role, empty SQLITE text.
--   42P01  the named table does not exist (Postgres's own code).
--   42501  the session may not act on the table or database (Postgres's own code).
--   22004  a required name is NULL (Postgres's null_value_not_allowed).
--   NOTICEs: EXTAG (above); 00000 "table ... is already electrified" (electrify is idempotent)
--   and "table ... is not electrified" (disable of a table that is not electrified is a no-op).

-- step: 1

CREATE SCHEMA IF NOT EXISTS @extschema@;

-- One row per applied step of this file.
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

-- ---------------------------------------------------------------------------------------------
-- Internal helpers. Only the SECURITY DEFINER procedures below call them (EXECUTE is revoked
-- from PUBLIC at the end of the step).

-- "schema"."name", always quoted: the form proxy/ddl/rules.py uses in its messages.
CREATE OR REPLACE FUNCTION @extschema@._qualified(schema_name text, object_name text)
    RETURNS text
    LANGUAGE sql IMMUTABLE STRICT
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT '"' || replace($1, '"', '""') || '"."' || replace($2, '"', '""') || '"'
$$;

CREATE OR REPLACE FUNCTION @extschema@._quoted(name text)
    RETURNS text
    LANGUAGE sql IMMUTABLE STRICT
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT '"' || replace($1, '"', '""') || '"'
$$;

-- The table behind an OID, provided the session may act on it as its owner.
CREATE OR REPLACE FUNCTION @extschema@._owned_table(
    table_oid oid,
    OUT schema_name text,
    OUT table_name text,
    OUT kind "char",
    OUT persistence "char"
)
    LANGUAGE plpgsql STABLE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    owner oid;
BEGIN
    SELECT n.nspname, c.relname, c.relkind, c.relpersistence, c.relowner
      INTO schema_name, table_name, kind, persistence, owner
      FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = table_oid;
    IF NOT FOUND THEN
        -- Resolved by the caller, then dropped before we got here (or a bogus OID).
        RAISE EXCEPTION USING
            ERRCODE = '42P01',
            MESSAGE = format('relation with OID %s does not exist', table_oid);
    END IF;
    IF NOT pg_has_role(session_user, owner, 'USAGE') THEN
        RAISE EXCEPTION USING
            ERRCODE = '42501',
            MESSAGE = format('must be owner of table %s', @extschema@._qualified(schema_name, table_name)),
            HINT = 'Electric statements on a table need the privileges of the table''s owner.',
            SCHEMA = schema_name,
            TABLE = table_name;
    END IF;
END
$$;

-- Live user columns (not dropped, not system) of a table, in column order.
CREATE OR REPLACE FUNCTION @extschema@._live_columns(table_oid oid)
    RETURNS TABLE (attnum smallint, attname text, atttypid oid, atttypmod integer, has_default boolean)
    LANGUAGE sql STABLE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    -- Identity and generated columns produce values the way DEFAULTs do, and clients would
    -- not reproduce them: they count as defaults.
    SELECT a.attnum, a.attname::text, a.atttypid, a.atttypmod, a.atthasdef OR a.attidentity <> ''
      FROM pg_attribute a
     WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
     ORDER BY a.attnum
$$;

-- Electric's supported_types/0, the same list as SUPPORTED_TYPES in proxy/ddl/rules.py, in the
-- order the hint prints it. Keep the two in step.
CREATE OR REPLACE FUNCTION @extschema@._supported_types()
    RETURNS text[]
    LANGUAGE sql IMMUTABLE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ARRAY[
        'bool', 'bytea', 'date', 'float4', 'float8', 'int2', 'int4', 'int8', 'jsonb', 'text',
        'time', 'timestamp', 'timestamptz', 'uuid', 'varchar'
    ]
$$;

-- A built-in supported type without modifiers (so unsized, and never an array: array types are
-- named _int4 and so on), or an enum whose labels are all plain words (case-insensitive, as in
-- rules.py and Electric). A domain is never supported, whatever it is over: clients see the
-- domain's name, and a domain called "text" in another schema must not pass for text.
CREATE OR REPLACE FUNCTION @extschema@._type_supported(type_oid oid, typmod integer)
    RETURNS boolean
    LANGUAGE sql STABLE STRICT
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN t.typtype = 'e' THEN NOT EXISTS (
            SELECT FROM pg_enum e
             WHERE e.enumtypid = t.oid AND e.enumlabel !~* '^[a-z][a-z_0-9]*$'
        )
        ELSE t.typnamespace = 'pg_catalog'::regnamespace
             AND $2 = -1
             AND t.typname = ANY (@extschema@._supported_types())
    END
      FROM pg_type t
     WHERE t.oid = $1
$$;

-- How rules.py's ColumnDescription.type_name spells a type: typname plus format_type's modifier
-- suffix ("varchar(9)", "timestamp(3)"), "[]" for arrays, schema-qualified outside pg_catalog.
CREATE OR REPLACE FUNCTION @extschema@._type_label(type_oid oid, typmod integer)
    RETURNS text
    LANGUAGE sql STABLE STRICT
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN b.typnamespace = 'pg_catalog'::regnamespace THEN b.typname::text
                ELSE format('%I.%I', n.nspname, b.typname) END
           || COALESCE(substring(format_type($1, $2) FROM '\([^)]*\)'), '')
           || CASE WHEN e.oid IS NULL THEN '' ELSE '[]' END
      FROM pg_type t
      LEFT JOIN pg_type e ON e.typarray = t.oid  -- t is an array of e
      JOIN pg_type b ON b.oid = COALESCE(e.oid, t.oid)
      JOIN pg_namespace n ON n.oid = b.typnamespace
     WHERE t.oid = $1
$$;

-- Raise EX014 the way rules.py's _electrify_error builds it, plus the offenders in the DETAIL.
CREATE OR REPLACE FUNCTION @extschema@._not_electrifiable(
    schema_name text, table_name text, message text, hint text, offenders text DEFAULT NULL
)
    RETURNS void
    LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION USING
        ERRCODE = 'EX014',
        MESSAGE = message,
        DETAIL = format(
            'Table %s does not meet the requirements for electrified tables.',
            @extschema@._qualified(schema_name, table_name)
        ) || COALESCE(' ' || offenders, ''),
        HINT = hint,
        SCHEMA = schema_name,
        TABLE = table_name;
END
$$;

CREATE OR REPLACE FUNCTION @extschema@._require_electrified(
    table_oid oid, schema_name text, table_name text, command text
)
    RETURNS void
    LANGUAGE plpgsql STABLE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    label text := @extschema@._qualified(schema_name, table_name);
BEGIN
    IF NOT EXISTS (SELECT FROM @extschema@.electrified e WHERE e.relid = table_oid) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'EX015',
            MESSAGE = format('table %s is not electrified', label),
            DETAIL = format('%s applies to electrified tables only.', command),
            HINT = format('Electrify it first: ALTER TABLE %s ENABLE ELECTRIC.', label),
            SCHEMA = schema_name,
            TABLE = table_name;
    END IF;
END
$$;

-- The given column names checked against the table, deduplicated, in column order.
-- NULL stays NULL (every column); an empty list is an error, not "no columns".
CREATE OR REPLACE FUNCTION @extschema@._columns(
    table_oid oid, schema_name text, table_name text, names text[], command text
)
    RETURNS text[]
    LANGUAGE plpgsql STABLE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    missing text;
BEGIN
    IF names IS NULL THEN
        RETURN NULL;
    END IF;
    IF cardinality(names) = 0 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'EX016',
            MESSAGE = format('%s needs at least one column', command),
            SCHEMA = schema_name,
            TABLE = table_name;
    END IF;
    SELECT w.name INTO missing
      FROM unnest(names) WITH ORDINALITY AS w(name, i)
     WHERE w.name IS NULL
        OR NOT EXISTS (SELECT FROM @extschema@._live_columns(table_oid) c WHERE c.attname = w.name)
     ORDER BY w.i
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'EX016',
            MESSAGE = format(
                'column %s of relation %s does not exist',
                COALESCE(@extschema@._quoted(missing), 'NULL'),
                @extschema@._qualified(schema_name, table_name)
            ),
            DETAIL = format('%s names a column the table does not have.', command),
            SCHEMA = schema_name,
            TABLE = table_name,
            COLUMN = COALESCE(missing, '');
    END IF;
    RETURN ARRAY(
        SELECT c.attname FROM @extschema@._live_columns(table_oid) c
         WHERE c.attname = ANY (names)
         ORDER BY c.attnum
    );
END
$$;

-- `have` minus `drop`, where `have` NULL means every live column; in column order.
CREATE OR REPLACE FUNCTION @extschema@._columns_minus(table_oid oid, have text[], drop text[])
    RETURNS text[]
    LANGUAGE sql STABLE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ARRAY(
        SELECT c.attname FROM @extschema@._live_columns($1) c
         WHERE ($2 IS NULL OR c.attname = ANY ($2)) AND NOT c.attname = ANY ($3)
         ORDER BY c.attnum
    )
$$;

-- `a` plus `b`, in column order (names of columns dropped since are left out).
CREATE OR REPLACE FUNCTION @extschema@._columns_union(table_oid oid, a text[], b text[])
    RETURNS text[]
    LANGUAGE sql STABLE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ARRAY(
        SELECT c.attname FROM @extschema@._live_columns($1) c
         WHERE c.attname = ANY ($2) OR c.attname = ANY ($3)
         ORDER BY c.attnum
    )
$$;

-- ELECTRIC's privilege words to the four stored ones, in SQL order (the proxy's parser already
-- expands ALL, READ and WRITE; direct callers may use them too).
CREATE OR REPLACE FUNCTION @extschema@._privileges(words text[], command text)
    RETURNS text[]
    LANGUAGE plpgsql IMMUTABLE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    word text;
    wanted text[] := '{}';
BEGIN
    IF words IS NULL OR cardinality(words) = 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'EX016', MESSAGE = format('%s needs a privilege', command);
    END IF;
    FOREACH word IN ARRAY words LOOP
        wanted := wanted || CASE lower(word)
            WHEN 'select' THEN ARRAY['select']
            WHEN 'insert' THEN ARRAY['insert']
            WHEN 'update' THEN ARRAY['update']
            WHEN 'delete' THEN ARRAY['delete']
            WHEN 'read' THEN ARRAY['select']
            WHEN 'write' THEN ARRAY['insert', 'update', 'delete']
            WHEN 'all' THEN ARRAY['select', 'insert', 'update', 'delete']
        END;
        IF word IS NULL OR NOT lower(word) IN ('select', 'insert', 'update', 'delete', 'read', 'write', 'all') THEN
            RAISE EXCEPTION USING
                ERRCODE = 'EX016',
                MESSAGE = format('unknown privilege %s', COALESCE(@extschema@._quoted(word), 'NULL')),
                HINT = 'Privileges: SELECT, INSERT, UPDATE, DELETE, READ, WRITE, ALL.';
        END IF;
    END LOOP;
    RETURN ARRAY(
        SELECT p FROM unnest(ARRAY['select', 'insert', 'update', 'delete']) WITH ORDINALITY AS k(p, i)
         WHERE p = ANY (wanted)
         ORDER BY i
    );
END
$$;

-- USING a/b/c walks from the table towards the scope: each name is a column of the table
-- reached so far, and each but the last must be a single-column foreign key leading on.
CREATE OR REPLACE FUNCTION @extschema@._check_using_path(
    table_oid oid, schema_name text, table_name text, path text[]
)
    RETURNS void
    LANGUAGE plpgsql STABLE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current_oid oid := table_oid;
    current_schema_name text := schema_name;
    current_table_name text := table_name;
    next_table record;
    step integer;
    column_number smallint;
BEGIN
    IF path IS NULL THEN
        RETURN;
    END IF;
    IF cardinality(path) = 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'EX016', MESSAGE = 'USING path must name at least one column';
    END IF;
    FOR step IN 1 .. cardinality(path) LOOP
        SELECT c.attnum INTO column_number
          FROM @extschema@._live_columns(current_oid) c WHERE c.attname = path[step];
        IF NOT FOUND THEN
            RAISE EXCEPTION USING
                ERRCODE = 'EX016',
                MESSAGE = format(
                    'column %s of relation %s in the USING path does not exist',
                    COALESCE(@extschema@._quoted(path[step]), 'NULL'),
                    @extschema@._qualified(current_schema_name, current_table_name)
                ),
                SCHEMA = current_schema_name,
                TABLE = current_table_name,
                COLUMN = COALESCE(path[step], '');
        END IF;
        EXIT WHEN step = cardinality(path);
        -- Into a record, not the current_* variables: SELECT INTO finding nothing sets its
        -- targets to NULL, and the error below still needs them.
        SELECT n.nspname AS schema_name, r.relname AS table_name, r.oid
          INTO next_table
          FROM pg_constraint k
          JOIN pg_class r ON r.oid = k.confrelid
          JOIN pg_namespace n ON n.oid = r.relnamespace
         WHERE k.conrelid = current_oid AND k.contype = 'f' AND k.conkey = ARRAY[column_number]
         ORDER BY k.conname
         LIMIT 1;
        IF NOT FOUND THEN
            RAISE EXCEPTION USING
                ERRCODE = 'EX016',
                MESSAGE = format(
                    'column %s of relation %s in the USING path is not a foreign key',
                    @extschema@._quoted(path[step]),
                    @extschema@._qualified(current_schema_name, current_table_name)
                ),
                DETAIL = 'Every column of a USING path but the last must reference the next table.',
                SCHEMA = current_schema_name,
                TABLE = current_table_name,
                COLUMN = path[step];
        END IF;
        current_oid := next_table.oid;
        current_schema_name := next_table.schema_name;
        current_table_name := next_table.table_name;
    END LOOP;
END
$$;

-- The role column of ASSIGN: `col`, `table.col` or `schema.table.col`, always of the assigned
-- table itself. Returns the bare column name.
CREATE OR REPLACE FUNCTION @extschema@._role_column(
    table_oid oid, schema_name text, table_name text, parts text[], command text
)
    RETURNS text
    LANGUAGE plpgsql STABLE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer := COALESCE(cardinality(parts), 0);
BEGIN
    IF n NOT BETWEEN 1 AND 3
       OR (n >= 2 AND parts[n - 1] IS DISTINCT FROM table_name)
       OR (n = 3 AND parts[1] IS DISTINCT FROM schema_name) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'EX016',
            MESSAGE = format(
                'role column %s is not a column of %s',
                COALESCE(array_to_string(parts, '.'), 'NULL'),
                @extschema@._qualified(schema_name, table_name)
            ),
            DETAIL = format('%s reads the role from a column of the table it assigns.', command),
            SCHEMA = schema_name,
            TABLE = table_name;
    END IF;
    PERFORM @extschema@._columns(table_oid, schema_name, table_name, ARRAY[parts[n]], command);
    RETURN parts[n];
END
$$;

CREATE OR REPLACE FUNCTION @extschema@._notify(op text, table_oid oid, schema_name text, table_name text)
    RETURNS void
    LANGUAGE sql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_notify(
        'electric_catalog',
        json_build_object('catalog', '@extschema@', 'op', $1, 'relid', $2::bigint, 'schema', $3, 'table', $4)::text
    )
$$;

-- The tag marker (see the top of the file). Its own SET clause is what makes the NOTICE reach a
-- client whose client_min_messages is WARNING or higher.
CREATE OR REPLACE FUNCTION @extschema@._proxy_tag(tag text)
    RETURNS void
    LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET client_min_messages = notice
AS $$
BEGIN
    IF tag IS NOT NULL THEN
        RAISE NOTICE USING ERRCODE = 'EXTAG', MESSAGE = tag;
    END IF;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Name resolution, as the caller (see SECURITY MODEL). No SET clause, SECURITY INVOKER.

-- A table name in SQL syntax: `items`, `other.items`, `"Other"."Items"`.
CREATE OR REPLACE FUNCTION @extschema@._resolve(table_name text)
    RETURNS regclass
    LANGUAGE plpgsql STABLE
AS $$
DECLARE
    found_oid regclass;
BEGIN
    IF table_name IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'table name must not be NULL';
    END IF;
    found_oid := pg_catalog.to_regclass(table_name);
    IF found_oid IS NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = '42P01',
            MESSAGE = pg_catalog.format('relation "%s" does not exist', table_name);
    END IF;
    RETURN found_oid;
END
$$;

-- Exact names, case and all; a NULL schema means the first match on the search_path.
CREATE OR REPLACE FUNCTION @extschema@._resolve(schema_name text, table_name text)
    RETURNS regclass
    LANGUAGE plpgsql STABLE
AS $$
DECLARE
    found_oid regclass;
BEGIN
    IF table_name IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'table name must not be NULL';
    END IF;
    IF schema_name IS NULL THEN
        found_oid := pg_catalog.to_regclass(pg_catalog.quote_ident(table_name));
    ELSE
        found_oid := pg_catalog.to_regclass(pg_catalog.format('%I.%I', schema_name, table_name));
    END IF;
    IF found_oid IS NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = '42P01',
            MESSAGE = pg_catalog.format(
                'relation %s does not exist',
                pg_catalog.concat_ws(
                    '.',
                    '"' OPERATOR(pg_catalog.||) pg_catalog.replace(schema_name, '"', '""') OPERATOR(pg_catalog.||) '"',
                    '"' OPERATOR(pg_catalog.||) pg_catalog.replace(table_name, '"', '""') OPERATOR(pg_catalog.||) '"'
                )
            ),
            SCHEMA = COALESCE(schema_name, ''),  -- COALESCE is syntax, not a function to look up
            TABLE = table_name;
    END IF;
    RETURN found_oid;
END
$$;

-- A scope: no table means the global scope.
CREATE OR REPLACE FUNCTION @extschema@._resolve_scope(schema_name text, table_name text)
    RETURNS regclass
    LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF table_name IS NULL THEN
        IF schema_name IS NOT NULL THEN
            RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'scope schema given without a scope table';
        END IF;
        RETURN NULL;
    END IF;
    RETURN @extschema@._resolve(schema_name, table_name);
END
$$;

-- ---------------------------------------------------------------------------------------------
-- The work, as the definer, on resolved tables.

CREATE OR REPLACE PROCEDURE @extschema@._electrify(table_oid regclass, proxy_tag text DEFAULT NULL)
    LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t record;
    label text;
    offenders text[];
    listed text;
BEGIN
    SELECT * INTO t FROM @extschema@._owned_table(table_oid);
    label := @extschema@._qualified(t.schema_name, t.table_name);

    IF EXISTS (SELECT FROM @extschema@.electrified e WHERE e.relid = table_oid) THEN
        RAISE NOTICE 'table % is already electrified', label;
        PERFORM @extschema@._proxy_tag(proxy_tag);
        RETURN;
    END IF;

    -- The checks run in the order of rules.py's _ELECTRIFY_RULES, so that both report the same
    -- first problem.
    IF t.kind <> 'r' THEN
        PERFORM @extschema@._not_electrifiable(
            t.schema_name, t.table_name,
            format('%s is not an ordinary table', label),
            'Only ordinary tables can be electrified.');
    END IF;
    -- Not in rules.py: temporary and unlogged tables never reach logical replication (a
    -- publication refuses them), so Electric could not sync them.
    IF t.persistence <> 'p' THEN
        PERFORM @extschema@._not_electrifiable(
            t.schema_name, t.table_name,
            format('Cannot electrify %s because it is %s table', label,
                   CASE t.persistence WHEN 't' THEN 'a temporary' ELSE 'an unlogged' END),
            'Only permanent tables can be electrified: temporary and unlogged tables are not replicated.');
    END IF;

    -- First the change, then the remaining checks: ALTER TABLE takes the table's ACCESS EXCLUSIVE
    -- lock, so no concurrent DDL can invalidate what is checked below before we commit. A failed
    -- check rolls the change back with everything else.
    EXECUTE format('ALTER TABLE %I.%I REPLICA IDENTITY FULL', t.schema_name, t.table_name);

    SELECT array_agg(format('%s %s', @extschema@._quoted(c.attname),
                            @extschema@._type_label(c.atttypid, c.atttypmod)) ORDER BY c.attnum)
      INTO offenders
      FROM @extschema@._live_columns(table_oid) c
     WHERE NOT @extschema@._type_supported(c.atttypid, c.atttypmod);
    IF offenders IS NOT NULL THEN
        listed := array_to_string(offenders, ', ');
        PERFORM @extschema@._not_electrifiable(
            t.schema_name, t.table_name,
            format('Cannot electrify %s because some of its columns have types not supported by Electric: %s',
                   label, listed),
            'Supported column types (unsized, not arrays): '
                || array_to_string(@extschema@._supported_types(), ', ')
                || ', and enums whose labels are plain words.',
            format('Columns with unsupported types: %s.', listed));
    END IF;

    SELECT array_agg(@extschema@._quoted(c.attname) ORDER BY c.attnum)
      INTO offenders
      FROM @extschema@._live_columns(table_oid) c
     WHERE c.has_default;
    IF offenders IS NOT NULL THEN
        listed := array_to_string(offenders, ', ');
        PERFORM @extschema@._not_electrifiable(
            t.schema_name, t.table_name,
            format('Cannot electrify %s because some of its columns have DEFAULT expressions which are '
                   'not currently supported by Electric: %s', label, listed),
            'Drop the DEFAULT expressions before electrifying the table.',
            format('Columns with DEFAULT, identity or generated values: %s.', listed));
    END IF;

    IF NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conrelid = table_oid AND k.contype = 'p') THEN
        PERFORM @extschema@._not_electrifiable(
            t.schema_name, t.table_name,
            format('Cannot electrify %s because it doesn''t have a PRIMARY KEY.', label),
            'Add a PRIMARY KEY before electrifying the table.');
    END IF;

    -- 'n': catalogued NOT NULL constraints (Postgres 18).
    SELECT array_agg(@extschema@._quoted(k.conname) ORDER BY k.conname)
      INTO offenders
      FROM pg_constraint k
     WHERE k.conrelid = table_oid AND k.contype NOT IN ('p', 'f', 'n');
    IF offenders IS NOT NULL THEN
        listed := array_to_string(offenders, ', ');
        PERFORM @extschema@._not_electrifiable(
            t.schema_name, t.table_name,
            format('Cannot electrify %s because some of its columns have CHECK, UNIQUE, EXCLUDE or '
                   'user-defined constraints which are not currently supported by Electric: %s',
                   label, listed),
            'Only PRIMARY KEY and FOREIGN KEY constraints are allowed on electrified tables.',
            format('Constraints: %s.', listed));
    END IF;

    -- ON CONFLICT: a concurrent electrify of the same table waited for our lock above and may
    -- have committed in between; that is "already electrified", not an error.
    INSERT INTO @extschema@.electrified (relid, schema_name, table_name)
    VALUES (table_oid, t.schema_name, t.table_name)
    ON CONFLICT (relid) DO NOTHING;
    IF FOUND THEN
        PERFORM @extschema@._notify('electrify', table_oid, t.schema_name, t.table_name);
    ELSE
        RAISE NOTICE 'table % is already electrified', label;
    END IF;
    PERFORM @extschema@._proxy_tag(proxy_tag);
END
$$;

-- Removes the mark for good, with the table's grants and assignments (foreign keys cascade).
-- The table itself is left alone: REPLICA IDENTITY stays as it is.
CREATE OR REPLACE PROCEDURE @extschema@._disable(table_oid regclass, proxy_tag text DEFAULT NULL)
    LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t record;
BEGIN
    SELECT * INTO t FROM @extschema@._owned_table(table_oid);
    DELETE FROM @extschema@.electrified e WHERE e.relid = table_oid;
    IF FOUND THEN
        PERFORM @extschema@._notify('disable', table_oid, t.schema_name, t.table_name);
    ELSE
        RAISE NOTICE 'table % is not electrified', @extschema@._qualified(t.schema_name, t.table_name);
    END IF;
    PERFORM @extschema@._proxy_tag(proxy_tag);
END
$$;

CREATE OR REPLACE PROCEDURE @extschema@._grant(
    privilege_words text[],
    table_oid regclass,
    grantee text,
    column_names text[],
    scope_oid regclass,
    path text[],
    check_sql text,
    proxy_tag text DEFAULT NULL
)
    LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t record;
    s record;
    granted text[];
    wanted_columns text[];
    one text;
BEGIN
    SELECT * INTO t FROM @extschema@._owned_table(table_oid);
    PERFORM @extschema@._require_electrified(table_oid, t.schema_name, t.table_name, 'ELECTRIC GRANT');
    granted := @extschema@._privileges(privilege_words, 'ELECTRIC GRANT');
    IF grantee IS NULL OR grantee = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'EX016', MESSAGE = 'ELECTRIC GRANT needs a role';
    END IF;
    wanted_columns := @extschema@._columns(table_oid, t.schema_name, t.table_name, column_names, 'ELECTRIC GRANT');
    PERFORM @extschema@._check_using_path(table_oid, t.schema_name, t.table_name, path);
    SELECT n.nspname AS schema_name, c.relname AS table_name INTO s
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = scope_oid;

    FOREACH one IN ARRAY granted LOOP
        INSERT INTO @extschema@.grants AS g (
            relid, schema_name, table_name, privilege, columns, role_name,
            scope_relid, scope_schema, scope_table, using_path, check_expr
        )
        VALUES (
            table_oid, t.schema_name, t.table_name, one, wanted_columns, grantee,
            scope_oid, s.schema_name, s.table_name, path, check_sql
        )
        ON CONFLICT (relid, privilege, role_name, (COALESCE(scope_relid, 0::oid))) DO UPDATE SET
            -- GRANT adds up, as in SQL: NULL (every column) absorbs any list.
            columns = CASE WHEN g.columns IS NULL OR excluded.columns IS NULL THEN NULL
                           ELSE @extschema@._columns_union(g.relid, g.columns, excluded.columns)
                      END,
            schema_name = excluded.schema_name,
            table_name = excluded.table_name,
            scope_schema = excluded.scope_schema,
            scope_table = excluded.scope_table,
            using_path = excluded.using_path,
            check_expr = excluded.check_expr;
    END LOOP;
    PERFORM @extschema@._notify('grant', table_oid, t.schema_name, t.table_name);
    PERFORM @extschema@._proxy_tag(proxy_tag);
END
$$;

-- Without columns: the grants go. With columns: those columns leave each grant (a grant of every
-- column becomes one of the others), and a grant left with no column goes.
CREATE OR REPLACE PROCEDURE @extschema@._revoke(
    privilege_words text[],
    table_oid regclass,
    grantee text,
    column_names text[],
    scope_oid regclass,
    proxy_tag text DEFAULT NULL
)
    LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t record;
    revoked text[];
    dropped_columns text[];
BEGIN
    SELECT * INTO t FROM @extschema@._owned_table(table_oid);
    PERFORM @extschema@._require_electrified(table_oid, t.schema_name, t.table_name, 'ELECTRIC REVOKE');
    revoked := @extschema@._privileges(privilege_words, 'ELECTRIC REVOKE');
    IF grantee IS NULL OR grantee = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'EX016', MESSAGE = 'ELECTRIC REVOKE needs a role';
    END IF;
    dropped_columns := @extschema@._columns(table_oid, t.schema_name, t.table_name, column_names, 'ELECTRIC REVOKE');

    IF dropped_columns IS NOT NULL THEN
        UPDATE @extschema@.grants g
           SET columns = @extschema@._columns_minus(g.relid, g.columns, dropped_columns)
         WHERE g.relid = table_oid
           AND g.privilege = ANY (revoked)
           AND g.role_name = grantee
           AND COALESCE(g.scope_relid, 0::oid) = COALESCE(scope_oid::oid, 0::oid);
    END IF;
    -- Like SQL REVOKE, revoking what was never granted is not an error.
    DELETE FROM @extschema@.grants g
     WHERE g.relid = table_oid
       AND g.privilege = ANY (revoked)
       AND g.role_name = grantee
       AND COALESCE(g.scope_relid, 0::oid) = COALESCE(scope_oid::oid, 0::oid)
       AND (dropped_columns IS NULL OR cardinality(g.columns) = 0);
    PERFORM @extschema@._notify('revoke', table_oid, t.schema_name, t.table_name);
    PERFORM @extschema@._proxy_tag(proxy_tag);
END
$$;

CREATE OR REPLACE PROCEDURE @extschema@._assign(
    table_oid regclass,
    user_column_name text,
    role_literal text,
    role_column_parts text[],
    scope_oid regclass,
    condition text,
    proxy_tag text DEFAULT NULL
)
    LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t record;
    s record;
    role_col text;
BEGIN
    SELECT * INTO t FROM @extschema@._owned_table(table_oid);
    PERFORM @extschema@._require_electrified(table_oid, t.schema_name, t.table_name, 'ELECTRIC ASSIGN');
    IF user_column_name IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'ELECTRIC ASSIGN needs a user column';
    END IF;
    PERFORM @extschema@._columns(table_oid, t.schema_name, t.table_name, ARRAY[user_column_name], 'ELECTRIC ASSIGN');
    IF (role_literal IS NULL) = (role_column_parts IS NULL) OR role_literal = '' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'EX016',
            MESSAGE = 'ELECTRIC ASSIGN needs either a role name or a role column',
            SCHEMA = t.schema_name,
            TABLE = t.table_name;
    END IF;
    IF role_column_parts IS NOT NULL THEN
        role_col := @extschema@._role_column(table_oid, t.schema_name, t.table_name, role_column_parts, 'ELECTRIC ASSIGN');
    END IF;
    SELECT n.nspname AS schema_name, c.relname AS table_name INTO s
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = scope_oid;

    INSERT INTO @extschema@.assignments AS a (
        relid, schema_name, table_name, user_column, role_name, role_column,
        scope_relid, scope_schema, scope_table, if_expr
    )
    VALUES (
        table_oid, t.schema_name, t.table_name, user_column_name, role_literal, role_col,
        scope_oid, s.schema_name, s.table_name, condition
    )
    ON CONFLICT (relid, user_column, (COALESCE(role_name, '')), (COALESCE(role_column, '')),
                 (COALESCE(scope_relid, 0::oid))) DO UPDATE SET
        schema_name = excluded.schema_name,
        table_name = excluded.table_name,
        scope_schema = excluded.scope_schema,
        scope_table = excluded.scope_table,
        if_expr = excluded.if_expr;
    PERFORM @extschema@._notify('assign', table_oid, t.schema_name, t.table_name);
    PERFORM @extschema@._proxy_tag(proxy_tag);
END
$$;

CREATE OR REPLACE PROCEDURE @extschema@._unassign(
    table_oid regclass,
    user_column_name text,
    role_literal text,
    role_column_parts text[],
    scope_oid regclass,
    proxy_tag text DEFAULT NULL
)
    LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t record;
    role_col text;
BEGIN
    SELECT * INTO t FROM @extschema@._owned_table(table_oid);
    PERFORM @extschema@._require_electrified(table_oid, t.schema_name, t.table_name, 'ELECTRIC UNASSIGN');
    IF user_column_name IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'ELECTRIC UNASSIGN needs a user column';
    END IF;
    PERFORM @extschema@._columns(table_oid, t.schema_name, t.table_name, ARRAY[user_column_name], 'ELECTRIC UNASSIGN');
    IF (role_literal IS NULL) = (role_column_parts IS NULL) OR role_literal = '' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'EX016',
            MESSAGE = 'ELECTRIC UNASSIGN needs either a role name or a role column',
            SCHEMA = t.schema_name,
            TABLE = t.table_name;
    END IF;
    IF role_column_parts IS NOT NULL THEN
        role_col := @extschema@._role_column(table_oid, t.schema_name, t.table_name, role_column_parts, 'ELECTRIC UNASSIGN');
    END IF;
    -- Unassigning what was never assigned is not an error.
    DELETE FROM @extschema@.assignments a
     WHERE a.relid = table_oid
       AND a.user_column = user_column_name
       AND a.role_name IS NOT DISTINCT FROM role_literal
       AND a.role_column IS NOT DISTINCT FROM role_col
       AND COALESCE(a.scope_relid, 0::oid) = COALESCE(scope_oid::oid, 0::oid);
    PERFORM @extschema@._notify('unassign', table_oid, t.schema_name, t.table_name);
    PERFORM @extschema@._proxy_tag(proxy_tag);
END
$$;

-- ---------------------------------------------------------------------------------------------
-- The public procedures. Those taking table names are SECURITY INVOKER wrappers around the
-- procedures above (see SECURITY MODEL); their parameters map one to one onto the dataclasses of
-- proxy/ddl/electric.py. A NULL schema_name means "resolve table_name through the search_path";
-- names are exact (already unquoted and case-folded), except in the one-argument electrify and
-- disable, which take a name in SQL syntax as Electric's electrify did.

-- ELECTRIC ENABLE t, ALTER TABLE t ENABLE ELECTRIC.
CREATE OR REPLACE PROCEDURE @extschema@.electrify(table_name text)
    LANGUAGE sql
AS $$
    CALL @extschema@._electrify(@extschema@._resolve(table_name), NULL)
$$;

-- No default for schema_name: electrify(text, text DEFAULT ...) would make a two-argument call
-- ambiguous with this one.
CREATE OR REPLACE PROCEDURE @extschema@.electrify(schema_name text, table_name text, proxy_tag text DEFAULT NULL)
    LANGUAGE sql
AS $$
    CALL @extschema@._electrify(@extschema@._resolve(schema_name, table_name), proxy_tag)
$$;

-- ELECTRIC DISABLE t, ALTER TABLE t DISABLE ELECTRIC.
CREATE OR REPLACE PROCEDURE @extschema@.disable(table_name text)
    LANGUAGE sql
AS $$
    CALL @extschema@._disable(@extschema@._resolve(table_name), NULL)
$$;

CREATE OR REPLACE PROCEDURE @extschema@.disable(schema_name text, table_name text, proxy_tag text DEFAULT NULL)
    LANGUAGE sql
AS $$
    CALL @extschema@._disable(@extschema@._resolve(schema_name, table_name), proxy_tag)
$$;

-- ELECTRIC GRANT privileges [(columns)] ON schema.table TO [scope:]role [USING path] [CHECK (expr)].
-- The proxy passes the expanded privileges of the statement in one call (one row each).
CREATE OR REPLACE PROCEDURE @extschema@.grant(
    privileges text[],
    schema_name text,
    table_name text,
    role_name text,
    columns text[] DEFAULT NULL,
    scope_schema text DEFAULT NULL,
    scope_table text DEFAULT NULL,
    using_path text[] DEFAULT NULL,
    check_expr text DEFAULT NULL,
    proxy_tag text DEFAULT NULL
)
    LANGUAGE sql
AS $$
    CALL @extschema@._grant(
        privileges, @extschema@._resolve(schema_name, table_name), role_name, columns,
        @extschema@._resolve_scope(scope_schema, scope_table), using_path, check_expr, proxy_tag)
$$;

-- ELECTRIC REVOKE privileges [(columns)] ON schema.table FROM [scope:]role.
CREATE OR REPLACE PROCEDURE @extschema@.revoke(
    privileges text[],
    schema_name text,
    table_name text,
    role_name text,
    columns text[] DEFAULT NULL,
    scope_schema text DEFAULT NULL,
    scope_table text DEFAULT NULL,
    proxy_tag text DEFAULT NULL
)
    LANGUAGE sql
AS $$
    CALL @extschema@._revoke(
        privileges, @extschema@._resolve(schema_name, table_name), role_name, columns,
        @extschema@._resolve_scope(scope_schema, scope_table), proxy_tag)
$$;

-- ELECTRIC ASSIGN role TO schema.table.user_column [IF (expr)]. Exactly one of role_name (a
-- literal role) and role_column (RoleSpec.column: 1 to 3 name parts) is not NULL.
CREATE OR REPLACE PROCEDURE @extschema@.assign(
    schema_name text,
    table_name text,
    user_column text,
    role_name text,
    role_column text[],
    scope_schema text DEFAULT NULL,
    scope_table text DEFAULT NULL,
    if_expr text DEFAULT NULL,
    proxy_tag text DEFAULT NULL
)
    LANGUAGE sql
AS $$
    CALL @extschema@._assign(
        @extschema@._resolve(schema_name, table_name), user_column, role_name, role_column,
        @extschema@._resolve_scope(scope_schema, scope_table), if_expr, proxy_tag)
$$;

-- ELECTRIC UNASSIGN role FROM schema.table.user_column.
CREATE OR REPLACE PROCEDURE @extschema@.unassign(
    schema_name text,
    table_name text,
    user_column text,
    role_name text,
    role_column text[],
    scope_schema text DEFAULT NULL,
    scope_table text DEFAULT NULL,
    proxy_tag text DEFAULT NULL
)
    LANGUAGE sql
AS $$
    CALL @extschema@._unassign(
        @extschema@._resolve(schema_name, table_name), user_column, role_name, role_column,
        @extschema@._resolve_scope(scope_schema, scope_table), proxy_tag)
$$;

-- ELECTRIC SQLITE 'statements'. No names to resolve, so no wrapper. The statements run on every
-- client, hence the database owner's privileges rather than a table owner's.
CREATE OR REPLACE PROCEDURE @extschema@.sqlite(sql text, proxy_tag text DEFAULT NULL)
    LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    database_owner oid;
BEGIN
    SELECT d.datdba INTO database_owner FROM pg_database d WHERE d.datname = current_database();
    IF NOT pg_has_role(session_user, database_owner, 'USAGE') THEN
        RAISE EXCEPTION USING
            ERRCODE = '42501',
            MESSAGE = format('must be owner of database %s', current_database()),
            HINT = 'ELECTRIC SQLITE needs the privileges of the database''s owner.';
    END IF;
    IF sql IS NULL OR btrim(sql) = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'EX016', MESSAGE = 'ELECTRIC SQLITE needs a statement';
    END IF;
    INSERT INTO @extschema@.sqlite_statements (sql) VALUES (sql);
    PERFORM @extschema@._notify('sqlite', NULL, NULL, NULL);
    PERFORM @extschema@._proxy_tag(proxy_tag);
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Privileges: nothing for PUBLIC but the schema, the public procedures, and what those run as
-- the caller (the regclass procedures and _resolve). Revoking everything first and granting an
-- explicit list keeps a forgotten helper closed rather than open.

REVOKE ALL ON SCHEMA @extschema@ FROM PUBLIC;
GRANT USAGE ON SCHEMA @extschema@ TO PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA @extschema@ FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA @extschema@ FROM PUBLIC;
REVOKE ALL ON ALL ROUTINES IN SCHEMA @extschema@ FROM PUBLIC;

GRANT EXECUTE ON PROCEDURE
    @extschema@.electrify(text),
    @extschema@.electrify(text, text, text),
    @extschema@.disable(text),
    @extschema@.disable(text, text, text),
    @extschema@.grant(text[], text, text, text, text[], text, text, text[], text, text),
    @extschema@.revoke(text[], text, text, text, text[], text, text, text),
    @extschema@.assign(text, text, text, text, text[], text, text, text, text),
    @extschema@.unassign(text, text, text, text, text[], text, text, text),
    @extschema@.sqlite(text, text),
    @extschema@._electrify(regclass, text),
    @extschema@._disable(regclass, text),
    @extschema@._grant(text[], regclass, text, text[], regclass, text[], text, text),
    @extschema@._revoke(text[], regclass, text, text[], regclass, text),
    @extschema@._assign(regclass, text, text, text[], regclass, text, text),
    @extschema@._unassign(regclass, text, text, text[], regclass, text)
TO PUBLIC;
GRANT EXECUTE ON FUNCTION
    @extschema@._resolve(text),
    @extschema@._resolve(text, text),
    @extschema@._resolve_scope(text, text)
TO PUBLIC;

-- step: 2
--
-- THE MIGRATION HISTORY (DESIGN.md, "What is recorded")
--   A migration is one backend transaction, named by pg_current_xact_id(): the full (epoch-
--   qualified, never wrapping) id of the TOP-LEVEL transaction, the same inside every savepoint.
--   The proxy injects CALLs into the client's own migration transaction; each call writes rows
--   for that transaction only, so the history commits or rolls back with the DDL it describes.
--   A migrations row is created by the first call in a transaction and never anywhere else:
--   a rolled-back (or failed) migration leaves no trace.
--
--   capture(statements jsonb, meta jsonb DEFAULT NULL, proxy_tag text DEFAULT NULL)
--     statements: [{"sql": text, "tag": text, "objects": [{"schema", "name", "type"}]}], in the
--     order they ran; they get the next sequence numbers of the migration. meta: {"application_name",
--     "client_addr", "proxy_instance"}, each optional (the proxy knows the real client; inside
--     the backend, inet_client_addr() is the proxy). Objects: "type" as the proxy's classifier
--     names it ("table", "OBJECT_TABLE", "materialized view", ...); "schema" NULL means "as the
--     caller's search_path resolves it" (see _statement_objects). Then the resulting definition
--     of every object touched is read from pg_catalog, here, inside the transaction (so it is
--     exact), into migration_objects; and catalog rows this transaction created (electrified,
--     grants, assignments, sqlite_statements) get their migration_id.
--   note_version(framework text, version text, proxy_tag text DEFAULT NULL)
--     The proxy saw a framework write its version table (Alembic, Rails, Prisma, ...). The last
--     note of a transaction wins (Alembic runs several revisions in one transaction).
--   note_version_late(framework text, version text, proxy_tag text DEFAULT NULL)
--     A version written AFTER its migration's transaction committed, in a transaction of its
--     own (Django records an unapplied migration, and a non-atomic one, that way). It goes to
--     the session's last migration if that one has only a generated version; it never creates
--     a row: a version write without DDL is not a migration. Inside a transaction that already
--     has a migration it is note_version. (A version written BEFORE its migration's transaction,
--     as Prisma does, is the proxy's to hold until that transaction: no call is needed for it.)
--   migration_version(version text, proxy_tag text DEFAULT NULL)
--     For people: `CALL electric.migration_version('2024_06_add_items')` inside a migration.
--
-- VERSIONS
--   Precedence: explicit (migration_version) > framework (note_version) > generated. The generated
--   version, set when the row is created, is the UTC transaction start to the microsecond and
--   the transaction id: 20240612093015123456_7481. It sorts by time as text, but nothing here
--   ever orders by version: versions compare as their framework orders them, and the history's
--   order is the order of application, (committed_at, id).
--
-- COMMIT TIME
--   committed_at is set by a DEFERRABLE INITIALLY DEFERRED constraint trigger on migrations:
--   deferred triggers run at COMMIT, after every statement of the transaction, so
--   clock_timestamp() there is the commit time to within the commit itself. Migrations that
--   touch the same objects hold conflicting locks until their commit, so their committed_at
--   follow their real commit order. Two edge cases stamp earlier: SET CONSTRAINTS ALL IMMEDIATE
--   (the trigger fires at the end of that statement) and PREPARE TRANSACTION (it fires at
--   PREPARE). Inside its own transaction a migration has committed_at NULL.
--
-- DEFINITIONS (migration_objects)
--   Keyed by the namespace the name lives in, not by the word the statement used: 'relation'
--   (pg_class: tables, indexes, views, sequences, ... share one namespace per schema, so
--   `DROP TABLE t` is found whether it was created as a table or a partitioned table), 'type'
--   (pg_type) and 'routine' (pg_proc, every overload of the name). definition->>'kind' says what
--   the object is; definition NULL means it does not exist at the end of the migration. Other
--   object types (schemas, triggers, policies, ...) stay in the statement's objects list only.
--   Definitions are rendered by Postgres's own format_type / pg_get_expr / pg_get_*def under a
--   search_path of pg_catalog (and pg_temp last, against hijacking), so every name outside
--   pg_catalog is schema-qualified: the same rendering the drift snapshot uses. Objects are
--   looked up in pg_class / pg_type / pg_proc by name rather than with to_regclass(): lookups
--   as the definer must not fail on a schema the definer has no USAGE on, which would abort the
--   client's migration. An index's table is refreshed with it, and a table's recorded indexes
--   with the table (a table embeds its indexes; DROP TABLE drops them).
--
-- WHO MAY CALL
--   capture, note_version and migration_version are executable by PUBLIC: any role that can
--   run DDL must be able to have it recorded. They cannot corrupt the history of others: every
--   write goes to the row of the CALLER's current transaction (pg_current_xact_id(), not a
--   parameter) and its statements and objects, and what a caller writes there is what it
--   claims about its own transaction. note_version_late reaches one committed row, and only
--   one of the caller's own session (same backend pid and session_user, started after the
--   session did), whose version was still a generated one. The tables themselves are closed
--   to PUBLIC.
--
-- SQLSTATES RAISED HERE
--   22023  malformed statements / meta / objects JSON, empty version or framework (invalid_parameter_value).
--   22004  NULL version or framework.
--   NOTICE EXTAG, as in step 1.

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

-- ---------------------------------------------------------------------------------------------
-- The commit time (see COMMIT TIME). SECURITY DEFINER: a deferred trigger runs as whoever
-- commits, who has no UPDATE on the table.

CREATE OR REPLACE FUNCTION @extschema@._migration_committed()
    RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE @extschema@.migrations m SET committed_at = clock_timestamp() WHERE m.id = NEW.id;
    RETURN NULL;
END
$$;

-- Constraint triggers have no OR REPLACE (and plain triggers only from Postgres 14).
DROP TRIGGER IF EXISTS migrations_committed_at ON @extschema@.migrations;
CREATE CONSTRAINT TRIGGER migrations_committed_at
    AFTER INSERT ON @extschema@.migrations
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION @extschema@._migration_committed();

-- ---------------------------------------------------------------------------------------------
-- Internal helpers (closed to PUBLIC by the privilege block below).

-- The current transaction's migrations row, created on first use. meta, when given, fills in
-- or replaces the client's details (a row created by note_version has none from the proxy).
-- No race: only this transaction can insert its own txid.
CREATE OR REPLACE FUNCTION @extschema@._migration(meta jsonb)
    RETURNS bigint
    LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current_txid xid8 := pg_current_xact_id();
    found_id bigint;
BEGIN
    IF meta IS NOT NULL AND jsonb_typeof(meta) <> 'object' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'capture meta must be a JSON object';
    END IF;
    SELECT m.id INTO found_id FROM @extschema@.migrations m WHERE m.txid = current_txid;
    IF NOT FOUND THEN
        INSERT INTO @extschema@.migrations (
            txid, version, version_source, started_at, db_user,
            application_name, client_addr, proxy_instance, backend_pid
        )
        VALUES (
            current_txid,
            to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISSUS') || '_' || current_txid::text,
            'generated',
            now(),
            session_user,
            COALESCE(meta ->> 'application_name', NULLIF(current_setting('application_name'), '')),
            COALESCE(meta ->> 'client_addr', host(inet_client_addr())),
            meta ->> 'proxy_instance',
            pg_backend_pid()
        )
        RETURNING id INTO found_id;
    ELSIF meta IS NOT NULL THEN
        UPDATE @extschema@.migrations m
           SET application_name = COALESCE(meta ->> 'application_name', m.application_name),
               client_addr = COALESCE(meta ->> 'client_addr', m.client_addr),
               proxy_instance = COALESCE(meta ->> 'proxy_instance', m.proxy_instance)
         WHERE m.id = found_id
           AND (m.application_name, m.client_addr, m.proxy_instance) IS DISTINCT FROM (
                COALESCE(meta ->> 'application_name', m.application_name),
                COALESCE(meta ->> 'client_addr', m.client_addr),
                COALESCE(meta ->> 'proxy_instance', m.proxy_instance));
    END IF;
    RETURN found_id;
END
$$;

-- The classifier's word for an object type, normalised: 'OBJECT_MATVIEW' -> 'materialized view'.
CREATE OR REPLACE FUNCTION @extschema@._object_type(type_word text)
    RETURNS text
    LANGUAGE sql IMMUTABLE STRICT
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE w WHEN 'matview' THEN 'materialized view' WHEN 'tabconstraint' THEN 'table constraint' ELSE w END
      FROM (SELECT replace(lower(regexp_replace(btrim($1), '^object_', '', 'i')), '_', ' ') AS w) s
$$;

-- The namespace a normalised type's names live in (see DEFINITIONS); NULL: not tracked.
CREATE OR REPLACE FUNCTION @extschema@._object_class(object_type text)
    RETURNS text
    LANGUAGE sql IMMUTABLE STRICT
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN $1 IN ('table', 'partitioned table', 'foreign table', 'index', 'partitioned index',
                    'view', 'materialized view', 'sequence') THEN 'relation'
        WHEN $1 IN ('type', 'domain', 'enum', 'composite type', 'range') THEN 'type'
        WHEN $1 IN ('function', 'procedure', 'routine', 'aggregate') THEN 'routine'
    END
$$;

-- Whether an object of a class exists, looked up in the catalogs (see DEFINITIONS for why not
-- to_regclass).
CREATE OR REPLACE FUNCTION @extschema@._object_exists(object_class text, schema_name text, object_name text)
    RETURNS boolean
    LANGUAGE sql STABLE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE $1
        WHEN 'relation' THEN EXISTS (
            SELECT FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $2 AND c.relname = $3)
        WHEN 'type' THEN EXISTS (
            SELECT FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
             WHERE n.nspname = $2 AND t.typname = $3)
        WHEN 'routine' THEN EXISTS (
            SELECT FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = $2 AND p.proname = $3)
        ELSE false
    END
$$;

-- A statement's objects, checked and normalised to [{"schema", "name", "type"}]. An object
-- without a schema is looked up along caller_path, the caller's current_schemas(false): the
-- first schema holding it is the one the statement meant (or created it in, for CREATE, which
-- uses the first schema of the path: also the answer when nothing is found, as after DROP).
-- Untracked types keep a NULL schema: nothing here can tell where they were.
CREATE OR REPLACE FUNCTION @extschema@._statement_objects(objects jsonb, caller_path name[])
    RETURNS jsonb
    LANGUAGE plpgsql STABLE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    item jsonb;
    object_schema text;
    object_type text;
    object_class text;
    normalised jsonb := '[]';
BEGIN
    IF objects IS NULL OR jsonb_typeof(objects) = 'null' THEN
        RETURN normalised;
    END IF;
    IF jsonb_typeof(objects) <> 'array' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'statement objects must be a JSON array';
    END IF;
    FOR item IN SELECT e.value FROM jsonb_array_elements(objects) e LOOP
        IF jsonb_typeof(item) IS DISTINCT FROM 'object'
           OR jsonb_typeof(item -> 'name') IS DISTINCT FROM 'string'
           OR COALESCE(jsonb_typeof(item -> 'schema'), 'null') NOT IN ('string', 'null')
           OR COALESCE(jsonb_typeof(item -> 'type'), 'null') NOT IN ('string', 'null') THEN
            RAISE EXCEPTION USING
                ERRCODE = '22023',
                MESSAGE = 'a statement object must be {"schema": text or null, "name": text, "type": text}',
                DETAIL = format('Got %s.', item);
        END IF;
        object_type := @extschema@._object_type(item ->> 'type');
        object_class := @extschema@._object_class(object_type);
        object_schema := item ->> 'schema';
        IF object_schema IS NULL AND object_class IS NOT NULL THEN
            SELECT p.s INTO object_schema
              FROM unnest(caller_path) WITH ORDINALITY AS p(s, i)
             WHERE @extschema@._object_exists(object_class, p.s, item ->> 'name')
             ORDER BY p.i
             LIMIT 1;
            object_schema := COALESCE(object_schema, caller_path[1]);
        END IF;
        normalised := normalised || jsonb_build_array(
            jsonb_build_object('schema', object_schema, 'name', item ->> 'name', 'type', object_type));
    END LOOP;
    RETURN normalised;
END
$$;

-- A relation as it is now. Columns, constraints, indexes and triggers are ordered by name or
-- position so that equal schemas give equal JSON.
CREATE OR REPLACE FUNCTION @extschema@._relation_definition(relation oid)
    RETURNS jsonb
    LANGUAGE sql STABLE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
        'kind', CASE c.relkind
            WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table' WHEN 'f' THEN 'foreign table'
            WHEN 'i' THEN 'index' WHEN 'I' THEN 'partitioned index' WHEN 'v' THEN 'view'
            WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence' WHEN 'c' THEN 'composite type'
            ELSE c.relkind::text END,
        'schema', n.nspname,
        'name', c.relname,
        'owner', pg_get_userbyid(c.relowner),
        'persistence', CASE c.relpersistence WHEN 'p' THEN 'permanent' WHEN 'u' THEN 'unlogged' ELSE 'temporary' END
    )
    -- Tables, views, foreign tables: their columns.
    || CASE WHEN c.relkind IN ('r', 'p', 'f', 'v', 'm') THEN jsonb_build_object('columns', COALESCE((
        SELECT jsonb_agg(jsonb_build_object(
                   'name', a.attname,
                   'type', format_type(a.atttypid, a.atttypmod),
                   'not_null', a.attnotnull,
                   'default', CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END,
                   'identity', CASE a.attidentity WHEN 'a' THEN 'always' WHEN 'd' THEN 'by default' END,
                   'generated', CASE WHEN a.attgenerated <> '' THEN pg_get_expr(d.adbin, d.adrelid) END,
                   'collation', CASE WHEN a.attcollation <> t.typcollation
                                     THEN format('%I.%I', cn.nspname, co.collname) END
               ) ORDER BY a.attnum)
          FROM pg_attribute a
          JOIN pg_type t ON t.oid = a.atttypid
          LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
          LEFT JOIN pg_collation co ON co.oid = a.attcollation
          LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '[]'))
       ELSE '{}' END
    -- Tables: constraints, indexes, triggers, replica identity, row security, electrified.
    || CASE WHEN c.relkind IN ('r', 'p', 'f') THEN jsonb_build_object(
        'constraints', COALESCE((
            SELECT jsonb_agg(jsonb_build_object(
                       'name', k.conname,
                       'type', CASE k.contype
                           WHEN 'p' THEN 'primary key' WHEN 'f' THEN 'foreign key' WHEN 'u' THEN 'unique'
                           WHEN 'c' THEN 'check' WHEN 'x' THEN 'exclusion' WHEN 't' THEN 'trigger'
                           WHEN 'n' THEN 'not null' ELSE k.contype::text END,
                       'definition', pg_get_constraintdef(k.oid)
                   ) ORDER BY k.conname)
              FROM pg_constraint k WHERE k.conrelid = c.oid), '[]'),
        'indexes', COALESCE((
            SELECT jsonb_agg(jsonb_build_object('name', ic.relname, 'definition', pg_get_indexdef(i.indexrelid))
                             ORDER BY ic.relname)
              FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
             WHERE i.indrelid = c.oid), '[]'),
        'triggers', COALESCE((
            SELECT jsonb_agg(jsonb_build_object('name', g.tgname, 'definition', pg_get_triggerdef(g.oid),
                                                'enabled', g.tgenabled <> 'D')
                             ORDER BY g.tgname)
              FROM pg_trigger g WHERE g.tgrelid = c.oid AND NOT g.tgisinternal), '[]'),
        'replica_identity', CASE c.relreplident
            WHEN 'd' THEN 'default' WHEN 'n' THEN 'nothing' WHEN 'f' THEN 'full' WHEN 'i' THEN 'index' END,
        'row_security', c.relrowsecurity,
        'force_row_security', c.relforcerowsecurity,
        'electrified', EXISTS (SELECT FROM @extschema@.electrified e WHERE e.relid = c.oid)
       ) ELSE '{}' END
    || CASE WHEN c.relkind = 'p' THEN jsonb_build_object('partition_key', pg_get_partkeydef(c.oid)) ELSE '{}' END
    -- The subqueries below find their row whenever the kind says so; COALESCE all the same,
    -- because jsonb || NULL would blank the whole definition.
    || CASE WHEN c.relispartition THEN COALESCE((
        SELECT jsonb_build_object('partition_of', format('%I.%I', pn.nspname, pc.relname),
                                  'partition_bound', pg_get_expr(c.relpartbound, c.oid))
          FROM pg_inherits h JOIN pg_class pc ON pc.oid = h.inhparent JOIN pg_namespace pn ON pn.oid = pc.relnamespace
         WHERE h.inhrelid = c.oid), '{}') ELSE '{}' END
    || CASE WHEN c.relkind IN ('v', 'm') THEN jsonb_build_object('query', pg_get_viewdef(c.oid)) ELSE '{}' END
    -- Indexes: the statement that rebuilds them, and their table (for the refresh).
    || CASE WHEN c.relkind IN ('i', 'I') THEN COALESCE((
        SELECT jsonb_build_object('definition', pg_get_indexdef(c.oid),
                                  'table_schema', tn.nspname, 'table_name', tc.relname)
          FROM pg_index i JOIN pg_class tc ON tc.oid = i.indrelid JOIN pg_namespace tn ON tn.oid = tc.relnamespace
         WHERE i.indexrelid = c.oid), '{}') ELSE '{}' END
    || CASE WHEN c.relkind = 'S' THEN COALESCE((
        SELECT jsonb_build_object('type', format_type(s.seqtypid, NULL), 'start', s.seqstart,
                                  'increment', s.seqincrement, 'min', s.seqmin, 'max', s.seqmax,
                                  'cache', s.seqcache, 'cycle', s.seqcycle)
          FROM pg_sequence s WHERE s.seqrelid = c.oid), '{}') ELSE '{}' END
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = $1
$$;

CREATE OR REPLACE FUNCTION @extschema@._type_definition(type_oid oid)
    RETURNS jsonb
    LANGUAGE sql STABLE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
        'kind', CASE t.typtype
            WHEN 'e' THEN 'enum' WHEN 'd' THEN 'domain' WHEN 'c' THEN 'composite type' WHEN 'r' THEN 'range'
            WHEN 'm' THEN 'multirange' WHEN 'b' THEN 'base type' WHEN 'p' THEN 'pseudo type'
            ELSE t.typtype::text END,
        'schema', n.nspname,
        'name', t.typname,
        'owner', pg_get_userbyid(t.typowner)
    )
    || CASE t.typtype
        WHEN 'e' THEN jsonb_build_object('labels', COALESCE((
            SELECT jsonb_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid), '[]'))
        WHEN 'd' THEN jsonb_build_object(
            'base_type', format_type(t.typbasetype, t.typtypmod),
            'not_null', t.typnotnull,
            'default', pg_get_expr(t.typdefaultbin, 0),
            'constraints', COALESCE((
                SELECT jsonb_agg(jsonb_build_object('name', k.conname, 'definition', pg_get_constraintdef(k.oid))
                                 ORDER BY k.conname)
                  FROM pg_constraint k WHERE k.contypid = t.oid), '[]'))
        WHEN 'c' THEN jsonb_build_object('attributes', COALESCE((
            SELECT jsonb_agg(jsonb_build_object('name', a.attname, 'type', format_type(a.atttypid, a.atttypmod))
                             ORDER BY a.attnum)
              FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped), '[]'))
        WHEN 'r' THEN COALESCE((
            SELECT jsonb_build_object('subtype', format_type(r.rngsubtype, NULL))
              FROM pg_range r WHERE r.rngtypid = t.oid), '{}')
        ELSE '{}'
    END
      FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
     WHERE t.oid = $1
$$;

-- Every overload of a routine name: statements name routines without their argument types.
-- NULL when there is none.
CREATE OR REPLACE FUNCTION @extschema@._routine_definition(schema_name text, routine_name text)
    RETURNS jsonb
    LANGUAGE sql STABLE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object('kind', 'routine', 'schema', $1, 'name', $2, 'overloads', jsonb_agg(
               jsonb_build_object(
                   'kind', CASE p.prokind WHEN 'f' THEN 'function' WHEN 'p' THEN 'procedure'
                                          WHEN 'a' THEN 'aggregate' WHEN 'w' THEN 'window function' END,
                   'arguments', pg_get_function_identity_arguments(p.oid),
                   'result', pg_get_function_result(p.oid),
                   -- pg_get_functiondef refuses aggregates.
                   'definition', CASE WHEN p.prokind IN ('f', 'p', 'w') THEN pg_get_functiondef(p.oid) END
               ) ORDER BY pg_get_function_identity_arguments(p.oid)))
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = $1 AND p.proname = $2
    HAVING count(*) > 0
$$;

-- The current definition of an object of a class (relid only for relations).
CREATE OR REPLACE FUNCTION @extschema@._object_definition(
    object_class text, schema_name text, object_name text, OUT relid oid, OUT definition jsonb
)
    LANGUAGE plpgsql STABLE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    type_oid oid;
BEGIN
    IF object_class = 'relation' THEN
        SELECT c.oid INTO relid
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = _object_definition.schema_name AND c.relname = _object_definition.object_name;
        definition := @extschema@._relation_definition(relid);
    ELSIF object_class = 'type' THEN
        SELECT t.oid INTO type_oid
          FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
         WHERE n.nspname = _object_definition.schema_name AND t.typname = _object_definition.object_name;
        definition := @extschema@._type_definition(type_oid);
    ELSIF object_class = 'routine' THEN
        definition := @extschema@._routine_definition(_object_definition.schema_name, _object_definition.object_name);
    END IF;
END
$$;

-- The definition last recorded for an object: the current transaction's record first (its
-- migration is not committed yet), then by order of application.
CREATE OR REPLACE FUNCTION @extschema@._latest_definition(object_class text, schema_name text, object_name text)
    RETURNS jsonb
    LANGUAGE sql STABLE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT o.definition
      FROM @extschema@.migration_objects o JOIN @extschema@.migrations m ON m.id = o.migration_id
     WHERE o.object_type = $1 AND o.schema_name = $2 AND o.object_name = $3
     ORDER BY m.committed_at DESC NULLS FIRST, m.id DESC
     LIMIT 1
$$;

-- Record the current definitions of `objects` (normalised by _statement_objects) in the
-- migration, with the tables of indexes among them and the recorded indexes of tables among
-- them (see DEFINITIONS). Recording an object that did not change is harmless: it records the
-- truth. The loop's query is read once, before the first upsert.
CREATE OR REPLACE FUNCTION @extschema@._refresh_objects(mid bigint, objects jsonb)
    RETURNS void
    LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    target record;
    current_def record;
BEGIN
    FOR target IN
        WITH given AS (
            SELECT DISTINCT @extschema@._object_class(x.type) AS object_class, x.schema AS schema_name,
                   x.name AS object_name
              FROM jsonb_to_recordset(objects) AS x(schema text, name text, type text)
             WHERE @extschema@._object_class(x.type) IS NOT NULL AND x.schema IS NOT NULL
        ),
        index_tables AS (  -- the table of an index: live, else as last recorded (dropped index)
            SELECT 'relation', COALESCE(tn.nspname, last.def ->> 'table_schema'),
                   COALESCE(tc.relname, last.def ->> 'table_name')
              FROM given g
              LEFT JOIN pg_namespace n ON n.nspname = g.schema_name
              LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = g.object_name
              LEFT JOIN pg_index i ON i.indexrelid = c.oid
              LEFT JOIN pg_class tc ON tc.oid = i.indrelid
              LEFT JOIN pg_namespace tn ON tn.oid = tc.relnamespace
              CROSS JOIN LATERAL (SELECT @extschema@._latest_definition(g.object_class, g.schema_name, g.object_name)
                                         AS def) last
             WHERE g.object_class = 'relation'
               AND COALESCE(tc.relname, last.def ->> 'table_name') IS NOT NULL
        ),
        tables AS (
            SELECT * FROM given WHERE object_class = 'relation'
            UNION
            SELECT * FROM index_tables
        ),
        table_indexes AS (  -- indexes recorded as belonging to those tables, and still recorded as existing
            SELECT DISTINCT 'relation', o.schema_name, o.object_name
              FROM tables t
              JOIN @extschema@.migration_objects o
                ON o.object_type = 'relation'
               AND o.definition ->> 'table_schema' = t.schema_name
               AND o.definition ->> 'table_name' = t.object_name
             WHERE @extschema@._latest_definition('relation', o.schema_name, o.object_name) IS NOT NULL
        )
        SELECT * FROM given UNION SELECT * FROM index_tables UNION SELECT * FROM table_indexes
    LOOP
        SELECT * INTO current_def
          FROM @extschema@._object_definition(target.object_class, target.schema_name, target.object_name);
        INSERT INTO @extschema@.migration_objects AS o (
            migration_id, object_type, schema_name, object_name, relid, definition
        )
        VALUES (mid, target.object_class, target.schema_name, target.object_name,
                current_def.relid, current_def.definition)
        ON CONFLICT (migration_id, object_type, schema_name, object_name) DO UPDATE SET
            relid = excluded.relid,
            definition = excluded.definition;
    END LOOP;
END
$$;

-- Step 1 rows created by this transaction, not yet linked: they belong to this migration.
CREATE OR REPLACE FUNCTION @extschema@._link_catalog_rows(mid bigint)
    RETURNS void
    LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current_txid xid8 := pg_current_xact_id();
BEGIN
    UPDATE @extschema@.electrified r SET migration_id = mid
     WHERE r.migration_id IS NULL AND r.created_txid = current_txid;
    UPDATE @extschema@.grants r SET migration_id = mid
     WHERE r.migration_id IS NULL AND r.created_txid = current_txid;
    UPDATE @extschema@.assignments r SET migration_id = mid
     WHERE r.migration_id IS NULL AND r.created_txid = current_txid;
    UPDATE @extschema@.sqlite_statements r SET migration_id = mid
     WHERE r.migration_id IS NULL AND r.created_txid = current_txid;
END
$$;

-- The work of capture(), as the definer. caller_path: the caller's current_schemas(false).
CREATE OR REPLACE PROCEDURE @extschema@._capture(
    statements jsonb, meta jsonb, caller_path name[], proxy_tag text DEFAULT NULL
)
    LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mid bigint;
    next_seq integer;
    item jsonb;
    item_objects jsonb;
    touched jsonb := '[]';
BEGIN
    IF statements IS NOT NULL AND jsonb_typeof(statements) <> 'array' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'capture statements must be a JSON array';
    END IF;
    mid := @extschema@._migration(meta);
    SELECT COALESCE(max(s.seq), 0) INTO next_seq
      FROM @extschema@.migration_statements s WHERE s.migration_id = mid;
    FOR item IN SELECT e.value FROM jsonb_array_elements(COALESCE(statements, '[]')) WITH ORDINALITY e ORDER BY e.ordinality LOOP
        IF jsonb_typeof(item) IS DISTINCT FROM 'object'
           OR jsonb_typeof(item -> 'sql') IS DISTINCT FROM 'string'
           OR COALESCE(jsonb_typeof(item -> 'tag'), 'null') NOT IN ('string', 'null') THEN
            RAISE EXCEPTION USING
                ERRCODE = '22023',
                MESSAGE = 'a captured statement must be {"sql": text, "tag": text, "objects": [...]}';
        END IF;
        item_objects := @extschema@._statement_objects(item -> 'objects', caller_path);
        next_seq := next_seq + 1;
        INSERT INTO @extschema@.migration_statements (migration_id, seq, sql, tag, objects)
        VALUES (mid, next_seq, item ->> 'sql', item ->> 'tag', item_objects);
        touched := touched || item_objects;
    END LOOP;
    -- Once per call, after all its statements: they all ran before the CALL, so the catalogs
    -- already show their combined result.
    PERFORM @extschema@._refresh_objects(mid, touched);
    PERFORM @extschema@._link_catalog_rows(mid);
    PERFORM @extschema@._proxy_tag(proxy_tag);
END
$$;

-- ---------------------------------------------------------------------------------------------
-- The public procedures (see the top of this step).

-- SECURITY INVOKER without SET, like step 1's wrappers: current_schemas(false) must be the
-- caller's path. It names every function with its schema and uses no operator.
CREATE OR REPLACE PROCEDURE @extschema@.capture(statements jsonb, meta jsonb DEFAULT NULL, proxy_tag text DEFAULT NULL)
    LANGUAGE sql
AS $$
    CALL @extschema@._capture(statements, meta, pg_catalog.current_schemas(false), proxy_tag)
$$;

CREATE OR REPLACE PROCEDURE @extschema@.note_version(framework text, version text, proxy_tag text DEFAULT NULL)
    LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mid bigint;
BEGIN
    IF note_version.framework IS NULL OR note_version.version IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'note_version needs a framework and a version';
    END IF;
    IF note_version.framework = '' OR note_version.version = '' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'note_version needs a non-empty framework and version';
    END IF;
    mid := @extschema@._migration(NULL);
    -- The framework is recorded even under an explicit version: it says which tool ran.
    UPDATE @extschema@.migrations m
       SET framework = note_version.framework,
           version = CASE WHEN m.version_source = 'explicit' THEN m.version ELSE note_version.version END,
           version_source = CASE WHEN m.version_source = 'explicit' THEN 'explicit' ELSE 'framework' END
     WHERE m.id = mid;
    PERFORM @extschema@._proxy_tag(proxy_tag);
END
$$;

CREATE OR REPLACE PROCEDURE @extschema@.migration_version(version text, proxy_tag text DEFAULT NULL)
    LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mid bigint;
BEGIN
    IF migration_version.version IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'migration_version needs a version';
    END IF;
    IF migration_version.version = '' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'migration_version needs a non-empty version';
    END IF;
    mid := @extschema@._migration(NULL);
    UPDATE @extschema@.migrations m
       SET version = migration_version.version, version_source = 'explicit'
     WHERE m.id = mid;
    PERFORM @extschema@._proxy_tag(proxy_tag);
END
$$;

-- When the caller's session began, read as the caller: pg_stat_activity shows another role's
-- session to the definer without it. SECURITY INVOKER, no SET, no operator (see step 1).
CREATE OR REPLACE FUNCTION @extschema@._session_start()
    RETURNS timestamptz
    LANGUAGE sql STABLE
AS $$
    SELECT a.backend_start FROM pg_catalog.pg_stat_get_activity(pg_catalog.pg_backend_pid()) a
$$;

-- The work of note_version_late(). session_start comes from the caller, who could lie about it;
-- that reaches no further than the caller's own user's sessions on the same backend pid.
CREATE OR REPLACE PROCEDURE @extschema@._note_version_late(
    framework text, version text, session_start timestamptz, proxy_tag text DEFAULT NULL
)
    LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    own_txid xid8 := pg_current_xact_id_if_assigned();  -- NULL: nothing written yet, no row
    target record;
BEGIN
    IF own_txid IS NOT NULL AND EXISTS (SELECT FROM @extschema@.migrations m WHERE m.txid = own_txid) THEN
        CALL @extschema@.note_version(_note_version_late.framework, _note_version_late.version, proxy_tag);
        RETURN;
    END IF;
    IF _note_version_late.framework IS NULL OR _note_version_late.version IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'note_version_late needs a framework and a version';
    END IF;
    IF _note_version_late.framework = '' OR _note_version_late.version = '' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'note_version_late needs a non-empty framework and version';
    END IF;
    -- The session's last migration, and only that one: an older one is not what was just written.
    SELECT m.id, m.version_source INTO target
      FROM @extschema@.migrations m
     WHERE m.backend_pid = pg_backend_pid()
       AND m.db_user = session_user
       AND m.started_at >= session_start
       AND m.committed_at IS NOT NULL
     ORDER BY m.id DESC
     LIMIT 1;
    IF NOT FOUND THEN
        -- Nothing of this session to label: the tool ran its DDL on another connection (sqitch
        -- through psql, yoyo since 7.3.2). Record the version on its own rather than lose it.
        CALL @extschema@.note_version(_note_version_late.framework, _note_version_late.version, proxy_tag);
        RETURN;
    END IF;
    IF target.version_source = 'generated' THEN
        UPDATE @extschema@.migrations m
           SET framework = _note_version_late.framework,
               version = _note_version_late.version,
               version_source = 'framework'
         WHERE m.id = target.id;
    END IF;
    PERFORM @extschema@._proxy_tag(proxy_tag);
END
$$;

CREATE OR REPLACE PROCEDURE @extschema@.note_version_late(framework text, version text, proxy_tag text DEFAULT NULL)
    LANGUAGE sql
AS $$
    CALL @extschema@._note_version_late(framework, version, @extschema@._session_start(), proxy_tag)
$$;

-- ---------------------------------------------------------------------------------------------
-- Privileges, as in step 1: everything closed, then an explicit list opened. ALL ROUTINES covers
-- step 1's routines too, so its list is granted again here, unchanged.

REVOKE ALL ON ALL TABLES IN SCHEMA @extschema@ FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA @extschema@ FROM PUBLIC;
REVOKE ALL ON ALL ROUTINES IN SCHEMA @extschema@ FROM PUBLIC;

GRANT EXECUTE ON PROCEDURE
    @extschema@.electrify(text),
    @extschema@.electrify(text, text, text),
    @extschema@.disable(text),
    @extschema@.disable(text, text, text),
    @extschema@.grant(text[], text, text, text, text[], text, text, text[], text, text),
    @extschema@.revoke(text[], text, text, text, text[], text, text, text),
    @extschema@.assign(text, text, text, text, text[], text, text, text, text),
    @extschema@.unassign(text, text, text, text, text[], text, text, text),
    @extschema@.sqlite(text, text),
    @extschema@._electrify(regclass, text),
    @extschema@._disable(regclass, text),
    @extschema@._grant(text[], regclass, text, text[], regclass, text[], text, text),
    @extschema@._revoke(text[], regclass, text, text[], regclass, text),
    @extschema@._assign(regclass, text, text, text[], regclass, text, text),
    @extschema@._unassign(regclass, text, text, text[], regclass, text),
    -- Step 2. _capture because capture() runs as the caller; it writes only the caller's own
    -- transaction's history, like the three public ones (see WHO MAY CALL).
    @extschema@.capture(jsonb, jsonb, text),
    @extschema@._capture(jsonb, jsonb, name[], text),
    @extschema@.note_version(text, text, text),
    @extschema@.note_version_late(text, text, text),
    @extschema@._note_version_late(text, text, timestamptz, text),
    @extschema@.migration_version(text, text)
TO PUBLIC;
GRANT EXECUTE ON FUNCTION
    @extschema@._resolve(text),
    @extschema@._resolve(text, text),
    @extschema@._resolve_scope(text, text),
    @extschema@._session_start()
TO PUBLIC;
