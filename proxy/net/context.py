"""What every session of one proxy process shares: config, upstream target, TLS, counters."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import ssl
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Final, Protocol

from proxy import tlsutil
from proxy.catalog.cache import CatalogCache
from proxy.config import Config
from proxy.ddl.guard import SharedFlags
from proxy.ddl.versions import VersionRecognizer
from proxy.metrics import Stats
from proxy.net.auth import VerifierLookup
from proxy.net.upstream import UpstreamTarget
from proxy.protocol import scram


class SessionLike(Protocol):
    """What the context needs of a session: the server's drain and the state gauge."""

    @property
    def state_name(self) -> str: ...

    def drain(self) -> None: ...

    def terminate(self) -> None: ...


@dataclass
class RateLimiter:
    """Token bucket: cancel requests are cheap to send and each opens an upstream socket."""

    rate: float
    burst: float
    _tokens: float = 0.0
    _stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self._tokens = self.burst

    def allow(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class KeyCache:
    """SCRAM client keys derived from a password, off the event loop, remembered (bounded LRU).

    PBKDF2 at 4096 rounds costs about 3 ms of CPU; on the loop, every session would stall for
    each login. The derivation runs in the default executor (hashlib releases the GIL), and a
    login that finds the same password, salt and count in flight waits for it instead of
    starting another: after the first, a password-mode login costs no PBKDF2 at all.
    """

    def __init__(self, size: int = 64) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[str, bytes, int], asyncio.Future[scram.ClientKeys]] = OrderedDict()
        self.derivations = 0

    async def derive(self, password: str, salt: bytes, iterations: int) -> scram.ClientKeys:
        key = (password, salt, iterations)
        future = self._entries.get(key)
        if future is None:
            loop = asyncio.get_running_loop()
            self.derivations += 1
            future = asyncio.ensure_future(loop.run_in_executor(None, scram.client_keys, *key))
            self._entries[key] = future
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        try:
            return await asyncio.shield(future)
        except Exception:
            if future.done():  # a failed derivation is not remembered
                self._entries.pop(key, None)
            raise


@dataclass
class _Failures:
    count: int
    last: float


class LoginThrottle:
    """Failed logins per client address, each answered later than the one before.

    The delay doubles with each failure from the same address (`base`, 2 x `base`, ... up to
    `cap`) and is forgotten after `window` seconds without a failure, or on a success. Only the
    failing session waits (asyncio.sleep): other clients are not slowed. The table is bounded;
    the oldest addresses go first.
    """

    MAX_ADDRESSES: Final = 10_000

    def __init__(self, base: float, cap: float, window: float = 60.0) -> None:
        self.base, self.cap, self.window = base, cap, window
        self._failures: OrderedDict[str, _Failures] = OrderedDict()

    def failed(self, address: str) -> float:
        """Record a failure; return the seconds to wait before answering it."""
        now = time.monotonic()
        entry = self._failures.pop(address, None)
        if entry is None or now - entry.last > self.window:
            entry = _Failures(0, now)
        entry.count += 1
        entry.last = now
        self._failures[address] = entry
        while len(self._failures) > self.MAX_ADDRESSES:
            self._failures.popitem(last=False)
        return min(self.cap, self.base * float(1 << min(entry.count - 1, 30)))

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)


def _channel_binding(cert_file: str) -> bytes | None:
    """tls-server-end-point data of the proxy's own certificate (None: offer no PLUS)."""
    if not cert_file:
        return None
    try:
        return scram.certificate_hash(tlsutil.certificate_der(cert_file))
    except ValueError:
        return None


@dataclass
class ProxyContext:
    config: Config
    target: UpstreamTarget
    tls: ssl.SSLContext | None
    stats: Stats = field(default_factory=Stats)
    sessions: set[SessionLike] = field(default_factory=set)
    cancel_limiter: RateLimiter = field(default_factory=lambda: RateLimiter(rate=100, burst=200))
    proxy_keys: scram.ScramKeys | None = None
    catalog: CatalogCache | None = None
    managed_databases: frozenset[str] = frozenset()
    versions: VersionRecognizer = field(default_factory=VersionRecognizer)
    flags: dict[str, SharedFlags] = field(default_factory=dict)
    instance: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    keys: KeyCache = field(default_factory=KeyCache)
    # Offered as SCRAM-SHA-256-PLUS to clients on the proxy's TLS (auth_query and password modes).
    channel_binding: bytes | None = None
    # Seeds the fake verifiers of unknown roles (auth_query mode): fixed for this process.
    mock_secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    throttle: LoginThrottle = field(default_factory=lambda: LoginThrottle(0.0, 0.0))
    verifiers: VerifierLookup | None = None  # auth_query mode
    _next_id: int = 0

    def __post_init__(self) -> None:
        auth = self.config.auth
        if auth.mode == "password":
            # Derived once: PBKDF2 with 4096 rounds costs milliseconds per login otherwise.
            self.proxy_keys = scram.scram_keys(auth.password, secrets.token_bytes(16))
        if auth.mode == "auth_query":
            # The role that installs the catalog (and so the lookup function) runs the lookups.
            conninfo = self.config.catalog.admin_url or self.config.upstream.url
            self.verifiers = VerifierLookup(conninfo, self.config.catalog.schema, self.target.connect_timeout)
        if self.config.tls.client_mode == "disable":
            self.tls = None  # answer every SSLRequest with N
        if self.tls is not None:
            self.channel_binding = _channel_binding(self.config.tls.cert_file)
        self.throttle = LoginThrottle(auth.failure_delay_ms / 1000, auth.failure_delay_max_ms / 1000)
        self.stats.client_states = self.client_states

    async def close(self) -> None:
        """Close the connections the context itself holds (the verifier lookup's)."""
        if self.verifiers is not None:
            await self.verifiers.close()

    def shared_flags(self, database: str) -> SharedFlags:
        return self.flags.setdefault(database, SharedFlags())

    def next_session_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def client_states(self) -> Counter[str]:
        return Counter(session.state_name for session in list(self.sessions))


def server_tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    return tlsutil.server_context(cert_file, key_file)
