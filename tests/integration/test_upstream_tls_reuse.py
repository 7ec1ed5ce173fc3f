"""TLS to the upstream: one client context per target, read again when the CA file is replaced."""

from __future__ import annotations

import shutil
import ssl
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from proxy.embedded import EmbeddedPostgres
from proxy.net import upstream
from proxy.tlsutil import generate_self_signed_cert
from tests.pgfixtures import ALICE_PASSWORD
from tests.proxyfixtures import server_error


@pytest.fixture(scope="module")
def tls_upstream(tls_files: tuple[Path, Path]) -> Iterator[EmbeddedPostgres]:
    cert, key = tls_files
    server = EmbeddedPostgres(ssl_cert=cert, ssl_key=key)
    server.start()
    server.create_role("alice", ALICE_PASSWORD)
    yield server
    server.stop()


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[ssl.SSLContext]:
    """Every context `tls_context` builds, in order."""
    built: list[ssl.SSLContext] = []
    real = upstream.tls_context

    def counting(target: upstream.UpstreamTarget) -> ssl.SSLContext:
        built.append(real(target))
        return built[-1]

    monkeypatch.setattr(upstream, "tls_context", counting)
    return built


def test_one_context_per_target_reread_when_the_ca_file_changes(
    start_proxy,  # type: ignore[no-untyped-def]
    tls_upstream: EmbeddedPostgres,
    tls_files: tuple[Path, Path],
    builds: list[ssl.SSLContext],
    tmp_path: Path,
) -> None:
    root = tmp_path / "root.crt"
    shutil.copy(tls_files[0], root)
    url = f"postgresql://alice:{ALICE_PASSWORD}@127.0.0.1:{tls_upstream.port}/postgres?sslmode=verify-ca&sslrootcert={root}"
    running = start_proxy(url)
    for _ in range(3):
        with psycopg.connect(running.dsn(dbname="postgres")) as conn:
            assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (
                True,
            )
    assert len(builds) == 1
    # Another authority in the same file: the next connection reads it and no longer trusts the server.
    other_ca, _ = generate_self_signed_cert(tmp_path / "other")
    shutil.copy(other_ca, root)
    error = server_error(running.url(database="postgres", sslmode="disable"))
    assert "SSL connection to upstream server" in str(error)
    assert len(builds) == 2
