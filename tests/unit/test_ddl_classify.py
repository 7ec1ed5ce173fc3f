from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.ddl.classify import (
    AlterSubcommand,
    ColumnFacts,
    Kind,
    SetAction,
    Statement,
    StatementText,
    TxKind,
    classify,
    split_statements,
)
from proxy.ddl.electric import ElectricEnable
from proxy.ddl.names import QualifiedName
from proxy.errors import GuardError

T = QualifiedName(None, "t")


def one(sql: str) -> Statement:
    (statement,) = classify(sql)
    return statement


# -- splitting ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT 1", [("SELECT 1", 0)]),
        ("SELECT 1; DROP TABLE t", [("SELECT 1", 0), ("DROP TABLE t", 10)]),
        ("  SELECT 1 ;; ;\n", [("SELECT 1", 2)]),
        ("-- lead\nCREATE TABLE t (a int) -- tail\n;", [("CREATE TABLE t (a int) -- tail", 8)]),
        ("/* x */", []),
        ("", []),
        ("SELECT 'é;è'; SELECT 2", [("SELECT 'é;è'", 0), ("SELECT 2", 14)]),
        ("SELECT '日本'; ELECTRIC ENABLE t", [("SELECT '日本'", 0), ("ELECTRIC ENABLE t", 13)]),
        ("x y; SELECT 1", [("x y", 0), ("SELECT 1", 5)]),  # no keyword: still a statement
        ("ELECTRIC SQLITE $$a; b$$; SELECT 1", [("ELECTRIC SQLITE $$a; b$$", 0), ("SELECT 1", 26)]),
        (
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true "
            "THEN 1 END; END; SELECT 2",
            [
                (
                    "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN "
                    "true THEN 1 END; END",
                    0,
                ),
                ("SELECT 2", 107),
            ],
        ),
        (
            "CREATE RULE r AS ON INSERT TO t DO ALSO (NOTIFY a; NOTIFY b); SELECT 1",
            [("CREATE RULE r AS ON INSERT TO t DO ALSO (NOTIFY a; NOTIFY b)", 0), ("SELECT 1", 62)],
        ),
        ("BEGIN; SELECT 1; END", [("BEGIN", 0), ("SELECT 1", 7), ("END", 17)]),
        ("SELECT 'unterminated", [("SELECT 'unterminated", 0)]),
    ],
)
def test_split_statements(sql: str, expected: list[tuple[str, int]]) -> None:
    assert split_statements(sql) == [StatementText(text, start) for text, start in expected]


# -- kinds, tags, objects ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "kind", "tag", "objects"),
    [
        ("CREATE TABLE s.t (a int)", Kind.CREATE_TABLE, "CREATE TABLE", [("s", "t")]),
        ('ALTER TABLE "S"."T" ADD c int', Kind.ALTER_TABLE, "ALTER TABLE", [("S", "T")]),
        ("ALTER INDEX i SET (fillfactor = 50)", Kind.ALTER_TABLE, "ALTER INDEX", [(None, "i")]),
        ("ALTER SEQUENCE s OWNED BY t.a", Kind.OTHER_DDL, "ALTER SEQUENCE", [(None, "s")]),
        ("DROP TABLE a, s.b", Kind.DROP, "DROP TABLE", [(None, "a"), ("s", "b")]),
        ("DROP INDEX s.i", Kind.DROP, "DROP INDEX", [("s", "i")]),
        ("DROP SCHEMA x, y CASCADE", Kind.DROP, "DROP SCHEMA", [(None, "x"), (None, "y")]),
        ("DROP MATERIALIZED VIEW v", Kind.DROP, "DROP MATERIALIZED VIEW", [(None, "v")]),
        ("DROP TRIGGER tr ON s.t", Kind.DROP, "DROP TRIGGER", [("s", "t")]),
        ("DROP TYPE s.mood", Kind.DROP, "DROP TYPE", [("s", "mood")]),
        ("DROP FUNCTION f(int)", Kind.DROP, "DROP FUNCTION", [(None, "f")]),
        ("ALTER TABLE t RENAME TO u", Kind.RENAME, "ALTER TABLE", [(None, "t")]),
        ("ALTER TABLE t RENAME COLUMN a TO b", Kind.RENAME, "ALTER TABLE", [(None, "t")]),
        ("ALTER INDEX i RENAME TO j", Kind.RENAME, "ALTER INDEX", [(None, "i")]),
        ("ALTER SCHEMA s RENAME TO u", Kind.RENAME, "ALTER SCHEMA", [(None, "s")]),
        ("ALTER TRIGGER tr ON t RENAME TO x", Kind.RENAME, "ALTER TRIGGER", [(None, "t")]),
        ("CREATE INDEX ON t (a)", Kind.CREATE_INDEX, "CREATE INDEX", [(None, "t")]),
        ("CREATE VIEW v AS SELECT 1", Kind.OTHER_DDL, "CREATE VIEW", []),
        ("CREATE TABLE x AS SELECT 1", Kind.OTHER_DDL, "CREATE TABLE AS", [(None, "x")]),
        ("CREATE MATERIALIZED VIEW m AS SELECT 1", Kind.OTHER_DDL, "CREATE MATERIALIZED VIEW", [(None, "m")]),
        ("SELECT 1 INTO x", Kind.OTHER_DDL, "SELECT INTO", [(None, "x")]),
        ("SELECT 1 INTO x UNION SELECT 2", Kind.OTHER_DDL, "SELECT INTO", [(None, "x")]),
        ("EXPLAIN ANALYZE CREATE TABLE x AS SELECT 1", Kind.OTHER_DDL, "EXPLAIN", [(None, "x")]),
        ("EXPLAIN CREATE TABLE x AS SELECT 1", Kind.OTHER, "EXPLAIN", []),
        ("EXPLAIN (ANALYZE false) CREATE TABLE x AS SELECT 1", Kind.OTHER, "EXPLAIN", []),
        (
            "CREATE FUNCTION s.f() RETURNS int AS 'select 1' LANGUAGE sql",
            Kind.OTHER_DDL,
            "CREATE FUNCTION",
            [("s", "f")],
        ),
        (
            "CREATE PROCEDURE p() AS 'select 1' LANGUAGE sql",
            Kind.OTHER_DDL,
            "CREATE PROCEDURE",
            [(None, "p")],
        ),
        ("ALTER FUNCTION f() OWNER TO x", Kind.OTHER_DDL, "ALTER FUNCTION", [(None, "f")]),
        ("ALTER TABLE t SET SCHEMA u", Kind.OTHER_DDL, "ALTER TABLE", [(None, "t")]),
        ("COMMENT ON TABLE t IS 'x'", Kind.OTHER_DDL, "COMMENT ON TABLE", [(None, "t")]),
        ("GRANT SELECT ON t TO bob", Kind.OTHER_DDL, "GRANT", [(None, "t")]),
        ("REVOKE SELECT ON t FROM bob", Kind.OTHER_DDL, "REVOKE", [(None, "t")]),
        ("GRANT admin TO bob", Kind.OTHER, "GRANT ROLE", []),
        ("CREATE TYPE mood AS ENUM ('a')", Kind.OTHER_DDL, "CREATE TYPE", []),
        (
            "CREATE AGGREGATE a (int) (sfunc = f, stype = int)",
            Kind.OTHER_DDL,
            "CREATE AGGREGATE",
            [(None, "a")],
        ),
        ("CREATE SCHEMA s", Kind.OTHER_DDL, "CREATE SCHEMA", []),
        (
            "CREATE TRIGGER tr AFTER INSERT ON t EXECUTE FUNCTION f()",
            Kind.OTHER_DDL,
            "CREATE TRIGGER",
            [(None, "t")],
        ),
        ("CREATE ROLE r", Kind.OTHER, "CREATE ROLE", []),
        ("TRUNCATE t", Kind.OTHER, "TRUNCATE TABLE", []),
        ("SELECT 1", Kind.SELECT, "SELECT", []),
        ("INSERT INTO t VALUES (1)", Kind.DML, "INSERT", [(None, "t")]),
        ("UPDATE t SET a = 1", Kind.DML, "UPDATE", [(None, "t")]),
        ("DELETE FROM t", Kind.DML, "DELETE", [(None, "t")]),
        ("DO $$ BEGIN END $$", Kind.DO, "DO", []),
        ("CALL s.p()", Kind.CALL, "CALL", [("s", "p")]),
        ("VACUUM t", Kind.OTHER, "VACUUM", []),
        ("ANALYZE t", Kind.OTHER, "ANALYZE", []),
        ("SHOW search_path", Kind.OTHER, "SHOW", []),
        ("LOCK TABLE t", Kind.OTHER, "LOCK TABLE", []),
        ("ELECTRIC ENABLE t", Kind.ELECTRIC, "ELECTRIC ENABLE", [(None, "t")]),
        ("ALTER TABLE t DISABLE ELECTRIC", Kind.ELECTRIC, "ELECTRIC DISABLE", [(None, "t")]),
    ],
)
def test_kind_tag_objects(sql: str, kind: Kind, tag: str, objects: list[tuple[str | None, str]]) -> None:
    statement = one(sql)
    assert statement.kind is kind
    assert statement.tag == tag
    assert statement.objects == tuple(QualifiedName(s, n) for s, n in objects)
    assert statement.text == sql


@pytest.mark.parametrize(
    ("sql", "ddl"),
    [
        ("CREATE TABLE t (a int)", True),
        ("DROP INDEX i", True),
        ("ELECTRIC ENABLE t", True),
        ("COMMENT ON TABLE t IS 'x'", True),
        ("SELECT 1", False),
        ("SET search_path TO a", False),
        ("BEGIN", False),
        ("DO $$ $$", False),
        ("CREATE DATABASE d", False),
    ],
)
def test_ddl_flag(sql: str, ddl: bool) -> None:
    assert one(sql).ddl is ddl


# -- ALTER TABLE -------------------------------------------------------------------------


def test_alter_table_facts() -> None:
    statement = one(
        "ALTER TABLE IF EXISTS ONLY s.t ADD COLUMN c varchar(255) NOT NULL DEFAULT 'x', "
        "DROP COLUMN IF EXISTS d, ALTER COLUMN e TYPE timestamp(3), ALTER e SET NOT NULL, "
        "ADD CONSTRAINT k CHECK (a > 1), ENABLE TRIGGER tr, OWNER TO bob"
    )
    facts = statement.alter
    assert facts is not None
    assert facts.relation == QualifiedName("s", "t")
    assert facts.only and facts.missing_ok
    assert facts.object_type == "OBJECT_TABLE"
    assert [c.subtype for c in facts.subcommands] == [
        "AT_AddColumn",
        "AT_DropColumn",
        "AT_AlterColumnType",
        "AT_SetNotNull",
        "AT_AddConstraint",
        "AT_EnableTrig",
        "AT_ChangeOwner",
    ]
    add, drop, retype, not_null, check, trigger, owner = facts.subcommands
    assert add.column_def == ColumnFacts(
        name="c",
        type_name="varchar(255)",
        base_type="varchar",
        type_schema="pg_catalog",
        typmods=("255",),
        is_array=False,
        constraints=("CONSTR_NOTNULL", "CONSTR_DEFAULT"),
    )
    assert drop == AlterSubcommand("AT_DropColumn", "d", "d", None, None, True)
    assert retype.column == "e" and retype.column_def is not None
    assert retype.column_def.type_name == "timestamp(3)"
    assert not_null.column == "e"
    assert check.constraint == "CONSTR_CHECK" and check.column is None
    assert trigger.column is None and trigger.name == "tr"
    assert owner.column is None


def test_alter_without_only() -> None:
    facts = one("ALTER TABLE t ADD c int").alter
    assert facts is not None
    assert not facts.only and not facts.missing_ok


@pytest.mark.parametrize(
    ("type_sql", "printed", "base", "schema", "array"),
    [
        ("int", "int4", "int4", "pg_catalog", False),
        ("integer", "int4", "int4", "pg_catalog", False),
        ("int4", "int4", "int4", None, False),
        ("bigint", "int8", "int8", "pg_catalog", False),
        ("boolean", "bool", "bool", "pg_catalog", False),
        ("double precision", "float8", "float8", "pg_catalog", False),
        ("real", "float4", "float4", "pg_catalog", False),
        ("text", "text", "text", None, False),
        ("varchar", "varchar", "varchar", "pg_catalog", False),
        ("character varying(255)", "varchar(255)", "varchar", "pg_catalog", False),
        ("int[]", "int4[]", "int4", "pg_catalog", True),
        ("int[3][4]", "int4[]", "int4", "pg_catalog", True),
        ("timestamp(3)", "timestamp(3)", "timestamp", "pg_catalog", False),
        ("timestamp with time zone", "timestamptz", "timestamptz", "pg_catalog", False),
        ("time(1) with time zone", "timetz(1)", "timetz", "pg_catalog", False),
        ("char", "bpchar(1)", "bpchar", "pg_catalog", False),
        ("numeric(10, 2)", "numeric(10,2)", "numeric", "pg_catalog", False),
        ("public.mood", "public.mood", "mood", "public", False),
        ('"MyType"', "MyType", "MyType", None, False),
        ("cidr", "cidr", "cidr", None, False),
        ("serial", "serial", "serial", None, False),
    ],
)
def test_column_types(type_sql: str, printed: str, base: str, schema: str | None, array: bool) -> None:
    facts = one(f"ALTER TABLE t ADD COLUMN c {type_sql}").alter
    assert facts is not None
    column = facts.subcommands[0].column_def
    assert column is not None
    assert (column.type_name, column.base_type, column.type_schema, column.is_array) == (
        printed,
        base,
        schema,
        array,
    )


@pytest.mark.parametrize(
    ("constraint_sql", "constraints"),
    [
        ("NULL", ("CONSTR_NULL",)),
        ("NOT NULL", ("CONSTR_NOTNULL",)),
        ("DEFAULT 1", ("CONSTR_DEFAULT",)),
        ("CHECK (c > 0)", ("CONSTR_CHECK",)),
        ("PRIMARY KEY", ("CONSTR_PRIMARY",)),
        ("UNIQUE", ("CONSTR_UNIQUE",)),
        ("REFERENCES u (id)", ("CONSTR_FOREIGN",)),
        ("GENERATED ALWAYS AS (1) STORED", ("CONSTR_GENERATED",)),
        ("GENERATED ALWAYS AS IDENTITY", ("CONSTR_IDENTITY",)),
    ],
)
def test_column_constraints(constraint_sql: str, constraints: tuple[str, ...]) -> None:
    facts = one(f"ALTER TABLE t ADD COLUMN c int {constraint_sql}").alter
    assert facts is not None
    column = facts.subcommands[0].column_def
    assert column is not None and column.constraints == constraints


def test_create_table_facts() -> None:
    facts = one(
        "CREATE TABLE IF NOT EXISTS s.t (id uuid PRIMARY KEY, v text NOT NULL, UNIQUE (v))"
    ).create_table
    assert facts is not None
    assert facts.table == QualifiedName("s", "t")
    assert [c.name for c in facts.columns] == ["id", "v"]
    assert facts.columns[0].constraints == ("CONSTR_PRIMARY",)
    assert facts.constraints == ("CONSTR_UNIQUE",)
    assert facts.if_not_exists


# -- RENAME, DROP, INDEX ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "rename_type", "relation", "subname", "newname"),
    [
        ("ALTER TABLE t RENAME TO u", "OBJECT_TABLE", T, None, "u"),
        ("ALTER TABLE IF EXISTS ONLY t RENAME COLUMN a TO b", "OBJECT_COLUMN", T, "a", "b"),
        ("ALTER TABLE t RENAME CONSTRAINT k TO l", "OBJECT_TABCONSTRAINT", T, "k", "l"),
        ("ALTER INDEX s.i RENAME TO j", "OBJECT_INDEX", QualifiedName("s", "i"), None, "j"),
        ("ALTER SCHEMA s RENAME TO u", "OBJECT_SCHEMA", None, "s", "u"),
    ],
)
def test_rename_facts(
    sql: str, rename_type: str, relation: QualifiedName | None, subname: str | None, newname: str
) -> None:
    facts = one(sql).rename
    assert facts is not None
    assert (facts.rename_type, facts.relation, facts.subname, facts.newname) == (
        rename_type,
        relation,
        subname,
        newname,
    )


def test_drop_facts() -> None:
    statement = one("DROP TABLE IF EXISTS a, b CASCADE")
    assert statement.drop is not None
    assert statement.drop.remove_type == "OBJECT_TABLE"
    assert statement.drop.cascade and statement.drop.missing_ok and not statement.drop.concurrent


def test_index_facts() -> None:
    statement = one("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON ONLY s.t (a)")
    assert statement.index is not None
    assert statement.index.table == QualifiedName("s", "t")
    assert statement.index.name == "i"
    assert statement.index.concurrent and statement.index.unique and statement.index.only


@pytest.mark.parametrize(
    ("sql", "transactional"),
    [
        ("CREATE INDEX CONCURRENTLY i ON t (a)", False),
        ("CREATE INDEX i ON t (a)", True),
        ("DROP INDEX CONCURRENTLY i", False),
        ("DROP INDEX i", True),
        ("REINDEX TABLE CONCURRENTLY t", False),
        ("REINDEX (CONCURRENTLY) INDEX i", False),
        ("REINDEX TABLE t", True),
        ("REINDEX SCHEMA s", False),
        ("VACUUM t", False),
        ("ANALYZE t", True),
        ("CREATE DATABASE d", False),
        ("DROP DATABASE d", False),
        ("ALTER SYSTEM SET work_mem = '1MB'", False),
        ("CREATE TABLESPACE x LOCATION '/x'", False),
        ("CLUSTER", False),
        ("CLUSTER t USING i", True),
        ("DISCARD ALL", False),
        ("COMMIT PREPARED 'x'", False),
        ("ROLLBACK PREPARED 'x'", False),
        ("PREPARE TRANSACTION 'x'", True),
        ("ALTER TABLE p DETACH PARTITION c CONCURRENTLY", False),
        ("ALTER TABLE p DETACH PARTITION c", True),
        ("ALTER DATABASE d SET TABLESPACE x", False),
        ("CREATE SUBSCRIPTION s CONNECTION 'x' PUBLICATION p", False),
        ("CREATE SUBSCRIPTION s CONNECTION 'x' PUBLICATION p WITH (create_slot = false)", True),
        ("ALTER SUBSCRIPTION s REFRESH PUBLICATION", False),
        ("ALTER TYPE mood ADD VALUE 'x'", True),
    ],
)
def test_transactional(sql: str, transactional: bool) -> None:
    assert one(sql).transactional is transactional


# -- transactions and settings ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "kind", "tag", "name"),
    [
        ("BEGIN", TxKind.BEGIN, "BEGIN", None),
        ("START TRANSACTION ISOLATION LEVEL SERIALIZABLE", TxKind.BEGIN, "START TRANSACTION", None),
        ("COMMIT", TxKind.COMMIT, "COMMIT", None),
        ("END", TxKind.COMMIT, "COMMIT", None),
        ("ROLLBACK", TxKind.ROLLBACK, "ROLLBACK", None),
        ("ABORT", TxKind.ROLLBACK, "ROLLBACK", None),
        ("SAVEPOINT sp", TxKind.SAVEPOINT, "SAVEPOINT", "sp"),
        ("RELEASE SAVEPOINT sp", TxKind.RELEASE, "RELEASE", "sp"),
        ("RELEASE sp", TxKind.RELEASE, "RELEASE", "sp"),
        ("ROLLBACK TO SAVEPOINT sp", TxKind.ROLLBACK_TO, "ROLLBACK", "sp"),
        ("ROLLBACK TO sp", TxKind.ROLLBACK_TO, "ROLLBACK", "sp"),
        ("PREPARE TRANSACTION 'g'", TxKind.PREPARE, "PREPARE TRANSACTION", "g"),
        ("COMMIT PREPARED 'g'", TxKind.COMMIT_PREPARED, "COMMIT PREPARED", "g"),
        ("ROLLBACK PREPARED 'g'", TxKind.ROLLBACK_PREPARED, "ROLLBACK PREPARED", "g"),
    ],
)
def test_transactions(sql: str, kind: TxKind, tag: str, name: str | None) -> None:
    statement = one(sql)
    assert statement.kind is Kind.TRANSACTION
    assert statement.tag == tag
    assert statement.tx is not None
    assert (statement.tx.kind, statement.tx.name) == (kind, name)


def test_commit_and_chain() -> None:
    tx = one("COMMIT AND CHAIN").tx
    assert tx is not None and tx.chain


@pytest.mark.parametrize(
    ("sql", "name", "action", "values", "local", "tag"),
    [
        ('SET search_path TO a, "B"', "search_path", SetAction.VALUE, ("a", "B"), False, "SET"),
        ("SET search_path = 'a, b'", "search_path", SetAction.VALUE, ("a, b",), False, "SET"),
        (
            'SET search_path TO "$user", public',
            "search_path",
            SetAction.VALUE,
            ("$user", "public"),
            False,
            "SET",
        ),
        ("SET LOCAL search_path TO x", "search_path", SetAction.VALUE, ("x",), True, "SET"),
        ("SET SESSION search_path TO x", "search_path", SetAction.VALUE, ("x",), False, "SET"),
        ("SET SCHEMA 'x'", "search_path", SetAction.VALUE, ("x",), False, "SET"),
        ("SET search_path = DEFAULT", "search_path", SetAction.DEFAULT, (), False, "SET"),
        ("SET search_path TO DEFAULT", "search_path", SetAction.DEFAULT, (), False, "SET"),
        ("SET search_path FROM CURRENT", "search_path", SetAction.CURRENT, (), False, "SET"),
        ("RESET search_path", "search_path", SetAction.RESET, (), False, "RESET"),
        ("RESET ALL", None, SetAction.RESET_ALL, (), False, "RESET"),
        ("DISCARD ALL", None, SetAction.RESET_ALL, (), False, "DISCARD ALL"),
        ("SET statement_timeout = 0", "statement_timeout", SetAction.VALUE, ("0",), False, "SET"),
        ("SET TIME ZONE 'UTC'", "timezone", SetAction.VALUE, ("UTC",), False, "SET"),
        ("SET ROLE admin", "role", SetAction.VALUE, ("admin",), False, "SET"),
    ],
)
def test_settings(
    sql: str, name: str | None, action: SetAction, values: tuple[str, ...], local: bool, tag: str
) -> None:
    statement = one(sql)
    assert statement.kind is Kind.SET
    assert statement.tag == tag
    assert statement.setting is not None
    assert (
        statement.setting.name,
        statement.setting.action,
        statement.setting.values,
        statement.setting.local,
    ) == (
        name,
        action,
        values,
        local,
    )


@pytest.mark.parametrize(
    ("sql", "changes"),
    [
        ("SET search_path TO a", True),
        ("RESET ALL", True),
        ("DISCARD ALL", True),
        ("SET ROLE x", True),
        ("SET work_mem = '1MB'", False),
        ("SELECT set_config('search_path', 'a', false)", True),
        ("SELECT 1", False),
        ("DO $$ BEGIN END $$", True),
        ("DISCARD PLANS", False),
    ],
)
def test_may_change_search_path(sql: str, changes: bool) -> None:
    assert one(sql).may_change_search_path is changes


# -- errors and positions ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "message", "position"),
    [
        ("SELEC 1", 'syntax error at or near "SELEC"', 1),
        ("SELECT (", "syntax error at end of input", 9),
        ("SELECT 'ééé' FROM", "syntax error at end of input", 18),
        ("SELECT 'ééé' (", 'syntax error at or near "("', 14),
        ("SELECT 'unterminated", 'unterminated quoted string at or near "\'unterminated"', 8),
        ("CREATE TABLE (", 'syntax error at or near "("', 14),
    ],
)
def test_unparsable(sql: str, message: str, position: int) -> None:
    statement = one(sql)
    assert statement.kind is Kind.UNPARSABLE
    assert isinstance(statement.error, GuardError)
    assert statement.error.sqlstate == "42601"
    assert (statement.error.message, statement.error.position) == (message, position)


def test_error_positions_in_a_multi_statement_text_with_multibyte_characters() -> None:
    sql = "SELECT 'ünïcödé'; ELECTRIC ENABLE t; SELEC 2; SELECT ("
    first, enable, bad, last = classify(sql)
    assert first.kind is Kind.SELECT and first.start == 0
    assert enable.electric == ElectricEnable(T) and enable.start == sql.index("ELECTRIC")
    assert bad.kind is Kind.UNPARSABLE and bad.error is not None
    assert bad.error.position == sql.index("SELEC 2") + 1
    assert last.kind is Kind.UNPARSABLE and last.error is not None
    assert last.error.position == len(sql) + 1


def test_a_statement_cut_short_by_a_semicolon_reports_the_semicolon() -> None:
    sql = "SELECT 1 +; ELECTRIC ENABLE t"
    bad, _ = classify(sql)
    assert bad.error is not None
    assert bad.error.message == 'syntax error at or near ";"'
    assert bad.error.position == sql.index(";") + 1


def test_unbalanced_parenthesis_keeps_the_rest_in_one_unparsable_statement() -> None:
    sql = "SELECT (; ELECTRIC ENABLE t"
    (bad,) = classify(sql)
    assert bad.kind is Kind.UNPARSABLE and bad.error is not None
    assert bad.error.position == sql.index(";") + 1


def test_malformed_electric_statement_is_unparsable() -> None:
    sql = "SELECT 1; ELECTRIC ENABLE"
    first, bad = classify(sql)
    assert first.kind is Kind.SELECT
    assert bad.kind is Kind.UNPARSABLE and bad.error is not None
    assert bad.error.message == "syntax error at end of input"
    assert bad.error.position == len(sql) + 1


def test_statement_offsets_with_multibyte_text() -> None:
    sql = "SELECT 'ö'; /* ü */ CREATE TABLE é (a int); ALTER TABLE é ADD b int"
    statements = classify(sql)
    assert [s.kind for s in statements] == [Kind.SELECT, Kind.CREATE_TABLE, Kind.ALTER_TABLE]
    for statement in statements:
        assert sql[statement.start : statement.start + len(statement.text)] == statement.text
    assert statements[1].text == "CREATE TABLE é (a int)"


def test_nul_ends_the_text() -> None:
    assert [s.kind for s in classify("SELECT 1\0DROP TABLE t")] == [Kind.SELECT]


def test_function_body_with_semicolons_stays_one_statement_next_to_electric() -> None:
    sql = "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END; ELECTRIC ENABLE t"
    function, enable = classify(sql)
    assert function.tag == "CREATE FUNCTION"
    assert enable.kind is Kind.ELECTRIC


# -- properties ------------------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_classify_never_raises(text: str) -> None:
    for statement in classify(text):
        assert isinstance(statement, Statement)
        if statement.kind is Kind.UNPARSABLE:
            assert isinstance(statement.error, GuardError)
            assert statement.error.position is None or statement.error.position >= 1


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("SELECT ALTER TABLE DROP ;'\"$()-*/\n éü,.1ELECTRIC"))))
def test_classify_never_raises_on_sql_like_text(text: str) -> None:
    for statement in classify(text):
        assert isinstance(statement, Statement)


PIECES = [
    "SELECT 1",
    "SELECT 'é;ü'",
    "CREATE TABLE t (a int) -- trailing",
    "/* lead */ ALTER TABLE t ADD b text",
    "DROP TABLE a, b",
    "SET search_path TO x",
    'SELECT "日本"',
    "CREATE RULE r AS ON INSERT TO t DO ALSO (NOTIFY a; NOTIFY b)",
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END",
    "DO $$ BEGIN PERFORM 1; END $$",
]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(PIECES), min_size=1, max_size=5),
    st.sampled_from([";", "; ", ";\n-- c\n", " ;; "]),
)
def test_split_agrees_with_the_parser(pieces: list[str], separator: str) -> None:
    sql = separator.join(pieces)
    statements = classify(sql)
    assert [StatementText(s.text, s.start) for s in statements] == split_statements(sql)
    for statement in statements:
        assert sql[statement.start : statement.start + len(statement.text)] == statement.text


# -- text that cannot be read as the server reads it ----------------------------------------------

_DEEP = 600


@pytest.mark.parametrize(
    ("sql", "sqlstate"),
    [
        ("ALTER TABLE t DROP COLUMN system_user", "42601"),  # reserved in pglast, not in Postgres 15
        ("ALTER TABLE t ADD CHECK (" + "(" * _DEEP + "a" + " + 1)" * _DEEP + " > 0)", "54001"),
        ("ALTER TABLE t ALTER a SET DEFAULT " + "(SELECT " * _DEEP + "1" + ")" * _DEEP, "54001"),
        ("ALTER TABLE t ALTER a SET DEFAULT " + "abs(" * _DEEP + "1" + ")" * _DEEP, "54001"),
        ("ALTER TABLE t ADD CHECK (" + "NOT " * 3 * _DEEP + "true)", "54001"),
        ("ALTER TABLE t ADD CHECK (" + " + ".join(["a"] * 20000) + " > 1)", "54001"),
        ("ALTER TABLE t DROP COLUMN c -- \udce9", "22021"),  # a byte that was not UTF-8
    ],
)
def test_unreadable_text_is_unparsable(sql: str, sqlstate: str) -> None:
    statements = classify(sql)
    assert statements[-1].kind is Kind.UNPARSABLE
    assert statements[-1].error is not None and statements[-1].error.sqlstate == sqlstate


def test_deep_statement_leaves_its_neighbours_readable() -> None:
    deep = "SELECT " + "(" * _DEEP + "1" + " + 1)" * _DEEP
    statements = classify(f"CREATE TABLE x (a int); {deep}; DROP TABLE y")
    assert [s.kind for s in statements] == [Kind.CREATE_TABLE, Kind.UNPARSABLE, Kind.DROP]
    assert statements[1].text == deep
    assert statements[1].error is not None and statements[1].error.sqlstate == "54001"


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 'a\\'; ALTER TABLE t DROP COLUMN c; --'",  # Postgres: one SELECT
        "SELECT 'a\\''; ALTER TABLE t DROP COLUMN c; -- '",  # Postgres: a SELECT, then the ALTER
        "COMMENT ON TABLE t IS 'back\\slash'",
        "COMMENT ON TABLE t IS N'back\\slash'",
    ],
)
def test_backslash_in_literal_without_standard_strings_is_unparsable(sql: str) -> None:
    (statement,) = classify(sql, standard_conforming_strings=False)
    assert statement.kind is Kind.UNPARSABLE
    assert statement.error is not None and "standard_conforming_strings" in statement.error.message
    assert statement.error.position == sql.index("'") + 1


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT E'a\\''; ALTER TABLE t DROP COLUMN c",  # escape strings read the same either way
        "SELECT $$a\\$$; ALTER TABLE t DROP COLUMN c",
        "SELECT 'plain'; ALTER TABLE t DROP COLUMN c -- \\",
    ],
)
def test_backslash_outside_plain_literals_reads_the_same(sql: str) -> None:
    off = classify(sql, standard_conforming_strings=False)
    assert [s.kind for s in off] == [s.kind for s in classify(sql)] == [Kind.SELECT, Kind.ALTER_TABLE]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60), st.booleans())
def test_classify_never_raises_in_either_string_mode(sql: str, standard: bool) -> None:
    for statement in classify(sql, standard_conforming_strings=standard):
        assert statement.kind is not Kind.UNPARSABLE or statement.error is not None


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            ["(", ")", "'", "\\", "$$", "DO ", "BEGIN ", "END", ";", "E'", "--", "\n", "a", "/*"]
        ),
        max_size=40,
    ),
    st.booleans(),
)
def test_classify_never_raises_on_sql_fragments(parts: list[str], standard: bool) -> None:
    classify("".join(parts), standard_conforming_strings=standard)
    classify("DO $x$ " + "".join(parts) + " $x$", standard_conforming_strings=standard)


# -- DO blocks ---------------------------------------------------------------------------------


def test_do_block_carries_its_statements() -> None:
    statement = one(
        "DO $$ BEGIN ASSERT (SELECT 1) = 1; ALTER TABLE t DROP COLUMN c; EXECUTE 'DROP TABLE u'; END $$"
    )
    assert statement.do is not None and statement.do.readable
    assert [(s.kind, s.text) for s in statement.do.statements] == [
        (Kind.ALTER_TABLE, "ALTER TABLE t DROP COLUMN c"),
        (Kind.DROP, "DROP TABLE u"),
    ]
    assert statement.ddl


@pytest.mark.parametrize(
    ("sql", "ddl"),
    [
        ("DO $$ BEGIN RAISE NOTICE 'x'; END $$", False),
        ("DO $$ BEGIN UPDATE t SET a = 1; END $$", False),
        ("DO $$ BEGIN CREATE INDEX ON t (a); END $$", True),
        ("DO $$ BEGIN EXECUTE format('DROP TABLE %I', 't'); END $$", False),
    ],
)
def test_do_block_is_ddl_when_it_runs_ddl(sql: str, ddl: bool) -> None:
    assert one(sql).ddl is ddl


def test_do_block_statements_are_read_a_few_levels_deep() -> None:
    sql = "DROP TABLE t"
    for level in range(6):
        sql = f"DO $l{level}$ BEGIN {sql}; END $l{level}$"
    statement = one(sql)
    readable = []
    while statement.do is not None and statement.do.statements:
        readable.append(statement.do.readable)
        (statement,) = statement.do.statements
    assert statement.kind is Kind.DO and statement.do is not None
    assert not statement.do.readable and len(readable) == 4


def test_do_block_with_unparsable_statement_is_not_readable() -> None:
    statement = one("DO $$ BEGIN ALTER TABLE system_user DROP COLUMN a; END $$")
    assert statement.do is not None and not statement.do.readable
    assert statement.do.reason == 'syntax error at or near "system_user"'


def test_do_block_in_standard_strings_off() -> None:
    (do,) = classify("DO $$ BEGIN PERFORM 'a\\'; END $$", standard_conforming_strings=False)
    assert do.do is not None and not do.do.readable


@pytest.mark.parametrize(
    ("sql", "changes"),
    [
        ("SET client_encoding = 'LATIN1'", True),
        ("SET NAMES 'SJIS'", True),
        ("RESET client_encoding", True),
        ("RESET ALL", True),
        ("SELECT set_config('client_encoding', 'SJIS', false)", True),
        ("DO $$ BEGIN END $$", True),
        ("SET search_path = a", False),
        ("SELECT 1", False),
    ],
)
def test_may_change_client_encoding(sql: str, changes: bool) -> None:
    assert one(sql).may_change_client_encoding is changes
