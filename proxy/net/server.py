"""The listener: uvloop, one `Session` per accepted client, signals and graceful drain.

`ProxyServer` is the in-process API (the tests drive it directly); `serve()` is what the CLI
runs: it adds an embedded Postgres when no upstream is configured, the metrics endpoint,
`SO_REUSEPORT` workers and signal handling.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import shutil
import signal
import socket
import ssl
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from typing import cast

import uvloop
from prometheus_client.multiprocess import mark_process_dead

from proxy.catalog.cache import CatalogCache
from proxy.catalog.drift_watch import DriftWatcher, start_watchers
from proxy.config import Config
from proxy.console.app import mount as mount_console
from proxy.ddl.versions import VersionRecognizer
from proxy.errors import ProxyError
from proxy.health import (
    Health,
    UpstreamCheck,
    health_app,
    oldest_heartbeat_reader,
    start_heartbeat,
    workers_ready_reader,
)
from proxy.metrics import (
    MultiprocessMirror,
    build_registry,
    metrics_app,
    multiprocess_registry,
    start_http_server,
)
from proxy.net.context import ProxyContext, server_tls_context
from proxy.net.session import Session
from proxy.net.upstream import UpstreamTarget

logger = logging.getLogger(__name__)
MIRROR_INTERVAL = 1.0  # seconds between a worker's copies of its samples (workers > 1)


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
        self._start_operations()
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
        await self._stop_operations()
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

    # -- operations: health, upstream check, metrics sources ------------------------------------

    # Set by _start_operations; class defaults keep __init__ as it was.
    _health: Health | None = None
    _check: UpstreamCheck | None = None
    _check_task: asyncio.Task[None] | None = None

    @property
    def health(self) -> Health:
        found = self._health
        if found is None:
            stall = self.config.metrics.loop_stall_timeout_ms / 1000
            checks = [self._catalog_not_ready]
            found = self._health = Health(self.ctx.stats, stall_timeout=stall, checks=checks)
        return found

    def _start_operations(self) -> None:
        """Heartbeat, upstream check, and the callables the metrics read at scrape time."""
        stats = self.ctx.stats
        stats.catalog_counts = self._catalog_counts
        stats.limits = _limits(self.config)
        stats.readiness = self.health.own_not_ready
        start_heartbeat(self.health, asyncio.get_running_loop())
        self._check = check = UpstreamCheck(
            self.config.upstream.url,
            stats,
            connect_timeout=self.ctx.target.connect_timeout,
            auth_methods=_check_auth_methods(self.ctx.target),
            history_schema=self._history_schema,
            on_up=self._upstream_back,
        )
        self._check_task = asyncio.get_running_loop().create_task(check.run(), name="upstream-check")

    async def _stop_operations(self) -> None:
        task, check = self._check_task, self._check
        if task is None or check is None:
            return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await check.close()

    def _catalog_not_ready(self) -> str | None:
        catalog = self.ctx.catalog
        if catalog is None:
            return None
        return catalog.not_ready(self.ctx.managed_databases)

    def _upstream_back(self) -> None:
        if self.ctx.catalog is not None:
            self.ctx.catalog.poke()  # reconnect now rather than at the end of the backoff

    def _history_schema(self) -> str | None:
        """The catalog schema, when the upstream URL's database has its history installed."""
        from proxy.catalog.cache import capture_ready

        catalog = self.ctx.catalog
        if catalog is None or self.ctx.target.database not in self.ctx.managed_databases:
            return None
        installed = capture_ready(catalog.snapshot(self.ctx.target.database))
        return self.config.catalog.schema if installed else None

    def _catalog_counts(self) -> tuple[int, int]:
        catalog = self.ctx.catalog
        electrified = 0
        if catalog is not None:
            for database in self.ctx.managed_databases:
                snapshot = catalog.snapshot(database)
                electrified += len(snapshot.electrified) if snapshot is not None else 0
        return self._check.migrations if self._check is not None else 0, electrified

    # -- SIGHUP ---------------------------------------------------------------------------------

    def reload_from(self, load: Callable[[], Config]) -> None:
        """Read the configuration again and apply what can change live; on any error keep the
        running configuration and log one line. Open sessions are not touched."""
        stats = self.ctx.stats
        try:
            new = load()
            applied = self.reload(new)
        except (ProxyError, OSError, ssl.SSLError) as exc:
            stats.reloads["failure"] += 1
            stats.last_reload_ok = False
            logger.error("configuration reload failed, keeping the running configuration: %s", exc)
            return
        stats.reloads["success"] += 1
        stats.last_reload_ok = True
        logger.info("configuration reloaded", extra={"restart_needed": ",".join(applied) or "none"})

    def reload(self, new: Config) -> list[str]:
        """Apply `new`'s live settings (see `LIVE_SETTINGS`); returns the changed settings that
        wait for a restart. Raises before changing anything when the new TLS files are bad."""
        old = self.config
        tls = server_tls_context(new.tls.cert_file, new.tls.key_file) if new.tls.enabled else None
        merged = replace(
            old,
            log=new.log,
            tls=new.tls,
            guard=new.guard,
            shutdown=new.shutdown,
            listen=replace(
                old.listen,
                max_client_connections=new.listen.max_client_connections,
                startup_timeout_ms=new.listen.startup_timeout_ms,
                max_message_bytes=new.listen.max_message_bytes,
            ),
        )
        from proxy.log import configure_logging

        configure_logging(new.log.level, new.log.format)
        self.config = self.ctx.config = merged
        self.ctx.tls = tls
        self.ctx.stats.limits = _limits(merged)
        waiting = [name for name in _RESTART_SETTINGS if _setting(new, name) != _setting(merged, name)]
        for name in waiting:
            logger.warning("%s changed: it takes effect at the next restart", name)
        return waiting


# What SIGHUP applies to new sessions; everything else waits for a restart (docs/operations.md).
LIVE_SETTINGS = (
    "log.level",
    "log.format",
    "tls.cert_file",
    "tls.key_file",
    "guard.*",
    "shutdown.drain_timeout_ms",
    "listen.max_client_connections",
    "listen.startup_timeout_ms",
    "listen.max_message_bytes",
)
_RESTART_SETTINGS = (
    "listen.address",
    "listen.port",
    "listen.workers",
    "upstream.url",
    "upstream.connect_timeout_ms",
    "auth",
    "metrics",
    "catalog",
    "drift",  # the drift watchers take their mode at start and record it in the database
)


def _setting(config: Config, name: str) -> object:
    value: object = config
    for part in name.split("."):
        value = getattr(value, part)
    return value


def _reload_error(load: Callable[[], Config]) -> str | None:
    """Why the configuration cannot be reloaded (logged once), or None."""
    try:
        new = load()
        if new.tls.enabled:
            server_tls_context(new.tls.cert_file, new.tls.key_file)
    except (ProxyError, OSError, ssl.SSLError) as exc:
        logger.error("configuration reload failed, keeping the running configuration: %s", exc)
        return str(exc)
    return None


def _check_auth_methods(target: UpstreamTarget) -> frozenset[str]:
    """What the upstream check may answer: the sessions' policy, TLS counted only where the
    sslmode guarantees it (libpq's require_auth cannot depend on how the link turned out)."""
    tls = target.sslmode in ("require", "verify-ca", "verify-full")
    return target.allowed_methods(tls=tls, secret=bool(target.password))


def _limits(config: Config) -> dict[str, float]:
    """Configured limits, exported so that saturation is one PromQL ratio."""
    listen = config.listen
    return {
        "max_client_connections": listen.max_client_connections or math.inf,
        "workers": listen.workers,
        "max_message_bytes": listen.max_message_bytes,
        "drain_timeout_seconds": config.shutdown.drain_timeout_ms / 1000,
    }


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


def serve(config: Config, reload: Callable[[], Config] | None = None) -> int:
    """Run the proxy until SIGTERM/SIGINT; returns the process exit code.

    `reload` reads the configuration again (file, environment, the same flags): SIGHUP applies
    what can change live (see `ProxyServer.reload`).
    """
    from proxy.log import configure_logging

    configure_logging(config.log.level, config.log.format)
    if reload is not None:
        # Until the loop's handler is installed, a SIGHUP must not end the process (its default).
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    with _upstream_or_embedded(config) as config:
        workers = config.listen.workers
        if workers > 1:
            return _run_workers(config, workers, reload)
        return _run(config, reuse_port=False, metrics=True, reload=reload)


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


def _run(
    config: Config,
    *,
    reuse_port: bool,
    metrics: bool,
    reload: Callable[[], Config] | None = None,
    multiprocess_dir: str | None = None,
) -> int:
    return uvloop.run(
        _main(
            config, reuse_port=reuse_port, metrics=metrics, reload=reload, multiprocess_dir=multiprocess_dir
        ),
    )


async def _main(
    config: Config,
    *,
    reuse_port: bool,
    metrics: bool,
    reload: Callable[[], Config] | None = None,
    multiprocess_dir: str | None = None,
) -> int:
    http = None
    loop = asyncio.get_running_loop()
    try:
        server = ProxyServer(config)
        if reload is not None:
            loop.add_signal_handler(signal.SIGHUP, lambda: server.reload_from(reload))
        mirror = _start_mirror(server, multiprocess_dir, loop) if multiprocess_dir else None
        if metrics and config.metrics.enabled:
            # Up first: /healthz answers and /readyz says 503 while the catalog is installed.
            app = _http_app(server, multiprocess_dir, mirror)
            http = start_http_server(config.metrics.address, config.metrics.port, app)
            mount_console(http, config)  # /console when [console] allows it (proxy/console/)
        await server.start(reuse_port=reuse_port)
    except (OSError, ProxyError) as exc:
        logger.error("cannot start: %s", exc)
        if http is not None:
            http.shutdown()
        return 1
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    logger.info("shutdown requested")
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.stop_now)  # a second signal means now
    await server.shutdown()
    if mirror is not None:
        mirror.publish()  # the last counts of this worker
    if http is not None:
        http.shutdown()
    return 0


def _start_mirror(server: ProxyServer, directory: str, loop: asyncio.AbstractEventLoop) -> MultiprocessMirror:
    """Publish this worker's samples for the serving worker, once a second from the loop."""
    mirror = MultiprocessMirror(server.ctx.stats, directory)

    def tick() -> None:
        mirror.publish()
        loop.call_later(MIRROR_INTERVAL, tick)

    loop.call_soon(tick)
    return mirror


def _http_app(
    server: ProxyServer, multiprocess_dir: str | None, mirror: MultiprocessMirror | None
) -> Callable[..., Iterable[bytes]]:
    health = server.health
    if multiprocess_dir is None or mirror is None:
        return health_app(health, metrics_app(build_registry(server.ctx.stats)))
    health.oldest_heartbeat = oldest_heartbeat_reader(multiprocess_dir)
    health.workers_ready = workers_ready_reader(multiprocess_dir)
    return health_app(health, metrics_app(multiprocess_registry(multiprocess_dir)), mirror.publish)


def _run_workers(config: Config, workers: int, reload: Callable[[], Config] | None) -> int:
    """N processes on one port with SO_REUSEPORT; the kernel spreads the connections.

    Metrics use prometheus-client's multiprocess mode in a directory made here and removed at
    exit; the first worker serves `/metrics` for all of them.
    """
    directory = tempfile.mkdtemp(prefix="electric-proxy-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    children: list[int] = []
    try:
        for index in range(workers):
            pid = os.fork()
            if pid == 0:
                _die_with_parent()
                code = 1
                try:  # whatever happens, a worker never returns into this loop
                    code = _run(
                        config, reuse_port=True, metrics=index == 0, reload=reload, multiprocess_dir=directory
                    )
                finally:
                    os._exit(code)
            children.append(pid)
        _forward_signals(children, reload)
        worst = 0
        for child in children:
            _, status = os.waitpid(child, 0)
            mark_process_dead(child, directory)  # type: ignore[no-untyped-call]
            worst = max(worst, os.waitstatus_to_exitcode(status))
        return worst
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _die_with_parent() -> None:
    """Linux: a worker gets SIGTERM when the parent dies (even by SIGKILL), so none is orphaned
    holding the port."""
    import ctypes

    with suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() == 1:  # the parent died before the call
            os.kill(os.getpid(), signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


def _forward_signals(children: list[int], reload: Callable[[], Config] | None) -> None:
    def forward(signum: int, _frame: object) -> None:
        for child in children:
            with suppress(ProcessLookupError):
                os.kill(child, signum)

    def reload_children(signum: int, frame: object) -> None:
        # Checked once here, so a bad file logs one error, not one per worker.
        if reload is not None and _reload_error(reload) is None:
            forward(signum, frame)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, reload_children)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
