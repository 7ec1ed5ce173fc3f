"""DDL sent one Query at a time inside a transaction block (`psql -1 -f`) is captured by one
call in front of the client's next message: recorded exactly as it committed, never what a
savepoint or a failure undid, whatever protocol that next message uses."""

from __future__ import annotations

import itertools
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from proxy.embedded import EmbeddedPostgres
from proxy.protocol import messages
from proxy.protocol.codes import Backend
from tests.proxyfixtures import RunningProxy
from tests.wireclient import WireClient, parse_bind_execute, sync

_names = itertools.count()


@pytest.fixture
def direct(pg: EmbeddedPostgres) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg.url("app", user="alice", password="alice-secret"), autocommit=True) as conn:
        yield conn


def recorded(direct: psycopg.Connection, marker: str) -> list[list[str]]:
    """The statements mentioning `marker`, grouped by migration, in order."""
    rows = direct.execute(
        "SELECT s.migration_id, s.sql FROM electric.migration_statements s"
        " WHERE s.sql LIKE %s ORDER BY s.migration_id, s.seq",
        (f"%{marker}%",),
    ).fetchall()
    groups: dict[int, list[str]] = {}
    for migration, sql in rows:
        groups.setdefault(migration, []).append(sql)
    return list(groups.values())


def deferred(proxy: RunningProxy) -> list[str]:
    """What the proxy's sessions hold for their next message (one session is open here)."""
    links = [s.guard_link for s in proxy.server.ctx.sessions if getattr(s, "guard_link", None)]
    return [stmt.text for link in links for stmt in link.migration.deferred]


def test_psql_single_transaction_file(
    proxy: RunningProxy, direct: psycopg.Connection, tmp_path: Path
) -> None:
    t = f"dq_{next(_names)}"
    script = tmp_path / "m.sql"
    script.write_text(
        f"CREATE TABLE {t} (id int PRIMARY KEY);\n"
        f"ALTER TABLE {t} ADD COLUMN a text;\n"
        f"SAVEPOINT s;\n"
        f"ALTER TABLE {t} ADD COLUMN undone text;\n"
        f"ROLLBACK TO SAVEPOINT s;\n"
        f"CREATE INDEX {t}_a ON {t} (a);\n"
        f"INSERT INTO {t} VALUES (1, 'x');\n"
        f"ALTER TABLE {t} ADD COLUMN b text -- the last line, no newline"
    )
    psql = next(Path("/usr/lib/postgresql").glob("*/bin/psql"))
    subprocess.run(
        [str(psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-f", str(script), proxy.url()], check=True
    )
    assert recorded(direct, t) == [
        [
            f"CREATE TABLE {t} (id int PRIMARY KEY)",
            f"ALTER TABLE {t} ADD COLUMN a text",
            f"CREATE INDEX {t}_a ON {t} (a)",
            f"ALTER TABLE {t} ADD COLUMN b text -- the last line, no newline",
        ]
    ]


def test_failure_after_deferred_ddl_records_nothing(proxy: RunningProxy, direct: psycopg.Connection) -> None:
    t = f"dq_{next(_names)}"
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("BEGIN")
        conn.execute(f"CREATE TABLE {t} (id int)")
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("SELECT 1/0")
        conn.execute("ROLLBACK")
        conn.execute("SELECT 1")  # a later transaction must not carry the stale run
    assert recorded(direct, t) == []
    assert direct.execute("SELECT to_regclass(%s)", (t,)).fetchone() == (None,)


def test_extended_message_after_deferred_ddl(proxy: RunningProxy, direct: psycopg.Connection) -> None:
    t = f"dq_{next(_names)}"
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("BEGIN")
        conn.execute(f"CREATE TABLE {t} (id int)")
        conn.execute(f"ALTER TABLE {t} ADD COLUMN a text")
        assert deferred(proxy) == [f"CREATE TABLE {t} (id int)", f"ALTER TABLE {t} ADD COLUMN a text"]
        # The next message is a Parse: the capture goes in front of it, its replies unseen.
        assert conn.execute("SELECT %s::int", (7,)).fetchone() == (7,)
        conn.execute("SAVEPOINT s", binary=True)
        conn.execute(f"ALTER TABLE {t} ADD COLUMN undone text")
        conn.execute("ROLLBACK TO SAVEPOINT s", binary=True)
        conn.execute("COMMIT")
    assert recorded(direct, t) == [[f"CREATE TABLE {t} (id int)", f"ALTER TABLE {t} ADD COLUMN a text"]]


def test_autocommit_ddl_is_never_deferred(proxy: RunningProxy, direct: psycopg.Connection) -> None:
    t = f"dq_{next(_names)}"
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {t} (id int)")
        assert deferred(proxy) == []
        # Recorded before the client's next message: the record is there already.
        assert recorded(direct, t) == [[f"CREATE TABLE {t} (id int)"]]


def test_extended_protocol_batches_join_one_capture(proxy: RunningProxy, direct: psycopg.Connection) -> None:
    t = f"dq_{next(_names)}"
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("BEGIN", binary=True)
        conn.execute(f"CREATE TABLE {t} (id int)", binary=True)
        conn.execute(f"ALTER TABLE {t} ADD COLUMN a text", binary=True)
        assert deferred(proxy) == [f"CREATE TABLE {t} (id int)", f"ALTER TABLE {t} ADD COLUMN a text"]
        conn.execute("SAVEPOINT s", binary=True)  # undoes nothing, but what follows may be undone
        assert deferred(proxy) == []
        conn.execute(f"ALTER TABLE {t} ADD COLUMN undone text", binary=True)
        conn.execute("ROLLBACK TO SAVEPOINT s", binary=True)
        conn.execute(f"CREATE INDEX ON {t} (a)", binary=True)
        conn.execute("COMMIT", binary=True)
    assert recorded(direct, t) == [
        [f"CREATE TABLE {t} (id int)", f"ALTER TABLE {t} ADD COLUMN a text", f"CREATE INDEX ON {t} (a)"]
    ]


def test_extended_failure_after_deferred_ddl_records_nothing(
    proxy: RunningProxy, direct: psycopg.Connection
) -> None:
    t = f"dq_{next(_names)}"
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("BEGIN", binary=True)
        conn.execute(f"CREATE TABLE {t} (id int)", binary=True)
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("SELECT 1/0", binary=True)
        conn.execute("ROLLBACK", binary=True)
    assert recorded(direct, t) == []


def test_ddl_behind_a_commit_in_the_same_send_is_captured_at_once(
    proxy: RunningProxy, direct: psycopg.Connection
) -> None:
    # The status of the last ReadyForQuery says "in a transaction", but the COMMIT sent just
    # before the DDL ends it: the DDL runs on its own and must carry its capture with it.
    t = f"dq_{next(_names)}"
    wire = WireClient(proxy.host, proxy.port, user="alice", password="alice-secret", database="app")
    try:
        wire.send(messages.query("BEGIN"))
        wire.read_until(Backend.READY_FOR_QUERY)
        wire.send(messages.query("COMMIT") + parse_bind_execute(f"CREATE TABLE {t} (id int)") + sync())
        wire.read_until(Backend.READY_FOR_QUERY)
        wire.read_until(Backend.READY_FOR_QUERY)
        assert deferred(proxy) == []
    finally:
        wire.close()
    assert recorded(direct, t) == [[f"CREATE TABLE {t} (id int)"]]
