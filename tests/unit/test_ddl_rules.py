from __future__ import annotations

from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.ddl.checks import conditional_checks
from proxy.ddl.classify import Statement, classify
from proxy.ddl.names import QualifiedName
from proxy.ddl.rules import (
    ADDITIVE_ONLY,
    ColumnDescription,
    ConstraintDescription,
    Decision,
    TableDescription,
    TableId,
    Verdict,
    check,
    check_electrifiable,
)
from proxy.errors import GuardError

# A small database: search_path app, public.
TABLES = {("public", "items"), ("public", "plain"), ("app", "Docs"), ("app", "notes"), ("other", "t")}
ELECTRIFIED = {TableId("public", "items"), TableId("app", "Docs")}
INDEXES = {
    ("public", "items_idx"): TableId("public", "items"),
    ("app", "docs_idx"): TableId("app", "Docs"),
    ("public", "plain_idx"): TableId("public", "plain"),
}
SEARCH_PATH = ("app", "public")


def _lookup(name: QualifiedName, known: set[tuple[str, str]]) -> tuple[str, str] | None:
    for schema in (name.schema,) if name.schema else SEARCH_PATH:
        if (schema, name.name) in known:
            return schema, name.name
    return None


def resolve(name: QualifiedName) -> TableId | None:
    found = _lookup(name, TABLES | set(INDEXES))
    return TableId(*found) if found else None


def index_table(name: QualifiedName) -> TableId | None:
    found = _lookup(name, set(INDEXES))
    return INDEXES[found] if found else None


def decide(
    sql: str, *, any_electrified: bool = True, do_blocks: Literal["reject", "allow"] = "reject"
) -> list[Decision]:
    return [
        check(
            statement,
            resolve,
            ELECTRIFIED.__contains__,
            index_table=index_table,
            schema_has_electrified=lambda s: any(t.schema == s for t in ELECTRIFIED),
            any_electrified=any_electrified,
            do_blocks=do_blocks,
        )
        for statement in classify(sql)
    ]


def decide_one(sql: str) -> Decision:
    (decision,) = decide(sql)
    return decision


CASES: list[tuple[str, Verdict, str | None]] = [
    # allowed and captured
    ("ALTER TABLE items ADD COLUMN c text", Verdict.CAPTURE, None),
    ("ALTER TABLE items ADD c int4 NOT NULL", Verdict.CAPTURE, None),
    (
        "ALTER TABLE items ADD c timestamptz NULL, ADD d uuid, ADD COLUMN IF NOT EXISTS e jsonb",
        Verdict.CAPTURE,
        None,
    ),
    ("ALTER TABLE public.items ADD c boolean", Verdict.CAPTURE, None),
    ('ALTER TABLE "Docs" ADD c varchar', Verdict.CAPTURE, None),
    ("ALTER TABLE ONLY items ADD c bytea", Verdict.CAPTURE, None),
    ("ALTER TABLE IF EXISTS items ADD c date", Verdict.CAPTURE, None),
    ("ALTER TABLE items ADD c int, OWNER TO bob", Verdict.CAPTURE, None),
    ("CREATE INDEX ON items (a)", Verdict.CAPTURE, None),
    ('CREATE UNIQUE INDEX CONCURRENTLY i ON app."Docs" (a)', Verdict.CAPTURE, None),
    ("DROP INDEX items_idx", Verdict.CAPTURE, None),
    ("DROP INDEX app.docs_idx, plain_idx", Verdict.CAPTURE, None),
    # allowed, not captured
    ("ALTER TABLE items ENABLE TRIGGER t", Verdict.ALLOW, None),
    ("ALTER TABLE items ENABLE ALWAYS TRIGGER t, ENABLE REPLICA TRIGGER u", Verdict.ALLOW, None),
    ("ALTER TABLE items DISABLE TRIGGER ALL", Verdict.ALLOW, None),
    ("ALTER TABLE items OWNER TO bob", Verdict.ALLOW, None),
    ("ALTER TABLE items ALTER COLUMN a SET STORAGE PLAIN", Verdict.ALLOW, None),
    ("ALTER TABLE items ALTER a SET STATISTICS 100", Verdict.ALLOW, None),
    ("ALTER TABLE items ALTER a SET (n_distinct = 1)", Verdict.ALLOW, None),
    ("ALTER TABLE items ALTER a RESET (n_distinct)", Verdict.ALLOW, None),
    ("ALTER TABLE items ALTER a SET COMPRESSION pglz", Verdict.ALLOW, None),
    ("ALTER TABLE items SET (fillfactor = 50)", Verdict.ALLOW, None),
    ("ALTER TABLE items RESET (fillfactor)", Verdict.ALLOW, None),
    ("ALTER TABLE items SET ACCESS METHOD heap", Verdict.ALLOW, None),
    ("ALTER TABLE items SET TABLESPACE fast", Verdict.ALLOW, None),
    ("ALTER INDEX items_idx SET (fillfactor = 50)", Verdict.ALLOW, None),
    ("CREATE TRIGGER tr AFTER INSERT ON items EXECUTE FUNCTION f()", Verdict.ALLOW, None),
    ("COMMENT ON TABLE items IS 'x'", Verdict.ALLOW, None),
    ("GRANT SELECT ON items TO bob", Verdict.ALLOW, None),
    ("TRUNCATE items", Verdict.ALLOW, None),
    ("CREATE POLICY p ON items USING (true)", Verdict.ALLOW, None),
    ("CREATE TABLE x (id int PRIMARY KEY)", Verdict.ALLOW, None),
    ("CREATE TABLE c () INHERITS (items)", Verdict.ALLOW, None),
    ("SELECT * FROM items", Verdict.ALLOW, None),
    ("ELECTRIC ENABLE plain", Verdict.ALLOW, None),
    ("CALL some_procedure()", Verdict.ALLOW, None),
    # the same DDL on tables that are not electrified
    ("ALTER TABLE plain DROP COLUMN a", Verdict.ALLOW, None),
    ("ALTER TABLE notes ALTER COLUMN a TYPE bigint", Verdict.ALLOW, None),
    ("ALTER TABLE other.t ADD c cidr DEFAULT '1.2.3.4'", Verdict.ALLOW, None),
    ("ALTER TABLE public.plain RENAME TO p2", Verdict.ALLOW, None),
    ("DROP TABLE plain, notes", Verdict.ALLOW, None),
    ("DROP INDEX plain_idx", Verdict.ALLOW, None),
    ("ALTER INDEX plain_idx RENAME TO x", Verdict.ALLOW, None),
    ("CREATE INDEX ON plain (a)", Verdict.ALLOW, None),
    ("DROP SCHEMA other CASCADE", Verdict.ALLOW, None),
    ("DROP SCHEMA public", Verdict.ALLOW, None),  # Postgres itself refuses: not empty
    ("ALTER TABLE IF EXISTS missing DROP COLUMN a", Verdict.ALLOW, None),
    ("DROP TABLE IF EXISTS missing", Verdict.ALLOW, None),
    ("ALTER TABLE items_idx RENAME COLUMN a TO b", Verdict.ALLOW, None),  # an index, not the table
    ("ALTER TABLE plain ATTACH PARTITION notes FOR VALUES IN (1)", Verdict.ALLOW, None),
    # rejected
    ("DROP TABLE items", Verdict.REJECT, "EX004"),
    ("DROP TABLE plain, items", Verdict.REJECT, "EX004"),
    ('DROP TABLE IF EXISTS missing, app."Docs" CASCADE', Verdict.REJECT, "EX004"),
    ("DROP SCHEMA app CASCADE", Verdict.REJECT, "EX004"),
    ("DROP SCHEMA other, public CASCADE", Verdict.REJECT, "EX004"),
    ("ALTER TABLE items DROP COLUMN a", Verdict.REJECT, "EX010"),
    ("ALTER TABLE ONLY items DROP COLUMN IF EXISTS a", Verdict.REJECT, "EX010"),
    ("ALTER TABLE items ALTER COLUMN a TYPE bigint", Verdict.REJECT, "EX009"),
    ("ALTER TABLE items ALTER a SET NOT NULL", Verdict.REJECT, "EX007"),
    ("ALTER TABLE items ALTER a DROP NOT NULL", Verdict.REJECT, "EX007"),
    ("ALTER TABLE items ALTER a SET DEFAULT 1", Verdict.REJECT, "EX007"),
    ("ALTER TABLE items ALTER a DROP DEFAULT", Verdict.REJECT, "EX007"),
    ("ALTER TABLE items ADD CONSTRAINT k CHECK (a > 0)", Verdict.REJECT, "EX007"),
    ("ALTER TABLE items ADD PRIMARY KEY (a)", Verdict.REJECT, "EX007"),
    ("ALTER TABLE items DROP CONSTRAINT k", Verdict.REJECT, "EX007"),
    ("ALTER TABLE items ENABLE ROW LEVEL SECURITY", Verdict.REJECT, "EX007"),
    ("ALTER TABLE items REPLICA IDENTITY DEFAULT", Verdict.REJECT, "EX007"),
    ("ALTER TABLE items SET UNLOGGED", Verdict.REJECT, "EX007"),
    ("ALTER TABLE items INHERIT parent", Verdict.REJECT, "EX007"),
    ("ALTER TABLE items ALTER a ADD GENERATED ALWAYS AS IDENTITY", Verdict.REJECT, "EX007"),
    ("ALTER TABLE plain ATTACH PARTITION items FOR VALUES IN (1)", Verdict.REJECT, "EX007"),
    ('ALTER TABLE plain DETACH PARTITION app."Docs"', Verdict.REJECT, "EX007"),
    ("ALTER TABLE IF EXISTS items ALTER a SET NOT NULL", Verdict.REJECT, "EX007"),
    ("ALTER TABLE items RENAME COLUMN a TO b", Verdict.REJECT, "EX008"),
    ("ALTER TABLE items RENAME a TO b", Verdict.REJECT, "EX008"),
    ("ALTER TABLE items RENAME CONSTRAINT k TO l", Verdict.REJECT, "EX012"),
    ("ALTER TABLE items RENAME TO things", Verdict.REJECT, "EX002"),
    ("ALTER TABLE IF EXISTS ONLY public.items RENAME TO things", Verdict.REJECT, "EX002"),
    ("ALTER VIEW items RENAME TO things", Verdict.REJECT, "EX002"),
    ("ALTER TABLE items SET SCHEMA other", Verdict.REJECT, "EX002"),
    ("ALTER SCHEMA app RENAME TO app2", Verdict.REJECT, "EX002"),
    ("ALTER INDEX items_idx RENAME TO x", Verdict.REJECT, "EX003"),
    ("ALTER TABLE items_idx RENAME TO x", Verdict.REJECT, "EX003"),
    ("ALTER TRIGGER tr ON items RENAME TO x", Verdict.REJECT, "EX003"),
    ("ALTER POLICY p ON items RENAME TO x", Verdict.REJECT, "EX003"),
    ("ALTER TABLE items ADD c cidr", Verdict.REJECT, "EX005"),
    ("ALTER TABLE items ADD c json", Verdict.REJECT, "EX005"),
    ("ALTER TABLE items ADD c serial", Verdict.REJECT, "EX005"),
    ("ALTER TABLE items ADD c timetz", Verdict.REJECT, "EX005"),
    ("ALTER TABLE items ADD c time(1)", Verdict.REJECT, "EX005"),
    ("ALTER TABLE items ADD c timestamp(3)", Verdict.REJECT, "EX005"),
    ("ALTER TABLE items ADD c int4[]", Verdict.REJECT, "EX005"),
    ("ALTER TABLE items ADD c char", Verdict.REJECT, "EX005"),
    ("ALTER TABLE items ADD c varchar(255)", Verdict.REJECT, "EX005"),
    ("ALTER TABLE items ADD c mood", Verdict.REJECT, "EX005"),
    ("ALTER TABLE items ADD c public.text", Verdict.REJECT, "EX005"),
    ("ALTER TABLE items ADD c text DEFAULT 'x'", Verdict.REJECT, "EX006"),
    ("ALTER TABLE items ADD c int CHECK (c > 0)", Verdict.REJECT, "EX011"),
    ("ALTER TABLE items ADD c int PRIMARY KEY", Verdict.REJECT, "EX011"),
    ("ALTER TABLE items ADD c int UNIQUE", Verdict.REJECT, "EX011"),
    ("ALTER TABLE items ADD c int GENERATED ALWAYS AS (1) STORED", Verdict.REJECT, "EX011"),
    ("ALTER TABLE items ADD c int GENERATED BY DEFAULT AS IDENTITY", Verdict.REJECT, "EX011"),
    ("ALTER TABLE items ADD c uuid REFERENCES plain (id)", Verdict.REJECT, "EX011"),
    # one bad subcommand rejects the whole statement
    ("ALTER TABLE items ADD c int, DROP COLUMN d", Verdict.REJECT, "EX010"),
    ("ALTER TABLE items OWNER TO bob, ALTER a TYPE text", Verdict.REJECT, "EX009"),
    ("DO $$ BEGIN EXECUTE 'DROP TABLE ' || 'items'; END $$", Verdict.REJECT, "EX013"),
    ("SELEC 1", Verdict.REJECT, "42601"),
    ("ELECTRIC ENABLE", Verdict.REJECT, "42601"),
]


@pytest.mark.parametrize(("sql", "verdict", "code"), CASES)
def test_rules(sql: str, verdict: Verdict, code: str | None) -> None:
    decision = decide_one(sql)
    assert decision.verdict is verdict
    if code is None:
        assert decision.error is None
    else:
        assert decision.error is not None and decision.error.sqlstate == code


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("DROP TABLE items", 'Cannot drop electrified table "public"."items"'),
        ("ALTER TABLE items DROP COLUMN a", 'Cannot drop column "a" of electrified table "public"."items"'),
        (
            'ALTER TABLE "Docs" ALTER a TYPE int8',
            'Cannot change type of column "a" of electrified table "app"."Docs"',
        ),
        (
            "ALTER TABLE items ALTER a SET NOT NULL",
            'Cannot alter column "a" of electrified table "public"."items"',
        ),
        (
            "ALTER TABLE items ADD CONSTRAINT k UNIQUE (a)",
            'Cannot alter column "" of electrified table "public"."items"',
        ),
        ("ALTER TABLE items RENAME a TO b", 'Cannot rename column "a" of electrified table "public"."items"'),
        (
            "ALTER TABLE items RENAME CONSTRAINT k TO l",
            'Cannot rename constraint "k" of electrified table "public"."items"',
        ),
        ("ALTER TABLE items RENAME TO x", 'Cannot rename electrified table "public"."items"'),
        ("ALTER INDEX items_idx RENAME TO x", 'Cannot rename property of electrified table "public"."items"'),
        ("ALTER TABLE items ADD c cidr", 'Cannot electrify column of type "cidr"'),
        ("ALTER TABLE items ADD c varchar(255)", 'Cannot electrify column of type "varchar(255)"'),
        ("ALTER TABLE items ADD c int[]", 'Cannot electrify column of type "int4[]"'),
        ("ALTER TABLE items ADD c text DEFAULT ''", "Cannot electrify column with DEFAULT clause"),
        ("ALTER TABLE items ADD c int CHECK (c > 0)", "Cannot electrify column with CHECK constraint"),
        ("ALTER TABLE items ADD c int PRIMARY KEY", "Cannot electrify column with PRIMARY KEY constraint"),
        ("ALTER TABLE items ADD c int UNIQUE", "Cannot electrify column with UNIQUE constraint"),
        (
            "ALTER TABLE items ADD c int GENERATED ALWAYS AS (1) STORED",
            "Cannot electrify column with GENERATED constraint",
        ),
        (
            "ALTER TABLE items ADD c int REFERENCES plain",
            "Cannot electrify column with FOREIGN KEY constraint",
        ),
        ("DROP SCHEMA app CASCADE", 'Cannot drop schema "app" because it contains electrified tables'),
        (
            "ALTER TABLE items SET SCHEMA other",
            'Cannot move electrified table "public"."items" to another schema',
        ),
        (
            "DO $$ BEGIN EXECUTE format('DROP TABLE %I', 'items'); END $$",
            "DO blocks that run SQL the proxy cannot read are not allowed while tables are electrified",
        ),
    ],
)
def test_messages(sql: str, message: str) -> None:
    error = decide_one(sql).error
    assert error is not None
    assert error.message == message


def test_rejection_carries_detail_hint_and_table_fields() -> None:
    error = decide_one('ALTER TABLE app."Docs" DROP COLUMN body').error
    assert isinstance(error, GuardError)
    assert error.severity == "ERROR"
    assert error.sqlstate == "EX010"
    assert error.detail == f'Table "app"."Docs" is electrified. {ADDITIVE_ONLY}.'
    assert error.hint
    assert (error.schema, error.table, error.column) == ("app", "Docs", "body")


@pytest.mark.parametrize(
    "sql",
    [
        "DROP TABLE items",
        "ALTER TABLE items ALTER a SET NOT NULL",
        "ALTER TABLE items ADD c json",
        "ALTER TABLE items RENAME TO x",
        "ALTER INDEX items_idx RENAME TO x",
    ],
)
def test_every_table_rejection_names_the_table_and_what_is_allowed(sql: str) -> None:
    error = decide_one(sql).error
    assert error is not None
    assert error.detail is not None and '"public"."items"' in error.detail and ADDITIVE_ONLY in error.detail
    assert error.hint
    assert (error.schema, error.table) == ("public", "items")


def test_capture_reports_tables_and_added_columns() -> None:
    decision = decide_one("ALTER TABLE items ADD a text, ADD b int8 NOT NULL")
    assert decision.tables == (TableId("public", "items"),)
    assert [c.name for c in decision.added_columns] == ["a", "b"]
    assert decide_one("DROP INDEX items_idx, app.docs_idx").tables == (
        TableId("app", "Docs"),
        TableId("public", "items"),
    )
    assert decide_one("CREATE INDEX ON items (a)").tables == (TableId("public", "items"),)


def test_names_resolve_through_the_callable() -> None:
    # `Docs` unqualified is app.Docs through the search_path; `docs` folds and is unknown.
    assert decide_one('DROP TABLE "Docs"').verdict is Verdict.REJECT
    assert decide_one("DROP TABLE Docs").verdict is Verdict.ALLOW


@pytest.mark.parametrize(
    ("any_electrified", "policy", "verdict"),
    [
        (True, "reject", Verdict.REJECT),
        (False, "reject", Verdict.ALLOW),
        (True, "allow", Verdict.ALLOW),
        (False, "allow", Verdict.ALLOW),
    ],
)
def test_do_block_policy(any_electrified: bool, policy: Literal["reject", "allow"], verdict: Verdict) -> None:
    sql = "DO $$ BEGIN EXECUTE 'DROP TABLE ' || 'items'; END $$"
    (decision,) = decide(sql, any_electrified=any_electrified, do_blocks=policy)
    assert decision.verdict is verdict


def test_multi_statement_text_is_decided_per_statement() -> None:
    verdicts = [d.verdict for d in decide("SELECT 1; ALTER TABLE items ADD c text; DROP TABLE items")]
    assert verdicts == [Verdict.ALLOW, Verdict.CAPTURE, Verdict.REJECT]


# -- DO blocks, judged by the statements they run ----------------------------------------------

# sqitch's verify and revert scripts, and everyday application code: no DDL on electrified tables.
PLAIN_DO_BLOCKS = [
    "DO $$ BEGIN END $$",
    "DO $$ BEGIN RAISE NOTICE 'hello %', 1; END $$",
    "DO $$ BEGIN ASSERT (SELECT count(*) FROM items) >= 0; END $$",
    "DO $$ BEGIN ASSERT (SELECT has_table_privilege('items', 'select')); END $$",
    "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_tables WHERE tablename = 'items') THEN "
    "RAISE EXCEPTION 'missing items'; END IF; END $$",
    "DO $$ DECLARE r record; BEGIN FOR r IN SELECT a FROM items LOOP "
    "UPDATE items SET a = r.a + 1 WHERE a = r.a; END LOOP; END $$",
    "DO $$ BEGIN PERFORM pg_sleep(0); INSERT INTO plain VALUES (1); DELETE FROM items WHERE false; END $$",
    "DO $$ BEGIN EXECUTE 'UPDATE items SET a = 1 WHERE false'; END $$",
    "DO $$ BEGIN CREATE TABLE fresh (a int); ALTER TABLE plain DROP COLUMN a; END $$",
    "DO LANGUAGE plpgsql $body$ BEGIN DROP TABLE plain; END $body$",
]


@pytest.mark.parametrize("sql", PLAIN_DO_BLOCKS)
def test_do_block_without_ddl_on_electrified_tables_passes(sql: str) -> None:
    assert decide_one(sql).verdict is Verdict.ALLOW


@pytest.mark.parametrize(
    ("sql", "code"),
    [
        ("DO $$ BEGIN ALTER TABLE items DROP COLUMN a; END $$", "EX010"),
        ("DO $$ BEGIN EXECUTE 'DROP TABLE items'; END $$", "EX004"),
        ("DO $$ BEGIN EXECUTE $q$ALTER TABLE items RENAME TO x$q$; END $$", "EX002"),
        ("DO $$ BEGIN IF true THEN DROP TABLE plain, items; END IF; END $$", "EX004"),
        ("DO $$ BEGIN PERFORM 1; EXCEPTION WHEN others THEN DROP TABLE items; END $$", "EX004"),
        ("DO $a$ BEGIN DO $b$ BEGIN DROP TABLE items; END $b$; END $a$", "EX004"),
        ("DO $$ DECLARE c refcursor; BEGIN OPEN c FOR EXECUTE 'DROP TABLE items'; END $$", "EX004"),
        ("DO $$ BEGIN EXECUTE 'ALTER TABLE ' || 'items DROP COLUMN a'; END $$", "EX013"),
        ("DO $$ DECLARE t text := 'items'; BEGIN EXECUTE format('DROP TABLE %I', t); END $$", "EX013"),
        ("DO $$ DECLARE q text := 'DROP TABLE items'; BEGIN EXECUTE q; END $$", "EX013"),
        ("DO LANGUAGE plperl $$ spi_exec_query('DROP TABLE items') $$", "EX013"),
        ("DO $$ BEGIN ALTER TABLE items ENABLE ELECTRIC; END $$", "EX013"),  # does not parse
        ("DO $$ BEGIN ALTER TABLE system_user DROP COLUMN a; END $$", "EX013"),  # pglast's grammar
    ],
)
def test_do_block_judged_by_its_statements(sql: str, code: str) -> None:
    decision = decide_one(sql)
    assert decision.verdict is Verdict.REJECT
    assert decision.error is not None and decision.error.sqlstate == code


def test_readable_do_block_is_judged_whatever_the_policy() -> None:
    # The policy is about DO blocks the guard cannot read; one it reads is plain SQL.
    (decision,) = decide("DO $$ BEGIN DROP TABLE items; END $$", do_blocks="allow")
    assert decision.verdict is Verdict.REJECT
    assert decision.error is not None and decision.error.sqlstate == "EX004"


def test_server_side_checks_reach_into_do_blocks() -> None:
    (statement,) = classify("DO $$ BEGIN RAISE NOTICE 'x'; ALTER TABLE s.t DROP COLUMN a; END $$")
    (check_,) = conditional_checks(statement)
    assert (check_.kind, check_.schema, check_.name, check_.error.sqlstate) == ("relation", "s", "t", "EX010")


def test_do_block_adding_a_column_is_captured() -> None:
    decision = decide_one("DO $$ BEGIN ALTER TABLE items ADD COLUMN c text; RAISE NOTICE 'done'; END $$")
    assert decision.verdict is Verdict.CAPTURE
    assert decision.tables == (TableId("public", "items"),)
    assert [c.name for c in decision.added_columns] == ["c"]


def test_opaque_do_block_says_why() -> None:
    error = decide_one("DO $$ BEGIN EXECUTE format('DROP TABLE %I', 'items'); END $$").error
    assert error is not None and error.detail is not None
    assert "EXECUTE format('DROP TABLE %I', 'items')" in error.detail


def test_unparsable_keeps_the_parse_error() -> None:
    (decision,) = decide("SELECT 'é' FROM (")
    assert decision.error is not None
    assert decision.error.sqlstate == "42601"
    assert decision.error.position == len("SELECT 'é' FROM (") + 1


# -- electrify-time checks -----------------------------------------------------------------

ITEMS = TableId("public", "items")


def describe(
    *,
    relkind: str = "r",
    columns: tuple[ColumnDescription, ...] = (
        ColumnDescription("id", "uuid", has_default=False, not_null=True),
        ColumnDescription("title", "text", has_default=False, not_null=False),
    ),
    primary_key: tuple[str, ...] = ("id",),
    constraints: tuple[ConstraintDescription, ...] = (ConstraintDescription("items_pkey", "p"),),
) -> TableDescription:
    return TableDescription(ITEMS, relkind, columns, primary_key, constraints)


def test_a_plain_table_can_be_electrified() -> None:
    assert check_electrifiable(describe()) is None
    fk = (ConstraintDescription("items_pkey", "p"), ConstraintDescription("fk", "f"))
    assert check_electrifiable(describe(constraints=fk)) is None
    enum = ColumnDescription(
        "mood", "mood", has_default=False, not_null=False, enum_labels=("happy", "sad_2")
    )
    assert check_electrifiable(describe(columns=(*describe().columns, enum))) is None


@pytest.mark.parametrize(
    ("description", "message"),
    [
        (describe(relkind="v"), '"public"."items" is not an ordinary table'),
        (describe(relkind="p"), '"public"."items" is not an ordinary table'),
        (
            describe(columns=(ColumnDescription("a", "cidr", has_default=False, not_null=False),)),
            'Cannot electrify "public"."items" because some of its columns have types not supported by '
            'Electric: "a" cidr',
        ),
        (
            describe(columns=(ColumnDescription("a", "varchar(9)", has_default=False, not_null=False),)),
            'Cannot electrify "public"."items" because some of its columns have types not supported by '
            'Electric: "a" varchar(9)',
        ),
        (
            describe(
                columns=(
                    ColumnDescription(
                        "m", "mood", has_default=False, not_null=False, enum_labels=("Big One",)
                    ),
                )
            ),
            'Cannot electrify "public"."items" because some of its columns have types not supported by '
            'Electric: "m" mood',
        ),
        (
            describe(columns=(ColumnDescription("a", "int4", has_default=True, not_null=False),)),
            'Cannot electrify "public"."items" because some of its columns have DEFAULT expressions '
            'which are not currently supported by Electric: "a"',
        ),
        (
            describe(primary_key=()),
            'Cannot electrify "public"."items" because it doesn\'t have a PRIMARY KEY.',
        ),
        (
            describe(
                constraints=(ConstraintDescription("items_pkey", "p"), ConstraintDescription("ck", "c"))
            ),
            'Cannot electrify "public"."items" because some of its columns have CHECK, UNIQUE, EXCLUDE or '
            'user-defined constraints which are not currently supported by Electric: "ck"',
        ),
    ],
)
def test_tables_that_cannot_be_electrified(description: TableDescription, message: str) -> None:
    error = check_electrifiable(description)
    assert error is not None
    assert error.sqlstate == "EX014"
    assert error.message == message
    assert (error.schema, error.table) == ("public", "items")
    assert error.hint


def test_any_schema_can_be_electrified() -> None:
    other = TableDescription(TableId("tenant_1", "items"), "r", describe().columns, ("id",), ())
    assert check_electrifiable(other) is None


# -- properties ------------------------------------------------------------------------------

# (template, how an electrified table takes it): "add" is ADD COLUMN (allowed when the
# type is supported), "safe" is allowed, "bad" is rejected.
SUBCOMMANDS = [
    ("ADD COLUMN {c} {type}", "add"),
    ("ADD {c} {type} DEFAULT 1", "bad"),
    ("ADD COLUMN IF NOT EXISTS {c} {type} NOT NULL", "add"),
    ("ADD {c} {type} NULL", "add"),
    ("DROP COLUMN {c}", "bad"),
    ("DROP COLUMN IF EXISTS {c} CASCADE", "bad"),
    ("ALTER COLUMN {c} TYPE {type}", "bad"),
    ("ALTER {c} SET DEFAULT 0", "bad"),
    ("ALTER {c} DROP DEFAULT", "bad"),
    ("ALTER {c} SET NOT NULL", "bad"),
    ("ALTER {c} DROP NOT NULL", "bad"),
    ("ALTER {c} SET STATISTICS 10", "safe"),
    ("ALTER {c} SET STORAGE EXTERNAL", "safe"),
    ("ADD CONSTRAINT k1 CHECK ({c} > 0)", "bad"),
    ("ADD PRIMARY KEY ({c})", "bad"),
    ("ADD UNIQUE ({c})", "bad"),
    ("DROP CONSTRAINT k1", "bad"),
    ("ENABLE TRIGGER tr", "safe"),
    ("DISABLE TRIGGER ALL", "safe"),
    ("OWNER TO bob", "safe"),
    ("SET (fillfactor = 70)", "safe"),
    ("ENABLE ROW LEVEL SECURITY", "bad"),
    ("REPLICA IDENTITY FULL", "bad"),
    ("SET LOGGED", "bad"),
    ("ALTER {c} ADD GENERATED ALWAYS AS IDENTITY", "bad"),
]
TYPES = [
    "int",
    "text",
    "varchar(10)",
    "cidr",
    "int[]",
    "timestamp(3)",
    "mood",
    "jsonb",
    "numeric(5, 2)",
    "uuid",
]
SUPPORTED_SPELLINGS = {"int", "text", "jsonb", "uuid"}
COLUMNS = ["a", "b", '"Mixed"', "col_1"]
NOT_ELECTRIFIED = [
    "plain",
    "public.plain",
    "app.notes",
    "notes",
    "other.t",
    "IF EXISTS missing",
    "ONLY plain",
]
ELECTRIFIED_NAMES = ["items", "public.items", '"Docs"', 'app."Docs"', "ONLY items", "IF EXISTS items"]


@st.composite
def subcommands(draw: st.DrawFn) -> list[tuple[str, str]]:
    """Subcommand texts with their expected treatment on an electrified table."""
    chosen = []
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        template, rule = draw(st.sampled_from(SUBCOMMANDS))
        type_name = draw(st.sampled_from(TYPES))
        if rule == "add" and type_name not in SUPPORTED_SPELLINGS:
            rule = "bad"
        chosen.append((template.format(c=draw(st.sampled_from(COLUMNS)), type=type_name), rule))
    return chosen


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(NOT_ELECTRIFIED), subcommands())
def test_alter_table_on_tables_that_are_not_electrified_is_never_rejected(
    table: str, commands: list[tuple[str, str]]
) -> None:
    sql = f"ALTER TABLE {table} " + ", ".join(text for text, _ in commands)
    (decision,) = decide(sql)
    assert decision.verdict is Verdict.ALLOW, sql


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(ELECTRIFIED_NAMES), subcommands())
def test_alter_table_on_an_electrified_table_is_judged_whole(
    table: str, commands: list[tuple[str, str]]
) -> None:
    sql = f"ALTER TABLE {table} " + ", ".join(text for text, _ in commands)
    (decision,) = decide(sql)
    rules = {rule for _, rule in commands}
    if "bad" in rules:
        expected = Verdict.REJECT
    elif "add" in rules:
        expected = Verdict.CAPTURE
    else:
        expected = Verdict.ALLOW
    assert decision.verdict is expected, sql


def _check_all(statements: list[Statement], *, electrified: bool) -> list[Decision]:
    return [
        check(
            s,
            resolve,
            (lambda t: electrified) if electrified else ELECTRIFIED.__contains__,
            index_table=index_table,
            schema_has_electrified=lambda s: electrified,
            any_electrified=electrified,
        )
        for s in statements
    ]


@settings(max_examples=500, deadline=None)
@given(st.text(), st.booleans())
def test_classify_and_check_never_raise_on_random_text(text: str, electrified: bool) -> None:
    for decision in _check_all(classify(text), electrified=electrified):
        assert isinstance(decision, Decision)
        if decision.verdict is Verdict.REJECT:
            assert isinstance(decision.error, GuardError)


SQLISH = list("ALTER TABLE DROP COLUMN ADD RENAME INDEX items ;'\"$()-*/\n é,.1 ELECTRIC DO SET")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(SQLISH)), st.booleans())
def test_classify_and_check_never_raise_on_sql_like_text(text: str, electrified: bool) -> None:
    for decision in _check_all(classify(text), electrified=electrified):
        assert isinstance(decision, Decision)
