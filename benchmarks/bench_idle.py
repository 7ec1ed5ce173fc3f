"""Proxy RSS per idle connection: the proxy as its own process, N connections that ran one query each.

    .venv/bin/python benchmarks/bench_idle.py            # 1,000 connections, guard off then on
    .venv/bin/python benchmarks/bench_idle.py --connections 200

RSS is the proxy's process tree (VmRSS of the process and its workers) after 5 warm-up connections and
again with N more open and idle; the difference over N is the cost of one idle connection. Postgres runs
with max_connections = N + 50.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import psycopg
from bench_pgbench import free_port

from proxy.embedded import EmbeddedPostgres

WARM = 5


def rss_kib(pid: int) -> int:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    total = 0
    for proc in [pid, *map(int, children)]:
        for line in Path(f"/proc/{proc}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def measure(upstream: str, guard: str, n: int, workdir: Path) -> tuple[int, int]:
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "ELECTRIC_PROXY_GUARD_ENABLED": guard,
        "ELECTRIC_PROXY_DRIFT_ENABLED": "false",
    }
    log = workdir / f"proxy-guard-{guard}.log"
    cmd = [sys.executable, "-m", "proxy", "serve", "--listen", f"127.0.0.1:{port}", "--upstream", upstream,
           "--metrics-listen", "127.0.0.1:0"]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=workdir, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while b"listening on" not in log.read_bytes():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"proxy did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        dsn = f"postgresql://postgres:postgres@127.0.0.1:{port}/postgres?sslmode=disable"
        conns = []
        for i in range(WARM + n):
            conns.append(psycopg.connect(dsn))
            conns[-1].execute("SELECT 1")
            if i == WARM - 1:
                base = rss_kib(proc.pid)
        full = rss_kib(proc.pid)
        for conn in conns:
            conn.close()
        return base, full
    finally:
        proc.terminate()
        proc.wait(10)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    opts = parser.parse_args(argv)
    n = opts.connections
    pg = EmbeddedPostgres(user="postgres", password="postgres", settings={"max_connections": str(n + 50)})
    pg.start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-idle-") as workdir:
            for guard in ("false", "true"):
                base, full = measure(pg.url("postgres") + "?sslmode=disable", guard, n, Path(workdir))
                print(
                    f"guard {guard:5}: RSS {base / 1024:.1f} MiB with {WARM} connections, "
                    f"{full / 1024:.1f} MiB with {WARM + n}: {(full - base) / n:.1f} KiB per idle connection"
                )
    finally:
        pg.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
