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
A first-article plan (fos_agent.runtime.fillplan) goes before all of this: while the
consumer its next planned batch is for is waiting, that consumer is served first, and a
batch served to a consumer takes its earliest planned batch off the plan. A planned
consumer that is not waiting when ``PLAN_SKIPS`` batches in a row go to others is
dropped from the plan (it is down, full, or sees another flow): a plan is advice for
the fill, never a reason to hold goods back. Planned services count in the virtual
times like any other, so fair shares resume from where the fill left them.

Pure bookkeeping, no I/O; the RequestBatch handler asks ``turn`` before taking a batch and
reports ``served``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping

from fos_agent.core.engine import Signal

PLAN_SKIPS = 3  # batches in a row served to others before a planned consumer is dropped


class FairShare:
    def __init__(self) -> None:
        self._vtime = 0.0  # start tag of the last service
        self._finish: dict[str, float] = {}  # consumer -> virtual time its share reached
        self._weights: dict[str, float] = {}  # consumer -> weight (default 1)
        self._priority: dict[str, float] = {}  # consumer -> tie-break, highest first (0)
        self._waiting: dict[str, int] = {}  # consumer -> its requests waiting now
        self._plan: deque[str] = deque()  # first-article plan: consumers of our next batches
        self._skips = 0  # batches in a row served to others while the plan's head waited not
        self.changed = Signal()  # a waiter left, was served, or weights moved: look again

    def set_weights(self, weights: Mapping[str, float],
                    priorities: Mapping[str, float] | None = None) -> None:
        """Relative shares of the consumers (missing or non-positive: 1) and, if given,
        their priorities among equal start tags (missing: 0)."""
        self._weights = {c: w for c, w in weights.items() if w > 0}
        if priorities is not None:
            self._priority = dict(priorities)
        self.changed.notify()

    def set_plan(self, consumers: Iterable[str]) -> None:
        """The consumers of this supplier's next batches in the first-article plan, in
        order (replaces any plan left)."""
        self._plan = deque(consumers)
        self._skips = 0
        self.changed.notify()

    def plan(self) -> tuple[str, ...]:
        return tuple(self._plan)

    def _planned(self) -> str | None:
        """The plan's next consumer if it is waiting now."""
        if self._plan and self._plan[0] in self._waiting:
            return self._plan[0]
        return None

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
        if self._plan:
            head = self._plan[0]
            if head != consumer and head not in self._waiting:
                self._skips += 1
            if consumer in self._plan:  # its earliest planned batch is this one
                self._plan.remove(consumer)
            if head == consumer:
                self._skips = 0
            elif self._skips >= PLAN_SKIPS:
                self._plan.popleft()  # not asking: the plan moves on without it
                self._skips = 0
        start = self._start(consumer)
        self._vtime = start
        self._finish[consumer] = start + 1.0 / self.weight(consumer)
        self.changed.notify()

    def ahead_of(self, consumer: str) -> int:
        """Waiting consumers to serve before ``consumer`` (smallest start tag first; ties
        by highest priority, then by name, for determinism); the plan's next consumer,
        when it is waiting, before all of them."""
        planned = self._planned()
        if consumer == planned:
            return 0
        mine = self._order(consumer)
        return (planned is not None) + sum(
            1 for c in self._waiting
            if c != consumer and c != planned and self._order(c) < mine)

    def _order(self, consumer: str) -> tuple[float, float, str]:
        return (self._start(consumer), -self.priority(consumer), consumer)

    def turn(self, consumer: str, available: int) -> bool:
        """May ``consumer`` take a batch when ``available`` batches are queued?"""
        return available > 0 and self.ahead_of(consumer) < available

    def waiting(self) -> dict[str, int]:
        return dict(self._waiting)
