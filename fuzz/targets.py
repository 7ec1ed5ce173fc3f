"""Fuzz targets: each takes one input (bytes) and raises only on a bug.

A bad input may end in `ProxyError` (the session turns it into an ErrorResponse and a close);
anything else escaping is a crash. Besides "no unexpected exception", each target checks
invariants the proxy relies on:

- `protocol`: the framer gives back every byte it was fed, in order, and frames a stream the
  same way however it is split into chunks (a refusal included); decoded messages re-encode to
  what was decoded.
- `ddl`: the prefilter never says "no parse needed" for text the classifier finds DDL or an
  ELECTRIC statement in (a false negative would let DDL past the guard).
- `versions`: the prefilter never hides a statement the recogniser reads a version write from.

Inputs are what the proxy receives: `protocol` takes a direction byte (bit 0: 0 client,
1 server; the other bits seed the chunking) then the byte stream; `ddl` the SQL bytes of a
Query or Parse; `versions` a client stream of typed messages (Query, Parse, Bind, ...).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass

from proxy.ddl import capture, electric, rewrite
from proxy.ddl.classify import Kind
from proxy.ddl.guard import SessionGuard
from proxy.ddl.prefilter import may_need_look, may_need_parse, may_write_version
from proxy.ddl.versions import VersionRecognizer, decode_bind
from proxy.errors import ProxyError
from proxy.protocol import messages, scram
from proxy.protocol.codes import MESSAGE_MAX_LENGTH, AuthRequest, Backend, Frontend
from proxy.protocol.framer import STARTUP, Frame, Framer, Item
from proxy.protocol.md5 import verify_md5_response

Target = Callable[[bytes], None]

_RECOGNIZER = VersionRecognizer()
_VERSION_TABLES = _RECOGNIZER.table_names
_SCRAM_KEYS = scram.scram_keys("secret", b"fixed-salt", 4096)
_META = {"application_name": "fuzz", "client_addr": "127.0.0.1:1", "proxy_instance": "fuzz"}
_SMALL_LIMIT = 1 << 16


# -- protocol: framer and codecs ---------------------------------------------------------------------


def _decode_startup(frame: Frame) -> None:
    packet = messages.decode_startup(frame.body)
    if isinstance(packet, messages.StartupMessage):
        params = packet.parameters
        again = messages.decode_startup(messages.encode_startup(packet.version, params)[4:])
        assert isinstance(again, messages.StartupMessage) and again.parameters == params, "startup round trip"


def _decode_password(frame: Frame) -> None:
    body = bytes(frame.body)
    verify_md5_response("user", "secret", b"salt", body)
    _mechanism, first = scram.parse_sasl_initial_response(body)
    server = scram.ScramServer.from_keys(_SCRAM_KEYS, nonce="fixednonce")
    server.handle_client_first(first)
    server.handle_client_final(first)


def _decode_query(frame: Frame) -> None:
    messages.query_sql(frame.raw)


def _decode_parse(frame: Frame) -> None:
    name, sql = messages.parse_names(frame.raw)
    parse = messages.decode_parse(frame.body)
    assert (parse.name, parse.query) == (name, sql), "Parse read two ways"


def _decode_bind(frame: Frame) -> None:
    target = messages.decode_bind_target(frame.body)
    bind = decode_bind(frame.body)
    assert (bind.portal, bind.statement) == (target.portal, target.statement), "Bind read two ways"


def _decode_authentication(frame: Frame) -> None:
    auth = messages.decode_authentication(frame.body)
    if auth.request == AuthRequest.SASL:
        offered = scram.sasl_mechanisms(auth.data)
        scram.encode_sasl_mechanisms(name for name in offered if name != "SCRAM-SHA-256-PLUS")


def _decode_error(frame: Frame) -> None:
    fields = messages.decode_error_fields(frame.body)
    messages.encode_error_fields({k: v for k, v in fields.items() if len(k) == 1 and k.isascii()})


_CLIENT_DECODERS: dict[int, Callable[[Frame], object]] = {
    STARTUP: _decode_startup,
    Frontend.PASSWORD: _decode_password,
    Frontend.QUERY: _decode_query,
    Frontend.PARSE: _decode_parse,
    Frontend.BIND: _decode_bind,
}
_SERVER_DECODERS: dict[int, Callable[[Frame], object]] = {
    Backend.AUTHENTICATION: _decode_authentication,
    Backend.BACKEND_KEY_DATA: lambda f: messages.decode_backend_key_data(f.body),
    Backend.ERROR_RESPONSE: _decode_error,
    Backend.NOTICE_RESPONSE: _decode_error,
    Backend.DATA_ROW: lambda f: messages.decode_data_row(f.body),
    Backend.COMMAND_COMPLETE: lambda f: messages.decode_command_tag(f.body),
}


@dataclass
class _Framed:
    items: list[Item]
    error: str | None
    pending: bytes


def _is_negotiation(frame: Frame) -> bool:
    """SSLRequest/GSSENCRequest: the session answers, then expects another startup packet."""
    return frame.type == STARTUP and len(frame.raw) == 8 and frame.raw[4:6] == b"\x04\xd2"


def _frame_stream(stream: bytes, chunks: list[int], *, client: bool, keep: bytes, limit: int) -> _Framed:
    framer = Framer(keep, keep_all=client, startup=client, max_length=limit)
    items: list[Item] = []
    pos = 0
    try:
        for size in chunks:
            out = framer.feed(stream[pos : pos + size])
            pos += size
            items += out
            if client and out and isinstance(out[-1], Frame) and _is_negotiation(out[-1]):
                if framer.pending:
                    return _Framed(items, "plaintext after negotiation", b"")
                framer.expect_startup()
    except ProxyError as exc:
        return _Framed(items, exc.message, b"")
    return _Framed(items, None, framer.take_pending())


def _chunks(length: int, rng: random.Random) -> list[int]:
    sizes: list[int] = []
    while sum(sizes) < length:
        sizes.append(rng.choice((1, 2, 3, 5, 8, 64, 4096, length)))
    return sizes


def _frames_only(framed: _Framed) -> list[bytes]:
    return [item.raw for item in framed.items if isinstance(item, Frame)]


def protocol(data: bytes) -> None:
    if not data:
        return
    head, stream = data[0], data[1:]
    client = not head & 1
    rng = random.Random(head)
    keep = bytes(rng.sample(sorted(_SERVER_DECODERS), rng.randint(0, len(_SERVER_DECODERS))))
    limit = _SMALL_LIMIT if head & 2 else MESSAGE_MAX_LENGTH
    whole = _frame_stream(stream, [len(stream)], client=client, keep=keep, limit=limit)
    split = _frame_stream(stream, _chunks(len(stream), rng), client=client, keep=keep, limit=limit)
    negotiation_split = client and any(
        isinstance(i, Frame) and _is_negotiation(i) for i in whole.items + split.items
    )
    if not negotiation_split:  # an SSLRequest's answer depends on what arrived with it
        assert (whole.error is None) == (split.error is None), "a refusal depends on the chunking"
        if whole.error is None:  # a refused chunk yields nothing, so only whole runs compare
            assert _frames_only(whole) == _frames_only(split), "frames depend on the chunking"
    for framed in (whole, split):
        if framed.error is None:
            joined = b"".join(bytes(i.raw) if isinstance(i, Frame) else bytes(i) for i in framed.items)
            assert joined + framed.pending == stream, "framer lost or added bytes"
    decoders = _CLIENT_DECODERS if client else _SERVER_DECODERS
    for item in whole.items:
        if isinstance(item, Frame) and (decode := decoders.get(item.type)) is not None:
            with contextlib.suppress(ProxyError):
                decode(item)


# -- ddl: prefilter, classifier, ELECTRIC grammar -------------------------------------------------


@dataclass(frozen=True)
class _View:
    any_electrified: bool = True


_GUARDS = (
    SessionGuard(lambda: _View(True), do_blocks="reject", on_parse_error="reject"),
    SessionGuard(lambda: _View(False), do_blocks="allow", on_parse_error="forward"),
)


def ddl(data: bytes) -> None:
    needs_parse = may_need_parse(data)
    looks = may_need_look(data, _VERSION_TABLES)
    assert looks or not (needs_parse or may_write_version(data, _VERSION_TABLES)) or _lone_select(data), (
        "may_need_look disagrees with its parts"
    )
    text = data.decode("utf-8", "surrogateescape")
    for guard in _GUARDS:
        for prepared in (False, True):
            plan = guard.inspect(text, prepared=prepared)
            _render(plan.statements, plan.checks, text)
            if plan.rejected is not None:
                rewrite.raising_statement(plan.rejected)
    statements = _GUARDS[1].inspect(text).statements
    found = [s for s in statements if (s.ddl or s.electric) and s.kind != Kind.UNPARSABLE]
    assert needs_parse or not found, f"prefilter passed {found[0].kind} as needing no parse"
    if _encodable(text):  # the classifier settles text that is not UTF-8 before any ELECTRIC parse
        with contextlib.suppress(ProxyError):
            electric.parse_electric(text)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _lone_select(data: bytes) -> bool:
    """may_need_look settles one plain SELECT by its first word (it writes no table)."""
    return data.decode("latin-1").strip().lower().startswith("select") and not may_need_parse(data)


def _render(statements: tuple[object, ...], checks: tuple[tuple[object, ...], ...], text: str) -> None:
    from proxy.ddl.classify import Statement

    ddl_statements: list[Statement] = []
    for stmt, stmt_checks in zip(statements, checks, strict=False):
        assert isinstance(stmt, Statement)
        if stmt.electric is not None:
            rewrite.electric_call(stmt.electric)
        if stmt_checks:
            rewrite.guard_check_call(stmt_checks)  # type: ignore[arg-type]
            rewrite.run_checked_call(stmt_checks, text, stmt.tag)  # type: ignore[arg-type]
        if stmt.ddl:
            ddl_statements.append(stmt)
    if ddl_statements:
        capture.capture_call(ddl_statements, _META).encode("utf-8", "surrogateescape")


# -- versions: the framework-version recogniser ------------------------------------------------------


def versions(data: bytes) -> None:
    framer = Framer(keep_all=True, max_length=_SMALL_LIMIT)
    try:
        frames = [i for i in framer.feed(data) if isinstance(i, Frame)]
    except ProxyError:
        return
    parse: messages.Parse | None = None
    for frame in frames:
        try:
            if frame.type == Frontend.QUERY:
                sql = messages.query_sql(frame.raw)
                writes = _RECOGNIZER.from_sql(sql.decode("utf-8", "surrogateescape"))
                assert not writes or may_need_look(sql, _VERSION_TABLES), "prefilter hid a version write"
            elif frame.type == Frontend.PARSE:
                parse = messages.decode_parse(frame.body)
            elif frame.type == Frontend.BIND and parse is not None:
                bind = decode_bind(frame.body)
                sql_text = parse.query.decode("utf-8", "surrogateescape")
                writes = _RECOGNIZER.from_statement(
                    sql_text, bind.params, bind.param_formats, parse.param_types
                )
                assert not writes or may_write_version(parse.query, _VERSION_TABLES), (
                    "prefilter hid a version write"
                )
        except ProxyError:
            continue


TARGETS: dict[str, Target] = {"protocol": protocol, "ddl": ddl, "versions": versions}
