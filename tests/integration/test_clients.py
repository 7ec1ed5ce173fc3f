"""Real clients through the proxy: everything they do must behave as it does directly."""

from __future__ import annotations

import asyncio
import io
import threading
import time

import asyncpg
import psycopg
import pytest

from proxy.embedded import EmbeddedPostgres
from tests.proxyfixtures import RunningProxy


def connect(proxy: RunningProxy, **kw: object) -> psycopg.Connection:
    return psycopg.connect(proxy.dsn(), autocommit=True, **kw)  # type: ignore[arg-type]


def test_simple_and_extended_protocol(proxy: RunningProxy) -> None:
    with connect(proxy) as conn:
        # psycopg uses the extended protocol for parameters and the simple one without.
        assert conn.execute("SELECT 1 AS a, 'x' AS b").fetchone() == (1, "x")
        assert conn.execute("SELECT %s::int + 1, %s::text", (41, "y")).fetchone() == (42, "y")
        cur = conn.execute("SELECT 1; SELECT 2")  # multi-statement simple query
        assert cur.fetchone() == (1,)
        assert cur.nextset() and cur.fetchone() == (2,)
        with conn.cursor(binary=True) as bcur:
            assert bcur.execute("SELECT %s::int8[]", ([1, 2, 3],)).fetchone() == ([1, 2, 3],)


def test_named_and_unnamed_prepared_statements(proxy: RunningProxy) -> None:
    with connect(proxy, prepare_threshold=0) as conn:  # psycopg prepares named statements at once
        for i in range(5):
            assert conn.execute("SELECT %s::int * 2", (i,)).fetchone() == (i * 2,)
        names = conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()
        assert names is not None and names[0] >= 1
        conn.execute("PREPARE q(int) AS SELECT $1 + 100")  # SQL-level named statement
        assert conn.execute("EXECUTE q(1)").fetchone() == (101,)


def test_pipeline_mode(proxy: RunningProxy) -> None:
    with connect(proxy) as conn, conn.pipeline():
        curs = [conn.execute("SELECT %s::int", (i,)) for i in range(50)]
        conn.execute("CREATE TEMP TABLE pipe (x int)")
        conn.execute("INSERT INTO pipe SELECT generate_series(1, 10)")
        last = conn.execute("SELECT sum(x) FROM pipe")
    assert [c.fetchone() for c in curs] == [(i,) for i in range(50)]
    assert last.fetchone() == (55,)


def test_transaction_status_and_rollback(proxy: RunningProxy) -> None:
    with connect(proxy) as conn:
        conn.execute("CREATE TEMP TABLE tx (x int)")
        with pytest.raises(psycopg.errors.DivisionByZero), conn.transaction():
            conn.execute("INSERT INTO tx VALUES (1)")
            conn.execute("SELECT 1/0")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert conn.execute("SELECT count(*) FROM tx").fetchone() == (0,)


def test_asyncpg_simple_extended_and_prepared(proxy: RunningProxy) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(proxy.url(sslmode="disable"))
        try:
            assert await conn.fetchval("SELECT $1::int + 1", 1) == 2
            await conn.execute(
                "CREATE TEMP TABLE a (id int PRIMARY KEY, v text); INSERT INTO a VALUES (1, 'x')"
            )
            stmt = await conn.prepare("SELECT v FROM a WHERE id = $1")
            assert await stmt.fetchval(1) == "x"
            async with conn.transaction():
                await conn.executemany("INSERT INTO a VALUES ($1, $2)", [(i, str(i)) for i in range(2, 100)])
            assert await conn.fetchval("SELECT count(*) FROM a") == 99
            rows = await conn.fetch("SELECT generate_series(1, 10000) AS n")
            assert sum(r["n"] for r in rows) == 50005000
        finally:
            await conn.close()

    asyncio.run(run())


def test_copy_text_100k_rows_byte_identical(proxy: RunningProxy, pg_url: str) -> None:
    payload = "".join(f"{i}\trow-{i}\t{'é' * (i % 7)}\n" for i in range(100_000)).encode()
    with connect(proxy) as conn:
        conn.execute("DROP TABLE IF EXISTS copy_t; CREATE TABLE copy_t (id int, name text, extra text)")
        with conn.cursor() as cur, cur.copy("COPY copy_t FROM STDIN") as copy:
            for start in range(0, len(payload), 65536):
                copy.write(payload[start : start + 65536])
        out = io.BytesIO()
        with conn.cursor() as cur, cur.copy("COPY (SELECT * FROM copy_t ORDER BY id) TO STDOUT") as copy:
            for chunk in copy:
                out.write(chunk)
    assert out.getvalue() == payload
    with psycopg.connect(pg_url) as direct:
        assert direct.execute("SELECT count(*) FROM copy_t").fetchone() == (100_000,)


def test_binary_copy_round_trip(proxy: RunningProxy) -> None:
    with connect(proxy) as conn:
        conn.execute("CREATE TEMP TABLE b (id int8, data bytea)")
        rows = [(i, bytes([i % 256]) * (i % 50)) for i in range(5000)]
        with conn.cursor() as cur, cur.copy("COPY b FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "bytea"])
            for row in rows:
                copy.write_row(row)
        with (
            conn.cursor() as cur,
            cur.copy("COPY (SELECT * FROM b ORDER BY id) TO STDOUT (FORMAT BINARY)") as copy,
        ):
            copy.set_types(["int8", "bytea"])
            back = [(r[0], bytes(r[1])) for r in copy.rows()]
    assert back == rows


def test_copy_failure_is_reported_and_session_survives(proxy: RunningProxy) -> None:
    with connect(proxy) as conn:
        conn.execute("CREATE TEMP TABLE cf (x int)")
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            with conn.cursor() as cur, cur.copy("COPY cf FROM STDIN") as copy:
                copy.write(b"1\nnot-a-number\n")
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_listen_notify_across_two_connections(proxy: RunningProxy) -> None:
    with connect(proxy) as listener, connect(proxy) as sender:
        listener.execute("LISTEN chan")
        sender.execute("NOTIFY chan, 'hello'")
        sender.execute("SELECT pg_notify('chan', 'world')")
        gen = listener.notifies(timeout=5, stop_after=2)
        got = [(n.channel, n.payload) for n in gen]
    assert got == [("chan", "hello"), ("chan", "world")]


def test_notice_and_warning_delivery(proxy: RunningProxy) -> None:
    with connect(proxy) as conn:
        seen: list[tuple[str, str]] = []
        conn.add_notice_handler(lambda d: seen.append((d.severity, d.message_primary)))
        # (no DO block: the guard refuses those once a table of the database is electrified)
        conn.execute("DROP TABLE IF EXISTS no_such_table_here")
        conn.execute("SELECT pg_advisory_unlock(4242)")
    assert ("NOTICE", 'table "no_such_table_here" does not exist, skipping') in seen
    assert ("WARNING", "you don't own a lock of type ExclusiveLock") in seen


def cancel_when_sleeping(pg: EmbeddedPostgres, conn: psycopg.Connection) -> threading.Thread:
    """Cancel `conn` once its backend is really inside pg_sleep (a cancel before is a no-op)."""
    pid = conn.info.backend_pid

    def run() -> None:
        with pg.connect() as admin:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                row = admin.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND query LIKE %s", (pid, "%pg_sleep%")
                ).fetchone()
                if row:
                    break
                time.sleep(0.01)
        # cancel_safe(): the blocking libpq cancel() would hold the GIL while the in-process
        # proxy, which needs it to answer, waits: a deadlock of the test harness only.
        conn.cancel_safe()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_cancel_pg_sleep_returns_quickly(proxy: RunningProxy, pg: EmbeddedPostgres) -> None:
    with connect(proxy) as other, connect(proxy) as conn:
        other.execute("SELECT 1")  # a second open session: the cancel must reach the right one
        start = time.monotonic()
        cancel_when_sleeping(pg, conn)
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(30)")
        assert time.monotonic() - start < 2.0
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert other.execute("SELECT 2").fetchone() == (2,)


def test_asyncpg_cancel_by_timeout(proxy: RunningProxy) -> None:
    async def run() -> float:
        conn = await asyncpg.connect(proxy.url(sslmode="disable"))
        try:
            start = time.monotonic()
            with pytest.raises(asyncio.TimeoutError):
                await conn.execute("SELECT pg_sleep(30)", timeout=0.3)
            assert await conn.fetchval("SELECT 7") == 7
            return time.monotonic() - start
        finally:
            await conn.close()

    assert asyncio.run(run()) < 2.0


def test_50mb_bytea_round_trip(proxy: RunningProxy) -> None:
    blob = bytes(range(256)) * (50 * 1024 * 1024 // 256)
    with connect(proxy) as conn:
        got = conn.execute("SELECT %b::bytea", (blob,), binary=True).fetchone()
        assert got is not None and got[0] == blob
        length = conn.execute("SELECT length(%b::bytea)", (blob,)).fetchone()
        assert length == (len(blob),)
