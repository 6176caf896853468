"""Virtual time: a discrete-event scheduler and the run's trace.

`Scheduler` keeps the events of a run in a heap ordered by (virtual time, sequence
number): two events due at the same instant run in the order they were scheduled, so a
run is a pure function of its inputs and its seed. `Trace` records every event as a line
and hashes the lines as they come (sha256): the same seed gives the same digest.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable
from typing import Any, Protocol


class Rng(Protocol):
    """The part of ``random.Random`` the simulation uses (the caller seeds it: this package
    never imports ``random``)."""

    def random(self) -> float: ...
    def uniform(self, a: float, b: float) -> float: ...
    def expovariate(self, lambd: float) -> float: ...


class Timer:
    """A scheduled call; ``cancel`` makes it a no-op (it stays in the heap until due)."""

    __slots__ = ("at", "cancelled")

    def __init__(self, at: float) -> None:
        self.at = at
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Scheduler:
    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, Timer | None, Callable[..., Any], tuple[Any, ...]]] = []
        self._seq = 0
        self.events_run = 0

    def at(self, when: float, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` at virtual time ``when`` (not before now)."""
        self._seq += 1
        heapq.heappush(self._heap, (max(when, self.now), self._seq, None, fn, args))

    def after(self, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        self.at(self.now + delay, fn, *args)

    def timer(self, delay: float, fn: Callable[..., Any], *args: Any) -> Timer:
        """Like ``after``, cancellable."""
        when = self.now + max(0.0, delay)
        t = Timer(when)
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, t, fn, args))
        return t

    def run_until(self, until: float) -> None:
        """Run every event due up to ``until``; the clock then reads ``until``."""
        heap = self._heap
        pop = heapq.heappop
        count = 0
        while heap and heap[0][0] <= until:
            when, _, timer, fn, args = pop(heap)
            if timer is not None and timer.cancelled:
                continue
            self.now = when
            count += 1
            fn(*args)
        self.events_run += count
        self.now = max(self.now, until)

    @property
    def pending(self) -> int:
        return len(self._heap)


class Trace:
    """Every event of a run as a line ``<time> <who> <what>``, hashed as it comes; the
    lines themselves are kept only when ``keep`` (a transcript was asked for)."""

    def __init__(self, clock: Scheduler, keep: bool = False) -> None:
        self._clock = clock
        self._hash = hashlib.sha256()
        self.keep = keep
        self.lines: list[str] = []
        self.count = 0
        self.listeners: list[Callable[[str, str, str], None]] = []

    def add(self, who: str, what: str) -> None:
        line = f"{self._clock.now:.6f} {who} {what}\n"
        self._hash.update(line.encode())
        self.count += 1
        if self.keep:
            self.lines.append(line)

    def note(self, who: str, what: str) -> None:
        """A notable event (a kill, a flow change, a suspicion): traced, and told to the
        listeners (the scenario transcripts print these)."""
        self.add(who, what)
        for listen in self.listeners:
            listen(f"{self._clock.now:.3f}", who, what)

    @property
    def digest(self) -> str:
        return self._hash.hexdigest()
