"""The `electric-proxy` command as users run it: serve, signals, health, metrics, check-config."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from proxy.net.server import free_port


def wait_for_port(port: int, proc: subprocess.Popen[str], timeout: float = 20) -> None:
    """Poll until the proxy accepts TCP connections (an event, not a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"proxy exited early: {proc.stderr.read() if proc.stderr else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("proxy did not start listening")


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ELECTRIC_PROXY_", "PG")) and k != "DATABASE_URL"
    }
    env.update(extra)
    return env


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


class ServeProcess:
    def __init__(self, *args: str, cwd: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.metrics_port = free_port()
        cmd = [
            sys.executable,
            "-m",
            "proxy",
            "serve",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--metrics-listen",
            f"127.0.0.1:{self.metrics_port}",
            *args,
        ]
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=env or clean_env(), stderr=subprocess.PIPE, text=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def serve(tmp_path: Path, upstream_url: str) -> Iterator[ServeProcess]:
    proc = ServeProcess(
        "--upstream",
        upstream_url,
        cwd=tmp_path,
        env=clean_env(ELECTRIC_PROXY_SHUTDOWN_DRAIN_TIMEOUT_MS="10000"),
    )
    wait_for_port(proc.port, proc.proc)
    yield proc
    proc.stop()


def dsn(port: int) -> str:
    return f"host=127.0.0.1 port={port} user=alice password=alice-secret dbname=app sslmode=disable"


def test_health_ready_and_metrics(serve: ServeProcess) -> None:
    base = f"http://127.0.0.1:{serve.metrics_port}"
    assert http_get(base + "/healthz")[0] == 200
    deadline = time.monotonic() + 10  # ready once the catalog is installed and loaded
    while http_get(base + "/readyz")[0] != 200:
        assert time.monotonic() < deadline, "never ready"
        time.sleep(0.05)
    with psycopg.connect(dsn(serve.port), autocommit=True) as conn, psycopg.connect(dsn(serve.port)) as tx:
        conn.execute("SELECT 'secret-query-text'")
        tx.execute("SELECT 1")  # leaves a transaction open
        status, body = http_get(base + "/metrics")
    assert status == 200
    assert re.search(r'electric_proxy_client_connections\{state="idle"\} 1\.0', body)
    assert re.search(r'electric_proxy_client_connections\{state="idle_in_transaction"\} 1\.0', body)
    assert re.search(r"electric_proxy_client_connections_accepted_total [1-9]", body)
    assert "secret-query-text" not in body  # metrics never carry query text
    with psycopg.connect(dsn(serve.port), autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE metric_t (id int)")
        with pytest.raises(psycopg.errors.SyntaxError):
            conn.execute("ELECTRIC GRANT JUNK")
    body = http_get(base + "/metrics")[1]
    assert re.search(r'electric_proxy_guard_rejections_total\{code="42601"\} 1\.0', body)
    assert re.search(r"electric_proxy_ddl_statements_captured_total [1-9]", body)
    assert re.search(r'electric_proxy_statements_total\{protocol="simple"\} [1-9]', body)
    assert http_get(base + "/nope")[0] == 404


def test_sigterm_lets_open_transaction_finish_then_exits(serve: ServeProcess) -> None:
    conn = psycopg.connect(dsn(serve.port))
    conn.execute("CREATE TEMP TABLE t (x int)")
    conn.execute("INSERT INTO t VALUES (1)")  # a transaction is open (psycopg is not autocommit)
    idle = psycopg.connect(dsn(serve.port), autocommit=True)
    serve.proc.send_signal(signal.SIGTERM)
    # An idle session is closed at once; new connections are refused.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            psycopg.connect(dsn(serve.port), connect_timeout=1).close()
        except psycopg.OperationalError:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("new connections still accepted while draining")
    assert http_get(f"http://127.0.0.1:{serve.metrics_port}/readyz")[0] == 503
    with pytest.raises(psycopg.OperationalError):
        idle.execute("SELECT 1")
    # The open transaction may finish its work and commit.
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (1,)
    conn.commit()
    assert serve.proc.wait(10) == 0
    conn.close()
    idle.close()


def test_serve_without_upstream_starts_embedded_postgres(tmp_path: Path) -> None:
    proc = ServeProcess(cwd=tmp_path)
    try:
        url = None
        assert proc.proc.stderr is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and url is None:
            line = proc.proc.stderr.readline()
            assert line, "serve exited before printing the URL"
            if found := re.search(r"postgresql://\S+", line):
                url = found.group(0).rstrip("'")
        assert url is not None and f":{proc.port}/" in url
        wait_for_port(proc.port, proc.proc)
        psql = subprocess.run(
            ["psql", url, "-XAtc", "SELECT 40 + 2"], capture_output=True, text=True, timeout=30, check=False
        )
        assert psql.stdout.strip() == "42", psql.stderr
        proc.proc.send_signal(signal.SIGINT)
        assert proc.proc.wait(20) == 0
    finally:
        proc.stop()


def test_check_config_masks_secrets(tmp_path: Path) -> None:
    env = clean_env(DATABASE_URL="postgresql://u:hunter2@db:5432/app", PG_PROXY_PASSWORD="topsecret")
    done = subprocess.run(
        [sys.executable, "-m", "proxy", "check-config"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "hunter2" not in done.stdout and "topsecret" not in done.stdout
    assert 'mode = "password"' in done.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "proxy", "check-config", "--workers", "0"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "workers" in bad.stderr
