-- The text guard's checks, run by the server where the client's DDL runs (DESIGN.md, "The
-- database is the guard's ground truth"; proxy/ddl/checks.py builds them).
--
--   guard_check(checks jsonb, proxy_tag text DEFAULT NULL)
--     The proxy puts `CALL electric.guard_check(...)` right before a DDL statement in the same
--     query string. checks: [{"kind": "relation" | "index" | "schema", "schema": text | null,
--     "name": text, "error": {"C", "M", "D", "H", "s", "t", "c"}}]. Each name is resolved as
--     the statement will resolve it: here, as the caller, under the session's real search_path,
--     role and temporary schema, at execution time, after everything before it in the
--     transaction (a rolled-back DISABLE ELECTRIC is rolled back here too). When the relation
--     (for "index": the table of the index; for "schema": any table of the schema) is
--     electrified, the error is raised with its fields; the placeholders of proxy/ddl/checks.py
--     become the table's real schema and name, and CONSTRAINT carries the proxy's marker.
--   run_checked(checks jsonb, statement text, proxy_tag text DEFAULT NULL)
--     The extended protocol's form: a Parse holds one statement, so the proxy sends this CALL
--     instead; it checks, then EXECUTEs the client's statement as the caller, at every
--     execution of the prepared statement. The proxy strips this procedure's context lines
--     from errors and notices and reports the statement's own command tag.
--
-- Resolution runs as the caller (SECURITY INVOKER, no SET clause), so it names every function
-- with its schema and uses no operator: the caller's search_path decides only what the checked
-- names mean. The lookups in electric.electrified run as the definer in _guard_raise.

CREATE OR REPLACE FUNCTION @extschema@._guard_resolve(checks jsonb)
    RETURNS pg_catalog.oid[]
    LANGUAGE plpgsql STABLE
AS $$
DECLARE
    item pg_catalog.jsonb;
    schema_name pg_catalog.text;
    object_name pg_catalog.text;
    found pg_catalog.oid[] := ARRAY[]::pg_catalog.oid[];
BEGIN
    FOR item IN SELECT pg_catalog.jsonb_array_elements(checks) LOOP
        schema_name := pg_catalog.jsonb_extract_path_text(item, 'schema');
        object_name := pg_catalog.jsonb_extract_path_text(item, 'name');
        IF schema_name IS NULL THEN
            found := pg_catalog.array_append(found, pg_catalog.to_regclass(pg_catalog.quote_ident(object_name))::pg_catalog.oid);
        ELSE
            found := pg_catalog.array_append(found, pg_catalog.to_regclass(pg_catalog.format('%I.%I', schema_name, object_name))::pg_catalog.oid);
        END IF;
    END LOOP;
    RETURN found;
END
$$;

-- The error of the first check that hits an electrified table, raised; else the tag notice.
CREATE OR REPLACE PROCEDURE @extschema@._guard_raise(checks jsonb, resolved oid[], proxy_tag text DEFAULT NULL)
    LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    item jsonb;
    position integer := 0;
    target oid;
    nsp text;
    rel text;
    err jsonb;
    quoted_schema text;
    quoted_table text;
BEGIN
    FOR item IN SELECT value FROM jsonb_array_elements(checks) LOOP
        position := position + 1;
        target := resolved[position];
        nsp := NULL;
        IF item->>'kind' = 'schema' THEN
            SELECT n.nspname, c.relname INTO nsp, rel
              FROM @extschema@.electrified e
              JOIN pg_class c ON c.oid = e.relid
              JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = item->>'name'
             LIMIT 1;
        ELSIF target IS NOT NULL THEN
            IF item->>'kind' = 'index' THEN
                SELECT x.indrelid INTO target FROM pg_index x WHERE x.indexrelid = target;
            END IF;
            SELECT n.nspname, c.relname INTO nsp, rel
              FROM @extschema@.electrified e
              JOIN pg_class c ON c.oid = e.relid
              JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE e.relid = target;
        END IF;
        CONTINUE WHEN nsp IS NULL;
        err := item->'error';
        -- Messages always quote names (proxy/ddl/names.py); quote_ident only when needed.
        quoted_schema := '"' || replace(nsp, '"', '""') || '"';
        quoted_table := '"' || replace(rel, '"', '""') || '"';
        RAISE EXCEPTION USING
            ERRCODE = err->>'C',
            MESSAGE = @extschema@._guard_fill(err->>'M', quoted_schema, quoted_table, true),
            DETAIL = coalesce(@extschema@._guard_fill(err->>'D', quoted_schema, quoted_table, true), ''),
            HINT = coalesce(err->>'H', ''),
            SCHEMA = coalesce(@extschema@._guard_fill(err->>'s', nsp, rel, false), ''),
            TABLE = coalesce(@extschema@._guard_fill(err->>'t', nsp, rel, false), ''),
            COLUMN = coalesce(err->>'c', ''),
            -- The proxy's marker; a check injected in the middle of a batch carries its
            -- group's tag instead, so the proxy can tell its error from the client's own.
            CONSTRAINT = CASE WHEN starts_with(coalesce(proxy_tag, ''), 'electric-proxy:')
                              THEN proxy_tag ELSE 'electric-proxy' END;
    END LOOP;
    PERFORM @extschema@._proxy_tag(proxy_tag);
END
$$;

CREATE OR REPLACE FUNCTION @extschema@._guard_fill(template text, schema_text text, table_text text, quoted boolean)
    RETURNS text
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN quoted
        THEN replace(replace(template, '"electric-proxy:schema"', schema_text), '"electric-proxy:table"', table_text)
        ELSE replace(replace(template, 'electric-proxy:schema', schema_text), 'electric-proxy:table', table_text)
    END
$$;

CREATE OR REPLACE PROCEDURE @extschema@.guard_check(checks jsonb, proxy_tag text DEFAULT NULL)
    LANGUAGE plpgsql
AS $$
BEGIN
    CALL @extschema@._guard_raise(checks, @extschema@._guard_resolve(checks), proxy_tag);
END
$$;

CREATE OR REPLACE PROCEDURE @extschema@.run_checked(checks jsonb, statement text, proxy_tag text DEFAULT NULL)
    LANGUAGE plpgsql
AS $$
BEGIN
    CALL @extschema@._guard_raise(checks, @extschema@._guard_resolve(checks));
    EXECUTE statement;
    CALL @extschema@._guard_raise('[]', ARRAY[]::pg_catalog.oid[], proxy_tag);  -- the tag, as the definer
END
$$;

REVOKE ALL ON FUNCTION @extschema@._guard_fill(text, text, text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._guard_resolve(jsonb) TO PUBLIC;
GRANT EXECUTE ON PROCEDURE @extschema@._guard_raise(jsonb, oid[], text) TO PUBLIC;
GRANT EXECUTE ON PROCEDURE @extschema@.guard_check(jsonb, text) TO PUBLIC;
GRANT EXECUTE ON PROCEDURE @extschema@.run_checked(jsonb, text, text) TO PUBLIC;
