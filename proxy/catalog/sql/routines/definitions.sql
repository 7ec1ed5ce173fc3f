-- Object definitions as Postgres renders them, for migration_objects (see README.md,
-- DEFINITIONS). Internal: every routine here is closed to PUBLIC. Repeatable (see README.md).

-- _object_type, _object_class and _object_exists are inlined into the queries of their callers
-- (capture.sql), once per object of every captured statement: no SECURITY DEFINER and no SET,
-- which would make each use a function call of its own. They are closed to PUBLIC, and their
-- callers run under the pinned search_path, so their bodies are planned under it too.

-- The classifier's word for an object type, normalised: 'OBJECT_MATVIEW' -> 'materialized view'.
-- A command's verb is not part of the type: 'create table' and 'CREATE_TABLE' are a 'table'
-- (proxies before step 5 sent the statement's kind, and every object was lost).
CREATE OR REPLACE FUNCTION @extschema@._object_type(type_word text)
    RETURNS text
    LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE w WHEN 'matview' THEN 'materialized view' WHEN 'tabconstraint' THEN 'table constraint' ELSE w END
      FROM (SELECT regexp_replace(
                       replace(lower(regexp_replace(btrim($1), '^object_', '', 'i')), '_', ' '),
                       '^(create|alter|drop|comment on) (unique )?', '') AS w) s
$$;

-- The namespace a normalised type's names live in (see DEFINITIONS); NULL: not tracked.
CREATE OR REPLACE FUNCTION @extschema@._object_class(object_type text)
    RETURNS text
    LANGUAGE sql IMMUTABLE
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

-- The definition last recorded for an object, by the latest migration that recorded it: one
-- probe of migration_objects_latest (step 5), whatever the history's length. Migrations are
-- numbered as they begin; two that touch the same object hold conflicting locks, so the later
-- one to commit is the later one to record it (its catalog reads wait for the first's commit).
CREATE OR REPLACE FUNCTION @extschema@._latest_definition(object_class text, schema_name text, object_name text)
    RETURNS jsonb
    LANGUAGE sql STABLE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT o.definition
      FROM @extschema@.migration_objects o
     -- The index's collation: names read from pg_catalog (type name) arrive with collation "C",
     -- and a comparison under another collation than the index's cannot use it.
     WHERE o.object_type = $1 COLLATE "default" AND o.schema_name = $2 COLLATE "default"
       AND o.object_name = $3 COLLATE "default"
     -- The index's own order, key columns included: a generic plan that does not know how rare
     -- the key is would otherwise walk the primary key backwards through the whole history.
     ORDER BY o.object_type, o.schema_name, o.object_name, o.migration_id DESC
     LIMIT 1
$$;

-- ---------------------------------------------------------------------------------------------
-- Privileges: all internal, all closed.

REVOKE ALL ON FUNCTION
    @extschema@._object_type(text),
    @extschema@._object_class(text),
    @extschema@._object_exists(text, text, text),
    @extschema@._relation_definition(oid),
    @extschema@._type_definition(oid),
    @extschema@._routine_definition(text, text),
    @extschema@._object_definition(text, text, text),
    @extschema@._latest_definition(text, text, text)
FROM PUBLIC;
