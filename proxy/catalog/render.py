"""Recorded definitions (migration_objects, see catalog/sql/README.md, DEFINITIONS) as SQL a person
can read, and the difference between two recorded schemas, object by object.

Pure functions over the JSON the catalog stores: no connection, no Postgres. `show`, `schema --at`
and `schema --diff` print through here, and the drift report reuses the same renderer and diff, so
that a change reads the same wherever it is shown.

The definitions were rendered by Postgres itself under `search_path = pg_catalog`: types,
defaults, constraints and index statements are already exact SQL with qualified names; this module
only lays them out (CREATE statements, one column per line) and quotes the bare names it adds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

Definition = Mapping[str, Any]
Change = Literal["added", "removed", "modified"]

_BARE: Final = re.compile(r"[a-z_][a-z0-9_$]*")
# Reserved words that a bare identifier may not be (the ones a schema is likely to use as names).
_RESERVED: Final = frozenset(
    {
        "all",
        "analyse",
        "analyze",
        "and",
        "any",
        "array",
        "as",
        "asc",
        "asymmetric",
        "both",
        "case",
        "cast",
        "check",
        "collate",
        "column",
        "constraint",
        "create",
        "current_catalog",
        "current_date",
        "current_role",
        "current_time",
        "current_timestamp",
        "current_user",
        "default",
        "deferrable",
        "desc",
        "distinct",
        "do",
        "else",
        "end",
        "except",
        "false",
        "fetch",
        "for",
        "foreign",
        "from",
        "grant",
        "group",
        "having",
        "in",
        "initially",
        "intersect",
        "into",
        "lateral",
        "leading",
        "limit",
        "localtime",
        "localtimestamp",
        "not",
        "null",
        "offset",
        "on",
        "only",
        "or",
        "order",
        "placing",
        "primary",
        "references",
        "returning",
        "select",
        "session_user",
        "some",
        "symmetric",
        "table",
        "then",
        "to",
        "trailing",
        "true",
        "union",
        "unique",
        "user",
        "using",
        "variadic",
        "when",
        "where",
        "window",
        "with",
    }
)


def quote_ident(name: str) -> str:
    """An identifier as SQL needs it: bare when it may be, else double-quoted."""
    if _BARE.fullmatch(name) and name not in _RESERVED:
        return name
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, name: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(name)}"


# -- one object as SQL --------------------------------------------------------------------------------


def render(definition: Definition) -> str:
    """The recorded definition as the SQL statements that would create it."""
    renderer = _RENDERERS.get(str(definition.get("kind")), _render_unknown)
    return renderer(definition)


def column_sql(column: Definition) -> str:
    """`name type [COLLATE c] [GENERATED ...] [DEFAULT d] [NOT NULL]`."""
    words = [quote_ident(column["name"]), column["type"]]
    if column.get("collation"):
        words.append(f"COLLATE {column['collation']}")
    if column.get("identity"):
        words.append(f"GENERATED {column['identity'].upper()} AS IDENTITY")
    if column.get("generated") is not None:
        words.append(f"GENERATED ALWAYS AS ({column['generated']}) STORED")
    if column.get("default") is not None:
        words.append(f"DEFAULT {column['default']}")
    if column.get("not_null"):
        words.append("NOT NULL")
    return " ".join(words)


def _render_table(d: Definition) -> str:
    name = qualified(d["schema"], d["name"])
    body = [column_sql(c) for c in d.get("columns", [])]
    body += [
        f"CONSTRAINT {quote_ident(c['name'])} {c['definition']}"
        for c in d.get("constraints", [])
        if c.get("type") != "not null"  # shown on the column (Postgres 18 records them too)
    ]
    words = {"foreign table": "CREATE FOREIGN TABLE"}.get(d["kind"], "CREATE TABLE")
    if d.get("persistence") == "unlogged":
        words = "CREATE UNLOGGED TABLE"
    head = f"{words} {name} (" + "".join(f"\n    {line}," for line in body).rstrip(",") + "\n)"
    if d.get("partition_of"):
        head = f"{words} {name} PARTITION OF {d['partition_of']} {d.get('partition_bound', '')}".rstrip()
    if d.get("partition_key"):
        head += f" PARTITION BY {d['partition_key']}"
    statements = [head]
    statements += [i["definition"] for i in d.get("indexes", []) if not _backs_constraint(i, d)]
    statements += [t["definition"] for t in d.get("triggers", [])]
    if d.get("replica_identity") not in (None, "default"):
        statements.append(f"ALTER TABLE {name} REPLICA IDENTITY {str(d['replica_identity']).upper()}")
    if d.get("row_security"):
        statements.append(f"ALTER TABLE {name} ENABLE ROW LEVEL SECURITY")
    if d.get("electrified"):
        statements.append(f"ALTER TABLE {name} ENABLE ELECTRIC")
    return ";\n".join(statements) + ";"


def _backs_constraint(index: Definition, table: Definition) -> bool:
    """Primary key and unique constraints bring their index: it is said once, by the constraint."""
    return any(
        c["name"] == index["name"] and c.get("type") in ("primary key", "unique", "exclusion")
        for c in table.get("constraints", [])
    )


def _render_view(d: Definition) -> str:
    words = "CREATE MATERIALIZED VIEW" if d["kind"] == "materialized view" else "CREATE VIEW"
    query = str(d.get("query", "")).rstrip().rstrip(";")
    return f"{words} {qualified(d['schema'], d['name'])} AS\n{query};"


def _render_index(d: Definition) -> str:
    return f"{d.get('definition', '-- index ' + qualified(d['schema'], d['name']))};"


def _render_sequence(d: Definition) -> str:
    words = [f"CREATE SEQUENCE {qualified(d['schema'], d['name'])}"]
    for key, word in (
        ("type", "AS"),
        ("increment", "INCREMENT BY"),
        ("min", "MINVALUE"),
        ("max", "MAXVALUE"),
    ):
        if d.get(key) is not None:
            words.append(f"{word} {d[key]}")
    for key, word in (("start", "START WITH"), ("cache", "CACHE")):
        if d.get(key) is not None:
            words.append(f"{word} {d[key]}")
    if d.get("cycle"):
        words.append("CYCLE")
    return " ".join(words) + ";"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _render_enum(d: Definition) -> str:
    labels = ", ".join(_literal(label) for label in d.get("labels", []))
    return f"CREATE TYPE {qualified(d['schema'], d['name'])} AS ENUM ({labels});"


def _render_domain(d: Definition) -> str:
    words = [f"CREATE DOMAIN {qualified(d['schema'], d['name'])} AS {d.get('base_type')}"]
    if d.get("default") is not None:
        words.append(f"DEFAULT {d['default']}")
    if d.get("not_null"):
        words.append("NOT NULL")
    words += [f"CONSTRAINT {quote_ident(c['name'])} {c['definition']}" for c in d.get("constraints", [])]
    return " ".join(words) + ";"


def _render_composite(d: Definition) -> str:
    attributes = ",".join(f"\n    {quote_ident(a['name'])} {a['type']}" for a in d.get("attributes", []))
    return f"CREATE TYPE {qualified(d['schema'], d['name'])} AS ({attributes}\n);"


def _render_range(d: Definition) -> str:
    return f"CREATE TYPE {qualified(d['schema'], d['name'])} AS RANGE (SUBTYPE = {d.get('subtype')});"


def _render_routine(d: Definition) -> str:
    parts = []
    for overload in d.get("overloads", []):
        text = overload.get("definition")
        if text:
            parts.append(str(text).rstrip().rstrip(";") + ";")
        else:
            name = qualified(d["schema"], d["name"])
            parts.append(f"-- {overload.get('kind')} {name}({overload.get('arguments', '')})")
    return "\n".join(parts)


def _render_unknown(d: Definition) -> str:
    return f"-- {d.get('kind')} {qualified(str(d.get('schema')), str(d.get('name')))}"


_RENDERERS: Final[dict[str, Callable[[Definition], str]]] = {
    "table": _render_table,
    "partitioned table": _render_table,
    "foreign table": _render_table,
    "view": _render_view,
    "materialized view": _render_view,
    "index": _render_index,
    "partitioned index": _render_index,
    "sequence": _render_sequence,
    "enum": _render_enum,
    "domain": _render_domain,
    "composite type": _render_composite,
    "range": _render_range,
    "routine": _render_routine,
}


# -- two schemas, object by object -----------------------------------------------------------------


@dataclass(frozen=True)
class ObjectChange:
    """One object that differs between two schemas. `details`: one line per difference, in the
    words a reviewer reads ("column added: note text", "index dropped: items_name")."""

    key: tuple[str, str, str]  # (object_type, schema, name)
    kind: str  # "table", "index", ... (the later definition's when there is one)
    change: Change
    details: tuple[str, ...] = field(default=())
    before: Definition | None = None
    after: Definition | None = None

    @property
    def identity(self) -> str:
        return qualified(self.key[1], self.key[2])

    def as_json(self) -> dict[str, object]:
        return {
            "object_type": self.key[0],
            "schema": self.key[1],
            "name": self.key[2],
            "kind": self.kind,
            "change": self.change,
            "details": list(self.details),
            "before": self.before,
            "after": self.after,
        }


Key = tuple[str, str, str]  # (object_type, schema, name)
Keyed = Mapping[Key, Definition]


def keyed(objects: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str, str], Definition]:
    """`schema_at()` objects (or any `{object_type, schema, name, definition}`) by their key."""
    return {(o["object_type"], o["schema"], o["name"]): o["definition"] for o in objects if o["definition"]}


def diff(before: Keyed, after: Keyed) -> list[ObjectChange]:
    """What changed from `before` to `after`, sorted by schema, name and namespace.

    An index that a table embeds is reported once, on its own: the table's line says nothing of
    it, so that the change reads as one line per object the migration touched.
    """
    changes = []
    for key in sorted(before.keys() | after.keys(), key=lambda k: (k[1], k[2], k[0])):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if old is None and new is not None:
            changes.append(ObjectChange(key, str(new.get("kind")), "added", (), None, new))
        elif new is None and old is not None:
            changes.append(ObjectChange(key, str(old.get("kind")), "removed", (), old, None))
        elif old is not None and new is not None:
            details = tuple(_details(old, new, standalone_indexes=before.keys() | after.keys()))
            if details:
                changes.append(ObjectChange(key, str(new.get("kind")), "modified", details, old, new))
    return changes


def _details(
    old: Definition, new: Definition, standalone_indexes: Iterable[tuple[str, str, str]]
) -> list[str]:
    lines: list[str] = []
    if old.get("kind") != new.get("kind"):
        lines.append(f"kind: {old.get('kind')} -> {new.get('kind')}")
    lines += _named_parts("column", old.get("columns", []), new.get("columns", []), column_sql)
    lines += _named_parts(
        "constraint", old.get("constraints", []), new.get("constraints", []), _definition_of
    )
    recorded = {name for kind, _schema, name in standalone_indexes if kind == "relation"}
    lines += _named_parts(
        "index",
        [i for i in old.get("indexes", []) if i["name"] not in recorded],
        [i for i in new.get("indexes", []) if i["name"] not in recorded],
        _definition_of,
    )
    lines += _named_parts("trigger", old.get("triggers", []), new.get("triggers", []), _definition_of)
    lines += _named_parts(
        "overload", old.get("overloads", []), new.get("overloads", []), _definition_of, key="arguments"
    )
    handled = {"columns", "constraints", "indexes", "triggers", "overloads", "kind"}
    for name in sorted((old.keys() | new.keys()) - handled):
        if old.get(name) != new.get(name):
            lines.append(f"{name.replace('_', ' ')}: {_short(old.get(name))} -> {_short(new.get(name))}")
    return lines


def _definition_of(part: Definition) -> str:
    return str(part.get("definition") or part.get("name"))


def _named_parts(
    word: str,
    old: Sequence[Definition],
    new: Sequence[Definition],
    text: Callable[[Definition], str],
    key: str = "name",
) -> list[str]:
    """Added, dropped and changed members of a list keyed by `key`, in the later order."""
    before = {str(p.get(key)): p for p in old}
    after = {str(p.get(key)): p for p in new}
    lines = [f"{word} dropped: {text(before[k])}" for k in before if k not in after]
    for k, part in after.items():
        if k not in before:
            lines.append(f"{word} added: {text(part)}")
        elif before[k] != part:
            lines.append(f"{word} changed: {text(before[k])} -> {text(part)}")
    return lines


def _short(value: object) -> str:
    return "-" if value is None else " ".join(str(value).split())


def diff_lines(changes: Sequence[ObjectChange]) -> list[str]:
    """The diff as text: `+` added objects with their SQL, `-` removed ones, `~` modified ones
    with one line per difference."""
    lines: list[str] = []
    for change in changes:
        if change.change == "added" and change.after is not None:
            lines.append(f"+ {change.kind} {change.identity}")
            lines += [f"    {line}" for line in render(change.after).splitlines()]
        elif change.change == "removed":
            lines.append(f"- {change.kind} {change.identity}")
        else:
            lines.append(f"~ {change.kind} {change.identity}")
            lines += [f"    {line}" for line in change.details]
    return lines
