"""EmbeddedPostgres against real PostgreSQL binaries: the fixture everything else stands on.

One module-scoped server (with TLS and extra hba rules) serves most tests; only the lifecycle
tests start servers of their own.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from proxy.embedded import PG_BIN_ENV, EmbeddedPostgres, EmbeddedPostgresError, find_pg_bin_dir
from proxy.errors import ConfigError
from proxy.tlsutil import generate_self_signed_cert

DEBIAN_PG15 = Path("/usr/lib/postgresql/15/bin")

HBA_EXTRA = (
    "host all md5user 127.0.0.1/32 md5",
    "hostnossl all sslonly 127.0.0.1/32 reject",
)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return generate_self_signed_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def server(tls: tuple[Path, Path]) -> Iterator[EmbeddedPostgres]:
    cert, key = tls
    settings = {"max_connections": "50", "cluster_name": "it's \\ embedded"}
    with EmbeddedPostgres(hba_extra=HBA_EXTRA, ssl_cert=cert, ssl_key=key, settings=settings) as pg:
        yield pg


def _scalar(conninfo: str, query: str) -> object:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(query.encode()).fetchone()
        assert row is not None
        return row[0]


def _stored_password(pg: EmbeddedPostgres, role: str) -> str:
    with pg.connect() as conn:
        row = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", [role]).fetchone()
    assert row is not None
    return str(row[0])


# --- one shared server -------------------------------------------------------------------------


def test_select_version(server: EmbeddedPostgres) -> None:
    version = _scalar(server.url(), "SELECT version()")
    assert str(version).startswith(f"PostgreSQL {server.version}.")


def test_settings_defaults_and_overrides(server: EmbeddedPostgres) -> None:
    with server.connect() as conn:

        def show(name: str) -> str:
            row = conn.execute("SELECT current_setting(%s)", [name]).fetchone()
            assert row is not None
            return str(row[0])

        assert show("wal_level") == "logical"
        assert show("fsync") == "off"
        assert show("listen_addresses") == "127.0.0.1"
        assert show("ssl") == "on"
        assert show("max_connections") == "50"  # caller's settings win over the defaults
        assert show("cluster_name") == "it's \\ embedded"  # quoting survives postgresql.conf


def test_scram_role_connects_and_password_is_url_quoted(server: EmbeddedPostgres) -> None:
    password = "p@ss:w/o%rd #1"
    server.create_role("carol", password)
    assert _stored_password(server, "carol").startswith("SCRAM-SHA-256$")
    url = server.url(user="carol", password=password)
    assert _scalar(url, "SELECT current_user") == "carol"


def test_wrong_password_is_rejected(server: EmbeddedPostgres) -> None:
    server.create_role("dave", "right")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(server.url(user="dave", password="wrong"))


def test_md5_role_via_hba_extra(server: EmbeddedPostgres) -> None:
    server.create_role("md5user", "md5-secret", encryption="md5")
    assert _stored_password(server, "md5user").startswith("md5")
    url = server.url(user="md5user", password="md5-secret")
    assert _scalar(url, "SELECT current_user") == "md5user"


def test_hostnossl_rule_and_tls(server: EmbeddedPostgres, tls: tuple[Path, Path]) -> None:
    server.create_role("sslonly", "s3cret")
    url = server.url(user="sslonly", password="s3cret")
    with pytest.raises(psycopg.OperationalError, match=r"pg_hba\.conf rejects"):
        psycopg.connect(url, sslmode="disable")
    # verify-full checks the SAN for 127.0.0.1 against our self-signed cert as its own root.
    cert, _ = tls
    with psycopg.connect(url, sslmode="verify-full", sslrootcert=str(cert)) as conn:
        assert conn.pgconn.ssl_in_use


def test_replication_role_can_open_a_physical_replication_connection(server: EmbeddedPostgres) -> None:
    server.create_role("replicator", "repl-secret", replication=True)
    url = server.url(user="replicator", password="repl-secret")
    with psycopg.connect(url, replication="true", autocommit=True) as conn:
        # walsenders speak only the simple query protocol, hence the raw libpq call.
        result = conn.pgconn.exec_(b"IDENTIFY_SYSTEM")
        assert result.status == psycopg.pq.ExecStatus.TUPLES_OK


def test_execute_targets_a_database(server: EmbeddedPostgres) -> None:
    server.execute("CREATE DATABASE scratch")
    server.execute("CREATE TABLE t (x int)", database="scratch")
    with server.connect("scratch") as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)


def test_pid_and_bin(server: EmbeddedPostgres) -> None:
    os.kill(server.pid(), 0)  # raises if no such process
    assert server.bin("pg_ctl").name == "pg_ctl"
    with pytest.raises(ConfigError):
        server.bin("no-such-binary")


# --- lifecycle ---------------------------------------------------------------------------------


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if text.encode() in cmdline:
                pids.append(int(proc.name))
    return pids


def test_second_server_own_port_and_stop_cleans_up(server: EmbeddedPostgres) -> None:
    other = EmbeddedPostgres()
    other.start()
    try:
        assert other.port != server.port
        assert _scalar(other.url(), "SELECT 1") == 1
        pid, root = other.pid(), other.root_dir
    finally:
        other.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert _processes_mentioning(str(root)) == []
    assert not root.exists()
    other.stop()  # idempotent
    with pytest.raises(EmbeddedPostgresError):
        other.pid()


def test_failed_start_reports_log_tail_and_cleans_up() -> None:
    broken = EmbeddedPostgres(settings={"shared_buffers": "lots"})
    with pytest.raises(EmbeddedPostgresError, match='invalid value for parameter "shared_buffers"'):
        broken.start()
    assert not broken.root_dir.exists()


def test_root_without_postgres_user_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_such_user(name: str) -> object:
        raise KeyError(name)

    monkeypatch.setattr("proxy.embedded.os.geteuid", lambda: 0)
    monkeypatch.setattr("proxy.embedded.pwd.getpwnam", no_such_user)
    with pytest.raises(ConfigError, match="no `postgres` system user"):
        EmbeddedPostgres()


# --- finding binaries --------------------------------------------------------------------------


@pytest.mark.skipif(not DEBIAN_PG15.is_dir(), reason="needs Debian's postgresql-15 package")
def test_find_pg_bin_dir_finds_debian_binaries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PG_BIN_ENV, raising=False)
    assert find_pg_bin_dir(15) == DEBIAN_PG15
    assert (find_pg_bin_dir() / "postgres").is_file()
    with pytest.raises(ConfigError, match="PostgreSQL 99"):
        find_pg_bin_dir(99)


def _fake_bin_dir(directory: Path, major: int) -> Path:
    for name in ("postgres", "initdb"):
        script = directory / name
        script.write_text(f"#!/bin/sh\necho 'postgres (PostgreSQL) {major}.0'\n")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return directory


def test_find_pg_bin_dir_prefers_env_then_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = _fake_bin_dir(tmp_path, 42)
    monkeypatch.delenv(PG_BIN_ENV, raising=False)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    assert find_pg_bin_dir() == fake
    assert find_pg_bin_dir(42) == fake

    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv(PG_BIN_ENV, str(empty))
    with pytest.raises(ConfigError, match=PG_BIN_ENV):
        find_pg_bin_dir()
    monkeypatch.setenv(PG_BIN_ENV, str(fake))
    assert find_pg_bin_dir() == fake
    with pytest.raises(ConfigError, match="not PostgreSQL 15"):
        find_pg_bin_dir(15)
