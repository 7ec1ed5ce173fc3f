"""Authentication (passthrough and password mode) and TLS on both hops."""

from __future__ import annotations

import base64
import contextlib
import os
import re
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from proxy.embedded import EmbeddedPostgres
from proxy.errors import UpstreamError
from proxy.net.server import free_port
from proxy.net.upstream import UpstreamTarget, tls_context
from proxy.protocol import messages, scram
from proxy.protocol.codes import AuthRequest, Backend, Frontend, TransactionStatus
from proxy.protocol.framer import Frame, Framer
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


# -- the upstream proves itself ----------------------------------------------------------------


class FakeUpstream:
    """A server that speaks just enough of the protocol to let anyone in: a man in the middle.

    `script` names what it does after the startup packet; every message the proxy sends it is
    kept in `received`.
    """

    def __init__(self, script: str) -> None:
        self.script = script
        self.received: list[Frame] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def url(self, **params: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in {"sslmode": "disable", **params}.items())
        return f"postgresql://alice:{ALICE_PASSWORD}@127.0.0.1:{self.port}/app?{query}"

    def _serve(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            with sock:
                with contextlib.suppress(OSError, ConnectionError):
                    self._session(sock)

    def _session(self, sock: socket.socket) -> None:
        framer = Framer(keep_all=True, startup=True)
        frames: list[Frame] = []

        def recv() -> Frame:
            while not frames:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("closed")
                frames.extend(f for f in framer.feed(data) if isinstance(f, Frame))
            frame = frames.pop(0)
            self.received.append(frame)
            return frame

        recv()  # the startup packet
        steps = {
            "trust": self._trust,
            "scram-no-final": self._scram_no_final,
            "scram-forged-final": self._scram_forged_final,
            "cleartext": self._cleartext,
            "md5": self._md5,
        }
        steps[self.script](sock, recv)
        sock.sendall(
            messages.message(Backend.BACKEND_KEY_DATA, struct.pack("!ii", 1, 2))
            + messages.ready_for_query(TransactionStatus.IDLE)
        )
        recv()  # until the proxy hangs up

    @staticmethod
    def _ok(sock: socket.socket) -> None:
        sock.sendall(messages.authentication(AuthRequest.OK))

    def _trust(self, sock: socket.socket, recv: Callable[[], Frame]) -> None:
        self._ok(sock)

    def _scram_start(self, sock: socket.socket, recv: Callable[[], Frame]) -> None:
        sock.sendall(
            messages.authentication(AuthRequest.SASL, scram.encode_sasl_mechanisms(["SCRAM-SHA-256"]))
        )
        _, first = scram.parse_sasl_initial_response(bytes(recv().body))
        client_nonce = first.decode().rpartition("r=")[2]
        server_first = f"r={client_nonce}fake,s={base64.b64encode(b'salt').decode()},i=4096"
        sock.sendall(messages.authentication(AuthRequest.SASL_CONTINUE, server_first.encode()))
        recv()  # the client's proof, accepted whatever it is

    def _scram_no_final(self, sock: socket.socket, recv: Callable[[], Frame]) -> None:
        self._scram_start(sock, recv)
        self._ok(sock)

    def _scram_forged_final(self, sock: socket.socket, recv: Callable[[], Frame]) -> None:
        self._scram_start(sock, recv)
        forged = b"v=" + base64.b64encode(b"\x00" * 32)
        sock.sendall(messages.authentication(AuthRequest.SASL_FINAL, forged))
        self._ok(sock)

    def _cleartext(self, sock: socket.socket, recv: Callable[[], Frame]) -> None:
        sock.sendall(messages.authentication(AuthRequest.CLEARTEXT_PASSWORD))
        recv()
        self._ok(sock)

    def _md5(self, sock: socket.socket, recv: Callable[[], Frame]) -> None:
        sock.sendall(messages.authentication(AuthRequest.MD5_PASSWORD, b"salt"))
        recv()
        self._ok(sock)

    def got_password(self) -> bool:
        return any(frame.type == Frontend.PASSWORD for frame in self.received)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def fake_upstream() -> Iterator[Callable[[str], FakeUpstream]]:
    started: list[FakeUpstream] = []

    def start(script: str) -> FakeUpstream:
        fake = FakeUpstream(script)
        started.append(fake)
        return fake

    yield start
    for fake in started:
        fake.close()


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("scram-no-final", "without a valid SCRAM server signature"),
        ("scram-forged-final", "upstream failed to prove itself: invalid SCRAM server signature"),
        ("trust", "AuthenticationOk without asking for a password"),
        ("cleartext", "a cleartext password on this link"),
        ("md5", "an MD5 password on this link"),
    ],
)
def test_upstream_that_lets_anyone_in_is_refused(
    start_proxy, fake_upstream: Callable[[str], FakeUpstream], script: str, message: str
) -> None:  # type: ignore[no-untyped-def]
    fake = fake_upstream(script)
    running = start_proxy(
        fake.url(), **{"auth.mode": "password", "auth.password": PROXY_PASSWORD, "guard.enabled": False}
    )
    error = server_error(running.url(password=PROXY_PASSWORD, sslmode="disable"))
    assert message in str(error)
    assert error.sqlstate in ("28000", "08006")  # type: ignore[attr-defined]
    if script in ("cleartext", "md5"):
        assert not fake.got_password()  # the password (or its hash) never left the proxy
    assert running.stats.upstream_connect_errors["auth"] == 1


def test_require_auth_in_the_url_allows_a_plaintext_password(
    start_proxy, fake_upstream: Callable[[str], FakeUpstream]
) -> None:  # type: ignore[no-untyped-def]
    fake = fake_upstream("md5")
    running = start_proxy(
        fake.url(require_auth="md5"),
        **{"auth.mode": "password", "auth.password": PROXY_PASSWORD, "guard.enabled": False},
    )
    with psycopg.connect(running.dsn(password=PROXY_PASSWORD)) as conn:
        assert conn.info.backend_pid == 1
    assert fake.got_password()


def test_verify_full_checks_ip_sans(start_proxy, tls_files: tuple[Path, Path], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dns_only, dns_only_key = generate_self_signed_cert(tmp_path, alt_names=["DNS:localhost"])
    with EmbeddedPostgres(ssl_cert=dns_only, ssl_key=dns_only_key) as server:
        server.create_role("alice", ALICE_PASSWORD)
        url = f"postgresql://alice:{ALICE_PASSWORD}@127.0.0.1:{server.port}/postgres?sslmode=verify-full&sslrootcert={dns_only}"
        running = start_proxy(url, **{"guard.enabled": False})
        error = server_error(running.url(database="postgres", sslmode="disable"))
        assert error.sqlstate == "08006"  # type: ignore[attr-defined]
        assert "SSL connection to upstream server" in str(error) and "127.0.0.1" in str(error)
    cert, key = tls_files  # IP:127.0.0.1 among its names
    with EmbeddedPostgres(ssl_cert=cert, ssl_key=key) as server:
        server.create_role("alice", ALICE_PASSWORD)
        url = f"postgresql://alice:{ALICE_PASSWORD}@127.0.0.1:{server.port}/postgres?sslmode=verify-full&sslrootcert={cert}"
        running = start_proxy(url, **{"guard.enabled": False})
        with psycopg.connect(running.dsn(dbname="postgres")) as conn:
            assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (
                True,
            )


# -- safe defaults -------------------------------------------------------------------------------


def test_client_mode_require_refuses_plaintext(start_proxy, tls_files: tuple[Path, Path]) -> None:  # type: ignore[no-untyped-def]
    cert, key = tls_files
    running = start_proxy(
        **{"tls.cert_file": str(cert), "tls.key_file": str(key), "tls.client_mode": "require"}
    )
    error = server_error(running.url(sslmode="disable"))
    assert error.sqlstate == "28000"  # type: ignore[attr-defined]
    assert "only TLS" in str(error)
    with psycopg.connect(running.dsn(sslmode="require")) as conn:
        assert conn.pgconn.ssl_in_use


def test_client_mode_disable_answers_n(start_proxy, tls_files: tuple[Path, Path]) -> None:  # type: ignore[no-untyped-def]
    cert, key = tls_files
    running = start_proxy(
        **{"tls.cert_file": str(cert), "tls.key_file": str(key), "tls.client_mode": "disable"}
    )
    with pytest.raises(psycopg.OperationalError, match="does not support SSL"):
        psycopg.connect(running.dsn(sslmode="require"))


def _tls_handshake(port: int, context: ssl.SSLContext) -> str:
    """SSLRequest, then a handshake with `context`; returns the TLS version agreed."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(messages.encode_ssl_request())
        assert sock.recv(1) == b"S"
        with context.wrap_socket(sock, server_hostname="localhost") as tls:
            return str(tls.version())


def test_client_tls_refuses_old_versions_and_weak_suites(start_proxy, tls_files: tuple[Path, Path]) -> None:  # type: ignore[no-untyped-def]
    cert, key = tls_files
    running = start_proxy(**{"tls.cert_file": str(cert), "tls.key_file": str(key)})

    def client(maximum: ssl.TLSVersion, ciphers: str | None = None) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.maximum_version = maximum
        if ciphers:
            context.set_ciphers(ciphers)
        return context

    assert _tls_handshake(running.port, client(ssl.TLSVersion.TLSv1_3)) == "TLSv1.3"
    assert _tls_handshake(running.port, client(ssl.TLSVersion.TLSv1_2)) == "TLSv1.2"
    # A CBC suite without AEAD, which Python's default server context would accept.
    with pytest.raises(ssl.SSLError):
        _tls_handshake(running.port, client(ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-SHA256"))


# -- logins do not stall other sessions ---------------------------------------------------------

_LOGIN_STORM = """
import asyncio, sys
import asyncpg

async def login(url):
    conn = await asyncpg.connect(url)
    await conn.fetchval("SELECT 1")
    await conn.close()

async def main(url, count):
    print("ready", flush=True)
    sys.stdin.readline()
    await asyncio.gather(*(login(url) for _ in range(count)))

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def _p99(samples: list[float]) -> float:
    return sorted(samples)[int(len(samples) * 0.99)]


def _storm_round(running: RunningProxy, pg: EmbeddedPostgres) -> tuple[float, float]:
    """Query p99 (through the proxy, straight to Postgres) while 50 clients log in at once."""
    # The clients' own PBKDF2 is not the proxy's cost: `nice` keeps it off the measured CPU.
    url = running.url(password=PROXY_PASSWORD, sslmode="disable")
    storm = subprocess.Popen(
        ["nice", "-n", "10", sys.executable, "-c", _LOGIN_STORM, url, "50"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert storm.stdin is not None and storm.stdout is not None
    proxied: list[float] = []
    direct: list[float] = []
    direct_dsn = (
        f"host=127.0.0.1 port={pg.port} user=alice password={ALICE_PASSWORD} dbname=app sslmode=disable"
    )
    with (
        psycopg.connect(running.dsn(password=PROXY_PASSWORD), autocommit=True) as conn,
        psycopg.connect(direct_dsn, autocommit=True) as plain,
    ):
        for _ in range(20):  # warm: plans, buffers
            conn.execute("SELECT 1")
            plain.execute("SELECT 1")
        assert storm.stdout.readline().strip() == "ready"
        storm.stdin.write("go\n")
        storm.stdin.flush()
        while storm.poll() is None or len(proxied) < 300:
            for connection, samples in ((conn, proxied), (plain, direct)):
                start = time.perf_counter()
                connection.execute("SELECT 1")
                samples.append(time.perf_counter() - start)
    assert storm.wait(30) == 0
    return _p99(proxied), _p99(direct)


@pytest.mark.slow
def test_password_logins_do_not_stall_other_sessions(start_proxy, pg: EmbeddedPostgres) -> None:  # type: ignore[no-untyped-def]
    """50 logins at once (each needing upstream SCRAM keys) leave others' query p99 under 5 ms.

    The same queries also go straight to Postgres, interleaved: when the machine is busy with
    other work, the bound is what Postgres alone shows plus 2 ms, if that is higher. Up to five
    storms: a stall of the proxy's own (PBKDF2 on the event loop: p99 of 60 ms and more) fails
    every one, a burst of someone else's load only one.
    """
    running = start_proxy(**{"auth.mode": "password", "auth.password": PROXY_PASSWORD})
    rounds = []
    for _ in range(5):
        p99, baseline = _storm_round(running, pg)
        rounds.append(f"{p99 * 1000:.2f} ms (direct {baseline * 1000:.2f} ms)")
        if p99 < max(0.005, baseline + 0.002):
            break
    else:
        raise AssertionError("query p99 during login storms: " + ", ".join(rounds))
    print("\nlogin storm p99 through the proxy: " + ", ".join(rounds))
    assert running.server.ctx.keys.derivations == 1  # one PBKDF2 for every login: the rest hit the cache


def _non_loopback_address() -> str | None:
    """An address of this host other than loopback, from the route a datagram would take."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.255", 9))  # TEST-NET-1: never contacted, only routed
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


@pytest.mark.slow
def test_serve_without_upstream_is_loopback_only_with_a_random_password(tmp_path: Path) -> None:
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ELECTRIC_PROXY_", "PG")) and k != "DATABASE_URL"
    }
    env |= {"PG_PROXY_PORT": str(port), "ELECTRIC_PROXY_METRICS_ENABLED": "false"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy", "serve"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stderr is not None
        url = None
        while url is None:
            line = proc.stderr.readline()
            assert line, "serve exited before printing the URL"
            if found := re.search(r"postgresql://(\w+):([^@]+)@(\S+?):(\d+)/\S+?'", line):
                url = found.group(0).rstrip("'")
                user, password, host = found.group(1, 2, 3)
        assert (user, host) == ("postgres", "127.0.0.1") and password != "postgres" and len(password) >= 16
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "serve did not start listening"
                assert proc.poll() is None
                time.sleep(0.05)
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT 42").fetchone() == (42,)
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url.replace(f":{password}@", ":postgres@"))
        outside = _non_loopback_address()
        if outside is not None:
            with pytest.raises(OSError):
                socket.create_connection((outside, port), timeout=2).close()
    finally:
        proc.terminate()
        proc.wait(30)


def test_password_mode_offers_channel_binding_on_its_tls(start_proxy, tls_files: tuple[Path, Path]) -> None:  # type: ignore[no-untyped-def]
    cert, key = tls_files
    running = start_proxy(
        **{
            "auth.mode": "password",
            "auth.password": PROXY_PASSWORD,
            "tls.cert_file": str(cert),
            "tls.key_file": str(key),
        }
    )
    for binding in ("prefer", "require"):
        dsn = running.dsn(password=PROXY_PASSWORD, sslmode="require", channel_binding=binding)
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("alice",)


def test_upstream_tls_context_is_tls12_or_newer() -> None:
    target = UpstreamTarget.from_url("postgresql://u@127.0.0.1/db?sslmode=verify-full")
    context = tls_context(target)
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    assert all("GCM" in c["name"] or "CHACHA20" in c["name"] for c in context.get_ciphers())


@pytest.mark.parametrize(
    ("query", "tls", "secret", "allowed"),
    [
        ("", False, True, {"scram-sha-256"}),
        ("", True, True, {"scram-sha-256", "password", "md5"}),
        ("", False, False, {"scram-sha-256", "none"}),
        ("?require_auth=md5", False, True, {"md5"}),
        ("?require_auth=scram-sha-256,none", True, True, {"scram-sha-256", "none"}),
        ("?require_auth=!password,!md5", False, True, {"scram-sha-256", "none"}),
    ],
)
def test_upstream_auth_policy(query: str, tls: bool, secret: bool, allowed: set[str]) -> None:
    target = UpstreamTarget.from_url("postgresql://u@127.0.0.1/db" + query)
    assert target.allowed_methods(tls=tls, secret=secret) == allowed


@pytest.mark.parametrize("value", ["md5,!password", "gss", "sspi"])
def test_upstream_require_auth_refuses_what_it_cannot_honour(value: str) -> None:
    with pytest.raises(UpstreamError, match="require_auth"):
        UpstreamTarget.from_url(f"postgresql://u@127.0.0.1/db?require_auth={value}")
