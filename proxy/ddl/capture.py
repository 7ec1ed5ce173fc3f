"""What the proxy injects to record a migration, and how it finds its own replies again.

Capture runs inside the client's own transaction, so a migration and its record commit or roll
back together:

- simple protocol: a `CALL electric.capture(...)` is placed right after each DDL statement in
  the client's string (same implicit or explicit transaction). Its `proxy_tag` is '' so the
  session swallows the call's CommandComplete;
- extended protocol: the calls go as a Parse/Bind/Execute/Close/Close group just before the
  client's Sync; their five replies are the last ones before ReadyForQuery, where
  `drop_injected_tail` finds and removes them.

The captured text travels as a quoted literal of a JSON document: no migration text can end
the literal or the call early (see `rewrite.literal`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from proxy.ddl.classify import RELATION_OBJECT_TYPES, Statement
from proxy.ddl.names import QualifiedName
from proxy.ddl.rewrite import literal
from proxy.protocol.codes import Backend
from proxy.protocol.framer import Frame
from proxy.protocol.messages import decode_error_fields

SWALLOW_TAG: Final = ""  # proxy_tag meaning "drop my CommandComplete"
# Replies to the injected Parse, Bind, Execute (a CALL: CommandComplete), Close, Close.
_INJECTED_REPLIES: Final = (
    Backend.PARSE_COMPLETE,
    Backend.BIND_COMPLETE,
    Backend.COMMAND_COMPLETE,
    Backend.CLOSE_COMPLETE,
    Backend.CLOSE_COMPLETE,
)


# Words that open a command tag before the object type: "CREATE TABLE" names a "table".
_VERBS: Final = ("CREATE ", "ALTER ", "DROP ", "COMMENT ON ", "SECURITY LABEL ON ", "REFRESH ")


_SUB_OBJECTS: Final = frozenset({"OBJECT_COLUMN", "OBJECT_TABCONSTRAINT", "OBJECT_ATTRIBUTE"})


def _type_word(object_type: str) -> str:
    """'OBJECT_MATVIEW' -> 'matview': the catalog normalises the rest (schema.sql)."""
    return object_type.removeprefix("OBJECT_").replace("_", " ").lower()


def _tag_type(tag: str) -> str:
    """The object type a command tag names: 'CREATE TABLE' -> 'table', 'ALTER INDEX' -> 'index'."""
    for verb in _VERBS:
        if tag.startswith(verb):
            return tag.removeprefix(verb).removesuffix(" AS").lower()
    return tag.lower()


def statement_objects(stmt: Statement) -> list[dict[str, str | None]]:
    """The objects a statement touches, each with the type of object it is (not the verb: the
    catalog reads the definition of a "table" or an "index", not of a "create table").

    CREATE INDEX touches its table and the index; a relation renamed is touched under both
    names (the old one is gone, the new one exists).
    """
    named = [(o, _object_type(stmt)) for o in stmt.objects]
    if stmt.index is not None and stmt.index.name is not None:
        named.append((QualifiedName(stmt.index.table.schema, stmt.index.name), "index"))
    rename = stmt.rename
    if rename is not None and rename.relation is not None and rename.rename_type in RELATION_OBJECT_TYPES:
        named.append((QualifiedName(rename.relation.schema, rename.newname), _type_word(rename.rename_type)))
    if stmt.set_schema is not None and stmt.set_schema.relation is not None:
        moved = QualifiedName(stmt.set_schema.new_schema, stmt.set_schema.relation.name)
        named.append((moved, _type_word(stmt.set_schema.object_type)))
    return [{"schema": o.schema, "name": o.name, "type": kind} for o, kind in named]


def _object_type(stmt: Statement) -> str:
    """The type of the objects a statement names, by the most precise fact the classifier has."""
    if stmt.drop is not None:
        return _type_word(stmt.drop.remove_type)
    if stmt.alter is not None:
        return _type_word(stmt.alter.object_type)
    if stmt.rename is not None:
        rename = stmt.rename
        if rename.rename_type not in _SUB_OBJECTS:
            return _type_word(rename.rename_type)
        # RENAME COLUMN/CONSTRAINT change their relation. The parser leaves relation_type at its
        # enum's first value (access method) when the statement did not say (RENAME CONSTRAINT).
        unset = rename.relation_type in (None, "OBJECT_ACCESS_METHOD")
        return "table" if unset else _type_word(rename.relation_type or "")
    if stmt.index is not None or stmt.electric is not None:
        return "table"  # CREATE INDEX names its table first; ELECTRIC statements name a table
    return _tag_type(stmt.tag)


def statement_record(stmt: Statement) -> dict[str, object]:
    return {
        "sql": stmt.text,
        "tag": stmt.tag or (stmt.electric.tag if stmt.electric else ""),
        "objects": statement_objects(stmt),
    }


def capture_call(
    statements: Sequence[Statement],
    meta: Mapping[str, object],
    *,
    schema: str = "electric",
    proxy_tag: str | None = SWALLOW_TAG,
) -> str:
    records = json.dumps([statement_record(s) for s in statements], ensure_ascii=False)
    tag = "" if proxy_tag is None else f", proxy_tag => {literal(proxy_tag)}"
    return (
        f"CALL {schema}.capture({literal(records)}::jsonb, "
        f"{literal(json.dumps(meta, ensure_ascii=False))}::jsonb{tag})"
    )


def note_version_call(
    framework: str,
    version: str,
    *,
    schema: str = "electric",
    proxy_tag: str | None = SWALLOW_TAG,
    late: bool = False,
    before_ddl: bool | None = None,
    meta: Mapping[str, object] | None = None,
) -> str:
    """`note_version`, or `note_version_late` for a version written in a transaction that has
    no captured DDL (it is tied to the migration that committed just before: same session, or
    same user and client host).

    before_ddl: the framework wrote the version before the DDL it labels (Prisma's row,
    golang-migrate's dirty mark): the note opens a migration rather than closing one. None
    leaves it to the catalog (it knows Prisma and golang-migrate). meta: the client's details,
    as for capture_call; the client's host ties a version written on another connection.
    """
    args = [literal(framework), literal(version)]
    if proxy_tag is not None:
        args.append(f"proxy_tag => {literal(proxy_tag)}")
    if before_ddl is not None and not late:
        args.append(f"before_ddl => {'true' if before_ddl else 'false'}")
    if meta is not None:
        args.append(f"meta => {literal(json.dumps(meta, ensure_ascii=False))}::jsonb")
    procedure = "note_version_late" if late else "note_version"
    return f"CALL {schema}.{procedure}({', '.join(args)})"


def injected_tail_dropper(groups: int) -> Callable[[list[Frame]], list[Frame]]:
    """`drop_injected_tail` for a batch that carries `groups` injected call groups."""
    return lambda frames: drop_injected_tail(frames, groups)


def drop_injected_tail(frames: list[Frame], groups: int = 1) -> list[Frame]:
    """Remove the replies to the injected group from a batch's replies (ending in ReadyForQuery).

    Three cases: the group ran (its five replies end the batch: drop them and the notices among
    them); the client's own statement failed first (the server skipped the group: nothing to
    drop); or the capture itself failed (drop its ParseComplete and BindComplete, keep the
    error so the client learns that its migration was not applied).
    """
    ignored = (Backend.NOTICE_RESPONSE, Backend.READY_FOR_QUERY)
    body = [i for i, f in enumerate(frames) if f.type not in ignored]
    expected = list(_INJECTED_REPLIES) * groups
    if len(body) >= len(expected) and [frames[i].type for i in body[-len(expected) :]] == expected:
        first = body[-len(expected)]
        return frames[:first] + [f for f in frames[first:] if f.type == Backend.READY_FOR_QUERY]
    return _drop_failed_group(frames, body, groups)


def _drop_failed_group(frames: list[Frame], body: list[int], groups: int) -> list[Frame]:
    """A capture call failed: drop the replies of the groups that ran before it, and the failed
    group's ParseComplete and BindComplete; keep its error for the client."""
    if not body or frames[body[-1]].type != Backend.ERROR_RESPONSE or not _is_capture_error(frames[body[-1]]):
        return frames
    before = body[:-1]
    for done in range(groups - 1, -1, -1):
        pattern = [*(list(_INJECTED_REPLIES) * done), Backend.PARSE_COMPLETE, Backend.BIND_COMPLETE]
        if len(before) >= len(pattern) and [frames[i].type for i in before[-len(pattern) :]] == pattern:
            ours = set(before[-len(pattern) :])
            return [f for i, f in enumerate(frames) if i not in ours]
    return frames


def _is_capture_error(frame: Frame) -> bool:
    context = decode_error_fields(frame.body).get("W", "")
    # The public procedures, and the definer procedures they call (whose frames name them).
    return any(name in context for name in (".capture(", ".note_version(", "._capture(", "._note("))
