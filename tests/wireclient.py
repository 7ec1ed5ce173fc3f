"""A bare wire-protocol client for tests that need message orders no driver sends."""

from __future__ import annotations

import socket

from proxy.protocol import messages, scram
from proxy.protocol.codes import PROTOCOL_3_0, AuthRequest, Backend, Frontend
from proxy.protocol.framer import Frame, Framer


class WireClient:
    def __init__(self, host: str, port: int, *, user: str, password: str, database: str) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.framer = Framer(keep_all=True)
        self.frames: list[Frame] = []
        self.send(messages.encode_startup(PROTOCOL_3_0, {"user": user, "database": database}))
        self._login(password)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_until(self, code: int) -> list[Frame]:
        """Messages up to and including the next one of type `code`."""
        while True:
            for index, frame in enumerate(self.frames):
                if frame.type == code:
                    taken, self.frames = self.frames[: index + 1], self.frames[index + 1 :]
                    return taken
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError(f"closed before {chr(code)!r}")
            self.frames += [f for f in self.framer.feed(data) if isinstance(f, Frame)]

    def _login(self, password: str) -> None:
        client: scram.ScramClient | None = None
        while True:
            frame = self.read_until(Backend.AUTHENTICATION)[-1]
            auth = messages.decode_authentication(frame.body)
            if auth.request == AuthRequest.OK:
                break
            if auth.request == AuthRequest.SASL:
                client = scram.ScramClient(password)
                body = scram.encode_sasl_initial_response("SCRAM-SHA-256", client.client_first_message())
                self.send(messages.message(Frontend.PASSWORD, body))
            elif auth.request == AuthRequest.SASL_CONTINUE and client is not None:
                self.send(messages.password_message(client.handle_server_first(auth.data)))
        self.read_until(Backend.READY_FOR_QUERY)

    def close(self) -> None:
        self.send(messages.terminate())
        self.sock.close()


def parse_bind_execute(sql: str) -> bytes:
    """The unnamed statement and portal, no Sync."""
    return (
        messages.encode_parse(b"", sql.encode())
        + messages.encode_bind(b"", b"")
        + messages.message(Frontend.EXECUTE, b"\0\0\0\0\0")
    )


def sync() -> bytes:
    return messages.message(Frontend.SYNC)
