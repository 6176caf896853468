"""Which waiting consumer a supplier serves next: weighted fair queueing over consumers.

A supplier that cannot keep up has several consumers long-polling it. Served first-come,
the order depends on request timing: a consumer whose long-poll expires just before the
supplier produces re-enters the queue last, again and again, while a consumer that asks
again right after each batch keeps getting them (measured: one consumer of a scarce item
got 1 batch in 27 while two others took the rest, and the final product starved).

Here the waiting consumers are served by start-time fair queueing: each consumer has a
virtual time that a batch advances by ``1 / weight``; the waiting consumer with the
smallest one goes first, and a consumer that was not waiting rejoins at the current
virtual time (no credit for the time it did not ask). With equal weights that is round
robin over the consumers that are waiting. It is work-conserving and fair among the
waiting: a consumer that needs little (its buffer is full, its output is blocked) stops
waiting and leaves its share to the others. Weights (fos_agent.runtime.shares) are the consumers'
shares of the catalog's need for this item, so a consumer type that takes four times as
many batches per final product gets four times the share while all are hungry.

Equal start tags (every consumer at the start of a run, or after a pause) are ordered by
priority, highest first, then by name: the priority is how many stages the consumer's
output still has to pass to reach a final product, so the supplier's first batches go to
the consumers whose products take longest to matter (earliest deadline first; a 300-agent
chain made its first product 7 cycles after the pipeline fill when a scarce source's first
batches went out by name, issue 14). Only ties are reordered, so the fairness bound holds
whatever the priorities: two consumers waiting all along have had services within one
batch each of their weights' proportion (tested).
Pure bookkeeping, no I/O; the RequestBatch handler asks ``turn`` before taking a batch and
reports ``served``.
"""

from __future__ import annotations

from collections.abc import Mapping

from fos_agent.core.engine import Signal


class FairShare:
    def __init__(self) -> None:
        self._vtime = 0.0  # start tag of the last service
        self._finish: dict[str, float] = {}  # consumer -> virtual time its share reached
        self._weights: dict[str, float] = {}  # consumer -> weight (default 1)
        self._priority: dict[str, float] = {}  # consumer -> tie-break, highest first (0)
        self._waiting: dict[str, int] = {}  # consumer -> its requests waiting now
        self.changed = Signal()  # a waiter left, was served, or weights moved: look again

    def set_weights(self, weights: Mapping[str, float],
                    priorities: Mapping[str, float] | None = None) -> None:
        """Relative shares of the consumers (missing or non-positive: 1) and, if given,
        their priorities among equal start tags (missing: 0)."""
        self._weights = {c: w for c, w in weights.items() if w > 0}
        if priorities is not None:
            self._priority = dict(priorities)
        self.changed.notify()

    def priority(self, consumer: str) -> float:
        return self._priority.get(consumer, 0.0)

    def weight(self, consumer: str) -> float:
        return self._weights.get(consumer, 1.0)

    def enter(self, consumer: str) -> None:
        self._waiting[consumer] = self._waiting.get(consumer, 0) + 1

    def leave(self, consumer: str) -> None:
        left = self._waiting.get(consumer, 0) - 1
        if left > 0:
            self._waiting[consumer] = left
        else:
            self._waiting.pop(consumer, None)
        self.changed.notify()

    def _start(self, consumer: str) -> float:
        return max(self._finish.get(consumer, 0.0), self._vtime)

    def served(self, consumer: str) -> None:
        start = self._start(consumer)
        self._vtime = start
        self._finish[consumer] = start + 1.0 / self.weight(consumer)
        self.changed.notify()

    def ahead_of(self, consumer: str) -> int:
        """Waiting consumers to serve before ``consumer`` (smallest start tag first; ties
        by highest priority, then by name, for determinism)."""
        mine = self._order(consumer)
        return sum(1 for c in self._waiting if c != consumer and self._order(c) < mine)

    def _order(self, consumer: str) -> tuple[float, float, str]:
        return (self._start(consumer), -self.priority(consumer), consumer)

    def turn(self, consumer: str, available: int) -> bool:
        """May ``consumer`` take a batch when ``available`` batches are queued?"""
        return available > 0 and self.ahead_of(consumer) < available

    def waiting(self) -> dict[str, int]:
        return dict(self._waiting)
