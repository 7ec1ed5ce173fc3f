"""A throwaway local PostgreSQL server: `electric-proxy serve` without an upstream, and the tests.

Each `EmbeddedPostgres` owns a private temp directory (data dir, unix socket dir, server log),
runs `initdb` into it, starts `postgres` as a child process and deletes everything on `stop()`.

Postgres refuses to run as root, and CI runs as root, so when euid is 0 every server binary runs
as the `postgres` system user and the files it needs are chowned to that user.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import importlib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Final, Literal, Self
from urllib.parse import quote

import psycopg
from psycopg import sql as pgsql

from proxy.config import ListenConfig
from proxy.errors import ConfigError, ProxyError

PG_BIN_ENV: Final = "ELECTRIC_PROXY_PG_BIN"
DEBIAN_PG_ROOT: Final = Path("/usr/lib/postgresql")
HOST: Final = "127.0.0.1"
_REQUIRED_BINARIES: Final = ("postgres", "initdb")
_LOG_TAIL_LINES: Final = 40
# A port picked by binding port 0 can be taken by someone else before postgres binds it.
_PORT_ATTEMPTS: Final = 3
_SETTING_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")

DEFAULT_SETTINGS: Final[Mapping[str, str]] = {
    # Durability is pointless for a throwaway cluster and costs seconds per test run.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    # Logical replication must work through the proxy.
    "wal_level": "logical",
    "max_wal_senders": "10",
    "max_replication_slots": "10",
    "max_connections": "200",
    "shared_buffers": "128MB",
    "log_min_messages": "warning",
    "password_encryption": "scram-sha-256",
}


def embedded_listen_address(listen: ListenConfig) -> str:
    """Where `serve` listens in front of an embedded Postgres: its superuser must not be on the
    network by accident, so the built-in default 0.0.0.0 becomes loopback. Any other address
    (e.g. `--listen [::]:65432`, or a host's own address) is taken as the operator's choice."""
    return HOST if listen.address == ListenConfig().address else listen.address


def random_password() -> str:
    """The embedded superuser's password: printed once by `serve`, never stored."""
    return secrets.token_urlsafe(18)


class EmbeddedPostgresError(ProxyError):
    """The embedded server could not be started, queried or stopped."""

    sqlstate = "58000"  # system_error: the failure is in the environment, not the client


@dataclass(frozen=True)
class _OsUser:
    """Who the server binaries run as; `None` in place of this means the current user."""

    name: str
    uid: int
    gid: int


# --- locating binaries -------------------------------------------------------------------------


def _has_server_binaries(directory: Path) -> bool:
    return all(os.access(directory / name, os.X_OK) for name in _REQUIRED_BINARIES)


def _major_version(bin_dir: Path) -> int:
    """Major version reported by `postgres --version` (allowed as root, unlike starting it)."""
    out = subprocess.run(
        [str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, check=False
    ).stdout
    match = re.search(r"\(PostgreSQL\)\s+(\d+)", out)
    if match is None:
        raise ConfigError(f"cannot read the PostgreSQL version from {bin_dir / 'postgres'}: {out!r}")
    return int(match.group(1))


def _install_dir(directory: Path) -> Path:
    """Follow a symlinked `postgres` (e.g. /usr/local/bin -> /usr/lib/postgresql/15/bin) home.

    The real directory also holds pg_ctl, pg_isready, ... which a PATH directory may lack.
    """
    real = (directory / "postgres").resolve().parent
    return real if _has_server_binaries(real) else directory


def _path_candidates() -> list[Path]:
    dirs = os.environ.get("PATH", "").split(os.pathsep)
    return [_install_dir(Path(d)) for d in dirs if d and _has_server_binaries(Path(d))]


def _debian_candidates(version: int | None) -> list[Path]:
    """/usr/lib/postgresql/<major>/bin, newest first; the directory name is the major version."""
    found: list[tuple[int, Path]] = []
    for entry in glob.glob(str(DEBIAN_PG_ROOT / "*" / "bin")):
        path = Path(entry)
        if path.parent.name.isdigit() and _has_server_binaries(path):
            found.append((int(path.parent.name), path))
    found.sort(reverse=True)
    return [path for major, path in found if version is None or major == version]


def _pgserver_candidates() -> list[Path]:
    """Binaries bundled in the optional `pgserver` wheel (the `embedded` extra)."""
    try:
        module = importlib.import_module("pgserver")
    except ImportError:
        return []
    if module.__file__ is None:
        return []
    bin_dir = Path(module.__file__).parent / "pginstall" / "bin"
    return [bin_dir] if _has_server_binaries(bin_dir) else []


def find_pg_bin_dir(version: int | None = None) -> Path:
    """Directory holding `postgres` and `initdb`, optionally of the given major version.

    Order: $ELECTRIC_PROXY_PG_BIN, PATH, /usr/lib/postgresql/*/bin (newest first), `pgserver`.
    """
    override = os.environ.get(PG_BIN_ENV)
    if override:
        # An explicit setting that is wrong is an error, not a reason to silently use another build.
        path = Path(override)
        if not _has_server_binaries(path):
            raise ConfigError(f"${PG_BIN_ENV}={override} does not contain executable postgres and initdb")
        if version is not None and _major_version(path) != version:
            raise ConfigError(f"${PG_BIN_ENV}={override} is not PostgreSQL {version}")
        return path
    for path in _path_candidates():
        if version is None or _major_version(path) == version:
            return path
    debian = _debian_candidates(version)
    if debian:
        return debian[0]
    for path in _pgserver_candidates():
        if version is None or _major_version(path) == version:
            return path
    wanted = "PostgreSQL" if version is None else f"PostgreSQL {version}"
    raise ConfigError(
        f"cannot find {wanted} server binaries (postgres, initdb): set ${PG_BIN_ENV}, put them on PATH, "
        f"install the Debian postgresql package, or `pip install electric-proxy[embedded]`"
    )


# --- small helpers -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _server_os_user() -> _OsUser | None:
    """The `postgres` account when we are root (postgres refuses root), else None (ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        raise ConfigError(
            "running as root, and PostgreSQL refuses to run as root, but there is no `postgres` "
            "system user to run it as: create one (useradd --system postgres) or run as a normal user"
        ) from None
    return _OsUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _conf_line(name: str, value: str) -> str:
    if not _SETTING_NAME.match(name):
        raise ConfigError(f"invalid PostgreSQL setting name: {name!r}")
    if "\n" in value or "\r" in value:
        raise ConfigError(f"PostgreSQL setting {name} must be a single line")
    # Quoting every value is valid for every GUC type and saves deciding which need it;
    # postgresql.conf strings process backslash escapes, so escape those too.
    escaped = value.replace("\\", "\\\\").replace("'", "''")
    return f"{name} = '{escaped}'"


def _child_env() -> dict[str, str]:
    """Our environment minus libpq/server PG* variables (PGDATA, PGPORT, ...) that would override us."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


# --- the server --------------------------------------------------------------------------------


class EmbeddedPostgres:
    """A private PostgreSQL cluster on 127.0.0.1:`port`, deleted by `stop()` (or at exit)."""

    host: str = HOST

    def __init__(
        self,
        *,
        bin_dir: Path | None = None,
        port: int | None = None,
        user: str = "postgres",
        password: str | None = None,
        settings: Mapping[str, str] | None = None,
        hba_extra: Sequence[str] = (),
        ssl_cert: Path | None = None,
        ssl_key: Path | None = None,
    ) -> None:
        if (ssl_cert is None) != (ssl_key is None):
            raise ConfigError("ssl_cert and ssl_key must be given together")
        self.bin_dir = bin_dir if bin_dir is not None else find_pg_bin_dir()
        self.version = _major_version(self.bin_dir)
        self._auto_port = port is None
        self.port = port if port is not None else _free_port()
        self.user = user
        self.password = random_password() if password is None else password
        self._settings = dict(settings or {})
        self._hba_extra = list(hba_extra)
        self._ssl = (ssl_cert, ssl_key) if ssl_cert is not None and ssl_key is not None else None
        self._os_user = _server_os_user()
        self._root: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # -- paths and addresses --

    @property
    def root_dir(self) -> Path:
        """The private temp directory holding everything this server owns."""
        if self._root is None:
            raise EmbeddedPostgresError("embedded postgres has not been started")
        return self._root

    @property
    def data_dir(self) -> Path:
        return self.root_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root_dir / "sock"

    @property
    def log_file(self) -> Path:
        return self.root_dir / "server.log"

    def bin(self, name: str) -> Path:
        path = self.bin_dir / name
        if not os.access(path, os.X_OK):
            raise ConfigError(f"{name} not found in {self.bin_dir}")
        return path

    def url(self, database: str = "postgres", *, user: str | None = None, password: str | None = None) -> str:
        user = self.user if user is None else user
        password = self.password if password is None else password
        creds = f"{quote(user, safe='')}:{quote(password, safe='')}"
        return f"postgresql://{creds}@{self.host}:{self.port}/{quote(database, safe='')}"

    def pid(self) -> int:
        """Postmaster pid: we start `postgres` directly, so it is our child's pid."""
        if self._proc is None or self._proc.poll() is not None:
            raise EmbeddedPostgresError("embedded postgres is not running")
        return self._proc.pid

    # -- lifecycle --

    def start(self, timeout: float = 30.0) -> None:
        if self._proc is not None:
            raise EmbeddedPostgresError("embedded postgres is already running")
        deadline = time.monotonic() + timeout
        self._root = self._make_private_dir()
        # Registered before anything can fail half-way, so even a partial start is cleaned up.
        atexit.register(self.stop)
        try:
            self._initdb(deadline)
            self._configure()
            self._launch(deadline)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Fast shutdown, then delete the temp dir. Safe to call repeatedly or after a failed start."""
        atexit.unregister(self.stop)
        if self._proc is not None:
            self._shutdown(self._proc)
            self._proc = None
        if self._root is not None and self._root.exists():
            shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- SQL conveniences (as the superuser, over the trusted unix socket) --

    def connect(self, database: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        """Superuser autocommit connection over the private unix socket (`local ... trust`)."""
        return psycopg.connect(
            host=str(self.socket_dir), port=self.port, user=self.user, dbname=database, autocommit=True
        )

    def execute(self, sql: str, database: str = "postgres") -> None:
        with self.connect(database) as conn:
            conn.execute(sql)

    def create_role(
        self,
        name: str,
        password: str,
        *,
        encryption: Literal["scram-sha-256", "md5"] = "scram-sha-256",
        superuser: bool = False,
        replication: bool = False,
        createdb: bool = False,
    ) -> None:
        """CREATE ROLE ... LOGIN, with the password stored hashed by `encryption`."""
        options = [
            "SUPERUSER" if superuser else "NOSUPERUSER",
            "REPLICATION" if replication else "NOREPLICATION",
            "CREATEDB" if createdb else "NOCREATEDB",
        ]
        # Utility statements take no bind parameters, so the password is a client-side literal.
        create = pgsql.SQL("CREATE ROLE {} LOGIN {} PASSWORD {}").format(
            pgsql.Identifier(name), pgsql.SQL(" ".join(options)), pgsql.Literal(password)
        )
        with self.connect() as conn:
            # The server hashes with the session's password_encryption; md5 roles need it switched.
            conn.execute(pgsql.SQL("SET password_encryption = {}").format(pgsql.Literal(encryption)))
            conn.execute(create)

    # -- start steps --

    def _make_private_dir(self) -> Path:
        # mkdtemp gives 0700; the postgres user must own it to create the data dir inside.
        root = Path(tempfile.mkdtemp(prefix="electric-proxy-pg-"))
        self._chown(root)
        sock = root / "sock"
        sock.mkdir(mode=0o700)
        self._chown(sock)
        return root

    def _initdb(self, deadline: float) -> None:
        pwfile = self.root_dir / "pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        self._chown(pwfile)
        cmd = [
            str(self.bin("initdb")),
            "-D", str(self.data_dir),
            "-U", self.user,
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "-E", "UTF8",
            "--locale=C",
            "--no-sync",  # nothing survives this cluster; syncing costs most of initdb's time
        ]  # fmt: skip
        try:
            done = self._run(cmd, timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            raise EmbeddedPostgresError("initdb did not finish within the start timeout") from None
        finally:
            pwfile.unlink(missing_ok=True)
        if done.returncode != 0:
            raise EmbeddedPostgresError(f"initdb failed (exit {done.returncode}):\n{done.stdout.strip()}")

    def _configure(self) -> None:
        settings = dict(DEFAULT_SETTINGS)
        settings["listen_addresses"] = self.host
        settings["unix_socket_directories"] = str(self.socket_dir)
        if self._ssl is not None:
            settings.update(self._install_tls(*self._ssl))
        settings.update(self._settings)
        # Appended: later lines win over initdb's defaults in the same file.
        lines = ["", "# electric-proxy embedded server", *(_conf_line(k, v) for k, v in settings.items())]
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n".join(lines) + "\n")
        (self.data_dir / "pg_hba.conf").write_text(self._hba())

    def _install_tls(self, cert: Path, key: Path) -> dict[str, str]:
        """Copy cert/key into the data dir, owned by the server user; the key must be 0600."""
        for src, name, mode in ((cert, "server.crt", 0o644), (key, "server.key", 0o600)):
            dest = self.data_dir / name
            shutil.copyfile(src, dest)
            dest.chmod(mode)
            self._chown(dest)
        return {"ssl": "on", "ssl_cert_file": "server.crt", "ssl_key_file": "server.key"}

    def _hba(self) -> str:
        # First match wins, so hba_extra goes on top to override the catch-all rules.
        rules = [
            *self._hba_extra,
            "local all all trust",
            "local replication all trust",
            *(
                f"host {db} all {addr} scram-sha-256"
                for db in ("all", "replication")
                for addr in ("127.0.0.1/32", "::1/128")
            ),
        ]
        return "\n".join(rules) + "\n"

    def _launch(self, deadline: float) -> None:
        for attempt in range(_PORT_ATTEMPTS):
            proc = self._spawn()
            self._proc = proc
            try:
                self._wait_ready(proc, deadline)
                return
            except EmbeddedPostgresError:
                lost_port_race = proc.poll() is not None and "Address already in use" in self._log_tail()
                if not (lost_port_race and self._auto_port and attempt + 1 < _PORT_ATTEMPTS):
                    raise
            self.port = _free_port()

    def _spawn(self) -> subprocess.Popen[bytes]:
        cmd = [str(self.bin("postgres")), "-D", str(self.data_dir), "-p", str(self.port)]
        # Truncate per attempt so the log tail in an error describes this attempt only.
        with self.log_file.open("wb") as log:
            return self._popen(cmd, stdout=log)

    def _wait_ready(self, proc: subprocess.Popen[bytes], deadline: float) -> None:
        """Poll with real connections until one succeeds, the server dies, or time runs out."""
        delay = 0.01
        while True:
            if proc.poll() is not None:
                raise self._failure(f"postgres exited with code {proc.returncode} during startup")
            try:
                with self.connect():
                    return
            except psycopg.OperationalError:
                pass  # no socket yet, or "the database system is starting up"
            if time.monotonic() >= deadline:
                raise self._failure("postgres did not accept connections before the timeout")
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    # -- stop steps --

    def _shutdown(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is not None:
            return
        if self._root is not None and self.data_dir.exists():
            cmd = [str(self.bin_dir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast", "-w"]
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                self._run(cmd, timeout=30)
        # pg_ctl may be missing or have failed; signal directly (SIGINT is "fast" shutdown).
        for sig in (signal.SIGINT, signal.SIGKILL):
            if proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=15)
        proc.wait()

    # -- running things as the server's OS user --

    def _chown(self, path: Path) -> None:
        if self._os_user is not None:
            os.chown(path, self._os_user.uid, self._os_user.gid)

    def _run(self, cmd: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
        user = self._os_user
        return subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
            env=_child_env(),
            cwd=self.root_dir,  # our cwd may not be readable by the postgres user
            user=None if user is None else user.uid,
            group=None if user is None else user.gid,
            extra_groups=None if user is None else [],
        )

    def _popen(self, cmd: list[str], *, stdout: IO[bytes]) -> subprocess.Popen[bytes]:
        user = self._os_user
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            env=_child_env(),
            cwd=self.root_dir,
            user=None if user is None else user.uid,
            group=None if user is None else user.gid,
            extra_groups=None if user is None else [],
            # Own session: Ctrl-C in a terminal must not shut the server down behind stop()'s back.
            start_new_session=True,
        )

    # -- diagnostics --

    def _log_tail(self) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-_LOG_TAIL_LINES:])

    def _failure(self, message: str) -> EmbeddedPostgresError:
        tail = self._log_tail() or "(server log is empty)"
        return EmbeddedPostgresError(f"{message}; server log {self.log_file}:\n{tail}")
