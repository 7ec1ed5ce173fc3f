"""The console's pages over hand-made data: what each shows, and that user text stays text."""

from __future__ import annotations

import re
from datetime import date
from html.parser import HTMLParser
from typing import Any

import pytest

from proxy.catalog import store
from proxy.console import data, pages
from proxy.console.definitions import Change, Rendered
from proxy.console.markup import Html, escape, tag

HOSTILE = "<script>alert(1)</script>\"'></textarea></pre><img src=x onerror=alert(2)>&amp;"
LINKS = pages.Links()


class Tree(HTMLParser):
    """The elements and text of a page, as a browser's parser sees them."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def names(self) -> list[str]:
        return [name for name, _ in self.tags]

    def all_text(self) -> str:
        return "".join(self.text)

    def hrefs(self) -> list[str]:
        return [str(attrs.get("href")) for name, attrs in self.tags if name in ("a", "link")]

    def ids(self) -> list[str]:
        return [str(attrs["id"]) for _, attrs in self.tags if attrs.get("id")]


def health(**overrides: Any) -> data.Health:
    values: dict[str, Any] = {
        "upstream": "db.internal:5432/app",
        "reachable": True,
        "catalog_version": 6,
        "event_triggers": [("electric_ddl_end", True)],
        "drift_mode": "detect",
        "instances": [("web-1:4321", "2026-12-01T10:00:00+00:00")],
        "history": True,
    }
    values.update(overrides)
    return data.Health(**values)


def entry(migration_id: int, **overrides: Any) -> data.TimelineEntry:
    values: dict[str, Any] = {
        "id": migration_id,
        "version": f"v{migration_id}",
        "version_source": "framework",
        "framework": "alembic",
        "user": "alice",
        "application_name": "alembic",
        "client_addr": "10.0.0.5:41000",
        "proxy_instance": "web-1:4321",
        "started_at": "2026-12-01T10:00:00+00:00",
        "committed_at": "2026-12-01T10:00:01.250000+00:00",
        "duration_ms": 1250.0,
        "statement_count": 3,
    }
    values.update(overrides)
    return data.TimelineEntry(**values)


def timeline(entries: list[data.TimelineEntry], total: int | None = None, **query: Any) -> data.Timeline:
    return data.Timeline(
        entries=entries,
        total=len(entries) if total is None else total,
        query=data.TimelineQuery(**query),
        frameworks=["-", "alembic"],
        users=["alice", "bob"],
    )


def detail(**overrides: Any) -> store.MigrationDetail:
    values: dict[str, Any] = {
        "id": 7,
        "version": "a1b2",
        "version_source": "framework",
        "version_tie": "other connection",
        "framework": "alembic",
        "started_at": "2026-12-01T10:00:00+00:00",
        "committed_at": "2026-12-01T10:00:00.040000+00:00",
        "user": "alice",
        "application_name": "alembic",
        "client_addr": "10.0.0.5:41000",
        "proxy_instance": "web-1:4321",
        "backend_pid": 4242,
        "statements": [
            {
                "seq": 1,
                "sql": "ALTER TABLE items ADD COLUMN price int8",
                "tag": "ALTER TABLE",
                "objects": [],
                "captured_at": "2026-12-01T10:00:00.010000+00:00",
            }
        ],
        "objects": [],
    }
    values.update(overrides)
    return store.MigrationDetail(**values)  # type: ignore[typeddict-item]


def items_table(
    sql: str = "CREATE TABLE public.items (\n    id bigint NOT NULL\n);", electrified: bool = True
) -> Rendered:
    return Rendered("relation", "table", "public", "items", sql, electrified)


# -- markup ----------------------------------------------------------------------------------------


def test_markup_escapes_everything_but_html() -> None:
    assert escape(HOSTILE) == (
        "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#x27;&gt;&lt;/textarea&gt;&lt;/pre&gt;"
        "&lt;img src=x onerror=alert(2)&gt;&amp;amp;"
    )
    assert escape(None) == "-"
    assert escape(Html("<b>x</b>")) == "<b>x</b>"
    element = tag("a", HOSTILE, href=f'/x?a="{HOSTILE}', class_="c", hidden=True, title=None)
    tree = Tree(element)
    assert tree.tags == [("a", {"href": f'/x?a="{HOSTILE}', "class": "c", "hidden": None})]
    assert tree.all_text() == HOSTILE


# -- timeline --------------------------------------------------------------------------------------


def test_timeline_lists_newest_first_with_who_from_where_when_duration_and_count() -> None:
    page = pages.timeline_page(
        LINKS,
        timeline(
            [
                entry(12),
                entry(
                    11,
                    framework=None,
                    version_source="explicit",
                    application_name=None,
                    client_addr=None,
                    proxy_instance=None,
                    duration_ms=None,
                    committed_at=None,
                ),
            ]
        ),
        health(),
    )
    tree = Tree(page)
    rows = re.findall(r"<tr data-id=\"(\d+)\">(.*?)</tr>", page)
    assert [row_id for row_id, _ in rows] == ["12", "11"]
    first = Tree(rows[0][1]).text
    assert first == [
        "12",
        "v12",
        "alembic",
        "alice",
        " ",
        "alembic",
        "10.0.0.5:41000 via web-1:4321",
        "2026-12-01 10:00:01 UTC",
        "1.2 s",
        "3",
    ]
    second = Tree(rows[1][1]).text
    assert second == ["11", "v11", "explicit", "alice", "local socket", "-", "-", "3"]
    assert "/console/migrations/12" in tree.hrefs()
    assert "2 migration(s), newest first; 1-2 shown" in tree.all_text()


def test_timeline_filters_keep_their_values_and_pages_keep_the_filters() -> None:
    query = {
        "framework": "alembic",
        "user": "bob",
        "since": date(2026, 11, 1),
        "until": date(2026, 12, 1),
        "page": 2,
        "per_page": 2,
    }
    page = pages.timeline_page(LINKS, timeline([entry(5), entry(4)], total=9, **query), health())
    tree = Tree(page)
    selected = [attrs.get("value") for name, attrs in tree.tags if name == "option" and "selected" in attrs]
    assert selected == ["alembic", "bob"]
    dates = [
        attrs.get("value") for name, attrs in tree.tags if name == "input" and attrs.get("type") == "date"
    ]
    assert dates == ["2026-11-01", "2026-12-01"]
    prev, nxt = (
        next(str(attrs["href"]) for name, attrs in tree.tags if name == "a" and attrs.get("rel") == rel)
        for rel in ("prev", "next")
    )
    assert prev == "/console/?framework=alembic&user=bob&since=2026-11-01&until=2026-12-01&per_page=2"
    assert nxt == "/console/?framework=alembic&user=bob&since=2026-11-01&until=2026-12-01&page=3&per_page=2"
    assert "page 2 of 5" in tree.all_text()


def test_timeline_without_migrations_says_so() -> None:
    assert "No migrations recorded." in Tree(pages.timeline_page(LINKS, timeline([]), health())).all_text()
    filtered = pages.timeline_page(LINKS, timeline([], user="bob"), health())
    assert "No migrations recorded match these filters." in Tree(filtered).all_text()


def test_every_link_carries_the_path_prefix() -> None:
    links = pages.Links("/ops/proxy-1")
    page = pages.timeline_page(links, timeline([entry(3)], total=120, page=2), health())
    hrefs = Tree(page).hrefs()
    assert hrefs and all(h.startswith("/ops/proxy-1/console/") for h in hrefs), hrefs
    assert '<form method="get" action="/ops/proxy-1/console/"' in page


# -- one migration ---------------------------------------------------------------------------------


def test_migration_page_shows_statements_and_definitions() -> None:
    page = data.MigrationPage(
        detail(), [items_table(), Rendered("relation", None, "public", "old_idx", None, False)], previous=6
    )
    html = pages.migration_page(LINKS, page, health())
    tree = Tree(html)
    text = tree.all_text()
    assert "ALTER TABLE items ADD COLUMN price int8" in text
    assert "CREATE TABLE public.items (\n    id bigint NOT NULL\n);" in text
    assert "gone after this migration" in text
    assert "electrified" in text and "1 s" not in text and "40 ms" in text
    assert "a1b2 (framework, alembic, written other connection)" in text
    assert "/console/schema?from=000000000000000000000006&to=000000000000000000000007" in tree.hrefs()
    assert "/console/schema?at=000000000000000000000007" in tree.hrefs()


def test_hostile_migration_text_is_shown_as_text_everywhere() -> None:
    statement = {
        "seq": 1,
        "sql": HOSTILE,
        "tag": HOSTILE,
        "objects": [],
        "captured_at": "2026-12-01T10:00:00+00:00",
    }
    migration = detail(
        version=HOSTILE, user=HOSTILE, application_name=HOSTILE, client_addr=HOSTILE, statements=[statement]
    )
    hostile_object = Rendered("relation", HOSTILE, HOSTILE, HOSTILE, HOSTILE, True)
    rendered = [
        pages.migration_page(LINKS, data.MigrationPage(migration, [hostile_object], previous=None), health()),
        pages.timeline_page(
            LINKS,
            timeline([entry(1, version=HOSTILE, user=HOSTILE, framework=HOSTILE, client_addr=HOSTILE)]),
            health(upstream=HOSTILE),
        ),
        pages.schema_page(
            LINKS,
            data.SchemaView(1, HOSTILE, [hostile_object]),
            [{"schema": HOSTILE, "table": HOSTILE, "since_migration": HOSTILE}],
            health(),
            latest=True,
        ),
        pages.diff_page(
            LINKS,
            data.DiffView(
                (1, HOSTILE), (2, HOSTILE), [Change("added", HOSTILE, HOSTILE, (HOSTILE,), HOSTILE, True)]
            ),
            health(),
        ),
        pages.drift_page(
            LINKS, drift_view(identity=HOSTILE, statement=HOSTILE), health(instances=[(HOSTILE, "x")])
        ),
        pages.message_page(LINKS, HOSTILE, HOSTILE, health(reachable=False, error=HOSTILE)),
    ]
    for page in rendered:
        tree = Tree(page)
        assert "script" not in tree.names() and "img" not in tree.names() and "textarea" not in tree.names()
        assert not any(key.startswith("on") for _, attrs in tree.tags for key in attrs)
        assert HOSTILE in tree.all_text()


# -- schema ----------------------------------------------------------------------------------------


def test_schema_page_marks_electrified_tables() -> None:
    view = data.SchemaView(
        9,
        "v9",
        [
            items_table(electrified=False),
            Rendered("relation", "table", "public", "notes", "CREATE TABLE public.notes ();", False),
        ],
    )
    electrified = [{"schema": "public", "table": "items", "since_migration": "v2"}]
    page = pages.schema_page(LINKS, view, electrified, health(), latest=True)
    sections = re.findall(r'<section class="([^"]+)" data-name="([^"]+)">', page)
    assert sections == [("object electrified", "public.items"), ("object", "public.notes")]
    assert "As of migration 9 (version v9), the latest: 2 object(s)." in Tree(page).all_text()
    # An older schema marks what its definitions say, not what is electrified today.
    older = pages.schema_page(LINKS, view, electrified, health(), latest=False)
    assert re.findall(r'<section class="([^"]+)"', older) == ["object", "object"]


def test_diff_page_lists_changes_object_by_object() -> None:
    changes = [
        Change("added", "table", "public.notes", (), "CREATE TABLE public.notes ();", False),
        Change("modified", "table", "public.items", ("column added: price bigint",), None, True),
        Change("removed", "index", "public.old_idx", (), None, False),
    ]
    page = pages.diff_page(LINKS, data.DiffView((3, "v3"), (4, "v4"), changes), health())
    assert re.findall(r'<li class="(added|modified|removed)">', page) == ["added", "modified", "removed"]
    text = Tree(page).all_text()
    assert "column added: price bigint" in text and "CREATE TABLE public.notes ();" in text
    assert "From migration 3 (v3) to 4 (v4): 3 object(s) changed." in text


# -- drift -----------------------------------------------------------------------------------------


def drift_view(
    identity: str = "public.items", statement: str = "ALTER TABLE items ADD COLUMN sneaky text"
) -> data.DriftView:
    attribution = {
        "role": "bob",
        "application_name": "psql",
        "client_addr": "10.0.0.9",
        "statement": statement,
        "logged_at": "2026-12-01T11:00:00+00:00",
    }
    opened = [
        data.DriftItem(
            identity,
            "table",
            "modified",
            "high",
            True,
            {
                "attributes": {
                    "columns": {"expected": ["id"], "actual": ["id", "sneaky"]},
                    "default": {"expected": None, "actual": "0"},
                }
            },
            attribution,
            "event_trigger",
            "2026-12-01T11:00:01+00:00",
            "2026-12-01T11:05:00+00:00",
        ),
        data.DriftItem(
            "public.tmp",
            "table",
            "added",
            "low",
            False,
            {"attributes": {}},
            None,
            "scan",
            "2026-12-01T11:02:00+00:00",
            "2026-12-01T11:05:00+00:00",
        ),
    ]
    accepted = [
        data.AcceptedItem(
            "public.legacy", "index", "removed", "medium", "2026-11-30T09:00:00+00:00", "carol", "alice"
        )
    ]
    return data.DriftView(opened, accepted, "2026-12-01T11:05:00+00:00", "2026-11-30T09:00:00+00:00")


def test_drift_page_groups_open_drift_by_severity_with_expected_actual_and_attribution() -> None:
    page = pages.drift_page(LINKS, drift_view(), health())
    tree = Tree(page)
    assert re.findall(r'<h2 class="severity (\w+)">', page) == ["high", "low"]
    text = tree.all_text()
    expected = re.findall(r'<td class="expected"><code>(.*?)</code>', page)
    actual = re.findall(r'<td class="actual"><code>(.*?)</code>', page)
    assert (expected, actual) == (
        ["[&quot;id&quot;]", "(none)"],
        ["[&quot;id&quot;, &quot;sneaky&quot;]", "0"],
    )
    assert "bob (psql, 10.0.0.9)" in text and "ALTER TABLE items ADD COLUMN sneaky text" in text
    assert "2026-12-01 11:00:01 UTC" in text and "by event trigger" in text
    assert "unknown (found by a scan)" in text
    accepted = re.search(r'<table id="accepted">.*?</table>', page)
    assert accepted is not None and "carol" in accepted.group(0) and "public.legacy" in accepted.group(0)
    assert "Drift: 2 open" in text


def test_drift_page_in_sync_and_unavailable() -> None:
    in_sync = pages.drift_page(LINKS, data.DriftView([], [], None, None), health())
    assert "In sync" in Tree(in_sync).all_text()
    unavailable = pages.drift_page(LINKS, None, health())
    assert "drift-unavailable" in Tree(unavailable).ids()


# -- health strip ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {},
            [
                "db.internal:5432/app: reachable",
                "version 6 (this proxy installs",
                "installed (1)",
                "detect",
                "web-1:4321",
            ],
        ),
        (
            {"event_triggers": [], "instances": [], "drift_mode": "off"},
            ["not installed", "off", "no migration in the last 24 h"],
        ),
        ({"catalog_version": None}, ["no catalog installed"]),
        ({"connected_hosts": 2}, ["web-1:4321; connected now from 2 host(s)"]),
        (
            {
                "event_triggers": [
                    ("electric_guard_sql_drop", False),
                    ("electric_guard_ddl_command_end", True),
                ]
            },
            ["event triggers 1 disabled"],
        ),
        ({"reachable": False, "error": "connection refused"}, ["unreachable"]),
    ],
)
def test_health_strip(overrides: dict[str, Any], expected: list[str]) -> None:
    strip = Tree(pages.health_strip(health(**overrides))).all_text()
    for words in expected:
        assert words in strip, (words, strip)


def test_pages_have_unique_ids() -> None:
    for page in (
        pages.timeline_page(LINKS, timeline([entry(1)]), health()),
        pages.schema_page(LINKS, data.SchemaView(1, "v1", [items_table()]), [], health(), latest=True),
        pages.drift_page(LINKS, drift_view(), health()),
    ):
        ids = Tree(page).ids()
        assert len(ids) == len(set(ids)), ids


# -- secrets in recorded text ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "shown"),
    [
        ("CREATE ROLE app LOGIN PASSWORD 'se''cret'", "CREATE ROLE app LOGIN PASSWORD '****'"),
        (
            "alter role x encrypted password E'a\\'b' valid until 'x'",
            "alter role x encrypted password '****' valid until 'x'",
        ),
        ("ALTER ROLE x PASSWORD $q$p$w$q$ LOGIN", "ALTER ROLE x PASSWORD '****' LOGIN"),
        (
            "CREATE USER MAPPING FOR a SERVER s OPTIONS (user 'u', password 'p')",
            "CREATE USER MAPPING FOR a SERVER s OPTIONS (user 'u', password '****')",
        ),
        (
            "CREATE SUBSCRIPTION s CONNECTION 'host=h password=pw dbname=d' PUBLICATION p",
            "CREATE SUBSCRIPTION s CONNECTION 'host=h password=**** dbname=d' PUBLICATION p",
        ),
        (
            "COMMENT ON TABLE t IS 'from postgresql://u:pw@h/d'",
            "COMMENT ON TABLE t IS 'from postgresql://u:****@h/d'",
        ),
        ("ALTER ROLE x PASSWORD NULL", "ALTER ROLE x PASSWORD NULL"),
        ("CREATE TABLE t (password text, id int)", "CREATE TABLE t (password text, id int)"),
    ],
)
def test_recorded_passwords_are_masked(sql: str, shown: str) -> None:
    assert data.mask_secrets(sql) == shown
