from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.ddl.classify import Kind, classify
from proxy.ddl.prefilter import may_need_look, may_need_parse, may_write_version

MUST_PARSE = [
    "CREATE TABLE t (id int PRIMARY KEY)",
    "create table t (id int)",
    "ALTER TABLE t ADD COLUMN c text",
    "aLtEr TaBlE t DROP COLUMN c",
    "DROP TABLE a, b",
    "DROP INDEX CONCURRENTLY i",
    "ALTER INDEX i RENAME TO j",
    "TRUNCATE t",
    "COMMENT ON TABLE t IS 'x'",
    "GRANT SELECT ON t TO bob",
    "REVOKE SELECT ON t FROM bob",
    "SECURITY LABEL ON TABLE t IS 'x'",
    "REINDEX TABLE t",
    "CLUSTER t USING i",
    "REFRESH MATERIALIZED VIEW v",
    "IMPORT FOREIGN SCHEMA s FROM SERVER x INTO y",
    "VACUUM t",
    "DISCARD ALL",
    "ELECTRIC ENABLE t",
    "electric grant read on t to 'x'",
    "ALTER TABLE t ENABLE ELECTRIC",
    "CALL electric.electrify('t')",
    "DO $$ BEGIN END $$",
    "do language plpgsql $$ begin end $$",
    "SET search_path TO app, public",
    "set local search_path = 'x'",
    "RESET search_path",
    "RESET ALL",
    "SET ROLE admin",
    "SELECT set_config('search_path', 'x', false)",
    "SELECT pg_catalog.SET_CONFIG('search_path', 'x', true)",
    "SELECT * INTO new_table FROM t",
    "WITH x AS (SELECT 1) SELECT * INTO new_table FROM x",
    "SELECT 1 AS reinsert INTO new_table",
    "SELECT 1; SELECT 2 AS remerge INTO new_table",
    "EXPLAIN ANALYZE CREATE TABLE x AS SELECT 1",
    # hidden after comments, other statements, odd whitespace
    "-- migration 42\nCREATE TABLE t (a int)",
    "/* header */ ALTER TABLE t ADD c int",
    "/* outer /* nested */ still comment */ SET search_path TO x",
    "SELECT 1 -- trailing\nSET search_path TO x",
    "SELECT 1; -- c\rSET search_path TO x",
    "SELECT 1;SET search_path TO x",
    "SELECT 1;\t\f\vDO $$ $$",
    "SELECT 1; DROP TABLE t",
    "BEGIN; ALTER TABLE t ADD c int; COMMIT",
    "INSERT INTO t VALUES (1); CALL p()",
    "UPDATE t SET a = 1; GRANT ALL ON t TO x",
    "  \n\tCREATE INDEX ON t (a)",
]

PLAIN = [
    "SELECT abalance FROM pgbench_accounts WHERE aid = 4711;",
    "UPDATE pgbench_accounts SET abalance = abalance + -3338 WHERE aid = 4711;",
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 2, 3, 4, CURRENT_TIMESTAMP);",
    "INSERT INTO posts (title, created_at, updated_at) VALUES ($1, $2, $3) RETURNING id",
    "INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET a = excluded.a",
    "INSERT INTO t (a) VALUES (1) ON CONFLICT DO NOTHING",
    "UPDATE t\nSET a = 1\nWHERE b = 2",
    "SELECT comment, description FROM posts",
    "SELECT dropped_at, altered, created FROM t",
    "DELETE FROM t WHERE id = $1",
    "VALUES (1), (2)",
    "BEGIN",
    "begin isolation level serializable",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT s",
    "RELEASE SAVEPOINT s",
    "SHOW search_path",
    "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x",
    "SELECT 1; SELECT 2",
    "SELECT * FROM users WHERE id = $1 /*controller='users',action='show'*/",
    "MERGE INTO t USING s ON t.a = s.a WHEN MATCHED THEN DO NOTHING",
    "",
]


@pytest.mark.parametrize("sql", MUST_PARSE)
def test_statements_that_need_a_parse(sql: str) -> None:
    assert may_need_parse(sql.encode())


@pytest.mark.parametrize("sql", PLAIN)
def test_plain_traffic_skips_the_parser(sql: str) -> None:
    assert not may_need_parse(sql.encode())


def test_non_ascii_text_does_not_break_the_test() -> None:
    assert not may_need_parse("SELECT 'héllo wörld ✓'".encode())
    assert may_need_parse("SELECT 'é'; CREATE TABLE «t» (a int)".encode())
    # A keyword glued to a multibyte identifier character is part of the identifier.
    assert may_need_parse("SELECT 1 AS édrop; DROP TABLE t".encode())


def test_keyword_inside_an_identifier_is_not_a_keyword() -> None:
    assert not may_need_parse(b"SELECT created_at, drop_count, set_configured FROM t")


VERSION_TABLES = frozenset({b"schema_migrations", b"_prisma_migrations", b"sequelizemeta"})


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("INSERT INTO schema_migrations (version) VALUES ('1')", True),
        ('INSERT INTO "SequelizeMeta" (name) VALUES ($1)', True),
        ("UPDATE _prisma_migrations SET finished_at = now()", True),
        ("DELETE FROM schema_migrations WHERE version = $1", True),
        ("SELECT version FROM schema_migrations", False),
        ("INSERT INTO posts (a) VALUES (1)", False),
    ],
)
def test_version_table_writes(sql: str, expected: bool) -> None:
    assert may_write_version(sql.encode(), VERSION_TABLES) is expected


def test_no_version_tables_means_no_version_writes() -> None:
    assert not may_write_version(b"INSERT INTO schema_migrations VALUES (1)", frozenset())


# -- property: the prefilter lets through everything classify finds interesting --------

TEMPLATES = [
    "CREATE TABLE t (id int PRIMARY KEY, v text)",
    "CREATE UNIQUE INDEX CONCURRENTLY i ON s.t (a)",
    "ALTER TABLE ONLY t ADD COLUMN c int NOT NULL",
    "ALTER TABLE IF EXISTS t DROP COLUMN c",
    "ALTER TABLE t RENAME TO u",
    "ALTER TABLE t RENAME COLUMN a TO b",
    "ALTER INDEX i RENAME TO j",
    "ALTER TABLE t SET SCHEMA s",
    "DROP TABLE a, b CASCADE",
    "DROP SCHEMA s CASCADE",
    "DROP INDEX i",
    "CREATE VIEW v AS SELECT 1",
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$",
    "COMMENT ON COLUMN t.a IS 'x'",
    "GRANT SELECT ON t TO PUBLIC",
    "CREATE TABLE t2 AS SELECT 1",
    "SELECT 1 INTO t3",
    "SET search_path TO a, b",
    "SET LOCAL search_path = DEFAULT",
    "RESET search_path",
    "DISCARD ALL",
    "DO $$ BEGIN NULL; END $$",
    "CALL p(1)",
    "CALL electric.electrify('t')",
    "ELECTRIC ENABLE t",
    "ALTER TABLE t ENABLE ELECTRIC",
    "ELECTRIC GRANT READ ON t TO 'member'",
    "ELECTRIC SQLITE $$x$$",
    "REFRESH MATERIALIZED VIEW v",
    "CREATE TYPE mood AS ENUM ('a', 'b')",
    "ALTER TYPE mood ADD VALUE 'c'",
    "CREATE SCHEMA s",
    "CREATE EXTENSION IF NOT EXISTS pgcrypto",
]
PREFIXES = ["", "SELECT 1; ", "SELECT ';'; ", "INSERT INTO t VALUES (1);\n", "BEGIN;"]
COMMENTS = ["", "-- note\n", "/* note */ ", "/* a /* nested */ b */", "--x\r\n"]
SEPARATORS = [" ", "\t", "\n", "  ", " /* c */ ", "\n-- c\n", "\r\n", "\f"]
INTERESTING = {Kind.SET, Kind.DO, Kind.CALL, Kind.ELECTRIC}


@st.composite
def disguised(draw: st.DrawFn) -> str:
    template = draw(st.sampled_from(TEMPLATES))
    flips = draw(st.lists(st.booleans(), min_size=len(template), max_size=len(template)))
    mixed = "".join(c.upper() if f else c.lower() for c, f in zip(template, flips, strict=True))
    words = mixed.split(" ")
    text = words[0]
    for word in words[1:]:
        text += draw(st.sampled_from(SEPARATORS)) + word
    return (
        draw(st.sampled_from(PREFIXES))
        + draw(st.sampled_from(COMMENTS))
        + text
        + draw(st.sampled_from(["", ";", " ;  "]))
    )


@settings(max_examples=400, deadline=None)
@given(disguised())
def test_prefilter_never_hides_what_classify_finds(sql: str) -> None:
    statements = classify(sql)
    assert all(s.kind is not Kind.UNPARSABLE for s in statements), statements
    if any(s.ddl or s.kind in INTERESTING for s in statements):
        assert may_need_parse(sql.encode()), sql


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_prefilter_accepts_any_text(text: str) -> None:
    result = may_need_parse(text.encode("utf-8", "surrogatepass"))
    assert isinstance(result, bool)
    statements = classify(text)
    if any(s.ddl or s.kind in INTERESTING for s in statements):
        assert result, text


TABLES = frozenset({b"alembic_version", b"schema_migrations"})


@pytest.mark.parametrize(
    "sql",
    [
        b"SELECT abalance FROM pgbench_accounts WHERE aid = 1;",
        b"select 1",
        b"SELECT * FROM t WHERE a = $1",
    ],
)
def test_plain_select_needs_no_look(sql: bytes) -> None:
    assert not may_need_look(sql, TABLES) and not may_need_parse(sql)


@pytest.mark.parametrize(
    "sql",
    [
        b"SELECT 1; DROP TABLE t",
        b"SELECT * INTO new_t FROM t",
        b"SELECT set_config('search_path', 'x', false)",
        b"SELECT 1 -- ; ALTER TABLE t DROP c\n",
        b"SELECT 1 /* */; CREATE TABLE x ()",
        b" SELECT 1",
        b"INSERT INTO alembic_version VALUES ('a')",
    ],
)
def test_look_is_parse_or_version_write(sql: bytes) -> None:
    assert may_need_look(sql, TABLES) == (may_need_parse(sql) or may_write_version(sql, TABLES))
    assert may_need_look(sql, TABLES) or sql.startswith(b" SELECT")
