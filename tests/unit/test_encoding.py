"""Query text read in the client encoding, as the server reads it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.ddl.classify import Kind, classify, undecodable
from proxy.ddl.encoding import (
    ascii_safe,
    canonical_name,
    codec_for,
    decode_sql,
    encode_sql,
    python_codec,
)


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("UTF8", "UTF8"),
        ("utf-8", "UTF8"),
        ("unicode", "UTF8"),
        ("LATIN1", "LATIN1"),
        ("iso-8859-1", "LATIN1"),
        ("ISO_8859_15", "LATIN9"),
        ("latin10", "LATIN10"),
        ("WIN1252", "WIN1252"),
        ("windows932", "SJIS"),
        ("Shift_JIS", "SJIS"),
        ("shift_jis_2004", "SHIFT_JIS_2004"),
        ("euc-jp", "EUC_JP"),
        ("KOI8", "KOI8R"),
        ("sql_ascii", "SQL_ASCII"),
        ("klingon", None),
    ],
)
def test_canonical_names(name: str, canonical: str | None) -> None:
    assert canonical_name(name) == canonical


@pytest.mark.parametrize(
    ("name", "codec"),
    [
        ("UTF8", "utf-8"),
        ("LATIN1", "iso8859-1"),
        ("LATIN5", "iso8859-9"),
        ("LATIN9", "iso8859-15"),
        ("WIN1251", "cp1251"),
        ("KOI8R", "koi8-r"),
        ("SJIS", "cp932"),
        ("BIG5", "cp950"),
        ("GBK", "cp936"),
        ("EUC_JP", "euc_jp"),
        ("GB18030", "gb18030"),
        ("EUC_TW", None),
        ("SQL_ASCII", None),
    ],
)
def test_python_codecs(name: str, codec: str | None) -> None:
    assert python_codec(name) == codec


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("ALTER TABLE t ADD c text -- café", "LATIN1"),
        ("COMMENT ON TABLE t IS 'Привет'", "KOI8R"),
        ("COMMENT ON TABLE t IS 'Привет'", "WIN1251"),
        ("SELECT E'ソ'; ALTER TABLE t DROP COLUMN c; --'", "SJIS"),
        ("SELECT '表'", "BIG5"),
        ("SELECT '丂'", "GBK"),
        ("SELECT '丂𐀀'", "GB18030"),
        ("SELECT '한국어'", "UHC"),
        ("SELECT 'ソ'", "EUC_JP"),
        ("SELECT 'ὕαλον'", "UTF8"),
    ],
)
def test_round_trip(text: str, encoding: str) -> None:
    raw = encode_sql(text, encoding)
    assert raw is not None
    assert decode_sql(raw, encoding) == text


def test_sjis_second_byte_backslash_is_not_an_escape() -> None:
    # ソ is 0x83 0x5C in SJIS: a reading byte by byte sees `\` and an escaped quote, which
    # hides the ALTER inside a string literal.
    raw = "SELECT E'ソ'; ALTER TABLE t DROP COLUMN c; --'".encode("cp932")
    assert b"\\'" in raw
    naive = [s.kind for s in classify(raw.decode("latin-1"))]
    assert naive == [Kind.SELECT]
    text = decode_sql(raw, "SJIS")
    assert text is not None
    assert [s.kind for s in classify(text)] == [Kind.SELECT, Kind.ALTER_TABLE]


def test_latin1_accent_decodes_where_utf8_fails() -> None:
    raw = "ALTER TABLE t DROP COLUMN c -- é".encode("latin-1")
    assert decode_sql(raw, "UTF8") is None
    text = decode_sql(raw, "LATIN1")
    assert text is not None
    (statement,) = classify(text)
    assert statement.kind is Kind.ALTER_TABLE


@pytest.mark.parametrize(
    ("raw", "encoding"),
    [
        (b"SELECT '\xe9'", "UTF8"),  # not UTF-8
        (b"SELECT '\x83'", "SJIS"),  # a lead byte with nothing after it
        (b"SELECT '\x80\\'", "SJIS"),  # Postgres reads 0x80 as a lead byte; Python as one character
        (b"SELECT '\xa0'", "SJIS"),
        (b"SELECT '\x81'", "WIN1252"),  # undefined in the code page
        (b"SELECT '\xa4\xa1'", "EUC_TW"),  # no Python codec
        (b"SELECT '\xff\xfe'", "SQL_ASCII"),  # opaque bytes that are not UTF-8
    ],
)
def test_unreadable_bytes_give_none(raw: bytes, encoding: str) -> None:
    assert decode_sql(raw, encoding) is None


def test_ascii_reads_in_any_encoding() -> None:
    for encoding in ("UTF8", "SJIS", "EUC_TW", "MULE_INTERNAL", "SQL_ASCII", "klingon"):
        assert decode_sql(b"DROP TABLE t", encoding) == "DROP TABLE t"
        assert encode_sql("DROP TABLE t", encoding) == b"DROP TABLE t"


def test_sql_ascii_reads_in_the_server_encoding() -> None:
    # No conversion: the server checks the bytes against its own encoding and parses them.
    assert decode_sql(b"SELECT '\xe9'", "SQL_ASCII", "LATIN1") == "SELECT 'é'"
    assert decode_sql("SELECT 'é'".encode(), "SQL_ASCII", "UTF8") == "SELECT 'é'"
    assert decode_sql("SELECT 'é'".encode(), "SQL_ASCII") == "SELECT 'é'"
    assert decode_sql(b"SELECT '\xe9'", "SQL_ASCII", "SQL_ASCII") is None
    assert encode_sql("SELECT 'é'", "SQL_ASCII", "LATIN1") == b"SELECT '\xe9'"


def test_encode_refuses_characters_the_encoding_lacks() -> None:
    assert encode_sql("SELECT 'ソ'", "LATIN1") is None
    assert encode_sql("SELECT 'é'", "EUC_TW") is None


def test_ascii_safety() -> None:
    assert ascii_safe("UTF8") and ascii_safe("LATIN1") and ascii_safe("EUC_JP")
    assert not ascii_safe("SJIS") and not ascii_safe("BIG5") and not ascii_safe("GB18030")


def test_codec_is_cached() -> None:
    assert codec_for("LATIN1") is codec_for("LATIN1")


@given(st.binary(max_size=30))
def test_sjis_reading_is_refused_or_keeps_postgres_boundaries(raw: bytes) -> None:
    decoded = decode_sql(raw, "SJIS")
    if decoded is None:
        return
    # Postgres reads a byte < 0x80 as ASCII only where no character started the byte before:
    # the decoded text has exactly those ASCII characters, in order.
    ascii_chars, at = [], 0
    while at < len(raw):
        if raw[at] < 0x80:
            ascii_chars.append(chr(raw[at]))
        at += 1 if raw[at] < 0x80 or 0xA1 <= raw[at] <= 0xDF else 2
    assert [c for c in decoded if c.isascii()] == ascii_chars
    assert decoded == raw.decode("cp932")


def test_undecodable_statement() -> None:
    statement = undecodable(b"  ALTER TABLE t -- \xe9\xff ", "EUC_TW")
    assert statement.kind is Kind.UNPARSABLE
    assert statement.start == 2
    assert statement.text == "ALTER TABLE t -- \xe9\xff"
    assert statement.error is not None and statement.error.sqlstate == "22021"
    assert "EUC_TW" in statement.error.message
