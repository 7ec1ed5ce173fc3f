"""`electric-proxy history | show | electrified | schema` against a real Postgres (DESIGN.md §5)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from proxy.catalog.install import install_sync
from proxy.cli import main
from proxy.embedded import EmbeddedPostgres
from tests.pgfixtures import ALICE_PASSWORD
from tests.proxyfixtures import RunningProxy, proxy_config

DB = "hist_cli_t"
BARE_DB = "hist_cli_bare"
HISTORY_KEYS = {
    "id",
    "version",
    "framework",
    "version_source",
    "committed_at",
    "user",
    "application_name",
    "statements",
}


pytestmark = pytest.mark.usefixtures("no_config_env")


@pytest.fixture(scope="module")
def url(pg: EmbeddedPostgres) -> Iterator[str]:
    """alice's URL for a database with three migrations recorded through a running proxy, from
    a real client's traffic: cli-v1 (create and electrify items, an explicit version), alembic's
    a2 (add a column and an index, the version written after them), and a generated one."""
    pg.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    pg.execute(f"CREATE DATABASE {DB} OWNER alice")
    address = pg.url(DB, user="alice", password=ALICE_PASSWORD)
    with psycopg.connect(address, autocommit=True) as direct:
        install_sync(direct)  # as the proxy does when it starts
        direct.execute("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)")
    proxy = RunningProxy(proxy_config(address + "?sslmode=disable"))
    try:
        with psycopg.connect(proxy.dsn(dbname=DB), autocommit=True) as conn:
            with conn.transaction():
                conn.execute("CREATE TABLE items (id int8 PRIMARY KEY, name text NOT NULL)")
                conn.execute("ALTER TABLE items ENABLE ELECTRIC")
                conn.execute("CALL electric.migration_version('cli-v1')")
            with conn.transaction():
                conn.execute("ALTER TABLE items ADD COLUMN price int8")
                conn.execute("CREATE INDEX items_price ON items (price)")
                conn.execute("INSERT INTO alembic_version (version_num) VALUES ('a2') RETURNING version_num")
            with conn.transaction():
                conn.execute("CREATE TABLE notes (id int8 PRIMARY KEY, body text DEFAULT 'none')")
    finally:
        proxy.stop()
    yield address
    pg.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = run(capsys, *argv, "--json")
    assert (code, err) == (0, "")
    return json.loads(out)


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("electric-proxy: ")
    return lines[0]


# -- history -------------------------------------------------------------------------------


def test_history_json(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    migrations = run_json(capsys, "history", "--upstream", url)
    assert isinstance(migrations, list) and len(migrations) == 3
    for migration in migrations:
        assert set(migration) >= HISTORY_KEYS, migration
        for statement in migration["statements"]:
            assert set(statement) == {"sql", "tag"}
    first, second, third = migrations
    assert (first["version"], first["version_source"], first["framework"]) == ("cli-v1", "explicit", None)
    assert [s["tag"] for s in first["statements"]] == ["CREATE TABLE", "ELECTRIC ENABLE"]
    assert first["statements"][0]["sql"] == "CREATE TABLE items (id int8 PRIMARY KEY, name text NOT NULL)"
    assert (second["version"], second["version_source"], second["framework"]) == (
        "a2",
        "framework",
        "alembic",
    )
    assert third["version_source"] == "generated" and third["framework"] is None
    assert first["user"] == "alice"
    assert first["id"] < second["id"] < third["id"]
    assert first["committed_at"] <= second["committed_at"] <= third["committed_at"]


def test_history_table(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "history", "--upstream", url)
    assert (code, err) == (0, "")
    header, *rows = out.splitlines()
    assert header.split() == ["ID", "VERSION", "FRAMEWORK", "COMMITTED", "AT", "USER", "STATEMENTS"]
    assert len(rows) == 3
    assert rows[0].split()[1:3] == ["cli-v1", "-"]
    assert rows[1].split()[1:3] == ["a2", "alembic"]
    assert rows[0].split()[-2:] == ["alice", "2"]


def test_database_url_from_the_environment(
    url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    assert [m["version"] for m in run_json(capsys, "history")][:2] == ["cli-v1", "a2"]


# -- show ------------------------------------------------------------------------------------


def test_show_by_version_and_by_id(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    by_version = run_json(capsys, "show", "cli-v1", "--upstream", url)
    assert set(by_version) >= HISTORY_KEYS
    assert by_version["version"] == "cli-v1"
    assert [s["objects"] for s in by_version["statements"]] == [
        [{"schema": "public", "name": "items", "type": "table"}]
    ] * 2
    (items,) = by_version["objects"]
    assert (items["kind"], items["schema"], items["name"]) == ("table", "public", "items")
    assert [c["name"] for c in items["definition"]["columns"]] == ["id", "name"]
    assert items["definition"]["electrified"] is True

    by_id = run_json(capsys, "show", str(by_version["id"]), "--upstream", url)
    assert by_id == by_version

    code, out, err = run(capsys, "show", "a2", "--upstream", url)
    assert code == 0 and err == ""
    assert "a2 (framework, alembic)" in out
    assert "ALTER TABLE: ALTER TABLE items ADD COLUMN price int8" in out
    # Every object the migration touched, as readable SQL: columns with types, defaults and
    # nullability, constraints, indexes, and the electrified mark.
    assert "  table public.items\n    CREATE TABLE public.items (\n" in out
    assert "        name text NOT NULL,\n" in out
    assert "        price bigint,\n" in out
    assert "        CONSTRAINT items_pkey PRIMARY KEY (id)\n" in out
    assert "    CREATE INDEX items_price ON public.items USING btree (price);\n" in out
    assert "    ALTER TABLE public.items ENABLE ELECTRIC;\n" in out
    assert (
        "  index public.items_price\n    CREATE INDEX items_price ON public.items USING btree (price);" in out
    )


def test_show_unknown_migration(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "show", "nope", "--upstream", url)
    assert (code, out) == (1, "")
    assert "nope" in one_error_line(err)


# -- electrified ----------------------------------------------------------------------------------


def test_electrified_json(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_json(capsys, "electrified", "--upstream", url) == [
        {"schema": "public", "table": "items", "since_migration": "cli-v1"}
    ]
    code, out, err = run(capsys, "electrified", "--upstream", url)
    assert (code, err) == (0, "")
    assert out.splitlines() == ["SCHEMA  TABLE  SINCE MIGRATION", "public  items  cli-v1"]


# -- schema --at ----------------------------------------------------------------------------------


def test_schema_at_a_version(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    def items_columns(version: str) -> list[str]:
        snapshot = run_json(capsys, "schema", "--at", version, "--upstream", url)
        assert snapshot["version"] == version
        (items,) = [o for o in snapshot["objects"] if o["name"] == "items"]
        return [c["name"] for c in items["definition"]["columns"]]

    assert items_columns("cli-v1") == ["id", "name"]
    assert items_columns("a2") == ["id", "name", "price"]

    code, out, err = run(capsys, "schema", "--at", "cli-v1", "--upstream", url)
    assert (code, err) == (0, "")
    assert (
        "-- table public.items, as of cli-v1\nCREATE TABLE public.items (\n    id bigint NOT NULL,\n" in out
    )
    assert "price" not in out and "notes" not in out  # added and created later

    code, out, err = run(capsys, "schema", "--at", "a2", "--upstream", url)
    assert (code, err) == (0, "")
    assert out.count("CREATE INDEX items_price ON public.items USING btree (price);") == 1  # with its table

    code, out, err = run(capsys, "schema", "--at", "v-unknown", "--upstream", url)
    assert (code, out) == (1, "")
    assert "v-unknown" in one_error_line(err)


def test_schema_needs_at(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "schema", "--upstream", "postgres://localhost/x")
    assert code == 2
    assert "--at" in err


def test_schema_diff_shows_what_a_migration_changed(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "schema", "--diff", "cli-v1", "a2", "--upstream", url)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith("-- from migration ") and "(cli-v1)" in lines[0] and "(a2)" in lines[0]
    assert lines[1:] == [
        "~ table public.items",
        "    column added: price bigint",
        "+ index public.items_price",
        "    CREATE INDEX items_price ON public.items USING btree (price);",
    ]
    changes = run_json(capsys, "schema", "--diff", "cli-v1", "a2", "--upstream", url)["changes"]
    assert [(c["name"], c["change"]) for c in changes] == [("items", "modified"), ("items_price", "added")]


def test_history_into_a_closed_pipe_ends_quietly(url: str) -> None:
    """`history | head`: the reader goes away before the writer is done."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy", "history", "--upstream", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the child has printed anything: it starts in tens of ms
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 141
    assert err == b""


# -- failures ------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["history"], ["show", "1"], ["electrified"], ["schema", "--at", "1"]])
def test_no_upstream_is_a_config_error(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, *command)
    assert (code, out) == (2, "")
    assert "--upstream" in one_error_line(err)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_upstream(capsys: pytest.CaptureFixture[str]) -> None:
    secret = "s3cr3t-Pa55"
    url = f"postgresql://alice:{secret}@127.0.0.1:{free_port()}/x"
    code, out, err = run(capsys, "history", "--upstream", url)
    assert (code, out) == (1, "")
    assert "cannot connect" in one_error_line(err)
    assert secret not in err


def test_wrong_password(pg: EmbeddedPostgres, url: str, capsys: pytest.CaptureFixture[str]) -> None:
    secret = "not-" + ALICE_PASSWORD
    code, out, err = run(capsys, "history", "--upstream", pg.url(DB, user="alice", password=secret))
    assert (code, out) == (1, "")
    assert "password authentication failed" in one_error_line(err)
    assert secret not in err


def test_database_without_the_history(pg: EmbeddedPostgres, capsys: pytest.CaptureFixture[str]) -> None:
    pg.execute(f"DROP DATABASE IF EXISTS {BARE_DB} WITH (FORCE)")
    pg.execute(f"CREATE DATABASE {BARE_DB} OWNER alice")
    try:
        code, out, err = run(
            capsys, "electrified", "--upstream", pg.url(BARE_DB, user="alice", password=ALICE_PASSWORD)
        )
    finally:
        pg.execute(f"DROP DATABASE IF EXISTS {BARE_DB} WITH (FORCE)")
    assert (code, out) == (1, "")
    assert "no migration history" in one_error_line(err)
