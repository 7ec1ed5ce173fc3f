"""In-process micro-benchmark of one relayed query: the proxy's own Python per round trip.

No server and no sockets: a real `Session` in relay mode, with or without a real `GuardLink`, writes
into transports that only count bytes. Each row times the two calls the event loop makes per pgbench
`-S` query, `data_received(Query)` and `upstream_data(reply)`, as `timeit`'s best repeat, and counts
what one query costs: the floor the proxy pays on top of uvloop and the four syscalls.

    .venv/bin/python benchmarks/bench_relay.py                 # best of 7 repeats of >= 0.2 s
    .venv/bin/python benchmarks/bench_relay.py --json /tmp/relay.json
    ELECTRIC_PROXY_FRAMER=python .venv/bin/python benchmarks/bench_relay.py   # the pure-Python framer

Rows: `relay` (no guard), `guard idle` (a guarded database, nothing pending: the common case), and
`guard, ready framed` (the same with ReadyForQuery framed and passed to the guard as before the
idle fast path, for comparison).
"""

from __future__ import annotations

import argparse
import json
import platform
import struct
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench_pgbench import git_commit
from bench_prefilter import best_ns, prepared_reply, simple_reply

from proxy.catalog.cache import EMPTY_SNAPSHOT
from proxy.config import load_config
from proxy.ddl.guard import SessionGuard
from proxy.net.context import ProxyContext
from proxy.net.guardlink import GuardLink
from proxy.net.session import Session
from proxy.net.upstream import UpstreamTarget
from proxy.protocol import framer, messages

SELECT = "SELECT abalance FROM pgbench_accounts WHERE aid = 4242;"


class CountingTransport:
    """Just enough of an asyncio transport for the relay: counts what is written."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += len(data)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        raise RuntimeError("the relay closed a connection: the benchmark's input is wrong")


class _AlwaysWantsReady(GuardLink):
    """The guard as before the idle fast path: every ReadyForQuery framed and passed to it."""

    @property
    def wants_ready(self) -> bool:
        return True


def relay_session(guard: type[GuardLink] | None) -> Session:
    config = load_config(env={}, overrides={"listen.address": "127.0.0.1:0"})
    target = UpstreamTarget("127.0.0.1", 5432, "u", "", "d", "disable", "", 5.0)
    session = Session(ProxyContext(config=config, target=target, tls=None))
    session.client = CountingTransport()  # type: ignore[assignment]
    session.upstream = CountingTransport()  # type: ignore[assignment]
    if guard is not None:
        link = guard(
            session,
            SessionGuard(lambda: EMPTY_SNAPSHOT),
            capturing=lambda: False,
            checking=lambda: False,
            versions=session.ctx.versions,
            stats=session.ctx.stats,
            meta={},
        )
        session.guard_link = link
        link.install()
    session._client_framer.feed(messages.encode_startup(196608, {"user": "u"}))  # past the startup
    session._start_relay()
    return session


def one_query(session: Session, query: bytes, reply: bytes) -> Callable[[], None]:
    client, upstream = session.data_received, session.upstream_data

    def run() -> None:
        client(query)
        upstream(reply)

    return run


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--min-time", type=float, default=0.2)
    parser.add_argument("--json", type=Path, default=None, metavar="PATH")
    opts = parser.parse_args(argv)
    print(f"python {platform.python_version()}, framer {framer.IMPLEMENTATION}, proxy_commit {git_commit()}")
    extended = b"".join(
        (
            # pgbench -M prepared: Bind (portal "", statement P0_1, one text parameter), Execute, Sync
            messages.message(ord("B"), b"\x00P0_1\x00" + struct.pack("!hhi4sh", 0, 1, 4, b"4242", 0)),
            messages.message(ord("E"), b"\x00" + struct.pack("!i", 0)),
            messages.message(ord("S")),
        )
    )
    rows: list[dict[str, Any]] = []
    print(f"{'variant':24} {'mode':9} {'µs/query':>9}")
    variants = (("relay", None), ("guard idle", GuardLink), ("guard, ready framed", _AlwaysWantsReady))
    for label, guard in variants:
        for mode, query, reply in (
            ("simple", messages.query(SELECT), simple_reply()),
            ("prepared", extended, prepared_reply()),
        ):
            session = relay_session(guard)
            ns, number = best_ns(one_query(session, query, reply), opts.repeat, opts.min_time)
            rows.append({"variant": label, "mode": mode, "ns_per_query": ns, "calls": number})
            print(f"{label:24} {mode:9} {ns / 1000:9.2f}")
    if opts.json is not None:
        opts.json.write_text(json.dumps({"framer": framer.IMPLEMENTATION, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
