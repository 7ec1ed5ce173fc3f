"""The catalog schema against a real Postgres: install, the procedures, privileges, snapshot, watcher.

The module's database is owned by alice and the catalog is installed by alice, as the proxy
would with alice's upstream URL: the SECURITY DEFINER procedures run as alice.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from psycopg.errors import Diagnostic

from proxy.catalog.cache import CatalogSnapshot, CatalogWatcher, Relation, load_snapshot
from proxy.catalog.install import install, install_sync, latest_version
from proxy.ddl.rules import (
    ColumnDescription,
    ConstraintDescription,
    TableDescription,
    TableId,
    check_electrifiable,
)
from proxy.embedded import EmbeddedPostgres
from proxy.errors import CatalogError
from tests.pgfixtures import ALICE_PASSWORD

DB = "catalog_t"
CHANNEL = "electric_catalog"

Conn = psycopg.Connection[tuple[Any, ...]]


# -- fixtures and helpers ----------------------------------------------------------------


@pytest.fixture(scope="module")
def db(pg: EmbeddedPostgres) -> Iterator[str]:
    pg.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    pg.execute(f"CREATE DATABASE {DB} OWNER alice")
    with psycopg.connect(alice_url(pg, DB), autocommit=True) as conn:
        install_sync(conn)
    yield DB
    pg.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


@pytest.fixture
def fresh_db(pg: EmbeddedPostgres) -> Iterator[str]:
    """An empty database owned by alice, without the catalog."""
    name = f"{DB}_fresh"
    pg.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    pg.execute(f"CREATE DATABASE {name} OWNER alice")
    yield name
    pg.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def alice(pg: EmbeddedPostgres, db: str) -> Iterator[Conn]:
    """alice, logged in with her password: an ordinary application role."""
    with psycopg.connect(alice_url(pg, db), autocommit=True) as conn:
        yield conn


@pytest.fixture
def superuser(pg: EmbeddedPostgres, db: str) -> Iterator[Conn]:
    with pg.connect(db) as conn:
        yield conn


@pytest.fixture
def stranger(pg: EmbeddedPostgres, db: str) -> Iterator[Conn]:
    """A session of md5user, who owns nothing here (session_user really is md5user)."""
    with pg.connect(db) as conn:
        conn.execute("SET SESSION AUTHORIZATION md5user")
        yield conn


@pytest.fixture
def listener(pg: EmbeddedPostgres, db: str) -> Iterator[Conn]:
    with pg.connect(db) as conn:
        conn.execute(f"LISTEN {CHANNEL}")
        yield conn


def alice_url(pg: EmbeddedPostgres, db: str) -> str:
    return pg.url(db, user="alice", password=ALICE_PASSWORD)


def sql_error(conn: Conn, statement: str) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as info:
        conn.execute(statement)
    return info.value


class Notice(NamedTuple):
    severity: str | None
    sqlstate: str | None
    message: str | None


def notices(conn: Conn) -> list[Notice]:
    """Notices the connection receives from now on.

    The fields are copied in the handler: a Diagnostic is only valid while it runs.
    """
    collected: list[Notice] = []

    def collect(diag: Diagnostic) -> None:
        collected.append(Notice(diag.severity_nonlocalized, diag.sqlstate, diag.message_primary))

    conn.add_notice_handler(collect)
    return collected


def is_electrified(conn: Conn, table: str) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM electric.electrified WHERE relid = %s::regclass", (table,)
    ).fetchone()
    return row is not None and row[0] == 1


def replica_identity(conn: Conn, table: str) -> str:
    row = conn.execute(
        "SELECT relreplident::text FROM pg_class WHERE oid = %s::regclass", (table,)
    ).fetchone()
    assert row is not None
    return str(row[0])


def notifications_until_marker(pg: EmbeddedPostgres, db: str, listener: Conn) -> list[dict[str, Any]]:
    """Everything delivered on the channel before a marker committed now.

    Notifications are delivered in commit order, so what has not arrived before the marker was
    not committed before it: this tells "not delivered" apart from "not delivered yet" without
    sleeping.
    """
    with pg.connect(db) as conn:
        conn.execute("SELECT pg_notify(%s, 'marker')", (CHANNEL,))
    received: list[dict[str, Any]] = []
    for notify in listener.notifies(timeout=10):
        if notify.payload == "marker":
            return received
        received.append(json.loads(notify.payload))
    raise AssertionError("the marker notification never arrived")


def catalog_rows(conn: Conn, query: str, *params: object) -> list[tuple[Any, ...]]:
    return conn.execute(query, params).fetchall()


def scalar(conn: Conn, query: str, *params: object) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


# -- install -----------------------------------------------------------------------------


def test_install_is_idempotent_and_versioned(pg: EmbeddedPostgres, db: str, alice: Conn) -> None:
    versions = [v for (v,) in catalog_rows(alice, "SELECT version FROM electric.schema_version ORDER BY 1")]
    assert versions == list(range(1, latest_version() + 1))
    assert install_sync(alice) == latest_version()

    async def again() -> int:
        async with await psycopg.AsyncConnection.connect(alice_url(pg, db), autocommit=True) as conn:
            return await install(conn)

    assert asyncio.run(again()) == latest_version()
    assert catalog_rows(alice, "SELECT count(*) FROM electric.schema_version") == [(latest_version(),)]


def test_concurrent_first_install(pg: EmbeddedPostgres, fresh_db: str) -> None:
    async def run() -> list[int]:
        conns = [
            await psycopg.AsyncConnection.connect(alice_url(pg, fresh_db), autocommit=True) for _ in range(3)
        ]
        try:
            return list(await asyncio.gather(*(install(conn) for conn in conns)))
        finally:
            for conn in conns:
                await conn.close()

    assert asyncio.run(run()) == [latest_version()] * 3
    with pg.connect(fresh_db) as conn:
        assert catalog_rows(conn, "SELECT count(*) FROM electric.schema_version") == [(latest_version(),)]


def test_install_under_another_schema_name(pg: EmbeddedPostgres, fresh_db: str) -> None:
    with psycopg.connect(alice_url(pg, fresh_db), autocommit=True) as conn:
        assert install_sync(conn, "catalog_alt") == latest_version()
        conn.execute("CREATE TABLE t (id int8 PRIMARY KEY)")
        conn.execute("CALL catalog_alt.electrify('t')")
        assert catalog_rows(conn, "SELECT table_name FROM catalog_alt.electrified") == [("t",)]
        assert catalog_rows(conn, "SELECT to_regnamespace('electric')") == [(None,)]


def test_install_refuses_an_open_transaction(pg: EmbeddedPostgres, db: str) -> None:
    with psycopg.connect(alice_url(pg, db)) as conn:  # not autocommit
        conn.execute("SELECT 1")
        with pytest.raises(CatalogError):
            install_sync(conn)


# -- electrify ---------------------------------------------------------------------------


def test_electrify_happy_path(pg: EmbeddedPostgres, db: str, alice: Conn, listener: Conn) -> None:
    alice.execute("CREATE TYPE happy_mood AS ENUM ('ok', 'Very_good')")
    alice.execute("CREATE TABLE happy_parent (id uuid PRIMARY KEY)")
    alice.execute(
        """CREATE TABLE happy (
               id uuid PRIMARY KEY, parent uuid NOT NULL REFERENCES happy_parent (id),
               a bool, b bytea, c date, d float4, e float8, f int2, g int4, h int8, i jsonb,
               j text, k time, l timestamp, m timestamptz, n varchar, o happy_mood)"""
    )
    # Inside a transaction: nothing is delivered before the commit.
    with alice.transaction():
        alice.execute("CALL electric.electrify('happy')")
        assert notifications_until_marker(pg, db, listener) == []
    assert notifications_until_marker(pg, db, listener) == [
        {
            "catalog": "electric",
            "op": "electrify",
            "relid": scalar(alice, "SELECT 'happy'::regclass::oid"),
            "schema": "public",
            "table": "happy",
        }
    ]
    row = alice.execute(
        "SELECT schema_name, table_name, electrified_by, electrified_at IS NOT NULL, migration_id"
        " FROM electric.electrified WHERE relid = 'happy'::regclass"
    ).fetchone()
    assert row is not None and row[:4] == ("public", "happy", "alice", True)  # migration_id: its direct one
    assert replica_identity(alice, "happy") == "f"


def test_electrify_rolled_back_leaves_nothing(
    pg: EmbeddedPostgres, db: str, alice: Conn, listener: Conn
) -> None:
    alice.execute("CREATE TABLE rolled (id int8 PRIMARY KEY)")
    alice.execute("BEGIN")
    alice.execute("CALL electric.electrify('rolled')")
    alice.execute("ROLLBACK")
    assert notifications_until_marker(pg, db, listener) == []
    assert not is_electrified(alice, "rolled")
    assert replica_identity(alice, "rolled") == "d"


def test_already_electrified_is_a_notice(alice: Conn) -> None:
    alice.execute("CREATE TABLE twice (id int8 PRIMARY KEY)")
    alice.execute("CALL electric.electrify('twice')")
    seen = notices(alice)
    alice.execute("CALL electric.electrify('public', 'twice')")
    assert seen == [Notice("NOTICE", "00000", 'table "public"."twice" is already electrified')]


# (table DDL, message, DETAIL suffix after rules.py's sentence, hint)
_TYPES_HINT = (
    "Supported column types (unsized, not arrays): bool, bytea, date, float4, float8, int2, int4, "
    "int8, jsonb, text, time, timestamp, timestamptz, uuid, varchar, and enums whose labels are plain words."
)
REJECTIONS: list[tuple[str, str, str, str, str]] = [
    (
        "no_pk",
        "CREATE TABLE no_pk (id int8)",
        'Cannot electrify "public"."no_pk" because it doesn\'t have a PRIMARY KEY.',
        "",
        "Add a PRIMARY KEY before electrifying the table.",
    ),
    (
        "bad_types",
        "CREATE TABLE bad_types (id int8 PRIMARY KEY, a varchar(10), b int4[], c timestamp(3),"
        " d numeric, e json, f bad_mood, g char)",
        'Cannot electrify "public"."bad_types" because some of its columns have types not supported by '
        'Electric: "a" varchar(10), "b" int4[], "c" timestamp(3), "d" numeric, "e" json, '
        '"f" public.bad_mood, "g" bpchar(1)',
        ' Columns with unsupported types: "a" varchar(10), "b" int4[], "c" timestamp(3), "d" numeric, '
        '"e" json, "f" public.bad_mood, "g" bpchar(1).',
        _TYPES_HINT,
    ),
    (
        "domain_text",
        "CREATE TABLE domain_text (id int8 PRIMARY KEY, a text_domain)",
        'Cannot electrify "public"."domain_text" because some of its columns have types not supported by '
        'Electric: "a" public.text_domain',
        ' Columns with unsupported types: "a" public.text_domain.',
        _TYPES_HINT,
    ),
    (
        "defaults",
        "CREATE TABLE defaults (id int8 PRIMARY KEY, a int4 DEFAULT 1,"
        " b int8 GENERATED ALWAYS AS IDENTITY, c int8 GENERATED ALWAYS AS (id * 2) STORED)",
        'Cannot electrify "public"."defaults" because some of its columns have DEFAULT expressions which '
        'are not currently supported by Electric: "a", "b", "c"',
        ' Columns with DEFAULT, identity or generated values: "a", "b", "c".',
        "Drop the DEFAULT expressions before electrifying the table.",
    ),
    (
        "constrained",
        "CREATE TABLE constrained (id int8 PRIMARY KEY, a int4 UNIQUE, b int4 CHECK (b > 0),"
        " c int4, EXCLUDE USING btree (c WITH =))",
        'Cannot electrify "public"."constrained" because some of its columns have CHECK, UNIQUE, EXCLUDE '
        "or user-defined constraints which are not currently supported by Electric: "
        '"constrained_a_key", "constrained_b_check", "constrained_c_excl"',
        ' Constraints: "constrained_a_key", "constrained_b_check", "constrained_c_excl".',
        "Only PRIMARY KEY and FOREIGN KEY constraints are allowed on electrified tables.",
    ),
    (
        "a_view",
        "CREATE VIEW a_view AS SELECT 1 AS id",
        '"public"."a_view" is not an ordinary table',
        "",
        "Only ordinary tables can be electrified.",
    ),
    (
        "parted",
        "CREATE TABLE parted (id int8 PRIMARY KEY) PARTITION BY RANGE (id)",
        '"public"."parted" is not an ordinary table',
        "",
        "Only ordinary tables can be electrified.",
    ),
    (
        "unlogged",
        "CREATE UNLOGGED TABLE unlogged (id int8 PRIMARY KEY)",
        'Cannot electrify "public"."unlogged" because it is an unlogged table',
        "",
        "Only permanent tables can be electrified: temporary and unlogged tables are not replicated.",
    ),
]


@pytest.fixture(scope="module")
def rejection_types(pg: EmbeddedPostgres, db: str) -> None:
    with psycopg.connect(alice_url(pg, db), autocommit=True) as conn:
        conn.execute("CREATE TYPE bad_mood AS ENUM ('ok', 'not ok')")
        conn.execute("CREATE DOMAIN text_domain AS text")


@pytest.mark.usefixtures("rejection_types")
@pytest.mark.parametrize(
    ("table", "ddl", "message", "detail", "hint"), REJECTIONS, ids=[r[0] for r in REJECTIONS]
)
def test_electrify_rejections(
    alice: Conn, table: str, ddl: str, message: str, detail: str, hint: str
) -> None:
    alice.execute(ddl)
    error = sql_error(alice, f"CALL electric.electrify('{table}')")
    assert error.sqlstate == "EX014"
    assert error.diag.message_primary == message
    assert error.diag.message_detail == (
        f'Table "public"."{table}" does not meet the requirements for electrified tables.{detail}'
    )
    assert error.diag.message_hint == hint
    assert (error.diag.schema_name, error.diag.table_name) == ("public", table)
    assert not is_electrified(alice, table)
    if ddl.startswith("CREATE TABLE"):
        assert replica_identity(alice, table) == "d"  # the ALTER went with the error


def test_temporary_tables_are_rejected(alice: Conn) -> None:
    alice.execute("CREATE TEMPORARY TABLE temp_t (id int8 PRIMARY KEY)")
    error = sql_error(alice, "CALL electric.electrify('temp_t')")
    assert error.sqlstate == "EX014"
    assert error.diag.message_primary is not None
    assert error.diag.message_primary.endswith("because it is a temporary table")


def _description(table: str, columns: list[ColumnDescription], pk: bool, kind: str = "r") -> TableDescription:
    constraints = (ConstraintDescription(f"{table}_pkey", "p"),) if pk else ()
    return TableDescription(
        TableId("public", table), kind, tuple(columns), ("id",) if pk else (), constraints
    )


def test_messages_match_rules_py(alice: Conn) -> None:
    """The same table refused by SQL and by check_electrifiable gets the same message and hint."""
    cases = {
        "rp_no_pk": _description("rp_no_pk", [ColumnDescription("id", "int8", False, False)], pk=False),
        "rp_types": _description(
            "rp_types",
            [
                ColumnDescription("id", "int8", False, True),
                ColumnDescription("a", "varchar(9)", False, False),
                ColumnDescription("b", "int4[]", False, False),
            ],
            pk=True,
        ),
        "rp_defaults": _description(
            "rp_defaults",
            [ColumnDescription("id", "int8", False, True), ColumnDescription("a", "text", True, False)],
            pk=True,
        ),
    }
    alice.execute("CREATE TABLE rp_no_pk (id int8)")
    alice.execute("CREATE TABLE rp_types (id int8 PRIMARY KEY, a varchar(9), b int4[])")
    alice.execute("CREATE TABLE rp_defaults (id int8 PRIMARY KEY, a text DEFAULT 'x')")
    for table, description in cases.items():
        expected = check_electrifiable(description)
        assert expected is not None
        error = sql_error(alice, f"CALL electric.electrify('{table}')")
        assert (error.sqlstate, error.diag.message_primary, error.diag.message_hint) == (
            expected.sqlstate,
            expected.message,
            expected.hint,
        )
        assert expected.detail is not None and error.diag.message_detail is not None
        assert error.diag.message_detail.startswith(expected.detail)


# -- names -------------------------------------------------------------------------------


def test_quoted_mixed_case_names_and_explicit_schema(alice: Conn) -> None:
    alice.execute('CREATE SCHEMA "Other"')
    alice.execute('CREATE TABLE "Other"."Items" (id int8 PRIMARY KEY)')
    alice.execute("CREATE SCHEMA other")
    alice.execute("CREATE TABLE other.items (id int8 PRIMARY KEY)")

    # Two arguments: exact names, no case folding.
    error = sql_error(alice, "CALL electric.electrify('other', 'Items')")
    assert (error.sqlstate, error.diag.message_primary) == (
        "42P01",
        'relation "other"."Items" does not exist',
    )
    alice.execute("CALL electric.electrify('Other', 'Items')")
    assert is_electrified(alice, '"Other"."Items"')
    assert not is_electrified(alice, "other.items")

    # One argument: SQL syntax, so unquoted names fold and quoted ones keep their case.
    alice.execute("CALL electric.electrify('Other.Items')")
    assert is_electrified(alice, "other.items")
    seen = notices(alice)
    alice.execute("""CALL electric.electrify('"Other"."Items"')""")
    assert [n.message for n in seen] == ['table "Other"."Items" is already electrified']


def test_resolution_through_the_callers_search_path(alice: Conn) -> None:
    alice.execute("CREATE SCHEMA sp")
    alice.execute("CREATE TABLE sp.t (id int8 PRIMARY KEY)")
    alice.execute("CREATE TABLE public.t (id int8 PRIMARY KEY)")
    alice.execute("CREATE TABLE sp.t2 (id int8 PRIMARY KEY)")
    alice.execute("SET search_path = sp, public")
    alice.execute("CALL electric.electrify('t')")
    alice.execute("CALL electric.electrify(NULL, 't2')")  # exact name, resolved on the path
    alice.execute("RESET search_path")
    assert is_electrified(alice, "sp.t")
    assert is_electrified(alice, "sp.t2")
    assert not is_electrified(alice, "public.t")

    error = sql_error(alice, "CALL electric.electrify('no_such_table')")
    assert (error.sqlstate, error.diag.message_primary) == (
        "42P01",
        'relation "no_such_table" does not exist',
    )


# -- privileges --------------------------------------------------------------------------


def test_non_owner_cannot_electrify(alice: Conn, stranger: Conn) -> None:
    alice.execute("CREATE TABLE owned (id int8 PRIMARY KEY)")
    for call in ("CALL electric.electrify('owned')", "CALL electric._electrify('public.owned'::regclass)"):
        error = sql_error(stranger, call)
        assert (error.sqlstate, error.diag.message_primary) == (
            "42501",
            'must be owner of table "public"."owned"',
        )
    assert not is_electrified(alice, "owned")


def test_application_role_cannot_touch_catalog_tables(alice: Conn, stranger: Conn) -> None:
    alice.execute("CREATE TABLE guarded (id int8 PRIMARY KEY)")
    alice.execute("CALL electric.electrify('guarded')")
    statements = [
        "SELECT * FROM electric.electrified",
        "INSERT INTO electric.electrified (relid, schema_name, table_name) VALUES (1, 'x', 'y')",
        "UPDATE electric.electrified SET table_name = 'x'",
        "DELETE FROM electric.electrified",
        "TRUNCATE electric.grants",
        "INSERT INTO electric.sqlite_statements (sql) VALUES ('x')",
        "DELETE FROM electric.schema_version",
        "SELECT electric._qualified('a', 'b')",  # internal helpers are closed too
        "CREATE TABLE electric.mine (id int)",
    ]
    for statement in statements:
        assert sql_error(stranger, statement).sqlstate == "42501", statement
    assert is_electrified(alice, "guarded")


def test_superuser_session_on_table_the_definer_cannot_alter(superuser: Conn) -> None:
    # The catalog was installed by alice, so the procedures run as alice, who cannot alter a
    # superuser's table: REPLICA IDENTITY FULL is set as the caller, the table's owner.
    superuser.execute("CREATE TABLE su_table (id int8 PRIMARY KEY)")
    superuser.execute("CALL electric.electrify('su_table')")
    assert is_electrified(superuser, "su_table")
    assert scalar(superuser, "SELECT relreplident FROM pg_class WHERE oid = 'su_table'::regclass") == "f"


# -- the tag marker ----------------------------------------------------------------------


def test_proxy_tag_notice_arrives_above_client_min_messages(alice: Conn) -> None:
    alice.execute("CREATE TABLE tagged (id int8 PRIMARY KEY, owner_id uuid, role text)")
    alice.execute("SET client_min_messages = warning")
    seen = notices(alice)
    calls = [
        ("CALL electric.electrify(NULL, 'tagged', 'ELECTRIC ENABLE')", "ELECTRIC ENABLE"),
        ("CALL electric.electrify(NULL, 'tagged', 'ELECTRIC ENABLE')", "ELECTRIC ENABLE"),  # already
        (
            "CALL electric.grant('{select}', NULL, 'tagged', 'anyone', proxy_tag => 'ELECTRIC GRANT')",
            "ELECTRIC GRANT",
        ),
        (
            "CALL electric.revoke('{select}', NULL, 'tagged', 'anyone', proxy_tag => 'ELECTRIC REVOKE')",
            "ELECTRIC REVOKE",
        ),
        (
            "CALL electric.assign(NULL, 'tagged', 'owner_id', NULL, '{role}', proxy_tag => 'ELECTRIC ASSIGN')",
            "ELECTRIC ASSIGN",
        ),
        (
            "CALL electric.unassign(NULL, 'tagged', 'owner_id', NULL, '{role}', proxy_tag => 'ELECTRIC UNASSIGN')",
            "ELECTRIC UNASSIGN",
        ),
        ("CALL electric.sqlite('SELECT 1', 'ELECTRIC SQLITE')", "ELECTRIC SQLITE"),
        ("CALL electric.disable(NULL, 'tagged', 'ELECTRIC DISABLE')", "ELECTRIC DISABLE"),
    ]
    for call, tag in calls:
        seen.clear()
        alice.execute(call)
        # Only the tag: the "already electrified" NOTICE obeys the client's setting.
        assert [(n.sqlstate, n.message) for n in seen] == [("EXTAG", tag)], call
    seen.clear()
    alice.execute("CALL electric.electrify('tagged')")
    assert seen == []
    assert alice.execute("SHOW client_min_messages").fetchone() == ("warning",)


# -- disable -----------------------------------------------------------------------------


def test_disable_removes_the_mark_and_its_rules(
    pg: EmbeddedPostgres, db: str, alice: Conn, listener: Conn
) -> None:
    alice.execute("CREATE TABLE dis (id int8 PRIMARY KEY, user_id uuid)")
    alice.execute("CALL electric.electrify('dis')")
    alice.execute("CALL electric.grant('{all}', NULL, 'dis', 'anyone')")
    alice.execute("CALL electric.assign(NULL, 'dis', 'user_id', 'member', NULL)")
    notifications_until_marker(pg, db, listener)

    alice.execute("CALL electric.disable('dis')")
    assert not is_electrified(alice, "dis")
    assert catalog_rows(alice, "SELECT count(*) FROM electric.grants WHERE relid = 'dis'::regclass") == [(0,)]
    assert catalog_rows(alice, "SELECT count(*) FROM electric.assignments WHERE relid = 'dis'::regclass") == [
        (0,)
    ]
    assert [n["op"] for n in notifications_until_marker(pg, db, listener)] == ["disable"]

    seen = notices(alice)
    alice.execute("CALL electric.disable('public', 'dis')")
    assert [n.message for n in seen] == ['table "public"."dis" is not electrified']
    assert notifications_until_marker(pg, db, listener) == []


# -- grant, revoke, assign, unassign, sqlite ------------------------------------------------


@pytest.fixture
def rbac_tables(alice: Conn) -> Conn:
    # Disable before dropping: a table dropped directly would leave its catalog rows behind.
    for table in ("comments", "members", "projects", "loose"):
        if scalar(alice, "SELECT to_regclass(%s) IS NOT NULL", table):
            alice.execute("CALL electric.disable(%s)", (table,))
    alice.execute("DROP TABLE IF EXISTS comments, members, projects, loose CASCADE")
    alice.execute("CREATE TABLE projects (id uuid PRIMARY KEY, name text)")
    alice.execute(
        "CREATE TABLE members (id uuid PRIMARY KEY, project_id uuid REFERENCES projects (id),"
        " user_id uuid, role text)"
    )
    alice.execute(
        "CREATE TABLE comments (id uuid PRIMARY KEY, member_id uuid REFERENCES members (id), body text, extra text)"
    )
    alice.execute("CREATE TABLE loose (id uuid PRIMARY KEY)")
    for table in ("projects", "members", "comments"):
        alice.execute(f"CALL electric.electrify('{table}')")
    return alice


def grants(conn: Conn) -> list[tuple[Any, ...]]:
    return catalog_rows(
        conn,
        "SELECT privilege, columns, role_name, scope_table, using_path, check_expr FROM electric.grants"
        " WHERE relid = 'comments'::regclass ORDER BY role_name, id",
    )


def test_grant_and_revoke_storage(rbac_tables: Conn) -> None:
    conn = rbac_tables
    conn.execute(
        "CALL electric.grant('{write}', NULL, 'comments', 'member', NULL, NULL, 'projects',"
        " '{member_id,project_id}', 'body IS NOT NULL')"
    )
    conn.execute("CALL electric.grant('{select}', 'public', 'comments', 'anyone', '{body}')")
    conn.execute("CALL electric.grant('{read}', 'public', 'comments', 'anyone', '{id,body}')")  # widens
    assert grants(conn) == [
        ("select", ["id", "body"], "anyone", None, None, None),
        ("insert", None, "member", "projects", ["member_id", "project_id"], "body IS NOT NULL"),
        ("update", None, "member", "projects", ["member_id", "project_id"], "body IS NOT NULL"),
        ("delete", None, "member", "projects", ["member_id", "project_id"], "body IS NOT NULL"),
    ]
    scope = catalog_rows(
        conn,
        "SELECT DISTINCT scope_relid = 'projects'::regclass FROM electric.grants WHERE scope_table IS NOT NULL",
    )
    assert scope == [(True,)]

    # Column revokes narrow a grant (an all-columns grant becomes the other columns) ...
    conn.execute("CALL electric.revoke('{update}', NULL, 'comments', 'member', '{body}', NULL, 'projects')")
    conn.execute("CALL electric.revoke('{select}', NULL, 'comments', 'anyone', '{id}')")
    # ... a grant left with no column goes, and so does one revoked without columns.
    conn.execute("CALL electric.revoke('{delete}', NULL, 'comments', 'member', NULL, NULL, 'projects')")
    conn.execute("CALL electric.revoke('{select}', NULL, 'comments', 'anyone', '{body}')")
    conn.execute("CALL electric.revoke('{select}', NULL, 'comments', 'nobody')")  # never granted: fine
    assert grants(conn) == [
        ("insert", None, "member", "projects", ["member_id", "project_id"], "body IS NOT NULL"),
        (
            "update",
            ["id", "member_id", "extra"],
            "member",
            "projects",
            ["member_id", "project_id"],
            "body IS NOT NULL",
        ),
    ]


@pytest.mark.parametrize(
    ("call", "sqlstate", "message", "column"),
    [
        (
            "CALL electric.grant('{select}', NULL, 'loose', 'anyone')",
            "EX015",
            'table "public"."loose" is not electrified',
            None,
        ),
        (
            "CALL electric.revoke('{select}', NULL, 'loose', 'anyone')",
            "EX015",
            'table "public"."loose" is not electrified',
            None,
        ),
        (
            "CALL electric.grant('{select}', NULL, 'comments', 'anyone', '{body,nope}')",
            "EX016",
            'column "nope" of relation "public"."comments" does not exist',
            "nope",
        ),
        (
            "CALL electric.grant('{upsert}', NULL, 'comments', 'anyone')",
            "EX016",
            'unknown privilege "upsert"',
            None,
        ),
        (
            "CALL electric.grant('{select}', NULL, 'comments', '')",
            "EX016",
            "ELECTRIC GRANT needs a role",
            None,
        ),
        (
            "CALL electric.grant('{select}', NULL, 'comments', 'm', NULL, NULL, 'projects', '{body,id}')",
            "EX016",
            'column "body" of relation "public"."comments" in the USING path is not a foreign key',
            "body",
        ),
        (
            "CALL electric.grant('{select}', NULL, 'comments', 'm', NULL, NULL, 'projects', '{member_id,nope}')",
            "EX016",
            'column "nope" of relation "public"."members" in the USING path does not exist',
            "nope",
        ),
        (
            "CALL electric.grant('{select}', NULL, 'comments', 'm', NULL, NULL, 'no_scope')",
            "42P01",
            'relation "no_scope" does not exist',
            None,
        ),
        (
            "CALL electric.grant('{select}', NULL, 'nothing_here', 'anyone')",
            "42P01",
            'relation "nothing_here" does not exist',
            None,
        ),
        (
            "CALL electric.assign(NULL, 'loose', 'id', 'admin', NULL)",
            "EX015",
            'table "public"."loose" is not electrified',
            None,
        ),
        (
            "CALL electric.assign(NULL, 'members', 'nope', 'admin', NULL)",
            "EX016",
            'column "nope" of relation "public"."members" does not exist',
            "nope",
        ),
        (
            "CALL electric.assign(NULL, 'members', 'user_id', NULL, '{nope}')",
            "EX016",
            'column "nope" of relation "public"."members" does not exist',
            "nope",
        ),
        (
            "CALL electric.assign(NULL, 'members', 'user_id', NULL, '{projects,name}')",
            "EX016",
            'role column projects.name is not a column of "public"."members"',
            None,
        ),
        (
            "CALL electric.assign(NULL, 'members', 'user_id', 'admin', '{role}')",
            "EX016",
            "ELECTRIC ASSIGN needs either a role name or a role column",
            None,
        ),
        (
            "CALL electric.unassign(NULL, 'members', 'user_id', NULL, NULL)",
            "EX016",
            "ELECTRIC UNASSIGN needs either a role name or a role column",
            None,
        ),
        ("CALL electric.sqlite('  ')", "EX016", "ELECTRIC SQLITE needs a statement", None),
    ],
)
def test_rbac_validation(
    rbac_tables: Conn, call: str, sqlstate: str, message: str, column: str | None
) -> None:
    before = catalog_rows(
        rbac_tables,
        "SELECT (SELECT count(*) FROM electric.grants), (SELECT count(*) FROM electric.assignments),"
        " (SELECT count(*) FROM electric.sqlite_statements)",
    )
    error = sql_error(rbac_tables, call)
    assert (error.sqlstate, error.diag.message_primary) == (sqlstate, message)
    if column is not None:
        assert error.diag.column_name == column
    after = catalog_rows(
        rbac_tables,
        "SELECT (SELECT count(*) FROM electric.grants), (SELECT count(*) FROM electric.assignments),"
        " (SELECT count(*) FROM electric.sqlite_statements)",
    )
    assert after == before


def test_assign_and_unassign_storage(rbac_tables: Conn) -> None:
    conn = rbac_tables
    conn.execute(
        "CALL electric.assign('public', 'members', 'user_id', NULL, '{public,members,role}', NULL, 'projects', 'role <> ''x''')"
    )
    conn.execute("CALL electric.assign(NULL, 'members', 'user_id', 'admin', NULL)")
    conn.execute(
        "CALL electric.assign(NULL, 'members', 'user_id', 'admin', NULL, if_expr => 'true')"
    )  # replaces
    rows = catalog_rows(
        conn,
        "SELECT user_column, role_name, role_column, scope_table, if_expr FROM electric.assignments"
        " WHERE relid = 'members'::regclass ORDER BY id",
    )
    assert rows == [
        ("user_id", None, "role", "projects", "role <> 'x'"),
        ("user_id", "admin", None, None, "true"),
    ]
    conn.execute(
        "CALL electric.unassign(NULL, 'members', 'user_id', NULL, '{members,role}', NULL, 'projects')"
    )
    conn.execute("CALL electric.unassign(NULL, 'members', 'user_id', 'nobody', NULL)")  # never assigned: fine
    rows = catalog_rows(
        conn, "SELECT role_name FROM electric.assignments WHERE relid = 'members'::regclass ORDER BY id"
    )
    assert rows == [("admin",)]


def test_sqlite_statements(alice: Conn, stranger: Conn) -> None:
    alice.execute("CALL electric.sqlite($$CREATE TABLE local_only (id TEXT PRIMARY KEY)$$)")
    rows = catalog_rows(
        alice, "SELECT sql, created_by FROM electric.sqlite_statements ORDER BY id DESC LIMIT 1"
    )
    assert rows == [("CREATE TABLE local_only (id TEXT PRIMARY KEY)", "alice")]
    error = sql_error(stranger, "CALL electric.sqlite('SELECT 1')")
    assert (error.sqlstate, error.diag.message_primary) == ("42501", f"must be owner of database {DB}")


# -- snapshot and watcher ----------------------------------------------------------------


def test_load_snapshot(pg: EmbeddedPostgres, db: str, alice: Conn, superuser: Conn) -> None:
    alice.execute("CREATE SCHEMA snap")
    alice.execute("CREATE TABLE snap.t (id int8 PRIMARY KEY, a text)")
    alice.execute("CREATE INDEX t_a ON snap.t (a)")
    alice.execute("CREATE TABLE snap.plain (id int8 PRIMARY KEY)")
    alice.execute("CREATE VIEW snap.v AS SELECT 1 AS one")
    alice.execute("CALL electric.electrify('snap.t')")
    alice.execute("CREATE TABLE snap.gone (id int8 PRIMARY KEY)")
    alice.execute("CALL electric.electrify('snap.gone')")
    # Behind the proxy's back: a rename shows under the new name, a dropped table disappears.
    alice.execute("ALTER TABLE snap.t RENAME TO renamed")
    superuser.execute("DROP TABLE snap.gone")
    oid = scalar(alice, "SELECT 'snap.renamed'::regclass::oid")

    async def load() -> CatalogSnapshot:
        async with await psycopg.AsyncConnection.connect(alice_url(pg, db), autocommit=True) as conn:
            return await load_snapshot(conn)

    snapshot = asyncio.run(load())
    assert {"snap", "public", "electric", "pg_catalog"} <= snapshot.schemas
    assert not any(s.startswith(("pg_toast", "pg_temp")) for s in snapshot.schemas)
    assert snapshot.relation("snap", "renamed") == Relation(oid, "r")
    assert snapshot.relations[("snap", "t_a")].relkind == "i"
    assert snapshot.relations[("snap", "v")].relkind == "v"
    assert snapshot.relation("pg_catalog", "pg_class") is not None
    assert snapshot.electrified.get(("snap", "renamed")) == oid
    assert snapshot.is_electrified("snap", "renamed")
    assert not snapshot.is_electrified("snap", "plain")
    assert not any(name == "gone" for _, name in snapshot.electrified)
    assert snapshot.index_table("snap", "t_a") == ("snap", "renamed")
    assert snapshot.index_table("snap", "t_pkey") == ("snap", "renamed")
    assert snapshot.index_table("snap", "plain_pkey") is None
    assert snapshot.schema_has_electrified("snap")
    assert snapshot.version == latest_version()


def test_load_snapshot_without_catalog(pg: EmbeddedPostgres, fresh_db: str) -> None:
    async def load() -> CatalogSnapshot:
        async with await psycopg.AsyncConnection.connect(alice_url(pg, fresh_db), autocommit=True) as conn:
            return await load_snapshot(conn)

    snapshot = asyncio.run(load())
    assert snapshot.version is None
    assert not snapshot.any_electrified
    assert "public" in snapshot.schemas


def _terminate(pg: EmbeddedPostgres, db: str, application_name: str) -> int:
    with pg.connect(db) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (application_name,),
        ).fetchall()
    return len(rows)


def test_watcher_follows_notifications_refresh_and_reconnects(
    pg: EmbeddedPostgres, db: str, alice: Conn, caplog: pytest.LogCaptureFixture
) -> None:
    alice.execute("CREATE SCHEMA watched")
    for name in ("w1", "w2", "w3"):
        alice.execute(f"CREATE TABLE watched.{name} (id int8 PRIMARY KEY)")
    url = make_conninfo(alice_url(pg, db), application_name="catalog-watcher-test")

    def electrified(name: str) -> Callable[[CatalogSnapshot], bool]:
        return lambda snapshot: snapshot.is_electrified("watched", name)

    async def run() -> None:
        async with CatalogWatcher(url, debounce=0.01, min_backoff=0.05) as watcher:
            first = await watcher.wait_ready(timeout=10)
            assert first.version == latest_version()
            assert not first.schema_has_electrified("watched")

            # A notification (sent on commit) reloads the snapshot.
            await asyncio.to_thread(alice.execute, "CALL electric.electrify('watched.w1')")
            await watcher.wait_for(electrified("w1"), timeout=10)

            # No notification for a new index: refresh() picks it up.
            await asyncio.to_thread(alice.execute, "CREATE INDEX w1_extra ON watched.w1 (id)")
            refreshed = await watcher.refresh()
            assert refreshed.index_table("watched", "w1_extra") == ("watched", "w1")

            # The connection dies: the watcher reconnects and keeps following.
            with caplog.at_level(logging.WARNING, logger="proxy.catalog.cache"):
                assert await asyncio.to_thread(_terminate, pg, db, "catalog-watcher-test") == 1
                await asyncio.to_thread(alice.execute, "CALL electric.electrify('watched.w2')")
                await watcher.wait_for(electrified("w2"), timeout=10)
            assert any("catalog watcher for database" in r.getMessage() for r in caplog.records)

            # Several notifications in a row end in one consistent view.
            await asyncio.to_thread(alice.execute, "CALL electric.electrify('watched.w3')")
            await asyncio.to_thread(alice.execute, "CALL electric.disable('watched.w1')")
            final = await watcher.wait_for(
                lambda s: electrified("w3")(s) and not electrified("w1")(s), timeout=10
            )
            assert final.index_table("watched", "w1_extra") is None
            assert watcher.connected

    asyncio.run(run())


def test_watcher_without_a_server_waits_and_closes(caplog: pytest.LogCaptureFixture) -> None:
    async def run() -> None:
        watcher = CatalogWatcher(
            "postgresql://nobody@127.0.0.1:1/none", min_backoff=0.01, max_backoff=0.05, connect_timeout=2
        )
        with caplog.at_level(logging.WARNING, logger="proxy.catalog.cache"):
            watcher.start()
            with pytest.raises(TimeoutError):
                await watcher.wait_ready(timeout=0.5)
        assert watcher.snapshot is None
        assert not watcher.connected
        await watcher.close()

    asyncio.run(run())
    assert any("catalog watcher for database none" in r.getMessage() for r in caplog.records)
