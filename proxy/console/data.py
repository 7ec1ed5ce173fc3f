"""What the console's pages show, read from the catalog: one function per page.

The migration page and the schema pages go through proxy/catalog/store.py, the functions behind
`electric-proxy show / schema --json`, so the console shows what the CLI prints. Three reads
have no store function and are plain read-only queries of the catalog's tables here: the
timeline (store.history() returns every migration with its statements; a page of 10,000
migrations must not read them all), the drift tables (drift_events, drift_acceptances) and the
health strip. They run as the upstream URL's role, like the CLI, name every object with its
schema, and pin `search_path` to pg_catalog for their transaction, as store.py's reads do.

Every function takes the connection and the catalog schema and returns plain values; pages.py
turns them into HTML. Times are ISO 8601 strings, as in the CLI's `--json`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Final, NamedTuple

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from proxy.catalog import store
from proxy.catalog.install import check_schema_name, latest_version
from proxy.console import definitions
from proxy.log import MASK, scrub

MAX_PER_PAGE: Final = 500
ACCEPTED_SHOWN: Final = 200  # the most recent accepted drift rows on the drift page
INSTANCES_WINDOW: Final = "24 hours"  # "proxy instances seen recently"
_PIN_SEARCH_PATH: Final = b"SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true)"
# A migration id padded so that it cannot be taken for a version: see migration_ref().
_ID_WIDTH: Final = 24

Conn = psycopg.Connection[Any]


# -- secrets in recorded text ---------------------------------------------------------------------------

# `PASSWORD 'literal'` as CREATE/ALTER ROLE and USER MAPPING OPTIONS write it: standard, escape
# (E'...') and dollar-quoted strings.
_PASSWORD_LITERAL: Final = re.compile(
    r"(?i)\b(password\s+)(?:E'(?:[^'\\]|''|\\.)*'|'(?:[^']|'')*'|(\$[A-Za-z_0-9]*\$).*?\2)", re.S
)


def mask_secrets(text: str) -> str:
    """Recorded SQL with its passwords masked: role and user-mapping passwords, and passwords in
    connection strings and URLs (CREATE SUBSCRIPTION ... CONNECTION, dblink, foreign servers)."""
    return scrub(_PASSWORD_LITERAL.sub(lambda m: f"{m.group(1)}'{MASK}'", text))


# -- timeline ------------------------------------------------------------------------------------


class TimelineQuery(NamedTuple):
    """Filters and page of the timeline. `framework` "-" selects migrations without one."""

    framework: str | None = None
    user: str | None = None
    since: date | None = None  # committed on or after this day (UTC)
    until: date | None = None  # committed on or before this day (UTC)
    page: int = 1
    per_page: int = 50


@dataclass(frozen=True)
class TimelineEntry:
    """One migration of the timeline: history --json's fields, statements counted."""

    id: int
    version: str
    version_source: str
    framework: str | None
    user: str
    application_name: str | None
    client_addr: str | None
    proxy_instance: str | None
    started_at: str
    committed_at: str | None
    duration_ms: float | None
    statement_count: int


@dataclass(frozen=True)
class Timeline:
    entries: list[TimelineEntry]
    total: int  # migrations that pass the filters
    query: TimelineQuery
    frameworks: list[str]  # for the filter's choices; "-": none
    users: list[str]

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.query.per_page))


# Statements are counted for the page's rows only, after the LIMIT.
_TIMELINE: Final = """
WITH page AS (
    SELECT m.id, m.version, m.version_source, m.framework, m.db_user, m.application_name,
           m.client_addr, m.proxy_instance, m.started_at, m.committed_at, count(*) OVER () AS total
      FROM {m} m
     WHERE (%(framework)s::text IS NULL
            OR (m.framework IS NULL AND %(framework)s = '-') OR m.framework = %(framework)s)
       AND (%(user)s::text IS NULL OR m.db_user = %(user)s)
       AND (%(since)s::date IS NULL OR m.committed_at >= %(since)s::date::timestamp AT TIME ZONE 'UTC')
       AND (%(until)s::date IS NULL
            OR m.committed_at < (%(until)s::date + 1)::timestamp AT TIME ZONE 'UTC')
     ORDER BY m.committed_at DESC NULLS FIRST, m.id DESC
     LIMIT %(limit)s OFFSET %(offset)s
)
SELECT page.*, (SELECT count(*) FROM {s} s WHERE s.migration_id = page.id) AS statement_count
  FROM page
 ORDER BY page.committed_at DESC NULLS FIRST, page.id DESC"""

_CHOICES: Final = """
SELECT ARRAY(SELECT DISTINCT COALESCE(framework, '-') FROM {m} ORDER BY 1) AS frameworks,
       ARRAY(SELECT DISTINCT db_user FROM {m} ORDER BY 1) AS users"""


def timeline(conn: Conn, schema: str, query: TimelineQuery) -> Timeline:
    """Migrations newest first (the reverse of `history`), filtered, one page of them."""
    per_page = min(max(query.per_page, 1), MAX_PER_PAGE)
    query = query._replace(per_page=per_page, page=max(query.page, 1))
    params = {
        "framework": query.framework,
        "user": query.user,
        "since": query.since,
        "until": query.until,
        "limit": per_page,
        "offset": (query.page - 1) * per_page,
    }
    with _reading(conn) as cur:
        cur.execute(_sql(_TIMELINE, schema), params)
        rows = cur.fetchall()
        cur.execute(_sql(_CHOICES, schema))
        choices = cur.fetchone()
    total = int(rows[0]["total"]) if rows else 0
    if not rows and query.page > 1:  # past the end: say how many there are all the same
        total = _count(conn, schema, params)
    return Timeline(
        entries=[_entry(row) for row in rows],
        total=total,
        query=query,
        frameworks=list(choices["frameworks"]) if choices else [],
        users=list(choices["users"]) if choices else [],
    )


def _count(conn: Conn, schema: str, params: Mapping[str, object]) -> int:
    with _reading(conn) as cur:
        cur.execute(_sql(_TIMELINE, schema), {**params, "limit": 1, "offset": 0})
        row = cur.fetchone()
    return int(row["total"]) if row else 0


def _entry(row: dict[str, Any]) -> TimelineEntry:
    started: datetime = row["started_at"]
    committed: datetime | None = row["committed_at"]
    return TimelineEntry(
        id=row["id"],
        version=row["version"],
        version_source=row["version_source"],
        framework=row["framework"],
        user=row["db_user"],
        application_name=row["application_name"],
        client_addr=row["client_addr"],
        proxy_instance=row["proxy_instance"],
        started_at=started.isoformat(),
        committed_at=None if committed is None else committed.isoformat(),
        duration_ms=None if committed is None else (committed - started).total_seconds() * 1000,
        statement_count=int(row["statement_count"]),
    )


# -- one migration -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MigrationPage:
    migration: store.MigrationDetail
    objects: list[definitions.Rendered]  # the definitions of what it touched, as SQL
    previous: int | None  # the migration applied just before (for "what changed"), by id


_PREVIOUS: Final = """
SELECT p.id FROM {m} p, {m} m
 WHERE m.id = %(id)s AND (p.committed_at, p.id) < (m.committed_at, m.id)
 ORDER BY p.committed_at DESC, p.id DESC LIMIT 1"""


def migration(conn: Conn, schema: str, migration_id: int) -> MigrationPage | None:
    """The migration with this id (`show --json`), its definitions rendered; None if none."""
    detail = store.show(conn, migration_ref(migration_id), schema)
    if detail is None or detail["id"] != migration_id:
        return None
    for statement in detail["statements"]:
        statement["sql"] = mask_secrets(statement["sql"])
    with _reading(conn) as cur:
        cur.execute(_sql(_PREVIOUS, schema), {"id": migration_id})
        row = cur.fetchone()
    rendered = [
        definitions.rendered(o["object_type"], o["schema"], o["name"], o["definition"])
        for o in detail["objects"]
    ]
    return MigrationPage(detail, rendered, None if row is None else int(row["id"]))


def migration_ref(migration_id: int) -> str:
    """A migration id as store.show() and store.schema_at() take it whatever versions exist.

    They take a version first, and golang-migrate's versions are small integers that can equal
    another migration's id; zero-padded, the text still reads as the id and matches no version
    a framework writes."""
    return f"{migration_id:0{_ID_WIDTH}d}"


# -- schema ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SchemaView:
    migration_id: int
    version: str
    objects: list[definitions.Rendered]


@dataclass(frozen=True)
class DiffView:
    before: tuple[int, str]  # (migration id, version)
    after: tuple[int, str]
    changes: list[definitions.Change]


_LATEST: Final = "SELECT m.id FROM {m} m ORDER BY m.committed_at DESC NULLS LAST, m.id DESC LIMIT 1"


def latest_migration(conn: Conn, schema: str) -> int | None:
    with _reading(conn) as cur:
        cur.execute(_sql(_LATEST, schema))
        row = cur.fetchone()
    return None if row is None else int(row["id"])


def schema_at(conn: Conn, schema: str, reference: str) -> SchemaView:
    """`schema --at` (a version, else an id); raises store.UnknownMigration."""
    at = store.schema_at(conn, reference, schema)
    objects = [
        definitions.rendered(o["object_type"], o["schema"], o["name"], o["definition"]) for o in at["objects"]
    ]
    return SchemaView(at["migration_id"], at["version"], objects)


def schema_diff(conn: Conn, schema: str, before: str, after: str) -> DiffView:
    """`schema --diff BEFORE AFTER`; raises store.UnknownMigration."""
    old = store.schema_at(conn, before, schema)
    new = store.schema_at(conn, after, schema)
    return DiffView(
        (old["migration_id"], old["version"]),
        (new["migration_id"], new["version"]),
        definitions.diff(old["objects"], new["objects"]),
    )


def electrified(conn: Conn, schema: str) -> list[store.ElectrifiedTable]:
    return store.electrified(conn, schema)


# -- drift -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftItem:
    """An open drift event: `drift --json`'s object, with when it was seen."""

    identity: str
    object_type: str
    change: str
    severity: str
    electrified: bool
    detail: dict[str, Any]
    attribution: dict[str, Any] | None
    source: str
    first_seen: str
    last_seen: str


@dataclass(frozen=True)
class AcceptedItem:
    identity: str
    object_type: str
    change: str
    severity: str
    accepted_at: str
    accepted_by: str
    db_user: str


@dataclass(frozen=True)
class DriftView:
    open: list[DriftItem]
    accepted: list[AcceptedItem]
    scanned_at: str | None
    baseline_at: str | None


SEVERITIES: Final = ("critical", "high", "medium", "low")

_DRIFT_OPEN: Final = """
SELECT identity, object_type, change, severity, electrified, detail, attribution, source,
       first_seen, last_seen
  FROM {events} WHERE status = 'open'
 ORDER BY array_position(ARRAY['critical', 'high', 'medium', 'low'], severity), first_seen DESC, identity"""

_DRIFT_ACCEPTED: Final = """
SELECT e.identity, e.object_type, e.change, e.severity, a.accepted_at, a.accepted_by, a.db_user
  FROM {events} e JOIN {acceptances} a ON a.id = e.acceptance_id
 WHERE e.status = 'accepted'
 ORDER BY a.accepted_at DESC, e.identity LIMIT %(limit)s"""

_DRIFT_STATE: Final = "SELECT scanned_at, baseline_at FROM {state}"


def _masked_attribution(attribution: dict[str, Any] | None) -> dict[str, Any] | None:
    if attribution and isinstance(attribution.get("statement"), str):
        return {**attribution, "statement": mask_secrets(attribution["statement"])}
    return attribution


def drift_installed(conn: Conn, schema: str) -> bool:
    """Whether the catalog has drift detection's tables (catalog step "drift")."""
    check_schema_name(schema)
    return _exists(conn, f"{schema}.drift_events", f"{schema}.drift_acceptances", f"{schema}.drift_state")


def drift(conn: Conn, schema: str) -> DriftView | None:
    """Open drift by severity and the latest accepted; None when drift detection is not installed."""
    if not drift_installed(conn, schema):
        return None
    with _reading(conn) as cur:
        cur.execute(_sql(_DRIFT_OPEN, schema))
        opened = [
            DriftItem(
                **{k: row[k] for k in ("identity", "object_type", "change", "severity", "source")},
                electrified=bool(row["electrified"]),
                detail=dict(row["detail"] or {}),
                attribution=_masked_attribution(row["attribution"]),
                first_seen=row["first_seen"].isoformat(),
                last_seen=row["last_seen"].isoformat(),
            )
            for row in cur.fetchall()
        ]
        cur.execute(_sql(_DRIFT_ACCEPTED, schema), {"limit": ACCEPTED_SHOWN})
        accepted = [
            AcceptedItem(
                **{
                    k: row[k]
                    for k in ("identity", "object_type", "change", "severity", "accepted_by", "db_user")
                },
                accepted_at=row["accepted_at"].isoformat(),
            )
            for row in cur.fetchall()
        ]
        cur.execute(_sql(_DRIFT_STATE, schema))
        state = cur.fetchone()
    return DriftView(
        opened,
        accepted,
        scanned_at=state["scanned_at"].isoformat() if state else None,
        baseline_at=state["baseline_at"].isoformat() if state else None,
    )


# -- health ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Health:
    """The strip on top of every page."""

    upstream: str  # "host:port/database", no user or password
    reachable: bool
    error: str | None = None  # why not, passwords scrubbed
    catalog_version: int | None = None  # installed step; None: no catalog
    catalog_latest: int = field(default_factory=latest_version)  # the step this proxy installs
    event_triggers: list[tuple[str, bool]] = field(default_factory=list)  # (name, enabled)
    drift_mode: str = "off"
    instances: list[tuple[str, str]] = field(default_factory=list)  # (instance, last seen)
    connected_hosts: int = 0  # hosts with a proxy's own connection open to this database now
    history: bool = False  # the migration history is installed


_EVENT_TRIGGERS: Final = """
SELECT t.evtname AS name, t.evtenabled <> 'D' AS enabled
  FROM pg_event_trigger t JOIN pg_proc p ON p.oid = t.evtfoid
  JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = %(schema)s ORDER BY t.evtname"""
_VERSION: Final = "SELECT max(v.version) AS version FROM {version} v"

_INSTANCES: Final = """
SELECT m.proxy_instance AS instance, max(m.committed_at) AS seen
  FROM {m} m
 WHERE m.proxy_instance IS NOT NULL AND m.committed_at > now() - %(window)s::interval
 GROUP BY m.proxy_instance ORDER BY seen DESC LIMIT 20"""

_DRIFT_MODE: Final = "SELECT mode FROM {settings}"

# The proxies' own connections name themselves "electric-proxy (catalog)", "(health)", ...; the
# console's is left out. Hosts, not processes: workers and replicas on one host share an address.
_CONNECTED: Final = """
SELECT count(DISTINCT COALESCE(host(a.client_addr), 'local')) AS hosts
  FROM pg_stat_activity a
 WHERE a.datname = current_database() AND a.application_name LIKE 'electric-proxy (%%'
   AND a.application_name <> %(console)s"""


def health(
    conn: Conn, schema: str, upstream: str, configured_drift_mode: str, application_name: str = ""
) -> Health:
    """What the strip shows; `upstream` is the label of the database, already safe to show, and
    `application_name` the console's own connection's."""
    version = _catalog_version(conn, schema)
    with _reading(conn) as cur:
        cur.execute(_EVENT_TRIGGERS, {"schema": schema})
        triggers = [(str(r["name"]), bool(r["enabled"])) for r in cur.fetchall()]
    installed = version is not None and store.history_installed(conn, schema)
    instances: list[tuple[str, str]] = []
    if installed:
        with _reading(conn) as cur:
            cur.execute(_sql(_INSTANCES, schema), {"window": INSTANCES_WINDOW})
            instances = [(r["instance"], r["seen"].isoformat()) for r in cur.fetchall()]
    with _reading(conn) as cur:
        cur.execute(_CONNECTED, {"console": application_name})
        row = cur.fetchone()
    return Health(
        upstream=upstream,
        reachable=True,
        catalog_version=version,
        event_triggers=triggers,
        drift_mode=_drift_mode(conn, schema, configured_drift_mode) if version else configured_drift_mode,
        instances=instances,
        connected_hosts=int(row["hosts"]) if row else 0,
        history=installed,
    )


def _catalog_version(conn: Conn, schema: str) -> int | None:
    """The catalog's installed step (install.py), None when there is no catalog."""
    if not _exists(conn, f"{schema}.schema_version"):
        return None
    with _reading(conn) as cur:
        cur.execute(_sql(_VERSION, schema))
        row = cur.fetchone()
    return None if row is None or row["version"] is None else int(row["version"])


def _exists(conn: Conn, *tables: str) -> bool:
    with _reading(conn) as cur:
        cur.execute(
            "SELECT bool_and(to_regclass(t) IS NOT NULL) AS found FROM unnest(%s::text[]) t", (list(tables),)
        )
        row = cur.fetchone()
    return bool(row and row["found"])


def _drift_mode(conn: Conn, schema: str, configured: str) -> str:
    """The mode the proxies wrote to the catalog (drift detection), else this proxy's config."""
    if not _exists(conn, f"{schema}.drift_settings"):
        return configured
    with _reading(conn) as cur:
        cur.execute(_sql(_DRIFT_MODE, schema))
        row = cur.fetchone()
    return str(row["mode"]) if row else configured


# -- helpers ---------------------------------------------------------------------------------------


@contextmanager
def _reading(conn: Conn) -> Iterator[psycopg.Cursor[dict[str, Any]]]:
    """A read in a transaction of its own (a savepoint inside the caller's), with `search_path`
    pinned to pg_catalog for it, as store.py reads; rows as dicts."""
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(_PIN_SEARCH_PATH)
        yield cur


def _sql(template: str, schema: str) -> sql.Composed:
    check_schema_name(schema)
    return sql.SQL(template).format(
        m=sql.Identifier(schema, "migrations"),
        s=sql.Identifier(schema, "migration_statements"),
        events=sql.Identifier(schema, "drift_events"),
        acceptances=sql.Identifier(schema, "drift_acceptances"),
        state=sql.Identifier(schema, "drift_state"),
        settings=sql.Identifier(schema, "drift_settings"),
        version=sql.Identifier(schema, "schema_version"),
    )
