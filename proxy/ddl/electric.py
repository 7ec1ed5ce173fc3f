"""The ELECTRIC statement family: statements Postgres cannot parse, handled by the proxy.

Grammar (keywords are case-insensitive; names may be schema-qualified; unquoted names are
folded to lower case, quoted ones keep their case):

    ALTER TABLE name ENABLE ELECTRIC          ELECTRIC ENABLE name
    ALTER TABLE name DISABLE ELECTRIC         ELECTRIC DISABLE name
    ELECTRIC GRANT priv [(col, ...)] ON name TO role [USING col/col/...] [CHECK (expr)]
    ELECTRIC REVOKE priv [(col, ...)] ON name FROM role
    ELECTRIC ASSIGN role TO [schema.]table.column [IF (expr)]
    ELECTRIC UNASSIGN role FROM [schema.]table.column
    ELECTRIC SQLITE 'text'                    (any Postgres string constant, $$...$$ too)

    priv := SELECT | INSERT | UPDATE | DELETE | ALL | READ | WRITE
    role := 'name' | 'scope:name' | scope:name | (scope | NULL, role-name)
            and, for GRANT/REVOKE, a bare role name (ANYONE, AUTHENTICATED, ...);
            for ASSIGN/UNASSIGN, a column holding the role: col | table.col | schema.table.col,
            also as the second member of the parenthesised form.

`CALL electric.electrify('t')` and `CALL electric.electrify('schema', 't')` are valid SQL;
`classify` recognises them from the parse tree and turns them into `ElectricEnable` through
`enable_from_call`.

Tokens come from the Postgres scanner, so quoting, comments and string escapes behave
exactly as in SQL. Syntax errors are reported like Postgres's: SQLSTATE 42601,
`syntax error at or near "X"` or `syntax error at end of input`, with `position` the 1-based
character offset in the whole query text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Final, TypeAlias

from proxy.ddl import lexer
from proxy.ddl.lexer import Piece, Token
from proxy.ddl.names import QualifiedName
from proxy.errors import GuardError

SYNTAX_ERROR: Final = "42601"

# What each privilege keyword grants, in the order Electric's procedures expect.
_PRIVILEGES: Final[dict[str, tuple[str, ...]]] = {
    "select": ("select",),
    "insert": ("insert",),
    "update": ("update",),
    "delete": ("delete",),
    "all": ("select", "insert", "update", "delete"),
    "read": ("select",),
    "write": ("insert", "update", "delete"),
}


@dataclass(frozen=True, slots=True)
class RoleSpec:
    """A role given literally (`name`) or read from a column (`column`: its name parts)."""

    name: str | None = None
    column: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class ElectricEnable:
    table: QualifiedName
    tag: ClassVar[str] = "ELECTRIC ENABLE"


@dataclass(frozen=True, slots=True)
class ElectricDisable:
    table: QualifiedName
    tag: ClassVar[str] = "ELECTRIC DISABLE"


@dataclass(frozen=True, slots=True)
class ElectricGrant:
    privileges: tuple[str, ...]
    columns: tuple[str, ...] | None  # None: every column
    table: QualifiedName
    role: RoleSpec
    scope: QualifiedName | None  # None: the global scope
    using: tuple[str, ...] | None
    check: str | None
    tag: ClassVar[str] = "ELECTRIC GRANT"


@dataclass(frozen=True, slots=True)
class ElectricRevoke:
    privileges: tuple[str, ...]
    columns: tuple[str, ...] | None
    table: QualifiedName
    role: RoleSpec
    scope: QualifiedName | None
    tag: ClassVar[str] = "ELECTRIC REVOKE"


@dataclass(frozen=True, slots=True)
class ElectricAssign:
    table: QualifiedName
    user_column: str
    role: RoleSpec
    scope: QualifiedName | None
    if_expr: str | None
    tag: ClassVar[str] = "ELECTRIC ASSIGN"


@dataclass(frozen=True, slots=True)
class ElectricUnassign:
    table: QualifiedName
    user_column: str
    role: RoleSpec
    scope: QualifiedName | None
    tag: ClassVar[str] = "ELECTRIC UNASSIGN"


@dataclass(frozen=True, slots=True)
class ElectricSqlite:
    sql: str
    tag: ClassVar[str] = "ELECTRIC SQLITE"


ElectricCommand: TypeAlias = (
    ElectricEnable
    | ElectricDisable
    | ElectricGrant
    | ElectricRevoke
    | ElectricAssign
    | ElectricUnassign
    | ElectricSqlite
)


def parse_electric(sql: str, start: int = 0, end: int | None = None) -> ElectricCommand | None:
    """Parse the statement at `sql[start:end]` if it is an ELECTRIC statement, else None.

    `sql` is the whole query text so that error positions point into it. Raises
    `GuardError` (42601) for a malformed ELECTRIC statement or a lexical error in it.
    """
    stop = len(sql) if end is None else end
    try:
        tokens = lexer.significant(lexer.scan_tokens(sql))
    except lexer.ParseError as exc:
        raise _scan_error(sql, exc) from None
    inside = [t for t in tokens if start <= t.start < stop]
    after = [t for t in tokens if t.start >= stop]
    if not inside:
        return None
    terminator = after[0] if after and after[0].name == lexer.SEMICOLON else None
    piece = Piece(inside[0].start, stop, tuple(inside), terminator)
    return parse_piece(sql, piece) if is_electric(sql, piece.tokens) else None


def is_electric(sql: str, tokens: Sequence[Token]) -> bool:
    """Whether the statement made of `tokens` belongs to the ELECTRIC family."""
    if not tokens:
        return False
    if _is_word(sql, tokens[0], "electric"):
        return True
    if len(tokens) < 4 or tokens[0].name != "ALTER" or tokens[1].name != "TABLE":
        return False
    # `ALTER TABLE electric.t ...` names a schema: only ENABLE/DISABLE ELECTRIC counts.
    return any(
        tokens[i].name in ("ENABLE_P", "DISABLE_P") and _is_word(sql, tokens[i + 1], "electric")
        for i in range(2, len(tokens) - 1)
    )


def parse_piece(sql: str, piece: Piece) -> ElectricCommand:
    """Parse one ELECTRIC statement already split out of `sql`. Raises `GuardError`."""
    parser = _Parser(sql, piece.tokens, piece.terminator)
    command: ElectricCommand
    if parser.accept("alter"):
        command = parser.alter_table()
    else:
        parser.expect("electric")
        word = parser.word()
        action = _ACTIONS.get(word) if word is not None else None
        if action is None:
            raise parser.error()
        parser.advance()
        command = action(parser)
    parser.expect_end()
    return command


def enable_from_call(args: Sequence[str]) -> ElectricEnable | None:
    """`electric.electrify(args...)`: one argument names the (maybe qualified) table in SQL
    syntax; two give schema and table verbatim. None when the arguments do not fit."""
    if len(args) == 2:
        return ElectricEnable(QualifiedName(args[0], args[1]))
    if len(args) == 1:
        name = qualified_name_from_text(args[0])
        return ElectricEnable(name) if name is not None else None
    return None


def qualified_name_from_text(text: str) -> QualifiedName | None:
    """`name` or `schema.name` written in SQL syntax inside a string, else None."""
    try:
        tokens = lexer.significant(lexer.scan_tokens(text))
    except lexer.ParseError:
        return None
    parser = _Parser(text, tokens, None)
    try:
        name = parser.qualified_name()
        parser.expect_end()
    except GuardError:
        return None
    return name


def _is_word(sql: str, token: Token, word: str) -> bool:
    # Keywords never match a quoted identifier: `"ELECTRIC"` is a name.
    return sql[token.start : token.end + 1].lower() == word


def _scan_error(sql: str, exc: lexer.ParseError) -> GuardError:
    location = exc.args[1] if len(exc.args) > 1 else None
    position = len(sql) + 1 if location is None else int(location) + 1
    return GuardError(str(exc.args[0]), sqlstate=SYNTAX_ERROR, position=position)


class _Parser:
    """Recursive descent over the significant tokens of one statement."""

    def __init__(self, sql: str, tokens: Sequence[Token], terminator: Token | None) -> None:
        self.sql = sql
        self.tokens = tokens
        self.terminator = terminator
        self.index = 0

    # -- token access ---------------------------------------------------------------

    def peek(self) -> Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def advance(self) -> Token:
        token = self.peek()
        if token is None:
            raise self.error()
        self.index += 1
        return token

    def text(self, token: Token) -> str:
        return self.sql[token.start : token.end + 1]

    def word(self) -> str | None:
        """The next token as a lower-case keyword, None for quoted names and non-words."""
        token = self.peek()
        if token is None or (token.name != "IDENT" and token.kind == "NO_KEYWORD"):
            return None
        text = self.text(token)
        return None if text.startswith('"') else text.lower()

    def accept(self, word: str) -> bool:
        if self.word() == word:
            self.index += 1
            return True
        return False

    def expect(self, word: str) -> None:
        if not self.accept(word):
            raise self.error()

    def accept_symbol(self, name: str) -> bool:
        token = self.peek()
        if token is not None and token.name == name:
            self.index += 1
            return True
        return False

    def expect_symbol(self, name: str) -> Token:
        token = self.peek()
        if token is None or token.name != name:
            raise self.error()
        self.index += 1
        return token

    def expect_end(self) -> None:
        if self.peek() is not None:
            raise self.error()

    def error(self) -> GuardError:
        """Postgres's syntax error for the next token (or the end of the statement)."""
        token = self.peek() or self.terminator
        if token is None:
            return GuardError(
                "syntax error at end of input", sqlstate=SYNTAX_ERROR, position=len(self.sql) + 1
            )
        return GuardError(
            f'syntax error at or near "{self.text(token)}"', sqlstate=SYNTAX_ERROR, position=token.start + 1
        )

    # -- building blocks ------------------------------------------------------------

    def identifier(self) -> str:
        token = self.peek()
        if token is None or not lexer.is_identifier(token):
            raise self.error()
        self.index += 1
        return lexer.identifier(self.sql, token)

    def dotted(self, most: int) -> tuple[str, ...]:
        parts = [self.identifier()]
        while len(parts) < most and self.accept_symbol(_DOT):
            parts.append(self.identifier())
        return tuple(parts)

    def qualified_name(self) -> QualifiedName:
        parts = self.dotted(2)
        return QualifiedName(parts[0], parts[1]) if len(parts) == 2 else QualifiedName(None, parts[0])

    def string(self) -> str:
        token = self.peek()
        if token is None or not lexer.is_string(token):
            raise self.error()
        self.index += 1
        return lexer.decode_string(self.sql, token)

    def name_list(self) -> tuple[str, ...]:
        self.expect_symbol(lexer.LPAREN)
        names = [self.identifier()]
        while self.accept_symbol(_COMMA):
            names.append(self.identifier())
        self.expect_symbol(lexer.RPAREN)
        return tuple(names)

    def parenthesised_text(self) -> str:
        """The source text between a `(` and its matching `)`, kept verbatim."""
        opening = self.expect_symbol(lexer.LPAREN)
        depth = 1
        while depth:
            token = self.advance()
            if token.name == lexer.LPAREN:
                depth += 1
            elif token.name == lexer.RPAREN:
                depth -= 1
        closing = self.tokens[self.index - 1]
        body = self.sql[opening.end + 1 : closing.start].strip()
        if not body:
            self.index -= 1
            raise self.error()
        return body

    def privileges(self) -> tuple[tuple[str, ...], tuple[str, ...] | None]:
        word = self.word()
        granted = _PRIVILEGES.get(word) if word is not None else None
        if granted is None:
            raise self.error()
        self.index += 1
        token = self.peek()
        columns = self.name_list() if token is not None and token.name == lexer.LPAREN else None
        return granted, columns

    def role(self, *, from_column: bool) -> tuple[RoleSpec, QualifiedName | None]:
        """A role and its scope (None for the global scope)."""
        token = self.peek()
        if token is not None and lexer.is_string(token):
            return _role_from_string(self.string())
        if self.accept_symbol(lexer.LPAREN):
            scope = None if self.accept("null") else self._scope()
            self.expect_symbol(_COMMA)
            role = self._role_member(from_column=from_column)
            self.expect_symbol(lexer.RPAREN)
            return role, scope
        first = self.index
        parts = self.dotted(3)
        if len(parts) <= 2 and self.accept_symbol(_COLON):
            scope = QualifiedName(parts[0], parts[1]) if len(parts) == 2 else QualifiedName(None, parts[0])
            return self._role_member(from_column=False), scope
        if from_column:
            return RoleSpec(column=parts), None
        if len(parts) == 1:
            return RoleSpec(name=parts[0]), None
        self.index = first + 1  # a role name cannot be dotted: point at the first `.`
        raise self.error()

    def _scope(self) -> QualifiedName:
        token = self.peek()
        if token is not None and lexer.is_string(token):
            name = qualified_name_from_text(self.string())
            if name is None:
                self.index -= 1
                raise self.error()
            return name
        return self.qualified_name()

    def _role_member(self, *, from_column: bool) -> RoleSpec:
        token = self.peek()
        if token is not None and lexer.is_string(token):
            return RoleSpec(name=self.string())
        if from_column:
            return RoleSpec(column=self.dotted(3))
        return RoleSpec(name=self.identifier())

    def column_reference(self) -> tuple[QualifiedName, str]:
        """`table.column` or `schema.table.column`."""
        parts = self.dotted(3)
        if len(parts) == 1:
            raise self.error()
        table = QualifiedName(parts[0], parts[1]) if len(parts) == 3 else QualifiedName(None, parts[0])
        return table, parts[-1]

    # -- statements -----------------------------------------------------------------

    def alter_table(self) -> ElectricEnable | ElectricDisable:
        self.expect("table")
        table = self.qualified_name()
        if self.accept("enable"):
            command: ElectricEnable | ElectricDisable = ElectricEnable(table)
        elif self.accept("disable"):
            command = ElectricDisable(table)
        else:
            raise self.error()
        self.expect("electric")
        return command


def _enable(parser: _Parser) -> ElectricCommand:
    return ElectricEnable(parser.qualified_name())


def _disable(parser: _Parser) -> ElectricCommand:
    return ElectricDisable(parser.qualified_name())


def _grant(parser: _Parser) -> ElectricCommand:
    privileges, columns = parser.privileges()
    parser.expect("on")
    table = parser.qualified_name()
    parser.expect("to")
    role, scope = parser.role(from_column=False)
    using = _using_path(parser) if parser.accept("using") else None
    check = parser.parenthesised_text() if parser.accept("check") else None
    return ElectricGrant(privileges, columns, table, role, scope, using, check)


def _using_path(parser: _Parser) -> tuple[str, ...]:
    path = [parser.identifier()]
    while parser.accept_symbol(_SLASH):
        path.append(parser.identifier())
    return tuple(path)


def _revoke(parser: _Parser) -> ElectricCommand:
    privileges, columns = parser.privileges()
    parser.expect("on")
    table = parser.qualified_name()
    parser.expect("from")
    role, scope = parser.role(from_column=False)
    return ElectricRevoke(privileges, columns, table, role, scope)


def _assign(parser: _Parser) -> ElectricCommand:
    role, scope = parser.role(from_column=True)
    parser.expect("to")
    table, column = parser.column_reference()
    if_expr = parser.parenthesised_text() if parser.accept("if") else None
    return ElectricAssign(table, column, role, scope, if_expr)


def _unassign(parser: _Parser) -> ElectricCommand:
    role, scope = parser.role(from_column=True)
    parser.expect("from")
    table, column = parser.column_reference()
    return ElectricUnassign(table, column, role, scope)


def _sqlite(parser: _Parser) -> ElectricCommand:
    return ElectricSqlite(parser.string())


def _role_from_string(text: str) -> tuple[RoleSpec, QualifiedName | None]:
    # 'scope:role' carries its scope; the scope is a table name in SQL syntax.
    scope_text, colon, name = text.rpartition(":")
    if not colon:
        return RoleSpec(name=text), None
    scope = qualified_name_from_text(scope_text)
    if scope is None:
        return RoleSpec(name=text), None
    return RoleSpec(name=name), scope


_DOT: Final = "ASCII_46"
_COMMA: Final = "ASCII_44"
_COLON: Final = "ASCII_58"
_SLASH: Final = "ASCII_47"

_ACTIONS: Final[dict[str, Callable[[_Parser], ElectricCommand]]] = {
    "enable": _enable,
    "disable": _disable,
    "grant": _grant,
    "revoke": _revoke,
    "assign": _assign,
    "unassign": _unassign,
    "sqlite": _sqlite,
}
