"""Statement facts from pglast's parse tree: kind, command tag, objects, subcommands.

`classify(sql)` turns a query text (one Query message, or one Parse) into one `Statement`
per SQL statement. It never raises: text that does not parse becomes a statement of kind
UNPARSABLE carrying the `GuardError` (42601) a client should see.

How it parses: the whole text goes through `pglast.parser.parse_sql_json` once (the fast C
parser; `pglast.parse_sql` builds Python objects and is ten times slower), and Postgres's
own statement bounds split it. Only when that fails, because the text holds an ELECTRIC
statement or an error, are the statements split on the scanner's tokens and parsed one by
one, so that the good ones still get their facts and the bad one its own error position.

Positions are 0-based character offsets in the text passed in (`Statement.start`), error
positions 1-based, as in Postgres's ErrorResponse.

Text the guard cannot read as the server reads it is UNPARSABLE, never guessed at: a parse
error (pglast's grammar is newer than the server's: `system_user` is reserved there), nesting
deeper than the parser or Python's JSON reader go, a backslash in a plain string literal while
`standard_conforming_strings` is off (pglast's scanner always has it on), and bytes that do
not decode in the client encoding (`undecodable`).

A DO block carries the statements its PL/pgSQL body runs (`DoFacts`), classified in turn, so
that the rules judge each of them; nested DO blocks are read `MAX_DO_DEPTH` levels deep.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Final, TypeAlias

from pglast.parser import ParseError, parse_sql_json

from proxy.ddl import electric, lexer, plpgsql
from proxy.ddl.electric import ElectricCommand
from proxy.ddl.names import QualifiedName
from proxy.errors import GuardError

Json: TypeAlias = dict[str, Any]

SYNTAX_ERROR: Final = "42601"
INVALID_ENCODING: Final = "22021"
TOO_COMPLEX: Final = "54001"
MAX_DO_DEPTH: Final = 4


# Object types that name a relation: `ALTER <type> r RENAME TO` renames the relation whatever
# kind it is (Postgres accepts ALTER INDEX/VIEW/SEQUENCE ... RENAME on tables too), and their
# ALTER names the relation that holds what changed (columns, constraints, ...).
RELATION_OBJECT_TYPES: Final = frozenset(
    {
        "OBJECT_TABLE",
        "OBJECT_INDEX",
        "OBJECT_VIEW",
        "OBJECT_MATVIEW",
        "OBJECT_SEQUENCE",
        "OBJECT_FOREIGN_TABLE",
    }
)


class Kind(StrEnum):
    CREATE_TABLE = "CREATE_TABLE"
    ALTER_TABLE = "ALTER_TABLE"  # every AlterTableStmt: ALTER TABLE/INDEX/VIEW/SEQUENCE/...
    DROP = "DROP"  # every DropStmt; DropFacts.remove_type tells DROP INDEX from DROP TABLE
    RENAME = "RENAME"
    CREATE_INDEX = "CREATE_INDEX"
    TRANSACTION = "TRANSACTION"
    SET = "SET"  # SET, RESET, DISCARD ALL
    DO = "DO"
    CALL = "CALL"
    ELECTRIC = "ELECTRIC"  # the ELECTRIC family and CALL electric.electrify(...)
    OTHER_DDL = "OTHER_DDL"
    DML = "DML"
    SELECT = "SELECT"
    OTHER = "OTHER"
    UNPARSABLE = "UNPARSABLE"


class TxKind(StrEnum):
    BEGIN = "BEGIN"  # BEGIN and START TRANSACTION
    COMMIT = "COMMIT"  # COMMIT and END
    ROLLBACK = "ROLLBACK"  # ROLLBACK and ABORT
    SAVEPOINT = "SAVEPOINT"
    RELEASE = "RELEASE"
    ROLLBACK_TO = "ROLLBACK_TO"
    PREPARE = "PREPARE"
    COMMIT_PREPARED = "COMMIT_PREPARED"
    ROLLBACK_PREPARED = "ROLLBACK_PREPARED"


class SetAction(StrEnum):
    VALUE = "VALUE"  # SET name TO value, ...
    DEFAULT = "DEFAULT"  # SET name TO DEFAULT
    CURRENT = "CURRENT"  # SET name FROM CURRENT
    RESET = "RESET"  # RESET name
    RESET_ALL = "RESET_ALL"  # RESET ALL, DISCARD ALL


@dataclass(frozen=True, slots=True)
class StatementText:
    text: str
    start: int  # 0-based character offset in the text that was split


@dataclass(frozen=True, slots=True)
class ColumnFacts:
    name: str
    type_name: str  # "int4", "varchar(255)", "int4[]", "timestamp(3)", "public.mood"
    base_type: str  # the type's own name: "int4", "varchar", "mood"
    type_schema: str | None  # "pg_catalog" for SQL-standard spellings, as written otherwise
    typmods: tuple[str, ...]
    is_array: bool
    constraints: tuple[str, ...]  # ConstrType names: CONSTR_NOTNULL, CONSTR_DEFAULT, ...


@dataclass(frozen=True, slots=True)
class AlterSubcommand:
    subtype: str  # AlterTableType name: AT_AddColumn, AT_DropColumn, ...
    column: str | None  # the column, for subcommands that act on one
    name: str | None  # the raw name operand: column, constraint, trigger, ...
    column_def: ColumnFacts | None  # ADD COLUMN's definition; ALTER COLUMN TYPE's new type
    constraint: str | None  # ADD CONSTRAINT's ConstrType name
    missing_ok: bool
    partition: QualifiedName | None = None  # ATTACH/DETACH PARTITION's partition


@dataclass(frozen=True, slots=True)
class AlterTableFacts:
    relation: QualifiedName
    object_type: str  # OBJECT_TABLE, OBJECT_INDEX, OBJECT_VIEW, ...
    only: bool
    missing_ok: bool
    subcommands: tuple[AlterSubcommand, ...]


@dataclass(frozen=True, slots=True)
class RenameFacts:
    rename_type: str  # OBJECT_TABLE, OBJECT_COLUMN, OBJECT_TABCONSTRAINT, OBJECT_INDEX, ...
    relation_type: str | None  # for columns and constraints: the kind of their relation
    relation: QualifiedName | None  # the relation renamed or holding what is renamed
    subname: str | None  # the column, constraint, trigger, ... (or schema) renamed
    newname: str
    missing_ok: bool


@dataclass(frozen=True, slots=True)
class DropFacts:
    remove_type: str  # OBJECT_TABLE, OBJECT_INDEX, OBJECT_SCHEMA, ...
    cascade: bool
    missing_ok: bool
    concurrent: bool


@dataclass(frozen=True, slots=True)
class IndexFacts:
    table: QualifiedName
    name: str | None
    concurrent: bool
    unique: bool
    only: bool


@dataclass(frozen=True, slots=True)
class CreateTableFacts:
    table: QualifiedName
    columns: tuple[ColumnFacts, ...]
    constraints: tuple[str, ...]  # table-level ConstrType names
    if_not_exists: bool


@dataclass(frozen=True, slots=True)
class SetSchemaFacts:
    """ALTER <object> ... SET SCHEMA: the object moves and its qualified name changes."""

    object_type: str
    relation: QualifiedName | None
    new_schema: str


@dataclass(frozen=True, slots=True)
class TxFacts:
    kind: TxKind
    name: str | None  # savepoint name or prepared-transaction id
    chain: bool


@dataclass(frozen=True, slots=True)
class SetFacts:
    name: str | None  # None for RESET ALL / DISCARD ALL
    action: SetAction
    values: tuple[str, ...]
    local: bool


@dataclass(frozen=True, slots=True)
class DoFacts:
    """What a DO block runs, as far as its text tells."""

    language: str
    statements: tuple[Statement, ...]  # each classified in its own text (positions too)
    opaque: plpgsql.Opaque | None  # why it may run SQL not read; None: every statement parsed
    reason: str = ""  # what made it opaque, for messages

    @property
    def readable(self) -> bool:
        """Every statement the block can run is known and parsed."""
        return self.opaque is None


# Settings whose change can change what an unqualified name resolves to: search_path itself,
# and the current role through `$user`.
SEARCH_PATH_SETTINGS: Final = frozenset({"search_path", "role", "session_authorization"})


@dataclass(frozen=True, slots=True)
class Statement:
    text: str  # the statement as split, from its first token to before its `;`
    start: int  # 0-based character offset of `text` in the classified string
    kind: Kind
    tag: str  # the command tag Postgres reports (row counts left out)
    node: str | None = None  # the parse node type, e.g. "AlterTableStmt"
    objects: tuple[QualifiedName, ...] = ()
    transactional: bool = True  # False: cannot run inside a transaction block
    create_table: CreateTableFacts | None = None
    alter: AlterTableFacts | None = None
    rename: RenameFacts | None = None
    drop: DropFacts | None = None
    index: IndexFacts | None = None
    set_schema: SetSchemaFacts | None = None
    tx: TxFacts | None = None
    setting: SetFacts | None = None
    electric: ElectricCommand | None = None
    do: DoFacts | None = None
    error: GuardError | None = field(default=None, compare=False)  # for UNPARSABLE

    @property
    def ddl(self) -> bool:
        """A schema-changing statement (ELECTRIC statements included): recorded as migration.

        A DO block is one when a statement it runs is.
        """
        if self.kind is Kind.DO:
            return self.do is not None and any(s.ddl for s in self.do.statements)
        return self.kind in _DDL_KINDS

    @property
    def may_change_client_encoding(self) -> bool:
        """Whether the server may read the next message in another encoding after this one.

        Postgres reports the change (ParameterStatus) only at the end of the command, or of
        an extended-protocol batch: text sent after this statement, before that report, may
        be read by the server in an encoding the session does not know yet.
        """
        if self.kind is Kind.SET:
            return self.setting is None or self.setting.name in (None, "client_encoding")
        if self.kind in (Kind.DO, Kind.CALL):
            return True
        return "set_config" in self.text.lower()

    @property
    def may_change_search_path(self) -> bool:
        """Whether name resolution may differ after this statement.

        Conservative: procedural code (DO, CALL) and any `set_config` call count. A SET
        inside a transaction that rolls back is undone by Postgres; the session follows the
        transaction status for that.
        """
        if self.kind is Kind.SET:
            return (
                self.setting is None or self.setting.name is None or self.setting.name in SEARCH_PATH_SETTINGS
            )
        if self.kind in (Kind.DO, Kind.CALL):
            return True
        return "set_config" in self.text.lower()


_DDL_KINDS: Final = frozenset(
    {
        Kind.CREATE_TABLE,
        Kind.ALTER_TABLE,
        Kind.DROP,
        Kind.RENAME,
        Kind.CREATE_INDEX,
        Kind.OTHER_DDL,
        Kind.ELECTRIC,
    }
)


# -- entry points ----------------------------------------------------------------------


def split_statements(sql: str) -> list[StatementText]:
    """The statements of `sql`, split on the scanner's tokens (ELECTRIC statements too).

    Empty statements and comment-only pieces are dropped. When the text cannot even be
    scanned (an unterminated quote), the whole stripped text comes back as one piece.
    """
    sql = _until_nul(sql)
    try:
        pieces = lexer.split_tokens(lexer.scan_tokens(sql))
    except (ParseError, UnicodeEncodeError):
        stripped = sql.strip()
        return [StatementText(stripped, len(sql) - len(sql.lstrip()))] if stripped else []
    return [StatementText(sql[p.start : p.end], p.start) for p in pieces]


def classify(sql: str, *, standard_conforming_strings: bool = True) -> list[Statement]:
    """One `Statement` per statement in `sql`; never raises.

    `standard_conforming_strings` is the session's setting, as the server reports it.
    """
    return _classify(_until_nul(sql), _Reading(standard_conforming_strings, 0))


def undecodable(raw: bytes, encoding: str) -> Statement:
    """The UNPARSABLE statement for bytes that do not decode in client encoding `encoding`.

    Its text is `raw` read as Latin-1, one character per byte, so that offsets still match.
    """
    error = GuardError(
        f'the proxy cannot read this statement in client encoding "{encoding}"',
        sqlstate=INVALID_ENCODING,
        hint="Send statements that change the schema in an encoding the proxy reads (UTF8, for one).",
    )
    text = raw.decode("latin-1")
    return _unparsable(text.strip(), len(text) - len(text.lstrip()), error)


@dataclass(frozen=True, slots=True)
class _Reading:
    """How a text is read: the session's scanner setting, and how deep in DO blocks."""

    standard_strings: bool
    depth: int


def _classify(sql: str, reading: _Reading) -> list[Statement]:
    if not reading.standard_strings and "\\" in sql:
        unreadable = _backslash_in_string(sql)
        if unreadable is not None:
            return [unreadable]
    try:
        return _classify_whole(sql, reading)
    except RecursionError:
        pass
    # Too deep for one parse of the whole text: the statements one by one, so that only the
    # deep one is unparsable.
    try:
        return _classify_pieces(sql, reading)
    except RecursionError:
        return [_too_deep(sql)]


def _classify_whole(sql: str, reading: _Reading) -> list[Statement]:
    try:
        tree = parse_sql_json(sql)
    except ParseError:
        return _classify_pieces(sql, reading)
    except UnicodeEncodeError:
        return [_bad_encoding(sql)]
    return _from_tree(sql, json.loads(tree), 0, reading)


def _too_deep(text: str, start: int = 0) -> Statement:
    # Nesting deeper than Python's JSON reader goes: too deep to judge, so not passed as safe.
    error = GuardError("statement is nested too deeply to be inspected", sqlstate=TOO_COMPLEX)
    return _unparsable(text.strip(), start + len(text) - len(text.lstrip()), error)


def _backslash_in_string(sql: str) -> Statement | None:
    """With standard_conforming_strings off, a backslash in a plain '...' literal escapes (the
    server's reading) where pglast's scanner sees a literal backslash: from there on the two
    readings of quotes and statement bounds differ. Escape strings (E'...') and dollar quotes
    read the same either way, and the scanners agree up to the first such backslash."""
    try:
        tokens = lexer.scan_tokens(sql)
    except (ParseError, UnicodeEncodeError):
        return _unparsable(sql.strip(), len(sql) - len(sql.lstrip()), _backslash_error(None))
    for token in tokens:
        literal = sql[token.start : token.end + 1]
        if token.name == "SCONST" and literal.startswith("'") and "\\" in literal:
            error = _backslash_error(token.start + 1)
            return _unparsable(sql.strip(), len(sql) - len(sql.lstrip()), error)
    return None


def _until_nul(sql: str) -> str:
    # The protocol's strings end at the first NUL; so does everything Postgres sees.
    nul = sql.find("\0")
    return sql if nul < 0 else sql[:nul]


def _backslash_error(position: int | None) -> GuardError:
    return GuardError(
        "the proxy cannot read a backslash in a string literal while standard_conforming_strings is off",
        sqlstate=SYNTAX_ERROR,
        position=position,
        hint="Use an escape string (E'...') or turn standard_conforming_strings on.",
    )


def _classify_pieces(sql: str, reading: _Reading) -> list[Statement]:
    try:
        tokens = lexer.scan_tokens(sql)
    except ParseError as exc:
        stripped = sql.strip()
        start = len(sql) - len(sql.lstrip())
        return [_unparsable(stripped, start, _parse_error(sql, exc, 0, None))]
    except UnicodeEncodeError:
        return [_bad_encoding(sql)]
    statements: list[Statement] = []
    for piece in lexer.split_tokens(tokens):
        try:
            statements.extend(_classify_piece(sql, piece, reading))
        except RecursionError:
            statements.append(_too_deep(sql[piece.start : piece.end], piece.start))
    return statements


def _classify_piece(sql: str, piece: lexer.Piece, reading: _Reading) -> list[Statement]:
    text = sql[piece.start : piece.end]
    if electric.is_electric(sql, piece.tokens):
        try:
            command = electric.parse_piece(sql, piece)
        except GuardError as exc:
            return [_unparsable(text, piece.start, exc)]
        return [_electric_statement(text, piece.start, command)]
    try:
        tree = parse_sql_json(text)
    except ParseError as exc:
        return [_unparsable(text, piece.start, _parse_error(sql, exc, piece.start, piece.terminator))]
    return _from_tree(text, json.loads(tree), piece.start, reading)


def _parse_error(sql: str, exc: ParseError, offset: int, terminator: lexer.Token | None) -> GuardError:
    message = str(exc.args[0])
    location = exc.args[1] if len(exc.args) > 1 else None
    if message.startswith("stack depth limit exceeded"):
        # The parser's own recursion limit (Postgres's max_stack_depth may allow more).
        return GuardError("statement is nested too deeply to be inspected", sqlstate=TOO_COMPLEX)
    if location is not None:
        return GuardError(message, sqlstate=SYNTAX_ERROR, position=offset + int(location) + 1)
    if message.endswith("at end of input") and terminator is not None:
        # Parsed alone the statement ended early; in the whole text Postgres meets the `;`.
        message = message.removesuffix("at end of input") + 'at or near ";"'
        return GuardError(message, sqlstate=SYNTAX_ERROR, position=terminator.start + 1)
    return GuardError(message, sqlstate=SYNTAX_ERROR, position=len(sql) + 1)


def _unparsable(text: str, start: int, error: GuardError) -> Statement:
    return Statement(text=text, start=start, kind=Kind.UNPARSABLE, tag="", error=error)


def _bad_encoding(sql: str) -> Statement:
    error = GuardError('invalid byte sequence for encoding "UTF8"', sqlstate=INVALID_ENCODING)
    return _unparsable(sql.strip(), len(sql) - len(sql.lstrip()), error)


def _electric_statement(text: str, start: int, command: ElectricCommand) -> Statement:
    table = getattr(command, "table", None)
    objects = (table,) if isinstance(table, QualifiedName) else ()
    return Statement(
        text=text, start=start, kind=Kind.ELECTRIC, tag=command.tag, objects=objects, electric=command
    )


def _from_tree(text: str, tree: Json, offset: int, reading: _Reading) -> list[Statement]:
    """Statements of one parse tree of `text`, which starts at `offset` in the caller's string."""
    raws: list[Json] = tree.get("stmts", [])
    if not raws:
        return []
    spans = _char_spans(text, raws)
    statements = []
    for raw, (start, end) in zip(raws, spans, strict=True):
        body = text[start:end].rstrip()
        ((node, fields),) = raw["stmt"].items()
        statements.append(_facts(node, fields, _Base(body, offset + start, node, reading)))
    return statements


def _char_spans(text: str, raws: list[Json]) -> list[tuple[int, int]]:
    """Character spans of the raw statements (the JSON gives UTF-8 byte offsets)."""
    byte_spans = []
    for raw in raws:
        start = raw.get("stmt_location", 0)
        length = raw.get("stmt_len", 0)  # 0: up to the end of the text
        byte_spans.append((start, start + length if length else -1))
    if text.isascii():
        return [(s, len(text) if e < 0 else e) for s, e in byte_spans]
    encoded = text.encode("utf-8")
    spans = []
    for start, end in byte_spans:
        stop = len(encoded) if end < 0 else end
        char_start = len(encoded[:start].decode("utf-8", "replace"))
        char_end = char_start + len(encoded[start:stop].decode("utf-8", "replace"))
        spans.append((char_start, char_end))
    return spans


# -- facts per node type ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Base:
    text: str
    start: int
    node: str
    reading: _Reading

    def make(
        self,
        kind: Kind,
        tag: str,
        *,
        objects: tuple[QualifiedName, ...] = (),
        transactional: bool = True,
        create_table: CreateTableFacts | None = None,
        alter: AlterTableFacts | None = None,
        rename: RenameFacts | None = None,
        drop: DropFacts | None = None,
        index: IndexFacts | None = None,
        set_schema: SetSchemaFacts | None = None,
        tx: TxFacts | None = None,
        setting: SetFacts | None = None,
        electric: ElectricCommand | None = None,
        do: DoFacts | None = None,
    ) -> Statement:
        return Statement(
            text=self.text,
            start=self.start,
            kind=kind,
            tag=tag,
            node=self.node,
            objects=objects,
            transactional=transactional,
            create_table=create_table,
            alter=alter,
            rename=rename,
            drop=drop,
            index=index,
            set_schema=set_schema,
            tx=tx,
            setting=setting,
            electric=electric,
            do=do,
        )


_Handler: TypeAlias = Callable[[Json, _Base], Statement]


def _facts(node: str, fields: Json, base: _Base) -> Statement:
    handler = _HANDLERS.get(node)
    if handler is not None:
        return handler(fields, base)
    simple = _SIMPLE.get(node)
    if simple is not None:
        kind, tag = simple
        relation = fields.get("relation", fields.get("sequence"))
        objects = (_range_var(relation),) if isinstance(relation, dict) else ()
        return base.make(kind, tag, objects=objects, transactional=node not in _NEVER_IN_TRANSACTION)
    # A node type newer than this table: name it after the node, treat it as non-DDL.
    return base.make(Kind.OTHER, node.removesuffix("Stmt").upper())


def _do(fields: Json, base: _Base) -> Statement:
    reading = base.reading
    if reading.depth >= MAX_DO_DEPTH:
        facts = DoFacts("plpgsql", (), plpgsql.Opaque.UNREADABLE, "DO blocks nested too deeply")
        return base.make(Kind.DO, "DO", do=facts)
    body = plpgsql.read_do(fields, standard_conforming_strings=reading.standard_strings)
    inner = _Reading(reading.standard_strings, reading.depth + 1)
    statements = tuple(s for text in body.statements for s in _classify(text, inner))
    opaque, reason = body.opaque, body.reason
    unreadable = next((s for s in statements if s.kind is Kind.UNPARSABLE), None)
    if opaque is None and unreadable is not None:
        opaque = plpgsql.Opaque.UNREADABLE
        reason = unreadable.error.message if unreadable.error is not None else "syntax error"
    return base.make(Kind.DO, "DO", do=DoFacts(body.language, statements, opaque, reason))


def _create_table(fields: Json, base: _Base) -> Statement:
    table = _range_var(fields["relation"])
    columns = []
    constraints = []
    for element in fields.get("tableElts", []):
        if "ColumnDef" in element:
            columns.append(_column(element["ColumnDef"]))
        elif "Constraint" in element:
            constraints.append(element["Constraint"]["contype"])
    facts = CreateTableFacts(table, tuple(columns), tuple(constraints), bool(fields.get("if_not_exists")))
    return base.make(Kind.CREATE_TABLE, "CREATE TABLE", objects=(table,), create_table=facts)


def _alter_table(fields: Json, base: _Base) -> Statement:
    relation = _range_var(fields["relation"])
    object_type = fields.get("objtype", "OBJECT_TABLE")
    commands = tuple(_subcommand(c["AlterTableCmd"]) for c in fields.get("cmds", []) if "AlterTableCmd" in c)
    facts = AlterTableFacts(
        relation=relation,
        object_type=object_type,
        only=not fields["relation"].get("inh", False),
        missing_ok=bool(fields.get("missing_ok")),
        subcommands=commands,
    )
    concurrent_detach = any(
        c["AlterTableCmd"].get("def", {}).get("PartitionCmd", {}).get("concurrent", False)
        for c in fields.get("cmds", [])
        if "AlterTableCmd" in c
    )
    return base.make(
        Kind.ALTER_TABLE,
        "ALTER " + _object_words(object_type),
        objects=(relation,),
        alter=facts,
        transactional=not concurrent_detach,
    )


def _subcommand(command: Json) -> AlterSubcommand:
    subtype = command["subtype"]
    name = command.get("name")
    definition = command.get("def") or {}
    column_def = None
    if "ColumnDef" in definition:
        column_def = _column(definition["ColumnDef"], name)
    column = column_def.name if column_def is not None else (name if subtype in _COLUMN_SUBTYPES else None)
    constraint = definition["Constraint"]["contype"] if "Constraint" in definition else None
    partition = definition.get("PartitionCmd", {}).get("name")
    return AlterSubcommand(
        subtype=subtype,
        column=column,
        name=name,
        column_def=column_def,
        constraint=constraint,
        missing_ok=bool(command.get("missing_ok")),
        partition=_range_var(partition) if isinstance(partition, dict) else None,
    )


# Subcommands whose `name` is a column (for the others it names a constraint, trigger, ...).
_COLUMN_SUBTYPES: Final = frozenset(
    {
        "AT_AddColumn",
        "AT_ColumnDefault",
        "AT_CookedColumnDefault",
        "AT_DropNotNull",
        "AT_SetNotNull",
        "AT_SetExpression",
        "AT_DropExpression",
        "AT_SetStatistics",
        "AT_SetOptions",
        "AT_ResetOptions",
        "AT_SetStorage",
        "AT_SetCompression",
        "AT_DropColumn",
        "AT_AlterColumnType",
        "AT_AlterColumnGenericOptions",
        "AT_AddIdentity",
        "AT_SetIdentity",
        "AT_DropIdentity",
    }
)


def _column(definition: Json, name: str | None = None) -> ColumnFacts:
    type_node = definition.get("typeName", {})
    names = _strings(type_node.get("names", []))
    base_type = names[-1] if names else ""
    type_schema = names[-2] if len(names) >= 2 else None
    typmods = tuple(_typmod_text(m) for m in type_node.get("typmods", []))
    is_array = bool(type_node.get("arrayBounds"))
    printed = base_type if type_schema in (None, "pg_catalog") else f"{type_schema}.{base_type}"
    if typmods:
        printed += "(" + ",".join(typmods) + ")"
    if is_array:
        printed += "[]"
    constraints = tuple(
        c["Constraint"]["contype"] for c in definition.get("constraints", []) if "Constraint" in c
    )
    return ColumnFacts(
        name=definition.get("colname") or name or "",
        type_name=printed,
        base_type=base_type,
        type_schema=type_schema,
        typmods=typmods,
        is_array=is_array,
        constraints=constraints,
    )


def _typmod_text(node: Json) -> str:
    if "A_Const" in node:
        return _constant_text(node["A_Const"])
    if "ColumnRef" in node:
        return ".".join(_strings(node["ColumnRef"].get("fields", [])))
    return "?"


def _rename(fields: Json, base: _Base) -> Statement:
    rename_type = fields["renameType"]
    relation_type = fields.get("relationType")
    relation = _range_var(fields["relation"]) if "relation" in fields else None
    facts = RenameFacts(
        rename_type=rename_type,
        relation_type=relation_type,
        relation=relation,
        subname=fields.get("subname"),
        newname=fields.get("newname", ""),
        missing_ok=bool(fields.get("missing_ok")),
    )
    if relation is not None:
        objects: tuple[QualifiedName, ...] = (relation,)
    elif rename_type == "OBJECT_SCHEMA" and facts.subname is not None:
        objects = (QualifiedName(None, facts.subname),)
    else:
        named = _object_name(fields.get("object"))
        objects = (named,) if named is not None else ()
    # RENAME COLUMN/CONSTRAINT/ATTRIBUTE report the tag of the relation's ALTER.
    subject = relation_type if rename_type in _SUB_OBJECTS and relation_type else rename_type
    return base.make(Kind.RENAME, "ALTER " + _object_words(subject), objects=objects, rename=facts)


_SUB_OBJECTS: Final = frozenset({"OBJECT_COLUMN", "OBJECT_TABCONSTRAINT", "OBJECT_ATTRIBUTE"})


def _drop(fields: Json, base: _Base) -> Statement:
    remove_type = fields["removeType"]
    facts = DropFacts(
        remove_type=remove_type,
        cascade=fields.get("behavior") == "DROP_CASCADE",
        missing_ok=bool(fields.get("missing_ok")),
        concurrent=bool(fields.get("concurrent")),
    )
    on_table = remove_type in _ON_TABLE_OBJECTS
    objects = tuple(
        name
        for name in (_object_name(o, drop_last=on_table) for o in fields.get("objects", []))
        if name is not None
    )
    return base.make(
        Kind.DROP,
        "DROP " + _object_words(remove_type),
        objects=objects,
        drop=facts,
        transactional=not facts.concurrent,
    )


# Objects that live on a table: their DROP names `[schema.]table.object`; we report the table.
_ON_TABLE_OBJECTS: Final = frozenset({"OBJECT_TRIGGER", "OBJECT_POLICY", "OBJECT_RULE"})


def _index(fields: Json, base: _Base) -> Statement:
    table = _range_var(fields["relation"])
    facts = IndexFacts(
        table=table,
        name=fields.get("idxname"),
        concurrent=bool(fields.get("concurrent")),
        unique=bool(fields.get("unique")),
        only=not fields["relation"].get("inh", False),
    )
    return base.make(
        Kind.CREATE_INDEX, "CREATE INDEX", objects=(table,), index=facts, transactional=not facts.concurrent
    )


_TRANSACTIONS: Final[dict[str, tuple[TxKind, str]]] = {
    "TRANS_STMT_BEGIN": (TxKind.BEGIN, "BEGIN"),
    "TRANS_STMT_START": (TxKind.BEGIN, "START TRANSACTION"),
    "TRANS_STMT_COMMIT": (TxKind.COMMIT, "COMMIT"),
    "TRANS_STMT_ROLLBACK": (TxKind.ROLLBACK, "ROLLBACK"),
    "TRANS_STMT_SAVEPOINT": (TxKind.SAVEPOINT, "SAVEPOINT"),
    "TRANS_STMT_RELEASE": (TxKind.RELEASE, "RELEASE"),
    "TRANS_STMT_ROLLBACK_TO": (TxKind.ROLLBACK_TO, "ROLLBACK"),
    "TRANS_STMT_PREPARE": (TxKind.PREPARE, "PREPARE TRANSACTION"),
    "TRANS_STMT_COMMIT_PREPARED": (TxKind.COMMIT_PREPARED, "COMMIT PREPARED"),
    "TRANS_STMT_ROLLBACK_PREPARED": (TxKind.ROLLBACK_PREPARED, "ROLLBACK PREPARED"),
}


def _transaction(fields: Json, base: _Base) -> Statement:
    kind, tag = _TRANSACTIONS[fields["kind"]]
    facts = TxFacts(kind, fields.get("savepoint_name") or fields.get("gid"), bool(fields.get("chain")))
    # COMMIT/ROLLBACK PREPARED refuse to run inside a transaction block.
    outside = kind in (TxKind.COMMIT_PREPARED, TxKind.ROLLBACK_PREPARED)
    return base.make(Kind.TRANSACTION, tag, tx=facts, transactional=not outside)


_SET_ACTIONS: Final[dict[str, SetAction]] = {
    "VAR_SET_VALUE": SetAction.VALUE,
    "VAR_SET_MULTI": SetAction.VALUE,
    "VAR_SET_DEFAULT": SetAction.DEFAULT,
    "VAR_SET_CURRENT": SetAction.CURRENT,
    "VAR_RESET": SetAction.RESET,
    "VAR_RESET_ALL": SetAction.RESET_ALL,
}


def _variable_set(fields: Json, base: _Base) -> Statement:
    action = _SET_ACTIONS[fields["kind"]]
    name = fields.get("name")
    values = tuple(_value_text(arg) for arg in fields.get("args", []))
    facts = SetFacts(
        name=name.lower() if name else None, action=action, values=values, local=bool(fields.get("is_local"))
    )
    tag = "RESET" if action in (SetAction.RESET, SetAction.RESET_ALL) else "SET"
    return base.make(Kind.SET, tag, setting=facts)


def _discard(fields: Json, base: _Base) -> Statement:
    target = fields.get("target", "DISCARD_ALL")
    tag = "DISCARD " + target.removeprefix("DISCARD_")
    if target != "DISCARD_ALL":
        return base.make(Kind.OTHER, tag)
    # DISCARD ALL resets every setting and cannot run inside a transaction block.
    facts = SetFacts(name=None, action=SetAction.RESET_ALL, values=(), local=False)
    return base.make(Kind.SET, tag, setting=facts, transactional=False)


def _call(fields: Json, base: _Base) -> Statement:
    call = fields.get("funccall", {})
    procedure = _name_from_parts(_strings(call.get("funcname", [])))
    if procedure is not None and procedure == _ELECTRIFY:
        command = _electrify_command(call.get("args", []))
        if command is not None:
            return base.make(Kind.ELECTRIC, command.tag, objects=(command.table,), electric=command)
    return base.make(Kind.CALL, "CALL", objects=(procedure,) if procedure is not None else ())


_ELECTRIFY: Final = QualifiedName("electric", "electrify")


def _electrify_command(args: list[Json]) -> electric.ElectricEnable | None:
    # Only string constants name a table; anything else is left to Postgres.
    texts = []
    for arg in args:
        constant = arg.get("A_Const")
        if constant is None or "sval" not in constant:
            return None
        texts.append(constant["sval"].get("sval", ""))  # the JSON omits an empty string
    return electric.enable_from_call(texts)


def _select(fields: Json, base: _Base) -> Statement:
    into = _select_into(fields)
    if into is None:
        return base.make(Kind.SELECT, "SELECT")
    # SELECT ... INTO creates a table, as CREATE TABLE AS does.
    return base.make(Kind.OTHER_DDL, "SELECT INTO", objects=(_range_var(into["rel"]),))


def _select_into(fields: Json) -> Json | None:
    into = fields.get("intoClause")
    if into is not None:
        return dict(into)
    left = fields.get("larg")
    return _select_into(left) if isinstance(left, dict) else None


def _create_table_as(fields: Json, base: _Base) -> Statement:
    into = fields.get("into", {})
    objects = (_range_var(into["rel"]),) if "rel" in into else ()
    matview = fields.get("objtype") == "OBJECT_MATVIEW"
    tag = "CREATE MATERIALIZED VIEW" if matview else "CREATE TABLE AS"
    return base.make(Kind.OTHER_DDL, tag, objects=objects)


def _explain(fields: Json, base: _Base) -> Statement:
    analyze = any(
        option.get("DefElem", {}).get("defname") == "analyze"
        and _value_text(option["DefElem"].get("arg", {})) not in _FALSE_WORDS
        for option in fields.get("options", [])
    )
    ((node, inner),) = fields["query"].items()
    statement = _facts(node, inner, base)
    # EXPLAIN ANALYZE runs the statement: CREATE TABLE AS and the like take effect.
    if analyze and statement.ddl:
        return replace(statement, tag="EXPLAIN")
    return base.make(Kind.OTHER, "EXPLAIN")


_FALSE_WORDS: Final = frozenset({"false", "off", "0", "no"})


def _set_schema(fields: Json, base: _Base) -> Statement:
    object_type = fields["objectType"]
    relation = _range_var(fields["relation"]) if "relation" in fields else None
    named = relation if relation is not None else _object_name(fields.get("object"))
    facts = SetSchemaFacts(object_type, relation, fields.get("newschema", ""))
    objects = (named,) if named is not None else ()
    return base.make(Kind.OTHER_DDL, "ALTER " + _object_words(object_type), objects=objects, set_schema=facts)


def _object_typed(prefix: str, type_key: str) -> _Handler:
    """Handler for DDL nodes whose tag is `prefix` plus their object type."""

    def handler(fields: Json, base: _Base) -> Statement:
        named = _object_name(fields.get("object"))
        tag = f"{prefix} {_object_words(fields.get(type_key, ''))}"
        return base.make(Kind.OTHER_DDL, tag, objects=(named,) if named is not None else ())

    return handler


def _reindex(fields: Json, base: _Base) -> Statement:
    concurrent = any(p.get("DefElem", {}).get("defname") == "concurrently" for p in fields.get("params", []))
    # REINDEX SCHEMA/DATABASE/SYSTEM and CONCURRENTLY refuse transaction blocks.
    many = fields.get("kind") in ("REINDEX_OBJECT_SCHEMA", "REINDEX_OBJECT_DATABASE", "REINDEX_OBJECT_SYSTEM")
    relation = fields.get("relation")
    objects = (_range_var(relation),) if isinstance(relation, dict) else ()
    return base.make(Kind.OTHER, "REINDEX", objects=objects, transactional=not (concurrent or many))


def _vacuum(fields: Json, base: _Base) -> Statement:
    vacuum = bool(fields.get("is_vacuumcmd"))
    # VACUUM refuses transaction blocks; ANALYZE alone does not.
    return base.make(Kind.OTHER, "VACUUM" if vacuum else "ANALYZE", transactional=not vacuum)


def _cluster(fields: Json, base: _Base) -> Statement:
    relation = fields.get("relation")
    if isinstance(relation, dict):
        return base.make(Kind.OTHER, "CLUSTER", objects=(_range_var(relation),))
    # CLUSTER without a table reclusters everything, outside a transaction block only.
    return base.make(Kind.OTHER, "CLUSTER", transactional=False)


def _create_function(fields: Json, base: _Base) -> Statement:
    tag = "CREATE PROCEDURE" if fields.get("is_procedure") else "CREATE FUNCTION"
    name = _name_from_parts(_strings(fields.get("funcname", [])))
    return base.make(Kind.OTHER_DDL, tag, objects=(name,) if name is not None else ())


def _alter_function(fields: Json, base: _Base) -> Statement:
    named = _object_name({"ObjectWithArgs": fields.get("func", {})})
    tag = "ALTER " + _object_words(fields.get("objtype", "OBJECT_FUNCTION"))
    return base.make(Kind.OTHER_DDL, tag, objects=(named,) if named is not None else ())


def _define(fields: Json, base: _Base) -> Statement:
    name = _name_from_parts(_strings(fields.get("defnames", [])))
    tag = "CREATE " + _object_words(fields.get("kind", "OBJECT_TYPE"))
    return base.make(Kind.OTHER_DDL, tag, objects=(name,) if name is not None else ())


def _grant(fields: Json, base: _Base) -> Statement:
    tag = "GRANT" if fields.get("is_grant") else "REVOKE"
    objects = tuple(n for n in (_object_name(o) for o in fields.get("objects", [])) if n is not None)
    return base.make(Kind.OTHER_DDL, tag, objects=objects)


def _grant_role(fields: Json, base: _Base) -> Statement:
    # Role membership is cluster-wide, not part of any database's schema.
    return base.make(Kind.OTHER, "GRANT ROLE" if fields.get("is_grant") else "REVOKE ROLE")


def _fetch(fields: Json, base: _Base) -> Statement:
    return base.make(Kind.OTHER, "MOVE" if fields.get("ismove") else "FETCH")


def _deallocate(fields: Json, base: _Base) -> Statement:
    return base.make(Kind.OTHER, "DEALLOCATE ALL" if fields.get("isall") else "DEALLOCATE")


def _close(fields: Json, base: _Base) -> Statement:
    return base.make(Kind.OTHER, "CLOSE CURSOR" if fields.get("portalname") else "CLOSE CURSOR ALL")


def _move_all(fields: Json, base: _Base) -> Statement:
    return base.make(Kind.OTHER_DDL, "ALTER " + _object_words(fields.get("objtype", "OBJECT_TABLE")))


def _create_subscription(fields: Json, base: _Base) -> Statement:
    # Creating the replication slot (the default) cannot happen inside a transaction block.
    slot = all(
        _value_text(o["DefElem"].get("arg", {})) not in _FALSE_WORDS
        for o in fields.get("options", [])
        if o.get("DefElem", {}).get("defname") == "create_slot"
    )
    return base.make(Kind.OTHER_DDL, "CREATE SUBSCRIPTION", transactional=not slot)


def _alter_subscription(fields: Json, base: _Base) -> Statement:
    refreshes = fields.get("kind") in _REFRESHING_SUBSCRIPTION_KINDS
    return base.make(Kind.OTHER_DDL, "ALTER SUBSCRIPTION", transactional=not refreshes)


_REFRESHING_SUBSCRIPTION_KINDS: Final = frozenset(
    {
        "ALTER_SUBSCRIPTION_REFRESH",
        "ALTER_SUBSCRIPTION_SET_PUBLICATION",
        "ALTER_SUBSCRIPTION_ADD_PUBLICATION",
        "ALTER_SUBSCRIPTION_DROP_PUBLICATION",
    }
)


def _alter_database(fields: Json, base: _Base) -> Statement:
    moves = any(o.get("DefElem", {}).get("defname") == "tablespace" for o in fields.get("options", []))
    return base.make(Kind.OTHER, "ALTER DATABASE", transactional=not moves)


_HANDLERS: Final[dict[str, _Handler]] = {
    "CreateStmt": _create_table,
    "DoStmt": _do,
    "AlterTableStmt": _alter_table,
    "RenameStmt": _rename,
    "DropStmt": _drop,
    "IndexStmt": _index,
    "TransactionStmt": _transaction,
    "VariableSetStmt": _variable_set,
    "DiscardStmt": _discard,
    "CallStmt": _call,
    "SelectStmt": _select,
    "CreateTableAsStmt": _create_table_as,
    "ExplainStmt": _explain,
    "AlterObjectSchemaStmt": _set_schema,
    "AlterOwnerStmt": _object_typed("ALTER", "objectType"),
    "AlterObjectDependsStmt": _object_typed("ALTER", "objectType"),
    "CommentStmt": _object_typed("COMMENT ON", "objtype"),
    "SecLabelStmt": _object_typed("SECURITY LABEL ON", "objtype"),
    "ReindexStmt": _reindex,
    "VacuumStmt": _vacuum,
    "ClusterStmt": _cluster,
    "CreateFunctionStmt": _create_function,
    "AlterFunctionStmt": _alter_function,
    "DefineStmt": _define,
    "GrantStmt": _grant,
    "GrantRoleStmt": _grant_role,
    "FetchStmt": _fetch,
    "DeallocateStmt": _deallocate,
    "ClosePortalStmt": _close,
    "AlterTableMoveAllStmt": _move_all,
    "CreateSubscriptionStmt": _create_subscription,
    "AlterSubscriptionStmt": _alter_subscription,
    "AlterDatabaseStmt": _alter_database,
}

_D: Final = Kind.OTHER_DDL
_O: Final = Kind.OTHER

# Node types with a fixed kind and tag. OTHER_DDL follows what Postgres treats as DDL
# (what fires event triggers): shared objects (roles, databases, tablespaces) are not.
_SIMPLE: Final[dict[str, tuple[Kind, str]]] = {
    "InsertStmt": (Kind.DML, "INSERT"),
    "UpdateStmt": (Kind.DML, "UPDATE"),
    "DeleteStmt": (Kind.DML, "DELETE"),
    "MergeStmt": (Kind.DML, "MERGE"),
    "AlterCollationStmt": (_D, "ALTER COLLATION"),
    "AlterDefaultPrivilegesStmt": (_D, "ALTER DEFAULT PRIVILEGES"),
    "AlterDomainStmt": (_D, "ALTER DOMAIN"),
    "AlterEnumStmt": (_D, "ALTER TYPE"),
    "AlterEventTrigStmt": (_D, "ALTER EVENT TRIGGER"),
    "AlterExtensionContentsStmt": (_D, "ALTER EXTENSION"),
    "AlterExtensionStmt": (_D, "ALTER EXTENSION"),
    "AlterFdwStmt": (_D, "ALTER FOREIGN DATA WRAPPER"),
    "AlterForeignServerStmt": (_D, "ALTER SERVER"),
    "AlterOpFamilyStmt": (_D, "ALTER OPERATOR FAMILY"),
    "AlterOperatorStmt": (_D, "ALTER OPERATOR"),
    "AlterPolicyStmt": (_D, "ALTER POLICY"),
    "AlterPublicationStmt": (_D, "ALTER PUBLICATION"),
    "AlterSeqStmt": (_D, "ALTER SEQUENCE"),
    "AlterStatsStmt": (_D, "ALTER STATISTICS"),
    "AlterTSConfigurationStmt": (_D, "ALTER TEXT SEARCH CONFIGURATION"),
    "AlterTSDictionaryStmt": (_D, "ALTER TEXT SEARCH DICTIONARY"),
    "AlterTypeStmt": (_D, "ALTER TYPE"),
    "AlterUserMappingStmt": (_D, "ALTER USER MAPPING"),
    "CompositeTypeStmt": (_D, "CREATE TYPE"),
    "CreateAmStmt": (_D, "CREATE ACCESS METHOD"),
    "CreateCastStmt": (_D, "CREATE CAST"),
    "CreateConversionStmt": (_D, "CREATE CONVERSION"),
    "CreateDomainStmt": (_D, "CREATE DOMAIN"),
    "CreateEnumStmt": (_D, "CREATE TYPE"),
    "CreateEventTrigStmt": (_D, "CREATE EVENT TRIGGER"),
    "CreateExtensionStmt": (_D, "CREATE EXTENSION"),
    "CreateFdwStmt": (_D, "CREATE FOREIGN DATA WRAPPER"),
    "CreateForeignServerStmt": (_D, "CREATE SERVER"),
    "CreateForeignTableStmt": (_D, "CREATE FOREIGN TABLE"),
    "CreateOpClassStmt": (_D, "CREATE OPERATOR CLASS"),
    "CreateOpFamilyStmt": (_D, "CREATE OPERATOR FAMILY"),
    "CreatePLangStmt": (_D, "CREATE LANGUAGE"),
    "CreatePolicyStmt": (_D, "CREATE POLICY"),
    "CreatePublicationStmt": (_D, "CREATE PUBLICATION"),
    "CreateRangeStmt": (_D, "CREATE TYPE"),
    "CreateSchemaStmt": (_D, "CREATE SCHEMA"),
    "CreateSeqStmt": (_D, "CREATE SEQUENCE"),
    "CreateStatsStmt": (_D, "CREATE STATISTICS"),
    "CreateTransformStmt": (_D, "CREATE TRANSFORM"),
    "CreateTrigStmt": (_D, "CREATE TRIGGER"),
    "CreateUserMappingStmt": (_D, "CREATE USER MAPPING"),
    "DropOwnedStmt": (_D, "DROP OWNED"),
    "DropSubscriptionStmt": (_D, "DROP SUBSCRIPTION"),
    "DropUserMappingStmt": (_D, "DROP USER MAPPING"),
    "ImportForeignSchemaStmt": (_D, "IMPORT FOREIGN SCHEMA"),
    "ReassignOwnedStmt": (_D, "REASSIGN OWNED"),
    "RefreshMatViewStmt": (_D, "REFRESH MATERIALIZED VIEW"),
    "RuleStmt": (_D, "CREATE RULE"),
    "ViewStmt": (_D, "CREATE VIEW"),
    "AlterDatabaseRefreshCollStmt": (_O, "ALTER DATABASE"),
    "AlterDatabaseSetStmt": (_O, "ALTER DATABASE"),
    "AlterRoleSetStmt": (_O, "ALTER ROLE"),
    "AlterRoleStmt": (_O, "ALTER ROLE"),
    "AlterSystemStmt": (_O, "ALTER SYSTEM"),
    "AlterTableSpaceOptionsStmt": (_O, "ALTER TABLESPACE"),
    "CheckPointStmt": (_O, "CHECKPOINT"),
    "ConstraintsSetStmt": (_O, "SET CONSTRAINTS"),
    "CopyStmt": (_O, "COPY"),
    "CreateRoleStmt": (_O, "CREATE ROLE"),
    "CreateTableSpaceStmt": (_O, "CREATE TABLESPACE"),
    "CreatedbStmt": (_O, "CREATE DATABASE"),
    "DeclareCursorStmt": (_O, "DECLARE CURSOR"),
    "DropRoleStmt": (_O, "DROP ROLE"),
    "DropTableSpaceStmt": (_O, "DROP TABLESPACE"),
    "DropdbStmt": (_O, "DROP DATABASE"),
    "ExecuteStmt": (_O, "EXECUTE"),
    "ListenStmt": (_O, "LISTEN"),
    "LoadStmt": (_O, "LOAD"),
    "LockStmt": (_O, "LOCK TABLE"),
    "NotifyStmt": (_O, "NOTIFY"),
    "PrepareStmt": (_O, "PREPARE"),
    "TruncateStmt": (_O, "TRUNCATE TABLE"),
    "UnlistenStmt": (_O, "UNLISTEN"),
    "VariableShowStmt": (_O, "SHOW"),
}

# Fixed-tag nodes that Postgres refuses to run inside a transaction block.
_NEVER_IN_TRANSACTION: Final = frozenset(
    {"CreatedbStmt", "DropdbStmt", "AlterSystemStmt", "CreateTableSpaceStmt", "DropTableSpaceStmt"}
)

# ObjectType names whose words differ from the enum name.
_OBJECT_WORDS: Final[dict[str, str]] = {
    "OBJECT_MATVIEW": "MATERIALIZED VIEW",
    "OBJECT_FOREIGN_TABLE": "FOREIGN TABLE",
    "OBJECT_FDW": "FOREIGN DATA WRAPPER",
    "OBJECT_FOREIGN_SERVER": "SERVER",
    "OBJECT_STATISTIC_EXT": "STATISTICS",
    "OBJECT_OPCLASS": "OPERATOR CLASS",
    "OBJECT_OPFAMILY": "OPERATOR FAMILY",
    "OBJECT_TSPARSER": "TEXT SEARCH PARSER",
    "OBJECT_TSDICTIONARY": "TEXT SEARCH DICTIONARY",
    "OBJECT_TSTEMPLATE": "TEXT SEARCH TEMPLATE",
    "OBJECT_TSCONFIGURATION": "TEXT SEARCH CONFIGURATION",
    "OBJECT_TABCONSTRAINT": "TABLE",
    "OBJECT_DOMCONSTRAINT": "DOMAIN",
    "OBJECT_LARGEOBJECT": "LARGE OBJECT",
}


def _object_words(object_type: str) -> str:
    words = _OBJECT_WORDS.get(object_type)
    if words is not None:
        return words
    return object_type.removeprefix("OBJECT_").replace("_", " ")


# -- small JSON readers ------------------------------------------------------------------


def _range_var(node: Json) -> QualifiedName:
    return QualifiedName(node.get("schemaname"), node.get("relname", ""))


def _strings(items: list[Json]) -> tuple[str, ...]:
    return tuple(item["String"].get("sval", "") for item in items if "String" in item)


def _name_from_parts(parts: tuple[str, ...]) -> QualifiedName | None:
    # [catalog.]schema.name: the catalog can only be the current database, so drop it.
    if not parts:
        return None
    return QualifiedName(parts[-2] if len(parts) >= 2 else None, parts[-1])


def _object_name(node: Json | None, *, drop_last: bool = False) -> QualifiedName | None:
    """Best-effort name of an object node of a DROP, COMMENT, ALTER ... OWNER, ..."""
    if not isinstance(node, dict):
        return None
    if "String" in node:
        return QualifiedName(None, node["String"].get("sval", ""))
    if "RangeVar" in node:
        return _range_var(node["RangeVar"])
    parts: tuple[str, ...] = ()
    if "List" in node:
        parts = _strings(node["List"].get("items", []))
    elif "TypeName" in node:
        parts = _strings(node["TypeName"].get("names", []))
    elif "ObjectWithArgs" in node:
        parts = _strings(node["ObjectWithArgs"].get("objname", []))
    return _name_from_parts(parts[:-1] if drop_last else parts)


def _constant_text(constant: Json) -> str:
    for key in ("sval", "ival", "fval", "boolval", "bsval"):
        if key in constant:
            value = constant[key]
            inner = value.get(key, "") if isinstance(value, dict) else value
            if key == "ival" and inner == "":
                return "0"  # the JSON output omits a zero integer
            if key == "boolval":
                return "true" if inner else "false"
            return str(inner)
    return "NULL" if constant.get("isnull") else ""


def _value_text(node: Json) -> str:
    if "A_Const" in node:
        return _constant_text(node["A_Const"])
    if "String" in node:
        return str(node["String"].get("sval", ""))
    if "TypeCast" in node:
        return _value_text(node["TypeCast"].get("arg", {}))
    if "DefElem" in node:
        return _value_text(node["DefElem"].get("arg", {}))
    return ""
