"""Install or upgrade the catalog schema (`schema.sql`) in a managed database.

`schema.sql` is cut into numbered steps at its `-- step: N` lines, and
`<schema>.schema_version` records the steps applied. `install` applies the missing steps,
in order, in one transaction that holds a transaction-level advisory lock: proxy replicas
that start together queue on the lock, and each one after the first finds the steps
recorded and applies nothing. A database already at a higher version than this proxy
knows (a newer proxy upgraded it) is left alone.

The catalog schema defaults to `electric`; another name (config `catalog.schema`) is
substituted for `@extschema@` in the script. It must be a lower-case identifier, so it
needs no quoting. The NOTIFY channel stays `electric_catalog` whatever the schema is called;
the payload names the schema.

Errors from Postgres (permissions, a broken connection) propagate as `psycopg.Error`: the
caller decides whether to retry (the catalog watcher does) or to report (the CLI).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
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

_STEP_MARKER: Final = re.compile(r"^-- step: (\d+)[ \t]*$", re.MULTILINE)
# The same rule as config's `catalog.schema` validation; `pg_` names are reserved by Postgres.
_SCHEMA_NAME: Final = re.compile(r"(?!pg_)[a-z_][a-z0-9_]{0,62}")

# Local to the install transaction: CREATE statements resolve types and operators only in
# pg_catalog, whatever the connection's search_path, and IF NOT EXISTS skips stay quiet.
_PREPARE: Final = (
    b"SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true),"
    b" pg_catalog.set_config('client_min_messages', 'warning', true)"
)
_LOCK: Final = b"SELECT pg_catalog.pg_advisory_xact_lock(%s)"
_VERSION_TABLE_EXISTS: Final = b"SELECT pg_catalog.to_regclass(%s) IS NOT NULL"


@dataclass(frozen=True, slots=True)
class Step:
    """One numbered step of `schema.sql`, with the placeholder still in it."""

    version: int
    sql: str


def parse_steps(text: str) -> tuple[Step, ...]:
    """Cut a schema script at its `-- step: N` lines; steps must be numbered 1, 2, 3, ..."""
    markers = list(_STEP_MARKER.finditer(text))
    if not markers:
        raise CatalogError("catalog schema script has no `-- step: N` line")
    steps: list[Step] = []
    for index, marker in enumerate(markers):
        version = int(marker.group(1))
        if version != index + 1:
            raise CatalogError(f"catalog schema step {version} found where step {index + 1} was expected")
        end = markers[index + 1].start() if index + 1 < len(markers) else len(text)
        steps.append(Step(version, text[marker.end() : end]))
    return tuple(steps)


@cache
def schema_steps() -> tuple[Step, ...]:
    """The steps of the packaged `schema.sql`."""
    text = resources.files("proxy.catalog").joinpath("schema.sql").read_text(encoding="utf-8")
    return parse_steps(text)


def latest_version() -> int:
    """The version `install` brings a database to."""
    return schema_steps()[-1].version


def render(step: Step, schema: str = DEFAULT_SCHEMA) -> bytes:
    """The step's SQL for `schema`, ready to send (bytes: psycopg runs it as a script)."""
    check_schema_name(schema)
    return step.sql.replace(SCHEMA_PLACEHOLDER, schema).encode("utf-8")


def check_schema_name(schema: str) -> None:
    if not _SCHEMA_NAME.fullmatch(schema):
        raise ConfigError(
            f"invalid catalog schema name {schema!r}: must be a lower-case SQL identifier "
            "of at most 63 characters, not starting with pg_"
        )


async def install(conn: psycopg.AsyncConnection[Any], schema: str = DEFAULT_SCHEMA) -> int:
    """Bring the catalog in `conn`'s database up to date; return the installed version.

    Runs in its own transaction, committed before returning: `conn` must not be inside one.
    """
    check_schema_name(schema)
    _require_idle(conn.info.transaction_status)
    steps = schema_steps()
    version_table = sql.Identifier(schema, "schema_version")
    async with conn.transaction():
        await conn.execute(_PREPARE)
        await conn.execute(_LOCK, (INSTALL_LOCK_KEY,))
        installed = 0
        cursor = await conn.execute(_VERSION_TABLE_EXISTS, (f"{schema}.schema_version",))
        exists = await cursor.fetchone()
        if exists is not None and exists[0]:
            cursor = await conn.execute(_max_version_query(version_table))
            row = await cursor.fetchone()
            installed = int(row[0]) if row is not None and row[0] is not None else 0
        for step in _missing(steps, installed):
            await conn.execute(render(step, schema))
            await conn.execute(_record_query(version_table), (step.version,))
    return _report(schema, installed, steps)


def install_sync(conn: psycopg.Connection[Any], schema: str = DEFAULT_SCHEMA) -> int:
    """`install` for a blocking connection (the CLI)."""
    check_schema_name(schema)
    _require_idle(conn.info.transaction_status)
    steps = schema_steps()
    version_table = sql.Identifier(schema, "schema_version")
    with conn.transaction():
        conn.execute(_PREPARE)
        conn.execute(_LOCK, (INSTALL_LOCK_KEY,))
        installed = 0
        exists = conn.execute(_VERSION_TABLE_EXISTS, (f"{schema}.schema_version",)).fetchone()
        if exists is not None and exists[0]:
            row = conn.execute(_max_version_query(version_table)).fetchone()
            installed = int(row[0]) if row is not None and row[0] is not None else 0
        for step in _missing(steps, installed):
            conn.execute(render(step, schema))
            conn.execute(_record_query(version_table), (step.version,))
    return _report(schema, installed, steps)


def _require_idle(status: TransactionStatus) -> None:
    # Inside a caller's transaction our SET LOCALs and the lock would outlive install(), and
    # the steps would commit (or not) with the caller's work.
    if status != TransactionStatus.IDLE:
        raise CatalogError("the catalog must be installed outside a transaction")


def _max_version_query(version_table: sql.Identifier) -> sql.Composed:
    return sql.SQL("SELECT pg_catalog.max(version) FROM {}").format(version_table)


def _record_query(version_table: sql.Identifier) -> sql.Composed:
    return sql.SQL("INSERT INTO {} (version) VALUES (%s) ON CONFLICT (version) DO NOTHING").format(
        version_table
    )


def _missing(steps: tuple[Step, ...], installed: int) -> list[Step]:
    return [step for step in steps if step.version > installed]


def _report(schema: str, installed: int, steps: tuple[Step, ...]) -> int:
    latest = steps[-1].version
    if installed > latest:
        logger.warning(
            "catalog schema %s is at version %d, newer than this proxy's %d: left as it is",
            schema,
            installed,
            latest,
        )
        return installed
    if installed < latest:
        logger.info("catalog schema %s upgraded from version %d to %d", schema, installed, latest)
    return latest
