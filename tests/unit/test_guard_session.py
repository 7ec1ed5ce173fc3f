"""The text guard without a database: plans, checks for the server, and Python-only refusals."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pglast.parser import parse_sql_json

from proxy.catalog.cache import CatalogSnapshot, Relation
from proxy.ddl import rewrite
from proxy.ddl.checks import SCHEMA_PLACEHOLDER, TABLE_PLACEHOLDER, checks_json
from proxy.ddl.guard import SessionGuard, SharedFlags


def snapshot(electrified: bool = True) -> CatalogSnapshot:
    relations = {("public", "items"): Relation(1, "r")}
    return CatalogSnapshot.build(
        schemas=("public",), relations=relations, electrified={("public", "items"): 1} if electrified else {}
    )


@pytest.fixture
def guard() -> SessionGuard:
    snap = snapshot()
    return SessionGuard(lambda: snap)


def kinds(guard: SessionGuard, sql: str) -> list[list[tuple[str, str | None, str, str]]]:
    plan = guard.inspect(sql)
    return [[(c.kind, c.schema, c.name, c.error.sqlstate) for c in checks] for checks in plan.checks]


def test_names_are_left_for_the_server_to_resolve(guard: SessionGuard) -> None:
    # No search_path in Python: `t` is whatever the server resolves it to when it runs.
    assert kinds(guard, "ALTER TABLE t DROP COLUMN v") == [[("relation", None, "t", "EX010")]]
    assert kinds(guard, "DROP TABLE a, s.b") == [
        [("relation", None, "a", "EX004"), ("relation", "s", "b", "EX004")]
    ]
    assert kinds(guard, "DROP SCHEMA s CASCADE") == [[("schema", None, "s", "EX004")]]
    assert kinds(guard, "ALTER INDEX i RENAME TO j") == [
        [("index", None, "i", "EX003"), ("relation", None, "i", "EX002")]
    ]


def test_additive_changes_need_no_check(guard: SessionGuard) -> None:
    assert kinds(guard, "ALTER TABLE t ADD COLUMN c text; CREATE INDEX ON t (c); SELECT 1") == [[], [], []]


def test_checks_name_the_table_through_placeholders(guard: SessionGuard) -> None:
    (check,) = guard.inspect("ALTER TABLE t RENAME COLUMN a TO b").checks[0]
    assert f'"{SCHEMA_PLACEHOLDER}"."{TABLE_PLACEHOLDER}"' in check.error.message
    assert check.error.schema == SCHEMA_PLACEHOLDER and check.error.table == TABLE_PLACEHOLDER
    data = json.loads(checks_json([check]))
    assert data[0]["error"]["C"] == "EX008" and data[0]["name"] == "t"


def test_no_checks_while_nothing_is_electrified() -> None:
    snap = snapshot(electrified=False)
    shared = SharedFlags()
    guard = SessionGuard(lambda: snap, shared=shared)
    assert guard.inspect("ALTER TABLE t DROP COLUMN v").checks == ((),)
    # Any session's ENABLE turns the checks on for every session of the database at once.
    other = SessionGuard(lambda: snap, shared=shared)
    other.inspect("ALTER TABLE t ENABLE ELECTRIC")
    assert guard.inspect("ALTER TABLE t DROP COLUMN v").checks != ((),)


def test_no_checks_where_the_database_guards_itself() -> None:
    snap = snapshot()
    guard = SessionGuard(lambda: snap, database_guard=lambda: True)
    assert guard.inspect("ALTER TABLE t DROP COLUMN v").checks == ((),)
    assert guard.inspect("DO $$ BEGIN EXECUTE 'x'; END $$").rejected is None


def test_malformed_electric_is_rejected_other_syntax_errors_forwarded() -> None:
    snap = snapshot(electrified=False)
    guard = SessionGuard(lambda: snap)
    bad = guard.inspect("SELECT 1; ELECTRIC GRANT JUNK")
    assert bad.rejected is not None and bad.rejected.sqlstate == "42601" and bad.rejected.position == 26
    assert guard.inspect("SELEC 1; ALTER TABLE other ADD x int").rejected is None  # Postgres reports it


def test_unreadable_ddl_refused_while_tables_are_electrified(guard: SessionGuard) -> None:
    plan = guard.inspect("SELEC 1; ALTER TABLE other ADD x int")
    assert plan.rejected is not None and plan.rejected.sqlstate == "EX017"
    forward = SessionGuard(guard.view, on_parse_error="forward")
    assert forward.inspect("SELEC 1; ALTER TABLE other ADD x int").rejected is None


@pytest.mark.parametrize("text", ["it's", "a\\b", "$$; DROP TABLE x; $$", "'); DROP TABLE x; --", "\\'; x"])
def test_literals_cannot_break_out(text: str) -> None:
    call = rewrite.electric_call(rewrite.electric.ElectricSqlite(text))
    assert parse_sql_json(call).count('"stmt"') == 1  # exactly one statement, whatever the text holds
    error = rewrite.raising_statement(rewrite.GuardError(text, sqlstate="EX010", detail=text))
    assert parse_sql_json(error).count('"stmt"') == 1
    guard = SessionGuard(lambda: snapshot())
    (checks,) = guard.inspect(f'ALTER TABLE "{text}" DROP COLUMN "{text}"').checks
    assert parse_sql_json(rewrite.guard_check_call(checks)).count('"stmt"') == 1
    assert parse_sql_json(rewrite.run_checked_call(checks, text, "ALTER TABLE")).count('"stmt"') == 1


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_inspect_never_raises_on_random_text(text: str) -> None:
    snap = snapshot()
    guard = SessionGuard(lambda: snap)
    guard.inspect(text)
    guard.inspect("ALTER TABLE items " + text)
