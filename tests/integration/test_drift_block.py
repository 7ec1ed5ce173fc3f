"""drift.mode = "block": the database refuses, at COMMIT, DDL that no proxy captured.

Block mode hangs on the database-side guard's DDL log (a deferred trigger on `electric.ddl_log`
checks each logged command's transaction for a migration recorded by a proxy). alice is no
superuser, so, as in test_drift_attribution.py, this module plays the guard's event trigger by
hand: each DDL is logged in its own transaction with the log's columns.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from proxy.catalog.install import install_sync
from proxy.embedded import EmbeddedPostgres
from tests.integration.test_drift_attribution import LOG_TABLES, log_ddl
from tests.pgfixtures import ALICE_PASSWORD
from tests.proxyfixtures import RunningProxy, proxy_config

DB = "drift_block"


@pytest.fixture(scope="module")
def db_url(pg: EmbeddedPostgres) -> Iterator[str]:
    pg.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    pg.execute(f"CREATE DATABASE {DB} OWNER alice")
    url = pg.url(DB, user="alice", password=ALICE_PASSWORD) + "?sslmode=disable"
    with psycopg.connect(url, autocommit=True) as conn:
        install_sync(conn)
        conn.execute(LOG_TABLES)
    yield url
    pg.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


def start(db_url: str, **drift: object) -> RunningProxy:
    settings = {"drift.interval_ms": 3_600_000, **{f"drift.{k}": v for k, v in drift.items()}}
    running = RunningProxy(proxy_config(db_url, **settings))
    (watcher,) = running.server.drift
    running.call(watcher.wait_scans(1, 10))  # configured the database before its first scan
    return running


@pytest.fixture(scope="module")
def proxy(db_url: str) -> Iterator[RunningProxy]:
    running = start(db_url, mode="block")
    with psycopg.connect(running.dsn(dbname=DB), autocommit=True) as conn:
        conn.execute("CREATE TABLE hot (id uuid PRIMARY KEY, name text NOT NULL)")
        conn.execute("ALTER TABLE hot ENABLE ELECTRIC")
        conn.execute("CREATE TABLE plain (id int PRIMARY KEY)")
    yield running
    running.stop()


def columns(conn: psycopg.Connection[Any], table: str) -> list[str]:
    rows = conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped"
        " ORDER BY attnum",
        (table,),
    ).fetchall()
    return [r[0] for r in rows]


def test_direct_ddl_on_an_electrified_table_is_refused_and_changes_nothing(
    proxy: RunningProxy, db_url: str
) -> None:
    with psycopg.connect(db_url, autocommit=True) as direct:
        with pytest.raises(psycopg.Error) as refused:
            log_ddl(direct, "ALTER TABLE hot ADD COLUMN sneaky text", "hot", "ALTER TABLE")
        assert refused.value.sqlstate == "EX020"
        assert "electric-proxy" in str(refused.value)
        assert (
            refused.value.diag.message_hint is not None
            and "through electric-proxy" in refused.value.diag.message_hint
        )
        assert "sneaky" not in columns(direct, "hot")


def test_the_same_change_through_the_proxy_works(proxy: RunningProxy, db_url: str) -> None:
    with psycopg.connect(proxy.dsn(dbname=DB), autocommit=True) as through:
        log_ddl(through, "ALTER TABLE hot ADD COLUMN note text", "hot", "ALTER TABLE")
    with psycopg.connect(db_url) as direct:
        assert "note" in columns(direct, "hot")


def test_direct_ddl_on_a_plain_table_passes_with_the_default_scope(proxy: RunningProxy, db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as direct:
        log_ddl(direct, "ALTER TABLE plain ADD COLUMN extra int", "plain", "ALTER TABLE")
        assert "extra" in columns(direct, "plain")


def test_scope_all_refuses_any_direct_ddl_and_detect_refuses_none(proxy: RunningProxy, db_url: str) -> None:
    widened = start(db_url, mode="block", block_scope="all")
    try:
        with psycopg.connect(db_url, autocommit=True) as direct:
            with pytest.raises(psycopg.Error) as refused:
                log_ddl(direct, "ALTER TABLE plain ADD COLUMN more int", "plain", "ALTER TABLE")
            assert refused.value.sqlstate == "EX020"
            assert "more" not in columns(direct, "plain")
            # The catalog's own objects are not the user's schema: installs and upgrades pass.
            log_ddl(direct, "COMMENT ON TABLE electric.drift_state IS 'x'", "electric.drift_state", "COMMENT")
    finally:
        widened.stop()
    relaxed = start(db_url, mode="detect")
    try:
        with psycopg.connect(db_url, autocommit=True) as direct:
            log_ddl(direct, "ALTER TABLE hot ADD COLUMN allowed text", "hot", "ALTER TABLE")
            assert "allowed" in columns(direct, "hot")
    finally:
        relaxed.stop()
    start(db_url, mode="block").stop()  # back to the module's mode
