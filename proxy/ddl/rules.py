"""What electrified tables accept: the migration guard's rules, as pure functions.

`check` decides one classified statement. It never looks names up itself: the session
passes callables that resolve names through its search_path against the database and
answer whether a table is electrified. A decision is one of

* ALLOW: run it; nothing Electric-specific to record;
* CAPTURE: run it and record it against the electrified tables in `Decision.tables`
  (ADD COLUMN, CREATE INDEX, DROP INDEX on an electrified table);
* REJECT: do not send it; answer with `Decision.error`.

Rejections use SQLSTATE class EX with the Electric proxy's codes and messages. Where the
Electric proxy used two codes for one case (DROP TABLE: EX100 over the extended protocol,
EX004 over the simple one), we use one: EX004, with the simple protocol's message. Codes we
added for cases it did not cover:

* EX002 also for moving an electrified table to another schema (`ALTER TABLE ... SET
  SCHEMA`) and for renaming a schema that holds one: both change the table's name;
* EX004 also for `DROP SCHEMA ... CASCADE` of a schema that holds an electrified table;
* EX013 for DO blocks whose SQL cannot all be read (EXECUTE of a built string, another
  language, a body that does not parse), only while at least one table of the database is
  electrified and only under the `reject` policy; a readable DO block is judged by the
  statements it runs, whatever the policy;
* EX014 for a table that cannot be electrified (`check_electrifiable`); the Electric proxy
  raised these from PL/pgSQL as P0001.

A statement is judged whole: one disallowed ALTER TABLE subcommand rejects the statement.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, Literal, TypeAlias

from proxy.ddl.classify import RELATION_OBJECT_TYPES, AlterSubcommand, ColumnFacts, DoFacts, Kind, Statement
from proxy.ddl.names import QualifiedName, quote_ident
from proxy.errors import GuardError

# Column types Electric can sync: unsized, not arrays (Electric's `supported_types/0`).
SUPPORTED_TYPES: Final = frozenset(
    {
        "bool",
        "bytea",
        "date",
        "float4",
        "float8",
        "int2",
        "int4",
        "int8",
        "jsonb",
        "text",
        "time",
        "timestamp",
        "timestamptz",
        "uuid",
        "varchar",
    }
)

ADDITIVE_ONLY: Final = (
    "Electric currently only supports additive migrations (ADD COLUMN, ADD INDEX) on electrified tables"
)
_ALLOWED_HINT: Final = (
    "Allowed on electrified tables: ADD COLUMN (supported type, no DEFAULT, only NULL/NOT NULL), "
    "CREATE INDEX, DROP INDEX, and ALTER TABLE subcommands that leave the columns alone "
    "(triggers, OWNER TO, storage and statistics settings)."
)


@dataclass(frozen=True, slots=True)
class TableId:
    """A table resolved against the database: always schema-qualified."""

    schema: str
    name: str

    def __str__(self) -> str:
        return f"{quote_ident(self.schema)}.{quote_ident(self.name)}"


class Verdict(StrEnum):
    ALLOW = "ALLOW"
    CAPTURE = "CAPTURE"
    REJECT = "REJECT"


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    error: GuardError | None = field(default=None, compare=False)  # REJECT only
    tables: tuple[TableId, ...] = ()  # CAPTURE: the electrified tables affected
    added_columns: tuple[ColumnFacts, ...] = ()  # CAPTURE: ADD COLUMN definitions


ALLOW: Final = Decision(Verdict.ALLOW)

Resolver: TypeAlias = Callable[[QualifiedName], TableId | None]


@dataclass(frozen=True, slots=True)
class _Lookups:
    resolve: Resolver
    electrified: Callable[[TableId], bool]
    index_table: Resolver
    schema_has_electrified: Callable[[str], bool]
    any_electrified: bool
    do_blocks: Literal["reject", "allow"]

    def electrified_table(self, name: QualifiedName | None) -> TableId | None:
        table = self.resolve(name) if name is not None else None
        return table if table is not None and self.electrified(table) else None

    def electrified_index_table(self, index: QualifiedName) -> TableId | None:
        table = self.index_table(index)
        return table if table is not None and self.electrified(table) else None


def check(
    stmt: Statement,
    resolve: Resolver,
    electrified: Callable[[TableId], bool],
    *,
    index_table: Resolver,
    schema_has_electrified: Callable[[str], bool],
    any_electrified: bool,
    do_blocks: Literal["reject", "allow"] = "reject",
) -> Decision:
    """Decide `stmt`.

    `resolve` maps a name as written to the table it means under the session's search_path
    (None: no such relation); `index_table` maps an index name to its table;
    `schema_has_electrified` tells whether a schema holds an electrified table;
    `any_electrified` whether the database has any electrified table at all.
    """
    lookups = _Lookups(resolve, electrified, index_table, schema_has_electrified, any_electrified, do_blocks)
    rule = _RULES.get(stmt.kind)
    return rule(stmt, lookups) if rule is not None else ALLOW


# -- rules per statement kind ------------------------------------------------------------


def _alter_table(stmt: Statement, lookups: _Lookups) -> Decision:
    facts = stmt.alter
    if facts is None:
        return ALLOW
    for command in facts.subcommands:
        # ATTACH/DETACH PARTITION changes the table it names, not only the parent.
        partition = lookups.electrified_table(command.partition)
        if partition is not None:
            return _reject(_partition_error(partition))
    table = lookups.electrified_table(facts.relation)
    if table is None:
        return ALLOW
    added: list[ColumnFacts] = []
    for command in facts.subcommands:
        error = _subcommand_error(command, table)
        if error is not None:
            return _reject(error)
        if command.column_def is not None and command.subtype == "AT_AddColumn":
            added.append(command.column_def)
    if not added:
        return ALLOW
    return Decision(Verdict.CAPTURE, tables=(table,), added_columns=tuple(added))


def _subcommand_error(command: AlterSubcommand, table: TableId) -> GuardError | None:
    if command.subtype in _STRUCTURE_PRESERVING:
        return None
    if command.subtype == "AT_AddColumn" and command.column_def is not None:
        return _new_column_error(command.column_def, table)
    reject = _SUBCOMMAND_ERRORS.get(command.subtype, _alter_column_error)
    return reject(command, table)


# ALTER TABLE subcommands that leave the columns, constraints and replication of an
# electrified table alone: allowed and not recorded.
_STRUCTURE_PRESERVING: Final = frozenset(
    {
        "AT_EnableTrig",
        "AT_EnableAlwaysTrig",
        "AT_EnableReplicaTrig",
        "AT_DisableTrig",
        "AT_EnableTrigAll",
        "AT_DisableTrigAll",
        "AT_EnableTrigUser",
        "AT_DisableTrigUser",
        "AT_ChangeOwner",
        "AT_SetStorage",
        "AT_SetStatistics",
        "AT_SetOptions",
        "AT_ResetOptions",
        "AT_SetCompression",
        "AT_SetRelOptions",
        "AT_ResetRelOptions",
        "AT_ReplaceRelOptions",
        "AT_SetAccessMethod",
        # physical layout only
        "AT_SetTableSpace",
        "AT_ClusterOn",
        "AT_DropCluster",
    }
)


def _drop_column_error(command: AlterSubcommand, table: TableId) -> GuardError:
    return _guard(
        "EX010",
        f"Cannot drop column {quote_ident(command.column or '')} of electrified table {table}",
        table,
        hint="Stop using the column instead of dropping it.",
        column=command.column,
    )


def _type_change_error(command: AlterSubcommand, table: TableId) -> GuardError:
    return _guard(
        "EX009",
        f"Cannot change type of column {quote_ident(command.column or '')} of electrified table {table}",
        table,
        hint="Add a new column of the new type and copy the data into it instead.",
        column=command.column,
    )


def _alter_column_error(command: AlterSubcommand, table: TableId) -> GuardError:
    # Table-level subcommands (ADD CONSTRAINT, ROW LEVEL SECURITY, ...) name no column:
    # the message then says `""`, as the Electric proxy's did.
    return _guard(
        "EX007",
        f"Cannot alter column {quote_ident(command.column or '')} of electrified table {table}",
        table,
        hint=_ALLOWED_HINT,
        column=command.column,
    )


def _partition_error(table: TableId) -> GuardError:
    return _guard(
        "EX007",
        f"Cannot attach or detach electrified table {table} as a partition",
        table,
        hint=_ALLOWED_HINT,
    )


_SUBCOMMAND_ERRORS: Final[dict[str, Callable[[AlterSubcommand, TableId], GuardError]]] = {
    "AT_DropColumn": _drop_column_error,
    "AT_AlterColumnType": _type_change_error,
}


def _new_column_error(column: ColumnFacts, table: TableId) -> GuardError | None:
    if not column_type_supported(column):
        return _guard(
            "EX005",
            f"Cannot electrify column of type {quote_ident(column.type_name)}",
            table,
            hint="Supported column types (unsized, not arrays): " + ", ".join(sorted(SUPPORTED_TYPES)) + ".",
            column=column.name,
        )
    if "CONSTR_DEFAULT" in column.constraints:
        return _guard(
            "EX006",
            "Cannot electrify column with DEFAULT clause",
            table,
            hint="Add the column without a DEFAULT, then fill it with UPDATE.",
            column=column.name,
        )
    for constraint in column.constraints:
        label = _CONSTRAINT_LABELS.get(constraint)
        if label is not None:
            return _guard(
                "EX011",
                f"Cannot electrify column with {label} constraint",
                table,
                hint="A column added to an electrified table may only be declared NULL or NOT NULL.",
                column=column.name,
            )
    return None


def column_type_supported(column: ColumnFacts) -> bool:
    """A built-in supported type, unsized and not an array (user types such as enums are not)."""
    return (
        column.type_schema in (None, "pg_catalog")
        and column.base_type in SUPPORTED_TYPES
        and not column.typmods
        and not column.is_array
    )


# Column constraints an added column may not carry. NULL, NOT NULL and the DEFERRABLE-style
# attributes (which only qualify a constraint listed here) pass; DEFAULT has its own error.
_CONSTRAINT_LABELS: Final[dict[str, str]] = {
    "CONSTR_CHECK": "CHECK",
    "CONSTR_PRIMARY": "PRIMARY KEY",
    "CONSTR_UNIQUE": "UNIQUE",
    "CONSTR_GENERATED": "GENERATED",
    "CONSTR_IDENTITY": "GENERATED",
    "CONSTR_FOREIGN": "FOREIGN KEY",
    "CONSTR_EXCLUSION": "EXCLUDE",
}


def _rename(stmt: Statement, lookups: _Lookups) -> Decision:
    facts = stmt.rename
    if facts is None:
        return ALLOW
    if facts.rename_type == "OBJECT_SCHEMA":
        return _schema_rename(facts.subname, lookups)
    if facts.relation is None:
        return ALLOW
    if facts.rename_type in RELATION_OBJECT_TYPES:
        # ALTER INDEX i RENAME, and ALTER TABLE i RENAME, which Postgres also accepts.
        owner = lookups.electrified_index_table(facts.relation)
        if owner is not None:
            return _reject(_property_rename_error(owner))
    table = lookups.electrified_table(facts.relation)
    if table is None:
        return ALLOW
    build = _RENAME_ERRORS.get(facts.rename_type)
    if build is not None:
        return _reject(build(facts.subname or "", table))
    if facts.rename_type in RELATION_OBJECT_TYPES:
        return _reject(_table_rename_error(table))
    return _reject(_property_rename_error(table))


def _table_rename_error(table: TableId) -> GuardError:
    return _guard(
        "EX002",
        f"Cannot rename electrified table {table}",
        table,
        hint="Create a new table under the new name instead.",
    )


def _property_rename_error(table: TableId) -> GuardError:
    return _guard("EX003", f"Cannot rename property of electrified table {table}", table, hint=_ALLOWED_HINT)


def _column_rename_error(column: str, table: TableId) -> GuardError:
    return _guard(
        "EX008",
        f"Cannot rename column {quote_ident(column)} of electrified table {table}",
        table,
        hint="Add a new column under the new name instead.",
        column=column,
    )


def _constraint_rename_error(constraint: str, table: TableId) -> GuardError:
    return _guard(
        "EX012",
        f"Cannot rename constraint {quote_ident(constraint)} of electrified table {table}",
        table,
        hint=_ALLOWED_HINT,
    )


_RENAME_ERRORS: Final[dict[str, Callable[[str, TableId], GuardError]]] = {
    "OBJECT_COLUMN": _column_rename_error,
    "OBJECT_TABCONSTRAINT": _constraint_rename_error,
}


def _schema_rename(schema: str | None, lookups: _Lookups) -> Decision:
    if schema is None or not lookups.schema_has_electrified(schema):
        return ALLOW
    return _reject(
        GuardError(
            f"Cannot rename schema {quote_ident(schema)} because it contains electrified tables",
            sqlstate="EX002",
            detail=f"Renaming the schema renames its electrified tables. {ADDITIVE_ONLY}.",
            hint="Create a new schema instead.",
            schema=schema,
        )
    )


def _drop(stmt: Statement, lookups: _Lookups) -> Decision:
    facts = stmt.drop
    if facts is None:
        return ALLOW
    rule = _DROP_RULES.get(facts.remove_type)
    return rule(stmt, lookups) if rule is not None else ALLOW


def _drop_tables(stmt: Statement, lookups: _Lookups) -> Decision:
    # Every object of `DROP TABLE a, b, ...` counts, not only the first.
    for name in stmt.objects:
        table = lookups.electrified_table(name)
        if table is not None:
            return _reject(
                _guard(
                    "EX004",
                    f"Cannot drop electrified table {table}",
                    table,
                    hint="Electrified tables cannot be dropped; stop using the table instead.",
                )
            )
    return ALLOW


def _drop_indexes(stmt: Statement, lookups: _Lookups) -> Decision:
    tables = {t for t in (lookups.electrified_index_table(name) for name in stmt.objects) if t is not None}
    if not tables:
        return ALLOW
    return Decision(Verdict.CAPTURE, tables=tuple(sorted(tables, key=str)))


def _drop_schemas(stmt: Statement, lookups: _Lookups) -> Decision:
    # Without CASCADE Postgres itself refuses to drop a schema that holds tables.
    if stmt.drop is None or not stmt.drop.cascade:
        return ALLOW
    for name in stmt.objects:
        if lookups.schema_has_electrified(name.name):
            return _reject(
                GuardError(
                    f"Cannot drop schema {quote_ident(name.name)} because it contains electrified tables",
                    sqlstate="EX004",
                    detail=f"DROP SCHEMA ... CASCADE would drop its electrified tables. {ADDITIVE_ONLY}.",
                    hint="Electrified tables cannot be dropped.",
                    schema=name.name,
                )
            )
    return ALLOW


_DROP_RULES: Final[dict[str, Callable[[Statement, _Lookups], Decision]]] = {
    "OBJECT_TABLE": _drop_tables,
    "OBJECT_INDEX": _drop_indexes,
    "OBJECT_SCHEMA": _drop_schemas,
}


def _create_index(stmt: Statement, lookups: _Lookups) -> Decision:
    table = lookups.electrified_table(stmt.index.table) if stmt.index is not None else None
    return Decision(Verdict.CAPTURE, tables=(table,)) if table is not None else ALLOW


def _other_ddl(stmt: Statement, lookups: _Lookups) -> Decision:
    moved = stmt.set_schema
    if moved is None or moved.object_type not in RELATION_OBJECT_TYPES:
        return ALLOW
    table = lookups.electrified_table(moved.relation)
    if table is None:
        return ALLOW
    return _reject(
        _guard(
            "EX002",
            f"Cannot move electrified table {table} to another schema",
            table,
            hint="Create a new table in the other schema instead.",
        )
    )


def _do(stmt: Statement, lookups: _Lookups) -> Decision:
    # A DO block is judged by the statements it runs, as if each were sent alone. One whose
    # SQL cannot all be read is refused while something is electrified, unless the policy
    # lets such blocks through.
    facts = stmt.do
    if facts is None or not facts.readable:
        if lookups.do_blocks == "allow" or not lookups.any_electrified:
            return ALLOW
        return _reject(_opaque_do_error(facts))
    tables: list[TableId] = []
    added: list[ColumnFacts] = []
    for inner in facts.statements:
        rule = _RULES.get(inner.kind)
        decision = rule(inner, lookups) if rule is not None else ALLOW
        if decision.verdict is Verdict.REJECT:
            return decision  # rule errors carry no position that would point into the body
        tables += [t for t in decision.tables if t not in tables]
        added += decision.added_columns
    if not tables:
        return ALLOW
    return Decision(Verdict.CAPTURE, tables=tuple(tables), added_columns=tuple(added))


def _opaque_do_error(facts: DoFacts | None) -> GuardError:
    reason = f" ({facts.reason})" if facts is not None and facts.reason else ""
    return GuardError(
        "DO blocks that run SQL the proxy cannot read are not allowed while tables are electrified",
        sqlstate="EX013",
        detail="The proxy cannot check the statements inside this DO block against the rules "
        f"for electrified tables{reason}. {ADDITIVE_ONLY}.",
        hint="Run the statements as plain SQL statements, or EXECUTE string constants only.",
    )


def _unparsable(stmt: Statement, lookups: _Lookups) -> Decision:
    # Never forward what could not be checked.
    if stmt.error is not None:
        return _reject(stmt.error)
    return _reject(GuardError("syntax error", sqlstate="42601", position=stmt.start + 1))


_RULES: Final[dict[Kind, Callable[[Statement, _Lookups], Decision]]] = {
    Kind.ALTER_TABLE: _alter_table,
    Kind.RENAME: _rename,
    Kind.DROP: _drop,
    Kind.CREATE_INDEX: _create_index,
    Kind.OTHER_DDL: _other_ddl,
    Kind.DO: _do,
    Kind.UNPARSABLE: _unparsable,
}


def _reject(error: GuardError) -> Decision:
    return Decision(Verdict.REJECT, error=error)


def _guard(code: str, message: str, table: TableId, *, hint: str, column: str | None = None) -> GuardError:
    return GuardError(
        message,
        sqlstate=code,
        severity="ERROR",
        detail=f"Table {table} is electrified. {ADDITIVE_ONLY}.",
        hint=hint,
        schema=table.schema,
        table=table.name,
        column=column,
    )


# -- electrify-time checks ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ColumnDescription:
    name: str
    type_name: str  # pg_type.typname with modifiers as format_type-style suffix: "int4", "varchar(9)"
    has_default: bool
    not_null: bool
    enum_labels: tuple[str, ...] | None = None  # the labels, when the type is an enum


@dataclass(frozen=True, slots=True)
class ConstraintDescription:
    name: str
    kind: str  # pg_constraint.contype: p, f, c, u, x, t, n


@dataclass(frozen=True, slots=True)
class TableDescription:
    table: TableId
    relkind: str  # pg_class.relkind
    columns: tuple[ColumnDescription, ...]
    primary_key: tuple[str, ...]
    constraints: tuple[ConstraintDescription, ...]


# Enum labels must be plain lower-case words to map onto clients' types.
_ENUM_LABEL: Final = re.compile(r"[a-z][a-z_0-9]*", re.IGNORECASE)
# Primary keys, foreign keys and (Postgres 18) catalogued NOT NULL constraints are fine.
_ALLOWED_CONSTRAINTS: Final = frozenset({"p", "f", "n"})


def check_electrifiable(description: TableDescription) -> GuardError | None:
    """Why the described table cannot be electrified, or None when it can.

    Any schema is fine (names are resolved through the search_path, unlike the Electric
    proxy, which only took `public`); the type allow-list and the other checks stay.
    """
    for rule in _ELECTRIFY_RULES:
        reason = rule(description)
        if reason is not None:
            return _electrify_error(description.table, *reason)
    return None


def _ordinary_table(description: TableDescription) -> tuple[str, str] | None:
    if description.relkind == "r":
        return None
    return f"{description.table} is not an ordinary table", "Only ordinary tables can be electrified."


def _column_types(description: TableDescription) -> tuple[str, str] | None:
    bad = [c for c in description.columns if not _describable_type_supported(c)]
    if not bad:
        return None
    listed = ", ".join(f"{quote_ident(c.name)} {c.type_name}" for c in bad)
    return (
        f"Cannot electrify {description.table} because some of its columns have types not supported "
        f"by Electric: {listed}",
        "Supported column types (unsized, not arrays): "
        + ", ".join(sorted(SUPPORTED_TYPES))
        + ", and enums whose labels are plain words.",
    )


def _describable_type_supported(column: ColumnDescription) -> bool:
    if column.enum_labels is not None:
        return all(_ENUM_LABEL.fullmatch(label) for label in column.enum_labels)
    return column.type_name in SUPPORTED_TYPES


def _column_defaults(description: TableDescription) -> tuple[str, str] | None:
    bad = [quote_ident(c.name) for c in description.columns if c.has_default]
    if not bad:
        return None
    return (
        f"Cannot electrify {description.table} because some of its columns have DEFAULT expressions "
        f"which are not currently supported by Electric: {', '.join(bad)}",
        "Drop the DEFAULT expressions before electrifying the table.",
    )


def _primary_key(description: TableDescription) -> tuple[str, str] | None:
    if description.primary_key:
        return None
    return (
        f"Cannot electrify {description.table} because it doesn't have a PRIMARY KEY.",
        "Add a PRIMARY KEY before electrifying the table.",
    )


def _constraints(description: TableDescription) -> tuple[str, str] | None:
    bad = [quote_ident(c.name) for c in description.constraints if c.kind not in _ALLOWED_CONSTRAINTS]
    if not bad:
        return None
    return (
        f"Cannot electrify {description.table} because some of its columns have CHECK, UNIQUE, EXCLUDE "
        f"or user-defined constraints which are not currently supported by Electric: {', '.join(bad)}",
        "Only PRIMARY KEY and FOREIGN KEY constraints are allowed on electrified tables.",
    )


_ELECTRIFY_RULES: Final[tuple[Callable[[TableDescription], tuple[str, str] | None], ...]] = (
    _ordinary_table,
    _column_types,
    _column_defaults,
    _primary_key,
    _constraints,
)


def _electrify_error(table: TableId, message: str, hint: str) -> GuardError:
    return GuardError(
        message,
        sqlstate="EX014",
        detail=f"Table {table} does not meet the requirements for electrified tables.",
        hint=hint,
        schema=table.schema,
        table=table.name,
    )
