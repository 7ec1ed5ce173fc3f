"""Names of database objects as Postgres normalises and prints them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# Postgres truncates identifiers to NAMEDATALEN - 1 bytes.
MAX_IDENTIFIER_BYTES: Final = 63

# Unquoted identifiers are folded to lower case, ASCII letters only: with a multibyte
# server encoding (UTF8 here) Postgres leaves other characters alone.
_ASCII_LOWER: Final = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@dataclass(frozen=True, slots=True)
class QualifiedName:
    """An object name as written in a statement: `schema` is None when unqualified."""

    schema: str | None
    name: str

    def __str__(self) -> str:
        if self.schema is None:
            return quote_ident(self.name)
        return f"{quote_ident(self.schema)}.{quote_ident(self.name)}"


def fold_identifier(text: str) -> str:
    """The identifier an unquoted token `text` stands for."""
    return truncate_identifier(text.translate(_ASCII_LOWER))


def unquote_identifier(text: str) -> str:
    """The identifier a double-quoted token `text` (quotes included) stands for."""
    return truncate_identifier(text[1:-1].replace('""', '"'))


def truncate_identifier(name: str) -> str:
    encoded = name.encode("utf-8", "surrogatepass")
    if len(encoded) <= MAX_IDENTIFIER_BYTES:
        return name
    # Cut on a character boundary, as Postgres's pg_mbcliplen does.
    return encoded[:MAX_IDENTIFIER_BYTES].decode("utf-8", "ignore")


def quote_ident(name: str) -> str:
    """Always double-quoted: messages name objects unambiguously, as Electric's did."""
    return '"' + name.replace('"', '""') + '"'
