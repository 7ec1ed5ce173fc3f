"""The migration guard wired into one session's relay.

`GuardLink` owns the frame handlers the guard needs on both directions of a `Session`:

- client `Query` / `Parse` (and `Bind`, while named DDL statements exist): the prefilter, then
  `SessionGuard.inspect`; a replacement is written instead of the client's bytes;
- upstream `NoticeResponse` / `CommandComplete` / `ErrorResponse`, only while something is
  expected of them: the command-tag notices of rewritten ELECTRIC statements are swallowed and
  their tags put into the following CommandComplete; errors the proxy raised lose their
  PL/pgSQL context and get their position back; and the transaction's outcome is followed;
- upstream `ReadyForQuery`: at login the session's real search_path is read (one injected query
  the client never sees); at each transaction's end the guard is told whether it committed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Final

from proxy.catalog.cache import CatalogWatcher
from proxy.ddl import rewrite
from proxy.ddl.guard import SessionGuard
from proxy.ddl.prefilter import may_need_parse
from proxy.protocol import messages
from proxy.protocol.codes import Backend, Frontend, TransactionStatus
from proxy.protocol.framer import Frame

if TYPE_CHECKING:
    from proxy.net.session import Session

logger = logging.getLogger(__name__)

_LOGIN_QUERY: Final = "SELECT pg_catalog.current_setting('search_path'), pg_catalog.current_user()"
_REJECT_STATEMENT: Final = b"electric_proxy_rejected"
# ErrorResponse fields kept when the proxy's own raised error is cleaned up: PL/pgSQL adds a
# context (W) and its source location (F, L, R), which say nothing about the client's statement.
_CLEAN_FIELDS: Final = frozenset("SVCMDHstc")


class GuardLink:
    def __init__(self, session: Session, guard: SessionGuard, watcher: CatalogWatcher | None) -> None:
        self.session = session
        self.guard = guard
        self.watcher = watcher
        self.expect_tags = 0
        self.expect_errors = 0
        self._pending_tag: str | None = None
        self._failed = False
        self._logged_in = False

    def install(self) -> None:
        s = self.session
        s.set_client_handler(Frontend.QUERY, self.on_query)
        s.set_client_handler(Frontend.PARSE, self.on_parse)

    # -- client side ----------------------------------------------------------------------------

    def on_query(self, frame: Frame) -> bytes | None:
        sql = messages.decode_query(frame.body)
        if not may_need_parse(sql):
            return frame.raw
        self.session.ctx.stats.statements_inspected["simple"] += 1
        inspection = self.guard.inspect(sql.decode("utf-8", "surrogateescape"))
        self._after_inspection()
        if inspection.replacement is None:
            return frame.raw
        self._expect(inspection.tags, inspection.rejected is not None)
        return messages.query(inspection.replacement)

    def on_parse(self, frame: Frame) -> bytes | None:
        parse = messages.decode_parse(frame.body)
        if not may_need_parse(parse.query):
            return frame.raw
        self.session.ctx.stats.statements_inspected["extended"] += 1
        text = parse.query.decode("utf-8", "surrogateescape")
        inspection = self.guard.inspect(text, name=parse.name or None)
        self._after_inspection()
        if inspection.replacement is None:
            return frame.raw
        self._expect(inspection.tags, inspection.rejected is not None)
        sql = inspection.replacement.encode("utf-8", "surrogateescape")
        return messages.encode_parse(parse.name, sql, parse.param_types)

    def on_bind(self, frame: Frame) -> bytes | None:
        """A named DDL statement executed again is judged again: its tables may have changed."""
        target = messages.decode_bind_target(frame.body)
        error = self.guard.recheck(target.statement) if target.statement else None
        if error is None:
            return frame.raw
        self._expect(0, True)
        sql = rewrite.raising_statement(error).encode()
        return messages.encode_parse(_REJECT_STATEMENT, sql) + messages.encode_bind(
            target.portal, _REJECT_STATEMENT
        )

    def _after_inspection(self) -> None:
        if self.guard.prepared:
            self.session.set_client_handler(Frontend.BIND, self.on_bind)
        self._refresh_upstream()

    def _expect(self, tags: int, error: bool) -> None:
        self.expect_tags += tags
        self.expect_errors += int(error)
        self._refresh_upstream()

    # -- upstream side --------------------------------------------------------------------------

    def _refresh_upstream(self) -> None:
        """Look at notices, completions and errors only while something depends on them."""
        watching = bool(self.expect_tags or self.expect_errors or self._pending_tag or self.guard.in_flight)
        s = self.session
        s.set_upstream_handler(Backend.NOTICE_RESPONSE, self.on_notice if watching else None)
        s.set_upstream_handler(Backend.COMMAND_COMPLETE, self.on_complete if watching else None)
        s.set_upstream_handler(Backend.ERROR_RESPONSE, self.on_error if watching else None)

    def on_notice(self, frame: Frame) -> bytes | None:
        if self.expect_tags:
            fields = messages.decode_error_fields(frame.body)
            if fields.get("C") == rewrite.TAG_SQLSTATE:
                self.expect_tags -= 1
                self._pending_tag = fields.get("M", "")
                return None
        return frame.raw

    def on_complete(self, frame: Frame) -> bytes | None:
        if self._pending_tag is not None:
            tag, self._pending_tag = self._pending_tag, None
            self._refresh_upstream()
            return messages.command_complete(tag)
        if messages.decode_command_tag(frame.body) == "ROLLBACK":
            self._failed = True
        return frame.raw

    def on_error(self, frame: Frame) -> bytes | None:
        self._failed = True
        self._pending_tag = None
        if not self.expect_errors:
            return frame.raw
        fields = messages.decode_error_fields(frame.body)
        ours, position = rewrite.marker_position(fields.get("n", ""))
        if not ours:
            return frame.raw
        self.expect_errors -= 1
        self.session.ctx.stats.guard_decisions[("rejected", fields.get("C", ""))] += 1
        clean = {k: v for k, v in fields.items() if k in _CLEAN_FIELDS}
        if position is not None:
            clean["P"] = str(position)
        return messages.encode_error_fields(clean)

    def on_ready(self, frame: Frame) -> bytes | None:
        """Called by the session for every ReadyForQuery before it is forwarded."""
        if not self._logged_in:
            self._logged_in = True
            self.session.inject(_LOGIN_QUERY, lambda rows: self._learned_path(rows, frame.raw))
            return None  # held until the login query is answered
        status = frame.raw[5]
        if status == TransactionStatus.FAILED:
            self._failed = True
        elif status == TransactionStatus.IDLE:
            self._end_transaction()
        return frame.raw

    def _learned_path(self, rows: list[list[bytes | None]], ready: bytes) -> None:
        if rows and rows[0][0] is not None:
            user = rows[0][1].decode() if rows[0][1] is not None else None
            self.guard.learn_search_path(rows[0][0].decode(), user)
        self.session.write_client(ready)

    def _end_transaction(self) -> None:
        committed = not self._failed
        self._failed = False
        if self.guard.end_transaction(committed) and self.watcher is not None:
            # Until the watcher has reloaded, the session keeps its own committed changes.
            task = asyncio.get_running_loop().create_task(self.watcher.refresh())
            task.add_done_callback(self._caught_up)
        self._refresh_upstream()

    def _caught_up(self, task: asyncio.Task[object]) -> None:
        if not task.cancelled() and task.exception() is None:
            self.guard.catalog_caught_up()
        elif not task.cancelled():
            logger.warning("catalog refresh after a migration failed: %s", task.exception())
