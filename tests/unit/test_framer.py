"""The framer: identical frames whatever the chunking, only ProtocolError on garbage."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.errors import ProtocolError
from proxy.protocol import framer as framer_module
from proxy.protocol import messages
from proxy.protocol.codes import Backend, Frontend
from proxy.protocol.framer import STARTUP, Frame, Framer, PyFramer


@pytest.fixture(scope="module", params=["python", "c"])
def impl(request: pytest.FixtureRequest) -> type[Framer]:
    """Every test runs against the pure-Python reference and the compiled scanner."""
    if request.param == "python":
        return PyFramer
    if framer_module.Framer.scan is None:
        pytest.skip(f"compiled scanner not in use: framer {framer_module.IMPLEMENTATION}")
    return framer_module.Framer


def _data_row(payload: bytes) -> bytes:
    return messages.message(Backend.DATA_ROW, struct.pack("!hi", 1, len(payload)) + payload)


# A recorded-shape server stream: startup answer, a query result and ReadyForQuery.
SERVER_STREAM = b"".join(
    [
        messages.authentication(0),
        messages.parameter_status("server_version", "15.18"),
        messages.message(Backend.BACKEND_KEY_DATA, struct.pack("!I", 4242) + b"\x01\x02\x03\x04"),
        messages.ready_for_query(ord("I")),
        messages.message(Backend.ROW_DESCRIPTION, b"\x00\x01a\x00" + b"\x00" * 18),
        *[_data_row(bytes([i]) * (i * 37)) for i in range(12)],
        messages.command_complete("SELECT 12"),
        messages.ready_for_query(ord("T")),
    ]
)
CLIENT_STREAM = b"".join(
    [
        messages.encode_startup(196608, {"user": "alice", "database": "app"}),
        messages.query("SELECT 1; CREATE TABLE t (id int)"),
        messages.message(Frontend.PARSE, b"s1\x00SELECT $1\x00\x00\x00"),
        messages.message(Frontend.SYNC),
        messages.terminate(),
    ]
)


def frame_all(framer: Framer, chunks: list[bytes]) -> tuple[list[Frame], bytes]:
    frames: list[Frame] = []
    passed = bytearray()
    for chunk in chunks:
        for item in framer.feed(chunk):
            if isinstance(item, Frame):
                frames.append(item)
                passed += item.raw
            else:
                passed += item
    return frames, bytes(passed)


def test_whole_stream_frames_every_message_when_keep_all(impl: type[Framer]) -> None:
    frames, passed = frame_all(impl(keep_all=True), [SERVER_STREAM])
    assert [f.type for f in frames][:4] == [ord("R"), ord("S"), ord("K"), ord("Z")]
    assert frames[-1].raw == messages.ready_for_query(ord("T"))
    assert len(frames) == 4 + 1 + 12 + 2
    assert passed == SERVER_STREAM


@pytest.mark.parametrize("keep_all", [True, False])
def test_one_byte_at_a_time_matches_whole(impl: type[Framer], keep_all: bool) -> None:
    keep = () if keep_all else (Backend.READY_FOR_QUERY, Backend.COMMAND_COMPLETE)
    whole, _ = frame_all(impl(keep, keep_all=keep_all), [SERVER_STREAM])
    framer = impl(keep, keep_all=keep_all)
    seen: list[Frame] = []
    passed = bytearray()
    for i in range(len(SERVER_STREAM)):
        items = framer.feed(SERVER_STREAM[i : i + 1])
        for item in items:
            if isinstance(item, Frame):
                # A kept message appears exactly when its last byte arrives.
                assert SERVER_STREAM[: i + 1].endswith(item.raw)
                seen.append(item)
                passed += item.raw
            else:
                passed += item
    assert seen == whole
    assert bytes(passed) == SERVER_STREAM
    assert framer.pending == 0


def test_startup_packet_then_typed_messages_bytewise(impl: type[Framer]) -> None:
    framer = impl(keep_all=True, startup=True)
    frames, passed = frame_all(framer, [CLIENT_STREAM[i : i + 1] for i in range(len(CLIENT_STREAM))])
    assert frames[0].type == STARTUP
    startup = messages.decode_startup(frames[0].body)
    assert isinstance(startup, messages.StartupMessage)
    assert startup.parameters == {"user": "alice", "database": "app"}
    assert [f.type for f in frames[1:]] == [ord("Q"), ord("P"), ord("S"), ord("X")]
    assert messages.query_sql(frames[1].raw) == b"SELECT 1; CREATE TABLE t (id int)"
    assert passed == CLIENT_STREAM


def test_unkept_messages_stream_without_buffering(impl: type[Framer]) -> None:
    big = _data_row(b"x" * 1_000_000)
    framer = impl((Backend.READY_FOR_QUERY,))
    chunk = big[:65536]
    items = framer.feed(chunk)
    assert framer.contiguous and framer.pending == 0
    assert len(items) == 1 and bytes(items[0]) == chunk
    rest = big[65536:] + messages.ready_for_query(ord("I"))
    items = framer.feed(rest)
    assert isinstance(items[-1], Frame) and items[-1].type == ord("Z")
    assert framer.contiguous


def test_contiguous_is_false_when_bytes_are_held(impl: type[Framer]) -> None:
    framer = impl((Backend.READY_FOR_QUERY,))
    rfq = messages.ready_for_query(ord("I"))
    framer.feed(rfq[:3])
    assert not framer.contiguous and framer.pending == 3
    items = framer.feed(rfq[3:])
    assert not framer.contiguous
    assert items == [Frame(ord("Z"), rfq)]


@pytest.mark.parametrize("length", [0, 3, 2**31])
def test_bad_typed_length_is_protocol_error(impl: type[Framer], length: int) -> None:
    with pytest.raises(ProtocolError) as info:
        impl().feed(b"Q" + struct.pack("!I", length) + b"xxxx")
    assert info.value.sqlstate == "08P01"


def test_length_over_configured_cap_is_rejected_before_buffering(impl: type[Framer]) -> None:
    framer = impl((Frontend.QUERY,), max_length=1024)
    with pytest.raises(ProtocolError):
        framer.feed(b"Q" + struct.pack("!I", 1_000_000))
    assert framer.pending == 0


@pytest.mark.parametrize("length", [4, 7, 10_001, 2**31])
def test_bad_startup_length_is_protocol_error(impl: type[Framer], length: int) -> None:
    with pytest.raises(ProtocolError):
        impl(startup=True).feed(struct.pack("!I", length) + b"\x00" * 8)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_random_splits_frame_identically(impl: type[Framer], data: st.DataObject) -> None:
    stream = data.draw(st.sampled_from([SERVER_STREAM, CLIENT_STREAM]))
    startup = stream is CLIENT_STREAM
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=40)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    keep_all = data.draw(st.booleans())
    keep = data.draw(st.sets(st.sampled_from(list(b"QPSZCDRTK"))))
    whole, _ = frame_all(impl(keep, keep_all=keep_all, startup=startup), [stream])
    split, passed = frame_all(impl(keep, keep_all=keep_all, startup=startup), chunks)
    assert split == whole
    assert passed == stream


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=8), st.booleans())
def test_random_bytes_raise_only_protocol_error(
    impl: type[Framer], chunks: list[bytes], startup: bool
) -> None:
    framer = impl(keep_all=True, startup=startup, max_length=4096)
    try:
        for chunk in chunks:
            for item in framer.feed(chunk):
                if isinstance(item, Frame) and item.type == STARTUP:
                    messages.decode_startup(item.body)
    except ProtocolError:
        pass


def test_peek_leaves_unwanted_whole_messages_in_the_span(impl: type[Framer]) -> None:
    wanted = messages.query("CREATE TABLE t (id int)")
    plain = messages.query("SELECT 1")
    framer = impl((Frontend.QUERY,))
    framer.peek[Frontend.QUERY] = lambda m: b"CREATE" in bytes(m)
    items = framer.feed(plain + wanted + plain)
    assert [type(i).__name__ for i in items] == ["memoryview", "Frame", "memoryview"]
    assert isinstance(items[1], Frame) and items[1].raw == wanted
    assert framer.contiguous
    # A message split across chunks is held and framed whole, whatever the peek would say.
    framer.feed(plain[:3])
    split = framer.feed(plain[3:])
    assert split == [Frame(Frontend.QUERY, plain)]


def _outcome(framer: Framer, chunks: list[bytes]) -> list[object]:
    """Every feed's items, as plain values, and its `contiguous`; ends with the error if one."""
    seen: list[object] = []
    try:
        for chunk in chunks:
            items = framer.feed(chunk)
            seen.append([(i.type, i.raw) if isinstance(i, Frame) else bytes(i) for i in items])
            seen.append((framer.contiguous, framer.pending))
    except ProtocolError as exc:
        seen.append(("error", exc.message))
    return seen


_MESSAGE = st.tuples(
    st.sampled_from(list(b"QPBESDZCTN")), st.binary(max_size=24), st.sampled_from([0, 0, 0, 1])
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_MESSAGE, max_size=30), st.data())
def test_compiled_scanner_matches_the_reference(
    messages_: list[tuple[int, bytes, int]], data: st.DataObject
) -> None:
    if Framer.scan is None:
        pytest.skip("compiled scanner not in use")
    # A bad flag makes that message's length word invalid: both must fail at the same point.
    stream = b"".join(
        bytes((code,)) + struct.pack("!I", 3 if bad else len(body) + 4) + body
        for code, body, bad in messages_
    )
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    keep = data.draw(st.sets(st.sampled_from(list(b"QPBESDZCTN"))))
    max_length = data.draw(st.sampled_from([16, 4096]))
    expected = _outcome(PyFramer(keep, max_length=max_length), chunks)
    assert _outcome(Framer(keep, max_length=max_length), chunks) == expected
