"""The SQL a DO block runs, read from its PL/pgSQL body.

`read_do(fields)` takes a `DoStmt`'s parse-tree fields and returns a `Body`: the text of every
SQL statement the body can run (plain statements, PERFORM as the SELECT it is, CALL, nested
DO, cursor and loop queries, COMMIT/ROLLBACK, and EXECUTE of a string constant as that
string), or the reason it cannot tell them all:

- `DYNAMIC`: EXECUTE (or OPEN ... FOR EXECUTE, FOR ... IN EXECUTE, RETURN QUERY EXECUTE) of
  anything but one string constant: `format()`, concatenation, a variable;
- `LANGUAGE`: the body is not PL/pgSQL;
- `UNREADABLE`: the body does not parse (pglast's grammar, or a backslash while
  `standard_conforming_strings` is off, which pglast's scanner does not follow), or nests
  too deeply.

Expressions (IF and ASSERT conditions, assignments, RAISE arguments) are evaluated as SELECTs
and cannot hold DDL, so they are not returned; a function they call is as opaque to the text
guard as in a plain `SELECT f()`.

The body is parsed by pglast's PL/pgSQL parser, which wants a function: the body is wrapped
in `CREATE FUNCTION ... RETURNS void`, which accepts what a DO block accepts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, TypeAlias

from pglast.parser import ParseError, parse_plpgsql_json, parse_sql_json

Json: TypeAlias = dict[str, Any]


class Opaque(StrEnum):
    DYNAMIC = "DYNAMIC"
    LANGUAGE = "LANGUAGE"
    UNREADABLE = "UNREADABLE"


@dataclass(frozen=True, slots=True)
class Body:
    language: str
    statements: tuple[str, ...]  # SQL texts the body runs, in the order they are written
    opaque: Opaque | None = None  # why it may run SQL not in `statements`; None: it cannot
    reason: str = ""  # for messages: what made it opaque


# EXECUTE-like statements and the key of their dynamic query.
_DYNAMIC_KEYS: Final[dict[str, str]] = {
    "PLpgSQL_stmt_dynexecute": "query",
    "PLpgSQL_stmt_dynfors": "query",
    "PLpgSQL_stmt_open": "dynquery",
    "PLpgSQL_stmt_return_query": "dynquery",
}
_STATEMENT_MODE: Final = 0  # PLpgSQL_expr.parseMode of a whole statement (RAW_PARSE_DEFAULT)
_SELECT_ONLY_KEYS: Final = frozenset({"targetList", "limitOption", "op"})


def read_do(fields: Json, *, standard_conforming_strings: bool = True) -> Body:
    """The statements of the DO block whose `DoStmt` fields are `fields`."""
    language, source = "plpgsql", ""
    for arg in fields.get("args", []):
        elem = arg.get("DefElem", {})
        value = str(elem.get("arg", {}).get("String", {}).get("sval", ""))
        if elem.get("defname") == "language":
            language = value
        elif elem.get("defname") == "as":
            source = value
    if language != "plpgsql":
        return Body(language, (), Opaque.LANGUAGE, f"the body is in language {language}")
    return read_body(source, standard_conforming_strings=standard_conforming_strings)


def read_body(source: str, *, standard_conforming_strings: bool = True) -> Body:
    """The statements of a PL/pgSQL block `source` (a DO block's body)."""
    if not standard_conforming_strings and "\\" in source:
        return _unreadable("a backslash while standard_conforming_strings is off")
    try:
        tree = json.loads(parse_plpgsql_json(_as_function(source)))
    except ParseError as exc:
        return _unreadable(str(exc.args[0]) if exc.args else "syntax error")
    except RecursionError:
        return _unreadable("nested too deeply")
    reader = _Reader()
    try:
        reader.walk(tree)
    except RecursionError:
        return _unreadable("nested too deeply")
    if reader.dynamic is not None:
        return Body("plpgsql", tuple(reader.statements), Opaque.DYNAMIC, reader.dynamic)
    return Body("plpgsql", tuple(reader.statements))


def _unreadable(reason: str) -> Body:
    return Body("plpgsql", (), Opaque.UNREADABLE, reason)


def _as_function(source: str) -> str:
    tag = "$body$"
    while tag[:-1] in source:
        # A body holding "$body" could end the quote early (also across the boundary).
        tag = tag[:-1] + "_$"
    return f"CREATE FUNCTION electric_proxy_do() RETURNS void LANGUAGE plpgsql AS {tag}{source}{tag}"


class _Reader:
    """Collects statement texts from a PL/pgSQL parse tree, in document order."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.dynamic: str | None = None

    def walk(self, node: object) -> None:
        if isinstance(node, list):
            for item in node:
                self.walk(item)
        elif isinstance(node, dict):
            for key, value in node.items():
                self._visit(key, value)

    def _visit(self, key: str, value: object) -> None:
        if key == "PLpgSQL_expr" and isinstance(value, dict):
            if value.get("parseMode", _STATEMENT_MODE) == _STATEMENT_MODE:
                self.statements.append(str(value.get("query", "")))
            return  # an expression: no statement inside
        if key in ("PLpgSQL_stmt_commit", "PLpgSQL_stmt_rollback") and isinstance(value, dict):
            word = "COMMIT" if key == "PLpgSQL_stmt_commit" else "ROLLBACK"
            self.statements.append(word + (" AND CHAIN" if value.get("chain") else ""))
            return
        dynamic_key = _DYNAMIC_KEYS.get(key)
        if dynamic_key is not None and isinstance(value, dict) and dynamic_key in value:
            self._dynamic(value[dynamic_key])
            value = {k: v for k, v in value.items() if k != dynamic_key}
        self.walk(value)

    def _dynamic(self, node: Json) -> None:
        expression = str(node.get("PLpgSQL_expr", {}).get("query", ""))
        constant = string_constant(expression)
        if constant is not None:
            self.statements.append(constant)
        elif self.dynamic is None:
            self.dynamic = f"EXECUTE {expression}"


def string_constant(expression: str) -> str | None:
    """The value of `expression` when it is one string literal (any quoting); else None."""
    try:
        tree = json.loads(parse_sql_json("SELECT " + expression))
    except (ParseError, RecursionError):
        return None
    stmts = tree.get("stmts", [])
    if len(stmts) != 1:
        return None
    select = stmts[0]["stmt"].get("SelectStmt")
    if select is None or not set(select) <= _SELECT_ONLY_KEYS or len(select["targetList"]) != 1:
        return None
    value = select["targetList"][0].get("ResTarget", {}).get("val", {})
    constant = value.get("A_Const")
    if constant is None or "sval" not in constant:
        return None
    return str(constant["sval"].get("sval", ""))
