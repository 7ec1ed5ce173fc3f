"""MD5 auth arithmetic: independent hashlib recomputation, literal vectors, a recorded exchange."""

from __future__ import annotations

import hashlib

import pytest

from proxy.errors import ProtocolError
from proxy.protocol.md5 import (
    md5_password_hash,
    md5_response,
    md5_response_from_hash,
    verify_md5_response,
)

SALT = b"\x01\x02\x03\x04"


def _expected_response(user: bytes, password: bytes, salt: bytes) -> bytes:
    inner = hashlib.md5(password + user).hexdigest().encode()
    return b"md5" + hashlib.md5(inner + salt).hexdigest().encode()


def test_password_hash_matches_hashlib() -> None:
    expected = "md5" + hashlib.md5(b"secret" + b"postgres").hexdigest()
    assert md5_password_hash("postgres", "secret") == expected


def test_password_hash_matches_pg_authid() -> None:
    # From PostgreSQL 15: SET password_encryption='md5'; CREATE ROLE postgres_md5 PASSWORD 'secret'.
    assert md5_password_hash("postgres_md5", "secret") == "md570d28846ae31a9a777702bb5bb60a27e"


def test_response_literal_vector() -> None:
    # Computed once with hashlib in a shell, independently of the implementation.
    assert md5_response("user", "password", SALT) == b"md5a3576f1ae039b8996bc4fc2720f9c71a"


def test_response_matches_hashlib_for_non_ascii() -> None:
    user, password = "rôle", "pässwörd"
    expected = _expected_response(user.encode(), password.encode(), b"\xff\x00\x10\x80")
    assert md5_response(user, password, b"\xff\x00\x10\x80") == expected


def test_recorded_exchange_with_postgres() -> None:
    # A real PostgreSQL 15 sent this salt and answered AuthenticationOk to this response.
    salt = b"s\x99\x9c\xc1"
    assert md5_response("postgres_md5", "secret", salt) == b"md5ecd1ef14be523521aa954b550165a869"
    assert md5_response_from_hash("md570d28846ae31a9a777702bb5bb60a27e", salt) == (
        b"md5ecd1ef14be523521aa954b550165a869"
    )


@pytest.mark.parametrize("suffix", [b"", b"\x00"])
def test_verify_accepts_with_or_without_nul(suffix: bytes) -> None:
    response = md5_response("user", "password", SALT) + suffix
    assert verify_md5_response("user", "password", SALT, response)


@pytest.mark.parametrize(
    "response",
    [
        b"",
        b"\x00",
        b"md5",
        b"md5a3576f1ae039b8996bc4fc2720f9c71b",  # last digit changed
        b"MD5a3576f1ae039b8996bc4fc2720f9c71a",
        b"md5a3576f1ae039b8996bc4fc2720f9c71a\x00\x00",
        b"md5a3576f1ae039b8996bc4fc2720f9c71a ",
    ],
)
def test_verify_rejects(response: bytes) -> None:
    assert not verify_md5_response("user", "password", SALT, response)


def test_verify_rejects_wrong_password_and_user() -> None:
    response = md5_response("user", "password", SALT)
    assert not verify_md5_response("user", "Password", SALT, response)
    assert not verify_md5_response("other", "password", SALT, response)
    assert not verify_md5_response("user", "password", b"\x01\x02\x03\x05", response)


@pytest.mark.parametrize("salt", [b"", b"\x01\x02\x03", b"\x01\x02\x03\x04\x05"])
def test_salt_must_be_four_bytes(salt: bytes) -> None:
    with pytest.raises(ProtocolError):
        md5_response("user", "password", salt)


@pytest.mark.parametrize("stored", ["", "md5", "md5" + "0" * 31, "SCRAM-SHA-256$4096:..."])
def test_response_from_hash_rejects_non_md5(stored: str) -> None:
    with pytest.raises(ValueError):
        md5_response_from_hash(stored, SALT)
