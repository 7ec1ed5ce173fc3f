"""What every session of one proxy process shares: config, upstream target, TLS, counters."""

from __future__ import annotations

import os
import secrets
import socket
import ssl
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from proxy.catalog.cache import CatalogCache
from proxy.config import Config
from proxy.ddl.guard import SharedFlags
from proxy.ddl.versions import VersionRecognizer
from proxy.metrics import Stats
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
    _next_id: int = 0

    def __post_init__(self) -> None:
        if self.config.auth.mode == "password":
            # Derived once: PBKDF2 with 4096 rounds costs milliseconds per login otherwise.
            self.proxy_keys = scram.scram_keys(self.config.auth.password, secrets.token_bytes(16))
        self.stats.client_states = self.client_states

    def shared_flags(self, database: str) -> SharedFlags:
        return self.flags.setdefault(database, SharedFlags())

    def next_session_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def client_states(self) -> Counter[str]:
        return Counter(session.state_name for session in list(self.sessions))


def server_tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context
