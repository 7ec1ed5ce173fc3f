-- Drift detection's reads of the history and of the database's DDL log (README.md, DRIFT).
-- Called by the proxy's drift watcher and `electric-proxy drift`, as the catalog's owner; not
-- executable by PUBLIC.

-- What the migrations committed since `since` touched: the objects their statements named, as
-- the proxy resolved them, and the text of every statement (objects the proxy could not name,
-- a policy's table, a comment's column, are found in the text by drift.statement_names).
CREATE OR REPLACE FUNCTION @extschema@._drift_touched(since timestamptz)
    RETURNS TABLE (migration_id bigint, schema_name text, object_name text, statement text)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m.id, o.value ->> 'schema', o.value ->> 'name', NULL
      FROM @extschema@.migrations m
      JOIN @extschema@.migration_statements s ON s.migration_id = m.id
      CROSS JOIN LATERAL jsonb_array_elements(s.objects) o
     WHERE m.committed_at >= since AND o.value ->> 'name' IS NOT NULL
    UNION ALL
    SELECT m.id, o.schema_name, o.object_name, NULL
      FROM @extschema@.migrations m
      JOIN @extschema@.migration_objects o ON o.migration_id = m.id
     WHERE m.committed_at >= since
    UNION ALL
    SELECT m.id, NULL, NULL, s.sql
      FROM @extschema@.migrations m
      JOIN @extschema@.migration_statements s ON s.migration_id = m.id
     WHERE m.committed_at >= since
$$;

-- The database-side guard's DDL log: the commands logged since `since` on any of `keys` (drift
-- snapshot keys, snapshot.py), newest first, each with the recorded migration of its
-- transaction, if any.
-- The log's tables come with the database guard's step; until they exist this returns nothing,
-- so the proxy needs no other way to know whether the log is there.
CREATE OR REPLACE FUNCTION @extschema@._drift_ddl_log(keys text[], since timestamptz)
    RETURNS TABLE (
        object_key text, id bigint, txid text, migration_id bigint, pid integer, role_name text,
        application_name text, client_addr text, command_tag text, object_identity text,
        statement text, logged_at timestamptz)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF to_regclass('@extschema@.ddl_log') IS NULL OR to_regclass('@extschema@.ddl_statements') IS NULL THEN
        RETURN;
    END IF;
    -- Dynamic: the log's tables may not exist when this file is applied.
    RETURN QUERY EXECUTE $q$
        SELECT k.key, l.id, l.txid::text,
               (SELECT m.id FROM @extschema@.migrations m WHERE m.txid = l.txid),
               l.pid, l.session_role, l.application_name, host(l.client_addr), l.command_tag,
               l.object_identity, s.statement, l.logged_at
          FROM @extschema@.ddl_log l
          CROSS JOIN LATERAL (SELECT CASE l.classid
                   WHEN 'pg_class'::regclass THEN
                       CASE WHEN l.objsubid > 0 THEN 'col:' || l.objid || ':' || l.objsubid
                            ELSE 'rel:' || l.objid END
                   WHEN 'pg_type'::regclass THEN 'type:' || l.objid
                   WHEN 'pg_proc'::regclass THEN 'proc:' || l.objid
                   WHEN 'pg_namespace'::regclass THEN 'schema:' || l.objid
                   WHEN 'pg_constraint'::regclass THEN 'con:' || l.objid
                   WHEN 'pg_trigger'::regclass THEN 'trg:' || l.objid
                   WHEN 'pg_policy'::regclass THEN 'pol:' || l.objid
                   WHEN 'pg_rewrite'::regclass THEN 'rule:' || l.objid
                   WHEN 'pg_publication'::regclass THEN 'pub:' || l.objid
                   WHEN 'pg_extension'::regclass THEN 'ext:' || l.objid
               END AS key) k
          LEFT JOIN @extschema@.ddl_statements s ON s.txid = l.txid AND s.hash = l.statement_hash
         WHERE k.key = ANY ($1) AND l.logged_at >= $2
         ORDER BY l.id DESC
    $q$ USING keys, since;
END
$$;

-- BLOCK MODE (drift.mode = "block"). Where the database-side guard logs every DDL in ddl_log,
-- a deferred constraint trigger on the log checks each logged command at COMMIT: a transaction
-- that changed the schema and holds no migration recorded by a proxy (electric.migrations, row
-- of this very transaction, written by the capture call the proxy injects before COMMIT) is
-- refused, with EX020, and rolls back whole. Scope "electrified" refuses only commands on an
-- electrified table or on what belongs to it (index, constraint, trigger, policy); "all", any.
-- Checked at COMMIT, not in the event trigger: the proxy's capture call comes after the
-- statement it records.
--
-- LIMIT: the capture procedures are executable by PUBLIC (every role's DDL must be recordable),
-- so a client that calls `electric.capture(...)` itself, on a direct connection, passes. That
-- is a deliberate forgery, not a mistake, and it stays visible: the migration it records and the
-- DDL log row carry its session, pid and statement. A dropped index of an electrified table is
-- gone at COMMIT and can no longer be traced to its table: scope "electrified" lets it through.
CREATE OR REPLACE FUNCTION @extschema@._drift_block_table(classid oid, objid oid)
    RETURNS oid
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE classid
        WHEN 'pg_class'::regclass THEN
            COALESCE((SELECT x.indrelid FROM pg_index x WHERE x.indexrelid = objid), objid)
        WHEN 'pg_constraint'::regclass THEN (SELECT c.conrelid FROM pg_constraint c WHERE c.oid = objid)
        WHEN 'pg_trigger'::regclass THEN (SELECT t.tgrelid FROM pg_trigger t WHERE t.oid = objid)
        WHEN 'pg_policy'::regclass THEN (SELECT p.polrelid FROM pg_policy p WHERE p.oid = objid)
        WHEN 'pg_rewrite'::regclass THEN (SELECT r.ev_class FROM pg_rewrite r WHERE r.oid = objid)
    END
$$;

CREATE OR REPLACE FUNCTION @extschema@._drift_block()
    RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    settings record;
    target oid;
BEGIN
    SELECT s.mode, s.block_scope INTO settings FROM @extschema@.drift_settings s;
    -- A 'direct' migration is the history's record of an ELECTRIC call made on the database
    -- (routines/audit.sql): recorded, but not through a proxy.
    IF settings.mode IS DISTINCT FROM 'block'
       OR EXISTS (SELECT FROM @extschema@.migrations m
                   WHERE m.txid = NEW.txid AND m.version_source <> 'direct') THEN
        RETURN NULL;
    END IF;
    target := @extschema@._drift_block_table(NEW.classid, NEW.objid);
    -- The catalog's own objects change as the proxy installs or configures it, never by a
    -- migration: not the user's schema.
    IF NEW.object_identity LIKE '@extschema@.%'
       OR EXISTS (SELECT FROM pg_class c WHERE c.oid = target
                     AND c.relnamespace = '@extschema@'::regnamespace) THEN
        RETURN NULL;
    END IF;
    IF settings.block_scope = 'electrified'
       AND (target IS NULL OR NOT EXISTS (SELECT FROM @extschema@.electrified e WHERE e.relid = target)) THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION USING
        ERRCODE = 'EX020',
        MESSAGE = format('schema change refused: %s%s was not made through electric-proxy',
                         NEW.command_tag, COALESCE(' ' || NEW.object_identity, '')),
        DETAIL = CASE settings.block_scope
            WHEN 'all' THEN 'drift.mode is "block": every schema change must go through the proxy.'
            ELSE 'drift.mode is "block": electrified tables change only through the proxy.' END,
        HINT = 'Connect through electric-proxy, which records the change as a migration, and run it again.';
END
$$;

-- Records the proxies' mode, and creates or drops the block trigger on the DDL log; returns
-- whether block mode can be enforced (false without the database-side guard's log).
CREATE OR REPLACE FUNCTION @extschema@._drift_configure(new_mode text, new_scope text)
    RETURNS boolean
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    present boolean;
BEGIN
    UPDATE @extschema@.drift_settings
       SET mode = new_mode, block_scope = new_scope, updated_at = now()
     WHERE (mode, block_scope) IS DISTINCT FROM (new_mode, new_scope);
    IF to_regclass('@extschema@.ddl_log') IS NULL THEN
        RETURN false;
    END IF;
    present := EXISTS (SELECT FROM pg_trigger
                        WHERE tgrelid = '@extschema@.ddl_log'::regclass AND tgname = 'drift_block');
    IF new_mode = 'block' AND NOT present THEN
        CREATE CONSTRAINT TRIGGER drift_block AFTER INSERT ON @extschema@.ddl_log
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION @extschema@._drift_block();
    ELSIF new_mode <> 'block' AND present THEN
        DROP TRIGGER drift_block ON @extschema@.ddl_log;
    END IF;
    RETURN true;
END
$$;

REVOKE ALL ON FUNCTION @extschema@._drift_block_table(oid, oid) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._drift_block() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._drift_configure(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._drift_touched(timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._drift_ddl_log(text[], timestamptz) FROM PUBLIC;
