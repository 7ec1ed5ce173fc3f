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
-- snapshot keys, snapshot.py), newest first, each with whether its transaction is a recorded
-- migration.
-- The log's tables come with the database guard's step; until they exist this returns nothing,
-- so the proxy needs no other way to know whether the log is there.
CREATE OR REPLACE FUNCTION @extschema@._drift_ddl_log(keys text[], since timestamptz)
    RETURNS TABLE (
        object_key text, id bigint, txid text, migrated boolean, pid integer, role_name text,
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
               EXISTS (SELECT FROM @extschema@.migrations m WHERE m.txid = l.txid),
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

REVOKE ALL ON FUNCTION @extschema@._drift_touched(timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._drift_ddl_log(text[], timestamptz) FROM PUBLIC;
