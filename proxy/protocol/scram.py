"""SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it, sans-IO.

One exchange, each line one SASL message (the caller frames them as AuthenticationSASL*,
SASLInitialResponse and SASLResponse)::

    client-first   n,,n=<user>,r=<client nonce>
    server-first   r=<client nonce><server nonce>,s=<salt b64>,i=<iterations>
    client-final   c=biws,r=<client nonce><server nonce>,p=<proof b64>
    server-final   v=<server signature b64>          (or e=<error>)

Invariants:

- Channel binding (``SCRAM-SHA-256-PLUS``) is ``tls-server-end-point`` only, the one type Postgres
  speaks: the binding data is a hash of the server's certificate (`certificate_hash`). A server
  built without binding data refuses gs2 flag ``p=``; one built with it refuses ``y`` (the client
  could bind and thinks the server cannot: a downgrade), as Postgres does.
- The client's key derivation (PBKDF2, the costly part) is a separate step: `ScramClient`
  reads the server-first-message, the caller derives `ClientKeys` wherever it likes (off the
  event loop, from a cache, or from a ClientKey recovered by `ScramServer.client_key`), and
  `client_final` finishes the message.
- Postgres ignores the client-first user name (the startup packet already named the role)
  and libpq sends it empty; both sides here accept any user name.
- Malformed messages raise `ProtocolError`. Well-formed messages that fail a check (nonce,
  channel binding, proof, server signature, ``e=``) raise `AuthError`. Nothing else escapes
  the ``handle_*`` / ``verify_*`` methods.
- Passwords are normalised with SASLprep the way Postgres does it (see `saslprep`), so a
  verifier computed here matches the one Postgres stores for the same password.
- Nonces and salts are injectable for recorded-exchange tests; otherwise they come from
  `secrets`.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import secrets
import stringprep
import struct
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from proxy.errors import AuthError, ProtocolError

SCRAM_SHA_256: Final = "SCRAM-SHA-256"
SCRAM_SHA_256_PLUS: Final = "SCRAM-SHA-256-PLUS"
DEFAULT_ITERATIONS: Final = 4096
# The most PBKDF2 rounds the proxy spends on one derivation (about 0.7 s of one core here; the
# Postgres default is 4096): a server may ask for up to 2^31-1, which would pin a core for minutes
# per login. Stored verifiers may hold more: checking a client's proof costs no PBKDF2.
MAX_ITERATIONS: Final = 1_000_000
_MAX_STORED_ITERATIONS: Final = 2**31 - 1
NONCE_LENGTH: Final = 18  # raw bytes before base64, as libpq and the Postgres server use
SALT_LENGTH: Final = 16  # Postgres's SCRAM_DEFAULT_SALT_LEN
KEY_LENGTH: Final = 32  # SHA-256 output
GS2_HEADER: Final = "n,,"
VERIFIER_PREFIX: Final = SCRAM_SHA_256 + "$"

# ---------------------------------------------------------------------------------------------
# SASLprep (RFC 4013 profile of stringprep, RFC 3454), following Postgres's pg_saslprep().
# ---------------------------------------------------------------------------------------------

_PROHIBITED: Final[tuple[Callable[[str], bool], ...]] = (
    stringprep.in_table_c12,
    stringprep.in_table_c21_c22,
    stringprep.in_table_c3,
    stringprep.in_table_c4,
    stringprep.in_table_c5,
    stringprep.in_table_c6,
    stringprep.in_table_c7,
    stringprep.in_table_c8,
    stringprep.in_table_c9,
    stringprep.in_table_a1,  # unassigned code points are prohibited in stored strings
)


def saslprep(password: str) -> str:
    """Normalise a password the way Postgres does before hashing it for SCRAM.

    Postgres falls back to the raw password whenever SASLprep fails (prohibited or
    unassigned characters, bad bidi, invalid UTF-8, empty result), so a client that sends
    such a password still authenticates; we return the input unchanged in the same cases.
    A ``str`` holding lone surrogates (e.g. decoded with ``surrogateescape`` from invalid
    UTF-8) falls into the "prohibited" branch, which mirrors Postgres's invalid-UTF-8 case.
    """
    # Postgres skips all processing for pure ASCII, even control characters.
    if password.isascii():
        return password
    mapped = _saslprep_map(password)
    # Postgres runs the prohibition and bidi checks on the mapped string, not on the
    # NFKC output; doing the same keeps our verifiers identical to the server's.
    if not mapped or not _saslprep_allowed(mapped):
        return password
    return unicodedata.normalize("NFKC", mapped)


def _saslprep_map(text: str) -> str:
    # RFC 4013 2.1: non-ASCII spaces become U+0020, "commonly mapped to nothing" vanish.
    # U+200B is in both tables; Postgres tests the space table first, so it becomes " ".
    return "".join(_saslprep_map_char(ch) for ch in text)


def _saslprep_map_char(ch: str) -> str:
    if stringprep.in_table_c12(ch):
        return " "
    return "" if stringprep.in_table_b1(ch) else ch


def _saslprep_allowed(text: str) -> bool:
    if any(prohibited(ch) for ch in text for prohibited in _PROHIBITED):
        return False
    # RFC 3454 section 6: a string with any right-to-left character must contain no
    # left-to-right character and must start and end with right-to-left characters.
    if not any(stringprep.in_table_d1(ch) for ch in text):
        return True
    if any(stringprep.in_table_d2(ch) for ch in text):
        return False
    return stringprep.in_table_d1(text[0]) and stringprep.in_table_d1(text[-1])


# ---------------------------------------------------------------------------------------------
# Key derivation and the pg_authid verifier format.
# ---------------------------------------------------------------------------------------------


def _encode_password(password: str) -> bytes:
    # surrogateescape lets a password decoded from arbitrary bytes hash to those same bytes.
    return saslprep(password).encode("utf-8", "surrogateescape")


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.digest(key, message, "sha256")


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _xor(left: bytes, right: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(left, right, strict=True))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _check_key_params(salt: bytes, iterations: int, limit: int = MAX_ITERATIONS) -> None:
    if not salt:
        raise ValueError("SCRAM salt must not be empty")
    if not 1 <= iterations <= limit:
        raise ValueError(f"SCRAM iteration count must be between 1 and {limit}")


def _salted_password(password: bytes, salt: bytes, iterations: int) -> bytes:
    # RFC 5802's Hi() is PBKDF2 with HMAC as the PRF and one hash-length output block.
    return hashlib.pbkdf2_hmac("sha256", password, salt, iterations)


@dataclass(frozen=True, slots=True)
class ScramKeys:
    """What a SCRAM server needs to know about a password (and what Postgres stores)."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


def scram_keys(password: str, salt: bytes, iterations: int = DEFAULT_ITERATIONS) -> ScramKeys:
    """Derive StoredKey and ServerKey for a password, salt and iteration count."""
    _check_key_params(salt, iterations)
    salted = _salted_password(_encode_password(password), salt, iterations)
    return ScramKeys(
        salt=salt,
        iterations=iterations,
        stored_key=_sha256(_hmac(salted, b"Client Key")),
        server_key=_hmac(salted, b"Server Key"),
    )


@dataclass(frozen=True, slots=True)
class ClientKeys:
    """What a SCRAM client needs to log in and to check the server: ClientKey and ServerKey.

    Derived from a password (`client_keys`), or made of a ClientKey recovered from another
    client's proof and the ServerKey of the role's verifier (`ScramServer.client_key`).
    """

    client_key: bytes
    server_key: bytes


def client_keys(password: str, salt: bytes, iterations: int) -> ClientKeys:
    """PBKDF2 and two HMACs: milliseconds of CPU, so callers run it off the event loop."""
    _check_key_params(salt, iterations)
    salted = _salted_password(_encode_password(password), salt, iterations)
    return ClientKeys(client_key=_hmac(salted, b"Client Key"), server_key=_hmac(salted, b"Server Key"))


def scram_verifier(password: str, salt: bytes, iterations: int = DEFAULT_ITERATIONS) -> str:
    """The ``pg_authid.rolpassword`` text Postgres stores for this password, salt and count."""
    return format_scram_verifier(scram_keys(password, salt, iterations))


def format_scram_verifier(keys: ScramKeys) -> str:
    """``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>``, all base64."""
    return (
        f"{VERIFIER_PREFIX}{keys.iterations}:{_b64(keys.salt)}"
        f"${_b64(keys.stored_key)}:{_b64(keys.server_key)}"
    )


def parse_scram_verifier(verifier: str) -> ScramKeys:
    """Read a stored verifier (e.g. from ``pg_authid``); raises ValueError if malformed.

    This is configuration or catalog data, not wire input, so the caller decides which
    `ProxyError` a bad one becomes.
    """
    if not verifier.startswith(VERIFIER_PREFIX):
        raise ValueError("not a SCRAM-SHA-256 verifier")
    try:
        params, keys = verifier[len(VERIFIER_PREFIX) :].split("$")
        iterations_text, salt_b64 = params.split(":")
        stored_b64, server_b64 = keys.split(":")
        salt, stored, server = (
            base64.b64decode(v, validate=True) for v in (salt_b64, stored_b64, server_b64)
        )
    except ValueError:
        raise ValueError("malformed SCRAM-SHA-256 verifier") from None
    if not _is_decimal(iterations_text) or len(stored) != KEY_LENGTH or len(server) != KEY_LENGTH:
        raise ValueError("malformed SCRAM-SHA-256 verifier")
    iterations = int(iterations_text)
    _check_key_params(salt, iterations, _MAX_STORED_ITERATIONS)
    return ScramKeys(salt=salt, iterations=iterations, stored_key=stored, server_key=server)


# ---------------------------------------------------------------------------------------------
# Channel binding data: tls-server-end-point (RFC 5929), as Postgres computes it.
# ---------------------------------------------------------------------------------------------

CHANNEL_BINDING_TYPE: Final = "tls-server-end-point"

# The hash named by the certificate's signature algorithm; MD5 and SHA-1 are upgraded to SHA-256
# (RFC 5929 section 4.1). Algorithms with no single hash (Ed25519, RSA-PSS) have no binding.
_SIGNATURE_HASHES: Final[dict[bytes, str]] = {
    bytes.fromhex("2a864886f70d010104"): "sha256",  # md5WithRSAEncryption
    bytes.fromhex("2a864886f70d010105"): "sha256",  # sha1WithRSAEncryption
    bytes.fromhex("2a864886f70d01010b"): "sha256",  # sha256WithRSAEncryption
    bytes.fromhex("2a864886f70d01010c"): "sha384",  # sha384WithRSAEncryption
    bytes.fromhex("2a864886f70d01010d"): "sha512",  # sha512WithRSAEncryption
    bytes.fromhex("2a8648ce3d040301"): "sha256",  # ecdsa-with-SHA1
    bytes.fromhex("2a8648ce3d040302"): "sha256",  # ecdsa-with-SHA256
    bytes.fromhex("2a8648ce3d040303"): "sha384",  # ecdsa-with-SHA384
    bytes.fromhex("2a8648ce3d040304"): "sha512",  # ecdsa-with-SHA512
}


def _der_element(data: bytes, offset: int) -> tuple[int, int, int]:
    """(tag, start of contents, end of contents) of the DER element at `offset`."""
    if offset + 2 > len(data):
        raise ValueError("truncated DER")
    tag, length = data[offset], data[offset + 1]
    start = offset + 2
    if length & 0x80:
        count = length & 0x7F
        if not 1 <= count <= 4 or start + count > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[start : start + count], "big")
        start += count
    if start + length > len(data):
        raise ValueError("truncated DER")
    return tag, start, start + length


def _signature_algorithm(certificate: bytes) -> bytes:
    # Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm SEQUENCE { OID, ... }, ... }
    _, body, _ = _der_element(certificate, 0)
    _, _, tbs_end = _der_element(certificate, body)
    _, algorithm, _ = _der_element(certificate, tbs_end)
    tag, oid_start, oid_end = _der_element(certificate, algorithm)
    if tag != 0x06:
        raise ValueError("no signature algorithm OID")
    return certificate[oid_start:oid_end]


def certificate_hash(certificate: bytes) -> bytes:
    """The tls-server-end-point binding data of a DER certificate; ValueError when it has none."""
    name = _SIGNATURE_HASHES.get(_signature_algorithm(certificate))
    if name is None:
        raise ValueError("the certificate's signature algorithm has no tls-server-end-point hash")
    return hashlib.new(name, certificate).digest()


# ---------------------------------------------------------------------------------------------
# Message parsing. Every failure here is a ProtocolError with Postgres's wording.
# ---------------------------------------------------------------------------------------------


def _malformed(detail: str) -> ProtocolError:
    return ProtocolError("malformed SCRAM message", detail=detail)


def _unsupported(message: str) -> ProtocolError:
    return ProtocolError(message, sqlstate="0A000")


def _decode(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed(f"{what} is not valid UTF-8") from None


def _attr(part: str, name: str, what: str) -> str:
    """The value of ``name=value``, which must be the attribute at this position."""
    if not part.startswith(name + "="):
        raise _malformed(f"Expected attribute {name!r} in {what}")
    return part[len(name) + 1 :]


def _is_printable(value: str) -> bool:
    # RFC 5802 "printable": ASCII 0x21-0x7E except ",".
    return bool(value) and all("!" <= ch <= "~" and ch != "," for ch in value)


def _nonce(value: str, what: str) -> str:
    if not _is_printable(value):
        raise _malformed(f"Invalid nonce in {what}")
    return value


def _b64decode(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:  # binascii.Error, or non-ASCII text
        raise _malformed(f"Invalid base64 in {what}") from None


def _is_decimal(value: str) -> bool:
    # int() alone would also take "+5", " 5", "1_0" and non-ASCII digits.
    return value.isascii() and value.isdigit() and len(value) <= 10


def _iterations(value: str) -> int:
    if not _is_decimal(value) or not 1 <= int(value) <= MAX_ITERATIONS:
        raise _malformed(f"Invalid iteration count {value[:20]!r} in server-first-message")
    return int(value)


def _escape_saslname(name: str) -> str:
    # RFC 5802 saslname: "=" and "," are the only characters that need escaping.
    return name.replace("=", "=3D").replace(",", "=2C")


@dataclass(frozen=True, slots=True)
class _ClientFirst:
    gs2_header: str
    bare: str
    nonce: str
    binding: str = "n"  # the gs2 flag: "n", "y" or "p"


@dataclass(frozen=True, slots=True)
class _ServerFirst:
    nonce: str
    salt: bytes
    iterations: int


@dataclass(frozen=True, slots=True)
class _ClientFinal:
    without_proof: str
    channel_binding: str
    nonce: str
    proof: bytes


def _parse_gs2_header(flag: str, authzid: str) -> str:
    """The gs2 channel-binding flag: "n", "y", or "p" (binding of the one supported type)."""
    if flag.startswith("p="):
        if flag[2:] != CHANNEL_BINDING_TYPE:
            raise _unsupported(f"unsupported SCRAM channel-binding type {flag[2:40]!r}")
        flag = "p"
    elif flag not in ("n", "y"):
        raise _malformed("Unexpected channel-binding flag in client-first-message")
    if authzid.startswith("a="):
        raise _unsupported("client uses authorization identity, but it is not supported")
    if authzid:
        raise _malformed("Unexpected attribute in client-first-message")
    return flag


def _parse_client_first(data: bytes) -> _ClientFirst:
    text = _decode(data, "client-first-message")
    flag, _, rest = text.partition(",")
    authzid, sep, bare = rest.partition(",")
    if not sep:
        raise _malformed("Missing GS2 header in client-first-message")
    binding = _parse_gs2_header(flag, authzid)
    parts = bare.split(",")
    if parts[0].startswith("m="):
        raise _unsupported("client requires an unsupported SCRAM extension")
    if len(parts) != 2:
        raise _malformed("Unexpected attributes in client-first-message")
    _attr(parts[0], "n", "client-first-message")  # ignored, as Postgres does
    nonce = _nonce(_attr(parts[1], "r", "client-first-message"), "client-first-message")
    return _ClientFirst(gs2_header=text[: len(text) - len(bare)], bare=bare, nonce=nonce, binding=binding)


def _parse_server_first(data: bytes) -> _ServerFirst:
    parts = _decode(data, "server-first-message").split(",")
    if parts[0].startswith("m="):
        raise _unsupported("server requires an unsupported SCRAM extension")
    if len(parts) != 3:
        raise _malformed("Unexpected attributes in server-first-message")
    what = "server-first-message"
    salt = _b64decode(_attr(parts[1], "s", what), what)
    if not salt:
        raise _malformed("Empty salt in server-first-message")
    return _ServerFirst(
        nonce=_nonce(_attr(parts[0], "r", what), what),
        salt=salt,
        iterations=_iterations(_attr(parts[2], "i", what)),
    )


def _parse_client_final(data: bytes) -> _ClientFinal:
    what = "client-final-message"
    text = _decode(data, what)
    # The first ",p=" is the proof: no attribute value may contain a comma.
    without_proof, sep, proof_b64 = text.partition(",p=")
    if not sep:
        raise _malformed(f"Missing proof in {what}")
    parts = without_proof.split(",")
    if len(parts) < 2:
        raise _malformed(f"Missing attributes in {what}")
    # Postgres skips unknown extensions between the nonce and the proof.
    if any(len(ext) < 2 or not (ext[0].isascii() and ext[0].isalpha()) or ext[1] != "=" for ext in parts[2:]):
        raise _malformed(f"Malformed extension in {what}")
    proof = _b64decode(proof_b64, what)
    if len(proof) != KEY_LENGTH:
        raise _malformed(f"Malformed proof in {what}")
    return _ClientFinal(
        without_proof=without_proof,
        channel_binding=_attr(parts[0], "c", what),
        nonce=_attr(parts[1], "r", what),
        proof=proof,
    )


def _auth_message(client_first_bare: str, server_first: str, client_final_without_proof: str) -> bytes:
    return f"{client_first_bare},{server_first},{client_final_without_proof}".encode()


def _new_nonce() -> str:
    return _b64(secrets.token_bytes(NONCE_LENGTH))


def _checked_nonce(nonce: str | None) -> str:
    if nonce is None:
        return _new_nonce()
    if not _is_printable(nonce):
        raise ValueError("a SCRAM nonce must be printable ASCII without commas")
    return nonce


class _Step(enum.Enum):
    CLIENT_FIRST = "client-first-message"
    SERVER_FIRST = "server-first-message"
    CLIENT_FINAL = "client-final-message"
    SERVER_FINAL = "server-final-message"
    DONE = "done"
    FAILED = "failed"


def _enter(current: _Step, expected: _Step) -> _Step:
    """Check the exchange order; the caller stores FAILED until the step succeeds."""
    if current is not expected:
        raise ProtocolError(f"unexpected SCRAM {expected.value} (state: {current.value})")
    return _Step.FAILED


# ---------------------------------------------------------------------------------------------
# The two roles.
# ---------------------------------------------------------------------------------------------


class ScramClient:
    """The proxy authenticating to an upstream Postgres.

    ``client_first_message()`` -> ``read_server_first()`` -> ``client_final(keys)`` ->
    ``verify_server_final()``; ``handle_server_first()`` does the middle two with the password
    given at construction. With `channel_binding` (the upstream certificate's hash) the client
    speaks ``SCRAM-SHA-256-PLUS``.
    """

    def __init__(
        self,
        password: str | None = None,
        *,
        nonce: str | None = None,
        username: str = "",
        channel_binding: bytes | None = None,
    ) -> None:
        self._password = None if password is None else _encode_password(password)
        self._nonce = _checked_nonce(nonce)
        self._binding = channel_binding
        self._gs2_header = GS2_HEADER if channel_binding is None else f"p={CHANNEL_BINDING_TYPE},,"
        self._client_first_bare = f"n={_escape_saslname(username)},r={self._nonce}"
        self._server_first = _ServerFirst(nonce="", salt=b"", iterations=0)
        self._server_first_text = ""
        self._server_signature = b""
        self._step = _Step.CLIENT_FIRST

    @property
    def nonce(self) -> str:
        return self._nonce

    @property
    def mechanism(self) -> str:
        return SCRAM_SHA_256 if self._binding is None else SCRAM_SHA_256_PLUS

    @property
    def done(self) -> bool:
        """True once the server's signature has been verified."""
        return self._step is _Step.DONE

    def client_first_message(self) -> bytes:
        self._step = _enter(self._step, _Step.CLIENT_FIRST)
        self._step = _Step.SERVER_FIRST
        return (self._gs2_header + self._client_first_bare).encode()

    def read_server_first(self, data: bytes) -> tuple[bytes, int]:
        """Check the server-first-message; return the (salt, iterations) to derive keys with."""
        self._step = _enter(self._step, _Step.SERVER_FIRST)
        server_first = _parse_server_first(data)
        # The server must extend our nonce; an echo alone would let it replay old exchanges.
        if not (server_first.nonce.startswith(self._nonce) and len(server_first.nonce) > len(self._nonce)):
            raise AuthError("invalid SCRAM response: nonce mismatch")
        self._server_first, self._server_first_text = server_first, data.decode()
        self._step = _Step.CLIENT_FINAL
        return server_first.salt, server_first.iterations

    def client_final(self, keys: ClientKeys) -> bytes:
        """The client-final-message, proved with `keys` (derived for the salt and count read)."""
        self._step = _enter(self._step, _Step.CLIENT_FINAL)
        binding = self._gs2_header.encode() + (self._binding or b"")
        without_proof = f"c={_b64(binding)},r={self._server_first.nonce}"
        auth_message = _auth_message(self._client_first_bare, self._server_first_text, without_proof)
        proof = _xor(keys.client_key, _hmac(_sha256(keys.client_key), auth_message))
        self._server_signature = _hmac(keys.server_key, auth_message)
        self._step = _Step.SERVER_FINAL
        return f"{without_proof},p={_b64(proof)}".encode()

    def handle_server_first(self, data: bytes) -> bytes:
        """Check the server-first-message and return the client-final-message (derives keys here)."""
        if self._password is None:
            raise ValueError("this client has no password: derive keys and call client_final()")
        salt, iterations = self.read_server_first(data)
        salted = _salted_password(self._password, salt, iterations)
        keys = ClientKeys(_hmac(salted, b"Client Key"), _hmac(salted, b"Server Key"))
        return self.client_final(keys)

    def verify_server_final(self, data: bytes) -> None:
        """Raise AuthError unless the server proved it knows the password too."""
        self._step = _enter(self._step, _Step.SERVER_FINAL)
        text = _decode(data, "server-final-message")
        if text.startswith("e="):
            raise AuthError("SCRAM authentication failed", detail=f"Server error: {text[2:200]}")
        value = _attr(text, "v", "server-final-message")
        if "," in value:
            raise _malformed("Unexpected attributes in server-final-message")
        signature = _b64decode(value, "server-final-message")
        if not hmac.compare_digest(signature, self._server_signature):
            raise AuthError("invalid SCRAM server signature")
        self._step = _Step.DONE


def _negotiation_error(detail: str) -> ProtocolError:
    return ProtocolError("SCRAM channel binding negotiation error", detail=detail)


class ScramServer:
    """The proxy authenticating a client that speaks SCRAM-SHA-256 to it.

    ``handle_client_first()`` -> ``handle_client_final()``. The server does not know the
    role name (Postgres ignores the one in client-first), so a wrong password raises
    ``AuthError("password authentication failed")`` and the caller adds "for user …".

    `channel_binding` is the hash of the certificate on the client's TLS link, when there is
    one: the server then offers ``SCRAM-SHA-256-PLUS`` and refuses a client that says it could
    bind but thinks the server cannot (gs2 flag ``y``). After success, `client_key` is the
    ClientKey recovered from the client's proof, which logs in wherever the same verifier is
    stored without the proxy ever knowing the password.
    """

    def __init__(
        self,
        password: str,
        *,
        salt: bytes | None = None,
        iterations: int = DEFAULT_ITERATIONS,
        nonce: str | None = None,
        channel_binding: bytes | None = None,
    ) -> None:
        salt = secrets.token_bytes(SALT_LENGTH) if salt is None else salt
        self._setup(scram_keys(password, salt, iterations), nonce, channel_binding)

    @classmethod
    def from_keys(
        cls, keys: ScramKeys, *, nonce: str | None = None, channel_binding: bytes | None = None
    ) -> ScramServer:
        """A server that holds only a stored verifier (see `parse_scram_verifier`)."""
        server = cls.__new__(cls)
        server._setup(keys, nonce, channel_binding)
        return server

    def _setup(self, keys: ScramKeys, nonce: str | None, channel_binding: bytes | None) -> None:
        self._keys = keys
        self._nonce = _checked_nonce(nonce)
        self._binding = channel_binding
        self._client_first = _ClientFirst(gs2_header="", bare="", nonce="")
        self._server_first = ""
        self._client_key = b""
        self._step = _Step.CLIENT_FIRST

    @property
    def mechanisms(self) -> list[str]:
        """What to list in AuthenticationSASL, preferred first."""
        return [SCRAM_SHA_256] if self._binding is None else [SCRAM_SHA_256_PLUS, SCRAM_SHA_256]

    @property
    def nonce(self) -> str:
        """The server's half of the nonce."""
        return self._nonce

    @property
    def keys(self) -> ScramKeys:
        return self._keys

    @property
    def done(self) -> bool:
        """True once the client has proved it knows the password."""
        return self._step is _Step.DONE

    @property
    def client_key(self) -> bytes:
        """The client's ClientKey, recovered from its proof (only once `done`)."""
        if not self.done:
            raise ValueError("the client has not proved its key yet")
        return self._client_key

    def handle_client_first(self, data: bytes, *, mechanism: str = SCRAM_SHA_256) -> bytes:
        """Check the client-first-message sent under `mechanism`; return the server-first-message."""
        self._step = _enter(self._step, _Step.CLIENT_FIRST)
        self._client_first = _parse_client_first(data)
        self._check_binding(self._client_first.binding, mechanism)
        self._server_first = (
            f"r={self._client_first.nonce}{self._nonce},s={_b64(self._keys.salt)},i={self._keys.iterations}"
        )
        self._step = _Step.CLIENT_FINAL
        return self._server_first.encode()

    def _check_binding(self, flag: str, mechanism: str) -> None:
        # Postgres's rules and wording (auth-scram.c, read_client_first_message).
        plus = mechanism == SCRAM_SHA_256_PLUS
        if plus and self._binding is None:
            raise ProtocolError("client selected an invalid SASL authentication mechanism")
        if plus and flag != "p":
            raise _malformed(
                "The client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not include "
                "channel binding data."
            )
        if not plus and flag == "p":
            raise AuthError(
                "SCRAM channel binding is not supported",
                detail="The client selected SCRAM-SHA-256 without channel binding, but the SCRAM "
                "message includes channel binding data.",
            )
        if flag == "y" and self._binding is not None:
            raise _negotiation_error(
                "The client supports SCRAM channel binding but thinks the server does not.  "
                "However, this server does support channel binding."
            )

    def handle_client_final(self, data: bytes) -> bytes:
        """Verify the client's proof and return the server-final-message."""
        self._step = _enter(self._step, _Step.CLIENT_FINAL)
        final = _parse_client_final(data)
        # c= must repeat the gs2 header the client opened with (and the binding data when it
        # bound), so a downgrade or a relayed exchange from another TLS link is detected.
        binding = self._binding if self._client_first.binding == "p" else None
        expected = self._client_first.gs2_header.encode() + (binding or b"")
        if final.channel_binding != _b64(expected):
            raise AuthError("SCRAM channel binding check failed")
        if final.nonce != self._client_first.nonce + self._nonce:
            raise AuthError("SCRAM nonce mismatch")
        auth_message = _auth_message(self._client_first.bare, self._server_first, final.without_proof)
        client_key = _xor(final.proof, _hmac(self._keys.stored_key, auth_message))
        if not hmac.compare_digest(_sha256(client_key), self._keys.stored_key):
            raise AuthError("password authentication failed")
        self._client_key = client_key
        self._step = _Step.DONE
        return f"v={_b64(_hmac(self._keys.server_key, auth_message))}".encode()


def mock_keys(secret: bytes, user: str) -> ScramKeys:
    """Keys for a role that does not exist, stable per user name and proxy instance.

    The exchange runs to the end and fails as a wrong password would, with the same salt on every
    try, so a client cannot tell an unknown role from a known one (Postgres does the same).
    """
    seed = _hmac(secret, user.encode("utf-8", "surrogateescape"))
    return ScramKeys(
        salt=seed[:SALT_LENGTH],
        iterations=DEFAULT_ITERATIONS,
        stored_key=_hmac(seed, b"stored"),
        server_key=_hmac(seed, b"server"),
    )


# ---------------------------------------------------------------------------------------------
# SASL wire payloads around the SCRAM messages.
# ---------------------------------------------------------------------------------------------


def _decode_mechanism(name: bytes) -> str:
    try:
        mechanism = name.decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolError("SASL mechanism name is not ASCII") from None
    if not mechanism:
        raise ProtocolError("empty SASL mechanism name")
    return mechanism


def _encode_mechanism(mechanism: str) -> bytes:
    if not mechanism or not mechanism.isascii() or "\x00" in mechanism:
        raise ValueError(f"invalid SASL mechanism name {mechanism!r}")
    return mechanism.encode("ascii") + b"\x00"


def sasl_mechanisms(payload: bytes) -> list[str]:
    """Mechanisms listed in an AuthenticationSASL body (the bytes after the int32 10).

    The list is NUL-terminated names followed by an empty name.
    """
    mechanisms: list[str] = []
    start = 0
    while True:
        end = payload.find(b"\x00", start)
        if end < 0:
            raise ProtocolError("AuthenticationSASL mechanism list is not terminated")
        if end == start:
            break
        mechanisms.append(_decode_mechanism(payload[start:end]))
        start = end + 1
    if end + 1 != len(payload):
        raise ProtocolError("trailing bytes after AuthenticationSASL mechanism list")
    return mechanisms


def encode_sasl_mechanisms(mechanisms: Iterable[str]) -> bytes:
    """The AuthenticationSASL body after the int32 10."""
    return b"".join(_encode_mechanism(m) for m in mechanisms) + b"\x00"


def parse_sasl_initial_response(body: bytes) -> tuple[str, bytes]:
    """Split a SASLInitialResponse body (after the type byte and length) into mechanism and data.

    A length of -1 ("no initial response") yields ``b""``: for SCRAM both are malformed.
    """
    end = body.find(b"\x00")
    if end < 0:
        raise ProtocolError("SASLInitialResponse mechanism name is not terminated")
    mechanism = _decode_mechanism(body[:end])
    if len(body) < end + 5:
        raise ProtocolError("SASLInitialResponse is missing its data length")
    (length,) = struct.unpack_from("!i", body, end + 1)
    data = body[end + 5 :]
    if length == -1 and not data:
        return mechanism, b""
    if length != len(data):
        raise ProtocolError("SASLInitialResponse data length does not match the message")
    return mechanism, data


def encode_sasl_initial_response(mechanism: str, data: bytes | None) -> bytes:
    """A SASLInitialResponse body; ``None`` encodes "no initial response" (length -1)."""
    if data is None:
        return _encode_mechanism(mechanism) + struct.pack("!i", -1)
    return _encode_mechanism(mechanism) + struct.pack("!i", len(data)) + data
