"""`/metrics` after a scripted workload through two workers: every family with its value.

Clients reach the proxy through a small TCP relay that counts the bytes each way, so the byte
counters are checked against what really crossed the wire; migrations and electrified tables are
checked against the catalog, read directly.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from proxy.embedded import EmbeddedPostgres
from tests.integration.test_ops_health import wait_until
from tests.integration.test_process import ServeProcess, clean_env, http_get, wait_for_port


class CountingRelay:
    """Forwards TCP connections to `port`, counting bytes each way."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.sent = 0  # client -> proxy
        self.received = 0  # proxy -> client
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for source, sink, outbound in ((client, upstream, True), (upstream, client, False)):
                thread = threading.Thread(target=self._pump, args=(source, sink, outbound), daemon=True)
                thread.start()
                self._threads.append(thread)

    def _pump(self, source: socket.socket, sink: socket.socket, outbound: bool) -> None:
        while data := _recv(source):
            with self._lock:
                if outbound:
                    self.sent += len(data)
                else:
                    self.received += len(data)
            sink.sendall(data)
        for sock in (sink, source):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def settle(self) -> None:
        """Wait until every relayed connection has ended."""
        for thread in list(self._threads):
            thread.join(10)

    def close(self) -> None:
        self._listener.close()


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def value(body: str, sample: str) -> float:
    found = re.search(rf"^{re.escape(sample)} (\S+)$", body, re.MULTILINE)
    assert found, f"{sample} missing from /metrics"
    return float(found.group(1))


@pytest.fixture
def fresh_pg() -> Iterator[EmbeddedPostgres]:
    """A server of its own, so that the catalog's counts are this test's alone. The proxy logs in
    as an ordinary role: no event triggers, so the text guard is the one that refuses (the
    database-side guard's refusals are not counted in guard_rejections yet)."""
    server = EmbeddedPostgres()
    server.start()
    server.create_role("owner", OWNER_PASSWORD, createdb=True)
    server.execute("CREATE DATABASE app OWNER owner")
    yield server
    server.stop()


OWNER_PASSWORD = "owner-secret"


def test_metrics_through_two_workers(tmp_path: Path, fresh_pg: EmbeddedPostgres) -> None:
    proc = ServeProcess(
        "--upstream",
        fresh_pg.url("app", user="owner", password=OWNER_PASSWORD),
        "--workers",
        "2",
        cwd=tmp_path,
        env=clean_env(ELECTRIC_PROXY_LISTEN_MAX_CLIENT_CONNECTIONS="50"),
    )
    relay = CountingRelay(proc.port)
    base = f"http://127.0.0.1:{proc.metrics_port}"
    try:
        wait_for_port(proc.port, proc.proc)
        wait_until(lambda: http_get(base + "/readyz")[0] == 200, 20, "ready")
        dsn = f"host=127.0.0.1 port={relay.port} user=owner password={OWNER_PASSWORD} dbname=app"
        # One migration (a transaction with DDL), one electrified table, one rejected DDL.
        with psycopg.connect(dsn) as conn:
            conn.execute("CREATE TABLE items (id uuid PRIMARY KEY, title text)")
            conn.commit()
            conn.execute("ALTER TABLE items ENABLE ELECTRIC")
            conn.commit()
        # A worker learns of the electrification by NOTIFY: until it has, the DROP would pass,
        # so each attempt runs in a transaction that is rolled back.
        deadline = time.monotonic() + 10
        attempts = 0
        while True:
            attempts += 1
            with psycopg.connect(dsn) as conn:
                try:
                    conn.execute("ALTER TABLE items DROP COLUMN title")
                except psycopg.Error as exc:
                    assert exc.sqlstate == "EX010"
                    break
                conn.rollback()
            assert time.monotonic() < deadline, "the DROP COLUMN was never rejected"
        # Ten sessions, each one simple and one extended query; two stay open for the scrape.
        for _ in range(10):
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("SELECT 1")
                conn.execute("SELECT %s::int", (1,))
        open_conns = [psycopg.connect(dsn, autocommit=True) for _ in range(2)]
        for conn in open_conns:
            conn.execute("SELECT 1")
        sessions = 1 + attempts + 10 + 2

        def scraped() -> str:
            return http_get(base + "/metrics")[1]

        # Workers publish about once a second: wait for the totals rather than sleeping.
        wait_until(
            # ... and the TCP probe of wait_for_port, which never logs in.
            lambda: value(scraped(), "electric_proxy_client_connections_accepted_total") == sessions + 1,
            10,
            "every worker's connections",
        )
        body = scraped()
        assert value(body, 'electric_proxy_client_connections{state="idle"}') == 2
        assert value(body, "electric_proxy_config_max_client_connections") == 100  # 50 per worker
        assert value(body, "electric_proxy_config_workers") == 2
        assert value(body, 'electric_proxy_guard_rejections_total{code="EX010"}') == 1
        # Messages the guard inspected (those the prefilter says may hold DDL): the three DDL.
        assert value(body, 'electric_proxy_statements_total{protocol="simple"}') == 2 + attempts
        assert value(body, "electric_proxy_upstream_up") == 1
        assert value(body, "electric_proxy_ready") == 1
        assert value(body, "electric_proxy_upstream_connect_duration_seconds_count") == sessions
        assert value(body, 'electric_proxy_upstream_connect_duration_seconds_bucket{le="+Inf"}') == sessions
        assert re.search(
            r'^electric_proxy_build_info\{pglast_version="[\d.]+",python_version="[^"]+",version="[^"]+"\} 1\.0$',
            body,
            re.MULTILINE,
        )
        assert "_created" not in body
        with psycopg.connect(fresh_pg.url("app")) as direct:
            migrations = direct.execute("SELECT count(*) FROM electric.migrations").fetchone()
        assert migrations is not None and migrations[0] >= 1
        wait_until(
            lambda: value(scraped(), "electric_proxy_migrations_recorded") == migrations[0],
            10,
            "the migration count",
        )
        assert value(body, "electric_proxy_electrified_tables") == 1
        for conn in open_conns:
            conn.close()
        relay.settle()
        wait_until(
            lambda: value(scraped(), "electric_proxy_received_bytes_total") == relay.sent,
            10,
            "bytes from clients",
        )
        body = scraped()
        assert value(body, "electric_proxy_sent_bytes_total") == relay.received
        assert value(body, 'electric_proxy_client_connections{state="idle"}') == 0
    finally:
        relay.close()
        proc.stop()
