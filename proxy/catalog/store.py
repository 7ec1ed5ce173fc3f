"""Reads of the migration history (catalog/sql/steps/0002_history.sql) for the command line.

The history is written only from inside migration transactions, by the SECURITY DEFINER
procedures of catalog/sql/routines/capture.sql (`capture`, `note_version`, `migration_version`);
this module only reads it, with a blocking psycopg connection.

Every function runs one statement in a transaction of its own (a savepoint if the caller has one
open), with `search_path` pinned to pg_catalog for that transaction, and names every object with
its schema. One statement means one snapshot: a migration committing meanwhile is either wholly
in the answer or wholly out of it.

Order: migrations are listed in the order they were applied, (committed_at, id). Versions are
never compared as strings: "1.10" and "1.9" of one framework, or a framework version after a
generated one, would sort wrongly.

A migration is named by its version, or else by its id (MIGRATION arguments of the CLI): a
version wins, because frameworks such as golang-migrate use small integers as versions. When
several migrations carry the version (a migration re-applied after a rollback of the framework),
the latest applied is meant.

The returned dicts are JSON-ready: times are ISO 8601 strings, definitions are the JSON
recorded by Postgres (see catalog/sql/README.md, DEFINITIONS).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final, TypedDict

import psycopg
from psycopg import sql
from psycopg.rows import DictRow, dict_row

from proxy.catalog.install import DEFAULT_SCHEMA, check_schema_name
from proxy.errors import CatalogError

# Transaction-local: the caller's session keeps its own path once the read is over.
_PIN_SEARCH_PATH: Final = b"SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true)"
_BIGINT_MAX: Final = 2**63 - 1


class UnknownMigration(CatalogError):
    """No migration has the version or id asked for."""

    sqlstate = "42704"  # undefined_object


class StatementText(TypedDict):
    sql: str
    tag: str | None


class ObjectRef(TypedDict):
    """An object a statement touched, as the proxy named it (schema resolved by capture)."""

    schema: str | None
    name: str
    type: str | None


class CapturedStatement(TypedDict):
    seq: int
    sql: str
    tag: str | None
    objects: list[ObjectRef]
    captured_at: str


class ObjectDefinition(TypedDict):
    """An object's definition at the end of a migration; `definition` None: it was gone."""

    object_type: str  # the namespace: "relation", "type" or "routine"
    kind: str | None  # "table", "index", "enum", ... (None when gone)
    schema: str
    name: str
    relid: int | None
    definition: dict[str, Any] | None


class _MigrationFields(TypedDict):
    id: int
    version: str
    version_source: str  # "framework", "explicit" or "generated"
    # How a framework version reached the migration: "transaction", "session before",
    # "session after" or "other connection" (catalog/sql/README.md, VERSION TIES); else None.
    version_tie: str | None
    framework: str | None
    started_at: str
    committed_at: str | None  # None only inside the migration's own transaction
    user: str
    application_name: str | None
    client_addr: str | None
    proxy_instance: str | None
    backend_pid: int


class Migration(_MigrationFields):
    """One entry of `history()`: the shape of `electric-proxy history --json` (DESIGN.md §5)."""

    statements: list[StatementText]


class MigrationDetail(_MigrationFields):
    """`show()`: the migration with its statements' objects and the resulting definitions."""

    statements: list[CapturedStatement]
    objects: list[ObjectDefinition]


class ElectrifiedTable(TypedDict):
    """The shape of `electric-proxy electrified --json` (DESIGN.md §5)."""

    schema: str
    table: str
    since_migration: str | None  # the version of the migration that electrified it


class SchemaObject(TypedDict):
    object_type: str
    kind: str | None
    schema: str
    name: str
    migration_id: int  # the migration that recorded this definition
    migration_version: str
    definition: dict[str, Any]


class SchemaAt(TypedDict):
    """`schema_at()`: every recorded object that existed after the migration, as it was then."""

    migration_id: int
    version: str
    objects: list[SchemaObject]


# -- queries -------------------------------------------------------------------------------------
# {m}, {s}, {o}, {e}: the migrations, migration_statements, migration_objects and electrified
# tables of the catalog schema. The search_path is pg_catalog, so functions and operators need
# no qualification.

_MIGRATION_COLUMNS: Final = """
    m.id, m.version, m.version_source, m.version_tie, m.framework, m.started_at, m.committed_at, m.db_user,
    m.application_name, m.client_addr, m.proxy_instance, m.backend_pid"""

# The migration named by %(ref)s: the latest applied with that version, else the id %(ref_id)s.
_TARGET: Final = """
    SELECT m.id FROM {m} m
     WHERE m.version = %(ref)s OR m.id = %(ref_id)s
     ORDER BY m.version = %(ref)s DESC, m.committed_at DESC NULLS FIRST, m.id DESC
     LIMIT 1"""

_HISTORY: Final = (
    "SELECT"
    + _MIGRATION_COLUMNS
    + """,
       COALESCE((SELECT json_agg(json_build_object('sql', s.sql, 'tag', s.tag) ORDER BY s.seq)
                   FROM {s} s WHERE s.migration_id = m.id), '[]') AS statements
  FROM {m} m
 ORDER BY m.committed_at NULLS LAST, m.id"""
)

_SHOW: Final = (
    "WITH target AS ("
    + _TARGET
    + ")\nSELECT"
    + _MIGRATION_COLUMNS
    + """,
       COALESCE((SELECT json_agg(json_build_object(
                            'seq', s.seq, 'sql', s.sql, 'tag', s.tag, 'objects', s.objects,
                            'captured_at', s.captured_at) ORDER BY s.seq)
                   FROM {s} s WHERE s.migration_id = m.id), '[]') AS statements,
       COALESCE((SELECT json_agg(json_build_object(
                            'object_type', o.object_type, 'kind', o.definition ->> 'kind',
                            'schema', o.schema_name, 'name', o.object_name, 'relid', o.relid::bigint,
                            'definition', o.definition)
                        ORDER BY o.schema_name, o.object_name, o.object_type)
                   FROM {o} o WHERE o.migration_id = m.id), '[]') AS objects
  FROM {m} m JOIN target t ON t.id = m.id"""
)

_ELECTRIFIED: Final = """
SELECT COALESCE(n.nspname::text, e.schema_name) AS schema,
       COALESCE(c.relname::text, e.table_name) AS table,
       m.version AS since_migration
  FROM {e} e
  LEFT JOIN pg_class c ON c.oid = e.relid
  LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN {m} m ON m.id = e.migration_id
 ORDER BY 1, 2"""

# One row per object existing after the target migration, or one row of NULLs when there is
# none; no row when there is no such migration.
_SCHEMA_AT: Final = (
    """
WITH ordered AS (
    SELECT m.id, m.version, row_number() OVER (ORDER BY m.committed_at NULLS LAST, m.id) AS n
      FROM {m} m
),
target AS (
    SELECT ordered.id, ordered.version, ordered.n
      FROM ordered JOIN ("""
    + _TARGET
    + """) named ON named.id = ordered.id
),
latest AS (
    SELECT DISTINCT ON (o.object_type, o.schema_name, o.object_name)
           o.object_type, o.schema_name, o.object_name, o.definition,
           ordered.id AS migration_id, ordered.version AS migration_version
      FROM {o} o JOIN ordered ON ordered.id = o.migration_id
     WHERE ordered.n <= (SELECT target.n FROM target)
     ORDER BY o.object_type, o.schema_name, o.object_name, ordered.n DESC
)
SELECT target.id AS target_id, target.version AS target_version, latest.*
  FROM target LEFT JOIN latest ON latest.definition IS NOT NULL
 ORDER BY latest.schema_name, latest.object_name, latest.object_type"""
)

_HISTORY_INSTALLED: Final = (
    b"SELECT pg_catalog.to_regclass(%s) IS NOT NULL AND pg_catalog.to_regclass(%s) IS NOT NULL AS installed"
)


# -- the reads -----------------------------------------------------------------------------------


def history_installed(conn: psycopg.Connection[Any], schema: str = DEFAULT_SCHEMA) -> bool:
    """Whether `conn`'s database has the migration history (catalog step 2 or later)."""
    check_schema_name(schema)
    with _reading(conn) as cur:
        cur.execute(_HISTORY_INSTALLED, (f"{schema}.migrations", f"{schema}.migration_objects"))
        row = cur.fetchone()
    return row is not None and bool(row["installed"])


def history(conn: psycopg.Connection[Any], schema: str = DEFAULT_SCHEMA) -> list[Migration]:
    """Every recorded migration, oldest (first applied) first, with its statements' text."""
    with _reading(conn) as cur:
        cur.execute(_query(_HISTORY, schema))
        return [Migration(**_migration_fields(row), statements=list(row["statements"])) for row in cur]


def show(
    conn: psycopg.Connection[Any], migration: str, schema: str = DEFAULT_SCHEMA
) -> MigrationDetail | None:
    """One migration by version or id (see the module's docstring); None when there is none."""
    with _reading(conn) as cur:
        cur.execute(_query(_SHOW, schema), _reference(migration))
        row = cur.fetchone()
    if row is None:
        return None
    return MigrationDetail(
        **_migration_fields(row), statements=list(row["statements"]), objects=list(row["objects"])
    )


def electrified(conn: psycopg.Connection[Any], schema: str = DEFAULT_SCHEMA) -> list[ElectrifiedTable]:
    """Electrified tables under their current names, with the migration that electrified them.

    `since_migration` is None for tables electrified outside any recorded migration (directly
    on Postgres, or before the history existed).
    """
    with _reading(conn) as cur:
        cur.execute(_query(_ELECTRIFIED, schema))
        return [
            ElectrifiedTable(schema=row["schema"], table=row["table"], since_migration=row["since_migration"])
            for row in cur
        ]


def schema_at(conn: psycopg.Connection[Any], version: str, schema: str = DEFAULT_SCHEMA) -> SchemaAt:
    """The recorded schema right after the migration `version` (a version, else an id).

    For every object that migrations up to and including that one (in order of application)
    recorded, its last recorded definition; objects whose last record says "gone" are left
    out. Objects no migration touched are not in the history, so not here either.
    Raises UnknownMigration when no migration has that version or id.
    """
    with _reading(conn) as cur:
        cur.execute(_query(_SCHEMA_AT, schema), _reference(version))
        rows = cur.fetchall()
    if not rows:
        raise UnknownMigration(f"no migration with version or id {version!r}")
    objects = [
        SchemaObject(
            object_type=row["object_type"],
            kind=row["definition"].get("kind"),
            schema=row["schema_name"],
            name=row["object_name"],
            migration_id=row["migration_id"],
            migration_version=row["migration_version"],
            definition=row["definition"],
        )
        for row in rows
        if row["definition"] is not None
    ]
    return SchemaAt(migration_id=rows[0]["target_id"], version=rows[0]["target_version"], objects=objects)


# -- helpers -------------------------------------------------------------------------------------


@contextmanager
def _reading(conn: psycopg.Connection[Any]) -> Iterator[psycopg.Cursor[DictRow]]:
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(_PIN_SEARCH_PATH)
        yield cur


def _query(template: str, schema: str) -> sql.Composed:
    check_schema_name(schema)
    return sql.SQL(template).format(
        m=sql.Identifier(schema, "migrations"),
        s=sql.Identifier(schema, "migration_statements"),
        o=sql.Identifier(schema, "migration_objects"),
        e=sql.Identifier(schema, "electrified"),
    )


def _reference(migration: str) -> dict[str, object]:
    """Parameters of _TARGET: the text as a version, and as an id when it can be one."""
    ref_id = int(migration) if migration.isascii() and migration.isdigit() else None
    if ref_id is not None and ref_id > _BIGINT_MAX:
        ref_id = None
    return {"ref": migration, "ref_id": ref_id}


def _migration_fields(row: DictRow) -> _MigrationFields:
    return _MigrationFields(
        id=row["id"],
        version=row["version"],
        version_source=row["version_source"],
        version_tie=row["version_tie"],
        framework=row["framework"],
        started_at=row["started_at"].isoformat(),
        committed_at=None if row["committed_at"] is None else row["committed_at"].isoformat(),
        user=row["db_user"],
        application_name=row["application_name"],
        client_addr=row["client_addr"],
        proxy_instance=row["proxy_instance"],
        backend_pid=row["backend_pid"],
    )
