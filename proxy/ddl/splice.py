"""Edit a client's SQL string while remembering how to map server positions back into it."""

from __future__ import annotations


class Splice:
    """Insertions and replacements applied left to right to one SQL string."""

    def __init__(self, sql: str) -> None:
        self.sql = sql
        self._pieces: list[str] = []
        self._cursor = 0
        self._length = 0
        # (end of an edit in the new string, how much longer the new string got there)
        self.shifts: list[tuple[int, int]] = []

    def replace(self, start: int, end: int, new: str) -> None:
        assert start >= self._cursor, "edits must come in order"
        self._emit(self.sql[self._cursor : start])
        self._emit(new)
        self.shifts.append((self._length, len(new) - (end - start)))
        self._cursor = end

    def insert(self, at: int, new: str) -> None:
        self.replace(at, at, new)

    def result(self) -> str | None:
        """The edited string, or None when nothing was edited."""
        if not self.shifts:
            return None
        return "".join([*self._pieces, self.sql[self._cursor :]])

    def _emit(self, text: str) -> None:
        self._pieces.append(text)
        self._length += len(text)


def client_position(shifts: list[tuple[int, int]], position: int) -> int:
    """A 1-based position in the edited string, as a position in the client's own string."""
    shift = sum(s for at, s in shifts if at < position)
    return max(1, position - shift)
