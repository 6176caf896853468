"""The request-id memory of the replicated state: the outcomes of the last accepted request
ids, oldest first, as an immutable mapping whose `remember` costs O(1). Pure.

Semantics are those of an insertion-ordered dict: `remember` adds an id that is not in the
memory at the end and then forgets the oldest ids while there are more than ``limit``; so
the memory is always a window of consecutive entries of the sequence of remembered ids (an
id in the memory is never added again: ``apply`` answers it from the memory instead).

Versions share one append-only log: a version is a window ``[start, end)`` of it. Adding to
the newest version appends to the log in place and moves the window; the old version's
window, and so everything an old state answers, is unchanged. Adding to a version that is
not the log's newest (a branch: the same state applied twice, in tests) copies its window
into a new log, as does compacting a log that has grown to twice the limit; both copy at
most ``limit`` entries, so the amortised cost stays O(1). The tail of a log is claimed with
one atomic ``dict.setdefault`` before appending, so two threads extending the same version
at once cannot both append.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from fos_raft.state.commands import Outcome

# Compaction threshold: a log holds at most this many times the limit (plus slack).
_LOG_FACTOR = 2
_LOG_SLACK = 16


class _Log:
    """Shared by the versions of one chain; only ever appended to."""

    __slots__ = ("claims", "ids", "outcomes", "where")

    def __init__(self, items: Iterable[tuple[str, Outcome]]) -> None:
        self.ids: list[str] = []
        self.outcomes: list[Outcome] = []
        # id -> its positions in the log, ascending (an id forgotten and remembered again
        # has several; at most one of them lies in any version's window)
        self.where: dict[str, list[int]] = {}
        self.claims: dict[int, object] = {}
        for request_id, outcome in items:
            self.append(request_id, outcome)

    def append(self, request_id: str, outcome: Outcome) -> None:
        self.where.setdefault(request_id, []).append(len(self.ids))
        self.outcomes.append(outcome)
        self.ids.append(request_id)  # last: a reader never sees an id without its outcome


class RequestMemory(Mapping[str, Outcome]):
    """One immutable version of the memory: request id -> outcome, oldest first."""

    __slots__ = ("_end", "_log", "_start")

    def __init__(self, items: Iterable[tuple[str, Outcome]] = ()) -> None:
        log = _Log(dict(items).items())  # a dict's order and its distinct keys
        self._log, self._start, self._end = log, 0, len(log.ids)

    @classmethod
    def _view(cls, log: _Log, start: int, end: int) -> RequestMemory:
        view = cls.__new__(cls)
        view._log, view._start, view._end = log, start, end
        return view

    def _position(self, request_id: str) -> int | None:
        positions = self._log.where.get(request_id)
        if positions is None:
            return None
        for position in reversed(positions):
            if position < self._end:
                return position if position >= self._start else None
        return None

    def lookup(self, request_id: str) -> Outcome | None:
        """The remembered outcome of ``request_id``, or None."""
        position = self._position(request_id)
        return None if position is None else self._log.outcomes[position]

    def remember(self, request_id: str, outcome: Outcome, limit: int) -> RequestMemory:
        """A new version with ``request_id`` added last (it must not be in this one) and the
        oldest ids forgotten down to ``limit``; this version is unchanged."""
        log, start, end = self._log, self._start, self._end
        token = object()
        if len(log.ids) < _LOG_FACTOR * limit + _LOG_SLACK and (
            log.claims.setdefault(end, token) is token
        ):
            log.append(request_id, outcome)
            return RequestMemory._view(log, max(start, end + 1 - limit), end + 1)
        # a branch, or a full log: a new log from this window
        fresh = _Log(zip(log.ids[start:end], log.outcomes[start:end], strict=True))
        fresh.append(request_id, outcome)
        size = len(fresh.ids)
        return RequestMemory._view(fresh, max(0, size - limit), size)

    def __getitem__(self, request_id: str) -> Outcome:
        outcome = self.lookup(request_id)
        if outcome is None:
            raise KeyError(request_id)
        return outcome

    def __contains__(self, request_id: object) -> bool:
        return isinstance(request_id, str) and self._position(request_id) is not None

    def __len__(self) -> int:
        return self._end - self._start

    def __iter__(self) -> Iterator[str]:
        return iter(self._log.ids[self._start:self._end])

    def pairs(self) -> list[tuple[str, Outcome]]:
        """(id, outcome), oldest first."""
        start, end = self._start, self._end
        return list(zip(self._log.ids[start:end], self._log.outcomes[start:end], strict=True))

    def __repr__(self) -> str:
        return f"RequestMemory({dict(self.pairs())!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return RequestMemory, (self.pairs(),)
