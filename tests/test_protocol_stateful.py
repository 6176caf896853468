"""The batch protocol under a lossy, duplicating, reordering network with crash-restarts.

Built from the public kit (fos_agent.testing / fos_agent.testing.machine): 2 suppliers and
2 consumers of one item, and a 3-level chain. Safety after every step, convergence (I2, I3)
after healing. HYPOTHESIS_PROFILE=deep runs 50x the examples.
"""

from __future__ import annotations

import os

from hypothesis import settings

from fos_agent.testing import chain
from fos_agent.testing.machine import BatchProtocolMachine

DEEP = 50 if os.environ.get("HYPOTHESIS_PROFILE") == "deep" else 1


class TwoByTwo(BatchProtocolMachine):
    """S1, S2 supply wood to C1, C2; consumers move between suppliers; one may leave."""


class Chain(BatchProtocolMachine):
    """wood -> frame -> window: the frame makers are consumers and suppliers at once."""

    topology_factory = staticmethod(chain)


TestTwoByTwo = TwoByTwo.TestCase
TestTwoByTwo.settings = settings(max_examples=200 * DEEP, stateful_step_count=150)

TestChain = Chain.TestCase
TestChain.settings = settings(max_examples=100 * DEEP, stateful_step_count=150)
