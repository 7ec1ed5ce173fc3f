-- THE DATABASE-SIDE GUARD (DESIGN.md, "The database is the guard's ground truth")
--
-- Two event triggers (event_triggers.sql, created only where the installing role may) run the
-- functions below after every DDL command, whatever sent it: a plain statement, a function, a
-- procedure, a DO block, an extension script, a cascade.
--
--   ddl_command_end  logs each collected command and compares the electrified tables the
--                    command may have touched with their stored shapes;
--   sql_drop         logs each object dropped by name or by CASCADE and does the same
--                    comparison (it fires after the drop, before ddl_command_end).
--
-- SHAPES
--   guard_shapes keeps, per electrified table, what the electrified-table rules protect: schema
--   and name, kind, persistence, replica identity, partition and inheritance parents, typed-table
--   type, every column (number, name, type, typmod, collation, the type's qualified name, enum
--   labels, NOT NULL, default / identity / generated) and every constraint but NOT NULL and
--   constraint triggers (name, type, columns, referenced table and columns, actions,
--   deferrability, and the definition of CHECK / UNIQUE / EXCLUDE). _electrify stores it;
--   _disable's DELETE cascades to it, so a table un-electrified earlier in the transaction is
--   free. After a DDL, a live shape equal to the stored one costs nothing more; a different
--   one is judged by _ddlguard_judge: what proxy/ddl/rules.py allows (a new column of a supported
--   built-in type without DEFAULT, identity or generated value and without constraints other
--   than NOT NULL; indexes; owner, triggers, storage and statistics, which are not in the
--   shape; an enum gaining a plain-word label) is stored as the new shape, in the same
--   transaction; anything else raises the text guard's error for it, with the same SQLSTATE,
--   message, DETAIL, HINT and SCHEMA / TABLE / COLUMN fields. Raising inside the event trigger
--   fails the statement, as any failing statement does (the transaction, or the savepoint).
--
-- COST
--   Only tables whose stored `deps` meet the OIDs of the command's objects (or whose live parent
--   is one of them: ATTACH PARTITION) are compared. Objects of catalogs that cannot change a
--   table's shape (functions, triggers, policies, publications, ...) and GRANT touch none;
--   objects of catalogs not listed (rules, extensions, ...), and a command that collected no
--   object, compare every electrified table. The log costs one INSERT per command (the
--   statement text once per transaction and query string).
--
-- THE LOG
--   ddl_log / ddl_statements (step 0004). The first logged command of each query string also
--   sends pg_notify('electric_ddl', <txid>): delivered at commit, never after a rollback, and
--   once per transaction (Postgres folds identical payloads of one transaction).
--
-- SECURITY
--   The trigger functions themselves run as the role that ran the DDL (so current_user is that
--   role, for the log) and only call the two SECURITY DEFINER entry points, which alone write
--   the log and the shapes. Those two are executable by PUBLIC, as the trigger functions call
--   them as the DDL's role; called anywhere but inside an event trigger they fail at once
--   (pg_event_trigger_ddl_commands() and pg_event_trigger_dropped_objects() refuse to run
--   elsewhere), so nobody can write log rows or shapes by calling them. Every role that runs
--   DDL therefore needs USAGE on the catalog schema (granted to PUBLIC by step 1).
--
-- WHAT THE TRIGGERS DO NOT SEE
--   Commands that fire no event trigger (DROP DATABASE, roles, tablespaces, ALTER EVENT TRIGGER
--   itself), a superuser who disables or drops the triggers, sets event_triggers = off
--   (Postgres 17) or writes pg_catalog directly, single-user mode; and what the shape leaves out
--   (row security, policies, grants, publications, data). Shapes are taken again from the live
--   tables only when the triggers are created: after re-enabling disabled triggers, run
--   SELECT @extschema@._ddlguard_rebaseline() as a superuser, or tables changed meanwhile are
--   refused at their next DDL.

-- ---------------------------------------------------------------------------------------------
-- Shapes. Stored shapes are compared as whole jsonb values, so whenever this file changes,
-- install.py takes them again from the live tables (_ddlguard_rebaseline).

CREATE OR REPLACE FUNCTION @extschema@._ddlguard_shape(table_oid oid)
    RETURNS jsonb
    LANGUAGE sql STABLE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
        'nsp', c.relnamespace,
        'schema', n.nspname,
        'name', c.relname,
        'kind', c.relkind,
        'persistence', c.relpersistence,
        'replident', c.relreplident,
        'partition', c.relispartition,
        'oftype', c.reloftype,
        'parents', ARRAY(SELECT i.inhparent FROM pg_inherits i WHERE i.inhrelid = c.oid ORDER BY i.inhseqno),
        'columns', ARRAY(
            SELECT jsonb_build_object(
                'num', a.attnum,
                'name', a.attname,
                'type', a.atttypid,
                'typmod', a.atttypmod,
                'typename', format('%I.%I', tn.nspname, t.typname),
                'coll', a.attcollation,
                'nonnull', a.attnotnull,
                'hasdef', a.atthasdef,
                'identity', a.attidentity,
                'generated', a.attgenerated,
                'labels', CASE WHEN t.typtype = 'e' THEN ARRAY(
                    SELECT e.enumlabel FROM pg_enum e WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder
                ) END
            )
              FROM pg_attribute a
              JOIN pg_type t ON t.oid = a.atttypid
              JOIN pg_namespace tn ON tn.oid = t.typnamespace
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum
        ),
        -- NOT NULL is attnotnull above ('n' rows exist from Postgres 18); constraint triggers
        -- ('t') are triggers, which the rules allow.
        'constraints', ARRAY(
            SELECT jsonb_build_object(
                'name', k.conname,
                'type', k.contype,
                'key', k.conkey,
                'ref', k.confrelid,
                'refkey', k.confkey,
                'actions', k.confupdtype::text || k.confdeltype::text || k.confmatchtype::text,
                'deferrable', k.condeferrable,
                'deferred', k.condeferred,
                -- Not for keys: a FOREIGN KEY's text names the referenced table, which may be
                -- renamed freely.
                'def', CASE WHEN k.contype NOT IN ('p', 'f') THEN pg_get_constraintdef(k.oid) END
            )
              FROM pg_constraint k
             WHERE k.conrelid = c.oid AND k.contype NOT IN ('n', 't')
             ORDER BY k.conname
        )
    )
      FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = table_oid
$$;

-- The OIDs whose change may change the table's shape.
CREATE OR REPLACE FUNCTION @extschema@._ddlguard_deps(table_oid oid)
    RETURNS oid[]
    LANGUAGE sql STABLE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE ancestors (relid) AS (
        SELECT i.inhparent FROM pg_inherits i WHERE i.inhrelid = table_oid
        UNION
        SELECT i.inhparent FROM pg_inherits i JOIN ancestors a ON i.inhrelid = a.relid
    )
    SELECT ARRAY(
        SELECT DISTINCT dep FROM (
            SELECT c.oid AS dep FROM pg_class c WHERE c.oid = table_oid
            UNION ALL SELECT c.relnamespace FROM pg_class c WHERE c.oid = table_oid
            UNION ALL SELECT c.reloftype FROM pg_class c WHERE c.oid = table_oid
            -- ALTER TYPE ... ATTRIBUTE reports the composite type's pg_class row.
            UNION ALL
            SELECT t.typrelid FROM pg_class c JOIN pg_type t ON t.oid = c.reloftype WHERE c.oid = table_oid
            UNION ALL SELECT a.relid FROM ancestors a
            UNION ALL
            SELECT unnest(ARRAY[a.atttypid, t.typnamespace, a.attcollation])
              FROM pg_attribute a
              JOIN pg_type t ON t.oid = a.atttypid
             WHERE a.attrelid = table_oid AND a.attnum > 0 AND NOT a.attisdropped
            UNION ALL
            SELECT unnest(ARRAY[k.oid, k.conindid, k.confrelid])
              FROM pg_constraint k
             WHERE k.conrelid = table_oid
        ) deps
         WHERE dep <> 0
         ORDER BY dep
    )
$$;

CREATE OR REPLACE FUNCTION @extschema@._ddlguard_remember(table_oid oid)
    RETURNS void
    LANGUAGE sql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO @extschema@.guard_shapes (relid, shape, deps)
    VALUES (table_oid, @extschema@._ddlguard_shape(table_oid), @extschema@._ddlguard_deps(table_oid))
    ON CONFLICT (relid) DO UPDATE SET shape = EXCLUDED.shape, deps = EXCLUDED.deps
$$;

-- Every electrified table from its live definition: what the guard starts from when its
-- triggers are created (shapes kept while they were absent or disabled may be stale).
CREATE OR REPLACE FUNCTION @extschema@._ddlguard_rebaseline()
    RETURNS void
    LANGUAGE sql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT @extschema@._ddlguard_remember(e.relid)
      FROM @extschema@.electrified e
      JOIN pg_class c ON c.oid = e.relid;
    DELETE FROM @extschema@.guard_shapes s
     WHERE NOT EXISTS (SELECT FROM pg_class c WHERE c.oid = s.relid);
$$;

-- ---------------------------------------------------------------------------------------------
-- Judging a changed shape: the codes and texts of proxy/ddl/rules.py.

CREATE OR REPLACE FUNCTION @extschema@._ddlguard_refuse(
    code text, message text, schema_name text, table_name text, hint text, column_name text DEFAULT NULL
)
    RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    detail text := format(
        'Table %s is electrified. Electric currently only supports additive migrations '
        '(ADD COLUMN, ADD INDEX) on electrified tables.',
        @extschema@._qualified(schema_name, table_name));
BEGIN
    -- Two RAISEs because a RAISE option cannot be NULL, and the text guard sends no COLUMN
    -- field for table-level refusals.
    IF column_name IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = code, MESSAGE = message, DETAIL = detail, HINT = hint,
            SCHEMA = schema_name, TABLE = table_name;
    END IF;
    RAISE EXCEPTION USING ERRCODE = code, MESSAGE = message, DETAIL = detail, HINT = hint,
        SCHEMA = schema_name, TABLE = table_name, COLUMN = column_name;
END
$$;

-- Raises unless `old` may become `live` (NULL: the table is gone). `tag` is the command's tag.
CREATE OR REPLACE FUNCTION @extschema@._ddlguard_judge(old jsonb, live jsonb, tag text)
    RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s text := old ->> 'schema';
    t text := old ->> 'name';
    label text := @extschema@._qualified(s, t);
    allowed_hint constant text :=
        'Allowed on electrified tables: ADD COLUMN (supported type, no DEFAULT, only NULL/NOT NULL), '
        'CREATE INDEX, DROP INDEX, and ALTER TABLE subcommands that leave the columns alone '
        '(triggers, OWNER TO, storage and statistics settings).';
    table_level text := format('Cannot alter column "" of electrified table %s', label);
    o record;
    n record;
BEGIN
    IF live IS NULL AND NOT EXISTS (SELECT FROM pg_namespace ns WHERE ns.oid = (old ->> 'nsp')::oid) THEN
        RAISE EXCEPTION USING  -- DROP SCHEMA ... CASCADE (or DROP OWNED of the schema's owner)
            ERRCODE = 'EX004',
            MESSAGE = format('Cannot drop schema %s because it contains electrified tables',
                             @extschema@._quoted(s)),
            DETAIL = 'DROP SCHEMA ... CASCADE would drop its electrified tables. Electric currently only '
                     'supports additive migrations (ADD COLUMN, ADD INDEX) on electrified tables.',
            HINT = 'Electrified tables cannot be dropped.',
            SCHEMA = s;
    END IF;
    IF live IS NULL THEN
        PERFORM @extschema@._ddlguard_refuse('EX004', format('Cannot drop electrified table %s', label), s, t,
            'Electrified tables cannot be dropped; stop using the table instead.');
    END IF;
    IF live -> 'nsp' <> old -> 'nsp' THEN
        PERFORM @extschema@._ddlguard_refuse('EX002',
            format('Cannot move electrified table %s to another schema', label), s, t,
            'Create a new table in the other schema instead.');
    END IF;
    IF live ->> 'schema' <> s THEN  -- the same schema under a new name
        RAISE EXCEPTION USING
            ERRCODE = 'EX002',
            MESSAGE = format('Cannot rename schema %s because it contains electrified tables',
                             @extschema@._quoted(s)),
            DETAIL = 'Renaming the schema renames its electrified tables. Electric currently only '
                     'supports additive migrations (ADD COLUMN, ADD INDEX) on electrified tables.',
            HINT = 'Create a new schema instead.',
            SCHEMA = s;
    END IF;
    IF live ->> 'name' <> t THEN
        PERFORM @extschema@._ddlguard_refuse('EX002', format('Cannot rename electrified table %s', label), s, t,
            'Create a new table under the new name instead.');
    END IF;
    IF live -> 'partition' <> old -> 'partition' THEN
        PERFORM @extschema@._ddlguard_refuse('EX007',
            format('Cannot attach or detach electrified table %s as a partition', label), s, t, allowed_hint);
    END IF;
    IF (live -> 'parents', live -> 'kind', live -> 'persistence', live -> 'replident', live -> 'oftype')
       IS DISTINCT FROM (old -> 'parents', old -> 'kind', old -> 'persistence', old -> 'replident', old -> 'oftype')
    THEN
        PERFORM @extschema@._ddlguard_refuse('EX007', table_level, s, t, allowed_hint);
    END IF;

    FOR o IN SELECT * FROM @extschema@._ddlguard_columns(old) LOOP
        SELECT * INTO n FROM @extschema@._ddlguard_columns(live) c WHERE c.num = o.num;
        IF NOT FOUND THEN
            PERFORM @extschema@._ddlguard_refuse('EX010',
                format('Cannot drop column %s of electrified table %s', @extschema@._quoted(o.name), label),
                s, t, 'Stop using the column instead of dropping it.', o.name);
        END IF;
        IF n.name <> o.name THEN
            PERFORM @extschema@._ddlguard_refuse('EX008',
                format('Cannot rename column %s of electrified table %s', @extschema@._quoted(o.name), label),
                s, t, 'Add a new column under the new name instead.', o.name);
        END IF;
        IF (n.type, n.typmod, n.coll) IS DISTINCT FROM (o.type, o.typmod, o.coll) THEN
            PERFORM @extschema@._ddlguard_refuse('EX009',
                format('Cannot change type of column %s of electrified table %s', @extschema@._quoted(o.name), label),
                s, t, 'Add a new column of the new type and copy the data into it instead.', o.name);
        END IF;
        IF n.typename <> o.typename THEN
            PERFORM @extschema@._ddlguard_refuse('EX009',
                format('Cannot change type of column %s of electrified table %s', @extschema@._quoted(o.name), label),
                s, t, format('The column''s type %s was renamed or moved to %s; types of electrified columns '
                             'keep their names.', o.typename, n.typename), o.name);
        END IF;
        IF n.labels IS DISTINCT FROM o.labels THEN
            IF NOT n.labels @> o.labels THEN
                PERFORM @extschema@._ddlguard_refuse('EX009',
                    format('Cannot change type of column %s of electrified table %s', @extschema@._quoted(o.name), label),
                    s, t, format('Enum type %s lost or renamed a label; an electrified column''s enum may only '
                                 'gain labels.', o.typename), o.name);
            END IF;
            IF EXISTS (SELECT FROM jsonb_array_elements_text(n.labels) l WHERE l !~* '^[a-z][a-z_0-9]*$') THEN
                PERFORM @extschema@._ddlguard_refuse('EX005',
                    format('Cannot electrify column of type %s', @extschema@._quoted(o.typename)),
                    s, t, 'Enum labels of electrified columns must be plain words.', o.name);
            END IF;
        END IF;
        IF (n.nonnull, n.hasdef, n.identity, n.generated) IS DISTINCT FROM (o.nonnull, o.hasdef, o.identity, o.generated)
        THEN
            PERFORM @extschema@._ddlguard_refuse('EX007',
                format('Cannot alter column %s of electrified table %s', @extschema@._quoted(o.name), label),
                s, t, allowed_hint, o.name);
        END IF;
    END LOOP;

    PERFORM @extschema@._ddlguard_judge_constraints(old, live, tag, s, t, allowed_hint, table_level);

    FOR n IN
        SELECT * FROM @extschema@._ddlguard_columns(live) c
         WHERE c.num NOT IN (SELECT x.num FROM @extschema@._ddlguard_columns(old) x)
    LOOP
        IF n.typmod <> -1 OR NOT EXISTS (
            SELECT FROM pg_type ty
             WHERE ty.oid = n.type AND ty.typnamespace = 'pg_catalog'::regnamespace
               AND ty.typname = ANY (@extschema@._supported_types())
        ) THEN
            PERFORM @extschema@._ddlguard_refuse('EX005',
                format('Cannot electrify column of type %s',
                       @extschema@._quoted(@extschema@._type_label(n.type, n.typmod))),
                s, t, 'Supported column types (unsized, not arrays): '
                      || array_to_string(@extschema@._supported_types(), ', ') || '.', n.name);
        END IF;
        -- Generated columns have a pg_attrdef row too: GENERATED before DEFAULT, as in rules.py.
        IF n.identity <> '' OR n.generated <> '' THEN
            PERFORM @extschema@._ddlguard_refuse('EX011', 'Cannot electrify column with GENERATED constraint', s, t,
                'A column added to an electrified table may only be declared NULL or NOT NULL.', n.name);
        END IF;
        IF n.hasdef THEN
            PERFORM @extschema@._ddlguard_refuse('EX006', 'Cannot electrify column with DEFAULT clause', s, t,
                'Add the column without a DEFAULT, then fill it with UPDATE.', n.name);
        END IF;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION @extschema@._ddlguard_columns(shape jsonb)
    RETURNS TABLE (
        num integer, name text, type oid, typmod integer, typename text, coll oid,
        nonnull boolean, hasdef boolean, identity text, generated text, labels jsonb
    )
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT x.num, x.name, x.type, x.typmod, x.typename, x.coll, x.nonnull, x.hasdef, x.identity,
           x.generated, x.labels
      FROM jsonb_to_recordset(shape -> 'columns') AS x (
        num integer, name text, type oid, typmod integer, typename text, coll oid,
        nonnull boolean, hasdef boolean, identity text, generated text, labels jsonb
      )
     ORDER BY x.num
$$;

CREATE OR REPLACE FUNCTION @extschema@._ddlguard_constraints(shape jsonb)
    RETURNS TABLE (name text, type text, key jsonb, body jsonb)
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT k ->> 'name', k ->> 'type', k -> 'key', k FROM jsonb_array_elements(shape -> 'constraints') k
$$;

CREATE OR REPLACE FUNCTION @extschema@._ddlguard_judge_constraints(
    old jsonb, live jsonb, tag text, s text, t text, allowed_hint text, table_level text
)
    RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    label text := @extschema@._qualified(s, t);
    old_columns jsonb := (SELECT jsonb_agg(c.num) FROM @extschema@._ddlguard_columns(old) c);
    k record;
    renamed record;
    first_column text;
BEGIN
    FOR k IN SELECT * FROM @extschema@._ddlguard_constraints(old) ORDER BY name LOOP
        CONTINUE WHEN EXISTS (SELECT FROM @extschema@._ddlguard_constraints(live) x WHERE x.body = k.body);
        SELECT * INTO renamed FROM @extschema@._ddlguard_constraints(live) x
         WHERE x.body - 'name' = k.body - 'name'
           AND x.name NOT IN (SELECT y.name FROM @extschema@._ddlguard_constraints(old) y);
        IF FOUND AND tag = 'ALTER INDEX' THEN  -- the constraint's index renamed: rules.py's EX003
            PERFORM @extschema@._ddlguard_refuse('EX003',
                format('Cannot rename property of electrified table %s', label), s, t, allowed_hint);
        ELSIF FOUND THEN
            PERFORM @extschema@._ddlguard_refuse('EX012',
                format('Cannot rename constraint %s of electrified table %s', @extschema@._quoted(k.name), label),
                s, t, allowed_hint);
        END IF;
        PERFORM @extschema@._ddlguard_refuse('EX007', table_level, s, t, allowed_hint);
    END LOOP;

    FOR k IN
        SELECT * FROM @extschema@._ddlguard_constraints(live) x
         WHERE x.name NOT IN (SELECT y.name FROM @extschema@._ddlguard_constraints(old) y)
         ORDER BY x.name
    LOOP
        -- On new columns only: the column's definition carried it, rules.py's EX011.
        IF NOT EXISTS (
            SELECT FROM jsonb_array_elements(k.key) c WHERE old_columns @> jsonb_build_array(c)
        ) THEN
            SELECT c.name INTO first_column FROM @extschema@._ddlguard_columns(live) c
             WHERE c.num = (k.key ->> 0)::integer;
            PERFORM @extschema@._ddlguard_refuse('EX011',
                format('Cannot electrify column with %s constraint',
                       CASE k.type WHEN 'c' THEN 'CHECK' WHEN 'u' THEN 'UNIQUE' WHEN 'p' THEN 'PRIMARY KEY'
                                   WHEN 'f' THEN 'FOREIGN KEY' ELSE 'EXCLUDE' END),
                s, t, 'A column added to an electrified table may only be declared NULL or NOT NULL.',
                first_column);
        END IF;
        PERFORM @extschema@._ddlguard_refuse('EX007', table_level, s, t, allowed_hint);
    END LOOP;
END
$$;

-- Compare the candidate tables with their shapes; store the allowed changes.
CREATE OR REPLACE FUNCTION @extschema@._ddlguard_check(candidates oid[], tag text)
    RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
    live jsonb;
BEGIN
    FOR r IN
        SELECT s.relid, s.shape FROM @extschema@.guard_shapes s WHERE s.relid = ANY (candidates) ORDER BY s.relid
    LOOP
        live := @extschema@._ddlguard_shape(r.relid);
        CONTINUE WHEN live = r.shape;  -- NULL (the table is gone) goes on to the judge
        PERFORM @extschema@._ddlguard_judge(r.shape, live, tag);
        UPDATE @extschema@.guard_shapes s
           SET shape = live, deps = @extschema@._ddlguard_deps(r.relid)
         WHERE s.relid = r.relid;
    END LOOP;
END
$$;

-- Catalogs whose objects cannot change a table's shape: a command on one of them compares nothing.
CREATE OR REPLACE FUNCTION @extschema@._ddlguard_harmless_catalogs()
    RETURNS text[]
    LANGUAGE sql IMMUTABLE  -- no SET clause: a constant, inlined where it is used
AS $$
    SELECT ARRAY[
        'pg_proc', 'pg_trigger', 'pg_policy', 'pg_statistic_ext', 'pg_event_trigger', 'pg_default_acl',
        'pg_publication', 'pg_publication_rel', 'pg_publication_namespace', 'pg_subscription',
        'pg_operator', 'pg_opclass', 'pg_opfamily', 'pg_amop', 'pg_amproc', 'pg_am', 'pg_cast',
        'pg_conversion', 'pg_language', 'pg_transform', 'pg_foreign_data_wrapper', 'pg_foreign_server',
        'pg_user_mapping', 'pg_ts_config', 'pg_ts_dict', 'pg_ts_parser', 'pg_ts_template',
        'pg_largeobject_metadata'
    ]
$$;

-- Catalogs whose objects are matched against guard_shapes.deps; the rest compare every table.
CREATE OR REPLACE FUNCTION @extschema@._ddlguard_mapped_catalogs()
    RETURNS text[]
    LANGUAGE sql IMMUTABLE  -- no SET clause: a constant, inlined where it is used
AS $$
    SELECT ARRAY['pg_class', 'pg_type', 'pg_namespace', 'pg_collation', 'pg_constraint']
$$;

-- ---------------------------------------------------------------------------------------------
-- The event trigger entry points (SECURITY DEFINER: they write the log and the shapes).

CREATE OR REPLACE FUNCTION @extschema@._ddlguard_ddl_command_end(invoker name, tag text)
    RETURNS void
    LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    this_txid xid8 := pg_current_xact_id();
    query text := COALESCE(current_query(), '');
    -- A long query string (a whole migration sent as one Query) is hashed by its length and
    -- first 4 kB: hashing all of it for each of its commands would cost more than the rest.
    query_hash bigint := CASE WHEN octet_length(query) <= 4096 THEN hashtextextended(query, 0)
                              ELSE hashtextextended(octet_length(query)::text || left(query, 4096), 0) END;
    logged bigint;
    everything boolean := false;
    classes oid[];
    objects oid[];
    candidates oid[];
BEGIN
    -- pg_event_trigger_ddl_commands() costs more than the rest (it names every object): once.
    WITH logged AS (
        INSERT INTO @extschema@.ddl_log (
            txid, pid, role_name, session_role, application_name, client_addr, event, command_tag,
            object_type, object_identity, classid, objid, objsubid, in_extension, statement_hash)
        SELECT this_txid, pg_backend_pid(), invoker, session_user, current_setting('application_name'),
               inet_client_addr(), 'ddl_command_end', c.command_tag, c.object_type, c.object_identity,
               c.classid, c.objid, c.objsubid, c.in_extension, query_hash
          FROM pg_event_trigger_ddl_commands() c
         WHERE c.schema_name IS DISTINCT FROM 'pg_temp'
        RETURNING ddl_log.classid, ddl_log.objid
    )
    SELECT count(*), array_agg(l.classid) FILTER (WHERE l.classid IS NOT NULL),  -- GRANT has none
           array_agg(l.objid) FILTER (WHERE l.classid IS NOT NULL)
      INTO logged, classes, objects
      FROM logged l;
    IF logged = 0 THEN
        IF tag LIKE 'DROP%' OR EXISTS (SELECT FROM pg_event_trigger_ddl_commands()) THEN
            RETURN;  -- DROPs are logged by sql_drop; the rest touched temporary objects only
        END IF;
        -- A command that collected nothing: one row for its tag, and no telling what it touched.
        INSERT INTO @extschema@.ddl_log (
            txid, pid, role_name, session_role, application_name, client_addr, event, command_tag,
            statement_hash)
        VALUES (this_txid, pg_backend_pid(), invoker, session_user, current_setting('application_name'),
                inet_client_addr(), 'ddl_command_end', tag, query_hash);
        everything := true;
    END IF;
    INSERT INTO @extschema@.ddl_statements (txid, hash, statement)
    VALUES (this_txid, query_hash, query)
    ON CONFLICT DO NOTHING;
    IF FOUND THEN  -- the first command of this query string: the transaction's id is news
        PERFORM pg_notify('electric_ddl', this_txid::text);
    END IF;

    IF NOT EXISTS (SELECT FROM @extschema@.guard_shapes) THEN
        RETURN;
    END IF;
    IF everything OR EXISTS (
        SELECT FROM unnest(classes) k
         WHERE k::regclass::text <> ALL (@extschema@._ddlguard_harmless_catalogs())
           AND k::regclass::text <> ALL (@extschema@._ddlguard_mapped_catalogs())
    ) THEN
        candidates := ARRAY(SELECT s.relid FROM @extschema@.guard_shapes s);
    ELSIF objects IS NOT NULL THEN
        -- The live children count too: ALTER TABLE parent ATTACH PARTITION names the parent only.
        objects := objects || ARRAY(SELECT i.inhrelid FROM pg_inherits i WHERE i.inhparent = ANY (objects));
        candidates := ARRAY(SELECT s.relid FROM @extschema@.guard_shapes s WHERE s.deps && objects);
    END IF;
    IF cardinality(candidates) > 0 THEN
        PERFORM @extschema@._ddlguard_check(candidates, tag);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION @extschema@._ddlguard_sql_drop(invoker name, tag text)
    RETURNS void
    LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    this_txid xid8 := pg_current_xact_id();
    query text := COALESCE(current_query(), '');
    query_hash bigint := CASE WHEN octet_length(query) <= 4096 THEN hashtextextended(query, 0)
                              ELSE hashtextextended(octet_length(query)::text || left(query, 4096), 0) END;
    logged_count bigint;
    objects oid[];
BEGIN
    WITH dropped AS MATERIALIZED (
        SELECT * FROM pg_event_trigger_dropped_objects() d WHERE NOT d.is_temporary
    ), logged AS (
        INSERT INTO @extschema@.ddl_log (
            txid, pid, role_name, session_role, application_name, client_addr, event, command_tag,
            object_type, object_identity, classid, objid, objsubid, statement_hash)
        SELECT this_txid, pg_backend_pid(), invoker, session_user, current_setting('application_name'),
               inet_client_addr(), 'sql_drop', tag, d.object_type, d.object_identity,
               d.classid, d.objid, d.objsubid, query_hash
          FROM dropped d
         WHERE d.original OR d.normal  -- named in the command, or reached by CASCADE
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM logged), (SELECT array_agg(d.objid) FROM dropped d)
      INTO logged_count, objects;

    IF logged_count > 0 THEN
        INSERT INTO @extschema@.ddl_statements (txid, hash, statement)
        VALUES (this_txid, query_hash, query)
        ON CONFLICT DO NOTHING;
        IF FOUND THEN
            PERFORM pg_notify('electric_ddl', this_txid::text);
        END IF;
    END IF;
    IF objects IS NOT NULL AND EXISTS (SELECT FROM @extschema@.guard_shapes s WHERE s.deps && objects) THEN
        PERFORM @extschema@._ddlguard_check(
            ARRAY(SELECT s.relid FROM @extschema@.guard_shapes s WHERE s.deps && objects), tag);
    END IF;
END
$$;

-- The functions the event triggers run: as the DDL's role, so that current_user is its own.
CREATE OR REPLACE FUNCTION @extschema@._ddlguard_on_ddl_command_end()
    RETURNS event_trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM @extschema@._ddlguard_ddl_command_end(current_user, tg_tag);
END
$$;

CREATE OR REPLACE FUNCTION @extschema@._ddlguard_on_sql_drop()
    RETURNS event_trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM @extschema@._ddlguard_sql_drop(current_user, tg_tag);
END
$$;

-- Privileges (see SECURITY above): nothing for PUBLIC but the two entry points, which are only
-- useful inside an event trigger. (Postgres checks no EXECUTE privilege when an event trigger
-- runs its function, but the function's calls are checked as the DDL's role.)
REVOKE ALL ON FUNCTION
    @extschema@._ddlguard_on_ddl_command_end(),
    @extschema@._ddlguard_on_sql_drop(),
    @extschema@._ddlguard_shape(oid),
    @extschema@._ddlguard_deps(oid),
    @extschema@._ddlguard_remember(oid),
    @extschema@._ddlguard_rebaseline(),
    @extschema@._ddlguard_refuse(text, text, text, text, text, text),
    @extschema@._ddlguard_judge(jsonb, jsonb, text),
    @extschema@._ddlguard_columns(jsonb),
    @extschema@._ddlguard_constraints(jsonb),
    @extschema@._ddlguard_judge_constraints(jsonb, jsonb, text, text, text, text, text),
    @extschema@._ddlguard_check(oid[], text),
    @extschema@._ddlguard_harmless_catalogs(),
    @extschema@._ddlguard_mapped_catalogs()
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    @extschema@._ddlguard_ddl_command_end(name, text),
    @extschema@._ddlguard_sql_drop(name, text)
TO PUBLIC;
