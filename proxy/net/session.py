"""One client connection, relayed to one upstream connection.

The session is the client's `asyncio.Protocol` and the upstream protocol's peer. It has two
phases:

- start-up, run by the `_establish` coroutine over `FrameChannel`s: SSL/GSS negotiation, cancel
  requests, password-mode authentication, the upstream connection and its TLS;
- relay, run from the protocol callbacks with no coroutine in the way: each chunk is framed
  (so the `ReadyForQuery` status is always known) and forwarded as received. When nothing in a
  chunk needs attention, the chunk object itself is written: one `write` per `data_received`.

Backpressure is symmetric: when one side's write buffer passes its high-water mark, the other
side stops being read until it drains. This is what keeps a slow reader of a 1 GB result from
making the proxy hold that result in memory.

`ProxyError` is turned into an `ErrorResponse` here and nowhere else.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Final, cast

from proxy.catalog.cache import EMPTY_SNAPSHOT, capture_ready, checks_ready, database_guard_active
from proxy.ddl.encoding import SqlCodec, codec_for
from proxy.ddl.guard import SessionGuard
from proxy.errors import AuthError, ProtocolError, ProxyError, UpstreamError
from proxy.net import auth
from proxy.net.channel import FrameChannel, client_gone, upstream_gone
from proxy.net.context import ProxyContext
from proxy.net.groupfilter import GroupFilter
from proxy.net.guardlink import GuardLink
from proxy.net.upstream import LOGIN_TIMEOUT, open_upstream, peer_certificate_hash
from proxy.protocol import messages, scram
from proxy.protocol.codes import AuthRequest, Backend, TransactionStatus
from proxy.protocol.framer import Frame, Framer

logger = logging.getLogger(__name__)

_STATE_NAMES: Final[dict[int, str]] = {
    TransactionStatus.IDLE: "idle",
    TransactionStatus.IN_TRANSACTION: "idle_in_transaction",
    TransactionStatus.FAILED: "failed_transaction",
}
_SCRAM_PLUS: Final = "SCRAM-SHA-256-PLUS"
_HIGH_WATER: Final = 256 * 1024

FrameHandler = Callable[[Frame], bytes | None]


class Session(asyncio.Protocol):
    def __init__(self, ctx: ProxyContext) -> None:
        self.ctx = ctx
        self.id = ctx.next_session_id()
        self.client: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self.peer = "?"
        self.log: logging.LoggerAdapter[logging.Logger] = logging.LoggerAdapter(logger, {"c": self.id})
        self.status: int = TransactionStatus.IDLE  # the last ReadyForQuery's status byte
        self.busy = False  # the client has sent something the upstream has not answered yet
        self.chunk_idle = False  # nothing of the client's was in flight when this chunk came
        self.chunk_serial = 0  # counts the client chunks that handlers looked at
        self.chunk_head: Frame | memoryview | None = None  # the chunk's first message
        self.relaying = False
        self.client_tls = False
        self.parameters: dict[str, str] = {}
        self.backend_pid = 0
        # How the server reads this client's text, as its ParameterStatus messages report it.
        self.client_encoding = "UTF8"
        self.server_encoding: str | None = None
        self.standard_conforming_strings = True
        self._closing = False
        self._draining = False
        self._client_framer = Framer(
            keep_all=True, startup=True, max_length=ctx.config.listen.max_message_bytes
        )
        self._upstream_framer = Framer(keep_all=True, direction="upstream")
        self._client_frames = FrameChannel("client")
        self._upstream_frames = FrameChannel("upstream")
        self._task: asyncio.Task[None] | None = None
        self._deadline: asyncio.Timeout | None = None  # the start-up timeout, while it runs
        self._waiting_on_upstream = False
        self._startup_raw = b""
        self._holds: deque[_Hold] = deque()
        self._filters: deque[GroupFilter] = deque()
        self._client_keep_grew = False
        self.guard_link: GuardLink | None = None
        # Relay hooks: message types each direction must see whole, and what to do with them.
        self._client_handlers: dict[int, FrameHandler] = {}
        self._upstream_handlers: dict[int, FrameHandler] = {}

    # -- asyncio.Protocol (client side) -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.client = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        transport = self.client
        transport.set_write_buffer_limits(high=_HIGH_WATER)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer or "local")
        self.log = logging.LoggerAdapter(logger, {"c": self.id, "peer": self.peer})
        self.ctx.sessions.add(self)
        self.ctx.stats.accepted += 1
        self._task = asyncio.get_running_loop().create_task(self._establish())

    def data_received(self, data: bytes) -> None:
        self.ctx.stats.bytes_from_clients += len(data)
        try:
            if self.relaying:
                self._relay_client(data)
            else:
                self._startup_data(data)
        except ProtocolError as exc:
            self.fail(exc)

    def eof_received(self) -> bool | None:
        return None  # close our side too, as Postgres does

    def connection_lost(self, exc: Exception | None) -> None:
        self.ctx.sessions.discard(self)
        # A message cut off by the close (up to max_message_bytes of a Query) is garbage now; the
        # session itself may wait for the cycle collector, its buffers need not.
        self._client_framer.take_pending()
        self._upstream_framer.take_pending()
        self._client_frames.close(client_gone())
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self.upstream is not None:
            # Abort, not close: a graceful close waits on the backend (a TLS close_notify, a
            # Terminate) that a busy backend will not read until its query ends. Dropping the
            # socket lets it notice at once (client_connection_check_interval), roll back any
            # open transaction and exit, as a direct client's vanishing would.
            self.upstream.abort()
        if self.status != TransactionStatus.IDLE:
            self.log.info("client disconnected mid-transaction; upstream connection closed")
        else:
            self.log.debug("client disconnected")

    def pause_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.resume_reading()

    # -- UpstreamPeer -------------------------------------------------------------------------

    def upstream_data(self, data: bytes) -> None:
        try:
            if self.relaying:
                self._relay_upstream(data)
            else:
                for item in self._upstream_framer.feed(data):
                    assert isinstance(item, Frame)
                    self._upstream_frames.push(item)
        except ProtocolError as exc:
            self.log.error("upstream protocol error: %s", exc.message)
            self.fail(UpstreamError(f"protocol error from upstream: {exc.message}"))

    def upstream_lost(self, exc: Exception | None) -> None:
        self.ctx.stats.upstream_connections -= 1
        self.upstream = None
        self._upstream_frames.close(upstream_gone(self.ctx.target.address))
        if self.client is not None and not self.client.is_closing():
            # Whatever the upstream said last (a FATAL ErrorResponse, usually) is already in
            # the client's write buffer; close after it, as a direct connection would end.
            self.client.close()

    def upstream_pause_writing(self) -> None:
        if self.client is not None:
            self.client.pause_reading()

    def upstream_resume_writing(self) -> None:
        if self.client is not None:
            self.client.resume_reading()

    # -- start-up -----------------------------------------------------------------------------

    def _startup_data(self, data: bytes) -> None:
        for item in self._client_framer.feed(data):
            assert isinstance(item, Frame)
            self._client_frames.push(item)

    async def _establish(self) -> None:
        timeout = self.ctx.config.listen.startup_timeout_ms / 1000
        try:
            async with asyncio.timeout(timeout) as self._deadline:
                startup = await self._negotiate()
                if startup is None:
                    return
                await self._login(startup, startup_raw=self._startup_raw)
            self._start_relay()
        except TimeoutError:
            if not self._waiting_on_upstream:
                self.log.info("client silent: start-up not completed within %.1fs; closing", timeout)
                self._abort()
                return
            address = self.ctx.target.address
            self.fail(UpstreamError(f'timeout expired waiting for the upstream server at "{address}"'))
        except (ConnectionError, asyncio.CancelledError):
            self._abort()
        except AuthError as exc:
            self.ctx.stats.rejected["auth"] += 1
            self.log.info("authentication failed: %s", exc.message)
            self.fail(exc)
        except UpstreamError as exc:
            self.log.warning("upstream: %s", exc.message)
            self.fail(exc)
        except ProxyError as exc:
            self.ctx.stats.rejected["protocol_error"] += 1
            self.log.info("start-up refused: %s", exc.message)
            self.fail(exc)
        except Exception:
            self.log.exception("internal error during start-up")
            self.fail(ProxyError("internal error in electric-proxy", severity="FATAL"))

    async def _negotiate(self) -> messages.StartupMessage | None:
        """Answer SSLRequest/GSSENCRequest until the real startup packet (or a cancel) comes."""
        while True:
            frame = await self._client_frames.recv()
            packet = messages.decode_startup(frame.body)
            if isinstance(packet, messages.StartupMessage):
                self._startup_raw = frame.raw
                self.parameters = dict(packet.parameters)
                self.client_encoding = self.parameters.get("client_encoding", self.client_encoding)
                return packet
            if isinstance(packet, messages.CancelRequest):
                self._forward_cancel(frame.raw)
                return None
            self._ensure_nothing_buffered()
            if isinstance(packet, messages.SSLRequest) and self.ctx.tls and not self.client_tls:
                await self._start_client_tls(self.ctx.tls)
            else:
                self._write_client(b"N")
            self._client_framer.expect_startup()

    def _ensure_nothing_buffered(self) -> None:
        # Bytes that came in plaintext behind an SSLRequest would be processed as if they had
        # been encrypted (CVE-2021-23214): refuse them.
        if len(self._client_frames) or self._client_framer.pending:
            raise ProtocolError("received unencrypted data after SSL request")

    async def _start_client_tls(self, context: ssl.SSLContext) -> None:
        assert self.client is not None
        self._write_client(b"S")
        loop = asyncio.get_running_loop()
        transport = await loop.start_tls(self.client, self, context, server_side=True)
        if transport is None:
            raise client_gone()
        self.client = transport
        self.client_tls = True

    async def _login(self, startup: messages.StartupMessage, *, startup_raw: bytes) -> None:
        cfg = self.ctx.config
        self._refuse_plaintext()
        try:
            await _LOGINS[cfg.auth.mode](self, startup, startup_raw)
        except AuthError:
            await self._login_failed(cfg.auth.mode)
            raise
        self.ctx.throttle.succeeded(self._address())
        self._upstream_handlers[Backend.BACKEND_KEY_DATA] = self._note_backend_key
        self._upstream_handlers[Backend.PARAMETER_STATUS] = self._note_parameter
        pinned = cfg.auth.mode == "password" and cfg.auth.database
        database = cfg.auth.database if pinned else startup.database
        user = self.ctx.target.user if cfg.auth.mode == "password" else startup.user
        if not physical_replication(startup.parameters.get("replication")):
            await self._attach_guard(database, user)
        self.log.debug("session for user=%s database=%s", startup.user, database)

    async def _login_failed(self, mode: str) -> None:
        """Count a failed login to the proxy and answer it late: each failure from the same
        address waits longer (context.LoginThrottle), which makes guessing slow."""
        self.ctx.stats.auth_failures[mode] += 1
        delay = self.ctx.throttle.failed(self._address())
        if delay > 0:
            await asyncio.sleep(delay)

    def _refuse_plaintext(self) -> None:
        if self.ctx.config.tls.client_mode == "require" and not self.client_tls:
            # Postgres's answer when no hostssl rule matches a plaintext connection.
            raise AuthError("the proxy accepts only TLS connections (SSL off)", sqlstate="28000")

    def _address(self) -> str:
        return self.peer.rpartition(":")[0] or self.peer

    async def _login_passthrough(self, startup: messages.StartupMessage, startup_raw: bytes) -> None:
        await self._connect_upstream()
        self._write_upstream(startup_raw)
        # Channel binding ties SCRAM to one TLS link; the proxy always makes two hops.
        self._upstream_handlers[Backend.AUTHENTICATION] = self._strip_channel_binding

    async def _login_password(self, startup: messages.StartupMessage, startup_raw: bytes) -> None:
        cfg, target = self.ctx.config, self.ctx.target
        assert self.ctx.proxy_keys is not None
        await auth.authenticate_client(
            self._client_frames,
            self._write_client,
            user=startup.user,
            method="md5" if cfg.auth.allow_md5 else "scram-sha-256",
            keys=self.ctx.proxy_keys,
            password=cfg.auth.password,
            tls=self.client_tls,
            channel_binding=self._client_binding(),
        )
        await self._connect_upstream()
        params = auth.upstream_parameters(
            startup.parameters,
            user=target.user,
            database=cfg.auth.database,
            application_name=cfg.auth.application_name,
        )

        def derive(salt: bytes, iterations: int) -> Awaitable[scram.ClientKeys]:
            return self.ctx.keys.derive(target.password, salt, iterations)

        await self._login_upstream(startup.version, params, derive, password=target.password)

    async def _login_auth_query(self, startup: messages.StartupMessage, startup_raw: bytes) -> None:
        lookup = self.ctx.verifiers
        assert lookup is not None
        keys = await lookup.keys(startup.user)
        # An unknown role gets the whole exchange with fake keys, and fails as a wrong password.
        server = scram.ScramServer.from_keys(
            keys or scram.mock_keys(self.ctx.mock_secret, startup.user),
            channel_binding=self._client_binding(),
        )
        client_key = await auth.scram_server(self._client_frames, self._write_client, startup.user, server)
        if keys is None:
            raise auth.failed(startup.user)  # unreachable in practice: no proof matches fake keys
        await self._connect_upstream()
        derive = auth.recovered_keys(keys, client_key)
        await self._login_upstream(startup.version, dict(startup.parameters), derive, password=None)

    def _client_binding(self) -> bytes | None:
        return self.ctx.channel_binding if self.client_tls else None

    def _client_part_done(self) -> None:
        """From here on the start-up waits on the upstream, not the client.

        The start-up timeout is for clients that say nothing; a client waiting on the server's own
        login (slow in a connection storm) waits as long as the server may take, as it would
        connected directly.
        """
        self._waiting_on_upstream = True
        if self._deadline is not None:
            self._deadline.reschedule(asyncio.get_running_loop().time() + LOGIN_TIMEOUT)

    async def _connect_upstream(self) -> None:
        self._client_part_done()
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            self.upstream = await open_upstream(self.ctx.target, self)
        except UpstreamError:
            self.ctx.stats.upstream_connect_errors["refused"] += 1
            raise
        self.ctx.stats.upstream_connect_seconds.observe(loop.time() - started)
        self.ctx.stats.upstream_connections += 1
        self.upstream.set_write_buffer_limits(high=_HIGH_WATER)

    async def _login_upstream(
        self,
        version: int,
        params: dict[str, str],
        derive: Callable[[bytes, int], Awaitable[scram.ClientKeys]],
        *,
        password: str | None,
    ) -> None:
        """Log in upstream as `params` say; the upstream must prove itself (auth.login_upstream)."""
        target, upstream = self.ctx.target, self.upstream
        assert upstream is not None
        binding = peer_certificate_hash(upstream)
        login = auth.UpstreamLogin(
            user=params["user"],
            derive=derive,
            allowed=target.allowed_methods(tls=_on_tls(upstream), secret=password != ""),
            password=password,
            channel_binding=binding,
        )
        self._write_upstream(messages.encode_startup(version, params))
        try:
            early = await auth.login_upstream(self._upstream_frames, self._write_upstream, login)
        except UpstreamError:
            self.ctx.stats.upstream_connect_errors["auth"] += 1
            raise
        for frame in early:
            self._write_client(frame.raw)
        self._write_client(messages.authentication(AuthRequest.OK))

    async def _attach_guard(self, database: str, user: str) -> None:
        """Managed databases get the migration guard; any other is relayed untouched."""
        catalog = self.ctx.catalog
        if catalog is None or database not in self.ctx.managed_databases:
            return
        watcher = catalog.watcher(database)
        try:
            await watcher.wait_ready(self.ctx.target.connect_timeout)
        except TimeoutError:
            self.log.warning("catalog of %s not loaded yet: guarding with what is known", database)
        guard_cfg = self.ctx.config.guard
        guard = SessionGuard(
            lambda: watcher.snapshot or EMPTY_SNAPSHOT,
            shared=self.ctx.shared_flags(database),
            catalog_schema=self.ctx.config.catalog.schema,
            do_blocks="allow" if guard_cfg.do_blocks == "allow" else "reject",
            on_parse_error="reject" if guard_cfg.on_parse_error == "reject" else "forward",
            database_guard=lambda: database_guard_active(watcher.snapshot),
        )
        meta: dict[str, object] = {
            "application_name": self.parameters.get("application_name", ""),
            "client_addr": self.peer,
            "proxy_instance": self.ctx.instance,
        }
        self.guard_link = GuardLink(
            self,
            guard,
            capturing=lambda: capture_ready(watcher.snapshot),
            checking=lambda: checks_ready(watcher.snapshot),
            versions=self.ctx.versions,
            stats=self.ctx.stats,
            meta=meta,
        )
        self.guard_link.install()

    def _start_relay(self) -> None:
        """Switch from frames to bytes: replay what arrived early, then relay in callbacks."""
        self._upstream_handlers[Backend.READY_FOR_QUERY] = self._note_ready
        self._upstream_framer.peek[Backend.READY_FOR_QUERY] = self._peek_ready
        self._client_framer.set_keep(self._client_handlers)
        self._upstream_framer.set_keep(self._upstream_handlers)
        self.relaying = True
        for frame in self._client_frames.drain():
            self._write_upstream(frame.raw)
        for frame in self._upstream_frames.drain():
            self._forward_upstream_frame(frame)

    # -- relay --------------------------------------------------------------------------------

    def _relay_client(self, data: bytes) -> None:
        upstream = self.upstream
        if upstream is None:
            return
        framer = self._client_framer
        items = framer.feed(data)
        idle, self.busy = not self.busy, True
        if framer.contiguous and (
            not self._client_handlers or (len(items) == 1 and not isinstance(items[0], Frame))
        ):
            upstream.write(data)  # the hot path: nothing to look at, nothing held back
            return
        # Handlers may ask whether the client had anything in flight before this chunk.
        self.chunk_idle = idle
        self.chunk_serial += 1
        self.chunk_head = items[0] if items else None
        frame = items[0] if framer.contiguous and len(items) == 1 else None
        if isinstance(frame, Frame):
            # One whole kept message (a simple query): skip the general loop when it passes as is.
            handler = self._client_handlers.get(frame.type)
            out = handler(frame) if handler is not None else frame.raw
            if out is frame.raw:
                upstream.write(data)
            elif out:
                upstream.write(out)
            return
        self._forward(items, data, framer.contiguous, self._client_handlers, upstream, client_side=True)

    def _relay_upstream(self, data: bytes) -> None:
        client = self.client
        if client is None:
            return
        framer = self._upstream_framer
        items = framer.feed(data)
        contiguous = framer.contiguous
        if self._filters:
            items = self._feed_filters(items)
            contiguous = False
        if self._holds:
            items = self._feed_hold(items)
            contiguous = False
        elif contiguous and len(items) == 1 and not isinstance(items[0], Frame):
            self.ctx.stats.bytes_to_clients += len(data)
            client.write(data)  # the hot path: the whole reply, ReadyForQuery noted by its peek
            return
        self._forward(items, data, contiguous, self._upstream_handlers, client)

    def _forward(
        self,
        items: list[Frame | memoryview],
        data: bytes,
        contiguous: bool,
        handlers: dict[int, FrameHandler],
        to: asyncio.Transport,
        *,
        client_side: bool = False,
    ) -> None:
        """Write `items` on, each kept frame as its handler decides; the chunk itself if unchanged."""
        parts: list[bytes | memoryview] = []
        changed = not contiguous
        index = 0
        while index < len(items):
            item = items[index]
            index += 1
            if not isinstance(item, Frame):
                parts.append(item)
                continue
            handler = handlers.get(item.type)
            out = handler(item) if handler is not None else item.raw
            if out is not item.raw:
                changed = True
            if out:
                parts.append(out)
            if client_side and self._client_keep_grew:
                # A handler began to watch more message types: the rest of this chunk was
                # framed without them, so frame it again.
                self._client_keep_grew = False
                items[index:] = self._reframe(items[index:])
        out = data if not changed else b"".join(parts)
        if out:
            to.write(out)
        if not client_side:
            # What the client receives: the proxy's own replies, held and dropped, are not counted.
            self.ctx.stats.bytes_to_clients += len(out)

    def _reframe(self, items: list[Frame | memoryview]) -> list[Frame | memoryview]:
        out: list[Frame | memoryview] = []
        for item in items:
            if isinstance(item, Frame):
                out.append(item)
                continue
            # Spans after a frame start on a message boundary; a message cut off at the end of
            # the chunk stays a span: the main framer streams its rest.
            framer = Framer(self._client_handlers, max_length=self.ctx.config.listen.max_message_bytes)
            out += framer.feed(item)
            out += [memoryview(framer.take_pending())] if framer.pending else []
        return out

    def _forward_upstream_frame(self, frame: Frame) -> None:
        handler = self._upstream_handlers.get(frame.type)
        data = handler(frame) if handler is not None else frame.raw
        if data:
            self._write_client(data)

    def _peek_ready(self, message: memoryview) -> bool:
        """A ReadyForQuery that arrived whole: noted in place, with no Frame, when nobody waits
        for it; True hands it to `_note_ready` instead."""
        link = self.guard_link
        if self._draining or self._holds or self._filters or (link is not None and link.wants_ready):
            return True  # held or filtered replies need every message framed
        self.status = message[5]
        self.busy = False
        return False

    def _note_ready(self, frame: Frame) -> bytes | None:
        self.status = frame.raw[5]  # compared with TransactionStatus members; no enum per query
        self.busy = False
        if self._draining and self.status == TransactionStatus.IDLE:
            asyncio.get_running_loop().call_soon(self.terminate)
        link = self.guard_link
        if link is not None and link.wants_ready:
            return link.on_ready(frame)
        return frame.raw

    def _note_backend_key(self, frame: Frame) -> bytes:
        self.backend_pid = messages.decode_backend_key_data(frame.body).pid
        # Authentication is over: stop looking at 'R' messages.
        self.set_upstream_handler(Backend.AUTHENTICATION, None)
        return frame.raw

    def _note_parameter(self, frame: Frame) -> bytes:
        # Rare (login, and a change of a reported setting): no cost on the relay's hot path.
        reader = messages.Reader(frame.body)
        name = reader.cstring().decode("ascii", "replace")
        note = _PARAMETER_NOTES.get(name)
        if note is not None:
            note(self, reader.cstring().decode("utf-8", "replace"))
        return frame.raw

    def _set_client_encoding(self, value: str) -> None:
        self.client_encoding = value

    def _set_server_encoding(self, value: str) -> None:
        self.server_encoding = value

    def _set_standard_conforming_strings(self, value: str) -> None:
        self.standard_conforming_strings = value == "on"

    @property
    def sql_codec(self) -> SqlCodec:
        """How the server reads this client's query text now (see `proxy.ddl.encoding`)."""
        return codec_for(self.client_encoding, self.server_encoding)

    def set_upstream_handler(self, code: int, handler: FrameHandler | None) -> None:
        """Look at upstream messages of type `code` (None: stop looking, just relay them)."""
        _set_handler(self._upstream_handlers, code, handler)
        if self.relaying and not (self._holds or self._filters):
            self._upstream_framer.set_keep(self._upstream_handlers)

    def set_client_handler(self, code: int, handler: FrameHandler | None) -> None:
        """Look at client messages of type `code` (None: stop looking, just relay them)."""
        if handler is not None and code not in self._client_handlers:
            self._client_keep_grew = True
        _set_handler(self._client_handlers, code, handler)
        if self.relaying:
            self._client_framer.set_keep(self._client_handlers)

    def set_client_peek(self, code: int, peek: Callable[[memoryview], bool]) -> None:
        """Let `peek` decide, before any copy, whether a whole client message needs its handler."""
        self._client_framer.peek[code] = peek

    def inject(self, sql: str, done: Callable[[list[list[bytes | None]]], None]) -> None:
        """Run `sql` on the upstream where the client cannot see it; `done` gets its rows.

        Only at a point where the client waits for nothing (its ReadyForQuery is held back).
        """

        def finish(frames: list[Frame]) -> list[Frame]:
            done(_rows(frames, self.log))
            return []  # the whole reply is the proxy's own

        self.hold_upstream(finish)
        self._write_upstream(messages.query(sql))

    def hold_upstream(self, release: Callable[[list[Frame]], list[Frame]]) -> None:
        """Hold every upstream message up to the next ReadyForQuery, then relay what `release`
        returns of them (the proxy's own replies taken out)."""
        self._holds.append(_Hold(release))
        self._upstream_framer.set_keep((), keep_all=True)

    def filter_upstream(self, group_filter: GroupFilter) -> None:
        """Pass every upstream message through `group_filter` until it is done."""
        self._filters.append(group_filter)
        self._upstream_framer.set_keep((), keep_all=True)

    def _feed_filters(self, items: list[Frame | memoryview]) -> list[Frame | memoryview]:
        out: list[Frame | memoryview] = []
        for item in items:
            if not self._filters or not isinstance(item, Frame):
                # Spans are the rest of a message that began before the filter: nothing held
                # precedes them.
                out.append(item)
                continue
            group_filter = self._filters[0]
            out += group_filter.feed(item)
            if group_filter.done:
                self._filters.popleft()
                out += group_filter.flush()
                if not (self._filters or self._holds):
                    self._upstream_framer.set_keep(self._upstream_handlers)
        return out

    def _feed_hold(self, items: list[Frame | memoryview]) -> list[Frame | memoryview]:
        """Collect held replies; at ReadyForQuery, release them and return the items after it."""
        released: list[Frame | memoryview] = []
        for index, item in enumerate(items):
            if not self._holds:
                return released + items[index:]
            if not isinstance(item, Frame):
                # The rest of a message that began before the hold: it precedes all held replies.
                self._write_client(bytes(item))
                continue
            hold = self._holds[0]
            hold.frames.append(item)
            if item.type == Backend.READY_FOR_QUERY:
                self._holds.popleft()
                if not (self._holds or self._filters):
                    self._upstream_framer.set_keep(self._upstream_handlers)
                released += hold.release(hold.frames)
        return released

    def _strip_channel_binding(self, frame: Frame) -> bytes:
        """Never offer SCRAM-SHA-256-PLUS: the client's TLS link is not the upstream's.

        A client that sees PLUS on a plaintext link refuses it, and one that binds to the proxy's
        certificate would fail at the upstream. A libpq client on a TLS link to the proxy still
        answers with the gs2 flag `y`, which an upstream on TLS rejects as a downgrade: with TLS on
        both hops, use auth_query mode, where each hop has its own exchange.
        """
        request = messages.decode_authentication(frame.body)
        if request.request != AuthRequest.SASL:
            return frame.raw
        offered = scram.sasl_mechanisms(request.data)
        kept = [name for name in offered if name != _SCRAM_PLUS]
        if kept == offered:
            return frame.raw
        return messages.authentication(AuthRequest.SASL, scram.encode_sasl_mechanisms(kept))

    # -- cancel -------------------------------------------------------------------------------

    def _forward_cancel(self, raw: bytes) -> None:
        """Send the cancel key, verbatim, to the upstream; Postgres checks it and never answers."""
        self.ctx.stats.cancel_requests += 1
        if self.client is not None:
            self.client.close()
        if not self.ctx.cancel_limiter.allow():
            self.log.warning("cancel request dropped: rate limit exceeded")
            return
        asyncio.get_running_loop().create_task(_send_cancel(self.ctx, raw, self.log))

    # -- ending -------------------------------------------------------------------------------

    @property
    def state_name(self) -> str:
        if not self.relaying:
            return "startup"
        if self.busy:
            return "active"
        return _STATE_NAMES.get(self.status, "idle")

    def drain(self) -> None:
        """Close once the client is idle outside a transaction (now, if it already is)."""
        self._draining = True
        if not self.relaying or (not self.busy and self.status == TransactionStatus.IDLE):
            self.terminate()

    def terminate(self) -> None:
        """End the session the way a Postgres shutdown ends a connection."""
        self.fail(
            ProxyError(
                "terminating connection due to administrator command",
                sqlstate="57P01",
                severity="FATAL",
            )
        )

    def fail(self, error: ProxyError) -> None:
        """Tell the client why, then close both sides."""
        if self._closing:
            return
        self._closing = True
        if self.client is not None and not self.client.is_closing():
            self._write_client(messages.error_response(error))
            self.client.close()
        if self.upstream is not None:
            if self.busy:
                self.upstream.abort()  # a backend in a query would read no Terminate; see connection_lost
            else:
                self.upstream.write(messages.terminate())
                self.upstream.close()

    def _abort(self) -> None:
        self._closing = True
        if self.client is not None:
            self.client.abort()
        if self.upstream is not None:
            self.upstream.abort()

    def write_client(self, data: bytes) -> None:
        self._write_client(data)

    def _write_client(self, data: bytes) -> None:
        if self.client is not None and not self.client.is_closing():
            self.ctx.stats.bytes_to_clients += len(data)
            self.client.write(data)

    def _write_upstream(self, data: bytes) -> None:
        if self.upstream is not None:
            self.upstream.write(data)


_Login = Callable[[Session, messages.StartupMessage, bytes], Awaitable[None]]
_LOGINS: Final[dict[str, _Login]] = {
    "passthrough": Session._login_passthrough,
    "password": Session._login_password,
    "auth_query": Session._login_auth_query,
}


def _on_tls(transport: asyncio.BaseTransport) -> bool:
    return transport.get_extra_info("ssl_object") is not None


def _set_handler(handlers: dict[int, FrameHandler], code: int, handler: FrameHandler | None) -> None:
    if handler is None:
        handlers.pop(code, None)
    else:
        handlers[code] = handler


_PARAMETER_NOTES: Final[dict[str, Callable[[Session, str], None]]] = {
    "client_encoding": Session._set_client_encoding,
    "server_encoding": Session._set_server_encoding,
    "standard_conforming_strings": Session._set_standard_conforming_strings,
}

# Postgres's parse_bool: case-insensitive, and any unambiguous prefix of true/false/yes/no.
_TRUE_WORDS: Final = ("true", "yes")
_TRUE_EXACT: Final = frozenset({"on", "1"})


def physical_replication(value: str | None) -> bool:
    """Whether startup parameter `replication` opens a physical walsender, which runs no SQL.

    `true`/`on`/`yes`/`1` do; `database` opens a logical walsender, which runs SQL and so
    is guarded; `false`/`off`/`no`/`0` and no parameter at all open an ordinary session. A
    value Postgres refuses ends the login anyway: guarding it costs nothing.
    """
    if value is None:
        return False
    word = value.lower()  # "database" is compared exactly: any other case is refused
    return word in _TRUE_EXACT or any(w.startswith(word) for w in _TRUE_WORDS if word)


class _Hold:
    """Upstream replies held back until ReadyForQuery (see `Session.hold_upstream`)."""

    __slots__ = ("frames", "release")

    def __init__(self, release: Callable[[list[Frame]], list[Frame]]) -> None:
        self.release = release
        self.frames: list[Frame] = []


def _rows(frames: list[Frame], log: logging.LoggerAdapter[logging.Logger]) -> list[list[bytes | None]]:
    for frame in frames:
        if frame.type == Backend.ERROR_RESPONSE:
            log.warning("injected query failed: %s", messages.decode_error_fields(frame.body).get("M"))
    return [messages.decode_data_row(f.body) for f in frames if f.type == Backend.DATA_ROW]


async def _send_cancel(ctx: ProxyContext, raw: bytes, log: logging.LoggerAdapter[logging.Logger]) -> None:
    target = ctx.target
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(target.host, target.port), target.connect_timeout
        )
    except (OSError, TimeoutError) as exc:
        log.warning("could not forward cancel request to %s: %s", target.address, exc)
        return
    writer.write(raw)
    try:
        await writer.drain()
        # Postgres closes the connection once it has processed the request.
        await asyncio.wait_for(writer.wait_closed(), target.connect_timeout)
    except (OSError, TimeoutError):
        pass
    finally:
        writer.close()
