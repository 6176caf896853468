"""The batch protocol under a lossy, duplicating, reordering network with crash-restarts.

Built from the public kit (fos_agent.testing / fos_agent.testing.machine): 2 suppliers and
2 consumers of one item, and a 3-level chain. Safety after every step, convergence (I2, I3)
after healing. HYPOTHESIS_PROFILE=deep runs 50x the examples.
"""

from __future__ import annotations

import os

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import rule

from fos_agent.protocol.limits import MAX_QTY, normalize_attrs
from fos_agent.testing import chain
from fos_agent.testing.machine import BatchProtocolMachine

DEEP = 50 if os.environ.get("HYPOTHESIS_PROFILE") == "deep" else 1


class TwoByTwo(BatchProtocolMachine):
    """S1, S2 supply wood to C1, C2; consumers move between suppliers; one may leave."""


class Chain(BatchProtocolMachine):
    """wood -> frame -> window: the frame makers are consumers and suppliers at once."""

    topology_factory = staticmethod(chain)


attr_values = st.one_of(st.text(max_size=12).filter(str.isprintable),
                        st.integers(-2**63, 2**63 - 1),
                        st.floats(allow_nan=False, allow_infinity=False))
attrs = st.dictionaries(st.text(min_size=1, max_size=8).filter(str.isprintable),
                        attr_values, max_size=4)


class ScrapAndVariableOutput(BatchProtocolMachine):
    """The chain with explicit scrap and variable-output rules: any quantity up to
    MAX_QTY, random attributes, partial scraps; the kit checks at teardown that the audit
    is exact (every input consumed went into one output or was scrapped, none twice)."""

    topology_factory = staticmethod(chain)

    @rule(node=st.integers(0, 63), qty=st.integers(1, MAX_QTY), values=attrs)
    def produce_variable(self, node: int, qty: int, values: dict[str, object]) -> None:
        assert self.sim is not None
        ids = self.sim.node_ids
        self.sim.produce(ids[node % len(ids)], qty, normalize_attrs(values))  # type: ignore[arg-type]

    @rule(node=st.integers(0, 63), index=st.integers(0, 63))
    def scrap(self, node: int, index: int) -> None:
        assert self.sim is not None
        ids = self.sim.node_ids
        self.sim.scrap(ids[node % len(ids)], index)


TestTwoByTwo = TwoByTwo.TestCase
TestTwoByTwo.settings = settings(max_examples=200 * DEEP, stateful_step_count=150)

TestChain = Chain.TestCase
TestChain.settings = settings(max_examples=100 * DEEP, stateful_step_count=150)

TestScrapAndVariableOutput = ScrapAndVariableOutput.TestCase
TestScrapAndVariableOutput.settings = settings(max_examples=60 * DEEP,
                                               stateful_step_count=150)
