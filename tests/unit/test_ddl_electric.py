from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.ddl.classify import Kind, classify
from proxy.ddl.electric import (
    ElectricAssign,
    ElectricCommand,
    ElectricDisable,
    ElectricEnable,
    ElectricGrant,
    ElectricRevoke,
    ElectricSqlite,
    ElectricUnassign,
    RoleSpec,
    enable_from_call,
    parse_electric,
    qualified_name_from_text,
)
from proxy.ddl.names import QualifiedName
from proxy.errors import GuardError

T = QualifiedName(None, "t")
ST = QualifiedName("s", "t")
ALL4 = ("select", "insert", "update", "delete")

CASES: list[tuple[str, ElectricCommand]] = [
    ("ELECTRIC ENABLE t", ElectricEnable(T)),
    ("electric enable s.t", ElectricEnable(ST)),
    ('ELECTRIC ENABLE "My Schema"."Items"', ElectricEnable(QualifiedName("My Schema", "Items"))),
    ('ELECTRIC ENABLE "public"."Items"', ElectricEnable(QualifiedName("public", "Items"))),
    ("ELECTRIC ENABLE Public.Items", ElectricEnable(QualifiedName("public", "items"))),
    ('ELECTRIC ENABLE "a""b"', ElectricEnable(QualifiedName(None, 'a"b'))),
    ("ELECTRIC ENABLE été", ElectricEnable(QualifiedName(None, "été"))),
    ("ELECTRIC ENABLE ÉTÉ", ElectricEnable(QualifiedName(None, "ÉtÉ"))),  # only ASCII folds
    ('ELECTRIC ENABLE U&"d\\0061t"', ElectricEnable(QualifiedName(None, "dat"))),
    ("ELECTRIC ENABLE read", ElectricEnable(QualifiedName(None, "read"))),  # unreserved keyword
    ("ELECTRIC /* c */ ENABLE -- c\n t", ElectricEnable(T)),
    ("ALTER TABLE t ENABLE ELECTRIC", ElectricEnable(T)),
    ('alter table S."T" enable electric', ElectricEnable(QualifiedName("s", "T"))),
    ("ALTER TABLE electric.t ENABLE ELECTRIC", ElectricEnable(QualifiedName("electric", "t"))),
    ("ALTER TABLE t DISABLE ELECTRIC", ElectricDisable(T)),
    ("ELECTRIC DISABLE s.t", ElectricDisable(ST)),
    (
        "ELECTRIC GRANT ALL ON t TO 'admin'",
        ElectricGrant(ALL4, None, T, RoleSpec(name="admin"), None, None, None),
    ),
    (
        "ELECTRIC GRANT READ ON s.t TO 'projects:member'",
        ElectricGrant(
            ("select",), None, ST, RoleSpec(name="member"), QualifiedName(None, "projects"), None, None
        ),
    ),
    (
        "ELECTRIC GRANT WRITE ON t TO projects:owner",
        ElectricGrant(
            ("insert", "update", "delete"),
            None,
            T,
            RoleSpec(name="owner"),
            QualifiedName(None, "projects"),
            None,
            None,
        ),
    ),
    (
        "ELECTRIC GRANT UPDATE (title, \"Body\") ON issues TO (projects, 'member') USING issue_id/project_id "
        "CHECK (NEW.a > (1 + 2))",
        ElectricGrant(
            ("update",),
            ("title", "Body"),
            QualifiedName(None, "issues"),
            RoleSpec(name="member"),
            QualifiedName(None, "projects"),
            ("issue_id", "project_id"),
            "NEW.a > (1 + 2)",
        ),
    ),
    (
        "ELECTRIC GRANT SELECT ON t TO ANYONE",
        ElectricGrant(("select",), None, T, RoleSpec(name="anyone"), None, None, None),
    ),
    (
        "ELECTRIC GRANT INSERT ON t TO (NULL, 'x')",
        ElectricGrant(("insert",), None, T, RoleSpec(name="x"), None, None, None),
    ),
    (
        "ELECTRIC GRANT DELETE ON t TO ('public.projects', 'x')",
        ElectricGrant(
            ("delete",), None, T, RoleSpec(name="x"), QualifiedName("public", "projects"), None, None
        ),
    ),
    (
        "ELECTRIC REVOKE UPDATE (a) ON s.t FROM 'admin'",
        ElectricRevoke(("update",), ("a",), ST, RoleSpec(name="admin"), None),
    ),
    (
        "ELECTRIC REVOKE ALL ON t FROM (projects, 'owner')",
        ElectricRevoke(ALL4, None, T, RoleSpec(name="owner"), QualifiedName(None, "projects")),
    ),
    (
        "ELECTRIC ASSIGN 'admin' TO admin_users.user_id",
        ElectricAssign(QualifiedName(None, "admin_users"), "user_id", RoleSpec(name="admin"), None, None),
    ),
    (
        "ELECTRIC ASSIGN (projects, project_members.role) TO project_members.user_id IF (is_active)",
        ElectricAssign(
            QualifiedName(None, "project_members"),
            "user_id",
            RoleSpec(column=("project_members", "role")),
            QualifiedName(None, "projects"),
            "is_active",
        ),
    ),
    (
        "ELECTRIC ASSIGN role TO s.members.uid",
        ElectricAssign(QualifiedName("s", "members"), "uid", RoleSpec(column=("role",)), None, None),
    ),
    (
        "ELECTRIC ASSIGN (NULL, 'admin') TO admins.uid",
        ElectricAssign(QualifiedName(None, "admins"), "uid", RoleSpec(name="admin"), None, None),
    ),
    (
        "ELECTRIC UNASSIGN 'projects:owner' FROM projects.owner_id",
        ElectricUnassign(
            QualifiedName(None, "projects"),
            "owner_id",
            RoleSpec(name="owner"),
            QualifiedName(None, "projects"),
        ),
    ),
    ("ELECTRIC SQLITE 'CREATE TABLE x (a);'", ElectricSqlite("CREATE TABLE x (a);")),
    ("ELECTRIC SQLITE 'it''s'", ElectricSqlite("it's")),
    ("ELECTRIC SQLITE $$a 'b'$$", ElectricSqlite("a 'b'")),
    ("ELECTRIC SQLITE $tag$ x $$ y $tag$", ElectricSqlite(" x $$ y ")),
    ("ELECTRIC SQLITE E'a\\nb'", ElectricSqlite("a\nb")),
    ("ELECTRIC SQLITE ''", ElectricSqlite("")),
]


@pytest.mark.parametrize(("sql", "expected"), CASES)
def test_grammar(sql: str, expected: ElectricCommand) -> None:
    assert parse_electric(sql) == expected


@pytest.mark.parametrize(
    ("command", "tag"),
    [
        (ElectricEnable(T), "ELECTRIC ENABLE"),
        (ElectricDisable(T), "ELECTRIC DISABLE"),
        (ElectricGrant(ALL4, None, T, RoleSpec(name="x"), None, None, None), "ELECTRIC GRANT"),
        (ElectricRevoke(ALL4, None, T, RoleSpec(name="x"), None), "ELECTRIC REVOKE"),
        (ElectricAssign(T, "c", RoleSpec(name="x"), None, None), "ELECTRIC ASSIGN"),
        (ElectricUnassign(T, "c", RoleSpec(name="x"), None), "ELECTRIC UNASSIGN"),
        (ElectricSqlite(""), "ELECTRIC SQLITE"),
    ],
)
def test_command_tags(command: ElectricCommand, tag: str) -> None:
    assert command.tag == tag


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "ALTER TABLE electric.t ADD COLUMN a int",
        'ALTER TABLE t ENABLE "electric"',
        '"ELECTRIC" ENABLE t',
        "ALTER TABLE t ENABLE TRIGGER electric",
        "",
        "-- ELECTRIC ENABLE t",
    ],
)
def test_not_electric(sql: str) -> None:
    assert parse_electric(sql) is None


# (statement, message, 1-based position)
ERRORS = [
    ("ELECTRIC ENABLE", "syntax error at end of input", 16),
    ("ELECTRIC ENABLE  -- nothing", "syntax error at end of input", 28),
    ("ELECTRIC FROBNICATE t", 'syntax error at or near "FROBNICATE"', 10),
    ("ELECTRIC ENABLE t extra", 'syntax error at or near "extra"', 19),
    ("ELECTRIC ENABLE a.b.c", 'syntax error at or near "."', 20),
    ("ELECTRIC GRANT FLY ON t TO 'x'", 'syntax error at or near "FLY"', 16),
    ("ELECTRIC GRANT READ t TO 'x'", 'syntax error at or near "t"', 21),
    ("ELECTRIC GRANT READ ON t TO a.b", 'syntax error at or near "."', 30),
    ("ELECTRIC GRANT READ ON t TO 'x' CHECK ()", 'syntax error at or near ")"', 40),
    ("ELECTRIC GRANT READ ON t TO 'x' CHECK (a", "syntax error at end of input", 41),
    ("ELECTRIC GRANT READ ON t TO 'x' USING a/", "syntax error at end of input", 41),
    ("ELECTRIC REVOKE READ ON t TO 'x'", 'syntax error at or near "TO"', 27),
    ("ELECTRIC ASSIGN 'x' TO t", "syntax error at end of input", 25),
    ("ELECTRIC UNASSIGN 'x' TO t.c", 'syntax error at or near "TO"', 23),
    ("ELECTRIC SQLITE x", 'syntax error at or near "x"', 17),
    ("ELECTRIC SQLITE 'unterminated", 'unterminated quoted string at or near "\'unterminated"', 17),
    ("ALTER TABLE t ENABLE ELECTRIC now", 'syntax error at or near "now"', 31),
    ('ELECTRIC ENABLE "é" junk', 'syntax error at or near "junk"', 21),
]


@pytest.mark.parametrize(("sql", "message", "position"), ERRORS)
def test_syntax_errors(sql: str, message: str, position: int) -> None:
    with pytest.raises(GuardError) as caught:
        parse_electric(sql)
    assert caught.value.sqlstate == "42601"
    assert caught.value.severity == "ERROR"
    assert caught.value.message == message
    assert caught.value.position == position


def test_positions_count_characters_of_the_whole_text() -> None:
    sql = "SELECT 'ééé'; ELECTRIC ENABLE t junk; SELECT 2"
    start = sql.index("ELECTRIC")
    end = sql.index(";", start)
    with pytest.raises(GuardError) as caught:
        parse_electric(sql, start, end)
    assert caught.value.position == sql.index("junk") + 1


def test_end_of_statement_before_a_semicolon_is_reported_at_the_semicolon() -> None:
    sql = "ELECTRIC ENABLE ; SELECT 1"
    with pytest.raises(GuardError) as caught:
        parse_electric(sql, 0, sql.index(";"))
    assert caught.value.message == 'syntax error at or near ";"'
    assert caught.value.position == sql.index(";") + 1


def test_statement_inside_a_larger_text() -> None:
    sql = "SELECT 1; ELECTRIC ENABLE t; SELECT 2"
    start = sql.index("ELECTRIC")
    assert parse_electric(sql, start, sql.index(";", start)) == ElectricEnable(T)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["t"], ElectricEnable(T)),
        (["s.t"], ElectricEnable(ST)),
        (['"S"."T"'], ElectricEnable(QualifiedName("S", "T"))),
        (["Items"], ElectricEnable(QualifiedName(None, "items"))),
        (["public", "Items"], ElectricEnable(QualifiedName("public", "Items"))),
        (["a b"], None),
        ([], None),
        (["a", "b", "c"], None),
    ],
)
def test_enable_from_call(args: list[str], expected: ElectricEnable | None) -> None:
    assert enable_from_call(args) == expected


def test_qualified_name_from_text_rejects_junk() -> None:
    assert qualified_name_from_text("'x'") is None
    assert qualified_name_from_text("a.b.c") is None
    assert qualified_name_from_text("") is None


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("CALL electric.electrify('t')", ElectricEnable(T)),
        ("call ELECTRIC.ELECTRIFY('s', 't')", ElectricEnable(ST)),
        ("CALL electric.electrify('public', 'Items')", ElectricEnable(QualifiedName("public", "Items"))),
    ],
)
def test_call_electrify_is_enable(sql: str, expected: ElectricEnable) -> None:
    (statement,) = classify(sql)
    assert statement.kind is Kind.ELECTRIC
    assert statement.tag == "ELECTRIC ENABLE"
    assert statement.electric == expected


@pytest.mark.parametrize(
    "sql",
    [
        "CALL electric.electrify(name => 't')",
        "CALL electric.electrify(1)",
        "CALL other.electrify('t')",
        "CALL electrify('t')",
        "CALL electric.electrify('t', 'u', 'v')",
    ],
)
def test_other_calls_stay_calls(sql: str) -> None:
    (statement,) = classify(sql)
    assert statement.kind is Kind.CALL


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_random_text_after_electric_never_raises_anything_else(tail: str) -> None:
    try:
        parse_electric("ELECTRIC " + tail)
    except GuardError as error:
        assert error.sqlstate == "42601"
        assert error.position is not None
