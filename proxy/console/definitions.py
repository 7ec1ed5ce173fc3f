"""Recorded definitions as the console shows them: SQL text, and the difference between two schemas.

The CLI's renderer (proxy/catalog/render.py: `show`, `schema --at`, `schema --diff`) does the
work, so the console reads as the CLI prints; this module only flattens its results into the
plain values pages.py lays out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from proxy.catalog import render


@dataclass(frozen=True)
class Rendered:
    """One recorded object; `sql` None: the object was gone at that point."""

    object_type: str
    kind: str | None
    schema: str
    name: str
    sql: str | None
    electrified: bool

    @property
    def identity(self) -> str:
        return render.qualified(self.schema, self.name)


@dataclass(frozen=True)
class Change:
    """One object that differs between two schemas (`schema --diff`)."""

    change: str  # "added", "removed" or "modified"
    kind: str
    identity: str
    details: tuple[str, ...]  # one line per difference, for "modified"
    sql: str | None  # the definition of an added object
    electrified: bool


def rendered(object_type: str, schema: str, name: str, definition: Mapping[str, Any] | None) -> Rendered:
    if definition is None:
        return Rendered(object_type, None, schema, name, None, False)
    return Rendered(
        object_type,
        definition.get("kind"),
        schema,
        name,
        render.render(definition),
        bool(definition.get("electrified")),
    )


def diff(before: Iterable[Mapping[str, Any]], after: Iterable[Mapping[str, Any]]) -> list[Change]:
    """What changed from one `schema_at()` object list to the other, object by object."""
    return [
        Change(
            c.change,
            c.kind,
            c.identity,
            c.details,
            render.render(c.after) if c.change == "added" and c.after is not None else None,
            bool((c.after or c.before or {}).get("electrified")),
        )
        for c in render.diff(render.keyed(before), render.keyed(after))
    ]
