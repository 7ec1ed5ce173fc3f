"""Hostile and overwhelming clients: the proxy keeps serving the others, in bounded memory.

Sizes are small enough for CI on a shared 2-core machine; `scripts/storm.py` and
`scripts/hostile.py` run the large versions.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator

import asyncpg
import pytest

from proxy.embedded import EmbeddedPostgres
from tests.pgfixtures import ALICE_PASSWORD
from tests.proxyfixtures import RunningProxy, proxy_config

STORM_CLIENTS = 300


@pytest.fixture(scope="module")
def big_pg() -> Iterator[EmbeddedPostgres]:
    """A server that accepts a storm of connections by itself."""
    with EmbeddedPostgres(settings={"max_connections": str(STORM_CLIENTS + 60)}) as server:
        server.create_role("alice", ALICE_PASSWORD)
        server.execute("CREATE DATABASE app OWNER alice")
        yield server


@pytest.fixture(scope="module")
def storm_proxy(big_pg: EmbeddedPostgres) -> Iterator[RunningProxy]:
    url = big_pg.url("app", user="alice", password=ALICE_PASSWORD)
    # Timeouts shorter than the storm's logins take: they must only bound what clients send.
    overrides = {"listen.startup_timeout_ms": 500, "upstream.connect_timeout_ms": 500}
    running = RunningProxy(proxy_config(url + "?sslmode=prefer", **overrides))
    yield running
    running.stop()


async def _storm(dsn: str, clients: int, transactions: int) -> Counter[str]:
    go = asyncio.Event()

    async def client() -> str:
        await go.wait()
        try:
            conn = await asyncpg.connect(dsn, timeout=60)
        except Exception as exc:
            return f"connect: {type(exc).__name__}: {exc}"
        try:
            for _ in range(transactions):
                async with conn.transaction():
                    await conn.fetchval("SELECT 1")
        except Exception as exc:
            return f"query: {type(exc).__name__}: {exc}"
        finally:
            await conn.close()
        return "ok"

    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    await asyncio.sleep(0)
    go.set()
    return Counter(await asyncio.gather(*tasks))


def test_connection_storm_all_clients_served(storm_proxy: RunningProxy) -> None:
    """Hundreds of clients connecting at once, as many as Postgres accepts: none fails.

    The proxy's start-up timeout used to fire on clients that were waiting on the server's
    own logins (342 of 1,000 failed).
    """
    outcome = asyncio.run(_storm(storm_proxy.url(), STORM_CLIENTS, transactions=3))
    assert outcome == Counter({"ok": STORM_CLIENTS})
