"""The console over HTTP, after scripted migrations through the proxy (tests/integration/consolefixtures.py)."""

from __future__ import annotations

import base64
import html
import json
import re
import time
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path

import psycopg
import pytest

from proxy.catalog.install import install_sync
from proxy.catalog.render import qualified
from proxy.cli import main
from proxy.embedded import EmbeddedPostgres
from tests.integration.consolefixtures import (
    HOSTILE_COMMENT,
    HOSTILE_DEFAULT,
    HOSTILE_TABLE,
    SECRET,
    Served,
    console_db_fixture,  # noqa: F401  (fixtures, by their names)
    console_fixture,  # noqa: F401
    scripted_fixture,  # noqa: F401
    serve_fixture,  # noqa: F401
)
from tests.pgfixtures import ALICE_PASSWORD


class Page(HTMLParser):
    def __init__(self, body: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.chunks: list[str] = []
        self.feed(body)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.chunks.append(data)

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    def hrefs(self) -> list[str]:
        return [str(a.get("href")) for t, a in self.tags if t in ("a", "link") and a.get("href")]


def timeline_rows(body: str) -> list[tuple[int, str]]:
    """(id, version) of each row of the timeline table."""
    rows = re.findall(
        r'<tr data-id="(\d+)"><td><a [^>]*>\d+</a></td><td class="version"><a [^>]*>(.*?)</a>', body
    )
    return [(int(i), Page(v).text) for i, v in rows]


def test_timeline_shows_the_migrations_newest_first_as_history_json_does(
    console: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    status, headers, body = console.get("/console/")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    rows = timeline_rows(body)
    assert [i for i, _ in rows] == [6, 5, 4, 3, 2, 1]
    assert main(["history", "--json", "--upstream", console.config.upstream.url]) == 0
    history = json.loads(capsys.readouterr().out)
    assert rows == [(m["id"], m["version"]) for m in reversed(history)]  # the CLI's data, newest first
    assert [v for _, v in rows] == ["2", "c-hostile", "c3a1b2", "c-alembic-table", "c-v2", "c-v1"]
    text = Page(body).text
    assert "6 migration(s), newest first" in text and "console-test" in text
    assert ALICE_PASSWORD not in body


def test_timeline_filters(console: Served) -> None:
    assert timeline_rows(console.get("/console/?user=nobody")[2]) == []
    assert "No migrations recorded match these filters." in Page(console.get("/console/?user=nobody")[2]).text
    assert len(timeline_rows(console.get("/console/?user=alice")[2])) == 6
    assert timeline_rows(console.get("/console/?since=2999-01-01")[2]) == []
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert len(timeline_rows(console.get(f"/console/?since={today}&until={today}")[2])) == 6
    assert [v for _, v in timeline_rows(console.get("/console/?framework=alembic")[2])] == ["c3a1b2"]
    without = [v for _, v in timeline_rows(console.get("/console/?framework=-")[2])]
    assert without == ["2", "c-hostile", "c-alembic-table", "c-v2", "c-v1"]
    paged = console.get("/console/?per_page=4&page=2")[2]
    assert [i for i, _ in timeline_rows(paged)] == [2, 1] and "page 2 of 2" in Page(paged).text


def test_migration_page_shows_its_statements_and_definitions(console: Served) -> None:
    status, _, body = console.get("/console/migrations/1")
    assert status == 200
    page = Page(body)
    assert "Migration 1" in page.text and "c-v1" in page.text
    assert "CREATE TABLE items (id int8 PRIMARY KEY, name text NOT NULL)" in page.text
    assert "CREATE INDEX items_name ON items (name)" in page.text
    assert "COMMENT ON TABLE items IS 'copied from postgresql://etl:****@old-db/shop'" in page.text
    assert SECRET not in body
    objects = re.findall(r'<section class="object" data-name="([^"]+)">', body)
    assert objects == ["public.items", "public.items_name"]
    assert "CREATE TABLE public.items (\n    id bigint NOT NULL,\n    name text NOT NULL," in page.text


def test_a_migration_is_found_by_id_when_another_has_that_id_as_version(console: Served) -> None:
    assert "c-v2" in Page(console.get("/console/migrations/2")[2]).text
    assert "CREATE TABLE notes" in Page(console.get("/console/migrations/6")[2]).text
    status, _, body = console.get("/console/migrations/999")
    assert status == 404 and "No migration has id 999." in Page(body).text


def test_hostile_migration_text_is_shown_as_text(console: Served) -> None:
    status, _, body = console.get("/console/migrations/5")
    assert status == 200
    page = Page(body)
    names = [t for t, _ in page.tags]
    assert "script" not in names and "img" not in names and "textarea" not in names and "b" not in names
    assert not any(key.startswith("on") for _, attrs in page.tags for key in attrs)
    assert HOSTILE_TABLE in page.text and HOSTILE_COMMENT in page.text
    assert HOSTILE_DEFAULT.replace("'", "''") in page.text
    for path in (
        "/console/",
        "/console/schema",
        "/console/schema?at=c-hostile",
        f"/console/?user={HOSTILE_TABLE}",
    ):
        other = Page(console.get(path)[2])
        assert "script" not in [t for t, _ in other.tags], path


def test_schema_page_shows_the_schema_and_the_electrified_tables(console: Served) -> None:
    status, _, body = console.get("/console/schema")
    assert status == 200
    page = Page(body)
    assert "As of migration 6 (version 2), the latest" in page.text
    found = re.findall(r'<section class="([^"]+)" data-name="([^"]+)">', body)
    sections = {html.unescape(name): kind for kind, name in found}
    assert sections["public.items"] == "object electrified" and sections["public.notes"] == "object"
    assert f"public.{HOSTILE_TABLE}" in sections  # an attribute value, escaped
    assert "price bigint" in page.text and "sneaky" not in page.text  # recorded, not live
    electrified = re.search(r'<table id="electrified">.*?</table>', body)
    assert electrified is not None and "public.items" in Page(electrified.group(0)).text
    assert "c-v2" in Page(electrified.group(0)).text
    older = Page(console.get("/console/schema?at=c-v1")[2])
    assert "As of migration 1 (version c-v1):" in older.text and "price" not in older.text
    status, _, missing = console.get("/console/schema?at=no-such-version")
    assert status == 404 and "no migration with version or id 'no-such-version'" in Page(missing).text


def test_diff_page_is_schema_diff(console: Served, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, body = console.get("/console/schema?from=c-v1&to=2")
    assert status == 200
    page = Page(body)
    assert "From migration 1 (c-v1) to 6 (2)" in page.text
    changes = re.findall(
        r'<li class="(added|modified|removed)"><div><span class="sign">.</span> <span class="kind">(\w+)</span> <code>(.*?)</code>',
        body,
    )
    assert main(["schema", "--diff", "c-v1", "2", "--json", "--upstream", console.config.upstream.url]) == 0
    cli = json.loads(capsys.readouterr().out)["changes"]
    assert [(c, k, Page(i).text) for c, k, i in changes] == [
        (c["change"], c["kind"], qualified(c["schema"], c["name"])) for c in cli
    ]
    assert "column added: price bigint" in page.text


def test_drift_page_shows_open_drift_by_severity_and_who_accepted(
    console: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, body = console.get("/console/drift")
    assert status == 200
    page = Page(body)
    assert "Drift: 1 open" in page.text
    assert re.findall(r'<h2 class="severity (\w+)">', body) == ["critical"]
    opened = re.search(r'<table class="drift critical">.*?</tbody></table>', body)
    assert opened is not None
    row = Page(opened.group(0)).text
    assert "public.items.sneaky" in row and "electrified" in row and "column" in row and "added" in row
    assert "found by a scan" in row
    actual = re.findall(r'<td class="actual"><code>(.*?)</code>', opened.group(0))
    assert "sneaky" in actual and "text" in actual
    accepted = re.search(r'<table id="accepted">.*?</table>', body)
    assert accepted is not None and "public.scratch" in Page(accepted.group(0)).text
    assert "carol" in Page(accepted.group(0)).text
    # The same drift as the CLI reports.
    assert main(["drift", "--json", "--upstream", console.config.upstream.url]) == 2
    report = json.loads(capsys.readouterr().out)
    assert [o["identity"] for o in report["objects"]] == ["public.items.sneaky"]


def test_links_follow_the_reverse_proxy_prefix(console: Served, serve: Callable[..., Served]) -> None:
    body = console.get("/console/", {"X-Forwarded-Prefix": "/ops/db-proxy/"})[2]
    hrefs = Page(body).hrefs()
    assert hrefs and all(h.startswith("/ops/db-proxy/console/") for h in hrefs), hrefs
    # Not a plain path: ignored rather than echoed into the links.
    hostile = console.get("/console/", {"X-Forwarded-Prefix": '/x"><script>alert(1)</script>'})[2]
    assert all(h.startswith("/console/") for h in Page(hostile).hrefs())
    configured = serve(console.config.upstream.url, **{"console.path_prefix": "/fixed"})
    hrefs = Page(configured.get("/console/drift", {"X-Forwarded-Prefix": "/other"})[2]).hrefs()
    assert hrefs and all(h.startswith("/fixed/console/") for h in hrefs)


def test_health_strip(console: Served) -> None:
    strip = re.search(r'<ul class="health" id="health">.*?</ul>', console.get("/console/")[2])
    assert strip is not None
    text = Page(strip.group(0)).text
    assert "console_t: reachable" in text
    assert re.search(r"catalog version \d+ \(this proxy installs \d+\)", text)
    assert "event triggers" in text and "drift mode detect" in text  # from the catalog's drift settings
    assert re.search(r"proxy instances [^ ]+:\d+", text), text  # the proxy that recorded the migrations


def test_basic_auth_with_a_password_file(
    console: Served, serve: Callable[..., Served], tmp_path: Path
) -> None:
    secret = tmp_path / "console-password"
    secret.write_text("open sesame\n")
    env = {"ELECTRIC_PROXY_CONSOLE_USER": "ops", "ELECTRIC_PROXY_CONSOLE_PASSWORD_FILE": str(secret)}
    guarded = serve(console.config.upstream.url, env)
    status, headers, _ = guarded.get("/console/")
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
    token = base64.b64encode(b"ops:open sesame").decode()
    status, _, body = guarded.get("/console/", {"Authorization": f"Basic {token}"})
    assert status == 200 and len(timeline_rows(body)) == 6
    assert "open sesame" not in body
    assert guarded.get("/metrics")[0] == 200


def test_off_unless_loopback_or_forced(console: Served, serve: Callable[..., Served]) -> None:
    url = console.config.upstream.url
    assert serve(url, **{"metrics.address": "0.0.0.0"}).get("/console/")[0] == 404
    forced = serve(url, **{"metrics.address": "0.0.0.0", "console.enabled": "true"})
    assert forced.get("/console/")[0] == 200
    assert serve(url, **{"console.enabled": "false"}).get("/console/")[0] == 404


def test_unreachable_upstream_and_missing_catalog(
    serve: Callable[..., Served], pg: EmbeddedPostgres, console_db: str
) -> None:
    del console_db
    refused = f"postgresql://alice:{ALICE_PASSWORD}@127.0.0.1:1/console_t?sslmode=disable"
    status, _, body = serve(refused, **{"upstream.connect_timeout_ms": 1000}).get("/console/")
    assert status == 503 and "127.0.0.1:1/console_t: unreachable" in Page(body).text
    assert ALICE_PASSWORD not in body
    bare = pg.url("app", user="alice", password=ALICE_PASSWORD)
    with psycopg.connect(bare, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS console_nohist CASCADE")
    status, _, body = serve(bare, **{"catalog.schema": "console_nohist"}).get("/console/")
    assert status == 503 and "has no migration history" in Page(body).text


# -- scale -----------------------------------------------------------------------------------------

BIG_DB = "console_big_t"
BIG = 10_000

# Ten thousand migrations of three statements each, as capture would have recorded them
# (bulk INSERT as the superuser, commit-time triggers off: these rows are history already).
BULK = f"""
SET session_replication_role = replica;
INSERT INTO electric.migrations (txid, version, version_source, framework, started_at, committed_at,
                                 db_user, application_name, client_addr, proxy_instance, backend_pid)
SELECT (100000 + g)::text::xid8, 'bulk-' || g, 'framework', CASE WHEN g % 2 = 0 THEN 'alembic' ELSE 'flyway' END,
       now() - (({BIG} + 1 - g) * interval '1 minute'), now() - (({BIG} + 1 - g) * interval '1 minute') + interval '40 ms',
       CASE WHEN g % 3 = 0 THEN 'bob' ELSE 'alice' END, 'bulk', '10.0.0.1:5000', 'bulk:1', 1
  FROM generate_series(1, {BIG}) g;
INSERT INTO electric.migration_statements (migration_id, seq, sql, tag, objects)
SELECT m.id, s, 'ALTER TABLE public.t' || (m.id % 100) || ' ADD COLUMN c' || m.id || '_' || s || ' int',
       'ALTER TABLE', '[]'::jsonb
  FROM electric.migrations m, generate_series(1, 3) s;
RESET session_replication_role;
ANALYZE electric.migrations;
ANALYZE electric.migration_statements;
"""


@pytest.fixture(scope="module")
def big(pg: EmbeddedPostgres) -> Iterator[str]:
    pg.execute(f"DROP DATABASE IF EXISTS {BIG_DB} WITH (FORCE)")
    pg.execute(f"CREATE DATABASE {BIG_DB} OWNER alice")
    url = pg.url(BIG_DB, user="alice", password=ALICE_PASSWORD)
    with psycopg.connect(url, autocommit=True) as conn:
        install_sync(conn)
    with pg.connect(BIG_DB) as admin:
        admin.execute(BULK)
    yield url
    pg.execute(f"DROP DATABASE IF EXISTS {BIG_DB} WITH (FORCE)")


@pytest.mark.slow
def test_ten_thousand_migrations_render_under_a_second(big: str, serve: Callable[..., Served]) -> None:
    served = serve(big)
    served.get("/console/")  # connects; the timing below is of pages, not of a login
    for path in (
        "/console/",
        "/console/?page=200",
        "/console/?user=bob&framework=alembic&page=30",
        "/console/?per_page=500&page=3",
    ):
        started = time.perf_counter()
        status, _, body = served.get(path)
        elapsed = time.perf_counter() - started
        assert status == 200, path
        assert elapsed < 1.0, (path, elapsed)
        assert timeline_rows(body), path
    first = timeline_rows(served.get("/console/")[2])
    assert first[0][1] == f"bulk-{BIG}" and len(first) == 50
    last = timeline_rows(served.get("/console/?page=200")[2])
    assert last[-1][1] == "bulk-1"
    assert f"{BIG} migration(s)" in Page(served.get("/console/")[2]).text


def test_a_blocked_catalog_read_times_out_and_the_listener_goes_on(console: Served) -> None:
    url = console.config.upstream.url
    with psycopg.connect(url) as locker:
        locker.execute("LOCK TABLE electric.migrations IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        status, _, body = console.get("/console/")
        assert status == 500 and "statement timeout" in Page(body).text
        assert time.monotonic() - started < 5
        assert console.get("/healthz")[0] == 200
    assert console.get("/console/")[0] == 200  # lock released: the same connection reads again


def test_health_strip_sees_the_catalogs_event_triggers(
    pg: EmbeddedPostgres, serve: Callable[..., Served]
) -> None:
    """Event triggers whose function is the catalog's: the database-side guard's, as a superuser
    (or a managed service's admin role) installs them."""
    database = "console_triggers_t"
    pg.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    pg.execute(f"CREATE DATABASE {database} OWNER alice")
    try:
        url = pg.url(database, user="alice", password=ALICE_PASSWORD)
        with psycopg.connect(url, autocommit=True) as conn:
            install_sync(conn)
        served = serve(url)

        def strip() -> str:
            found = re.search(r'<ul class="health" id="health">.*?</ul>', served.get("/console/")[2])
            assert found is not None
            return Page(found.group(0)).text

        assert "event triggers not installed" in strip()
        with pg.connect(database) as admin:
            admin.execute(
                "CREATE FUNCTION electric._console_t() RETURNS event_trigger LANGUAGE plpgsql AS 'BEGIN END'"
            )
            admin.execute(
                "CREATE EVENT TRIGGER console_t_end ON ddl_command_end EXECUTE FUNCTION electric._console_t()"
            )
        assert "event triggers installed (1)" in strip()
        with pg.connect(database) as admin:
            admin.execute("ALTER EVENT TRIGGER console_t_end DISABLE")
        assert "event triggers 1 disabled" in strip()
    finally:
        pg.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
