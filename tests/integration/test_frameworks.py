"""Real migration frameworks through the proxy: their migrations run as they do directly, and the
history records their versions and statements. A failed upgrade leaves no record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic import command
from alembic.config import Config

from proxy.cli import main as cli_main
from proxy.embedded import EmbeddedPostgres
from tests.pgfixtures import ALICE_PASSWORD
from tests.proxyfixtures import RunningProxy

ALEMBIC_ENV = """
from alembic import context
from sqlalchemy import engine_from_config, pool

config = context.config
engine = engine_from_config(config.get_section(config.config_ini_section), prefix="sqlalchemy.", poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=None, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
"""

ALEMBIC_VERSIONS = {
    "aaa111_items.py": """
revision = "aaa111"
down_revision = None
from alembic import op
import sqlalchemy as sa

def upgrade():
    op.create_table("alembic_items", sa.Column("id", sa.Uuid, primary_key=True), sa.Column("name", sa.Text))
    op.execute("ALTER TABLE alembic_items ENABLE ELECTRIC")

def downgrade():
    op.execute("ALTER TABLE alembic_items DISABLE ELECTRIC")
    op.drop_table("alembic_items")
""",
    "bbb222_index.py": """
revision = "bbb222"
down_revision = "aaa111"
from alembic import op

def upgrade():
    op.create_index("alembic_items_name", "alembic_items", ["name"])

def downgrade():
    op.drop_index("alembic_items_name", table_name="alembic_items")
""",
    "ccc333_bad.py": """
revision = "ccc333"
down_revision = "bbb222"
from alembic import op

def upgrade():
    op.create_table("alembic_side", __import__("sqlalchemy").Column("id", __import__("sqlalchemy").Integer))
    op.drop_column("alembic_items", "name")  # refused: the table is electrified

def downgrade():
    pass
""",
}


def history(direct: psycopg.Connection) -> list[tuple[str, str | None, list[str]]]:
    rows = direct.execute(
        "SELECT m.version, m.framework, array_agg(s.tag ORDER BY s.seq) FILTER (WHERE s.tag IS NOT NULL) "
        "FROM electric.migrations m LEFT JOIN electric.migration_statements s ON s.migration_id = m.id "
        "GROUP BY m.id ORDER BY m.id"
    ).fetchall()
    return [(r[0], r[1], r[2] or []) for r in rows]


@pytest.fixture
def direct(pg: EmbeddedPostgres) -> psycopg.Connection:
    conn = psycopg.connect(pg.url("app", user="alice", password=ALICE_PASSWORD), autocommit=True)
    yield conn  # type: ignore[misc]
    conn.close()


def alembic_config(tmp_path: Path, url: str) -> Config:
    (tmp_path / "versions").mkdir()
    (tmp_path / "env.py").write_text(ALEMBIC_ENV)
    for name, body in ALEMBIC_VERSIONS.items():
        (tmp_path / "versions" / name).write_text(textwrap.dedent(body))
    cfg = Config()
    cfg.set_main_option("script_location", str(tmp_path))
    cfg.set_main_option("sqlalchemy.url", url)
    return cfg


def test_alembic_upgrade_downgrade_and_failed_upgrade(
    proxy: RunningProxy, direct: psycopg.Connection, tmp_path: Path
) -> None:
    url = f"postgresql+psycopg://alice:{ALICE_PASSWORD}@{proxy.host}:{proxy.port}/app?sslmode=disable"
    cfg = alembic_config(tmp_path, url)
    before = len(history(direct))
    command.upgrade(cfg, "bbb222")
    assert direct.execute("SELECT version_num FROM alembic_version").fetchone() == ("bbb222",)
    recorded = history(direct)[before:]
    assert [(v, f) for v, f, _ in recorded] == [("aaa111", "alembic"), ("bbb222", "alembic")]
    assert "CREATE TABLE" in recorded[0][2] and "ELECTRIC ENABLE" in recorded[0][2]
    assert recorded[1][2] == ["CREATE INDEX"]

    # a failing upgrade: the guard refuses it, nothing of it is applied or recorded
    with pytest.raises(Exception, match="Cannot drop column"):
        command.upgrade(cfg, "ccc333")
    assert direct.execute("SELECT version_num FROM alembic_version").fetchone() == ("bbb222",)
    assert direct.execute("SELECT to_regclass('alembic_side')").fetchone() == (None,)
    assert len(history(direct)) == before + 2

    command.downgrade(cfg, "aaa111")
    assert direct.execute("SELECT version_num FROM alembic_version").fetchone() == ("aaa111",)
    last = history(direct)[-1]
    assert last[0] == "aaa111" and last[2] == ["DROP INDEX"]


DJANGO_SETTINGS = """
SECRET_KEY = "test"
USE_TZ = True
INSTALLED_APPS = ["shop"]
DATABASES = {{"default": {{
    "ENGINE": "django.db.backends.postgresql", "NAME": "app", "USER": "alice", "PASSWORD": "{password}",
    "HOST": "127.0.0.1", "PORT": {port}, "OPTIONS": {{"sslmode": "disable"}},
}}}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
"""

DJANGO_MIGRATIONS = {
    "0001_initial.py": """
from django.db import migrations, models

class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel("Item", [("id", models.UUIDField(primary_key=True)), ("name", models.TextField())]),
        migrations.CreateModel("Note", [("id", models.UUIDField(primary_key=True)), ("body", models.TextField())]),
    ]
""",
    "0002_electrify.py": """
from django.db import migrations

class Migration(migrations.Migration):
    dependencies = [("shop", "0001_initial")]
    operations = [migrations.RunSQL("ALTER TABLE shop_item ENABLE ELECTRIC", "ALTER TABLE shop_item DISABLE ELECTRIC")]
""",
    "0003_note_extra.py": """
from django.db import migrations, models

class Migration(migrations.Migration):
    dependencies = [("shop", "0002_electrify")]
    operations = [migrations.AddField("Note", "extra", models.TextField(null=True))]
""",
    "0004_bad.py": """
from django.db import migrations

class Migration(migrations.Migration):
    dependencies = [("shop", "0003_note_extra")]
    operations = [migrations.RunSQL("CREATE TABLE shop_side (id int); ALTER TABLE shop_item DROP COLUMN name")]
""",
}


def django_migrate(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    code = (
        "import django; django.setup(); from django.core.management import call_command; "
        f"call_command('migrate', {', '.join(repr(a) for a in args)}, verbosity=0)"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "settings", "PYTHONPATH": str(project)}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_django_migrate_forwards_backwards_and_failing(
    proxy: RunningProxy, direct: psycopg.Connection, tmp_path: Path
) -> None:
    (tmp_path / "settings.py").write_text(DJANGO_SETTINGS.format(password=ALICE_PASSWORD, port=proxy.port))
    migrations = tmp_path / "shop" / "migrations"
    migrations.mkdir(parents=True)
    (tmp_path / "shop" / "__init__.py").write_text("")
    (tmp_path / "shop" / "models.py").write_text("")
    (migrations / "__init__.py").write_text("")
    for name, body in DJANGO_MIGRATIONS.items():
        if name != "0004_bad.py":
            (migrations / name).write_text(body)
    before = len(history(direct))
    done = django_migrate(tmp_path, "shop")
    assert done.returncode == 0, done.stderr
    recorded = history(direct)[before:]
    versions = [v for v, f, _ in recorded if f == "django"]
    assert versions == ["shop.0001_initial", "shop.0002_electrify", "shop.0003_note_extra"]
    assert direct.execute(
        "SELECT count(*) FROM electric.electrified WHERE table_name = 'shop_item'"
    ).fetchone() == (1,)

    # backwards: 0003 is unapplied (a plain table, so the guard lets it through) and recorded
    back = django_migrate(tmp_path, "shop", "0002")
    assert back.returncode == 0, back.stderr
    # Django runs the backwards DDL in a transaction and deletes its row after it, outside it:
    # the late note still labels the migration that just committed.
    unapplied = history(direct)[-1]
    assert unapplied == ("shop.0003_note_extra (reverted)", "django", ["ALTER TABLE"])
    assert direct.execute(
        "SELECT count(*) FROM django_migrations WHERE name = '0003_note_extra'"
    ).fetchone() == (0,)
    forward = django_migrate(tmp_path, "shop")
    assert forward.returncode == 0, forward.stderr
    recorded = history(direct)[before:]

    (migrations / "0004_bad.py").write_text(DJANGO_MIGRATIONS["0004_bad.py"])
    failed = django_migrate(tmp_path, "shop")
    assert failed.returncode != 0 and "Cannot drop column" in failed.stderr
    assert direct.execute("SELECT to_regclass('shop_side')").fetchone() == (None,)
    assert len(history(direct)) == before + len(recorded)
    assert direct.execute("SELECT count(*) FROM django_migrations WHERE name = '0004_bad'").fetchone() == (0,)


# -- several versions in one transaction: one entry each, with its own statements and definitions

# Alembic's default: every pending revision in one transaction. Its version table in a schema of
# its own, so that the other Alembic test's history is not in the way.
ALEMBIC_DEFAULT_ENV = ALEMBIC_ENV.replace(
    ", transaction_per_migration=True", ', version_table_schema="stock_versions"'
)
ALEMBIC_ONE_TRANSACTION = {
    "d1_stock.py": """
revision = "d1stock"
down_revision = None
from alembic import op
import sqlalchemy as sa

def upgrade():
    op.create_table("alembic_stock", sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.Text))
""",
    "d2_price.py": """
revision = "d2price"
down_revision = "d1stock"
from alembic import op
import sqlalchemy as sa

def upgrade():
    op.add_column("alembic_stock", sa.Column("price", sa.Numeric(10, 2), nullable=False, server_default="0"))
""",
}


def cli_json(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> Any:
    assert cli_main([*argv, "--json", "--upstream", url]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return json.loads(out)


@pytest.mark.usefixtures("no_config_env")
def test_alembic_two_revisions_in_one_transaction_are_two_entries(
    proxy: RunningProxy,
    pg: EmbeddedPostgres,
    direct: psycopg.Connection,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "versions").mkdir()
    (tmp_path / "env.py").write_text(ALEMBIC_DEFAULT_ENV)
    for name, body in ALEMBIC_ONE_TRANSACTION.items():
        (tmp_path / "versions" / name).write_text(textwrap.dedent(body))
    cfg = Config()
    cfg.set_main_option("script_location", str(tmp_path))
    url = f"postgresql+psycopg://alice:{ALICE_PASSWORD}@{proxy.host}:{proxy.port}/app?sslmode=disable"
    cfg.set_main_option("sqlalchemy.url", url)
    direct.execute("CREATE SCHEMA IF NOT EXISTS stock_versions")
    before = len(history(direct))

    command.upgrade(cfg, "head")

    recorded = history(direct)[before:]
    # One entry per revision; Alembic creates its version table in the first one's transaction,
    # before its DDL, so the first entry holds that too.
    assert [(v, f, tags) for v, f, tags in recorded] == [
        ("d1stock", "alembic", ["CREATE TABLE", "CREATE TABLE"]),
        ("d2price", "alembic", ["ALTER TABLE"]),
    ]
    upstream = pg.url("app", user="alice", password=ALICE_PASSWORD)
    first = cli_json(capsys, upstream, "schema", "--at", "d1stock")
    (stock,) = [o for o in first["objects"] if o["name"] == "alembic_stock"]
    assert [c["name"] for c in stock["definition"]["columns"]] == ["id", "name"]  # as after d1 alone

    shown = cli_json(capsys, upstream, "show", "d2price")
    assert [s["sql"].split("(")[0].strip() for s in shown["statements"]] == [
        "ALTER TABLE alembic_stock ADD COLUMN price NUMERIC"
    ]
    (touched,) = shown["objects"]
    price = touched["definition"]["columns"][-1]
    assert (price["name"], price["type"], price["not_null"], price["default"]) == (
        "price",
        "numeric(10,2)",
        True,
        "'0'::numeric",
    )

    assert cli_main(["schema", "--diff", "d1stock", "d2price", "--upstream", upstream]) == 0
    out = capsys.readouterr().out
    assert (
        "~ table public.alembic_stock\n    column added: price numeric(10,2) DEFAULT '0'::numeric NOT NULL\n"
        in out
    )


DEPOT_INITIAL = """
from django.db import migrations, models

class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel("Crate", [
            ("id", models.BigAutoField(primary_key=True)),
            ("label", models.CharField(max_length=40)),
            ("qty", models.IntegerField(default=0)),
        ]),
        migrations.AddIndex("crate", models.Index(fields=["label"], name="depot_crate_label")),
        migrations.AddConstraint(
            "crate", models.CheckConstraint(condition=models.Q(qty__gte=0), name="depot_crate_qty_nonneg")
        ),
    ]
"""


@pytest.mark.usefixtures("no_config_env")
def test_django_migration_with_an_index_and_a_constraint_shows_its_definitions(
    proxy: RunningProxy, pg: EmbeddedPostgres, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = DJANGO_SETTINGS.format(password=ALICE_PASSWORD, port=proxy.port)
    (tmp_path / "settings.py").write_text(settings.replace('["shop"]', '["depot"]'))
    migrations = tmp_path / "depot" / "migrations"
    migrations.mkdir(parents=True)
    for path in (
        tmp_path / "depot" / "__init__.py",
        tmp_path / "depot" / "models.py",
        migrations / "__init__.py",
    ):
        path.write_text("")
    (migrations / "0001_initial.py").write_text(DEPOT_INITIAL)

    done = django_migrate(tmp_path, "depot")
    assert done.returncode == 0, done.stderr

    upstream = pg.url("app", user="alice", password=ALICE_PASSWORD)
    assert cli_main(["show", "depot.0001_initial", "--upstream", upstream]) == 0
    out = capsys.readouterr().out
    assert "  table public.depot_crate\n    CREATE TABLE public.depot_crate (\n" in out
    assert "        id bigint GENERATED BY DEFAULT AS IDENTITY NOT NULL,\n" in out
    assert "        label character varying(40) NOT NULL,\n" in out
    assert "        CONSTRAINT depot_crate_qty_nonneg CHECK ((qty >= 0))" in out
    assert "  index public.depot_crate_label\n    CREATE INDEX depot_crate_label ON public.depot_crate" in out
