"""Which waiting consumer a supplier serves next: weighted fair queueing over consumers.

A supplier that cannot keep up has several consumers long-polling it. Served first-come,
the order depends on request timing: a consumer whose long-poll expires just before the
supplier produces re-enters the queue last, again and again, while a consumer that asks
again right after each batch keeps getting them (one consumer of a scarce item could get
1 batch in 27 while two others took the rest, and the final product starved).

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
batches went out by name). Only ties are reordered, so the fairness bound holds
whatever the priorities: two consumers waiting all along have had services within one
batch each of their weights' proportion (tested).
A first-article plan (fos_agent.runtime.fillplan) goes before all of this: while the
consumer its next planned batch is for is waiting, that consumer is served first, and a
batch served to a consumer takes its earliest planned batch off the plan. A planned
consumer that is not waiting when ``PLAN_SKIPS`` batches in a row go to others is
dropped from the plan (it is down, full, or sees another flow): a plan is advice for
the fill, never a reason to hold goods back. Planned services count in the virtual
times like any other, so fair shares resume from where the fill left them.

The long-poll (``LongPoll``, one per held RequestBatch at the supplier) is where the
decision is taken: while batches are queued but it is not this consumer's turn it waits
(for the queue or the turns to change); otherwise the request is stepped through the
protocol, and a BatchUnavailable answer keeps it waiting for the queue to change until
its deadline, a stop, a new flow or its consumer's EndWait.

Contract (the driver, fos_agent.net.service, or a simulation): open a ``LongPoll`` when a
RequestBatch comes (it enters the consumer among the waiting); loop: ``wait_turn``:
wait up to ``remaining`` for the outbound queue or the turns (any call of ``set_weights``,
``set_plan``, ``leave``, ``served``) to change, and look again; else step the request;
a batch sent: ``served``, answer; BatchUnavailable: ``wait_more`` says how long to wait
for the queue to change (None: answer BatchUnavailable now); always ``close`` at the end
(the consumer leaves the waiting).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping

SETTLE_S = 1.0  # a moved flow is asked about once it has been quiet this long ...
MAX_DELAY_S = 5.0  # ... or this long after it first moved
PLAN_SKIPS = 3  # batches in a row served to others before a planned consumer is dropped
MAX_WAIT_MS = 60_000  # the longest long-poll a supplier holds, whatever the request asks


class FairShare:
    """The waiting consumers of one supplier and their virtual times (module docstring)."""

    def __init__(self) -> None:
        self._vtime = 0.0  # start tag of the last service
        self._finish: dict[str, float] = {}  # consumer -> virtual time its share reached
        self._weights: dict[str, float] = {}  # consumer -> weight (default 1)
        self._priority: dict[str, float] = {}  # consumer -> tie-break, highest first (0)
        self._waiting: dict[str, int] = {}  # consumer -> its requests waiting now
        self._plan: deque[str] = deque()  # first-article plan: consumers of our next batches
        self._skips = 0  # batches in a row served to others while the plan's head waited not

    def set_weights(self, weights: Mapping[str, float],
                    priorities: Mapping[str, float] | None = None) -> None:
        """Relative shares of the consumers (missing or non-positive: 1) and, if given,
        their priorities among equal start tags (missing: 0)."""
        self._weights = {c: w for c, w in weights.items() if w > 0}
        if priorities is not None:
            self._priority = dict(priorities)

    def set_plan(self, consumers: Iterable[str]) -> None:
        """The consumers of this supplier's next batches in the first-article plan, in
        order (replaces any plan left)."""
        self._plan = deque(consumers)
        self._skips = 0

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


class LongPoll:
    """One RequestBatch held at its supplier: when to take a batch for it, and how long
    to keep it waiting (module docstring, contract)."""

    def __init__(self, fair: FairShare, consumer: str, wait_ms: int, flow_version: int,
                 now: float) -> None:
        self.fair = fair
        self.consumer = consumer
        self.holding = wait_ms > 0  # a long-poll, not a quick request
        self.flow_version = flow_version  # the supplier's flow when it came
        self.deadline = now + min(wait_ms, MAX_WAIT_MS) / 1000.0
        fair.enter(consumer)

    def remaining(self, now: float, ended: bool = False) -> float:
        """Seconds left to wait (0 once its consumer ended the wait)."""
        return 0.0 if ended else self.deadline - now

    def wait_turn(self, available: int, now: float, closing: bool, ended: bool) -> bool:
        """With ``available`` batches queued: wait (True) while consumers served longer
        ago are waiting, they take them first; False: step the request now. ``closing``:
        the supplier is stopping; ``ended``: the consumer ended the wait (EndWait)."""
        return (available > 0 and self.remaining(now, ended) > 0 and not closing
                and not self.fair.turn(self.consumer, available))

    def served(self) -> None:
        """A batch went to this request."""
        self.fair.served(self.consumer)

    def wait_more(self, now: float, closing: bool, flow_version: int, ended: bool
                  ) -> float | None:
        """Nothing for it now (BatchUnavailable): seconds to wait for the queue to change,
        or None to answer BatchUnavailable at once (the deadline passed, the supplier is
        stopping, its flow moved, or the consumer ended the wait). A new flow ends the
        long-poll answered: the consumer, which sees the same flow, waits for that answer
        rather than cancelling the call (a cancelled call can leave a batch sent that very
        moment in transit)."""
        remaining = self.remaining(now, ended)
        if remaining <= 0 or closing or flow_version != self.flow_version or ended:
            return None
        return remaining

    def close(self) -> None:
        """The request is answered or gone: its consumer waits no more (for it)."""
        self.fair.leave(self.consumer)


def settle_wait(moved_at: float, now: float, settle_s: float = SETTLE_S,
                max_delay_s: float = MAX_DELAY_S) -> float | None:
    """The consumers' weights are refreshed from the coordinator's catalog when the flow
    moves, once it has been quiet for ``settle_s`` and at most ``max_delay_s`` after it
    first moved (``moved_at``): a large chain coming up moves every agent's flow many
    times in its first seconds, and asking each time (the whole catalog, parsed and
    weighed) cost a large part of the start-up CPU. Weights only order waiting
    consumers, so a late answer costs nothing but that order.

    Returns how long to wait for the flow to move again (when it does not within that
    time, it has settled: ask now; when it does, call again), or None: the longest delay
    is over, ask now."""
    left = moved_at + max_delay_s - now
    return min(settle_s, left) if left > 0 else None
