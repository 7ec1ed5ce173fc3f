"""Two proxies in front of one database share one truth: the catalog in the database."""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
import pytest

from proxy.embedded import EmbeddedPostgres
from tests.proxyfixtures import RunningProxy


def test_table_electrified_through_one_is_guarded_by_the_other_within_a_second(
    pg: EmbeddedPostgres, start_proxy: Callable[..., RunningProxy]
) -> None:
    database = "two_proxies"
    pg.execute(f"CREATE DATABASE {database} OWNER alice")
    url = pg.url(database, user="alice", password="alice-secret") + "?sslmode=disable"
    first, second = start_proxy(url), start_proxy(url)
    with (
        psycopg.connect(first.dsn(dbname=database), autocommit=True) as one,
        psycopg.connect(second.dsn(dbname=database), autocommit=True) as two,
    ):
        one.execute("CREATE TABLE t (id uuid PRIMARY KEY, v text)")
        second.catalog_sees(lambda snap: snap.version is not None, database=database)
        one.execute("ALTER TABLE t ENABLE ELECTRIC")
        enabled = time.monotonic()
        second.catalog_sees(lambda snap: snap.any_electrified, database=database, timeout=1)
        assert time.monotonic() - enabled < 1
        with pytest.raises(psycopg.Error) as info:
            two.execute("ALTER TABLE t DROP COLUMN v")
        assert info.value.sqlstate == "EX010"
        assert two.execute("SELECT count(*) FROM t").fetchone() == (0,)
