"""Pytest plugin: the proxy running in-process, on its own uvloop thread, in front of `pg`.

`RunningProxy` starts a `ProxyServer` on an ephemeral port and stops it cleanly; tests talk to
it with real clients over real sockets. `proxy` is the default passthrough proxy; tests that
need other settings call `start_proxy(**overrides)`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import asyncpg
import pytest
import uvloop

from proxy.config import Config, load_config
from proxy.embedded import EmbeddedPostgres
from proxy.net.server import ProxyServer
from tests.pgfixtures import ALICE_PASSWORD


class RunningProxy:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.loop = uvloop.new_event_loop()
        self.server = ProxyServer(config)
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.call(self.server.start())
        self.port = self.server.port
        self.host = "127.0.0.1"

    def call(self, coro: Any, timeout: float = 30) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def url(
        self, user: str = "alice", password: str = ALICE_PASSWORD, database: str = "app", **params: str
    ) -> str:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"postgresql://{user}:{password}@{self.host}:{self.port}/{database}" + (
            f"?{query}" if query else ""
        )

    def dsn(self, **overrides: str) -> str:
        params = {
            "host": self.host,
            "port": str(self.port),
            "user": "alice",
            "password": ALICE_PASSWORD,
            "dbname": "app",
            "sslmode": "disable",
        }
        params.update(overrides)
        return " ".join(f"{k}='{v}'" for k, v in params.items())

    @property
    def stats(self) -> Any:
        return self.server.ctx.stats

    def session_count(self) -> int:
        return len(self.server.ctx.sessions)

    def catalog_sees(
        self, predicate: Callable[[Any], bool], database: str = "app", timeout: float = 10
    ) -> None:
        """Wait until the proxy's catalog watcher has loaded a snapshot where `predicate` holds.

        Changes made directly on the database reach the proxy by NOTIFY; tests that make them
        wait for that event instead of sleeping.
        """
        catalog = self.server.ctx.catalog
        assert catalog is not None
        self.call(catalog.watcher(database).wait_for(predicate, timeout))

    def stop(self, grace: float = 2.0) -> None:
        try:
            self.call(self.server.shutdown(grace))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()


def server_error(dsn: str) -> Exception:
    """The error a server sends at login, with its SQLSTATE (libpq keeps only the text)."""

    async def attempt() -> Exception:
        try:
            conn = await asyncpg.connect(dsn)
        except Exception as exc:  # the error is the result
            return exc
        await conn.close()
        raise AssertionError("the connection succeeded")

    return asyncio.run(attempt())


def proxy_config(upstream_url: str, **overrides: object) -> Config:
    base: dict[str, object] = {
        "listen.address": "127.0.0.1",
        "listen.port": 0,
        "upstream.url": upstream_url,
        "metrics.enabled": False,
    }
    base.update(overrides)
    return load_config(None, env={}, overrides=base)


@pytest.fixture(scope="session")
def upstream_url(pg: EmbeddedPostgres) -> str:
    """The proxy's upstream: alice on `app`, plain TCP (the upstream-TLS tests make their own)."""
    return pg.url("app", user="alice", password=ALICE_PASSWORD) + "?sslmode=disable"


@pytest.fixture(scope="session")
def proxy(upstream_url: str) -> Iterator[RunningProxy]:
    running = RunningProxy(proxy_config(upstream_url))
    yield running
    running.stop()


@pytest.fixture
def start_proxy(upstream_url: str) -> Iterator[Callable[..., RunningProxy]]:
    started: list[RunningProxy] = []

    def start(upstream: str | None = None, **overrides: object) -> RunningProxy:
        running = RunningProxy(proxy_config(upstream or upstream_url, **overrides))
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()
