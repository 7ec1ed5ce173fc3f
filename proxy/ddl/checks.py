"""What the server must check before a DDL statement runs: the rules, made conditional on names.

The text guard no longer resolves names itself: the session's search_path, role, temporary
schema and the transaction's own electrifications live in the server, and a Python copy of
them drifts (a ROLLBACK restores a SET, `set_config` changes the path, `SET ROLE` changes
`$user`). Instead, each DDL statement is turned into a list of `Check`s: "if the relation this
name means, at execution time, is electrified, raise this error". The proxy sends them with the
statement (`electric.check`, or `electric.run_checked` in the extended protocol) and the server
resolves each name exactly as the statement itself will.

The checks come from the same rules (`rules.check`) run under hypotheses: first once to learn
which names the statement's rule looks up, then once per name with only that name's table
electrified. The error then names the table through placeholders the server fills in with the
table's real schema and name.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from proxy.ddl import rules
from proxy.ddl.classify import Statement
from proxy.ddl.names import QualifiedName
from proxy.ddl.rules import TableId, Verdict
from proxy.errors import GuardError

# Stand-ins for the resolved table in an error's texts; the server substitutes them.
SCHEMA_PLACEHOLDER: Final = "electric-proxy:schema"
TABLE_PLACEHOLDER: Final = "electric-proxy:table"
_HYPOTHESIS: Final = TableId(SCHEMA_PLACEHOLDER, TABLE_PLACEHOLDER)

CheckKind = Literal["relation", "index", "schema"]


@dataclass(frozen=True, slots=True)
class Check:
    """Raise `error` if `name` (a relation, an index's table, or a schema) is electrified."""

    kind: CheckKind
    schema: str | None
    name: str
    error: GuardError

    def as_json(self) -> dict[str, object]:
        error = self.error
        fields = {
            "C": error.sqlstate,
            "M": error.message,
            "D": error.detail,
            "H": error.hint,
            "s": error.schema,
            "t": error.table,
            "c": error.column,
        }
        return {
            "kind": self.kind,
            "schema": self.schema,
            "name": self.name,
            "error": {k: v for k, v in fields.items() if v is not None},
        }


def checks_json(checks: Sequence[Check]) -> str:
    return json.dumps([c.as_json() for c in checks], ensure_ascii=False, separators=(",", ":"))


class _Probe:
    """Lookups for `rules.check` under one hypothesis (or none: then it only records names)."""

    def __init__(self, target: tuple[CheckKind, QualifiedName] | None = None) -> None:
        self.target = target
        self.seen: list[tuple[CheckKind, QualifiedName]] = []

    def _hit(self, kind: CheckKind, name: QualifiedName) -> bool:
        key = (kind, name)
        if key not in self.seen:
            self.seen.append(key)
        return key == self.target

    def resolve(self, name: QualifiedName) -> TableId | None:
        if self._hit("relation", name):
            return _HYPOTHESIS
        return TableId(name.schema or "", name.name)

    def index_table(self, name: QualifiedName) -> TableId | None:
        return _HYPOTHESIS if self._hit("index", name) else None

    def schema_has_electrified(self, schema: str) -> bool:
        return self._hit("schema", QualifiedName(None, schema))

    @staticmethod
    def electrified(table: TableId) -> bool:
        return table == _HYPOTHESIS

    def decide(self, stmt: Statement) -> rules.Decision:
        return rules.check(
            stmt,
            self.resolve,
            self.electrified,
            index_table=self.index_table,
            schema_has_electrified=self.schema_has_electrified,
            any_electrified=True,
            do_blocks="allow",
        )


def conditional_checks(stmt: Statement) -> tuple[Check, ...]:
    """Every error `stmt` must raise if one of the objects it names is electrified."""
    survey = _Probe()
    survey.decide(stmt)
    checks: list[Check] = []
    for kind, name in survey.seen:
        decision = _Probe((kind, name)).decide(stmt)
        if decision.verdict is Verdict.REJECT and decision.error is not None:
            checks.append(Check(kind, name.schema, name.name, decision.error))
    return tuple(checks)
