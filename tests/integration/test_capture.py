"""Capture through the proxy: records commit or roll back with the migration, over both protocols."""

from __future__ import annotations

import asyncio
import datetime
import itertools

import asyncpg
import psycopg
import pytest

from proxy.embedded import EmbeddedPostgres
from tests.pgfixtures import ALICE_PASSWORD
from tests.proxyfixtures import RunningProxy

_names = itertools.count()


@pytest.fixture
def direct(pg: EmbeddedPostgres) -> psycopg.Connection:
    conn = psycopg.connect(pg.url("app", user="alice", password=ALICE_PASSWORD), autocommit=True)
    yield conn  # type: ignore[misc]
    conn.close()


def statements_of(direct: psycopg.Connection, like: str) -> list[tuple[int, str, str]]:
    return [
        (r[0], r[1], r[2])
        for r in direct.execute(
            "SELECT migration_id, tag, sql FROM electric.migration_statements WHERE sql LIKE %s ORDER BY migration_id, seq",
            (f"%{like}%",),
        ).fetchall()
    ]


@pytest.mark.parametrize("binary", [False, True], ids=["simple", "extended"])
def test_autocommit_ddl_is_recorded_atomically(
    proxy: RunningProxy, direct: psycopg.Connection, binary: bool
) -> None:
    name = f"cap_{next(_names)}"
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        cur = (
            conn.execute(f"CREATE TABLE {name} (id int)", binary=binary)
            if binary
            else conn.execute(f"CREATE TABLE {name} (id int)")
        )
        assert cur.statusmessage == "CREATE TABLE"  # the injected call is invisible
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    rows = statements_of(direct, name)
    assert [(tag, sql) for _, tag, sql in rows] == [("CREATE TABLE", f"CREATE TABLE {name} (id int)")]


def test_rolled_back_and_failed_migrations_leave_no_record(
    proxy: RunningProxy, direct: psycopg.Connection
) -> None:
    name = f"cap_{next(_names)}"
    with psycopg.connect(proxy.dsn()) as conn:
        conn.execute(f"CREATE TABLE {name}_rb (id int)")
        conn.rollback()
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute(f"CREATE TABLE {name}_fail (id int)")
            conn.execute("SELECT 1/0")
        conn.rollback()
        conn.execute(f"CREATE TABLE {name}_sp (id int)")
        conn.execute("SAVEPOINT s")
        conn.execute(f"CREATE TABLE {name}_sp2 (id int)")
        conn.execute("ROLLBACK TO SAVEPOINT s")
        conn.commit()
    assert statements_of(direct, f"{name}_rb") == []
    assert statements_of(direct, f"{name}_fail") == []
    assert [tag for _, tag, _ in statements_of(direct, f"{name}_sp ")] == ["CREATE TABLE"]
    assert statements_of(direct, f"{name}_sp2") == []  # rolled back with its savepoint


def test_multi_statement_string_and_error_positions(proxy: RunningProxy, direct: psycopg.Connection) -> None:
    name = f"cap_{next(_names)}"
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        cur = conn.execute(f"CREATE TABLE {name} (id int); CREATE INDEX {name}_i ON {name} (id); SELECT 42")
        tags = [cur.statusmessage]
        while cur.nextset():
            tags.append(cur.statusmessage)
        assert tags == ["CREATE TABLE", "CREATE INDEX", "SELECT 1"]
        assert cur.fetchone() == (42,)
        sql = f"CREATE TABLE {name}_2 (id int); SELECT nope FROM {name}"
        with pytest.raises(psycopg.errors.UndefinedColumn) as info:
            conn.execute(sql)
        assert info.value.diag.statement_position == str(sql.index("nope") + 1)  # the client's own text
    rows = statements_of(direct, name)
    assert len({m for m, _, _ in rows}) == 1 and [t for _, t, _ in rows] == ["CREATE TABLE", "CREATE INDEX"]
    assert statements_of(direct, f"{name}_2") == []


def test_create_index_concurrently_is_recorded_after_it_succeeds(
    proxy: RunningProxy, direct: psycopg.Connection
) -> None:
    name = f"cap_{next(_names)}"
    direct.execute(f"CREATE TABLE {name} (id int)")
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE INDEX CONCURRENTLY {name}_c ON {name} (id)")
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert [t for _, t, _ in statements_of(direct, f"{name}_c")] == ["CREATE INDEX"]


def test_injection_cannot_break_out_of_its_literal(proxy: RunningProxy, direct: psycopg.Connection) -> None:
    name = f"cap_{next(_names)}"
    nasty = f"COMMENT ON TABLE {name} IS $$'); DROP TABLE {name}; --$$"
    direct.execute(f"CREATE TABLE {name} (id int)")
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute(nasty)
    assert direct.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone() == (True,)
    assert [sql for _, _, sql in statements_of(direct, "DROP TABLE") if name in sql] == [nasty]


def test_ecto_style_migration_over_extended_protocol(proxy: RunningProxy, direct: psycopg.Connection) -> None:
    """The seed flow: Postgrex sends everything with the extended protocol, the version as a binary int8."""
    table = f"items_{next(_names)}"
    direct.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version bigint PRIMARY KEY, inserted_at timestamp(0))"
    )
    version = 20230904162657 + next(_names)

    async def migrate() -> None:
        conn = await asyncpg.connect(proxy.url(sslmode="disable"))
        try:
            async with conn.transaction():
                await conn.fetch(f"CREATE TABLE {table} (id uuid PRIMARY KEY, name text)")
                await conn.fetch(f"ALTER TABLE {table} ENABLE ELECTRIC")
                await conn.fetch(
                    "INSERT INTO schema_migrations (version, inserted_at) VALUES ($1, $2)",
                    version,
                    datetime.datetime(2023, 9, 4, 16, 26, 57),
                )
        finally:
            await conn.close()

    asyncio.run(migrate())
    row = direct.execute(
        "SELECT m.version, m.framework, m.version_source, array_agg(s.tag ORDER BY s.seq) "
        "FROM electric.migrations m JOIN electric.migration_statements s ON s.migration_id = m.id "
        "WHERE s.sql LIKE %s GROUP BY m.id",
        (f"%{table}%",),
    ).fetchone()
    assert row == (str(version), "ecto", "framework", ["CREATE TABLE", "ELECTRIC ENABLE"])
    linked = direct.execute(
        "SELECT m.version FROM electric.electrified e JOIN electric.migrations m ON m.id = e.migration_id "
        "WHERE e.table_name = %s",
        (table,),
    ).fetchone()
    assert linked == (str(version),)


@pytest.mark.parametrize("kill", ["proxy", "backend"])
def test_killed_mid_migration_leaves_nothing_half_recorded(
    upstream_url: str,
    pg: EmbeddedPostgres,
    direct: psycopg.Connection,
    tmp_path,
    kill: str,  # type: ignore[no-untyped-def]
) -> None:
    import signal

    from tests.integration.test_process import ServeProcess, clean_env, wait_for_port

    proc = ServeProcess("--upstream", upstream_url, cwd=tmp_path, env=clean_env())
    try:
        wait_for_port(proc.port, proc.proc)
        name = f"cap_{next(_names)}"
        conn = psycopg.connect(
            f"host=127.0.0.1 port={proc.port} user=alice password={ALICE_PASSWORD} dbname=app sslmode=disable"
        )
        conn.execute(f"CREATE TABLE {name} (id uuid PRIMARY KEY)")
        conn.execute(f"ALTER TABLE {name} ENABLE ELECTRIC")
        pid = conn.info.backend_pid
        if kill == "proxy":
            proc.proc.send_signal(signal.SIGKILL)
            proc.proc.wait(10)
        else:
            direct.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(psycopg.OperationalError):
            conn.commit()
        conn.close()
        # the backend goes away, its transaction with it: no table, no record, no mark
        with pg.connect("app") as admin:
            for _ in range(200):
                if admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)
                ).fetchone() == (0,):
                    break
                __import__("time").sleep(0.02)
        assert direct.execute("SELECT to_regclass(%s)", (name,)).fetchone() == (None,)
        assert statements_of(direct, name) == []
        assert direct.execute(
            "SELECT count(*) FROM electric.electrified WHERE table_name = %s", (name,)
        ).fetchone() == (0,)
    finally:
        proc.stop()


def objects_of(direct: psycopg.Connection, migration_id: int) -> dict[str, object]:
    rows = direct.execute(
        "SELECT object_name, definition FROM electric.migration_objects WHERE migration_id = %s",
        (migration_id,),
    ).fetchall()
    return {name: definition for name, definition in rows}


@pytest.mark.parametrize("binary", [False, True], ids=["simple", "extended"])
def test_definitions_are_captured_as_of_the_migrations_end(
    proxy: RunningProxy, direct: psycopg.Connection, binary: bool
) -> None:
    """Every object a migration touched, as it was when the migration ended (read once, at
    commit): the table with its later column and index, the index, a dropped table as gone."""
    name = f"cap_{next(_names)}"
    direct.execute(f"CREATE TABLE {name}_old (id int)")
    with psycopg.connect(proxy.dsn()) as conn:
        for sql in (
            f"CREATE TABLE {name} (id int PRIMARY KEY)",
            f"ALTER TABLE {name} ADD COLUMN label text NOT NULL DEFAULT 'x'",
            f"CREATE INDEX {name}_label ON {name} (label)",
            f"DROP TABLE {name}_old",
        ):
            conn.execute(sql, binary=binary) if binary else conn.execute(sql)
        conn.commit()
    ((migration_id, *_),) = statements_of(direct, f"CREATE TABLE {name} ")
    found = objects_of(direct, migration_id)
    assert set(found) == {name, f"{name}_label", f"{name}_old"}
    table = found[name]
    assert isinstance(table, dict)
    assert [(c["name"], c["type"], c["not_null"], c["default"]) for c in table["columns"]] == [
        ("id", "integer", True, None),
        ("label", "text", True, "'x'::text"),
    ]
    assert [i["name"] for i in table["indexes"]] == [f"{name}_label", f"{name}_pkey"]
    assert found[f"{name}_old"] is None  # gone at the end of the migration
