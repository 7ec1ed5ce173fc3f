"""Drift with the database-side guard's real event triggers (installed when the proxy's role is
a superuser): direct DDL reported within a second of its commit with who ran it, proxied DDL not
drift, and block mode refusing direct DDL on electrified tables.

Skipped where the catalog installs no event triggers (a build without the database-side guard):
test_drift_attribution.py and test_drift_block.py cover the same paths with the log written by
hand.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from proxy.catalog.drift_watch import DriftWatcher
from proxy.embedded import EmbeddedPostgres
from tests.proxyfixtures import RunningProxy, proxy_config

DB = "drift_trig"
HOUR_MS = 3_600_000


@pytest.fixture(scope="module")
def db_url(pg: EmbeddedPostgres) -> Iterator[str]:
    pg.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    pg.execute(f"CREATE DATABASE {DB}")
    yield pg.url(DB) + "?sslmode=disable"  # the superuser: may create event triggers
    pg.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


def start(db_url: str, **drift: object) -> RunningProxy:
    settings = {"drift.interval_ms": HOUR_MS, **{f"drift.{k}": v for k, v in drift.items()}}
    running = RunningProxy(proxy_config(db_url, **settings))
    running.call(watcher(running).wait_scans(1, 10))
    return running


def watcher(running: RunningProxy) -> DriftWatcher:
    (found,) = running.server.drift
    return found


SUPERUSER: dict[str, str] = {}  # the embedded server's own user and password


@pytest.fixture(scope="module")
def proxy(db_url: str, pg: EmbeddedPostgres) -> Iterator[RunningProxy]:
    SUPERUSER.update(user=pg.user, password=pg.password)
    running = start(db_url)
    with psycopg.connect(db_url) as conn:
        if conn.execute("SELECT to_regclass('electric.ddl_log') IS NOT NULL").fetchone() != (True,):
            running.stop()
            pytest.skip("this build installs no database-side DDL log")
    with through(running) as conn:
        conn.execute("CREATE TABLE hot (id uuid PRIMARY KEY, name text NOT NULL)")
        conn.execute("ALTER TABLE hot ENABLE ELECTRIC")
        conn.execute("CREATE TABLE plain (id int PRIMARY KEY)")
    # A scan that began after these migrations committed: the tests' direct changes then fall in
    # a scan window of their own (one that also held the migration naming `plain` would let it
    # explain them).
    found = watcher(running)
    for _ in range(2):  # any scan finishing after the second poke began after the first
        scans = found.scans
        found.poke()
        running.call(found.wait_scans(scans + 1, 30))
    yield running
    running.stop()


def through(running: RunningProxy) -> psycopg.Connection[Any]:
    return psycopg.connect(running.dsn(dbname=DB, **SUPERUSER), autocommit=True)


def wait_for(running: RunningProxy, identity: str, timeout: float = 5) -> dict[str, Any]:
    found = watcher(running)

    async def seen() -> dict[str, Any]:
        while True:
            report = found.last_report
            for item in report.objects if report else ():
                if item["identity"] == identity:
                    return item
            await found.wait_scans(found.scans + 1)

    result: dict[str, Any] = running.call(seen(), timeout)
    return result


def test_direct_ddl_is_reported_within_a_second_with_who_ran_it(proxy: RunningProxy, db_url: str) -> None:
    before = proxy.stats.drift_events["event_trigger"]
    with psycopg.connect(db_url + "&application_name=console", autocommit=True) as direct:
        direct.execute("ALTER TABLE plain ADD COLUMN x int")
        committed = time.monotonic()
        item = wait_for(proxy, "public.plain.x")
        # The periodic scan is an hour away: only the trigger's NOTIFY can have woken the
        # watcher. It takes about 0.3 s here; the bound leaves room for a loaded CI machine.
        assert time.monotonic() - committed < 3.0
        pid = direct.info.backend_pid
    assert (item["change"], item["severity"]) == ("added", "medium")
    attribution = item["attribution"]
    assert attribution["application_name"] == "console"
    assert attribution["pid"] == pid
    assert attribution["statement"] == "ALTER TABLE plain ADD COLUMN x int"
    assert proxy.stats.drift_events["event_trigger"] == before + 1


def test_proxied_ddl_is_not_drift(proxy: RunningProxy) -> None:
    found = watcher(proxy)
    with through(proxy) as conn:
        conn.execute("ALTER TABLE plain ADD COLUMN through_proxy int")
        conn.execute("CREATE INDEX plain_tp ON plain (through_proxy)")
    scans = found.scans
    proxy.loop.call_soon_threadsafe(found.poke)
    report = proxy.call(found.wait_scans(scans + 1, 10))
    assert report is not None
    assert not [o for o in report.objects if "through_proxy" in o["identity"] or "plain_tp" in o["identity"]]


def test_block_mode_refuses_direct_ddl_on_electrified_tables(proxy: RunningProxy, db_url: str) -> None:
    blocking = start(db_url, mode="block")
    try:
        with psycopg.connect(db_url, autocommit=True) as direct:
            # Additive: the electrified-table rules allow it, block mode does not.
            with pytest.raises(psycopg.Error) as refused:
                direct.execute("ALTER TABLE hot ADD COLUMN sneaky text")
            assert refused.value.sqlstate == "EX020"
            assert "electric-proxy" in str(refused.value)
            # Destructive: refused whatever the mode (the guard's rules, EX010), and nothing changes.
            with pytest.raises(psycopg.Error):
                direct.execute("ALTER TABLE hot DROP COLUMN name")
            names = [
                r[0]
                for r in direct.execute(
                    "SELECT attname FROM pg_attribute WHERE attrelid = 'hot'::regclass AND attnum > 0 AND NOT attisdropped"
                ).fetchall()
            ]
            assert names == ["id", "name"]
            direct.execute("ALTER TABLE plain ADD COLUMN plain_direct int")  # default scope: allowed
        with through(blocking) as conn:
            conn.execute("ALTER TABLE hot ADD COLUMN note text")  # through the proxy: allowed
    finally:
        blocking.stop()
        start(db_url, mode="detect").stop()
