"""Capture costs the same whatever the history's length (README.md of catalog/sql, CAPTURE COST).

A database whose history already holds 10,000 migrations (bulk INSERT ... SELECT generate_series,
as the superuser, triggers off) and a proxy in front of it. The plans of everything capture runs,
read with auto_explain (nested statements, sent to the client as NOTICEs), use indexes on the
history tables; and a migration through the proxy runs each statement within a timeout that the
per-statement scans of the history used to exceed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import psycopg
import pytest

from proxy.catalog.install import install_sync
from proxy.ddl.capture import capture_call
from proxy.ddl.classify import classify
from proxy.embedded import EmbeddedPostgres
from tests.pgfixtures import ALICE_PASSWORD
from tests.proxyfixtures import RunningProxy, proxy_config

DB = "hist_scale_t"
MIGRATIONS = 10_000
TABLES = 200  # the history's tables: each recorded by 50 migrations
HISTORY_TABLES = ("migrations", "migration_statements", "migration_objects")
META = {"client_addr": "10.0.0.2:6000", "application_name": "scale"}

# Every migration: one statement, its table and the table's index, as capture would have recorded them.
BULK_HISTORY = f"""
SET session_replication_role = replica;  -- no commit-time trigger for rows that are history already
INSERT INTO electric.migrations (
    txid, version, version_source, framework, started_at, committed_at, db_user,
    client_addr, client_host, backend_pid, session_start, sealed)
SELECT (100000 + g)::text::xid8, 'bulk-' || g, 'framework', 'alembic',
       now() - (({MIGRATIONS} + 1 - g) * interval '1 second'), now() - (({MIGRATIONS} + 1 - g) * interval '1 second'),
       'alice', '10.0.0.1:5000', '10.0.0.1', 1, now() - interval '1 day', true
  FROM generate_series(1, {MIGRATIONS}) g;
INSERT INTO electric.migration_statements (migration_id, seq, sql, tag, objects)
SELECT m.id, 1, 'ALTER TABLE public.scale_t' || (m.id % {TABLES}) || ' ADD COLUMN c' || m.id || ' int',
       'ALTER TABLE',
       jsonb_build_array(jsonb_build_object('schema', 'public', 'name', 'scale_t' || (m.id % {TABLES}), 'type', 'table'))
  FROM electric.migrations m WHERE m.version LIKE 'bulk-%';
INSERT INTO electric.migration_objects (migration_id, object_type, schema_name, object_name, relid, definition)
SELECT m.id, 'relation', 'public', o.name, NULL, o.definition
  FROM electric.migrations m
 CROSS JOIN LATERAL (VALUES
    ('scale_t' || (m.id % {TABLES}),
     jsonb_build_object('kind', 'table', 'schema', 'public', 'name', 'scale_t' || (m.id % {TABLES}),
                        'columns', '[]'::jsonb,
                        'indexes', jsonb_build_array(jsonb_build_object(
                            'name', 'scale_t' || (m.id % {TABLES}) || '_i', 'definition', 'CREATE INDEX ...')))),
    ('scale_t' || (m.id % {TABLES}) || '_i',
     jsonb_build_object('kind', 'index', 'schema', 'public', 'name', 'scale_t' || (m.id % {TABLES}) || '_i',
                        'table_schema', 'public', 'table_name', 'scale_t' || (m.id % {TABLES})))
 ) AS o(name, definition)
 WHERE m.version LIKE 'bulk-%';
RESET session_replication_role;
ANALYZE electric.migrations;
ANALYZE electric.migration_statements;
ANALYZE electric.migration_objects;
"""


@pytest.fixture(scope="module")
def url(pg: EmbeddedPostgres) -> Iterator[str]:
    pg.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    pg.execute(f"CREATE DATABASE {DB} OWNER alice")
    address = pg.url(DB, user="alice", password=ALICE_PASSWORD)
    with psycopg.connect(address, autocommit=True) as conn:
        install_sync(conn)
        for i in (1, 2):  # two of the history's tables, live (created behind the proxy's back)
            conn.execute(f"CREATE TABLE public.scale_t{i} (id int PRIMARY KEY)")
            conn.execute(f"CREATE INDEX scale_t{i}_i ON public.scale_t{i} (id)")
    started = time.monotonic()
    with pg.connect(DB) as admin:
        admin.execute(BULK_HISTORY)
    assert time.monotonic() - started < 60  # "quickly": a few seconds here
    yield address
    pg.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


def plans_of_a_capture(pg: EmbeddedPostgres, statements: list[str]) -> list[str]:
    """Run a migration as the proxy would (its own call builder), returning every plan executed
    inside the catalog's routines, commit-time trigger included."""
    notices: list[str] = []
    with pg.connect(DB) as admin:
        admin.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
        admin.execute("LOAD 'auto_explain'")
        admin.execute("SET auto_explain.log_min_duration = 0")
        admin.execute("SET auto_explain.log_nested_statements = on")
        admin.execute("SET auto_explain.log_level = notice")
        admin.execute("SET client_min_messages = notice")
        with admin.transaction():
            for i, sql in enumerate(statements):
                admin.execute(sql)
                admin.execute(capture_call(classify(sql), META, proxy_tag=None))
                if i == len(statements) - 2:  # a version between two: the first one is sealed here
                    admin.execute("CALL electric.note_version('alembic', 'scale-1', before_ddl => false)")
        admin.execute(
            "CALL electric.note_version_late('sqitch', 'change-x', meta => %s)", (json.dumps(META),)
        )
    return [n for n in notices if "plan:" in n]


def test_capture_reads_the_history_through_indexes_only(url: str, pg: EmbeddedPostgres) -> None:
    plans = plans_of_a_capture(
        pg,
        [
            "ALTER TABLE public.scale_t1 ADD COLUMN extra int",
            "CREATE INDEX scale_t1_extra ON public.scale_t1 (extra)",
            "DROP INDEX public.scale_t1_i",
            "ALTER TABLE public.scale_t2 ADD COLUMN extra int",
        ],
    )
    scans = [scan for plan in plans for scan in history_scans(plan)]
    assert len(scans) >= 10, plans  # the check is not vacuous: capture's queries were seen
    for node, details in scans:
        # An index probe on a key, never a walk of a table or of a whole index with a filter.
        assert "Seq Scan" not in node and "Index Cond:" in details, (node, details)
        assert "Scan Backward using migration_objects_pkey" not in node, node


def history_scans(plan: str) -> list[tuple[str, str]]:
    """(scan node, its detail lines) for every scan of a history table in an EXPLAIN text."""
    lines = plan.splitlines()
    found = []
    for i, line in enumerate(lines):
        if "Scan" in line and any(f" on {table} " in line for table in HISTORY_TABLES):
            details = []
            for after in lines[i + 1 :]:
                if after.strip().startswith("->"):
                    break
                details.append(after.strip())
            found.append((line.strip(), "\n".join(details)))
    return found


def test_a_migration_through_the_proxy_is_not_slowed_by_the_history(url: str) -> None:
    """`psql -1 -f` of 100 statements: one Query each, in one transaction. Each statement (with
    its injected capture) must finish within the timeout whatever the history's length."""
    proxy = RunningProxy(proxy_config(url + "?sslmode=disable"))
    try:
        with psycopg.connect(proxy.dsn(dbname=DB), autocommit=True) as conn:
            conn.execute("SET statement_timeout = '2s'")
            started = time.monotonic()
            conn.execute("BEGIN")
            for i in range(50):
                conn.execute(f"CREATE TABLE scale_new{i} (id int PRIMARY KEY)")
                conn.execute(f"ALTER TABLE scale_t{i % 2 + 1} ADD COLUMN n{i} int")
            conn.execute("COMMIT")
            elapsed = time.monotonic() - started
    finally:
        proxy.stop()
    with psycopg.connect(url, autocommit=True) as direct:
        row = direct.execute(
            "SELECT count(*) FROM electric.migration_statements s JOIN electric.migrations m ON m.id = s.migration_id"
            " WHERE m.id = (SELECT max(id) FROM electric.migrations)"
        ).fetchone()
    assert row == (100,)
    assert elapsed < 20, elapsed
