"""The console's pages as HTML: pure functions of data.py's values; no connection, no request.

Every value goes through markup.py, which escapes what is not markup already: statements,
object names, versions, users and error messages are shown as text whatever they hold. Links
are built by `Links`, which knows the path prefix the browser sees.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from string import Template
from typing import Any, Final
from urllib.parse import quote, urlencode

from proxy import __version__
from proxy.console import data
from proxy.console.definitions import Change, Rendered
from proxy.console.markup import Html, Value, escape, fill, join, tag, void

TITLE: Final = "electric-proxy console"


@dataclass(frozen=True)
class Links:
    """URLs as the browser sees them: `prefix` is where a reverse proxy mounts the listener."""

    prefix: str = ""

    @property
    def root(self) -> str:
        return f"{self.prefix}/console"

    def to(self, path: str = "", params: Mapping[str, object] | None = None) -> str:
        query = {k: str(v) for k, v in (params or {}).items() if v is not None and v != ""}
        return f"{self.root}/{path}" + (f"?{urlencode(query)}" if query else "")

    def migration(self, migration_id: int) -> str:
        return self.to(f"migrations/{migration_id}")

    def schema_at(self, reference: str) -> str:
        return self.to("schema", {"at": reference})

    def diff(self, before: str, after: str) -> str:
        return self.to("schema", {"from": before, "to": after})

    def timeline(self, query: data.TimelineQuery, page: int) -> str:
        return self.to(
            "",
            {
                "framework": query.framework,
                "user": query.user,
                "since": query.since.isoformat() if query.since else None,
                "until": query.until.isoformat() if query.until else None,
                "page": page if page > 1 else None,
                "per_page": query.per_page if query.per_page != data.TimelineQuery().per_page else None,
            },
        )


# -- the frame of every page -----------------------------------------------------------------------

_LAYOUT: Final = Template("""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>$title</title>
<link rel="stylesheet" href="$stylesheet">
<link rel="icon" href="$icon" type="image/svg+xml">
</head>
<body>
<header>
<nav>$nav</nav>
$health
</header>
<main id="page-$page">
<h1>$heading</h1>
$body
</main>
<footer>electric-proxy $version · read-only</footer>
</body>
</html>
""")

_NAV: Final = (("timeline", "Timeline", ""), ("schema", "Schema", "schema"), ("drift", "Drift", "drift"))


def layout(links: Links, page: str, heading: Value, body: Html, health: data.Health | None) -> Html:
    nav = [tag("a", TITLE, href=links.to(), class_="brand")]
    nav += [
        tag("a", label, href=links.to(path), aria_current="page" if name == page else None)
        for name, label, path in _NAV
    ]
    return fill(
        _LAYOUT,
        {
            "title": f"{_text(heading)} · {TITLE}",
            "stylesheet": links.to("style.css"),
            "icon": links.to("favicon.svg"),
            "nav": join(nav),
            "health": health_strip(health) if health is not None else Html(""),
            "page": page,
            "heading": heading,
            "body": body,
            "version": __version__,
        },
    )


def _text(value: Value) -> str:
    return "-" if value is None else str(value)


def health_strip(health: data.Health) -> Html:
    """Upstream, catalog version, event triggers, drift mode, proxy instances: one line each."""
    if not health.reachable:
        return tag(
            "ul",
            _item("bad", "upstream", f"{health.upstream}: unreachable", health.error),
            class_="health",
            id="health",
        )
    catalog = (
        ("bad", "no catalog installed")
        if health.catalog_version is None
        else ("ok", f"version {health.catalog_version} (this proxy installs {health.catalog_latest})")
    )
    triggers = _event_triggers(health.event_triggers)
    instances = ", ".join(name for name, _seen in health.instances) or "no migration in the last 24 h"
    if health.connected_hosts:
        instances += f"; connected now from {health.connected_hosts} host(s)"
    items = [
        _item("ok", "upstream", f"{health.upstream}: reachable"),
        _item(catalog[0], "catalog", catalog[1]),
        _item(triggers[0], "event triggers", triggers[1], triggers[2]),
        _item("ok" if health.drift_mode != "off" else "warn", "drift mode", health.drift_mode),
        _item("ok", "proxy instances", instances),
    ]
    return tag("ul", *items, class_="health", id="health")


_SCAN_ONLY: Final = "changes made without the proxy are found by the periodic scan only"


def _event_triggers(triggers: Sequence[tuple[str, bool]]) -> tuple[str, str, str]:
    """(state, text, title) of the database-side guard's event triggers."""
    enabled = [name for name, on in triggers if on]
    disabled = [name for name, on in triggers if not on]
    if disabled:
        return "bad", f"{len(disabled)} disabled", ", ".join(disabled) + ": " + _SCAN_ONLY
    if enabled:
        return "ok", f"installed ({len(enabled)})", ", ".join(enabled)
    return "warn", "not installed", _SCAN_ONLY


def _item(state: str, label: str, value: str, title: str | None = None) -> Html:
    return tag(
        "li",
        tag("span", label, class_="label"),
        " ",
        tag("span", value, class_="value"),
        class_=state,
        title=title,
    )


# -- timeline --------------------------------------------------------------------------------------


def timeline_page(links: Links, timeline: data.Timeline, health: data.Health | None) -> Html:
    query = timeline.query
    rows = [_timeline_row(links, entry) for entry in timeline.entries]
    table = (
        _table(
            ("ID", "Version", "Framework", "Who", "From", "Committed", "Duration", "Statements"),
            rows,
            id="timeline",
        )
        if rows
        else tag(
            "p",
            "No migrations recorded" + (" match these filters." if _filtered(query) else "."),
            class_="empty",
        )
    )
    first = (query.page - 1) * query.per_page + 1
    summary = tag(
        "p",
        f"{timeline.total} migration(s), newest first"
        + (f"; {first}-{first + len(rows) - 1} shown" if rows else ""),
        class_="summary",
    )
    body = join([_timeline_filters(links, timeline), summary, table, _pager(links, timeline)])
    return layout(links, "timeline", "Timeline", body, health)


def _filtered(query: data.TimelineQuery) -> bool:
    return any(v is not None for v in (query.framework, query.user, query.since, query.until))


def _timeline_row(links: Links, entry: data.TimelineEntry) -> Html:
    source = entry.version_source if entry.framework is None else entry.framework
    who = tag("span", entry.user, class_="user")
    if entry.application_name:
        who = join([who, " ", tag("span", entry.application_name, class_="app")])
    origin = entry.client_addr or "local socket"
    if entry.proxy_instance:
        origin += f" via {entry.proxy_instance}"
    return tag(
        "tr",
        tag("td", tag("a", entry.id, href=links.migration(entry.id))),
        tag("td", tag("a", entry.version, href=links.migration(entry.id)), class_="version"),
        tag("td", source, class_="framework"),
        tag("td", who),
        tag("td", origin),
        tag("td", when(entry.committed_at)),
        tag("td", duration(entry.duration_ms), class_="num"),
        tag("td", entry.statement_count, class_="num"),
        data_id=entry.id,
    )


def _timeline_filters(links: Links, timeline: data.Timeline) -> Html:
    query = timeline.query
    frameworks = [("", "any framework")] + [
        (f, "no framework" if f == "-" else f) for f in timeline.frameworks
    ]
    users = [("", "anyone")] + [(u, u) for u in timeline.users]
    fields = [
        _label("Framework", _select("framework", frameworks, query.framework)),
        _label("User", _select("user", users, query.user)),
        _label("Since", void("input", type="date", name="since", value=_day(query.since))),
        _label("Until", void("input", type="date", name="until", value=_day(query.until))),
        tag("button", "Filter", type="submit"),
        tag("a", "clear", href=links.to()),
    ]
    return tag("form", *fields, method="get", action=links.to(), class_="filters", id="filters")


def _day(value: Any) -> str | None:
    return None if value is None else str(value.isoformat())


def _label(text: str, control: Html) -> Html:
    return tag("label", text, " ", control)


def _select(name: str, options: Sequence[tuple[str, str]], selected: str | None) -> Html:
    items = [
        tag("option", label, value=value, selected=value == (selected or "")) for value, label in options
    ]
    return tag("select", *items, name=name)


def _pager(links: Links, timeline: data.Timeline) -> Html:
    page, pages = timeline.query.page, timeline.pages
    if pages <= 1 and page == 1:
        return Html("")
    parts: list[Value] = []
    if page > 1:
        parts.append(tag("a", "← newer", href=links.timeline(timeline.query, page - 1), rel="prev"))
    parts.append(tag("span", f"page {page} of {pages}"))
    if page < pages:
        parts.append(tag("a", "older →", href=links.timeline(timeline.query, page + 1), rel="next"))
    return tag("nav", *parts, class_="pager")


# -- one migration ---------------------------------------------------------------------------------


def migration_page(links: Links, page: data.MigrationPage, health: data.Health | None) -> Html:
    m = page.migration
    source = m["version_source"] + (f", {m['framework']}" if m["framework"] else "")
    if m["version_tie"] not in (None, "transaction"):  # a version written outside its DDL's transaction
        source += f", written {m['version_tie']}"
    facts = [
        ("Version", join([tag("code", m["version"]), f" ({source})"])),
        ("Started", when(m["started_at"])),
        ("Committed", when(m["committed_at"])),
        ("Duration", duration(_duration(m["started_at"], m["committed_at"]))),
        ("User", m["user"]),
        ("Application", m["application_name"]),
        ("Client", m["client_addr"] or "local socket"),
        ("Proxy", m["proxy_instance"]),
        ("Backend pid", m["backend_pid"]),
    ]
    reference = data.migration_ref(m["id"])
    actions: list[Value] = [tag("a", "schema after this migration", href=links.schema_at(reference))]
    if page.previous is not None:
        actions.append(
            tag("a", "what it changed", href=links.diff(data.migration_ref(page.previous), reference))
        )
    statements = [
        tag(
            "li",
            tag(
                "div", tag("span", s["tag"] or "-", class_="tag"), " ", when(s["captured_at"]), class_="meta"
            ),
            tag("pre", tag("code", s["sql"])),
            value=s["seq"],
        )
        for s in m["statements"]
    ]
    body = join(
        [
            _facts(facts),
            tag("p", *_spaced(actions), class_="actions"),
            tag("h2", f"Statements ({len(statements)})"),
            tag("ol", *statements, class_="statements", id="statements")
            if statements
            else tag("p", "None recorded."),
            tag("h2", f"Objects touched ({len(page.objects)})"),
            _objects(page.objects, section_id="objects"),
        ]
    )
    return layout(links, "migration", f"Migration {m['id']}", body, health)


def _spaced(parts: Sequence[Value]) -> list[Value]:
    out: list[Value] = []
    for index, part in enumerate(parts):
        if index:
            out.append(" · ")
        out.append(part)
    return out


def _facts(facts: Iterable[tuple[str, Value]]) -> Html:
    return tag("dl", *(join([tag("dt", k), tag("dd", v)]) for k, v in facts), class_="facts")


def _objects(
    objects: Sequence[Rendered], section_id: str, electrified: frozenset[tuple[str, str]] = frozenset()
) -> Html:
    if not objects:
        return tag("p", "No recorded definitions.", id=section_id)
    items = []
    for item in objects:
        marked = item.electrified or (item.schema, item.name) in electrified
        heading = [
            tag("span", item.kind or item.object_type, class_="kind"),
            " ",
            tag("code", item.identity),
        ]
        if marked:
            heading += [" ", _electrified_badge()]
        content = (
            tag("pre", tag("code", item.sql))
            if item.sql is not None
            else tag("p", "gone after this migration", class_="gone")
        )
        items.append(
            tag(
                "section",
                tag("h3", *heading),
                content,
                class_="object electrified" if marked else "object",
                data_name=f"{item.schema}.{item.name}",
            )
        )
    return tag("div", *items, id=section_id)


def _electrified_badge() -> Html:
    return tag("span", "electrified", class_="badge electrified")


# -- schema ----------------------------------------------------------------------------------------


def schema_page(
    links: Links,
    view: data.SchemaView | None,
    electrified: Sequence[Mapping[str, Any]],
    health: data.Health | None,
    *,
    latest: bool,
    error: str | None = None,
) -> Html:
    marked = frozenset((t["schema"], t["table"]) for t in electrified) if latest else frozenset()
    parts: list[Value] = [_schema_forms(links, view)]
    if error is not None:
        parts.append(tag("p", error, class_="error"))
    if view is None and error is None:
        parts.append(tag("p", "No migrations recorded.", class_="empty"))
    if view is not None:
        parts.append(
            tag(
                "p",
                f"As of migration {view.migration_id} (version ",
                tag("a", view.version, href=links.migration(view.migration_id)),
                f"){', the latest' if latest else ''}: {len(view.objects)} object(s).",
                class_="summary",
            )
        )
        parts.append(_objects(view.objects, section_id="schema", electrified=marked))
    if electrified:
        parts += [tag("h2", "Electrified tables now"), _electrified_table(links, electrified)]
    return layout(links, "schema", "Schema", join(parts), health)


def _electrified_table(links: Links, tables: Sequence[Mapping[str, Any]]) -> Html:
    rows = [
        tag(
            "tr",
            tag("td", tag("code", f"{t['schema']}.{t['table']}")),
            tag("td", t["since_migration"] or "outside any recorded migration"),
        )
        for t in tables
    ]
    return _table(("Table", "Since migration"), rows, id="electrified")


def _schema_forms(links: Links, view: data.SchemaView | None) -> Html:
    at = tag(
        "form",
        _label(
            "Schema as of migration",
            void("input", name="at", placeholder="version or id", value=view.version if view else None),
        ),
        tag("button", "Show", type="submit"),
        method="get",
        action=links.to("schema"),
    )
    diff = tag(
        "form",
        _label("Changes from", void("input", name="from", placeholder="version or id", required=True)),
        _label("to", void("input", name="to", placeholder="version or id", required=True)),
        tag("button", "Compare", type="submit"),
        method="get",
        action=links.to("schema"),
    )
    return tag("div", at, diff, class_="filters")


def diff_page(links: Links, view: data.DiffView, health: data.Health | None) -> Html:
    (old_id, old_version), (new_id, new_version) = view.before, view.after
    heading = tag(
        "p",
        "From migration ",
        tag("a", f"{old_id} ({old_version})", href=links.migration(old_id)),
        " to ",
        tag("a", f"{new_id} ({new_version})", href=links.migration(new_id)),
        f": {len(view.changes)} object(s) changed.",
        class_="summary",
    )
    items = [_change(c) for c in view.changes]
    body = join(
        [
            _schema_forms(links, None),
            heading,
            tag("ul", *items, class_="diff", id="diff") if items else tag("p", "No changes.", id="diff"),
        ]
    )
    return layout(links, "schema", "Schema changes", body, health)


_SIGNS: Final = {"added": "+", "removed": "-", "modified": "~"}


def _change(change: Change) -> Html:
    head: list[Value] = [
        tag("span", _SIGNS.get(change.change, "?"), class_="sign"),
        " ",
        tag("span", change.kind, class_="kind"),
        " ",
        tag("code", change.identity),
        " ",
        tag("span", change.change, class_="change"),
    ]
    if change.electrified:
        head += [" ", _electrified_badge()]
    parts: list[Value] = [tag("div", *head)]
    if change.details:
        parts.append(tag("ul", *(tag("li", tag("code", line)) for line in change.details)))
    if change.sql is not None:
        parts.append(tag("pre", tag("code", change.sql)))
    return tag("li", *parts, class_=change.change)


# -- drift -----------------------------------------------------------------------------------------


def drift_page(links: Links, view: data.DriftView | None, health: data.Health | None) -> Html:
    if view is None:
        body = tag(
            "p",
            "Drift detection is not available: this database's catalog has no drift tables "
            "(this proxy version, or the catalog installed in this database, predates it).",
            class_="empty",
            id="drift-unavailable",
        )
        return layout(links, "drift", "Drift", body, health)
    state = tag(
        "p",
        "Last scan: ",
        when(view.scanned_at),
        " · baseline since ",
        when(view.baseline_at),
        class_="summary",
    )
    parts: list[Value] = [state]
    if not view.open:
        parts.append(
            tag("p", "In sync: the live schema matches the recorded migrations.", class_="ok", id="in-sync")
        )
    for severity in data.SEVERITIES:
        items = [item for item in view.open if item.severity == severity]
        if items:
            parts.append(tag("h2", f"{severity.capitalize()} ({len(items)})", class_=f"severity {severity}"))
            parts.append(_drift_table(items, severity))
    parts.append(tag("h2", f"Accepted ({len(view.accepted)})"))
    parts.append(_accepted_table(view.accepted) if view.accepted else tag("p", "No drift accepted yet."))
    title = "Drift" if not view.open else f"Drift: {len(view.open)} open"
    return layout(links, "drift", title, join(parts), health)


def _drift_table(items: Sequence[data.DriftItem], severity: str) -> Html:
    rows = [
        tag(
            "tr",
            tag(
                "td",
                tag("code", item.identity),
                *([" ", _electrified_badge()] if item.electrified else []),
                *(
                    [tag("div", f"was {item.detail['expected_identity']}", class_="was")]
                    if item.detail.get("expected_identity")
                    else []
                ),
            ),
            tag("td", item.object_type),
            tag("td", item.change),
            tag("td", _attributes(item.detail)),
            tag("td", _attribution(item.attribution)),
            tag(
                "td", when(item.first_seen), tag("div", f"by {item.source.replace('_', ' ')}", class_="meta")
            ),
            data_identity=item.identity,
        )
        for item in items
    ]
    return _table(
        ("Object", "Type", "Change", "Expected / actual", "Attribution", "Detected"),
        rows,
        class_=f"drift {severity}",
    )


def _attributes(detail: Mapping[str, Any]) -> Html:
    attributes = detail.get("attributes") or {}
    if not attributes:
        return escape(None)
    rows = [
        tag(
            "tr",
            tag("th", name),
            tag("td", tag("code", _short(values.get("expected"))), class_="expected"),
            tag("td", tag("code", _short(values.get("actual"))), class_="actual"),
        )
        for name, values in attributes.items()
    ]
    return tag(
        "table",
        tag("tr", tag("th", ""), tag("th", "expected"), tag("th", "actual")),
        *rows,
        class_="attributes",
    )


def _short(value: object, limit: int = 200) -> str:
    """An attribute's value on one line; None: the object or attribute does not exist there."""
    if value is None:
        return "(none)"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _attribution(attribution: Mapping[str, Any] | None) -> Html:
    if not attribution:
        return tag("span", "unknown (found by a scan)", class_="meta")
    application = attribution.get("application_name") or "-"
    client = attribution.get("client_addr") or "local socket"
    who = f"{attribution.get('role') or '-'} ({application}, {client})"
    parts: list[Value] = [tag("div", who)]
    if attribution.get("statement"):
        parts.append(tag("pre", tag("code", _short(attribution["statement"], 400))))
    if attribution.get("logged_at"):
        parts.append(tag("div", when(str(attribution["logged_at"])), class_="meta"))
    return join(parts)


def _accepted_table(items: Sequence[data.AcceptedItem]) -> Html:
    rows = [
        tag(
            "tr",
            tag("td", tag("code", item.identity)),
            tag("td", item.object_type),
            tag("td", item.change),
            tag("td", item.severity),
            tag("td", item.accepted_by, tag("div", f"as {item.db_user}", class_="meta")),
            tag("td", when(item.accepted_at)),
        )
        for item in items
    ]
    return _table(("Object", "Type", "Change", "Severity", "Accepted by", "When"), rows, id="accepted")


# -- errors ----------------------------------------------------------------------------------------


def message_page(links: Links, heading: str, message: str, health: data.Health | None) -> Html:
    return layout(links, "message", heading, tag("p", message, class_="error"), health)


# -- small parts -----------------------------------------------------------------------------------


def _table(headers: Sequence[str], rows: Sequence[Html], **attributes: Value) -> Html:
    head = tag("thead", tag("tr", *(tag("th", h) for h in headers)))
    return tag("table", head, tag("tbody", *rows), **attributes)


def when(iso: str | None) -> Html:
    """An ISO 8601 time as "2026-12-01 13:45:02 UTC", with the exact value in `datetime`."""
    if iso is None:
        return escape(None)
    try:
        moment = datetime.fromisoformat(iso).astimezone(UTC)
    except ValueError:
        return escape(iso)
    return tag("time", moment.strftime("%Y-%m-%d %H:%M:%S UTC"), datetime=iso)


def duration(milliseconds: float | None) -> str:
    if milliseconds is None:
        return "-"
    if milliseconds < 1000:
        return f"{milliseconds:.0f} ms"
    if milliseconds < 60_000:
        return f"{milliseconds / 1000:.1f} s"
    return f"{milliseconds / 60_000:.1f} min"


def _duration(started: str, committed: str | None) -> float | None:
    if committed is None:
        return None
    return (datetime.fromisoformat(committed) - datetime.fromisoformat(started)).total_seconds() * 1000


def path_segment(text: str) -> str:
    return quote(text, safe="")


# Served as /console/style.css and /console/favicon.svg: the Content-Security-Policy allows no
# inline style, and a browser asks for an icon.
STYLESHEET: Final = resources.files("proxy.console").joinpath("style.css").read_bytes()
ICON: Final = resources.files("proxy.console").joinpath("favicon.svg").read_bytes()
