-- Internal helpers shared by the other routine files: quoting, notifications, the tag marker,
-- column types, and name resolution as the caller. Repeatable (see README.md): applied again
-- whenever its text changes; section names in capitals are those of README.md.

-- ---------------------------------------------------------------------------------------------
-- Internal helpers. Only SECURITY DEFINER routines call them; closed to PUBLIC.

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

-- The tag marker (see THE PROXY'S TAG MARKER). Its own SET clause is what makes the NOTICE reach a
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
-- Privileges: every routine of this file closed, then those run as the caller opened.

REVOKE ALL ON FUNCTION
    @extschema@._qualified(text, text),
    @extschema@._quoted(text),
    @extschema@._live_columns(oid),
    @extschema@._supported_types(),
    @extschema@._type_supported(oid, integer),
    @extschema@._type_label(oid, integer),
    @extschema@._notify(text, oid, text, text),
    @extschema@._proxy_tag(text),
    @extschema@._resolve(text),
    @extschema@._resolve(text, text),
    @extschema@._resolve_scope(text, text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    @extschema@._resolve(text),
    @extschema@._resolve(text, text),
    @extschema@._resolve_scope(text, text)
TO PUBLIC;
