"""Drift detection against the database: scans, acceptance, and the watcher the proxy runs.

A scan (`scan`), whoever runs it (the watcher, or `electric-proxy drift`):

1. takes the drift advisory lock (session level: one scanner at a time across replicas; the
   watcher gives up when it is taken, the CLI waits), then one REPEATABLE READ transaction, so
   that the live schema, the migrations and the DDL log are read from one MVCC snapshot;
2. compares the cheap fingerprint with the last scan's and stops there when it is unchanged;
3. otherwise reads the live snapshot and the baseline (the first scan takes the live schema as
   the baseline; later ones parse only the baseline objects whose digest differs from the live
   one), asks the history what the migrations committed since the last scan named
   (`_drift_touched`, with a margin; `drift_state.seen_migrations` keeps each migration from
   explaining twice), and the database's DDL log, where the guard's event triggers keep one
   (`_drift_ddl_log`), which of the changed objects a migration or a direct command changed;
4. `drift.reconcile`: explained changes move the baseline, the rest is drift. New drift is held
   for `settle` seconds and read again before it is recorded (the watcher's scans): a
   CREATE INDEX CONCURRENTLY through the proxy is recorded just after it commits;
5. records the drift in `drift_events` (one open row per object; rows whose object no longer
   differs are resolved), logs each new one at WARNING and counts it.

`accept` is a scan that also adopts the live state of the named drift (or all of it) and
records who accepted what in `drift_acceptances`.

The watcher (`DriftWatcher`) first records `drift.mode` and `drift.block_scope` in the database
(`_drift_configure`, which also creates or drops the block trigger on the DDL log: see
sql/routines/drift.sql, BLOCK MODE), then runs a scan every `drift.interval_ms`, and at once when the
database's DDL triggers notify `electric_ddl` (their NOTIFY is delivered at commit): a direct
DDL is then reported within a second, with its attribution, and counted with
source="event_trigger". Replicas that do not hold the lock read the open counts for their
metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from proxy.catalog import drift
from proxy.catalog.install import check_schema_name
from proxy.catalog.snapshot import (
    FORMAT,
    SchemaObject,
    Snapshot,
    read_fingerprint,
    read_snapshot,
)
from proxy.errors import CatalogError
from proxy.metrics import Stats

logger = logging.getLogger(__name__)

# Key of the session-level advisory lock held while scanning: "elecdrif" in ASCII. Not
# install.py's INSTALL_LOCK_KEY.
DRIFT_LOCK_KEY: Final = 0x656C_6563_6472_6966
DDL_CHANNEL: Final = "electric_ddl"
# Migrations committed this long before the last scan still explain changes: one committing
# while the last scan read may not have been visible to it.
_EXPLAIN_MARGIN: Final = "10 seconds"

_TRY_LOCK: Final = b"SELECT pg_catalog.pg_try_advisory_lock(%s)"
_LOCK: Final = b"SELECT pg_catalog.pg_advisory_lock(%s)"
_UNLOCK: Final = b"SELECT pg_catalog.pg_advisory_unlock(%s)"
_REPEATABLE_READ: Final = b"SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"


@dataclass(frozen=True, slots=True)
class Report:
    """The open drift after a scan, as `electric-proxy drift --json` prints it."""

    objects: list[dict[str, Any]]
    new: list[dict[str, Any]] = field(default_factory=list)  # opened by this scan, with "source"
    accepted: list[dict[str, Any]] = field(default_factory=list)
    unchanged: bool = False  # the fingerprint said nothing changed since the last scan
    read_in_full: int = 0  # baseline objects whose digest differed from the live one

    @property
    def in_sync(self) -> bool:
        return not self.objects

    def to_json(self) -> dict[str, Any]:
        return {"status": "in_sync" if self.in_sync else "drift", "objects": self.objects}

    def open_counts(self) -> Counter[str]:
        return Counter(str(o["severity"]) for o in self.objects)


@dataclass(frozen=True, slots=True)
class _Accept:
    identities: tuple[str, ...] | None  # None: all
    by: str


class _Tables:
    """The catalog's drift tables and functions, quoted for one schema."""

    def __init__(self, schema: str) -> None:
        check_schema_name(schema)
        self.schema = schema
        self.state = sql.Identifier(schema, "drift_state")
        self.baseline = sql.Identifier(schema, "drift_baseline")
        self.events = sql.Identifier(schema, "drift_events")
        self.acceptances = sql.Identifier(schema, "drift_acceptances")
        self.touched = sql.Identifier(schema, "_drift_touched")
        self.ddl_log = sql.Identifier(schema, "_drift_ddl_log")
        self.electrified = f"{schema}.electrified"


@dataclass(frozen=True, slots=True)
class _State:
    format: int
    fingerprint: str | None
    scanned_at: datetime
    seen: frozenset[int]  # migrations already used to explain changes


Conn = psycopg.AsyncConnection[Any]


# -- entry points ------------------------------------------------------------------------------------


async def scan(
    conn: Conn, schema: str, *, wait: bool = False, settle: float = 0.0, force: bool = False
) -> Report | None:
    """One scan (see the module's docstring); None when another scanner holds the lock and
    `wait` is false. `conn` must be in autocommit mode, outside a transaction."""
    tables = _Tables(schema)
    if not await _lock(conn, wait):
        return None
    try:
        return await _scan_locked(conn, tables, force=force, settle=settle, accept=None)
    finally:
        await conn.execute(_UNLOCK, (DRIFT_LOCK_KEY,))


async def accept(conn: Conn, schema: str, identities: Sequence[str] | None, by: str) -> Report:
    """Adopt the live state of the drift named by `identities` (all of it when None) as the
    baseline, recorded as accepted by `by`. Raises CatalogError, accepting nothing, when an
    identity names no drifted object."""
    if not by.strip():
        raise CatalogError("drift accept needs --by NAME: who accepts the drift")
    tables = _Tables(schema)
    await _lock(conn, wait=True)
    try:
        request = _Accept(tuple(identities) if identities is not None else None, by)
        return await _scan_locked(conn, tables, force=True, settle=0.0, accept=request)
    finally:
        await conn.execute(_UNLOCK, (DRIFT_LOCK_KEY,))


async def open_report(conn: Conn, schema: str) -> Report:
    """The open drift as last recorded, without scanning."""
    return Report(await _open_objects(conn, _Tables(schema)))


# -- the scan -----------------------------------------------------------------------------------------


async def _lock(conn: Conn, wait: bool) -> bool:
    if wait:
        await conn.execute(_LOCK, (DRIFT_LOCK_KEY,))
        return True
    cursor = await conn.execute(_TRY_LOCK, (DRIFT_LOCK_KEY,))
    row = await cursor.fetchone()
    return bool(row and row[0])


async def _scan_locked(
    conn: Conn, tables: _Tables, *, force: bool, settle: float, accept: _Accept | None
) -> Report:
    for attempt in range(2):
        held = False
        async with conn.transaction():
            await conn.execute(_REPEATABLE_READ)
            state = await _read_state(conn, tables)
            fingerprint = await read_fingerprint(conn, tables.electrified)
            if (
                state is not None
                and state.format == FORMAT
                and state.fingerprint == fingerprint
                and not force
            ):
                return Report(await _open_objects(conn, tables), unchanged=True)
            live = await read_snapshot(conn, tables.schema, tables.electrified)
            if state is None or state.format != FORMAT:
                await _retake_baseline(conn, tables, live, fingerprint)
                return Report(await _open_objects(conn, tables))
            baseline, read_in_full = await _read_baseline(conn, tables, live)
            result, direct, window = await _reconcile(conn, tables, state, baseline, live)
            opened = await _open_signatures(conn, tables)
            fresh = [c for c in result.drift if opened.get(c.key) != _signature(c)]
            if fresh and settle > 0 and attempt == 0 and accept is None:
                held = True
                raise psycopg.Rollback()  # leaves the block; read again after `settle`
            report = await _record(conn, tables, live, fingerprint, result, direct, accept, window)
            return dataclasses.replace(report, read_in_full=read_in_full)
        if held:
            await asyncio.sleep(settle)
    raise AssertionError("unreachable: the second attempt always records")


@dataclass(frozen=True, slots=True)
class _Touched:
    names: frozenset[tuple[str | None, str]]
    schemas: frozenset[str]
    everything: bool
    window: list[int]  # every migration in the window, used now or before


async def _reconcile(
    conn: Conn, tables: _Tables, state: _State, baseline: Snapshot, live: Snapshot
) -> tuple[drift.Reconciled, dict[str, dict[str, Any]], list[int]]:
    touched = await _read_touched(conn, tables, state)
    changed = drift.changed_keys(baseline, live)
    if not changed:
        return drift.Reconciled(baseline, frozenset(), []), {}, touched.window
    explanation, direct = await _explanation(conn, tables, state, touched, baseline, live, changed)
    return drift.reconcile(baseline, live, explanation), direct, touched.window


async def _read_touched(conn: Conn, tables: _Tables, state: _State) -> _Touched:
    """What the migrations not yet used by a scan named, or mentioned."""
    query = sql.SQL(
        "SELECT migration_id, schema_name, object_name, statement FROM {}(%s::timestamptz - %s::interval)"
    ).format(tables.touched)
    cursor = await conn.execute(query, (state.scanned_at, _EXPLAIN_MARGIN))
    names: set[tuple[str | None, str]] = set()
    schemas: set[str] = set()
    everything = False
    window: set[int] = set()
    for migration_id, schema_name, object_name, statement in await cursor.fetchall():
        window.add(int(migration_id))
        if migration_id in state.seen:
            continue
        if object_name is not None:
            names.add((schema_name, object_name))
        if statement is not None:
            names |= drift.statement_names(statement)
            reached, unnamed = drift.statement_reach(statement)
            schemas |= reached
            everything = everything or unnamed
    return _Touched(frozenset(names), frozenset(schemas), everything, sorted(window))


async def _explanation(
    conn: Conn,
    tables: _Tables,
    state: _State,
    touched: _Touched,
    baseline: Snapshot,
    live: Snapshot,
    changed: set[str],
) -> tuple[drift.Explanation, dict[str, dict[str, Any]]]:
    """The explanation, and the latest direct (not migrated) logged command per key, for
    attribution. A key that a migration not yet used by a scan logged in the window is
    explained: with ALTER TABLE logged on the table, a migration's column and a direct one on the
    same table look alike, and a missed drift is better than a false one. Commands of migrations
    an earlier scan used explain nothing more."""
    candidates = sorted({k for key in changed for k in drift.lineage(key, baseline, live)})
    rows = await _read_ddl_log(conn, tables, candidates, state.scanned_at)
    logged: dict[str, bool] = {}
    direct: dict[str, dict[str, Any]] = {}
    for row in rows:  # newest first
        key, migration = row["object_key"], row["migration_id"]
        if migration is None:
            logged.setdefault(key, False)
            direct.setdefault(key, row)
        elif migration not in state.seen:
            logged[key] = True
    explanation = drift.Explanation(
        names=touched.names, schemas=touched.schemas, everything=touched.everything, logged=logged
    )
    return explanation, direct


async def _read_ddl_log(
    conn: Conn, tables: _Tables, keys: list[str], since: datetime
) -> list[dict[str, Any]]:
    query = sql.SQL(
        "SELECT object_key, id, txid, migration_id, pid, role_name, application_name, client_addr,"
        " command_tag, object_identity, statement, logged_at FROM {}(%s, %s::timestamptz - %s::interval)"
    ).format(tables.ddl_log)
    cursor = await conn.execute(query, (keys, since, _EXPLAIN_MARGIN))
    names = [column.name for column in cursor.description or ()]
    return [dict(zip(names, row, strict=True)) for row in await cursor.fetchall()]


def _attribution(change: drift.Change, baseline: Snapshot, live: Snapshot, direct: Mapping[str, Any]) -> Any:
    """Who made the change: the DDL log's latest direct command on it or what it hangs from."""
    for key in change.keys:
        for candidate in drift.lineage(key, baseline, live):
            row = direct.get(candidate)
            if row is not None:
                return {
                    "txid": row["txid"],
                    "pid": row["pid"],
                    "role": row["role_name"],
                    "application_name": row["application_name"],
                    "client_addr": row["client_addr"],
                    "command_tag": row["command_tag"],
                    "object_identity": row["object_identity"],
                    "statement": row["statement"],
                    "logged_at": row["logged_at"].isoformat() if row["logged_at"] is not None else None,
                }
    return None


def _signature(change: drift.Change) -> str:
    return json.dumps([change.change, change.severity, change.detail()], sort_keys=True, default=str)


# -- reads ---------------------------------------------------------------------------------------------


async def _read_state(conn: Conn, tables: _Tables) -> _State | None:
    query = sql.SQL("SELECT format, fingerprint, scanned_at, seen_migrations FROM {}").format(tables.state)
    cursor = await conn.execute(query)
    row = await cursor.fetchone()
    return _State(int(row[0]), row[1], row[2], frozenset(row[3])) if row is not None else None


async def _read_baseline(conn: Conn, tables: _Tables, live: Snapshot) -> tuple[Snapshot, int]:
    """The baseline, and how many of its objects were read in full: those whose digest differs
    from the live object's (or that exist on one side only). The others equal their live
    counterparts, which stand in for them."""
    cursor = await conn.execute(sql.SQL("SELECT key, digest FROM {}").format(tables.baseline))
    stored: dict[str, str] = dict(await cursor.fetchall())
    differing = sorted(key for key, digest in stored.items() if _live_digest(live, key) != digest)
    objects = [o for key, o in live.objects.items() if key in stored and key not in differing]
    if differing:
        cursor = await conn.execute(
            sql.SQL("SELECT object FROM {} WHERE key = ANY(%s)").format(tables.baseline), (differing,)
        )
        objects.extend(SchemaObject.from_json(row[0]) for row in await cursor.fetchall())
    return Snapshot.build(objects), len(differing)


def _live_digest(live: Snapshot, key: str) -> str | None:
    found = live.objects.get(key)
    return found.digest if found is not None else None


async def _open_signatures(conn: Conn, tables: _Tables) -> dict[str, str]:
    query = sql.SQL("SELECT object_key, change, severity, detail FROM {} WHERE status = 'open'").format(
        tables.events
    )
    cursor = await conn.execute(query)
    return {
        key: json.dumps([change, severity, detail], sort_keys=True, default=str)
        for key, change, severity, detail in await cursor.fetchall()
    }


_SEVERITY_ORDER: Final = "array_position(ARRAY['critical', 'high', 'medium', 'low'], severity)"


async def _open_objects(conn: Conn, tables: _Tables) -> list[dict[str, Any]]:
    query = sql.SQL(
        "SELECT identity, object_type, change, severity, electrified, detail, attribution FROM {}"
        " WHERE status = 'open' ORDER BY " + _SEVERITY_ORDER + ", identity, object_key"
    ).format(tables.events)
    cursor = await conn.execute(query)
    names = ("identity", "object_type", "change", "severity", "electrified", "detail", "attribution")
    return [dict(zip(names, row, strict=True)) for row in await cursor.fetchall()]


# -- writes --------------------------------------------------------------------------------------------


async def _retake_baseline(conn: Conn, tables: _Tables, live: Snapshot, fingerprint: str) -> None:
    await conn.execute(sql.SQL("DELETE FROM {}").format(tables.baseline))
    await _write_objects(conn, tables, live.objects.values())
    await conn.execute(
        sql.SQL(
            "UPDATE {} SET status = 'resolved', closed_at = clock_timestamp() WHERE status = 'open'"
        ).format(tables.events)
    )
    await conn.execute(
        sql.SQL(
            "INSERT INTO {} (id, format, fingerprint, baseline_at, scanned_at)"
            " VALUES (true, %s, %s, now(), now())"
            " ON CONFLICT (id) DO UPDATE SET format = excluded.format, fingerprint = excluded.fingerprint,"
            " baseline_at = excluded.baseline_at, scanned_at = excluded.scanned_at"
        ).format(tables.state),
        (FORMAT, fingerprint),
    )
    # The migrations already committed are in the baseline: none of them explains anything more.
    await conn.execute(
        sql.SQL(
            "UPDATE {} SET seen_migrations ="
            " ARRAY(SELECT DISTINCT migration_id FROM {}(now() - %s::interval))"
        ).format(tables.state, tables.touched),
        (_EXPLAIN_MARGIN,),
    )
    logger.info("drift baseline of schema taken: %d objects", len(live.objects))


async def _write_objects(conn: Conn, tables: _Tables, objects: Iterable[SchemaObject]) -> None:
    document = {o.key: o.to_json() for o in objects}
    if not document:
        return
    await conn.execute(
        sql.SQL(
            "INSERT INTO {} (key, object) SELECT key, value FROM jsonb_each(%s::jsonb)"
            " ON CONFLICT (key) DO UPDATE SET object = excluded.object"
        ).format(tables.baseline),
        (json.dumps(document),),
    )


async def _adopt(conn: Conn, tables: _Tables, live: Snapshot, keys: Iterable[str]) -> None:
    keys = set(keys)
    await _write_objects(conn, tables, (live.objects[k] for k in sorted(keys) if k in live.objects))
    gone = sorted(k for k in keys if k not in live.objects)
    if gone:
        await conn.execute(sql.SQL("DELETE FROM {} WHERE key = ANY(%s)").format(tables.baseline), (gone,))


async def _record(
    conn: Conn,
    tables: _Tables,
    live: Snapshot,
    fingerprint: str,
    result: drift.Reconciled,
    direct: Mapping[str, Any],
    accept: _Accept | None,
    window: list[int],
) -> Report:
    adopted = set(result.adopted) | _renamed_only(result.baseline, live)
    remaining = result.drift
    accepted: list[dict[str, Any]] = []
    if accept is not None:
        keys, unknown = drift.accepted_keys(remaining, accept.identities)
        if unknown:
            raise CatalogError("no drift on " + ", ".join(sorted(unknown)))
        chosen = [c for c in remaining if set(c.keys) <= keys]
        accepted = [c.to_json() for c in chosen]
        adopted |= keys
        remaining = drift.diff(drift.adopt(result.baseline, live, keys), live)
        await _write_acceptance(conn, tables, accept, chosen)
    await _adopt(conn, tables, live, adopted)
    new = await _write_events(conn, tables, remaining, result.baseline, live, direct)
    await conn.execute(
        sql.SQL("UPDATE {} SET fingerprint = %s, scanned_at = now(), seen_migrations = %s").format(
            tables.state
        ),
        (fingerprint, window),
    )
    return Report(await _open_objects(conn, tables), new=new, accepted=accepted)


def _renamed_only(baseline: Snapshot, live: Snapshot) -> set[str]:
    """Objects whose attributes are unchanged but whose identity, links or electrified mark are
    not (the columns of a renamed table): never drift by themselves, so the baseline takes their
    live form at once and keeps naming them as they are now."""
    return {
        key
        for key, before in baseline.objects.items()
        if (after := live.objects.get(key)) is not None
        and after is not before
        and after != before
        and after.attrs == before.attrs
    }


async def _write_acceptance(
    conn: Conn, tables: _Tables, request: _Accept, chosen: list[drift.Change]
) -> None:
    cursor = await conn.execute(
        sql.SQL(
            "INSERT INTO {} (accepted_by, identities, changes) VALUES (%s, %s, %s::jsonb) RETURNING id"
        ).format(tables.acceptances),
        (
            request.by,
            list(request.identities) if request.identities is not None else None,
            json.dumps([c.to_json() for c in chosen]),
        ),
    )
    row = await cursor.fetchone()
    assert row is not None
    await conn.execute(
        sql.SQL(
            "UPDATE {} SET status = 'accepted', closed_at = clock_timestamp(), acceptance_id = %s"
            " WHERE status = 'open' AND object_key = ANY(%s)"
        ).format(tables.events),
        (row[0], [c.key for c in chosen]),
    )


async def _write_events(
    conn: Conn,
    tables: _Tables,
    changes: list[drift.Change],
    baseline: Snapshot,
    live: Snapshot,
    direct: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """Open, update and resolve event rows; the newly opened ones (with their source)."""
    opened = await _open_signatures(conn, tables)
    new: list[dict[str, Any]] = []
    for change in changes:
        signature = _signature(change)
        if opened.get(change.key) == signature:
            continue
        attribution = _attribution(change, baseline, live, direct)
        source = "event_trigger" if attribution is not None else "scan"
        row = (
            change.identity,
            change.object_type,
            change.change,
            change.severity,
            change.electrified,
            json.dumps(change.detail(), default=str),
            json.dumps(attribution) if attribution is not None else None,
        )
        if change.key in opened:
            await conn.execute(
                sql.SQL(
                    "UPDATE {} SET identity = %s, object_type = %s, change = %s, severity = %s,"
                    " electrified = %s, detail = %s::jsonb, attribution = COALESCE(%s::jsonb, attribution),"
                    " last_seen = clock_timestamp() WHERE status = 'open' AND object_key = %s"
                ).format(tables.events),
                (*row, change.key),
            )
            continue
        await conn.execute(
            sql.SQL(
                "INSERT INTO {} (object_key, identity, object_type, change, severity, electrified, detail,"
                " attribution, source) VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s)"
            ).format(tables.events),
            (change.key, *row, source),
        )
        new.append({**change.to_json(attribution), "source": source})
    await conn.execute(
        sql.SQL(
            "UPDATE {} SET status = 'resolved', closed_at = clock_timestamp()"
            " WHERE status = 'open' AND object_key <> ALL(%s)"
        ).format(tables.events),
        ([c.key for c in changes],),
    )
    return new


# -- the watcher ------------------------------------------------------------------------------------


class DriftWatcher:
    """Scans one database every `interval` seconds and on the DDL log's notifications.

    Never raises into the proxy: a lost connection is logged at WARNING and retried with
    backoff, like the catalog watcher.
    """

    def __init__(
        self,
        conninfo: str,
        stats: Stats,
        *,
        schema: str,
        interval: float,
        mode: str = "detect",
        block_scope: str = "electrified",
        settle: float = 0.2,
        min_backoff: float = 0.5,
        max_backoff: float = 30.0,
        connect_timeout: int = 10,
    ) -> None:
        check_schema_name(schema)
        self._conninfo = conninfo
        self._stats = stats
        self._schema = schema
        self._interval = interval
        self._mode = mode
        self._block_scope = block_scope
        self._settle = settle
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._backoff = min_backoff
        self._connect_timeout = connect_timeout
        self.database: str = str(conninfo_to_dict(conninfo).get("dbname") or "?")
        self.last_report: Report | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._scanned = asyncio.Condition()
        self.scans = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"drift-watcher-{self.database}"
            )

    def poke(self) -> None:
        """Scan now (a notification would do the same)."""
        self._wake.set()

    async def wait_scans(self, count: int, timeout: float | None = None) -> Report | None:
        """Wait until `count` scans have finished in total; the last report."""

        async def reached() -> Report | None:
            async with self._scanned:
                await self._scanned.wait_for(lambda: self.scans >= count)
                return self.last_report

        return await asyncio.wait_for(reached(), timeout)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            try:
                await self._watch()
                return  # mode "off": configured, nothing to watch
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # whatever happens, the proxy keeps running
                logger.warning(
                    "drift watcher for database %s: %s; retrying in %.1f s",
                    self.database,
                    str(exc).strip() or type(exc).__name__,
                    self._backoff,
                )
            await asyncio.sleep(self._backoff * random.uniform(0.5, 1.0))
            self._backoff = min(self._backoff * 2, self._max_backoff)

    async def _watch(self) -> None:
        conn = await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, connect_timeout=self._connect_timeout
        )
        try:
            await conn.execute(b"SELECT pg_catalog.set_config('search_path', '', false)")
            await self._configure(conn)
            if self._mode == "off":
                return
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(DDL_CHANNEL)))
            while True:
                await self._scan(conn)
                self._backoff = self._min_backoff
                await self._next_trigger(conn)
                async for _ in conn.notifies(timeout=0):
                    pass  # the coming scan covers them all
        finally:
            await conn.close()

    async def _configure(self, conn: Conn) -> None:
        """Tell the database the mode (the block trigger reads it at COMMIT)."""
        query = sql.SQL("SELECT {}(%s, %s)").format(sql.Identifier(self._schema, "_drift_configure"))
        cursor = await conn.execute(query, (self._mode, self._block_scope))
        row = await cursor.fetchone()
        enforceable = bool(row and row[0])
        if self._mode == "block" and not enforceable:
            logger.warning(
                "drift.mode = block in database %s: the database-side guard's DDL log is missing "
                "(its event triggers need a role that may create them); direct DDL is detected, not refused",
                self.database,
            )

    async def _scan(self, conn: Conn) -> None:
        force = self._wake.is_set()
        self._wake.clear()
        report = await scan(conn, self._schema, settle=self._settle, force=force)
        if report is None:  # another replica scans: show what it recorded
            report = await open_report(conn, self._schema)
            if force:  # its scan may have begun before this DDL committed: look again soon
                await asyncio.sleep(0.1)
                self._wake.set()
        for item in report.new:
            self._stats.drift_events[item["source"]] += 1
            logger.warning(
                "schema drift in database %s: %s %s %s (severity %s)%s",
                self.database,
                item["object_type"],
                item["identity"],
                item["change"],
                item["severity"],
                _who(item["attribution"]),
            )
        self._stats.drift_open = report.open_counts()
        async with self._scanned:
            self.last_report = report
            self.scans += 1
            self._scanned.notify_all()

    async def _next_trigger(self, conn: Conn) -> None:
        """Return after `interval`, at a notification, or at `poke()`."""
        if self._wake.is_set():
            return
        notifies = conn.notifies(timeout=self._interval)
        notified = asyncio.ensure_future(anext(notifies, None))
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait((notified, woken), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (notified, woken):
                task.cancel()
            await asyncio.gather(notified, woken, return_exceptions=True)
            await notifies.aclose()
        if notified.done() and not notified.cancelled():
            error = notified.exception()
            if error is not None:
                raise error
            if notified.result() is not None:
                self._wake.set()  # a DDL committed: scan it whatever the fingerprint says


def start_watchers(
    conninfo: str,
    databases: Iterable[str],
    stats: Stats,
    *,
    schema: str,
    interval_ms: int,
    mode: str,
    block_scope: str,
) -> list[DriftWatcher]:
    """One started watcher per managed database, connected with `conninfo`: the role that owns
    the catalog (catalog.admin_url when set, else the upstream URL), since scans write the drift
    tables. With `mode` "off" each only records the mode in its database (so that a block
    trigger left by an earlier run stops refusing) and ends."""
    from psycopg.conninfo import make_conninfo

    watchers = [
        DriftWatcher(
            make_conninfo(conninfo, dbname=database),
            stats,
            schema=schema,
            interval=interval_ms / 1000,
            mode=mode,
            block_scope=block_scope,
        )
        for database in sorted(databases)
    ]
    for watcher in watchers:
        watcher.start()
    return watchers


def _who(attribution: Mapping[str, Any] | None) -> str:
    if not attribution:
        return ""
    return (
        f" by role {attribution.get('role')} (application {attribution.get('application_name')!r},"
        f" pid {attribution.get('pid')}, txid {attribution.get('txid')})"
    )
