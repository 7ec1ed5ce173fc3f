"""Cheap text tests that decide whether a statement is worth parsing.

`may_need_parse` runs on every Query and Parse text, so it must cost far less than the
relay itself. It is conservative: a false positive only costs a pglast parse, a false
negative lets DDL past the guard. The keyword tests run on the raw text, comments and
string literals included; a keyword inside a literal is a harmless false positive.

Two keyword families:

* words that can sit anywhere in a statement that changes the schema or the session:
  `CREATE`/`REFRESH` (also after `EXPLAIN ANALYZE`), `ALTER`, `DROP`, `ELECTRIC`, the
  function `set_config`, and `INTO` when it is not the `INTO` of `INSERT`/`MERGE`
  (`SELECT ... INTO new_table` creates a table);
* words that only mean something at the start of a statement (`SET`, `DO`, `CALL`,
  `COMMENT`, `GRANT`, ...). They are common inside ordinary DML (`UPDATE t SET`,
  `ON CONFLICT DO`, a column named `comment`), so they count only at the start of the
  text, after a `;`, after the end of a block comment or after the end of a line comment.

The common case, one plain statement without comments, takes a fast path: its first word
decides, and only `set_config` and `INTO` need a look inside.

The bytes are decoded as latin-1 (a copy, never an error) because `str` searches are
several times cheaper than `bytes` ones in CPython 3.11. Every byte >= 0x80 then counts as
an identifier character, as in the Postgres scanner, whatever the client encoding.
"""

from __future__ import annotations

import functools
import re
from typing import Final

# Identifier characters of the Postgres scanner after lower-casing; `$` continues one.
_WORD_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyz0123456789_$" + bytes(range(0x80, 0x100)).decode("latin-1")
)

# Keywords that matter wherever they occur. `str.find` per word beats one regex
# alternation by a factor of three here: CPython's regex engine steps through every
# position, `find` runs a vectorised search.
_ANYWHERE: Final = ("create", "alter", "drop", "electric", "refresh", "set_config", "into")

# Leading keywords of commands that change the schema or session state. Matched as
# prefixes of the first word: a statement cannot start with an identifier, so a text like
# `settings ...` is a syntax error and parsing it costs nothing extra.
_STARTS: Final = (
    "set",
    "reset",
    "do",
    "call",
    "comment",
    "grant",
    "revoke",
    "security",
    "reindex",
    "cluster",
    "import",
    "truncate",
    "discard",
    "vacuum",
    "load",
)
# A later statement starts after `;`, after the outermost `*/` of a (nested) block comment,
# or after the \n or \r that ends a line comment; then come whitespace (as the Postgres
# scanner defines it) and the keyword. Matched anchored at each such position.
_START_AT: Final = re.compile(r"[ \t\n\r\f\v]*(?:" + "|".join(_STARTS) + ")")
_ANCHORS: Final = (";", "*/", "\n", "\r")

# First words of statements that can never change the schema or a setting by themselves
# (no DDL can be nested in them). None of them is a prefix of a word in `_STARTS`.
_PLAIN_STARTS: Final = (
    "select",
    "insert",
    "update",
    "delete",
    "merge",
    "with",
    "values",
    "table",
    "begin",
    "start",
    "commit",
    "end",
    "rollback",
    "abort",
    "savepoint",
    "release",
    "show",
    "fetch",
    "move",
    "close",
    "listen",
    "notify",
    "unlisten",
    "deallocate",
    "execute",
    "copy",
    "lock",
    "prepare",
)
# Statements that may contain `SELECT ... INTO new_table`.
_INTO_CAPABLE: Final = ("select", "with")
_INTO_OWNERS: Final = ("insert", "merge")


def may_need_parse(sql: bytes) -> bool:
    """True when `sql` could hold DDL, an ELECTRIC statement, DO, CALL, or a setting change."""
    text = sql.decode("latin-1").lower()
    body = text.strip()
    return _needs_parse(text, body, _single_plain(body))


def may_need_look(sql: bytes | memoryview, version_tables: frozenset[bytes]) -> bool:
    """`may_need_parse(sql) or may_write_version(sql, version_tables)`, decoding `sql` once.

    The relay's single test per Query and Parse: a lone plain SELECT, the commonest text of
    all, is settled by its first word.
    """
    text = str(sql, "latin-1").lower()
    body = text.strip()
    single = _single_plain(body)
    if _needs_parse(text, body, single):
        return True
    if single and body.startswith("select"):
        return False  # one SELECT writes no table
    return _writes_version(text, version_tables)


def _single_plain(body: str) -> bool:
    """One statement (maybe with a trailing `;`), no comment, starting with a plain word."""
    return (
        body.find(";", 0, len(body) - 1) < 0
        and "--" not in body
        and "/*" not in body
        and body.startswith(_PLAIN_STARTS)
    )


def _needs_parse(text: str, body: str, single: bool) -> bool:
    # One plain statement (maybe with a trailing `;`) and no comment: the first word decides.
    if single:
        if "set_config" in body and _has_word(body, "set_config"):
            return True
        return "into" in body and body.startswith(_INTO_CAPABLE) and _has_word(body, "into")
    if body.startswith(_STARTS):
        return True
    for word in _ANYWHERE:
        if _has_word(text, word):
            return True
    return _later_start(text)


def _has_word(text: str, word: str) -> bool:
    """`word` occurs as a whole word (and an `into` is not that of INSERT or MERGE)."""
    end = len(text)
    at = text.find(word)
    while at >= 0:
        stop = at + len(word)
        if (
            (at == 0 or text[at - 1] not in _WORD_CHARS)
            and (stop == end or text[stop] not in _WORD_CHARS)
            and (word != "into" or _is_select_into(text, at))
        ):
            return True
        at = text.find(word, stop)
    return False


def _later_start(text: str) -> bool:
    for anchor in _ANCHORS:
        at = text.find(anchor)
        while at >= 0:
            after = at + len(anchor)
            if _START_AT.match(text, after) and (anchor in ";*/" or _ends_line_comment(text, at)):
                return True
            at = text.find(anchor, after)
    return False


def _ends_line_comment(text: str, newline: int) -> bool:
    # Conservative: any `--` earlier on the line counts, even one inside a literal.
    line_start = max(text.rfind("\n", 0, newline), text.rfind("\r", 0, newline)) + 1
    return "--" in text[line_start:newline]


def _is_select_into(text: str, at: int) -> bool:
    # `INSERT INTO` and `MERGE INTO` do not create a table; any other INTO might
    # (`SELECT 1 AS reinsert INTO t` does: the owner must be a whole word).
    before = text[:at].rstrip()
    for owner in _INTO_OWNERS:
        start = len(before) - len(owner)
        if before.endswith(owner) and (start == 0 or before[start - 1] not in _WORD_CHARS):
            # Only a statement's INSERT owns its INTO: `SELECT 1/insert INTO t` and
            # `SELECT (1) insert INTO t` name a column "insert" and create t (found by fuzzing).
            preceding = before[:start].rstrip()
            return bool(preceding) and not preceding.endswith((";", "(")) and not _closes_cte(preceding)
    return True


def _closes_cte(text: str) -> bool:
    """`text` ends with the `)` of a WITH query's `AS (...)`, so an INSERT after it is a statement.

    Anything the backward scan cannot read plainly (a literal, a quoted name, a comment) says no:
    the parser decides.
    """
    if not text.endswith(")") or "--" in text or "/*" in text:
        return False
    depth = 0
    for at in range(len(text) - 1, -1, -1):
        char = text[at]
        if char in "'\"$":
            return False
        depth += (char == ")") - (char == "(")
        if depth == 0:
            head = text[:at].rstrip()
            return head.endswith("as") and (len(head) == 2 or head[-3] not in _WORD_CHARS)
    return False


def may_write_version(sql: bytes, tables: frozenset[bytes]) -> bool:
    """True when `sql` may write one of the migration-version `tables` (lower-case names).

    A substring test plus a write verb: a hit is confirmed later by parsing, so a name in a
    literal or a comment only costs a parse.
    """
    return _writes_version(sql.decode("latin-1").lower(), tables)


def _writes_version(text: str, tables: frozenset[bytes]) -> bool:
    if not tables or not any(name in text for name in _as_text(tables)):
        return False
    return any(_has_word(text, verb) for verb in _WRITE_VERBS)


_WRITE_VERBS: Final = ("insert", "update", "delete", "merge", "copy", "truncate")


@functools.lru_cache(maxsize=16)
def _as_text(tables: frozenset[bytes]) -> tuple[str, ...]:
    # The session passes the same frozenset on every call; decode its names once.
    return tuple(name.decode("latin-1").lower() for name in tables)
