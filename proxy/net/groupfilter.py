"""Taking the replies of injected call groups out of the upstream stream, as they pass.

A call group (Parse/Bind/Execute/Close/Close of one `CALL ... proxy_tag => <tag>`) injected in
the middle of a client's batch answers ParseComplete, BindComplete, the tag notice,
CommandComplete, CloseComplete, CloseComplete; or, when the call fails, ParseComplete,
BindComplete and an ErrorResponse that the client must see. `GroupFilter` finds them by the tag
notice, holding back at most the two messages before it and releasing everything else at
once: unlike holding a whole batch until ReadyForQuery, a client that sends Flush and waits for
its replies (asyncpg, libpq's pipeline mode) is never kept waiting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from proxy.protocol import messages
from proxy.protocol.codes import Backend
from proxy.protocol.framer import Frame

_HEAD: Final = (Backend.PARSE_COMPLETE, Backend.BIND_COMPLETE)
_TAIL: Final = 3  # CommandComplete, CloseComplete, CloseComplete after the tag notice


class GroupFilter:
    def __init__(self, groups: int, tag: str, tag_sqlstate: str, failed: Callable[[Frame], bool]) -> None:
        self.remaining = groups
        self._tag = tag
        self._tag_sqlstate = tag_sqlstate
        self._failed = failed  # whether an ErrorResponse was raised by an injected call
        self._stash: list[Frame] = []
        self._dropping = 0

    @property
    def done(self) -> bool:
        return self.remaining <= 0 and self._dropping == 0

    def feed(self, frame: Frame) -> list[Frame]:
        """The messages to relay now, in order, for one more upstream message."""
        if self._dropping:
            self._dropping -= 1
            return []
        code = frame.type
        if code in _HEAD:
            self._stash.append(frame)
            return [self._stash.pop(0)] if len(self._stash) > 2 else []
        if code == Backend.NOTICE_RESPONSE and self._is_tag(frame):
            self.remaining -= 1
            self._dropping = _TAIL
            return self._release(drop_head=True)
        if code == Backend.ERROR_RESPONSE and self._failed(frame):
            self.remaining = 0  # the server skips the rest of the batch: no more groups run
            return [*self._release(drop_head=True), frame]
        if code == Backend.READY_FOR_QUERY:
            self.remaining = 0  # an earlier error skipped the groups
        return [*self._release(drop_head=False), frame]

    def flush(self) -> list[Frame]:
        """Whatever is still held (the filter is being removed)."""
        return self._release(drop_head=False)

    def _release(self, *, drop_head: bool) -> list[Frame]:
        stash, self._stash = self._stash, []
        if drop_head and tuple(f.type for f in stash[-2:]) == _HEAD:
            stash = stash[:-2]
        return stash

    def _is_tag(self, frame: Frame) -> bool:
        fields = messages.decode_error_fields(frame.body)
        return fields.get("C") == self._tag_sqlstate and fields.get("M") == self._tag
