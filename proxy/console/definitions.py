"""Recorded definitions as the console shows them: SQL text, and the difference between two schemas.

The CLI's renderer (proxy/catalog/render.py: `show`, `schema --at`, `schema --diff`) does the
work when this build has it, so the console reads as the CLI prints. Without it the definition is
shown as the JSON the catalog recorded and a diff names the objects that changed.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any


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
        return identity(self.schema, self.name)


@dataclass(frozen=True)
class Change:
    """One object that differs between two schemas (`schema --diff`)."""

    change: str  # "added", "removed" or "modified"
    kind: str
    identity: str
    details: tuple[str, ...]  # one line per difference, for "modified"
    sql: str | None  # the later definition, for "added"
    electrified: bool


def _renderer() -> ModuleType | None:
    try:
        return importlib.import_module("proxy.catalog.render")
    except ModuleNotFoundError:
        return None


_RENDER = _renderer()


def identity(schema: str, name: str) -> str:
    if _RENDER is not None:
        return str(_RENDER.qualified(schema, name))
    return f"{schema}.{name}"


def as_sql(definition: Mapping[str, Any]) -> str:
    if _RENDER is not None:
        return str(_RENDER.render(definition))
    return json.dumps(definition, indent=2, ensure_ascii=False, sort_keys=True)


def rendered(object_type: str, schema: str, name: str, definition: Mapping[str, Any] | None) -> Rendered:
    if definition is None:
        return Rendered(object_type, None, schema, name, None, False)
    return Rendered(
        object_type,
        definition.get("kind"),
        schema,
        name,
        as_sql(definition),
        bool(definition.get("electrified")),
    )


def diff(before: Iterable[Mapping[str, Any]], after: Iterable[Mapping[str, Any]]) -> list[Change]:
    """What changed from one `schema_at()` object list to the other, object by object."""
    if _RENDER is not None:
        changes = _RENDER.diff(_RENDER.keyed(before), _RENDER.keyed(after))
        return [
            Change(
                str(c.change),
                str(c.kind),
                str(c.identity),
                tuple(str(line) for line in c.details),
                as_sql(c.after) if c.after is not None and c.change == "added" else None,
                bool((c.after or c.before or {}).get("electrified")),
            )
            for c in changes
        ]
    return _plain_diff(_keyed(before), _keyed(after))


_Key = tuple[str, str, str]


def _keyed(objects: Iterable[Mapping[str, Any]]) -> dict[_Key, Mapping[str, Any]]:
    return {(o["object_type"], o["schema"], o["name"]): o["definition"] for o in objects if o["definition"]}


def _plain_diff(before: dict[_Key, Mapping[str, Any]], after: dict[_Key, Mapping[str, Any]]) -> list[Change]:
    changes = []
    for key in sorted(before.keys() | after.keys(), key=lambda k: (k[1], k[2], k[0])):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        latest = new if new is not None else old
        assert latest is not None
        change = "added" if old is None else "removed" if new is None else "modified"
        changes.append(
            Change(
                change,
                str(latest.get("kind")),
                identity(key[1], key[2]),
                (),
                as_sql(new) if old is None and new is not None else None,
                bool(latest.get("electrified")),
            )
        )
    return changes
