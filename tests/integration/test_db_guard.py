"""The database-side guard: event triggers that judge every DDL, whatever path it takes.

The suite's proxy installs the catalog as alice, who may not create event triggers. Here the
superuser installs it first, in a database of this module's own, so the triggers exist; then
alice's traffic goes through a proxy in front of that database (the proxy's own upstream role is
the superuser, as where the proxy's role may create event triggers), and every outcome is checked on
a direct connection. The proxy lets DO blocks through (`guard.do_blocks = "allow"`) so that the
database judges their contents. Refusals that the text guard cannot see (functions, cascades,
types, ...) must come from the database: their CONTEXT names the guard's function.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from proxy.catalog import install
from proxy.catalog.install import event_trigger_names, install_sync
from proxy.embedded import EmbeddedPostgres
from tests.pgfixtures import ALICE_PASSWORD
from tests.proxyfixtures import RunningProxy, proxy_config

DB = "db_guard_t"
Conn = psycopg.Connection[tuple[Any, ...]]
_names = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}_{next(_names)}"


@pytest.fixture(scope="module")
def guard_db(pg: EmbeddedPostgres) -> Iterator[str]:
    pg.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    pg.execute(f"CREATE DATABASE {DB} OWNER alice")
    with pg.connect(DB) as superuser:
        install_sync(superuser)
    yield DB
    pg.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


@pytest.fixture(scope="module")
def guard_proxy(pg: EmbeddedPostgres, guard_db: str) -> Iterator[RunningProxy]:
    # The proxy's own role (its catalog watcher) is the superuser who installed the catalog;
    # clients log in as themselves (passthrough).
    upstream = pg.url(guard_db) + "?sslmode=disable"
    running = RunningProxy(proxy_config(upstream, **{"guard.do_blocks": "allow"}))
    yield running
    running.stop()


@pytest.fixture
def client(guard_proxy: RunningProxy) -> Iterator[Conn]:
    with psycopg.connect(guard_proxy.dsn(dbname=DB), autocommit=True) as conn:
        yield conn


@pytest.fixture
def direct(pg: EmbeddedPostgres, guard_db: str) -> Iterator[Conn]:
    with psycopg.connect(pg.url(guard_db, user="alice", password=ALICE_PASSWORD), autocommit=True) as conn:
        yield conn


@pytest.fixture
def superuser(pg: EmbeddedPostgres, guard_db: str) -> Iterator[Conn]:
    with pg.connect(guard_db) as conn:
        yield conn


def electrify(direct: Conn, name: str, columns: str = "id uuid PRIMARY KEY, title text, n int4") -> str:
    direct.execute(f"CREATE TABLE {name} ({columns})")
    direct.execute("CALL electric.electrify(%s)", (name,))
    return name


# What the rules protect, read from pg_catalog: a refused statement must leave it as it was.
SHAPE = """
SELECT n.nspname, c.relname, c.relispartition,
       ARRAY(SELECT format('%%s %%s %%s', a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull)
               FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY a.attnum),
       ARRAY(SELECT k.conname || ' ' || pg_get_constraintdef(k.oid) FROM pg_constraint k
              WHERE k.conrelid = c.oid ORDER BY 1),
       ARRAY(SELECT format('%%s %%s', a.attname, format_type(a.atttypid, a.atttypmod)) || ' '
                    || COALESCE((SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
                                   FROM pg_enum e WHERE e.enumtypid = a.atttypid), '')
               FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY a.attnum)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.oid = to_regclass(%s)
"""


def shape(direct: Conn, table: str) -> tuple[Any, ...] | None:
    return direct.execute(SHAPE, (table,)).fetchone()


GUARD_CONTEXT = "function electric._ddlguard_"  # in the CONTEXT of the database guard's errors


def refused_by_database(conn: Conn, sql: str, code: str) -> errors.Diagnostic:
    with pytest.raises(psycopg.Error) as caught:
        conn.execute(sql)
    assert caught.value.sqlstate == code, caught.value
    diag = caught.value.diag
    assert GUARD_CONTEXT in (diag.context or ""), diag.context  # the database's verdict
    return diag


# -- refused, whatever the path --------------------------------------------------------------


def test_triggers_installed_and_the_snapshot_knows(
    superuser: Conn, guard_proxy: RunningProxy, proxy: RunningProxy
) -> None:
    rows = superuser.execute(
        "SELECT evtname::text, evtenabled::text FROM pg_event_trigger ORDER BY 1"
    ).fetchall()
    assert rows == [(name, "A") for name in sorted(event_trigger_names())]
    guard_proxy.catalog_sees(lambda snapshot: snapshot.database_guard, database=DB)
    # The suite's database was installed by alice: no triggers there, and the flag says so.
    proxy.catalog_sees(lambda snapshot: snapshot.version is not None and not snapshot.database_guard)


ROUTINE_CASES = [
    # (setup run by the client, statement, code, column)
    (
        "CREATE FUNCTION f_{t}() RETURNS void LANGUAGE plpgsql AS $$ BEGIN ALTER TABLE {t} DROP COLUMN title; END $$",
        "SELECT f_{t}()",
        "EX010",
        "title",
    ),
    (
        "CREATE PROCEDURE p_{t}() LANGUAGE plpgsql AS $$ BEGIN DROP TABLE {t}; END $$",
        "CALL p_{t}()",
        "EX004",
        None,
    ),
    (None, "DO $$ BEGIN EXECUTE 'ALTER TABLE {t} RENAME COLUMN title TO heading'; END $$", "EX008", "title"),
    (None, "DO $$ BEGIN EXECUTE 'ALTER TABLE {t} ALTER COLUMN n TYPE int8'; END $$", "EX009", "n"),
    (None, "DO $$ BEGIN ALTER TABLE {t} RENAME TO renamed_{t}; END $$", "EX002", None),
    ("CREATE SCHEMA s_{t}", "DO $$ BEGIN ALTER TABLE {t} SET SCHEMA s_{t}; END $$", "EX002", None),
    (None, "DO $$ BEGIN ALTER TABLE {t} ADD COLUMN d int4 DEFAULT 1; END $$", "EX006", "d"),
]


@pytest.mark.parametrize(
    ("setup", "statement", "code", "column"),
    ROUTINE_CASES,
    ids=[c[1].split()[0] + c[2] for c in ROUTINE_CASES],
)
def test_ddl_inside_functions_procedures_and_do_blocks_is_refused(
    client: Conn, direct: Conn, setup: str | None, statement: str, code: str, column: str | None
) -> None:
    t = electrify(direct, unique("routine"))
    if setup is not None:
        client.execute(setup.format(t=t))
    before = shape(direct, t)
    diag = refused_by_database(client, statement.format(t=t), code)
    assert (diag.schema_name, diag.table_name, diag.column_name) == ("public", t, column)
    assert (
        diag.message_detail
        == f'Table "public"."{t}" is electrified. Electric currently only supports '
        + ("additive migrations (ADD COLUMN, ADD INDEX) on electrified tables.")
    )
    assert shape(direct, t) == before


def test_inheritance_parent_drop_column_and_cascade(client: Conn, direct: Conn) -> None:
    t = unique("child")
    client.execute(f"CREATE TABLE parent_{t} (id uuid, title text)")
    direct.execute(f"CREATE TABLE {t} (PRIMARY KEY (id)) INHERITS (parent_{t})")
    direct.execute("CALL electric.electrify(%s)", (t,))
    before = shape(direct, t)
    refused_by_database(client, f"ALTER TABLE parent_{t} DROP COLUMN title", "EX010")
    refused_by_database(client, f"DROP TABLE parent_{t} CASCADE", "EX004")
    assert shape(direct, t) == before


def test_partitioned_parent_drop_column_cascade_and_detach(client: Conn, direct: Conn) -> None:
    t = unique("part")
    client.execute(f"CREATE TABLE pp_{t} (id uuid, title text, PRIMARY KEY (id)) PARTITION BY HASH (id)")
    client.execute(f"CREATE TABLE {t} PARTITION OF pp_{t} FOR VALUES WITH (MODULUS 1, REMAINDER 0)")
    client.execute("CALL electric.electrify(%s)", (t,))
    before = shape(direct, t)
    refused_by_database(client, f"ALTER TABLE pp_{t} DROP COLUMN title", "EX010")
    refused_by_database(client, f"DROP TABLE pp_{t} CASCADE", "EX004")
    diag = refused_by_database(
        client, f"DO $$ BEGIN ALTER TABLE pp_{t} DETACH PARTITION {t}; END $$", "EX007"
    )
    assert diag.message_primary == f'Cannot attach or detach electrified table "public"."{t}" as a partition'
    assert shape(direct, t) == before


def test_attach_as_partition_is_refused(client: Conn, direct: Conn) -> None:
    t = electrify(direct, unique("attach"))
    client.execute(f"CREATE TABLE pp_{t} (id uuid, title text, n int4) PARTITION BY HASH (id)")
    attach = f"ALTER TABLE pp_{t} ATTACH PARTITION {t} FOR VALUES WITH (MODULUS 1, REMAINDER 0)"
    refused_by_database(client, f"DO $$ BEGIN {attach}; END $$", "EX007")
    assert shape(direct, t)[2] is False  # type: ignore[index]


def test_drop_owned_is_refused(client: Conn, direct: Conn) -> None:
    t = electrify(direct, unique("owned"))
    before = shape(direct, t)
    refused_by_database(client, "DROP OWNED BY alice", "EX004")
    assert shape(direct, t) == before


def test_extension_that_adopts_then_drops_the_table(client: Conn, direct: Conn) -> None:
    t = electrify(direct, unique("adopted"))
    before = shape(direct, t)
    client.execute("CREATE EXTENSION IF NOT EXISTS citext")  # trusted: alice may
    client.execute("BEGIN")
    client.execute(f"ALTER EXTENSION citext ADD TABLE {t}")
    refused_by_database(client, "DROP EXTENSION citext", "EX004")
    client.execute("ROLLBACK")
    assert shape(direct, t) == before


def test_dropping_the_referenced_table_with_cascade_is_refused(client: Conn, direct: Conn) -> None:
    t = unique("fk")
    client.execute(f"CREATE TABLE ref_{t} (id uuid PRIMARY KEY)")
    electrify(direct, t, f"id uuid PRIMARY KEY, r uuid REFERENCES ref_{t}")
    before = shape(direct, t)
    refused_by_database(client, f"DROP TABLE ref_{t} CASCADE", "EX007")
    assert shape(direct, t) == before
    # Renaming the referenced table leaves the electrified table as it is.
    client.execute(f"ALTER TABLE ref_{t} RENAME TO ref2_{t}")


def test_enum_changes(client: Conn, direct: Conn) -> None:
    t = unique("moody")
    direct.execute(f"CREATE TYPE mood_{t} AS ENUM ('happy', 'sad')")
    electrify(direct, t, f"id uuid PRIMARY KEY, m mood_{t}")
    before = shape(direct, t)
    refused_by_database(client, f"ALTER TYPE mood_{t} RENAME VALUE 'sad' TO 'blue'", "EX009")
    refused_by_database(client, f"ALTER TYPE mood_{t} RENAME TO feeling_{t}", "EX009")
    refused_by_database(client, f"ALTER TYPE mood_{t} ADD VALUE 'Not OK'", "EX005")
    refused_by_database(client, f"DROP TYPE mood_{t} CASCADE", "EX010")
    assert shape(direct, t) == before
    # A label electrify would accept is fine, and it becomes part of what is protected.
    client.execute(f"ALTER TYPE mood_{t} ADD VALUE 'meh'")
    refused_by_database(client, f"ALTER TYPE mood_{t} RENAME VALUE 'meh' TO 'blah'", "EX009")


def test_typed_table_drop_attribute_cascade(client: Conn, direct: Conn) -> None:
    t = unique("typed")
    direct.execute(f"CREATE TYPE comp_{t} AS (id uuid, title text)")
    direct.execute(f"CREATE TABLE {t} OF comp_{t} (PRIMARY KEY (id))")
    direct.execute("CALL electric.electrify(%s)", (t,))
    before = shape(direct, t)
    diag = refused_by_database(client, f"ALTER TYPE comp_{t} DROP ATTRIBUTE title CASCADE", "EX010")
    assert diag.column_name == "title"
    refused_by_database(client, f"ALTER TYPE comp_{t} RENAME ATTRIBUTE title TO heading CASCADE", "EX008")
    refused_by_database(client, f"ALTER TYPE comp_{t} ALTER ATTRIBUTE title TYPE varchar CASCADE", "EX009")
    assert shape(direct, t) == before


def test_drop_collation_cascade(client: Conn, direct: Conn) -> None:
    t = unique("coll")
    direct.execute(f'CREATE COLLATION coll_{t} FROM "C"')
    electrify(direct, t, f"id uuid PRIMARY KEY, title text COLLATE coll_{t}")
    before = shape(direct, t)
    refused_by_database(client, f"DROP COLLATION coll_{t} CASCADE", "EX010")
    assert shape(direct, t) == before


def test_domain_named_text_earlier_on_the_search_path(client: Conn, direct: Conn) -> None:
    t = electrify(direct, unique("domain"))
    client.execute(f"CREATE SCHEMA d_{t}")
    client.execute(f"CREATE DOMAIN d_{t}.text AS pg_catalog.text")
    client.execute(f"SET search_path = d_{t}, pg_catalog, public")
    before = shape(direct, t)
    diag = refused_by_database(client, f"ALTER TABLE {t} ADD COLUMN x text", "EX005")
    assert diag.message_primary == f'Cannot electrify column of type "d_{t}.text"'
    assert shape(direct, t) == before


def test_schema_rename_is_refused(client: Conn, direct: Conn) -> None:
    schema = unique("sch")
    direct.execute(f"CREATE SCHEMA {schema}")
    direct.execute(f"CREATE TABLE {schema}.items (id uuid PRIMARY KEY)")
    direct.execute("CALL electric.electrify(%s, %s)", (schema, "items"))
    diag = refused_by_database(
        client, f"DO $$ BEGIN ALTER SCHEMA {schema} RENAME TO x_{schema}; END $$", "EX002"
    )
    assert (diag.schema_name, diag.table_name) == (schema, None)
    assert direct.execute("SELECT to_regnamespace(%s) IS NOT NULL", (schema,)).fetchone() == (True,)


def test_drop_schema_cascade_same_error_as_the_text_guard(
    direct: Conn, proxy: RunningProxy, text_guard: tuple[Conn, Conn]
) -> None:
    via_proxy, app_direct = text_guard
    schema = unique("dropped")
    for conn in (direct, app_direct):
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"CREATE TABLE {schema}.items (id uuid PRIMARY KEY)")
        conn.execute("CALL electric.electrify(%s, %s)", (schema, "items"))
    proxy.catalog_sees(lambda snap: snap.is_electrified(schema, "items"))
    with pytest.raises(psycopg.Error) as by_text_guard:
        via_proxy.execute(f"DROP SCHEMA {schema} CASCADE")
    assert GUARD_CONTEXT not in (by_text_guard.value.diag.context or "")
    with pytest.raises(psycopg.Error) as by_database:
        direct.execute(f"DROP SCHEMA {schema} CASCADE")
    assert GUARD_CONTEXT in (by_database.value.diag.context or "")
    assert error_fields(by_database.value) == error_fields(by_text_guard.value)
    assert direct.execute("SELECT to_regclass(%s)", (f"{schema}.items",)).fetchone() != (None,)


def test_replica_role_does_not_switch_the_guard_off(superuser: Conn, direct: Conn) -> None:
    t = electrify(direct, unique("replica"))
    before = shape(direct, t)
    superuser.execute("SET session_replication_role = replica")
    refused_by_database(superuser, f"ALTER TABLE {t} DROP COLUMN title", "EX010")
    assert shape(direct, t) == before


def test_any_client_encoding(client: Conn, direct: Conn) -> None:
    t = electrify(direct, unique("latin"))
    client.execute("SET client_encoding = 'LATIN1'")  # the accent below is then one byte, not UTF-8
    refused_by_database(client, f"DO $$ BEGIN ALTER TABLE {t} DROP COLUMN title; END $$ -- café", "EX010")
    assert "title" in " ".join(shape_columns(direct, t))


def test_refusal_fails_the_transaction(client: Conn, direct: Conn) -> None:
    t = electrify(direct, unique("tx"))
    client.execute("BEGIN")
    client.execute(f"CREATE TABLE side_{t} (id int)")
    refused_by_database(client, f"DO $$ BEGIN ALTER TABLE {t} DROP COLUMN n; END $$", "EX010")
    with pytest.raises(errors.InFailedSqlTransaction):
        client.execute("SELECT 1")
    client.execute("ROLLBACK")
    assert direct.execute("SELECT to_regclass(%s)", (f"side_{t}",)).fetchone() == (None,)


# The text guard's refusals, sent straight to Postgres: the database must give the same error.
PLAIN = [
    "ALTER TABLE {t} DROP COLUMN title",
    "ALTER TABLE {t} ALTER COLUMN n TYPE int8",
    "ALTER TABLE {t} ALTER COLUMN n SET NOT NULL",
    "ALTER TABLE {t} RENAME COLUMN title TO heading",
    "ALTER TABLE {t} RENAME CONSTRAINT {t}_pkey TO p_{t}",
    "ALTER TABLE {t} RENAME TO renamed_{t}",
    "ALTER TABLE {t} SET SCHEMA other_{t}",
    "ALTER INDEX {t}_pkey RENAME TO i_{t}",
    "ALTER TABLE {t} ADD COLUMN addr cidr",
    "ALTER TABLE {t} ADD COLUMN v varchar(255)",
    "ALTER TABLE {t} ADD COLUMN a int4[]",
    "ALTER TABLE {t} ADD COLUMN f uuid REFERENCES {t}",
    "ALTER TABLE {t} ADD COLUMN c text CHECK (c <> '')",
    "ALTER TABLE {t} ALTER COLUMN title SET DEFAULT 'x'",
    "ALTER TABLE {t} REPLICA IDENTITY DEFAULT",
    "ALTER TABLE {t} ADD COLUMN d int4 DEFAULT 0",
    "ALTER TABLE {t} ADD COLUMN u text UNIQUE",
    "ALTER TABLE {t} ADD COLUMN g int8 GENERATED ALWAYS AS IDENTITY",
    "ALTER TABLE {t} ADD CONSTRAINT c_{t} CHECK (n > 0)",
    "ALTER TABLE {t} SET UNLOGGED",
    "DROP TABLE {t}",
]


def error_fields(error: psycopg.Error) -> tuple[Any, ...]:
    d = error.diag
    return (
        d.sqlstate,
        d.message_primary,
        d.message_detail,
        d.message_hint,
        d.schema_name,
        d.table_name,
        d.column_name,
    )


@pytest.fixture
def text_guard(proxy: RunningProxy, pg: EmbeddedPostgres) -> Iterator[tuple[Conn, Conn]]:
    """The suite's proxy and database `app`, where alice installed the catalog: no event
    triggers there, the text guard works alone. (through the proxy, direct)"""
    app_url = pg.url("app", user="alice", password=ALICE_PASSWORD)
    with (
        psycopg.connect(proxy.dsn(), autocommit=True) as via_proxy,
        psycopg.connect(app_url, autocommit=True) as app_direct,
    ):
        yield via_proxy, app_direct


@pytest.mark.parametrize("template", PLAIN, ids=[p.split("{t}")[1].strip() for p in PLAIN])
def test_same_error_as_the_text_guard(
    direct: Conn, proxy: RunningProxy, text_guard: tuple[Conn, Conn], template: str
) -> None:
    via_proxy, app_direct = text_guard
    t = unique("same")
    for conn in (direct, app_direct):  # the same table in both databases
        electrify(conn, t)
        conn.execute(f"CREATE SCHEMA other_{t}")
    proxy.catalog_sees(
        lambda snap: snap.is_electrified("public", t) and snap.index_table("public", f"{t}_pkey") is not None
    )
    before = shape(direct, t)
    with pytest.raises(psycopg.Error) as by_text_guard:
        via_proxy.execute(template.format(t=t))
    assert GUARD_CONTEXT not in (by_text_guard.value.diag.context or "")
    with pytest.raises(psycopg.Error) as by_database:
        direct.execute(template.format(t=t))
    assert GUARD_CONTEXT in (by_database.value.diag.context or "")
    assert error_fields(by_database.value) == error_fields(by_text_guard.value)
    assert shape(direct, t) == before


# -- allowed ---------------------------------------------------------------------------------


def test_allowed_changes_pass_and_stay_protected(client: Conn, direct: Conn) -> None:
    t = electrify(direct, unique("ok"))
    client.execute(f"ALTER TABLE {t} ADD COLUMN added text")
    client.execute(f"ALTER TABLE {t} ADD COLUMN required int8 NOT NULL")
    client.execute(f"CREATE INDEX i_{t} ON {t} (title)")
    client.execute(f"DROP INDEX i_{t}")
    client.execute(f"ALTER TABLE {t} OWNER TO alice")
    client.execute(f"ALTER TABLE {t} ALTER COLUMN title SET STATISTICS 200")
    client.execute(f"COMMENT ON TABLE {t} IS 'still electrified'")
    client.execute(f"DO $$ BEGIN ALTER TABLE {t} ADD COLUMN from_do bool; END $$")
    names = [c.split()[0] for c in shape(direct, t)[3]]  # type: ignore[index]
    assert names == ["id", "title", "n", "added", "required", "from_do"]
    # The added columns are protected like the others.
    refused_by_database(client, f"DO $$ BEGIN ALTER TABLE {t} DROP COLUMN added; END $$", "EX010")


def test_disable_then_drop_in_one_transaction(client: Conn, direct: Conn) -> None:
    t = unique("gone")
    client.execute(f"CREATE TABLE {t} (id uuid PRIMARY KEY, title text)")
    with client.transaction():
        client.execute(f"ALTER TABLE {t} ENABLE ELECTRIC")
        client.execute(f"ALTER TABLE {t} DISABLE ELECTRIC")
        client.execute(f"DROP TABLE {t}")
    assert direct.execute("SELECT to_regclass(%s)", (t,)).fetchone() == (None,)
    t = electrify(direct, unique("altered"))
    with client.transaction():
        client.execute(f"ALTER TABLE {t} DISABLE ELECTRIC")
        client.execute(f"DO $$ BEGIN ALTER TABLE {t} DROP COLUMN title; END $$")
    assert "title text f" not in shape_columns(direct, t)


def shape_columns(direct: Conn, table: str) -> list[str]:
    rows = direct.execute(
        "SELECT format('%%s %%s %%s', attname, format_type(atttypid, atttypmod), attnotnull) FROM pg_attribute"
        " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (table,),
    ).fetchall()
    return [r[0] for r in rows]


def test_ordinary_traffic_passes(client: Conn, direct: Conn) -> None:
    electrify(direct, unique("busy"))
    notices: list[str] = []
    client.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
    client.execute("DO $$ BEGIN RAISE NOTICE 'hello from DO'; END $$")
    assert notices == ["hello from DO"]
    t = unique("plain")
    client.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, a text, b text)")
    client.execute(f"DO $$ BEGIN INSERT INTO {t} VALUES (1, 'x', 'y'); UPDATE {t} SET a = 'z'; END $$")
    client.execute(f"ALTER TABLE {t} DROP COLUMN b")
    client.execute(f"ALTER TABLE {t} RENAME TO {t}_renamed")
    client.execute(f"DROP TABLE {t}_renamed")
    client.execute(f"CREATE TEMP TABLE tmp_{t} (a int)")
    client.execute(f"ALTER TABLE tmp_{t} ADD COLUMN b text")
    client.execute(f"DROP TABLE pg_temp.tmp_{t}")
    assert direct.execute("SELECT to_regclass(%s)", (f"{t}_renamed",)).fetchone() == (None,)


# -- the DDL log and its notifications --------------------------------------------------------


def test_log_rows_name_the_transaction_backend_and_statement(client: Conn, superuser: Conn) -> None:
    t = unique("logged")
    statement = f"CREATE TABLE {t} (id int PRIMARY KEY)"
    with client.transaction():
        txid, pid = client.execute("SELECT pg_current_xact_id()::text, pg_backend_pid()").fetchone()  # type: ignore[misc]
        client.execute(statement)
        client.execute(f"ALTER TABLE {t} ADD COLUMN a text")
    rows = superuser.execute(
        "SELECT l.pid, l.role_name, l.session_role, l.event, l.command_tag, l.object_identity, s.statement"
        "  FROM electric.ddl_log l JOIN electric.ddl_statements s ON (s.txid, s.hash) = (l.txid, l.statement_hash)"
        " WHERE l.txid = %s::xid8 ORDER BY l.id",
        (txid,),
    ).fetchall()
    who = (pid, "alice", "alice", "ddl_command_end")
    assert [row[:6] for row in rows] == [
        (*who, "CREATE TABLE", f"public.{t}"),
        (*who, "CREATE INDEX", f"public.{t}_pkey"),
        (*who, "ALTER TABLE", f"public.{t}"),
    ]
    # The query string as the server received it: the proxy appends its capture call.
    texts = [row[6] for row in rows]
    assert texts[0] == texts[1] and texts[0].startswith(statement)
    assert texts[2].startswith(f"ALTER TABLE {t} ADD COLUMN a text")
    with client.transaction():
        (txid,) = client.execute("SELECT pg_current_xact_id()::text").fetchone()  # type: ignore[misc]
        client.execute(f"DROP TABLE {t}")
    rows = superuser.execute(
        "SELECT event, command_tag, object_type, object_identity FROM electric.ddl_log WHERE txid = %s::xid8",
        (txid,),
    ).fetchall()
    assert rows == [("sql_drop", "DROP TABLE", "table", f"public.{t}")]


def test_application_roles_cannot_write_the_log(direct: Conn) -> None:
    for statement in (
        "INSERT INTO electric.ddl_log (txid, pid, role_name, session_role, event, command_tag, statement_hash)"
        " VALUES ('1', 1, 'x', 'x', 'sql_drop', 'x', 0)",
        "DELETE FROM electric.ddl_log",
        "UPDATE electric.guard_shapes SET shape = '{}'",
    ):
        with pytest.raises(errors.InsufficientPrivilege):
            direct.execute(statement)
    # The entry points work inside event triggers only.
    with pytest.raises(errors.EventTriggerProtocolViolated):
        direct.execute("SELECT electric._ddlguard_ddl_command_end('mallory', 'CREATE TABLE')")


def test_notify_on_commit_once_per_transaction_never_on_rollback(
    client: Conn, pg: EmbeddedPostgres, guard_db: str
) -> None:
    with psycopg.connect(
        pg.url(guard_db, user="alice", password=ALICE_PASSWORD), autocommit=True
    ) as listener:
        listener.execute("LISTEN electric_ddl")
        t = unique("notified")
        with client.transaction():
            client.execute(f"CREATE TABLE {t}_rolled_back (id int)")
            raise psycopg.Rollback()
        with client.transaction():
            (committed,) = client.execute("SELECT pg_current_xact_id()::text").fetchone()  # type: ignore[misc]
            client.execute(f"CREATE TABLE {t} (id int)")
            client.execute(f"ALTER TABLE {t} ADD COLUMN a text")
            client.execute(f"DROP TABLE {t}")
        with client.transaction():
            (marker,) = client.execute("SELECT pg_current_xact_id()::text").fetchone()  # type: ignore[misc]
            client.execute(f"CREATE TABLE {t}_marker (id int)")
        payloads = [n.payload for n in listener.notifies(timeout=10, stop_after=2)]
        assert payloads == [committed, marker]


# -- install ---------------------------------------------------------------------------------


def test_install_without_the_privilege_skips_the_triggers(pg: EmbeddedPostgres) -> None:
    name = unique("db_guard_alice")
    pg.execute(f"CREATE DATABASE {name} OWNER alice")
    try:
        url = pg.url(name, user="alice", password=ALICE_PASSWORD)
        with psycopg.connect(url, autocommit=True) as alice:
            install_sync(alice)
            assert alice.execute("SELECT count(*) FROM pg_event_trigger").fetchone() == (0,)
            alice.execute("CREATE TABLE t (id int PRIMARY KEY)")
            alice.execute("CALL electric.electrify('t')")
        with pg.connect(name) as superuser:
            install_sync(superuser)  # creates them, from the live tables
            assert superuser.execute("SELECT count(*) FROM pg_event_trigger").fetchone() == (2,)
        with psycopg.connect(url, autocommit=True) as alice:
            install_sync(alice)  # present: left alone, no error
            refused_by_database(alice, "ALTER TABLE t RENAME TO u", "EX002")
    finally:
        pg.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_a_changed_guard_file_takes_the_shapes_again(
    pg: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = unique("db_guard_upgrade")
    pg.execute(f"CREATE DATABASE {name} OWNER alice")
    try:
        with pg.connect(name) as superuser:
            install_sync(superuser)
            superuser.execute("CREATE TABLE t (id int PRIMARY KEY)")
            superuser.execute("CALL electric.electrify('t')")
            # A shape that another version of guard.sql built differently.
            superuser.execute("""UPDATE electric.guard_shapes SET shape = shape || '{"name": "T"}'""")
            refused_by_database(superuser, "COMMENT ON TABLE t IS 'x'", "EX002")
            changed = tuple(
                dataclasses.replace(r, sql=r.sql + "\n-- changed\n") if r.name == "guard" else r
                for r in install.routine_files()
            )
            monkeypatch.setattr(install, "routine_files", lambda: changed)
            install_sync(superuser)
            superuser.execute("COMMENT ON TABLE t IS 'x'")
    finally:
        pg.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_refusals_by_the_database_are_counted(client: Conn, direct: Conn, guard_proxy: RunningProxy) -> None:
    t = electrify(direct, unique("counted"))
    before = guard_proxy.stats.guard_rejections["EX010"]
    refused_by_database(client, f"ALTER TABLE {t} DROP COLUMN title", "EX010")
    assert guard_proxy.stats.guard_rejections["EX010"] == before + 1
