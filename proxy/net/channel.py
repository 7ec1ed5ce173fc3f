"""Frames in, bytes out: what the start-up and auth coroutines see of one connection side.

During start-up the session's protocol callbacks push whole frames into a `FrameChannel`;
the coroutine that runs the start-up exchange awaits them in order. Once the relay begins,
channels are no longer used and bytes flow through the protocols' callbacks directly.
"""

from __future__ import annotations

import asyncio
from collections import deque

from proxy.errors import ProtocolError, UpstreamError
from proxy.protocol.framer import Frame


class FrameChannel:
    __slots__ = ("_closed", "_frames", "_waiter", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._frames: deque[Frame] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed: BaseException | None = None

    def push(self, frame: Frame) -> None:
        self._frames.append(frame)
        self._wake()

    def close(self, error: BaseException) -> None:
        self._closed = error
        self._wake()

    def __len__(self) -> int:
        return len(self._frames)

    def drain(self) -> list[Frame]:
        """Take every frame received so far (those that arrived ahead of the relay)."""
        frames = list(self._frames)
        self._frames.clear()
        return frames

    async def recv(self) -> Frame:
        while not self._frames:
            if self._closed is not None:
                raise self._closed
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._frames.popleft()

    async def expect(self, code: int) -> Frame:
        frame = await self.recv()
        if frame.type != code:
            got = chr(frame.type) if frame.type > 0 else "startup packet"
            raise ProtocolError(f"expected message type {chr(code)!r}, got {got!r}")
        return frame

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


def client_gone() -> ConnectionError:
    return ConnectionResetError("client closed the connection")


def upstream_gone(address: str) -> UpstreamError:
    return UpstreamError(f'upstream server at "{address}" closed the connection unexpectedly')
