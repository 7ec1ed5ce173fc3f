"""Recognise migration frameworks' version writes in SQL (sans-IO).

A migration tool records each migration it applies as a row in its own table, written in the
same transaction as the migration's DDL (Prisma excepted: its row comes first). The
`VersionRecognizer` reads INSERT/UPDATE/DELETE/TRUNCATE statements aimed at those tables and
reports `VersionWrite`s: which framework, which version, applied or reverted. It parses with
pglast (`parse_sql_json`, the fast C path) and never raises: text that does not parse, or a
statement it cannot read a version from, gives no writes.

Two entry points, one per protocol:

- `from_sql(sql)`: Query messages, values inlined as literals (Alembic, Django/psycopg2,
  node-pg-migrate, Liquibase).
- `from_statement(sql, params, formats, param_types)`: a Parse's text with the parameters of
  its Bind (`decode_bind` reads them). `$n` are resolved in text (format 0) or binary
  (format 1); binary values are decoded by the Parse's declared type, else by a cast written
  on the placeholder (`$1::bigint`), else by shape: printable UTF-8 is text, 8/4/2 bytes a
  signed integer, one byte a boolean, 16 bytes a UUID. Postgrex, pgx and tokio-postgres send
  binary parameters whose types the Parse leaves to the server.

What a write means:

- `action="apply"`: the framework now records `version` as applied (a row was inserted, or
  an UPDATE set the version columns). For tools that keep only the current head (Alembic,
  golang-migrate), a downgrade is also an "apply" of the older version: Alembic's UPDATE
  carries the replaced head in `previous`; compare with `version_sort_key` (or, for Alembic,
  with the revision history) to tell up from down.
- `action="revert"`: the row for `version` was removed (DELETE), or the framework wrote a
  row that marks it undone (goose `is_applied = false`, Flyway `UNDO_*`/`DELETE` types).
  A DELETE without WHERE and a TRUNCATE remove every row: `version == ALL_VERSIONS` ("").
  golang-migrate's SetVersion is TRUNCATE then INSERT, so it reports a revert of
  ALL_VERSIONS followed by the apply; a TRUNCATE alone (migrated down to nothing) is the
  revert only.
- `dirty`: the framework's own "failed/incomplete" flag where it writes one: golang-migrate
  `dirty`, Flyway `NOT success`, Liquibase `EXECTYPE = 'FAILED'`. None elsewhere.
- `before_ddl`: Prisma writes `_prisma_migrations` before running the migration, outside its
  transaction; its INSERT without `finished_at` is flagged. (`migrate resolve --applied`
  inserts with `finished_at` and runs no DDL: not flagged.)
- Statements on a version table that name no version (Prisma's step counters and
  `finished_at`/`rolled_back_at` updates keyed by row id, checksum repairs) give nothing.

Version strings, per framework: Alembic `version_num`; Django `app.name`; Liquibase
`filename::id::author`; Flyway `version`, or `script` for repeatable migrations (NULL
version); TypeORM `name`; sqitch `change_id` (its DELETE names only the id, so apply and
revert agree); yoyo `migration_id`, but its DELETE names only `migration_hash`, so a yoyo
revert carries the hash (`yoyo_migration_hash(migration_id)` gives it for matching); Ecto,
golang-migrate, goose integers in decimal; everything else the single version column.

`schema_migrations` is shared by Rails, dbmate, Ecto and golang-migrate. The recogniser
picks by column set: the catalog's, from `columns_of(schema, table)` when the caller can
supply it (frameworks whose columns are all present; the most specific wins), else the
columns an INSERT names (a framework's INSERT names all of its columns: `version` +
`inserted_at` is Ecto, `version` + `dirty` golang-migrate). Rails and dbmate have the same
single `version varchar` column and write it the same way over both protocols (Rails binds
`$1` with prepared statements on, inlines otherwise), so nothing in the statement tells
them apart; a DELETE or TRUNCATE names even fewer columns. When candidates remain, the write
names them all, joined by "|" in table order: "rails|dbmate", or
"rails|dbmate|ecto|golang-migrate" for a DELETE seen without a catalog. Every such group
orders its versions the same way, and `version_sort_key` accepts the joined name. A
framework whose table name comes from `overrides` wins over default claims on that name,
so configuring `{"dbmate": "schema_migrations"}` settles the ambiguity. `columns_of` also
rejects same-named tables of other tools (an app's `migrations` or `changes` table): it
should return None for a table it does not know (one created earlier in the same
transaction), which falls back to the statement's columns.

Table names match as Postgres resolves them: pglast folds unquoted identifiers, so
`"SequelizeMeta"` matches and `SequelizeMeta` does not. A schema-qualified statement
must name the table's configured schema when one is set (sqitch: `sqitch`); unqualified
names are accepted (the search_path is the caller's business).

Not recognised: INSERT without a column list or from a SELECT, writes inside CTEs, COPY.
"""

from __future__ import annotations

import datetime
import hashlib
import itertools
import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal, TypeAlias

from pglast.parser import ParseError, parse_sql_json

from proxy.protocol.messages import Reader

Json: TypeAlias = dict[str, Any]
Row: TypeAlias = Mapping[str, str | None]
Action: TypeAlias = Literal["apply", "revert"]
ColumnsOf: TypeAlias = Callable[[str | None, str], frozenset[str] | None]
SortKey: TypeAlias = tuple[Any, ...]

ALL_VERSIONS: Final = ""  # the version of a revert that removes every row


@dataclass(frozen=True, slots=True)
class VersionWrite:
    framework: str
    version: str
    action: Action
    dirty: bool | None = None
    before_ddl: bool = False
    previous: str | None = None  # UPDATE: the version the WHERE clause replaced


@dataclass(frozen=True, slots=True)
class VersionTable:
    """Where a framework records its versions, and which columns make the version.

    `columns`: the columns its table always has and its INSERT always names (the version
    columns are added); the evidence that tells frameworks sharing a table name apart and
    rejects another tool's table of the same name.
    """

    framework: str
    schema: str | None
    table: str
    version_columns: tuple[str, ...]
    columns: frozenset[str] = frozenset()  # columns its table always has; its INSERT names them

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", self.columns | frozenset(self.version_columns))


def _table(framework: str, table: str, version: tuple[str, ...], *others: str) -> VersionTable:
    return VersionTable(framework, None, table, version, frozenset(others))


DEFAULT_TABLES: Final[tuple[VersionTable, ...]] = (
    _table("alembic", "alembic_version", ("version_num",)),
    _table("django", "django_migrations", ("app", "name"), "applied"),
    _table("rails", "schema_migrations", ("version",)),
    _table("dbmate", "schema_migrations", ("version",)),
    _table("ecto", "schema_migrations", ("version",), "inserted_at"),
    _table("golang-migrate", "schema_migrations", ("version",), "dirty"),
    _table("prisma", "_prisma_migrations", ("migration_name",), "id", "checksum"),
    _table("flyway", "flyway_schema_history", ("version",), "installed_rank", "script", "success"),
    _table("liquibase", "databasechangelog", ("filename", "id", "author")),
    _table("knex", "knex_migrations", ("name",), "batch", "migration_time"),
    _table("sequelize", "SequelizeMeta", ("name",)),
    _table("typeorm", "migrations", ("name",), "timestamp"),
    _table("node-pg-migrate", "pgmigrations", ("name",), "run_on"),
    _table("goose", "goose_db_version", ("version_id",), "is_applied"),
    VersionTable("sqitch", "sqitch", "changes", ("change_id",), frozenset({"change", "project"})),
    _table("yoyo", "_yoyo_migration", ("migration_id",), "migration_hash"),
)


def yoyo_migration_hash(migration_id: str) -> str:
    """The `migration_hash` yoyo stores for `migration_id` (its DELETE names only this)."""
    return hashlib.sha256(migration_id.encode("utf-8")).hexdigest()


# -- framework rules -----------------------------------------------------------------------


def _truth(text: str | None) -> bool | None:
    if text is None:
        return None
    word = text.strip().lower()
    if word in ("t", "true", "1", "y", "yes", "on"):
        return True
    if word in ("f", "false", "0", "n", "no", "off"):
        return False
    return None


def _apply(row: Row) -> Action:
    return "apply"


def _no_flag(row: Row) -> bool | None:
    return None


def _never(row: Row) -> bool:
    return False


@dataclass(frozen=True, slots=True)
class _Rules:
    separator: str = "::"  # between the version columns' values
    fallback: str | None = None  # the column to use when a version column is NULL
    delete_columns: tuple[str, ...] | None = None  # what a DELETE names; default: version columns
    action: Callable[[Row], Action] = _apply  # what an INSERTed row means
    dirty: Callable[[Row], bool | None] = _no_flag
    before_ddl: Callable[[Row], bool] = _never
    rerun: frozenset[str] = frozenset()  # an UPDATE setting these re-applies the WHERE's row


def _goose_action(row: Row) -> Action:
    return "revert" if _truth(row.get("is_applied")) is False else "apply"


def _flyway_action(row: Row) -> Action:
    kind = (row.get("type") or "").upper()
    return "revert" if kind.startswith("UNDO_") or kind == "DELETE" else "apply"


def _flyway_dirty(row: Row) -> bool | None:
    success = _truth(row.get("success"))
    return None if success is None else not success


def _golang_dirty(row: Row) -> bool | None:
    return _truth(row.get("dirty"))


def _liquibase_dirty(row: Row) -> bool | None:
    kind = row.get("exectype")
    return None if kind is None else kind.upper() == "FAILED"


def _prisma_before_ddl(row: Row) -> bool:
    return row.get("finished_at") is None


_GENERIC: Final = _Rules()
_RULES: Final[Mapping[str, _Rules]] = {
    "django": _Rules(separator="."),
    "golang-migrate": _Rules(dirty=_golang_dirty),
    "goose": _Rules(action=_goose_action),
    "flyway": _Rules(fallback="script", action=_flyway_action, dirty=_flyway_dirty),
    "liquibase": _Rules(dirty=_liquibase_dirty, rerun=frozenset({"exectype"})),
    "prisma": _Rules(before_ddl=_prisma_before_ddl),
    "yoyo": _Rules(delete_columns=("migration_hash",)),
}


def _rules(table: VersionTable) -> _Rules:
    # A joined name ("rails|dbmate") reads rows by its first framework's rules.
    return _RULES.get(table.framework.split("|", 1)[0], _GENERIC)


def _version(table: VersionTable, row: Row) -> str | None:
    rules = _rules(table)
    values = [row.get(column) for column in table.version_columns]
    if any(value is None for value in values):
        return row.get(rules.fallback) if rules.fallback else None
    return rules.separator.join(value for value in values if value is not None)


def _delete_columns(table: VersionTable) -> tuple[str, ...]:
    return _rules(table).delete_columns or table.version_columns


# -- Bind and parameter values -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bind:
    portal: bytes
    statement: bytes
    param_formats: tuple[int, ...]
    params: list[bytes | None]
    result_formats: tuple[int, ...]


def decode_bind(body: bytes | bytearray | memoryview) -> Bind:
    """A Bind message body; raises `ProtocolError` when malformed."""
    reader = Reader(body)
    portal, statement = reader.cstring(), reader.cstring()
    formats = tuple(reader.int16() for _ in range(max(reader.int16(), 0)))
    params: list[bytes | None] = []
    for _ in range(max(reader.int16(), 0)):
        length = reader.int32()
        params.append(None if length < 0 else reader.take(length))
    results = tuple(reader.int16() for _ in range(max(reader.int16(), 0)))
    return Bind(portal, statement, formats, params, results)


INT8, INT4, INT2, BOOL, UUID, TIMESTAMP, TIMESTAMPTZ = 20, 23, 21, 16, 2950, 1114, 1184
_TEXT_TYPES: Final = frozenset({25, 1043, 1042, 19, 705})  # text, varchar, bpchar, name, unknown
_INTEGER_SIZES: Final = {INT8: 8, INT4: 4, INT2: 2}
_CAST_TYPES: Final = {
    "int8": INT8,
    "bigint": INT8,
    "int4": INT4,
    "int": INT4,
    "integer": INT4,
    "int2": INT2,
    "smallint": INT2,
    "bool": BOOL,
    "boolean": BOOL,
    "uuid": UUID,
    "timestamp": TIMESTAMP,
    "timestamptz": TIMESTAMPTZ,
    "text": 25,
    "varchar": 1043,
}
_PG_EPOCH: Final = datetime.datetime(2000, 1, 1)


def decode_binary(data: bytes, oid: int) -> str:
    """A binary-format parameter as the text Postgres would print; never raises."""
    if oid in _INTEGER_SIZES and len(data) == _INTEGER_SIZES[oid]:
        return str(int.from_bytes(data, "big", signed=True))
    if oid == BOOL and len(data) == 1:
        return "true" if data != b"\0" else "false"
    if oid == UUID and len(data) == 16:
        return str(uuid.UUID(bytes=data))
    if oid in (TIMESTAMP, TIMESTAMPTZ) and len(data) == 8:
        return _timestamp(int.from_bytes(data, "big", signed=True))
    if oid in _TEXT_TYPES:
        return data.decode("utf-8", "replace")
    return _by_shape(data)


def _by_shape(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and text.isprintable():
        return text
    if len(data) in (8, 4, 2):
        return str(int.from_bytes(data, "big", signed=True))
    if len(data) == 1:
        return "true" if data != b"\0" else "false"
    if len(data) == 16:
        return str(uuid.UUID(bytes=data))
    return data.decode("utf-8", "replace")


def _timestamp(micros: int) -> str:
    try:
        return (_PG_EPOCH + datetime.timedelta(microseconds=micros)).isoformat()
    except OverflowError:
        return "infinity" if micros > 0 else "-infinity"


@dataclass(frozen=True, slots=True)
class _Params:
    values: Sequence[bytes | None] = ()
    formats: Sequence[int] = ()
    types: Sequence[int] = ()

    def get(self, number: int, hint: int) -> str | None:
        index = number - 1
        if not 0 <= index < len(self.values):
            return None
        data = self.values[index]
        if data is None:
            return None
        if self._format(index) == 0:
            return bytes(data).decode("utf-8", "replace")
        declared = self.types[index] if index < len(self.types) else 0
        return decode_binary(bytes(data), declared or hint)

    def _format(self, index: int) -> int:
        # Bind: no codes = all text, one code = for every parameter, else one each.
        if not self.formats:
            return 0
        if len(self.formats) == 1:
            return self.formats[0]
        return self.formats[index] if index < len(self.formats) else 0


# -- parse-tree reading --------------------------------------------------------------------


def _only(node: object) -> tuple[str, Json]:
    """The type and fields of a one-key node `{"Type": {...}}`; ("", {}) for anything else."""
    if isinstance(node, dict) and len(node) == 1:
        ((kind, fields),) = node.items()
        if isinstance(fields, dict):
            return str(kind), fields
    return "", {}


_CONSTANTS: Final = ("sval", "fval", "bsval", "ival", "boolval")


def _constant(fields: Json) -> str | None:
    if fields.get("isnull"):
        return None
    for key in _CONSTANTS:
        if key in fields:  # protobuf JSON leaves out zero values: `{"ival": {}}` is 0
            value = fields[key].get(key) if isinstance(fields[key], dict) else None
            if key == "boolval":
                return "true" if value else "false"
            if key == "ival":
                return str(value or 0)
            return "" if value is None else str(value)
    return None


def _cast_oid(type_name: object) -> int:
    names = type_name.get("names", []) if isinstance(type_name, dict) else []
    last = _only(names[-1])[1].get("sval") if names else None
    return _CAST_TYPES.get(str(last), 0)


def _value(node: object, params: _Params) -> str | None:
    """The value of a literal, a `$n`, or either under casts; None for anything else."""
    hint = 0
    kind, fields = _only(node)
    while kind == "TypeCast":
        hint = hint or _cast_oid(fields.get("typeName"))
        kind, fields = _only(fields.get("arg"))
    if kind == "A_Const":
        return _constant(fields)
    if kind == "ParamRef":
        return params.get(int(fields.get("number", 0)), hint)
    return None


def _column(node: object) -> str | None:
    """The column a ColumnRef names, whatever qualifies it (`s0."version"`)."""
    kind, fields = _only(node)
    refs = fields.get("fields", []) if kind == "ColumnRef" else []
    name = _only(refs[-1])[1].get("sval") if refs else None
    return name if isinstance(name, str) else None


def _relation(node: object) -> tuple[str | None, str] | None:
    fields = node if isinstance(node, dict) else {}
    if "RangeVar" in fields:
        fields = _only(fields)[1]
    name = fields.get("relname")
    return (fields.get("schemaname"), name) if isinstance(name, str) else None


def _conjuncts(node: object) -> Iterator[Json]:
    """The terms of an AND chain, nested or not (iterative: deep SQL must not recurse)."""
    stack = [node]
    while stack:
        kind, fields = _only(stack.pop())
        if kind == "BoolExpr" and fields.get("boolop") == "AND_EXPR":
            stack.extend(reversed(fields.get("args", [])))
        elif kind == "A_Expr":
            yield fields


def _where(node: object, params: _Params) -> dict[str, tuple[str | None, ...]]:
    """`column = value` and `column IN (values)` terms of a WHERE clause's top-level AND."""
    found: dict[str, tuple[str | None, ...]] = {}
    for term in _conjuncts(node):
        if [_only(n)[1].get("sval") for n in term.get("name", [])] != ["="]:
            continue
        left, right = term.get("lexpr"), term.get("rexpr")
        if _column(left) is None:
            left, right = right, left
        column = _column(left)
        if column is None:
            continue
        if term.get("kind") == "AEXPR_IN":
            items = _only(right)[1].get("items", [])
            found[column] = tuple(_value(item, params) for item in items)
        elif term.get("kind") == "AEXPR_OP":
            found[column] = (_value(right, params),)
    return found


def _where_rows(conditions: Mapping[str, tuple[str | None, ...]], keys: Sequence[str]) -> list[Row]:
    """One row per combination of the values the WHERE allows for the `keys` columns."""
    if any(key not in conditions for key in keys):
        return []
    single = {column: values[0] for column, values in conditions.items() if len(values) == 1}
    rows: list[Row] = []
    for combination in itertools.product(*(conditions[key] for key in keys)):
        rows.append({**single, **dict(zip(keys, combination, strict=True))})
    return rows


def _set_values(targets: Sequence[object], params: _Params) -> dict[str, str | None]:
    """UPDATE's `SET column = value` pairs, `SET (a, b) = (x, y)` included."""
    values: dict[str, str | None] = {}
    for target in targets:
        fields = _only(target)[1]
        name, value = fields.get("name"), fields.get("val")
        kind, multi = _only(value)
        if kind == "MultiAssignRef":
            args = _only(multi.get("source"))[1].get("args", [])
            position = int(multi.get("colno", 0)) - 1
            value = args[position] if 0 <= position < len(args) else None
        if isinstance(name, str):
            values[name] = _value(value, params)
    return values


# -- the recogniser ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Claim:
    table: VersionTable
    explicit: bool  # its name came from `overrides`


@dataclass(frozen=True, slots=True)
class _Target:
    """A statement's target table and what the statement says about its columns."""

    schema: str | None
    name: str
    needs: Callable[[VersionTable], Sequence[str]]  # columns a framework needs named here
    named: frozenset[str] = frozenset()  # the columns the statement names
    inserting: bool = False  # an INSERT names every column its framework writes
    columns_of: ColumnsOf | None = field(default=None, compare=False)


class VersionRecognizer:
    """Finds framework version writes in statements; see the module docstring."""

    def __init__(
        self, tables: Iterable[VersionTable] = DEFAULT_TABLES, overrides: Mapping[str, str] | None = None
    ) -> None:
        claims = _claims(tuple(tables), overrides or {})
        self._by_name: dict[str, tuple[_Claim, ...]] = {}
        for claim in claims:
            self._by_name[claim.table.table] = (*self._by_name.get(claim.table.table, ()), claim)
        self.tables: tuple[VersionTable, ...] = tuple(claim.table for claim in claims)
        # For `prefilter.may_write_version`: it lower-cases the text it searches.
        self.table_names: frozenset[bytes] = frozenset(name.encode("utf-8").lower() for name in self._by_name)

    def from_sql(self, sql: str, *, columns_of: ColumnsOf | None = None) -> list[VersionWrite]:
        """Version writes in a simple-protocol query text (values inlined)."""
        return self._recognise(sql, _Params(), columns_of)

    def from_statement(
        self,
        sql: str,
        params: Sequence[bytes | None],
        formats: Sequence[int] = (),
        param_types: Sequence[int] = (),
        *,
        columns_of: ColumnsOf | None = None,
    ) -> list[VersionWrite]:
        """Version writes in a Parse's text executed with a Bind's parameters."""
        return self._recognise(sql, _Params(params, formats, param_types), columns_of)

    def _recognise(self, sql: str, params: _Params, columns_of: ColumnsOf | None) -> list[VersionWrite]:
        writes: list[VersionWrite] = []
        for raw in _statements(sql):
            kind, fields = _only(raw.get("stmt"))
            handler = _HANDLERS.get(kind)
            if handler is not None:
                writes.extend(handler(self, fields, params, columns_of))
        return writes

    def _choose(self, target: _Target) -> VersionTable | None:
        """The framework writing `target`: one table, or the tied candidates under a joined name."""
        claims = [c for c in self._by_name.get(target.name, ()) if _schema_fits(c.table, target.schema)]
        if any(claim.explicit for claim in claims):
            claims = [claim for claim in claims if claim.explicit]
        tables = [c.table for c in claims if all(col in target.named for col in target.needs(c.table))]
        tables = _by_columns(tables, target)
        if not tables:
            return None
        if len(tables) == 1:
            return tables[0]
        return replace(tables[0], framework="|".join(t.framework for t in tables))

    # -- per statement type

    def _insert(self, fields: Json, params: _Params, columns_of: ColumnsOf | None) -> list[VersionWrite]:
        where = _relation(fields.get("relation"))
        names = [str(_only(col)[1].get("name")) for col in fields.get("cols", [])]
        value_lists = _only(fields.get("selectStmt"))[1].get("valuesLists", [])
        if where is None or not value_lists or not names:
            return []
        named = frozenset(names)
        table = self._choose(_Target(*where, _version_columns, named, inserting=True, columns_of=columns_of))
        if table is None:
            return []
        writes = []
        for values in value_lists:
            items = _only(values)[1].get("items", [])
            if len(items) == len(names):
                row = dict(zip(names, (_value(item, params) for item in items), strict=True))
                writes.extend(_inserted(table, row))
        return writes

    def _update(self, fields: Json, params: _Params, columns_of: ColumnsOf | None) -> list[VersionWrite]:
        where = _relation(fields.get("relation"))
        assigned = _set_values(fields.get("targetList", []), params)
        conditions = _where(fields.get("whereClause"), params)
        if where is None:
            return []
        named = frozenset(assigned) | frozenset(conditions)
        table = self._choose(_Target(*where, _version_columns, named, columns_of=columns_of))
        if table is None:
            return []
        if any(column in assigned for column in table.version_columns):
            return _updated(table, assigned, conditions)
        if _rules(table).rerun & assigned.keys():
            rows = _where_rows(conditions, table.version_columns)
            return [w for row in rows for w in _inserted(table, {**row, **assigned})]
        return []

    def _delete(self, fields: Json, params: _Params, columns_of: ColumnsOf | None) -> list[VersionWrite]:
        where = _relation(fields.get("relation"))
        if where is None:
            return []
        if fields.get("whereClause") is None:
            return self._clear([where], columns_of)
        conditions = _where(fields.get("whereClause"), params)
        table = self._choose(_Target(*where, _delete_columns, frozenset(conditions), columns_of=columns_of))
        if table is None:
            return []
        writes = []
        for row in _where_rows(conditions, _delete_columns(table)):
            version = _deleted_version(table, row)
            if version is not None:
                writes.append(VersionWrite(table.framework, version, "revert"))
        return writes

    def _truncate(self, fields: Json, params: _Params, columns_of: ColumnsOf | None) -> list[VersionWrite]:
        relations = [_relation(node) for node in fields.get("relations", [])]
        return self._clear([r for r in relations if r is not None], columns_of)

    def _clear(
        self, relations: Sequence[tuple[str | None, str]], columns_of: ColumnsOf | None
    ) -> list[VersionWrite]:
        writes = []
        for schema, name in relations:
            table = self._choose(_Target(schema, name, _nothing, columns_of=columns_of))
            if table is not None:
                writes.append(VersionWrite(table.framework, ALL_VERSIONS, "revert"))
        return writes


_Handler: TypeAlias = Callable[[VersionRecognizer, Json, _Params, ColumnsOf | None], list[VersionWrite]]
_HANDLERS: Final[Mapping[str, _Handler]] = {
    "InsertStmt": VersionRecognizer._insert,
    "UpdateStmt": VersionRecognizer._update,
    "DeleteStmt": VersionRecognizer._delete,
    "TruncateStmt": VersionRecognizer._truncate,
}


def _statements(sql: str) -> list[Json]:
    nul = sql.find("\0")  # the protocol's strings end at the first NUL
    try:
        tree = json.loads(parse_sql_json(sql if nul < 0 else sql[:nul]))
    except (ParseError, UnicodeError, RecursionError, ValueError):
        return []
    stmts = tree.get("stmts", []) if isinstance(tree, dict) else []
    return [raw for raw in stmts if isinstance(raw, dict)]


def _inserted(table: VersionTable, row: Row) -> list[VersionWrite]:
    version = _version(table, row)
    if version is None:
        return []
    rules = _rules(table)
    return [
        VersionWrite(table.framework, version, rules.action(row), rules.dirty(row), rules.before_ddl(row))
    ]


def _updated(
    table: VersionTable, assigned: Mapping[str, str | None], conditions: Mapping[str, tuple[str | None, ...]]
) -> list[VersionWrite]:
    old = _where_rows(conditions, table.version_columns)
    base = old[0] if len(old) == 1 else {}
    row = {**base, **assigned}
    version = _version(table, row)
    if version is None:
        return []
    previous = _version(table, base) if base else None
    rules = _rules(table)
    return [VersionWrite(table.framework, version, "apply", rules.dirty(row), previous=previous)]


def _deleted_version(table: VersionTable, row: Row) -> str | None:
    rules = _rules(table)
    if rules.delete_columns is None:
        return _version(table, row)
    values = [row.get(column) for column in rules.delete_columns]
    return None if None in values else rules.separator.join(v for v in values if v is not None)


def _version_columns(table: VersionTable) -> Sequence[str]:
    return table.version_columns


def _nothing(table: VersionTable) -> Sequence[str]:
    return ()


def _schema_fits(table: VersionTable, schema: str | None) -> bool:
    return schema is None or table.schema is None or schema == table.schema


def _by_columns(tables: list[VersionTable], target: _Target) -> list[VersionTable]:
    """The candidates the column evidence supports best: the catalog's, else an INSERT's."""
    actual = target.columns_of(target.schema, target.name) if target.columns_of is not None else None
    if actual is not None:
        return _most_specific([t for t in tables if t.columns <= actual])
    if target.inserting:
        return _most_specific([t for t in tables if t.columns <= target.named])
    return tables


def _most_specific(tables: list[VersionTable]) -> list[VersionTable]:
    widest = max((len(t.columns) for t in tables), default=0)
    return [t for t in tables if len(t.columns) == widest]


def _claims(tables: tuple[VersionTable, ...], overrides: Mapping[str, str]) -> list[_Claim]:
    known = {table.framework for table in tables}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"version table override for unknown framework(s): {', '.join(unknown)}")
    claims = []
    for table in tables:
        name = overrides.get(table.framework)
        if name is None:
            claims.append(_Claim(table, explicit=False))
        else:
            schema, bare = _split_name(name)
            claims.append(_Claim(replace(table, schema=schema, table=bare), explicit=True))
    return claims


def _split_name(name: str) -> tuple[str | None, str]:
    """`table` or `schema.table` from configuration. Names are exact (case kept, no folding);
    a double-quoted part may hold a dot (`"my.schema".t`), `""` in it stands for a quote."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    text = name.strip()
    at = 0
    while at < len(text):
        char = text[at]
        if char == '"' and quoted and text[at + 1 : at + 2] == '"':
            current.append('"')
            at += 1
        elif char == '"':
            quoted = not quoted
        elif char == "." and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        at += 1
    parts.append("".join(current))
    if quoted or len(parts) > 2 or not all(parts):
        raise ValueError(f"invalid version table name {name!r}: expected table or schema.table")
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])


# -- ordering ------------------------------------------------------------------------------


def _unordered(version: str) -> SortKey:
    return (0,)


def _integer(version: str) -> SortKey:
    text = version.strip()
    digits = text[1:] if text[:1] in "+-" else text
    return (0, int(text), "") if digits.isdigit() and digits.isascii() else (1, 0, version)


def _leading_digits(text: str) -> str:
    end = 0
    while end < len(text) and "0" <= text[end] <= "9":
        end += 1
    return text[:end]


def _numeric_prefix(version: str) -> SortKey:
    digits = _leading_digits(version)
    return (0, int(digits), version[len(digits) :]) if digits else (1, 0, version)


def _numeric_suffix(version: str) -> SortKey:
    digits = _leading_digits(version[::-1])[::-1]
    return (0, int(digits), version) if digits else (1, 0, version)


def _node_pg_migrate(version: str) -> SortKey:
    # Its own order: 13-digit prefixes are epoch milliseconds, 17-digit ones UTC
    # yyyymmddhhmmssfff, converted to milliseconds so the two formats interleave.
    digits = _leading_digits(version)
    if len(digits) == 17:
        try:
            moment = datetime.datetime.strptime(digits, "%Y%m%d%H%M%S%f").replace(tzinfo=datetime.UTC)
        except ValueError:
            return _numeric_prefix(version)
        return (0, int(moment.timestamp() * 1000), version[17:])
    return _numeric_prefix(version)


def _flyway(version: str) -> SortKey:
    parts = version.split(".")
    if all(part.isdigit() and part.isascii() for part in parts):
        numbers = [int(part) for part in parts]
        while len(numbers) > 1 and numbers[-1] == 0:  # Flyway: 1.0 is 1
            numbers.pop()
        return (0, tuple(numbers), "")
    return (1, (), version)  # a repeatable migration's script: after every version


def _django(version: str) -> SortKey:
    app, dot, name = version.partition(".")
    if not dot:
        return (1, "", 0, version)
    digits = _leading_digits(name)
    return (0, app, int(digits) if digits else -1, name)


_SORT_KEYS: Final[Mapping[str, Callable[[str], SortKey]]] = {
    "alembic": _unordered,
    "liquibase": _unordered,
    "sqitch": _unordered,
    "ecto": _integer,
    "golang-migrate": _integer,
    "goose": _integer,
    "rails": _integer,
    "dbmate": _integer,
    "flyway": _flyway,
    "django": _django,
    "typeorm": _numeric_suffix,
    "node-pg-migrate": _node_pg_migrate,
    "knex": _numeric_prefix,
    "sequelize": _numeric_prefix,
    "prisma": _numeric_prefix,
    "yoyo": _numeric_prefix,
}


def version_sort_key(framework: str, version: str) -> SortKey:
    """A key that orders `version`s as `framework` itself orders its migrations.

    Keys compare only within one framework. Integers (Ecto, golang-migrate, goose, Rails,
    dbmate timestamps) compare as numbers, so "9" < "10"; Flyway part by part ("1.9" <
    "1.10"; "1.0" == "1"), repeatable scripts after every version; Django by app, then the
    name's number ("app.0002_x"): it orders migrations only within an app; Knex,
    Sequelize, Prisma, yoyo and node-pg-migrate by the name's numeric prefix, then the rest;
    TypeORM by the name's trailing timestamp (`AddUsers1680000000000`). Alembic, Liquibase
    and sqitch versions have no order of their own (the revision graph, the changelog, the
    plan decide): every key is (0,), and applied order is history order. A joined name
    ("rails|dbmate") uses its first framework's order; an unknown framework the numeric
    prefix.
    """
    first = framework.split("|", 1)[0]
    return _SORT_KEYS.get(first, _numeric_prefix)(version)
