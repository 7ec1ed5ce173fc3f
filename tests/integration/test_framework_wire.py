"""Migration frameworks that cannot run here, replayed through the proxy as they talk to Postgres.

Each replay sends what the tool sends (drift-and-versions.md §3 and the tools' sources): the same
statement texts, over the same protocol (simple Query, or Parse/Bind with `$n`), parameters in
the driver's format (node-postgres, lib/pq, DBD::Pg and the pg gem send text; pgx,
Postgrex and tokio-postgres send binary; pgjdbc mixes them per parameter), and in the same
transaction shape. The tool's version table is created directly first, with the tool's own DDL,
as its first run would have. Then, read directly: exactly one new migration, holding the DDL in
order, labelled with the tool's version and the framework the recogniser names.

Driver stand-ins: psycopg `execute(sql)` without parameters sends a simple Query; with
parameters, a Parse/Bind with text parameters (`%s` become `$n`, str goes as type "unknown", as
node-postgres and lib/pq leave it); `%b` sends one parameter in binary. asyncpg sends every
parameter in binary, with the types left to the server (as pgx and tokio-postgres do), and a
statement without arguments as a simple Query (as pgx does). psycopg's pipeline, with BEGIN
queued before the first statement, sends both in one Sync batch, as pgjdbc does with autocommit
off.

The version tables are shared in database `app`: the frameworks that share `schema_migrations`
(Rails, dbmate, golang-migrate, Ecto) each get their own schema, as a configured search_path or
prefix gives them. Each framework runs once per test session.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import psycopg
import pytest
from psycopg.types.numeric import Int4

from proxy.cli import main as cli_main
from proxy.embedded import EmbeddedPostgres
from tests.pgfixtures import ALICE_PASSWORD
from tests.proxyfixtures import RunningProxy

UTC = datetime.UTC
STARTED = datetime.datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
def direct(pg: EmbeddedPostgres) -> Iterator[psycopg.Connection[Any]]:
    conn = psycopg.connect(pg.url("app", user="alice", password=ALICE_PASSWORD), autocommit=True)
    yield conn
    conn.close()


def run_async(replay: Callable[[RunningProxy], Coroutine[Any, Any, None]]) -> Callable[[RunningProxy], None]:
    def run(proxy: RunningProxy) -> None:
        asyncio.run(replay(proxy))

    return run


async def asyncpg_connect(proxy: RunningProxy) -> asyncpg.Connection:
    return await asyncpg.connect(proxy.url(sslmode="disable"))


def text_session(proxy: RunningProxy) -> psycopg.Connection[Any]:
    """A session that sends BEGIN/COMMIT itself, as node-postgres, lib/pq, DBD::Pg do."""
    return psycopg.connect(proxy.dsn(), autocommit=True)


# -- Rails (ActiveRecord, pg gem: simple protocol for DDL, prepared statements with text parameters)

RAILS_VERSION = "20240501100001"


def rails(proxy: RunningProxy) -> None:
    with text_session(proxy) as conn:
        conn.execute("SET client_min_messages TO 'warning'")
        conn.execute("SET standard_conforming_strings = on")
        conn.execute("SET search_path TO fw_rails")  # schema_search_path: fw_rails
        conn.execute("BEGIN")
        conn.execute(
            'CREATE TABLE "fw_rails_items" ("id" bigserial primary key, "name" character varying, '
            '"created_at" timestamp(6) NOT NULL, "updated_at" timestamp(6) NOT NULL)'
        )
        conn.execute('CREATE INDEX "index_fw_rails_items_on_name" ON "fw_rails_items" ("name")')
        conn.execute(
            'INSERT INTO "schema_migrations" ("version") VALUES (%s) RETURNING "version"',
            (RAILS_VERSION,),
            prepare=True,
        )
        conn.execute("COMMIT")


# -- dbmate (lib/pq: the file as one simple Query in BEGIN/COMMIT, the version as a text $1)

DBMATE_VERSION = "20240501100002"


def dbmate(proxy: RunningProxy) -> None:
    with text_session(proxy) as conn:
        conn.execute("BEGIN")
        conn.execute(
            "create table fw_dbmate_items (\n  id serial primary key,\n  name text not null\n);\n"
            "create unique index fw_dbmate_items_name on fw_dbmate_items (name);\n"
        )
        conn.execute("insert into fw_dbmate.schema_migrations (version) values (%s)", (DBMATE_VERSION,))
        conn.execute("COMMIT")


# -- golang-migrate (pgx: binary int8/bool; SetVersion(v, dirty=true) in its own transaction before
#    the migration, the file as one simple Query (its own implicit transaction), then SetVersion(v, false))

GOLANG_VERSION = 20240501100003
GOLANG_TABLE = '"fw_gomigrate"."schema_migrations"'


@run_async
async def golang_migrate(proxy: RunningProxy) -> None:
    conn = await asyncpg_connect(proxy)
    try:
        lock_id = 3_804_218_519
        await conn.execute("SELECT pg_advisory_lock($1)", lock_id)

        async def set_version(dirty: bool) -> None:
            await conn.execute("begin")
            await conn.execute(f"TRUNCATE {GOLANG_TABLE}")
            await conn.execute(
                f"INSERT INTO {GOLANG_TABLE} (version, dirty) VALUES ($1, $2)", GOLANG_VERSION, dirty
            )
            await conn.execute("commit")

        await set_version(True)
        await conn.execute(
            "CREATE TABLE fw_gomigrate_items (id bigint PRIMARY KEY, name text NOT NULL);\n"
            "CREATE INDEX fw_gomigrate_items_name ON fw_gomigrate_items (name);\n"
        )
        await set_version(False)
        await conn.execute("SELECT pg_advisory_unlock($1)", lock_id)
    finally:
        await conn.close()


# -- goose (pgx: each statement of the file by itself, simple; the version row with binary int8 + bool)

GOOSE_VERSION = 20240501100004


@run_async
async def goose(proxy: RunningProxy) -> None:
    conn = await asyncpg_connect(proxy)
    try:
        await conn.execute("begin")
        await conn.execute(
            "CREATE TABLE fw_goose_items (\n    id serial PRIMARY KEY,\n    name text NOT NULL\n);"
        )
        await conn.execute("CREATE INDEX fw_goose_items_name ON fw_goose_items (name);")
        await conn.execute(
            "INSERT INTO goose_db_version (version_id, is_applied) VALUES ($1, $2)", GOOSE_VERSION, True
        )
        await conn.execute("commit")
    finally:
        await conn.close()


# -- Prisma (tokio-postgres: binary; the row is written first, outside the migration's transaction;
#    the script runs as one simple Query; then the step counter and finished_at, keyed by id)

PRISMA_NAME = "20240501100005_fw_prisma"
PRISMA_SCRIPT = """-- CreateTable
CREATE TABLE "FwPrismaItem" (
    "id" TEXT NOT NULL,
    "name" TEXT NOT NULL,

    CONSTRAINT "FwPrismaItem_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "FwPrismaItem_name_key" ON "FwPrismaItem"("name");
"""


@run_async
async def prisma(proxy: RunningProxy) -> None:
    conn = await asyncpg_connect(proxy)
    try:
        row_id = str(uuid.uuid4())
        checksum = hashlib.sha256(PRISMA_SCRIPT.encode()).hexdigest()
        await conn.execute(
            'INSERT INTO "public"."_prisma_migrations" ("id","checksum","started_at","migration_name") '
            "VALUES ($1,$2,$3,$4)",
            row_id,
            checksum,
            STARTED,
            PRISMA_NAME,
        )
        await conn.execute(PRISMA_SCRIPT)
        await conn.execute(
            'UPDATE "public"."_prisma_migrations" SET "applied_steps_count" = ("applied_steps_count" + $1) '
            'WHERE "id" = $2',
            1,
            row_id,
        )
        await conn.execute(
            'UPDATE "public"."_prisma_migrations" SET "finished_at" = $1 WHERE "id" = $2',
            datetime.datetime.now(UTC),
            row_id,
        )
    finally:
        await conn.close()


# -- pgjdbc with autocommit off: every statement over the extended protocol, one Sync each, and
#    BEGIN in the same batch as the transaction's first statement; COMMIT in a batch of its own

JdbcStatement = tuple[str, tuple[Any, ...] | None]


def jdbc_transaction(proxy: RunningProxy, *transactions: list[JdbcStatement]) -> None:
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn, conn.pipeline() as pipeline:
        for statements in transactions:
            conn.execute("BEGIN")
            for sql, params in statements:
                conn.execute(sql, params)
                pipeline.sync()
            conn.execute("COMMIT")
            pipeline.sync()


# -- Flyway (pgjdbc): the script's statements, then the history row in the same transaction
#    (setInt/setBoolean binary, setString text)

FLYWAY_VERSION = "1.2"


def flyway(proxy: RunningProxy) -> None:
    jdbc_transaction(
        proxy,
        [
            ("CREATE TABLE fw_flyway_items (id INT PRIMARY KEY, name TEXT NOT NULL)", None),
            ("CREATE INDEX fw_flyway_items_name ON fw_flyway_items (name)", None),
            (
                'INSERT INTO "public"."flyway_schema_history" ("installed_rank", "version", "description", '
                '"type", "script", "checksum", "installed_by", "execution_time", "success") '
                "VALUES (%b, %t, %t, %t, %t, %b, %t, %b, %b)",
                (
                    Int4(1),
                    FLYWAY_VERSION,
                    "fw flyway items",
                    "SQL",
                    "V1_2__fw_flyway_items.sql",
                    Int4(-1424553337),
                    "alice",
                    Int4(12),
                    True,
                ),
            ),
        ],
    )


# -- Liquibase (pgjdbc; generated SQL with literals): lock, changeset, unlock, three transactions

LIQUIBASE_VERSION = "db/changelog.xml::1::alice"


def liquibase(proxy: RunningProxy) -> None:
    jdbc_transaction(
        proxy,
        [
            (
                "UPDATE public.databasechangeloglock SET LOCKED = TRUE, LOCKEDBY = 'fwhost (127.0.0.1)', "
                "LOCKGRANTED = NOW() WHERE ID = 1 AND LOCKED = FALSE",
                None,
            )
        ],
        [
            (
                "CREATE TABLE public.fw_liquibase_items (id INTEGER NOT NULL, name VARCHAR(255), "
                "CONSTRAINT fw_liquibase_items_pkey PRIMARY KEY (id))",
                None,
            ),
            ("CREATE INDEX fw_liquibase_items_name ON public.fw_liquibase_items(name)", None),
            (
                "INSERT INTO public.databasechangelog (ID, AUTHOR, FILENAME, DATEEXECUTED, ORDEREXECUTED, "
                "MD5SUM, DESCRIPTION, COMMENTS, EXECTYPE, CONTEXTS, LABELS, LIQUIBASE, DEPLOYMENT_ID) VALUES "
                "('1', 'alice', 'db/changelog.xml', NOW(), 1, '9:6d2f6e3c0c1b8e8a5f0e3b0c9a7d4e21', "
                "'createTable tableName=fw_liquibase_items; createIndex indexName=fw_liquibase_items_name, "
                "tableName=fw_liquibase_items', '', 'EXECUTED', NULL, NULL, '4.29.2', '4512345678')",
                None,
            ),
        ],
        [
            (
                "UPDATE public.databasechangeloglock SET LOCKED = FALSE, LOCKEDBY = NULL, LOCKGRANTED = NULL "
                "WHERE ID = 1",
                None,
            )
        ],
    )


# -- Knex (node-postgres: no bindings = simple Query; bindings = text $n; all in BEGIN; ... COMMIT;)

KNEX_NAME = "20240501100006_fw_knex_items.js"


def knex(proxy: RunningProxy) -> None:
    with text_session(proxy) as conn:
        conn.execute("BEGIN;")
        conn.execute('update "knex_migrations_lock" set "is_locked" = %s where "is_locked" = %s', ("1", "0"))
        conn.execute('select max("batch") as "max_batch" from "knex_migrations"')
        conn.execute('create table "fw_knex_items" ("id" serial primary key, "name" varchar(255) not null)')
        conn.execute('create index "fw_knex_items_name_index" on "fw_knex_items" ("name")')
        conn.execute(
            'insert into "knex_migrations" ("batch", "migration_time", "name") values (%s, %s, %s)',
            ("1", "2024-05-01T10:00:00.123+00:00", KNEX_NAME),
        )
        conn.execute('update "knex_migrations_lock" set "is_locked" = %s', ("0",))
        conn.execute("COMMIT;")


# -- Sequelize (umzug SequelizeStorage, node-postgres): the migration in its transaction, then the
#    SequelizeMeta row in a transaction of its own (umzug logs after `up` resolved)

SEQUELIZE_NAME = "20240501100007-fw-sequelize-items.js"


def sequelize(proxy: RunningProxy) -> None:
    with text_session(proxy) as conn:
        conn.execute("START TRANSACTION;")
        conn.execute(
            'CREATE TABLE IF NOT EXISTS "FwSequelizeItems" ("id"   SERIAL , "name" VARCHAR(255) NOT NULL, '
            '"createdAt" TIMESTAMP WITH TIME ZONE NOT NULL, "updatedAt" TIMESTAMP WITH TIME ZONE NOT NULL, '
            'PRIMARY KEY ("id"));'
        )
        conn.execute('CREATE INDEX "fw_sequelize_items_name" ON "FwSequelizeItems" ("name")')
        conn.execute("COMMIT;")
        conn.execute('INSERT INTO "SequelizeMeta" ("name") VALUES (%s) RETURNING "name";', (SEQUELIZE_NAME,))


# -- TypeORM (node-postgres, transaction "all"; query builder INSERT with text $1, $2)

TYPEORM_NAME = "FwTypeormItems1714557600008"


def typeorm(proxy: RunningProxy) -> None:
    with text_session(proxy) as conn:
        conn.execute("START TRANSACTION")
        conn.execute(
            'CREATE TABLE "fw_typeorm_item" ("id" SERIAL NOT NULL, "name" character varying NOT NULL, '
            'CONSTRAINT "PK_fw_typeorm_item_id" PRIMARY KEY ("id"))'
        )
        conn.execute('CREATE INDEX "IDX_fw_typeorm_item_name" ON "fw_typeorm_item" ("name") ')
        conn.execute(
            'INSERT INTO "migrations"("timestamp", "name") VALUES (%s, %s)', ("1714557600008", TYPEORM_NAME)
        )
        conn.execute("COMMIT")


# -- node-pg-migrate (node-postgres, all simple Queries, the version row inlined)

NODE_PG_MIGRATE_NAME = "1714557600009_fw-npm-items"


def node_pg_migrate(proxy: RunningProxy) -> None:
    with text_session(proxy) as conn:
        conn.execute('SELECT pg_try_advisory_lock(7241865325823964) AS "lockObtained"')
        conn.execute("BEGIN;")
        conn.execute('CREATE TABLE "fw_npm_items" (\n  "id" serial PRIMARY KEY,\n  "name" text NOT NULL\n);')
        conn.execute('CREATE INDEX "fw_npm_items_name_index" ON "fw_npm_items" ("name");')
        conn.execute(
            f'INSERT INTO "public"."pgmigrations" (name, run_on) VALUES (\'{NODE_PG_MIGRATE_NAME}\', NOW());'
        )
        conn.execute("COMMIT;")
        conn.execute("SELECT pg_advisory_unlock(7241865325823964)")


# -- sqitch: its DBI session (DBD::Pg, text $n) locks `changes` and logs the change; the deploy script
#    itself runs in psql, a session of its own, between the two

SQITCH_CHANGE_ID = hashlib.sha1(b"fw_sqitch_items").hexdigest()  # sqitch change ids are SHA-1


def sqitch(proxy: RunningProxy) -> None:
    with text_session(proxy) as dbi, text_session(proxy) as psql:
        dbi.execute("SET client_min_messages = WARNING")
        dbi.execute("SET search_path = 'sqitch'")
        dbi.execute("BEGIN")
        dbi.execute("LOCK TABLE changes IN EXCLUSIVE MODE")
        # psql --file deploy/fw_sqitch_items.sql: one Query per statement of the script
        psql.execute("BEGIN;")
        psql.execute("CREATE TABLE fw_sqitch_items (id int PRIMARY KEY, name text NOT NULL);")
        psql.execute("CREATE INDEX fw_sqitch_items_name ON fw_sqitch_items (name);")
        psql.execute("COMMIT;")
        dbi.execute(
            "\n        INSERT INTO changes (\n            change_id\n            , script_hash\n"
            "            , change\n            , project\n            , note\n            , committer_name\n"
            "            , committer_email\n            , planned_at\n            , planner_name\n"
            "            , planner_email\n            , committed_at\n        )\n"
            "        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, clock_timestamp())\n    ",
            (
                SQITCH_CHANGE_ID,
                hashlib.sha1(b"deploy script").hexdigest(),
                "fw_sqitch_items",
                "flipr",
                "Add fw_sqitch_items.",
                "Alice",
                "alice@example.com",
                "2024-05-01 10:00:00 +0000",
                "Alice",
                "alice@example.com",
            ),
        )
        dbi.execute("COMMIT")


# -- yoyo-migrations (psycopg2: parameters inlined, simple Queries, psycopg2's own BEGIN before the
#    first statement). Since 7.3.2 the migration runs on a connection of its own; the main one logs
#    and marks it afterwards.

YOYO_ID = "0001.fw-yoyo-items"
YOYO_HASH = hashlib.sha256(YOYO_ID.encode()).hexdigest()


def yoyo(proxy: RunningProxy) -> None:
    with text_session(proxy) as main, text_session(proxy) as migration:
        main.execute("BEGIN")
        main.execute(
            "INSERT INTO \"yoyo_lock\" (locked, ctime, pid) VALUES (1, '2024-05-01T10:00:00.000001'::timestamp, 4242)"
        )
        main.execute("COMMIT")
        migration.execute("BEGIN")  # psycopg2's
        migration.execute("BEGIN")  # yoyo's begin(): a WARNING, as with the real tool
        migration.execute("CREATE TABLE fw_yoyo_items (id INT, name VARCHAR(20), PRIMARY KEY (id))")
        migration.execute("CREATE INDEX fw_yoyo_items_name ON fw_yoyo_items (name)")
        migration.execute("COMMIT")
        main.execute("BEGIN")
        main.execute(
            'INSERT INTO "_yoyo_log" (id, migration_hash, migration_id, operation, username, hostname, '
            f"created_at_utc) VALUES ('{uuid.uuid1()}', '{YOYO_HASH}', '{YOYO_ID}', 'apply', 'alice', "
            "'fwhost', '2024-05-01T10:00:00.000002'::timestamp)"
        )
        main.execute("BEGIN")  # yoyo's transaction() for mark_one
        main.execute(
            'INSERT INTO "_yoyo_migration" (migration_hash, migration_id, applied_at_utc) '
            f"VALUES ('{YOYO_HASH}', '{YOYO_ID}', '2024-05-01T10:00:00.000003'::timestamp)"
        )
        main.execute("COMMIT")
        main.execute("BEGIN")
        main.execute('DELETE FROM "yoyo_lock" WHERE pid=4242')
        main.execute("COMMIT")


# -- the cases ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    setup: tuple[str, ...]  # the version table, as the tool creates it on its first run
    replay: Callable[[RunningProxy], None]
    version: str
    framework: str
    tags: tuple[str, ...]
    tables: tuple[str, ...]  # what the migration created, as to_regclass reads it
    # The tool runs its DDL on one connection and writes its version on another (sqitch through
    # psql, yoyo since 7.3.2): the version is tied to the DDL-only migration its client (same user,
    # same host) committed just before.
    other_connection: bool = False


CREATE_AND_INDEX = ("CREATE TABLE", "CREATE INDEX")
# How the version reached its migration when not in the migration's own transaction.
TIES = {"golang-migrate": "session before", "prisma": "session before", "sequelize": "session after"}

CASES = (
    Case(
        "rails",
        (
            "CREATE SCHEMA IF NOT EXISTS fw_rails",
            'CREATE TABLE "fw_rails"."schema_migrations" ("version" character varying NOT NULL PRIMARY KEY)',
            'CREATE TABLE "fw_rails"."ar_internal_metadata" ("key" character varying NOT NULL PRIMARY KEY, '
            '"value" character varying, "created_at" timestamp(6) NOT NULL, "updated_at" timestamp(6) NOT NULL)',
        ),
        rails,
        RAILS_VERSION,
        "rails|dbmate",  # same table, same statements: the recogniser names both (versions.py)
        CREATE_AND_INDEX,
        ("fw_rails.fw_rails_items",),
    ),
    Case(
        "dbmate",
        (
            "CREATE SCHEMA IF NOT EXISTS fw_dbmate",
            "create table if not exists fw_dbmate.schema_migrations (version varchar(128) primary key)",
        ),
        dbmate,
        DBMATE_VERSION,
        "rails|dbmate",
        CREATE_AND_INDEX,
        ("fw_dbmate_items",),
    ),
    Case(
        "golang-migrate",
        (
            "CREATE SCHEMA IF NOT EXISTS fw_gomigrate",
            f"CREATE TABLE IF NOT EXISTS {GOLANG_TABLE} (version bigint not null primary key, dirty boolean not null)",
        ),
        golang_migrate,
        str(GOLANG_VERSION),
        "golang-migrate",
        CREATE_AND_INDEX,
        ("fw_gomigrate_items",),
    ),
    Case(
        "goose",
        (
            "CREATE TABLE goose_db_version (id serial NOT NULL, version_id bigint NOT NULL, "
            "is_applied boolean NOT NULL, tstamp timestamp NULL default now(), PRIMARY KEY(id))",
            "INSERT INTO goose_db_version (version_id, is_applied) VALUES (0, true)",
        ),
        goose,
        str(GOOSE_VERSION),
        "goose",
        CREATE_AND_INDEX,
        ("fw_goose_items",),
    ),
    Case(
        "prisma",
        (
            'CREATE TABLE "_prisma_migrations" ("id" VARCHAR(36) NOT NULL, "checksum" VARCHAR(64) NOT NULL, '
            '"finished_at" TIMESTAMPTZ, "migration_name" VARCHAR(255) NOT NULL, "logs" TEXT, '
            '"rolled_back_at" TIMESTAMPTZ, "started_at" TIMESTAMPTZ NOT NULL DEFAULT now(), '
            '"applied_steps_count" INTEGER NOT NULL DEFAULT 0, '
            'CONSTRAINT "_prisma_migrations_pkey" PRIMARY KEY ("id"))',
        ),
        prisma,
        PRISMA_NAME,
        "prisma",
        CREATE_AND_INDEX,
        ('"FwPrismaItem"',),
    ),
    Case(
        "flyway",
        (
            'CREATE TABLE "public"."flyway_schema_history" ("installed_rank" INT NOT NULL, '
            '"version" VARCHAR(50), "description" VARCHAR(200) NOT NULL, "type" VARCHAR(20) NOT NULL, '
            '"script" VARCHAR(1000) NOT NULL, "checksum" INTEGER, "installed_by" VARCHAR(100) NOT NULL, '
            '"installed_on" TIMESTAMP NOT NULL DEFAULT now(), "execution_time" INTEGER NOT NULL, '
            '"success" BOOLEAN NOT NULL)',
            'ALTER TABLE "public"."flyway_schema_history" ADD CONSTRAINT "flyway_schema_history_pk" '
            'PRIMARY KEY ("installed_rank")',
            'CREATE INDEX "flyway_schema_history_s_idx" ON "public"."flyway_schema_history" ("success")',
        ),
        flyway,
        FLYWAY_VERSION,
        "flyway",
        CREATE_AND_INDEX,
        ("fw_flyway_items",),
    ),
    Case(
        "liquibase",
        (
            "CREATE TABLE public.databasechangeloglock (ID INTEGER NOT NULL, LOCKED BOOLEAN NOT NULL, "
            "LOCKGRANTED TIMESTAMP WITHOUT TIME ZONE, LOCKEDBY VARCHAR(255), "
            "CONSTRAINT databasechangeloglock_pkey PRIMARY KEY (ID))",
            "INSERT INTO public.databasechangeloglock (ID, LOCKED) VALUES (1, FALSE)",
            "CREATE TABLE public.databasechangelog (ID VARCHAR(255) NOT NULL, AUTHOR VARCHAR(255) NOT NULL, "
            "FILENAME VARCHAR(255) NOT NULL, DATEEXECUTED TIMESTAMP WITHOUT TIME ZONE NOT NULL, "
            "ORDEREXECUTED INTEGER NOT NULL, EXECTYPE VARCHAR(10) NOT NULL, MD5SUM VARCHAR(35), "
            "DESCRIPTION VARCHAR(255), COMMENTS VARCHAR(255), TAG VARCHAR(255), LIQUIBASE VARCHAR(20), "
            "CONTEXTS VARCHAR(255), LABELS VARCHAR(255), DEPLOYMENT_ID VARCHAR(10))",
        ),
        liquibase,
        LIQUIBASE_VERSION,
        "liquibase",
        CREATE_AND_INDEX,
        ("fw_liquibase_items",),
    ),
    Case(
        "knex",
        (
            'create table "knex_migrations" ("id" serial primary key, "name" varchar(255), "batch" integer, '
            '"migration_time" timestamptz)',
            'create table "knex_migrations_lock" ("index" serial primary key, "is_locked" integer)',
            'insert into "knex_migrations_lock" ("is_locked") values (0)',
        ),
        knex,
        KNEX_NAME,
        "knex",
        CREATE_AND_INDEX,
        ("fw_knex_items",),
    ),
    Case(
        "sequelize",
        (
            'CREATE TABLE IF NOT EXISTS "SequelizeMeta" ("name" VARCHAR(255) NOT NULL UNIQUE , PRIMARY KEY ("name"));',
        ),
        sequelize,
        SEQUELIZE_NAME,
        "sequelize",
        CREATE_AND_INDEX,
        ('"FwSequelizeItems"',),
    ),
    Case(
        "typeorm",
        (
            'CREATE TABLE "migrations" ("id" SERIAL NOT NULL, "timestamp" bigint NOT NULL, '
            '"name" character varying NOT NULL, CONSTRAINT "PK_8c82d7f526340ab734260ea46be" PRIMARY KEY ("id"))',
        ),
        typeorm,
        TYPEORM_NAME,
        "typeorm",
        CREATE_AND_INDEX,
        ("fw_typeorm_item",),
    ),
    Case(
        "node-pg-migrate",
        (
            'CREATE TABLE "public"."pgmigrations" ( id SERIAL PRIMARY KEY, name varchar(255) NOT NULL, '
            "run_on timestamp NOT NULL)",
        ),
        node_pg_migrate,
        NODE_PG_MIGRATE_NAME,
        "node-pg-migrate",
        CREATE_AND_INDEX,
        ("fw_npm_items",),
    ),
    Case(
        "sqitch",
        (
            "CREATE SCHEMA IF NOT EXISTS sqitch",
            "CREATE TABLE sqitch.changes (change_id TEXT PRIMARY KEY, script_hash TEXT NULL, "
            "\"change\" TEXT NOT NULL, project TEXT NOT NULL, note TEXT NOT NULL DEFAULT '', "
            "committed_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(), committer_name TEXT NOT NULL, "
            "committer_email TEXT NOT NULL, planned_at TIMESTAMPTZ NOT NULL, planner_name TEXT NOT NULL, "
            "planner_email TEXT NOT NULL, UNIQUE (project, script_hash))",
        ),
        sqitch,
        SQITCH_CHANGE_ID,
        "sqitch",
        CREATE_AND_INDEX,
        ("fw_sqitch_items",),
        other_connection=True,
    ),
    Case(
        "yoyo",
        (
            'CREATE TABLE "_yoyo_migration" ( migration_hash VARCHAR(64), migration_id VARCHAR(255), '
            "applied_at_utc TIMESTAMP, PRIMARY KEY (migration_hash))",
            'CREATE TABLE "_yoyo_log" ( id VARCHAR(36), migration_hash VARCHAR(64), migration_id VARCHAR(255), '
            "operation VARCHAR(10), username VARCHAR(255), hostname VARCHAR(255), comment VARCHAR(255), "
            "created_at_utc TIMESTAMP, PRIMARY KEY (id))",
            'CREATE TABLE "_yoyo_version" (version INT NOT NULL PRIMARY KEY, installed_at_utc TIMESTAMP)',
            'CREATE TABLE "yoyo_lock" (locked INT DEFAULT 1, ctime TIMESTAMP,pid INT NOT NULL,PRIMARY KEY (locked))',
        ),
        yoyo,
        YOYO_ID,
        "yoyo",
        CREATE_AND_INDEX,
        ("fw_yoyo_items",),
        other_connection=True,
    ),
)


def last_migration_id(direct: psycopg.Connection[Any]) -> int:
    row = direct.execute("SELECT coalesce(max(id), 0) FROM electric.migrations").fetchone()
    assert row is not None
    return int(row[0])


def migrations_after(
    direct: psycopg.Connection[Any], before: int
) -> list[tuple[str, str | None, str, list[str], list[str]]]:
    """(version, framework, version_source, tags, sql) of each migration recorded after `before`."""
    rows = direct.execute(
        "SELECT m.version, m.framework, m.version_source, "
        "coalesce(array_agg(s.tag ORDER BY s.seq) FILTER (WHERE s.seq IS NOT NULL), '{}'), "
        "coalesce(array_agg(s.sql ORDER BY s.seq) FILTER (WHERE s.seq IS NOT NULL), '{}') "
        "FROM electric.migrations m LEFT JOIN electric.migration_statements s ON s.migration_id = m.id "
        "WHERE m.id > %s GROUP BY m.id ORDER BY m.id",
        (before,),
    ).fetchall()
    return [(r[0], r[1], r[2], list(r[3]), list(r[4])) for r in rows]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_framework_version_is_recorded_with_its_migration(
    case: Case, proxy: RunningProxy, direct: psycopg.Connection[Any]
) -> None:
    for sql in case.setup:
        direct.execute(sql)
    before = last_migration_id(direct)

    case.replay(proxy)

    for table in case.tables:  # the migration ran
        assert direct.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone() == (True,), table
    recorded = migrations_after(direct, before)
    assert [(v, f, source, tags) for v, f, source, tags, _ in recorded] == [
        (case.version, case.framework, "framework", list(case.tags))
    ]
    for table in case.tables:  # its definition was captured, read inside the migration
        found = direct.execute(
            "SELECT o.definition ->> 'kind' FROM electric.migration_objects o "
            "WHERE o.migration_id > %s AND o.relid = to_regclass(%s)",
            (before, table),
        ).fetchall()
        assert found == [("table",)], table
    tie = direct.execute("SELECT version_tie FROM electric.migrations WHERE id > %s", (before,)).fetchone()
    assert tie == ("other connection" if case.other_connection else TIES.get(case.name, "transaction"),)
    (statements,) = [sql for *_, sql in recorded]
    token = case.tables[0].rsplit(".", 1)[-1].strip('"')
    assert all(token in sql for sql in statements), statements


# -- ordering: versions apply in their own order, not their text's --------------------------------

ECTO_TABLE = '"fw_ecto"."schema_migrations"'


@pytest.mark.usefixtures("no_config_env")
def test_ecto_versions_9_then_10_list_in_applied_order(
    proxy: RunningProxy,
    pg: EmbeddedPostgres,
    direct: psycopg.Connection[Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Ecto (Postgrex: binary int8, `@schema_prefix`): a lock connection holds the table lock while a
    second connection runs each migration in its own transaction. As text "10" < "9"; the history
    lists them as applied."""
    direct.execute("CREATE SCHEMA IF NOT EXISTS fw_ecto")
    direct.execute(
        f"CREATE TABLE IF NOT EXISTS {ECTO_TABLE} (version bigint PRIMARY KEY, inserted_at timestamp(0))"
    )
    before = last_migration_id(direct)

    async def migrate() -> None:
        lock = await asyncpg_connect(proxy)
        runner = await asyncpg_connect(proxy)
        try:
            await lock.execute("BEGIN")
            await lock.fetch(f"LOCK TABLE {ECTO_TABLE} IN SHARE UPDATE EXCLUSIVE MODE")
            for version, table in ((9, "fw_ecto_nine"), (10, "fw_ecto_ten")):
                await runner.execute("BEGIN")
                await runner.fetch(
                    f'CREATE TABLE "{table}" ("id" bigserial, "name" varchar(255), PRIMARY KEY ("id"))'
                )
                await runner.fetch(
                    f'INSERT INTO {ECTO_TABLE} ("version","inserted_at") VALUES ($1,$2)',
                    version,
                    datetime.datetime(2024, 5, 1, 10, 0, version),
                )
                await runner.execute("COMMIT")
            await lock.execute("COMMIT")
        finally:
            await runner.close()
            await lock.close()

    asyncio.run(migrate())
    assert sorted(["9", "10"]) == ["10", "9"]  # the trap: text order is not applied order

    url = pg.url("app", user="alice", password=ALICE_PASSWORD)
    code = cli_main(["history", "--json", "--upstream", url])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    history = [m for m in json.loads(out) if m["id"] > before]
    assert [(m["version"], m["framework"], m["version_source"]) for m in history] == [
        ("9", "ecto", "framework"),
        ("10", "ecto", "framework"),
    ]
    assert [[s["tag"] for s in m["statements"]] for m in history] == [["CREATE TABLE"], ["CREATE TABLE"]]


# -- Flyway with group=true: every pending version in one transaction, each history row after its
#    script; one history entry per version, each with its own statements


def flyway_row(rank: int, version: str, script: str) -> JdbcStatement:
    return (
        'INSERT INTO "public"."flyway_schema_history" ("installed_rank", "version", "description", '
        '"type", "script", "checksum", "installed_by", "execution_time", "success") '
        "VALUES (%b, %t, %t, %t, %t, %b, %t, %b, %b)",
        (Int4(rank), version, script, "SQL", script, Int4(rank), "alice", Int4(3), True),
    )


def test_flyway_group_records_one_entry_per_version(
    proxy: RunningProxy, direct: psycopg.Connection[Any]
) -> None:
    direct.execute(
        'CREATE TABLE IF NOT EXISTS "public"."flyway_schema_history" ("installed_rank" INT NOT NULL, '
        '"version" VARCHAR(50), "description" VARCHAR(200) NOT NULL, "type" VARCHAR(20) NOT NULL, '
        '"script" VARCHAR(1000) NOT NULL, "checksum" INTEGER, "installed_by" VARCHAR(100) NOT NULL, '
        '"installed_on" TIMESTAMP NOT NULL DEFAULT now(), "execution_time" INTEGER NOT NULL, '
        '"success" BOOLEAN NOT NULL)'
    )
    before = last_migration_id(direct)

    jdbc_transaction(
        proxy,
        [
            ("CREATE TABLE fw_flyway_group (id INT PRIMARY KEY)", None),
            flyway_row(101, "2.1", "V2_1__group.sql"),
            ("ALTER TABLE fw_flyway_group ADD COLUMN name TEXT NOT NULL", None),
            ("CREATE INDEX fw_flyway_group_name ON fw_flyway_group (name)", None),
            flyway_row(102, "2.2", "V2_2__group_name.sql"),
        ],
    )

    recorded = migrations_after(direct, before)
    assert [(v, f, source, tags) for v, f, source, tags, _ in recorded] == [
        ("2.1", "flyway", "framework", ["CREATE TABLE"]),
        ("2.2", "flyway", "framework", ["ALTER TABLE", "CREATE INDEX"]),
    ]
    # Each entry's definitions are the schema right after its own version.
    columns = direct.execute(
        "SELECT m.version, jsonb_path_query_array(o.definition, '$.columns[*].name') "
        "FROM electric.migrations m JOIN electric.migration_objects o ON o.migration_id = m.id "
        "WHERE m.id > %s AND o.object_name = 'fw_flyway_group' ORDER BY m.id",
        (before,),
    ).fetchall()
    assert columns == [("2.1", ["id"]), ("2.2", ["id", "name"])]
