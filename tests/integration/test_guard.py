"""The migration guard through the proxy, against real Postgres.

Every rule and every ELECTRIC form runs in the matrix: simple and extended protocol, each with
and without a client transaction. A rejected statement must change nothing: that is checked
from a direct connection, never through the proxy.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator

import asyncpg
import psycopg
import pytest

from proxy.embedded import EmbeddedPostgres
from tests.proxyfixtures import RunningProxy

PROTOCOLS = ["simple", "extended"]
TX = ["autocommit", "transaction"]
_names = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}_{next(_names)}"


@pytest.fixture
def direct(pg: EmbeddedPostgres) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg.url("app", user="alice", password="alice-secret"), autocommit=True) as conn:
        yield conn


@pytest.fixture
def client(proxy: RunningProxy) -> Iterator[psycopg.Connection]:
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        yield conn


Run = Callable[[str], psycopg.Cursor]


def runner(conn: psycopg.Connection, protocol: str, tx: str) -> Run:
    """Run one statement the way the matrix cell says."""

    def run(sql: str) -> psycopg.Cursor:
        binary = protocol == "extended"  # psycopg's extended protocol: Parse/Bind/Execute/Sync
        if tx == "transaction":
            with conn.transaction():
                return conn.execute(sql, binary=binary) if binary else conn.execute(sql)
        return conn.execute(sql, binary=binary) if binary else conn.execute(sql)

    return run


@pytest.fixture
def make_electrified(proxy: RunningProxy) -> Callable[[psycopg.Connection, str], None]:
    def make(direct: psycopg.Connection, name: str, schema: str = "public") -> None:
        direct.execute(
            f"CREATE TABLE {schema}.{name} (id uuid PRIMARY KEY, title text, n int4); "
            f"CREATE INDEX {name}_title ON {schema}.{name} (title)"
        )
        direct.execute("CALL electric.electrify(%s, %s)", (schema, name))
        proxy.catalog_sees(
            lambda snap: snap.is_electrified(schema, name) and snap.index_table(schema, f"{name}_title")
        )

    return make


def columns(direct: psycopg.Connection, table: str) -> list[str]:
    rows = direct.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
        "ORDER BY attnum",
        (table,),
    ).fetchall()
    return [r[0] for r in rows]


def exists(direct: psycopg.Connection, name: str) -> bool:
    return direct.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone() == (True,)


def electrified(direct: psycopg.Connection, name: str) -> bool:
    row = direct.execute(
        "SELECT count(*) FROM electric.electrified WHERE schema_name = 'public' AND table_name = %s", (name,)
    ).fetchone()
    return row == (1,)


# -- rejections ------------------------------------------------------------------------------------

REJECTIONS = [
    ("ALTER TABLE {t} DROP COLUMN title", "EX010", 'Cannot drop column "title" of electrified table'),
    ("ALTER TABLE ONLY {t} DROP COLUMN title", "EX010", "Cannot drop column"),
    ("ALTER TABLE IF EXISTS {t} DROP COLUMN title", "EX010", "Cannot drop column"),
    ("ALTER TABLE {t} ALTER COLUMN n TYPE int8", "EX009", 'Cannot change type of column "n"'),
    ("ALTER TABLE {t} ALTER COLUMN n SET NOT NULL", "EX007", 'Cannot alter column "n"'),
    ("ALTER TABLE {t} ADD CONSTRAINT c_{t} CHECK (n > 0)", "EX007", "Cannot alter column"),
    ("ALTER TABLE {t} RENAME COLUMN title TO heading", "EX008", 'Cannot rename column "title"'),
    ("ALTER TABLE {t} RENAME CONSTRAINT {t}_pkey TO p_{t}", "EX012", "Cannot rename constraint"),
    ("ALTER TABLE {t} RENAME TO renamed_{t}", "EX002", "Cannot rename electrified table"),
    ("ALTER INDEX {t}_title RENAME TO i_{t}", "EX003", "Cannot rename"),
    ("ALTER TABLE {t} ADD COLUMN addr cidr", "EX005", 'Cannot electrify column of type "cidr"'),
    ("ALTER TABLE {t} ADD COLUMN v varchar(255)", "EX005", "Cannot electrify column of type"),
    ("ALTER TABLE {t} ADD COLUMN d int4 DEFAULT 0", "EX006", "Cannot electrify column with DEFAULT clause"),
    ("ALTER TABLE {t} ADD COLUMN u text UNIQUE", "EX011", "UNIQUE constraint"),
    ("ALTER TABLE {t} ADD COLUMN ok int4, DROP COLUMN title", "EX010", "Cannot drop column"),
    ("DROP TABLE {t}", "EX004", "Cannot drop electrified table"),
    ("DROP TABLE plain_{t}, {t}", "EX004", "Cannot drop electrified table"),
    ("DO $$ BEGIN EXECUTE 'ALTER TABLE ' || '{t} DROP COLUMN title'; END $$", "EX013", "DO blocks"),
]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("tx", TX)
@pytest.mark.parametrize(
    ("template", "code", "message"), REJECTIONS, ids=[r[0].split("{t}")[0].strip() + r[1] for r in REJECTIONS]
)
def test_rejected_statement_changes_nothing(
    make_electrified: Callable[..., None],
    client: psycopg.Connection,
    direct: psycopg.Connection,
    protocol: str,
    tx: str,
    template: str,
    code: str,
    message: str,
) -> None:
    table = unique("rej")
    make_electrified(direct, table)
    direct.execute(f"CREATE TABLE plain_{table} (id int)")
    before = columns(direct, table)
    sql = template.format(t=table)
    with pytest.raises(psycopg.Error) as info:
        runner(client, protocol, tx)(sql)
    error = info.value
    assert error.sqlstate == code, error
    assert message in str(error)
    assert error.diag.message_detail and "electrified" in error.diag.message_detail
    assert error.diag.message_hint
    assert error.diag.context is None  # no PL/pgSQL internals leak into the client's error
    if code != "EX013":
        assert error.diag.schema_name == "public" and error.diag.table_name == table
    # nothing reached the database
    assert exists(direct, table) and exists(direct, f"plain_{table}") and exists(direct, f"{table}_title")
    assert columns(direct, table) == before
    assert electrified(direct, table)
    # the session is usable afterwards, as after any server error
    assert client.execute("SELECT 1").fetchone() == (1,)


def test_rejection_inside_a_transaction_fails_the_transaction(
    make_electrified: Callable[..., None], client: psycopg.Connection, direct: psycopg.Connection
) -> None:
    table = unique("txfail")
    make_electrified(direct, table)
    client.autocommit = False
    client.execute(f"CREATE TABLE side_{table} (id int)")
    with pytest.raises(psycopg.Error):
        client.execute(f"ALTER TABLE {table} DROP COLUMN title")
    assert client.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
    with pytest.raises(psycopg.errors.InFailedSqlTransaction):
        client.execute("SELECT 1")
    client.rollback()
    client.autocommit = True
    assert not exists(direct, f"side_{table}")  # the whole transaction rolled back


def test_multi_statement_string_runs_nothing_when_one_is_rejected(
    make_electrified: Callable[..., None], client: psycopg.Connection, direct: psycopg.Connection
) -> None:
    table = unique("multi")
    make_electrified(direct, table)
    with pytest.raises(psycopg.Error) as info:
        client.execute(
            f"CREATE TABLE before_{table} (id int); ALTER TABLE {table} DROP COLUMN n; CREATE TABLE after_{table} (id int)"
        )
    assert info.value.sqlstate == "EX010"
    assert not exists(direct, f"before_{table}") and not exists(direct, f"after_{table}")
    assert "n" in columns(direct, table)


# -- allowed ---------------------------------------------------------------------------------------

ALLOWED = [
    "ALTER TABLE {t} ADD COLUMN extra text",
    "ALTER TABLE {t} ADD COLUMN a int8 NOT NULL, ADD COLUMN b bool",
    "CREATE INDEX idx2_{t} ON {t} (n)",
    "DROP INDEX {t}_title",
    "ALTER TABLE {t} OWNER TO alice",
    "ALTER TABLE {t} ALTER COLUMN title SET STATISTICS 200",
    "ALTER TABLE {t} DISABLE TRIGGER ALL",
    "COMMENT ON TABLE {t} IS 'hello'",
]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("tx", TX)
@pytest.mark.parametrize("template", ALLOWED)
def test_allowed_on_electrified(
    make_electrified: Callable[..., None],
    client: psycopg.Connection,
    direct: psycopg.Connection,
    protocol: str,
    tx: str,
    template: str,
) -> None:
    table = unique("ok")
    make_electrified(direct, table)
    runner(client, protocol, tx)(template.format(t=table))
    assert electrified(direct, table)


@pytest.mark.parametrize("template", [r[0] for r in REJECTIONS if "DO $$" not in r[0]])
def test_same_statements_on_plain_tables_pass(
    make_electrified: Callable[..., None],
    client: psycopg.Connection,
    direct: psycopg.Connection,
    template: str,
) -> None:
    table = unique("plain")
    direct.execute(
        f"CREATE TABLE {table} (id uuid PRIMARY KEY, title text, n int4); CREATE INDEX {table}_title ON {table} (title)"
    )
    direct.execute(f"CREATE TABLE plain_{table} (id int)")
    client.execute(template.format(t=table))


# -- the ELECTRIC statements ----------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("tx", TX)
@pytest.mark.parametrize(
    ("enable", "disable"),
    [
        ("ALTER TABLE {t} ENABLE ELECTRIC", "ALTER TABLE {t} DISABLE ELECTRIC"),
        ("ELECTRIC ENABLE {t}", "ELECTRIC DISABLE {t}"),
        ("ELECTRIC ENABLE public.{t}", 'ELECTRIC DISABLE "public".{t}'),
        ("CALL electric.electrify('{t}')", "ELECTRIC DISABLE {t}"),
    ],
)
def test_enable_and_disable(
    make_electrified: Callable[..., None],
    client: psycopg.Connection,
    direct: psycopg.Connection,
    protocol: str,
    tx: str,
    enable: str,
    disable: str,
) -> None:
    table = unique("el")
    direct.execute(f"CREATE TABLE {table} (id uuid PRIMARY KEY, v text)")
    run = runner(client, protocol, tx)
    assert run(enable.format(t=table)).statusmessage == "ELECTRIC ENABLE"
    assert electrified(direct, table)
    assert direct.execute(
        "SELECT relreplident FROM pg_class WHERE oid = %s::regclass", (table,)
    ).fetchone() == ("f",)
    with pytest.raises(psycopg.Error):
        run(f"ALTER TABLE {table} DROP COLUMN v")
    assert run(disable.format(t=table)).statusmessage == "ELECTRIC DISABLE"
    assert not electrified(direct, table)
    run(f"ALTER TABLE {table} DROP COLUMN v")  # no longer guarded
    assert columns(direct, table) == ["id"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_enable_checks_the_table(
    make_electrified: Callable[..., None],
    client: psycopg.Connection,
    direct: psycopg.Connection,
    protocol: str,
) -> None:
    table = unique("nopk")
    direct.execute(f"CREATE TABLE {table} (id int, v text)")
    with pytest.raises(psycopg.Error) as info:
        runner(client, protocol, "autocommit")(f"ALTER TABLE {table} ENABLE ELECTRIC")
    assert info.value.sqlstate == "EX014"
    assert "PRIMARY KEY" in str(info.value)
    assert not electrified(direct, table)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("tx", TX)
def test_grant_revoke_assign_unassign_sqlite(
    proxy: RunningProxy, client: psycopg.Connection, direct: psycopg.Connection, protocol: str, tx: str
) -> None:
    table = unique("perm")
    direct.execute(f"CREATE TABLE {table} (id uuid PRIMARY KEY, user_id uuid, title text)")
    direct.execute("CALL electric.electrify(%s)", (table,))
    proxy.catalog_sees(lambda snap: snap.is_electrified("public", table))
    run = runner(client, protocol, tx)
    assert run(f"ELECTRIC GRANT ALL ON {table} TO 'admin'").statusmessage == "ELECTRIC GRANT"
    count = f"SELECT count(*) FROM electric.grants WHERE relid = '{table}'::regclass"
    assert direct.execute(count).fetchone()[0] >= 4  # type: ignore[index]
    assert run(f"ELECTRIC REVOKE ALL ON {table} FROM 'admin'").statusmessage == "ELECTRIC REVOKE"
    assert direct.execute(count).fetchone() == (0,)
    assert run(f"ELECTRIC ASSIGN 'admin' TO {table}.user_id").statusmessage == "ELECTRIC ASSIGN"
    assigned = f"SELECT count(*) FROM electric.assignments WHERE relid = '{table}'::regclass"
    assert direct.execute(assigned).fetchone() == (1,)
    assert run(f"ELECTRIC UNASSIGN 'admin' FROM {table}.user_id").statusmessage == "ELECTRIC UNASSIGN"
    assert direct.execute(assigned).fetchone() == (0,)
    marker = unique("sqlite")
    assert run(f"ELECTRIC SQLITE 'CREATE INDEX {marker} ON t (a);'").statusmessage == "ELECTRIC SQLITE"
    assert direct.execute(
        "SELECT count(*) FROM electric.sqlite_statements WHERE sql LIKE %s", (f"%{marker}%",)
    ).fetchone() == (1,)


def test_grant_on_unknown_column_is_refused(
    make_electrified: Callable[..., None], client: psycopg.Connection, direct: psycopg.Connection
) -> None:
    table = unique("badcol")
    make_electrified(direct, table)
    with pytest.raises(psycopg.Error) as info:
        client.execute(f"ELECTRIC GRANT UPDATE (nope) ON {table} TO 'admin'")
    assert info.value.sqlstate == "EX016"


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    ("sql", "position"),
    [
        ("ELECTRIC GRANT JUNK", 16),
        ("SELECT 1; -- c\nELECTRIC ENABLE", 31),
        ("ALTER TABLE t ENABLE ELECTRIC junk", 31),
    ],
)
def test_malformed_electric_statement_is_42601_with_position(
    client: psycopg.Connection, protocol: str, sql: str, position: int
) -> None:
    with pytest.raises(psycopg.errors.SyntaxError) as info:
        runner(client, protocol, "autocommit")(sql)
    assert info.value.sqlstate == "42601"
    assert info.value.diag.statement_position == str(position)


def test_create_electrify_alter_in_one_string(
    make_electrified: Callable[..., None], client: psycopg.Connection, direct: psycopg.Connection
) -> None:
    table = unique("one")
    cur = client.execute(
        f"CREATE TABLE {table} (id uuid PRIMARY KEY); ALTER TABLE {table} ENABLE ELECTRIC; "
        f"ALTER TABLE {table} ADD COLUMN v text"
    )
    tags = [cur.statusmessage]
    while cur.nextset():
        tags.append(cur.statusmessage)
    assert tags == ["CREATE TABLE", "ELECTRIC ENABLE", "ALTER TABLE"]
    assert electrified(direct, table) and columns(direct, table) == ["id", "v"]
    # and the statement after is judged with the table electrified
    with pytest.raises(psycopg.Error):
        client.execute(f"CREATE TABLE x_{table} (id int); ALTER TABLE {table} DROP COLUMN v")
    assert not exists(direct, f"x_{table}")


def test_rolled_back_electrify_leaves_table_unguarded(
    make_electrified: Callable[..., None], client: psycopg.Connection, direct: psycopg.Connection
) -> None:
    table = unique("rb")
    direct.execute(f"CREATE TABLE {table} (id uuid PRIMARY KEY, v text)")
    client.autocommit = False
    client.execute(f"ALTER TABLE {table} ENABLE ELECTRIC")
    client.rollback()
    client.autocommit = True
    assert not electrified(direct, table)
    client.execute(f"ALTER TABLE {table} DROP COLUMN v")


# -- names resolve as Postgres resolves them --------------------------------------------------------


def test_search_path_and_quoted_identifiers(
    make_electrified: Callable[..., None], client: psycopg.Connection, direct: psycopg.Connection
) -> None:
    schema = unique("Sch")
    direct.execute(f'CREATE SCHEMA "{schema}"; CREATE TABLE "{schema}"."Items" (id uuid PRIMARY KEY, v text)')
    direct.execute('CREATE TABLE "Items" (id uuid PRIMARY KEY, v text)') if not exists(
        direct, '"Items"'
    ) else None
    client.execute(f'ELECTRIC ENABLE "{schema}"."Items"')
    # unqualified, quoted: public."Items" is first on the default path, and it is not electrified
    client.execute('ALTER TABLE "Items" ADD COLUMN w1 int4 DEFAULT 1')
    client.execute(f'SET search_path TO "{schema}", public')
    with pytest.raises(psycopg.Error) as info:
        client.execute('ALTER TABLE "Items" DROP COLUMN v')
    assert info.value.sqlstate == "EX010" and info.value.diag.schema_name == schema
    client.execute("ALTER TABLE items ADD COLUMN w2 int4 DEFAULT 1") if exists(
        direct, "public.items"
    ) else None
    client.execute("RESET search_path")
    client.execute('ALTER TABLE "Items" DROP COLUMN w1')


def test_search_path_from_startup_options(proxy: RunningProxy, direct: psycopg.Connection) -> None:
    schema = unique("opt")
    direct.execute(f"CREATE SCHEMA {schema}; CREATE TABLE {schema}.things (id uuid PRIMARY KEY, v text)")
    direct.execute(f"CALL electric.electrify('{schema}', 'things')")
    proxy.catalog_sees(lambda snap: snap.is_electrified(schema, "things"))
    direct.execute("CREATE TABLE IF NOT EXISTS things (id int, v text)")
    with psycopg.connect(proxy.dsn(options=f"-c search_path={schema},public"), autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as info:
            conn.execute("ALTER TABLE things DROP COLUMN v")
        assert info.value.sqlstate == "EX010"


def test_drop_schema_cascade_with_electrified_table(
    proxy: RunningProxy, client: psycopg.Connection, direct: psycopg.Connection
) -> None:
    schema = unique("cas")
    direct.execute(f"CREATE SCHEMA {schema}; CREATE TABLE {schema}.t (id uuid PRIMARY KEY)")
    direct.execute(f"CALL electric.electrify('{schema}', 't')")
    proxy.catalog_sees(lambda snap: snap.is_electrified(schema, "t"))
    with pytest.raises(psycopg.Error) as info:
        client.execute(f"DROP SCHEMA {schema} CASCADE")
    assert info.value.sqlstate == "EX004"
    assert exists(direct, f"{schema}.t")


def test_prepared_statement_rechecked_after_table_is_electrified(
    proxy: RunningProxy, direct: psycopg.Connection
) -> None:
    table = unique("prep")
    direct.execute(f"CREATE TABLE {table} (id uuid PRIMARY KEY, v text, w text)")

    async def run() -> None:
        conn = await asyncpg.connect(proxy.url(sslmode="disable"))
        try:
            stmt = await conn.prepare(f"ALTER TABLE {table} DROP COLUMN IF EXISTS w")  # named, extended
            await stmt.fetch()
            direct.execute("CALL electric.electrify(%s)", (table,))
            proxy.catalog_sees(lambda snap: snap.is_electrified("public", table))
            with pytest.raises(asyncpg.PostgresError) as info:
                await stmt.fetch()
            assert info.value.sqlstate == "EX010"
        finally:
            await conn.close()

    asyncio.run(run())
    assert columns(direct, table) == ["id", "v"]


# -- transactions pass through untouched ------------------------------------------------------------


def test_every_transaction_statement_form(
    make_electrified: Callable[..., None], client: psycopg.Connection, direct: psycopg.Connection
) -> None:
    table = unique("txf")
    script = [
        "START TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        f"CREATE TABLE {table} (id uuid PRIMARY KEY, v text)",
        "SAVEPOINT a",
        f"ALTER TABLE {table} ENABLE ELECTRIC",
        "ROLLBACK TO SAVEPOINT a",
        "RELEASE a",
        "END",
        "BEGIN",
        f"ALTER TABLE {table} ADD COLUMN w text",
        "ABORT",
        "BEGIN",
        f"ALTER TABLE {table} ADD COLUMN w2 text",
        "COMMIT",
    ]
    for sql in script:
        client.execute(sql)
    assert exists(direct, table) and columns(direct, table) == ["id", "v", "w2"]
    assert not electrified(direct, table)


def test_asyncpg_migration_creates_electrifies_and_alters(
    proxy: RunningProxy, direct: psycopg.Connection
) -> None:
    table = unique("apg")

    async def migrate() -> list[str]:
        conn = await asyncpg.connect(proxy.url(sslmode="disable"))
        try:
            async with conn.transaction():  # asyncpg's BEGIN/COMMIT
                await conn.execute(f"CREATE TABLE {table} (id uuid PRIMARY KEY, title text)")
                tag = await conn.execute(f"ALTER TABLE {table} ENABLE ELECTRIC")
                await conn.execute(f"ALTER TABLE {table} ADD COLUMN done bool")
                await conn.fetch(f"CREATE INDEX {table}_done ON {table} (done)")  # extended protocol
            with pytest.raises(asyncpg.PostgresError):
                await conn.fetch(f"ALTER TABLE {table} DROP COLUMN title")
            return [tag]
        finally:
            await conn.close()

    assert asyncio.run(migrate()) == ["ELECTRIC ENABLE"]
    assert electrified(direct, table) and columns(direct, table) == ["id", "title", "done"]
