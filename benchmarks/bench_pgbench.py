"""`pgbench -S` through electric-proxy vs direct Postgres vs PgBouncer (session mode), interleaved.

One invocation starts a throwaway Postgres (`proxy.embedded.EmbeddedPostgres`), PgBouncer and one
proxy process per *variant* (each a separate `python -m proxy serve` on its own port, as users run
it, with its own environment: `--variant guard=ELECTRIC_PROXY_GUARD_ENABLED=true`), loads
`pgbench -i`, then for every round and every query mode runs each target back to back, rotating the
target order each round. It prints medians, paired per-round TPS ratios (vs direct, vs PgBouncer and
vs the baseline variant) and CPU per query (of each proxy / PgBouncer process tree and of the whole
box, from /proc). See benchmarks/README.md.

Exit status: 0 when every pgbench run succeeded (whatever the ratios), 1 when any run failed,
2 when the setup failed, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import pwd
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Final, NoReturn

import psycopg

from proxy.embedded import EmbeddedPostgres

HOST: Final = "127.0.0.1"
DB: Final = "postgres"
USER: Final = "postgres"
PASSWORD: Final = "postgres"
PGBOUNCER_BIN: Final = Path("/usr/sbin/pgbouncer")
PGBOUNCER_INSTALL_HINT: Final = "apt-get install -y pgbouncer"
ALL_TARGETS: Final = ("direct", "pgbouncer", "proxy")
ALL_MODES: Final = ("simple", "extended", "prepared")
# A cell is MODE[@CLIENTS][+C]: MODE is a -M protocol (pgbench -S) or `tpcb` (the builtin
# tpcb-like script, simple protocol); @N overrides -c; +C connects per transaction (pgbench -C).
_CELL: Final = re.compile(r"(simple|extended|prepared|tpcb)(?:@([1-9][0-9]*))?(\+C)?")
FULL_CELLS: Final = (
    *(f"{mode}@{clients}" for clients in (1, 8, 32) for mode in ALL_MODES),
    "tpcb@8",
    "simple@4+C",
)
GOAL_VS_PGBOUNCER: Final = 0.80
# A variant (e.g. the guard) against the baseline variant (e.g. the plain relay).
GOAL_VS_BASELINE: Final = 0.95
DEFAULT_VARIANT: Final = "proxy"
WORKERS_ENV: Final = "ELECTRIC_PROXY_LISTEN_WORKERS"
BASELINE_PREFERRED: Final = "relay"
_LABEL: Final = re.compile(r"[A-Za-z0-9_.-]{1,32}")
# Splits "A=1,B=x,y" into "A=1" and "B=x,y": a comma starts a new pair only before NAME=.
_PAIR_SPLIT: Final = re.compile(r",(?=[A-Za-z_][A-Za-z0-9_]*=)")
CLK_TCK: Final = os.sysconf("SC_CLK_TCK")
READY_TIMEOUT_S: Final = 30.0
# pgbench gets this long on top of -T before we call the run hung and kill it.
PGBENCH_GRACE_S: Final = 60.0
STOP_TIMEOUT_S: Final = 10.0
TAIL_LINES: Final = 30
# Variables that would configure the proxy behind our back; --env sets them explicitly instead.
PROXY_ENV_PREFIXES: Final = ("ELECTRIC_PROXY_", "PG_PROXY_", "PG")
PROXY_ENV_NAMES: Final = frozenset({"DATABASE_URL", "LOG_LEVEL"})


class BenchError(Exception):
    """The harness could not set up a target."""


class Interrupted(BaseException):
    """SIGTERM/SIGHUP arrived: unwind like Ctrl-C so every `finally` cleans up."""


# --- options -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One proxy configuration: its own process, port and environment (on top of --env)."""

    label: str
    env: dict[str, str]

    @property
    def display(self) -> str:
        return "proxy" if self.label == DEFAULT_VARIANT else f"proxy[{self.label}]"


@dataclass(frozen=True)
class Options:
    clients: int
    jobs: int
    duration: int
    rounds: int
    warmup: int
    modes: tuple[str, ...]
    scale: int
    workers: int
    targets: tuple[str, ...]
    proxy_args: tuple[str, ...]
    proxy_env: dict[str, str]
    label: str
    json_path: Path | None
    logs_dir: Path | None = None
    variants: tuple[Variant, ...] = (Variant(DEFAULT_VARIANT, {}),)
    baseline: str = DEFAULT_VARIANT  # the variant the others are compared with
    pgbench: str = "pgbench"  # resolved next to the server binaries once Postgres is up


def _csv_choice(allowed: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        items = tuple(item.strip() for item in text.split(",") if item.strip())
        unknown = [item for item in items if item not in allowed]
        if not items or unknown:
            raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(allowed)}")
        return tuple(dict.fromkeys(items))

    return parse


def _cells(text: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in text.split(",") if item.strip())
    if items == ("full",):
        return FULL_CELLS
    bad = [item for item in items if not _CELL.fullmatch(item)]
    if not items or bad:
        raise argparse.ArgumentTypeError(
            f"expected MODE[@CLIENTS][+C],... with MODE in {','.join(ALL_MODES)},tpcb, or `full`; got {bad}"
        )
    return tuple(dict.fromkeys(items))


@dataclass(frozen=True)
class Cell:
    """What one table measures: pgbench's protocol, script, client count and connection reuse."""

    name: str
    protocol: str
    select_only: bool
    clients: int
    jobs: int
    connect: bool

    @classmethod
    def parse(cls, name: str, opts: Options) -> Cell:
        match = _CELL.fullmatch(name)
        assert match is not None, name  # checked by the parser
        mode, clients, connect = match.groups()
        n = int(clients) if clients else opts.clients
        protocol = "simple" if mode == "tpcb" else mode
        return cls(name, protocol, mode != "tpcb", n, min(opts.jobs, n), connect is not None)

    def args(self) -> list[str]:
        script = ["-S"] if self.select_only else []
        flags = ["-C"] if self.connect else []
        return [*script, "-M", self.protocol, *flags, "-c", str(self.clients), "-j", str(self.jobs)]


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def _env_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError("expected KEY=VALUE")
    return key, value


def _variant(text: str) -> Variant:
    """LABEL=ENV=VALUE[,ENV=VALUE...], or a bare LABEL (or LABEL=) for the default configuration."""
    label, _, rest = text.partition("=")
    label = label.strip()
    if not _LABEL.fullmatch(label):
        raise argparse.ArgumentTypeError(
            "expected LABEL=ENV=VALUE[,ENV=VALUE...] with LABEL in [A-Za-z0-9_.-]"
        )
    if label in ("direct", "pgbouncer"):
        raise argparse.ArgumentTypeError(f"the label {label!r} is taken by a target")
    env: dict[str, str] = {}
    for pair in _PAIR_SPLIT.split(rest) if rest.strip() else []:
        key, value = _env_pair(pair.strip())
        env[key] = value
    return Variant(label, env)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="pgbench -S via electric-proxy vs direct Postgres vs PgBouncer (session), interleaved",
    )
    parser.add_argument("--clients", "-c", type=_positive, default=8, help="pgbench -c (default 8)")
    parser.add_argument("--jobs", "-j", type=_positive, default=2, help="pgbench -j (default 2)")
    parser.add_argument("--duration", "-T", type=_positive, default=5, help="seconds per run (default 5)")
    parser.add_argument("--rounds", type=_positive, default=5, help="interleaved rounds (default 5)")
    parser.add_argument(
        "--warmup", type=int, default=2, help="seconds of unrecorded warm-up per mode and target (0: none)"
    )
    parser.add_argument(
        "--modes",
        "--cells",
        type=_cells,
        default=ALL_MODES,
        help="cells MODE[@CLIENTS][+C], comma-separated; MODE: simple, extended, prepared (-S) or tpcb; "
        "@N: clients; +C: connect per transaction; `full`: " + ",".join(FULL_CELLS) + " "
        "(default simple,extended,prepared at --clients)",
    )
    parser.add_argument("--scale", type=_positive, default=10, help="pgbench -i -s (default 10)")
    parser.add_argument("--workers", type=_positive, default=1, help="proxy `serve --workers` (default 1)")
    parser.add_argument(
        "--targets", type=_csv_choice(ALL_TARGETS), default=ALL_TARGETS, help="default direct,pgbouncer,proxy"
    )
    parser.add_argument(
        "--proxy-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for `proxy serve`, repeatable; use the = form: --proxy-arg=--workers=2",
    )
    parser.add_argument(
        "--env",
        action="append",
        type=_env_pair,
        default=[],
        metavar="KEY=VALUE",
        help="environment for every proxy process, repeatable (e.g. ELECTRIC_PROXY_DRIFT_ENABLED=false)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        type=_variant,
        default=[],
        metavar="LABEL=ENV=VALUE[,ENV=VALUE...]",
        help="a proxy variant: its own process and port, with these variables on top of --env; repeatable "
        "(default: one variant 'proxy' with the default config)",
    )
    parser.add_argument(
        "--baseline",
        default=None,
        metavar="LABEL",
        help=f"variant to compare the others with (default: {BASELINE_PREFERRED!r} if given, else first)",
    )
    parser.add_argument(
        "--label", default="", help="name of the single proxy variant in the output (without --variant)"
    )
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write raw results here")
    parser.add_argument(
        "--logs",
        type=Path,
        default=None,
        metavar="DIR",
        help="copy the proxy and pgbouncer logs here at the end",
    )
    return parser


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = build_parser()
    args = parser.parse_args(argv)
    variants: tuple[Variant, ...] = tuple(args.variant)
    if variants and args.label:
        parser.error("--label names the single default proxy; with --variant every variant has its own label")
    if not variants:
        if args.label and not _LABEL.fullmatch(args.label):
            parser.error("--label must match [A-Za-z0-9_.-]{1,32}")
        if args.label in ("direct", "pgbouncer"):
            parser.error(f"--label {args.label!r} is taken by a target")
        variants = (Variant(args.label or DEFAULT_VARIANT, {}),)
    labels = [v.label for v in variants]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        parser.error(f"duplicate --variant label(s): {', '.join(duplicates)}")
    if args.baseline is not None and args.baseline not in labels:
        parser.error(f"--baseline {args.baseline!r} is not a variant label ({', '.join(labels)})")
    baseline = args.baseline or (BASELINE_PREFERRED if BASELINE_PREFERRED in labels else labels[0])
    return Options(
        clients=args.clients,
        jobs=args.jobs,
        duration=args.duration,
        rounds=args.rounds,
        warmup=max(args.warmup, 0),
        modes=args.modes,
        scale=args.scale,
        workers=args.workers,
        targets=args.targets,
        proxy_args=tuple(args.proxy_arg),
        proxy_env=dict(args.env),
        label=args.label,
        json_path=args.json,
        logs_dir=args.logs,
        variants=variants,
        baseline=baseline,
    )


# --- /proc accounting ----------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat after the `(comm)`: [0] is state (field 3), [1] ppid, ..."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def _process_tree(root: int) -> list[int]:
    """`root` and all its live descendants (SO_REUSEPORT workers are forked children)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            children.setdefault(int(_stat_fields(int(entry))[1]), []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def process_tree_cpu_seconds(root: int) -> float:
    """utime + stime (all threads) summed over `root` and its descendants."""
    ticks = 0
    for pid in _process_tree(root):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = _stat_fields(pid)
            ticks += int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat(5)
    return ticks / CLK_TCK


def box_busy_cpu_seconds() -> float:
    """Busy CPU time of the whole machine, summed over CPUs: everything but idle and iowait."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in first[1:9])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def load1() -> float:
    return os.getloadavg()[0]


# --- small process helpers -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_tcp(port: int, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    """Poll until `port` accepts a TCP connection; fail early if `proc` exits."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    delay = 0.01
    while True:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited with code {proc.returncode} during startup:\n{tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1.0):
            return
        if time.monotonic() > deadline:
            raise BenchError(f"{what} did not accept connections on {HOST}:{port} in time:\n{tail(log)}")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def wait_for_log(
    log: Path, needle: str, proc: subprocess.Popen[bytes], what: str, timeout: float = READY_TIMEOUT_S
) -> None:
    """Poll until `needle` shows up in `log`; fail early if `proc` exits."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError):
            if needle in log.read_text(errors="replace"):
                return
        if proc.poll() is not None:
            raise BenchError(f"{what} exited with code {proc.returncode} during startup:\n{tail(log)}")
        if time.monotonic() > deadline:
            raise BenchError(f"{what} did not log {needle!r} in time:\n{tail(log)}")
        time.sleep(0.05)


def check_sql(port: int, what: str) -> None:
    """One real query through the target before timing it, so a broken target fails loudly."""
    try:
        with psycopg.connect(
            host=HOST, port=port, user=USER, password=PASSWORD, dbname=DB, connect_timeout=10
        ) as conn:
            conn.autocommit = True  # no transaction left open at close
            conn.execute("SELECT count(*) FROM pgbench_branches").fetchone()
    except psycopg.Error as exc:
        raise BenchError(f"{what}: smoke query failed: {exc}") from exc


def stop_process(proc: subprocess.Popen[bytes], first_signal: int) -> None:
    """Signal, wait, then SIGKILL the whole process group (the child leads its own session)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(first_signal)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    # Forked workers whose parent died first would otherwise linger in the group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"({path} unreadable)"
    return "\n".join(text[-lines:]) or f"({path} is empty)"


def client_env() -> dict[str, str]:
    """Our environment without PG* overrides, plus the password (pgbench and psql read it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGPASSWORD"] = PASSWORD
    return env


def _server_user() -> pwd.struct_passwd | None:
    """PgBouncer refuses to run as root: use the `postgres` account then."""
    return pwd.getpwnam("postgres") if os.geteuid() == 0 else None


# --- targets -------------------------------------------------------------------------------------


@dataclass
class Target:
    """Something pgbench can connect to over TCP 127.0.0.1."""

    name: str  # direct | pgbouncer | the proxy variant's label
    display: str
    port: int = 0
    kind: str = ""  # direct | pgbouncer | proxy
    cpu: Callable[[], float] | None = None  # CPU seconds of the in-between process(es)
    dead: Callable[[], str | None] = lambda: None  # why it can no longer serve, if it can't
    absent: str | None = None  # why it was not started at all
    command: list[str] | None = None  # how it was started, for the environment stamp
    log: Path | None = None  # its log file, summarized in the report


class PgBouncer:
    """PgBouncer in the foreground, session pooling, in a private temp dir."""

    def __init__(self, pg_port: int) -> None:
        self.pg_port = pg_port
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="bench-pgbouncer-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.dir / "pgbouncer.log"

    @property
    def stderr_log(self) -> Path:
        return self.dir / "stderr.log"

    def _ini(self) -> str:
        conn = f"host={HOST} port={self.pg_port} dbname={DB} user={USER} password={PASSWORD}"
        return "\n".join(
            [
                "[databases]",
                f"{DB} = {conn}",
                "",
                "[pgbouncer]",
                f"listen_addr = {HOST}",
                f"listen_port = {self.port}",
                "unix_socket_dir =",
                # trust still needs the user listed in auth_file; the password there is unused.
                "auth_type = trust",
                f"auth_file = {self.dir / 'userlist.txt'}",
                "pool_mode = session",
                "max_client_conn = 200",
                "default_pool_size = 50",
                f"logfile = {self.log}",
                f"pidfile = {self.dir / 'pgbouncer.pid'}",
                "",
            ]
        )

    def start(self) -> None:
        ini = self.dir / "pgbouncer.ini"
        ini.write_text(self._ini())
        userlist = self.dir / "userlist.txt"
        userlist.write_text(f'"{USER}" ""\n')
        user = _server_user()
        if user is not None:
            for path in (self.dir, ini, userlist):
                os.chown(path, user.pw_uid, user.pw_gid)
        with self.stderr_log.open("wb") as err:
            self.proc = subprocess.Popen(
                [str(PGBOUNCER_BIN), str(ini)],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                env=client_env(),
                user=None if user is None else user.pw_uid,
                group=None if user is None else user.pw_gid,
                extra_groups=None if user is None else [],
                start_new_session=True,  # Ctrl-C goes to us; we stop it in order
            )
        wait_for_tcp(self.port, self.proc, "pgbouncer", self.stderr_log)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM)
        shutil.rmtree(self.dir, ignore_errors=True)

    def target(self) -> Target:
        proc = self.proc
        assert proc is not None
        return Target(
            "pgbouncer",
            "pgbouncer",
            self.port,
            kind="pgbouncer",
            cpu=lambda: process_tree_cpu_seconds(proc.pid),
            dead=lambda: _exited(proc, "pgbouncer"),
            log=self.log,
        )


class ProxyProcess:
    """`python -m proxy serve ...` as a child process, exactly as a user would start it."""

    def __init__(self, upstream: str, opts: Options, variant: Variant) -> None:
        self.upstream = upstream
        self.opts = opts
        self.variant = variant
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.dir / "proxy.log"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "proxy", "serve",
            "--listen", f"{HOST}:{self.port}",
            "--upstream", self.upstream,
            "--metrics-listen", f"{HOST}:0",
            *self._workers_args(),
            *self.opts.proxy_args,
        ]  # fmt: skip

    def _workers_args(self) -> list[str]:
        """`--workers N`, unless --proxy-arg already sets it (one value in the stamp, not two) or the
        variant does (ELECTRIC_PROXY_LISTEN_WORKERS=2: a two-worker proxy beside one-worker ones)."""
        given = any(a == "--workers" or a.startswith("--workers=") for a in self.opts.proxy_args)
        given = given or WORKERS_ENV in self.variant.env
        return [] if given else ["--workers", str(self.opts.workers)]

    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(PROXY_ENV_PREFIXES) and k not in PROXY_ENV_NAMES
        }
        env.update(self.opts.proxy_env)
        env.update(self.variant.env)
        return env

    def settings(self) -> dict[str, str]:
        """The variables this proxy gets on top of the cleaned environment (for the stamp)."""
        return {**self.opts.proxy_env, **self.variant.env}

    def start(self) -> None:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # A private cwd: no ./config.toml from wherever the harness was started.
                cwd=self.dir,
                env=self.env(),
                start_new_session=True,
            )
        what = self.variant.display
        wait_for_tcp(self.port, self.proc, what, self.log)
        # The socket listens before the catalog is installed (guard on); `listening on` comes after.
        wait_for_log(self.log, "listening on", self.proc, what)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM)
            code = self.proc.returncode
            if code not in (0, -signal.SIGTERM):
                print(f"{self.variant.display} stopped with exit code {code}", file=sys.stderr)
        shutil.rmtree(self.dir, ignore_errors=True)

    def target(self) -> Target:
        proc = self.proc
        assert proc is not None
        return Target(
            self.variant.label,
            self.variant.display,
            self.port,
            kind="proxy",
            cpu=lambda: process_tree_cpu_seconds(proc.pid),
            dead=lambda: _exited(proc, self.variant.display),
            command=self.command(),
            log=self.log,
        )


def _exited(proc: subprocess.Popen[bytes], what: str) -> str | None:
    if proc.poll() is None:
        return None
    return f"{what} exited with code {proc.returncode}"


# --- one pgbench run -----------------------------------------------------------------------------


@dataclass
class PgbenchOutput:
    tps: float | None = None
    transactions: int | None = None
    failed: int | None = None
    latency_ms: float | None = None


# -C runs report "including reconnection times" instead.
_TPS = re.compile(r"^tps = ([\d.]+) \((?:without initial connection|including reconnection) times?\)", re.M)
_TXNS = re.compile(r"^number of transactions actually processed: (\d+)", re.M)
_FAILED = re.compile(r"^number of failed transactions: (\d+)", re.M)
_LATENCY = re.compile(r"^latency average = ([\d.]+) ms", re.M)


def parse_pgbench(stdout: str) -> PgbenchOutput:
    def grab(pattern: re.Pattern[str]) -> str | None:
        match = pattern.search(stdout)
        return match.group(1) if match else None

    tps, txns, failed, latency = (grab(p) for p in (_TPS, _TXNS, _FAILED, _LATENCY))
    return PgbenchOutput(
        tps=None if tps is None else float(tps),
        transactions=None if txns is None else int(txns),
        failed=None if failed is None else int(failed),
        latency_ms=None if latency is None else float(latency),
    )


@dataclass
class Run:
    round: int  # 0 = warm-up
    mode: str
    target: str
    tps: float | None = None
    transactions: int | None = None
    failed: int | None = None
    latency_ms: float | None = None
    p50_ms: float | None = None  # from pgbench's per-transaction log (-l)
    p99_ms: float | None = None
    p999_ms: float | None = None
    exit_code: int | None = None
    error: str | None = None
    hop_cpu_s: float | None = None  # proxy / pgbouncer process tree
    box_cpu_s: float | None = None
    load1_start: float = 0.0
    wall_s: float = 0.0
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None

    def us_per_query(self, seconds: float | None) -> float | None:
        if seconds is None or not self.transactions:
            return None
        return seconds * 1e6 / self.transactions


def pgbench_command(target: Target, opts: Options, mode: str, duration: int, log_prefix: Path) -> list[str]:
    return [
        opts.pgbench, "-n", *Cell.parse(mode, opts).args(), "-T", str(duration),
        "--verbose-errors", "-l", f"--log-prefix={log_prefix}",
        "-h", HOST, "-p", str(target.port), "-U", USER, DB,
    ]  # fmt: skip


def latency_percentiles(directory: Path) -> tuple[float, float, float] | None:
    """p50, p99 and p99.9 in ms over every transaction in pgbench's per-transaction logs.

    Each line is `client_id transaction_no time_us script_no time_epoch time_us_part`.
    """
    latencies: list[int] = []
    for log in directory.glob("pgbench_log*"):
        with log.open() as lines:
            latencies += [int(line.split(maxsplit=3)[2]) for line in lines if line.strip()]
    if not latencies:
        return None
    latencies.sort()

    def at(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] / 1000

    return at(0.50), at(0.99), at(0.999)


def run_pgbench(target: Target, opts: Options, mode: str, round_no: int, duration: int) -> Run:
    run = Run(round=round_no, mode=mode, target=target.name, load1_start=load1())
    reason = target.dead()
    if reason is not None:
        run.error = f"not running before the run: {reason}"
        return run
    with tempfile.TemporaryDirectory(prefix="pgbench-log-") as logs:
        cmd = pgbench_command(target, opts, mode, duration, Path(logs) / "pgbench_log")
        hop0 = target.cpu() if target.cpu else None
        box0, t0 = box_busy_cpu_seconds(), time.monotonic()
        try:
            done = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                env=client_env(),
                timeout=duration + PGBENCH_GRACE_S,
                check=False,
            )
            stdout, run.stderr, run.exit_code = done.stdout, done.stderr, done.returncode
        except subprocess.TimeoutExpired as exc:
            stdout, run.stderr = _text(exc.stdout), _text(exc.stderr)
            run.error = f"pgbench hung: killed after {duration + PGBENCH_GRACE_S:.0f}s"
        run.wall_s = time.monotonic() - t0
        percentiles = latency_percentiles(Path(logs))
    if percentiles is not None:
        run.p50_ms, run.p99_ms, run.p999_ms = percentiles
    run.box_cpu_s = box_busy_cpu_seconds() - box0
    if target.cpu and hop0 is not None:
        with contextlib.suppress(OSError):
            run.hop_cpu_s = target.cpu() - hop0
    _judge(run, parse_pgbench(stdout), target)
    return run


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode(errors="replace")


def _judge(run: Run, out: PgbenchOutput, target: Target) -> None:
    """Fill the parsed numbers; any failure becomes `run.error`, never a silently missing number."""
    run.tps, run.transactions, run.failed = out.tps, out.transactions, out.failed
    run.latency_ms = out.latency_ms
    problems = [run.error] if run.error else []
    if run.exit_code not in (None, 0):
        problems.append(f"pgbench exit code {run.exit_code}")
    if out.failed:
        problems.append(f"{out.failed} failed transactions")
    if out.tps is None and not problems:
        problems.append("no tps line in pgbench output")
    reason = target.dead()
    if reason is not None:
        problems.append(reason)
    if problems:
        run.error = "; ".join(problems)


# --- the benchmark loop --------------------------------------------------------------------------


def rotated(items: Sequence[Target], by: int) -> list[Target]:
    k = by % len(items) if items else 0
    return [*items[k:], *items[:k]]


def _progress(run: Run, target: Target) -> None:
    what = "warm-up" if run.round == 0 else f"round {run.round}"
    if not run.ok:
        print(f"  {what:8} {run.mode:8} {target.display:18} ERROR {run.error}", file=sys.stderr)
        return
    hop = run.us_per_query(run.hop_cpu_s)
    hop_text = "" if hop is None else f"  hop {hop:6.1f} us/q"
    box = run.us_per_query(run.box_cpu_s) or 0.0
    tps = run.tps or 0.0
    print(
        f"  {what:8} {run.mode:8} {target.display:18} {tps:10,.0f} tps{hop_text}  box {box:6.1f} us/q",
        file=sys.stderr,
        flush=True,
    )


def benchmark(targets: list[Target], opts: Options) -> list[Run]:
    live = [t for t in targets if t.absent is None]
    runs: list[Run] = []
    if opts.warmup:
        print(f"warm-up: {opts.warmup}s per mode and target (not recorded in the tables)", file=sys.stderr)
        for mode in opts.modes:
            for target in live:
                runs.append(run_pgbench(target, opts, mode, 0, opts.warmup))
                _progress(runs[-1], target)
    for round_no in range(1, opts.rounds + 1):
        order = rotated(live, round_no - 1)
        print(f"round {round_no}/{opts.rounds}: order {', '.join(t.name for t in order)}", file=sys.stderr)
        for mode in opts.modes:
            for target in order:
                runs.append(run_pgbench(target, opts, mode, round_no, opts.duration))
                _progress(runs[-1], target)
    return runs


# --- reporting -----------------------------------------------------------------------------------


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def paired_ratio(runs: Sequence[Run], mode: str, num: str, den: str) -> float | None:
    """Median over rounds of TPS(num)/TPS(den), both from the same round and mode."""
    by_round: dict[tuple[int, str], float] = {
        (r.round, r.target): r.tps for r in runs if r.mode == mode and r.round > 0 and r.ok and r.tps
    }
    ratios = [
        by_round[(rnd, num)] / by_round[(rnd, den)]
        for rnd, name in by_round
        if name == num and (rnd, den) in by_round
    ]
    return _median(ratios)


@dataclass
class Row:
    display: str
    median_tps: float | None = None
    min_tps: float | None = None
    max_tps: float | None = None
    vs_direct: float | None = None
    vs_pgbouncer: float | None = None
    vs_baseline: float | None = None
    hop_us: float | None = None
    box_us: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None
    ok_runs: int = 0
    runs: int = 0
    high_load_runs: int = 0
    absent: str | None = None


def summarize(target: Target, runs: Sequence[Run], mode: str, opts: Options) -> Row:
    row = Row(target.display, absent=target.absent)
    mine = [r for r in runs if r.mode == mode and r.target == target.name and r.round > 0]
    good = [r for r in mine if r.ok]
    row.runs, row.ok_runs = len(mine), len(good)
    row.high_load_runs = sum(r.load1_start > Cell.parse(mode, opts).clients for r in mine)
    tps = [r.tps for r in good if r.tps is not None]
    if tps:
        row.median_tps, row.min_tps, row.max_tps = statistics.median(tps), min(tps), max(tps)
    row.vs_direct = paired_ratio(runs, mode, target.name, "direct")
    row.vs_pgbouncer = paired_ratio(runs, mode, target.name, "pgbouncer")
    if target.kind == "proxy":
        row.vs_baseline = paired_ratio(runs, mode, target.name, opts.baseline)
    row.hop_us = _median([r.us_per_query(r.hop_cpu_s) for r in good])
    row.box_us = _median([r.us_per_query(r.box_cpu_s) for r in good])
    row.p50_ms = _median([r.p50_ms for r in good])
    row.p99_ms = _median([r.p99_ms for r in good])
    row.p999_ms = _median([r.p999_ms for r in good])
    return row


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


@dataclass(frozen=True)
class Table:
    """Column titles and widths; the first column is left-aligned, the rest right-aligned.

    The `vs BASELINE` column is there only when more than one proxy variant runs.
    """

    columns: tuple[tuple[str, int], ...]

    @classmethod
    def build(cls, targets: Sequence[Target], opts: Options) -> Table:
        first = max([18, *(len(t.display) for t in targets)])
        columns: list[tuple[str, int]] = [
            ("target", first),
            ("median TPS", 10),
            ("min-max TPS", 15),
            ("vs direct", 9),
            ("vs pgbouncer", 12),
        ]
        if len(opts.variants) > 1:
            title = f"vs {opts.baseline}"
            columns.append((title, max(9, len(title))))
        columns += [("proxy CPU µs/q", 14), ("box CPU µs/q", 12), ("p50/p99/p99.9 ms", 20), ("ok/runs", 7)]
        return cls(tuple(columns))

    @property
    def has_baseline(self) -> bool:
        return len(self.columns) == 10

    def line(self, cells: Sequence[str]) -> str:
        first, *rest = (
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, (_, width)) in enumerate(zip(cells, self.columns, strict=True))
        )
        return "  ".join([first, *rest])

    @property
    def header(self) -> str:
        return self.line([title for title, _ in self.columns])

    def row(self, row: Row) -> str:
        if row.absent is not None:
            return f"{row.display:{self.columns[0][1]}}  absent: {row.absent}"
        span = "-" if row.min_tps is None else f"{row.min_tps:,.0f}-{row.max_tps or 0:,.0f}"
        cells = [
            row.display,
            _fmt(row.median_tps, ",.0f"),
            span,
            _fmt(row.vs_direct, ".2f"),
            _fmt(row.vs_pgbouncer, ".2f"),
        ]
        if self.has_baseline:
            cells.append(_fmt(row.vs_baseline, ".2f"))
        latency = "/".join(_fmt(v, ".2f") for v in (row.p50_ms, row.p99_ms, row.p999_ms))
        cells += [_fmt(row.hop_us, ".1f"), _fmt(row.box_us, ".1f"), latency, f"{row.ok_runs}/{row.runs}"]
        return self.line(cells)


def mode_report(targets: Sequence[Target], runs: Sequence[Run], mode: str, opts: Options) -> list[str]:
    table = Table.build(targets, opts)
    rows = [summarize(t, runs, mode, opts) for t in targets]
    header = table.header
    cell = Cell.parse(mode, opts)
    lines = [
        f"cell {mode}: pgbench -n {' '.join(cell.args())} -T {opts.duration}, "
        f"{opts.rounds} round(s); ratios = median of per-round paired ratios; latency: medians over runs",
        header,
        "-" * len(header),
        *(table.row(row) for row in rows),
    ]
    loaded = sum(row.high_load_runs for row in rows)
    if loaded:
        lines.append(f"note: {loaded} run(s) started with 1-min load average > {cell.clients} (noisy)")
    return lines


def _ratio_text(ratio: float | None, goal: float) -> str:
    if ratio is None:
        return "n/a (no paired successful runs)"
    return f"{ratio:.2f} " + ("met" if ratio >= goal else "NOT met")


def goal_lines(targets: Sequence[Target], runs: Sequence[Run], mode: str, opts: Options) -> list[str]:
    """Per mode: every variant vs pgbouncer, every other variant vs the baseline, CPU per variant."""
    proxies = [t for t in targets if t.kind == "proxy"]
    bouncer = next((t for t in targets if t.kind == "pgbouncer"), None)
    lines: list[str] = []
    if not proxies:
        return [f"{mode:8}: proxy/pgbouncer median TPS ratio = n/a (proxy not measured)"]
    for proxy in proxies:
        if bouncer is None:
            value = "n/a (pgbouncer not measured)"
        elif bouncer.absent is not None:
            value = "n/a (pgbouncer absent)"
        else:
            value = _ratio_text(paired_ratio(runs, mode, proxy.name, "pgbouncer"), GOAL_VS_PGBOUNCER)
        goal = f"(goal >= {GOAL_VS_PGBOUNCER:.2f})"
        lines.append(f"{mode:8}: {proxy.display}/pgbouncer median TPS ratio = {value} {goal}")
    base = next((t for t in proxies if t.name == opts.baseline), None)
    if base is None or len(proxies) < 2:
        return lines
    base_cpu = summarize(base, runs, mode, opts).hop_us
    for proxy in proxies:
        if proxy is base:
            continue
        value = _ratio_text(paired_ratio(runs, mode, proxy.name, base.name), GOAL_VS_BASELINE)
        lines.append(
            f"{mode:8}: {proxy.name}/{base.name} median TPS ratio = {value} (goal >= {GOAL_VS_BASELINE:.2f})"
        )
    for proxy in proxies:
        cpu = summarize(proxy, runs, mode, opts).hop_us
        delta = ""
        if proxy is not base and cpu is not None and base_cpu is not None:
            delta = f" ({cpu - base_cpu:+.1f} vs {base.name})"
        lines.append(f"{mode:8}: {proxy.display} proxy CPU = {_fmt(cpu, '.1f')} µs/q{delta}")
    return lines


_NOTABLE = re.compile(r"\b(WARNING|ERROR|FATAL|CRITICAL|PANIC|Traceback)\b")


def log_digest(target: Target) -> list[str]:
    """Warnings and errors from a proxy/pgbouncer log, and its tail when the process died."""
    return [] if target.log is None else digest_log(target.display, target.log, target.dead())


def digest_log(display: str, log: Path, dead: str | None) -> list[str]:
    """A log's warning and error lines, and its last lines when its process died (`dead`)."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    notable = [line for line in lines if _NOTABLE.search(line)]
    out = [f"{display} log: {len(lines)} line(s), {len(notable)} warning/error line(s)"]
    out.extend(f"    {line}" for line in notable[-TAIL_LINES:])
    if dead is not None:
        out.append(f"    {dead}; last lines of {log.name}:")
        out.extend(f"    {line}" for line in lines[-TAIL_LINES:])
    return out


def error_report(runs: Sequence[Run]) -> list[str]:
    lines: list[str] = []
    for run in runs:
        if run.ok:
            continue
        what = "warm-up" if run.round == 0 else f"round {run.round}"
        lines.append(f"FAILED {what} {run.mode} {run.target}: {run.error}")
        stderr = run.stderr.strip().splitlines()[-TAIL_LINES:]
        lines.extend(f"    pgbench: {line}" for line in stderr)
    return lines


# --- environment stamp ---------------------------------------------------------------------------


def _version_of(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False).stdout
    except OSError as exc:
        return f"unavailable ({exc.strerror})"
    return out.splitlines()[0].strip() if out.strip() else "unknown"


def _package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def git_commit() -> str:
    """`git rev-parse --short HEAD` of the checkout holding `proxy`, marked when proxy/ has local edits."""
    repo = Path(__file__).resolve().parent.parent
    head = _version_of(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"])
    try:
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--", "proxy"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except OSError:
        dirty = ""
    return f"{head} (+ uncommitted changes in proxy/)" if dirty else head


def environment_stamp(pg: EmbeddedPostgres, opts: Options, targets: Sequence[Target]) -> dict[str, object]:
    stamp: dict[str, object] = {
        "nproc": os.cpu_count(),
        "loadavg_before": list(os.getloadavg()),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "uvloop": _package_version("uvloop"),
        "electric_proxy": _package_version("electric-proxy"),
        "postgres": _version_of([str(pg.bin("postgres")), "--version"]),
        "pgbench": _version_of([opts.pgbench, "--version"]),
        "pgbouncer": _version_of([str(PGBOUNCER_BIN), "--version"]) if PGBOUNCER_BIN.exists() else "absent",
        "proxy_commit": git_commit(),
        "proxy_baseline": opts.baseline if len(opts.variants) > 1 else "-",
    }
    settings = {v.label: {**opts.proxy_env, **v.env} for v in opts.variants}
    for target in targets:
        if target.kind == "proxy":
            stamp[f"{target.display} env"] = settings[target.name]
            stamp[f"{target.display} cmd"] = target.command
    return stamp


def print_stamp(stamp: dict[str, object]) -> None:
    print("environment:")
    for key, value in stamp.items():
        if isinstance(value, list) and key.startswith("loadavg"):
            value = " ".join(f"{v:.2f}" for v in value)
        elif isinstance(value, list):
            value = " ".join(str(v) for v in value)
        elif isinstance(value, dict):
            value = " ".join(f"{k}={v}" for k, v in value.items()) or "(defaults)"
        print(f"  {key:16} {value}")


# --- setup and main ------------------------------------------------------------------------------


def find_pgbench(pg: EmbeddedPostgres) -> str:
    """The pgbench of the server's own installation, else the one on PATH."""
    bundled = pg.bin_dir / "pgbench"
    if os.access(bundled, os.X_OK):
        return str(bundled)
    on_path = shutil.which("pgbench")
    if on_path is None:
        raise BenchError(
            "pgbench not found next to postgres nor on PATH (apt-get install -y postgresql-client)"
        )
    return on_path


def load_pgbench_tables(pg: EmbeddedPostgres, opts: Options) -> None:
    print(f"postgres {pg.version} on {HOST}:{pg.port}; pgbench -i -s {opts.scale} ...", file=sys.stderr)
    init = subprocess.run(
        [opts.pgbench, "-i", "-q", "-s", str(opts.scale), "-h", HOST, "-p", str(pg.port), "-U", USER, DB],
        capture_output=True,
        text=True,
        env=client_env(),
        check=False,
    )
    if init.returncode != 0:
        raise BenchError(f"pgbench -i failed (exit {init.returncode}):\n{init.stderr}")


def start_targets(stack: contextlib.ExitStack, pg: EmbeddedPostgres, opts: Options) -> list[Target]:
    targets: list[Target] = []
    for name in opts.targets:
        if name == "direct":
            targets.append(Target("direct", "direct", pg.port, kind="direct"))
        elif name == "pgbouncer" and not PGBOUNCER_BIN.exists():
            print(f"pgbouncer not found at {PGBOUNCER_BIN}; install it with: {PGBOUNCER_INSTALL_HINT}")
            absent = f"not installed ({PGBOUNCER_INSTALL_HINT})"
            targets.append(Target("pgbouncer", "pgbouncer", kind="pgbouncer", absent=absent))
        elif name == "pgbouncer":
            bouncer = PgBouncer(pg.port)
            stack.callback(bouncer.stop)
            bouncer.start()
            targets.append(bouncer.target())
        else:
            for variant in opts.variants:
                proxy = ProxyProcess(pg.url(DB, user=USER, password=PASSWORD), opts, variant)
                stack.callback(proxy.stop)
                proxy.start()
                targets.append(proxy.target())
    for target in targets:
        if target.absent is None:
            check_sql(target.port, target.display)
    return targets


@contextlib.contextmanager
def signals_unwind() -> Iterator[None]:
    """SIGTERM/SIGHUP raise `Interrupted` so cleanup runs as it does for Ctrl-C."""

    def handler(signum: int, _frame: object) -> NoReturn:
        raise Interrupted(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def write_json(path: Path, stamp: dict[str, object], opts: Options, runs: Sequence[Run]) -> None:
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()}
    payload = {"environment": stamp, "options": options, "runs": [asdict(r) for r in runs]}
    path.write_text(json.dumps(payload, indent=2) + "\n")


def save_logs(targets: Sequence[Target], directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for target in targets:
        if target.log is not None and target.log.exists():
            name = target.name if target.name in ("proxy", "pgbouncer") else f"proxy-{target.name}"
            shutil.copyfile(target.log, directory / f"{name}.log")
    print(f"logs copied to {directory}")


def report(targets: list[Target], runs: list[Run], opts: Options, stamp: dict[str, object]) -> int:
    stamp["loadavg_after"] = list(os.getloadavg())
    print_stamp(stamp)
    for mode in opts.modes:
        print()
        print("\n".join(mode_report(targets, runs, mode, opts)))
    print()
    print("summary (proxy CPU µs/q is the proxy's, or pgbouncer's own, process-tree CPU per transaction):")
    for mode in opts.modes:
        print("\n".join(goal_lines(targets, runs, mode, opts)))
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
        write_json(opts.json_path, stamp, opts, runs)
        print(f"\nraw results written to {opts.json_path}")
    if opts.logs_dir is not None:
        save_logs(targets, opts.logs_dir)
    return 1 if errors else 0


def run(opts: Options) -> int:
    with contextlib.ExitStack() as stack:
        pg = EmbeddedPostgres(user=USER, password=PASSWORD, settings={"shared_buffers": "256MB"})
        stack.callback(pg.stop)
        pg.start()
        opts = replace(opts, pgbench=find_pgbench(pg))
        load_pgbench_tables(pg, opts)
        targets = start_targets(stack, pg, opts)
        stamp = environment_stamp(pg, opts, targets)
        runs = benchmark(targets, opts)
        return report(targets, runs, opts, stamp)


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    try:
        with signals_unwind():
            return run(opts)
    except (KeyboardInterrupt, Interrupted):
        print("interrupted; everything started was stopped", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"setup failed: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
