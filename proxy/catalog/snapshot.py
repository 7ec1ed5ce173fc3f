"""The live schema of a database, read from pg_catalog for drift detection (DESIGN.md, "Drift").

One statement reads everything (one MVCC snapshot, so the parts agree with each other), on the
proxy's own connection, with `search_path = pg_catalog` set for the transaction: every name
outside pg_catalog comes out schema-qualified, and every expression is rendered by the server's
own functions (`format_type`, `pg_get_expr`, `pg_get_indexdef`, `pg_get_constraintdef`,
`pg_get_viewdef`, `pg_get_functiondef`, `pg_get_triggerdef`, ...). Both sides of a drift diff
come from this same reader on the same server, so nothing is normalised in Python.

Objects are keyed by what survives a rename: `rel:<oid>` for relations (tables, views,
sequences, indexes), `col:<relid>:<attnum>` for columns, `con:`, `trg:`, `pol:`, `rule:`,
`type:`, `proc:`, `schema:`, `pub:`, `ext:` with their OIDs. `identity` is the readable name
(quoted as Postgres quotes it); `attrs` are what the diff compares, absent meaning NULL.
`related` names the keys a change to which may have changed this object too (its table, its
schema, a view's tables, a foreign key's target, a column's type...): the drift watcher uses
it to tell what a recorded migration explains.

Left out: the catalog's own schema, pg_catalog, information_schema, temporary and toast
schemas, objects that belong to an extension, invalid indexes (a CREATE INDEX CONCURRENTLY in
progress, which the proxy records only once it succeeds), and the data-like parts of objects
(sequence values, statistics).

The fingerprint is cheap: an md5, computed by the server, of every relevant catalog row's OID
and `xmin` (any DDL writes new catalog rows), except pg_class, whose schema columns are hashed
instead: TRUNCATE, VACUUM FULL and CLUSTER give a table a new relfilenode, which is no schema
change. Temporary tables are left out. A changed fingerprint only means "read the snapshot and
diff": some changes (an ALTER that sets what it already was) change it without changing the
snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

import psycopg

# Stored with the baseline: a reader whose output changes shape bumps it, and a baseline taken
# with another format is retaken instead of compared (no false drift after an upgrade).
FORMAT: Final = 1

# Local to the read's transaction. JIT off: the planner's estimates for the big UNION ALL pass
# jit_above_cost, and compiling costs more than the whole query (measured: 130 ms of 280).
_SET_PATH: Final = (
    b"SELECT pg_catalog.set_config('search_path', 'pg_catalog', true),"
    b" pg_catalog.set_config('jit', 'off', true)"
)


@dataclass(frozen=True, slots=True)
class SchemaObject:
    """One object of the schema. `schema` and `name` are raw (unquoted) names, for matching."""

    key: str
    object_type: str
    identity: str
    schema: str | None
    name: str
    parent: str | None
    related: tuple[str, ...]
    electrified: bool
    attrs: Mapping[str, Any]
    # md5 of the object as JSON, rendered by the server: equal digests, equal objects. The
    # baseline stores the same digest (drift_baseline.digest), so a scan parses only the
    # baseline objects whose digest differs. None when not computed.
    digest: str | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "object_type": self.object_type,
            "identity": self.identity,
            "schema": self.schema,
            "name": self.name,
            "parent": self.parent,
            "related": list(self.related),
            "electrified": self.electrified,
            "attrs": dict(self.attrs),
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> SchemaObject:
        return cls(
            key=value["key"],
            object_type=value["object_type"],
            identity=value["identity"],
            schema=value.get("schema"),
            name=value["name"],
            parent=value.get("parent"),
            related=tuple(value.get("related") or ()),
            electrified=bool(value.get("electrified")),
            attrs=MappingProxyType(dict(value.get("attrs") or {})),
        )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A whole schema: objects by key."""

    objects: Mapping[str, SchemaObject]

    @classmethod
    def build(cls, objects: Iterable[SchemaObject]) -> Snapshot:
        return cls(MappingProxyType({o.key: o for o in objects}))

    def by_identity(self) -> dict[str, SchemaObject]:
        return {o.identity: o for o in self.objects.values()}


# -- the query --------------------------------------------------------------------------------
# Runs with search_path = pg_catalog (set_config above, local to the transaction), so catalog
# names need no qualification and user names always get theirs. {electrified} is a SELECT of
# the electrified relids (nothing when the catalog is not installed); %(catalog)s the catalog's
# schema, which is not part of the user's schema.

_ACL = "(SELECT array_agg(a::text ORDER BY a::text) FROM unnest({}) a)"

_SNAPSHOT_SQL: Final = """
WITH
ns AS (
    SELECT n.oid, n.nspname, n.nspowner, n.nspacl
      FROM pg_namespace n
     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', %(catalog)s)
       AND n.nspname NOT LIKE 'pg\\_temp\\_%%' AND n.nspname NOT LIKE 'pg\\_toast%%'
       AND {not_ext_namespace}
),
el AS ({electrified}),
rel AS (
    SELECT c.oid, c.relname, c.relkind, c.relnamespace, n.nspname, c.relowner, c.relacl,
           c.relpersistence, c.relrowsecurity, c.relforcerowsecurity, c.relreplident, c.reloptions,
           c.relispartition, c.relpartbound,
           quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS ident,
           EXISTS (SELECT FROM el WHERE el.relid = c.oid) AS electrified
      FROM pg_class c
      JOIN ns n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
       AND {not_ext_class}
),
objects (key, object_type, identity, schema, name, parent, related, electrified, attrs) AS (
-- schemas
SELECT 'schema:' || n.oid, 'schema', quote_ident(n.nspname), NULL::text, n.nspname::text, NULL::text,
       ARRAY[]::text[], false,
       jsonb_build_object(
           'name', n.nspname, 'owner', pg_get_userbyid(n.nspowner),
           'acl', {nspacl},
           'comment', (SELECT d.description FROM pg_description d
                        WHERE d.classoid = 'pg_namespace'::regclass AND d.objoid = n.oid AND d.objsubid = 0))
  FROM ns n
UNION ALL
-- tables, views, materialized views, foreign tables, sequences
SELECT 'rel:' || r.oid,
       CASE r.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'v' THEN 'view'
                      WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table' ELSE 'sequence' END,
       r.ident, r.nspname::text, r.relname::text,
       CASE WHEN r.relkind = 'S' THEN (
           SELECT 'rel:' || d.refobjid FROM pg_depend d
            WHERE d.classid = 'pg_class'::regclass AND d.objid = r.oid
              AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') LIMIT 1) END,
       ARRAY['schema:' || r.relnamespace]
         || ARRAY(SELECT 'rel:' || i.inhparent FROM pg_inherits i WHERE i.inhrelid = r.oid)
         || ARRAY(SELECT DISTINCT 'rel:' || d.refobjid
                    FROM pg_rewrite w
                    JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = w.oid
                                    AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> r.oid
                   WHERE w.ev_class = r.oid AND r.relkind IN ('v', 'm')),
       r.electrified,
       jsonb_build_object(
           'schema', r.nspname, 'name', r.relname, 'kind', r.relkind,
           'owner', pg_get_userbyid(r.relowner),
           'persistence', r.relpersistence,
           'acl', {relacl},
           'comment', (SELECT d.description FROM pg_description d
                        WHERE d.classoid = 'pg_class'::regclass AND d.objoid = r.oid AND d.objsubid = 0),
           'row_security', CASE WHEN r.relrowsecurity THEN true END,
           'force_row_security', CASE WHEN r.relforcerowsecurity THEN true END,
           'replica_identity', CASE WHEN r.relkind IN ('r', 'p') THEN r.relreplident::text END,
           'replica_identity_index', (SELECT x.indexrelid::regclass::text FROM pg_index x
                                       WHERE x.indrelid = r.oid AND x.indisreplident),
           'options', (SELECT array_agg(o ORDER BY o) FROM unnest(r.reloptions) o),
           'partition_key', CASE WHEN r.relkind = 'p' THEN pg_get_partkeydef(r.oid) END,
           'partition_bound', CASE WHEN r.relispartition THEN pg_get_expr(r.relpartbound, r.oid) END,
           'inherits', (SELECT array_agg(i.inhparent::regclass::text ORDER BY i.inhseqno)
                          FROM pg_inherits i WHERE i.inhrelid = r.oid),
           'query', CASE WHEN r.relkind IN ('v', 'm') THEN pg_get_viewdef(r.oid) END,
           'sequence', (SELECT jsonb_build_object(
                               'type', format_type(s.seqtypid, NULL), 'start', s.seqstart,
                               'increment', s.seqincrement, 'min', s.seqmin, 'max', s.seqmax,
                               'cache', s.seqcache, 'cycle', s.seqcycle)
                          FROM pg_sequence s WHERE s.seqrelid = r.oid),
           'owned_by', CASE WHEN r.relkind = 'S' THEN (
               SELECT d.refobjid::regclass::text || '.' || quote_ident(a.attname)
                 FROM pg_depend d
                 JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                WHERE d.classid = 'pg_class'::regclass AND d.objid = r.oid
                  AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') LIMIT 1) END)
  FROM rel r
UNION ALL
-- columns of tables and foreign tables
SELECT 'col:' || a.attrelid || ':' || a.attnum, 'column', r.ident || '.' || quote_ident(a.attname),
       r.nspname::text, a.attname::text, 'rel:' || r.oid,
       ARRAY['type:' || a.atttypid], r.electrified,
       jsonb_build_object(
           'name', a.attname,
           'type', format_type(a.atttypid, a.atttypmod),
           'not_null', a.attnotnull,
           'default', CASE WHEN a.attgenerated = '' THEN pg_get_expr(ad.adbin, ad.adrelid) END,
           'generated', CASE WHEN a.attgenerated <> '' THEN pg_get_expr(ad.adbin, ad.adrelid) END,
           'identity', NULLIF(a.attidentity, ''),
           'collation', CASE WHEN a.attcollation <> t.typcollation THEN (
               SELECT quote_ident(cn.nspname) || '.' || quote_ident(co.collname)
                 FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace
                WHERE co.oid = a.attcollation) END,
           'acl', {attacl},
           'comment', (SELECT d.description FROM pg_description d
                        WHERE d.classoid = 'pg_class'::regclass AND d.objoid = a.attrelid
                          AND d.objsubid = a.attnum))
  FROM rel r
  JOIN pg_attribute a ON a.attrelid = r.oid
  JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
 WHERE r.relkind IN ('r', 'p', 'f') AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
-- table constraints
SELECT 'con:' || c.oid, 'constraint', quote_ident(c.conname) || ' on ' || r.ident,
       r.nspname::text, c.conname::text, 'rel:' || r.oid,
       CASE WHEN c.confrelid <> 0 THEN ARRAY['rel:' || c.confrelid] ELSE ARRAY[]::text[] END,
       r.electrified,
       jsonb_build_object(
           'name', c.conname, 'type', c.contype,
           'definition', pg_get_constraintdef(c.oid),
           'comment', (SELECT d.description FROM pg_description d
                        WHERE d.classoid = 'pg_constraint'::regclass AND d.objoid = c.oid))
  FROM pg_constraint c
  JOIN rel r ON r.oid = c.conrelid
UNION ALL
-- indexes (valid ones: see the module's docstring)
SELECT 'rel:' || i.oid, 'index', quote_ident(r.nspname) || '.' || quote_ident(i.relname),
       r.nspname::text, i.relname::text, 'rel:' || r.oid, ARRAY[]::text[], r.electrified,
       jsonb_build_object(
           'schema', r.nspname, 'name', i.relname,
           'definition', pg_get_indexdef(i.oid),
           'comment', (SELECT d.description FROM pg_description d
                        WHERE d.classoid = 'pg_class'::regclass AND d.objoid = i.oid AND d.objsubid = 0))
  FROM pg_index x
  JOIN rel r ON r.oid = x.indrelid
  JOIN pg_class i ON i.oid = x.indexrelid
 WHERE x.indisvalid AND x.indisready
UNION ALL
-- triggers
SELECT 'trg:' || g.oid, 'trigger', quote_ident(g.tgname) || ' on ' || r.ident,
       r.nspname::text, g.tgname::text, 'rel:' || r.oid, ARRAY['proc:' || g.tgfoid], r.electrified,
       jsonb_build_object(
           'name', g.tgname, 'definition', pg_get_triggerdef(g.oid), 'enabled', g.tgenabled,
           'comment', (SELECT d.description FROM pg_description d
                        WHERE d.classoid = 'pg_trigger'::regclass AND d.objoid = g.oid))
  FROM pg_trigger g
  JOIN rel r ON r.oid = g.tgrelid
 WHERE NOT g.tgisinternal
UNION ALL
-- row security policies
SELECT 'pol:' || p.oid, 'policy', quote_ident(p.polname) || ' on ' || r.ident,
       r.nspname::text, p.polname::text, 'rel:' || r.oid, ARRAY[]::text[], r.electrified,
       jsonb_build_object(
           'name', p.polname, 'command', p.polcmd, 'permissive', p.polpermissive,
           'roles', (SELECT array_agg(CASE WHEN o = 0 THEN 'public' ELSE pg_get_userbyid(o)::text END
                                      ORDER BY 1)
                       FROM unnest(p.polroles) o),
           'using', pg_get_expr(p.polqual, p.polrelid),
           'check', pg_get_expr(p.polwithcheck, p.polrelid),
           'comment', (SELECT d.description FROM pg_description d
                        WHERE d.classoid = 'pg_policy'::regclass AND d.objoid = p.oid))
  FROM pg_policy p
  JOIN rel r ON r.oid = p.polrelid
UNION ALL
-- rules other than a view's own
SELECT 'rule:' || w.oid, 'rule', quote_ident(w.rulename) || ' on ' || r.ident,
       r.nspname::text, w.rulename::text, 'rel:' || r.oid, ARRAY[]::text[], r.electrified,
       jsonb_build_object('name', w.rulename, 'definition', pg_get_ruledef(w.oid), 'enabled', w.ev_enabled)
  FROM pg_rewrite w
  JOIN rel r ON r.oid = w.ev_class
 WHERE w.rulename <> '_RETURN'
UNION ALL
-- enums, domains, composite types, ranges
SELECT 'type:' || t.oid,
       CASE t.typtype WHEN 'e' THEN 'enum' WHEN 'd' THEN 'domain' WHEN 'c' THEN 'composite type'
                      ELSE 'range type' END,
       quote_ident(n.nspname) || '.' || quote_ident(t.typname), n.nspname::text, t.typname::text,
       NULL, ARRAY['schema:' || n.oid], false,
       jsonb_build_object(
           'schema', n.nspname, 'name', t.typname, 'owner', pg_get_userbyid(t.typowner),
           'acl', {typacl},
           'comment', (SELECT d.description FROM pg_description d
                        WHERE d.classoid = 'pg_type'::regclass AND d.objoid = t.oid),
           'labels', CASE WHEN t.typtype = 'e' THEN (
               SELECT array_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e
                WHERE e.enumtypid = t.oid) END,
           'base_type', CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END,
           'not_null', CASE WHEN t.typnotnull THEN true END,
           'default', pg_get_expr(t.typdefaultbin, 0),
           'constraints', (SELECT array_agg(quote_ident(c.conname) || ' ' || pg_get_constraintdef(c.oid)
                                            ORDER BY c.conname)
                             FROM pg_constraint c WHERE c.contypid = t.oid),
           'attributes', CASE WHEN t.typtype = 'c' THEN (
               SELECT array_agg(quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod)
                                ORDER BY a.attnum)
                 FROM pg_attribute a
                WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped) END,
           'range', CASE WHEN t.typtype = 'r' THEN (
               SELECT jsonb_build_object('subtype', format_type(g.rngsubtype, NULL),
                                         'opclass', g.rngsubopc::text, 'collation', g.rngcollation::text,
                                         'canonical', g.rngcanonical::text, 'diff', g.rngsubdiff::text)
                 FROM pg_range g WHERE g.rngtypid = t.oid) END)
  FROM pg_type t
  JOIN ns n ON n.oid = t.typnamespace
 WHERE (t.typtype IN ('e', 'd', 'r')
        OR (t.typtype = 'c' AND (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c'))
   AND {not_ext_type}
UNION ALL
-- functions, procedures, aggregates
SELECT 'proc:' || p.oid,
       CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate' ELSE 'function' END,
       quote_ident(n.nspname) || '.' || quote_ident(p.proname)
         || '(' || pg_get_function_identity_arguments(p.oid) || ')',
       n.nspname::text, p.proname::text, NULL, ARRAY['schema:' || n.oid], false,
       jsonb_build_object(
           'schema', n.nspname, 'name', p.proname, 'owner', pg_get_userbyid(p.proowner),
           'acl', {proacl},
           'comment', (SELECT d.description FROM pg_description d
                        WHERE d.classoid = 'pg_proc'::regclass AND d.objoid = p.oid),
           'definition', CASE WHEN p.prokind <> 'a' THEN pg_get_functiondef(p.oid) ELSE (
               SELECT concat_ws(' ', pg_get_function_result(p.oid), g.aggtransfn::text,
                                format_type(g.aggtranstype, NULL), g.aggfinalfn::text, g.agginitval)
                 FROM pg_aggregate g WHERE g.aggfnoid = p.oid) END)
  FROM pg_proc p
  JOIN ns n ON n.oid = p.pronamespace
 WHERE {not_ext_proc}
UNION ALL
-- publications
SELECT 'pub:' || p.oid, 'publication', quote_ident(p.pubname), NULL, p.pubname::text, NULL,
       ARRAY(SELECT 'rel:' || pr.prrelid FROM pg_publication_rel pr WHERE pr.prpubid = p.oid),
       EXISTS (SELECT FROM pg_publication_rel pr JOIN el ON el.relid = pr.prrelid WHERE pr.prpubid = p.oid)
         OR (p.puballtables AND EXISTS (SELECT FROM el)),
       jsonb_build_object(
           'name', p.pubname, 'owner', pg_get_userbyid(p.pubowner),
           'all_tables', p.puballtables, 'insert', p.pubinsert, 'update', p.pubupdate,
           'delete', p.pubdelete, 'truncate', p.pubtruncate, 'via_root', p.pubviaroot,
           'tables', (SELECT array_agg({pubtable} ORDER BY 1)
                        FROM pg_publication_rel pr WHERE pr.prpubid = p.oid),
           'schemas', {pubschemas},
           'comment', (SELECT d.description FROM pg_description d
                        WHERE d.classoid = 'pg_publication'::regclass AND d.objoid = p.oid))
  FROM pg_publication p
UNION ALL
-- extensions
SELECT 'ext:' || x.oid, 'extension', quote_ident(x.extname), NULL, x.extname::text, NULL,
       ARRAY[]::text[], false,
       jsonb_build_object('name', x.extname, 'version', x.extversion,
                          'schema', (SELECT n.nspname FROM pg_namespace n WHERE n.oid = x.extnamespace))
  FROM pg_extension x
)
SELECT o.key, o.object_type, o.identity, o.schema, o.name, o.parent, o.related, o.electrified, d.attrs,
       md5(jsonb_build_object(
           'key', o.key, 'object_type', o.object_type, 'identity', o.identity, 'schema', o.schema,
           'name', o.name, 'parent', o.parent, 'related', to_jsonb(o.related), 'electrified', o.electrified,
           'attrs', d.attrs)::text)
  FROM objects o
  CROSS JOIN LATERAL (SELECT jsonb_strip_nulls(o.attrs) AS attrs) d
"""

# Row filters, column lists and FOR TABLES IN SCHEMA came with Postgres 15.
_PUB_TABLE_15: Final = (
    "pr.prrelid::regclass::text"
    " || COALESCE(' (' || (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)"
    " FROM pg_attribute a WHERE a.attrelid = pr.prrelid AND a.attnum = ANY (pr.prattrs)) || ')', '')"
    " || COALESCE(' WHERE (' || pg_get_expr(pr.prqual, pr.prrelid) || ')', '')"
)
_PUB_SCHEMAS_15: Final = (
    "(SELECT array_agg(quote_ident(n.nspname) ORDER BY n.nspname) FROM pg_publication_namespace pn"
    " JOIN pg_namespace n ON n.oid = pn.pnnspid WHERE pn.pnpubid = p.oid)"
)

# Objects that belong to an extension are the extension's business, not the schema's.
_NOT_EXTENSION: Final = (
    "NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = '{catalog}'::regclass"
    " AND e.objid = {alias}.oid AND e.objsubid = 0 AND e.deptype = 'e')"
)

_NO_ELECTRIFIED: Final = "SELECT NULL::oid AS relid WHERE false"


def snapshot_query(server_version: int, electrified_table: str | None) -> str:
    """The snapshot SELECT for a server, with `electrified_table` ("schema.table", already a
    safe identifier pair) as the source of electrified relids, or none."""
    electrified = f"SELECT relid FROM {electrified_table}" if electrified_table else _NO_ELECTRIFIED
    modern = server_version >= 150000
    return _SNAPSHOT_SQL.format(
        electrified=electrified,
        nspacl=_ACL.format("COALESCE(n.nspacl, acldefault('n', n.nspowner))"),
        relacl=_ACL.format(
            "COALESCE(r.relacl,"
            " acldefault(CASE WHEN r.relkind = 'S' THEN 's' ELSE 'r' END::\"char\", r.relowner))"
        ),
        not_ext_namespace=_NOT_EXTENSION.format(catalog="pg_namespace", alias="n"),
        not_ext_class=_NOT_EXTENSION.format(catalog="pg_class", alias="c"),
        not_ext_type=_NOT_EXTENSION.format(catalog="pg_type", alias="t"),
        not_ext_proc=_NOT_EXTENSION.format(catalog="pg_proc", alias="p"),
        attacl=_ACL.format("a.attacl"),
        typacl=_ACL.format("COALESCE(t.typacl, acldefault('T', t.typowner))"),
        proacl=_ACL.format("COALESCE(p.proacl, acldefault('f', p.proowner))"),
        pubtable=_PUB_TABLE_15 if modern else "pr.prrelid::regclass::text",
        pubschemas=_PUB_SCHEMAS_15 if modern else "NULL::text[]",
    )


def snapshot_from_rows(rows: Iterable[tuple[Any, ...]]) -> Snapshot:
    return Snapshot.build(
        SchemaObject(
            key=key,
            object_type=object_type,
            identity=identity,
            schema=schema,
            name=name,
            parent=parent,
            related=tuple(related or ()),
            electrified=bool(electrified),
            attrs=MappingProxyType(attrs or {}),
            digest=digest,
        )
        for key, object_type, identity, schema, name, parent, related, electrified, attrs, digest in rows
    )


# -- the fingerprint ------------------------------------------------------------------------------
# Every catalog a snapshot reads, as (OID, xmin) of its rows; where a catalog is large, only the
# rows of objects created after initdb (OID >= 16384, FirstNormalObjectId). One md5, computed
# server-side.

_FINGERPRINT_SQL: Final = """
WITH rel AS (  -- relations created after initdb, temporary ones aside
    SELECT oid, relname, relnamespace, relkind, relowner, relacl, reloptions, relpersistence,
           relrowsecurity, relforcerowsecurity, relreplident, relispartition, relnatts, relchecks,
           relhastriggers, relhasrules, reltype, relam, relpartbound
      FROM pg_class
     WHERE oid >= 16384 AND relpersistence <> 't'
),
temp_ns AS (
    SELECT oid FROM pg_namespace WHERE nspname LIKE 'pg\\_temp\\_%' OR nspname LIKE 'pg\\_toast\\_temp\\_%'
)
SELECT md5(string_agg(f, ',' ORDER BY f)) FROM (
    SELECT 'n' || oid || ':' || xmin FROM pg_namespace WHERE oid NOT IN (SELECT oid FROM temp_ns)
    UNION ALL SELECT 'c' || r.oid || ':' || concat_ws('|',
                         r.relname, r.relnamespace, r.relkind, r.relowner, r.relacl::text,
                         r.reloptions::text, r.relpersistence, r.relrowsecurity,
                         r.relforcerowsecurity, r.relreplident, r.relispartition, r.relnatts, r.relchecks,
                         r.relhastriggers, r.relhasrules, r.reltype, r.relam, r.relpartbound::text)
                FROM rel r
    UNION ALL SELECT 'a' || a.attrelid || '.' || a.attnum || ':' || a.xmin
                FROM pg_attribute a JOIN rel r ON r.oid = a.attrelid WHERE a.attnum > 0
    UNION ALL SELECT 'd' || d.oid || ':' || d.xmin FROM pg_attrdef d JOIN rel r ON r.oid = d.adrelid
    UNION ALL SELECT 'k' || k.oid || ':' || k.xmin FROM pg_constraint k
                WHERE k.oid >= 16384 AND (k.conrelid = 0 OR k.conrelid IN (SELECT oid FROM rel))
    UNION ALL SELECT 'i' || x.indexrelid || ':' || x.xmin FROM pg_index x JOIN rel r ON r.oid = x.indexrelid
    UNION ALL SELECT 't' || t.oid || ':' || t.xmin FROM pg_trigger t JOIN rel r ON r.oid = t.tgrelid
    UNION ALL SELECT 'p' || p.oid || ':' || p.xmin FROM pg_policy p JOIN rel r ON r.oid = p.polrelid
    UNION ALL SELECT 'w' || w.oid || ':' || w.xmin FROM pg_rewrite w JOIN rel r ON r.oid = w.ev_class
    UNION ALL SELECT 'y' || oid || ':' || xmin FROM pg_type
                WHERE oid >= 16384 AND typnamespace NOT IN (SELECT oid FROM temp_ns)
    UNION ALL SELECT 'e' || oid || ':' || xmin FROM pg_enum
    UNION ALL SELECT 'f' || oid || ':' || xmin FROM pg_proc WHERE oid >= 16384
    UNION ALL SELECT 's' || seqrelid || ':' || xmin FROM pg_sequence
    UNION ALL SELECT 'h' || h.inhrelid || '.' || h.inhseqno || ':' || h.xmin
                FROM pg_inherits h JOIN rel r ON r.oid = h.inhrelid
    UNION ALL SELECT 'o' || objoid || '.' || classoid || '.' || objsubid || ':' || xmin FROM pg_description
                WHERE objoid >= 16384
    UNION ALL SELECT 'u' || oid || ':' || xmin FROM pg_publication
    UNION ALL SELECT 'r' || oid || ':' || xmin FROM pg_publication_rel
    UNION ALL SELECT 'x' || oid || ':' || xmin FROM pg_extension
    UNION ALL SELECT 'g' || rngtypid || ':' || xmin FROM pg_range WHERE rngtypid >= 16384
    UNION ALL SELECT 'q' || aggfnoid::oid || ':' || xmin FROM pg_aggregate WHERE aggfnoid::oid >= 16384
    UNION ALL SELECT 'l' || {electrified_fp}
) AS parts (f)
"""


def fingerprint_query(electrified_table: str | None) -> str:
    """A cheap whole-schema fingerprint (see the module's docstring); electrifying a table
    changes it too, since that changes severities."""
    electrified = (
        f"(SELECT COALESCE(string_agg(relid::text, ',' ORDER BY relid), '') FROM {electrified_table})"
        if electrified_table
        else "''"
    )
    return _FINGERPRINT_SQL.format(electrified_fp=electrified)


# -- running them -----------------------------------------------------------------------------------


def _queries(
    conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any], electrified_table: str | None
) -> tuple[bytes, bytes]:
    version = conn.info.server_version
    return (
        snapshot_query(version, electrified_table).encode(),
        fingerprint_query(electrified_table).encode(),
    )


async def read_snapshot(
    conn: psycopg.AsyncConnection[Any], catalog_schema: str, electrified_table: str | None
) -> Snapshot:
    """The live schema. Runs in a transaction of its own, or a savepoint of the caller's."""
    query, _ = _queries(conn, electrified_table)
    async with conn.transaction():
        await conn.execute(_SET_PATH)
        cursor = await conn.execute(query, {"catalog": catalog_schema})
        return snapshot_from_rows(await cursor.fetchall())


def read_snapshot_sync(
    conn: psycopg.Connection[Any], catalog_schema: str, electrified_table: str | None
) -> Snapshot:
    """`read_snapshot` for a blocking connection (the CLI, benchmarks)."""
    query, _ = _queries(conn, electrified_table)
    with conn.transaction():
        conn.execute(_SET_PATH)
        cursor = conn.execute(query, {"catalog": catalog_schema})
        return snapshot_from_rows(cursor.fetchall())


async def read_fingerprint(conn: psycopg.AsyncConnection[Any], electrified_table: str | None) -> str:
    _, query = _queries(conn, electrified_table)
    async with conn.transaction():
        await conn.execute(_SET_PATH)
        cursor = await conn.execute(query)
        row = await cursor.fetchone()
    return str(row[0]) if row is not None else ""


def read_fingerprint_sync(conn: psycopg.Connection[Any], electrified_table: str | None) -> str:
    _, query = _queries(conn, electrified_table)
    with conn.transaction():
        conn.execute(_SET_PATH)
        row = conn.execute(query).fetchone()
    return str(row[0]) if row is not None else ""
