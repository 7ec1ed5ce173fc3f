"""Tokens from the Postgres scanner (through pglast) and statement splitting on them.

`pglast.parser.split(sql, with_parser=False)` would do the splitting, but libpg_query's
scanner splitter drops every statement that contains no keyword (`x;`,
`ELECTRIC SQLITE $$...$$`), and it splits `BEGIN ATOMIC ... END` function bodies and
`CREATE RULE ... DO (a; b)` action lists. So we split the scanner's tokens ourselves.

Token positions are 0-based character offsets into the scanned string (pglast converts
libpg_query's byte offsets); `Token.end` is inclusive, as pglast reports it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

from pglast.parser import ParseError, Token, parse_sql_json, scan

from proxy.ddl.names import fold_identifier, unquote_identifier

__all__ = [
    "ParseError",
    "Piece",
    "Token",
    "decode_string",
    "identifier",
    "is_identifier",
    "is_string",
    "scan_tokens",
    "significant",
    "split_tokens",
]

SEMICOLON: Final = "ASCII_59"
LPAREN: Final = "ASCII_40"
RPAREN: Final = "ASCII_41"
_COMMENTS: Final = frozenset({"SQL_COMMENT", "C_COMMENT"})
# Keyword categories Postgres accepts where a column or table name (ColId) is expected.
_NAME_KINDS: Final = frozenset({"NO_KEYWORD", "UNRESERVED_KEYWORD", "COL_NAME_KEYWORD"})
_STRING_TOKENS: Final = frozenset({"SCONST", "USCONST"})


@dataclass(frozen=True, slots=True)
class Piece:
    """One statement's tokens within a larger text.

    `start`/`end` delimit the statement from its first significant token to its last token
    before the `;` (trailing comments included), like Postgres's own statement bounds.
    """

    start: int
    end: int
    tokens: tuple[Token, ...]  # without comments
    terminator: Token | None  # the `;` that ends the statement, if any


def scan_tokens(sql: str) -> list[Token]:
    """All tokens of `sql`, comments included. Raises `ParseError` on a lexical error."""
    return scan(sql)


def significant(tokens: list[Token]) -> list[Token]:
    """`tokens` without comments."""
    return [t for t in tokens if t.name not in _COMMENTS]


def split_tokens(tokens: list[Token]) -> list[Piece]:
    """Group tokens into statements at top-level `;`.

    A `;` inside parentheses (rule action lists) or inside the `BEGIN ... END` body of a
    `CREATE [OR REPLACE] FUNCTION|PROCEDURE` does not end a statement.
    """
    pieces: list[Piece] = []
    current: list[Token] = []
    last_end = -1
    depth = _Depth()
    for token in tokens:
        if token.name == SEMICOLON and depth.at_top():
            if current:
                pieces.append(Piece(current[0].start, last_end, tuple(current), token))
            current, last_end, depth = [], -1, _Depth()
            continue
        if token.name in _COMMENTS:
            if current:
                last_end = token.end + 1
            continue
        current.append(token)
        last_end = token.end + 1
        depth.feed(token, current)
    if current:
        pieces.append(Piece(current[0].start, last_end, tuple(current), None))
    return pieces


class _Depth:
    """Nesting that keeps a `;` from ending the statement."""

    __slots__ = ("begin", "parens")

    def __init__(self) -> None:
        self.parens = 0
        self.begin = 0

    def at_top(self) -> bool:
        return self.parens == 0 and self.begin == 0

    def feed(self, token: Token, statement: list[Token]) -> None:
        name = token.name
        if name == LPAREN:
            self.parens += 1
        elif name == RPAREN:
            self.parens = max(0, self.parens - 1)
        elif self.parens == 0 and name in _BLOCK_WORDS and _defines_routine(statement):
            self._block(name)

    def _block(self, name: str) -> None:
        # CASE ... END nests inside a body; outside one it needs no tracking.
        if name == "BEGIN_P" or (name == "CASE" and self.begin > 0):
            self.begin += 1
        elif name == "END_P" and self.begin > 0:
            self.begin -= 1


_BLOCK_WORDS: Final = frozenset({"BEGIN_P", "CASE", "END_P"})
_ROUTINES: Final = frozenset({"FUNCTION", "PROCEDURE"})


def _defines_routine(statement: list[Token]) -> bool:
    names = [token.name for token in statement[:4]]
    if names[:1] != ["CREATE"]:
        return False
    if names[1:3] == ["OR", "REPLACE"]:
        return len(names) > 3 and names[3] in _ROUTINES
    return len(names) > 1 and names[1] in _ROUTINES


def is_identifier(token: Token) -> bool:
    """Whether `token` can name a table or column (quoted, unquoted, or a non-reserved keyword)."""
    if token.kind == "NO_KEYWORD":
        return token.name in ("IDENT", "UIDENT")
    return token.kind in _NAME_KINDS


def identifier(sql: str, token: Token) -> str:
    """The identifier `token` stands for: quoted ones keep their case, others are folded."""
    text = sql[token.start : token.end + 1]
    if token.name == "UIDENT":
        return _decode_unicode_identifier(text)
    if text.startswith('"'):
        return unquote_identifier(text)
    return fold_identifier(text)


def is_string(token: Token) -> bool:
    return token.name in _STRING_TOKENS


def decode_string(sql: str, token: Token) -> str:
    """The value of a string-constant token, decoded by the Postgres parser itself.

    Escape strings, Unicode escapes, dollar quotes and continuation lines all follow
    Postgres's rules this way; the cost (one small parse) only hits ELECTRIC statements.
    """
    tree = json.loads(parse_sql_json("SELECT " + sql[token.start : token.end + 1]))
    constant = tree["stmts"][0]["stmt"]["SelectStmt"]["targetList"][0]["ResTarget"]["val"]["A_Const"]
    # The JSON output omits empty strings.
    return str(constant.get("sval", {}).get("sval", ""))


def _decode_unicode_identifier(text: str) -> str:
    tree = json.loads(parse_sql_json("SELECT " + text))
    fields = tree["stmts"][0]["stmt"]["SelectStmt"]["targetList"][0]["ResTarget"]["val"]["ColumnRef"]
    return str(fields["fields"][0]["String"]["sval"])
