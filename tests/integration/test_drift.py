"""Drift detection against a real Postgres: direct changes found by the scan with the right kind
and severity, acceptance, migrations through the proxy never reported, the watcher and its
metrics, and the `drift` command.

The module has its own database, `drift_t`, owned by alice; the proxy (alice's upstream URL,
so no event triggers: alice is no superuser) installs the catalog there. Direct changes go on
alice's own connection straight to Postgres.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from proxy.catalog import drift_watch
from proxy.catalog.drift_watch import Report
from proxy.cli import main
from proxy.embedded import EmbeddedPostgres
from proxy.errors import CatalogError
from tests.pgfixtures import ALICE_PASSWORD
from tests.proxyfixtures import RunningProxy, proxy_config

DB = "drift_t"
SCHEMA = "electric"
HOUR_MS = 3_600_000


@pytest.fixture(scope="module")
def db_url(pg: EmbeddedPostgres) -> Iterator[str]:
    pg.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    pg.execute(f"CREATE DATABASE {DB} OWNER alice")
    yield pg.url(DB, user="alice", password=ALICE_PASSWORD) + "?sslmode=disable"
    pg.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


@pytest.fixture(scope="module")
def proxy(db_url: str) -> Iterator[RunningProxy]:
    # Scans only when a test asks (poke) or runs one itself: nothing races the assertions.
    running = RunningProxy(proxy_config(db_url, **{"drift.interval_ms": HOUR_MS}))
    running.call(watcher(running).wait_scans(1, 10))
    yield running
    running.stop()


@pytest.fixture
def direct(db_url: str, proxy: RunningProxy) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield conn


def watcher(running: RunningProxy) -> drift_watch.DriftWatcher:
    (found,) = running.server.drift
    return found


def scan_now(url: str) -> Report:
    async def run() -> Report:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            report = await drift_watch.scan(conn, SCHEMA, wait=True)
            assert report is not None
            return report

    return asyncio.run(run())


def accept(url: str, identities: list[str] | None, by: str = "tester") -> Report:
    async def run() -> Report:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            return await drift_watch.accept(conn, SCHEMA, identities, by)

    return asyncio.run(run())


def summary(report: Report) -> set[tuple[str, str, str, str]]:
    return {(o["identity"], o["object_type"], o["change"], o["severity"]) for o in report.objects}


def baseline_now(url: str) -> None:
    """Accept whatever is open so that each test starts from a clean baseline."""
    accept(url, None, by="test setup")
    assert scan_now(url).in_sync


# -- direct changes, one at a time ------------------------------------------------------------------

DIRECT_CASES = [
    pytest.param(
        "CREATE TABLE d1 (id int PRIMARY KEY, a text)",
        "ALTER TABLE d1 ADD COLUMN b int",
        {("public.d1.b", "column", "added", "medium")},
        id="add-column",
    ),
    pytest.param(
        "CREATE TABLE d2 (id int PRIMARY KEY, a text)",
        "ALTER TABLE d2 DROP COLUMN a",
        {("public.d2.a", "column", "removed", "high")},
        id="drop-column",
    ),
    pytest.param(
        "CREATE TABLE d3 (id int PRIMARY KEY, a text)",
        "ALTER TABLE d3 RENAME COLUMN a TO b",
        {("public.d3.b", "column", "renamed", "high")},
        id="rename-column",
    ),
    pytest.param(
        "CREATE TABLE d4 (id int PRIMARY KEY, a text)",
        "ALTER TABLE d4 ALTER COLUMN a TYPE varchar(10)",
        {("public.d4.a", "column", "modified", "high")},
        id="alter-column-type",
    ),
    pytest.param(
        "CREATE TABLE d5 (id int PRIMARY KEY, a text)",
        "CREATE INDEX d5_a ON d5 (a)",
        {("public.d5_a", "index", "added", "low")},
        id="create-index",
    ),
    pytest.param(
        "CREATE TABLE d6 (id int PRIMARY KEY, a text); CREATE INDEX d6_a ON d6 (a)",
        "DROP INDEX d6_a",
        {("public.d6_a", "index", "removed", "medium")},
        id="drop-index",
    ),
    pytest.param(
        "CREATE TABLE d7 (id int PRIMARY KEY, a text)",
        "ALTER TABLE d7 RENAME TO d7_renamed",
        {("public.d7_renamed", "table", "renamed", "high")},
        id="rename-table",
    ),
    pytest.param(
        "SELECT 1",
        "CREATE TABLE d8 (id int PRIMARY KEY, a text)",
        {("public.d8", "table", "added", "medium")},
        id="create-table",
    ),
    pytest.param(
        "CREATE TABLE d9 (id int PRIMARY KEY, a text)",
        "CREATE POLICY d9_p ON d9 USING (id > 0)",
        {("d9_p on public.d9", "policy", "added", "medium")},
        id="create-policy",
    ),
    pytest.param(
        "CREATE TABLE d10 (id int PRIMARY KEY, a text); CREATE POLICY d10_p ON d10 USING (id > 0)",
        "ALTER POLICY d10_p ON d10 USING (id > 10)",
        {("d10_p on public.d10", "policy", "modified", "medium")},
        id="alter-policy",
    ),
    pytest.param(
        "CREATE TABLE d11 (id int PRIMARY KEY, a text)",
        "GRANT SELECT ON d11 TO md5user",
        {("public.d11", "table", "modified", "low")},
        id="grant",
    ),
    pytest.param(
        "CREATE TABLE d12 (id int PRIMARY KEY, a text)",
        "DROP TABLE d12",
        {("public.d12", "table", "removed", "high")},
        id="drop-table",
    ),
]


@pytest.mark.parametrize(("setup", "change", "expected"), DIRECT_CASES)
def test_direct_change_is_reported_by_the_scan(
    db_url: str, direct: psycopg.Connection[Any], setup: str, change: str, expected: set[tuple[str, ...]]
) -> None:
    direct.execute(setup)
    baseline_now(db_url)
    direct.execute(change)
    report = scan_now(db_url)
    assert summary(report) == expected
    assert report.to_json()["status"] == "drift"
    assert all(o["attribution"] is None for o in report.objects)  # no DDL log without a superuser
    baseline_now(db_url)


def test_type_change_detail_has_expected_and_actual(db_url: str, direct: psycopg.Connection[Any]) -> None:
    direct.execute("CREATE TABLE detail_t (id int PRIMARY KEY, a text)")
    baseline_now(db_url)
    direct.execute("ALTER TABLE detail_t ALTER COLUMN a TYPE varchar(10), ALTER COLUMN a SET NOT NULL")
    (item,) = scan_now(db_url).objects
    assert item["detail"]["attributes"] == {
        "type": {"expected": "text", "actual": "character varying(10)"},
        "not_null": {"expected": False, "actual": True},
    }
    baseline_now(db_url)


def test_direct_change_on_an_electrified_table_is_critical(
    db_url: str, proxy: RunningProxy, direct: psycopg.Connection[Any]
) -> None:
    with psycopg.connect(proxy.dsn(dbname=DB), autocommit=True) as conn:
        conn.execute("CREATE TABLE hot (id uuid PRIMARY KEY, name text NOT NULL)")
        conn.execute("ALTER TABLE hot ENABLE ELECTRIC")
    baseline_now(db_url)
    direct.execute("ALTER TABLE hot ADD COLUMN extra text")
    assert summary(scan_now(db_url)) == {("public.hot.extra", "column", "added", "critical")}
    baseline_now(db_url)


# -- acceptance -------------------------------------------------------------------------------------


def test_accept_one_object_leaves_the_rest_and_an_audit_record(
    db_url: str, direct: psycopg.Connection[Any]
) -> None:
    direct.execute("CREATE TABLE acc (id int PRIMARY KEY)")
    baseline_now(db_url)
    direct.execute("ALTER TABLE acc ADD COLUMN x int; CREATE TABLE acc_other (id int)")
    assert {o["identity"] for o in scan_now(db_url).objects} == {"public.acc.x", "public.acc_other"}
    with pytest.raises(CatalogError, match=r"no drift on public\.nothing"):
        accept(db_url, ["public.acc.x", "public.nothing"], by="carol")
    report = accept(db_url, ["public.acc.x"], by="carol")
    assert [a["identity"] for a in report.accepted] == ["public.acc.x"]
    assert {o["identity"] for o in scan_now(db_url).objects} == {"public.acc_other"}
    by, db_user, identities, changes = direct.execute(
        "SELECT accepted_by, db_user, identities, changes FROM electric.drift_acceptances ORDER BY id DESC LIMIT 1"
    ).fetchone()  # type: ignore[misc]
    assert (by, db_user, identities) == ("carol", "alice", ["public.acc.x"])
    assert [c["identity"] for c in changes] == ["public.acc.x"]
    status = direct.execute(
        "SELECT status FROM electric.drift_events WHERE identity = 'public.acc.x' ORDER BY id DESC LIMIT 1"
    ).fetchone()
    assert status == ("accepted",)
    baseline_now(db_url)


# -- the command line -------------------------------------------------------------------------------


def test_drift_command_exit_codes_json_and_accept(
    db_url: str, direct: psycopg.Connection[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    baseline_now(db_url)
    assert main(["drift", "--upstream", db_url]) == 0
    assert "in sync" in capsys.readouterr().out
    direct.execute("CREATE TABLE cli_t (id int)")
    assert main(["drift", "--json", "--upstream", db_url]) == 2
    document = json.loads(capsys.readouterr().out)
    assert document["status"] == "drift"
    (item,) = document["objects"]
    assert set(item) == {
        "identity",
        "object_type",
        "change",
        "severity",
        "electrified",
        "detail",
        "attribution",
    }
    assert (item["identity"], item["change"]) == ("public.cli_t", "added")
    assert main(["drift", "accept", "public.cli_t", "--upstream", db_url]) == 1  # no --by
    assert "--by" in capsys.readouterr().err
    assert main(["drift", "--upstream", db_url, "accept", "public.cli_t", "--by", "dave"]) == 0
    assert "public.cli_t" in capsys.readouterr().out
    assert main(["drift", "--json", "--upstream", db_url]) == 0
    assert json.loads(capsys.readouterr().out) == {"status": "in_sync", "objects": []}


def test_drift_command_errors_exit_1(capsys: pytest.CaptureFixture[str], pg: EmbeddedPostgres) -> None:
    assert main(["drift", "--upstream", "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1"]) == 1
    assert "cannot connect" in capsys.readouterr().err
    # A database the proxy never managed has no baseline.
    pg.execute("DROP DATABASE IF EXISTS drift_none")
    pg.execute("CREATE DATABASE drift_none OWNER alice")
    try:
        assert main(["drift", "--upstream", pg.url("drift_none", user="alice", password=ALICE_PASSWORD)]) == 1
        assert "no drift baseline" in capsys.readouterr().err
    finally:
        pg.execute("DROP DATABASE IF EXISTS drift_none WITH (FORCE)")


# -- the watcher ------------------------------------------------------------------------------------


def test_watcher_records_logs_and_counts_drift(
    db_url: str, proxy: RunningProxy, direct: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    baseline_now(db_url)
    found = watcher(proxy)
    before = proxy.stats.drift_events["scan"]
    scans = found.scans
    direct.execute("CREATE TABLE watched (id int)")
    proxy.loop.call_soon_threadsafe(found.poke)
    report = proxy.call(found.wait_scans(scans + 1, 10))
    assert report is not None and {o["identity"] for o in report.objects} == {"public.watched"}
    assert proxy.stats.drift_events["scan"] == before + 1
    assert proxy.stats.drift_open["medium"] == 1
    assert any(
        "schema drift" in r.getMessage() and "public.watched" in r.getMessage() for r in caplog.records
    )
    assert any(r.levelname == "WARNING" for r in caplog.records if "schema drift" in r.getMessage())
    # Scanning again opens nothing new.
    proxy.loop.call_soon_threadsafe(found.poke)
    proxy.call(found.wait_scans(scans + 2, 10))
    assert proxy.stats.drift_events["scan"] == before + 1
    baseline_now(db_url)


def test_watcher_scans_on_its_interval(db_url: str, direct: psycopg.Connection[Any]) -> None:
    baseline_now(db_url)
    running = RunningProxy(proxy_config(db_url, **{"drift.interval_ms": 100}))
    try:
        found = watcher(running)
        running.call(found.wait_scans(1, 10))
        direct.execute("CREATE TABLE ticking (id int)")

        async def drift_seen() -> None:
            while not (found.last_report and found.last_report.objects):
                await found.wait_scans(found.scans + 1)

        running.call(asyncio.wait_for(drift_seen(), 10))
        assert running.stats.drift_open["medium"] == 1
    finally:
        running.stop()
    baseline_now(db_url)


def test_drift_off_records_the_mode_and_scans_nothing(db_url: str, direct: psycopg.Connection[Any]) -> None:
    running = RunningProxy(proxy_config(db_url, **{"drift.mode": "off"}))
    try:
        found = watcher(running)
        task = found._task
        assert task is not None
        running.call(asyncio.wait_for(asyncio.shield(task), 10))  # configured, then done
        assert found.scans == 0
        assert direct.execute("SELECT mode FROM electric.drift_settings").fetchone() == ("off",)
    finally:
        running.stop()
    running = RunningProxy(proxy_config(db_url, **{"drift.interval_ms": HOUR_MS}))
    try:
        running.call(watcher(running).wait_scans(1, 10))
        assert direct.execute("SELECT mode FROM electric.drift_settings").fetchone() == ("detect",)
    finally:
        running.stop()


# -- a catalog owned by a NOLOGIN role (catalog.admin_url) ----------------------------------------


def test_drift_with_the_catalog_owned_by_an_owner_role(
    pg: EmbeddedPostgres, capsys: pytest.CaptureFixture[str]
) -> None:
    """The application role may only read the catalog: the watcher and the CLI write the drift
    tables with the admin URL's role."""
    database, owner = "drift_owned", "drift_owner_role"
    pg.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    pg.execute(f"DROP ROLE IF EXISTS {owner}")
    pg.execute(f"CREATE DATABASE {database} OWNER alice")
    app_url = pg.url(database, user="alice", password=ALICE_PASSWORD) + "?sslmode=disable"
    admin_url = pg.url(database)
    settings = {"catalog.admin_url": admin_url, "catalog.owner_role": owner, "drift.interval_ms": HOUR_MS}
    running = RunningProxy(proxy_config(app_url, **settings))
    try:
        found = watcher(running)
        assert running.call(found.wait_scans(1, 10)).in_sync
        with psycopg.connect(app_url, autocommit=True) as direct:
            assert direct.execute(
                "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'electric.drift_baseline'::regclass"
            ).fetchone() == (owner,)
            direct.execute("CREATE TABLE owned_t (id int)")
        scans = found.scans
        running.loop.call_soon_threadsafe(found.poke)
        report = running.call(found.wait_scans(scans + 1, 10))
        assert [o["identity"] for o in report.objects] == ["public.owned_t"]
        args = ["drift", "--upstream", app_url]
        env_admin = {"ELECTRIC_PROXY_CATALOG_ADMIN_URL": admin_url}
        with pytest.MonkeyPatch.context() as patch:
            for key, value in env_admin.items():
                patch.setenv(key, value)
            assert main([*args, "accept", "--all", "--by", "erin"]) == 0
            assert main(args) == 0
        assert "in sync" in capsys.readouterr().out
    finally:
        running.stop()
        pg.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        pg.execute(f"DROP ROLE IF EXISTS {owner}")


def test_fingerprint_ignores_truncate_vacuum_full_and_temporary_tables(
    db_url: str, direct: psycopg.Connection[Any]
) -> None:
    from proxy.catalog.snapshot import read_fingerprint_sync

    direct.execute("CREATE TABLE IF NOT EXISTS fp_t (id int PRIMARY KEY, a text)")
    before = read_fingerprint_sync(direct, "electric.electrified")
    direct.execute("TRUNCATE fp_t")
    direct.execute("VACUUM FULL fp_t")
    direct.execute("ANALYZE fp_t")
    direct.execute("CREATE TEMP TABLE fp_temp (id int PRIMARY KEY)")
    assert read_fingerprint_sync(direct, "electric.electrified") == before
    direct.execute("ALTER TABLE fp_t ALTER COLUMN a SET NOT NULL")
    assert read_fingerprint_sync(direct, "electric.electrified") != before
    baseline_now(db_url)


def test_two_proxies_record_drift_once(
    db_url: str, proxy: RunningProxy, direct: psycopg.Connection[Any]
) -> None:
    """Replicas share the catalog: one scan at a time, one event per drifted object, and every
    replica's gauge shows the open drift."""
    baseline_now(db_url)
    other = RunningProxy(proxy_config(db_url, **{"drift.interval_ms": HOUR_MS}))
    try:
        replicas = [proxy, other]
        watchers = [watcher(r) for r in replicas]
        other.call(watchers[1].wait_scans(1, 10))
        before = sum(r.stats.drift_events["scan"] for r in replicas)
        direct.execute("CREATE TABLE replicated (id int)")
        for running, found in zip(replicas, watchers, strict=True):
            scans = found.scans
            running.loop.call_soon_threadsafe(found.poke)
            running.call(found.wait_scans(scans + 1, 10))
        for running, found in zip(replicas, watchers, strict=True):
            scans = found.scans
            running.loop.call_soon_threadsafe(found.poke)
            report = running.call(found.wait_scans(scans + 1, 10))
            assert [o["identity"] for o in report.objects] == ["public.replicated"]
            assert running.stats.drift_open["medium"] == 1
        assert sum(r.stats.drift_events["scan"] for r in replicas) == before + 1
        events = direct.execute(
            "SELECT count(*) FROM electric.drift_events WHERE identity = 'public.replicated'"
        )
        assert events.fetchone() == (1,)
    finally:
        other.stop()
    baseline_now(db_url)


def test_scan_reads_in_full_only_the_baseline_objects_that_differ(
    db_url: str, direct: psycopg.Connection[Any]
) -> None:
    """The live objects' digests, computed by the server, equal the stored baseline's for every
    unchanged object: a forced scan of an unchanged schema parses no baseline object."""

    async def forced() -> Report:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            report = await drift_watch.scan(conn, SCHEMA, wait=True, force=True)
            assert report is not None
            return report

    direct.execute(
        "CREATE TABLE IF NOT EXISTS digest_t (id int PRIMARY KEY, a text DEFAULT 'é', n numeric(5, 2))"
    )
    baseline_now(db_url)
    assert asyncio.run(forced()).read_in_full == 0
    direct.execute("ALTER TABLE digest_t ALTER COLUMN a SET DEFAULT 'x'")
    report = asyncio.run(forced())
    assert report.read_in_full == 1  # the column
    assert summary(report) == {("public.digest_t.a", "column", "modified", "medium")}
    baseline_now(db_url)
