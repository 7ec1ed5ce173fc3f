"""Drift: the pure comparison of two schema snapshots (proxy/catalog/snapshot.py).

No I/O here. The watcher (proxy/catalog/drift_watch.py) reads snapshots, the baseline and the
migrations recorded since the last scan, and calls `reconcile`:

1. `changed_keys(baseline, live)`: the objects whose rendered attributes differ, or that exist on
   one side only. Both sides come from the same server's own renderers, so equal definitions
   are equal strings: nothing is normalised here, and nothing needs to be.
2. What a recorded migration explains (`Explanation`): where the database's DDL triggers keep a
   log, the latest logged command on the object (or on what it hangs from) decides: inside a
   recorded migration's transaction or not. Otherwise an object is explained when it, or what it
   hangs from (its table, the tables a view reads, a foreign key's target, a column's type; its
   schema only when the schema itself changed), was named or mentioned by a statement of a
   migration committed since the last scan (`statement_names`: generous on purpose, since a
   name too many costs a missed drift in that window and a name too few a false alarm).
   Explained changes move the baseline.
3. `diff(expected, actual)`: what is left, as reported changes: added, removed, modified or
   renamed (same OID, new name), each with its attributes' expected and actual values and a
   severity. The children of an added or removed object (a new table's columns and indexes) are
   folded into it; an object dropped and created again under the same name is one
   modification; a definition that changed only because it names a renamed object (an index's
   `ON table`, a view's query after a column rename) is folded into the rename.

Severity: `critical` for electrified tables, their columns, constraints, policies, triggers and
rules, and for a publication that holds an electrified table; `high` for destructive changes
(removed or renamed objects, a column type change, NOT NULL added, a partition key); `low` for
indexes added and for changes of privileges, comments or owners only; `medium` for the rest.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from proxy.catalog.snapshot import SchemaObject, Snapshot

ADDED: Final = "added"
REMOVED: Final = "removed"
MODIFIED: Final = "modified"
RENAMED: Final = "renamed"

SEVERITIES: Final = ("critical", "high", "medium", "low")

# Changes of these attributes alone are bookkeeping, not structure.
_COSMETIC: Final = frozenset({"acl", "comment", "owner"})
# Attributes whose change can break readers or lose data.
_DESTRUCTIVE: Final = frozenset({"type", "partition_key", "base_type", "labels", "attributes"})
_NAME_ATTRS: Final = frozenset({"name", "schema"})
# Objects that live in a schema's namespace under their own name; the others (columns,
# constraints, triggers, policies, rules) are reached through their table.
_NAMED_TYPES: Final = frozenset(
    {
        "schema",
        "table",
        "view",
        "materialized view",
        "foreign table",
        "sequence",
        "index",
        "enum",
        "domain",
        "composite type",
        "range type",
        "function",
        "procedure",
        "aggregate",
        "publication",
        "extension",
    }
)
# How far `explains` follows parent and related links: column -> table -> schema.
_EXPLAIN_DEPTH: Final = 3


@dataclass(frozen=True, slots=True)
class AttributeChange:
    name: str
    expected: Any
    actual: Any


@dataclass(frozen=True, slots=True)
class Change:
    """One reported difference. `keys` are every snapshot key it covers (folded children
    included): accepting the change adopts the live state of all of them."""

    key: str
    identity: str
    object_type: str
    change: str
    severity: str
    electrified: bool
    attributes: tuple[AttributeChange, ...] = ()
    previous_identity: str | None = None
    recreated: bool = False
    keys: tuple[str, ...] = ()

    def detail(self) -> dict[str, Any]:
        detail: dict[str, Any] = {
            "attributes": {a.name: {"expected": a.expected, "actual": a.actual} for a in self.attributes}
        }
        if self.previous_identity is not None:
            detail["expected_identity"] = self.previous_identity
        if self.recreated:
            detail["recreated"] = True
        if len(self.keys) > 1:
            detail["objects"] = len(self.keys)
        return detail

    def to_json(self, attribution: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """One object of `electric-proxy drift --json` (DESIGN.md section 5)."""
        return {
            "identity": self.identity,
            "object_type": self.object_type,
            "change": self.change,
            "severity": self.severity,
            "electrified": self.electrified,
            "detail": self.detail(),
            "attribution": dict(attribution) if attribution is not None else None,
        }

    def matches(self, identity: str) -> bool:
        return identity in (self.identity, self.previous_identity)


# -- raw differences ------------------------------------------------------------------------------


def changed_keys(expected: Snapshot, actual: Snapshot) -> set[str]:
    """Keys present on one side only, or whose attributes differ."""
    left, right = expected.objects, actual.objects
    changed = set(left.keys() ^ right.keys())
    for key in left.keys() & right.keys():
        if left[key].attrs != right[key].attrs:
            changed.add(key)
    return changed


def _attribute_changes(expected: SchemaObject, actual: SchemaObject) -> tuple[AttributeChange, ...]:
    names = sorted(expected.attrs.keys() | actual.attrs.keys())
    return tuple(
        AttributeChange(name, expected.attrs.get(name), actual.attrs.get(name))
        for name in names
        if expected.attrs.get(name) != actual.attrs.get(name)
    )


# -- severity -------------------------------------------------------------------------------------


def severity(kind: str, obj: SchemaObject, attributes: Iterable[AttributeChange], electrified: bool) -> str:
    changed = {a.name for a in attributes}
    cosmetic = kind == MODIFIED and bool(changed) and changed <= _COSMETIC
    if electrified and obj.object_type != "index" and changed != {"comment"}:
        return "critical"
    if obj.object_type == "index":
        return "low" if kind == ADDED or cosmetic else "medium"
    if kind in (REMOVED, RENAMED):
        return "high"
    if cosmetic:
        return "low"
    if changed & _DESTRUCTIVE or _tightened(attributes):
        return "high"
    return "medium"


def _tightened(attributes: Iterable[AttributeChange]) -> bool:
    return any(a.name == "not_null" and a.actual is True and not a.expected for a in attributes)


# -- the diff -------------------------------------------------------------------------------------


def diff(expected: Snapshot, actual: Snapshot) -> list[Change]:
    """The reported changes from `expected` to `actual`, most severe first, then by identity."""
    keys = changed_keys(expected, actual)
    left, right = expected.objects, actual.objects
    removed = {k for k in keys if k not in right}
    added = {k for k in keys if k not in left}
    changes: list[Change] = []
    recreated = _recreated_pairs(left, right, removed, added)
    for old_key, new_key in recreated.items():
        changes.append(_modified(left[old_key], right[new_key], recreated=True, keys=(old_key, new_key)))
    removed -= recreated.keys()
    added -= set(recreated.values())
    folded = _fold(removed, left) | _fold(added, right)
    for key in sorted(keys):
        if key in folded or key in recreated or key in recreated.values():
            continue
        if key in removed:
            changes.append(_whole(REMOVED, left[key], _family(key, removed, left)))
        elif key in added:
            changes.append(_whole(ADDED, right[key], _family(key, added, right)))
        else:
            changes.append(_modified(left[key], right[key], recreated=False, keys=(key,)))
    changes = _fold_consequences(changes)
    changes.sort(key=lambda c: (SEVERITIES.index(c.severity), c.identity, c.key))
    return changes


def _fold_consequences(changes: list[Change]) -> list[Change]:
    """Fold into a rename the modifications that are only its echo: an index, trigger or view
    whose rendered text names the renamed object, and differs by exactly that name."""
    renames = [c for c in changes if c.change == RENAMED]
    if not renames:
        return changes
    swaps = {c.key: _name_swaps(c) for c in renames}
    folded: dict[str, list[str]] = {c.key: [] for c in renames}
    kept: list[Change] = []
    for change in changes:
        owner = _echo_of(change, renames, swaps) if change.change == MODIFIED else None
        if owner is None:
            kept.append(change)
        else:
            folded[owner].extend(change.keys)
    return [dataclasses.replace(c, keys=(*c.keys, *folded[c.key])) if folded.get(c.key) else c for c in kept]


def _name_swaps(change: Change) -> list[tuple[re.Pattern[str], str]]:
    """(pattern, replacement) pairs turning the old names of a renamed object into the new."""
    pairs: list[tuple[str, str]] = []
    if change.previous_identity is not None:
        pairs.append((change.previous_identity, change.identity))
    for attribute in change.attributes:
        if (
            attribute.name == "name"
            and isinstance(attribute.expected, str)
            and isinstance(attribute.actual, str)
        ):
            pairs.append((f'"{attribute.expected}"', f'"{attribute.actual}"'))
            pairs.append((attribute.expected, attribute.actual))
    return [(re.compile(r'(?<![\w$"])' + re.escape(old) + r'(?![\w$"])'), new) for old, new in pairs]


def _echo_of(
    change: Change, renames: list[Change], swaps: Mapping[str, list[tuple[re.Pattern[str], str]]]
) -> str | None:
    texts = [(a.expected, a.actual) for a in change.attributes]
    if not texts or not all(isinstance(e, str) and isinstance(a, str) for e, a in texts):
        return None
    for rename in renames:
        if all(_swap(str(e), swaps[rename.key]) == a for e, a in texts):
            return rename.key
    return None


def _swap(text: str, swaps: list[tuple[re.Pattern[str], str]]) -> str:
    for pattern, new in swaps:
        text = pattern.sub(new.replace("\\", "\\\\"), text)  # the new name, literally
    return text


def _recreated_pairs(
    left: Mapping[str, SchemaObject], right: Mapping[str, SchemaObject], removed: set[str], added: set[str]
) -> dict[str, str]:
    """Removed -> added keys of objects of one type and identity: dropped and created again."""
    by_identity = {(right[k].object_type, right[k].identity): k for k in added}
    pairs: dict[str, str] = {}
    for key in removed:
        match = by_identity.get((left[key].object_type, left[key].identity))
        if match is not None:
            pairs[key] = match
    return pairs


def _ancestors(key: str, objects: Mapping[str, SchemaObject]) -> Iterable[str]:
    seen: set[str] = set()
    parent = objects[key].parent
    while parent is not None and parent in objects and parent not in seen:
        seen.add(parent)
        yield parent
        parent = objects[parent].parent


def _fold(keys: set[str], objects: Mapping[str, SchemaObject]) -> set[str]:
    """The keys whose parent (or grandparent) is in the same set: reported with it."""
    return {k for k in keys if any(a in keys for a in _ancestors(k, objects))}


def _family(key: str, keys: set[str], objects: Mapping[str, SchemaObject]) -> tuple[str, ...]:
    return (key, *sorted(k for k in keys if k != key and key in _ancestors(k, objects)))


def _whole(kind: str, obj: SchemaObject, keys: tuple[str, ...]) -> Change:
    values = sorted(obj.attrs.items())
    attributes = tuple(
        AttributeChange(name, None, value) if kind == ADDED else AttributeChange(name, value, None)
        for name, value in values
    )
    return Change(
        key=obj.key,
        identity=obj.identity,
        object_type=obj.object_type,
        change=kind,
        severity=severity(kind, obj, (), obj.electrified),
        electrified=obj.electrified,
        attributes=attributes,
        keys=keys,
    )


def _modified(
    expected: SchemaObject, actual: SchemaObject, *, recreated: bool, keys: tuple[str, ...]
) -> Change:
    attributes = _attribute_changes(expected, actual)
    renamed = not recreated and any(a.name in _NAME_ATTRS for a in attributes)
    kind = RENAMED if renamed else MODIFIED
    electrified = expected.electrified or actual.electrified
    return Change(
        key=actual.key,
        identity=actual.identity,
        object_type=actual.object_type,
        change=kind,
        severity=severity(kind, actual, attributes, electrified),
        electrified=electrified,
        attributes=attributes,
        previous_identity=expected.identity if expected.identity != actual.identity else None,
        recreated=recreated,
        keys=keys,
    )


# -- what migrations explain ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Explanation:
    """What the migrations committed since the last scan touched.

    `names`: (schema, name) of the objects their statements named or mention (see
    `statement_names`); a None schema matches any.
    `schemas`: schemas a statement reached whole (`statement_reach`): all their objects.
    `everything`: a statement that changes what it does not name (REASSIGN OWNED).
    `logged`: from the database's DDL log, when it exists: snapshot key -> whether the latest
    command logged on that object ran in a recorded migration's transaction. It is exact, so it
    decides before the names do.
    """

    names: frozenset[tuple[str | None, str]] = frozenset()
    schemas: frozenset[str] = frozenset()
    everything: bool = False
    logged: Mapping[str, bool] = field(default_factory=dict)


def explains(explanation: Explanation, key: str, expected: Snapshot, actual: Snapshot) -> bool:
    """Whether the change of `key` is explained: it or an object it hangs from was touched."""
    verdict = _logged_verdict(explanation, key, expected, actual)
    if verdict is not None:
        return verdict
    if explanation.everything:
        return True
    if explanation.schemas and any(
        obj.schema in explanation.schemas
        for obj in (expected.objects.get(key), actual.objects.get(key))
        if obj is not None
    ):
        return True
    if not explanation.names:
        return False
    frontier = {key}
    seen: set[str] = set()
    for _ in range(_EXPLAIN_DEPTH + 1):
        following: set[str] = set()
        for current in frontier - seen:
            seen.add(current)
            for snapshot in (expected, actual):
                obj = snapshot.objects.get(current)
                if obj is None:
                    continue
                if _named(explanation, obj) and (current == key or _reaches(obj, current, expected, actual)):
                    return True
                following.update(obj.related)
                if obj.parent is not None:
                    following.add(obj.parent)
        frontier = following
    return False


def _logged_verdict(explanation: Explanation, key: str, expected: Snapshot, actual: Snapshot) -> bool | None:
    """The DDL log's word on `key`, or on its nearest logged ancestor (an ALTER TABLE is logged
    on the table, not on the column it adds)."""
    if not explanation.logged:
        return None
    for candidate in lineage(key, expected, actual):
        if candidate in explanation.logged:
            return explanation.logged[candidate]
    return None


def lineage(key: str, expected: Snapshot, actual: Snapshot) -> list[str]:
    """`key` and its ancestors, nearest first, as either snapshot knows them."""
    chain = [key]
    for snapshot in (actual, expected):
        if key in snapshot.objects:
            chain.extend(a for a in _ancestors(key, snapshot.objects) if a not in chain)
    return chain


def _reaches(ancestor: SchemaObject, key: str, expected: Snapshot, actual: Snapshot) -> bool:
    """Whether a named ancestor explains its descendants' changes: always, except a schema,
    which does only when it changed itself (created, dropped, renamed): a statement that merely
    mentions `public` must not explain every change in it."""
    if ancestor.object_type != "schema":
        return True
    before, after = expected.objects.get(key), actual.objects.get(key)
    return before is None or after is None or before.name != after.name


# A quoted identifier, a word, or a string literal (skipped); names are dotted chains of these.
_TOKEN: Final = re.compile(
    r"""'(?:[^']|'')*'|"((?:[^"]|"")+)"|([A-Za-z_\x80-\uffff][\w$\x80-\uffff]*)|(\.)|\S"""
)


def statement_names(text: str) -> set[tuple[str | None, str]]:
    """The (schema, name) pairs a statement's text may refer to, generously: every identifier
    alone, and every dotted pair `a.b` as a qualified name (`a.b.c` gives `a.b`, a column's
    table). Unquoted words fold to lower case, as Postgres folds them. Too many names only make
    the scan explain a little more; too few would report a migration's own change as drift."""
    names: set[tuple[str | None, str]] = set()
    chain: list[str] = []
    dotted = False
    for match in _TOKEN.finditer(text):
        quoted, word, dot = match.group(1), match.group(2), match.group(3)
        if quoted is not None or word is not None:
            name = quoted.replace('""', '"') if quoted is not None else word.lower()
            chain = [*chain, name] if dotted else [name]
            dotted = False
            names.add((None, name))
            if len(chain) in (2, 3):
                names.add((chain[-2] if len(chain) == 2 else chain[0], chain[1]))
        elif dot is not None and chain:
            dotted = True
        else:
            chain, dotted = [], False
    return names


_ALL_IN_SCHEMA_KINDS: Final = frozenset({"tables", "sequences", "functions", "procedures", "routines"})
# Statements that change objects they do not name at all (REASSIGN OWNED BY r, DROP OWNED BY r).
_UNNAMED_REACH: Final = (("reassign", "owned"), ("drop", "owned"))


def statement_reach(text: str) -> tuple[frozenset[str], bool]:
    """What a statement may change beyond the names in its text: the schemas it reaches whole
    (`GRANT ... ON ALL TABLES IN SCHEMA s`, `IMPORT FOREIGN SCHEMA x ... INTO s`), and whether it
    may change objects it names nowhere (`REASSIGN OWNED`, `DROP OWNED`)."""
    words: list[tuple[str, bool]] = []  # (name, quoted)
    for match in _TOKEN.finditer(text):
        quoted, word = match.group(1), match.group(2)
        if quoted is not None:
            words.append((quoted.replace('""', '"'), True))
        elif word is not None:
            words.append((word.lower(), False))
        elif match.group(0) != ",":
            words.append(("", False))  # punctuation other than a list's comma ends a name list
    plain = [w if not q else "" for w, q in words]
    if tuple(plain[:2]) in _UNNAMED_REACH:
        return frozenset(), True
    schemas: set[str] = set()
    for index in range(len(words) - 1):
        if (plain[index], plain[index + 1]) == ("in", "schema") and index >= 2 and plain[index - 2] == "all":
            if plain[index - 1] in _ALL_IN_SCHEMA_KINDS:
                schemas |= _name_list(words[index + 2 :])
        elif plain[index] == "into" and "import" in plain[:1]:
            schemas |= _name_list(words[index + 1 :])
    return frozenset(schemas), False


def _name_list(words: list[tuple[str, bool]]) -> set[str]:
    """Names up to the first keyword that ends a GRANT's schema list (TO, FROM) or the text."""
    names: set[str] = set()
    for word, quoted in words:
        if not word or (not quoted and word in ("to", "from", "options", "cascade", "restrict")):
            break
        names.add(word)
    return names


def _named(explanation: Explanation, obj: SchemaObject) -> bool:
    if obj.object_type not in _NAMED_TYPES:
        return False
    names = explanation.names
    return (obj.schema, obj.name) in names or (None, obj.name) in names


# -- moving the baseline ----------------------------------------------------------------------------


def adopt(baseline: Snapshot, live: Snapshot, keys: Iterable[str]) -> Snapshot:
    """`baseline` with the live state of `keys` (an object gone from `live` leaves it)."""
    objects = dict(baseline.objects)
    for key in keys:
        found = live.objects.get(key)
        if found is None:
            objects.pop(key, None)
        else:
            objects[key] = found
    return Snapshot.build(objects.values())


@dataclass(frozen=True, slots=True)
class Reconciled:
    baseline: Snapshot  # the baseline with the explained changes adopted
    adopted: frozenset[str]  # the keys adopted
    drift: list[Change]  # what no migration explains


def reconcile(baseline: Snapshot, live: Snapshot, explanation: Explanation) -> Reconciled:
    """Adopt what `explanation` explains; report the rest."""
    changed = changed_keys(baseline, live)
    explained = frozenset(k for k in changed if explains(explanation, k, baseline, live))
    advanced = adopt(baseline, live, explained) if explained else baseline
    return Reconciled(advanced, explained, diff(advanced, live))


def accepted_keys(changes: Iterable[Change], identities: Iterable[str] | None) -> tuple[set[str], set[str]]:
    """The snapshot keys of the changes named by `identities` (all of them when None), and the
    identities that named no change."""
    wanted = None if identities is None else set(identities)
    keys: set[str] = set()
    used: set[str] = set()
    for change in changes:
        if wanted is None:
            keys.update(change.keys)
            continue
        hits = {i for i in wanted if change.matches(i)}
        if hits:
            used |= hits
            keys.update(change.keys)
    unknown = set() if wanted is None else wanted - used
    return keys, unknown
