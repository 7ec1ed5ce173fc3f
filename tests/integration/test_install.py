"""The catalog installer (proxy/catalog/install.py) against a real Postgres: versioned steps,
repeatable routine files, and the upgrade from the single-file catalog of steps 1 and 2.

Databases are owned by alice and the catalog is installed by alice, as in test_catalog_sql.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from proxy.catalog import install as installer
from proxy.catalog.install import ROUTINES, install_sync, latest_version, render, routine_files, step_versions
from proxy.embedded import EmbeddedPostgres
from proxy.errors import CatalogError
from tests.pgfixtures import ALICE_PASSWORD

Conn = psycopg.Connection[tuple[Any, ...]]

# The catalog as the single-file installer (before step 3) knew it, verbatim:
# `git show bfc1feb:proxy/catalog/schema.sql`. Cut into steps at its `-- step: N` lines.
OLD_SCHEMA = Path(__file__).parent / "fixtures" / "catalog_schema_v2.sql"

# Everything install creates in the schema that a client could observe, rendered by Postgres.
CATALOG_STATE = """
SELECT 'schema', n.nspname, n.nspacl::text FROM pg_namespace n WHERE n.oid = 'electric'::regnamespace
UNION ALL
SELECT 'routine', p.oid::regprocedure::text,
       concat_ws(' | ', pg_get_functiondef(p.oid), p.proacl::text, pg_get_userbyid(p.proowner))
  FROM pg_proc p WHERE p.pronamespace = 'electric'::regnamespace
UNION ALL
SELECT 'relation', c.relname, concat_ws(' | ', c.relkind, c.relacl::text, pg_get_userbyid(c.relowner))
  FROM pg_class c WHERE c.relnamespace = 'electric'::regnamespace
UNION ALL
SELECT 'column', a.attrelid::regclass::text || '.' || a.attname,
       concat_ws(' | ', a.attnum, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity,
                 pg_get_expr(d.adbin, d.adrelid))
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE c.relnamespace = 'electric'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'constraint', k.conname, pg_get_constraintdef(k.oid)
  FROM pg_constraint k WHERE k.connamespace = 'electric'::regnamespace
UNION ALL
SELECT 'index', i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
  FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid WHERE c.relnamespace = 'electric'::regnamespace
UNION ALL
SELECT 'trigger', g.tgname, concat_ws(' | ', pg_get_triggerdef(g.oid), g.tgenabled)
  FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
 WHERE c.relnamespace = 'electric'::regnamespace AND NOT g.tgisinternal
ORDER BY 1, 2
"""


@pytest.fixture
def databases(pg: EmbeddedPostgres) -> Iterator[tuple[str, str]]:
    """Two empty databases owned by alice."""
    names = ("install_t_a", "install_t_b")
    for name in names:
        pg.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        pg.execute(f"CREATE DATABASE {name} OWNER alice")
    yield names
    for name in names:
        pg.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def connect(pg: EmbeddedPostgres, db: str) -> Conn:
    return psycopg.connect(pg.url(db, user="alice", password=ALICE_PASSWORD), autocommit=True)


def install_old(conn: Conn) -> None:
    """What the single-file installer did: each step of OLD_SCHEMA, recorded, in one transaction."""
    text = OLD_SCHEMA.read_text(encoding="utf-8").replace("@extschema@", "electric")
    parts = re.split(r"^-- step: (\d+)[ \t]*$", text, flags=re.MULTILINE)
    with conn.transaction():
        conn.execute("SELECT set_config('search_path', 'pg_catalog, pg_temp', true)")
        conn.execute("SELECT set_config('client_min_messages', 'warning', true)")
        for version, body in zip(parts[1::2], parts[2::2], strict=True):
            conn.execute(body.encode("utf-8"))
            conn.execute("INSERT INTO electric.schema_version (version) VALUES (%s)", (int(version),))


def state(conn: Conn, kinds: tuple[str, ...] | None = None) -> list[tuple[Any, ...]]:
    rows = conn.execute(CATALOG_STATE).fetchall()
    return [row for row in rows if kinds is None or row[0] in kinds]


def recorded_routines(conn: Conn) -> dict[str, tuple[str, Any]]:
    rows = conn.execute("SELECT name, checksum, applied_at FROM electric.schema_routines").fetchall()
    return {name: (checksum, applied_at) for name, checksum, applied_at in rows}


def checksum(name: str) -> str:
    (routine,) = [r for r in routine_files() if r.name == name]
    return hashlib.sha256(render(routine)).hexdigest()


def public_may_execute(conn: Conn, routine: str) -> bool:
    row = conn.execute("SELECT has_function_privilege('public', %s, 'EXECUTE')", (routine,)).fetchone()
    assert row is not None
    return bool(row[0])


# -- file layout -------------------------------------------------------------------------------


def test_step_files_are_numbered_from_one_without_gaps() -> None:
    names = ["0002_b.sql", "README.md", "0001_a.sql"]
    assert step_versions(names) == [(1, "0001_a.sql"), (2, "0002_b.sql")]
    for broken in (["0001_a.sql", "0003_c.sql"], ["0001_a.sql", "0001_b.sql"], ["1_a.sql"], []):
        with pytest.raises(CatalogError):
            step_versions(broken)


def test_routine_files_are_the_listed_ones_in_order() -> None:
    assert tuple(r.name for r in routine_files()) == ROUTINES
    assert all("CREATE TABLE" not in r.sql for r in routine_files())


# -- the upgrade from the single-file catalog ------------------------------------------------


def test_upgrade_from_single_file_catalog(pg: EmbeddedPostgres, databases: tuple[str, str]) -> None:
    old_db, new_db = databases
    with connect(pg, new_db) as fresh:
        assert install_sync(fresh) == latest_version()
        fresh_state = state(fresh)
    with connect(pg, old_db) as conn:
        install_old(conn)
        assert conn.execute("SELECT max(version) FROM electric.schema_version").fetchone() == (2,)
        conn.execute("CREATE TABLE items (id int8 PRIMARY KEY)")
        with conn.transaction():
            conn.execute("CALL electric.electrify('items')")
            conn.execute(
                "CALL electric.capture(%s::jsonb)",
                ('[{"sql": "ALTER TABLE items ENABLE ELECTRIC", "tag": "ELECTRIC ENABLE"}]',),
            )

        assert install_sync(conn) == latest_version()

        versions = [v for (v,) in conn.execute("SELECT version FROM electric.schema_version ORDER BY 1")]
        assert versions == list(range(1, latest_version() + 1))
        assert {name: c for name, (c, _) in recorded_routines(conn).items()} == {
            name: checksum(name) for name in ROUTINES
        }
        assert state(conn) == fresh_state
        # The data of before the upgrade is still there, and the procedures still work on it.
        assert conn.execute(
            "SELECT e.table_name, m.version_source FROM electric.electrified e"
            " JOIN electric.migrations m ON m.id = e.migration_id"
        ).fetchall() == [("items", "generated")]
        conn.execute("CALL electric.disable('items')")
        assert conn.execute("SELECT count(*) FROM electric.electrified").fetchone() == (0,)


# -- repeatable routine files ------------------------------------------------------------------


def test_changed_routine_file_is_applied_alone(
    pg: EmbeddedPostgres, databases: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with connect(pg, databases[0]) as conn:
        install_sync(conn)
        before = recorded_routines(conn)
        # Opened by hand: a file that runs again closes what it defines.
        conn.execute("GRANT EXECUTE ON FUNCTION electric._qualified(text, text) TO PUBLIC")  # common
        conn.execute("GRANT EXECUTE ON FUNCTION electric._privileges(text[], text) TO PUBLIC")  # electric

        assert install_sync(conn) == latest_version()
        assert recorded_routines(conn) == before  # nothing changed, nothing applied
        assert public_may_execute(conn, "electric._privileges(text[], text)")

        changed = tuple(
            dataclasses.replace(r, sql=r.sql + "\n-- changed\n") if r.name == "electric" else r
            for r in routine_files()
        )
        monkeypatch.setattr(installer, "routine_files", lambda: changed)
        assert install_sync(conn) == latest_version()

        after = recorded_routines(conn)
        assert after["electric"][0] == hashlib.sha256(render(changed[ROUTINES.index("electric")])).hexdigest()
        assert after["electric"][1] > before["electric"][1]
        assert {n: v for n, v in after.items() if n != "electric"} == {
            n: v for n, v in before.items() if n != "electric"
        }
        assert not public_may_execute(conn, "electric._privileges(text[], text)")  # electric.sql ran
        assert public_may_execute(conn, "electric._qualified(text, text)")  # common.sql did not


def test_newer_database_is_left_alone(pg: EmbeddedPostgres, databases: tuple[str, str]) -> None:
    with connect(pg, databases[0]) as conn:
        install_sync(conn)
        newer = latest_version() + 1
        conn.execute("INSERT INTO electric.schema_version (version) VALUES (%s)", (newer,))
        conn.execute(
            "UPDATE electric.schema_routines SET checksum = 'from a newer proxy' WHERE name = 'capture'"
        )

        assert install_sync(conn) == newer

        assert recorded_routines(conn)["capture"][0] == "from a newer proxy"
