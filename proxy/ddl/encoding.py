"""Query text read in the session's client encoding, as the server reads it.

Postgres converts every client string from `client_encoding` to the server's encoding before
its scanner sees a byte. The guard must read the same characters, or it splits statements,
quotes and comments differently from the server: in SJIS, BIG5, GBK, UHC, GB18030 and JOHAB
the second byte of a character can be an ASCII byte (0x40-0x7E: `\\`, `|`, letters), so a
UTF-8 or Latin-1 reading turns `E'ソ'` into an escaped quote that swallows the next statement.

`decode_sql` is strict: it returns None rather than a text the server could read otherwise.
The character boundaries of the encodings whose later bytes may be ASCII come from Postgres's
own rule (its `pg_*_mblen` functions), each character then decoded alone, so a byte sequence
that Python's codec would split differently is refused, not guessed.

SQL_ASCII means "no conversion": the server's scanner gets the raw bytes, checked only
against the server's own encoding. The text is therefore read in `server_encoding` when that
is known and not SQL_ASCII too; otherwise as UTF-8, and bytes that are not UTF-8 make it
unreadable (None). Reading them any other way would keep the statement's structure (a byte
>= 0x80 is an identifier character to the scanner in every case) but invent the names in it.

`encode_sql` is the way back for rewritten text, in the same codec.
"""

from __future__ import annotations

import codecs
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

SQL_ASCII: Final = "SQL_ASCII"

# Postgres encoding name -> Python codec. None: Python has no codec for it.
_CODECS: Final[dict[str, str | None]] = {
    "UTF8": "utf-8",
    "LATIN1": "iso8859-1",
    "LATIN2": "iso8859-2",
    "LATIN3": "iso8859-3",
    "LATIN4": "iso8859-4",
    "LATIN5": "iso8859-9",
    "LATIN6": "iso8859-10",
    "LATIN7": "iso8859-13",
    "LATIN8": "iso8859-14",
    "LATIN9": "iso8859-15",
    "LATIN10": "iso8859-16",
    "ISO_8859_5": "iso8859-5",
    "ISO_8859_6": "iso8859-6",
    "ISO_8859_7": "iso8859-7",
    "ISO_8859_8": "iso8859-8",
    "WIN866": "cp866",
    "WIN874": "cp874",
    "WIN1250": "cp1250",
    "WIN1251": "cp1251",
    "WIN1252": "cp1252",
    "WIN1253": "cp1253",
    "WIN1254": "cp1254",
    "WIN1255": "cp1255",
    "WIN1256": "cp1256",
    "WIN1257": "cp1257",
    "WIN1258": "cp1258",
    "KOI8R": "koi8-r",
    "KOI8U": "koi8-u",
    "EUC_JP": "euc_jp",
    "EUC_JIS_2004": "euc_jis_2004",
    "EUC_CN": "gb2312",  # EUC-CN is GB 2312 in its EUC form
    "EUC_KR": "euc_kr",
    "EUC_TW": None,
    "MULE_INTERNAL": None,
    # Client-only encodings; Postgres's SJIS, BIG5 and GBK are Microsoft's code pages.
    "SJIS": "cp932",
    "SHIFT_JIS_2004": "shift_jis_2004",
    "BIG5": "cp950",
    "GBK": "cp936",
    "UHC": "cp949",
    "GB18030": "gb18030",
    "JOHAB": "johab",
}

# Postgres's aliases (encnames.c), keyed as `_clean` leaves them.
_ALIASES: Final[dict[str, str]] = {
    "unicode": "UTF8",
    "utf8": "UTF8",
    "sqlascii": SQL_ASCII,
    "iso88591": "LATIN1",
    "iso88592": "LATIN2",
    "iso88593": "LATIN3",
    "iso88594": "LATIN4",
    "iso88599": "LATIN5",
    "iso885910": "LATIN6",
    "iso885913": "LATIN7",
    "iso885914": "LATIN8",
    "iso885915": "LATIN9",
    "iso885916": "LATIN10",
    "iso88595": "ISO_8859_5",
    "iso88596": "ISO_8859_6",
    "iso88597": "ISO_8859_7",
    "iso88598": "ISO_8859_8",
    "win": "WIN1251",
    "alt": "WIN866",
    "koi8": "KOI8R",
    "mskanji": "SJIS",
    "shiftjis": "SJIS",
    "win932": "SJIS",
    "windows932": "SJIS",
    "win936": "GBK",
    "windows936": "GBK",
    "win949": "UHC",
    "windows949": "UHC",
    "win950": "BIG5",
    "windows950": "BIG5",
    "tcvn": "WIN1258",
    "tcvn5712": "WIN1258",
    "vscii": "WIN1258",
    "abc": "WIN1258",
    "mule": "MULE_INTERNAL",
}


def canonical_name(name: str) -> str | None:
    """Postgres's own name for encoding `name` (any alias or spelling); None if unknown."""
    key = _clean(name)
    alias = _ALIASES.get(key)
    if alias is not None:
        return alias
    for canonical in _CODECS:
        if _clean(canonical) == key:
            return canonical
    return SQL_ASCII if key == _clean(SQL_ASCII) else None


def _clean(name: str) -> str:
    # As Postgres compares encoding names: case-insensitive, punctuation ignored.
    return re.sub(r"[^0-9a-z]", "", name.lower())


def python_codec(name: str) -> str | None:
    """The Python codec that reads Postgres encoding `name`; None for SQL_ASCII and the unknown."""
    canonical = canonical_name(name)
    return _CODECS.get(canonical) if canonical is not None else None


def ascii_safe(name: str) -> bool:
    """Whether every byte < 0x80 is an ASCII character in `name` whatever comes before it.

    True for every encoding a Postgres server can use; False for the client-only multibyte
    encodings, where a reading in the wrong encoding can move quotes and backslashes.
    """
    return canonical_name(name) not in _MBLEN


# -- character lengths by Postgres's rules (src/common/wchar.c) ------------------------------


def _two_if_high(data: bytes, at: int) -> int:
    return 2 if data[at] >= 0x80 else 1


def _sjis_length(data: bytes, at: int) -> int:
    byte = data[at]
    if 0xA1 <= byte <= 0xDF:  # half-width katakana
        return 1
    return 2 if byte >= 0x80 else 1


def _gb18030_length(data: bytes, at: int) -> int:
    if data[at] < 0x80:
        return 1
    second = data[at + 1] if at + 1 < len(data) else 0
    return 4 if 0x30 <= second <= 0x39 else 2


def _euc_length(data: bytes, at: int) -> int:
    byte = data[at]
    if byte == 0x8F:  # SS3
        return 3
    return 2 if byte >= 0x80 else 1


_MBLEN: Final[dict[str, Callable[[bytes, int], int]]] = {
    "SJIS": _sjis_length,
    "SHIFT_JIS_2004": _sjis_length,
    "BIG5": _two_if_high,
    "GBK": _two_if_high,
    "UHC": _two_if_high,
    "GB18030": _gb18030_length,
    "JOHAB": _euc_length,
}


# -- decoding and encoding ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SqlCodec:
    """How one session's query text is read and written back."""

    name: str  # the Postgres encoding the bytes are read in
    codec: str | None  # its Python codec; None: only ASCII text can be read

    def decode(self, raw: bytes) -> str | None:
        if raw.isascii():
            return raw.decode("ascii")  # the same characters in every client encoding
        if self.codec is None:
            return None
        mblen = _MBLEN.get(self.name)
        try:
            if mblen is None:
                return raw.decode(self.codec)
            return _decode_by_characters(raw, self.codec, mblen)
        except UnicodeDecodeError:
            return None

    def encode(self, text: str) -> bytes | None:
        if text.isascii():
            return text.encode("ascii")
        if self.codec is None:
            return None
        try:
            return text.encode(self.codec)
        except UnicodeEncodeError:
            return None


@functools.lru_cache(maxsize=64)
def codec_for(client_encoding: str, server_encoding: str | None = None) -> SqlCodec:
    """The codec for a session's `client_encoding` (and `server_encoding`, for SQL_ASCII)."""
    name = canonical_name(client_encoding)
    if name == SQL_ASCII:
        server = canonical_name(server_encoding) if server_encoding else None
        name = server if server is not None and server != SQL_ASCII else "UTF8"
    if name is None:
        return SqlCodec(client_encoding, None)
    return SqlCodec(name, _CODECS.get(name))


def decode_sql(raw: bytes, encoding: str, server_encoding: str | None = None) -> str | None:
    """`raw` as the server reads it in `encoding`; None when it cannot be read faithfully."""
    return codec_for(encoding, server_encoding).decode(raw)


def encode_sql(text: str, encoding: str, server_encoding: str | None = None) -> bytes | None:
    """`text` in `encoding` (the reverse of `decode_sql`); None when it has no such bytes."""
    return codec_for(encoding, server_encoding).encode(text)


def _decode_by_characters(raw: bytes, codec: str, mblen: Callable[[bytes, int], int]) -> str:
    """Decode one character at a time, cut where Postgres cuts.

    Raises UnicodeDecodeError when a piece is not exactly one character in `codec`.
    """
    decoder = codecs.getdecoder(codec)
    out: list[str] = []
    at, end = 0, len(raw)
    while at < end:
        byte = raw[at]
        if byte < 0x80:
            out.append(chr(byte))
            at += 1
            continue
        length = mblen(raw, at)
        piece = raw[at : at + length]
        char, _ = decoder(piece) if len(piece) == length else ("", 0)
        if len(char) != 1 or char.isascii():
            raise UnicodeDecodeError(codec, raw, at, at + length, "not one character where Postgres sees one")
        out.append(char)
        at += length
    return "".join(out)
