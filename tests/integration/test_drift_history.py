"""No false positives: a long, varied history of migrations through the proxy leaves the drift
scan in sync, scanned now and then along the way; a migration in flight is never drift; and a
direct change made in the middle of it all is still the one thing reported.

Own database, `drift_hist`, owned by alice, with the proxy in front (drift scans only when the
test runs one).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from proxy.catalog import drift_watch
from proxy.catalog.drift_watch import Report
from proxy.embedded import EmbeddedPostgres
from tests.pgfixtures import ALICE_PASSWORD
from tests.proxyfixtures import RunningProxy, proxy_config

DB = "drift_hist"

# Each item is one migration through the proxy: a string (autocommit; several statements in
# one string are one implicit transaction) or a list (one explicit transaction).
HISTORY: list[str | list[str]] = [
    'CREATE SCHEMA "Sales"',
    "CREATE SCHEMA inventory",
    """CREATE TYPE "Sales".status AS ENUM ('new', 'paid')""",
    """ALTER TYPE "Sales".status ADD VALUE 'void'""",
    "CREATE DOMAIN inventory.positive AS integer CHECK (VALUE > 0) DEFAULT 1",
    """CREATE TABLE "Sales"."Order" (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        "Status" "Sales".status NOT NULL DEFAULT 'new'::"Sales".status,
        total numeric(10, 2) DEFAULT 0::numeric,
        placed_at timestamptz DEFAULT now(),
        due interval DEFAULT '90 days'::interval,
        ms bigint DEFAULT (EXTRACT(epoch FROM now()) * 1000)::bigint,
        note text COLLATE "C",
        doubled numeric GENERATED ALWAYS AS (total * 2) STORED
    )""",
    """CREATE INDEX order_note_lower ON "Sales"."Order" (lower(note)) WHERE "Status" <> 'void'""",
    [
        """CREATE VIEW "Sales".paid AS SELECT id, total FROM "Sales"."Order" WHERE "Status" = 'paid'""",
        """CREATE FUNCTION "Sales".total_of(order_id bigint) RETURNS numeric LANGUAGE sql STABLE
           AS $$ SELECT total FROM "Sales"."Order" WHERE id = order_id $$""",
    ],
    "CREATE TABLE inventory.events (id int, at date NOT NULL, qty inventory.positive) PARTITION BY RANGE (at)",
    "CREATE TABLE inventory.events_2024 PARTITION OF inventory.events"
    " FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
    """COMMENT ON TABLE "Sales"."Order" IS 'orders'""",
    """COMMENT ON COLUMN "Sales"."Order".total IS 'in euros'""",
    """GRANT USAGE ON SCHEMA "Sales" TO md5user""",
    """GRANT SELECT ON "Sales"."Order" TO md5user""",
    """ALTER TABLE "Sales"."Order" RENAME COLUMN note TO remark""",
    """ALTER TABLE "Sales"."Order" ADD COLUMN qty integer DEFAULT 1 CHECK (qty > 0)""",
    """CREATE TABLE inventory.item (id int PRIMARY KEY, order_id bigint REFERENCES "Sales"."Order" (id),
        label varchar(40) NOT NULL)""",
    "ALTER TABLE inventory.item ENABLE ROW LEVEL SECURITY",
    "CREATE POLICY mine ON inventory.item USING (id > 0) WITH CHECK (label <> '')",
    """CREATE FUNCTION inventory.touch() RETURNS trigger LANGUAGE plpgsql
       AS $$ BEGIN NEW.label := upper(NEW.label); RETURN NEW; END $$""",
    "CREATE TRIGGER item_touch BEFORE INSERT OR UPDATE ON inventory.item"
    " FOR EACH ROW EXECUTE FUNCTION inventory.touch()",
    "CREATE SEQUENCE inventory.ticket START 100 INCREMENT 5",
    "CREATE MATERIALIZED VIEW inventory.totals AS SELECT order_id, count(*) AS n FROM inventory.item GROUP BY 1",
    "ALTER TABLE inventory.events RENAME TO happenings",
    """ALTER TABLE "Sales"."Order" ALTER COLUMN remark TYPE varchar(200)""",
    [
        "CREATE TABLE public.items (id uuid PRIMARY KEY, name text NOT NULL)",
        "ALTER TABLE public.items ENABLE ELECTRIC",
    ],
    "ALTER TABLE public.items ADD COLUMN price integer",
    "CREATE INDEX items_name ON public.items (name)",
    'DROP VIEW "Sales".paid',
    'ALTER INDEX "Sales".order_note_lower RENAME TO order_remark_lower',
    "DROP TABLE inventory.item CASCADE",
    "CREATE PUBLICATION drift_pub FOR TABLE public.items",
    'ALTER TABLE "Sales"."Order" DROP COLUMN due',
    "CREATE TABLE inventory.stock (id int PRIMARY KEY)",
    # A partitioned parent's changes reach its partitions; a schema-wide grant, every table
    # (inventory.stock is named by nothing else in its scan window).
    "ALTER TABLE inventory.happenings ADD COLUMN note text",
    "CREATE INDEX happenings_at ON inventory.happenings (at)",
    "GRANT SELECT ON ALL TABLES IN SCHEMA inventory TO md5user",
    "ALTER TABLE inventory.happenings DETACH PARTITION inventory.events_2024",
]


@pytest.fixture(scope="module")
def db_url(pg: EmbeddedPostgres) -> Iterator[str]:
    pg.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    pg.execute(f"CREATE DATABASE {DB} OWNER alice")
    yield pg.url(DB, user="alice", password=ALICE_PASSWORD) + "?sslmode=disable"
    pg.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


@pytest.fixture(scope="module")
def proxy(db_url: str) -> Iterator[RunningProxy]:
    running = RunningProxy(proxy_config(db_url, **{"drift.interval_ms": 3_600_000}))
    (watcher,) = running.server.drift
    running.call(watcher.wait_scans(1, 10))
    yield running
    running.stop()


def scan_now(url: str) -> Report:
    async def run() -> Report:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            report = await drift_watch.scan(conn, "electric", wait=True)
            assert report is not None
            return report

    return asyncio.run(run())


def run_migration(conn: psycopg.Connection[Any], migration: str | list[str]) -> None:
    if isinstance(migration, str):
        conn.execute(migration)
        return
    with conn.transaction():
        for statement in migration:
            conn.execute(statement)


def accept_all(url: str) -> None:
    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await drift_watch.accept(conn, "electric", None, "test")

    asyncio.run(run())


def test_long_history_through_the_proxy_is_in_sync(proxy: RunningProxy, db_url: str) -> None:
    """Every fourth migration, a scan. Between two scans, a direct CREATE TABLE too: it must be
    the one thing reported, so no migration of the window explained it away (a migration whose
    objects the proxy could not name would explain everything, and hide it)."""
    assert scan_now(db_url).in_sync
    with (
        psycopg.connect(proxy.dsn(dbname=DB), autocommit=True) as conn,
        psycopg.connect(db_url, autocommit=True) as direct,
    ):
        direct.execute("CREATE TABLE public.sneaky_0 (id int)")
        for index, migration in enumerate(HISTORY):
            run_migration(conn, migration)
            if index % 4 == 3:
                report = scan_now(db_url)
                reported = [(o["identity"], o["change"]) for o in report.objects]
                assert reported == [(f"public.sneaky_{index // 4}", "added")], (migration, report.objects)
                accept_all(db_url)
                direct.execute(f"CREATE TABLE public.sneaky_{index // 4 + 1} (id int)")
    report = scan_now(db_url)
    assert [o["identity"] for o in report.objects] == [f"public.sneaky_{len(HISTORY) // 4}"]
    accept_all(db_url)
    assert scan_now(db_url).in_sync


def test_direct_change_among_migrations_is_the_only_drift(proxy: RunningProxy, db_url: str) -> None:
    assert scan_now(db_url).in_sync
    with (
        psycopg.connect(proxy.dsn(dbname=DB), autocommit=True) as through,
        psycopg.connect(db_url, autocommit=True) as direct,
    ):
        through.execute("CREATE TABLE public.mixed (id int PRIMARY KEY, a text)")
        direct.execute("CREATE TABLE public.sneaky (id int)")
        through.execute("ALTER TABLE public.mixed ADD COLUMN b int")
        through.execute("CREATE INDEX mixed_a ON public.mixed (a)")
    report = scan_now(db_url)
    assert [(o["identity"], o["change"]) for o in report.objects] == [("public.sneaky", "added")]
    with psycopg.connect(db_url, autocommit=True) as direct:
        direct.execute("DROP TABLE public.sneaky")
    assert scan_now(db_url).in_sync  # put back by hand: resolved


def test_migration_in_flight_is_not_drift(proxy: RunningProxy, db_url: str) -> None:
    assert scan_now(db_url).in_sync
    with psycopg.connect(proxy.dsn(dbname=DB)) as conn:
        conn.execute("CREATE TABLE public.in_flight (id int PRIMARY KEY)")
        conn.execute("ALTER TABLE public.items ADD COLUMN in_flight_note text")
        assert scan_now(db_url).in_sync  # not committed: invisible
        conn.commit()
    assert scan_now(db_url).in_sync


def test_create_index_concurrently_through_the_proxy_is_not_drift(proxy: RunningProxy, db_url: str) -> None:
    assert scan_now(db_url).in_sync
    with psycopg.connect(proxy.dsn(dbname=DB), autocommit=True) as conn:
        conn.execute("CREATE INDEX CONCURRENTLY mixed_b ON public.mixed (b)")
        conn.execute("DROP INDEX CONCURRENTLY mixed_b")
    assert scan_now(db_url).in_sync
