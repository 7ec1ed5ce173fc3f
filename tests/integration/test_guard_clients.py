"""The server-side checks as real drivers see them: tags, errors, positions and notices of DDL
that the proxy wrapped (`run_checked`) or preceded with a check must be the DDL's own."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator

import asyncpg
import psycopg
import pytest

from proxy.embedded import EmbeddedPostgres
from tests.proxyfixtures import RunningProxy

_names = itertools.count()


@pytest.fixture
def direct(pg: EmbeddedPostgres) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg.url("app", user="alice", password="alice-secret"), autocommit=True) as conn:
        yield conn


@pytest.fixture
def electrified(direct: psycopg.Connection, proxy: RunningProxy) -> str:
    """A schema with an electrified table `e` and a plain table `p`; checks are on."""
    schema = f"gc_{next(_names)}"
    direct.execute(
        f"CREATE SCHEMA {schema}; CREATE TABLE {schema}.e (id uuid PRIMARY KEY, v text);"
        f" CREATE TABLE {schema}.p (id int PRIMARY KEY, v text)"
    )
    direct.execute("CALL electric.electrify(%s, 'e')", (schema,))
    proxy.catalog_sees(lambda snap: snap.is_electrified(schema, "e"))
    return schema


@pytest.mark.parametrize("binary", [False, True])
def test_allowed_ddl_keeps_its_own_tag_and_notices(
    proxy: RunningProxy, electrified: str, binary: bool
) -> None:
    notices: list[tuple[str | None, str | None, str | None]] = []
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        # A Diagnostic is only readable inside the handler.
        conn.add_notice_handler(lambda d: notices.append((d.severity, d.message_primary, d.context)))
        conn.execute(f"SET search_path = {electrified}")
        cur = conn.execute("ALTER TABLE p ADD COLUMN n int DEFAULT 0", binary=binary)
        assert cur.statusmessage == "ALTER TABLE"
        cur = conn.execute("DROP TABLE IF EXISTS nothing_here", binary=binary)
        assert cur.statusmessage == "DROP TABLE"
    # The DDL's own notice, without a trace of the wrapper (no CONTEXT); the tag notices of
    # the injected calls never reach the client.
    assert notices == [("NOTICE", 'table "nothing_here" does not exist, skipping', None)]


@pytest.mark.parametrize("binary", [False, True])
def test_server_errors_of_checked_ddl_are_the_statements_own(
    proxy: RunningProxy, electrified: str, binary: bool
) -> None:
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute(f"SET search_path = {electrified}")
        with pytest.raises(psycopg.errors.UndefinedColumn) as info:
            conn.execute("ALTER TABLE p DROP COLUMN missing", binary=binary)
        assert info.value.diag.context is None
        assert info.value.diag.message_primary == 'column "missing" of relation "p" does not exist'
        with pytest.raises(psycopg.errors.UndefinedObject) as info:
            conn.execute("ALTER TABLE p ADD COLUMN q nosuchtype", binary=binary)
        assert info.value.diag.context is None
        # The position points into the client's own statement, not into the wrapper.
        assert info.value.diag.statement_position == str(len("ALTER TABLE p ADD COLUMN q ") + 1)


def test_asyncpg_prepared_and_parameterised_paths(proxy: RunningProxy, electrified: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(proxy.url())
        try:
            await conn.execute(f"SET search_path = {electrified}")
            statement = await conn.prepare("ALTER TABLE p ADD COLUMN IF NOT EXISTS z text")
            await statement.fetch()
            await statement.fetch()  # executed again: checked again, still fine
            with pytest.raises(asyncpg.PostgresError) as info:
                await conn.prepare("ALTER TABLE e DROP COLUMN v")
                await (await conn.prepare("ALTER TABLE e DROP COLUMN v")).fetch()
            assert info.value.sqlstate == "EX010"
            assert await conn.fetchval("SELECT $1::int + 1", 41) == 42  # the session goes on
        finally:
            await conn.close()

    asyncio.run(run())


def test_pipeline_mode_batch_with_a_refused_statement(
    proxy: RunningProxy, direct: psycopg.Connection, electrified: str
) -> None:
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute(f"SET search_path = {electrified}")
        with pytest.raises(psycopg.Error) as info, conn.pipeline():
            conn.execute("ALTER TABLE p ADD COLUMN w1 text", binary=True)
            conn.execute("ALTER TABLE e RENAME COLUMN v TO w", binary=True)
            conn.execute("ALTER TABLE p ADD COLUMN w2 text", binary=True)
        assert info.value.sqlstate == "EX008"
        assert conn.execute("SELECT 1").fetchone() == (1,)
    names = [
        r[0]
        for r in direct.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 ORDER BY attnum",
            (f"{electrified}.e",),
        )
    ]
    assert names == ["id", "v"]
