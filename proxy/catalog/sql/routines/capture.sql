-- The migration history's writers: capture, note_version, note_version_late, migration_version,
-- and the commit-time trigger (see README.md, THE MIGRATION HISTORY). Repeatable (see README.md);
-- section names in capitals are those of README.md.

-- Routines whose signature changed in step 5 (README.md: a changed signature is dropped first).
DROP FUNCTION IF EXISTS @extschema@._migration(jsonb);
DROP FUNCTION IF EXISTS @extschema@._refresh_objects(bigint, jsonb);
DROP PROCEDURE IF EXISTS @extschema@._capture(jsonb, jsonb, name[], text);
DROP PROCEDURE IF EXISTS @extschema@.note_version(text, text, text);
DROP PROCEDURE IF EXISTS @extschema@.note_version_late(text, text, text);
DROP PROCEDURE IF EXISTS @extschema@._note_version_late(text, text, timestamptz, text);

-- ---------------------------------------------------------------------------------------------
-- Internal helpers (closed to PUBLIC by the privilege block below).

-- When the caller's session began, read as the caller: pg_stat_activity shows another role's
-- session to the definer without it. SECURITY INVOKER, no SET, no operator (see SECURITY MODEL).
CREATE OR REPLACE FUNCTION @extschema@._session_start()
    RETURNS timestamptz
    LANGUAGE sql STABLE
AS $$
    SELECT a.backend_start FROM pg_catalog.pg_stat_get_activity(pg_catalog.pg_backend_pid()) a
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
    -- Runs for every captured statement: simple expressions only (no query) but for a name that
    -- more than one schema of the path could hold (see CAPTURE COST).
    FOR i IN 0 .. jsonb_array_length(objects) - 1 LOOP
        item := objects -> i;
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
            IF cardinality(caller_path) > 1 THEN
                SELECT p.s INTO object_schema
                  FROM unnest(caller_path) WITH ORDINALITY AS p(s, i)
                 WHERE @extschema@._object_exists(object_class, p.s, item ->> 'name')
                 ORDER BY p.i
                 LIMIT 1;
            END IF;
            object_schema := COALESCE(object_schema, caller_path[1]);
        END IF;
        normalised := normalised || jsonb_build_array(
            jsonb_build_object('schema', object_schema, 'name', item ->> 'name', 'type', object_type));
    END LOOP;
    RETURN normalised;
END
$$;

-- Record the definitions of the objects a migration's statements touched, as they are now (see
-- DEFINITIONS), with the tables of indexes among them and the indexes of tables among them that
-- are recorded on their own (DROP TABLE drops them; the table's last recorded definition names
-- them). Runs
-- once per migration, when it is sealed or at commit (see CAPTURE COST); every lookup of the
-- history is an index probe on one object's key.
CREATE OR REPLACE FUNCTION @extschema@._refresh_objects(mid bigint)
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
              FROM @extschema@.migration_statements s
             CROSS JOIN LATERAL jsonb_to_recordset(s.objects) AS x(schema text, name text, type text)
             WHERE s.migration_id = mid AND x.schema IS NOT NULL AND @extschema@._object_class(x.type) IS NOT NULL
        ),
        relations AS (
            SELECT g.schema_name, g.object_name, c.oid AS relid
              FROM given g
              LEFT JOIN pg_namespace n ON n.nspname = g.schema_name
              LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = g.object_name
             WHERE g.object_class = 'relation'
        ),
        index_tables AS (  -- the table of an index: live, else as last recorded (a dropped index)
            SELECT COALESCE(tn.nspname::text, last.def ->> 'table_schema') AS schema_name,
                   COALESCE(tc.relname::text, last.def ->> 'table_name') AS object_name
              FROM relations r
              LEFT JOIN pg_index i ON i.indexrelid = r.relid
              LEFT JOIN pg_class tc ON tc.oid = i.indrelid
              LEFT JOIN pg_namespace tn ON tn.oid = tc.relnamespace
             CROSS JOIN LATERAL (
                SELECT CASE WHEN tc.oid IS NULL
                            THEN @extschema@._latest_definition('relation', r.schema_name, r.object_name) END AS def
             ) last
             WHERE COALESCE(tc.relname::text, last.def ->> 'table_name') IS NOT NULL
        ),
        tables AS (
            SELECT r.schema_name, r.object_name FROM relations r
            UNION
            SELECT t.schema_name, t.object_name FROM index_tables t
        ),
        table_indexes AS (  -- indexes the table held when last recorded, that are recorded on their own
            SELECT t.schema_name, ix.value ->> 'name' AS object_name
              FROM tables t
             CROSS JOIN LATERAL jsonb_array_elements(COALESCE(
                   @extschema@._latest_definition('relation', t.schema_name, t.object_name) -> 'indexes',
                   '[]')) ix
             WHERE @extschema@._latest_definition('relation', t.schema_name, ix.value ->> 'name') IS NOT NULL
        )
        SELECT g.object_class, g.schema_name, g.object_name FROM given g
        UNION SELECT 'relation', t.schema_name, t.object_name FROM tables t
        UNION SELECT 'relation', x.schema_name, x.object_name FROM table_indexes x
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

-- What a migration's end does: read its definitions and link its catalog rows (see CAPTURE COST).
CREATE OR REPLACE FUNCTION @extschema@._finish(mid bigint)
    RETURNS void
    LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM @extschema@._refresh_objects(mid);
    PERFORM @extschema@._link_catalog_rows(mid);
END
$$;

-- Close a migration: a version written after its DDL ends it (see ONE ENTRY PER VERSION). The
-- catalogs show its result now, before the transaction's next migration changes them.
CREATE OR REPLACE FUNCTION @extschema@._seal(mid bigint)
    RETURNS void
    LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE @extschema@.migrations m SET sealed = true WHERE m.id = mid;
    PERFORM @extschema@._finish(mid);
END
$$;

-- The commit time (see COMMIT TIME), and the end of the transaction's last, unsealed migration:
-- its definitions are read here, once, whatever the number of its statements. SECURITY DEFINER:
-- a deferred trigger runs as whoever commits, who has no UPDATE on the table.
CREATE OR REPLACE FUNCTION @extschema@._migration_committed()
    RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    was_sealed boolean;
BEGIN
    UPDATE @extschema@.migrations m SET committed_at = clock_timestamp() WHERE m.id = NEW.id
    RETURNING m.sealed INTO was_sealed;
    IF FOUND AND NOT was_sealed THEN
        PERFORM @extschema@._finish(NEW.id);
    END IF;
    RETURN NULL;
END
$$;

-- Constraint triggers have no OR REPLACE (and plain triggers only from Postgres 14).
DROP TRIGGER IF EXISTS migrations_committed_at ON @extschema@.migrations;
CREATE CONSTRAINT TRIGGER migrations_committed_at
    AFTER INSERT ON @extschema@.migrations
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION @extschema@._migration_committed();

-- The client's host: from the proxy's "host:port" (or "[host]:port"), else the backend's peer.
CREATE OR REPLACE FUNCTION @extschema@._client_host(meta jsonb)
    RETURNS text
    LANGUAGE sql STABLE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT COALESCE(
        btrim(regexp_replace($1 ->> 'client_addr', ':[0-9]+$', ''), '[]'),
        host(inet_client_addr()))
$$;

-- A new migrations row for the current transaction, with the client's details from meta (the
-- proxy knows the real client; inside the backend, inet_client_addr() is the proxy).
CREATE OR REPLACE FUNCTION @extschema@._new_migration(meta jsonb, session_start timestamptz)
    RETURNS bigint
    LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current_txid xid8 := pg_current_xact_id();
    new_id bigint;
BEGIN
    IF meta IS NOT NULL AND jsonb_typeof(meta) <> 'object' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'capture meta must be a JSON object';
    END IF;
    INSERT INTO @extschema@.migrations (
        txid, version, version_source, started_at, db_user,
        application_name, client_addr, client_host, proxy_instance, backend_pid, session_start
    )
    VALUES (
        current_txid,
        to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISSUS') || '_' || current_txid::text,
        'generated',
        now(),
        session_user,
        COALESCE(meta ->> 'application_name', NULLIF(current_setting('application_name'), '')),
        COALESCE(meta ->> 'client_addr', host(inet_client_addr())),
        @extschema@._client_host(meta),
        meta ->> 'proxy_instance',
        pg_backend_pid(),
        session_start
    )
    RETURNING id INTO new_id;
    RETURN new_id;
END
$$;

-- Label a migration with a framework's version. Explicit beats framework beats generated; the
-- framework is recorded even under an explicit version: it says which tool ran.
CREATE OR REPLACE FUNCTION @extschema@._label(mid bigint, framework text, version text, tie text)
    RETURNS void
    LANGUAGE sql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE @extschema@.migrations m
       SET framework = $2,
           version = CASE WHEN m.version_source = 'explicit' THEN m.version ELSE $3 END,
           version_source = CASE WHEN m.version_source = 'explicit' THEN 'explicit' ELSE 'framework' END,
           version_tie = $4
     WHERE m.id = $1
$$;

-- The current transaction's open migration, created on first use (see ONE ENTRY PER VERSION).
-- for_ddl: the caller brings statements, so the session's version written before its DDL in a
-- transaction of its own (awaiting_ddl) is taken over, and its version-only row goes. No race:
-- only this transaction can insert its own txid.
CREATE OR REPLACE FUNCTION @extschema@._migration(meta jsonb, session_start timestamptz, for_ddl boolean)
    RETURNS bigint
    LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current_txid xid8 := pg_current_xact_id();
    last record;
    pending record;
    new_id bigint;
    first_of_transaction boolean;
BEGIN
    SELECT m.id, m.sealed, m.awaiting_ddl INTO last
      FROM @extschema@.migrations m WHERE m.txid = current_txid ORDER BY m.id DESC LIMIT 1;
    first_of_transaction := NOT FOUND;
    IF NOT first_of_transaction AND NOT last.sealed THEN
        IF for_ddl AND last.awaiting_ddl THEN  -- its DDL has come
            UPDATE @extschema@.migrations m SET awaiting_ddl = false WHERE m.id = last.id;
        END IF;
        IF meta IS NOT NULL THEN
            IF jsonb_typeof(meta) <> 'object' THEN
                RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'capture meta must be a JSON object';
            END IF;
            UPDATE @extschema@.migrations m  -- a row created by a note has no details from the proxy
               SET application_name = COALESCE(meta ->> 'application_name', m.application_name),
                   client_addr = COALESCE(meta ->> 'client_addr', m.client_addr),
                   proxy_instance = COALESCE(meta ->> 'proxy_instance', m.proxy_instance)
             WHERE m.id = last.id
               AND (m.application_name, m.client_addr, m.proxy_instance) IS DISTINCT FROM (
                    COALESCE(meta ->> 'application_name', m.application_name),
                    COALESCE(meta ->> 'client_addr', m.client_addr),
                    COALESCE(meta ->> 'proxy_instance', m.proxy_instance));
        END IF;
        RETURN last.id;
    END IF;
    new_id := @extschema@._new_migration(meta, session_start);
    IF first_of_transaction AND for_ddl AND session_start IS NOT NULL THEN
        SELECT m.id, m.framework, m.version, m.awaiting_ddl, m.db_user INTO pending
          FROM @extschema@.migrations m
         WHERE m.backend_pid = pg_backend_pid() AND m.session_start = _migration.session_start
           AND m.id < new_id
         ORDER BY m.id DESC LIMIT 1;
        IF FOUND AND pending.awaiting_ddl AND pending.db_user = session_user THEN
            PERFORM @extschema@._label(new_id, pending.framework, pending.version, 'session before');
            DELETE FROM @extschema@.migrations m WHERE m.id = pending.id;
        END IF;
    END IF;
    RETURN new_id;
END
$$;

-- A version written in a transaction without a migration of its own: tie it to the DDL-only
-- migration it belongs to (see VERSION TIES). True when tied, or when that migration already
-- carries this very version (golang-migrate's clean mark after its dirty one).
CREATE OR REPLACE FUNCTION @extschema@._tie_late(
    framework text, version text, meta jsonb, session_start timestamptz
)
    RETURNS boolean
    LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    client text := @extschema@._client_host(meta);
    -- As text of the default collation, as the column is: session_user is a name ("C").
    me text := session_user;
    candidate record;
    own record;
    tie text;
BEGIN
    -- This client's last committed migration: "nothing else in between from that client".
    SELECT m.* INTO candidate FROM @extschema@.migrations m
     WHERE m.db_user = me AND m.client_host = client AND m.committed_at IS NOT NULL
     ORDER BY m.committed_at DESC LIMIT 1;
    -- This session's, when it is as recent (the client's host may be unknown here).
    SELECT m.* INTO own FROM @extschema@.migrations m
     WHERE m.backend_pid = pg_backend_pid() AND m.session_start = _tie_late.session_start
       AND m.committed_at IS NOT NULL
     ORDER BY m.id DESC LIMIT 1;
    IF FOUND AND (candidate.id IS NULL OR own.committed_at >= candidate.committed_at) THEN
        candidate := own;
    END IF;
    IF candidate.id IS NULL THEN
        RETURN false;
    END IF;
    IF candidate.framework IS NOT DISTINCT FROM _tie_late.framework AND candidate.version = _tie_late.version THEN
        RETURN true;
    END IF;
    IF candidate.version_source <> 'generated'
       OR NOT EXISTS (SELECT FROM @extschema@.migration_statements s WHERE s.migration_id = candidate.id) THEN
        RETURN false;
    END IF;
    IF candidate.backend_pid = pg_backend_pid() AND candidate.session_start = _tie_late.session_start THEN
        tie := 'session after';
    ELSIF candidate.committed_at >= now() - interval '5 minutes' THEN
        tie := 'other connection';
    ELSE
        RETURN false;
    END IF;
    PERFORM @extschema@._label(candidate.id, _tie_late.framework, _tie_late.version, tie);
    RETURN true;
END
$$;

-- The work of capture(), as the definer. caller_path: the caller's current_schemas(false).
-- Statements only: their definitions are read when the migration ends (see CAPTURE COST).
CREATE OR REPLACE PROCEDURE @extschema@._capture(
    statements jsonb, meta jsonb, caller_path name[], session_start timestamptz, proxy_tag text DEFAULT NULL
)
    LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mid bigint;
    item jsonb;
    texts text[] := '{}';
    tags text[] := '{}';
    touched jsonb[] := '{}';
BEGIN
    IF statements IS NOT NULL AND jsonb_typeof(statements) <> 'array' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'capture statements must be a JSON array';
    END IF;
    FOR i IN 0 .. COALESCE(jsonb_array_length(statements), 0) - 1 LOOP
        item := statements -> i;
        IF jsonb_typeof(item) IS DISTINCT FROM 'object'
           OR jsonb_typeof(item -> 'sql') IS DISTINCT FROM 'string'
           OR COALESCE(jsonb_typeof(item -> 'tag'), 'null') NOT IN ('string', 'null') THEN
            RAISE EXCEPTION USING
                ERRCODE = '22023',
                MESSAGE = 'a captured statement must be {"sql": text, "tag": text, "objects": [...]}';
        END IF;
        texts := texts || (item ->> 'sql');
        tags := tags || (item ->> 'tag');
        touched := touched || @extschema@._statement_objects(item -> 'objects', caller_path);
    END LOOP;
    mid := @extschema@._migration(meta, session_start, true);
    -- Every statement of the call in one INSERT, numbered after the migration's last.
    INSERT INTO @extschema@.migration_statements (migration_id, seq, sql, tag, objects)
    SELECT mid, last.seq + x.n, x.sql, x.tag, x.objects
      FROM unnest(texts, tags, touched) WITH ORDINALITY AS x(sql, tag, objects, n)
     CROSS JOIN (SELECT COALESCE(max(s.seq), 0) AS seq
                   FROM @extschema@.migration_statements s WHERE s.migration_id = mid) last;
    IF proxy_tag IS NOT NULL THEN
        PERFORM @extschema@._proxy_tag(proxy_tag);
    END IF;
END
$$;

-- The work of note_version() and note_version_late(), as the definer (see ONE ENTRY PER VERSION
-- and VERSION TIES). placement: 'before' (written before its DDL) or 'after' (after it; 'late',
-- from note_version_late, is the same); NULL from a caller that does not say, for whom the
-- frameworks known to write first (Prisma, golang-migrate) are 'before'. In a transaction without
-- a migration, a version written after its DDL belongs to one that committed already.
CREATE OR REPLACE PROCEDURE @extschema@._note(
    framework text, version text, placement text, meta jsonb, session_start timestamptz,
    proxy_tag text DEFAULT NULL
)
    LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current_txid xid8 := pg_current_xact_id();
    last record;
    has_statements boolean;
    mid bigint;
    legacy_held boolean;
BEGIN
    IF _note.framework IS NULL OR _note.version IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'a version note needs a framework and a version';
    END IF;
    IF _note.framework = '' OR _note.version = '' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'a version note needs a non-empty framework and version';
    END IF;
    -- A caller that does not say is a proxy that holds a version written before its DDL and
    -- notes it once the DDL ran: the write was on this session, before this migration.
    legacy_held := placement IS NULL AND _note.framework IN ('prisma', 'golang-migrate');
    placement := COALESCE(NULLIF(placement, 'late'), CASE WHEN legacy_held THEN 'before' ELSE 'after' END);
    SELECT m.id, m.sealed, m.version_source INTO last
      FROM @extschema@.migrations m WHERE m.txid = current_txid ORDER BY m.id DESC LIMIT 1;
    IF FOUND THEN
        has_statements := EXISTS (SELECT FROM @extschema@.migration_statements s WHERE s.migration_id = last.id);
        IF placement = 'before' THEN
            IF NOT last.sealed AND (last.version_source = 'generated' OR NOT has_statements) THEN
                mid := last.id;  -- a migration still without a version, or without DDL: this version's
            ELSE
                IF NOT last.sealed THEN
                    PERFORM @extschema@._seal(last.id);
                END IF;
                mid := @extschema@._new_migration(meta, session_start);
                has_statements := false;
            END IF;
            PERFORM @extschema@._label(mid, _note.framework, _note.version,
                                       CASE WHEN legacy_held AND has_statements THEN 'session before' ELSE 'transaction' END);
            UPDATE @extschema@.migrations m SET awaiting_ddl = NOT has_statements WHERE m.id = mid;
        ELSIF NOT last.sealed AND (has_statements OR last.version_source <> 'framework') THEN
            -- Written after its DDL: the version ends its migration.
            PERFORM @extschema@._label(last.id, _note.framework, _note.version, 'transaction');
            PERFORM @extschema@._seal(last.id);
        ELSE
            -- No DDL since the last version: this one had none of its own (an Alembic revision
            -- that only moves data). Its own entry, after the one before it.
            IF NOT last.sealed THEN
                PERFORM @extschema@._seal(last.id);
            END IF;
            mid := @extschema@._new_migration(meta, session_start);
            PERFORM @extschema@._label(mid, _note.framework, _note.version, 'transaction');
            PERFORM @extschema@._seal(mid);
        END IF;
    ELSIF placement = 'before' THEN  -- in a transaction of its own: awaits the session's DDL
        mid := @extschema@._new_migration(meta, session_start);
        PERFORM @extschema@._label(mid, _note.framework, _note.version, 'transaction');
        UPDATE @extschema@.migrations m SET awaiting_ddl = true WHERE m.id = mid;
    ELSIF NOT @extschema@._tie_late(_note.framework, _note.version, meta, session_start) THEN
        -- Written after its migration committed, and nothing to tie it to: recorded on its own
        -- rather than lost.
        mid := @extschema@._new_migration(meta, session_start);
        PERFORM @extschema@._label(mid, _note.framework, _note.version, NULL);
        PERFORM @extschema@._seal(mid);
    END IF;
    PERFORM @extschema@._proxy_tag(proxy_tag);
END
$$;

-- ---------------------------------------------------------------------------------------------
-- The public procedures (see THE MIGRATION HISTORY). capture, note_version and
-- note_version_late are SECURITY INVOKER without SET, like electric.sql's wrappers:
-- current_schemas(false) must be the caller's path, and _session_start() must read the caller's
-- own session. They name every function with their schema and use no operator.

CREATE OR REPLACE PROCEDURE @extschema@.capture(statements jsonb, meta jsonb DEFAULT NULL, proxy_tag text DEFAULT NULL)
    LANGUAGE sql
AS $$
    CALL @extschema@._capture(
        statements, meta, pg_catalog.current_schemas(false), @extschema@._session_start(), proxy_tag)
$$;

CREATE OR REPLACE PROCEDURE @extschema@.note_version(
    framework text, version text, proxy_tag text DEFAULT NULL, before_ddl boolean DEFAULT NULL,
    meta jsonb DEFAULT NULL
)
    LANGUAGE sql
AS $$
    CALL @extschema@._note(
        framework, version,
        CASE before_ddl WHEN true THEN 'before' WHEN false THEN 'after' END,
        meta, @extschema@._session_start(), proxy_tag)
$$;

CREATE OR REPLACE PROCEDURE @extschema@.note_version_late(
    framework text, version text, proxy_tag text DEFAULT NULL, meta jsonb DEFAULT NULL
)
    LANGUAGE sql
AS $$
    CALL @extschema@._note(framework, version, 'after', meta, @extschema@._session_start(), proxy_tag)
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
    mid := @extschema@._migration(NULL, NULL, false);
    UPDATE @extschema@.migrations m
       SET version = migration_version.version, version_source = 'explicit', awaiting_ddl = false
     WHERE m.id = mid;
    PERFORM @extschema@._proxy_tag(proxy_tag);
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Privileges: every routine of this file closed, then the public ones opened (see WHO MAY CALL),
-- with what they run as the caller: _capture and _note (they write only the caller's own
-- transaction's history, and tie a version only to a migration of the caller's own user), and
-- _session_start.

REVOKE ALL ON FUNCTION
    @extschema@._statement_objects(jsonb, name[]),
    @extschema@._refresh_objects(bigint),
    @extschema@._link_catalog_rows(bigint),
    @extschema@._finish(bigint),
    @extschema@._seal(bigint),
    @extschema@._migration_committed(),
    @extschema@._new_migration(jsonb, timestamptz),
    @extschema@._label(bigint, text, text, text),
    @extschema@._migration(jsonb, timestamptz, boolean),
    @extschema@._tie_late(text, text, jsonb, timestamptz),
    @extschema@._client_host(jsonb),
    @extschema@._session_start()
FROM PUBLIC;
REVOKE ALL ON PROCEDURE
    @extschema@._capture(jsonb, jsonb, name[], timestamptz, text),
    @extschema@._note(text, text, text, jsonb, timestamptz, text),
    @extschema@.capture(jsonb, jsonb, text),
    @extschema@.note_version(text, text, text, boolean, jsonb),
    @extschema@.note_version_late(text, text, text, jsonb),
    @extschema@.migration_version(text, text)
FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE
    @extschema@.capture(jsonb, jsonb, text),
    @extschema@._capture(jsonb, jsonb, name[], timestamptz, text),
    @extschema@.note_version(text, text, text, boolean, jsonb),
    @extschema@.note_version_late(text, text, text, jsonb),
    @extschema@._note(text, text, text, jsonb, timestamptz, text),
    @extschema@.migration_version(text, text)
TO PUBLIC;
GRANT EXECUTE ON FUNCTION
    @extschema@._session_start()
TO PUBLIC;
