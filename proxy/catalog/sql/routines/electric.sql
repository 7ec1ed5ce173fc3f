-- The ELECTRIC statements: electrify, disable, grant, revoke, assign, unassign, sqlite, and the
-- SECURITY DEFINER procedures that do their work. Repeatable (see README.md); section names in
-- capitals are those of README.md.

-- ---------------------------------------------------------------------------------------------
-- Internal helpers, closed to PUBLIC by the privilege block at the end.

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
    -- The public wrappers have done it as the caller (_electrify_as_caller): the definer owns
    -- the catalog, not the table. Called directly, this procedure does it as the definer, which
    -- works only where the definer owns the table; a definer that does not fails here.
    IF NOT EXISTS (SELECT FROM pg_class c WHERE c.oid = table_oid AND c.relreplident = 'f') THEN
        EXECUTE format('ALTER TABLE %I.%I REPLICA IDENTITY FULL', t.schema_name, t.table_name);
    END IF;

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
        -- The database-side guard compares the table with this shape after every DDL (guard.sql).
        PERFORM @extschema@._ddlguard_remember(table_oid);
        PERFORM @extschema@._notify('electrify', table_oid, t.schema_name, t.table_name);
        PERFORM @extschema@._audit('electrify', table_oid, t.schema_name, t.table_name);
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
        PERFORM @extschema@._audit('disable', table_oid, t.schema_name, t.table_name);
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
    PERFORM @extschema@._audit('grant', table_oid, t.schema_name, t.table_name);
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
    PERFORM @extschema@._audit('revoke', table_oid, t.schema_name, t.table_name);
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
    PERFORM @extschema@._audit('assign', table_oid, t.schema_name, t.table_name);
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
    PERFORM @extschema@._audit('unassign', table_oid, t.schema_name, t.table_name);
    PERFORM @extschema@._proxy_tag(proxy_tag);
END
$$;

-- Electrify's change to the table itself, as the caller: REPLICA IDENTITY FULL needs the table's
-- owner, and the SECURITY DEFINER procedures run as the catalog's owner (SECURITY MODEL). The
-- wrappers pass the table through here before _electrify. SECURITY INVOKER without SET clause:
-- every function and operator is named with its schema. A table that _electrify would refuse
-- (not an ordinary permanent table, or one the session may not act on) is left to its errors.
-- Already FULL: the lock alone, which keeps concurrent DDL out until commit, as the ALTER does.
CREATE OR REPLACE FUNCTION @extschema@._electrify_as_caller(table_oid regclass)
    RETURNS regclass
    LANGUAGE plpgsql
AS $$
DECLARE
    t record;
BEGIN
    SELECT n.nspname, c.relname, c.relkind, c.relpersistence, c.relreplident, c.relowner INTO t
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
     WHERE c.oid OPERATOR(pg_catalog.=) table_oid::pg_catalog.oid;
    IF NOT FOUND
       OR t.relkind OPERATOR(pg_catalog.<>) 'r'
       OR t.relpersistence OPERATOR(pg_catalog.<>) 'p'
       OR NOT pg_catalog.pg_has_role(session_user, t.relowner, 'USAGE') THEN
        RETURN table_oid;
    END IF;
    IF t.relreplident OPERATOR(pg_catalog.<>) 'f' THEN
        EXECUTE pg_catalog.format('ALTER TABLE %I.%I REPLICA IDENTITY FULL', t.nspname, t.relname);
    ELSE
        EXECUTE pg_catalog.format('LOCK TABLE %I.%I IN ACCESS EXCLUSIVE MODE', t.nspname, t.relname);
    END IF;
    RETURN table_oid;
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
    CALL @extschema@._electrify(@extschema@._electrify_as_caller(@extschema@._resolve(table_name)), NULL)
$$;

-- No default for schema_name: electrify(text, text DEFAULT ...) would make a two-argument call
-- ambiguous with this one.
CREATE OR REPLACE PROCEDURE @extschema@.electrify(schema_name text, table_name text, proxy_tag text DEFAULT NULL)
    LANGUAGE sql
AS $$
    CALL @extschema@._electrify(
        @extschema@._electrify_as_caller(@extschema@._resolve(schema_name, table_name)), proxy_tag)
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
    PERFORM @extschema@._audit('sqlite', NULL, NULL, NULL);
    PERFORM @extschema@._proxy_tag(proxy_tag);
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Privileges: every routine of this file closed, then the public procedures opened, with the
-- regclass procedures they call as the caller (those check everything themselves).

REVOKE ALL ON FUNCTION
    @extschema@._owned_table(oid),
    @extschema@._not_electrifiable(text, text, text, text, text),
    @extschema@._require_electrified(oid, text, text, text),
    @extschema@._columns(oid, text, text, text[], text),
    @extschema@._columns_minus(oid, text[], text[]),
    @extschema@._columns_union(oid, text[], text[]),
    @extschema@._privileges(text[], text),
    @extschema@._check_using_path(oid, text, text, text[]),
    @extschema@._role_column(oid, text, text, text[], text),
    @extschema@._electrify_as_caller(regclass)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._electrify_as_caller(regclass) TO PUBLIC;
REVOKE ALL ON PROCEDURE
    @extschema@._electrify(regclass, text),
    @extschema@._disable(regclass, text),
    @extschema@._grant(text[], regclass, text, text[], regclass, text[], text, text),
    @extschema@._revoke(text[], regclass, text, text[], regclass, text),
    @extschema@._assign(regclass, text, text, text[], regclass, text, text),
    @extschema@._unassign(regclass, text, text, text[], regclass, text),
    @extschema@.electrify(text),
    @extschema@.electrify(text, text, text),
    @extschema@.disable(text),
    @extschema@.disable(text, text, text),
    @extschema@.grant(text[], text, text, text, text[], text, text, text[], text, text),
    @extschema@.revoke(text[], text, text, text, text[], text, text, text),
    @extschema@.assign(text, text, text, text, text[], text, text, text, text),
    @extschema@.unassign(text, text, text, text, text[], text, text, text),
    @extschema@.sqlite(text, text)
FROM PUBLIC;
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
