"""One exception family. Every error knows the SQLSTATE and texts the client must see.

`proxy/net/session.py` is the only place that turns a `ProxyError` into an `ErrorResponse`;
code anywhere else raises and never writes error bytes itself.
"""

from __future__ import annotations


class ProxyError(Exception):
    """Base of every error the proxy reports to a client or an operator."""

    sqlstate: str = "XX000"
    severity: str = "ERROR"

    def __init__(
        self,
        message: str,
        *,
        sqlstate: str | None = None,
        severity: str | None = None,
        detail: str | None = None,
        hint: str | None = None,
        schema: str | None = None,
        table: str | None = None,
        column: str | None = None,
        position: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if sqlstate is not None:
            self.sqlstate = sqlstate
        if severity is not None:
            self.severity = severity
        self.detail = detail
        self.hint = hint
        self.schema = schema
        self.table = table
        self.column = column
        self.position = position


class ProtocolError(ProxyError):
    """Bytes that break the wire protocol: the connection cannot continue."""

    sqlstate = "08P01"
    severity = "FATAL"


class UpstreamError(ProxyError):
    """The upstream Postgres cannot be reached or refused the proxy."""

    sqlstate = "08006"
    severity = "FATAL"


class AuthError(ProxyError):
    """A client failed to authenticate to the proxy."""

    sqlstate = "28P01"
    severity = "FATAL"


class ConfigError(ProxyError):
    """Invalid configuration: the CLI prints one line and exits 2."""

    sqlstate = "F0000"


class GuardError(ProxyError):
    """A statement refused by the migration guard; the session stays usable."""

    sqlstate = "EX000"


class CatalogError(ProxyError):
    """The shadow catalog could not be read or written."""

    sqlstate = "XX000"
