-- The migration history's writers: capture, note_version, note_version_late, migration_version,
-- and the commit-time trigger (see README.md, THE MIGRATION HISTORY). Repeatable (see README.md);
-- section names in capitals are those of README.md.

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

-- Rows of the step 1 tables created by this transaction, not yet linked: they belong to this migration.
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
-- The public procedures (see THE MIGRATION HISTORY).

-- SECURITY INVOKER without SET, like electric.sql's wrappers: current_schemas(false) must be the
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
-- session to the definer without it. SECURITY INVOKER, no SET, no operator (see SECURITY MODEL).
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
-- Privileges: every routine of this file closed, then the public ones opened (see WHO MAY CALL),
-- with what they run as the caller: _capture because capture() runs as the caller (it writes
-- only the caller's own transaction's history), and _note_version_late and _session_start for
-- note_version_late().

REVOKE ALL ON FUNCTION
    @extschema@._migration_committed(),
    @extschema@._migration(jsonb),
    @extschema@._statement_objects(jsonb, name[]),
    @extschema@._refresh_objects(bigint, jsonb),
    @extschema@._link_catalog_rows(bigint),
    @extschema@._session_start()
FROM PUBLIC;
REVOKE ALL ON PROCEDURE
    @extschema@._capture(jsonb, jsonb, name[], text),
    @extschema@.capture(jsonb, jsonb, text),
    @extschema@.note_version(text, text, text),
    @extschema@.migration_version(text, text),
    @extschema@._note_version_late(text, text, timestamptz, text),
    @extschema@.note_version_late(text, text, text)
FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE
    @extschema@.capture(jsonb, jsonb, text),
    @extschema@._capture(jsonb, jsonb, name[], text),
    @extschema@.note_version(text, text, text),
    @extschema@.note_version_late(text, text, text),
    @extschema@._note_version_late(text, text, timestamptz, text),
    @extschema@.migration_version(text, text)
TO PUBLIC;
GRANT EXECUTE ON FUNCTION
    @extschema@._session_start()
TO PUBLIC;
