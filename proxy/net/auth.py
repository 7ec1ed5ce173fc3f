"""Password mode: the proxy authenticates clients itself, then logs in upstream on its own.

Both halves are coroutines over `FrameChannel`s, the only shape the start-up phase has.
Passthrough mode needs none of this: the upstream's own exchange crosses the proxy untouched.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Mapping

from proxy.errors import AuthError, ProtocolError, UpstreamError
from proxy.net.channel import FrameChannel
from proxy.protocol import md5, messages, scram
from proxy.protocol.codes import AuthRequest, Backend, Frontend
from proxy.protocol.framer import Frame

Send = Callable[[bytes], None]
SCRAM = "SCRAM-SHA-256"

# Startup parameters that describe the login itself; the rest (options, application_name,
# client_encoding, replication, ...) are the client's to choose and are forwarded upstream.
_LOGIN_PARAMETERS = frozenset({"user", "database"})


def _failed(user: str) -> AuthError:
    return AuthError(f'password authentication failed for user "{user}"')


async def authenticate_client(
    channel: FrameChannel,
    send: Send,
    *,
    user: str,
    method: str,
    keys: scram.ScramKeys,
    password: str,
    tls: bool,
) -> None:
    """Run the client's login against the proxy password; raise `AuthError` when it fails."""
    if method == "password" and tls:
        send(messages.authentication(AuthRequest.CLEARTEXT_PASSWORD))
        frame = await channel.expect(Frontend.PASSWORD)
        given = bytes(frame.body).rstrip(b"\0")
        if not hmac.compare_digest(given, password.encode()):
            raise _failed(user)
    elif method == "md5":
        salt = secrets.token_bytes(4)
        send(messages.authentication(AuthRequest.MD5_PASSWORD, salt))
        frame = await channel.expect(Frontend.PASSWORD)
        if not md5.verify_md5_response(user, password, salt, bytes(frame.body)):
            raise _failed(user)
    else:
        await _scram_server(channel, send, user, keys)


async def _scram_server(channel: FrameChannel, send: Send, user: str, keys: scram.ScramKeys) -> None:
    send(messages.authentication(AuthRequest.SASL, scram.encode_sasl_mechanisms([SCRAM])))
    frame = await channel.expect(Frontend.PASSWORD)
    mechanism, first = scram.parse_sasl_initial_response(bytes(frame.body))
    if mechanism != SCRAM:
        raise ProtocolError("client selected an invalid SASL authentication mechanism", sqlstate="28000")
    server = scram.ScramServer.from_keys(keys)
    send(messages.authentication(AuthRequest.SASL_CONTINUE, server.handle_client_first(first)))
    frame = await channel.expect(Frontend.PASSWORD)
    try:
        final = server.handle_client_final(bytes(frame.body))
    except AuthError:
        raise _failed(user) from None
    send(messages.authentication(AuthRequest.SASL_FINAL, final))


def upstream_parameters(
    client: Mapping[str, str], *, user: str, database: str, application_name: str
) -> dict[str, str]:
    """The startup parameters the proxy sends upstream in password mode."""
    params = {"user": user, "database": database or client.get("database") or client.get("user", "")}
    params.update((k, v) for k, v in client.items() if k not in _LOGIN_PARAMETERS)
    if application_name:
        params["application_name"] = application_name
    return params


async def login_upstream(channel: FrameChannel, send: Send, *, user: str, password: str) -> list[Frame]:
    """Answer the upstream's authentication requests with the URL's credentials.

    Returns the frames that came before `AuthenticationOk` and must reach the client
    (`NegotiateProtocolVersion`). Raises `UpstreamError` with the upstream's own error.
    """
    early: list[Frame] = []
    client: scram.ScramClient | None = None
    while True:
        frame = await channel.recv()
        if frame.type == Backend.ERROR_RESPONSE:
            raise upstream_error(frame)
        if frame.type == Backend.NEGOTIATE_PROTOCOL_VERSION:
            early.append(frame)
            continue
        if frame.type != Backend.AUTHENTICATION:
            raise ProtocolError(f"unexpected message {chr(frame.type)!r} from upstream during login")
        auth = messages.decode_authentication(frame.body)
        if auth.request == AuthRequest.OK:
            return early
        client = _answer(auth, send, user, password, client)


def _answer(
    auth: messages.Authentication, send: Send, user: str, password: str, client: scram.ScramClient | None
) -> scram.ScramClient | None:
    if auth.request == AuthRequest.CLEARTEXT_PASSWORD:
        send(messages.password_message(messages.cstring(password)))
    elif auth.request == AuthRequest.MD5_PASSWORD:
        send(messages.password_message(md5.md5_response(user, password, auth.data[:4]) + b"\0"))
    elif auth.request == AuthRequest.SASL:
        if SCRAM not in scram.sasl_mechanisms(auth.data):
            raise UpstreamError("upstream offers no SASL mechanism the proxy supports")
        client = scram.ScramClient(password)
        body = scram.encode_sasl_initial_response(SCRAM, client.client_first_message())
        send(messages.message(Frontend.PASSWORD, body))
    elif auth.request == AuthRequest.SASL_CONTINUE and client is not None:
        send(messages.password_message(client.handle_server_first(auth.data)))
    elif auth.request == AuthRequest.SASL_FINAL and client is not None:
        client.verify_server_final(auth.data)
    else:
        raise UpstreamError(f"upstream asked for an authentication method the proxy lacks ({auth.request})")
    return client


def upstream_error(frame: Frame) -> UpstreamError:
    """The upstream's ErrorResponse, re-raised with its own SQLSTATE and texts."""
    fields = messages.decode_error_fields(frame.body)
    return UpstreamError(
        fields.get("M", "upstream refused the connection"),
        sqlstate=fields.get("C", "08006"),
        severity=fields.get("S", "FATAL"),
        detail=fields.get("D"),
        hint=fields.get("H"),
    )
