"""Which waiting consumer a supplier serves next: the one it served least recently.

A supplier that cannot keep up has several consumers long-polling it. Served first-come,
the order depends on request timing: a consumer whose long-poll expires just before the
supplier produces re-enters the queue last, again and again, while a consumer that asks
again right after each batch keeps getting them (measured: one consumer of a scarce item
got 1 batch in 27 while two others took the rest, and the final product starved).
Round robin over the consumers that are waiting (least recently served first) is max-min
fair: a consumer that needs little (its buffer is full, its output is blocked) stops
waiting and leaves its share to the others, so the supplier's whole output goes where it
is used. Pure bookkeeping, no I/O; the RequestBatch handler asks ``turn`` before taking a
batch and reports ``served``.
"""

from __future__ import annotations

from fos_agent.engine import Signal


class FairShare:
    def __init__(self) -> None:
        self._serial = 0
        self._last_served: dict[str, int] = {}  # consumer -> serial of its last service
        self._waiting: dict[str, int] = {}  # consumer -> its requests waiting now
        self.changed = Signal()  # a waiter left or was served: the others look again

    def enter(self, consumer: str) -> None:
        self._waiting[consumer] = self._waiting.get(consumer, 0) + 1

    def leave(self, consumer: str) -> None:
        left = self._waiting.get(consumer, 0) - 1
        if left > 0:
            self._waiting[consumer] = left
        else:
            self._waiting.pop(consumer, None)
        self.changed.notify()

    def served(self, consumer: str) -> None:
        self._serial += 1
        self._last_served[consumer] = self._serial
        self.changed.notify()

    def ahead_of(self, consumer: str) -> int:
        """Waiting consumers to serve before ``consumer`` (least recently served first;
        never served counts as longest ago; ties broken by name, for determinism)."""
        mine = (self._last_served.get(consumer, 0), consumer)
        return sum(1 for c in self._waiting
                   if c != consumer and (self._last_served.get(c, 0), c) < mine)

    def turn(self, consumer: str, available: int) -> bool:
        """May ``consumer`` take a batch when ``available`` batches are queued?"""
        return available > 0 and self.ahead_of(consumer) < available

    def waiting(self) -> dict[str, int]:
        return dict(self._waiting)
