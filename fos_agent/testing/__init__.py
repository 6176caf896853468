"""Test kit for the batch protocol: a model driver, a lossy network and hypothesis strategies.

Public, for factory software too: run the same convergence properties factoryOS runs
(docs/protocol.md, invariants I1-I6) against your own stage code, with no processes,
sockets or disks. The model is the real protocol (fos_agent.protocol.machine.Node) with real
transition checks; only the I/O is simulated:

- ``MemoryStore``: a node's durable records, checked with the same rules as the LMDB WAL.
- ``SimNode``: a node plus the queue of effects not yet durable. Effects are made durable
  one at a time, in order (what GroupCommitter does); only then are their messages sent.
  A crash drops the queue and the in-memory state: "effects applied up to a crash point".
- ``LossyNetwork``: messages in flight; any may be delivered (in any order), dropped or
  duplicated.
- ``Simulation``: nodes + network + the flow (who may request from whom); operations for
  every fault; ``check_safety()`` (I1, I4, I5, I6, authorisation, persist-before-send),
  ``heal()`` (faults stop, retries fire, everything is delivered) and
  ``check_convergence()`` (I2, I3).

Using it from your own tests::

    from hypothesis import given
    from fos_agent.testing import check_schedule, fault_schedules, two_by_two

    def my_stage(node_id, inputs):          # your cycle code; False = the cycle failed
        return quality_ok(inputs)

    @given(fault_schedules(two_by_two()))
    def test_my_stage_converges(schedule):
        check_schedule(two_by_two(), schedule, stage=my_stage)

or subclass ``fos_agent.testing.machine.BatchProtocolMachine`` (a hypothesis
RuleBasedStateMachine) and set its ``topology`` / ``stage``.

A whole factory over time: ``Factory`` (fos_agent.testing.factory) runs your stage code in
a simulated factory on virtual time -- the real protocol, the real coordinator planner,
a simulated network, faults, one seed -- and ``Factory.finish()`` checks the invariants
and the audit; ``run_transcript`` runs a scenario transcript (docs/protocol.md).

This module is the kit's public entry; the parts live in ``topology`` (topologies,
stage code), ``network`` (LossyNetwork), ``sim`` (MemoryStore, SimNode, Simulation) and
``schedules`` (Op, run_op, the strategies), all under ``fos_agent.testing``.
"""

from __future__ import annotations

from collections.abc import Iterable

from fos_agent.testing.factory import Factory, FactorySettings, RunResult
from fos_agent.testing.factory.script import run_text as run_transcript
from fos_agent.testing.network import LossyNetwork
from fos_agent.testing.schedules import OP_KINDS, Op, fault_schedules, ops, run_op
from fos_agent.testing.sim import MemoryStore, SimNode, Simulation
from fos_agent.testing.topology import (
    SimTopology,
    StageCode,
    always_succeeds,
    chain,
    two_by_two,
)

__all__ = [
    "OP_KINDS", "Factory", "FactorySettings", "LossyNetwork", "MemoryStore", "Op", "RunResult",
    "SimNode", "SimTopology", "Simulation", "StageCode", "always_succeeds", "chain",
    "check_schedule", "fault_schedules", "ops", "run_op", "run_transcript", "two_by_two",
]


def check_schedule(topology: SimTopology, schedule: Iterable[Op], *,
                   stage: StageCode = always_succeeds) -> Simulation:
    """Run ``schedule`` checking safety after every op, then heal and check convergence.
    Raises AssertionError naming the broken invariant. Returns the simulation."""
    sim = Simulation(topology, stage)
    sim.check_safety()
    for op in schedule:
        run_op(sim, op)
        sim.check_safety()
    sim.heal()
    sim.check_safety()
    sim.check_convergence()
    return sim
