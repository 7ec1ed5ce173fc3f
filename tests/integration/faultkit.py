"""Helpers for the reliability tests: a TCP relay that can stall, and process measurements."""

from __future__ import annotations

import asyncio
import os
import socket
import threading

from proxy.net.server import free_port


class StallingRelay:
    """A TCP relay in front of a server that holds the server's first reply for `delay` seconds.

    Stands for a server whose own login is slow (a postmaster forking hundreds of backends): the
    connection is accepted at once, the answer comes late.
    """

    def __init__(self, port: int, delay: float, *, cut_after: int | None = None) -> None:
        self.target = port
        self.delay = delay
        self.cut_after = cut_after  # close both sides once the server has sent this many bytes
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._server: asyncio.Server | None = None
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        await asyncio.gather(
            _pipe(reader, up_writer, 0.0),
            _pipe(up_reader, writer, self.delay, self.cut_after),
            return_exceptions=True,
        )
        up_writer.close()

    def close(self) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, first_delay: float, limit: int | None = None
) -> None:
    try:
        first = True
        sent = 0
        while data := await reader.read(65536 if limit is None else max(1, limit - sent)):
            if first and first_delay:
                await asyncio.sleep(first_delay)
            first = False
            writer.write(data)
            await writer.drain()
            sent += len(data)
            if limit is not None and sent >= limit:
                writer.transport.abort()
                return
    finally:
        writer.close()


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of a process (this one by default), from /proc."""
    with open(f"/proc/{pid or os.getpid()}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def fd_count(pid: int | None = None) -> int:
    return len(os.listdir(f"/proc/{pid or os.getpid()}/fd"))


def vanish(sock: socket.socket) -> None:
    """End a client's connection with no Terminate, leaving its fd to its driver to close (closing
    it here could close whatever socket the proxy's thread opens next under the same number)."""
    sock.shutdown(socket.SHUT_RDWR)
    sock.detach()
