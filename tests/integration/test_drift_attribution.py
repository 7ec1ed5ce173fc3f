"""Drift attributed from the database's DDL log, and reported at its NOTIFY.

The database-side guard (event triggers, created where the proxy's role is a superuser) logs
every DDL in `electric.ddl_log` / `electric.ddl_statements` and sends
`pg_notify('electric_ddl', <txid>)` at commit. Here alice is no superuser, so this module plays
the trigger's part by hand, in the DDL's own transaction, with the log's columns: what the drift
watcher reads is the same either way.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from proxy.catalog.drift_watch import DriftWatcher
from proxy.embedded import EmbeddedPostgres
from tests.pgfixtures import ALICE_PASSWORD
from tests.proxyfixtures import RunningProxy, proxy_config

DB = "drift_attr"

# The log's shape as the guard's step creates it (only what drift reads must match).
LOG_TABLES = """
CREATE TABLE IF NOT EXISTS electric.ddl_log (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    txid xid8 NOT NULL, pid integer NOT NULL, role_name text NOT NULL, session_role text NOT NULL,
    application_name text, client_addr inet, event text NOT NULL, command_tag text NOT NULL,
    object_type text, object_identity text, classid oid, objid oid, objsubid integer,
    in_extension boolean, statement_hash bigint NOT NULL,
    logged_at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE TABLE IF NOT EXISTS electric.ddl_statements (
    txid xid8 NOT NULL, hash bigint NOT NULL, statement text NOT NULL, PRIMARY KEY (txid, hash));
"""


def log_ddl(conn: psycopg.Connection[Any], statement: str, table: str, tag: str) -> None:
    """Run `statement` and log it as the guard's ddl_command_end trigger would, then commit."""
    with conn.transaction():
        conn.execute(statement)
        conn.execute(
            "INSERT INTO electric.ddl_statements VALUES (pg_current_xact_id(), hashtextextended(%s, 0), %s)"
            " ON CONFLICT DO NOTHING",
            (statement, statement),
        )
        conn.execute(
            "INSERT INTO electric.ddl_log (txid, pid, role_name, session_role, application_name, client_addr,"
            " event, command_tag, object_type, object_identity, classid, objid, objsubid, in_extension,"
            " statement_hash)"
            " SELECT pg_current_xact_id(), pg_backend_pid(), current_user, session_user,"
            " current_setting('application_name'), inet_client_addr(), 'ddl_command_end', %s, 'table',"
            " %s, 'pg_class'::regclass, %s::regclass, 0, false, hashtextextended(%s, 0)",
            (tag, table, table, statement),
        )
        conn.execute("SELECT pg_notify('electric_ddl', pg_current_xact_id()::text)")


@pytest.fixture(scope="module")
def db_url(pg: EmbeddedPostgres) -> Iterator[str]:
    pg.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    pg.execute(f"CREATE DATABASE {DB} OWNER alice")
    yield pg.url(DB, user="alice", password=ALICE_PASSWORD) + "?sslmode=disable"
    pg.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


@pytest.fixture(scope="module")
def proxy(db_url: str) -> Iterator[RunningProxy]:
    running = RunningProxy(proxy_config(db_url, **{"drift.interval_ms": 3_600_000}))
    running.call(watcher(running).wait_scans(1, 10))
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(LOG_TABLES)
    yield running
    running.stop()


def watcher(running: RunningProxy) -> DriftWatcher:
    (found,) = running.server.drift
    return found


def test_direct_ddl_is_reported_at_its_notify_with_who_did_it(proxy: RunningProxy, db_url: str) -> None:
    found = watcher(proxy)
    with psycopg.connect(proxy.dsn(dbname=DB), autocommit=True) as through:
        through.execute("CREATE TABLE attributed (id int PRIMARY KEY)")
    scans = found.scans
    proxy.loop.call_soon_threadsafe(found.poke)
    assert proxy.call(found.wait_scans(scans + 1, 10)).in_sync
    with psycopg.connect(db_url + "&application_name=hotfix-console", autocommit=True) as direct:
        log_ddl(direct, "ALTER TABLE attributed ADD COLUMN note text", "attributed", "ALTER TABLE")
        committed = time.monotonic()
        before = proxy.stats.drift_events["event_trigger"]

        async def reported() -> Any:
            while not (
                found.last_report
                and any(o["identity"] == "public.attributed.note" for o in found.last_report.objects)
            ):
                await found.wait_scans(found.scans + 1)
            return found.last_report

        # The interval is an hour: only the notification can bring the scan this soon.
        report = proxy.call(reported(), timeout=5)
        assert time.monotonic() - committed < 1.0
        pid = direct.info.backend_pid
    note = next(o for o in report.objects if o["identity"] == "public.attributed.note")
    assert (note["change"], note["severity"]) == ("added", "medium")
    attribution = note["attribution"]
    assert attribution["application_name"] == "hotfix-console"
    assert attribution["role"] == "alice"
    assert attribution["pid"] == pid
    assert attribution["command_tag"] == "ALTER TABLE"
    assert attribution["statement"] == "ALTER TABLE attributed ADD COLUMN note text"
    assert proxy.stats.drift_events["event_trigger"] >= before + 1
    source = (
        psycopg.connect(db_url)
        .execute("SELECT source FROM electric.drift_events WHERE identity = 'public.attributed.note'")
        .fetchone()
    )
    assert source == ("event_trigger",)


def test_the_log_tells_a_direct_change_from_a_migration_on_the_same_table(
    proxy: RunningProxy, db_url: str
) -> None:
    """The migration names `shared`, which would explain any change under it by name; the log
    says the index came from another transaction, so the index alone is drift."""
    found = watcher(proxy)
    with psycopg.connect(proxy.dsn(dbname=DB), autocommit=True) as through:
        through.execute("CREATE TABLE shared (id int PRIMARY KEY)")
    scans = found.scans
    proxy.loop.call_soon_threadsafe(found.poke)
    proxy.call(found.wait_scans(scans + 1, 10))
    with (
        psycopg.connect(proxy.dsn(dbname=DB), autocommit=True) as through,
        psycopg.connect(db_url, autocommit=True) as direct,
    ):
        log_ddl(through, "ALTER TABLE shared ADD COLUMN a int", "shared", "ALTER TABLE")
        log_ddl(direct, "CREATE INDEX shared_b ON shared (id)", "shared_b", "CREATE INDEX")

    async def settled() -> Any:
        while not (found.last_report and any("shared" in o["identity"] for o in found.last_report.objects)):
            await found.wait_scans(found.scans + 1)
        return found.last_report

    report = proxy.call(settled(), timeout=5)
    shared = [(o["identity"], o["change"]) for o in report.objects if "shared" in o["identity"]]
    assert shared == [("public.shared_b", "added")]
