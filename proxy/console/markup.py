"""HTML built so that nothing reaches the page unescaped by mistake.

`Html` marks text that is already HTML. `tag()` and `fill()` escape every value that is not
`Html`, so a page is put together from values as they come (migration text, object names, error
messages, all user input) and only the few literals written here are trusted. A forgotten escape
shows markup as text instead of running it; the Content-Security-Policy of app.py refuses
scripts all the same.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from string import Template
from typing import Final

Value = object  # anything: str() of it is shown, escaped unless it is Html; None shows as "-"
EMPTY: Final = "-"


class Html(str):
    """Text that is HTML already; inserted as it is."""

    __slots__ = ()


def escape(value: Value) -> Html:
    """`value` as HTML text: Html stays as it is, None is "-", anything else is escaped."""
    if isinstance(value, Html):
        return value
    return Html(html.escape(EMPTY if value is None else str(value), quote=True))


def join(parts: Iterable[Value], separator: str = "") -> Html:
    return Html(separator.join(escape(part) for part in parts))


def tag(name: str, /, *children: Value, **attributes: Value) -> Html:
    """`<name attr="value">children</name>`; attributes whose value is None or False are left
    out, True ones written bare. A trailing underscore is dropped from a name (`class_`)."""
    attrs = "".join(_attribute(key, value) for key, value in attributes.items())
    return Html(f"<{name}{attrs}>{join(children)}</{name}>")


def void(name: str, /, **attributes: Value) -> Html:
    """An element without content (`<input>`, `<img>`, `<meta>`)."""
    attrs = "".join(_attribute(key, value) for key, value in attributes.items())
    return Html(f"<{name}{attrs}>")


def _attribute(key: str, value: Value) -> str:
    if value is None or value is False:
        return ""
    name = key.rstrip("_").replace("_", "-")
    if value is True:
        return f" {name}"
    return f' {name}="{escape(value)}"'


def fill(template: Template, values: Mapping[str, Value]) -> Html:
    """`template` (trusted HTML with $names) with each value escaped unless it is Html."""
    return Html(template.substitute({key: escape(value) for key, value in values.items()}))
