"""The connection to Postgres: where it is, how to reach it, and TLS per the URL's `sslmode`.

`UpstreamTarget` is parsed once from the upstream URL. `open_upstream()` returns a connected
transport whose protocol is ready to relay; the TLS negotiation (SSLRequest, then `start_tls`)
happens here so the session never sees it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from dataclasses import dataclass
from typing import Protocol

import psycopg.conninfo

from proxy.errors import ProtocolError, UpstreamError
from proxy.protocol import messages

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


@dataclass(frozen=True, slots=True)
class UpstreamTarget:
    host: str
    port: int
    user: str
    password: str
    database: str
    sslmode: str
    sslrootcert: str
    connect_timeout: float

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def from_url(cls, url: str, connect_timeout: float = 5.0) -> UpstreamTarget:
        try:
            params = psycopg.conninfo.conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            raise UpstreamError(f"invalid upstream URL: {exc}") from None
        host = str(params.get("host") or "127.0.0.1").split(",")[0]
        if host.startswith("/"):
            raise UpstreamError("the upstream must be reached over TCP, not a Unix socket")
        sslmode = str(params.get("sslmode") or "prefer")
        if sslmode not in SSL_MODES:
            raise UpstreamError(f"invalid sslmode {sslmode!r} in the upstream URL")
        user = str(params.get("user") or "postgres")
        return cls(
            host=host,
            port=int(str(params.get("port") or 5432).split(",")[0]),
            user=user,
            password=str(params.get("password") or ""),
            database=str(params.get("dbname") or user),
            sslmode=sslmode,
            sslrootcert=str(params.get("sslrootcert") or ""),
            connect_timeout=float(params.get("connect_timeout") or connect_timeout),
        )


class UpstreamPeer(Protocol):
    """The session side of the upstream link: where its bytes and events go."""

    def upstream_data(self, data: bytes) -> None: ...

    def upstream_lost(self, exc: Exception | None) -> None: ...

    def upstream_pause_writing(self) -> None: ...

    def upstream_resume_writing(self) -> None: ...


class UpstreamProtocol(asyncio.Protocol):
    """Delivers upstream bytes to the session, except the one byte that answers SSLRequest."""

    __slots__ = ("_answer", "_peer")

    def __init__(self, peer: UpstreamPeer) -> None:
        self._peer = peer
        self._answer: asyncio.Future[bytes] | None = None

    def expect_ssl_answer(self) -> asyncio.Future[bytes]:
        self._answer = asyncio.get_running_loop().create_future()
        return self._answer

    def data_received(self, data: bytes) -> None:
        answer = self._answer
        if answer is None:
            self._peer.upstream_data(data)
            return
        self._answer = None
        if len(data) > 1:
            # Bytes after the answer arrived in plaintext before the TLS handshake: refuse
            # them (the class of bug behind CVE-2021-23222), never hand them on.
            answer.set_exception(
                ProtocolError("received unencrypted data after SSL response", sqlstate="08P01")
            )
        elif not answer.done():
            answer.set_result(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(UpstreamError("upstream closed the connection during SSL negotiation"))
        self._peer.upstream_lost(exc)

    def pause_writing(self) -> None:
        self._peer.upstream_pause_writing()

    def resume_writing(self) -> None:
        self._peer.upstream_resume_writing()


def tls_context(target: UpstreamTarget) -> ssl.SSLContext:
    """The client-side TLS context libpq would build for this sslmode."""
    verify = target.sslmode in ("verify-ca", "verify-full") or (
        target.sslmode == "require" and target.sslrootcert
    )
    context = ssl.create_default_context(cafile=target.sslrootcert or None)
    context.check_hostname = target.sslmode == "verify-full"
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _server_hostname(host: str) -> str | None:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host  # SNI, and the name verify-full checks
    return None


async def open_upstream(target: UpstreamTarget, peer: UpstreamPeer) -> asyncio.Transport:
    """Connect, negotiate TLS as the sslmode asks, and return the transport to relay on."""
    loop = asyncio.get_running_loop()
    try:
        transport, protocol = await asyncio.wait_for(
            loop.create_connection(lambda: UpstreamProtocol(peer), target.host, target.port),
            target.connect_timeout,
        )
    except (OSError, TimeoutError) as exc:
        reason = "timeout expired" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise UpstreamError(f'could not connect to upstream server at "{target.address}": {reason}') from None
    if target.sslmode in ("disable", "allow"):
        return transport
    try:
        return await _negotiate_tls(target, transport, protocol)
    except BaseException:
        transport.abort()
        raise


async def _negotiate_tls(
    target: UpstreamTarget, transport: asyncio.Transport, protocol: UpstreamProtocol
) -> asyncio.Transport:
    answer_future = protocol.expect_ssl_answer()
    transport.write(messages.encode_ssl_request())
    answer = await asyncio.wait_for(answer_future, target.connect_timeout)
    if answer == b"S":
        loop = asyncio.get_running_loop()
        try:
            tls = await loop.start_tls(
                transport,
                protocol,
                tls_context(target),
                server_hostname=_server_hostname(target.host),
                ssl_handshake_timeout=target.connect_timeout,
            )
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            raise UpstreamError(
                f'SSL connection to upstream server at "{target.address}" failed: {exc}'
            ) from None
        if tls is None:
            raise UpstreamError("upstream closed the connection during the TLS handshake")
        return tls
    if answer == b"N":
        if target.sslmode in ("require", "verify-ca", "verify-full"):
            raise UpstreamError(
                f'upstream server at "{target.address}" does not support SSL, but SSL was required'
            )
        return transport
    raise ProtocolError(f"received invalid response to SSL negotiation: {answer!r}")
