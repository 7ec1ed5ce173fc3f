"""Health as an orchestrator sees it: /readyz follows the upstream and the catalog and recovers on
its own; /healthz follows the event loop; `electric-proxy health` turns both into exit codes."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from proxy.embedded import EmbeddedPostgres
from proxy.health import health_app
from proxy.metrics import build_registry, metrics_app, start_http_server
from proxy.net.server import free_port
from tests.integration.test_process import ServeProcess, clean_env, http_get, wait_for_port
from tests.proxyfixtures import RunningProxy


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` (an HTTP probe, a query) until it holds: an event, not a fixed sleep."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def health_cli(proc: ServeProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "proxy",
            "health",
            "--metrics-listen",
            f"127.0.0.1:{proc.metrics_port}",
            *args,
        ],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.fixture
def own_pg() -> Iterator[EmbeddedPostgres]:
    """A server of this test's own, which it may stop and start again on the same port."""
    server = EmbeddedPostgres(port=free_port())
    server.start()
    yield server
    server.stop()


def test_readyz_fails_while_upstream_down_and_recovers_on_its_own(
    tmp_path: Path, own_pg: EmbeddedPostgres
) -> None:
    proc = ServeProcess("--upstream", own_pg.url("postgres"), cwd=tmp_path)
    try:
        wait_for_port(proc.port, proc.proc)
        base = f"http://127.0.0.1:{proc.metrics_port}"
        wait_until(lambda: http_get(base + "/readyz")[0] == 200, 20, "ready")
        assert health_cli(proc, "--ready").returncode == 0
        assert "electric_proxy_upstream_up 1.0" in http_get(base + "/metrics")[1]

        own_pg.stop()  # the upstream goes away: connections refused
        # The catalog watcher may notice first; the upstream check follows within a second.
        wait_until(lambda: http_get(base + "/readyz") == (503, "upstream unreachable\n"), 10, "not ready")
        assert http_get(base + "/healthz")[0] == 200  # alive all the same: no restart wanted
        assert "electric_proxy_upstream_up 0.0" in http_get(base + "/metrics")[1]
        down = health_cli(proc, "--ready")
        assert down.returncode == 1 and "upstream unreachable" in down.stderr
        assert health_cli(proc).returncode == 0

        own_pg.start()  # back on the same port, empty: the catalog is installed again
        wait_until(lambda: http_get(base + "/readyz")[0] == 200, 30, "ready again")
        with psycopg.connect(own_pg.url("postgres")) as conn:
            names = {row[0] for row in conn.execute("SELECT application_name FROM pg_stat_activity")}
        assert {"electric-proxy (catalog)", "electric-proxy (health)"} <= names
    finally:
        proc.stop()


def test_readyz_fails_while_a_managed_catalog_is_not_installed(
    tmp_path: Path, own_pg: EmbeddedPostgres
) -> None:
    proc = ServeProcess(
        "--upstream",
        own_pg.url("postgres"),
        cwd=tmp_path,
        env=clean_env(ELECTRIC_PROXY_CATALOG_DATABASES="postgres,later"),
    )
    try:
        wait_for_port(proc.port, proc.proc)
        base = f"http://127.0.0.1:{proc.metrics_port}"
        wait_until(lambda: "later" in http_get(base + "/readyz")[1], 20, "a reason naming the database")
        status, body = http_get(base + "/readyz")
        assert (status, body.strip()) == (503, "catalog of database later not installed")
        own_pg.execute("CREATE DATABASE later")
        wait_until(lambda: http_get(base + "/readyz")[0] == 200, 40, "ready once the database exists")
    finally:
        proc.stop()


def test_healthz_fails_while_the_event_loop_is_blocked(start_proxy: Callable[..., RunningProxy]) -> None:
    running = start_proxy(**{"metrics.loop_stall_timeout_ms": 300})
    port = free_port()
    app = health_app(running.server.health, metrics_app(build_registry(running.stats)))
    http = start_http_server("127.0.0.1", port, app)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_get(base + "/healthz")[0] == 200, 10, "alive")
        released = threading.Event()
        running.loop.call_soon_threadsafe(released.wait, 10)  # a blocking call on the loop
        try:
            wait_until(lambda: http_get(base + "/healthz")[0] == 503, 5, "stall noticed")
            assert http_get(base + "/healthz")[1].startswith("event loop stalled for ")
        finally:
            released.set()
        wait_until(lambda: http_get(base + "/healthz")[0] == 200, 5, "alive again")
    finally:
        http.shutdown()


def test_health_cli_fails_when_nothing_answers(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "proxy", "health", "--metrics-listen", f"127.0.0.1:{free_port()}"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1 and "cannot reach http://127.0.0.1:" in done.stderr


def test_upstream_that_refuses_the_proxys_own_login_is_still_up(
    start_proxy: Callable[..., RunningProxy], pg: EmbeddedPostgres
) -> None:
    """Passthrough without the guard needs no credentials of its own: clients bring theirs."""
    running = start_proxy(
        pg.url("app", user="alice", password="not-the-password"), **{"guard.enabled": False}
    )
    wait_until(lambda: running.server.health.not_ready() is None, 10, "ready")
    assert running.stats.upstream_up
    with psycopg.connect(running.dsn(), autocommit=True) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_healthz_of_the_serving_worker_sees_another_worker_stall(tmp_path: Path, upstream_url: str) -> None:
    import os
    import signal

    proc = ServeProcess(
        "--upstream",
        upstream_url,
        "--workers",
        "2",
        cwd=tmp_path,
        env=clean_env(ELECTRIC_PROXY_METRICS_LOOP_STALL_TIMEOUT_MS="1500"),
    )
    try:
        wait_for_port(proc.port, proc.proc)
        base = f"http://127.0.0.1:{proc.metrics_port}"
        wait_until(lambda: http_get(base + "/readyz")[0] == 200, 20, "ready")
        children = Path(f"/proc/{proc.proc.pid}/task/{proc.proc.pid}/children").read_text().split()
        assert len(children) == 2
        second = int(sorted(children, key=int)[1])  # the first worker serves HTTP
        os.kill(second, signal.SIGSTOP)  # its loop stops: no heartbeat, nothing published
        try:
            wait_until(lambda: http_get(base + "/healthz")[0] == 503, 10, "the stall seen")
            assert http_get(base + "/healthz")[1].startswith("a worker's event loop stalled")
        finally:
            os.kill(second, signal.SIGCONT)
        wait_until(lambda: http_get(base + "/healthz")[0] == 200, 10, "alive again")
    finally:
        proc.stop()


def test_catalog_watcher_logs_the_delay_it_really_waits(caplog: pytest.LogCaptureFixture) -> None:
    import asyncio
    import logging
    import re as regex

    from proxy.catalog.cache import CatalogWatcher

    url = f"postgresql://u:p@127.0.0.1:{free_port()}/db?connect_timeout=2"  # nothing listens

    async def attempts() -> list[tuple[float, float]]:
        seen: list[tuple[float, float]] = []  # (when logged, delay announced)
        async with CatalogWatcher(url, min_backoff=1.0, max_backoff=1.0):
            while len(seen) < 3:
                await asyncio.sleep(0.01)
                for record in caplog.records[len(seen) :]:
                    found = regex.search(r"retrying in ([\d.]+) s", record.getMessage())
                    assert found, record.getMessage()
                    seen.append((record.created, float(found.group(1))))
        return seen

    with caplog.at_level(logging.WARNING, logger="proxy.catalog.cache"):
        seen = asyncio.run(attempts())
    for (logged, delay), (next_logged, _) in itertools.pairwise(seen):
        assert 0.5 <= delay <= 1.0
        assert abs((next_logged - logged) - delay) < 0.1, (next_logged - logged, delay)
