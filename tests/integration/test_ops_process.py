"""`serve` as operators run it: SIGHUP reloads what can change live, and the logs keep secrets."""

from __future__ import annotations

import re
import signal
import socket
import ssl
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from proxy.tlsutil import generate_self_signed_cert
from tests.integration.test_ops_health import wait_until
from tests.integration.test_process import ServeProcess, clean_env, http_get, wait_for_port

SSL_REQUEST = struct.pack("!ii", 8, 80877103)


class StderrLines:
    """Collects a process's stderr lines as they come, so a test can wait for one."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._proc = proc
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 10) -> str:
        wait_until(lambda: bool(self.matching(pattern)), timeout, pattern)
        return self.matching(pattern)[-1]

    def matching(self, pattern: str) -> list[str]:
        return [x for x in self.lines if re.search(pattern, x)]

    def all(self) -> str:
        self._thread.join(10)
        return "\n".join(self.lines)


def served_certificate(port: int) -> bytes:
    """The DER certificate the proxy presents after an SSLRequest (no verification)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(SSL_REQUEST)
        assert sock.recv(1) == b"S"
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with context.wrap_socket(sock) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def der(cert: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.read_text())


def write_config(path: Path, level: str, cert: Path, key: Path, extra: str = "") -> None:
    path.write_text(
        f'[log]\nlevel = "{level}"\n[tls]\ncert_file = "{cert}"\nkey_file = "{key}"\n{extra}',
        encoding="utf-8",
    )


@pytest.fixture
def certs(tmp_path: Path) -> Iterator[tuple[tuple[Path, Path], tuple[Path, Path]]]:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    yield generate_self_signed_cert(tmp_path / "a"), generate_self_signed_cert(tmp_path / "b")


def test_sighup_applies_log_level_and_certificate_to_new_connections(
    tmp_path: Path, upstream_url: str, certs: tuple[tuple[Path, Path], tuple[Path, Path]]
) -> None:
    (cert_a, key_a), (cert_b, key_b) = certs
    config = tmp_path / "proxy.toml"
    write_config(config, "info", cert_a, key_a, "[listen]\nmax_client_connections = 10\n")
    proc = ServeProcess("--config", str(config), "--upstream", upstream_url, cwd=tmp_path)
    stderr = StderrLines(proc.proc)
    try:
        wait_for_port(proc.port, proc.proc)
        dsn = f"host=127.0.0.1 port={proc.port} user=alice password=alice-secret dbname=app sslmode=require"
        assert served_certificate(proc.port) == der(cert_a)
        before = psycopg.connect(dsn, autocommit=True)  # open across the reloads
        before.execute("SELECT 1")
        assert not stderr.matching("level=debug")

        write_config(config, "debug", cert_b, key_b, "[listen]\nmax_client_connections = 20\n")
        proc.proc.send_signal(signal.SIGHUP)
        stderr.wait_for("configuration reloaded")
        assert served_certificate(proc.port) == der(cert_b)
        with psycopg.connect(dsn, autocommit=True) as after:
            after.execute("SELECT 1")
        stderr.wait_for(r"level=debug .*session for user=alice")
        assert before.execute("SELECT 2").fetchone() == (2,)  # the open session lived on
        body = http_get(f"http://127.0.0.1:{proc.metrics_port}/metrics")[1]
        assert "electric_proxy_config_max_client_connections 20.0" in body

        config.write_text("[log\nlevel = 'info'\n", encoding="utf-8")  # not TOML
        proc.proc.send_signal(signal.SIGHUP)
        stderr.wait_for("configuration reload failed")
        assert served_certificate(proc.port) == der(cert_b)  # the last good configuration holds
        assert before.execute("SELECT 3").fetchone() == (3,)
        body = http_get(f"http://127.0.0.1:{proc.metrics_port}/metrics")[1]
        assert 'electric_proxy_config_reloads_total{outcome="failure"} 1.0' in body
        assert "electric_proxy_config_last_reload_successful 0.0" in body
        before.close()
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(20) == 0
        assert len(stderr.matching("level=error")) == 1  # the bad file, said once
    finally:
        proc.stop()


def test_logs_hold_no_secret_given_to_the_proxy(tmp_path: Path, upstream_url: str) -> None:
    proxy_password = "proxy-pw-7f3a9c"
    wrong_password = "wrong-pw-0b1e22"
    parameter = "param-secret-5d8e41"
    query_text = "query-text-secret-c4a7"
    proc = ServeProcess(
        "--upstream",
        upstream_url,
        cwd=tmp_path,
        env=clean_env(PG_PROXY_PASSWORD=proxy_password, LOG_LEVEL="debug"),
    )
    stderr = StderrLines(proc.proc)
    try:
        wait_for_port(proc.port, proc.proc)
        dsn = f"host=127.0.0.1 port={proc.port} user=alice dbname=app sslmode=disable"
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(f"{dsn} password={wrong_password}")
        with psycopg.connect(f"{dsn} password={proxy_password}", autocommit=True) as conn:
            conn.execute("SELECT %s::text", (parameter,))
            with pytest.raises(psycopg.Error):
                conn.execute(f"SELECT '{query_text}' FROM no_such_table")
            with pytest.raises(psycopg.Error):
                conn.execute("ELECTRIC GRANT JUNK " + query_text)
            conn.execute(f"CREATE TEMP TABLE t_{query_text.replace('-', '_')} (x text DEFAULT '{parameter}')")
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(20) == 0
        logs = stderr.all()
        assert "authentication failed" in logs  # the run did log its events ...
        for secret in (proxy_password, wrong_password, "alice-secret", parameter, query_text):
            assert secret not in logs  # ... and none of what it was given to keep
        for line in logs.splitlines():
            assert line.startswith("ts=") or line.startswith("electric-proxy:"), line
            if "proxy.net.session" in line:
                assert re.search(r" c=\d+", line), line  # every session line names its connection
    finally:
        proc.stop()


def test_sighup_with_workers_reloads_each_and_reports_a_bad_file_once(
    tmp_path: Path, upstream_url: str
) -> None:
    config = tmp_path / "proxy.toml"
    config.write_text("[listen]\nmax_client_connections = 10\n", encoding="utf-8")
    proc = ServeProcess("--config", str(config), "--upstream", upstream_url, "--workers", "2", cwd=tmp_path)
    stderr = StderrLines(proc.proc)
    base = f"http://127.0.0.1:{proc.metrics_port}"

    def limit() -> str:
        body = http_get(base + "/metrics")[1]
        found = re.search(r"^electric_proxy_config_max_client_connections (\S+)$", body, re.MULTILINE)
        return found.group(1) if found else ""

    try:
        wait_for_port(proc.port, proc.proc)
        wait_until(lambda: limit() == "20.0", 10, "both workers' limits")  # both handle SIGHUP by now
        config.write_text("[listen]\nmax_client_connections = 30\n", encoding="utf-8")
        proc.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: limit() == "60.0", 10, "both workers reloaded")
        assert len(stderr.matching("configuration reloaded")) == 2

        config.write_text("[listen\n", encoding="utf-8")
        proc.proc.send_signal(signal.SIGHUP)
        stderr.wait_for("configuration reload failed")
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(20) == 0
        assert len(stderr.matching("level=error")) == 1  # checked once, by the parent
    finally:
        proc.stop()
