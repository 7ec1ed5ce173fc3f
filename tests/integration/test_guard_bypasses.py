"""Ways the red team changed electrified tables through the text guard, each tried again.

Every test sets up a schema `s` holding an electrified table `t` and a schema `d` holding a
plain table `t` of the same shape, then changes which `t` an unqualified name means in a way a
Python copy of the session's state would miss. The proxy must refuse exactly when the server
resolves the name to the electrified table; each outcome is checked on a direct connection.
These run without event triggers (the suite's proxy installs the catalog as a plain role), so
they exercise the text guard and the checks it sends to the server alone.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psycopg
import pytest

from proxy.embedded import EmbeddedPostgres
from proxy.protocol import messages
from proxy.protocol.codes import Backend
from tests.proxyfixtures import RunningProxy
from tests.wireclient import WireClient, parse_bind_execute, sync

_names = itertools.count()


@dataclass
class Tables:
    s: str  # schema of the electrified `t`
    d: str  # schema of a plain `t`


@pytest.fixture
def direct(pg: EmbeddedPostgres) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg.url("app", user="alice", password="alice-secret"), autocommit=True) as conn:
        yield conn


@pytest.fixture
def client(proxy: RunningProxy) -> Iterator[psycopg.Connection]:
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        yield conn


@pytest.fixture
def tables(direct: psycopg.Connection, proxy: RunningProxy) -> Tables:
    n = next(_names)
    names = Tables(s=f"bs_{n}", d=f"bd_{n}")
    for schema in (names.s, names.d):
        direct.execute(f"CREATE SCHEMA {schema}; CREATE TABLE {schema}.t (id uuid PRIMARY KEY, v text)")
    direct.execute("CALL electric.electrify(%s, 't')", (names.s,))
    proxy.catalog_sees(lambda snap: snap.is_electrified(names.s, "t"))
    return names


def columns(direct: psycopg.Connection, schema: str) -> list[str]:
    rows = direct.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped"
        " ORDER BY attnum",
        (f"{schema}.t",),
    ).fetchall()
    return [r[0] for r in rows]


def refused(run: Callable[[], object], code: str = "EX010") -> psycopg.Error:
    with pytest.raises(psycopg.Error) as info:
        run()
    assert info.value.sqlstate == code, info.value
    return info.value


def drop_v(conn: psycopg.Connection, *, extended: bool = False) -> Callable[[], object]:
    """The unqualified statement under test, over the simple or the extended protocol."""
    return lambda: conn.execute("ALTER TABLE t DROP COLUMN v", binary=extended)


# -- session state that Postgres restores and a Python copy would not ----------------------------


@pytest.mark.parametrize("extended", [False, True])
def test_search_path_set_in_a_rolled_back_transaction(
    client: psycopg.Connection, direct: psycopg.Connection, tables: Tables, extended: bool
) -> None:
    client.execute(f"SET search_path = {tables.s}")
    client.execute(f"BEGIN; SET search_path = {tables.d}, {tables.s}; ROLLBACK")
    error = refused(drop_v(client, extended=extended))
    assert error.diag.schema_name == tables.s and error.diag.table_name == "t"
    assert f'"{tables.s}"."t"' in (error.diag.message_primary or "")
    assert columns(direct, tables.s) == ["id", "v"]


def test_search_path_after_a_failed_string_and_a_savepoint(
    client: psycopg.Connection, direct: psycopg.Connection, tables: Tables
) -> None:
    client.execute(f"SET search_path = {tables.s}")
    with pytest.raises(psycopg.errors.DivisionByZero):
        client.execute(f"SET search_path = {tables.d}; SELECT 1/0")
    refused(drop_v(client))
    client.execute(f"BEGIN; SAVEPOINT a; SET LOCAL search_path = {tables.d}; ROLLBACK TO SAVEPOINT a")
    refused(drop_v(client))
    client.execute("ROLLBACK")
    assert columns(direct, tables.s) == ["id", "v"]


@pytest.mark.parametrize(
    "change",
    [
        "SELECT set_config('search_path', '{s}', false)",
        "UPDATE pg_settings SET setting = '{s}' WHERE name = 'search_path'",
        "SET search_path = '{d}, x', {s}",  # a quoted element holding a comma is one odd schema name
    ],
)
def test_search_path_changed_without_a_set_statement(
    client: psycopg.Connection, direct: psycopg.Connection, tables: Tables, change: str
) -> None:
    client.execute(f"SET search_path = {tables.d}")
    client.execute(change.format(s=tables.s, d=tables.d))
    refused(drop_v(client))
    assert columns(direct, tables.s) == ["id", "v"]


def test_set_role_changes_what_user_means(
    pg: EmbeddedPostgres, client: psycopg.Connection, direct: psycopg.Connection, tables: Tables
) -> None:
    role = f"role_{tables.s}"
    pg.execute(f"CREATE ROLE {role}; GRANT {role} TO alice", database="app")
    direct.execute(f"ALTER SCHEMA {tables.s} RENAME TO {role}; GRANT USAGE ON SCHEMA {role} TO {role}")
    try:
        client.execute(f'SET search_path = "$user", {tables.d}; SET ROLE {role}')
        # `$user` is now the role: `t` is the electrified table in the schema of that name.
        refused(drop_v(client))
        client.execute("RESET ROLE")
        client.execute("ALTER TABLE t DROP COLUMN v")  # back to alice: `$user` finds nothing, d.t
        assert columns(direct, tables.d) == ["id"]
        assert columns(direct, role) == ["id", "v"]
    finally:
        direct.execute(f"ALTER SCHEMA {role} RENAME TO {tables.s}")


def test_search_path_from_current(
    client: psycopg.Connection, direct: psycopg.Connection, tables: Tables
) -> None:
    client.execute(f"SET search_path = {tables.s}")
    client.execute(
        f"CREATE FUNCTION {tables.d}.f() RETURNS int LANGUAGE sql SET search_path FROM CURRENT AS 'SELECT 1'"
    )
    client.execute(f"SET search_path = {tables.d}")
    client.execute(f"ALTER FUNCTION {tables.d}.f() SET search_path FROM CURRENT")
    client.execute(f"SET search_path = {tables.s}; SET search_path FROM CURRENT")
    refused(drop_v(client))
    assert columns(direct, tables.s) == ["id", "v"]


def test_non_ascii_schema_names_are_not_folded(
    client: psycopg.Connection, direct: psycopg.Connection, tables: Tables
) -> None:
    # Python's lower() folds `Ä` to `ä`; Postgres folds only ASCII letters in unquoted names.
    upper, lower = f'"Ä{tables.s}"', f'"ä{tables.s}"'
    direct.execute(f"ALTER SCHEMA {tables.s} RENAME TO {upper}")
    direct.execute(f"CREATE SCHEMA {lower}; CREATE TABLE {lower}.t (id uuid PRIMARY KEY, v text)")
    client.execute(f"SET search_path = Ä{tables.s}")
    refused(drop_v(client))
    assert columns(direct, f"Ä{tables.s}".join('""')) == ["id", "v"]


# -- effects applied when a statement is parsed, not when it runs ---------------------------------


def test_rolled_back_disable_still_guards(
    client: psycopg.Connection, direct: psycopg.Connection, tables: Tables
) -> None:
    client.execute(f"SET search_path = {tables.s}")
    client.execute("BEGIN")
    client.execute("ALTER TABLE t DISABLE ELECTRIC")
    client.execute("ROLLBACK")
    refused(drop_v(client))
    with client.transaction():
        client.execute("SAVEPOINT a")
        client.execute("ALTER TABLE t DISABLE ELECTRIC")
        client.execute("ROLLBACK TO SAVEPOINT a")
        refused(drop_v(client))
    assert columns(direct, tables.s) == ["id", "v"]


def test_disable_parsed_but_never_executed(
    client: psycopg.Connection, direct: psycopg.Connection, tables: Tables
) -> None:
    client.execute(f"SET search_path = {tables.s}")
    with client.transaction():
        client.pgconn.prepare(b"never", b"ALTER TABLE t DISABLE ELECTRIC")
        refused(drop_v(client))
    assert columns(direct, tables.s) == ["id", "v"]


def test_disable_then_drop_in_one_transaction_is_allowed(
    client: psycopg.Connection, direct: psycopg.Connection, tables: Tables
) -> None:
    client.execute(f"SET search_path = {tables.s}")
    with client.transaction():
        client.execute("ALTER TABLE t DISABLE ELECTRIC")
        client.execute("ALTER TABLE t DROP COLUMN v")
    assert columns(direct, tables.s) == ["id"]


def test_decoy_table_rolled_back_to_a_savepoint(
    client: psycopg.Connection, direct: psycopg.Connection, tables: Tables
) -> None:
    client.execute(f"SET search_path = {tables.d}, {tables.s}")
    client.execute(f"DROP TABLE {tables.d}.t")
    with client.transaction():
        client.execute("SAVEPOINT a")
        client.execute(f"CREATE TABLE {tables.d}.t (id uuid, v text)")
        client.execute("ROLLBACK TO SAVEPOINT a")
        refused(drop_v(client))
    assert columns(direct, tables.s) == ["id", "v"]


def test_temporary_table_shadows_and_then_does_not(
    client: psycopg.Connection, direct: psycopg.Connection, tables: Tables
) -> None:
    client.execute(f"SET search_path = {tables.s}")
    client.execute("CREATE TEMP TABLE t (id uuid, v text)")
    client.execute("ALTER TABLE t DROP COLUMN v")  # pg_temp comes first: the temporary table
    client.execute("DROP TABLE pg_temp.t")
    refused(drop_v(client))
    assert columns(direct, tables.s) == ["id", "v"]


# -- prepared statements ------------------------------------------------------------------------


def test_unnamed_statement_rebound_after_its_table_was_electrified(
    client: psycopg.Connection, direct: psycopg.Connection, proxy: RunningProxy
) -> None:
    n = next(_names)
    schema = f"bp_{n}"
    direct.execute(f"CREATE SCHEMA {schema}; CREATE TABLE {schema}.t (id uuid PRIMARY KEY, v text, w text)")
    client.execute(f"SET search_path = {schema}")
    pgconn = client.pgconn
    pgconn.prepare(b"", b"ALTER TABLE t DROP COLUMN IF EXISTS v")
    result = pgconn.exec_prepared(b"", [])
    assert result.status == psycopg.pq.ExecStatus.COMMAND_OK
    # Electrified from elsewhere: a simple query here would replace the unnamed statement.
    direct.execute(f"ALTER TABLE {schema}.t ADD COLUMN v text; CALL electric.electrify('{schema}', 't')")
    proxy.catalog_sees(lambda snap: snap.is_electrified(schema, "t"))
    result = pgconn.exec_prepared(b"", [])
    assert result.status == psycopg.pq.ExecStatus.FATAL_ERROR
    assert result.error_field(psycopg.pq.DiagnosticField.SQLSTATE) == b"EX010"
    assert columns(direct, schema) == ["id", "w", "v"]


def test_statements_prepared_before_anything_was_electrified(
    pg: EmbeddedPostgres, start_proxy: Callable[..., RunningProxy]
) -> None:
    database = f"bfresh_{next(_names)}"
    pg.execute(f"CREATE DATABASE {database} OWNER alice")
    url = pg.url(database, user="alice", password="alice-secret")
    proxy = start_proxy(url + "?sslmode=disable")
    with (
        psycopg.connect(proxy.dsn(dbname=database), autocommit=True) as client,
        psycopg.connect(url, autocommit=True) as direct,
    ):
        client.execute("CREATE TABLE t (id uuid PRIMARY KEY, v text, w text)")
        pgconn = client.pgconn
        pgconn.prepare(b"", b"ALTER TABLE t DROP COLUMN IF EXISTS v")
        pgconn.prepare(b"named", b"ALTER TABLE t DROP COLUMN IF EXISTS w")
        direct.execute("CALL electric.electrify('t')")
        proxy.catalog_sees(lambda snap: snap.is_electrified("public", "t"), database=database)
        for name, column in ((b"", "v"), (b"named", "w")):
            result = pgconn.exec_prepared(name, [])
            assert result.error_field(psycopg.pq.DiagnosticField.SQLSTATE) == b"EX010"
            assert column.encode() in (result.error_field(psycopg.pq.DiagnosticField.MESSAGE_PRIMARY) or b"")
        assert client.execute("SELECT 1").fetchone() == (1,)  # the session goes on
        assert direct.execute("SELECT count(*) FROM t").fetchone() == (0,)
        assert columns(direct, "public") == ["id", "v", "w"]


def test_named_statement_prepared_in_plain_times_is_checked_at_each_execution(
    client: psycopg.Connection, direct: psycopg.Connection, tables: Tables
) -> None:
    client.execute(f"SET search_path = {tables.d}")
    pgconn = client.pgconn
    pgconn.prepare(b"dropper", b"ALTER TABLE t ADD COLUMN IF NOT EXISTS z int4 DEFAULT 1")
    assert pgconn.exec_prepared(b"dropper", []).status == psycopg.pq.ExecStatus.COMMAND_OK
    client.execute(f"SET search_path = {tables.s}")
    result = pgconn.exec_prepared(b"dropper", [])
    assert result.error_field(psycopg.pq.DiagnosticField.SQLSTATE) == b"EX006"
    assert columns(direct, tables.s) == ["id", "v"]


# -- capture that cannot be lost ------------------------------------------------------------------


def test_trailing_comment_does_not_swallow_the_capture(
    client: psycopg.Connection, direct: psycopg.Connection
) -> None:
    name = f"bc_{next(_names)}"
    client.execute(f"CREATE TABLE {name} (id int) -- the last line, no newline")
    assert direct.execute(
        "SELECT count(*) FROM electric.migration_statements WHERE sql LIKE %s", (f"CREATE TABLE {name}%",)
    ).fetchone() == (1,)


def test_extended_ddl_then_simple_commit_before_sync(direct: psycopg.Connection, proxy: RunningProxy) -> None:
    name = f"bx_{next(_names)}"
    wire = WireClient(proxy.host, proxy.port, user="alice", password="alice-secret", database="app")
    try:
        wire.send(messages.query("BEGIN"))
        wire.read_until(Backend.READY_FOR_QUERY)
        wire.send(parse_bind_execute(f"CREATE TABLE {name} (id int)") + messages.query("COMMIT") + sync())
        replies = wire.read_until(Backend.READY_FOR_QUERY) + wire.read_until(Backend.READY_FOR_QUERY)
        # The client sees exactly its own replies: the capture's are taken out.
        assert [chr(f.type) for f in replies] == ["1", "2", "C", "C", "Z", "Z"]
        assert messages.decode_command_tag(replies[3].body) == "COMMIT"
    finally:
        wire.close()
    assert direct.execute(
        "SELECT count(*) FROM electric.migration_statements WHERE sql = %s",
        (f"CREATE TABLE {name} (id int)",),
    ).fetchone() == (1,)


def test_search_path_set_by_a_function_call_message(
    direct: psycopg.Connection, proxy: RunningProxy, tables: Tables
) -> None:
    wire = WireClient(proxy.host, proxy.port, user="alice", password="alice-secret", database="app")
    try:
        wire.send(messages.query(f"SET search_path = {tables.d}"))
        wire.read_until(Backend.READY_FOR_QUERY)
        # FunctionCall of set_config(text, text, bool) (OID 2078): the fast path, no SQL text.
        args = [b"search_path", tables.s.encode(), b"false"]
        body = struct.pack("!IhhH", 2078, 1, 0, len(args))
        body += b"".join(struct.pack("!i", len(a)) + a for a in args) + struct.pack("!h", 0)
        wire.send(messages.message(ord("F"), body))
        assert Backend.ERROR_RESPONSE not in [f.type for f in wire.read_until(Backend.READY_FOR_QUERY)]
        wire.send(messages.query("ALTER TABLE t DROP COLUMN v"))
        replies = wire.read_until(Backend.READY_FOR_QUERY)
        errors = [messages.decode_error_fields(f.body) for f in replies if f.type == Backend.ERROR_RESPONSE]
        assert [e["C"] for e in errors] == ["EX010"]
    finally:
        wire.close()
    assert columns(direct, tables.s) == ["id", "v"]


def test_text_after_an_encoding_change_in_the_same_batch_is_not_guessed(
    direct: psycopg.Connection, proxy: RunningProxy, tables: Tables
) -> None:
    # The server reports the new client_encoding only at Sync; until then, non-ASCII text may
    # mean something else to it than to the proxy, so the guard does not read it.
    wire = WireClient(proxy.host, proxy.port, user="alice", password="alice-secret", database="app")
    try:
        statement = f"ALTER TABLE {tables.d}.t ADD COLUMN note text -- café"
        wire.send(
            parse_bind_execute("SET client_encoding = 'LATIN1'")
            + messages.encode_parse(b"", statement.encode("latin-1"))
            + messages.encode_bind(b"", b"")
            + messages.message(ord("E"), b"\0\0\0\0\0")
            + sync()
        )
        replies = wire.read_until(Backend.READY_FOR_QUERY)
        errors = [messages.decode_error_fields(f.body) for f in replies if f.type == Backend.ERROR_RESPONSE]
        assert [e["C"] for e in errors] == ["EX017"]
        # The batch failed, so its SET was rolled back with it. Once the server has reported
        # the new encoding, the same text reads fine and runs.
        wire.send(messages.query("SET client_encoding = 'LATIN1'"))
        wire.read_until(Backend.READY_FOR_QUERY)
        wire.send(messages.query(statement.encode("latin-1")))
        replies = wire.read_until(Backend.READY_FOR_QUERY)
        assert Backend.ERROR_RESPONSE not in [f.type for f in replies], [
            messages.decode_error_fields(f.body) for f in replies if f.type == Backend.ERROR_RESPONSE
        ]
    finally:
        wire.close()
    assert columns(direct, tables.d) == ["id", "v", "note"]
