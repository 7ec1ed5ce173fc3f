"""auth.mode = "auth_query": the proxy checks each role's own password against its SCRAM verifier
and logs in upstream as that role with the ClientKey recovered from the client's proof.

TLS on both hops, with libpq's default channel_binding=prefer, channel_binding=require, and
drivers that do not bind (asyncpg): each hop has its own SCRAM exchange, so nothing the client
does on its TLS link can upset the upstream's.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import psycopg
import pytest

from proxy.embedded import EmbeddedPostgres
from tests.pgfixtures import ALICE_PASSWORD
from tests.proxyfixtures import RunningProxy, server_error

BOB_PASSWORD = "bob-Pässwörd"  # not ASCII: SASLprep on every hop


@pytest.fixture(scope="module")
def tls_pg(tls_files: tuple[Path, Path]) -> Iterator[EmbeddedPostgres]:
    cert, key = tls_files
    server = EmbeddedPostgres(ssl_cert=cert, ssl_key=key)
    server.start()
    server.create_role("alice", ALICE_PASSWORD)
    server.create_role("bob", BOB_PASSWORD)
    server.create_role("md5role", "md5-secret", encryption="md5")
    server.execute("CREATE ROLE proxyrole LOGIN PASSWORD 'proxy-role-secret'")
    yield server
    server.stop()


def superuser_url(pg: EmbeddedPostgres, cert: Path, host: str = "localhost") -> str:
    return f"postgresql://postgres:{pg.password}@{host}:{pg.port}/postgres?sslmode=verify-full&sslrootcert={cert}"


@pytest.fixture
def aq_proxy(
    start_proxy: Callable[..., RunningProxy], tls_pg: EmbeddedPostgres, tls_files: tuple[Path, Path]
) -> RunningProxy:
    cert, key = tls_files
    running = start_proxy(
        superuser_url(tls_pg, cert),
        **{
            "auth.mode": "auth_query",
            "tls.cert_file": str(cert),
            "tls.key_file": str(key),
            "auth.failure_delay_ms": 20,
        },
    )
    running.catalog_sees(lambda snapshot: True, database="postgres")
    return running


def libpq_dsn(proxy: RunningProxy, cert: Path, **params: str) -> str:
    base = {
        "host": "localhost",
        "port": str(proxy.port),
        "user": "alice",
        "password": ALICE_PASSWORD,
        "dbname": "postgres",
        "sslrootcert": str(cert),
    }
    base.update(params)
    return " ".join(f"{k}='{v}'" for k, v in base.items())


UPSTREAM_STATE = (
    "SELECT current_user, ssl FROM pg_catalog.pg_stat_ssl WHERE pid = pg_catalog.pg_backend_pid()"
)


@pytest.mark.parametrize(
    "params",
    [
        {"sslmode": "require"},
        {"sslmode": "verify-full"},
        {"sslmode": "verify-full", "channel_binding": "require"},
        {"sslmode": "require", "user": "bob", "password": BOB_PASSWORD},
    ],
    ids=["require", "verify-full", "channel-binding-required", "non-ascii-password"],
)
def test_psycopg_logs_in_with_tls_on_both_hops(
    aq_proxy: RunningProxy,
    tls_files: tuple[Path, Path],
    params: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG, logger="proxy.net.auth"):
        with psycopg.connect(libpq_dsn(aq_proxy, tls_files[0], **params)) as conn:
            assert conn.pgconn.ssl_in_use
            user = params.get("user", "alice")
            assert conn.execute(UPSTREAM_STATE).fetchone() == (user, True)
    # the upstream hop binds to the upstream's own certificate
    assert f"upstream login as {user} with SCRAM-SHA-256-PLUS" in caplog.messages


@pytest.mark.parametrize(
    "params", ["sslmode=require", "sslmode=verify-full", "channel_binding=require sslmode=require"]
)
def test_psql_logs_in_with_tls_on_both_hops(
    aq_proxy: RunningProxy, tls_files: tuple[Path, Path], params: str
) -> None:
    dsn = libpq_dsn(aq_proxy, tls_files[0]) + " " + params
    done = subprocess.run(
        ["psql", dsn, "-XAtc", UPSTREAM_STATE], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.stdout.strip() == "alice|t", done.stderr


@pytest.mark.parametrize("sslmode", ["require", "verify-full"])
def test_asyncpg_logs_in_with_tls_on_both_hops(
    aq_proxy: RunningProxy, tls_files: tuple[Path, Path], sslmode: str
) -> None:
    cert = tls_files[0]
    url = f"postgresql://alice:{ALICE_PASSWORD}@localhost:{aq_proxy.port}/postgres?sslmode={sslmode}&sslrootcert={cert}"

    async def run() -> tuple[object, ...]:
        conn = await asyncpg.connect(url)
        try:
            row = await conn.fetchrow(UPSTREAM_STATE)
            assert row is not None
            return tuple(row)
        finally:
            await conn.close()

    assert asyncio.run(run()) == ("alice", True)


def test_wrong_password_gets_postgres_own_error(
    aq_proxy: RunningProxy, tls_pg: EmbeddedPostgres, tls_files: tuple[Path, Path]
) -> None:
    for user in ("alice", "nosuchrole", "md5role"):
        via_proxy = server_error(
            f"postgresql://{user}:wrong@127.0.0.1:{aq_proxy.port}/postgres?sslmode=require"
        )
        direct = server_error(f"postgresql://{user}:wrong@127.0.0.1:{tls_pg.port}/postgres?sslmode=require")
        assert type(via_proxy) is type(direct)
        assert getattr(via_proxy, "sqlstate", None) == getattr(direct, "sqlstate", None) == "28P01"
        assert str(via_proxy) == str(direct) == f'password authentication failed for user "{user}"'
    with pytest.raises(psycopg.OperationalError, match='password authentication failed for user "alice"'):
        psycopg.connect(libpq_dsn(aq_proxy, tls_files[0], password="wrong", sslmode="verify-full"))
    assert aq_proxy.stats.auth_failures["auth_query"] == 4


def test_unknown_role_is_indistinguishable(aq_proxy: RunningProxy) -> None:
    """An unknown role is offered a salt and count that stay the same from one try to the next,
    as a real role's do, so probing cannot tell them apart."""
    assert _salt_offered(aq_proxy.port, "ghost") == _salt_offered(aq_proxy.port, "ghost")
    assert _salt_offered(aq_proxy.port, "ghost") != _salt_offered(aq_proxy.port, "phantom")
    assert _salt_offered(aq_proxy.port, "alice") == _salt_offered(aq_proxy.port, "alice")


def _salt_offered(port: int, user: str) -> bytes:
    """The s= of the proxy's server-first-message for `user` (the exchange is then abandoned)."""
    import socket

    from proxy.protocol import messages, scram
    from proxy.protocol.codes import PROTOCOL_3_0, AuthRequest, Frontend
    from proxy.protocol.framer import Frame, Framer

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(messages.encode_startup(PROTOCOL_3_0, {"user": user, "database": "postgres"}))
        framer = Framer(keep_all=True)
        frames: list[Frame] = []

        def next_auth() -> messages.Authentication:
            while not frames:
                frames.extend(f for f in framer.feed(sock.recv(4096)) if isinstance(f, Frame))
            return messages.decode_authentication(frames.pop(0).body)

        assert next_auth().request == AuthRequest.SASL
        client = scram.ScramClient("x")
        body = scram.encode_sasl_initial_response("SCRAM-SHA-256", client.client_first_message())
        sock.sendall(messages.message(Frontend.PASSWORD, body))
        reply = next_auth()
        assert reply.request == AuthRequest.SASL_CONTINUE
        found = re.search(rb",s=([^,]+),i=(\d+)", reply.data)
        assert found is not None
        return found.group(1) + b"/" + found.group(2)


def test_failures_are_delayed_per_address(aq_proxy: RunningProxy) -> None:
    url = f"postgresql://alice:wrong@127.0.0.1:{aq_proxy.port}/postgres?sslmode=require"
    took = []
    for _ in range(5):
        start = time.monotonic()
        assert getattr(server_error(url), "sqlstate", None) == "28P01"
        took.append(time.monotonic() - start)
    # 20 ms doubled each time: the fifth failure waits 320 ms, the first 20 ms.
    assert took[4] >= 0.32 > took[0]
    with psycopg.connect(aq_proxy.dsn(dbname="postgres", sslmode="require")) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    start = time.monotonic()
    server_error(url)
    assert time.monotonic() - start < 0.3  # a success forgets the address's failures


def test_lookup_function_installed_by_hand_for_a_non_superuser_role(
    start_proxy: Callable[..., RunningProxy], tls_pg: EmbeddedPostgres, tls_files: tuple[Path, Path]
) -> None:
    """The README's SQL, run once by a superuser, is all a non-superuser proxy role needs."""
    cert, key = tls_files
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = re.search(r"<!-- auth_query-sql -->\s*```sql\n(.*?)```", readme, re.S)
    assert block is not None, "the README lost its auth_query SQL block"
    tls_pg.execute("CREATE DATABASE aqdb OWNER proxyrole")
    tls_pg.execute("CREATE SCHEMA electric AUTHORIZATION proxyrole", database="aqdb")
    tls_pg.execute(block.group(1).replace("proxy_role", "proxyrole"), database="aqdb")
    url = f"postgresql://proxyrole:proxy-role-secret@localhost:{tls_pg.port}/aqdb?sslmode=verify-full&sslrootcert={cert}"
    running = start_proxy(
        url, **{"auth.mode": "auth_query", "tls.cert_file": str(cert), "tls.key_file": str(key)}
    )
    running.catalog_sees(lambda snapshot: True, database="aqdb")
    with psycopg.connect(libpq_dsn(running, cert, sslmode="verify-full", dbname="postgres")) as conn:
        assert conn.execute(UPSTREAM_STATE).fetchone() == ("alice", True)
    with psycopg.connect(
        f"host=127.0.0.1 port={tls_pg.port} user=proxyrole password=proxy-role-secret dbname=aqdb sslmode=require",
        autocommit=True,
    ) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT rolpassword FROM pg_catalog.pg_authid")
        # the function reveals SCRAM verifiers only
        assert conn.execute("SELECT electric.auth_verifier('md5role')").fetchone() == (None,)


def test_certificate_context_offers_plus(aq_proxy: RunningProxy) -> None:
    assert aq_proxy.server.ctx.channel_binding is not None
    assert isinstance(aq_proxy.server.ctx.tls, ssl.SSLContext)


def test_admin_url_installs_and_looks_up(
    start_proxy: Callable[..., RunningProxy], tls_pg: EmbeddedPostgres, tls_files: tuple[Path, Path]
) -> None:
    """An application role in the URL, a superuser in catalog.admin_url: the catalog is handed to
    its owner role, and the lookup function stays with the superuser, who runs the lookups."""
    cert, key = tls_files
    tls_pg.execute("CREATE DATABASE admindb OWNER alice")
    url = f"postgresql://alice:{ALICE_PASSWORD}@localhost:{tls_pg.port}/admindb?sslmode=verify-full&sslrootcert={cert}"
    admin = superuser_url(tls_pg, cert).replace("/postgres?", "/admindb?")
    running = start_proxy(
        url,
        **{
            "auth.mode": "auth_query",
            "catalog.admin_url": admin,
            "tls.cert_file": str(cert),
            "tls.key_file": str(key),
        },
    )
    running.catalog_sees(lambda snapshot: True, database="admindb")
    dsn = libpq_dsn(running, cert, sslmode="verify-full", user="bob", password=BOB_PASSWORD, dbname="admindb")
    with psycopg.connect(dsn) as conn:
        assert conn.execute(UPSTREAM_STATE).fetchone() == ("bob", True)
        owner = conn.execute(
            "SELECT p.proowner::regrole::text FROM pg_catalog.pg_proc p WHERE p.proname = 'auth_verifier'"
        ).fetchone()
        assert owner == ("postgres",)
