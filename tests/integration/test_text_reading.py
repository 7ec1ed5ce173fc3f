"""The guard reads text as the server reads it: client encodings, string settings, DO blocks,
and replication connections judged by the value of their `replication` keyword.

Every refusal is checked on a direct connection: the electrified table still has its column.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import psycopg
import pytest

from proxy.ddl import rules
from proxy.ddl.classify import Kind, classify
from proxy.ddl.encoding import decode_sql
from proxy.ddl.names import QualifiedName
from proxy.embedded import EmbeddedPostgres
from proxy.net.session import Session
from tests.pgfixtures import ALICE_PASSWORD, REPLICATOR_PASSWORD
from tests.proxyfixtures import RunningProxy

_names = itertools.count()


@pytest.fixture
def direct(pg: EmbeddedPostgres) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg.url("app", user="alice", password=ALICE_PASSWORD), autocommit=True) as conn:
        yield conn


@pytest.fixture
def client(proxy: RunningProxy) -> Iterator[psycopg.Connection]:
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        yield conn


@pytest.fixture
def table(proxy: RunningProxy, direct: psycopg.Connection) -> str:
    """A fresh electrified table `public.<name>` (id, title, n), known to the proxy's catalog."""
    name = f"txt_{next(_names)}"
    direct.execute(f"CREATE TABLE public.{name} (id uuid PRIMARY KEY, title text, n int4)")
    direct.execute("CALL electric.electrify('public', %s)", (name,))
    proxy.catalog_sees(lambda snap: snap.is_electrified("public", name))
    return name


def columns(direct: psycopg.Connection, name: str) -> list[str]:
    rows = direct.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
        "AND NOT attisdropped ORDER BY attnum",
        (name,),
    ).fetchall()
    return [r[0] for r in rows]


def session_of(proxy: RunningProxy, conn: psycopg.Connection) -> Session:
    """The proxy's session for `conn` (passthrough: the client sees the backend's own pid)."""
    pid = conn.info.backend_pid
    (session,) = [s for s in list(proxy.server.ctx.sessions) if s.backend_pid == pid]
    return session


def refused(conn: psycopg.Connection, sql: str) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as info:
        conn.execute(sql)
    return info.value


# -- client encoding and string setting, followed from the server's reports --------------------------


def test_session_follows_client_encoding(proxy: RunningProxy, client: psycopg.Connection) -> None:
    session = session_of(proxy, client)
    assert (session.client_encoding, session.server_encoding) == ("UTF8", "UTF8")
    client.execute("SET client_encoding = 'LATIN1'")
    assert session.client_encoding == "LATIN1"
    client.execute("SET NAMES 'SJIS'")
    assert session.client_encoding == "SJIS"
    client.execute("RESET client_encoding")
    assert session.client_encoding == "UTF8"
    with client.transaction(force_rollback=True):
        client.execute("SET client_encoding = 'WIN1252'")
        assert session.client_encoding == "WIN1252"
    assert session.client_encoding == "UTF8"  # the rollback restored it, and the server said so
    client.execute("SELECT set_config('client_encoding', 'KOI8R', false)")
    assert session.client_encoding == "KOI8R"


def test_session_follows_standard_conforming_strings(proxy: RunningProxy, client: psycopg.Connection) -> None:
    session = session_of(proxy, client)
    assert session.standard_conforming_strings
    client.execute("SET standard_conforming_strings = off")
    assert not session.standard_conforming_strings
    client.execute("RESET standard_conforming_strings")
    assert session.standard_conforming_strings


def test_client_encoding_from_the_startup_packet(proxy: RunningProxy) -> None:
    with psycopg.connect(proxy.dsn(client_encoding="LATIN1"), autocommit=True) as conn:
        session = session_of(proxy, conn)
        assert session.client_encoding == "LATIN1"
        assert session.sql_codec.decode("-- é".encode("latin-1")) == "-- é"


def _judge(text: str | None, proxy: RunningProxy, standard: bool = True) -> list[rules.Verdict]:
    """What the rules say of `text` against the proxy's catalog (names resolved in public)."""
    assert text is not None
    catalog = proxy.server.ctx.catalog
    assert catalog is not None
    snapshot = catalog.watcher("app").snapshot
    assert snapshot is not None

    def resolve(name: QualifiedName) -> rules.TableId | None:
        return rules.TableId(name.schema or "public", name.name)

    return [
        rules.check(
            statement,
            resolve,
            lambda t: snapshot.is_electrified(t.schema, t.name),
            index_table=lambda _name: None,
            schema_has_electrified=snapshot.schema_has_electrified,
            any_electrified=True,
        ).verdict
        for statement in classify(text, standard_conforming_strings=standard)
    ]


def test_latin1_text_is_read_in_the_session_encoding(
    proxy: RunningProxy, client: psycopg.Connection, table: str
) -> None:
    client.execute("SET client_encoding = 'LATIN1'")
    raw = f"ALTER TABLE {table} DROP COLUMN title -- café".encode("latin-1")  # what psycopg sends
    session = session_of(proxy, client)
    assert decode_sql(raw, "UTF8") is None
    assert _judge(session.sql_codec.decode(raw), proxy) == [rules.Verdict.REJECT]


def test_sjis_text_is_read_in_the_session_encoding(
    proxy: RunningProxy, client: psycopg.Connection, table: str
) -> None:
    client.execute("SET client_encoding = 'SJIS'")
    raw = f"SELECT E'ソ'; ALTER TABLE {table} DROP COLUMN title; --'".encode("cp932")
    text = session_of(proxy, client).sql_codec.decode(raw)
    assert text is not None
    assert [s.kind for s in classify(text)] == [Kind.SELECT, Kind.ALTER_TABLE]
    assert _judge(text, proxy) == [rules.Verdict.ALLOW, rules.Verdict.REJECT]


def test_latin1_ddl_on_electrified_table_is_refused(
    client: psycopg.Connection, direct: psycopg.Connection, table: str
) -> None:
    # Unreadable as UTF-8: refused under the default on_parse_error, not forwarded unchecked.
    client.execute("SET client_encoding = 'LATIN1'")
    refused(client, f"ALTER TABLE {table} DROP COLUMN title -- café")
    assert "title" in columns(direct, table)


def test_sjis_statement_hidden_behind_a_backslash_byte_is_refused(
    client: psycopg.Connection, direct: psycopg.Connection, table: str
) -> None:
    # ソ is 0x83 0x5C in SJIS: read byte by byte, `\'` hides the ALTER inside a literal.
    client.execute("SET client_encoding = 'SJIS'")
    refused(client, f"SELECT E'ソ'; ALTER TABLE {table} DROP COLUMN title; --'")
    assert "title" in columns(direct, table)


def test_latin1_ddl_is_judged_by_the_rules(
    client: psycopg.Connection, direct: psycopg.Connection, table: str
) -> None:
    client.execute("SET client_encoding = 'LATIN1'")
    assert refused(client, f"ALTER TABLE {table} DROP COLUMN title -- café").sqlstate == "EX010"
    client.execute(f"ALTER TABLE {table} ADD COLUMN note text -- café")
    assert "note" in columns(direct, table)


def test_sjis_ddl_is_judged_by_the_rules(client: psycopg.Connection, table: str) -> None:
    client.execute("SET client_encoding = 'SJIS'")
    error = refused(client, f"SELECT E'ソ'; ALTER TABLE {table} DROP COLUMN title; --'")
    assert error.sqlstate == "EX010"


def test_standard_strings_off_text_is_unreadable(
    proxy: RunningProxy, client: psycopg.Connection, table: str
) -> None:
    client.execute("SET standard_conforming_strings = off")
    sql = f"SELECT 'a\\''; ALTER TABLE {table} DROP COLUMN title; -- '"
    session = session_of(proxy, client)
    (statement,) = classify(sql, standard_conforming_strings=session.standard_conforming_strings)
    assert statement.kind is Kind.UNPARSABLE


def test_standard_strings_off_backslash_is_refused(
    client: psycopg.Connection, direct: psycopg.Connection, table: str
) -> None:
    # With the setting off, `'a\''` ends after `a'`: the ALTER runs; pglast reads one literal.
    client.execute("SET standard_conforming_strings = off")
    try:
        refused(client, f"SELECT 'a\\''; ALTER TABLE {table} DROP COLUMN title; -- '")
    finally:
        assert "title" in columns(direct, table)


# -- DO blocks ---------------------------------------------------------------------------------------

SQITCH_STYLE = [
    "DO $$ BEGIN ASSERT (SELECT count(*) FROM {t}) >= 0; END $$",
    "DO $$ BEGIN ASSERT (SELECT has_table_privilege('{t}', 'SELECT')); END $$",
    "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_tables WHERE tablename = '{t}') THEN "
    "RAISE EXCEPTION 'table {t} is missing'; END IF; END $$",
    "DO $$ BEGIN PERFORM id FROM {t} WHERE false; END $$",
    "DO $$ BEGIN RAISE NOTICE 'checked {t}'; END $$",
]


@pytest.mark.parametrize("protocol", ["simple", "extended"])
@pytest.mark.parametrize("template", SQITCH_STYLE)
def test_do_blocks_without_ddl_pass(
    client: psycopg.Connection, table: str, template: str, protocol: str
) -> None:
    client.execute(template.format(t=table), binary=protocol == "extended")


def test_do_block_data_fix_runs(client: psycopg.Connection, direct: psycopg.Connection, table: str) -> None:
    direct.execute(f"INSERT INTO {table} (id, n) VALUES (gen_random_uuid(), 1), (gen_random_uuid(), 2)")
    notices: list[str] = []
    client.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
    client.execute(
        f"DO $$ DECLARE r record; BEGIN FOR r IN SELECT id FROM {table} LOOP "
        f"UPDATE {table} SET n = n * 10 WHERE id = r.id; END LOOP; RAISE NOTICE 'fixed'; END $$"
    )
    assert notices == ["fixed"]
    assert direct.execute(f"SELECT sum(n) FROM {table}").fetchone() == (30,)


@pytest.mark.parametrize("protocol", ["simple", "extended"])
@pytest.mark.parametrize(
    ("template", "code"),
    [
        pytest.param("DO $$ BEGIN ALTER TABLE {t} DROP COLUMN title; END $$", "EX010"),
        pytest.param("DO $$ BEGIN EXECUTE 'ALTER TABLE {t} DROP COLUMN title'; END $$", "EX010"),
        pytest.param("DO $$ BEGIN IF true THEN EXECUTE 'DROP TABLE {t}'; END IF; END $$", "EX004"),
        pytest.param("DO $a$ BEGIN DO $b$ BEGIN DROP TABLE {t}; END $b$; END $a$", "EX004"),
        ("DO $$ BEGIN EXECUTE format('ALTER TABLE %I DROP COLUMN title', '{t}'); END $$", "EX013"),
        ("DO $$ DECLARE q text := 'DROP TABLE {t}'; BEGIN EXECUTE q; END $$", "EX013"),
    ],
)
def test_do_blocks_with_forbidden_ddl_are_refused(
    client: psycopg.Connection,
    direct: psycopg.Connection,
    table: str,
    template: str,
    code: str,
    protocol: str,
) -> None:
    with pytest.raises(psycopg.Error) as info:
        client.execute(template.format(t=table), binary=protocol == "extended")
    assert info.value.sqlstate == code
    assert "title" in columns(direct, table)


def test_do_block_adding_a_column_passes_and_is_recorded(
    client: psycopg.Connection, direct: psycopg.Connection, table: str
) -> None:
    client.execute(f"DO $$ BEGIN RAISE NOTICE 'no DDL in {table}'; END $$")
    client.execute(f"DO $$ BEGIN ALTER TABLE {table} ADD COLUMN note text; END $$")
    assert "note" in columns(direct, table)
    recorded = direct.execute(
        "SELECT tag, sql FROM electric.migration_statements WHERE sql LIKE %s", (f"%{table}%",)
    ).fetchall()
    assert recorded == [("DO", f"DO $$ BEGIN ALTER TABLE {table} ADD COLUMN note text; END $$")]


# -- replication connections ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["false", "off", "no", "0"])
def test_replication_false_is_an_ordinary_guarded_session(
    proxy: RunningProxy, direct: psycopg.Connection, table: str, value: str
) -> None:
    with psycopg.connect(proxy.dsn(replication=value), autocommit=True) as conn:
        assert refused(conn, f"ALTER TABLE {table} DROP COLUMN title").sqlstate == "EX010"
    assert "title" in columns(direct, table)


def test_logical_walsender_is_guarded(proxy: RunningProxy, direct: psycopg.Connection, table: str) -> None:
    # replicator does not own the table: unguarded, Postgres would answer 42501 instead.
    dsn = proxy.dsn(user="replicator", password=REPLICATOR_PASSWORD, replication="database")
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("IDENTIFY_SYSTEM").fetchone() is not None
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert refused(conn, f"ALTER TABLE {table} DROP COLUMN title").sqlstate == "EX010"
        assert session_of(proxy, conn).guard_link is not None
    assert "title" in columns(direct, table)


@pytest.mark.parametrize("value", ["true", "on", "yes", "1", "t"])
def test_physical_walsender_is_relayed_untouched(proxy: RunningProxy, value: str) -> None:
    dsn = proxy.dsn(user="replicator", password=REPLICATOR_PASSWORD, replication=value)
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("IDENTIFY_SYSTEM").fetchone()
        assert row is not None and row[0]  # the system identifier
        assert session_of(proxy, conn).guard_link is None
