#!/usr/bin/env python3
"""Connection storm: N asyncpg clients connect at once, directly and through the proxy.

Each client connects (all released by one event), runs a few short transactions and closes.
Prints, per target, how many clients failed and how long the connects took. Run from the repo
root: `.venv/bin/python scripts/storm.py --clients 1000`. Starts its own Postgres (with
`max_connections` raised) and a proxy process (`python -m proxy serve`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxy.embedded import EmbeddedPostgres
from proxy.net.server import free_port

PASSWORD = "storm-secret"


async def one_client(dsn: str, go: asyncio.Event, transactions: int, timeout: float) -> tuple[str, float]:
    await go.wait()
    start = time.monotonic()
    try:
        conn = await asyncpg.connect(dsn, timeout=timeout)
    except Exception as exc:
        return f"connect: {type(exc).__name__}: {exc}", time.monotonic() - start
    took = time.monotonic() - start
    try:
        for _ in range(transactions):
            async with conn.transaction():
                await conn.fetchval("SELECT 1")
        await conn.close()
    except Exception as exc:
        return f"query: {type(exc).__name__}: {exc}", took
    return "ok", took


async def migration(dsn: str, go: asyncio.Event, name: str, timeout: float) -> tuple[str, float]:
    """A migration beside the storm: two DDL statements in one transaction."""
    await go.wait()
    try:
        conn = await asyncpg.connect(dsn, timeout=timeout)
        async with conn.transaction():
            await conn.execute(f"CREATE TABLE {name} (id int)")
            await conn.execute(f"ALTER TABLE {name} ADD COLUMN note text")
        await conn.close()
    except Exception as exc:
        return f"migration: {type(exc).__name__}: {exc}", 0.0
    return "ok", 0.0


async def storm(
    dsn: str,
    clients: int,
    transactions: int,
    timeout: float,
    migrations: list[str] = (),  # type: ignore[assignment]
) -> tuple[Counter[str], list[float]]:
    go = asyncio.Event()
    tasks = [asyncio.create_task(one_client(dsn, go, transactions, timeout)) for _ in range(clients)]
    extra = [asyncio.create_task(migration(dsn, go, name, timeout)) for name in migrations]
    await asyncio.sleep(0)
    go.set()
    results = await asyncio.gather(*tasks)
    for outcome, _ in await asyncio.gather(*extra):
        if outcome != "ok":
            results.append((outcome, 0.0))
    return Counter(r for r, _ in results), [t for r, t in results if r == "ok"]


def recorded(pg: EmbeddedPostgres, names: list[str]) -> str:
    """How the history holds the storm's migrations: each once, with its two statements."""
    with pg.connect("storm") as admin:
        rows = admin.execute(
            "SELECT s.migration_id, count(*) FROM electric.migration_statements s"
            " WHERE s.sql LIKE 'CREATE TABLE storm_mig_%' OR s.sql LIKE 'ALTER TABLE storm_mig_%'"
            " GROUP BY s.migration_id"
        ).fetchall()
        total = admin.execute("SELECT count(*) FROM electric.migrations").fetchone()
    ok = len(rows) == len(names) and all(n == 2 for _, n in rows)
    how = "once each, 2 statements" if ok else "WRONGLY"
    count = total[0] if total else "?"
    return f"{len(rows)} of {len(names)} migrations recorded {how}; {count} migrations in the history"


def report(name: str, outcome: Counter[str], times: list[float], wall: float) -> None:
    failed = sum(n for r, n in outcome.items() if r != "ok")
    line = f"{name}: {outcome['ok']} ok, {failed} failed, wall {wall:.1f}s"
    if times:
        times.sort()
        p99 = times[int(len(times) * 0.99) - 1] if len(times) > 1 else times[0]
        line += f", connect median {statistics.median(times):.2f}s p99 {p99:.2f}s max {times[-1]:.2f}s"
    print(line, flush=True)
    for reason, n in outcome.most_common(5):
        if reason != "ok":
            print(f"   {n} x {reason[:160]}")


def wait_for_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, "proxy exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("proxy did not start")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--transactions", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=60.0, help="asyncpg connect timeout")
    parser.add_argument("--skip-direct", action="store_true")
    parser.add_argument("--in-process", action="store_true", help="run the proxy on a thread of this process")
    parser.add_argument("--upstream-sslmode", default="prefer")
    parser.add_argument("--migrations", type=int, default=2, help="migrations run beside the storm")
    args = parser.parse_args()
    upstream_tail = f"?sslmode={args.upstream_sslmode}"
    settings = {"max_connections": str(args.clients + 200)}
    with EmbeddedPostgres(settings=settings) as pg:
        pg.create_role("storm", PASSWORD)
        pg.execute("CREATE DATABASE storm OWNER storm")
        direct = pg.url("storm", user="storm", password=PASSWORD)
        if not args.skip_direct:
            start = time.monotonic()
            outcome, times = asyncio.run(storm(direct, args.clients, args.transactions, args.timeout))
            report("direct", outcome, times, time.monotonic() - start)
        if args.in_process:
            from tests.proxyfixtures import RunningProxy, proxy_config

            running = RunningProxy(proxy_config(direct + upstream_tail))
            try:
                dsn = f"postgresql://storm:{PASSWORD}@127.0.0.1:{running.port}/storm"
                start = time.monotonic()
                outcome, times = asyncio.run(storm(dsn, args.clients, args.transactions, args.timeout))
                report("proxy (in process)", outcome, times, time.monotonic() - start)
            finally:
                running.stop()
            return 0
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ELECTRIC_PROXY_", "PG"))}
        env["ELECTRIC_PROXY_METRICS_ENABLED"] = "false"
        cmd = [sys.executable, "-m", "proxy", "serve", "--listen", f"127.0.0.1:{port}"]
        cmd += ["--upstream", direct + upstream_tail]
        proxy = subprocess.Popen(cmd, env=env, cwd=Path(__file__).resolve().parent.parent)
        try:
            wait_for_port(port, proxy)
            dsn = f"postgresql://storm:{PASSWORD}@127.0.0.1:{port}/storm"
            names = [f"storm_mig_{i}" for i in range(args.migrations)]
            start = time.monotonic()
            outcome, times = asyncio.run(storm(dsn, args.clients, args.transactions, args.timeout, names))
            report("proxy", outcome, times, time.monotonic() - start)
            print(recorded(pg, names), flush=True)
        finally:
            proxy.terminate()
            proxy.wait(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
