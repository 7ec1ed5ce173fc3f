"""A database with a scripted history made through the proxy, and the console serving it over HTTP.

Migrations (oldest first, ids 1 to 6), all through the proxy with psycopg 3:
1. explicit version `c-v1`: CREATE TABLE items, CREATE INDEX items_name, a COMMENT holding a URL
   with a password (`SECRET_COMMENT`);
2. explicit version `c-v2`: `ALTER TABLE items ENABLE ELECTRIC`;
3. explicit version `c-alembic-table`: CREATE TABLE alembic_version;
4. Alembic's `c3a1b2`, written to alembic_version in the transaction that adds column price;
5. explicit version `c-hostile`: a table and a comment made of HTML and quote tricks (`HOSTILE_*`);
6. explicit version `2`, which is also the id of migration 2: CREATE TABLE notes.
Then direct changes on the database, not through the proxy: a column added to the electrified
table items (open drift) and a table created (drift accepted by "carol"), both found by a scan
of `electric-proxy drift`.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIServer

import psycopg
import pytest

from proxy.cli import main
from proxy.config import Config, load_config
from proxy.console.app import mount
from proxy.embedded import EmbeddedPostgres
from proxy.metrics import Stats, start_http_server
from tests.pgfixtures import ALICE_PASSWORD
from tests.proxyfixtures import RunningProxy, proxy_config

DB = "console_t"
SECRET = "hunter2-in-a-comment"
SECRET_COMMENT = f"copied from postgresql://etl:{SECRET}@old-db/shop"
HOSTILE_TABLE = "<script>alert('t')</script>"
HOSTILE_COMMENT = "-- \"'><script>alert(1)</script></textarea></pre><img src=x onerror=alert(2)>"
HOSTILE_DEFAULT = "</textarea><b onmouseover='alert(3)'>&amp;\"x"
_QUOTED_DEFAULT = HOSTILE_DEFAULT.replace("'", "''")
HOSTILE_SQL = (
    f"CREATE TABLE \"{HOSTILE_TABLE}\" (id int8 PRIMARY KEY, note text DEFAULT '{_QUOTED_DEFAULT}')"
    f" {HOSTILE_COMMENT}\n"
)


@dataclass
class Served:
    """The console over HTTP: `get(path)` -> (status, headers, body)."""

    base: str
    server: WSGIServer
    config: Config

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        request = urllib.request.Request(self.base + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                return response.status, dict(response.headers), response.read().decode("utf-8")
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read().decode("utf-8")


def console_config(url: str, env: dict[str, str] | None = None, **overrides: Any) -> Config:
    """The proxy's test configuration with the metrics listener on loopback (the console's default)."""
    base = {
        "listen.address": "127.0.0.1",
        "listen.port": 0,
        "upstream.url": url,
        "metrics.address": "127.0.0.1",
    }
    return load_config(None, env=env or {}, overrides={**base, **overrides})


def serve_console(config: Config) -> Served:
    """The metrics listener as `serve` starts it, on a free loopback port, console mounted."""
    server = start_http_server("127.0.0.1", 0, Stats())
    mount(server, config)
    return Served(f"http://127.0.0.1:{server.server_port}", server, config)


def stop(served: Served) -> None:
    served.server.shutdown()
    served.server.server_close()


@pytest.fixture(scope="module", name="console_db")
def console_db_fixture(pg: EmbeddedPostgres) -> Iterator[str]:
    pg.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    pg.execute(f"CREATE DATABASE {DB} OWNER alice")
    yield pg.url(DB, user="alice", password=ALICE_PASSWORD) + "?sslmode=disable"
    pg.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


def run_migrations(proxy: RunningProxy) -> None:
    with psycopg.connect(proxy.dsn(dbname=DB, application_name="console-test")) as conn:
        conn.execute("CREATE TABLE items (id int8 PRIMARY KEY, name text NOT NULL)")
        conn.execute("CREATE INDEX items_name ON items (name)")
        conn.execute(f"COMMENT ON TABLE items IS '{SECRET_COMMENT}'")
        conn.execute("CALL electric.migration_version('c-v1')")
        conn.commit()
        conn.execute("ALTER TABLE items ENABLE ELECTRIC")
        conn.execute("CALL electric.migration_version('c-v2')")
        conn.commit()
        conn.execute("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)")
        conn.execute("CALL electric.migration_version('c-alembic-table')")
        conn.commit()
        conn.execute("ALTER TABLE items ADD COLUMN price int8")  # Alembic writes its version last
        conn.execute("INSERT INTO alembic_version (version_num) VALUES ('c3a1b2')")
        conn.commit()
        conn.execute(HOSTILE_SQL)
        conn.execute("CALL electric.migration_version('c-hostile')")
        conn.commit()
        # A version that is another migration's id (golang-migrate's are small integers).
        conn.execute("CREATE TABLE notes (id int8 PRIMARY KEY)")
        conn.execute("CALL electric.migration_version('2')")
        conn.commit()


def direct_changes(url: str) -> None:
    """Two changes made on the database directly; a drift scan finds both, `scratch` is accepted."""
    # A scan first, as the watcher's periodic one would: the migrations are in the baseline.
    assert main(["drift", "--upstream", url]) == 0
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER TABLE public.items ADD COLUMN sneaky text")
        conn.execute("CREATE TABLE public.scratch (id int)")
    assert main(["drift", "--upstream", url]) == 2  # one scan: drift found
    assert main(["drift", "--upstream", url, "accept", "public.scratch", "--by", "carol"]) == 0


@pytest.fixture(scope="module", name="scripted")
def scripted_fixture(console_db: str) -> Iterator[tuple[RunningProxy, str]]:
    """The proxy in front of the console's database, after the scripted history."""
    running = RunningProxy(proxy_config(console_db))
    try:
        run_migrations(running)
        direct_changes(console_db)
        yield running, console_db
    finally:
        running.stop()


@pytest.fixture(scope="module", name="console")
def console_fixture(scripted: tuple[RunningProxy, str]) -> Iterator[Served]:
    _proxy, url = scripted
    served = serve_console(console_config(url))
    yield served
    stop(served)


@pytest.fixture(name="serve")
def serve_fixture() -> Iterator[Callable[..., Served]]:
    """Start more consoles, with other settings, on `url`."""
    started: list[Served] = []

    def start(url: str, env: dict[str, str] | None = None, **overrides: Any) -> Served:
        served = serve_console(console_config(url, env, **overrides))
        started.append(served)
        return served

    yield start
    for served in started:
        stop(served)
