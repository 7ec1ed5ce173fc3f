from __future__ import annotations

import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.ddl.prefilter import may_write_version
from proxy.ddl.versions import (
    ALL_VERSIONS,
    DEFAULT_TABLES,
    Bind,
    ColumnsOf,
    VersionRecognizer,
    VersionTable,
    VersionWrite,
    decode_binary,
    decode_bind,
    version_sort_key,
    yoyo_migration_hash,
)
from proxy.errors import ProtocolError

R = VersionRecognizer()
TEXT, BINARY = 0, 1


def int8(n: int) -> bytes:
    return struct.pack("!q", n)


def timestamp_binary() -> bytes:
    return int8(747_000_000_000_000)  # microseconds since 2000-01-01


def W(
    framework: str,
    version: str,
    action: str = "apply",
    *,
    dirty: bool | None = None,
    before_ddl: bool = False,
    previous: str | None = None,
) -> VersionWrite:
    assert action in ("apply", "revert")
    return VersionWrite(
        framework, version, "apply" if action == "apply" else "revert", dirty, before_ddl, previous
    )


@dataclass(frozen=True)
class Shape:
    """One statement as a framework sends it, over its protocol."""

    sql: str
    params: Sequence[bytes | None] | None = None  # None: simple protocol (literals inline)
    formats: Sequence[int] = ()
    types: Sequence[int] = ()

    def run(
        self, recognizer: VersionRecognizer = R, columns_of: ColumnsOf | None = None
    ) -> list[VersionWrite]:
        if self.params is None:
            return recognizer.from_sql(self.sql, columns_of=columns_of)
        return recognizer.from_statement(
            self.sql, self.params, self.formats, self.types, columns_of=columns_of
        )


HASH = yoyo_migration_hash("20250706_01_sPVrY-create-users")
PRISMA_ID = "0b6a0c5e-4f6e-4a1e-9a36-1c1b8b2f7c11"

# framework shape -> the writes it must give (without a catalog lookup)
SHAPES: dict[str, tuple[Shape, list[VersionWrite]]] = {
    # -- Alembic (psycopg2: simple protocol, captured)
    "alembic first": (
        Shape(
            "INSERT INTO alembic_version (version_num) VALUES ('aaa111') RETURNING alembic_version.version_num"
        ),
        [W("alembic", "aaa111")],
    ),
    "alembic upgrade": (
        Shape("UPDATE alembic_version SET version_num='bbb222' WHERE alembic_version.version_num = 'aaa111'"),
        [W("alembic", "bbb222", previous="aaa111")],
    ),
    "alembic downgrade": (
        Shape("UPDATE alembic_version SET version_num='aaa111' WHERE alembic_version.version_num = 'bbb222'"),
        [W("alembic", "aaa111", previous="bbb222")],
    ),
    "alembic downgrade to base": (
        Shape("DELETE FROM alembic_version WHERE alembic_version.version_num = 'aaa111'"),
        [W("alembic", "aaa111", "revert")],
    ),
    "alembic qualified": (
        Shape("INSERT INTO public.alembic_version (version_num) VALUES ('ccc333')"),
        [W("alembic", "ccc333")],
    ),
    # -- Django (psycopg2, captured)
    "django apply": (
        Shape(
            'INSERT INTO "django_migrations" ("app", "name", "applied") VALUES '
            "('shop', '0001_initial', '2024-05-01T10:00:00.123456+00:00'::timestamptz) "
            'RETURNING "django_migrations"."id"'
        ),
        [W("django", "shop.0001_initial")],
    ),
    "django unapply": (
        Shape(
            'DELETE FROM "django_migrations" WHERE ("django_migrations"."app" = \'shop\' '
            'AND "django_migrations"."name" = \'0001_initial\')'
        ),
        [W("django", "shop.0001_initial", "revert")],
    ),
    # -- Knex (node-postgres: text parameters, captured)
    "knex apply": (
        Shape(
            'insert into "knex_migrations" ("batch", "migration_time", "name") values ($1, $2, $3)',
            [b"1", b"2024-05-01T10:00:00.000Z", b"20240501100000_create_users.js"],
        ),
        [W("knex", "20240501100000_create_users.js")],
    ),
    "knex rollback": (
        Shape('delete from "knex_migrations" where "name" = $1', [b"20240501100000_create_users.js"]),
        [W("knex", "20240501100000_create_users.js", "revert")],
    ),
    # -- Ecto (Postgrex: extended protocol, binary int8 version)
    "ecto apply, Parse declares int8": (
        Shape(
            'INSERT INTO "schema_migrations" ("version","inserted_at") VALUES ($1,$2)',
            [int8(20230905122033), timestamp_binary()],
            [BINARY],
            [20, 1114],
        ),
        [W("ecto", "20230905122033")],
    ),
    "ecto apply, Parse leaves types to the server": (
        Shape(
            'INSERT INTO "schema_migrations" ("version","inserted_at") VALUES ($1,$2)',
            [int8(20230905122033), timestamp_binary()],
            [BINARY, BINARY],
            [0, 0],
        ),
        [W("ecto", "20230905122033")],
    ),
    "ecto apply with prefix, no Parse types": (
        Shape(
            'INSERT INTO "tenant"."schema_migrations" ("version","inserted_at") VALUES ($1,$2)',
            [int8(9), timestamp_binary()],
            [BINARY],
        ),
        [W("ecto", "9")],
    ),
    # -- Rails (Arel; prepared statements on: $1, off: inlined)
    "rails apply prepared": (
        Shape(
            'INSERT INTO "schema_migrations" ("version") VALUES ($1) RETURNING "version"', [b"20240501100000"]
        ),
        [W("rails|dbmate", "20240501100000")],
    ),
    "rails apply inline, several": (
        Shape("INSERT INTO \"schema_migrations\" (version) VALUES ('20240501100000'), ('20240502100000')"),
        [W("rails|dbmate", "20240501100000"), W("rails|dbmate", "20240502100000")],
    ),
    "rails revert": (
        Shape(
            'DELETE FROM "schema_migrations" WHERE "schema_migrations"."version" = $1',
            [b"20240501100000"],
        ),
        [W("rails|dbmate|ecto|golang-migrate", "20240501100000", "revert")],
    ),
    # -- dbmate (lib/pq: text parameters; table quoted by quote_ident on the server)
    "dbmate apply": (
        Shape("insert into public.schema_migrations (version) values ($1)", [b"20151129054053"]),
        [W("rails|dbmate", "20151129054053")],
    ),
    "dbmate rollback": (
        Shape("delete from public.schema_migrations where version = $1", [b"20151129054053"]),
        [W("rails|dbmate|ecto|golang-migrate", "20151129054053", "revert")],
    ),
    # -- Prisma (tokio-postgres: binary parameters; the row comes before the DDL)
    "prisma started": (
        Shape(
            'INSERT INTO "public"."_prisma_migrations" ("id","checksum","started_at","migration_name") '
            "VALUES ($1,$2,$3,$4)",
            [PRISMA_ID.encode(), b"9f86d081884c7d65" * 4, timestamp_binary(), b"20240501100000_init"],
            [BINARY],
        ),
        [W("prisma", "20240501100000_init", before_ddl=True)],
    ),
    "prisma resolve --applied": (
        Shape(
            'INSERT INTO "public"."_prisma_migrations" '
            '("id","checksum","logs","started_at","finished_at","migration_name") VALUES ($1,$2,$3,$4,$5,$6)',
            [
                PRISMA_ID.encode(),
                b"ab" * 32,
                b"",
                timestamp_binary(),
                timestamp_binary(),
                b"20240501100000_init",
            ],
            [BINARY],
            [25, 25, 25, 1184, 1184, 25],
        ),
        [W("prisma", "20240501100000_init")],
    ),
    "prisma step counter": (
        Shape(
            'UPDATE "public"."_prisma_migrations" SET "applied_steps_count" = ("applied_steps_count" + $1) '
            'WHERE "id" = $2',
            [struct.pack("!i", 1), PRISMA_ID.encode()],
            [BINARY],
        ),
        [],
    ),
    "prisma finished": (
        Shape(
            'UPDATE "public"."_prisma_migrations" SET "finished_at" = $1 WHERE "id" = $2',
            [timestamp_binary(), PRISMA_ID.encode()],
            [BINARY],
        ),
        [],
    ),
    # -- Flyway (pgjdbc: `?` become $n)
    "flyway versioned": (
        Shape(
            'INSERT INTO "public"."flyway_schema_history" ("installed_rank", "version", "description", "type", '
            '"script", "checksum", "installed_by", "execution_time", "success") '
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            [b"2", b"1.2", b"add users", b"SQL", b"V1_2__add_users.sql", b"-1424553337", b"app", b"12", b"1"],
        ),
        [W("flyway", "1.2", dirty=False)],
    ),
    "flyway repeatable (NULL version)": (
        Shape(
            'INSERT INTO "public"."flyway_schema_history" ("installed_rank", "version", "description", "type", '
            '"script", "checksum", "installed_by", "execution_time", "success") '
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            [
                struct.pack("!i", 3),
                None,
                b"views",
                b"SQL",
                b"R__views.sql",
                struct.pack("!i", 7),
                b"app",
                b"5",
                b"\x01",
            ],
            [BINARY, TEXT, TEXT, TEXT, TEXT, BINARY, TEXT, TEXT, BINARY],
            [23, 1043, 1043, 1043, 1043, 23, 1043, 23, 16],
        ),
        [W("flyway", "R__views.sql", dirty=False)],
    ),
    "flyway undo": (
        Shape(
            "INSERT INTO flyway_schema_history (installed_rank, version, description, type, script, checksum, "
            "installed_by, execution_time, success) "
            "VALUES (4, '1.2', 'add users', 'UNDO_SQL', 'U1_2__add_users.sql', 1, 'app', 3, true)"
        ),
        [W("flyway", "1.2", "revert", dirty=False)],
    ),
    # -- Liquibase (generated SQL, literals)
    "liquibase changeset": (
        Shape(
            "INSERT INTO public.databasechangelog (ID, AUTHOR, FILENAME, DATEEXECUTED, ORDEREXECUTED, MD5SUM, "
            "DESCRIPTION, COMMENTS, EXECTYPE, CONTEXTS, LABELS, LIQUIBASE, DEPLOYMENT_ID) VALUES "
            "('1', 'alice', 'db/changelog.xml', NOW(), 1, '9:0123456789abcdef', 'createTable tableName=person', "
            "'', 'EXECUTED', NULL, NULL, '4.29.2', '4512345678')"
        ),
        [W("liquibase", "db/changelog.xml::1::alice", dirty=False)],
    ),
    "liquibase rollback": (
        Shape(
            "DELETE FROM public.databasechangelog WHERE ID = '1' AND AUTHOR = 'alice' "
            "AND FILENAME = 'db/changelog.xml'"
        ),
        [W("liquibase", "db/changelog.xml::1::alice", "revert")],
    ),
    "liquibase rerun": (
        Shape(
            "UPDATE public.databasechangelog SET DATEEXECUTED = NOW(), DEPLOYMENT_ID = '4512345679', "
            "EXECTYPE = 'RERAN', MD5SUM = '9:fedcba', ORDEREXECUTED = 7 "
            "WHERE ID = '1' AND AUTHOR = 'alice' AND FILENAME = 'db/changelog.xml'"
        ),
        [W("liquibase", "db/changelog.xml::1::alice", dirty=False)],
    ),
    "liquibase checksum repair": (
        Shape(
            "UPDATE public.databasechangelog SET MD5SUM = '9:fedcba' "
            "WHERE ID = '1' AND AUTHOR = 'alice' AND FILENAME = 'db/changelog.xml'"
        ),
        [],
    ),
    # -- Sequelize (umzug SequelizeStorage)
    "sequelize apply": (
        Shape(
            'INSERT INTO "SequelizeMeta" ("name") VALUES ($1) RETURNING "name";',
            [b"20240501100000-create-user.js"],
        ),
        [W("sequelize", "20240501100000-create-user.js")],
    ),
    "sequelize revert": (
        Shape('DELETE FROM "SequelizeMeta" WHERE "name" = \'20240501100000-create-user.js\''),
        [W("sequelize", "20240501100000-create-user.js", "revert")],
    ),
    # -- TypeORM (query builder)
    "typeorm apply": (
        Shape(
            'INSERT INTO "migrations"("timestamp", "name") VALUES ($1, $2)',
            [b"1714557600000", b"CreateUsers1714557600000"],
        ),
        [W("typeorm", "CreateUsers1714557600000")],
    ),
    "typeorm revert": (
        Shape(
            'DELETE FROM "migrations" WHERE "timestamp" = $1 AND "name" = $2',
            [b"1714557600000", b"CreateUsers1714557600000"],
        ),
        [W("typeorm", "CreateUsers1714557600000", "revert")],
    ),
    # -- node-pg-migrate (simple protocol, inlined)
    "node-pg-migrate up": (
        Shape('INSERT INTO "public"."pgmigrations" (name, run_on) VALUES (\'1714557600000_init\', NOW());'),
        [W("node-pg-migrate", "1714557600000_init")],
    ),
    "node-pg-migrate down": (
        Shape('DELETE FROM "public"."pgmigrations" WHERE name=\'1714557600000_init\';'),
        [W("node-pg-migrate", "1714557600000_init", "revert")],
    ),
    # -- golang-migrate (lib/pq text, pgx binary)
    "golang-migrate truncate": (
        Shape('TRUNCATE "public"."schema_migrations"'),
        [W("rails|dbmate|ecto|golang-migrate", ALL_VERSIONS, "revert")],
    ),
    "golang-migrate set dirty (lib/pq)": (
        Shape('INSERT INTO "public"."schema_migrations" (version, dirty) VALUES ($1, $2)', [b"3", b"true"]),
        [W("golang-migrate", "3", dirty=True)],
    ),
    "golang-migrate set clean (pgx binary)": (
        Shape(
            'INSERT INTO "public"."schema_migrations" (version, dirty) VALUES ($1, $2)',
            [int8(3), b"\x00"],
            [BINARY, BINARY],
        ),
        [W("golang-migrate", "3", dirty=False)],
    ),
    "golang-migrate nil version, dirty": (
        Shape(
            'INSERT INTO "public"."schema_migrations" (version, dirty) VALUES ($1, $2)',
            [int8(-1), b"\x01"],
            [BINARY],
        ),
        [W("golang-migrate", "-1", dirty=True)],
    ),
    "golang-migrate in one text": (
        Shape(
            'TRUNCATE "public"."schema_migrations"; '
            'INSERT INTO "public"."schema_migrations" (version, dirty) VALUES (4, false)'
        ),
        [
            W("rails|dbmate|ecto|golang-migrate", ALL_VERSIONS, "revert"),
            W("golang-migrate", "4", dirty=False),
        ],
    ),
    # -- goose (pgx: binary int8 + bool)
    "goose up": (
        Shape(
            "INSERT INTO goose_db_version (version_id, is_applied) VALUES ($1, $2)",
            [int8(20240501100000), b"\x01"],
            [BINARY],
            [20, 16],
        ),
        [W("goose", "20240501100000")],
    ),
    "goose up, text": (
        Shape("INSERT INTO goose_db_version (version_id, is_applied) VALUES ($1, $2)", [b"7", b"t"]),
        [W("goose", "7")],
    ),
    "goose down (v3)": (
        Shape("DELETE FROM goose_db_version WHERE version_id=$1", [int8(20240501100000)], [BINARY]),
        [W("goose", "20240501100000", "revert")],
    ),
    "goose down (legacy row)": (
        Shape("INSERT INTO goose_db_version (version_id, is_applied) VALUES ($1, $2)", [b"7", b"false"]),
        [W("goose", "7", "revert")],
    ),
    # -- sqitch (DBD::Pg: `?` become $n; search_path is the registry schema)
    "sqitch deploy": (
        Shape(
            "INSERT INTO changes (change_id, script_hash, change, project, note, committer_name, "
            "committer_email, planned_at, planner_name, planner_email, committed_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, clock_timestamp())",
            [
                b"a3c1f0e2",
                b"5e884898",
                b"users",
                b"flipr",
                b"",
                b"Marge",
                b"m@example.com",
                b"2024-05-01",
                b"Marge",
                b"m@example.com",
            ],
        ),
        [W("sqitch", "a3c1f0e2")],
    ),
    "sqitch revert": (
        Shape("DELETE FROM sqitch.changes where change_id = $1", [b"a3c1f0e2"]),
        [W("sqitch", "a3c1f0e2", "revert")],
    ),
    # -- yoyo (psycopg2: inlined)
    "yoyo apply": (
        Shape(
            'INSERT INTO "_yoyo_migration" ("migration_hash", "migration_id", "applied_at_utc") '
            f"VALUES ('{HASH}', '20250706_01_sPVrY-create-users', '2025-07-06 12:00:00')"
        ),
        [W("yoyo", "20250706_01_sPVrY-create-users")],
    ),
    "yoyo rollback": (
        Shape(f'DELETE FROM "_yoyo_migration" WHERE "migration_hash" = \'{HASH}\''),
        [W("yoyo", HASH, "revert")],
    ),
}

LONE_TRUNCATES = {"golang-migrate truncate"}


@pytest.mark.parametrize("name", list(SHAPES))
def test_framework_shapes(name: str) -> None:
    shape, expected = SHAPES[name]
    assert shape.run() == expected


@pytest.mark.parametrize(
    "name", [n for n, (_, writes) in SHAPES.items() if writes and n not in LONE_TRUNCATES]
)
def test_prefilter_passes_every_recognised_shape(name: str) -> None:
    shape, _ = SHAPES[name]
    assert may_write_version(shape.sql.encode(), R.table_names)


def test_prefilter_passes_lone_truncate() -> None:
    # golang-migrate sends TRUNCATE as its own statement before the INSERT, and alone when it
    # migrates down to no version at all.
    assert may_write_version(b'TRUNCATE "public"."schema_migrations"', R.table_names)


def test_every_framework_has_a_default_table_and_a_shape() -> None:
    frameworks = {table.framework for table in DEFAULT_TABLES}
    assert len(frameworks) == 16
    seen = {w.framework for _, writes in SHAPES.values() for w in writes}
    assert frameworks <= {part for name in seen for part in name.split("|")}


def test_table_names_for_prefilter_are_lower_case_bare_names() -> None:
    assert b"sequelizemeta" in R.table_names
    assert b"schema_migrations" in R.table_names
    assert b"changes" in R.table_names
    assert all(name == name.lower() and b"." not in name for name in R.table_names)


# -- schema_migrations: catalog columns decide ---------------------------------------------


class catalog:
    """A `columns_of` lookup answering `columns` for every table, recording its calls."""

    def __init__(self, columns: frozenset[str] | None) -> None:
        self.columns = columns
        self.calls: list[tuple[str | None, str]] = []

    def __call__(self, schema: str | None, table: str) -> frozenset[str] | None:
        self.calls.append((schema, table))
        return self.columns


@pytest.mark.parametrize(
    ("columns", "framework"),
    [
        (frozenset({"version", "inserted_at"}), "ecto"),
        (frozenset({"version", "dirty"}), "golang-migrate"),
        (frozenset({"version"}), "rails|dbmate"),
        (frozenset({"version", "extra"}), "rails|dbmate"),
    ],
)
def test_catalog_columns_choose_the_framework(columns: frozenset[str], framework: str) -> None:
    lookup = catalog(columns)
    delete = Shape(
        'DELETE FROM "schema_migrations" AS s0 WHERE (s0."version" = $1::bigint)', [int8(5)], [BINARY]
    )
    assert delete.run(columns_of=lookup) == [W(framework, "5", "revert")]
    truncate = Shape('TRUNCATE "public"."schema_migrations"')
    assert truncate.run(columns_of=lookup) == [W(framework, ALL_VERSIONS, "revert")]
    assert lookup.calls == [(None, "schema_migrations"), ("public", "schema_migrations")]


def test_ecto_delete_decodes_binary_by_the_cast_on_the_placeholder() -> None:
    shape = Shape(
        'DELETE FROM "schema_migrations" AS s0 WHERE (s0."version" = $1::bigint)',
        [int8(20230905122033)],
        [BINARY],
        [0],
    )
    lookup = catalog(frozenset({"version", "inserted_at"}))
    assert shape.run(columns_of=lookup) == [W("ecto", "20230905122033", "revert")]


def test_unknown_table_in_catalog_falls_back_to_the_statement() -> None:
    shape, expected = SHAPES["golang-migrate set clean (pgx binary)"]
    assert shape.run(columns_of=catalog(None)) == expected


def test_catalog_rejects_another_tools_table_of_the_same_name() -> None:
    laravel = catalog(frozenset({"id", "migration", "batch"}))
    assert R.from_sql("INSERT INTO migrations (name) VALUES ('x')", columns_of=laravel) == []
    assert R.from_sql("DELETE FROM migrations WHERE name = 'x'", columns_of=laravel) == []
    typeorm = catalog(frozenset({"id", "timestamp", "name"}))
    assert R.from_sql("DELETE FROM migrations WHERE name = 'x'", columns_of=typeorm) == [
        W("typeorm", "x", "revert")
    ]


def test_insert_must_name_the_frameworks_columns() -> None:
    # Laravel's `migrations` table, an app's `changes`: not TypeORM's nor sqitch's.
    assert R.from_sql("insert into migrations (migration, batch) values ('2014_10_12_create_users', 1)") == []
    assert R.from_sql("INSERT INTO migrations (name) VALUES ('x')") == []
    assert R.from_sql("INSERT INTO changes (change_id, note) VALUES ('a', 'b')") == []


# -- table names -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "found"),
    [
        ("INSERT INTO \"SequelizeMeta\" (name) VALUES ('a')", True),
        ("INSERT INTO SequelizeMeta (name) VALUES ('a')", False),  # folds to sequelizemeta
        ("INSERT INTO \"sequelizemeta\" (name) VALUES ('a')", False),
        ("INSERT INTO ALEMBIC_VERSION (VERSION_NUM) VALUES ('a')", True),
        ("INSERT INTO \"ALEMBIC_VERSION\" (version_num) VALUES ('a')", False),
        ('INSERT INTO "public"."alembic_version" ("version_num") VALUES (\'a\')', True),
        ("INSERT INTO other.alembic_version (version_num) VALUES ('a')", True),  # schema free by default
        ("INSERT INTO public.changes (change_id, change, project) VALUES ('a', 'b', 'c')", False),
        ("INSERT INTO sqitch.changes (change_id, change, project) VALUES ('a', 'b', 'c')", True),
        ("INSERT INTO alembic_versions (version_num) VALUES ('a')", False),
    ],
)
def test_table_name_matching(sql: str, found: bool) -> None:
    assert bool(R.from_sql(sql)) is found


def test_override_renames_a_frameworks_table() -> None:
    recognizer = VersionRecognizer(overrides={"alembic": "meta.AppVersions", "sequelize": "migrations_meta"})
    assert recognizer.from_sql("INSERT INTO meta.\"AppVersions\" (version_num) VALUES ('a')") == [
        W("alembic", "a")
    ]
    assert recognizer.from_sql("INSERT INTO \"AppVersions\" (version_num) VALUES ('a')") == [
        W("alembic", "a")
    ]
    assert recognizer.from_sql("INSERT INTO other.\"AppVersions\" (version_num) VALUES ('a')") == []
    assert recognizer.from_sql("INSERT INTO alembic_version (version_num) VALUES ('a')") == []
    assert recognizer.from_sql("INSERT INTO migrations_meta (name) VALUES ('b')") == [W("sequelize", "b")]
    assert b"appversions" in recognizer.table_names
    assert b"alembic_version" not in recognizer.table_names


def test_override_settles_a_shared_table() -> None:
    recognizer = VersionRecognizer(overrides={"dbmate": "schema_migrations"})
    shape, _ = SHAPES["rails revert"]
    assert shape.run(recognizer) == [W("dbmate", "20240501100000", "revert")]
    ecto, _ = SHAPES["ecto apply, Parse declares int8"]
    assert ecto.run(recognizer) == [W("dbmate", "20230905122033")]  # dbmate's table by configuration


def test_override_with_quoted_dotted_schema() -> None:
    recognizer = VersionRecognizer(overrides={"knex": '"my.schema"."Knex"'})
    sql = 'insert into "my.schema"."Knex" ("batch", "migration_time", "name") values (1, now(), \'m1\')'
    assert recognizer.from_sql(sql) == [W("knex", "m1")]


@pytest.mark.parametrize("bad", ["a.b.c", "", ".t", 's."t', "s."])
def test_override_rejects_malformed_names(bad: str) -> None:
    with pytest.raises(ValueError):
        VersionRecognizer(overrides={"alembic": bad})


def test_override_rejects_unknown_framework() -> None:
    with pytest.raises(ValueError, match="unknown framework"):
        VersionRecognizer(overrides={"alembik": "x"})


def test_custom_table_list() -> None:
    custom = VersionTable("mytool", "ops", "applied", ("major", "minor"))
    recognizer = VersionRecognizer([custom])
    assert recognizer.from_sql("INSERT INTO ops.applied (major, minor) VALUES (1, 2)") == [
        W("mytool", "1::2")
    ]
    assert recognizer.from_sql("INSERT INTO alembic_version (version_num) VALUES ('a')") == []
    assert recognizer.table_names == frozenset({b"applied"})


# -- statement forms ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        # a version that is no literal or parameter: nothing
        ("INSERT INTO alembic_version (version_num) VALUES (md5('x'))", []),
        ("INSERT INTO alembic_version (version_num) SELECT 'a'", []),
        ("INSERT INTO alembic_version VALUES ('a')", []),
        ("INSERT INTO alembic_version (version_num) VALUES (NULL)", []),
        ("INSERT INTO alembic_version (version_num) VALUES (DEFAULT)", []),
        ("DELETE FROM alembic_version WHERE version_num <> 'a'", []),
        ("DELETE FROM alembic_version WHERE version_num = 'a' OR version_num = 'b'", []),
        ("DELETE FROM alembic_version", [W("alembic", ALL_VERSIONS, "revert")]),
        ("SELECT * FROM alembic_version", []),
        ("UPDATE alembic_version SET version_num = version_num || 'x'", []),
        # forms that do name versions
        (
            "DELETE FROM schema_migrations WHERE version IN ('1', '2')",
            [
                W("rails|dbmate|ecto|golang-migrate", "1", "revert"),
                W("rails|dbmate|ecto|golang-migrate", "2", "revert"),
            ],
        ),
        ("DELETE FROM alembic_version WHERE 'a' = version_num", [W("alembic", "a", "revert")]),
        ("UPDATE alembic_version SET (version_num) = ROW('c')", [W("alembic", "c")]),
        ("UPDATE alembic_version SET version_num = 'c'", [W("alembic", "c")]),
        (
            "UPDATE alembic_version SET version_num = 'c'::varchar(32)::text WHERE version_num = 'b'",
            [W("alembic", "c", previous="b")],
        ),
        (
            "WITH x AS (SELECT 1) INSERT INTO alembic_version (version_num) VALUES ('a') ON CONFLICT DO NOTHING",
            [W("alembic", "a")],
        ),
        (
            "BEGIN; CREATE TABLE t (a int); INSERT INTO alembic_version (version_num) VALUES ('a'); COMMIT",
            [W("alembic", "a")],
        ),
        (
            "INSERT INTO schema_migrations (version) VALUES (20240501100000)",
            [W("rails|dbmate", "20240501100000")],
        ),
        (
            "INSERT INTO schema_migrations (version, dirty) VALUES (0, 'f')",
            [W("golang-migrate", "0", dirty=False)],
        ),
        (
            "INSERT INTO alembic_version (version_num) VALUES (E'a\\\\b'), ($$c$$)",
            [W("alembic", "a\\b"), W("alembic", "c")],
        ),
        ("TRUNCATE alembic_version, other_table", [W("alembic", ALL_VERSIONS, "revert")]),
        ("INSERT INTO alembic_version (version_num) VALUES ('a')\0 garbage", [W("alembic", "a")]),
    ],
)
def test_statement_forms(sql: str, expected: list[VersionWrite]) -> None:
    assert R.from_sql(sql) == expected


def test_parameter_out_of_range_or_null_gives_nothing() -> None:
    sql = "INSERT INTO alembic_version (version_num) VALUES ($2)"
    assert R.from_statement(sql, [b"a"], [], []) == []
    assert R.from_statement("INSERT INTO alembic_version (version_num) VALUES ($1)", [None], [], []) == []
    assert R.from_sql("INSERT INTO alembic_version (version_num) VALUES ($1)") == []


def test_extended_protocol_without_parameters_reads_literals() -> None:
    # pgjdbc sends Liquibase's generated statements as Parse/Bind without parameters.
    shape, expected = SHAPES["liquibase changeset"]
    assert R.from_statement(shape.sql, [], [], []) == expected


def test_per_parameter_formats() -> None:
    sql = "INSERT INTO goose_db_version (version_id, is_applied) VALUES ($1, $2)"
    assert R.from_statement(sql, [int8(12), b"true"], [BINARY, TEXT], []) == [W("goose", "12")]
    assert R.from_statement(sql, [b"12", b"\x00"], [TEXT, BINARY], []) == [W("goose", "12", "revert")]


# -- binary decoding -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "oid", "text"),
    [
        (int8(20230905122033), 20, "20230905122033"),
        (int8(-1), 20, "-1"),
        (struct.pack("!i", -7), 23, "-7"),
        (struct.pack("!h", 300), 21, "300"),
        (b"\x01", 16, "true"),
        (b"\x00", 16, "false"),
        (b"abc", 25, "abc"),
        (b"abc", 1043, "abc"),
        (b"ab ", 1042, "ab "),
        (uuid.UUID(PRISMA_ID).bytes, 2950, PRISMA_ID),
        (int8(0), 1114, "2000-01-01T00:00:00"),
        (int8(2**63 - 1), 1184, "infinity"),
        (int8(-(2**63)), 1184, "-infinity"),
        # no type known: by shape
        (int8(20230905122033), 0, "20230905122033"),
        (struct.pack("!i", 5), 0, "5"),
        (b"\x01", 0, "true"),
        (b"20230905", 0, "20230905"),  # printable: text, though 8 bytes long
        (uuid.UUID(PRISMA_ID).bytes, 0, PRISMA_ID),
        (b"\xff\xfe\xfd", 0, "\ufffd\ufffd\ufffd"),
        # wrong length for the declared type: by shape
        (b"12", 20, "12"),
        (b"\x00\x01\x02", 16, "\x00\x01\x02"),
    ],
)
def test_decode_binary(data: bytes, oid: int, text: str) -> None:
    assert decode_binary(data, oid) == text


def bind_body(
    portal: bytes,
    statement: bytes,
    formats: Sequence[int],
    params: Sequence[bytes | None],
    results: Sequence[int],
) -> bytes:
    body = portal + b"\0" + statement + b"\0" + struct.pack("!h", len(formats))
    body += b"".join(struct.pack("!h", f) for f in formats)
    body += struct.pack("!h", len(params))
    for param in params:
        body += struct.pack("!i", -1) if param is None else struct.pack("!i", len(param)) + param
    body += struct.pack("!h", len(results)) + b"".join(struct.pack("!h", f) for f in results)
    return body


def test_decode_bind() -> None:
    body = bind_body(b"p", b"s1", [1, 0], [int8(3), None, b""], [1])
    assert decode_bind(body) == Bind(b"p", b"s1", (1, 0), [int8(3), None, b""], (1,))
    assert decode_bind(memoryview(bind_body(b"", b"", [], [], []))) == Bind(b"", b"", (), [], ())


@pytest.mark.parametrize("cut", [1, 5, 9, 14, 20])
def test_decode_bind_rejects_truncated_bodies(cut: int) -> None:
    body = bind_body(b"p", b"s1", [1], [int8(3)], [0])
    with pytest.raises(ProtocolError):
        decode_bind(body[:cut])


def test_bind_feeds_from_statement() -> None:
    bind = decode_bind(bind_body(b"", b"", [1], [int8(20230905122033), timestamp_binary()], []))
    sql = 'INSERT INTO "schema_migrations" ("version","inserted_at") VALUES ($1,$2)'
    assert R.from_statement(sql, bind.params, bind.param_formats, [20, 0]) == [W("ecto", "20230905122033")]


# -- ordering ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("framework", "older", "newer"),
    [
        ("flyway", "1.9", "1.10"),
        ("flyway", "1.2", "1.2.1"),
        ("flyway", "2", "10"),
        ("flyway", "9.9.9", "R__views.sql"),  # repeatable scripts after every version
        ("ecto", "20230904162657", "20230905122033"),
        ("ecto", "9", "10"),
        ("golang-migrate", "-1", "1"),
        ("golang-migrate", "99", "100"),
        ("goose", "9", "20240501100000"),
        ("rails", "9", "20240501100000"),
        ("dbmate", "20151129054053", "20151129054054"),
        ("rails|dbmate", "9", "10"),
        ("rails|dbmate|ecto|golang-migrate", "9", "10"),
        ("django", "shop.0002_b", "shop.0010_a"),
        ("django", "auth.0012_x", "shop.0001_initial"),  # by app first
        ("knex", "9_x.js", "10_a.js"),
        ("knex", "20240501100000_b.js", "20240501100001_a.js"),
        ("sequelize", "20240501100000-z.js", "20240601100000-a.js"),
        ("prisma", "20240501100000_init", "20240601100000_add"),
        ("yoyo", "0009.a", "0010.b"),
        ("typeorm", "Zebra1714557600000", "Apple1714557600001"),
        ("node-pg-migrate", "1714557600000_b", "1714557600001_a"),
        ("node-pg-migrate", "1714557600000_x", "20240502000000000_y"),  # UTC vs epoch-ms prefixes
        ("node-pg-migrate", "20240430000000000_y", "1714557600000_x"),
        ("unknown-tool", "9_a", "10_a"),
    ],
)
def test_sort_key_orders_as_the_framework(framework: str, older: str, newer: str) -> None:
    assert version_sort_key(framework, older) < version_sort_key(framework, newer)


@pytest.mark.parametrize(
    ("framework", "a", "b"),
    [
        ("flyway", "1.0", "1"),
        ("alembic", "ffff", "0000"),
        ("liquibase", "a::1::x", "b::2::y"),
        ("sqitch", "a3c1", "0bb2"),
    ],
)
def test_sort_key_ties(framework: str, a: str, b: str) -> None:
    assert version_sort_key(framework, a) == version_sort_key(framework, b)


def test_sort_keys_compare_mixed_shapes_without_raising() -> None:
    for framework in [t.framework for t in DEFAULT_TABLES] + ["unknown", "rails|dbmate"]:
        versions = [
            "10",
            "9",
            "1.2",
            "abc",
            "",
            "0001_x",
            "x.0001_y",
            "-3",
            "R__a.sql",
            "A123",
            "\uff11\uff12",
        ]
        sorted(versions, key=lambda v, f=framework: version_sort_key(f, v))  # type: ignore[misc]


# -- robustness ----------------------------------------------------------------------------

_FRAGMENTS = [
    "INSERT INTO",
    "UPDATE",
    "DELETE FROM",
    "TRUNCATE",
    "SET",
    "WHERE",
    "VALUES",
    "AND",
    "IN",
    "=",
    "(",
    ")",
    ",",
    ";",
    "$1",
    "$2",
    "$0",
    "$99",
    "::bigint",
    "'x'",
    "NULL",
    "true",
    "1",
    "-9223372036854775808",
    "1e400",
    '"',
    "alembic_version",
    "schema_migrations",
    '"SequelizeMeta"',
    "public.",
    "version",
    "version_num",
    "dirty",
    "inserted_at",
    "name",
    "RETURNING",
    "ROW",
    "DEFAULT",
]


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_random_text_never_raises(sql: str) -> None:
    assert isinstance(R.from_sql(sql), list)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.sampled_from(_FRAGMENTS), max_size=25).map(" ".join),
    st.lists(st.one_of(st.none(), st.binary(max_size=20)), max_size=4),
    st.lists(st.integers(-2, 3), max_size=4),
    st.lists(st.sampled_from([0, 16, 20, 21, 23, 25, 1043, 1042, 2950, 1114, 1184, 1700, 99999]), max_size=4),
)
def test_sql_shaped_noise_never_raises(
    sql: str, params: list[bytes | None], formats: list[int], types: list[int]
) -> None:
    lookup = catalog(frozenset({"version"}))
    assert isinstance(R.from_statement(sql, params, formats, types), list)
    assert isinstance(R.from_statement(sql, params, formats, types, columns_of=lookup), list)
    assert isinstance(R.from_sql(sql), list)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40), st.integers(0, 5000))
def test_decode_binary_never_raises(data: bytes, oid: int) -> None:
    assert isinstance(decode_binary(data, oid), str)


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO alembic_version (version_num) VALUES (" + "(" * 5000 + "'a'" + ")" * 5000 + ")",
        "DELETE FROM alembic_version WHERE "
        + " AND ".join(f"(version_num = '{i}'" for i in range(500))
        + ")" * 500,
        "INSERT INTO alembic_version (version_num) VALUES ('a'" + "::text" * 3000 + ")",
        "INSERT INTO alembic_version (version_num) VALUES ('\udcff')",
    ],
)
def test_pathological_inputs(sql: str) -> None:
    assert isinstance(R.from_sql(sql), list)
