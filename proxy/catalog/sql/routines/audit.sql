-- Every ELECTRIC change recorded, whichever way it was made (README.md, DIRECT CHANGES).
-- Repeatable (see README.md). Uses the tables of step 6 and capture.sql's _link_catalog_rows.
--
-- The ELECTRIC procedures (electric.sql) call _audit at each change they make, next to _notify.
-- A row of catalog_changes is written at once, in the caller's transaction; at commit a deferred
-- trigger decides how the change entered the history:
--   * captured: a history statement of the same transaction was recorded after the change. The
--     proxy rewrites an ELECTRIC statement into its CALL and puts a capture call right after it,
--     so a proxied change is recorded once, by the capture, with the client's own text;
--   * direct: nothing was captured after it (`CALL electric.disable('t')` on the database itself,
--     or from a function or DO block). The transaction's latest migration gets one statement per
--     query string that made changes (current_query(), tag NULL); when the transaction has no
--     migration, one is created with version_source 'direct'.
-- The proxy_tag argument plays no part: a caller may pass any tag, so it cannot tell a proxied
-- call from a direct one. `SET CONSTRAINTS ALL IMMEDIATE` before the capture makes a proxied
-- change look direct (recorded twice, never lost).

-- ---------------------------------------------------------------------------------------------
-- Internal, closed to PUBLIC: only the SECURITY DEFINER procedures of electric.sql call it.

CREATE OR REPLACE FUNCTION @extschema@._audit(
    change_op text, change_relid oid, change_schema text, change_table text
)
    RETURNS void
    LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    last_migration bigint;
    last_seq integer;
BEGIN
    SELECT s.migration_id, s.seq INTO last_migration, last_seq
      FROM @extschema@.migrations m
      JOIN @extschema@.migration_statements s ON s.migration_id = m.id
     WHERE m.txid = pg_current_xact_id()
     ORDER BY s.migration_id DESC, s.seq DESC
     LIMIT 1;
    INSERT INTO @extschema@.catalog_changes (
        op, relid, schema_name, table_name, query, after_migration, after_seq
    )
    VALUES (
        change_op, change_relid, change_schema, change_table, current_query(),
        COALESCE(last_migration, 0), COALESCE(last_seq, 0)
    );
END
$$;

-- At commit: every unrecorded change of the transaction, linked to the capture that followed
-- it or recorded as direct. The first trigger of a transaction does them all; the others find
-- nothing left. SECURITY DEFINER: a deferred trigger runs as whoever commits.
CREATE OR REPLACE FUNCTION @extschema@._changes_committed()
    RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mid bigint;
    next_seq integer;
    grp record;
BEGIN
    UPDATE @extschema@.catalog_changes c
       SET migration_id = (
               SELECT s.migration_id
                 FROM @extschema@.migrations m
                 JOIN @extschema@.migration_statements s ON s.migration_id = m.id
                WHERE m.txid = c.txid AND (s.migration_id, s.seq) > (c.after_migration, c.after_seq)
                ORDER BY s.migration_id, s.seq
                LIMIT 1),
           recorded_by = 'capture'
     WHERE c.txid = NEW.txid AND c.migration_id IS NULL
       AND EXISTS (
               SELECT FROM @extschema@.migrations m
                 JOIN @extschema@.migration_statements s ON s.migration_id = m.id
                WHERE m.txid = c.txid AND (s.migration_id, s.seq) > (c.after_migration, c.after_seq));
    IF NOT EXISTS (
        SELECT FROM @extschema@.catalog_changes c WHERE c.txid = NEW.txid AND c.migration_id IS NULL
    ) THEN
        RETURN NULL;
    END IF;

    SELECT m.id INTO mid FROM @extschema@.migrations m WHERE m.txid = NEW.txid ORDER BY m.id DESC LIMIT 1;
    IF NOT FOUND THEN
        -- The generated version of capture.sql's _migration, and the session's details.
        INSERT INTO @extschema@.migrations (
            txid, version, version_source, started_at, db_user, application_name, client_addr, backend_pid
        )
        VALUES (
            NEW.txid,
            to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISSUS') || '_' || NEW.txid::text,
            'direct',
            now(),
            session_user,
            NULLIF(current_setting('application_name'), ''),
            host(inet_client_addr()),
            pg_backend_pid()
        )
        RETURNING id INTO mid;
    END IF;
    SELECT COALESCE(max(s.seq), 0) INTO next_seq FROM @extschema@.migration_statements s WHERE s.migration_id = mid;
    FOR grp IN
        SELECT c.query, min(c.id) AS first_id,
               COALESCE(jsonb_agg(DISTINCT jsonb_build_object(
                            'schema', c.schema_name, 'name', c.table_name, 'type', 'table'))
                        FILTER (WHERE c.relid IS NOT NULL), '[]') AS objects
          FROM @extschema@.catalog_changes c
         WHERE c.txid = NEW.txid AND c.migration_id IS NULL
         GROUP BY c.query, c.statement_at
         ORDER BY first_id
    LOOP
        next_seq := next_seq + 1;
        INSERT INTO @extschema@.migration_statements (migration_id, seq, sql, tag, objects)
        VALUES (mid, next_seq, COALESCE(grp.query, ''), NULL, grp.objects);
    END LOOP;
    UPDATE @extschema@.catalog_changes c SET migration_id = mid, recorded_by = 'direct'
     WHERE c.txid = NEW.txid AND c.migration_id IS NULL;
    PERFORM @extschema@._link_catalog_rows(mid);
    RETURN NULL;
END
$$;

-- Constraint triggers have no OR REPLACE (and plain triggers only from Postgres 14).
DROP TRIGGER IF EXISTS catalog_changes_committed ON @extschema@.catalog_changes;
CREATE CONSTRAINT TRIGGER catalog_changes_committed
    AFTER INSERT ON @extschema@.catalog_changes
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION @extschema@._changes_committed();

-- ---------------------------------------------------------------------------------------------
-- Privileges: both closed.

REVOKE ALL ON FUNCTION
    @extschema@._audit(text, oid, text, text),
    @extschema@._changes_committed()
FROM PUBLIC;
