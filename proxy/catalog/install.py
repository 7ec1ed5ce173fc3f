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

Last, the database-side guard's event triggers (`sql/event_triggers.sql`): only when they are
missing, and only where the installing role may create event triggers (superusers, managed
services' admin roles). The file runs in a savepoint; when Postgres refuses it for lack of
privilege, install rolls back to the savepoint and carries on: the text guard then works alone.

`install` and `install_sync` drive the same plan (`_plan`), a generator that yields the
statements to run and is sent back their rows; each only supplies the connection.

Errors from Postgres (permissions, a broken connection) propagate as `psycopg.Error`: the
caller decides whether to retry (the catalog watcher does) or to report (the CLI).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any, Final, Literal

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
ROUTINES: Final = ("common", "electric", "definitions", "capture", "check", "audit", "auth", "drift", "guard")
# The NOLOGIN role that owns the catalog when the installing role may set one up (config
# `catalog.owner_role`; see `ownership_mode` and sql/README.md, SECURITY MODEL).
DEFAULT_OWNER_ROLE: Final = "electric_owner"

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
_EVENT_TRIGGERS_PRESENT: Final = (
    b"SELECT pg_catalog.count(*) FROM pg_catalog.pg_event_trigger WHERE evtname::text = ANY (%s)"
)


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


@cache
def event_trigger_file() -> RoutineFile:
    """The guard's event triggers: applied apart from the routines, where the role may."""
    file = resources.files("proxy.catalog").joinpath("sql", "event_triggers.sql")
    return RoutineFile("event_triggers", _read(file))


def event_trigger_names(schema: str = DEFAULT_SCHEMA) -> tuple[str, str]:
    """The names `sql/event_triggers.sql` gives the guard's event triggers (they are per database)."""
    check_schema_name(schema)
    return (f"{schema}_guard_ddl_command_end", f"{schema}_guard_sql_drop")


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


async def install(
    conn: psycopg.AsyncConnection[Any],
    schema: str = DEFAULT_SCHEMA,
    *,
    owner: str | None = None,
    app_roles: Iterable[str] = (),
) -> int:
    """Bring the catalog in `conn`'s database up to date; return the installed step version.

    With `owner`, the catalog is then handed to that role where `conn`'s role may set it up
    (`ownership_mode`); `app_roles`, the roles the application connects as, may read the
    catalog's tables. Runs in its own transaction, committed before returning: `conn` must not
    be inside one.
    """
    check_schema_name(schema)
    _require_idle(conn.info.transaction_status)
    plan = _plan(schema, owner, tuple(app_roles))
    async with conn.transaction():
        try:
            request = next(plan)
            while True:
                request = plan.send(await _run_async(conn, request))
        except StopIteration as done:
            version: int = done.value
    return version


def install_sync(
    conn: psycopg.Connection[Any],
    schema: str = DEFAULT_SCHEMA,
    *,
    owner: str | None = None,
    app_roles: Iterable[str] = (),
) -> int:
    """`install` for a blocking connection (the CLI)."""
    check_schema_name(schema)
    _require_idle(conn.info.transaction_status)
    plan = _plan(schema, owner, tuple(app_roles))
    with conn.transaction():
        try:
            request = next(plan)
            while True:
                request = plan.send(_run_sync(conn, request))
        except StopIteration as done:
            version: int = done.value
    return version


async def _run_async(conn: psycopg.AsyncConnection[Any], request: _Request) -> Rows:
    if request.privileged:
        try:
            async with conn.transaction():  # a savepoint: a refusal must not end the install
                await conn.execute(request.query, request.params)
        except psycopg.errors.InsufficientPrivilege:
            return _REFUSED
        return []
    cursor = await conn.execute(request.query, request.params)
    return await cursor.fetchall() if request.fetch else []


def _run_sync(conn: psycopg.Connection[Any], request: _Request) -> Rows:
    if request.privileged:
        try:
            with conn.transaction():  # a savepoint: a refusal must not end the install
                conn.execute(request.query, request.params)
        except psycopg.errors.InsufficientPrivilege:
            return _REFUSED
        return []
    cursor = conn.execute(request.query, request.params)
    return cursor.fetchall() if request.fetch else []


# -- the plan: what to run, without a connection --------------------------------------------

Rows = list[tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class _Request:
    query: bytes | sql.Composed
    # None: sent as a script (simple query protocol)
    params: tuple[Any, ...] | Mapping[str, Any] | None = None
    fetch: bool = False  # whether the plan wants the rows back
    # Run in a savepoint; a lack of privilege rolls back to it and sends back _REFUSED.
    privileged: bool = False


Plan = Generator[_Request, Rows, int]
_REFUSED: Final[Rows] = [("insufficient_privilege",)]


def _plan(schema: str, owner: str | None = None, app_roles: tuple[str, ...] = ()) -> Plan:
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
    if owner is not None:
        yield from _hand_over(schema, owner, app_roles)
    # After the hand-over: the triggers' SECURITY DEFINER functions must not fire while the
    # guard's functions and tables are between owners.
    yield from _apply_event_triggers(schema, guard_changed="guard" in applied)
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


def _apply_event_triggers(schema: str, *, guard_changed: bool) -> Generator[_Request, Rows, None]:
    names = event_trigger_names(schema)
    present = yield _Request(_EVENT_TRIGGERS_PRESENT, (list(names),), fetch=True)
    if present[0][0] == len(names):
        # Left as they are (an administrator may have disabled them on purpose). A new guard.sql
        # may build shapes differently: the stored ones are taken again from the live tables.
        if guard_changed:
            yield _Request(sql.SQL("SELECT {}()").format(sql.Identifier(schema, "_ddlguard_rebaseline")))
        return
    refused = yield _Request(render(event_trigger_file(), schema), privileged=True)
    if refused:
        logger.info(
            "catalog schema %s: the installing role may not create event triggers; "
            "the database-side guard is off and the proxy's text guard works alone",
            schema,
        )
    else:
        logger.info("catalog schema %s: the database-side guard's event triggers are installed", schema)


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


# -- ownership: a catalog the application cannot rewrite (sql/README.md, SECURITY MODEL) -----


@dataclass(frozen=True, slots=True)
class Installer:
    """What the installing role may do about the owner role, read from the server."""

    role: str
    superuser: bool
    createrole: bool
    owner_exists: bool
    acts_as_owner: bool  # has the owner's privileges (pg_has_role USAGE)


OwnershipMode = Literal["create", "adopt"]


def ownership_mode(installer: Installer, owner: str, app_roles: Iterable[str]) -> OwnershipMode | None:
    """How the installer can make `owner` own the catalog: create the role first, adopt the
    existing one, or not at all (None: the catalog stays the installer's, as before).

    CREATEROLE is enough only when the installer is not an application role: since Postgres 16
    the creator of a role holds ADMIN OPTION on it, and before 16 CREATEROLE may grant any
    non-superuser role to anyone, itself included. Either way the application could make itself
    a member of the owner it created.
    """
    if installer.role == owner:
        return None
    if installer.superuser:
        return "adopt" if installer.owner_exists else "create"
    if installer.owner_exists:
        return "adopt" if installer.acts_as_owner else None
    if installer.createrole and installer.role not in set(app_roles):
        return "create"
    return None


_INSTALLER_FACTS: Final = b"""
SELECT current_user::text, r.rolsuper, r.rolcreaterole, o.oid IS NOT NULL,
       COALESCE(pg_catalog.pg_has_role(current_user, o.oid, 'USAGE'), false),
       pg_catalog.current_setting('server_version_num')::int
  FROM pg_catalog.pg_roles r
  LEFT JOIN pg_catalog.pg_roles o ON o.rolname = %s
 WHERE r.rolname = current_user
"""

# Objects of the schema not owned by the owner yet, as ALTER ... OWNER TO wants them named
# (regclass and regprocedure print qualified and quoted under the install's search_path).
# Sequences of identity and serial columns follow their table.
_FOREIGN_OWNED: Final = b"""
SELECT 'SCHEMA', pg_catalog.quote_ident(n.nspname)
  FROM pg_catalog.pg_namespace n
 WHERE n.nspname = %(schema)s AND n.nspowner <> %(owner)s::text::regrole
UNION ALL
SELECT 'TABLE', c.oid::regclass::text
  FROM pg_catalog.pg_class c
 WHERE c.relnamespace = %(schema)s::text::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
   AND c.relowner <> %(owner)s::text::regrole
UNION ALL
SELECT 'SEQUENCE', c.oid::regclass::text
  FROM pg_catalog.pg_class c
 WHERE c.relnamespace = %(schema)s::text::regnamespace AND c.relkind = 'S'
   AND c.relowner <> %(owner)s::text::regrole
   AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d
                    WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid
                      AND d.deptype IN ('a', 'i'))
UNION ALL
SELECT 'ROUTINE', p.oid::regprocedure::text
  FROM pg_catalog.pg_proc p
 WHERE p.pronamespace = %(schema)s::text::regnamespace AND p.proowner <> %(owner)s::text::regrole
   AND p.proname <> 'auth_verifier'  -- reads pg_authid: stays a superuser's (routines/auth.sql)
"""

# Roles other than the owner holding a privilege that writes: on tables anything but SELECT
# (and MAINTAIN, which changes no content), on sequences USAGE or UPDATE (nextval, setval), on
# the schema CREATE. PUBLIC is grantee 0.
_WRITERS: Final = b"""
SELECT DISTINCT x.what, CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(r.rolname) END
  FROM (
    SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCES' ELSE 'TABLES' END AS what, a.grantee
      FROM pg_catalog.pg_class c CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) a
     WHERE c.relnamespace = %(schema)s::text::regnamespace AND a.privilege_type NOT IN ('SELECT', 'MAINTAIN')
    UNION ALL
    SELECT 'SCHEMA', a.grantee
      FROM pg_catalog.pg_namespace n CROSS JOIN LATERAL pg_catalog.aclexplode(n.nspacl) a
     WHERE n.nspname = %(schema)s AND a.privilege_type = 'CREATE'
  ) x
  LEFT JOIN pg_catalog.pg_roles r ON r.oid = x.grantee
 WHERE x.grantee <> %(owner)s::text::regrole
"""
_REVOKES: Final = {
    "TABLES": "REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER"
    " ON ALL TABLES IN SCHEMA {} FROM {}",
    "SEQUENCES": "REVOKE USAGE, UPDATE ON ALL SEQUENCES IN SCHEMA {} FROM {}",
    "SCHEMA": "REVOKE CREATE ON SCHEMA {} FROM {}",
}

# Whether a role lacks SELECT on some table of the catalog (GRANT rewrites the ACL even when
# nothing changes: skip it when there is nothing to grant).
_MAY_NOT_READ: Final = b"""
SELECT COALESCE(pg_catalog.bool_or(NOT pg_catalog.has_table_privilege(%(role)s, c.oid, 'SELECT')), false)
  FROM pg_catalog.pg_class c
 WHERE c.relnamespace = %(schema)s::text::regnamespace AND c.relkind IN ('r', 'p')
"""


def _hand_over(schema: str, owner: str, app_roles: tuple[str, ...]) -> Generator[_Request, Rows, None]:
    """Make `owner` own the schema and everything in it, where the installer may; writes closed
    to everyone else; the application roles may read."""
    check_schema_name(owner)  # the same shape as a schema name: a bare lower-case identifier
    rows = yield _Request(_INSTALLER_FACTS, (owner,), fetch=True)
    role, superuser, createrole, owner_exists, acts_as_owner, server_version = rows[0]
    installer = Installer(role, superuser, createrole, owner_exists, acts_as_owner)
    mode = ownership_mode(installer, owner, app_roles)
    if mode is None:
        return
    if mode == "create":
        yield from _create_owner(owner, superuser=superuser, server_version=server_version)
    names = {"schema": schema, "owner": owner}
    for kind, name in (yield _Request(_FOREIGN_OWNED, names, fetch=True)):
        yield _Request(
            sql.SQL("ALTER {} {} OWNER TO {}").format(sql.SQL(kind), sql.SQL(name), sql.Identifier(owner))
        )
    for what, grantee in (yield _Request(_WRITERS, names, fetch=True)):
        yield _Request(sql.SQL(_REVOKES[what]).format(sql.Identifier(schema), sql.SQL(grantee)))
    for app_role in app_roles:
        lacking = yield _Request(_MAY_NOT_READ, {"role": app_role, "schema": schema}, fetch=True)
        if lacking[0][0]:
            yield _Request(
                sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(
                    sql.Identifier(schema), sql.Identifier(app_role)
                )
            )
    logger.info("catalog schema %s is owned by role %s", schema, owner)


def _create_owner(owner: str, *, superuser: bool, server_version: int) -> Generator[_Request, Rows, None]:
    yield _Request(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(owner)))
    if superuser:
        return
    # A CREATEROLE installer must be able to act as the owner to hand it the objects. From 16 it
    # holds ADMIN OPTION on the role it created, but neither INHERIT nor SET by default.
    options = " WITH INHERIT TRUE, SET TRUE" if server_version >= 160000 else ""
    yield _Request(sql.SQL("GRANT {} TO CURRENT_USER" + options).format(sql.Identifier(owner)))


_REWRITABLE: Final = b"""
SELECT r.rolsuper
    OR pg_catalog.pg_has_role(n.nspowner, 'MEMBER')
    OR pg_catalog.has_schema_privilege(n.oid, 'CREATE')
    OR (r.rolcreaterole AND NOT o.rolsuper
        AND pg_catalog.current_setting('server_version_num')::int < 160000)
    OR EXISTS (SELECT FROM pg_catalog.pg_class c
                WHERE c.relnamespace = n.oid AND c.relkind = 'r'
                  AND pg_catalog.has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE'))
  FROM pg_catalog.pg_namespace n
  JOIN pg_catalog.pg_roles o ON o.oid = n.nspowner
  JOIN pg_catalog.pg_roles r ON r.rolname = current_user
 WHERE n.nspname = %s
"""


async def catalog_rewritable(conn: psycopg.AsyncConnection[Any], schema: str = DEFAULT_SCHEMA) -> bool:
    """Whether `conn`'s role can change the catalog other than through its procedures: it is a
    superuser, has the owner's privileges, may create in the schema or write its tables, or may
    grant itself the owner (CREATEROLE before Postgres 16). False when there is no catalog."""
    cursor = await conn.execute(_REWRITABLE, (schema,))
    row = await cursor.fetchone()
    return bool(row and row[0])
