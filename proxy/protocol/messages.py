"""Encode and decode the messages the proxy itself reads or writes.

Everything else crosses the proxy as raw bytes. Decoders take a message *body* (the bytes after
the type byte and length word) and raise `ProtocolError` on anything malformed; encoders return
whole messages, header included, ready to write.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from struct import Struct
from typing import Final

from proxy.errors import ProtocolError, ProxyError
from proxy.protocol import codes
from proxy.protocol.codes import AuthRequest, Backend, Frontend

_INT16: Final = Struct("!h")
_INT32: Final = Struct("!i")
_UINT32: Final = Struct("!I")
_HEADER: Final = Struct("!BI")
_BUFFER = bytes | bytearray | memoryview


def message(code: int, body: bytes = b"") -> bytes:
    """A typed message: type byte, length word (which counts itself), body."""
    return _HEADER.pack(code, len(body) + 4) + body


def cstring(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    if b"\0" in data:
        raise ProtocolError("string contains a NUL byte")
    return data + b"\0"


class Reader:
    """Cursor over a message body; every read checks bounds and raises `ProtocolError`."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: _BUFFER) -> None:
        self._data = bytes(data)
        self._pos = 0

    def int16(self) -> int:
        return int(self._unpack(_INT16))

    def int32(self) -> int:
        return int(self._unpack(_INT32))

    def uint32(self) -> int:
        return int(self._unpack(_UINT32))

    def cstring(self) -> bytes:
        end = self._data.find(b"\0", self._pos)
        if end < 0:
            raise ProtocolError("unterminated string in message")
        text = self._data[self._pos : end]
        self._pos = end + 1
        return text

    def take(self, count: int) -> bytes:
        if count < 0 or self._pos + count > len(self._data):
            raise ProtocolError("message is shorter than its contents declare")
        chunk = self._data[self._pos : self._pos + count]
        self._pos += count
        return chunk

    def rest(self) -> bytes:
        chunk = self._data[self._pos :]
        self._pos = len(self._data)
        return chunk

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def _unpack(self, fmt: Struct) -> int:
        if self._pos + fmt.size > len(self._data):
            raise ProtocolError("message is shorter than its contents declare")
        (value,) = fmt.unpack_from(self._data, self._pos)
        self._pos += fmt.size
        return int(value)


# ---------------------------------------------------------------------------------------------
# Startup-phase packets (untyped)


@dataclass(frozen=True, slots=True)
class StartupMessage:
    version: int
    parameters: dict[str, str] = field(default_factory=dict)

    @property
    def user(self) -> str:
        return self.parameters.get("user", "")

    @property
    def database(self) -> str:
        return self.parameters.get("database") or self.user


@dataclass(frozen=True, slots=True)
class SSLRequest:
    pass


@dataclass(frozen=True, slots=True)
class GSSENCRequest:
    pass


@dataclass(frozen=True, slots=True)
class CancelRequest:
    pid: int
    key: bytes


StartupPacket = StartupMessage | SSLRequest | GSSENCRequest | CancelRequest


def decode_startup(body: _BUFFER) -> StartupPacket:
    """Decode a startup-phase packet body (after its length word)."""
    reader = Reader(body)
    code = reader.uint32()
    if code == codes.SSL_REQUEST_CODE:
        return SSLRequest()
    if code == codes.GSSENC_REQUEST_CODE:
        return GSSENCRequest()
    if code == codes.CANCEL_REQUEST_CODE:
        pid = reader.uint32()
        key = reader.rest()
        if not 4 <= len(key) <= 256:
            raise ProtocolError("invalid cancel key length")
        return CancelRequest(pid, key)
    if code >> 16 != 3:
        raise ProtocolError(
            f"unsupported frontend protocol {code >> 16}.{code & 0xFFFF}: server supports 3.0 to 3.2",
            sqlstate="0A000",
        )
    return StartupMessage(code, _decode_parameters(reader))


def _decode_parameters(reader: Reader) -> dict[str, str]:
    params: dict[str, str] = {}
    while True:
        name = reader.cstring()
        if not name:
            break
        params[_text(name)] = _text(reader.cstring())
    if reader.remaining:
        raise ProtocolError("invalid startup packet layout: expected terminator as last byte")
    return params


def encode_startup(version: int, parameters: Mapping[str, str]) -> bytes:
    body = _UINT32.pack(version)
    body += b"".join(cstring(k) + cstring(v) for k, v in parameters.items()) + b"\0"
    return _UINT32.pack(len(body) + 4) + body


def encode_ssl_request() -> bytes:
    return _UINT32.pack(8) + _UINT32.pack(codes.SSL_REQUEST_CODE)


# ---------------------------------------------------------------------------------------------
# Backend messages


def ready_for_query(status: int) -> bytes:
    return message(Backend.READY_FOR_QUERY, bytes((status,)))


def command_complete(tag: str) -> bytes:
    return message(Backend.COMMAND_COMPLETE, cstring(tag))


def authentication(request: AuthRequest, data: bytes = b"") -> bytes:
    return message(Backend.AUTHENTICATION, _INT32.pack(request) + data)


def parameter_status(name: str, value: str) -> bytes:
    return message(Backend.PARAMETER_STATUS, cstring(name) + cstring(value))


_ERROR_FIELDS: Final = (
    (codes.FIELD_DETAIL, "detail"),
    (codes.FIELD_HINT, "hint"),
    (codes.FIELD_SCHEMA, "schema"),
    (codes.FIELD_TABLE, "table"),
    (codes.FIELD_COLUMN, "column"),
)


def error_response(error: ProxyError, *, code: int = Backend.ERROR_RESPONSE) -> bytes:
    """An `ErrorResponse` (or `NoticeResponse`) carrying every field the error knows."""
    fields = [
        (codes.FIELD_SEVERITY, error.severity),
        (codes.FIELD_SEVERITY_NONLOCALIZED, error.severity),
        (codes.FIELD_SQLSTATE, error.sqlstate),
        (codes.FIELD_MESSAGE, error.message),
    ]
    fields += [(tag, value) for tag, attr in _ERROR_FIELDS if (value := getattr(error, attr))]
    if error.position is not None:
        fields.append((codes.FIELD_POSITION, str(error.position)))
    body = b"".join(bytes((tag,)) + cstring(value.replace("\0", "")) for tag, value in fields)
    return message(code, body + b"\0")


def decode_error_fields(body: _BUFFER) -> dict[str, str]:
    """Fields of an `ErrorResponse`/`NoticeResponse`, keyed by their one-letter codes."""
    reader = Reader(body)
    fields: dict[str, str] = {}
    while reader.remaining:
        tag = reader.take(1)
        if tag == b"\0":
            break
        fields[tag.decode("ascii", "replace")] = _text(reader.cstring())
    return fields


@dataclass(frozen=True, slots=True)
class Authentication:
    request: int
    data: bytes


def decode_authentication(body: _BUFFER) -> Authentication:
    reader = Reader(body)
    return Authentication(reader.int32(), reader.rest())


@dataclass(frozen=True, slots=True)
class BackendKeyData:
    pid: int
    key: bytes


def decode_backend_key_data(body: _BUFFER) -> BackendKeyData:
    reader = Reader(body)
    return BackendKeyData(reader.uint32(), reader.rest())


# ---------------------------------------------------------------------------------------------
# Frontend messages


def query(sql: str | bytes) -> bytes:
    return message(Frontend.QUERY, cstring(sql))


def password_message(data: bytes) -> bytes:
    return message(Frontend.PASSWORD, data)


def terminate() -> bytes:
    return message(Frontend.TERMINATE)


def query_sql(raw: bytes) -> bytes:
    """The SQL of a whole `Query` message, with one slice: the hot path's way to read it."""
    if len(raw) < 6 or raw[-1] != 0:
        raise ProtocolError("invalid Query message")
    return raw[5:-1]


def parse_names(raw: bytes) -> tuple[bytes, bytes]:
    """Statement name and SQL of a whole `Parse` message, without decoding its parameter types."""
    name_end = raw.find(b"\0", 5)
    sql_end = raw.find(b"\0", name_end + 1) if name_end >= 0 else -1
    if sql_end < 0:
        raise ProtocolError("invalid Parse message")
    return raw[5:name_end], raw[name_end + 1 : sql_end]


@dataclass(frozen=True, slots=True)
class Parse:
    name: bytes
    query: bytes
    param_types: tuple[int, ...]


def decode_parse(body: _BUFFER) -> Parse:
    reader = Reader(body)
    name = reader.cstring()
    sql = reader.cstring()
    count = reader.int16()
    return Parse(name, sql, tuple(reader.uint32() for _ in range(max(count, 0))))


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def encode_parse(name: bytes, sql: bytes, param_types: tuple[int, ...] = ()) -> bytes:
    body = name + b"\0" + sql + b"\0" + _INT16.pack(len(param_types))
    body += b"".join(_UINT32.pack(oid) for oid in param_types)
    return message(Frontend.PARSE, body)


def encode_bind(portal: bytes, statement: bytes) -> bytes:
    """A Bind with no parameters and default result formats."""
    return message(Frontend.BIND, portal + b"\0" + statement + b"\0" + b"\0\0" + b"\0\0" + b"\0\0")


@dataclass(frozen=True, slots=True)
class BindTarget:
    portal: bytes
    statement: bytes


def decode_bind_target(body: _BUFFER) -> BindTarget:
    """Only the names at the head of a Bind: its parameters stay undecoded."""
    reader = Reader(body)
    return BindTarget(reader.cstring(), reader.cstring())


def decode_data_row(body: _BUFFER) -> list[bytes | None]:
    reader = Reader(body)
    values: list[bytes | None] = []
    for _ in range(reader.int16()):
        length = reader.int32()
        values.append(None if length < 0 else reader.take(length))
    return values


def decode_command_tag(body: _BUFFER) -> str:
    return _text(Reader(body).cstring())


def encode_error_fields(fields: Mapping[str, str], *, code: int = Backend.ERROR_RESPONSE) -> bytes:
    body = b"".join(f.encode("ascii") + cstring(v.replace("\0", "")) for f, v in fields.items())
    return message(code, body + b"\0")
