"""Authentication (passthrough and password mode) and TLS on both hops."""

from __future__ import annotations

import ssl
from pathlib import Path

import psycopg
import pytest

from proxy.embedded import EmbeddedPostgres
from proxy.tlsutil import generate_self_signed_cert
from tests.pgfixtures import ALICE_PASSWORD, MD5_PASSWORD
from tests.proxyfixtures import RunningProxy, server_error

PROXY_PASSWORD = "proxy-secret"


def test_scram_passthrough_right_password(proxy: RunningProxy) -> None:
    with psycopg.connect(proxy.dsn()) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("alice",)
        assert conn.pgconn.used_password


def test_scram_passthrough_wrong_password_is_postgres_error(
    proxy: RunningProxy, pg: EmbeddedPostgres
) -> None:
    via_proxy = server_error(proxy.url(password="wrong", sslmode="disable"))
    direct = server_error(f"postgresql://alice:wrong@127.0.0.1:{pg.port}/app?sslmode=disable")
    assert type(via_proxy) is type(direct)
    assert getattr(via_proxy, "sqlstate", None) == getattr(direct, "sqlstate", None) == "28P01"
    assert str(via_proxy) == str(direct) == 'password authentication failed for user "alice"'
    with pytest.raises(psycopg.OperationalError, match='password authentication failed for user "alice"'):
        psycopg.connect(proxy.dsn(password="wrong"))


def test_md5_passthrough(proxy: RunningProxy) -> None:
    with psycopg.connect(proxy.dsn(user="md5user", password=MD5_PASSWORD, dbname="postgres")) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("md5user",)


def test_sslmode_require_to_the_proxy(start_proxy, tls_files: tuple[Path, Path]) -> None:  # type: ignore[no-untyped-def]
    cert, key = tls_files
    running = start_proxy(**{"tls.cert_file": str(cert), "tls.key_file": str(key)})
    with psycopg.connect(running.dsn(sslmode="require")) as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("SELECT 42").fetchone() == (42,)
    with psycopg.connect(running.dsn(sslmode="verify-full", sslrootcert=str(cert), host="localhost")) as conn:
        assert conn.pgconn.ssl_in_use
    # channel binding cannot cross a TLS hop the proxy terminates: the PLUS mechanism is hidden
    with pytest.raises(psycopg.OperationalError, match="channel binding"):
        psycopg.connect(running.dsn(sslmode="require", channel_binding="require"))


def test_proxy_without_certificate_answers_n(proxy: RunningProxy) -> None:
    with pytest.raises(psycopg.OperationalError, match="does not support SSL"):
        psycopg.connect(proxy.dsn(sslmode="require"))
    with psycopg.connect(proxy.dsn(sslmode="prefer", gssencmode="prefer")) as conn:
        assert not conn.pgconn.ssl_in_use


@pytest.fixture(scope="module")
def tls_upstream(tls_files: tuple[Path, Path]) -> EmbeddedPostgres:
    cert, key = tls_files
    server = EmbeddedPostgres(ssl_cert=cert, ssl_key=key)
    server.start()
    server.create_role("alice", ALICE_PASSWORD)
    yield server  # type: ignore[misc]
    server.stop()


@pytest.mark.parametrize("mode", ["require", "verify-ca", "verify-full"])
def test_tls_to_the_upstream(
    start_proxy, tls_upstream: EmbeddedPostgres, tls_files: tuple[Path, Path], mode: str
) -> None:  # type: ignore[no-untyped-def]
    cert, _ = tls_files
    host = "localhost" if mode == "verify-full" else "127.0.0.1"
    url = f"postgresql://alice:{ALICE_PASSWORD}@{host}:{tls_upstream.port}/postgres?sslmode={mode}&sslrootcert={cert}"
    running = start_proxy(url)
    with psycopg.connect(running.dsn(dbname="postgres")) as conn:
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (True,)


def test_upstream_tls_required_but_refused(start_proxy, pg: EmbeddedPostgres) -> None:  # type: ignore[no-untyped-def]
    running = start_proxy(pg.url("app", user="alice", password=ALICE_PASSWORD) + "?sslmode=require")
    with pytest.raises(psycopg.OperationalError, match="does not support SSL, but SSL was required"):
        psycopg.connect(running.dsn())
    assert server_error(running.url(sslmode="disable")).sqlstate == "08006"  # type: ignore[attr-defined]


def test_verify_ca_rejects_unknown_authority(
    start_proxy, tls_upstream: EmbeddedPostgres, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    other_ca, _ = generate_self_signed_cert(tmp_path)
    url = f"postgresql://alice:{ALICE_PASSWORD}@127.0.0.1:{tls_upstream.port}/postgres?sslmode=verify-ca&sslrootcert={other_ca}"
    running = start_proxy(url)
    error = server_error(running.url(database="postgres", sslmode="disable"))
    assert error.sqlstate == "08006"  # type: ignore[attr-defined]
    assert "SSL connection to upstream server" in str(error)


@pytest.fixture
def password_proxy(start_proxy) -> RunningProxy:  # type: ignore[no-untyped-def]
    return start_proxy(**{"auth.mode": "password", "auth.password": PROXY_PASSWORD})  # type: ignore[no-any-return]


def test_password_mode_scram(password_proxy: RunningProxy) -> None:
    # Any user name; the proxy password; upstream login with the URL's credentials.
    with psycopg.connect(
        password_proxy.dsn(user="someone", password=PROXY_PASSWORD, application_name="myapp")
    ) as conn:
        row = conn.execute(
            "SELECT current_user, current_database(), current_setting('application_name')"
        ).fetchone()
        assert row == ("alice", "app", "myapp")
    error = server_error(password_proxy.url(user="someone", password="nope", sslmode="disable"))
    assert error.sqlstate == "28P01"  # type: ignore[attr-defined]
    assert str(error) == 'password authentication failed for user "someone"'


def test_password_mode_forwards_database_and_options(password_proxy: RunningProxy) -> None:
    dsn = password_proxy.dsn(password=PROXY_PASSWORD, dbname="postgres", options="-c search_path=pg_catalog")
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT current_database(), current_setting('search_path')").fetchone() == (
            "postgres",
            "pg_catalog",
        )


def test_password_mode_md5(start_proxy) -> None:  # type: ignore[no-untyped-def]
    running = start_proxy(
        **{"auth.mode": "password", "auth.password": PROXY_PASSWORD, "auth.allow_md5": True}
    )
    with psycopg.connect(running.dsn(password=PROXY_PASSWORD)) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    error = server_error(running.url(password="bad", sslmode="disable"))
    assert error.sqlstate == "28P01"  # type: ignore[attr-defined]


def test_password_mode_upstream_login_failure_is_reported(start_proxy, pg: EmbeddedPostgres) -> None:  # type: ignore[no-untyped-def]
    bad = pg.url("app", user="alice", password="not-alices") + "?sslmode=disable"
    running = start_proxy(bad, **{"auth.mode": "password", "auth.password": PROXY_PASSWORD})
    error = server_error(running.url(password=PROXY_PASSWORD, sslmode="disable"))
    assert error.sqlstate == "28P01"  # type: ignore[attr-defined]
    assert str(error) == 'password authentication failed for user "alice"'


def test_ssl_context_is_tls12_or_newer(start_proxy, tls_files: tuple[Path, Path]) -> None:  # type: ignore[no-untyped-def]
    cert, key = tls_files
    running = start_proxy(**{"tls.cert_file": str(cert), "tls.key_file": str(key)})
    assert running.server.ctx.tls is not None
    assert running.server.ctx.tls.minimum_version >= ssl.TLSVersion.TLSv1_2
