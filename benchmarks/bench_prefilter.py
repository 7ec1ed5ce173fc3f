"""Micro-benchmarks of the proxy's per-message hot path, in-process, with `timeit`.

- `proxy.ddl.prefilter.may_need_parse(sql: bytes)` on the statements pgbench sends (the `-S`
  SELECT, the tpcb-like UPDATE/INSERT/SELECT, BEGIN/END) and on a few DDL strings: it runs on every
  Query and Parse message, so its cost is paid on every statement.
- `proxy.ddl.classify.classify(str)` on the DDL strings (and on the `-S` SELECT, for reference):
  the pglast parse that the prefilter saves on DML.
- `proxy.protocol.framer.Framer.feed` on a recorded-shape pgbench `-S` server reply (RowDescription,
  DataRow, CommandComplete, ReadyForQuery), with keep={'Z'} as while relaying: ns per message.

Each figure is the best of `--repeat` timeit repeats (each long enough by `Timer.autorange`,
at least `--min-time` seconds), divided by the calls per repeat. It includes timeit's call overhead
(a few tens of ns; the `(no-op call)` row shows it). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import struct
import sys
import timeit
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

from bench_pgbench import git_commit

from proxy.ddl.classify import classify
from proxy.ddl.prefilter import may_need_look, may_need_parse
from proxy.protocol import framer as framer_module
from proxy.protocol import messages
from proxy.protocol.codes import Backend, Frontend
from proxy.protocol.framer import Frame, Framer, PyFramer

# --- the statements --------------------------------------------------------------------------------

# What pgbench puts on the wire: in simple mode the variables are substituted as literals, in
# extended/prepared mode they become $n parameters. Every built-in script line ends in `;`.
DML: Final = (
    ("-S select (simple)", "SELECT abalance FROM pgbench_accounts WHERE aid = 4242424;"),
    ("-S select (extended)", "SELECT abalance FROM pgbench_accounts WHERE aid = $1;"),
    ("tpcb BEGIN", "BEGIN;"),
    ("tpcb update accounts", "UPDATE pgbench_accounts SET abalance = abalance + -1234 WHERE aid = 4242424;"),
    ("tpcb update tellers", "UPDATE pgbench_tellers SET tbalance = tbalance + -1234 WHERE tid = 42;"),
    ("tpcb update branches", "UPDATE pgbench_branches SET bbalance = bbalance + -1234 WHERE bid = 7;"),
    (
        "tpcb insert history",
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) "
        "VALUES (42, 7, 4242424, -1234, CURRENT_TIMESTAMP);",
    ),
    ("tpcb END", "END;"),
    # Not pgbench, but common: an ORM/APM comment in front disables the one-statement fast path.
    (
        "select + /* comment */",
        "/* app=web,route=/accounts */ SELECT abalance FROM pgbench_accounts WHERE aid = $1",
    ),
)

DDL: Final = (
    (
        "create table",
        "CREATE TABLE public.items (id bigint PRIMARY KEY, name text NOT NULL, price numeric(10,2))",
    ),
    ("alter table add column", "ALTER TABLE public.items ADD COLUMN created_at timestamptz DEFAULT now()"),
    ("create index", "CREATE INDEX CONCURRENTLY items_name_idx ON public.items (lower(name))"),
    ("drop table", "DROP TABLE IF EXISTS public.items CASCADE"),
    ("comment on", "COMMENT ON COLUMN public.items.name IS 'display name, not unique'"),
    ("set search_path", "SET search_path TO app, public"),
    (
        "migration (4 stmts)",
        "BEGIN;\n"
        "CREATE TABLE app.orders (id bigserial PRIMARY KEY, item_id bigint REFERENCES public.items (id));\n"
        "ALTER TABLE app.orders ADD COLUMN qty integer NOT NULL DEFAULT 1;\n"
        "CREATE INDEX orders_item_idx ON app.orders (item_id);\n"
        "COMMIT;",
    ),
)

# --- the pgbench -S reply ----------------------------------------------------------------------------

INT4_OID: Final = 23


def row_description(*columns: tuple[str, int]) -> bytes:
    """RowDescription: per column name, table oid, attnum, type oid, typlen, typmod, format (text)."""
    body = struct.pack("!h", len(columns))
    for name, type_oid in columns:
        body += messages.cstring(name) + struct.pack("!ihihih", 16390, 3, type_oid, 4, -1, 0)
    return messages.message(Backend.ROW_DESCRIPTION, body)


def data_row(*values: bytes | None) -> bytes:
    body = struct.pack("!h", len(values))
    for value in values:
        body += struct.pack("!i", -1) if value is None else struct.pack("!i", len(value)) + value
    return messages.message(Backend.DATA_ROW, body)


def simple_reply() -> bytes:
    """What Postgres answers to pgbench -S in simple mode: T, D, C, Z."""
    return b"".join(
        (
            row_description(("abalance", INT4_OID)),
            data_row(b"-2718"),
            messages.command_complete("SELECT 1"),
            messages.ready_for_query(ord("I")),
        )
    )


def prepared_reply() -> bytes:
    """What Postgres answers to pgbench -S -M prepared (Bind/Execute/Sync): 2, D, C, Z."""
    return b"".join(
        (
            messages.message(Backend.BIND_COMPLETE),
            data_row(b"-2718"),
            messages.command_complete("SELECT 1"),
            messages.ready_for_query(ord("I")),
        )
    )


def count_messages(stream: bytes) -> int:
    count = pos = 0
    while pos < len(stream):
        (length,) = struct.unpack_from("!I", stream, pos + 1)
        pos += 1 + length
        count += 1
    return count


# --- timing --------------------------------------------------------------------------------------------


@dataclass
class Timing:
    group: str
    name: str
    size: int  # bytes of input
    result: str  # what the call returned, to show what was measured
    ns_per_call: float
    per_unit: int = 1  # messages per call, for the framer
    calls_per_repeat: int = 0

    @property
    def ns_per_unit(self) -> float:
        return self.ns_per_call / self.per_unit


def best_ns(func: Callable[[], object], repeat: int, min_time: float) -> tuple[float, int]:
    """Best of `repeat` timeit repeats, in ns per call, and the calls per repeat."""
    timer = timeit.Timer(func)
    number = 1
    while True:  # Timer.autorange, with our own minimum time
        elapsed = timer.timeit(number)
        if elapsed >= min_time:
            break
        number = max(number * 2, int(number * min_time / max(elapsed, 1e-9) * 1.1))
    best = min(timer.repeat(repeat=repeat, number=number))
    return best * 1e9 / number, number


def time_prefilter(opts: argparse.Namespace) -> list[Timing]:
    out = []
    noop: Callable[[bytes], bool] = lambda _sql: False  # noqa: E731
    ns, number = best_ns(lambda: noop(b""), opts.repeat, opts.min_time)
    out.append(Timing("prefilter", "(no-op call)", 0, "-", ns, calls_per_repeat=number))
    for group, cases in (("prefilter DML", DML), ("prefilter DDL", DDL)):
        for name, sql in cases:
            data = sql.encode()
            ns, number = best_ns(lambda data=data: may_need_parse(data), opts.repeat, opts.min_time)
            result = str(may_need_parse(data))
            out.append(Timing(group, name, len(data), result, ns, calls_per_repeat=number))
    return out


def time_classify(opts: argparse.Namespace) -> list[Timing]:
    out = []
    for name, sql in (DML[0], *DDL):
        kinds = ",".join(st.kind.value for st in classify(sql))
        ns, number = best_ns(lambda sql=sql: classify(sql), opts.repeat, opts.min_time)
        out.append(Timing("classify", name, len(sql.encode()), kinds, ns, calls_per_repeat=number))
    return out


def rows_reply(rows: int) -> bytes:
    """A simple-mode reply of `rows` one-column rows: T, rows x D, C, Z."""
    return b"".join(
        (
            row_description(("abalance", INT4_OID)),
            data_row(b"-2718") * rows,
            messages.command_complete(f"SELECT {rows}"),
            messages.ready_for_query(ord("I")),
        )
    )


def framer_classes() -> list[tuple[str, type[Framer]]]:
    """The pure-Python reference and, when built, the framer with the compiled scanner."""
    out: list[tuple[str, type[Framer]]] = [("py", PyFramer)]
    if Framer.scan is not None:
        out.append(("c", Framer))
    return out


def time_framer(opts: argparse.Namespace) -> list[Timing]:
    z = ord("Z")
    guard_watching = {z, Backend.COMMAND_COMPLETE, Backend.ERROR_RESPONSE, Backend.NOTICE_RESPONSE}
    batch = simple_reply() * opts.batch
    cases: list[tuple[str, bytes, set[int], bool]] = [
        ("-S simple reply (T D C Z), keep Z", simple_reply(), {z}, False),
        ("-S simple reply, keep Z, peek Z (idle guard)", simple_reply(), {z}, True),
        ("-S prepared reply (2 D C Z), keep Z", prepared_reply(), {z}, False),
        ("100-row reply, keep Z", rows_reply(100), {z}, False),
        (f"{opts.batch} simple replies in one chunk, keep Z", batch, {z}, False),
        ("-S simple reply, keep nothing", simple_reply(), set(), False),
        ("-S simple reply, keep Z C E N", simple_reply(), guard_watching, False),
        ("client Query -S, keep Q, peek Q (prefilter)", messages.query(DML[0][1]), {Frontend.QUERY}, True),
    ]
    out = []
    for impl, cls in framer_classes():
        for name, chunk, keep, peeks in cases:
            framer = cls(keep=keep, direction="upstream")
            if peeks:
                for code in keep:  # as the relay's peeks: Z noted in place, Q/P prefiltered
                    framer.peek[code] = lambda m: may_need_look(m[5:-1], frozenset())
            items = framer.feed(chunk)
            assert framer.pending == 0, "the chunk must hold whole messages only"
            frames = sum(isinstance(item, Frame) for item in items)
            result = f"{len(items)} items, {frames} frames"
            feed = framer.feed
            ns, number = best_ns(lambda feed=feed, chunk=chunk: feed(chunk), opts.repeat, opts.min_time)
            count = count_messages(chunk)
            out.append(Timing(f"framer[{impl}]", f"[{impl}] {name}", len(chunk), result, ns, count, number))
    return out


# --- reporting -----------------------------------------------------------------------------------------


def _time(value_ns: float, unit: str) -> str:
    return f"{value_ns:,.0f} ns" if unit == "ns" else f"{value_ns / 1000:,.2f} µs"


def print_table(title: str, rows: Sequence[Timing], *, unit: str = "ns", per_message: bool = False) -> None:
    name_w = max(len(r.name) for r in rows)
    res_w = max(12, *(len(r.result) for r in rows))
    cols = [f"{'input' if per_message else 'statement':{name_w}}", f"{'bytes':>5}"]
    if per_message:
        cols.append(f"{'msgs':>4}")
    cols += [f"{'result':{res_w}}", f"{'per feed' if per_message else 'per call':>10}"]
    if per_message:
        cols.append(f"{'per msg':>9}")
    header = "  ".join(cols)
    print(title)
    print(header)
    print("-" * len(header))
    for r in rows:
        cells = [f"{r.name:{name_w}}", f"{r.size:5}"]
        if per_message:
            cells.append(f"{r.per_unit:4}")
        cells += [f"{r.result:{res_w}}", f"{_time(r.ns_per_call, unit):>10}"]
        if per_message:
            cells.append(f"{_time(r.ns_per_unit, unit):>9}")
        print("  ".join(cells))
    print()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="timeit micro-benchmarks of the prefilter, classify, framer")
    parser.add_argument("--repeat", type=int, default=7, help="timeit repeats; the best counts (default 7)")
    parser.add_argument(
        "--min-time", type=float, default=0.2, help="seconds per repeat at least (default 0.2)"
    )
    parser.add_argument(
        "--batch", type=int, default=32, help="replies in the batched framer case (default 32)"
    )
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the raw timings here")
    opts = parser.parse_args(argv)
    if opts.repeat < 1 or opts.min_time <= 0 or opts.batch < 1:
        parser.error("--repeat and --batch must be >= 1, --min-time > 0")

    stamp = {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "machine": platform.machine(),
        "proxy_commit": git_commit(),
        "framer": framer_module.IMPLEMENTATION,
        "method": f"timeit, best of {opts.repeat} repeats of >= {opts.min_time}s each",
    }
    print("environment:")
    for key, value in stamp.items():
        print(f"  {key:14} {value}")
    print()

    prefilter = time_prefilter(opts)
    print_table(
        "may_need_parse(sql: bytes)  [result: True = would be parsed by the guard]",
        prefilter,
    )
    classified = time_classify(opts)
    print_table("classify(sql: str)  [result: statement kinds]", classified, unit="µs")
    framed = time_framer(opts)
    print_table(
        "Framer.feed(chunk), upstream direction  [per msg = per feed / msgs]", framed, per_message=True
    )

    if opts.json is not None:
        payload = {
            "environment": stamp,
            "timings": [asdict(t) | {"ns_per_unit": t.ns_per_unit} for t in prefilter + classified + framed],
        }
        opts.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"raw results written to {opts.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
