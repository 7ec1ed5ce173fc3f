"""GroupFilter fed the upstream replies one message at a time."""

from __future__ import annotations

from proxy.net.groupfilter import GroupFilter
from proxy.protocol import messages
from proxy.protocol.codes import Backend
from proxy.protocol.framer import Frame

TAG = "electric-proxy:group"


def frame(code: int, body: bytes = b"") -> Frame:
    return Frame(code, messages.message(code, body))


def notice(sqlstate: str, text: str, code: int = Backend.NOTICE_RESPONSE) -> Frame:
    raw = messages.encode_error_fields({"S": "NOTICE", "C": sqlstate, "M": text}, code=code)
    return Frame(code, raw)


PARSE, BIND = frame(Backend.PARSE_COMPLETE), frame(Backend.BIND_COMPLETE)
CALL, CLOSE = frame(Backend.COMMAND_COMPLETE, b"CALL\0"), frame(Backend.CLOSE_COMPLETE)
OURS = [PARSE, BIND, notice("EXTAG", TAG), CALL, CLOSE, CLOSE]


def run(stream: list[Frame], groups: int = 1) -> tuple[list[Frame], GroupFilter]:
    group_filter = GroupFilter(groups, TAG, "EXTAG", lambda f: b"ours" in f.raw)
    out: list[Frame] = []
    for item in stream:
        out += group_filter.feed(item)
        if group_filter.done:
            out += group_filter.flush()
            break
    return out, group_filter


def test_the_clients_replies_pass_and_ours_are_taken_out() -> None:
    client = [
        frame(Backend.PARSE_COMPLETE),
        frame(Backend.BIND_COMPLETE),
        frame(Backend.COMMAND_COMPLETE, b"X\0"),
    ]
    out, group_filter = run(client[:2] + OURS)
    assert out == client[:2] and group_filter.done


def test_never_more_than_two_messages_are_held() -> None:
    group_filter = GroupFilter(1, TAG, "EXTAG", lambda f: False)
    assert group_filter.feed(PARSE) == [] and group_filter.feed(BIND) == []
    assert group_filter.feed(PARSE) == [PARSE]  # a third: the oldest cannot be ours any more
    assert group_filter.feed(frame(Backend.DATA_ROW, b"\0\0")) == [
        BIND,
        PARSE,
        frame(Backend.DATA_ROW, b"\0\0"),
    ]


def test_a_failed_group_keeps_its_error_only() -> None:
    error = notice("XX000", "ours", code=Backend.ERROR_RESPONSE)
    out, group_filter = run([PARSE, BIND, error])
    assert out == [error] and group_filter.done


def test_a_client_error_before_the_group_keeps_everything() -> None:
    error = notice("42P01", "theirs", code=Backend.ERROR_RESPONSE)
    ready = frame(Backend.READY_FOR_QUERY, b"I")
    out, group_filter = run([PARSE, BIND, error, ready])
    assert out == [PARSE, BIND, error, ready] and group_filter.done


def test_several_groups() -> None:
    out, group_filter = run(OURS + OURS, groups=2)
    assert out == [] and group_filter.done
