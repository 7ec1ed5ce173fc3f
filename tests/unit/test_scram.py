"""SCRAM-SHA-256: RFC 7677 vector, exchanges recorded against real PostgreSQL 15 / libpq,
verifiers taken from a real pg_authid, tampering, and fuzzing of the message handlers."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.errors import AuthError, ProtocolError
from proxy.protocol.scram import (
    MAX_ITERATIONS,
    SCRAM_SHA_256,
    SCRAM_SHA_256_PLUS,
    ClientKeys,
    ScramClient,
    ScramKeys,
    ScramServer,
    certificate_hash,
    client_keys,
    encode_sasl_initial_response,
    encode_sasl_mechanisms,
    format_scram_verifier,
    mock_keys,
    parse_sasl_initial_response,
    parse_scram_verifier,
    sasl_mechanisms,
    saslprep,
    scram_keys,
    scram_verifier,
)

# ---------------------------------------------------------------------------------------------
# RFC 7677 section 3.
# ---------------------------------------------------------------------------------------------

RFC_CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
RFC_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC_CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_FIRST = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
RFC_CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def test_rfc7677_client() -> None:
    client = ScramClient("pencil", nonce=RFC_CLIENT_NONCE, username="user")
    assert client.client_first_message() == RFC_CLIENT_FIRST
    assert client.handle_server_first(RFC_SERVER_FIRST) == RFC_CLIENT_FINAL
    client.verify_server_final(RFC_SERVER_FINAL)
    assert client.done


@pytest.mark.parametrize("from_keys", [False, True])
def test_rfc7677_server(from_keys: bool) -> None:
    if from_keys:
        server = ScramServer.from_keys(scram_keys("pencil", RFC_SALT, 4096), nonce=RFC_SERVER_NONCE)
    else:
        server = ScramServer("pencil", salt=RFC_SALT, iterations=4096, nonce=RFC_SERVER_NONCE)
    assert server.handle_client_first(RFC_CLIENT_FIRST) == RFC_SERVER_FIRST
    assert server.handle_client_final(RFC_CLIENT_FINAL) == RFC_SERVER_FINAL
    assert server.done


# ---------------------------------------------------------------------------------------------
# Exchanges recorded against PostgreSQL 15.18 on 127.0.0.1 (role ascii_user, password "secret").
# ---------------------------------------------------------------------------------------------

PG_ASCII_VERIFIER = (
    "SCRAM-SHA-256$4096:/nrilW5IhXQm+M9Rr/44/g==$sTBgAuDn3Rj3cNtdRU+MVF4+ZeqEt566TDUcxmlTyDQ="
    ":RTrBWpirTnrGh9hlBnS6nXs+RjwWP8LSAk0VVfUiw7c="
)


def test_recorded_exchange_scram_client_against_postgres() -> None:
    # ScramClient talking to the real server, which then sent AuthenticationOk.
    client = ScramClient("secret", nonce="UQDNASYLN3GFzHRKhn1RLUu0")
    assert client.client_first_message() == b"n,,n=,r=UQDNASYLN3GFzHRKhn1RLUu0"
    server_first = b"r=UQDNASYLN3GFzHRKhn1RLUu0rFOaTZiaeZ/2DqJPBl66Ruc0,s=/nrilW5IhXQm+M9Rr/44/g==,i=4096"
    assert client.handle_server_first(server_first) == (
        b"c=biws,r=UQDNASYLN3GFzHRKhn1RLUu0rFOaTZiaeZ/2DqJPBl66Ruc0,"
        b"p=cwL35Q2F5XpT9VqwnMYuTDqeNa/KmJzWGCArfA5AaBg="
    )
    client.verify_server_final(b"v=BpTdZBlBLzqdug65BTY9LlStU2yFW+TSKMvqw81XMxA=")


def test_recorded_exchange_replayed_through_server_from_stored_keys() -> None:
    # The same transcript, with our server standing in for Postgres using its pg_authid row.
    server = ScramServer.from_keys(parse_scram_verifier(PG_ASCII_VERIFIER), nonce="rFOaTZiaeZ/2DqJPBl66Ruc0")
    assert server.handle_client_first(b"n,,n=,r=UQDNASYLN3GFzHRKhn1RLUu0") == (
        b"r=UQDNASYLN3GFzHRKhn1RLUu0rFOaTZiaeZ/2DqJPBl66Ruc0,s=/nrilW5IhXQm+M9Rr/44/g==,i=4096"
    )
    final = server.handle_client_final(
        b"c=biws,r=UQDNASYLN3GFzHRKhn1RLUu0rFOaTZiaeZ/2DqJPBl66Ruc0,"
        b"p=cwL35Q2F5XpT9VqwnMYuTDqeNa/KmJzWGCArfA5AaBg="
    )
    assert final == b"v=BpTdZBlBLzqdug65BTY9LlStU2yFW+TSKMvqw81XMxA="


def test_recorded_exchange_libpq_against_scram_server() -> None:
    # psql 15 (libpq) logging in to ScramServer; libpq accepted the server-final-message.
    initial = b"SCRAM-SHA-256\x00\x00\x00\x00 n,,n=,r=Wvwh0l8OtwHHIyoc/jkavM1b"
    mechanism, client_first = parse_sasl_initial_response(initial)
    assert mechanism == SCRAM_SHA_256
    server = ScramServer.from_keys(parse_scram_verifier(PG_ASCII_VERIFIER), nonce="BNcva17ou8uQYEsNPWYwjinI")
    assert server.handle_client_first(client_first) == (
        b"r=Wvwh0l8OtwHHIyoc/jkavM1bBNcva17ou8uQYEsNPWYwjinI,s=/nrilW5IhXQm+M9Rr/44/g==,i=4096"
    )
    final = server.handle_client_final(
        b"c=biws,r=Wvwh0l8OtwHHIyoc/jkavM1bBNcva17ou8uQYEsNPWYwjinI,"
        b"p=W2w5Zlloi4H3y0laS0TuI1uhYz2AmW0HZLaV9SBhimM="
    )
    assert final == b"v=EXMVUEKBc85HRnU+pz8wLFG6AzibuF9CQ22WKSiKfBY="


def test_recorded_libpq_exchange_with_wrong_password_fails() -> None:
    server = ScramServer.from_keys(parse_scram_verifier(PG_ASCII_VERIFIER), nonce="C+OmTNnJ9RBWSmSsXk9903nn")
    server.handle_client_first(b"n,,n=,r=WTBEI7IOKyHzx7uXx3juOtc0")
    with pytest.raises(AuthError, match="password authentication failed") as info:
        server.handle_client_final(
            b"c=biws,r=WTBEI7IOKyHzx7uXx3juOtc0C+OmTNnJ9RBWSmSsXk9903nn,"
            b"p=Z3LNq7E+7lied4wSS2srVhtOYV7Q/PLXVi8zxCNJJ70="
        )
    assert info.value.sqlstate == "28P01"


# ---------------------------------------------------------------------------------------------
# Verifiers: pg_authid rows from PostgreSQL 15.18 (CREATE ROLE … PASSWORD E'…').
# ---------------------------------------------------------------------------------------------

PG_VERIFIERS = [
    ("secret", PG_ASCII_VERIFIER),
    # soft hyphen dropped, em space -> " ", o + combining diaeresis -> ö, ﬁ ligature -> "fi"
    (
        "pa\u00adss\u2003wo\u0308rd \ufb01",
        "SCRAM-SHA-256$4096:/pJ5oyNvBcByc834cvZ1tw==$1M4JvDNgxygWvaS9+ocmbrooA3JmB+nde9mEm5dVI4s="
        ":j10jpllxWbRPyL1ssGWG3ylnn5R29KkxeYGreGkmMf8=",
    ),
    # prohibited control character in a non-ASCII password: raw password is used
    (
        "pass\u0007\u00e9",
        "SCRAM-SHA-256$4096:ZEy6/fywh2BmVwqESVvWGg==$zGfuyfCAl5NZQRSLFJbdiaEDymVG9mz9jodxQjc223Q="
        ":2Yfxo2CVjzXrqO9xdPKhfsUdzH5Xr4o4010uTNyp5vY=",
    ),
    # right-to-left then left-to-right characters: bidi failure, raw password
    (
        "\u05d0abc",
        "SCRAM-SHA-256$4096:8/ZozMsMMhKdM+7hh5CA7w==$uVuBym0cBbWmizjwV02FsNM4NqzqEilcR+RpJDNzHdM="
        ":I3yIMnqeOX/nteugBeMsmFOXbJ0DW9PzqoggfADd3GU=",
    ),
    # U+200B is both a "space" and "mapped to nothing"; Postgres maps it to " "
    (
        "\u00ad\u200b",
        "SCRAM-SHA-256$4096:TT29NMRo7UKxeEplggHPmw==$L7YdNweGdd4bBUX6hNJjjl1PRrwIALV7gx42Q26Md3U="
        ":SFiQTvqoxfSQ1sXEmrDKqaSRkwW7OgfIMICZhT7hd/E=",
    ),
    # maps to the empty string: raw password
    (
        "\u00ad",
        "SCRAM-SHA-256$4096:rFjM91lFAhpbQayXeWLNog==$bJ4dM/6zCHIEihl+0w2KV98pXsrmMOk9p+m9RA4v1xk="
        ":+NMiMEtqYZkjga+/u4ox/+H7tPxIly2Two2ixaFCcwU=",
    ),
    # unassigned in Unicode 3.2: raw password
    (
        "pw\U0001f600",
        "SCRAM-SHA-256$4096:ni1JkszPIgvcXLrAIpteYA==$3XcbHVIYxXNcF36NLjkxf7FKkm8xifzM8uJqLDD9yWU="
        ":eTdXBiFZh5LyBHcCANxIpg9KC8X/hi9Q2xvWMPtZgoU=",
    ),
]


@pytest.mark.parametrize(("password", "verifier"), PG_VERIFIERS)
def test_scram_verifier_matches_postgres(password: str, verifier: str) -> None:
    keys = parse_scram_verifier(verifier)
    assert scram_verifier(password, keys.salt, keys.iterations) == verifier
    assert format_scram_verifier(keys) == verifier


def _hi_by_hand(password: bytes, salt: bytes, iterations: int) -> bytes:
    # RFC 5802 section 2.2, written out instead of calling pbkdf2_hmac.
    block = hmac.new(password, salt + struct.pack("!I", 1), hashlib.sha256).digest()
    result = bytearray(block)
    for _ in range(iterations - 1):
        block = hmac.new(password, block, hashlib.sha256).digest()
        result = bytearray(a ^ b for a, b in zip(result, block, strict=True))
    return bytes(result)


def test_scram_keys_match_rfc_formulas() -> None:
    salt = b"0123456789abcdef"
    salted = _hi_by_hand(b"correct horse", salt, 1000)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    expected = ScramKeys(
        salt=salt,
        iterations=1000,
        stored_key=hashlib.sha256(client_key).digest(),
        server_key=hmac.new(salted, b"Server Key", hashlib.sha256).digest(),
    )
    assert scram_keys("correct horse", salt, 1000) == expected
    b64 = base64.b64encode
    assert scram_verifier("correct horse", salt, 1000) == (
        f"SCRAM-SHA-256$1000:{b64(salt).decode()}$"
        f"{b64(expected.stored_key).decode()}:{b64(expected.server_key).decode()}"
    )


@pytest.mark.parametrize(
    "verifier",
    [
        "",
        "md570d28846ae31a9a777702bb5bb60a27e",
        "SCRAM-SHA-256$4096:c2FsdA==$AAAA",
        "SCRAM-SHA-256$0:c2FsdA==$" + "A" * 43 + "=:" + "A" * 43 + "=",
        "SCRAM-SHA-256$x:c2FsdA==$" + "A" * 43 + "=:" + "A" * 43 + "=",
        "SCRAM-SHA-256$4096:$" + "A" * 43 + "=:" + "A" * 43 + "=",
        "SCRAM-SHA-256$4096:c2FsdA==$" + "A" * 40 + ":" + "A" * 43 + "=",
        "SCRAM-SHA-256$4096:c2FsdA==$" + "A" * 43 + "=:" + "A" * 43 + "=$extra",
    ],
)
def test_parse_scram_verifier_rejects(verifier: str) -> None:
    with pytest.raises(ValueError):
        parse_scram_verifier(verifier)


@pytest.mark.parametrize(("salt", "iterations"), [(b"", 4096), (b"s", 0), (b"s", MAX_ITERATIONS + 1)])
def test_scram_keys_rejects_bad_parameters(salt: bytes, iterations: int) -> None:
    with pytest.raises(ValueError):
        scram_keys("pw", salt, iterations)


# ---------------------------------------------------------------------------------------------
# SASLprep.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "prepared"),
    [
        ("pencil", "pencil"),
        ("ctrl\x07ascii", "ctrl\x07ascii"),  # pure ASCII is never touched
        ("I\u00adX", "IX"),  # RFC 4013 example: soft hyphen mapped to nothing
        ("user\u00a0name", "user name"),  # non-ASCII space
        ("\u00aa", "a"),  # RFC 4013 example: NFKC
        ("\u2168", "IX"),  # RFC 4013 example: roman numeral nine
        ("\u00e9", "\u00e9"),
        ("e\u0301", "\u00e9"),  # composed by NFKC
        ("\u0007\u00e9", "\u0007\u00e9"),  # prohibited: raw
        ("\u05d0\u05d1", "\u05d0\u05d1"),  # all right-to-left: fine
        ("\u05d0a\u05d1", "\u05d0a\u05d1"),  # mixed directions: raw
        ("\u05d01", "\u05d01"),  # must end in right-to-left: raw
        ("\udcff\u00e9", "\udcff\u00e9"),  # surrogate from invalid UTF-8: raw
        ("", ""),
    ],
)
def test_saslprep(raw: str, prepared: str) -> None:
    assert saslprep(raw) == prepared


def test_password_from_invalid_utf8_uses_raw_bytes() -> None:
    password = b"caf\xe9".decode("utf-8", "surrogateescape")
    salt = b"salt"
    salted = hashlib.pbkdf2_hmac("sha256", b"caf\xe9", salt, 1)
    stored = hashlib.sha256(hmac.new(salted, b"Client Key", hashlib.sha256).digest()).digest()
    assert scram_keys(password, salt, 1).stored_key == stored


# ---------------------------------------------------------------------------------------------
# Full exchanges with random nonces.
# ---------------------------------------------------------------------------------------------

FAST_KEYS = scram_keys("hunter2", b"fast-salt", 16)


def _exchange(client: ScramClient, server: ScramServer) -> None:
    server_first = server.handle_client_first(client.client_first_message())
    server_final = server.handle_client_final(client.handle_server_first(server_first))
    client.verify_server_final(server_final)


def test_exchange_right_password() -> None:
    client, server = ScramClient("hunter2"), ScramServer("hunter2")
    _exchange(client, server)
    assert client.done and server.done
    assert len(client.nonce) == 24 and len(server.nonce) == 24  # 18 random bytes, base64


def test_exchange_non_ascii_password_and_user_name() -> None:
    client = ScramClient("pa\u00adss\u2003w\u00f6rd", username="r\u00f4le,=x")
    server = ScramServer("pass w\u00f6rd", iterations=16)
    _exchange(client, server)
    assert server.done


def test_exchange_wrong_password() -> None:
    client, server = ScramClient("hunter3"), ScramServer.from_keys(FAST_KEYS)
    server_first = server.handle_client_first(client.client_first_message())
    with pytest.raises(AuthError, match=r"^password authentication failed$") as info:
        server.handle_client_final(client.handle_server_first(server_first))
    assert info.value.sqlstate == "28P01"
    assert not server.done


def test_nonces_are_random() -> None:
    assert ScramClient("x").nonce != ScramClient("x").nonce
    assert ScramServer.from_keys(FAST_KEYS).nonce != ScramServer.from_keys(FAST_KEYS).nonce


def _started(client_first: bytes = b"n,,n=,r=cnonce") -> ScramServer:
    server = ScramServer.from_keys(FAST_KEYS, nonce="snonce")
    server.handle_client_first(client_first)
    return server


FAST_SERVER_FIRST = b"r=cnoncesnonce,s=" + base64.b64encode(b"fast-salt") + b",i=16"


def _valid_final() -> bytes:
    """The client-final-message a ScramClient with the right password answers `_started()` with."""
    client = ScramClient("hunter2", nonce="cnonce")
    client.client_first_message()
    return client.handle_server_first(FAST_SERVER_FIRST)


def test_valid_final_is_accepted() -> None:
    assert _started().handle_client_final(_valid_final()).startswith(b"v=")


def test_c_attribute_must_repeat_y_flag() -> None:
    # ScramClient always sends c=biws ("n,,"); a server that saw "y,," must refuse it.
    with pytest.raises(AuthError, match="channel binding"):
        _started(b"y,,n=,r=cnonce").handle_client_final(_valid_final())


def test_y_flag_full_exchange() -> None:
    server = _started(b"y,,n=,r=cnonce")
    without_proof = "c=" + base64.b64encode(b"y,,").decode() + ",r=cnoncesnonce"
    auth_message = (
        f"n=,r=cnonce,r=cnoncesnonce,s={base64.b64encode(b'fast-salt').decode()},i=16,{without_proof}"
    )
    salted = hashlib.pbkdf2_hmac("sha256", b"hunter2", b"fast-salt", 16)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    signature = hmac.new(hashlib.sha256(client_key).digest(), auth_message.encode(), hashlib.sha256).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    server.handle_client_final(f"{without_proof},p={base64.b64encode(proof).decode()}".encode())
    assert server.done


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"r=cnoncesnonce", b"r=cnoncesnoncf"),  # tampered nonce
        (b"r=cnoncesnonce", b"r=cnonce"),
        (b"c=biws", b"c=eSws"),  # claims "y,," after sending "n,,"
        (b"c=biws", b"c=cD10bHMtdW5pcXVlLCw="),  # p=tls-unique,,
    ],
)
def test_tampered_client_final_is_refused(old: bytes, new: bytes) -> None:
    final = _valid_final()
    with pytest.raises(AuthError):
        _started().handle_client_final(final.replace(old, new))


def test_tampered_proof_is_refused() -> None:
    final = _valid_final()
    proof = base64.b64decode(final.rpartition(b"p=")[2])
    bad = final.rpartition(b"p=")[0] + b"p=" + base64.b64encode(bytes([proof[0] ^ 1]) + proof[1:])
    with pytest.raises(AuthError, match="password authentication failed"):
        _started().handle_client_final(bad)


def test_client_final_extensions_are_skipped() -> None:
    # Extensions are not covered by this proof, so only check that parsing skips them.
    final = _valid_final().replace(b",p=", b",x=ext,p=")
    with pytest.raises(AuthError, match="password authentication failed"):
        _started().handle_client_final(final)


def test_channel_binding_flag_is_refused() -> None:
    server = ScramServer.from_keys(FAST_KEYS)
    with pytest.raises(AuthError, match="channel binding") as info:
        server.handle_client_first(b"p=tls-server-end-point,,n=,r=cnonce")
    assert info.value.sqlstate == "28P01"


@pytest.mark.parametrize(
    ("message", "sqlstate"),
    [
        (b"", "08P01"),
        (b"n", "08P01"),
        (b"n,", "08P01"),
        (b"n,,", "08P01"),
        (b"x,,n=,r=abc", "08P01"),
        (b"n,,r=abc", "08P01"),
        (b"n,,n=,r=", "08P01"),
        (b"n,,n=,r=a b", "08P01"),
        (b"n,,n=,r=abc,x=ext", "08P01"),
        (b"n,,n=,r=\xff", "08P01"),
        (b"n,x,n=,r=abc", "08P01"),
        (b"n,a=user,n=,r=abc", "0A000"),
        (b"n,,m=ext,n=,r=abc", "0A000"),
    ],
)
def test_malformed_client_first(message: bytes, sqlstate: str) -> None:
    with pytest.raises(ProtocolError) as info:
        ScramServer.from_keys(FAST_KEYS).handle_client_first(message)
    assert info.value.sqlstate == sqlstate


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"c=biws,r=cnoncesnonce",
        b"c=biws,p=" + b"A" * 43 + b"=",
        b"c=biws,r=cnoncesnonce,p=not base64",
        b"c=biws,r=cnoncesnonce,p=AAAA",  # proof too short
        b"c=biws,r=cnoncesnonce,p=" + b"A" * 43 + b"=,x=1",
        b"c=biws,r=cnoncesnonce,ext,p=" + b"A" * 43 + b"=",
        b"r=cnoncesnonce,c=biws,p=" + b"A" * 43 + b"=",
        b"c=biws,r=cnoncesnonce,p=" + b"A" * 43 + b"=\xff",
    ],
)
def test_malformed_client_final(message: bytes) -> None:
    with pytest.raises(ProtocolError):
        _started().handle_client_final(message)


def test_server_steps_out_of_order() -> None:
    server = ScramServer.from_keys(FAST_KEYS)
    with pytest.raises(ProtocolError):
        server.handle_client_final(b"c=biws,r=x,p=" + b"A" * 43 + b"=")
    server = _started()
    with pytest.raises(ProtocolError):
        server.handle_client_first(b"n,,n=,r=cnonce")


def test_failed_server_cannot_be_retried() -> None:
    server = _started()
    final = _valid_final()
    with pytest.raises(AuthError):
        server.handle_client_final(final.replace(b"c=biws", b"c=eSws"))
    with pytest.raises(ProtocolError):
        server.handle_client_final(final)


# ---------------------------------------------------------------------------------------------
# Client-side checks of what the server sends.
# ---------------------------------------------------------------------------------------------


def _client() -> ScramClient:
    client = ScramClient("hunter2", nonce="cnonce")
    client.client_first_message()
    return client


@pytest.mark.parametrize(
    "server_first",
    [
        b"r=othersnonce,s=c2FsdA==,i=16",  # does not extend our nonce
        b"r=cnonce,s=c2FsdA==,i=16",  # echo without a server part
    ],
)
def test_client_rejects_bad_server_nonce(server_first: bytes) -> None:
    with pytest.raises(AuthError, match="nonce"):
        _client().handle_server_first(server_first)


@pytest.mark.parametrize(
    "server_first",
    [
        b"",
        b"r=cnoncex,s=c2FsdA==",
        b"r=cnoncex,s=c2FsdA==,i=0",
        b"r=cnoncex,s=c2FsdA==,i=-1",
        b"r=cnoncex,s=c2FsdA==,i=+16",
        b"r=cnoncex,s=c2FsdA==,i=1_6",
        b"r=cnoncex,s=c2FsdA==,i= 16",
        b"r=cnoncex,s=c2FsdA==,i=\xd9\xa1",  # Arabic-Indic digit one
        b"r=cnoncex,s=c2FsdA==,i=" + str(MAX_ITERATIONS + 1).encode(),
        b"r=cnoncex,s=c2FsdA==,i=99999999999999999999",
        b"r=cnoncex,s=,i=16",
        b"r=cnoncex,s=not*base64,i=16",
        b"r=cnoncex,s=c2FsdA,i=16",  # missing padding
        b"r=cnoncex,s=c2FsdA==,i=16,x=ext",
        b"s=c2FsdA==,r=cnoncex,i=16",
        b"m=ext,r=cnoncex,s=c2FsdA==,i=16",
    ],
)
def test_client_rejects_malformed_server_first(server_first: bytes) -> None:
    with pytest.raises(ProtocolError):
        _client().handle_server_first(server_first)


def test_client_reports_server_error() -> None:
    client = _client()
    client.handle_server_first(b"r=cnoncex,s=c2FsdA==,i=16")
    with pytest.raises(AuthError) as info:
        client.verify_server_final(b"e=invalid-proof")
    assert info.value.detail is not None and "invalid-proof" in info.value.detail


@pytest.mark.parametrize(
    ("server_final", "error"),
    [
        (b"v=" + base64.b64encode(b"\x00" * 32), AuthError),
        (b"v=", AuthError),
        (b"v=AAAA,x=1", ProtocolError),
        (b"v=not base64", ProtocolError),
        (b"x=AAAA", ProtocolError),
        (b"\xff", ProtocolError),
    ],
)
def test_client_rejects_bad_server_final(server_final: bytes, error: type[Exception]) -> None:
    client = _client()
    client.handle_server_first(b"r=cnoncex,s=c2FsdA==,i=16")
    with pytest.raises(error):
        client.verify_server_final(server_final)
    assert not client.done


def test_client_steps_out_of_order() -> None:
    client = ScramClient("hunter2")
    with pytest.raises(ProtocolError):
        client.handle_server_first(b"r=x,s=c2FsdA==,i=16")
    with pytest.raises(ProtocolError):
        _client().verify_server_final(b"v=AAAA")


@pytest.mark.parametrize("nonce", ["", "a,b", "a b", "caf\u00e9"])
def test_injected_nonce_must_be_printable(nonce: str) -> None:
    with pytest.raises(ValueError):
        ScramClient("x", nonce=nonce)
    with pytest.raises(ValueError):
        ScramServer.from_keys(FAST_KEYS, nonce=nonce)


# ---------------------------------------------------------------------------------------------
# SASL wire payloads.
# ---------------------------------------------------------------------------------------------


def test_sasl_mechanisms_from_postgres() -> None:
    # The AuthenticationSASL body PostgreSQL 15 sent (after the int32 10).
    assert sasl_mechanisms(b"SCRAM-SHA-256\x00\x00") == ["SCRAM-SHA-256"]
    both = b"SCRAM-SHA-256-PLUS\x00SCRAM-SHA-256\x00\x00"
    assert sasl_mechanisms(both) == ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]
    assert encode_sasl_mechanisms(["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]) == both
    assert sasl_mechanisms(b"\x00") == []


@pytest.mark.parametrize(
    "payload", [b"", b"SCRAM-SHA-256", b"SCRAM-SHA-256\x00", b"A\x00\x00extra", b"\xff\x00\x00"]
)
def test_sasl_mechanisms_malformed(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        sasl_mechanisms(payload)


@pytest.mark.parametrize("names", [[""], ["A\x00B"], ["caf\u00e9"]])
def test_encode_sasl_mechanisms_rejects_bad_names(names: list[str]) -> None:
    with pytest.raises(ValueError):
        encode_sasl_mechanisms(names)


def test_sasl_initial_response_round_trip() -> None:
    body = encode_sasl_initial_response(SCRAM_SHA_256, b"n,,n=,r=abc")
    assert body == b"SCRAM-SHA-256\x00\x00\x00\x00\x0bn,,n=,r=abc"
    assert parse_sasl_initial_response(body) == (SCRAM_SHA_256, b"n,,n=,r=abc")
    absent = encode_sasl_initial_response(SCRAM_SHA_256, None)
    assert absent == b"SCRAM-SHA-256\x00\xff\xff\xff\xff"
    assert parse_sasl_initial_response(absent) == (SCRAM_SHA_256, b"")


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"SCRAM-SHA-256",
        b"SCRAM-SHA-256\x00",
        b"SCRAM-SHA-256\x00\x00\x00\x00",
        b"\x00\x00\x00\x00\x00",
        b"SCRAM-SHA-256\x00\x00\x00\x00\x05abc",
        b"SCRAM-SHA-256\x00\x00\x00\x00\x01abc",
        b"SCRAM-SHA-256\x00\xff\xff\xff\xffabc",
        b"SCRAM-SHA-256\x00\xff\xff\xff\xfe",
        b"\xff\x00\x00\x00\x00\x00",
    ],
)
def test_sasl_initial_response_malformed(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_sasl_initial_response(body)


# ---------------------------------------------------------------------------------------------
# Fuzzing: whatever arrives, only ProtocolError or AuthError escapes.
# ---------------------------------------------------------------------------------------------

FUZZ = settings(max_examples=300, deadline=None, database=None)
EXPECTED_ERRORS = (ProtocolError, AuthError)


@st.composite
def _mutated(draw: st.DrawFn, base: bytes) -> bytes:
    """A valid message with up to three byte flips, insertions or deletions."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "insert", "delete"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        byte = draw(st.integers(0, 255))
        if op == "insert":
            data.insert(pos, byte)
        elif data and op == "flip":
            data[pos] = byte
        elif data:
            del data[pos]
    return bytes(data)


def _fuzz_input(base: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=200), _mutated(base))


@FUZZ
@given(_fuzz_input(b"n,,n=,r=cnonce"))
def test_fuzz_handle_client_first(data: bytes) -> None:
    with contextlib.suppress(*EXPECTED_ERRORS):
        ScramServer.from_keys(FAST_KEYS, nonce="snonce").handle_client_first(data)


@FUZZ
@given(_fuzz_input(b"c=biws,r=cnoncesnonce,p=" + base64.b64encode(b"\x01" * 32)))
def test_fuzz_handle_client_final(data: bytes) -> None:
    with contextlib.suppress(*EXPECTED_ERRORS):
        _started().handle_client_final(data)


@FUZZ
@given(_fuzz_input(b"r=cnoncesnonce,s=c2FsdA==,i=1"))
def test_fuzz_handle_server_first(data: bytes) -> None:
    with contextlib.suppress(*EXPECTED_ERRORS):
        _client().handle_server_first(data)


@FUZZ
@given(_fuzz_input(b"v=" + base64.b64encode(b"\x01" * 32)))
def test_fuzz_verify_server_final(data: bytes) -> None:
    client = _client()
    client.handle_server_first(b"r=cnoncex,s=c2FsdA==,i=1")
    with contextlib.suppress(*EXPECTED_ERRORS):
        client.verify_server_final(data)


@FUZZ
@given(_fuzz_input(b"SCRAM-SHA-256\x00\x00\x00\x00\x03abc"))
def test_fuzz_sasl_payloads(data: bytes) -> None:
    for parse in (parse_sasl_initial_response, sasl_mechanisms):
        with contextlib.suppress(ProtocolError):
            parse(data)


# ---------------------------------------------------------------------------------------------
# Channel binding (tls-server-end-point), split key derivation, ClientKey recovery.
# ---------------------------------------------------------------------------------------------

CERT_HASH = hashlib.sha256(b"certificate").digest()


def _bound_exchange(
    server_binding: bytes | None, client_binding: bytes | None, mechanism: str
) -> ScramServer:
    client = ScramClient("hunter2", nonce="cnonce", channel_binding=client_binding)
    server = ScramServer.from_keys(FAST_KEYS, nonce="snonce", channel_binding=server_binding)
    first = server.handle_client_first(client.client_first_message(), mechanism=mechanism)
    client.verify_server_final(server.handle_client_final(client.handle_server_first(first)))
    return server


def test_plus_exchange_with_matching_binding() -> None:
    server = _bound_exchange(CERT_HASH, CERT_HASH, SCRAM_SHA_256_PLUS)
    assert server.done
    assert server.mechanisms == [SCRAM_SHA_256_PLUS, SCRAM_SHA_256]


def test_plus_client_first_names_the_binding_type() -> None:
    client = ScramClient("x", nonce="cnonce", channel_binding=CERT_HASH)
    assert client.mechanism == SCRAM_SHA_256_PLUS
    assert client.client_first_message() == b"p=tls-server-end-point,,n=,r=cnonce"


def test_binding_to_another_certificate_is_refused() -> None:
    # A client bound to a relaying attacker's certificate: its c= cannot match ours.
    with pytest.raises(AuthError, match="channel binding check failed"):
        _bound_exchange(CERT_HASH, hashlib.sha256(b"other").digest(), SCRAM_SHA_256_PLUS)


def test_y_flag_is_a_downgrade_when_binding_is_offered() -> None:
    server = ScramServer.from_keys(FAST_KEYS, channel_binding=CERT_HASH)
    with pytest.raises(ProtocolError, match="channel binding negotiation error"):
        server.handle_client_first(b"y,,n=,r=cnonce")


def test_plain_mechanism_without_binding_still_works_when_plus_is_offered() -> None:
    assert _bound_exchange(CERT_HASH, None, SCRAM_SHA_256).done  # asyncpg's case: flag n


@pytest.mark.parametrize(
    ("binding", "mechanism", "first", "error"),
    [
        (
            None,
            SCRAM_SHA_256_PLUS,
            b"p=tls-server-end-point,,n=,r=c",
            "invalid SASL authentication mechanism",
        ),
        (CERT_HASH, SCRAM_SHA_256_PLUS, b"n,,n=,r=c", "does not include channel binding data"),
        (CERT_HASH, SCRAM_SHA_256, b"p=tls-server-end-point,,n=,r=c", "channel binding"),
        (CERT_HASH, SCRAM_SHA_256_PLUS, b"p=tls-unique,,n=,r=c", "unsupported SCRAM channel-binding type"),
    ],
    ids=["plus-not-offered", "plus-without-data", "plain-with-data", "other-binding-type"],
)
def test_binding_negotiation_errors(binding: bytes | None, mechanism: str, first: bytes, error: str) -> None:
    server = ScramServer.from_keys(FAST_KEYS, channel_binding=binding)
    with pytest.raises((AuthError, ProtocolError)) as info:
        server.handle_client_first(first, mechanism=mechanism)
    assert error in f"{info.value.message} {info.value.detail}"


def test_client_key_recovered_from_the_proof_logs_in_elsewhere() -> None:
    """auth_query: the key a client proved with logs in to a second server with the same verifier."""
    proxy_side = _bound_exchange(None, None, SCRAM_SHA_256)
    upstream = ScramServer.from_keys(FAST_KEYS, nonce="upstream")
    proxy_client = ScramClient(nonce="proxy")
    first = upstream.handle_client_first(proxy_client.client_first_message())
    salt, iterations = proxy_client.read_server_first(first)
    assert (salt, iterations) == (FAST_KEYS.salt, FAST_KEYS.iterations)
    keys = ClientKeys(client_key=proxy_side.client_key, server_key=FAST_KEYS.server_key)
    proxy_client.verify_server_final(upstream.handle_client_final(proxy_client.client_final(keys)))
    assert proxy_client.done and upstream.done
    assert keys == client_keys("hunter2", b"fast-salt", 16)


def test_client_key_is_unavailable_before_the_proof() -> None:
    with pytest.raises(ValueError):
        _ = _started().client_key


def test_client_without_password_needs_derived_keys() -> None:
    client = ScramClient(nonce="cnonce")
    client.client_first_message()
    with pytest.raises(ValueError):
        client.handle_server_first(FAST_SERVER_FIRST)


def test_wrong_server_signature_with_split_derivation() -> None:
    client = ScramClient(nonce="cnonce")
    client.client_first_message()
    client.read_server_first(FAST_SERVER_FIRST)
    client.client_final(ClientKeys(client_key=b"\1" * 32, server_key=b"\2" * 32))
    with pytest.raises(AuthError, match="invalid SCRAM server signature"):
        client.verify_server_final(b"v=" + base64.b64encode(b"\0" * 32))


def test_iteration_cap_applies_to_derivation_not_to_stored_verifiers() -> None:
    with pytest.raises(ValueError):
        client_keys("pw", b"salt", MAX_ITERATIONS + 1)
    stored = format_scram_verifier(ScramKeys(b"salt", 50_000_000, b"\0" * 32, b"\1" * 32))
    assert parse_scram_verifier(stored).iterations == 50_000_000


def test_mock_keys_are_stable_per_user_and_secret() -> None:
    assert mock_keys(b"s", "ghost") == mock_keys(b"s", "ghost")
    assert mock_keys(b"s", "ghost").salt != mock_keys(b"s", "phantom").salt
    assert mock_keys(b"s", "ghost") != mock_keys(b"t", "ghost")


def _der(tag: int, body: bytes) -> bytes:
    length = bytes([len(body)]) if len(body) < 128 else b"\x82" + len(body).to_bytes(2, "big")
    return bytes([tag]) + length + body


def _certificate(algorithm_oid: str) -> bytes:
    tbs = _der(0x30, b"\x02\x01\x01" + b"\x00" * 200)  # long form length on purpose
    algorithm = _der(0x30, _der(0x06, bytes.fromhex(algorithm_oid)))
    return _der(0x30, tbs + algorithm + _der(0x03, b"\x00sig"))


@pytest.mark.parametrize(
    ("oid", "hash_name"),
    [
        ("2a8648ce3d040302", "sha256"),  # ecdsa-with-SHA256
        ("2a864886f70d010105", "sha256"),  # sha1WithRSAEncryption: upgraded to SHA-256
        ("2a864886f70d01010c", "sha384"),  # sha384WithRSAEncryption
        ("2a8648ce3d040304", "sha512"),  # ecdsa-with-SHA512
    ],
)
def test_certificate_hash_follows_the_signature_algorithm(oid: str, hash_name: str) -> None:
    certificate = _certificate(oid)
    assert certificate_hash(certificate) == hashlib.new(hash_name, certificate).digest()


def test_certificate_hash_refuses_algorithms_without_one() -> None:
    with pytest.raises(ValueError):
        certificate_hash(_certificate("2b6570"))  # Ed25519
    with pytest.raises(ValueError):
        certificate_hash(b"\x30\x05\x30")  # truncated
