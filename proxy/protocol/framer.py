"""Incremental framing of a Postgres byte stream, in either direction.

The framer turns chunks, as the socket delivers them, into an ordered list of items:

- `Frame`: one whole message whose type the caller asked to *keep*. Its bytes are held back
  until every byte of it has arrived, so the caller may forward, drop or replace it.
- `memoryview`: a span of bytes to pass along untouched. Such spans may end in the middle of a
  message that nobody needs whole (a 1 GB `DataRow`, a `CopyData`): those are streamed, never
  buffered, so memory grows with what is kept, not with what is declared.

Invariants, which the tests check by feeding streams one byte at a time:
- Joining every item's bytes, in order, gives back exactly the bytes fed (nothing lost or added).
- The frames produced do not depend on how the stream was split into chunks.
- `contiguous` is true after a `feed()` when the items join to exactly that chunk, with no bytes
  held from earlier or kept for later: the relay may then write the chunk object itself.
- A declared length is checked as soon as the header is complete, before any memory is reserved.
  Anything wrong raises `ProtocolError` and the framer must not be used again.

Startup packets have no type byte; `expect_startup()` makes the next message one of them.

`peek` lets the owner look at a kept message that arrived whole before any copy is made: when
its function returns False the message stays in the passthrough span (the guard's prefilter
uses this, so a plain SELECT costs no `Frame`).

Speed: the loop over whole messages nobody keeps runs in C (`_scan.c`, built by setup.py when a
compiler is there). `Framer` uses it when it is built and matches its source; `PyFramer` never
does and is the reference the tests hold the compiled path to. `IMPLEMENTATION` says which one
`Framer` is; the module logs it once at import. `ELECTRIC_PROXY_FRAMER=python` forces pure Python.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from struct import Struct
from typing import ClassVar, Final, NamedTuple

from proxy.errors import ProtocolError
from proxy.protocol.codes import MESSAGE_MAX_LENGTH, STARTUP_MAX_LENGTH, STARTUP_MIN_LENGTH

STARTUP: Final = -1  # the `type` of a startup-phase packet, which carries no type byte
_INT32: Final = Struct("!I")
_TYPED_HEADER: Final = 5
_STARTUP_HEADER: Final = 4

logger = logging.getLogger(__name__)

# scan(data, pos, keep, max_length) -> the position of the first message Python must look at.
Scan = Callable[[memoryview, int, bytearray, int], int]


def _load_scan() -> tuple[Scan | None, int, str]:
    """The compiled scanner, or None; and the level and text of the line that says which."""
    if os.environ.get("ELECTRIC_PROXY_FRAMER", "").lower() == "python":
        return None, logging.INFO, "python (ELECTRIC_PROXY_FRAMER=python)"
    try:
        from proxy.protocol import _scan
    except ImportError as exc:
        return None, logging.WARNING, f"python, slower (no compiled scanner: {exc})"
    source = Path(__file__).with_name("_scan.c")
    # Only an editable install has the source beside the module; there it may have changed since
    # the build, and a stale scanner must not run.
    if source.exists() and hashlib.sha256(source.read_bytes()).hexdigest() != _scan.SOURCE_SHA256:
        why = "python, slower (the compiled scanner is older than _scan.c: reinstall to rebuild it)"
        return None, logging.WARNING, why
    return _scan.scan, logging.INFO, "c (compiled scanner)"


_SCAN, _LEVEL, _WHY = _load_scan()
IMPLEMENTATION: Final = "c" if _SCAN is not None else "python"
logger.log(_LEVEL, "framer: %s", _WHY)  # imported after logging is configured (proxy.cli)


class Frame(NamedTuple):
    """One complete message: `raw` holds the header too, so it can be forwarded as is.

    A tuple rather than a frozen dataclass: one is built per kept message on the hot path, and a
    frozen dataclass's `__init__` costs several times a tuple's.
    """

    type: int
    raw: bytes

    @property
    def body(self) -> memoryview:
        start = _STARTUP_HEADER if self.type == STARTUP else _TYPED_HEADER
        return memoryview(self.raw)[start:]


Item = Frame | memoryview


class Framer:
    """Splits one direction of a connection into messages; see the module docstring."""

    scan: ClassVar[Scan | None] = _SCAN

    __slots__ = ("_buf", "_keep", "_max_length", "_skip", "_startup", "contiguous", "direction", "peek")

    def __init__(
        self,
        keep: Iterable[int] = (),
        *,
        keep_all: bool = False,
        max_length: int = MESSAGE_MAX_LENGTH,
        startup: bool = False,
        direction: str = "client",
    ) -> None:
        self._keep = bytearray(256)
        self.set_keep(keep, keep_all=keep_all)
        self._max_length = max_length
        self._startup = startup
        self._buf = bytearray()  # a partial header, or the held part of a kept message
        self._skip = 0  # bytes still to stream of a message that is not kept
        self.contiguous = True
        self.direction = direction
        self.peek: dict[int, Callable[[memoryview], bool]] = {}

    def set_keep(self, keep: Iterable[int], *, keep_all: bool = False) -> None:
        """Change which message types come back whole; takes effect at the next message."""
        self._keep = bytearray(b"\x01" * 256) if keep_all else bytearray(256)
        for code in keep:
            self._keep[code] = 1

    def expect_startup(self) -> None:
        """The next message is an untyped startup packet (after SSLRequest answered `N`)."""
        self._startup = True

    @property
    def pending(self) -> int:
        """Bytes held back, waiting for the rest of their message."""
        return len(self._buf)

    def take_pending(self) -> bytes:
        """Give up the held bytes (a message cut off at the end of the input) and forget them."""
        held, self._buf = bytes(self._buf), bytearray()
        return held

    def feed(self, data: bytes | bytearray | memoryview) -> list[Item]:
        """Frame `data`, the next chunk of the stream; see the module docstring."""
        out: list[Item] = []
        view = memoryview(data)
        end = len(view)
        self.contiguous = not self._buf
        pos = self._continue_held(view, out) if self._buf else 0
        start = pos  # first byte of the pending passthrough span
        if self._skip:
            take = min(self._skip, end - pos)
            self._skip -= take
            pos += take
        keep = self._keep
        unpack = _INT32.unpack_from
        scan = type(self).scan  # through the class: a plain function must not be bound
        while pos < end:
            if self._startup:
                if start < pos:
                    out.append(view[start:pos])
                pos = self._begin_startup(view, pos, out)
                start = pos
                continue
            if scan is not None and not keep[view[pos]]:  # a kept one first: nothing to skip
                pos = scan(view, pos, keep, self._max_length)  # whole messages nobody keeps
                if pos == end:
                    break
            if end - pos < _TYPED_HEADER:
                self._hold(view, start, pos, out)
                return out
            code = view[pos]
            total = 1 + self._check_length(unpack(view, pos + 1)[0], code)
            if keep[code]:
                peek = self.peek.get(code) if self.peek else None
                if peek is not None and pos + total <= end and not peek(view[pos : pos + total]):
                    pos += total  # whole, and its owner has no use for it: it stays in the span
                    continue
                if start < pos:
                    out.append(view[start:pos])
                if pos + total > end:
                    self._buf = bytearray(view[pos:])
                    self.contiguous = False
                    return out
                out.append(Frame(code, bytes(view[pos : pos + total])))
                pos += total
                start = pos
            elif pos + total > end:
                self._skip = pos + total - end
                pos = end
            else:
                pos += total
        if start < end:
            out.append(view[start:end])
        return out

    def _check_length(self, length: int, code: int) -> int:
        if length < 4 or length > self._max_length:
            raise ProtocolError(
                f"invalid message length {length} for message type {_printable(code)}",
            )
        return length

    def _hold(self, view: memoryview, start: int, pos: int, out: list[Item]) -> None:
        """Keep an incomplete header back until the next chunk says what the message is."""
        if start < pos:
            out.append(view[start:pos])
        self._buf = bytearray(view[pos:])
        self.contiguous = False

    def _continue_held(self, view: memoryview, out: list[Item]) -> int:
        """Complete the message begun in an earlier chunk; return how much of `view` it used."""
        buf = self._buf
        header = _STARTUP_HEADER if self._startup else _TYPED_HEADER
        used = 0
        if len(buf) < header:
            used = min(header - len(buf), len(view))
            buf += view[:used]
            if len(buf) < header:
                return used
        if self._startup:
            total = _check_startup_length(_INT32.unpack_from(buf, 0)[0])
            code = STARTUP
        else:
            code = buf[0]
            total = 1 + self._check_length(_INT32.unpack_from(buf, 1)[0], code)
            if not self._keep[code]:
                # Not wanted whole after all: release the header and stream the rest.
                out.append(memoryview(bytes(buf)))
                self._buf = bytearray()
                self._skip = total - len(buf)
                return used
        take = min(total - len(buf), len(view) - used)
        buf += view[used : used + take]
        used += take
        if len(buf) == total:
            out.append(Frame(code, bytes(buf)))
            self._buf = bytearray()
            if code == STARTUP:
                self._startup = False
        return used

    def _begin_startup(self, view: memoryview, pos: int, out: list[Item]) -> int:
        end = len(view)
        if end - pos < _STARTUP_HEADER:
            self._buf = bytearray(view[pos:])
            self.contiguous = False
            return end
        total = _check_startup_length(_INT32.unpack_from(view, pos)[0])
        if pos + total > end:
            self._buf = bytearray(view[pos:])
            self.contiguous = False
            return end
        out.append(Frame(STARTUP, bytes(view[pos : pos + total])))
        self._startup = False
        return pos + total


class PyFramer(Framer):
    """The pure-Python framer: the reference for the compiled scanner, and the fallback."""

    scan: ClassVar[Scan | None] = None


def _check_startup_length(length: int) -> int:
    if not STARTUP_MIN_LENGTH <= length <= STARTUP_MAX_LENGTH:
        raise ProtocolError(f"invalid length of startup packet: {length}")
    return length


def _printable(code: int) -> str:
    return repr(chr(code)) if 32 < code < 127 else f"0x{code:02x}"
