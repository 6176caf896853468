"""A supplier's fair share of its waiting consumers (the rule: fos_agent.rules.share), with
a Signal that wakes the held long-polls whenever someone's turn may have moved.

Pure bookkeeping lives in fos_agent.rules.share; this subclass only adds ``changed``,
notified after each call that can change whose turn it is (a waiter left or was served,
the weights or the plan moved), so the RequestBatch handler looks again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from fos_agent.core.engine import Signal
from fos_agent.rules import share
from fos_agent.rules.share import MAX_WAIT_MS, PLAN_SKIPS, LongPoll

__all__ = ["MAX_WAIT_MS", "PLAN_SKIPS", "FairShare", "LongPoll"]


class FairShare(share.FairShare):
    def __init__(self) -> None:
        super().__init__()
        self.changed = Signal()  # a waiter left, was served, or weights moved: look again

    def set_weights(self, weights: Mapping[str, float],
                    priorities: Mapping[str, float] | None = None) -> None:
        super().set_weights(weights, priorities)
        self.changed.notify()

    def set_plan(self, consumers: Iterable[str]) -> None:
        super().set_plan(consumers)
        self.changed.notify()

    def leave(self, consumer: str) -> None:
        super().leave(consumer)
        self.changed.notify()

    def served(self, consumer: str) -> None:
        super().served(consumer)
        self.changed.notify()
