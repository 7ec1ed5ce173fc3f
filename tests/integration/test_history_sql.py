"""The migration history (catalog/sql: steps/0002_history.sql, routines/capture.sql) against a
real Postgres, and its reads (store.py).

As in test_catalog_sql.py, the module's database is owned by alice and the catalog installed by
alice, as the proxy would with alice's upstream URL. The proxy's injected calls are made here by
hand: run a statement, then CALL electric.capture(...) in the same transaction.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC
from typing import Any, NamedTuple

import psycopg
import pytest
from psycopg.errors import Diagnostic

from proxy.catalog import store
from proxy.catalog.install import install_sync
from proxy.embedded import EmbeddedPostgres
from tests.pgfixtures import ALICE_PASSWORD

DB = "hist_t"

Conn = psycopg.Connection[tuple[Any, ...]]
Obj = tuple[str | None, str, str]  # (schema, name, type) as the proxy names an object


# -- fixtures and helpers ----------------------------------------------------------------


@pytest.fixture(scope="module")
def db(pg: EmbeddedPostgres) -> Iterator[str]:
    pg.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    pg.execute(f"CREATE DATABASE {DB} OWNER alice")
    with psycopg.connect(pg.url(DB, user="alice", password=ALICE_PASSWORD), autocommit=True) as conn:
        install_sync(conn)
    # A schema where md5user may create tables: the history records any role's DDL.
    pg.execute("CREATE SCHEMA strangers AUTHORIZATION md5user", DB)
    yield DB
    pg.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


@pytest.fixture
def alice(pg: EmbeddedPostgres, db: str) -> Iterator[Conn]:
    with psycopg.connect(pg.url(db, user="alice", password=ALICE_PASSWORD), autocommit=True) as conn:
        yield conn


@pytest.fixture
def stranger(pg: EmbeddedPostgres, db: str) -> Iterator[Conn]:
    """A session of md5user, who owns nothing of alice's (session_user really is md5user)."""
    with pg.connect(db) as conn:
        conn.execute("SET SESSION AUTHORIZATION md5user")
        yield conn


def statement(sql: str, tag: str, *objects: Obj) -> dict[str, Any]:
    return {
        "sql": sql,
        "tag": tag,
        "objects": [{"schema": schema, "name": name, "type": kind} for schema, name, kind in objects],
    }


def capture(
    conn: Conn, *statements: dict[str, Any], meta: dict[str, Any] | None = None, tag: str | None = None
) -> None:
    conn.execute(
        "CALL electric.capture(%s, %s, %s)",
        (json.dumps(list(statements)), None if meta is None else json.dumps(meta), tag),
    )


def run_and_capture(conn: Conn, sql: str, tag: str, *objects: Obj) -> None:
    """What the proxy does for one DDL statement: forward it, then record it."""
    conn.execute(sql)
    capture(conn, statement(sql, tag, *objects))


def current_migration(conn: Conn) -> int:
    """The id of the latest migration of conn's open transaction."""
    row = conn.execute(
        "SELECT max(id) FROM electric.migrations WHERE txid = pg_current_xact_id() HAVING count(*) > 0"
    ).fetchone()
    assert row is not None, "no migration row for this transaction"
    return int(row[0])


def migration(conn: Conn, migration_id: int) -> dict[str, Any]:
    cur = conn.execute("SELECT * FROM electric.migrations WHERE id = %s", (migration_id,))
    row = cur.fetchone()
    assert row is not None and cur.description is not None
    return {column.name: value for column, value in zip(cur.description, row, strict=True)}


def statements_of(conn: Conn, migration_id: int) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT seq, sql, tag, objects FROM electric.migration_statements WHERE migration_id = %s ORDER BY seq",
        (migration_id,),
    ).fetchall()


def definition(conn: Conn, migration_id: int, schema: str, name: str, object_type: str = "relation") -> Any:
    row = conn.execute(
        "SELECT definition FROM electric.migration_objects"
        " WHERE migration_id = %s AND object_type = %s AND schema_name = %s AND object_name = %s",
        (migration_id, object_type, schema, name),
    ).fetchone()
    assert row is not None, f"no record of {object_type} {schema}.{name} in migration {migration_id}"
    return row[0]


def column_names(table_definition: dict[str, Any]) -> list[str]:
    return [column["name"] for column in table_definition["columns"]]


def history_counts(conn: Conn) -> tuple[int, ...]:
    row = conn.execute(
        "SELECT (SELECT count(*) FROM electric.migrations), (SELECT count(*) FROM electric.migration_statements),"
        " (SELECT count(*) FROM electric.migration_objects)"
    ).fetchone()
    assert row is not None
    return tuple(row)


def sql_error(conn: Conn, query: str, params: tuple[Any, ...] = ()) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as info:
        conn.execute(query, params)
    return info.value


class Notice(NamedTuple):
    sqlstate: str | None
    message: str | None


def notices(conn: Conn) -> list[Notice]:
    collected: list[Notice] = []

    def collect(diag: Diagnostic) -> None:
        collected.append(Notice(diag.sqlstate, diag.message_primary))

    conn.add_notice_handler(collect)
    return collected


# -- capture -----------------------------------------------------------------------------


def test_capture_records_one_migration_with_statements_in_order_and_definitions(alice: Conn) -> None:
    create = "CREATE TABLE h1 (id int8 PRIMARY KEY, name text NOT NULL DEFAULT 'x')"
    index = "CREATE INDEX h1_name ON h1 (name)"
    alter = "ALTER TABLE h1 ADD COLUMN n int GENERATED ALWAYS AS IDENTITY"
    meta = {"application_name": "alembic", "client_addr": "10.0.0.7", "proxy_instance": "proxy-a"}
    with alice.transaction():
        alice.execute(create)
        capture(alice, statement(create, "CREATE TABLE", (None, "h1", "OBJECT_TABLE")), meta=meta)
        alice.execute(index)
        alice.execute(alter)
        # Two statements in one call, as for a multi-statement Query message.
        capture(
            alice,
            statement(index, "CREATE INDEX", ("public", "h1_name", "index"), ("public", "h1", "table")),
            statement(alter, "ALTER TABLE", ("public", "h1", "table")),
        )
        mid = current_migration(alice)
        assert migration(alice, mid)["committed_at"] is None  # stamped at COMMIT
        relid = alice.execute("SELECT 'h1'::regclass::oid").fetchone()

    row = migration(alice, mid)
    assert row["version_source"] == "generated"
    assert row["framework"] is None
    assert row["db_user"] == "alice"
    assert row["backend_pid"] == alice.info.backend_pid
    assert (row["application_name"], row["client_addr"], row["proxy_instance"]) == (
        "alembic",
        "10.0.0.7",
        "proxy-a",
    )
    assert row["committed_at"] is not None and row["committed_at"] >= row["started_at"]

    assert statements_of(alice, mid) == [
        (1, create, "CREATE TABLE", [{"schema": "public", "name": "h1", "type": "table"}]),
        (
            2,
            index,
            "CREATE INDEX",
            [
                {"schema": "public", "name": "h1_name", "type": "index"},
                {"schema": "public", "name": "h1", "type": "table"},
            ],
        ),
        (3, alter, "ALTER TABLE", [{"schema": "public", "name": "h1", "type": "table"}]),
    ]

    table = definition(alice, mid, "public", "h1")
    assert table["kind"] == "table"
    assert table["columns"] == [
        {
            "name": "id",
            "type": "bigint",
            "not_null": True,
            "default": None,
            "identity": None,
            "generated": None,
            "collation": None,
        },
        {
            "name": "name",
            "type": "text",
            "not_null": True,
            "default": "'x'::text",
            "identity": None,
            "generated": None,
            "collation": None,
        },
        {
            "name": "n",
            "type": "integer",
            "not_null": True,
            "default": None,
            "identity": "always",
            "generated": None,
            "collation": None,
        },
    ]
    assert table["constraints"] == [
        {"name": "h1_pkey", "type": "primary key", "definition": "PRIMARY KEY (id)"}
    ]
    # Rendered under search_path = pg_catalog: names outside pg_catalog are qualified.
    assert table["indexes"] == [
        {"name": "h1_name", "definition": "CREATE INDEX h1_name ON public.h1 USING btree (name)"},
        {"name": "h1_pkey", "definition": "CREATE UNIQUE INDEX h1_pkey ON public.h1 USING btree (id)"},
    ]
    assert (table["replica_identity"], table["electrified"]) == ("default", False)
    index_definition = definition(alice, mid, "public", "h1_name")
    assert index_definition["definition"] == "CREATE INDEX h1_name ON public.h1 USING btree (name)"
    assert (index_definition["table_schema"], index_definition["table_name"]) == ("public", "h1")
    recorded_relid = alice.execute(
        "SELECT relid FROM electric.migration_objects WHERE migration_id = %s AND object_name = 'h1'", (mid,)
    ).fetchone()
    assert recorded_relid == relid


def test_rollback_leaves_nothing(alice: Conn) -> None:
    before = history_counts(alice)

    class Abandon(Exception):
        pass

    with pytest.raises(Abandon), alice.transaction():
        run_and_capture(
            alice, "CREATE TABLE rolled (id int8 PRIMARY KEY)", "CREATE TABLE", ("public", "rolled", "table")
        )
        alice.execute("CALL electric.migration_version('rolled-back')")
        assert history_counts(alice) != before
        raise Abandon
    assert history_counts(alice) == before
    assert alice.execute("SELECT to_regclass('rolled')").fetchone() == (None,)


def test_failed_statement_after_capture_leaves_nothing(alice: Conn) -> None:
    before = history_counts(alice)
    with pytest.raises(psycopg.errors.DivisionByZero), alice.transaction():
        run_and_capture(
            alice, "CREATE TABLE failed (id int8 PRIMARY KEY)", "CREATE TABLE", ("public", "failed", "table")
        )
        alice.execute("SELECT 1 / 0")  # the transaction is aborted; it can only roll back
    assert history_counts(alice) == before


def test_capture_in_a_savepoint_that_rolls_back(alice: Conn) -> None:
    with alice.transaction():
        with pytest.raises(psycopg.errors.DuplicateTable), alice.transaction():
            run_and_capture(
                alice, "CREATE TABLE sp1 (id int8 PRIMARY KEY)", "CREATE TABLE", ("public", "sp1", "table")
            )
            alice.execute("CREATE TABLE sp1 (id int8)")  # fails: back to the savepoint
        run_and_capture(
            alice, "CREATE TABLE sp2 (id int8 PRIMARY KEY)", "CREATE TABLE", ("public", "sp2", "table")
        )
        mid = current_migration(alice)
    assert [(seq, sql) for seq, sql, _, _ in statements_of(alice, mid)] == [
        (1, "CREATE TABLE sp2 (id int8 PRIMARY KEY)")
    ]
    names = alice.execute(
        "SELECT object_name FROM electric.migration_objects WHERE migration_id = %s", (mid,)
    ).fetchall()
    assert names == [("sp2",)]


def test_unqualified_objects_resolve_through_the_callers_search_path(alice: Conn) -> None:
    alice.execute("CREATE SCHEMA IF NOT EXISTS hist_other")
    alice.execute("SET search_path = hist_other, public")
    try:
        with alice.transaction():
            run_and_capture(
                alice, "CREATE TABLE q (id int8 PRIMARY KEY)", "CREATE TABLE", (None, "q", "table")
            )
            # Not found anywhere (dropped, say): where CREATE would have put it.
            capture(
                alice, statement("DROP TABLE IF EXISTS nowhere", "DROP TABLE", (None, "nowhere", "table"))
            )
            # Untracked types keep their NULL schema.
            capture(alice, statement("CREATE SCHEMA s9", "CREATE SCHEMA", (None, "s9", "schema")))
            mid = current_migration(alice)
    finally:
        alice.execute("RESET search_path")
    objects = [row[3] for row in statements_of(alice, mid)]
    assert objects == [
        [{"schema": "hist_other", "name": "q", "type": "table"}],
        [{"schema": "hist_other", "name": "nowhere", "type": "table"}],
        [{"schema": None, "name": "s9", "type": "schema"}],
    ]
    assert definition(alice, mid, "hist_other", "q")["schema"] == "hist_other"
    assert definition(alice, mid, "hist_other", "nowhere") is None


def test_index_and_table_records_follow_each_other(alice: Conn) -> None:
    with alice.transaction():
        run_and_capture(
            alice, "CREATE TABLE ix (id int8 PRIMARY KEY, a text)", "CREATE TABLE", ("public", "ix", "table")
        )
        run_and_capture(alice, "CREATE INDEX ix_a ON ix (a)", "CREATE INDEX", ("public", "ix_a", "index"))
        first = current_migration(alice)
    with alice.transaction():
        # Only the index is named: its table's record is refreshed too.
        run_and_capture(alice, "DROP INDEX ix_a", "DROP INDEX", ("public", "ix_a", "index"))
        second = current_migration(alice)
    with alice.transaction():
        run_and_capture(alice, "CREATE INDEX ix_a2 ON ix (a)", "CREATE INDEX", ("public", "ix_a2", "index"))
    with alice.transaction():
        # Only the table is named: its recorded indexes go with it.
        run_and_capture(alice, "DROP TABLE ix", "DROP TABLE", ("public", "ix", "table"))
        third = current_migration(alice)

    assert [i["name"] for i in definition(alice, first, "public", "ix")["indexes"]] == ["ix_a", "ix_pkey"]
    assert definition(alice, second, "public", "ix_a") is None
    assert [i["name"] for i in definition(alice, second, "public", "ix")["indexes"]] == ["ix_pkey"]
    assert definition(alice, third, "public", "ix") is None
    assert definition(alice, third, "public", "ix_a2") is None


def test_types_views_sequences_and_routines(alice: Conn) -> None:
    ddl = [
        ("CREATE TYPE mood AS ENUM ('sad', 'ok')", "CREATE TYPE", ("public", "mood", "type")),
        ("CREATE DOMAIN posint AS int CHECK (VALUE > 0)", "CREATE DOMAIN", ("public", "posint", "domain")),
        ("CREATE SEQUENCE counter START 5", "CREATE SEQUENCE", ("public", "counter", "sequence")),
        ("CREATE TABLE moods (id int8 PRIMARY KEY, m mood)", "CREATE TABLE", ("public", "moods", "table")),
        ("CREATE VIEW sad AS SELECT id FROM moods WHERE m = 'sad'", "CREATE VIEW", ("public", "sad", "view")),
        (
            "CREATE FUNCTION twice(int) RETURNS int LANGUAGE sql AS 'SELECT $1 * 2'",
            "CREATE FUNCTION",
            ("public", "twice", "function"),
        ),
    ]
    with alice.transaction():
        for sql, tag, obj in ddl:
            run_and_capture(alice, sql, tag, obj)
        alice.execute("ALTER TYPE mood ADD VALUE 'glad'")
        capture(
            alice,
            statement("ALTER TYPE mood ADD VALUE 'glad'", "ALTER TYPE", ("public", "mood", "OBJECT_TYPE")),
        )
        mid = current_migration(alice)

    mood = definition(alice, mid, "public", "mood", "type")
    assert (mood["kind"], mood["labels"]) == ("enum", ["sad", "ok", "glad"])
    posint = definition(alice, mid, "public", "posint", "type")
    assert (posint["kind"], posint["base_type"]) == ("domain", "integer")
    assert [c["definition"] for c in posint["constraints"]] == ["CHECK ((VALUE > 0))"]
    counter = definition(alice, mid, "public", "counter")
    assert (counter["kind"], counter["start"], counter["type"]) == ("sequence", 5, "bigint")
    assert definition(alice, mid, "public", "moods")["columns"][1]["type"] == "public.mood"
    view = definition(alice, mid, "public", "sad")
    assert view["kind"] == "view" and "public.moods" in view["query"]
    twice = definition(alice, mid, "public", "twice", "routine")
    assert [(o["kind"], o["arguments"], o["result"]) for o in twice["overloads"]] == [
        ("function", "integer", "integer")
    ]
    assert twice["overloads"][0]["definition"].startswith("CREATE OR REPLACE FUNCTION public.twice(integer)")


# -- versions ----------------------------------------------------------------------------


def test_explicit_version_beats_the_framework_and_the_last_note_wins(alice: Conn) -> None:
    with alice.transaction():
        alice.execute("CALL electric.note_version('alembic', 'a1')")
        alice.execute("CALL electric.migration_version('mine-1')")
        alice.execute("CALL electric.note_version('alembic', 'a2')")
        explicit_after = current_migration(alice)
    with alice.transaction():
        alice.execute("CALL electric.migration_version('mine-2')")
        alice.execute("CALL electric.note_version('rails', '20240101000000')")
        explicit_before = current_migration(alice)
    with alice.transaction():
        # Alembic upgrading several revisions in one transaction: the last one written.
        alice.execute("CALL electric.note_version('alembic', 'b1')")
        alice.execute("CALL electric.note_version('alembic', 'b2')")
        framework = current_migration(alice)

    def version(mid: int) -> tuple[Any, ...]:
        row = migration(alice, mid)
        return row["version"], row["version_source"], row["framework"]

    assert version(explicit_after) == ("mine-1", "explicit", "alembic")
    assert version(explicit_before) == ("mine-2", "explicit", "rails")
    assert version(framework) == ("b2", "framework", "alembic")


def test_a_late_version_is_tied_to_the_clients_last_ddl_only_migration(
    pg: EmbeddedPostgres, db: str, alice: Conn, stranger: Conn
) -> None:
    """Django unapplying (same session) and sqitch or yoyo (another connection): the DDL commits
    first, the version follows in a transaction without DDL."""
    with alice.transaction():
        run_and_capture(
            alice, "CREATE TABLE late1 (id int8 PRIMARY KEY)", "CREATE TABLE", ("public", "late1", "table")
        )
        late = current_migration(alice)
    before = history_counts(alice)
    # Another user does not reach it: recorded on its own.
    stranger.execute("CALL electric.note_version_late('django', 'stranger')")
    assert migration(alice, late)["version_source"] == "generated"
    assert history_counts(alice)[0] == before[0] + 1
    before = history_counts(alice)

    # Another connection of the same user from the same host, nothing in between: tied.
    with psycopg.connect(pg.url(db, user="alice", password=ALICE_PASSWORD), autocommit=True) as other:
        other.execute("CALL electric.note_version_late('sqitch', 'change-1')")
    row = migration(alice, late)
    assert (row["version"], row["framework"], row["version_tie"]) == (
        "change-1",
        "sqitch",
        "other connection",
    )
    assert history_counts(alice) == before

    # Its version is set: the next one is not lost, but recorded on its own.
    alice.execute("CALL electric.note_version_late('django', 'again')")
    assert migration(alice, late)["version"] == "change-1"
    assert history_counts(alice)[0] == before[0] + 1

    # The same session's own last migration (Django's unapply).
    with alice.transaction():
        run_and_capture(
            alice, "CREATE TABLE late3 (id int8 PRIMARY KEY)", "CREATE TABLE", ("public", "late3", "table")
        )
        own = current_migration(alice)
    alice.execute("CALL electric.note_version_late('django', 'shop.0003 (reverted)')")
    row = migration(alice, own)
    assert (row["version"], row["version_source"], row["framework"], row["version_tie"]) == (
        "shop.0003 (reverted)",
        "framework",
        "django",
        "session after",
    )

    # Inside a migration's own transaction it is note_version.
    with alice.transaction():
        run_and_capture(
            alice, "CREATE TABLE late2 (id int8 PRIMARY KEY)", "CREATE TABLE", ("public", "late2", "table")
        )
        alice.execute("CALL electric.note_version_late('django', 'in-tx')")
        in_tx = current_migration(alice)
    assert migration(alice, in_tx)["version"] == "in-tx"


def test_generated_versions_sort_by_time(alice: Conn) -> None:
    mids = []
    for name in ("gen1", "gen2"):
        with alice.transaction():
            run_and_capture(
                alice, f"CREATE TABLE {name} (id int8 PRIMARY KEY)", "CREATE TABLE", ("public", name, "table")
            )
            mids.append(current_migration(alice))
    rows = [migration(alice, mid) for mid in mids]
    for row in rows:
        assert row["version_source"] == "generated"
        assert re.fullmatch(r"\d{20}_\d+", row["version"]), row["version"]
        assert row["version"].startswith(row["started_at"].astimezone(UTC).strftime("%Y%m%d%H%M%S%f"))
        assert row["version"].endswith(f"_{row['txid']}")
    assert rows[0]["version"] < rows[1]["version"]


def test_version_arguments_are_checked(alice: Conn) -> None:
    assert sql_error(alice, "CALL electric.migration_version(NULL)").sqlstate == "22004"
    assert sql_error(alice, "CALL electric.migration_version('')").sqlstate == "22023"
    assert sql_error(alice, "CALL electric.note_version('alembic', NULL)").sqlstate == "22004"
    assert sql_error(alice, "CALL electric.capture('{}')").sqlstate == "22023"
    assert sql_error(alice, """CALL electric.capture('[{"tag": "X"}]')""").sqlstate == "22023"
    bad_object = json.dumps([{"sql": "x", "tag": "X", "objects": [{"schema": "public"}]}])
    assert sql_error(alice, "CALL electric.capture(%s)", (bad_object,)).sqlstate == "22023"
    assert sql_error(alice, "CALL electric.capture('[]', '[1]')").sqlstate == "22023"


def test_proxy_tag_notice(alice: Conn) -> None:
    seen = notices(alice)
    with alice.transaction():
        capture(alice, statement("SELECT 1", "SELECT 1"), tag="")
        alice.execute("CALL electric.note_version('alembic', 'x1', '')")
        alice.execute("CALL electric.migration_version('tagged-1', 'CALL')")
    assert seen == [Notice("EXTAG", ""), Notice("EXTAG", ""), Notice("EXTAG", "CALL")]


def test_history_is_in_order_of_commit(pg: EmbeddedPostgres, db: str, alice: Conn) -> None:
    with psycopg.connect(pg.url(db, user="alice", password=ALICE_PASSWORD), autocommit=True) as other:
        with alice.transaction():
            capture(alice, statement("SELECT 'began first'", "SELECT 1"))
            alice.execute("CALL electric.migration_version('began-first')")
            with other.transaction():
                capture(other, statement("SELECT 'began second'", "SELECT 1"))
                other.execute("CALL electric.migration_version('began-second')")
    versions = [m["version"] for m in store.history(alice)]
    assert versions.index("began-second") < versions.index("began-first")
    first = store.show(alice, "began-first")
    second = store.show(alice, "began-second")
    assert first is not None and second is not None
    assert first["id"] < second["id"]


# -- links to electrified tables and rules -----------------------------------------------


def test_electrify_in_the_same_transaction_is_linked(alice: Conn) -> None:
    with alice.transaction():
        run_and_capture(
            alice, "CREATE TABLE el1 (id int8 PRIMARY KEY)", "CREATE TABLE", ("public", "el1", "table")
        )
        with alice.transaction():  # a savepoint: the rows get a subtransaction's xmin
            alice.execute("CALL electric.electrify('el1')")
            alice.execute("CALL electric.grant('{select}', NULL, 'el1', 'reader')")
        capture(
            alice, statement("ALTER TABLE el1 ENABLE ELECTRIC", "ELECTRIC ENABLE", ("public", "el1", "table"))
        )
        alice.execute("CALL electric.migration_version('el-v1')")
        mid = current_migration(alice)
    alice.execute("CREATE TABLE el2 (id int8 PRIMARY KEY)")
    alice.execute("CALL electric.electrify('el2')")  # recorded as a direct migration of its own
    direct = alice.execute(
        "SELECT max(id) FROM electric.migrations WHERE version_source = 'direct'"
    ).fetchone()

    links = alice.execute(
        "SELECT table_name, migration_id FROM electric.electrified WHERE table_name IN ('el1', 'el2') ORDER BY 1"
    ).fetchall()
    assert direct is not None and direct[0] is not None
    assert links == [("el1", mid), ("el2", direct[0])]
    grant = alice.execute("SELECT migration_id FROM electric.grants WHERE table_name = 'el1'").fetchone()
    assert grant == (mid,)
    assert definition(alice, mid, "public", "el1")["electrified"] is True
    assert definition(alice, mid, "public", "el1")["replica_identity"] == "full"

    tables = {(t["schema"], t["table"]): t for t in store.electrified(alice)}
    assert tables[("public", "el1")] == {"schema": "public", "table": "el1", "since_migration": "el-v1"}
    assert tables[("public", "el2")]["since_migration"] is not None


# -- schema as of a version ----------------------------------------------------------------


def test_schema_at_an_earlier_version(alice: Conn) -> None:
    steps = [
        ("sat-v1", "CREATE TABLE sat (id int8 PRIMARY KEY, a text)", "CREATE TABLE"),
        ("sat-v2", "ALTER TABLE sat ADD COLUMN b text", "ALTER TABLE"),
        ("sat-v3", "DROP TABLE sat", "DROP TABLE"),
    ]
    for version, sql, tag in steps:
        with alice.transaction():
            run_and_capture(alice, sql, tag, ("public", "sat", "table"))
            alice.execute("CALL electric.migration_version(%s)", (version,))

    def sat(version: str) -> list[store.SchemaObject]:
        snapshot = store.schema_at(alice, version)
        assert snapshot["version"] == version
        return [o for o in snapshot["objects"] if (o["schema"], o["name"]) == ("public", "sat")]

    (v1,) = sat("sat-v1")
    assert column_names(v1["definition"]) == ["id", "a"]
    assert (v1["kind"], v1["migration_version"]) == ("table", "sat-v1")
    (v2,) = sat("sat-v2")
    assert column_names(v2["definition"]) == ["id", "a", "b"]
    assert sat("sat-v3") == []
    # By id, too; and an unknown migration is an error.
    v1_id = store.schema_at(alice, "sat-v1")["migration_id"]
    assert [o["definition"] for o in store.schema_at(alice, str(v1_id))["objects"] if o["name"] == "sat"] == [
        v1["definition"]
    ]
    with pytest.raises(store.UnknownMigration):
        store.schema_at(alice, "no-such-version")
    assert store.show(alice, "no-such-version") is None


# -- privileges --------------------------------------------------------------------------


def test_non_owner_cannot_write_the_history(alice: Conn, stranger: Conn) -> None:
    with alice.transaction():
        run_and_capture(
            alice,
            "CREATE TABLE guarded_h (id int8 PRIMARY KEY)",
            "CREATE TABLE",
            ("public", "guarded_h", "table"),
        )
    statements = [
        "SELECT * FROM electric.migrations",
        "INSERT INTO electric.migrations (txid, version, version_source, started_at, db_user, backend_pid)"
        " VALUES (pg_current_xact_id(), 'forged', 'explicit', now(), 'x', 1)",
        "UPDATE electric.migrations SET version = 'forged'",
        "DELETE FROM electric.migrations",
        "TRUNCATE electric.migrations",
        "INSERT INTO electric.migration_statements (migration_id, seq, sql) VALUES (1, 99, 'x')",
        "UPDATE electric.migration_statements SET sql = 'x'",
        "DELETE FROM electric.migration_objects",
        "SELECT electric._migration(NULL, NULL, true)",  # internal helpers are closed too
        "SELECT electric._refresh_objects(1)",
        "SELECT electric._tie_late('x', 'y', NULL, NULL)",
        "SELECT electric._label(1, 'x', 'y', NULL)",
        "SELECT electric._link_catalog_rows(1)",
    ]
    for query in statements:
        assert sql_error(stranger, query).sqlstate == "42501", query
        stranger.rollback()


def test_any_role_can_record_its_own_migration(alice: Conn, stranger: Conn) -> None:
    with stranger.transaction():
        run_and_capture(
            stranger,
            "CREATE TABLE strangers.own (id int8 PRIMARY KEY)",
            "CREATE TABLE",
            ("strangers", "own", "table"),
        )
        stranger.execute("CALL electric.migration_version('stranger-1')")
    found = store.show(alice, "stranger-1")
    assert found is not None
    assert found["user"] == "md5user"
    assert found["committed_at"] is not None  # the deferred trigger ran as the definer
    (recorded,) = found["objects"]
    assert recorded["definition"] is not None and recorded["definition"]["owner"] == "md5user"


def test_public_routines_are_exactly_the_intended_ones(alice: Conn) -> None:
    rows = alice.execute(
        "SELECT p.proname::text, count(*) FROM pg_proc p"
        " WHERE p.pronamespace = 'electric'::regnamespace AND has_function_privilege('public', p.oid, 'EXECUTE')"
        " GROUP BY 1"
    ).fetchall()
    step1 = {"electrify": 2, "disable": 2, "grant": 1, "revoke": 1, "assign": 1, "unassign": 1, "sqlite": 1}
    step1 |= {f"_{name}": 1 for name in ("electrify", "disable", "grant", "revoke", "assign", "unassign")}
    step1 |= {"_resolve": 2, "_resolve_scope": 1, "_electrify_as_caller": 1}
    history = {"capture": 1, "_capture": 1, "note_version": 1, "migration_version": 1}
    history |= {"note_version_late": 1, "_note": 1, "_session_start": 1}
    checks = {"guard_check": 1, "run_checked": 1, "_guard_resolve": 1, "_guard_raise": 1}
    guard = {"_ddlguard_ddl_command_end": 1, "_ddlguard_sql_drop": 1}  # they work inside event triggers only
    assert dict(rows) == step1 | history | checks | guard
