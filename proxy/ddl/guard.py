"""The migration guard as one client session sees it: sans-IO, no sockets, no database.

`SessionGuard` turns the SQL of a `Query` or `Parse` into a verdict: forward it, or send a
replacement (ELECTRIC statements become procedure calls, a rejected string becomes a statement
that raises the guard's error). It decides with what it can know without a round trip:

- the catalog snapshot (relations, electrified tables, their indexes) kept fresh by the
  catalog watcher;
- the session's `search_path`, learned at login and followed through `SET`/`RESET`;
- what the open transaction did already (tables created, dropped, renamed, electrified):
  statements are judged in order, so `CREATE TABLE t; ALTER TABLE t ENABLE ELECTRIC; ALTER
  TABLE t ADD COLUMN c int` in one string sees `t` electrified by the third statement.

The session reports how each transaction ended (`end_transaction`). Until the watcher has
reloaded the catalog after a commit, the committed changes stay in a `SharedOverlay` that every
session of the database consults: a migration's next connection must not find its tables
unguarded for the few milliseconds the reload takes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final, Literal

from proxy.catalog.cache import CatalogSnapshot
from proxy.ddl import electric, rewrite, rules
from proxy.ddl.classify import Kind, SetAction, Statement, classify
from proxy.ddl.names import QualifiedName
from proxy.ddl.rules import Decision, TableId, Verdict
from proxy.errors import GuardError

DEFAULT_SEARCH_PATH: Final = ("$user", "public")
_TABLE_OBJECTS: Final = frozenset({"OBJECT_TABLE", "OBJECT_PARTITIONED_TABLE"})


@dataclass
class Overlay:
    """Schema changes not yet visible in the catalog snapshot."""

    created: set[TableId] = field(default_factory=set)
    dropped: set[TableId] = field(default_factory=set)
    electrified: set[TableId] = field(default_factory=set)
    disabled: set[TableId] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.created or self.dropped or self.electrified or self.disabled)

    def create(self, table: TableId) -> None:
        self.created.add(table)
        self.dropped.discard(table)

    def drop(self, table: TableId) -> None:
        self.dropped.add(table)
        self.created.discard(table)
        self.electrified.discard(table)

    def merge(self, other: Overlay) -> None:
        for table in other.dropped:
            self.drop(table)
        for table in other.created:
            self.create(table)
        for table in other.disabled:
            self.electrified.discard(table)
            self.disabled.add(table)
        for table in other.electrified:
            self.disabled.discard(table)
            self.electrified.add(table)


class SharedOverlay:
    """Committed changes of one database that its catalog snapshot may not show yet."""

    def __init__(self) -> None:
        self._entries: list[tuple[int, Overlay]] = []
        self._generation = 0
        self._view = Overlay()

    def merge(self, overlay: Overlay) -> int:
        """Add a committed transaction's changes; returns the generation to `expire` later."""
        self._generation += 1
        self._entries.append((self._generation, overlay))
        self._view.merge(overlay)
        return self._generation

    def expire(self, generation: int) -> None:
        """A snapshot read after generation `generation` committed now holds those changes."""
        self._entries = [(g, o) for g, o in self._entries if g > generation]
        self._view = Overlay()
        for _, overlay in self._entries:
            self._view.merge(overlay)

    @property
    def view(self) -> Overlay:
        return self._view


@dataclass(frozen=True, slots=True)
class Inspection:
    statements: tuple[Statement, ...]
    decisions: tuple[Decision, ...]
    replacement: str | None = None  # None: forward the client's bytes untouched
    tags: int = 0  # ELECTRIC statements rewritten: command-tag notices to expect
    rejected: GuardError | None = None

    @property
    def ddl(self) -> bool:
        return any(s.ddl for s in self.statements)


class SessionGuard:
    def __init__(
        self,
        snapshot: Callable[[], CatalogSnapshot],
        *,
        user: str,
        catalog_schema: str = "electric",
        do_blocks: Literal["reject", "allow"] = "reject",
        on_parse_error: Literal["forward", "reject"] = "forward",
        shared: SharedOverlay | None = None,
    ) -> None:
        self._snapshot = snapshot
        self.shared = shared if shared is not None else SharedOverlay()
        self.user = user
        self.catalog_schema = catalog_schema
        self.do_blocks: Literal["reject", "allow"] = do_blocks
        self.on_parse_error = on_parse_error
        self.default_path: tuple[str, ...] = DEFAULT_SEARCH_PATH  # what RESET goes back to
        self.session_path: tuple[str, ...] = DEFAULT_SEARCH_PATH  # outside SET LOCAL
        self.search_path: tuple[str, ...] = DEFAULT_SEARCH_PATH  # in effect now
        self.tx = Overlay()
        self.prepared: dict[bytes, tuple[Statement, ...]] = {}

    # -- what the session tells the guard ---------------------------------------------------

    def learn_search_path(self, value: str, user: str | None = None) -> None:
        """The session's real search_path, read from the server at login."""
        self.default_path = self.session_path = self.search_path = parse_search_path(value)
        if user:
            self.user = user

    def end_transaction(self, committed: bool) -> int | None:
        """The transaction ended. When it committed schema changes the snapshot must catch up on,
        returns their generation in the shared overlay (to expire once the catalog is reloaded)."""
        generation = self.shared.merge(self.tx) if self.tx and committed else None
        self.tx = Overlay()
        self.search_path = self.session_path  # SET LOCAL ends with the transaction
        return generation

    @property
    def committed(self) -> Overlay:
        return self.shared.view

    @property
    def in_flight(self) -> bool:
        return bool(self.tx)

    # -- inspection --------------------------------------------------------------------------

    def inspect(self, sql: str, *, name: bytes | None = None) -> Inspection:
        """Judge `sql` (a Query's string, or a Parse's with statement `name`)."""
        statements = tuple(classify(sql))
        decisions: list[Decision] = []
        for stmt in statements:
            decision = self._decide(stmt)
            decisions.append(decision)
            if decision.verdict is Verdict.REJECT:
                return self._rejected(statements, tuple(decisions), decision.error)
            self._apply(stmt)
        if name and any(s.ddl for s in statements):
            self.prepared[name] = statements
        return self._rewritten(sql, statements, tuple(decisions))

    def recheck(self, name: bytes) -> GuardError | None:
        """A named prepared statement is executed again: the tables it names may have changed."""
        for stmt in self.prepared.get(name, ()):
            decision = self._decide(stmt)
            if decision.verdict is Verdict.REJECT:
                return decision.error
        return None

    def _decide(self, stmt: Statement) -> Decision:
        if stmt.kind is Kind.UNPARSABLE:
            return self._unparsable(stmt)
        snap = self._snapshot()
        return rules.check(
            stmt,
            self.resolve,
            self.is_electrified,
            index_table=self.index_table,
            schema_has_electrified=self.schema_has_electrified,
            any_electrified=snap.any_electrified or bool(self.tx.electrified or self.committed.electrified),
            do_blocks=self.do_blocks,
        )

    def _unparsable(self, stmt: Statement) -> Decision:
        error = stmt.error or GuardError("syntax error", sqlstate="42601")
        # A malformed ELECTRIC statement is ours to report; other SQL Postgres reports itself,
        # with its own wording, unless the policy says to refuse what cannot be inspected.
        if self.on_parse_error == "reject" or "electric" in stmt.text.lower():
            return Decision(Verdict.REJECT, error=error)
        return rules.ALLOW

    def _rejected(
        self, statements: tuple[Statement, ...], decisions: tuple[Decision, ...], error: GuardError | None
    ) -> Inspection:
        assert error is not None
        return Inspection(statements, decisions, rewrite.raising_statement(error), rejected=error)

    def _rewritten(
        self, sql: str, statements: tuple[Statement, ...], decisions: tuple[Decision, ...]
    ) -> Inspection:
        schema = self.catalog_schema
        calls = [(s, rewrite.electric_call(s.electric, schema)) for s in statements if s.electric]
        if not calls:
            return Inspection(statements, decisions)
        pieces: list[str] = []
        cursor = 0
        for stmt, call in calls:
            pieces += [sql[cursor : stmt.start], call]
            cursor = stmt.start + len(stmt.text)
        pieces.append(sql[cursor:])
        return Inspection(statements, decisions, "".join(pieces), tags=len(calls))

    # -- following the statements' effects ----------------------------------------------------

    def _apply(self, stmt: Statement) -> None:
        effect = _EFFECTS.get(stmt.kind)
        if effect is not None:
            effect(self, stmt)

    def _on_create_table(self, stmt: Statement) -> None:
        if stmt.create_table is not None:
            self.tx.create(self.creation_target(stmt.create_table.table))

    def _on_drop(self, stmt: Statement) -> None:
        if stmt.drop is None or stmt.drop.remove_type not in _TABLE_OBJECTS:
            return
        for name in stmt.objects:
            table = self.resolve(name)
            if table is not None:
                self.tx.drop(table)

    def _on_rename(self, stmt: Statement) -> None:
        facts = stmt.rename
        if facts is None or facts.rename_type not in _TABLE_OBJECTS or facts.relation is None:
            return
        table = self.resolve(facts.relation)
        if table is not None:
            self.tx.drop(table)
            self.tx.create(TableId(table.schema, facts.newname))

    def _on_electric(self, stmt: Statement) -> None:
        command = stmt.electric
        if isinstance(command, electric.ElectricEnable | electric.ElectricDisable):
            # A table the snapshot does not know yet (created directly a moment ago) is where
            # Postgres would create it: the first existing schema on the path.
            table = self.resolve(command.table) or self.creation_target(command.table)
            if isinstance(command, electric.ElectricEnable):
                self.tx.disabled.discard(table)
                self.tx.electrified.add(table)
            else:
                self.tx.electrified.discard(table)
                self.tx.disabled.add(table)

    def _on_set(self, stmt: Statement) -> None:
        facts = stmt.setting
        if facts is None or facts.name not in (None, "search_path"):
            return
        if facts.action is SetAction.VALUE and facts.values:
            # Identifiers come folded by the parser; a quoted list ('a, b') is split here.
            path = tuple(p for v in facts.values for p in (parse_search_path(v) if "," in v else (v,)))
        else:  # RESET, SET ... TO DEFAULT, RESET ALL, DISCARD ALL
            path = self.default_path
        self.search_path = path
        if not facts.local:
            self.session_path = path

    # -- lookups handed to the rules -----------------------------------------------------------

    def path_schemas(self) -> list[str]:
        path = [self.user if item == "$user" else item for item in self.search_path]
        if "pg_catalog" not in path:
            path.insert(0, "pg_catalog")  # searched first unless placed explicitly
        return path

    def resolve(self, name: QualifiedName) -> TableId | None:
        if name.schema is not None:
            return TableId(name.schema, name.name)
        snap = self._snapshot()
        for schema in self.path_schemas():
            table = TableId(schema, name.name)
            if table in self.tx.dropped or table in self.committed.dropped:
                continue
            if self._known(table) or snap.relation(schema, name.name):
                return table
        return None

    def _known(self, table: TableId) -> bool:
        """Known to exist from this session's own statements, whatever the snapshot says."""
        return any(
            table in layer.created or table in layer.electrified for layer in (self.tx, self.committed)
        )

    def creation_target(self, name: QualifiedName) -> TableId:
        if name.schema is not None:
            return TableId(name.schema, name.name)
        snap = self._snapshot()
        for schema in self.path_schemas():
            if schema != "pg_catalog" and schema in snap.schemas:
                return TableId(schema, name.name)
        return TableId("public", name.name)

    def is_electrified(self, table: TableId) -> bool:
        for layer in (self.tx, self.committed):
            if table in layer.electrified:
                return True
            if table in layer.disabled or table in layer.dropped:
                return False
        return self._snapshot().is_electrified(table.schema, table.name)

    def index_table(self, name: QualifiedName) -> TableId | None:
        snap = self._snapshot()
        schemas = [name.schema] if name.schema is not None else self.path_schemas()
        for schema in schemas:
            found = snap.index_table(schema, name.name)
            if found is not None:
                return TableId(*found)
        return None

    def schema_has_electrified(self, schema: str) -> bool:
        if any(t.schema == schema for t in (*self.tx.electrified, *self.committed.electrified)):
            return True
        return self._snapshot().schema_has_electrified(schema)


_EFFECTS: Final[dict[Kind, Callable[[SessionGuard, Statement], None]]] = {
    Kind.CREATE_TABLE: SessionGuard._on_create_table,
    Kind.DROP: SessionGuard._on_drop,
    Kind.RENAME: SessionGuard._on_rename,
    Kind.ELECTRIC: SessionGuard._on_electric,
    Kind.SET: SessionGuard._on_set,
}


def parse_search_path(value: str) -> tuple[str, ...]:
    """`current_setting('search_path')` as a list of schema names (quotes removed)."""
    return tuple(_unquote_path_item(item) for item in _split_path(value) if item)


def _split_path(value: str) -> Iterable[str]:
    item, quoted = "", False
    for char in value:
        if char == '"':
            quoted = not quoted
            item += char
        elif char == "," and not quoted:
            yield item.strip()
            item = ""
        else:
            item += char
    yield item.strip()


def _unquote_path_item(item: str) -> str:
    item = item.strip()
    if len(item) >= 2 and item[0] == item[-1] == '"':
        return item[1:-1].replace('""', '"')
    return item if item == "$user" else item.lower()
