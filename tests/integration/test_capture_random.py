"""Capture atomicity, randomized: the history holds exactly the DDL that committed, in order.

A Hypothesis state machine drives random transactions through the proxy: DDL, DML, savepoints,
ROLLBACK TO, errors, COMMIT, ROLLBACK, abrupt disconnects and autocommit DDL, over the simple and
the extended protocol. Between transactions it compares `electric.migrations` /
`migration_statements` (read directly) with the model: one migration per committed transaction
that ran DDL, holding its surviving statements in order, and nothing else.

`CAPTURE_RANDOM_EXAMPLES` raises the number of runs (the long version; each runs up to
`CAPTURE_RANDOM_STEPS` steps).
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass, field

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from proxy.embedded import EmbeddedPostgres
from tests.integration.faultkit import vanish
from tests.proxyfixtures import RunningProxy

EXAMPLES = int(os.environ.get("CAPTURE_RANDOM_EXAMPLES", "12"))
STEPS = int(os.environ.get("CAPTURE_RANDOM_STEPS", "25"))
PROTOCOLS = st.sampled_from(["simple", "extended"])


@dataclass
class _Savepoint:
    name: str
    statements: int
    tables: int


@dataclass
class _Transaction:
    conn: psycopg.Connection[tuple[object, ...]]
    protocol: str
    statements: list[str] = field(default_factory=list)  # DDL run so far and not rolled back
    tables: list[str] = field(default_factory=list)  # created in this transaction
    savepoints: list[_Savepoint] = field(default_factory=list)
    failed: bool = False


class CaptureMachine(RuleBasedStateMachine):
    proxy: RunningProxy
    pg: EmbeddedPostgres
    ended: dict[str, int] = {}  # transactions run, by how they ended (for the long run's report)

    def __init__(self) -> None:
        super().__init__()
        self.prefix = f"rnd_{secrets.token_hex(4)}_"
        self.counter = 0
        self.tx: _Transaction | None = None
        self.expected: list[list[str]] = []
        self.empty_before = self._empty_migrations()

    def _name(self, kind: str) -> str:
        self.counter += 1
        return f"{self.prefix}{kind}{self.counter}"

    def _run(self, sql: str) -> None:
        assert self.tx is not None
        # psycopg sends a text without parameters as a Query; binary results force Parse/Bind/Execute.
        self.tx.conn.execute(sql, binary=self.tx.protocol == "extended")  # type: ignore[call-overload]

    def _ddl(self, *statements: str) -> None:
        assert self.tx is not None
        self._run("; ".join(statements))
        self.tx.statements.extend(statements)

    # -- starting and ending transactions ------------------------------------------------------------

    @precondition(lambda self: self.tx is None)
    @rule(protocol=PROTOCOLS, autocommit=st.sampled_from([False, False, False, True]))
    def begin(self, protocol: str, autocommit: bool) -> None:
        if autocommit:
            self._autocommit_ddl(protocol)
            return
        self.tx = _Transaction(psycopg.connect(self.proxy.dsn(), autocommit=True), protocol)
        self._run("BEGIN")

    def _autocommit_ddl(self, protocol: str) -> None:
        """One DDL outside a transaction: the proxy wraps it with its record."""
        sql = f"CREATE TABLE {self._name('auto')} (id int)"
        with psycopg.connect(self.proxy.dsn(), autocommit=True) as conn:
            conn.execute(sql, binary=protocol == "extended")  # type: ignore[call-overload]
        self.expected.append([sql])
        self.ended["autocommit"] = self.ended.get("autocommit", 0) + 1

    @precondition(lambda self: self.tx is not None)
    @rule()
    def commit(self) -> None:
        assert self.tx is not None
        self._run("COMMIT")  # in a failed transaction, Postgres rolls back instead
        if self.tx.statements and not self.tx.failed:
            self.expected.append(self.tx.statements)
        self._close("commit" if not self.tx.failed else "commit of a failed transaction")

    @precondition(lambda self: self.tx is not None)
    @rule()
    def rollback(self) -> None:
        self._run("ROLLBACK")
        self._close("rollback")

    @precondition(lambda self: self.tx is not None)
    @rule()
    def disconnect(self) -> None:
        """Vanish without a word, as a crashed client does: the backend rolls back."""
        assert self.tx is not None
        vanish(socket.socket(fileno=self.tx.conn.pgconn.socket))
        self._close("disconnect")

    def _close(self, how: str) -> None:
        assert self.tx is not None
        self.tx.conn.close()
        self.tx = None
        self.ended[how] = self.ended.get(how, 0) + 1

    # -- inside a transaction ---------------------------------------------------------------------------

    @precondition(lambda self: self.tx is not None and not self.tx.failed)
    @rule()
    def create_table(self) -> None:
        assert self.tx is not None
        name = self._name("t")
        self._ddl(f"CREATE TABLE {name} (id int)")
        self.tx.tables.append(name)

    @precondition(lambda self: self.tx is not None and not self.tx.failed and self.tx.tables)
    @rule(data=st.data())
    def alter_table(self, data: st.DataObject) -> None:
        assert self.tx is not None
        table = data.draw(st.sampled_from(self.tx.tables))
        self._ddl(f"ALTER TABLE {table} ADD COLUMN {self._name('c')} int")

    @precondition(lambda self: self.tx is not None and not self.tx.failed and self.tx.protocol == "simple")
    @rule()
    def two_statements_in_one_query(self) -> None:
        assert self.tx is not None
        first, second = self._name("t"), self._name("t")
        self._ddl(f"CREATE TABLE {first} (id int)", f"CREATE INDEX ON {first} (id)")
        self._run(f"INSERT INTO {first} VALUES (1)")
        self._ddl(f"CREATE TABLE {second} (id int)")
        self.tx.tables += [first, second]

    @precondition(lambda self: self.tx is not None and not self.tx.failed)
    @rule()
    def dml(self) -> None:
        self._run("INSERT INTO capture_random_dml VALUES (1)")

    @precondition(lambda self: self.tx is not None and not self.tx.failed)
    @rule()
    def savepoint(self) -> None:
        assert self.tx is not None
        name = self._name("sp")
        self._run(f"SAVEPOINT {name}")
        self.tx.savepoints.append(_Savepoint(name, len(self.tx.statements), len(self.tx.tables)))

    @precondition(lambda self: self.tx is not None and self.tx.savepoints)
    @rule(data=st.data())
    def rollback_to_savepoint(self, data: st.DataObject) -> None:
        assert self.tx is not None
        index = data.draw(st.integers(0, len(self.tx.savepoints) - 1))
        point = self.tx.savepoints[index]
        self._run(f"ROLLBACK TO SAVEPOINT {point.name}")
        del self.tx.statements[point.statements :]
        del self.tx.tables[point.tables :]
        del self.tx.savepoints[index + 1 :]
        self.tx.failed = False

    @precondition(lambda self: self.tx is not None and not self.tx.failed and self.tx.savepoints)
    @rule()
    def release_savepoint(self) -> None:
        assert self.tx is not None
        point = self.tx.savepoints.pop()
        self._run(f"RELEASE SAVEPOINT {point.name}")

    @precondition(lambda self: self.tx is not None and not self.tx.failed)
    @rule(ddl=st.booleans())
    def statement_error(self, ddl: bool) -> None:
        assert self.tx is not None
        sql = f"ALTER TABLE {self._name('missing')} ADD COLUMN x int" if ddl else "SELECT 1/0"
        with pytest.raises(psycopg.Error):
            self._run(sql)
        self.tx.failed = True

    # -- the property -----------------------------------------------------------------------------------

    @invariant()
    def history_holds_exactly_the_committed_ddl(self) -> None:
        if self.tx is not None:
            return
        assert self._history() == self.expected
        assert self._empty_migrations() == self.empty_before, "a migration record without its statements"

    def _empty_migrations(self) -> int:
        with self.pg.connect("app") as admin:
            row = admin.execute(
                "SELECT count(*) FROM electric.migrations m WHERE NOT EXISTS"
                " (SELECT 1 FROM electric.migration_statements s WHERE s.migration_id = m.id)"
            ).fetchone()
        assert row is not None
        return int(row[0])

    def _history(self) -> list[list[str]]:
        with self.pg.connect("app") as admin:
            rows = admin.execute(
                "SELECT s.migration_id, s.sql FROM electric.migration_statements s"
                " WHERE s.migration_id IN (SELECT migration_id FROM electric.migration_statements"
                "                          WHERE position(%s in sql) > 0)"
                " ORDER BY s.migration_id, s.seq",
                (self.prefix,),
            ).fetchall()
        groups: dict[object, list[str]] = {}
        for migration, sql in rows:
            groups.setdefault(migration, []).append(str(sql).strip().rstrip(";"))
        return list(groups.values())

    def teardown(self) -> None:
        if self.tx is not None:
            self.tx.conn.close()


@pytest.mark.timeout(max(120, EXAMPLES * STEPS))
def test_history_holds_exactly_the_committed_ddl(proxy: RunningProxy, pg: EmbeddedPostgres) -> None:
    with pg.connect("app") as admin:
        admin.execute("CREATE TABLE IF NOT EXISTS capture_random_dml (id int)")
        admin.execute("GRANT ALL ON capture_random_dml TO alice")
    CaptureMachine.proxy = proxy
    CaptureMachine.pg = pg
    run_state_machine_as_test(
        CaptureMachine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        ),
    )
    print(f"transactions by ending: {CaptureMachine.ended}")
