"""The migration guard and the migration capture wired into one session's relay.

`GuardLink` owns the frame handlers they need on a `Relay` (the session, seen through the
few methods this module uses, so the two modules do not import each other):

- client `Query` / `Parse` (and `Bind`, `Execute`, `Sync` while an extended batch holds DDL or
  version writes): the prefilter, then the text guard's `Plan`, applied here;
- upstream `NoticeResponse` and `ErrorResponse` (rare: looked at always) and `CommandComplete`
  (only right after a swallowed tag notice): tag notices of injected calls are swallowed and
  their tags put into the following CommandComplete; errors the proxy raised lose their
  PL/pgSQL context and get their position back;
- upstream `ReadyForQuery`: the end of each message's work, and of each transaction.

How a plan is applied:
- simple protocol: the statements' checks go right before each statement (`guard_check`),
  ELECTRIC statements become their calls, and one capture call follows each run of consecutive
  DDL statements, so the record is written before any COMMIT later in the string;
- extended protocol: a statement with checks is wrapped (`run_checked`), so the check runs at
  every execution of a prepared statement, whatever happened between; the capture calls of a
  batch go before its Sync, or before a simple Query that arrives first (it may COMMIT).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from typing import Final, Protocol

from proxy.ddl import capture, rewrite, versions
from proxy.ddl.capture_state import MigrationState
from proxy.ddl.checks import Check
from proxy.ddl.classify import Statement, undecodable
from proxy.ddl.encoding import SqlCodec
from proxy.ddl.guard import Plan, SessionGuard
from proxy.ddl.prefilter import may_need_look, may_need_parse, may_write_version
from proxy.ddl.splice import Splice, client_position
from proxy.ddl.versions import VersionRecognizer, VersionWrite
from proxy.errors import ProtocolError
from proxy.metrics import Stats
from proxy.net.groupfilter import GroupFilter
from proxy.protocol import messages
from proxy.protocol.codes import Backend, Frontend, TransactionStatus
from proxy.protocol.framer import Frame

FrameHandler = Callable[[Frame], bytes | None]

_GROUP_NAMES: Final = itertools.count()
# ErrorResponse fields kept when the proxy's own raised error is cleaned up: PL/pgSQL adds a
# context (W) and its source location (F, L, R), which say nothing about the client's statement.
_CLEAN_FIELDS: Final = frozenset("SVCMDHstc")
# In the CONTEXT of a refusal raised by the database-side guard (routines/guard.sql).
_DATABASE_GUARD: Final = "._ddlguard_refuse("
# First words of statements that end a transaction or undo part of it.
_TX_CONTROL: Final = re.compile(
    rb"\s*(?:commit|end|rollback|abort|prepare\s+transaction|release|savepoint)\b", re.IGNORECASE
)
# Tag of call groups injected in the middle of a client's batch (a capture flushed before a
# simple Query, a check before a Bind): their replies are found again by this notice.
_GROUP_TAG: Final = "electric-proxy:group"


class Relay(Protocol):
    """What the guard needs of the session that relays the bytes."""

    def set_client_handler(self, code: int, handler: FrameHandler | None) -> None: ...
    def set_upstream_handler(self, code: int, handler: FrameHandler | None) -> None: ...
    def set_client_peek(self, code: int, peek: Callable[[memoryview], bool]) -> None: ...
    def hold_upstream(self, release: Callable[[list[Frame]], list[Frame]]) -> None: ...
    def filter_upstream(self, group_filter: GroupFilter) -> None: ...
    def inject(self, sql: str, done: Callable[[list[list[bytes | None]]], None]) -> None: ...
    def write_client(self, data: bytes) -> None: ...

    @property
    def sql_codec(self) -> SqlCodec: ...

    @property
    def status(self) -> int: ...

    @property
    def chunk_idle(self) -> bool: ...

    @property
    def chunk_serial(self) -> int: ...

    @property
    def chunk_head(self) -> Frame | memoryview | None: ...

    @property
    def client_encoding(self) -> str: ...

    @property
    def standard_conforming_strings(self) -> bool: ...


def _call_group(call: str) -> bytes:
    """Parse/Bind/Execute/Close/Close of one injected CALL, under names of the proxy's own.

    A fresh name each time: when the call fails, the server skips the Closes (everything up to
    Sync), and a reused name would then collide with the statement left behind.
    """
    name = b"electric_proxy_%d" % next(_GROUP_NAMES)
    return (
        messages.encode_parse(name, call.encode("utf-8", "surrogateescape"))
        + messages.encode_bind(name, name)
        + messages.message(Frontend.EXECUTE, name + b"\0" + b"\0\0\0\0")
        + messages.message(Frontend.CLOSE, b"S" + name + b"\0")
        + messages.message(Frontend.CLOSE, b"P" + name + b"\0")
    )


class ExtendedBatch:
    """The extended protocol's objects that matter to capture, tracked as the server tracks
    them: prepared statements holding DDL or version writes, the portals bound to them, and
    what ran since the last Sync."""

    def __init__(self) -> None:
        self.ddl: dict[bytes, tuple[Statement, ...]] = {}  # prepared name -> its DDL
        self.version_writes: dict[bytes, messages.Parse] = {}  # prepared name -> its Parse
        # Prepared while nothing was electrified, so not wrapped: checked before each Bind.
        self.unchecked: dict[bytes, tuple[Check, ...]] = {}
        self.portals: dict[bytes, bytes] = {}  # portal -> prepared name, for DDL statements
        self.executed: list[Statement] = []  # transactional DDL run since the last Sync
        self.versions: list[VersionWrite] = []  # version writes bound since the last Sync
        # Statements and portals that end a transaction or undo part of it (COMMIT, ROLLBACK TO,
        # ...): the capture of DDL run before them must come first.
        self.tx_control: set[bytes] = set()
        self.tx_portals: set[bytes] = set()

    @property
    def tracking(self) -> bool:
        return bool(self.ddl or self.version_writes or self.unchecked)

    def forget(self, name: bytes) -> None:
        self.ddl.pop(name, None)
        self.version_writes.pop(name, None)
        self.unchecked.pop(name, None)
        self.tx_control.discard(name)


class GuardLink:
    def __init__(
        self,
        relay: Relay,
        guard: SessionGuard,
        *,
        capturing: Callable[[], bool],
        checking: Callable[[], bool],
        versions: VersionRecognizer,
        stats: Stats,
        meta: dict[str, object],
    ) -> None:
        self.relay = relay
        self.guard = guard
        self.versions = versions
        self.stats = stats
        self.meta = meta
        self._capturing = capturing
        self._checking = checking
        self.migration = MigrationState()
        self.batch = ExtendedBatch()
        self._shifts: list[tuple[int, int]] = []  # position map of the simple query in flight
        self._pending_tag: str | None = None  # a tag notice was swallowed: its CommandComplete
        # Tag notices can come: for the simple query in flight, and at every execution of these
        # prepared statements. CommandComplete is watched only while one can.
        self._query_tagged = False
        self._tagged: set[bytes] = set()
        self._encoding_unsure = False  # client_encoding may have changed since the last report
        self._head_of_idle_chunk = False  # the Query being judged opened an idle chunk
        self._deferrable_chunk = -1  # the chunk whose first message was a DDL Parse

    def install(self) -> None:
        r = self.relay
        r.set_client_handler(Frontend.QUERY, self.on_query)
        r.set_client_handler(Frontend.PARSE, self.on_parse)
        r.set_client_peek(Frontend.QUERY, self.wants_query)
        r.set_client_peek(Frontend.PARSE, self.wants_parse)
        r.set_upstream_handler(Backend.NOTICE_RESPONSE, self.on_notice)
        r.set_upstream_handler(Backend.ERROR_RESPONSE, self.on_error)

    @property
    def capturing(self) -> bool:
        return self._capturing()

    @property
    def checking(self) -> bool:
        """Whether the catalog has the procedures that run the text guard's checks."""
        return self._checking()

    @property
    def schema(self) -> str:
        return self.guard.catalog_schema

    # -- the prefilter, before any copy -----------------------------------------------------

    def wants_query(self, message: memoryview) -> bool:
        if self.batch.executed or self.migration.deferred or self.batch.tracking:
            return True  # every Query counts while capture waits on the batch
        return may_need_look(message[5:-1], self._version_tables)

    def wants_parse(self, message: memoryview) -> bool:
        if self.batch.tracking or self._tagged or self.migration.deferred:
            return True  # a Parse may replace a statement the capture follows
        _, sql = messages.parse_names(bytes(message))
        return may_need_look(sql, self._version_tables)

    @property
    def _version_tables(self) -> frozenset[bytes]:
        return self.versions.table_names if self.capturing else frozenset()

    # -- simple protocol ----------------------------------------------------------------------

    def on_query(self, frame: Frame) -> bytes | None:
        flush = self._flush_batch() if self.batch.executed else b""
        sql = messages.query_sql(frame.raw)
        if not may_need_look(sql, self._version_tables):  # the peek's test, for split messages
            deferred = self._take_deferred()
            if deferred:
                return flush + self._prefixed(deferred, sql, [])
            return flush + frame.raw if flush else frame.raw
        self.stats.statements_inspected["simple"] += 1
        self._head_of_idle_chunk = self._opens_idle_chunk(frame)
        self._deferrable_chunk = -1  # a Query in the chunk: its Sync's status may not be its own
        text, plan = self._inspect(sql)
        if plan.rejected is not None:
            return flush + messages.query(self._encoded(rewrite.raising_statement(plan.rejected)))
        # More DDL in the same transaction joins the deferred run; anything else goes after it.
        joins = text is not None and self.capturing and self._may_defer(plan.statements)
        deferred = "" if joins else self._take_deferred()
        replacement = self._compose(text, plan) if text is not None else None
        if deferred:
            body = self._encoded(replacement) if replacement is not None else sql
            return flush + self._prefixed(deferred, body, self._shifts)
        if replacement is None:
            return flush + frame.raw if flush else frame.raw
        self._query_tagged = True
        self._watch_completions()
        return flush + messages.query(self._encoded(replacement))

    def _take_deferred(self) -> str:
        """The capture calls of DDL deferred from earlier Queries of this transaction."""
        statements = self.migration.deferred
        if not statements:
            return ""
        self.migration.deferred = []
        return "".join(call + ";\n" for call in self._capture(statements))

    def _prefixed(self, calls: str, body: bytes, shifts: list[tuple[int, int]]) -> bytes:
        """A Query running `calls` first, then the client's (possibly edited) text `body`."""
        self._shifts = [(len(calls), len(calls))] + [(at + len(calls), shift) for at, shift in shifts]
        self._query_tagged = True
        self._watch_completions()
        return messages.query(self._encoded(calls) + body)

    def _encoded(self, sql: str) -> bytes:
        """`sql` in the session's client encoding. What the proxy adds is ASCII or the client's
        own text, so this cannot fail; UTF-8 is only a last resort."""
        encoded = self.relay.sql_codec.encode(sql)
        return encoded if encoded is not None else sql.encode("utf-8", "replace")

    def _inspect(self, sql: bytes, *, prepared: bool = False) -> tuple[str | None, Plan]:
        """The client's text, read as the server reads it, and the guard's plan for it. Text that
        cannot be read in the session's encoding is judged as unreadable."""
        relay = self.relay
        # After a statement that may change client_encoding and before the server has said so
        # (it reports at ReadyForQuery), only ASCII reads the same in both encodings.
        unsure = self._encoding_unsure and not sql.isascii()
        text = None if unsure else relay.sql_codec.decode(sql)
        if text is None:
            return None, self.guard.judge((undecodable(sql, relay.client_encoding),), prepared)
        scs = relay.standard_conforming_strings
        plan = self.guard.inspect(text, prepared=prepared, standard_conforming_strings=scs)
        if any(s.may_change_client_encoding for s in plan.statements):
            self._encoding_unsure = True
        return text, plan

    def _compose(self, sql: str, plan: Plan) -> str | None:
        """The client's string with checks before statements, ELECTRIC statements replaced, one
        capture call after each run of DDL, and a version note after each version write."""
        splice = Splice(sql)
        capturing = self.capturing
        run: list[Statement] = []
        late = self.migration.late(plan.ddl)
        statements = plan.statements
        for index, stmt in enumerate(statements):
            checks = plan.checks[index] if plan.checks and self.checking else ()
            if checks:
                splice.insert(stmt.start, rewrite.guard_check_call(checks, self.schema) + ";")
            end = stmt.start + len(stmt.text)
            if stmt.electric:
                splice.replace(stmt.start, end, rewrite.electric_call(stmt.electric, self.schema))
            after = self._version_notes(stmt, late=late) if capturing else []
            if capturing and stmt.ddl and not stmt.transactional:
                self.migration.after_success.append(stmt)  # recorded once it has run, on its own
            elif capturing and stmt.ddl:
                run.append(stmt)
            following = statements[index + 1] if index + 1 < len(statements) else None
            if run and following is None and not after and self._may_defer(statements):
                self.migration.deferred += run  # captured in front of the client's next message
                self._watch_batch()  # ... whatever protocol it uses
                run = []
            if run and (following is None or not _joins_run(following) or after):
                after = [*self._capture(run), *after]
                run = []
            if after:
                # After a newline: a statement that ends in a `--` comment must not swallow it.
                splice.insert(end, "".join("\n;" + call for call in after))
        self._shifts = splice.shifts
        return splice.result()

    def _may_defer(self, statements: tuple[Statement, ...]) -> bool:
        """Whether this Query's DDL may be captured in front of the client's next message: it
        runs inside a transaction block that it cannot end (every statement is transactional
        DDL), and nothing was in flight before it, so the status is this Query's own."""
        return (
            self.relay.status == TransactionStatus.IN_TRANSACTION
            and self._head_of_idle_chunk
            and all(_joins_run(s) for s in statements)
        )

    def _opens_idle_chunk(self, frame: Frame) -> bool:
        """Whether nothing of the client's was in flight before `frame`: the transaction status
        of the last ReadyForQuery is then the one it runs in."""
        relay = self.relay
        return relay.chunk_idle and frame is relay.chunk_head

    def _capture(self, statements: list[Statement], proxy_tag: str | None = capture.SWALLOW_TAG) -> list[str]:
        """The capture call of `statements`, and the note of a version that waited for it."""
        call = capture.capture_call(statements, self.meta, schema=self.schema, proxy_tag=proxy_tag)
        self.stats.statements_captured += len(statements)
        pending = self.migration.captured()
        return [call] if pending is None else [call, self._note(pending, proxy_tag)]

    def _version_notes(self, stmt: Statement, *, late: bool) -> list[str]:
        """note_version calls for a statement that writes a framework's version table."""
        if stmt.ddl or stmt.electric:
            return []
        calls = []
        for write in self.versions.from_sql(stmt.text):
            if self.migration.hold(write):
                continue  # labels the next migration of this session
            calls.append(self._note(write, late=late))
        return calls

    def _note(
        self, write: VersionWrite, proxy_tag: str | None = capture.SWALLOW_TAG, *, late: bool = False
    ) -> str:
        version = write.version if write.action == "apply" else f"{write.version} (reverted)"
        return capture.note_version_call(
            write.framework, version, schema=self.schema, proxy_tag=proxy_tag, late=late, meta=self.meta
        )

    # -- extended protocol --------------------------------------------------------------------

    def _inject_groups(self, calls: list[str]) -> bytes:
        """Call groups for the middle of a client's batch; their replies are taken out as they
        pass (see `groupfilter`)."""
        if calls:
            self.relay.filter_upstream(
                GroupFilter(len(calls), _GROUP_TAG, rewrite.TAG_SQLSTATE, _failed_group)
            )
        return b"".join(_call_group(call) for call in calls)

    def on_parse(self, frame: Frame) -> bytes | None:
        name, sql = messages.parse_names(frame.raw)
        batch = self.batch
        if batch.tracking or batch.tx_control:
            batch.forget(name)
        if _TX_CONTROL.match(sql):
            batch.tx_control.add(name)
        if name in self._tagged:
            self._tagged.discard(name)
            self._watch_completions()
        if may_write_version(sql, self._version_tables):
            batch.version_writes[name] = messages.decode_parse(frame.body)
            self._watch_batch()
            return frame.raw
        if not may_need_parse(sql):
            return frame.raw
        parse = messages.decode_parse(frame.body)
        self.stats.statements_inspected["extended"] += 1
        text, plan = self._inspect(parse.query, prepared=True)
        if plan.rejected is not None:
            return self._reparse(parse, rewrite.raising_statement(plan.rejected))
        if text is None:
            return frame.raw
        if plan.ddl and self.capturing and self._opens_idle_chunk(frame):
            self._deferrable_chunk = self.relay.chunk_serial
        if plan.ddl and self.capturing:
            batch.ddl[parse.name] = tuple(s for s in plan.statements if s.ddl)
            self._watch_batch()
        replacement = self._wrapped(parse.name, text, plan)
        if replacement is None:
            return frame.raw
        self._tagged.add(parse.name)
        self._watch_completions()
        return self._reparse(parse, replacement)

    def _wrapped(self, name: bytes, text: str, plan: Plan) -> str | None:
        """A Parse holds one statement: an ELECTRIC call, or DDL run behind its checks while
        tables are electrified (otherwise its checks wait for its Binds)."""
        if len(plan.statements) != 1:
            return None  # Postgres refuses several statements in a Parse itself
        stmt = plan.statements[0]
        if stmt.electric:
            return rewrite.electric_call(stmt.electric, self.schema)
        checks = plan.checks[0] if plan.checks else ()
        if not (checks and stmt.transactional and self.checking):
            return None
        if self.guard.electrified():
            return rewrite.run_checked_call(checks, text, stmt.tag, self.schema)
        self.batch.unchecked[name] = checks
        self._watch_batch()
        return None

    def _reparse(self, parse: messages.Parse, sql: str) -> bytes:
        return messages.encode_parse(parse.name, self._encoded(sql), parse.param_types)

    def _watch_batch(self, watching: bool = True) -> None:
        """Follow Bind/Execute/Sync while some prepared statement holds DDL or a version write;
        once none does, the extended protocol goes back to the relay's fast path."""
        r = self.relay
        r.set_client_handler(Frontend.BIND, self.on_bind if watching else None)
        r.set_client_handler(Frontend.EXECUTE, self.on_execute if watching else None)
        r.set_client_handler(Frontend.SYNC, self.on_sync if watching else None)

    def on_bind(self, frame: Frame) -> bytes | None:
        target = messages.decode_bind_target(frame.body)
        batch = self.batch
        version_parse = batch.version_writes.get(target.statement)
        if version_parse is not None:
            self._bind_version(version_parse, frame)
        if target.statement in batch.ddl:
            batch.portals[target.portal] = target.statement
        else:
            batch.portals.pop(target.portal, None)
        if target.statement in batch.tx_control:
            batch.tx_portals.add(target.portal)
        else:
            batch.tx_portals.discard(target.portal)
        checks = batch.unchecked.get(target.statement)
        if checks and self.guard.electrified():
            # Tables were electrified since the Parse: check before this execution.
            call = rewrite.guard_check_call(checks, self.schema, proxy_tag=_GROUP_TAG)
            return self._inject_groups([call]) + frame.raw
        return frame.raw

    def _bind_version(self, parse: messages.Parse, frame: Frame) -> None:
        try:
            bind = versions.decode_bind(frame.body)
        except ProtocolError:
            return  # Postgres will refuse the Bind itself
        sql = self.relay.sql_codec.decode(parse.query)
        if sql is None:
            return
        for write in self.versions.from_statement(sql, bind.params, bind.param_formats, parse.param_types):
            if write.version == versions.ALL_VERSIONS or self.migration.hold(write):
                continue
            self.batch.versions.append(write)

    def on_execute(self, frame: Frame) -> bytes | None:
        out = self._on_execute(frame)
        portal = messages.Reader(frame.body).cstring()
        if portal in self.batch.tx_portals and (self.batch.executed or self.migration.deferred):
            # COMMIT, ROLLBACK TO, ... inside the batch: record what ran before it, first.
            return self._inject_groups(self._batch_calls(proxy_tag=_GROUP_TAG)) + (out or b"")
        return out

    def _on_execute(self, frame: Frame) -> bytes | None:
        portal = messages.Reader(frame.body).cstring()
        statement = self.batch.portals.get(portal)
        if statement is not None:
            for stmt in self.batch.ddl.get(statement, ()):
                (self.batch.executed if stmt.transactional else self.migration.after_success).append(stmt)
        return frame.raw

    def on_sync(self, frame: Frame) -> bytes | None:
        """Record this batch's DDL in its own transaction: the calls go just before Sync, unless
        the batch ran DDL alone inside a transaction block, which the next batches may join."""
        if self._may_defer_sync():
            self.migration.deferred += self.batch.executed
            self.batch.executed = []
            return frame.raw
        calls = self._batch_calls()
        if not (self.batch.tracking or self.migration.deferred):
            self.batch.portals.clear()  # Binds go unseen from here: forget what they named
            self._watch_batch(False)
        if not calls:
            return frame.raw
        self.relay.hold_upstream(capture.injected_tail_dropper(len(calls)))
        return b"".join(_call_group(call) for call in calls) + frame.raw

    def _may_defer_sync(self) -> bool:
        """Like `_may_defer`: the DDL of this batch runs inside a transaction block (the status is
        this batch's own: its DDL Parse opened a chunk sent while nothing was in flight, and no
        Query or other Sync came between), and it has no version writes to note after it."""
        batch = self.batch
        own_status = self._deferrable_chunk == self.relay.chunk_serial
        self._deferrable_chunk = -1  # the next Sync of this chunk follows this one's work
        return (
            own_status
            and bool(batch.executed)
            and not batch.versions
            and self.relay.status == TransactionStatus.IN_TRANSACTION
        )

    def _batch_calls(self, proxy_tag: str | None = None) -> list[str]:
        batch = self.batch
        calls: list[str] = []
        pending, self.migration.deferred = [*self.migration.deferred, *batch.executed], []
        if pending:
            calls += self._capture(pending, proxy_tag)
        late = self.migration.late(bool(calls))
        calls += [self._note(write, proxy_tag=proxy_tag, late=late) for write in batch.versions]
        batch.executed, batch.versions = [], []
        return calls

    def _flush_batch(self) -> bytes:
        """A simple Query inside an unsynced batch may end its transaction (`COMMIT`): record
        the batch's DDL first. The group's replies are found again by its own tag notice."""
        return self._inject_groups(self._batch_calls(proxy_tag=_GROUP_TAG))

    # -- upstream side --------------------------------------------------------------------------

    def on_notice(self, frame: Frame) -> bytes | None:
        fields = messages.decode_error_fields(frame.body)
        if fields.get("C") != rewrite.TAG_SQLSTATE:
            if _unwrap(fields):
                return messages.encode_error_fields(fields, code=Backend.NOTICE_RESPONSE)
            return frame.raw
        self._pending_tag = fields.get("M", "")
        return None

    def _watch_completions(self) -> None:
        watching = self._query_tagged or bool(self._tagged) or self._pending_tag is not None
        self.relay.set_upstream_handler(Backend.COMMAND_COMPLETE, self.on_complete if watching else None)

    def on_complete(self, frame: Frame) -> bytes | None:
        tag, self._pending_tag = self._pending_tag, None
        if tag is None:
            return frame.raw
        return messages.command_complete(tag) if tag != capture.SWALLOW_TAG else None

    def on_error(self, frame: Frame) -> bytes | None:
        self.migration.failed()
        self._pending_tag = None
        fields = messages.decode_error_fields(frame.body)
        ours, position = rewrite.marker_position(fields.get("n", ""))
        if ours:
            self.stats.guard_rejections[fields.get("C", "")] += 1
            clean = {k: v for k, v in fields.items() if k in _CLEAN_FIELDS and v}
            if position is not None:
                clean["P"] = str(position)
            return messages.encode_error_fields(clean)
        changed = _unwrap(fields)
        if _DATABASE_GUARD in fields.get("W", ""):
            # Refused by the database-side guard: counted like the text guard's refusals. Its
            # CONTEXT is kept: it tells the user that the database, not the proxy, refused.
            self.stats.guard_rejections[fields.get("C", "")] += 1
        if self._shifts and fields.get("P", "").isdigit():
            fields["P"] = str(client_position(self._shifts, int(fields["P"])))
            changed = True
        return messages.encode_error_fields(fields) if changed else frame.raw

    @property
    def wants_ready(self) -> bool:  # False: on_ready would only return the frame (the relay skips it)
        return not (self.migration.settled and not self._query_tagged and not self._encoding_unsure)

    def on_ready(self, frame: Frame) -> bytes | None:
        """Called by the session for every ReadyForQuery before it is forwarded."""
        status = frame.raw[5]
        migration = self.migration
        if status == TransactionStatus.IDLE and migration.settled and not self._query_tagged:
            self._encoding_unsure = False
            return frame.raw  # the common case, every query: nothing to settle
        self._encoding_unsure = False
        self._shifts = []
        if self._query_tagged:
            self._query_tagged = False
            self._watch_completions()
        migration.ready(status)
        statements = migration.take_after_success(status)
        if statements:
            # CREATE INDEX CONCURRENTLY and kin cannot share a transaction: record them now
            # that they succeeded, in a transaction of their own, before the client goes on.
            call = capture.capture_call(statements, self.meta, schema=self.schema, proxy_tag=None)
            self.relay.inject(call, lambda _rows: self.relay.write_client(frame.raw))
            return None
        return frame.raw


def _unwrap(fields: dict[str, str]) -> bool:
    """An error or notice from DDL that `run_checked` ran: made to look as if the DDL had run
    on its own. Returns whether anything changed."""
    if ".run_checked(" not in fields.get("W", ""):
        return False
    rewrite.unwrap_checked(fields)
    return True


def _joins_run(stmt: Statement) -> bool:
    """Whether `stmt` may share the capture call of the DDL before it."""
    return stmt.ddl and stmt.transactional


def _failed_group(frame: Frame) -> bool:
    """Whether an ErrorResponse comes from a call group the proxy injected mid-batch: its check
    (marked with the group's tag), its capture or its version note; not from the client's own
    statements, whose checks carry the plain marker."""
    fields = messages.decode_error_fields(frame.body)
    context = fields.get("W", "")
    return fields.get("n") == _GROUP_TAG or ".capture(" in context or ".note_version" in context
