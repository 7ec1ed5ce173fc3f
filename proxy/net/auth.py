"""The proxy's own logins: clients to the proxy, and the proxy to the upstream.

- `password` mode: clients prove the proxy password; the proxy logs in upstream with the URL's.
- `auth_query` mode: clients prove their own Postgres password against the role's SCRAM verifier
  (read through a SECURITY DEFINER function, `VerifierLookup`); the proxy recovers the client's
  ClientKey from its proof and logs in upstream as the same role with it. No password is ever
  known to the proxy, and each hop has its own SCRAM exchange, so each may use channel binding.

Both halves are coroutines over `FrameChannel`s, the only shape the start-up phase has.
Passthrough mode needs none of this: the upstream's own exchange crosses the proxy untouched.

The upstream must prove itself (`login_upstream`): AuthenticationOk is accepted only after a SCRAM
server signature checked against the keys the proxy holds, or after an exchange the link's policy
allows (`UpstreamTarget.allowed_methods`).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import psycopg

from proxy.errors import AuthError, ProtocolError, UpstreamError
from proxy.net.channel import FrameChannel
from proxy.protocol import md5, messages, scram
from proxy.protocol.codes import AuthRequest, Backend, Frontend
from proxy.protocol.framer import Frame

logger = logging.getLogger(__name__)

Send = Callable[[bytes], None]
Derive = Callable[[bytes, int], Awaitable[scram.ClientKeys]]
SCRAM = scram.SCRAM_SHA_256

# Startup parameters that describe the login itself; the rest (options, application_name,
# client_encoding, replication, ...) are the client's to choose and are forwarded upstream.
_LOGIN_PARAMETERS = frozenset({"user", "database"})


def failed(user: str) -> AuthError:
    """Postgres's own answer to a wrong password, for known and unknown roles alike."""
    return AuthError(f'password authentication failed for user "{user}"')


# -- clients to the proxy ------------------------------------------------------------------------


async def authenticate_client(
    channel: FrameChannel,
    send: Send,
    *,
    user: str,
    method: str,
    keys: scram.ScramKeys,
    password: str,
    tls: bool,
    channel_binding: bytes | None = None,
) -> None:
    """Run the client's login against the proxy password; raise `AuthError` when it fails."""
    if method == "password" and tls:
        send(messages.authentication(AuthRequest.CLEARTEXT_PASSWORD))
        frame = await channel.expect(Frontend.PASSWORD)
        given = bytes(frame.body).rstrip(b"\0")
        if not hmac.compare_digest(given, password.encode()):
            raise failed(user)
    elif method == "md5":
        salt = secrets.token_bytes(4)
        send(messages.authentication(AuthRequest.MD5_PASSWORD, salt))
        frame = await channel.expect(Frontend.PASSWORD)
        if not md5.verify_md5_response(user, password, salt, bytes(frame.body)):
            raise failed(user)
    else:
        await scram_server(
            channel, send, user, scram.ScramServer.from_keys(keys, channel_binding=channel_binding)
        )


async def scram_server(channel: FrameChannel, send: Send, user: str, server: scram.ScramServer) -> bytes:
    """One SCRAM exchange as the server; returns the ClientKey recovered from the client's proof."""
    send(messages.authentication(AuthRequest.SASL, scram.encode_sasl_mechanisms(server.mechanisms)))
    frame = await channel.expect(Frontend.PASSWORD)
    mechanism, first = scram.parse_sasl_initial_response(bytes(frame.body))
    if mechanism not in server.mechanisms:
        raise ProtocolError("client selected an invalid SASL authentication mechanism", sqlstate="28000")
    send(
        messages.authentication(
            AuthRequest.SASL_CONTINUE, server.handle_client_first(first, mechanism=mechanism)
        )
    )
    frame = await channel.expect(Frontend.PASSWORD)
    try:
        final = server.handle_client_final(bytes(frame.body))
    except AuthError:
        raise failed(user) from None
    send(messages.authentication(AuthRequest.SASL_FINAL, final))
    return server.client_key


# -- auth_query: the role's verifier ------------------------------------------------------------


class VerifierLookup:
    """Reads a role's SCRAM verifier through `<schema>.auth_verifier(name)`, on one connection.

    The function is SECURITY DEFINER, owned by a superuser (only they read pg_authid); the proxy's
    role may only execute it. The connection is the proxy's own: empty search_path, the URL's
    credentials, one query at a time (a lookup takes well under a millisecond).
    """

    def __init__(self, conninfo: str, schema: str, timeout: float) -> None:
        self._conninfo = conninfo
        self._query = f"SELECT {schema}.auth_verifier(%s)".encode()
        self._function = f"{schema}.auth_verifier(text)"
        self._timeout = timeout
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._lock = asyncio.Lock()

    async def keys(self, user: str) -> scram.ScramKeys | None:
        """The role's SCRAM keys; None when it does not exist or has no SCRAM verifier."""
        async with self._lock:
            try:
                conn = await self._connection()
                cursor = await conn.execute(self._query, (user,))
                row = await cursor.fetchone()
            except psycopg.Error as exc:
                await self.close()
                raise self._lookup_error(exc) from None
        text = row[0] if row else None
        if not isinstance(text, str):
            return None
        try:
            return scram.parse_scram_verifier(text)
        except ValueError:
            return None  # an MD5 hash, or no password: SCRAM cannot succeed, as on Postgres

    async def _connection(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        if self._conn is None or self._conn.closed:
            conn = await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, connect_timeout=max(1, int(self._timeout))
            )
            # DESIGN.md, security rules: the proxy's own connections use an empty search_path.
            await conn.execute(b"SELECT pg_catalog.set_config('search_path', '', false)")
            self._conn = conn
        return self._conn

    def _lookup_error(self, exc: psycopg.Error) -> UpstreamError:
        if isinstance(exc, psycopg.errors.UndefinedFunction | psycopg.errors.InvalidSchemaName):
            logger.error("auth_query: %s is missing; see the README (auth_query mode)", self._function)
        elif isinstance(exc, psycopg.errors.InsufficientPrivilege):
            logger.error("auth_query: the proxy's role may not execute %s", self._function)
        else:
            logger.error("auth_query: verifier lookup failed: %s", str(exc).strip())
        return UpstreamError("authentication lookup failed", sqlstate="08006")

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()


def recovered_keys(keys: scram.ScramKeys, client_key: bytes) -> Derive:
    """Upstream keys in auth_query mode: the client's ClientKey and the verifier's ServerKey.

    They are only good for the salt and count of the verifier the client proved itself against;
    an upstream asking with others has another verifier (the password changed meanwhile).
    """

    async def derive(salt: bytes, iterations: int) -> scram.ClientKeys:
        if salt != keys.salt or iterations != keys.iterations:
            raise AuthError("the role's password changed during login")
        return scram.ClientKeys(client_key=client_key, server_key=keys.server_key)

    return derive


# -- the proxy to the upstream ------------------------------------------------------------------


def upstream_parameters(
    client: Mapping[str, str], *, user: str, database: str, application_name: str
) -> dict[str, str]:
    """The startup parameters the proxy sends upstream in password mode."""
    params = {"user": user, "database": database or client.get("database") or client.get("user", "")}
    params.update((k, v) for k, v in client.items() if k not in _LOGIN_PARAMETERS)
    if application_name:
        params["application_name"] = application_name
    return params


@dataclass
class UpstreamLogin:
    """What the proxy answers the upstream's authentication requests with.

    `password` serves cleartext and MD5 requests (password mode); `derive` gives SCRAM keys for a
    salt and count; `allowed` is the link's policy (`UpstreamTarget.allowed_methods`);
    `channel_binding` is the upstream certificate's hash on a TLS link.
    """

    user: str
    derive: Derive
    allowed: frozenset[str]
    password: str | None = None
    channel_binding: bytes | None = None
    _scram: scram.ScramClient | None = field(default=None, repr=False)
    _answered: str = "none"

    async def answer(self, auth: messages.Authentication, send: Send) -> None:
        handler = _ANSWERS.get(auth.request)
        if handler is None:
            raise UpstreamError(
                f"upstream asked for an authentication method the proxy lacks ({auth.request})"
            )
        await handler(self, auth.data, send)

    def check_ok(self) -> None:
        """AuthenticationOk: accepted only when the upstream proved itself, or needed not."""
        if self._scram is not None and not self._scram.done:
            raise UpstreamError(
                "upstream sent AuthenticationOk without a valid SCRAM server signature: "
                "it did not prove that it knows the password"
            )
        self._permit(self._answered, "AuthenticationOk without asking for a password")

    def _permit(self, method: str, what: str) -> None:
        if method not in self.allowed:
            raise UpstreamError(
                f"upstream asked for {what} on this link; refused "
                f"(the upstream URL's require_auth can allow {method})",
                sqlstate="28000",
            )
        self._answered = method

    async def _cleartext(self, data: bytes, send: Send) -> None:
        self._permit("password", "a cleartext password")
        send(messages.password_message(messages.cstring(self._secret())))

    async def _md5(self, data: bytes, send: Send) -> None:
        self._permit("md5", "an MD5 password")
        send(messages.password_message(md5.md5_response(self.user, self._secret(), data[:4]) + b"\0"))

    def _secret(self) -> str:
        if self.password is None:
            raise UpstreamError(
                "upstream asked for a password, but in auth_query mode the proxy has only SCRAM keys"
            )
        return self.password

    async def _sasl(self, data: bytes, send: Send) -> None:
        self._permit("scram-sha-256", "SCRAM-SHA-256")
        offered = scram.sasl_mechanisms(data)
        if SCRAM not in offered:
            raise UpstreamError("upstream offers no SASL mechanism the proxy supports")
        binding = self.channel_binding if scram.SCRAM_SHA_256_PLUS in offered else None
        self._scram = scram.ScramClient(channel_binding=binding)
        logger.debug("upstream login as %s with %s", self.user, self._scram.mechanism)
        body = scram.encode_sasl_initial_response(self._scram.mechanism, self._scram.client_first_message())
        send(messages.message(Frontend.PASSWORD, body))

    async def _sasl_continue(self, data: bytes, send: Send) -> None:
        client = self._client()
        salt, iterations = client.read_server_first(data)
        keys = await self.derive(salt, iterations)
        send(messages.password_message(client.client_final(keys)))

    async def _sasl_final(self, data: bytes, send: Send) -> None:
        try:
            self._client().verify_server_final(data)
        except AuthError as exc:
            raise UpstreamError(f"upstream failed to prove itself: {exc.message}", sqlstate="28000") from None

    def _client(self) -> scram.ScramClient:
        if self._scram is None:
            raise ProtocolError("upstream continued a SASL exchange that never started")
        return self._scram


_Answer = Callable[[UpstreamLogin, bytes, Send], Awaitable[None]]
_ANSWERS: dict[int, _Answer] = {
    AuthRequest.CLEARTEXT_PASSWORD: UpstreamLogin._cleartext,
    AuthRequest.MD5_PASSWORD: UpstreamLogin._md5,
    AuthRequest.SASL: UpstreamLogin._sasl,
    AuthRequest.SASL_CONTINUE: UpstreamLogin._sasl_continue,
    AuthRequest.SASL_FINAL: UpstreamLogin._sasl_final,
}


async def login_upstream(channel: FrameChannel, send: Send, login: UpstreamLogin) -> list[Frame]:
    """Answer the upstream's authentication requests until it proves itself and lets the proxy in.

    Returns the frames that came before `AuthenticationOk` and must reach the client
    (`NegotiateProtocolVersion`). Raises `UpstreamError` with the upstream's own error.
    """
    early: list[Frame] = []
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
            login.check_ok()
            return early
        await login.answer(auth, send)


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
