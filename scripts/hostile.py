#!/usr/bin/env python3
"""Hostile clients at scale against a proxy process: `python scripts/hostile.py`.

Starts its own Postgres and a proxy (`python -m proxy serve`), then runs, one after the other:
slowloris start-ups, connections opened and dropped in bulk, a huge Query sent slowly, and a
client that stops reading a large result. For each it prints the proxy's RSS and open fds, the
slowest connect-and-query of a well-behaved client meanwhile, and what was left behind.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from proxy.embedded import EmbeddedPostgres  # noqa: E402
from proxy.net.server import free_port  # noqa: E402
from proxy.protocol import messages  # noqa: E402
from proxy.protocol.codes import PROTOCOL_3_0  # noqa: E402

PASSWORD = "hostile-secret"
MB = 1024 * 1024


class Proxy:
    def __init__(self, upstream: str, startup_timeout_ms: int) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ELECTRIC_PROXY_", "PG"))}
        env.update(
            ELECTRIC_PROXY_METRICS_ENABLED="false",
            ELECTRIC_PROXY_LISTEN_STARTUP_TIMEOUT_MS=str(startup_timeout_ms),
            ELECTRIC_PROXY_LOG_LEVEL="warning",
        )
        cmd = [sys.executable, "-m", "proxy", "serve", "--listen", f"127.0.0.1:{self.port}"]
        self.proc = subprocess.Popen([*cmd, "--upstream", upstream], env=env, cwd=ROOT)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline and self.proc.poll() is None, "proxy did not start"
                time.sleep(0.05)
        self.dsn = f"host=127.0.0.1 port={self.port} user=hostile password={PASSWORD} dbname=hostile"

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def latency(self, queries: int = 10) -> float:
        start = time.monotonic()
        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=30, sslmode="disable") as conn:
            worst = time.monotonic() - start
            for _ in range(queries):
                start = time.monotonic()
                conn.execute("SELECT 1")
                worst = max(worst, time.monotonic() - start)
        return worst

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.terminate()  # the second SIGTERM: no more draining
            self.proc.wait(10)


def backends(pg: EmbeddedPostgres) -> int:
    with pg.connect() as admin:
        row = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = 'hostile'").fetchone()
    return int(row[0]) if row else -1


def report(name: str, proxy: Proxy, pg: EmbeddedPostgres, started: float, extra: str = "") -> None:
    line = (
        f"{name:<28} rss {proxy.rss_mb():7.1f} MB  fds {proxy.fds():5d}  backends {backends(pg):4d}"
        f"  latency {proxy.latency() * 1000:7.1f} ms  took {time.monotonic() - started:6.1f}s"
    )
    print(line + (f"  {extra}" if extra else ""), flush=True)


def slowloris(proxy: Proxy, pg: EmbeddedPostgres, count: int) -> None:
    started = time.monotonic()
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=30)
        sock.sendall(b"\0")
        socks.append(sock)
    peak = proxy.rss_mb()
    during = proxy.latency()
    open_backends = backends(pg)
    closed = 0
    deadline = time.monotonic() + 30
    for sock in socks:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            closed += sock.recv(1) == b""
        except ConnectionResetError:
            closed += 1
        except TimeoutError:
            pass
        sock.close()
    cut = time.monotonic() - started
    report(
        f"slowloris x{count}",
        proxy,
        pg,
        started,
        f"closed {closed}/{count} by {cut:.1f}s; during: peak rss {peak:.1f} MB,"
        f" latency {during * 1000:.0f} ms, backends {open_backends}",
    )


def bulk(proxy: Proxy, pg: EmbeddedPostgres, count: int) -> None:
    started = time.monotonic()
    full = messages.encode_startup(PROTOCOL_3_0, {"user": "hostile", "database": "hostile"})
    for index in range(count):
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=30)
        sock.sendall([b"", full[:2], full[:9], full][index % 4])
        if index % 8 == 7:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    time.sleep(1)  # let the last backends exit before counting
    report(f"open+drop x{count}", proxy, pg, started)


def huge_query(proxy: Proxy, pg: EmbeddedPostgres, megabytes: int) -> None:
    started = time.monotonic()
    before = proxy.rss_mb()
    conn = psycopg.connect(proxy.dsn, autocommit=True, sslmode="disable")
    sock = socket.socket(fileno=conn.pgconn.socket)
    sock.settimeout(60)
    sock.sendall(b"Q" + struct.pack("!I", 1024 * MB) + b"SELECT '")
    lat = []
    for index in range(megabytes):
        sock.sendall(b"x" * MB)
        if index % 16 == 15:
            lat.append(proxy.latency(2))
    peak = proxy.rss_mb()
    sock.close()
    conn.close()
    report(
        f"1 GB Query, {megabytes} MB sent",
        proxy,
        pg,
        started,
        f"rss {before:.0f} -> peak {peak:.0f} MB;"
        f" others' latency median {statistics.median(lat) * 1000:.0f} ms",
    )


def stalled_reader(proxy: Proxy, pg: EmbeddedPostgres) -> None:
    started = time.monotonic()
    conn = psycopg.connect(proxy.dsn, autocommit=True, sslmode="disable")
    sock = socket.socket(fileno=conn.pgconn.socket)
    sock.settimeout(60)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.sendall(messages.query("SELECT repeat('x', 1000) FROM generate_series(1, 500000)"))
    lat = [proxy.latency(2) for _ in range(10)]
    peak = proxy.rss_mb()
    sock.close()
    conn.close()
    report(
        "stalled reader of 500 MB",
        proxy,
        pg,
        started,
        f"peak rss {peak:.0f} MB; others' latency max {max(lat) * 1000:.0f} ms",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slowloris", type=int, default=2000)
    parser.add_argument("--bulk", type=int, default=5000)
    parser.add_argument("--huge-mb", type=int, default=256)
    parser.add_argument("--startup-timeout-ms", type=int, default=2000)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with EmbeddedPostgres(settings={"max_connections": "300"}) as pg:
        pg.create_role("hostile", PASSWORD)
        pg.execute("CREATE DATABASE hostile OWNER hostile")
        upstream = pg.url("hostile", user="hostile", password=PASSWORD) + "?sslmode=disable"
        proxy = Proxy(upstream, args.startup_timeout_ms)
        try:
            started = time.monotonic()
            proxy.latency()
            report("baseline", proxy, pg, started)
            slowloris(proxy, pg, args.slowloris)
            bulk(proxy, pg, args.bulk)
            huge_query(proxy, pg, args.huge_mb)
            stalled_reader(proxy, pg)
            report("after all", proxy, pg, time.monotonic())
        finally:
            proxy.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
