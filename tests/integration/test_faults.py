"""Bad input, dead peers and vanished clients: a clear error or a clean close, never a hang."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
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
from proxy.net.server import free_port
from proxy.protocol import messages
from proxy.protocol.codes import PROTOCOL_3_0, PROTOCOL_3_2
from proxy.protocol.framer import Frame, Framer
from tests.integration.faultkit import StallingRelay
from tests.integration.test_process import ServeProcess, clean_env, wait_for_port
from tests.pgfixtures import ALICE_PASSWORD
from tests.proxyfixtures import RunningProxy, server_error


def raw_connect(proxy: RunningProxy) -> socket.socket:
    sock = socket.create_connection((proxy.host, proxy.port), timeout=5)
    return sock


def read_frames(sock: socket.socket, until: int | None = None) -> list[Frame]:
    """Read typed messages until one of type `until` arrives, or the peer closes."""
    framer = Framer(keep_all=True)
    frames: list[Frame] = []
    while True:
        data = sock.recv(65536)
        if not data:
            return frames
        frames += [f for f in framer.feed(data) if isinstance(f, Frame)]
        if until is not None and any(f.type == until for f in frames):
            return frames


def error_fields(frames: list[Frame]) -> dict[str, str]:
    errors = [f for f in frames if f.type == ord("E")]
    assert errors, f"no ErrorResponse in {[chr(f.type) for f in frames]}"
    return messages.decode_error_fields(errors[0].body)


def startup(user: str = "alice", database: str = "app", version: int = PROTOCOL_3_0) -> bytes:
    return messages.encode_startup(version, {"user": user, "database": database})


def test_upstream_down_gives_08006_naming_host_and_port(start_proxy) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    running = start_proxy(f"postgresql://alice:x@127.0.0.1:{port}/app?sslmode=disable")
    error = server_error(running.url(sslmode="disable"))
    assert error.sqlstate == "08006"  # type: ignore[attr-defined]
    assert f"127.0.0.1:{port}" in str(error)
    with pytest.raises(psycopg.OperationalError, match=f"127.0.0.1:{port}"):
        psycopg.connect(running.dsn())


def test_upstream_killed_with_pg_terminate_backend(proxy: RunningProxy, pg: EmbeddedPostgres) -> None:
    conn = psycopg.connect(proxy.dsn(), autocommit=True)
    pid = conn.info.backend_pid
    with pg.connect() as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(psycopg.OperationalError, match="terminating connection due to administrator command"):
        conn.execute("SELECT 1")
    assert conn.closed or conn.broken
    conn.close()


def test_client_vanishing_mid_transaction_rolls_back(proxy: RunningProxy, pg: EmbeddedPostgres) -> None:
    with pg.connect("app") as admin:
        admin.execute("DROP TABLE IF EXISTS vanish; CREATE TABLE vanish (id int)")
        admin.execute("GRANT ALL ON vanish TO alice")
    conn = psycopg.connect(proxy.dsn())
    conn.execute("INSERT INTO vanish VALUES (1)")
    pid = conn.info.backend_pid
    # Drop the socket without Terminate, as a crashed client does.
    socket.socket(fileno=conn.pgconn.socket).close()
    deadline = time.monotonic() + 5
    with pg.connect("app") as admin:
        while time.monotonic() < deadline:
            row = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
            if row == (0,):
                break
            time.sleep(0.05)
        assert row == (0,), "the backend outlived its client"
        assert admin.execute("SELECT count(*) FROM vanish").fetchone() == (0,)


def test_garbage_instead_of_startup_gets_08p01(proxy: RunningProxy) -> None:
    with raw_connect(proxy) as sock:
        sock.sendall(struct.pack("!I", 2**30) + b"junk")
        fields = error_fields(read_frames(sock))
    assert fields["C"] == "08P01"
    assert fields["S"] == "FATAL"


def test_unsupported_protocol_version(proxy: RunningProxy) -> None:
    with raw_connect(proxy) as sock:
        sock.sendall(startup(version=2 << 16))
        fields = error_fields(read_frames(sock))
    assert fields["C"] == "0A000"


def test_oversized_message_after_login_gets_08p01(start_proxy) -> None:  # type: ignore[no-untyped-def]
    running = start_proxy(**{"listen.max_message_bytes": 4096})
    conn = psycopg.connect(running.dsn(), autocommit=True)
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT %s::text", ("x" * 10_000,))
    assert conn.closed or conn.broken
    conn.close()


def test_malformed_typed_length_after_login(proxy: RunningProxy) -> None:
    conn = psycopg.connect(proxy.dsn(), autocommit=True)
    sock = socket.socket(fileno=conn.pgconn.socket)
    sock.settimeout(10)
    sock.sendall(b"Q\x00\x00\x00\x02")
    frames = read_frames(sock)
    assert error_fields(frames)["C"] == "08P01"
    sock.detach()
    conn.close()


def test_no_startup_packet_within_timeout_closes(start_proxy) -> None:  # type: ignore[no-untyped-def]
    running = start_proxy(**{"listen.startup_timeout_ms": 200})
    with raw_connect(running) as sock:
        start = time.monotonic()
        assert sock.recv(100) == b""
        assert time.monotonic() - start < 3


def test_gssencrequest_answered_n_then_startup_works(proxy: RunningProxy) -> None:
    with raw_connect(proxy) as sock:
        sock.sendall(struct.pack("!II", 8, 80877104))
        assert sock.recv(1) == b"N"
        sock.sendall(startup())
        frames = read_frames(sock, until=ord("R"))
    assert frames[0].type == ord("R")


def test_plaintext_after_sslrequest_is_refused(start_proxy, tls_files) -> None:  # type: ignore[no-untyped-def]
    cert, key = tls_files
    running = start_proxy(**{"tls.cert_file": str(cert), "tls.key_file": str(key)})
    with raw_connect(running) as sock:
        sock.sendall(struct.pack("!II", 8, 80877103) + startup())
        data = sock.recv(65536)
    assert data.startswith(b"E")  # refused in plaintext, before any TLS
    assert b"08P01" in data


def test_protocol_3_2_negotiation_passes_through(proxy: RunningProxy, pg: EmbeddedPostgres) -> None:
    with raw_connect(proxy) as sock:
        sock.sendall(startup(version=PROTOCOL_3_2))
        frames = read_frames(sock, until=ord("R"))
    if pg.version >= 18:
        pytest.skip("the server speaks 3.2 itself")
    assert frames[0].type == ord("v")  # NegotiateProtocolVersion, from Postgres, untouched
    assert struct.unpack("!I", bytes(frames[0].body[:4]))[0] == PROTOCOL_3_0


def test_max_client_connections(start_proxy) -> None:  # type: ignore[no-untyped-def]
    running = start_proxy(**{"listen.max_client_connections": 1})
    with psycopg.connect(running.dsn()):
        error = server_error(running.url(sslmode="disable"))
        assert error.sqlstate == "53300"  # type: ignore[attr-defined]
    assert running.stats.rejected["max_connections"] == 1


def test_slow_reader_does_not_make_the_proxy_buffer(proxy: RunningProxy) -> None:
    """A client that stops reading a large result: the proxy stops reading the upstream."""
    conn = psycopg.connect(proxy.dsn(), autocommit=True)
    sock = socket.socket(fileno=conn.pgconn.socket)
    sock.settimeout(10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.sendall(messages.query("SELECT repeat('x', 1000) FROM generate_series(1, 200000)"))
    session = next(s for s in proxy.server.ctx.sessions if s.backend_pid == conn.info.backend_pid)
    deadline = time.monotonic() + 5
    peak = 0
    while time.monotonic() < deadline:  # ~200 MB is on offer; nobody reads it for a while
        assert session.client is not None
        peak = max(peak, session.client.get_write_buffer_size())
        time.sleep(0.01)
    assert peak < 4 * 1024 * 1024, f"proxy buffered {peak} bytes for a client that did not read"
    got = 0
    framer = Framer(keep=(ord("Z"),))
    done = False
    while not done:
        chunk = sock.recv(1 << 20)
        assert chunk
        got += len(chunk)
        done = any(isinstance(i, Frame) for i in framer.feed(chunk))
    assert got > 200_000_000
    sock.detach()
    conn.close()


# -- a client killed mid-query: its backend must go at once --------------------------------------

_SLEEPER = """
import sys, psycopg
conn = psycopg.connect(sys.argv[1], autocommit=True)
conn.execute("SET client_connection_check_interval = '100ms'")
print(conn.info.backend_pid, flush=True)
conn.execute("SELECT pg_sleep(30)")
"""


@pytest.fixture(scope="module")
def tls_pg(tls_files: tuple[Path, Path]) -> Iterator[EmbeddedPostgres]:
    cert, key = tls_files
    with EmbeddedPostgres(ssl_cert=cert, ssl_key=key) as server:
        server.create_role("alice", ALICE_PASSWORD)
        server.execute("CREATE DATABASE app OWNER alice")
        yield server


def _wait_gone(pg: EmbeddedPostgres, pid: int, timeout: float) -> float:
    """Seconds until backend `pid` leaves pg_stat_activity (fails after `timeout`)."""
    start = time.monotonic()
    with pg.connect() as admin:
        while time.monotonic() - start < timeout:
            row = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
            if row == (0,):
                return time.monotonic() - start
            time.sleep(0.02)
    raise AssertionError(f"backend {pid} still there {timeout}s after its client was killed")


def _wait_sleeping(pg: EmbeddedPostgres, pid: int) -> None:
    deadline = time.monotonic() + 10
    with pg.connect() as admin:
        while time.monotonic() < deadline:
            row = admin.execute("SELECT state, query FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
            if row is not None and row[0] == "active" and "pg_sleep" in str(row[1]):
                return
            time.sleep(0.02)
    raise AssertionError("the client's query never started")


@pytest.mark.parametrize("upstream_tls", [False, True], ids=["tcp", "tls"])
def test_client_killed_mid_query_ends_its_backend(
    start_proxy, pg: EmbeddedPostgres, tls_pg: EmbeddedPostgres, upstream_tls: bool
) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL a client in `pg_sleep(30)`: the busy backend must notice within ~2 s.

    The proxy aborts its upstream socket; a graceful close (TLS close_notify, Terminate) would
    wait on a backend that reads nothing until its query ends.
    """
    server = tls_pg if upstream_tls else pg
    database = "app"
    mode = "require" if upstream_tls else "disable"
    running = start_proxy(server.url(database, user="alice", password=ALICE_PASSWORD) + f"?sslmode={mode}")
    for _ in range(3):  # the bug showed in two runs out of three
        child = subprocess.Popen(
            [sys.executable, "-c", _SLEEPER, running.dsn(dbname=database)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None
            pid = int(child.stdout.readline())
            _wait_sleeping(server, pid)
            child.send_signal(signal.SIGKILL)
            child.wait(5)
            assert _wait_gone(server, pid, timeout=10) < 2.0
        finally:
            child.kill()
            child.wait()


# -- the start-up timeout is for silent clients, not for a slow upstream ----------------------------


@pytest.mark.parametrize("sslmode", ["disable", "prefer"])
def test_slow_upstream_login_is_not_a_startup_timeout(
    start_proxy, pg: EmbeddedPostgres, sslmode: str
) -> None:  # type: ignore[no-untyped-def]
    """The upstream accepts at once but answers late (as a postmaster in a connection storm).

    The client sent everything asked of it; the proxy's start-up timeout (and the upstream's TCP
    connect timeout) must not fire while the proxy waits on the server.
    """
    relay = StallingRelay(pg.port, delay=1.5)
    try:
        url = f"postgresql://alice:{ALICE_PASSWORD}@127.0.0.1:{relay.port}/app?sslmode={sslmode}"
        running = start_proxy(
            url,
            **{
                "listen.startup_timeout_ms": 300,
                "upstream.connect_timeout_ms": 300,
                "guard.enabled": False,
            },
        )
        for mode in ("simple", "password"):
            if mode == "password":
                running = start_proxy(
                    url,
                    **{
                        "listen.startup_timeout_ms": 300,
                        "upstream.connect_timeout_ms": 300,
                        "guard.enabled": False,
                        "auth.mode": "password",
                        "auth.password": "proxy-secret",
                    },
                )
                dsn = running.dsn(password="proxy-secret")
            else:
                dsn = running.dsn()
            with psycopg.connect(dsn, connect_timeout=10) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        relay.close()


def test_silent_client_in_password_auth_still_times_out(start_proxy) -> None:  # type: ignore[no-untyped-def]
    running = start_proxy(
        **{"listen.startup_timeout_ms": 300, "auth.mode": "password", "auth.password": "proxy-secret"}
    )
    with raw_connect(running) as sock:
        sock.sendall(startup())
        start = time.monotonic()
        frames = read_frames(sock)  # the SASL request, then nothing from us: closed
        assert frames and frames[0].type == ord("R")
        assert time.monotonic() - start < 3


# -- the upstream restarted, stopped, or down at start ------------------------------------------------


@pytest.fixture(scope="module")
def own_pg() -> Iterator[EmbeddedPostgres]:
    """A server these tests may stop and restart."""
    with EmbeddedPostgres() as server:
        server.create_role("alice", ALICE_PASSWORD)
        server.execute("CREATE DATABASE app OWNER alice")
        yield server


def _own_url(pg: EmbeddedPostgres) -> str:
    return pg.url("app", user="alice", password=ALICE_PASSWORD) + "?sslmode=disable"


def _sleeping_query(dsn: str) -> tuple[threading.Thread, list[BaseException | None]]:
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("SELECT pg_sleep(20)")
            outcome.append(None)
        except BaseException as exc:  # the error is the outcome
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


@pytest.mark.parametrize("shutdown", [signal.SIGINT, signal.SIGQUIT], ids=["fast", "immediate"])
def test_upstream_restart_ends_sessions_with_an_error_then_serves_again(
    start_proxy, own_pg: EmbeddedPostgres, shutdown: signal.Signals
) -> None:  # type: ignore[no-untyped-def]
    running = start_proxy(_own_url(own_pg), **{"guard.enabled": False})
    idle = psycopg.connect(running.dsn(), autocommit=True)
    busy, outcome = _sleeping_query(running.dsn())
    _wait_sleeping_any(own_pg)
    stop_server(own_pg, shutdown)
    try:
        busy.join(5)
        assert outcome and isinstance(outcome[0], psycopg.OperationalError), outcome
        with pytest.raises(psycopg.OperationalError):
            idle.execute("SELECT 1")
        # Unreachable now: a clear 08006 at once, not a hang.
        start = time.monotonic()
        error = server_error(running.url(sslmode="disable"))
        assert error.sqlstate == "08006"  # type: ignore[attr-defined]
        assert time.monotonic() - start < 3
    finally:
        start_server(own_pg)
        idle.close()
    with psycopg.connect(running.dsn(), autocommit=True) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    _wait_for(lambda: running.session_count() == 0, "dead sessions left behind")
    assert running.stats.upstream_connections == 0


def test_upstream_down_at_start_then_up(start_proxy, own_pg: EmbeddedPostgres) -> None:  # type: ignore[no-untyped-def]
    stop_server(own_pg, signal.SIGINT)
    try:
        running = start_proxy(_own_url(own_pg))
        assert server_error(running.url(sslmode="disable")).sqlstate == "08006"  # type: ignore[attr-defined]
    finally:
        start_server(own_pg)
    with psycopg.connect(running.dsn(), autocommit=True) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    catalog = running.server.ctx.catalog
    assert catalog is not None
    running.call(catalog.watcher("app").wait_ready(30), timeout=40)  # the catalog recovers by itself


def stop_server(pg: EmbeddedPostgres, how: signal.Signals) -> None:
    """Shut the postmaster down (SIGINT: fast, SIGQUIT: immediate) and wait for it."""
    proc = pg._proc
    assert proc is not None
    proc.send_signal(how)
    proc.wait(30)


def start_server(pg: EmbeddedPostgres) -> None:
    if pg._proc is not None and pg._proc.poll() is None:
        return
    pg._proc = None
    pg._launch(time.monotonic() + 60)


def _wait_sleeping_any(pg: EmbeddedPostgres) -> None:
    def sleeping() -> bool:
        with pg.connect() as admin:
            row = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%pg_sleep%'"
                " AND pid <> pg_backend_pid()"
            ).fetchone()
        return row is not None and row[0] > 0

    _wait_for(sleeping, "the query never started")


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


# -- the proxy itself killed or stopped ---------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path, upstream_url: str) -> Iterator[ServeProcess]:
    proc = ServeProcess(
        "--upstream",
        upstream_url,
        cwd=tmp_path,
        env=clean_env(ELECTRIC_PROXY_SHUTDOWN_DRAIN_TIMEOUT_MS="20000"),
    )
    wait_for_port(proc.port, proc.proc)
    yield proc
    proc.stop()


def _served_dsn(port: int) -> str:
    return f"host=127.0.0.1 port={port} user=alice password={ALICE_PASSWORD} dbname=app sslmode=disable"


def test_proxy_killed_mid_migration_leaves_nothing(served: ServeProcess, pg: EmbeddedPostgres) -> None:
    """SIGKILL the proxy inside a migration: Postgres rolls it back, the history holds nothing."""
    conn = psycopg.connect(_served_dsn(served.port))
    conn.execute("CREATE TABLE killed_migration (id int)")
    conn.execute("ALTER TABLE killed_migration ADD COLUMN note text")
    pid = conn.info.backend_pid
    served.proc.send_signal(signal.SIGKILL)
    served.proc.wait(10)
    _wait_gone(pg, pid, timeout=10)
    with pg.connect("app") as admin:
        assert admin.execute("SELECT to_regclass('public.killed_migration')").fetchone() == (None,)
        row = admin.execute(
            "SELECT count(*) FROM electric.migration_statements WHERE sql LIKE '%killed_migration%'"
        ).fetchone()
        assert row == (0,)
    conn.close()


def test_sigterm_during_traffic_finishes_transactions_then_exits_0(
    served: ServeProcess, pg: EmbeddedPostgres
) -> None:
    dsn = _served_dsn(served.port)
    with psycopg.connect(dsn, autocommit=True) as setup:
        setup.execute("DROP TABLE IF EXISTS drained; CREATE TABLE drained (worker int, n int)")
    stop = threading.Event()
    committed: list[int] = []
    failures: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            with psycopg.connect(dsn) as conn:
                n = 0
                while not stop.is_set():
                    conn.execute("INSERT INTO drained VALUES (%s, %s)", (index, n))
                    conn.execute("SELECT pg_sleep(0.05)")
                    conn.commit()
                    committed.append(index)
                    n += 1
        except psycopg.OperationalError as exc:
            failures.append(exc)  # closed at an idle point after the drain began: expected

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(4)]
    for thread in threads:
        thread.start()
    _wait_for(lambda: len(committed) >= 8, "no traffic")
    served.proc.send_signal(signal.SIGTERM)
    _wait_for(lambda: _refused(served.port), "new connections still accepted")
    stop.set()
    assert served.proc.wait(20) == 0
    for thread in threads:
        thread.join(5)
    with pg.connect("app") as direct:
        rows = direct.execute("SELECT count(*) FROM drained").fetchone()
    # Every transaction the clients saw commit is there; none was cut half-way.
    assert rows is not None and rows[0] >= len(committed)


def test_second_sigterm_exits_at_once(served: ServeProcess) -> None:
    conn = psycopg.connect(_served_dsn(served.port))
    conn.execute("SELECT 1")  # a transaction stays open: the drain would wait 20 s for it
    served.proc.send_signal(signal.SIGTERM)
    _wait_for(lambda: _refused(served.port), "not draining")
    start = time.monotonic()
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(5) == 0
    assert time.monotonic() - start < 2.5  # the drain would have waited 20 s
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")
    conn.close()


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def test_upstream_tls_cut_mid_handshake_is_a_clean_08006(start_proxy, tls_pg: EmbeddedPostgres) -> None:  # type: ignore[no-untyped-def]
    relay = StallingRelay(tls_pg.port, delay=0.0, cut_after=200)  # 'S', then part of the ServerHello
    try:
        url = f"postgresql://alice:{ALICE_PASSWORD}@127.0.0.1:{relay.port}/app?sslmode=require"
        running = start_proxy(url, **{"guard.enabled": False})
        start = time.monotonic()
        error = server_error(running.url(sslmode="disable"))
        assert error.sqlstate == "08006"  # type: ignore[attr-defined]
        assert time.monotonic() - start < 5
        _wait_for(lambda: running.session_count() == 0, "session left behind")
    finally:
        relay.close()


# -- rolling restarts: two 2-worker proxies on one port (SO_REUSEPORT) -------------------------------

ROLLING_CYCLES = int(os.environ.get("ROLLING_CYCLES", "3"))


class _Workers:
    """`serve --workers 2` on a given port, its log lines collected as they come."""

    def __init__(self, port: int, upstream: str, cwd: Path) -> None:
        cmd = [sys.executable, "-m", "proxy", "serve", "--listen", f"127.0.0.1:{port}", "--workers", "2"]
        env = clean_env(
            ELECTRIC_PROXY_METRICS_ENABLED="false", ELECTRIC_PROXY_SHUTDOWN_DRAIN_TIMEOUT_MS="10000"
        )
        self.proc = subprocess.Popen(
            [*cmd, "--upstream", upstream], cwd=cwd, env=env, stderr=subprocess.PIPE, text=True
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def wait_listening(self) -> None:
        _wait_for(
            lambda: sum("listening on" in line for line in self.lines) >= 2, "workers not listening", 30
        )

    def stop(self) -> None:
        """SIGTERM (the parent forwards it to its workers); SIGKILL the lot if that fails."""
        if self.proc.poll() is not None:
            return
        children = _children(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            for pid in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.kill()
            self.proc.wait(10)


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as listing:
        return [int(child) for child in listing.read().split()]


def test_rolling_restarts_lose_no_transaction(
    tmp_path: Path, upstream_url: str, pg: EmbeddedPostgres
) -> None:
    """Start the next proxy on the same port, SIGTERM the old one, repeat, under a reconnecting load.

    A connect refused while an old listener closes is retried (as pools do); no committed
    transaction is lost and no transaction fails past its retries.
    """
    with pg.connect("app") as admin:
        admin.execute("DROP TABLE IF EXISTS rolling; CREATE TABLE rolling (worker int, n int)")
        admin.execute("GRANT ALL ON rolling TO alice")
    port = free_port()
    dsn = f"host=127.0.0.1 port={port} user=alice password={ALICE_PASSWORD} dbname=app sslmode=disable"
    current = _Workers(port, upstream_url, tmp_path)
    current.wait_listening()
    stop = threading.Event()
    committed: list[tuple[int, int]] = []
    gave_up: list[BaseException] = []
    retried: list[int] = []

    def worker(index: int) -> None:
        n = 0
        while not stop.is_set():
            for attempt in range(5):
                try:
                    with psycopg.connect(dsn, connect_timeout=5) as conn:
                        conn.execute("INSERT INTO rolling VALUES (%s, %s)", (index, n))
                        conn.commit()
                    committed.append((index, n))
                    break
                except psycopg.OperationalError as exc:
                    retried.append(index)
                    if attempt == 4:
                        gave_up.append(exc)
            n += 1

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(4)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(ROLLING_CYCLES):
            before = len(committed)
            successor = _Workers(port, upstream_url, tmp_path)
            successor.wait_listening()
            current.proc.send_signal(signal.SIGTERM)
            assert current.proc.wait(20) == 0
            current = successor
            _wait_for(lambda before=before: len(committed) > before + 10, "no traffic after a restart")
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        current.stop()
    assert not gave_up, gave_up[:3]
    print(
        f"rolling restarts: {ROLLING_CYCLES} cycles, {len(committed)} commits, {len(retried)} retried connects"
    )
    with pg.connect("app") as admin:
        rows = set(admin.execute("SELECT worker, n FROM rolling").fetchall())
    assert set(committed) <= rows  # every commit a client saw is there
