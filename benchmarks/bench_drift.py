"""Drift scan cost on a large schema: the fingerprint, the snapshot read and a whole scan.

Starts a throwaway Postgres (`proxy.embedded.EmbeddedPostgres`), creates a database with
`--tables` tables (default 1,000; each: 6 columns with defaults and a NOT NULL, a primary key, a
secondary index, a check constraint, a comment; every tenth also a view), installs the catalog
and times, best and median of `--rounds`:

- fingerprint: `snapshot.read_fingerprint` (what every periodic scan costs when nothing changed);
- snapshot:    `snapshot.read_snapshot` (the full read, done only when the fingerprint changed);
- scan/clean:  `drift_watch.scan(force=True)` with nothing changed (fingerprint, read, baseline, diff);
- scan/drift:  the same after one direct ALTER TABLE (diff, event written), accepted after each round.

Goal (issue 8): a whole scan of a 1,000-table schema under 1 s. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import bench_pgbench as pgb
import psycopg

from proxy.catalog import drift_watch
from proxy.catalog.install import install
from proxy.catalog.snapshot import read_fingerprint, read_snapshot
from proxy.embedded import EmbeddedPostgres

DATABASE = "drift_bench"


def schema_sql(tables: int) -> list[str]:
    statements = ["CREATE SCHEMA bench"]
    for i in range(tables):
        statements.append(
            f"CREATE TABLE bench.t{i} (id bigint PRIMARY KEY, name text NOT NULL DEFAULT '',"
            " qty integer DEFAULT 0 CHECK (qty >= 0), price numeric(10, 2),"
            " created timestamptz DEFAULT now(), ref bigint)"
        )
        statements.append(f"CREATE INDEX t{i}_name ON bench.t{i} (lower(name))")
        statements.append(f"COMMENT ON TABLE bench.t{i} IS 'table {i}'")
        if i % 10 == 0:
            statements.append(f"CREATE VIEW bench.v{i} AS SELECT id, name FROM bench.t{i} WHERE qty > 0")
    return statements


async def timed(rounds: int, step: Callable[[], Awaitable[object]]) -> list[float]:
    times: list[float] = []
    for _ in range(rounds):
        start = time.perf_counter()
        await step()
        times.append(time.perf_counter() - start)
    return times


async def run(url: str, opts: argparse.Namespace) -> dict[str, list[float]]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(b"SELECT pg_catalog.set_config('search_path', '', false)")
        await install(conn)
        async with conn.transaction():
            for statement in schema_sql(opts.tables):
                await conn.execute(statement.encode())
        report = await drift_watch.scan(conn, "electric", wait=True)  # takes the baseline
        assert report is not None and report.in_sync
        electrified = "electric.electrified"
        results: dict[str, list[float]] = {}
        snapshot = await read_snapshot(conn, "electric", electrified)
        results["objects"] = [float(len(snapshot.objects))]
        results["fingerprint"] = await timed(opts.rounds, lambda: read_fingerprint(conn, electrified))
        results["snapshot"] = await timed(opts.rounds, lambda: read_snapshot(conn, "electric", electrified))
        results["scan/clean"] = await timed(
            opts.rounds, lambda: drift_watch.scan(conn, "electric", wait=True, force=True)
        )
        drifted: list[float] = []
        for index in range(opts.rounds):
            await conn.execute(f"ALTER TABLE bench.t{index} ADD COLUMN extra_{index} integer".encode())
            start = time.perf_counter()
            found = await drift_watch.scan(conn, "electric", wait=True)
            drifted.append(time.perf_counter() - start)
            assert found is not None and len(found.objects) == 1, found
            await drift_watch.accept(conn, "electric", None, "bench")
        results["scan/drift"] = drifted
        return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="drift scan cost on a large schema")
    parser.add_argument("--tables", type=int, default=1000, help="tables in the schema (default 1000)")
    parser.add_argument("--rounds", type=int, default=7, help="timed repetitions of each step (default 7)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the raw timings here")
    opts = parser.parse_args(argv)
    if opts.tables < 1 or opts.rounds < 1:
        parser.error("--tables and --rounds must be >= 1")
    stamp: dict[str, Any] = {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "machine": f"{platform.machine()}, {platform.node()}",
        "proxy_commit": pgb.git_commit(),
        "tables": opts.tables,
        "rounds": opts.rounds,
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    with EmbeddedPostgres() as pg:
        pg.execute(f"CREATE DATABASE {DATABASE}")
        stamp["postgres"] = str(pg.connect().info.server_version)
        results = asyncio.run(run(pg.url(DATABASE), opts))
    print("environment:")
    for key, value in stamp.items():
        print(f"  {key:14} {value}")
    print(f"\nschema objects in the snapshot: {int(results.pop('objects')[0])}\n")
    print(f"{'step':<14}{'best ms':>10}{'median ms':>12}")
    for step, times in results.items():
        print(f"{step:<14}{min(times) * 1000:>10.1f}{statistics.median(times) * 1000:>12.1f}")
    if opts.json is not None:
        opts.json.write_text(json.dumps({"environment": stamp, "seconds": results}, indent=2) + "\n")
        print(f"\nraw results written to {opts.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
