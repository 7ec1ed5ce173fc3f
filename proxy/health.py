"""Liveness, readiness and the upstream check, and the HTTP app that serves them with `/metrics`.

- `/healthz` (liveness) fails when the event loop has not beaten its heartbeat for longer than
  `[metrics] loop_stall_timeout_ms`: a process whose HTTP thread still answers while the loop is
  stuck on a blocking call is not alive. With workers > 1 the heartbeat checked is the oldest
  worker's, read from the multiprocess files.
- `/readyz` (readiness) fails, with the reason in the body, before start-up ends, while draining,
  while the upstream check fails, and while a managed database's catalog is not installed and
  loaded. Each of these clears itself: nothing needs a restart.

The upstream check runs on the proxy's own connection (`application_name = electric-proxy
(health)`): `SELECT 1`, and the migration count when the history is installed. It backs
`electric_proxy_upstream_up` and `electric_proxy_migrations_recorded`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from proxy.metrics import Stats, metrics_app

logger = logging.getLogger(__name__)

HEALTH_APPLICATION_NAME = "electric-proxy (health)"
CHECK_INTERVAL = 1.0  # seconds between upstream checks
HEARTBEAT_TIMESTAMP = "electric_proxy_event_loop_heartbeat_timestamp_seconds"

ReadinessCheck = Callable[[], str | None]  # None when ready, else why not


@dataclass
class Health:
    """What the HTTP thread asks; the event loop keeps it current."""

    stats: Stats
    stall_timeout: float  # seconds without a heartbeat before /healthz fails
    checks: list[ReadinessCheck] = field(default_factory=list)
    heartbeat: float = field(default_factory=time.monotonic)  # monotonic, for this process
    oldest_heartbeat: Callable[[], float | None] = lambda: None  # wall clock, across workers
    workers_ready: Callable[[], bool] = lambda: True  # every other worker's last published verdict

    def beat(self) -> None:
        self.heartbeat = time.monotonic()
        self.stats.loop_heartbeat = time.time()

    def alive(self) -> str | None:
        """None when alive, else why not."""
        stalled = time.monotonic() - self.heartbeat
        if stalled > self.stall_timeout:
            return f"event loop stalled for {stalled:.1f} s"
        oldest = self.oldest_heartbeat()
        if oldest is not None and time.time() - oldest > self.stall_timeout:
            return f"a worker's event loop stalled for {time.time() - oldest:.1f} s"
        return None

    def not_ready(self) -> str | None:
        """None when this process and every other worker are ready, else the first reason found."""
        reason = self.own_not_ready()
        if reason is None and not self.workers_ready():
            return "a worker is not ready"
        return reason

    def own_not_ready(self) -> str | None:
        """This process's verdict (what it publishes as electric_proxy_ready)."""
        stats = self.stats
        if stats.draining:
            return "draining"
        if not stats.ready:
            return "starting"
        if not stats.upstream_up:
            return "upstream unreachable"
        for check in self.checks:
            reason = check()
            if reason is not None:
                return reason
        return None


def start_heartbeat(health: Health, loop: asyncio.AbstractEventLoop) -> None:
    """Beat while the loop runs; a blocked loop stops beating, and /healthz notices.

    A chain of timer callbacks rather than a task: it ends with the loop, with nothing to cancel.
    """
    interval = min(1.0, health.stall_timeout / 4)

    def beat() -> None:
        health.beat()
        loop.call_later(interval, beat)

    beat()


class UpstreamCheck:
    """Queries the upstream every `CHECK_INTERVAL` on a connection of its own."""

    def __init__(
        self,
        conninfo: str,
        stats: Stats,
        *,
        connect_timeout: float,
        auth_methods: frozenset[str] | None = None,
        history_schema: Callable[[], str | None] = lambda: None,
        on_up: Callable[[], None] = lambda: None,
    ) -> None:
        # The methods the proxy itself would answer on this link (libpq's require_auth): the
        # check never hands a password to a server that asks for it in the clear, or by MD5
        # without TLS, any more than the sessions do.
        extra = {"require_auth": ",".join(sorted(auth_methods))} if auth_methods else {}
        self._conninfo = make_conninfo(conninfo, application_name=HEALTH_APPLICATION_NAME, **extra)
        self._stats = stats
        self._timeout = max(1, round(connect_timeout))
        self._history_schema = history_schema  # the catalog schema once its history is installed
        self._on_up = on_up  # called when the upstream comes back
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._warned_login = False
        self.migrations = 0

    async def run(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(CHECK_INTERVAL)

    async def check(self) -> None:
        was_up = self._stats.upstream_up
        try:
            await self._query()
            up = True
        except (psycopg.Error, OSError) as exc:
            await self.close()
            # A server that answers a login with an error (a wrong password in a passthrough-only
            # URL, a missing database) is reachable: clients bring their own credentials.
            up = _server_answered(exc)
            if up and not self._warned_login:
                self._warned_login = True
                logger.warning("upstream answers but refuses the proxy's own login: %s", _first_line(exc))
            elif was_up and not up:
                logger.warning("upstream check failed: %s", _first_line(exc))
        self._stats.upstream_up = up
        if up and not was_up:
            logger.info("upstream check succeeded")
            self._on_up()

    async def _query(self) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, connect_timeout=self._timeout
            )
            # DESIGN.md, security rules: the proxy's own connections use an empty search_path.
            await self._conn.execute(b"SELECT pg_catalog.set_config('search_path', '', false)")
        schema = self._history_schema()
        if schema is None:
            await self._conn.execute(b"SELECT 1")
            return
        query = sql.SQL("SELECT pg_catalog.count(*) FROM {}").format(sql.Identifier(schema, "migrations"))
        cursor = await self._conn.execute(query)
        row = await cursor.fetchone()
        self.migrations = int(row[0]) if row else 0

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()


def _server_answered(exc: BaseException) -> bool:
    """Whether the error came from a running server (libpq gives its FATAL text, no SQLSTATE)."""
    text = str(exc)
    return "FATAL:" in text and "the database system is" not in text  # starting up, shutting down


def _first_line(exc: BaseException) -> str:
    from proxy.log import scrub

    lines = [line for line in str(exc).splitlines() if line.strip()]
    return scrub(lines[0] if lines else type(exc).__name__)


# -- HTTP ------------------------------------------------------------------------------------------


def health_app(
    health: Health, metrics: Callable[..., Iterable[bytes]], before_scrape: Callable[[], None] = lambda: None
) -> Callable[..., Iterable[bytes]]:
    """`/metrics` from prometheus-client; `/healthz` (alive) and `/readyz` (ready to serve)."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            before_scrape()
            return metrics(environ, start_response)
        verdict = _PROBES.get(path)
        if verdict is None:
            return _plain(start_response, "404 Not Found", "not found")
        ok_text, judge = verdict
        reason = judge(health)
        if reason is None:
            return _plain(start_response, "200 OK", ok_text)
        return _plain(start_response, "503 Service Unavailable", reason)

    return app


_PROBES: dict[str, tuple[str, Callable[[Health], str | None]]] = {
    "/healthz": ("ok", Health.alive),
    "/readyz": ("ready", Health.not_ready),
}


def _plain(start_response: Callable[..., Any], status: str, body: str) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
    return [body.encode() + b"\n"]


def oldest_heartbeat_reader(directory: str) -> Callable[[], float | None]:
    """The oldest worker heartbeat in the multiprocess files (None when there is none yet)."""

    def read() -> float | None:
        from proxy.metrics import multiprocess_registry

        value = multiprocess_registry(directory).get_sample_value(HEARTBEAT_TIMESTAMP)
        return value or None

    return read


def workers_ready_reader(directory: str) -> Callable[[], bool]:
    """Whether every worker that has published said it was ready (`electric_proxy_ready` is the
    lowest worker's). A worker that has not published yet is not counted."""

    def read() -> bool:
        from proxy.metrics import multiprocess_registry

        value = multiprocess_registry(directory).get_sample_value("electric_proxy_ready")
        return value is None or value >= 1

    return read


__all__ = ["Health", "UpstreamCheck", "health_app", "metrics_app", "start_heartbeat"]
