"""The migration guard and the migration capture wired into one session's relay.

`GuardLink` owns the frame handlers they need on both directions of a `Session`:

- client `Query` / `Parse` (and `Bind`, while named DDL statements exist): the prefilter, then
  `SessionGuard.inspect`; a replacement is written instead of the client's bytes. In a simple
  query each DDL statement is followed by its capture call and each framework version write by
  its note; in the extended protocol the calls for a batch go just before its `Sync`, and their
  replies are taken out of the batch's replies (`capture.drop_injected_tail`);
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
from proxy.ddl import capture, rewrite, versions
from proxy.ddl.classify import Kind, Statement
from proxy.ddl.guard import Inspection, SessionGuard
from proxy.ddl.prefilter import may_need_look, may_need_parse, may_write_version
from proxy.ddl.versions import VersionWrite
from proxy.errors import ProtocolError
from proxy.protocol import messages
from proxy.protocol.codes import Backend, Frontend, TransactionStatus
from proxy.protocol.framer import Frame

if TYPE_CHECKING:
    from proxy.net.session import Session

logger = logging.getLogger(__name__)

_LOGIN_QUERY: Final = "SELECT pg_catalog.current_setting('search_path'), pg_catalog.current_user()"
_REJECT_STATEMENT: Final = b"electric_proxy_rejected"
_CAPTURE_STATEMENT: Final = b"electric_proxy_capture"
CAPTURE_VERSION: Final = 2  # the catalog schema version that brings electric.capture
# ErrorResponse fields kept when the proxy's own raised error is cleaned up: PL/pgSQL adds a
# context (W) and its source location (F, L, R), which say nothing about the client's statement.
_CLEAN_FIELDS: Final = frozenset("SVCMDHstc")


def _call_group(call: str) -> bytes:
    """Parse/Bind/Execute/Close/Close of one injected CALL, under names of the proxy's own."""
    name = _CAPTURE_STATEMENT
    return (
        messages.encode_parse(name, call.encode("utf-8", "surrogateescape"))
        + messages.encode_bind(name, name)
        + messages.message(Frontend.EXECUTE, name + b"\0" + b"\0\0\0\0")
        + messages.message(Frontend.CLOSE, b"S" + name + b"\0")
        + messages.message(Frontend.CLOSE, b"P" + name + b"\0")
    )


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
        self.meta: dict[str, object] = {}
        self._positions: list[tuple[int, int]] = []  # (rewritten offset, shift) of the query in flight
        self._ddl_statements: dict[bytes, tuple[Statement, ...]] = {}  # prepared name -> DDL to record
        self._portals: dict[bytes, bytes] = {}  # portal -> prepared statement name, for those
        self._batch: list[Statement] = []  # executed in this extended batch, to record at Sync
        self._after_success: list[Statement] = []  # non-transactional DDL: recorded after it ran
        self._version_statements: dict[bytes, messages.Parse] = {}  # prepared writes of version tables
        self._batch_versions: list[VersionWrite] = []
        self._pending_version: VersionWrite | None = None  # written before its migration (Prisma)
        self._tx_captured = False  # this transaction already holds a capture call
        self._watching = False  # whether N, C and E are being looked at
        self._capturing = False

    def install(self) -> None:
        s = self.session
        s.set_client_handler(Frontend.QUERY, self.on_query)
        s.set_client_handler(Frontend.PARSE, self.on_parse)
        s.set_client_peek(Frontend.QUERY, self.wants_query)
        s.set_client_peek(Frontend.PARSE, self.wants_parse)

    # -- the prefilter, before any copy -----------------------------------------------------------

    def wants_query(self, message: memoryview) -> bool:
        return may_need_look(message[5:-1], self._version_tables)

    def wants_parse(self, message: memoryview) -> bool:
        if self._ddl_statements or self._version_statements:
            return True  # a Parse may replace a statement the capture follows
        _, sql = messages.parse_names(bytes(message))
        return may_need_look(sql, self._version_tables)

    @property
    def _version_tables(self) -> frozenset[bytes]:
        return self.session.ctx.versions.table_names if self.capturing else frozenset()

    # -- client side ----------------------------------------------------------------------------

    def on_query(self, frame: Frame) -> bytes | None:
        sql = messages.query_sql(frame.raw)
        if not may_need_look(sql, self._version_tables):  # the peek's test, for split messages
            return frame.raw
        self.session.ctx.stats.statements_inspected["simple"] += 1
        text = sql.decode("utf-8", "surrogateescape")
        inspection = self.guard.inspect(text)
        self._after_inspection()
        if inspection.rejected is not None:
            self._expect(0, True)
            return messages.query(inspection.replacement or "")
        replacement, tags = self._compose(text, inspection)
        if replacement is None:
            return frame.raw
        self._expect(tags, False)
        return messages.query(replacement)

    def _compose(self, sql: str, inspection: Inspection) -> tuple[str | None, int]:
        """The client's string with ELECTRIC statements replaced, a capture after each DDL and a
        version note after each version write; and how many tag notices to expect back.

        Also notes how positions shift, so a server error points into the client's own text.
        """
        pieces: list[str] = []
        cursor = tags = 0
        self._positions = []
        late = self._late(inspection.ddl)
        for stmt in inspection.statements:
            new, added = self._replacement(stmt, late)
            if new is None:
                continue
            tags += added
            pieces += [sql[cursor : stmt.start], new]
            self._positions.append((sum(len(p) for p in pieces), len(new) - len(stmt.text)))
            cursor = stmt.start + len(stmt.text)
        if not pieces:
            return None, 0
        pieces.append(sql[cursor:])
        return "".join(pieces), tags

    def _replacement(self, stmt: Statement, late: bool) -> tuple[str | None, int]:
        """What one statement becomes (None: itself) and the tag notices that adds."""
        capturing = self.capturing
        notes = self._version_notes(stmt, late=late) if capturing else []
        if notes:
            return stmt.text + "".join("; " + note for note in notes), len(notes)
        if not stmt.ddl:
            return None, 0
        new, tags = stmt.text, 0
        if stmt.electric:
            new, tags = rewrite.electric_call(stmt.electric, self.guard.catalog_schema), 1
        if capturing and not stmt.transactional:
            self._after_success.append(stmt)  # recorded once it has run, on its own
        elif capturing:
            new += "; " + capture.capture_call([stmt], self.meta, schema=self.guard.catalog_schema)
            tags += 1
            self._tx_captured = True
            self.session.ctx.stats.statements_captured += 1
            if self._pending_version is not None:
                new += "; " + self._note(self._pending_version)
                tags += 1
                self._pending_version = None
        return (new, tags) if new != stmt.text else (None, 0)

    def _version_notes(self, stmt: Statement, *, late: bool) -> list[str]:
        """note_version calls for a statement that writes a framework's version table."""
        if stmt.kind not in (Kind.DML, Kind.OTHER):
            return []
        calls = []
        for write in self.session.ctx.versions.from_sql(stmt.text):
            if write.version == versions.ALL_VERSIONS:
                continue  # TRUNCATE or DELETE of every row: no version to record
            if self._before_ddl(write) and not self._tx_captured:
                self._pending_version = write  # labels the next migration of this session
            else:
                calls.append(self._note(write, late=late))
        return calls

    def _note(
        self, write: VersionWrite, proxy_tag: str | None = capture.SWALLOW_TAG, *, late: bool = False
    ) -> str:
        version = write.version if write.action == "apply" else f"{write.version} (reverted)"
        schema = self.guard.catalog_schema
        return capture.note_version_call(
            write.framework, version, schema=schema, proxy_tag=proxy_tag, late=late
        )

    def _late(self, ddl_alongside: bool) -> bool:
        """A version written in a transaction without DDL of its own belongs to the migration
        that committed just before on this session (Django records an unapply after its
        transaction); one written with or after DDL belongs to that DDL's transaction."""
        return not (ddl_alongside or self._tx_captured)

    @staticmethod
    def _before_ddl(write: VersionWrite) -> bool:
        """Written before its migration runs: Prisma's row, golang-migrate's dirty mark."""
        return write.before_ddl or bool(write.dirty)

    def on_parse(self, frame: Frame) -> bytes | None:
        name, sql = messages.parse_names(frame.raw)
        if self._ddl_statements:
            self._ddl_statements.pop(name, None)
        if self._version_statements:
            self._version_statements.pop(name, None)
        if may_write_version(sql, self._version_tables):
            self._version_statements[name] = messages.decode_parse(frame.body)
            self._watch_batch()
            return frame.raw
        if not may_need_parse(sql):
            return frame.raw
        parse = messages.decode_parse(frame.body)
        self.session.ctx.stats.statements_inspected["extended"] += 1
        text = parse.query.decode("utf-8", "surrogateescape")
        inspection = self.guard.inspect(text, name=parse.name or None)
        if inspection.rejected is None and inspection.ddl and self.capturing:
            self._ddl_statements[parse.name] = tuple(s for s in inspection.statements if s.ddl)
            self._watch_batch()
        self._after_inspection()
        if inspection.replacement is None:
            return frame.raw
        self._expect(inspection.tags, inspection.rejected is not None)
        sql = inspection.replacement.encode("utf-8", "surrogateescape")
        return messages.encode_parse(parse.name, sql, parse.param_types)

    def on_bind(self, frame: Frame) -> bytes | None:
        """A named DDL statement executed again is judged again: its tables may have changed."""
        target = messages.decode_bind_target(frame.body)
        version_parse = self._version_statements.get(target.statement)
        if version_parse is not None:
            self._bind_version(version_parse, frame)
        if target.statement in self._ddl_statements:
            self._portals[target.portal] = target.statement
        else:
            self._portals.pop(target.portal, None)
        error = self.guard.recheck(target.statement) if target.statement else None
        if error is None:
            return frame.raw
        self._expect(0, True)
        sql = rewrite.raising_statement(error).encode()
        return messages.encode_parse(_REJECT_STATEMENT, sql) + messages.encode_bind(
            target.portal, _REJECT_STATEMENT
        )

    @property
    def capturing(self) -> bool:
        """Record migrations once the database's catalog has the history tables (for good:
        an installed catalog version never goes back)."""
        if not self._capturing:
            snapshot = self.watcher.snapshot if self.watcher is not None else None
            self._capturing = snapshot is not None and (snapshot.version or 0) >= CAPTURE_VERSION
        return self._capturing

    def _bind_version(self, parse: messages.Parse, frame: Frame) -> None:
        try:
            bind = versions.decode_bind(frame.body)
        except ProtocolError:
            return  # Postgres will refuse the Bind itself
        sql = parse.query.decode("utf-8", "surrogateescape")
        writes = self.session.ctx.versions.from_statement(
            sql, bind.params, bind.param_formats, parse.param_types
        )
        for write in writes:
            if write.version == versions.ALL_VERSIONS:
                continue  # TRUNCATE or DELETE of every row: no version to record
            if self._before_ddl(write) and not self._tx_captured:
                self._pending_version = write
            else:
                self._batch_versions.append(write)

    def _watch_batch(self) -> None:
        """Follow Bind/Execute/Sync while some prepared statement holds DDL to record."""
        s = self.session
        s.set_client_handler(Frontend.BIND, self.on_bind)
        s.set_client_handler(Frontend.EXECUTE, self.on_execute)
        s.set_client_handler(Frontend.SYNC, self.on_sync)

    def on_execute(self, frame: Frame) -> bytes | None:
        portal = messages.Reader(frame.body).cstring()
        statement = self._portals.get(portal)
        if statement is not None:
            for stmt in self._ddl_statements.get(statement, ()):
                (self._batch if stmt.transactional else self._after_success).append(stmt)
        return frame.raw

    def on_sync(self, frame: Frame) -> bytes | None:
        """Record this batch's DDL in its own transaction: the calls go just before Sync."""
        schema = self.guard.catalog_schema
        calls: list[str] = []
        if self._batch:
            calls.append(capture.capture_call(self._batch, self.meta, schema=schema, proxy_tag=None))
            self.session.ctx.stats.statements_captured += len(self._batch)
            self._tx_captured = True
            if self._pending_version is not None:
                self._batch_versions.append(self._pending_version)
                self._pending_version = None
        late = self._late(bool(calls))
        for write in self._batch_versions:
            calls.append(self._note(write, proxy_tag=None, late=late))
        self._batch, self._batch_versions = [], []
        if not calls:
            return frame.raw
        self.session.hold_upstream(capture.injected_tail_dropper(len(calls)))
        return b"".join(_call_group(call) for call in calls) + frame.raw

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
        if watching is self._watching:
            return  # ReadyForQuery calls this on every query: change nothing when nothing changed
        self._watching = watching
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
            return messages.command_complete(tag) if tag != capture.SWALLOW_TAG else None
        if messages.decode_command_tag(frame.body) == "ROLLBACK":
            self._failed = True
        return frame.raw

    def on_error(self, frame: Frame) -> bytes | None:
        self._failed = True
        self._pending_tag = None
        self._after_success.clear()
        if not self.expect_errors:
            return self._client_position(frame)
        fields = messages.decode_error_fields(frame.body)
        ours, position = rewrite.marker_position(fields.get("n", ""))
        if not ours:
            return frame.raw
        self.expect_errors -= 1
        self.session.ctx.stats.guard_rejections[fields.get("C", "")] += 1
        clean = {k: v for k, v in fields.items() if k in _CLEAN_FIELDS}
        if position is not None:
            clean["P"] = str(position)
        return messages.encode_error_fields(clean)

    def _client_position(self, frame: Frame) -> bytes | None:
        """An error in a string the proxy lengthened: point into the client's own text."""
        if not self._positions:
            return frame.raw
        fields = messages.decode_error_fields(frame.body)
        position = fields.get("P", "")
        if not position.isdigit():
            return frame.raw
        offset = int(position)
        shift = sum(s for at, s in self._positions if at < offset)
        fields["P"] = str(max(1, offset - shift))
        return messages.encode_error_fields(fields)

    def on_ready(self, frame: Frame) -> bytes | None:
        """Called by the session for every ReadyForQuery before it is forwarded."""
        if not self._logged_in:
            self._logged_in = True
            self.session.inject(_LOGIN_QUERY, lambda rows: self._learned_path(rows, frame.raw))
            return None  # held until the login query is answered
        status = frame.raw[5]
        if status == TransactionStatus.IDLE and not self._unsettled():
            return frame.raw  # the common case, every query: nothing to settle
        self._positions = []
        if status == TransactionStatus.FAILED:
            self._failed = True
        elif status == TransactionStatus.IDLE:
            self._tx_captured = False
            self._end_transaction()
        if self._after_success and status != TransactionStatus.FAILED:
            # CREATE INDEX CONCURRENTLY and kin cannot share a transaction: record them now
            # that they succeeded, in a transaction of their own, before the client goes on.
            statements, self._after_success = self._after_success, []
            call = capture.capture_call(
                statements, self.meta, schema=self.guard.catalog_schema, proxy_tag=None
            )
            self.session.inject(call, lambda _rows: self.session.write_client(frame.raw))
            return None
        return frame.raw

    def _unsettled(self) -> bool:
        guard = self.guard
        return bool(
            self._failed
            or self._positions
            or self._tx_captured
            or self._after_success
            or guard.in_flight
            or guard.search_path is not guard.session_path
        )

    def _learned_path(self, rows: list[list[bytes | None]], ready: bytes) -> None:
        if rows and rows[0][0] is not None:
            user = rows[0][1].decode() if rows[0][1] is not None else None
            self.guard.learn_search_path(rows[0][0].decode(), user)
        self.session.write_client(ready)

    def _end_transaction(self) -> None:
        committed = not self._failed
        self._failed = False
        generation = self.guard.end_transaction(committed)
        if generation is not None and self.watcher is not None:
            # Until the watcher has reloaded, every session sees these changes in the overlay.
            task = asyncio.get_running_loop().create_task(self.watcher.refresh())
            task.add_done_callback(lambda t: self._caught_up(t, generation))
        self._refresh_upstream()

    def _caught_up(self, task: asyncio.Task[object], generation: int) -> None:
        if not task.cancelled() and task.exception() is None:
            self.guard.shared.expire(generation)
        elif not task.cancelled():
            logger.warning("catalog refresh after a migration failed: %s", task.exception())
