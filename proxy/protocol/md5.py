"""MD5 password authentication arithmetic (AuthenticationMD5Password), sans-IO.

Postgres stores ``"md5" + hex(md5(password + user))`` in ``pg_authid`` and asks the client for
``"md5" + hex(md5(stored_hex + salt))`` where ``salt`` is the 4 random bytes of the
AuthenticationMD5Password request. Both sides therefore only ever need the stored hash, which
is why the response is computed from it.

Text is encoded as UTF-8 with ``surrogateescape`` so a password that was decoded from
arbitrary bytes with the same handler hashes to exactly those bytes, as libpq would send them.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

from proxy.errors import ProtocolError

MD5_PREFIX: Final = "md5"
MD5_SALT_LENGTH: Final = 4


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def md5_password_hash(user: str, password: str) -> str:
    """The value Postgres keeps in ``pg_authid.rolpassword`` for an MD5 role."""
    return MD5_PREFIX + hashlib.md5(_encode(password) + _encode(user)).hexdigest()


def md5_response_from_hash(password_hash: str, salt: bytes) -> bytes:
    """The PasswordMessage payload (no trailing NUL) for a stored ``md5…`` hash and a salt."""
    if not password_hash.startswith(MD5_PREFIX) or len(password_hash) != len(MD5_PREFIX) + 32:
        raise ValueError("not an MD5 password hash")
    if len(salt) != MD5_SALT_LENGTH:
        raise ProtocolError(f"MD5 salt must be {MD5_SALT_LENGTH} bytes, got {len(salt)}")
    inner = password_hash[len(MD5_PREFIX) :].encode("ascii")
    return MD5_PREFIX.encode("ascii") + hashlib.md5(inner + salt).hexdigest().encode("ascii")


def md5_response(user: str, password: str, salt: bytes) -> bytes:
    """What a client sends in PasswordMessage for an MD5 challenge, without the trailing NUL."""
    return md5_response_from_hash(md5_password_hash(user, password), salt)


def verify_md5_response(user: str, password: str, salt: bytes, response: bytes) -> bool:
    """Check a client's PasswordMessage payload in constant time.

    The payload is accepted with or without its trailing NUL, because callers may hand over
    either the raw message body or an already-parsed C string.
    """
    if response.endswith(b"\x00"):
        response = response[:-1]
    return hmac.compare_digest(md5_response(user, password, salt), response)
