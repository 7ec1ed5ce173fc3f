"""How much a COPY TO STDOUT the proxy's buffers hold, and what shrinking them costs.

One throwaway Postgres, one proxy run in this process (guard off, so only the relay is measured) whose
per-direction write-buffer high-water mark (`proxy.net.session._HIGH_WATER`, 256 KiB) is set before
each run; every run opens a new connection, which reads the mark. Per high-water mark, interleaved
over rounds, it measures:

- **COPY out throughput**: `COPY (SELECT generate_series(1, ROWS)) TO STDOUT` read at full speed
  through the proxy and directly; wall time, plus what the proxy saw: the sizes of its reads from the
  upstream socket and the most its client-side write buffer held;
- **cancel in time?**: the same COPY of 1,000,000 rows (~7 MB, as in issue 12) read slowly: the client
  reads one block, waits `--stall` seconds so every buffer fills, sends a CancelRequest, then reads the
  rest. It reports how many bytes still came after the cancel and whether the COPY ended in
  `QueryCanceled` (the cancel arrived while the server was still producing) or completed.

    .venv/bin/python benchmarks/bench_buffers.py
    .venv/bin/python benchmarks/bench_buffers.py --high-water 4,16,64,256 --rounds 5 --rows 10000000

Kernel socket buffers (tcp_rmem/tcp_wmem) are printed too: they add a pair of buffers per hop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import uvloop

from proxy.config import load_config
from proxy.embedded import EmbeddedPostgres
from proxy.net import session as session_module
from proxy.net import upstream as upstream_module
from proxy.net.server import ProxyServer

USER = PASSWORD = "postgres"


@dataclass
class Seen:
    """What the proxy's relay saw during one run."""

    reads: list[int] = field(default_factory=list)
    max_client_buffer: int = 0


SEEN = Seen()
SOCKET_CAP = {"bytes": 0}  # SO_RCVBUF of the upstream socket and SO_SNDBUF of the client's; 0: kernel's


def _cap(transport: Any, option: int) -> None:
    if SOCKET_CAP["bytes"]:
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, option, SOCKET_CAP["bytes"])


def instrument() -> None:
    """Record the size of every upstream read and the client write buffer after relaying it."""
    original = session_module.Session.upstream_data

    def upstream_data(self: session_module.Session, data: bytes) -> None:
        original(self, data)
        SEEN.reads.append(len(data))
        if self.client is not None:
            SEEN.max_client_buffer = max(SEEN.max_client_buffer, self.client.get_write_buffer_size())

    session_module.Session.upstream_data = upstream_data  # type: ignore[method-assign]

    client_made = session_module.Session.connection_made
    upstream_made = upstream_module.UpstreamProtocol.connection_made

    def connection_made(self: session_module.Session, transport: Any) -> None:
        _cap(transport, socket.SO_SNDBUF)
        client_made(self, transport)

    def upstream_connection_made(self: upstream_module.UpstreamProtocol, transport: Any) -> None:
        _cap(transport, socket.SO_RCVBUF)
        upstream_made(self, transport)

    session_module.Session.connection_made = connection_made  # type: ignore[method-assign]
    upstream_module.UpstreamProtocol.connection_made = upstream_connection_made  # type: ignore[method-assign]


class InProcessProxy:
    def __init__(self, upstream_url: str) -> None:
        overrides: dict[str, object] = {
            "listen.address": "127.0.0.1",
            "listen.port": 0,
            "upstream.url": upstream_url,
            "metrics.enabled": False,
            "guard.enabled": False,
        }
        self.loop = uvloop.new_event_loop()
        self.server = ProxyServer(load_config(None, env={}, overrides=overrides))
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.call(self.server.start())

    def call(self, coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(30)

    def stop(self) -> None:
        self.call(self.server.shutdown(2.0))
        self.loop.call_soon_threadsafe(self.loop.stop)


def copy_out(dsn: str, rows: int) -> float:
    """Seconds to read the whole COPY at full speed."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        started = time.perf_counter()
        with conn.cursor().copy(f"COPY (SELECT generate_series(1, {rows})) TO STDOUT") as copy:
            for _ in copy:
                pass
        return time.perf_counter() - started


def copy_in(dsn: str, megabytes: int) -> float:
    """Seconds to send `megabytes` MB of rows with COPY FROM STDIN, in 64 KiB writes."""
    line = b"%09d\n"
    block = b"".join(line % i for i in range(6_553))  # 65,530 bytes
    blocks = megabytes * 1_000_000 // len(block)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE UNLOGGED TABLE IF NOT EXISTS bench_copy_in (n int)")
        conn.execute("TRUNCATE bench_copy_in")
        started = time.perf_counter()
        with conn.cursor().copy("COPY bench_copy_in FROM STDIN") as copy:
            for _ in range(blocks):
                copy.write(block)
        return time.perf_counter() - started


def cancel_late(dsn: str, stall: float) -> tuple[int, bool]:
    """Bytes read after the cancel was sent, and whether the COPY was cancelled."""
    after = 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        try:
            with conn.cursor().copy("COPY (SELECT generate_series(1, 1000000)) TO STDOUT") as copy:
                blocks = iter(copy)
                next(blocks)
                time.sleep(stall)  # the server writes until every buffer between us is full
                conn.cancel_safe()
                for block in blocks:
                    after += len(block)
        except psycopg.errors.QueryCanceled:
            return after, True
    return after, False


def kernel_buffers() -> str:
    parts = []
    for name in ("tcp_rmem", "tcp_wmem"):
        with contextlib.suppress(OSError):
            parts.append(f"{name} {Path('/proc/sys/net/ipv4', name).read_text().split()}")
    return ", ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--high-water", default="16,64,256", help="KiB, comma-separated (default 16,64,256)")
    parser.add_argument(
        "--socket-buffers",
        default="0",
        help="KiB for the proxy's upstream SO_RCVBUF and client SO_SNDBUF, comma-separated; 0: the kernel's "
        "autotuning (default 0)",
    )
    parser.add_argument("--copy-in-mb", type=int, default=0, help="also time a COPY FROM STDIN of this size")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=3_000_000, help="rows in the throughput COPY")
    parser.add_argument("--stall", type=float, default=0.5, help="seconds the slow reader waits")
    opts = parser.parse_args(argv)
    marks = [int(k) * 1024 for k in opts.high_water.split(",")]
    caps = [int(k) * 1024 for k in opts.socket_buffers.split(",")]
    instrument()
    with contextlib.ExitStack() as stack:
        pg = EmbeddedPostgres(user=USER, password=PASSWORD)
        stack.callback(pg.stop)
        pg.start()
        proxy = InProcessProxy(pg.url("postgres") + "?sslmode=disable")
        stack.callback(proxy.stop)
        direct = pg.url("postgres") + "?sslmode=disable"
        via = f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{proxy.server.port}/postgres?sslmode=disable"
        print(f"kernel: {kernel_buffers()}; default high-water {session_module._HIGH_WATER // 1024} KiB")
        results: dict[str, dict[str, list[float]]] = {}
        for round_no in range(1, opts.rounds + 1):
            targets = [("direct", direct, 0, 0)]
            for cap in caps:
                sock = f" sock={cap // 1024}K" if cap else ""
                targets += [(f"proxy hw={m // 1024}K{sock}", via, m, cap) for m in marks]
            for label, dsn, mark, cap in targets:
                session_module._HIGH_WATER = mark or session_module._HIGH_WATER  # type: ignore[misc]
                SOCKET_CAP["bytes"] = cap
                for key, value in measure(dsn, opts).items():
                    results.setdefault(label, {}).setdefault(key, []).append(value)
            print(f"round {round_no}/{opts.rounds} done", file=sys.stderr)
        report(results, opts)
    return 0


def measure(dsn: str, opts: argparse.Namespace) -> dict[str, float]:
    SEEN.reads.clear()
    SEEN.max_client_buffer = 0
    seconds = copy_out(dsn, opts.rows)
    reads = sorted(SEEN.reads) or [0]
    buffered = SEEN.max_client_buffer
    after, cancelled = cancel_late(dsn, opts.stall)
    return {
        "copy_in_s": copy_in(dsn, opts.copy_in_mb) if opts.copy_in_mb else 0.0,
        "copy_s": seconds,
        "read_median": reads[len(reads) // 2],
        "read_max": reads[-1],
        "client_buffer_max": buffered,
        "bytes_after_cancel": after,
        "cancelled": float(cancelled),
    }


def report(results: dict[str, dict[str, list[float]]], opts: argparse.Namespace) -> None:
    print(
        f"\nmedians over {opts.rounds} rounds; COPY of {opts.rows:,} rows; cancel after a {opts.stall}s stall"
    )
    header = (
        f"{'target':26} {'COPY out s':>10} {'COPY in s':>9} {'read median':>11} {'read max':>9} "
        f"{'client buf max':>14} {'bytes after cancel':>18} {'cancelled':>9}"
    )
    print(header)
    print("-" * len(header))
    for label, values in results.items():
        med = {key: statistics.median(v) for key, v in values.items()}
        cancelled = f"{int(sum(values['cancelled']))}/{len(values['cancelled'])}"
        proxied = label != "direct"
        sizes = (
            f"{_size(med['read_median'], proxied):>11} {_size(med['read_max'], proxied):>9} "
            f"{_size(med['client_buffer_max'], proxied):>14}"
        )
        copies = f"{med['copy_s']:10.2f} {med['copy_in_s']:9.2f}"
        print(f"{label:26} {copies} {sizes} {med['bytes_after_cancel']:18,.0f} {cancelled:>9}")


def _size(value: float, proxied: bool) -> str:
    return f"{value / 1024:.0f} KiB" if proxied else "-"


if __name__ == "__main__":
    sys.exit(main())
