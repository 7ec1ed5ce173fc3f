"""The connection to Postgres: where it is, how to reach it, and TLS per the URL's `sslmode`.

`UpstreamTarget` is parsed once from the upstream URL. `open_upstream()` returns a connected
transport whose protocol is ready to relay; the TLS negotiation (SSLRequest, then `start_tls`)
happens here so the session never sees it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import ssl
from dataclasses import dataclass
from typing import Final, Protocol

import psycopg.conninfo

from proxy import tlsutil
from proxy.errors import ProtocolError, UpstreamError
from proxy.protocol import messages, scram

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# libpq's `require_auth` methods that the proxy can answer (see `allowed_methods`).
AUTH_METHODS = frozenset({"password", "md5", "scram-sha-256", "none"})
# Once the server has accepted the TCP connection, its answers are its own login, and a postmaster
# forking hundreds of backends at once is slow to give them: `connect_timeout` bounds reaching the
# server, this bounds the login (Postgres's own `authentication_timeout` default).
LOGIN_TIMEOUT: Final = 60.0


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
    require_auth: frozenset[str] | None = None  # None: the proxy's default (`allowed_methods`)

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
            require_auth=_require_auth(str(params.get("require_auth") or "")),
            host=host,
            port=int(str(params.get("port") or 5432).split(",")[0]),
            user=user,
            password=str(params.get("password") or ""),
            database=str(params.get("dbname") or user),
            sslmode=sslmode,
            sslrootcert=str(params.get("sslrootcert") or ""),
            connect_timeout=float(params.get("connect_timeout") or connect_timeout),
        )

    def allowed_methods(self, *, tls: bool, secret: bool) -> frozenset[str]:
        """The authentication requests the proxy answers on this upstream link.

        By default: SCRAM always (the server must prove itself with its signature); a cleartext or
        MD5 password only over TLS, where no eavesdropper reads it or replays the hash; no
        authentication at all only when the proxy holds no secret for this role (a password in
        the URL, or a client's SCRAM key), since a server that lets the proxy in without asking
        proves nothing. The URL's `require_auth` (libpq's syntax: a list, or a list of `!method`)
        replaces this default, over TLS or not.
        """
        if self.require_auth is not None:
            return self.require_auth
        allowed = {"scram-sha-256"}
        if tls:
            allowed |= {"password", "md5"}
        if not secret:
            allowed.add("none")
        return frozenset(allowed)


def _require_auth(text: str) -> frozenset[str] | None:
    if not text:
        return None
    items = [item.strip() for item in text.split(",")]
    negated = {item[1:] for item in items if item.startswith("!")}
    if negated and len(negated) != len(items):
        raise UpstreamError("require_auth in the upstream URL mixes negated and plain methods")
    names = negated or set(items)
    unknown = names - AUTH_METHODS
    if unknown:
        method = sorted(unknown)[0]
        raise UpstreamError(f"require_auth in the upstream URL names an unsupported method: {method}")
    return frozenset(AUTH_METHODS - names if negated else names)


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
    """The client-side TLS context libpq would build for this sslmode (TLS 1.2 at least)."""
    verify = target.sslmode in ("verify-ca", "verify-full") or (
        target.sslmode == "require" and bool(target.sslrootcert)
    )
    return tlsutil.client_context(
        cafile=target.sslrootcert or None, verify=verify, check_hostname=target.sslmode == "verify-full"
    )


# Built once per target: `create_default_context` loads the system trust store, tens of ms per
# connection otherwise. Keyed on the CA file's identity too, so a replaced sslrootcert is read again.
_TLS_CONTEXTS: dict[tuple[UpstreamTarget, tuple[int, ...]], ssl.SSLContext] = {}


def cached_tls_context(target: UpstreamTarget) -> ssl.SSLContext:
    """`tls_context(target)`, reused while the target and its sslrootcert file are unchanged."""
    key = (target, _file_identity(target.sslrootcert))
    context = _TLS_CONTEXTS.get(key)
    if context is None:
        context = tls_context(target)
        _TLS_CONTEXTS.clear()  # one upstream per process: drop contexts of replaced files
        _TLS_CONTEXTS[key] = context
    return context


def _file_identity(path: str) -> tuple[int, ...]:
    try:
        st = os.stat(path) if path else None
    except OSError:
        return (-1,)  # missing: tls_context raises, and nothing is cached
    return (st.st_ino, st.st_size, st.st_mtime_ns) if st is not None else ()


def _server_hostname(host: str) -> str:
    """The name verify-full checks: a DNS name (also sent as SNI) or an IP address, which the
    ssl module matches against the certificate's IP SANs and never sends as SNI."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def peer_certificate_hash(transport: asyncio.BaseTransport) -> bytes | None:
    """tls-server-end-point binding data of the upstream's certificate, None without TLS."""
    ssl_object = transport.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        return None
    try:
        return scram.certificate_hash(der)
    except ValueError:
        return None  # no hash for this signature algorithm: SCRAM without binding


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
    try:
        answer = await asyncio.wait_for(answer_future, LOGIN_TIMEOUT)
    except TimeoutError:
        raise UpstreamError(f'upstream server at "{target.address}" did not answer the SSL request') from None
    if answer == b"S":
        loop = asyncio.get_running_loop()
        try:
            tls = await loop.start_tls(
                transport,
                protocol,
                cached_tls_context(target),
                server_hostname=_server_hostname(target.host),
                ssl_handshake_timeout=LOGIN_TIMEOUT,
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
