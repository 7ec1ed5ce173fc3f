"""The proxy's in-memory view of a managed database's catalog, for guard decisions without a
round trip.

* `CatalogSnapshot`: an immutable picture of one database: its schemas, its relations, the
  electrified tables (live names, from pg_class, so renames behind the proxy's back show),
  and the indexes of the electrified tables; `database_guard` tells whether the database-side guard's
  event triggers exist and are enabled (then every DDL is judged by the database as well).
* `load_snapshot(conn)`: reads one, in a single statement (one MVCC snapshot, so the parts
  agree with each other).
* `CatalogWatcher`: owns a connection to one database; installs the catalog schema (over a
  connection of its own as catalog.admin_url when that is set), loads a snapshot, LISTENs on
  `electric_catalog` and reloads after each notification (debounced) or on `refresh()`. A
  lost connection is retried with exponential backoff and logged at WARNING; the watcher
  never raises into the proxy, and `snapshot` keeps the last good view.
* `CatalogCache`: one watcher per managed database, started on first use.

Notifications come only from the catalog procedures (electrify, disable, ...). A plain
`CREATE TABLE` or `CREATE INDEX` does not notify: whoever needs the snapshot to show such a
change (the session, after committing DDL on an electrified table) calls `refresh()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Any, Final, NamedTuple, Self

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from proxy.catalog.install import (
    DEFAULT_OWNER_ROLE,
    DEFAULT_SCHEMA,
    NOTIFY_CHANNEL,
    catalog_rewritable,
    check_schema_name,
    event_trigger_names,
    install,
)

logger = logging.getLogger(__name__)

TableKey = tuple[str, str]  # (schema, name), exact as in pg_catalog
CATALOG_APPLICATION_NAME: Final = "electric-proxy (catalog)"


class Relation(NamedTuple):
    oid: int
    relkind: str  # pg_class.relkind: r, p, v, m, f, S, i, I, c


@dataclass(frozen=True, slots=True)
class CatalogSnapshot:
    """One database's catalog at one moment. Read-only; a reload builds a new one."""

    schemas: frozenset[str]
    relations: Mapping[TableKey, Relation]
    electrified: Mapping[TableKey, int]  # table -> its OID
    indexes: Mapping[TableKey, TableKey]  # index of an electrified table -> that table
    version: int | None  # the catalog schema's version; None when it is not installed
    database_guard: bool = False  # the guard's event triggers exist and fire (routines/guard.sql)
    electrified_schemas: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "electrified_schemas", frozenset(schema for schema, _ in self.electrified))

    @classmethod
    def build(
        cls,
        *,
        schemas: Iterable[str] = (),
        relations: Mapping[TableKey, Relation] | None = None,
        electrified: Mapping[TableKey, int] | None = None,
        indexes: Mapping[TableKey, TableKey] | None = None,
        version: int | None = None,
        database_guard: bool = False,
    ) -> CatalogSnapshot:
        """A snapshot from plain values (the mappings are copied and made read-only)."""
        return cls(
            schemas=frozenset(schemas),
            relations=MappingProxyType(dict(relations or {})),
            electrified=MappingProxyType(dict(electrified or {})),
            indexes=MappingProxyType(dict(indexes or {})),
            version=version,
            database_guard=database_guard,
        )

    def relation(self, schema: str, name: str) -> Relation | None:
        return self.relations.get((schema, name))

    def is_electrified(self, schema: str, name: str) -> bool:
        return (schema, name) in self.electrified

    def index_table(self, schema: str, index: str) -> TableKey | None:
        """The electrified table that index `schema.index` belongs to, if any."""
        return self.indexes.get((schema, index))

    def schema_has_electrified(self, schema: str) -> bool:
        return schema in self.electrified_schemas

    @property
    def any_electrified(self) -> bool:
        return bool(self.electrified)


EMPTY_SNAPSHOT: Final = CatalogSnapshot.build()
CAPTURE_VERSION: Final = 2  # the catalog schema version that brings electric.capture
CHECK_VERSION: Final = 3  # ... and the routine files, electric.guard_check among them


def capture_ready(snapshot: CatalogSnapshot | None) -> bool:
    """Whether migrations can be recorded: the catalog has its history tables."""
    return snapshot is not None and (snapshot.version or 0) >= CAPTURE_VERSION


def checks_ready(snapshot: CatalogSnapshot | None) -> bool:
    """Whether the server can run the text guard's checks (electric.guard_check)."""
    return snapshot is not None and (snapshot.version or 0) >= CHECK_VERSION


def database_guard_active(snapshot: CatalogSnapshot | None) -> bool:
    """Whether event triggers in the database enforce the rules on every DDL."""
    return snapshot is not None and snapshot.database_guard


# Temporary schemas belong to single sessions and toast tables to their parents: neither is
# anything a statement can name in a way the guard must resolve from a shared snapshot.
_SCHEMA_FILTER: Final = (
    "n.nspname NOT LIKE 'pg\\_temp\\_%' AND n.nspname NOT LIKE 'pg\\_toast%'"  # also pg_toast_temp_N
)

# Everything in one statement: one MVCC snapshot. Kinds: s schema, r relation, e electrified
# table, i index of an electrified table, v catalog version, g how many of the guard's event
# triggers exist, run our functions and are enabled ('O' origin, 'A' always). Electrified rows whose table was
# dropped behind the proxy's back join nothing and drop out. Operators resolve in pg_catalog,
# which Postgres searches first unless a search_path lists it later; the watcher's own
# connection runs with an empty search_path.
_BASE_QUERY: Final = f"""
SELECT 's', n.nspname::text, NULL::text, NULL::oid, NULL::text, NULL::text, NULL::text
  FROM pg_catalog.pg_namespace n
 WHERE {_SCHEMA_FILTER}
UNION ALL
SELECT 'r', n.nspname::text, c.relname::text, c.oid, c.relkind::text, NULL, NULL
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind <> 't' AND {_SCHEMA_FILTER}
"""
_CATALOG_QUERY: Final = """
UNION ALL
SELECT 'e', n.nspname::text, c.relname::text, c.oid, NULL, NULL, NULL
  FROM {electrified} e
  JOIN pg_catalog.pg_class c ON c.oid = e.relid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
UNION ALL
SELECT 'i', n.nspname::text, i.relname::text, i.oid, NULL, tn.nspname::text, t.relname::text
  FROM {electrified} e
  JOIN pg_catalog.pg_index x ON x.indrelid = e.relid
  JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = i.relnamespace
  JOIN pg_catalog.pg_class t ON t.oid = e.relid
  JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
UNION ALL
SELECT 'v', NULL, NULL, NULL, (SELECT pg_catalog.max(v.version) FROM {schema_version} v)::text, NULL, NULL
UNION ALL
SELECT 'g', NULL, NULL, NULL, (
    SELECT pg_catalog.count(*)
      FROM pg_catalog.pg_event_trigger t
      JOIN pg_catalog.pg_proc p ON p.oid = t.evtfoid
      JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
     WHERE t.evtname IN ({triggers}) AND t.evtenabled IN ('O', 'A') AND n.nspname = {schema_name}
)::text, NULL, NULL
"""
_INSTALLED_QUERY: Final = (
    b"SELECT pg_catalog.to_regclass(%s) IS NOT NULL AND pg_catalog.to_regclass(%s) IS NOT NULL"
)


async def load_snapshot(conn: psycopg.AsyncConnection[Any], schema: str = DEFAULT_SCHEMA) -> CatalogSnapshot:
    """Read `conn`'s database into a snapshot. Without the catalog schema, nothing is electrified."""
    check_schema_name(schema)
    cursor = await conn.execute(_INSTALLED_QUERY, (f"{schema}.electrified", f"{schema}.schema_version"))
    found = await cursor.fetchone()
    installed = found is not None and bool(found[0])
    query: sql.SQL | sql.Composed = sql.SQL(_BASE_QUERY)
    if installed:
        query = query + sql.SQL(_CATALOG_QUERY).format(
            electrified=sql.Identifier(schema, "electrified"),
            schema_version=sql.Identifier(schema, "schema_version"),
            triggers=sql.SQL(", ").join(sql.Literal(name) for name in event_trigger_names(schema)),
            schema_name=sql.Literal(schema),
        )
    cursor = await conn.execute(query)
    return _snapshot_from_rows(await cursor.fetchall())


def _snapshot_from_rows(rows: Iterable[tuple[Any, ...]]) -> CatalogSnapshot:
    schemas: set[str] = set()
    relations: dict[TableKey, Relation] = {}
    electrified: dict[TableKey, int] = {}
    indexes: dict[TableKey, TableKey] = {}
    version: int | None = None
    database_guard = False
    for kind, schema, name, oid, extra, table_schema, table_name in rows:
        if kind == "s":
            schemas.add(schema)
        elif kind == "r":
            relations[(schema, name)] = Relation(int(oid), str(extra))
        elif kind == "e":
            electrified[(schema, name)] = int(oid)
        elif kind == "i":
            indexes[(schema, name)] = (table_schema, table_name)
        elif kind == "v":
            version = int(extra) if extra is not None else None
        elif kind == "g":
            database_guard = int(extra) == len(event_trigger_names())
    return CatalogSnapshot.build(
        schemas=schemas,
        relations=relations,
        electrified=electrified,
        indexes=indexes,
        version=version,
        database_guard=database_guard,
    )


class CatalogWatcher:
    """Keeps `snapshot` current for one database. `start()`, then `wait_ready()`; `close()`."""

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        install_schema: bool = True,
        admin_conninfo: str = "",
        owner_role: str | None = DEFAULT_OWNER_ROLE,
        debounce: float = 0.05,
        min_backoff: float = 0.5,
        max_backoff: float = 30.0,
        connect_timeout: int = 10,
    ) -> None:
        check_schema_name(schema)
        self._conninfo = conninfo
        self._schema = schema
        self._install_schema = install_schema
        # Installs and upgrades the catalog when set (catalog.admin_url); never logged either.
        self._admin_conninfo = admin_conninfo
        self._owner_role = owner_role
        self._warned_rewritable = False
        self._debounce = debounce
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._connect_timeout = connect_timeout
        self._backoff = min_backoff
        # Never log the conninfo itself: it may hold a password.
        self.database: str = str(conninfo_to_dict(conninfo).get("dbname") or "?")
        self.snapshot: CatalogSnapshot | None = None  # None until the first load
        self.connected = False
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._poked = asyncio.Event()
        self._changed = asyncio.Condition()
        self._refresh_waiters: list[asyncio.Future[CatalogSnapshot]] = []

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def ready(self) -> bool:
        return self.snapshot is not None

    def start(self) -> None:
        """Start watching in the background (idempotent); returns at once."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"catalog-watcher-{self.database}"
            )

    async def wait_ready(self, timeout: float | None = None) -> CatalogSnapshot:
        """The first snapshot, once loaded. Raises TimeoutError after `timeout` seconds."""
        return await self.wait_for(lambda _: True, timeout)

    async def wait_for(
        self, predicate: Callable[[CatalogSnapshot], bool], timeout: float | None = None
    ) -> CatalogSnapshot:
        """The first snapshot, current or future, for which `predicate` holds."""

        async def satisfied() -> CatalogSnapshot:
            async with self._changed:
                await self._changed.wait_for(lambda: self.snapshot is not None and predicate(self.snapshot))
                assert self.snapshot is not None
                return self.snapshot

        return await asyncio.wait_for(satisfied(), timeout)

    async def refresh(self) -> CatalogSnapshot:
        """Reload now; returns a snapshot read after this call began.

        Waits through reconnection when the database is unreachable: bound it with
        `asyncio.timeout` if need be.
        """
        if self._task is None:
            raise RuntimeError("CatalogWatcher.refresh() before start()")
        waiter: asyncio.Future[CatalogSnapshot] = asyncio.get_running_loop().create_future()
        self._refresh_waiters.append(waiter)
        self._wake.set()
        return await waiter

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        waiters, self._refresh_waiters = self._refresh_waiters, []
        for waiter in waiters:
            waiter.cancel()

    # -- the background task ---------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            # Jitter keeps replicas that lost the server together from returning in lockstep;
            # the delay is drawn before it is logged, so the log tells the real gap.
            delay = self._backoff * random.uniform(0.5, 1.0)
            try:
                await self._watch()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # whatever happens, the proxy keeps running
                logger.warning(
                    "catalog watcher for database %s: %s; retrying in %.1f s",
                    self.database,
                    str(exc).strip() or type(exc).__name__,
                    delay,
                )
            self._poked.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poked.wait(), delay)
            self._backoff = min(self._backoff * 2, self._max_backoff)

    def poke(self) -> None:
        """Retry now if waiting to reconnect (the health check saw the upstream come back)."""
        self._poked.set()

    async def _watch(self) -> None:
        conn = await psycopg.AsyncConnection.connect(
            self._conninfo,
            autocommit=True,
            connect_timeout=self._connect_timeout,
            # So a DBA can tell it in pg_stat_activity, unless the URL names one itself.
            application_name=conninfo_to_dict(self._conninfo).get("application_name")
            or CATALOG_APPLICATION_NAME,
        )
        try:
            # DESIGN.md, security rules: the proxy's own connections use an empty search_path.
            await conn.execute(b"SELECT pg_catalog.set_config('search_path', '', false)")
            if self._install_schema:
                await self._install(conn)
            # LISTEN before the first load, so no change slips between the two.
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(NOTIFY_CHANNEL)))
            await self._reload(conn)
            self.connected = True
            self._backoff = self._min_backoff
            while True:
                await self._next_trigger(conn)
                # Debounce: a migration electrifying many tables notifies once per table.
                await asyncio.sleep(self._debounce)
                await self._drain(conn)
                await self._reload(conn)
        finally:
            self.connected = False
            await conn.close()

    async def _install(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Install with the admin connection when there is one, else with `conn`; then warn,
        once per watcher, when `conn`'s role (the application's) can rewrite the catalog."""
        app_roles = (conn.info.user,)
        if self._admin_conninfo:
            admin = await psycopg.AsyncConnection.connect(
                self._admin_conninfo, autocommit=True, connect_timeout=self._connect_timeout
            )
            try:
                await admin.execute(b"SELECT pg_catalog.set_config('search_path', '', false)")
                await install(admin, self._schema, owner=self._owner_role, app_roles=app_roles)
            finally:
                await admin.close()
        else:
            await install(conn, self._schema, owner=self._owner_role, app_roles=app_roles)
        if not self._warned_rewritable and await catalog_rewritable(conn, self._schema):
            self._warned_rewritable = True
            logger.warning(
                "catalog schema %s in database %s: the application role %s can rewrite it (delete "
                "the electrified marks, erase the history, replace its functions); set "
                "catalog.admin_url to a role that may create the owner role %s, or see "
                "proxy/catalog/sql/README.md, SECURITY MODEL",
                self._schema,
                self.database,
                conn.info.user,
                self._owner_role,
            )

    async def _next_trigger(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Return at the next notification or refresh request."""
        if self._wake.is_set():
            return
        notifies = conn.notifies()
        notified = asyncio.ensure_future(anext(notifies))
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait((notified, woken), return_when=asyncio.FIRST_COMPLETED)
        finally:
            # notifies() holds the connection's lock while it waits: stop it before reloading.
            # A notification arriving from now on waits in psycopg's backlog.
            for task in (notified, woken):
                task.cancel()
            await asyncio.gather(notified, woken, return_exceptions=True)
            await notifies.aclose()
        if notified.done() and not notified.cancelled():
            error = notified.exception()
            if error is not None:
                raise error  # the connection broke

    async def _drain(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Consume the notifications already received: the coming reload covers them."""
        async for _ in conn.notifies(timeout=0):
            pass

    async def _reload(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._wake.clear()
        waiters, self._refresh_waiters = self._refresh_waiters, []
        try:
            snapshot = await load_snapshot(conn, self._schema)
        except BaseException:
            self._refresh_waiters[:0] = waiters  # still owed a snapshot
            raise
        async with self._changed:
            self.snapshot = snapshot
            self._changed.notify_all()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(snapshot)


class CatalogCache:
    """One `CatalogWatcher` per managed database, each started on first use.

    `conninfo` is the upstream URL; the watcher of database `db` uses it with `dbname=db`, and
    `admin_conninfo` (catalog.admin_url), when set, likewise to install the catalog.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        admin_conninfo: str = "",
        **watcher_options: Any,
    ) -> None:
        check_schema_name(schema)
        self._conninfo = conninfo
        self._admin_conninfo = admin_conninfo
        self._schema = schema
        self._options = watcher_options
        self._watchers: dict[str, CatalogWatcher] = {}

    def watcher(self, database: str) -> CatalogWatcher:
        found = self._watchers.get(database)
        if found is None:
            admin = make_conninfo(self._admin_conninfo, dbname=database) if self._admin_conninfo else ""
            found = CatalogWatcher(
                make_conninfo(self._conninfo, dbname=database),
                schema=self._schema,
                admin_conninfo=admin,
                **self._options,
            )
            found.start()
            self._watchers[database] = found
        return found

    def snapshot(self, database: str) -> CatalogSnapshot | None:
        """The latest snapshot of `database`, None while its watcher has not loaded one."""
        found = self._watchers.get(database)
        return found.snapshot if found is not None else None

    async def close(self) -> None:
        watchers, self._watchers = list(self._watchers.values()), {}
        await asyncio.gather(*(w.close() for w in watchers))

    def not_ready(self, databases: Iterable[str]) -> str | None:
        """Why the catalog of one of `databases` cannot serve the guard now, or None (readiness)."""
        for database in sorted(databases):
            found = self._watchers.get(database)
            if found is None or found.snapshot is None or found.snapshot.version is None:
                return f"catalog of database {database} not installed"
            if not found.connected:
                return f"catalog of database {database} not connected"
        return None

    def poke(self) -> None:
        for watcher in self._watchers.values():
            watcher.poke()
