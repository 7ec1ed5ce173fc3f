"""SessionGuard without a database: decisions, rewrites, search_path and the transaction overlay."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.catalog.cache import CatalogSnapshot, Relation
from proxy.ddl import rewrite
from proxy.ddl.guard import SessionGuard, parse_search_path


def snapshot(electrified: tuple[tuple[str, str], ...] = (("public", "items"),)) -> CatalogSnapshot:
    relations = {
        ("public", "items"): Relation(1, "r"),
        ("app", "items"): Relation(2, "r"),
        ("public", "other"): Relation(3, "r"),
    }
    return CatalogSnapshot.build(
        schemas=("public", "app"),
        relations=relations,
        electrified={key: relations[key].oid for key in electrified},
        indexes={("public", "items_idx"): ("public", "items")},
    )


@pytest.fixture
def guard() -> SessionGuard:
    snap = snapshot()
    return SessionGuard(lambda: snap, user="alice")


def test_plain_ddl_is_forwarded_untouched(guard: SessionGuard) -> None:
    inspection = guard.inspect("ALTER TABLE other DROP COLUMN x")
    assert inspection.replacement is None and inspection.rejected is None


def test_rejection_replaces_the_whole_string(guard: SessionGuard) -> None:
    inspection = guard.inspect("CREATE TABLE a (id int); ALTER TABLE items DROP COLUMN x")
    assert inspection.rejected is not None and inspection.rejected.sqlstate == "EX010"
    assert inspection.replacement is not None
    assert inspection.replacement.startswith("DO ") and "CREATE TABLE a" not in inspection.replacement
    assert "CONSTRAINT = 'electric-proxy'" in inspection.replacement


def test_electric_statement_rewritten_in_place(guard: SessionGuard) -> None:
    sql = "CREATE TABLE t (id uuid primary key); ALTER TABLE t ENABLE ELECTRIC; ALTER TABLE t DROP COLUMN id"
    inspection = guard.inspect(sql)
    assert inspection.rejected is not None  # t is electrified by the second statement
    ok = guard.inspect("ELECTRIC ENABLE other; SELECT 1")
    assert ok.tags == 1
    assert (
        ok.replacement == "CALL electric.electrify(NULL, 'other', proxy_tag => 'ELECTRIC ENABLE'); SELECT 1"
    )


def test_search_path_decides_which_table_is_meant(guard: SessionGuard) -> None:
    assert guard.inspect("ALTER TABLE items DROP COLUMN x").rejected is not None  # public.items
    guard.inspect("SET search_path TO app, public")
    assert guard.inspect("ALTER TABLE items DROP COLUMN x").rejected is None  # app.items
    guard.inspect("RESET search_path")
    assert guard.inspect("ALTER TABLE items DROP COLUMN x").rejected is not None


def test_set_local_ends_with_the_transaction(guard: SessionGuard) -> None:
    guard.inspect("SET LOCAL search_path = app")
    assert guard.inspect("ALTER TABLE items DROP COLUMN x").rejected is None
    guard.end_transaction(committed=True)
    assert guard.inspect("ALTER TABLE items DROP COLUMN x").rejected is not None


def test_learned_search_path_with_user_and_quotes(guard: SessionGuard) -> None:
    guard.learn_search_path('"$user", "App Schema", public', user="bob")
    assert guard.search_path == ("$user", "App Schema", "public")
    assert guard.path_schemas()[:2] == ["pg_catalog", "bob"]
    assert parse_search_path("a, B") == ("a", "b")


def test_rolled_back_electrify_is_forgotten_and_committed_one_kept(guard: SessionGuard) -> None:
    guard.inspect("ELECTRIC ENABLE other")
    guard.end_transaction(committed=False)
    assert guard.inspect("ALTER TABLE other DROP COLUMN x").rejected is None
    guard.inspect("ELECTRIC ENABLE other")
    generation = guard.end_transaction(committed=True)
    assert generation is not None
    assert guard.inspect("ALTER TABLE other DROP COLUMN x").rejected is not None
    other_session = SessionGuard(guard._snapshot, user="bob", shared=guard.shared)
    assert other_session.inspect("ALTER TABLE other DROP COLUMN x").rejected is not None
    guard.shared.expire(generation)  # the snapshot would now say so itself; here it does not
    assert guard.inspect("ALTER TABLE other DROP COLUMN x").rejected is None


def test_dropped_and_renamed_tables_resolve_past_them(guard: SessionGuard) -> None:
    guard.inspect("SET search_path TO app, public")
    guard.inspect("DROP TABLE items")  # app.items
    assert guard.inspect("ALTER TABLE items DROP COLUMN x").rejected is not None  # now public.items


def test_prepared_statement_is_rechecked(guard: SessionGuard) -> None:
    assert guard.inspect("ALTER TABLE other DROP COLUMN x", name=b"s1").rejected is None
    assert guard.recheck(b"s1") is None
    guard.inspect("ELECTRIC ENABLE other")
    error = guard.recheck(b"s1")
    assert error is not None and error.sqlstate == "EX010"


def test_malformed_electric_is_rejected_other_syntax_errors_forwarded(guard: SessionGuard) -> None:
    bad = guard.inspect("SELECT 1; ELECTRIC GRANT JUNK")
    assert bad.rejected is not None and bad.rejected.sqlstate == "42601" and bad.rejected.position == 26
    assert "CONSTRAINT = 'electric-proxy:26'" in (bad.replacement or "")
    assert guard.inspect("SELEC 1; ALTER TABLE other ADD x int").rejected is None  # Postgres reports it


@pytest.mark.parametrize("text", ["it's", "a\\b", "$$; DROP TABLE x; $$", "'); DROP TABLE x; --", "\\'; x"])
def test_literals_cannot_break_out(text: str) -> None:
    from pglast.parser import parse_sql_json

    call = rewrite.electric_call(rewrite.electric.ElectricSqlite(text))
    tree = parse_sql_json(call)
    assert tree.count('"stmt"') == 1  # exactly one statement, whatever the text holds
    error = rewrite.raising_statement(rewrite.GuardError(text, sqlstate="EX010", detail=text))
    assert parse_sql_json(error).count('"stmt"') == 1


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_inspect_never_raises_on_random_text(text: str) -> None:
    snap = snapshot()
    guard = SessionGuard(lambda: snap, user="alice")
    guard.inspect(text)
    guard.inspect("ALTER TABLE items " + text)
