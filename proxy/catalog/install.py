"""Install or upgrade the catalog (the SQL files under `sql/`) in a managed database.

Two kinds of files (sql/README.md says more):
* versioned steps, `sql/steps/NNNN_name.sql`: each runs once, in order, when above the highest
  version recorded in `<schema>.schema_version`, and is recorded there;
* repeatable routine files, `sql/routines/<name>.sql`, in the order of `ROUTINES`: each runs
  after the steps whenever the sha256 of its rendered text differs from the checksum recorded in
  `<schema>.schema_routines`, and is recorded there.

`install` does both in one transaction that holds a transaction-level advisory lock: proxy
replicas that start together queue on the lock, and each one after the first finds everything
recorded and applies nothing. A database already at a higher step version than this proxy knows
(a newer proxy upgraded it) is left alone, routines included.

The catalog schema defaults to `electric`; another name (config `catalog.schema`) is
substituted for `@extschema@` in the files. It must be a lower-case identifier, so it needs no
quoting. The NOTIFY channel stays `electric_catalog` whatever the schema is called; the payload
names the schema.

`install` and `install_sync` drive the same plan (`_plan`), a generator that yields the
statements to run and is sent back their rows; each only supplies the connection.

Errors from Postgres (permissions, a broken connection) propagate as `psycopg.Error`: the
caller decides whether to retry (the catalog watcher does) or to report (the CLI).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

from proxy.errors import CatalogError, ConfigError

logger = logging.getLogger(__name__)

DEFAULT_SCHEMA: Final = "electric"
NOTIFY_CHANNEL: Final = "electric_catalog"
# Key of the transaction-level advisory lock taken while installing: "electric" in ASCII.
# Other advisory locks of the proxy (the drift scan, ...) must use other keys.
INSTALL_LOCK_KEY: Final = 0x656C_6563_7472_6963
SCHEMA_PLACEHOLDER: Final = "@extschema@"
# The repeatable routine files, in the order they are applied: a file may use what the files
# before it define. A new file is one more name here.
ROUTINES: Final = ("common", "electric", "definitions", "capture", "check")

_STEP_FILE: Final = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")
# The same rule as config's `catalog.schema` validation; `pg_` names are reserved by Postgres.
_SCHEMA_NAME: Final = re.compile(r"(?!pg_)[a-z_][a-z0-9_]{0,62}")

# Local to the install transaction: CREATE statements resolve types and operators only in
# pg_catalog, whatever the connection's search_path, and IF NOT EXISTS skips stay quiet.
_PREPARE: Final = (
    b"SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true),"
    b" pg_catalog.set_config('client_min_messages', 'warning', true)"
)
_LOCK: Final = b"SELECT pg_catalog.pg_advisory_xact_lock(%s)"
_TABLE_EXISTS: Final = b"SELECT pg_catalog.to_regclass(%s) IS NOT NULL"


@dataclass(frozen=True, slots=True)
class Step:
    """One versioned step file, with the placeholder still in it."""

    version: int
    sql: str


@dataclass(frozen=True, slots=True)
class RoutineFile:
    """One repeatable routine file, with the placeholder still in it."""

    name: str
    sql: str


def step_versions(names: Iterable[str]) -> list[tuple[int, str]]:
    """The `.sql` names among `names` as (version, name), by version; versions must be 1, 2, 3, ..."""
    numbered: list[tuple[int, str]] = []
    for name in names:
        if not name.endswith(".sql"):
            continue
        match = _STEP_FILE.fullmatch(name)
        if match is None:
            raise CatalogError(f"catalog step file {name!r} is not named NNNN_name.sql")
        numbered.append((int(match.group(1)), name))
    if not numbered:
        raise CatalogError("the catalog has no step files")
    numbered.sort()
    for index, (version, name) in enumerate(numbered):
        if version != index + 1:
            raise CatalogError(f"catalog step file {name!r} found where step {index + 1} was expected")
    return numbered


@cache
def schema_steps() -> tuple[Step, ...]:
    """The packaged step files, in order."""
    folder = resources.files("proxy.catalog").joinpath("sql", "steps")
    numbered = step_versions(entry.name for entry in folder.iterdir())
    return tuple(Step(version, _read(folder.joinpath(name))) for version, name in numbered)


@cache
def routine_files() -> tuple[RoutineFile, ...]:
    """The packaged routine files, in the order of `ROUTINES`."""
    folder = resources.files("proxy.catalog").joinpath("sql", "routines")
    return tuple(RoutineFile(name, _read(folder.joinpath(f"{name}.sql"))) for name in ROUTINES)


def _read(file: Traversable) -> str:
    return file.read_text(encoding="utf-8")


def latest_version() -> int:
    """The step version `install` brings a database to."""
    return schema_steps()[-1].version


def render(script: Step | RoutineFile, schema: str = DEFAULT_SCHEMA) -> bytes:
    """The file's SQL for `schema`, ready to send (bytes: psycopg runs it as a script)."""
    check_schema_name(schema)
    return script.sql.replace(SCHEMA_PLACEHOLDER, schema).encode("utf-8")


def check_schema_name(schema: str) -> None:
    if not _SCHEMA_NAME.fullmatch(schema):
        raise ConfigError(
            f"invalid catalog schema name {schema!r}: must be a lower-case SQL identifier "
            "of at most 63 characters, not starting with pg_"
        )


async def install(conn: psycopg.AsyncConnection[Any], schema: str = DEFAULT_SCHEMA) -> int:
    """Bring the catalog in `conn`'s database up to date; return the installed step version.

    Runs in its own transaction, committed before returning: `conn` must not be inside one.
    """
    check_schema_name(schema)
    _require_idle(conn.info.transaction_status)
    plan = _plan(schema)
    async with conn.transaction():
        try:
            request = next(plan)
            while True:
                cursor = await conn.execute(request.query, request.params)
                request = plan.send(await cursor.fetchall() if request.fetch else [])
        except StopIteration as done:
            version: int = done.value
    return version


def install_sync(conn: psycopg.Connection[Any], schema: str = DEFAULT_SCHEMA) -> int:
    """`install` for a blocking connection (the CLI)."""
    check_schema_name(schema)
    _require_idle(conn.info.transaction_status)
    plan = _plan(schema)
    with conn.transaction():
        try:
            request = next(plan)
            while True:
                cursor = conn.execute(request.query, request.params)
                request = plan.send(cursor.fetchall() if request.fetch else [])
        except StopIteration as done:
            version: int = done.value
    return version


# -- the plan: what to run, without a connection --------------------------------------------

Rows = list[tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class _Request:
    query: bytes | sql.Composed
    params: tuple[Any, ...] | None = None  # None: sent as a script (simple query protocol)
    fetch: bool = False  # whether the plan wants the rows back


Plan = Generator[_Request, Rows, int]


def _plan(schema: str) -> Plan:
    steps = schema_steps()
    latest = steps[-1].version
    yield _Request(_PREPARE)
    yield _Request(_LOCK, (INSTALL_LOCK_KEY,))
    installed = yield from _installed_version(schema)
    if installed > latest:
        logger.warning(
            "catalog schema %s is at version %d, newer than this proxy's %d: left as it is",
            schema,
            installed,
            latest,
        )
        return installed
    version_table = sql.Identifier(schema, "schema_version")
    for step in steps[installed:]:
        yield _Request(render(step, schema))
        yield _Request(_record_step_query(version_table), (step.version,))
    if installed < latest:
        logger.info("catalog schema %s upgraded from version %d to %d", schema, installed, latest)
    applied = yield from _apply_routines(schema)
    if applied:
        logger.info("catalog schema %s: routines applied: %s", schema, ", ".join(applied))
    return latest


def _installed_version(schema: str) -> Generator[_Request, Rows, int]:
    exists = yield _Request(_TABLE_EXISTS, (f"{schema}.schema_version",), fetch=True)
    if not exists[0][0]:
        return 0
    query = sql.SQL("SELECT pg_catalog.max(version) FROM {}").format(sql.Identifier(schema, "schema_version"))
    rows = yield _Request(query, fetch=True)
    return int(rows[0][0]) if rows[0][0] is not None else 0


def _apply_routines(schema: str) -> Generator[_Request, Rows, list[str]]:
    """Apply the routine files whose checksum changed; their names."""
    table = sql.Identifier(schema, "schema_routines")
    rows = yield _Request(sql.SQL("SELECT name, checksum FROM {}").format(table), fetch=True)
    recorded: dict[str, str] = dict(rows)
    applied: list[str] = []
    for routine in routine_files():
        text = render(routine, schema)
        checksum = hashlib.sha256(text).hexdigest()
        if recorded.get(routine.name) == checksum:
            continue
        yield _Request(text)
        yield _Request(_record_routine_query(table), (routine.name, checksum))
        applied.append(routine.name)
    return applied


def _require_idle(status: TransactionStatus) -> None:
    # Inside a caller's transaction our SET LOCALs and the lock would outlive install(), and
    # the steps would commit (or not) with the caller's work.
    if status != TransactionStatus.IDLE:
        raise CatalogError("the catalog must be installed outside a transaction")


def _record_step_query(version_table: sql.Identifier) -> sql.Composed:
    return sql.SQL("INSERT INTO {} (version) VALUES (%s) ON CONFLICT (version) DO NOTHING").format(
        version_table
    )


def _record_routine_query(table: sql.Identifier) -> sql.Composed:
    return sql.SQL(
        "INSERT INTO {} (name, checksum) VALUES (%s, %s)"
        " ON CONFLICT (name) DO UPDATE SET checksum = excluded.checksum, applied_at = excluded.applied_at"
    ).format(table)
