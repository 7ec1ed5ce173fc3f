"""The listener: uvloop, one `Session` per accepted client, signals and graceful drain.

`ProxyServer` is the in-process API (the tests drive it directly); `serve()` is what the CLI
runs: it adds an embedded Postgres when no upstream is configured, the metrics endpoint,
`SO_REUSEPORT` workers and signal handling.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import cast

import uvloop

from proxy.catalog.cache import CatalogCache
from proxy.catalog.drift_watch import DriftWatcher, start_watchers
from proxy.config import Config
from proxy.console.app import mount as mount_console
from proxy.ddl.versions import VersionRecognizer
from proxy.errors import ProxyError
from proxy.metrics import start_http_server
from proxy.net.context import ProxyContext, server_tls_context
from proxy.net.session import Session
from proxy.net.upstream import UpstreamTarget

logger = logging.getLogger(__name__)


class ProxyServer:
    """Accepts clients and relays each to its own upstream connection."""

    def __init__(self, config: Config) -> None:
        self.config = config
        tls = config.tls
        self.ctx = ProxyContext(
            config=config,
            target=UpstreamTarget.from_url(config.upstream.url, config.upstream.connect_timeout_ms / 1000),
            tls=server_tls_context(tls.cert_file, tls.key_file) if tls.enabled else None,
        )
        self.ctx.versions = VersionRecognizer(overrides=config.catalog.version_table_overrides())
        self._server: asyncio.Server | None = None
        self.drift: list[DriftWatcher] = []
        self._stop_now = False

    async def start(self, *, reuse_port: bool = False) -> None:
        listen = self.config.listen
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._new_session,
            listen.address,
            listen.port,
            reuse_port=reuse_port or None,
            backlog=1024,
        )
        await self._start_catalog()
        self.ctx.stats.ready = True
        logger.info("listening on %s", ", ".join(self.addresses))

    async def _start_catalog(self) -> None:
        """Install the catalog in each managed database and load what the guard needs."""
        config = self.config
        if not config.guard.enabled:
            return
        self.ctx.managed_databases = frozenset(config.catalog.databases or (self.ctx.target.database,))
        self.ctx.catalog = CatalogCache(
            config.upstream.url,
            schema=config.catalog.schema,
            admin_conninfo=config.catalog.admin_url,
            owner_role=config.catalog.owner_role,
        )
        for database in sorted(self.ctx.managed_databases):
            try:
                await self.ctx.catalog.watcher(database).wait_ready(2.0)
            except TimeoutError:
                logger.warning("catalog of database %s not ready yet; the watcher keeps trying", database)
        if config.drift.enabled:
            self.drift = start_watchers(
                config.catalog.admin_url or config.upstream.url,  # the drift tables' writer
                self.ctx.managed_databases,
                self.ctx.stats,
                schema=config.catalog.schema,
                interval_ms=config.drift.interval_ms,
                mode=config.drift.mode,
                block_scope=config.drift.block_scope,
            )

    def _new_session(self) -> asyncio.Protocol:
        limit = self.config.listen.max_client_connections
        if self.ctx.stats.draining or (limit and len(self.ctx.sessions) >= limit):
            return _Refuse(self.ctx)
        return Session(self.ctx)

    @property
    def addresses(self) -> list[str]:
        assert self._server is not None
        return [_format(sock.getsockname()) for sock in self._server.sockets]

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def shutdown(self, grace: float | None = None) -> None:
        """Stop accepting, let open transactions finish for up to `grace` seconds, then close."""
        if grace is None:
            grace = self.config.shutdown.drain_timeout_ms / 1000
        self.ctx.stats.draining = True
        if self._server is not None:
            self._server.close()
        sessions = list(self.ctx.sessions)
        logger.info("draining %d connection(s), up to %.1fs", len(sessions), grace)
        for session in sessions:
            session.drain()
        deadline = asyncio.get_running_loop().time() + grace
        while self.ctx.sessions and asyncio.get_running_loop().time() < deadline and not self._stop_now:
            await asyncio.sleep(0.05)
        for session in list(self.ctx.sessions):
            self.ctx.stats.forced_closes += 1
            session.terminate()
        self.ctx.stats.ready = False
        await asyncio.gather(*(watcher.close() for watcher in self.drift))
        if self.ctx.catalog is not None:
            await self.ctx.catalog.close()
        await self.ctx.close()

    def stop_now(self) -> None:
        """Cut the drain short: every connection still open is closed at once."""
        if not self._stop_now:
            logger.info("shutdown requested again: closing %d connection(s) now", len(self.ctx.sessions))
        self._stop_now = True


class _Refuse(asyncio.Protocol):
    """A connection the proxy will not serve: Postgres's "too many clients" answer, then close."""

    def __init__(self, ctx: ProxyContext) -> None:
        self.ctx = ctx

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        from proxy.protocol.messages import error_response

        reason = "draining" if self.ctx.stats.draining else "max_connections"
        self.ctx.stats.rejected[reason] += 1
        message = "the proxy is shutting down" if reason == "draining" else "sorry, too many clients already"
        sqlstate = "57P03" if reason == "draining" else "53300"
        transport = cast(asyncio.Transport, transport)
        transport.write(error_response(ProxyError(message, sqlstate=sqlstate, severity="FATAL")))
        transport.close()


def _format(address: tuple[str, int] | tuple[str, int, int, int] | str) -> str:
    if isinstance(address, str):
        return address
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# -- the `serve` command --------------------------------------------------------------------------


def serve(config: Config) -> int:
    """Run the proxy until SIGTERM/SIGINT; returns the process exit code."""
    from proxy.log import configure_logging

    configure_logging(config.log.level, config.log.format)
    with _upstream_or_embedded(config) as config:
        workers = config.listen.workers
        if workers > 1:
            return _run_workers(config, workers)
        return _run(config, reuse_port=False, metrics=True)


@contextmanager
def _upstream_or_embedded(config: Config) -> Iterator[Config]:
    if config.upstream_configured:
        yield config
        return
    from proxy.embedded import EmbeddedPostgres, embedded_listen_address

    logger.info("no upstream configured: starting an embedded throwaway Postgres")
    with EmbeddedPostgres() as pg:
        url = pg.url("postgres")
        listen = replace(config.listen, address=embedded_listen_address(config.listen))
        config = replace(config, listen=listen)
        port = config.listen.port
        host = "127.0.0.1" if config.listen.address in ("0.0.0.0", "::") else config.listen.address
        print(
            "electric-proxy: embedded Postgres ready; connect through the proxy with\n"
            f"  psql 'postgresql://{pg.user}:{pg.password}@{host}:{port}/postgres'\n"
            "and read the recorded migrations with\n"
            f"  electric-proxy history --upstream '{url}'",
            file=sys.stderr,
            flush=True,
        )
        yield replace(config, upstream=replace(config.upstream, url=url))


def _run(config: Config, *, reuse_port: bool, metrics: bool) -> int:
    return uvloop.run(_main(config, reuse_port=reuse_port, metrics=metrics))


async def _main(config: Config, *, reuse_port: bool, metrics: bool) -> int:
    http = None
    try:
        server = ProxyServer(config)
        if metrics and config.metrics.enabled:
            # Up first: /healthz answers and /readyz says 503 while the catalog is installed.
            http = start_http_server(config.metrics.address, config.metrics.port, server.ctx.stats)
            mount_console(http, config)  # /console when [console] allows it (proxy/console/)
        await server.start(reuse_port=reuse_port)
    except (OSError, ProxyError) as exc:
        logger.error("cannot start: %s", exc)
        if http is not None:
            http.shutdown()
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    logger.info("shutdown requested")
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.stop_now)  # a second signal means now
    await server.shutdown()
    if http is not None:
        http.shutdown()
    return 0


def _run_workers(config: Config, workers: int) -> int:
    """N processes on one port with SO_REUSEPORT; the kernel spreads the connections."""
    children: list[int] = []
    for index in range(workers):
        pid = os.fork()
        if pid == 0:
            code = _run(config, reuse_port=True, metrics=index == 0)
            os._exit(code)
        children.append(pid)

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            os.kill(child, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    worst = 0
    for child in children:
        _, status = os.waitpid(child, 0)
        worst = max(worst, os.waitstatus_to_exitcode(status))
    return worst


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
