"""A catalog the application cannot rewrite (issue 14, item 4): the catalog installed through
`catalog.admin_url` belongs to a NOLOGIN owner role; alice, the application, connects through
the proxy and directly and can change it only through its procedures; every ELECTRIC change is
in the history, whichever way it was made.

Each fixture makes its own databases and owner roles, so other modules are unaffected.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from proxy.catalog.cache import CatalogWatcher
from proxy.catalog.install import Installer, install_sync, ownership_mode
from proxy.embedded import EmbeddedPostgres
from tests.pgfixtures import ALICE_PASSWORD
from tests.proxyfixtures import RunningProxy, proxy_config

DB = "catsec_t"
README = Path(__file__).resolve().parents[2] / "README.md"
OWNER = "catsec_owner"

Conn = psycopg.Connection[tuple[Any, ...]]


def alice_url(pg: EmbeddedPostgres, db: str) -> str:
    return pg.url(db, user="alice", password=ALICE_PASSWORD) + "?sslmode=disable"


def fresh_database(pg: EmbeddedPostgres, name: str) -> None:
    pg.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    pg.execute(f"CREATE DATABASE {name} OWNER alice")


def drop_role(pg: EmbeddedPostgres, role: str) -> None:
    pg.execute(f"DROP ROLE IF EXISTS {role}")


def scalar(conn: Conn, query: str, params: tuple[Any, ...] = ()) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def sql_error(conn: Conn, statement: str) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as caught:
        conn.execute(statement)
    return caught.value


# -- the secured database: catalog installed by the superuser through catalog.admin_url --------


@pytest.fixture(scope="module")
def secured(pg: EmbeddedPostgres) -> Iterator[RunningProxy]:
    """A proxy whose upstream is alice and whose admin URL is the superuser's, on its own
    database; the owner role is this module's."""
    fresh_database(pg, DB)
    drop_role(pg, OWNER)
    running = RunningProxy(
        proxy_config(alice_url(pg, DB), **{"catalog.admin_url": pg.url(DB), "catalog.owner_role": OWNER})
    )
    running.catalog_sees(lambda snapshot: snapshot.version is not None, database=DB)
    yield running
    running.stop()
    pg.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    drop_role(pg, OWNER)


@pytest.fixture
def direct(pg: EmbeddedPostgres, secured: RunningProxy) -> Iterator[Conn]:
    """alice on the database itself, not through the proxy."""
    with psycopg.connect(alice_url(pg, DB), autocommit=True) as conn:
        yield conn


@pytest.fixture
def proxied(secured: RunningProxy) -> Iterator[Conn]:
    """alice through the proxy."""
    with psycopg.connect(secured.url(database=DB, sslmode="disable"), autocommit=True) as conn:
        yield conn


@pytest.fixture
def admin(pg: EmbeddedPostgres, secured: RunningProxy) -> Iterator[Conn]:
    with pg.connect(DB) as conn:
        yield conn


@pytest.fixture(params=["proxied", "direct"])
def app(request: pytest.FixtureRequest, proxied: Conn, direct: Conn) -> Conn:
    """alice, through the proxy and directly."""
    return proxied if request.param == "proxied" else direct


def make_table(conn: Conn, name: str) -> None:
    if scalar(conn, "SELECT to_regclass(%s) IS NOT NULL", (name,)):
        # The database-side guard refuses to drop an electrified table.
        conn.execute("CALL electric.disable(%s)", (name,))
    conn.execute(f"DROP TABLE IF EXISTS {name}")
    conn.execute(f"CREATE TABLE {name} (id int8 PRIMARY KEY, body text)")


def electrified(conn: Conn, name: str) -> bool:
    return bool(
        scalar(conn, "SELECT EXISTS (SELECT FROM electric.electrified WHERE relid = %s::regclass)", (name,))
    )


def history_rows(conn: Conn) -> int:
    return int(scalar(conn, "SELECT count(*) FROM electric.migrations"))


# -- ownership ---------------------------------------------------------------------------------


def test_the_owner_role_owns_the_catalog(admin: Conn) -> None:
    assert scalar(admin, "SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (OWNER,)) is False
    owners = admin.execute(
        """
        SELECT DISTINCT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'electric'
        UNION SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class WHERE relnamespace = 'electric'::regnamespace
        UNION SELECT DISTINCT pg_get_userbyid(proowner) FROM pg_proc WHERE pronamespace = 'electric'::regnamespace
          AND proname <> 'auth_verifier'  -- reads pg_authid: stays its superuser's, executable by it alone
        """
    ).fetchall()
    assert owners == [(OWNER,)]
    assert scalar(admin, "SELECT pg_has_role('alice', %s, 'MEMBER')", (OWNER,)) is False
    definers = scalar(
        admin,
        "SELECT count(*) FROM pg_proc WHERE pronamespace = 'electric'::regnamespace AND prosecdef",
    )
    assert definers > 10


def test_alice_may_read_but_not_write_the_tables(direct: Conn, admin: Conn) -> None:
    tables = [
        r[0]
        for r in admin.execute(
            "SELECT oid::regclass::text FROM pg_class WHERE relnamespace = 'electric'::regnamespace AND relkind = 'r'"
        )
    ]
    assert "electric.electrified" in tables and "electric.migrations" in tables
    for table in tables:
        assert scalar(direct, "SELECT has_table_privilege(%s, 'SELECT')", (table,)) is True, table
        writes = "INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER"
        assert scalar(direct, "SELECT has_table_privilege(%s, %s)", (table, writes)) is False, table
        assert scalar(admin, "SELECT has_table_privilege('public', %s, %s)", (table, writes)) is False, table
    assert scalar(admin, "SELECT has_schema_privilege('public', 'electric', 'CREATE')") is False


# -- what alice cannot do, through the proxy and directly --------------------------------------


def test_alice_cannot_delete_or_truncate_the_catalog(app: Conn, direct: Conn, admin: Conn) -> None:
    make_table(direct, "kept")
    direct.execute("CALL electric.electrify('kept')")
    before = history_rows(admin)
    for statement in (
        "DELETE FROM electric.electrified",
        "DELETE FROM electric.migrations",
        "DELETE FROM electric.migration_statements",
        "DELETE FROM electric.catalog_changes",
        "UPDATE electric.migrations SET version = 'forged'",
        "INSERT INTO electric.electrified (relid, schema_name, table_name) VALUES (1, 'x', 'y')",
        "TRUNCATE electric.electrified CASCADE",
        "TRUNCATE electric.migrations CASCADE",
    ):
        assert sql_error(app, statement).sqlstate == "42501", statement
    assert electrified(admin, "kept")
    assert history_rows(admin) == before


def test_alice_cannot_replace_or_alter_any_routine(app: Conn, admin: Conn) -> None:
    empty_capture = (
        "CREATE OR REPLACE PROCEDURE electric._capture(statements jsonb, meta jsonb, caller_path name[],"
        " proxy_tag text DEFAULT NULL) LANGUAGE sql AS $$ SELECT 1 $$"
    )
    assert sql_error(app, empty_capture).sqlstate == "42501"
    routines = [
        r[0]
        for r in admin.execute(
            "SELECT oid::regprocedure::text FROM pg_proc WHERE pronamespace = 'electric'::regnamespace"
        )
    ]
    for routine in routines:
        for statement in (f"ALTER ROUTINE {routine} RENAME TO hijacked", f"DROP ROUTINE {routine}"):
            assert sql_error(app, statement).sqlstate == "42501", statement
    body = scalar(
        admin,
        "SELECT prosrc FROM pg_proc WHERE proname = '_capture' AND pronamespace = 'electric'::regnamespace",
    )
    assert "_refresh_objects" in body or "INSERT" in body


def test_alice_cannot_create_objects_in_the_schema(app: Conn) -> None:
    for statement in (
        "CREATE FUNCTION electric._resolve(table_name text, extra int) RETURNS regclass LANGUAGE sql AS $$ SELECT NULL::regclass $$",
        "CREATE TABLE electric.shadow (id int)",
        "CREATE VIEW electric.shadow_view AS SELECT 1 AS one",
    ):
        assert sql_error(app, statement).sqlstate == "42501", statement


def test_alice_cannot_take_over_the_owner_role(app: Conn) -> None:
    for statement in (
        f"GRANT {OWNER} TO alice",
        f"ALTER ROLE {OWNER} LOGIN PASSWORD 'mine'",
        f"SET ROLE {OWNER}",
        "ALTER SCHEMA electric OWNER TO alice",
        "ALTER TABLE electric.migrations DISABLE TRIGGER ALL",
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {OWNER} IN SCHEMA electric GRANT ALL ON TABLES TO alice",
    ):
        assert sql_error(app, statement).sqlstate == "42501", statement


# -- what still works -------------------------------------------------------------------------


def test_electrify_through_the_proxy_is_recorded_once(proxied: Conn, admin: Conn) -> None:
    make_table(proxied, "via_proxy")
    proxied.execute("ALTER TABLE via_proxy ENABLE ELECTRIC")
    assert electrified(admin, "via_proxy")
    assert scalar(admin, "SELECT relreplident FROM pg_class WHERE oid = 'via_proxy'::regclass") == "f"
    change = admin.execute(
        "SELECT c.recorded_by, m.version_source, c.migration_id FROM electric.catalog_changes c"
        " JOIN electric.migrations m ON m.id = c.migration_id WHERE c.table_name = 'via_proxy'"
    ).fetchall()
    assert [row[:2] for row in change] == [("capture", "generated")]
    statements = admin.execute(
        "SELECT sql FROM electric.migration_statements WHERE migration_id = %s ORDER BY seq", (change[0][2],)
    ).fetchall()
    assert statements == [("ALTER TABLE via_proxy ENABLE ELECTRIC",)]


def test_electrify_called_directly_works_and_is_recorded(direct: Conn, admin: Conn) -> None:
    make_table(direct, "via_call")
    direct.execute("CALL electric.electrify('via_call')")
    assert electrified(admin, "via_call")
    assert scalar(admin, "SELECT relreplident FROM pg_class WHERE oid = 'via_call'::regclass") == "f"
    row = admin.execute(
        "SELECT m.version_source, m.db_user, m.committed_at IS NOT NULL, s.sql, s.objects, e.migration_id = m.id"
        " FROM electric.migrations m JOIN electric.migration_statements s ON s.migration_id = m.id"
        " JOIN electric.electrified e ON e.relid = 'via_call'::regclass"
        " WHERE m.id = (SELECT migration_id FROM electric.catalog_changes WHERE table_name = 'via_call')"
    ).fetchall()
    assert row == [
        (
            "direct",
            "alice",
            True,
            "CALL electric.electrify('via_call')",
            [{"schema": "public", "name": "via_call", "type": "table"}],
            True,
        )
    ]


def test_a_direct_disable_is_recorded_even_with_a_forged_tag(
    direct: Conn, admin: Conn, secured: RunningProxy
) -> None:
    make_table(direct, "gone1")
    make_table(direct, "gone2")
    direct.execute("CALL electric.electrify('gone1')")
    direct.execute("CALL electric.electrify('gone2')")
    for statement in (
        "CALL electric.disable('gone1')",
        "CALL electric.disable('public', 'gone2', 'ELECTRIC DISABLE')",  # the proxy's tag, but not the proxy
    ):
        direct.execute(statement)
        rows = admin.execute(
            "SELECT m.version_source, m.committed_at IS NOT NULL, s.sql, c.op, c.recorded_by"
            " FROM electric.catalog_changes c JOIN electric.migrations m ON m.id = c.migration_id"
            " JOIN electric.migration_statements s ON s.migration_id = m.id"
            " WHERE c.op = 'disable' AND c.query = %s",
            (statement,),
        ).fetchall()
        assert rows == [("direct", True, statement, "disable", "direct")]
    assert not electrified(admin, "gone1") and not electrified(admin, "gone2")
    secured.catalog_sees(lambda s: not s.is_electrified("public", "gone2"), database=DB)


def test_a_rolled_back_direct_change_leaves_no_record(direct: Conn, admin: Conn) -> None:
    make_table(direct, "undone")
    before = history_rows(admin)
    with pytest.raises(psycopg.errors.RaiseException):
        with direct.transaction():
            direct.execute("CALL electric.electrify('undone')")
            direct.execute("DO $$ BEGIN RAISE EXCEPTION 'no'; END $$")
    assert not electrified(admin, "undone")
    assert history_rows(admin) == before
    assert scalar(admin, "SELECT count(*) FROM electric.catalog_changes WHERE table_name = 'undone'") == 0


def test_several_direct_calls_in_one_transaction_make_one_migration(direct: Conn, admin: Conn) -> None:
    make_table(direct, "batch1")
    make_table(direct, "batch2")
    with direct.transaction():
        direct.execute("CALL electric.electrify('batch1')")
        direct.execute(
            "CALL electric.electrify('batch2'); CALL electric.grant('{select}', NULL, 'batch2', 'reader')"
        )
    mids = admin.execute(
        "SELECT DISTINCT migration_id FROM electric.catalog_changes WHERE table_name IN ('batch1', 'batch2')"
    ).fetchall()
    assert len(mids) == 1
    statements = admin.execute(
        "SELECT sql FROM electric.migration_statements WHERE migration_id = %s ORDER BY seq", mids[0]
    ).fetchall()
    assert statements == [
        ("CALL electric.electrify('batch1')",),
        ("CALL electric.electrify('batch2'); CALL electric.grant('{select}', NULL, 'batch2', 'reader')",),
    ]


def test_a_proxied_disable_is_recorded_once(proxied: Conn, admin: Conn) -> None:
    make_table(proxied, "pdis")
    proxied.execute("ALTER TABLE pdis ENABLE ELECTRIC")
    proxied.execute("ALTER TABLE pdis DISABLE ELECTRIC")
    rows = admin.execute(
        "SELECT c.recorded_by, s.sql FROM electric.catalog_changes c"
        " JOIN electric.migration_statements s ON s.migration_id = c.migration_id"
        " WHERE c.table_name = 'pdis' AND c.op = 'disable'"
    ).fetchall()
    assert rows == [("capture", "ALTER TABLE pdis DISABLE ELECTRIC")]


# -- installing -------------------------------------------------------------------------------


def watch_once(conninfo: str, **options: Any) -> None:
    async def run() -> None:
        async with CatalogWatcher(conninfo, min_backoff=0.05, **options) as watcher:
            await watcher.wait_ready(20)

    asyncio.run(run())


@pytest.fixture
def scratch_db(pg: EmbeddedPostgres) -> Iterator[str]:
    name = f"{DB}_scratch"
    fresh_database(pg, name)
    yield name
    pg.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def rewrite_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "can rewrite" in r.getMessage()
    ]


def test_unprivileged_install_keeps_todays_catalog_and_warns(
    pg: EmbeddedPostgres, scratch_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="proxy.catalog.cache"):
        watch_once(alice_url(pg, scratch_db))
        watch_once(alice_url(pg, scratch_db))
    warnings = rewrite_warnings(caplog)
    assert len(warnings) == 2  # one per watcher, at its start
    assert "alice" in warnings[0] and "catalog.admin_url" in warnings[0] and "README" in warnings[0]
    assert ALICE_PASSWORD not in caplog.text
    with psycopg.connect(alice_url(pg, scratch_db), autocommit=True) as conn:
        assert (
            scalar(conn, "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'electric'")
            == "alice"
        )
        make_table(conn, "plain")
        conn.execute("CALL electric.electrify('plain')")
        assert electrified(conn, "plain")


def test_privileged_install_does_not_warn(
    pg: EmbeddedPostgres, scratch_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    owner = "catsec_owner_w"
    drop_role(pg, owner)
    try:
        with caplog.at_level(logging.INFO, logger="proxy.catalog"):
            watch_once(alice_url(pg, scratch_db), admin_conninfo=pg.url(scratch_db), owner_role=owner)
        assert rewrite_warnings(caplog) == []
        assert pg.password not in caplog.text
    finally:
        pg.execute(f"DROP DATABASE IF EXISTS {scratch_db} WITH (FORCE)")
        drop_role(pg, owner)


def test_admin_install_takes_over_a_catalog_alice_installed(pg: EmbeddedPostgres, scratch_db: str) -> None:
    owner = "catsec_owner_u"
    drop_role(pg, owner)
    try:
        with psycopg.connect(alice_url(pg, scratch_db), autocommit=True) as conn:
            install_sync(conn)
            make_table(conn, "early")
            conn.execute("CALL electric.electrify('early')")
            conn.execute("GRANT INSERT ON electric.electrified TO PUBLIC")  # as alice could have
        with pg.connect(scratch_db) as conn:
            install_sync(conn, owner=owner, app_roles=("alice",))
        with psycopg.connect(alice_url(pg, scratch_db), autocommit=True) as conn:
            assert (
                scalar(
                    conn,
                    "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'electric.electrified'::regclass",
                )
                == owner
            )
            assert sql_error(conn, "DELETE FROM electric.electrified").sqlstate == "42501"
            assert (
                scalar(conn, "SELECT has_table_privilege('public', 'electric.electrified', 'INSERT')")
                is False
            )
            assert electrified(conn, "early")
            conn.execute("CALL electric.disable('early')")
            assert not electrified(conn, "early")
    finally:
        pg.execute(f"DROP DATABASE IF EXISTS {scratch_db} WITH (FORCE)")
        drop_role(pg, owner)


def test_a_createrole_admin_creates_the_owner_and_hands_it_the_catalog(
    pg: EmbeddedPostgres, scratch_db: str
) -> None:
    owner, installer = "catsec_owner_c", "catsec_creator"
    drop_role(pg, owner)
    drop_role(pg, installer)
    try:
        pg.execute(f"CREATE ROLE {installer} LOGIN CREATEROLE PASSWORD 'creator-secret'")
        pg.execute(f"GRANT CREATE ON DATABASE {scratch_db} TO {installer}")
        with psycopg.connect(
            pg.url(scratch_db, user=installer, password="creator-secret"), autocommit=True
        ) as conn:
            install_sync(conn, owner=owner, app_roles=("alice",))
        with psycopg.connect(alice_url(pg, scratch_db), autocommit=True) as conn:
            assert (
                scalar(conn, "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'electric'")
                == owner
            )
            assert sql_error(conn, "TRUNCATE electric.migrations CASCADE").sqlstate == "42501"
            make_table(conn, "mine")
            conn.execute("CALL electric.electrify('mine')")
            assert electrified(conn, "mine")
    finally:
        pg.execute(f"DROP DATABASE IF EXISTS {scratch_db} WITH (FORCE)")
        pg.execute(f"DROP OWNED BY {installer}")
        drop_role(pg, owner)
        drop_role(pg, installer)


def readme_admin_sql() -> str:
    """The administrator's one-time SQL, as README.md documents it."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## The catalog's owner") :]
    return section[
        section.index("```sql") + len("```sql") : section.index("```", section.index("```sql") + 6)
    ]


def test_the_readme_admin_sql_hands_over_a_catalog_alice_installed(
    pg: EmbeddedPostgres, scratch_db: str
) -> None:
    owner, admin_role = "catsec_owner_r", "catsec_admin_r"
    script = readme_admin_sql()
    for word, replacement in (
        ("electric_owner", owner),
        ("electric_admin", admin_role),
        ("'...'", "'admin-secret'"),
        ("app_user", "alice"),
        ("DATABASE app ", f"DATABASE {scratch_db} "),
    ):
        script = script.replace(word, replacement)
    before_connect, _, after_connect = script.partition("\\c app\n")
    drop_role(pg, owner)
    drop_role(pg, admin_role)
    try:
        with psycopg.connect(alice_url(pg, scratch_db), autocommit=True) as conn:
            install_sync(conn)
            make_table(conn, "early")
            conn.execute("CALL electric.electrify('early')")
        with pg.connect(scratch_db) as conn:
            conn.execute(before_connect.encode())
            conn.execute(after_connect.encode())
        admin_url = pg.url(scratch_db, user=admin_role, password="admin-secret")
        with psycopg.connect(admin_url, autocommit=True) as conn:
            install_sync(conn, owner=owner, app_roles=("alice",))
        with psycopg.connect(alice_url(pg, scratch_db), autocommit=True) as conn:
            owners = conn.execute(
                "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class WHERE relnamespace = 'electric'::regnamespace"
                " UNION SELECT DISTINCT pg_get_userbyid(proowner) FROM pg_proc WHERE pronamespace = 'electric'::regnamespace"
            ).fetchall()
            assert owners == [(owner,)]
            assert sql_error(conn, "DELETE FROM electric.electrified").sqlstate == "42501"
            conn.execute("CALL electric.disable('early')")
            assert not electrified(conn, "early")
    finally:
        pg.execute(f"DROP DATABASE IF EXISTS {scratch_db} WITH (FORCE)")
        drop_role(pg, admin_role)
        drop_role(pg, owner)


# -- the decision, without a server -----------------------------------------------------------


def installer(role: str = "admin", **facts: bool) -> Installer:
    values = {"superuser": False, "createrole": False, "owner_exists": False, "acts_as_owner": False} | facts
    return Installer(role=role, **values)


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        (installer(superuser=True), "create"),
        (installer(superuser=True, owner_exists=True), "adopt"),
        (installer(createrole=True), "create"),
        (installer("alice", createrole=True), None),  # the application would hold ADMIN on its owner
        (installer(owner_exists=True, acts_as_owner=True), "adopt"),
        (installer(createrole=True, owner_exists=True), None),  # may not act as an owner it did not create
        (installer(), None),
        (installer("electric_owner", superuser=True), None),
    ],
)
def test_ownership_mode(who: Installer, expected: str | None) -> None:
    assert ownership_mode(who, "electric_owner", ("alice",)) == expected
