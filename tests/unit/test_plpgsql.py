"""The SQL a DO block runs, read from its PL/pgSQL body."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.ddl.plpgsql import Opaque, read_body, string_constant


@pytest.mark.parametrize(
    ("body", "statements"),
    [
        ("BEGIN END", []),
        ("BEGIN RAISE NOTICE 'x %', 1; END", []),
        ("BEGIN ASSERT (SELECT count(*) FROM t) = 0; END", []),  # an expression
        ("BEGIN PERFORM f(1); END", ["SELECT f(1)"]),
        ("BEGIN ALTER TABLE t DROP COLUMN c; END", ["ALTER TABLE t DROP COLUMN c"]),
        ("BEGIN EXECUTE 'DROP TABLE t'; END", ["DROP TABLE t"]),
        ("BEGIN EXECUTE $q$DROP TABLE t$q$; END", ["DROP TABLE t"]),
        ("BEGIN EXECUTE E'DROP TABLE \\x74'; END", ["DROP TABLE t"]),
        ("BEGIN EXECUTE ('DROP TABLE t') USING 1; END", ["DROP TABLE t"]),
        ("BEGIN EXECUTE ''; END", [""]),
        ("BEGIN CALL p(); DO $x$ BEGIN END $x$; END", ["CALL p()", "DO $x$ BEGIN END $x$"]),
        ("BEGIN COMMIT; ROLLBACK AND CHAIN; END", ["COMMIT", "ROLLBACK AND CHAIN"]),
        (
            "DECLARE r record; BEGIN FOR r IN SELECT a FROM t LOOP UPDATE t SET a = 1; END LOOP; END",
            ["UPDATE t SET a = 1", "SELECT a FROM t"],
        ),
        ("DECLARE c CURSOR FOR SELECT 1; BEGIN OPEN c; END", ["SELECT 1"]),
        ("DECLARE c refcursor; BEGIN OPEN c FOR EXECUTE 'SELECT 2'; END", ["SELECT 2"]),
        (
            "BEGIN IF NOT EXISTS (SELECT 1 FROM t) THEN CREATE TABLE t (a int); END IF; END",
            ["CREATE TABLE t (a int)"],
        ),
        (
            "BEGIN SELECT 1; EXCEPTION WHEN others THEN DROP TABLE t; END",
            ["SELECT 1", "DROP TABLE t"],
        ),
        ("BEGIN RETURN; END", []),
        ("BEGIN RAISE NOTICE '$body$'; END", []),  # the body holds the wrapper's quote tag
        ("BEGIN RAISE NOTICE '$body'; END", []),
    ],
)
def test_statements(body: str, statements: list[str]) -> None:
    read = read_body(body)
    assert read.opaque is None, read.reason
    assert sorted(read.statements) == sorted(statements)


@pytest.mark.parametrize(
    "body",
    [
        "BEGIN EXECUTE format('DROP TABLE %I', 't'); END",
        "BEGIN EXECUTE 'DROP TABLE ' || 't'; END",
        "DECLARE q text := 'DROP TABLE t'; BEGIN EXECUTE q; END",
        "DECLARE r record; BEGIN FOR r IN EXECUTE 'SELECT ' || 1 LOOP END LOOP; END",
        "DECLARE c refcursor; BEGIN OPEN c FOR EXECUTE lower('DROP TABLE T'); END",
    ],
)
def test_dynamic_sql_is_opaque(body: str) -> None:
    read = read_body(body)
    assert read.opaque is Opaque.DYNAMIC
    assert read.reason.startswith("EXECUTE ")


@pytest.mark.parametrize(
    "body",
    [
        "BEGIN ALTER TABLE t ENABLE ELECTRIC; END",
        "BEGIN x := 1; END",  # an unknown variable
        "not plpgsql at all",
        "BEGIN" + " BEGIN" * 2000 + " END;" * 2000 + " END",
    ],
)
def test_unparsable_body_is_opaque(body: str) -> None:
    assert read_body(body).opaque is Opaque.UNREADABLE


def test_backslash_without_standard_strings_is_opaque() -> None:
    body = "BEGIN PERFORM 'a\\'; END"
    assert read_body(body).opaque is None
    assert read_body(body, standard_conforming_strings=False).opaque is Opaque.UNREADABLE


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("'x'", "x"),
        ("('x')", "x"),
        ("$$x$$", "x"),
        ("E'\\''", "'"),
        ("U&'\\0041'", "A"),
        ("''", ""),
        ("'x' || 'y'", None),
        ("format('x')", None),
        ("q", None),
        ("'x'::text", None),
        ("1", None),
        ("'x' FROM t", None),
        ("'x'; DROP TABLE t", None),
    ],
)
def test_string_constant(expression: str, value: str | None) -> None:
    assert string_constant(expression) == value


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "BEGIN ",
                "END",
                ";",
                "EXECUTE ",
                "'",
                "$$",
                "$body",
                "\\",
                "DROP TABLE t",
                "(",
                ")",
                "--",
                "\n",
                "x",
            ]
        ),
        max_size=30,
    ),
    st.booleans(),
)
def test_read_body_never_raises(parts: list[str], standard: bool) -> None:
    read = read_body("".join(parts), standard_conforming_strings=standard)
    assert read.opaque is not None or all(isinstance(s, str) for s in read.statements)
