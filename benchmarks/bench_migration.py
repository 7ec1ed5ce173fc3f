"""A 500-statement DDL migration through electric-proxy vs directly against Postgres, interleaved.

One invocation starts a throwaway Postgres (`proxy.embedded.EmbeddedPostgres`), creates every
database the runs will use (one fresh, empty database per run), then starts the proxy as its own
process (`python -m proxy serve ...`, as users run it) with `ELECTRIC_PROXY_CATALOG_DATABASES`
listing them all, so the proxy manages (guards, and captures once that exists) each of them.

A migration of 5 statements per table (default 100 tables: 100 CREATE TABLE, 200 ALTER TABLE ADD
COLUMN, 100 CREATE INDEX, 50 COMMENT ON, 50 ALTER TABLE ... SET/ALTER COLUMN ... SET) runs by
three methods, each in one transaction:

- multi:    one Query message holding `BEGIN; ...all statements...; COMMIT;`
- simple:   BEGIN, one Query message per statement, COMMIT (psycopg, simple protocol)
- extended: the same, each statement as Parse/Bind/Execute/Sync (psycopg `execute(sql, binary=True)`)

Every round runs every method against every target (direct, then each proxy variant), rotating
the target order each round. It prints the median wall time per method and target, the median of
per-round paired ratios proxy/direct, and the proxy's CPU per statement. See benchmarks/README.md.

Exit status: 0 when every run succeeded (whatever the ratios), 1 when any run failed, 2 when the
setup failed, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Final

import bench_pgbench as pgb
import psycopg
from psycopg import sql

from proxy.embedded import EmbeddedPostgres

HOST: Final = pgb.HOST
USER: Final = pgb.USER
PASSWORD: Final = pgb.PASSWORD
ALL_METHODS: Final = ("multi", "simple", "extended")
METHOD_HELP: Final = {
    "multi": "one Query message `BEGIN; <all statements>; COMMIT;`",
    "simple": "BEGIN, one Query message per statement, COMMIT",
    "extended": "BEGIN, Parse/Bind/Describe/Execute/Sync per statement (execute(sql, binary=True)), COMMIT",
}
STATEMENTS_PER_TABLE: Final = 5
CATALOG_ENV: Final = "ELECTRIC_PROXY_CATALOG_DATABASES"
GUARD_ENV: Final = "ELECTRIC_PROXY_GUARD_ENABLED"
# The guard installs its catalog in every managed database before it logs `listening on`.
PROXY_READY_TIMEOUT_S: Final = 300.0


# --- options -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    tables: int
    rounds: int
    warmup: int
    methods: tuple[str, ...]
    workers: int
    proxy_args: tuple[str, ...]
    proxy_env: dict[str, str]
    variants: tuple[pgb.Variant, ...]
    baseline: str
    run_timeout: float
    json_path: Path | None
    logs_dir: Path | None
    history: int = 0

    @property
    def statements(self) -> int:
        return self.tables * STATEMENTS_PER_TABLE

    @property
    def targets(self) -> tuple[str, ...]:
        return ("direct", *(v.label for v in self.variants))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="a DDL migration via electric-proxy vs direct Postgres, fresh databases, interleaved",
    )
    parser.add_argument(
        "--tables",
        type=pgb._positive,
        default=100,
        help=f"tables in the migration, {STATEMENTS_PER_TABLE} statements each (default 100: 500 statements)",
    )
    parser.add_argument("--rounds", type=pgb._positive, default=5, help="interleaved rounds (default 5)")
    parser.add_argument(
        "--warmup", type=int, default=1, help="unrecorded warm-up rounds before the measured ones (default 1)"
    )
    parser.add_argument(
        "--methods",
        type=pgb._csv_choice(ALL_METHODS),
        default=ALL_METHODS,
        help="default multi,simple,extended",
    )
    parser.add_argument(
        "--workers", type=pgb._positive, default=1, help="proxy `serve --workers` (default 1)"
    )
    parser.add_argument(
        "--proxy-arg", action="append", default=[], metavar="ARG", help="extra argument for `proxy serve`"
    )
    parser.add_argument(
        "--env",
        action="append",
        type=pgb._env_pair,
        default=[],
        metavar="KEY=VALUE",
        help=f"environment for every proxy process, repeatable ({CATALOG_ENV} is set by the script)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        type=pgb._variant,
        default=[],
        metavar="LABEL=ENV=VALUE[,ENV=VALUE...]",
        help="a proxy variant, as in bench_pgbench.py (default: one variant 'proxy', default config)",
    )
    parser.add_argument(
        "--run-timeout",
        type=float,
        default=300.0,
        help="seconds before one migration run is called hung and its socket shut (default 300)",
    )
    parser.add_argument(
        "--history",
        type=int,
        default=0,
        metavar="N",
        help="migrations already in each database's history before the run (bulk-inserted; default 0)",
    )
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write raw results here")
    parser.add_argument("--logs", type=Path, default=None, metavar="DIR", help="copy the proxy logs here")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = build_parser()
    args = parser.parse_args(argv)
    variants: tuple[pgb.Variant, ...] = tuple(args.variant) or (pgb.Variant(pgb.DEFAULT_VARIANT, {}),)
    labels = [v.label for v in variants]
    if len({label.lower() for label in labels}) != len(labels):
        parser.error("duplicate --variant labels (database names are lower case)")
    if any(CATALOG_ENV in v.env for v in variants) or any(k == CATALOG_ENV for k, _ in args.env):
        parser.error(f"{CATALOG_ENV} is set by the script: it lists the databases it creates")
    baseline = pgb.BASELINE_PREFERRED if pgb.BASELINE_PREFERRED in labels else labels[0]
    return Options(
        tables=args.tables,
        rounds=args.rounds,
        warmup=max(args.warmup, 0),
        methods=args.methods,
        workers=args.workers,
        proxy_args=tuple(args.proxy_arg),
        proxy_env=dict(args.env),
        variants=variants,
        baseline=baseline,
        run_timeout=args.run_timeout,
        json_path=args.json,
        logs_dir=args.logs,
        history=max(args.history, 0),
    )


# --- the migration -------------------------------------------------------------------------------


def migration(tables: int) -> list[str]:
    """Per table, as a migration file would have it: create, 2 columns, an index, then COMMENT or SET."""
    statements: list[str] = []
    for i in range(1, tables + 1):
        t = f"public.t_{i:04d}"
        statements += [
            f"CREATE TABLE {t} (id bigint PRIMARY KEY, name text NOT NULL, "
            "created_at timestamptz NOT NULL DEFAULT now())",
            f"ALTER TABLE {t} ADD COLUMN amount numeric(12,2)",
            f"ALTER TABLE {t} ADD COLUMN note text DEFAULT ''",
            f"CREATE INDEX t_{i:04d}_name_idx ON {t} (name)",
        ]
        if i % 2:
            statements.append(f"COMMENT ON TABLE {t} IS 'table number {i}'")
        elif i % 4:
            statements.append(f"ALTER TABLE {t} SET (fillfactor = 90)")
        else:
            statements.append(f"ALTER TABLE {t} ALTER COLUMN note SET DEFAULT 'n/a'")
    return statements


def expected_shape(tables: int) -> dict[str, int]:
    return {
        "tables": tables,
        "columns": tables * 5,
        "indexes": tables * 2,  # primary key + name index
        "comments": (tables + 1) // 2,
    }


SHAPE_SQL: Final = """
SELECT
  (SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'),
  (SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
     WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND a.attnum > 0
       AND NOT a.attisdropped),
  (SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'i'),
  (SELECT count(*) FROM pg_description d JOIN pg_class c ON c.oid = d.objoid
     WHERE d.classoid = 'pg_class'::regclass AND d.objsubid = 0
       AND c.relnamespace = 'public'::regnamespace)
"""


def run_multi(conn: psycopg.Connection[tuple[object, ...]], statements: Sequence[str]) -> None:
    # psycopg sends a query without parameters (and not binary) as one simple-protocol Query.
    conn.execute("BEGIN;\n" + ";\n".join(statements) + ";\nCOMMIT;")


def run_simple(conn: psycopg.Connection[tuple[object, ...]], statements: Sequence[str]) -> None:
    conn.execute("BEGIN")
    for statement in statements:
        conn.execute(statement)
    conn.execute("COMMIT")


def run_extended(conn: psycopg.Connection[tuple[object, ...]], statements: Sequence[str]) -> None:
    # binary=True makes psycopg use PQsendQueryParams: Parse/Bind/Describe/Execute/Sync, unnamed.
    conn.execute("BEGIN", binary=True)
    for statement in statements:
        conn.execute(statement, binary=True)
    conn.execute("COMMIT", binary=True)


RUNNERS: Final[dict[str, Callable[[psycopg.Connection[tuple[object, ...]], Sequence[str]], None]]] = {
    "multi": run_multi,
    "simple": run_simple,
    "extended": run_extended,
}


# --- targets -------------------------------------------------------------------------------------


@dataclass
class Target:
    name: str  # direct | variant label
    display: str
    port: int
    proxy: ProxyProcess | None = None

    def cpu(self) -> float | None:
        if self.proxy is None or self.proxy.proc is None:
            return None
        return process_tree_cpu_ns(self.proxy.proc.pid) / 1e9

    def dead(self) -> str | None:
        if self.proxy is None or self.proxy.proc is None or self.proxy.proc.poll() is None:
            return None
        return f"{self.display} exited with code {self.proxy.proc.returncode}"


def process_tree_cpu_ns(root: int) -> int:
    """CPU time of `root`, its descendants and all their threads, in ns, from /proc/.../schedstat.

    utime+stime from /proc/<pid>/stat tick at 10 ms, too coarse for a run of a few hundred ms.
    """
    total = 0
    for pid in pgb._process_tree(root):
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError, ValueError, IndexError):
                    total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
    return total


class ProxyProcess:
    """`python -m proxy serve ...`, managing every benchmark database (CATALOG_ENV)."""

    def __init__(self, upstream: str, opts: Options, variant: pgb.Variant, databases: Sequence[str]) -> None:
        self.upstream = upstream
        self.opts = opts
        self.variant = variant
        self.databases = databases
        self.port = pgb.free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="bench-migration-proxy-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.dir / "proxy.log"

    def command(self) -> list[str]:
        given = any(a == "--workers" or a.startswith("--workers=") for a in self.opts.proxy_args)
        return [
            sys.executable, "-m", "proxy", "serve",
            "--listen", f"{HOST}:{self.port}",
            "--upstream", self.upstream,
            "--metrics-listen", f"{HOST}:0",
            *([] if given else ["--workers", str(self.opts.workers)]),
            *self.opts.proxy_args,
        ]  # fmt: skip

    def settings(self) -> dict[str, str]:
        """What the proxy gets on top of the cleaned environment (the stamp shows it, short)."""
        return {**self.opts.proxy_env, **self.variant.env, CATALOG_ENV: ",".join(self.databases)}

    def guard_enabled(self) -> bool:
        value = self.settings().get(GUARD_ENV, "true").strip().lower()
        return value in ("true", "1", "yes", "on")

    def start(self) -> None:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(pgb.PROXY_ENV_PREFIXES) and k not in pgb.PROXY_ENV_NAMES
        }
        env.update(self.settings())
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                env=env,
                start_new_session=True,
            )
        what = self.variant.display
        pgb.wait_for_tcp(self.port, self.proc, what, self.log)
        pgb.wait_for_log(self.log, "listening on", self.proc, what, timeout=PROXY_READY_TIMEOUT_S)

    def stop(self) -> None:
        if self.proc is not None:
            pgb.stop_process(self.proc, signal.SIGTERM)
            code = self.proc.returncode
            if code not in (0, -signal.SIGTERM):
                print(f"{self.variant.display} stopped with exit code {code}", file=sys.stderr)
        shutil.rmtree(self.dir, ignore_errors=True)


def database_name(target: str, method: str, round_no: int) -> str:
    """mig_<target>_<method>_<round>; warm-up rounds (0, -1, ...) are w1, w2, ..."""
    suffix = str(round_no) if round_no > 0 else f"w{1 - round_no}"
    return f"mig_{target}_{method}_{suffix}".lower().replace("-", "_").replace(".", "_")


def all_databases(opts: Options) -> list[str]:
    return [
        database_name(target, method, round_no)
        for round_no in range(1 - opts.warmup, opts.rounds + 1)
        for method in opts.methods
        for target in opts.targets
    ]


def create_databases(pg: EmbeddedPostgres, names: Sequence[str]) -> float:
    started = time.monotonic()
    with pg.connect() as conn:
        for name in names:
            conn.execute(f'CREATE DATABASE "{name}"')
    return time.monotonic() - started


def wait_for_catalogs(pg: EmbeddedPostgres, names: Sequence[str], schema: str = "electric") -> float:
    """With the guard on, the proxy installs its catalog in every managed database; wait for all."""
    started = time.monotonic()
    deadline = started + PROXY_READY_TIMEOUT_S
    for name in names:
        while True:
            with pg.connect(name) as conn:
                row = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
            if row is not None:
                break
            if time.monotonic() > deadline:
                raise pgb.BenchError(f"the proxy did not install schema {schema} in database {name} in time")
            time.sleep(0.1)
    return time.monotonic() - started


# A history of N migrations as capture would have written it: one statement each, a table and its
# index recorded, over 200 table names. Inserted as the superuser with triggers off (the rows are
# history already), then analysed, as a long-lived database would be.
SEED_HISTORY: Final = """
SET session_replication_role = replica;
INSERT INTO electric.migrations (
    txid, version, version_source, framework, started_at, committed_at, db_user,
    client_addr, client_host, backend_pid, session_start, sealed)
SELECT (100000 + g)::text::xid8, 'seed-' || g, 'framework', 'alembic',
       now() - (%(n)s + 1 - g) * interval '1 second', now() - (%(n)s + 1 - g) * interval '1 second',
       'seed', '10.0.0.1:5000', '10.0.0.1', 1, now() - interval '1 day', true
  FROM generate_series(1, %(n)s) g;
CREATE TEMP TABLE seeded AS SELECT m.id, 'seed_t' || (m.id %% 200) AS t FROM electric.migrations m;
INSERT INTO electric.migration_statements (migration_id, seq, sql, tag, objects)
SELECT id, 1, 'ALTER TABLE public.' || t || ' ADD COLUMN c' || id || ' int', 'ALTER TABLE',
       jsonb_build_array(jsonb_build_object('schema', 'public', 'name', t, 'type', 'table'))
  FROM seeded;
INSERT INTO electric.migration_objects
       (migration_id, object_type, schema_name, object_name, relid, definition)
SELECT id, 'relation', 'public', o.name, NULL, o.definition
  FROM seeded
 CROSS JOIN LATERAL (VALUES
    (t, jsonb_build_object('kind', 'table', 'schema', 'public', 'name', t, 'columns', '[]'::jsonb,
                           'indexes', jsonb_build_array(jsonb_build_object('name', t || '_i')))),
    (t || '_i', jsonb_build_object('kind', 'index', 'schema', 'public', 'name', t || '_i',
                                   'table_schema', 'public', 'table_name', t))
 ) AS o(name, definition);
RESET session_replication_role;
ANALYZE electric.migrations;
ANALYZE electric.migration_statements;
ANALYZE electric.migration_objects;
"""


def seed_histories(pg: EmbeddedPostgres, names: Sequence[str], migrations: int) -> float:
    started = time.monotonic()
    for name in names:
        with pg.connect(name) as conn:
            # Several statements: the simple protocol, so no bound parameters (n is an int).
            conn.execute(SEED_HISTORY.replace("%(n)s", str(int(migrations))).replace("%%", "%").encode())
    return time.monotonic() - started


# --- one run -------------------------------------------------------------------------------------


@dataclass
class Run:
    round: int  # <= 0: warm-up
    method: str
    target: str
    database: str
    wall_s: float | None = None
    proxy_cpu_s: float | None = None
    error: str | None = None
    shape: dict[str, int] = field(default_factory=dict)
    electric_rows: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


@contextlib.contextmanager
def watchdog(conn: psycopg.Connection[tuple[object, ...]], seconds: float) -> Iterator[list[bool]]:
    """Shut the connection's socket if the run takes longer than `seconds` (a hung proxy)."""
    fired: list[bool] = []

    def fire() -> None:
        fired.append(True)
        with contextlib.suppress(OSError), socket.socket(fileno=os.dup(conn.fileno())) as sock:
            sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(seconds, fire)
    timer.start()
    try:
        yield fired
    finally:
        timer.cancel()


def run_migration(
    pg: EmbeddedPostgres, target: Target, method: str, round_no: int, statements: Sequence[str], opts: Options
) -> Run:
    database = database_name(target.name, method, round_no)
    run = Run(round_no, method, target.name, database)
    reason = target.dead()
    if reason is not None:
        run.error = f"not running before the run: {reason}"
        return run
    try:
        conn = psycopg.connect(
            host=HOST, port=target.port, user=USER, password=PASSWORD, dbname=database, connect_timeout=10
        )
    except psycopg.Error as exc:
        run.error = f"connect failed: {_describe(exc)}"
        return run
    fired: list[bool] = []
    try:
        conn.autocommit = True  # the runners send BEGIN/COMMIT themselves
        cpu0 = target.cpu()
        t0 = time.perf_counter()
        with watchdog(conn, opts.run_timeout) as fired:
            RUNNERS[method](conn, statements)
        run.wall_s = time.perf_counter() - t0
        cpu1 = target.cpu()
        if cpu0 is not None and cpu1 is not None:
            run.proxy_cpu_s = cpu1 - cpu0
    except psycopg.Error as exc:
        hung = f"hung: socket shut after {opts.run_timeout:.0f}s; " if fired else ""
        run.error = f"{hung}{_describe(exc)}"
    finally:
        conn.close()
    if run.error is None:
        run.error = check_result(pg, run, opts)
    reason = target.dead()
    if reason is not None:
        run.error = f"{run.error}; {reason}" if run.error else reason
    return run


def _describe(exc: psycopg.Error) -> str:
    state = getattr(exc, "sqlstate", None)
    text = str(exc).strip().replace("\n", " | ")
    return f"{type(exc).__name__} [{state}]: {text}" if state else f"{type(exc).__name__}: {text}"


def check_result(pg: EmbeddedPostgres, run: Run, opts: Options) -> str | None:
    """The database holds exactly what the migration creates; note what the proxy recorded."""
    with pg.connect(run.database) as conn:
        row = conn.execute(SHAPE_SQL).fetchone()
        assert row is not None
        run.shape = dict(zip(expected_shape(opts.tables), (int(v) for v in row), strict=True))
        run.electric_rows = electric_row_counts(conn)
    expected = expected_shape(opts.tables)
    if run.shape != expected:
        return f"schema after the run {run.shape} != expected {expected}"
    return None


def electric_row_counts(
    conn: psycopg.Connection[tuple[object, ...]], schema: str = "electric"
) -> dict[str, int]:
    """Rows in each table of the catalog schema: shows whether the proxy recorded the migration."""
    names = [
        str(r[0])
        for r in conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') ORDER BY 1",
            (schema,),
        )
    ]
    counts: dict[str, int] = {}
    for name in names:
        query = sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(name))
        row = conn.execute(query).fetchone()
        counts[name] = int(row[0]) if row else 0
    return counts


# --- the loop ------------------------------------------------------------------------------------


def _progress(run: Run, target: Target, statements: int) -> None:
    what = "warm-up" if run.round <= 0 else f"round {run.round}"
    if not run.ok:
        print(f"  {what:8} {run.method:8} {target.display:16} ERROR {run.error}", file=sys.stderr, flush=True)
        return
    wall = (run.wall_s or 0.0) * 1000
    cpu = "" if run.proxy_cpu_s is None else f"  proxy CPU {run.proxy_cpu_s * 1e6 / statements:7.1f} µs/stmt"
    print(f"  {what:8} {run.method:8} {target.display:16} {wall:9.1f} ms{cpu}", file=sys.stderr, flush=True)


def benchmark(pg: EmbeddedPostgres, targets: Sequence[Target], opts: Options) -> list[Run]:
    statements = migration(opts.tables)
    runs: list[Run] = []
    for round_no in range(1 - opts.warmup, opts.rounds + 1):
        k = (round_no - 1) % len(targets)
        order = [*targets[k:], *targets[:k]]
        what = "warm-up" if round_no <= 0 else f"round {round_no}/{opts.rounds}"
        print(f"{what}: order {', '.join(t.name for t in order)}", file=sys.stderr, flush=True)
        for method in opts.methods:
            for target in order:
                runs.append(run_migration(pg, target, method, round_no, statements, opts))
                _progress(runs[-1], target, len(statements))
    return runs


# --- reporting -----------------------------------------------------------------------------------


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def paired_ratio(runs: Sequence[Run], method: str, num: str, den: str) -> float | None:
    """Median over rounds of wall(num)/wall(den), both from the same round and method."""
    wall = {(r.round, r.target): r.wall_s for r in runs if r.method == method and r.round > 0 and r.ok}
    ratios = [
        w / wall[(rnd, den)] for (rnd, name), w in wall.items() if name == num and w and wall.get((rnd, den))
    ]
    return _median(ratios)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def method_report(targets: Sequence[Target], runs: Sequence[Run], method: str, opts: Options) -> list[str]:
    first_w = max([16, *(len(t.display) for t in targets)])
    columns = [("target", first_w), ("median ms", 9), ("min-max ms", 15), ("vs direct", 9)]
    if len(opts.variants) > 1:
        columns.append((f"vs {opts.baseline}", max(9, len(opts.baseline) + 3)))
    columns += [("proxy CPU µs/stmt", 17), ("ok/runs", 7)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, (_, w)) in enumerate(zip(cells, columns, strict=True))
        )

    header = line([title for title, _ in columns])
    out = [
        f"method {method}: {opts.statements} DDL statements in one transaction, {METHOD_HELP[method]}",
        f"  {opts.rounds} round(s), a fresh database per run; ratios = median of per-round paired ratios",
        header,
        "-" * len(header),
    ]
    for target in targets:
        mine = [r for r in runs if r.method == method and r.target == target.name and r.round > 0]
        good = [r for r in mine if r.ok and r.wall_s is not None]
        walls = [r.wall_s * 1000 for r in good if r.wall_s is not None]
        span = f"{min(walls):,.1f}-{max(walls):,.1f}" if walls else "-"
        cpu = _median(
            [None if r.proxy_cpu_s is None else r.proxy_cpu_s * 1e6 / opts.statements for r in good]
        )
        cells = [
            target.display,
            _fmt(statistics.median(walls) if walls else None, ",.1f"),
            span,
            _fmt(paired_ratio(runs, method, target.name, "direct"), ".2f"),
        ]
        if len(opts.variants) > 1:
            base = paired_ratio(runs, method, target.name, opts.baseline) if target.proxy else None
            cells.append(_fmt(base, ".2f"))
        cells += [_fmt(cpu, ".1f"), f"{len(good)}/{len(mine)}"]
        out.append(line(cells))
    return out


def summary_lines(targets: Sequence[Target], runs: Sequence[Run], opts: Options) -> list[str]:
    out = []
    for method in opts.methods:
        for target in targets:
            if target.proxy is None:
                continue
            ratio = paired_ratio(runs, method, target.name, "direct")
            value = "n/a (no paired successful runs)" if ratio is None else f"{ratio:.2f}"
            out.append(f"{method:8}: {target.display}/direct median wall-time ratio = {value}")
            out += cost_lines(runs, method, target, opts)
    return out


def cost_lines(runs: Sequence[Run], method: str, target: Target, opts: Options) -> list[str]:
    """Where the extra time per statement goes: the proxy's own CPU, and the rest (the server's
    capture work, and the extra bytes on the wire), from the medians."""

    def walls(name: str) -> list[float]:
        return [
            r.wall_s
            for r in runs
            if (r.method, r.target) == (method, name) and r.ok and r.round > 0 and r.wall_s
        ]

    proxied, direct = walls(target.name), walls("direct")
    cpu = _median(
        [
            r.proxy_cpu_s
            for r in runs
            if (r.method, r.target) == (method, target.name) and r.ok and r.round > 0
        ]
    )
    if not proxied or not direct or cpu is None:
        return []
    assert cpu is not None
    extra = (statistics.median(proxied) - statistics.median(direct)) / opts.statements * 1e6
    proxy_side = cpu / opts.statements * 1e6
    return [
        f"          extra wall per statement {extra:7.1f} µs = proxy CPU {proxy_side:6.1f} µs"
        f" + server and wire {extra - proxy_side:7.1f} µs"
    ]


# The capture's own table: one row per recorded DDL statement (compared with the migration's size).
CAPTURE_TABLE: Final = "migration_statements"


def capture_lines(targets: Sequence[Target], runs: Sequence[Run], opts: Options) -> list[str]:
    """Non-empty tables of the catalog schema after the last measured run per method and target.

    This shows what the proxy recorded (migration capture): `schema_version` is the catalog install
    itself, the same in every database. A run through a proxy with the guard on whose
    `migration_statements` count differs from the migration's size gets a note; the run still counts.
    """
    out = []
    for method in opts.methods:
        for target in targets:
            last = next(
                (r for r in reversed(runs) if (r.target, r.method) == (target.name, method) and r.ok), None
            )
            if last is None:
                continue
            rows = ", ".join(f"{k}={v}" for k, v in last.electric_rows.items() if v) or "(nothing)"
            line = f"  {method:8} {target.display:16} {last.database}: {rows}"
            captured = last.electric_rows.get(CAPTURE_TABLE)
            seeded = opts.history  # one statement and two objects per seeded migration
            guarded = target.proxy is not None and target.proxy.guard_enabled()
            if guarded and captured is not None and captured - seeded != opts.statements:
                line += f"  <- {captured - seeded} of {opts.statements} statements captured"
            if guarded and last.electric_rows.get("migration_objects", 0) <= seeded * 2:
                line += "  <- no definitions captured"
            out.append(line)
    return out


def error_report(runs: Sequence[Run]) -> list[str]:
    lines = []
    for run in runs:
        if not run.ok:
            what = "warm-up" if run.round <= 0 else f"round {run.round}"
            lines.append(f"FAILED {what} {run.method} {run.target} ({run.database}): {run.error}")
    return lines


def log_digest(target: Target) -> list[str]:
    if target.proxy is None:
        return []
    return pgb.digest_log(target.display, target.proxy.log, target.dead())


def environment_stamp(pg: EmbeddedPostgres, targets: Sequence[Target], opts: Options) -> dict[str, object]:
    stamp: dict[str, object] = {
        "nproc": os.cpu_count(),
        "loadavg_before": " ".join(f"{v:.2f}" for v in os.getloadavg()),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "psycopg": f"{psycopg.__version__} ({psycopg.pq.__impl__})",
        "postgres": pgb._version_of([str(pg.bin("postgres")), "--version"]),
        "proxy_commit": pgb.git_commit(),
        "migration": f"{opts.statements} statements ({opts.tables} tables x {STATEMENTS_PER_TABLE})",
    }
    for target in targets:
        if target.proxy is not None:
            settings = target.proxy.settings()
            databases = settings.pop(CATALOG_ENV).split(",")
            env = " ".join(f"{k}={v}" for k, v in settings.items())
            stamp[f"{target.display} env"] = (
                f"{env + ' ' if env else ''}{CATALOG_ENV}=<{len(databases)} databases: "
                f"{databases[0]},...,{databases[-1]}>"
            )
            stamp[f"{target.display} cmd"] = " ".join(target.proxy.command())
    return stamp


def print_stamp(stamp: dict[str, object]) -> None:
    print("environment:")
    for key, value in stamp.items():
        print(f"  {key:16} {value}")


def report(targets: Sequence[Target], runs: Sequence[Run], opts: Options, stamp: dict[str, object]) -> int:
    stamp["loadavg_after"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print_stamp(stamp)
    for method in opts.methods:
        print()
        print("\n".join(method_report(targets, runs, method, opts)))
    print()
    print("summary (wall time of the migration alone, connection set up before the clock starts):")
    print("\n".join(summary_lines(targets, runs, opts)))
    print()
    print("non-empty tables of the `electric` schema after the last run per method and target:")
    print("\n".join(capture_lines(targets, runs, opts)))
    print()
    for target in targets:
        digest = log_digest(target)
        if digest:
            print("\n".join(digest))
    errors = error_report(runs)
    if errors:
        print()
        print("\n".join(errors))
    if opts.json_path is not None:
        options = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()}
        payload = {"environment": stamp, "options": options, "runs": [asdict(r) for r in runs]}
        opts.json_path.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"\nraw results written to {opts.json_path}")
    if opts.logs_dir is not None:
        opts.logs_dir.mkdir(parents=True, exist_ok=True)
        for target in targets:
            if target.proxy is not None and target.proxy.log.exists():
                shutil.copyfile(target.proxy.log, opts.logs_dir / f"proxy-{target.name}.log")
        print(f"logs copied to {opts.logs_dir}")
    return 1 if errors else 0


# --- main ----------------------------------------------------------------------------------------


def run(opts: Options) -> int:
    with contextlib.ExitStack() as stack:
        databases = all_databases(opts)
        # Every proxy holds a catalog connection per managed database, on top of the runs'.
        max_conn = max(200, len(databases) * len(opts.variants) + 50)
        pg = EmbeddedPostgres(user=USER, password=PASSWORD, settings={"max_connections": str(max_conn)})
        stack.callback(pg.stop)
        pg.start()
        print(f"postgres {pg.version} on {HOST}:{pg.port}", file=sys.stderr)
        took = create_databases(pg, databases)
        print(f"created {len(databases)} databases in {took:.1f}s", file=sys.stderr)
        upstream = pg.url("postgres", user=USER, password=PASSWORD)
        targets = [Target("direct", "direct", pg.port)]
        for variant in opts.variants:
            proxy = ProxyProcess(upstream, opts, variant, databases)
            stack.callback(proxy.stop)
            t0 = time.monotonic()
            proxy.start()
            if proxy.guard_enabled():
                wait_for_catalogs(pg, databases)
            took = time.monotonic() - t0
            print(f"{variant.display} ready on port {proxy.port} in {took:.1f}s", file=sys.stderr)
            targets.append(Target(variant.label, variant.display, proxy.port, proxy))
        if opts.history:
            took = seed_histories(pg, databases, opts.history)
            print(f"seeded {opts.history} migrations into each database in {took:.1f}s", file=sys.stderr)
        stamp = environment_stamp(pg, targets, opts)
        runs = benchmark(pg, targets, opts)
        return report(targets, runs, opts, stamp)


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    try:
        with pgb.signals_unwind():
            return run(opts)
    except (KeyboardInterrupt, pgb.Interrupted):
        print("interrupted; everything started was stopped", file=sys.stderr)
        return 130
    except pgb.BenchError as exc:
        print(f"setup failed: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
