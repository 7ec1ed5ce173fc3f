"""The text guard: what one client message's SQL means for the migration guard. Sans-IO.

`SessionGuard.inspect` turns the SQL of a `Query` or `Parse` into one `Plan` that the session
applies. The plan never depends on session state that the server keeps (search_path, role,
temporary schema, what a ROLLBACK undid): names are resolved by the server when the statement
runs (see `checks`). What Python decides alone is only what needs no name:

- ELECTRIC statements, which Postgres cannot parse, become procedure calls (`rewrite`);
- a malformed ELECTRIC statement is refused with its exact position;
- a statement the guard cannot read while tables are electrified, under `on_parse_error =
  "reject"`, is refused: it may hide DDL;
- a DO block whose body cannot be read (dynamic SQL) while tables are electrified and no
  database-side guard is installed, under `do_blocks = "reject"`, is refused.

Whether the database has electrified tables comes from the catalog view (kept fresh by the
catalog watcher) and from `SharedFlags`, set by any session of the database that sends an
ELECTRIC ENABLE: another connection of the same migration must not run unchecked in the
milliseconds before the watcher reloads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from proxy.ddl import electric
from proxy.ddl.checks import Check, conditional_checks
from proxy.ddl.classify import Kind, Statement, classify
from proxy.errors import GuardError


class CatalogView(Protocol):
    """What the guard needs of the catalog snapshot (`proxy.catalog.cache.CatalogSnapshot`)."""

    @property
    def any_electrified(self) -> bool: ...


@dataclass
class SharedFlags:
    """Facts about one database that every session of this proxy shares."""

    electrified_seen: bool = False  # some session sent ELECTRIC ENABLE (maybe not committed)


@dataclass(frozen=True, slots=True)
class Plan:
    """The text guard's one decision about one message's SQL."""

    statements: tuple[Statement, ...] = ()
    checks: tuple[tuple[Check, ...], ...] = ()  # per statement: what the server must verify
    rejected: GuardError | None = None  # refuse the whole message with this error

    @property
    def ddl(self) -> bool:
        return any(s.ddl for s in self.statements)

    @property
    def rewrites(self) -> bool:
        """Whether the message must change (ELECTRIC calls or checks), captures aside."""
        return self.rejected is not None or any(self.checks) or any(s.electric for s in self.statements)


FORWARD = Plan()


@dataclass
class SessionGuard:
    view: Callable[[], CatalogView]
    shared: SharedFlags = field(default_factory=SharedFlags)
    catalog_schema: str = "electric"
    do_blocks: Literal["reject", "allow"] = "reject"
    on_parse_error: Literal["forward", "reject"] = "reject"
    database_guard: Callable[[], bool] = lambda: False  # event triggers enforce the rules

    def electrified(self) -> bool:
        return self.shared.electrified_seen or self.view().any_electrified

    def inspect(self, sql: str, *, prepared: bool = False, standard_conforming_strings: bool = True) -> Plan:
        """Judge `sql`, a Query's string or (`prepared`) a Parse's statement."""
        return self.judge(
            tuple(classify(sql, standard_conforming_strings=standard_conforming_strings)), prepared
        )

    def judge(self, statements: tuple[Statement, ...], prepared: bool = False) -> Plan:
        """The plan for classified statements.

        A prepared statement may run long after it was parsed, when tables that were plain
        then are electrified: its checks are always computed, and run at every execution.
        """
        for stmt in statements:
            if isinstance(stmt.electric, electric.ElectricEnable):
                self.shared.electrified_seen = True
        error = self._refusal(statements)
        if error is not None:
            return Plan(statements, rejected=error)
        if self.database_guard() or not (prepared or self.electrified()):
            return Plan(statements, tuple(() for _ in statements))
        return Plan(statements, tuple(conditional_checks(s) for s in statements))

    def _refusal(self, statements: tuple[Statement, ...]) -> GuardError | None:
        for stmt in statements:
            refuse = _REFUSALS.get(stmt.kind)
            error = refuse(self, stmt) if refuse is not None else None
            if error is not None:
                return error
        return None

    def _unparsable(self, stmt: Statement) -> GuardError | None:
        error = stmt.error or GuardError("syntax error", sqlstate="42601", position=stmt.start + 1)
        # A malformed ELECTRIC statement is ours to report; other SQL Postgres reports itself,
        # unless the guard cannot tell whether it is DDL on an electrified table.
        if "electric" in stmt.text.lower():
            return error
        if self.on_parse_error == "reject" and self.electrified():
            return _unreadable(stmt, error)
        return None

    def _do_block(self, stmt: Statement) -> GuardError | None:
        if stmt.do is not None and stmt.do.readable:
            return None  # judged by the statements it runs, like any others (see `checks`)
        if self.do_blocks == "allow" or self.database_guard() or not self.electrified():
            return None
        return _do_block_error(stmt)


def _unreadable(stmt: Statement, cause: GuardError) -> GuardError:
    return GuardError(
        "statement cannot be checked by the migration guard",
        sqlstate="EX017",
        detail=f"The proxy could not read this statement ({cause.message}) while tables are electrified, "
        "so it cannot tell whether it changes one of them.",
        hint='Write the statement in a form the guard can read, or set [guard] on_parse_error = "forward".',
        position=stmt.start + 1,
    )


def _do_block_error(stmt: Statement) -> GuardError:
    why = f" ({stmt.do.reason})" if stmt.do is not None and stmt.do.reason else ""
    return GuardError(
        "DO blocks are not allowed in migrations while tables are electrified",
        sqlstate="EX013",
        detail=f"The proxy cannot read the statements this DO block runs{why}, so it cannot check them "
        "against the rules for electrified tables, and no database-side guard (event triggers) is installed.",
        hint="Run the statements of the DO block as plain SQL statements instead.",
    )


_REFUSALS: dict[Kind, Callable[[SessionGuard, Statement], GuardError | None]] = {
    Kind.UNPARSABLE: SessionGuard._unparsable,
    Kind.DO: SessionGuard._do_block,
}
