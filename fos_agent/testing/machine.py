"""A hypothesis RuleBasedStateMachine over fos_agent.testing.Simulation (public).

Each step is one operation of the model (fos_agent.testing.ops, weighted so trades
complete between faults) (production, requests, deliveries in any order,
drops, duplicates, crash-restart between durable steps, flow moves, a decommission);
safety (I1, I4, I5, I6, authorisation, persist-before-send) is checked after every step,
and at teardown faults stop, the system heals and I2/I3 (convergence) are checked.

Use from your own tests::

    from fos_agent.testing import chain
    from fos_agent.testing.machine import BatchProtocolMachine

    class MyFactory(BatchProtocolMachine):
        topology_factory = staticmethod(chain)           # or your own SimTopology
        stage = staticmethod(my_cycle_code)              # (node_id, inputs) -> bool

    TestMyFactory = MyFactory.TestCase
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from fos_agent.testing import (
    Op,
    SimTopology,
    Simulation,
    StageCode,
    always_succeeds,
    ops,
    run_op,
    two_by_two,
)

FAULT_KINDS = ("drop", "duplicate", "crash", "move", "decommission")


class BatchProtocolMachine(RuleBasedStateMachine):
    """Subclass and set ``topology_factory`` (immediate_arrival -> SimTopology) and
    ``stage``; ``allow_decommission`` lets one pure consumer leave for good."""

    topology_factory: Callable[[bool], SimTopology] = staticmethod(two_by_two)
    stage: StageCode = staticmethod(always_succeeds)
    allow_decommission = True

    def __init__(self) -> None:
        super().__init__()
        self.sim: Simulation | None = None
        self.faults: frozenset[str] = frozenset()

    @initialize(immediate_arrival=st.booleans(),
                faults=st.sets(st.sampled_from(FAULT_KINDS), min_size=1))
    def start(self, immediate_arrival: bool, faults: set[str]) -> None:
        """``faults``: the fault kinds this run uses (swarm testing: runs with few kinds of
        fault reach deeper states than runs that spread their steps over all of them)."""
        self.sim = Simulation(type(self).topology_factory(immediate_arrival), type(self).stage)
        self.faults = frozenset(faults)

    @rule(op=ops())
    def step(self, op: Op) -> None:
        assert self.sim is not None
        if op.kind in FAULT_KINDS and op.kind not in self.faults:
            return
        run_op(self.sim, op, allow_decommission=self.allow_decommission)

    @invariant()
    def safety(self) -> None:
        if self.sim is not None:
            self.sim.check_safety()

    def teardown(self) -> None:
        if self.sim is None:
            return
        self.sim.heal()
        self.sim.check_safety()
        self.sim.check_convergence()
