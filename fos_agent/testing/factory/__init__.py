"""A deterministic simulation of a whole factory on virtual time, driven by one seed.

The real parts: every agent is the real protocol (fos_agent.protocol.machine.Node) over
the test kit's durable store (fos_agent.testing.sim.MemoryStore), checked as each write
lands; the coordinator is the real state machine and planner (fos_raft.state.core.apply,
fos_raft.planner.Planner) as one logical replica. Simulated: virtual time (a
discrete-event scheduler), the network (per-link delay, loss, duplication, reordering,
partitions), the stage's cycle, and the agent runtime's time rules (which supplier,
long-polls, backoff, re-offers, the failure detector) on virtual time.

Owns no I/O: no asyncio, grpc, lmdb, clock or ``random`` import; the caller passes a
seeded ``random.Random`` and every draw comes from it, so a seed replays a run event for
event (the trace digest says so). The agent's time rules are fos_agent.rules, the very
objects the real runtime drives. Modules: ``clock`` (scheduler, trace), ``network``,
``coordinator``, ``agent`` (life, durability, stage, coordinator side) with its parts
``fetching``, ``serving``, ``outbox``, ``detector`` (typed against ``host``), ``factory``
(the whole, faults, checks), ``script`` (scenario transcripts).

    import random
    from fos_agent.testing.factory import Factory

    factory = Factory(specs, random.Random(7), stage=my_stage_code)
    factory.start()
    factory.at(30.0, factory.kill, "press-1")
    factory.run_until(120.0)
    result = factory.finish()       # invariants I1-I6, audit, false deaths
    assert result.ok, result.error
"""

from __future__ import annotations

from fos_agent.testing.factory.agent import AgentSettings, SimAgent, StageCode, always_succeeds
from fos_agent.testing.factory.clock import Rng, Scheduler, Trace
from fos_agent.testing.factory.coordinator import CoordinatorSettings, SimCoordinator, View
from fos_agent.testing.factory.factory import Factory, FactorySettings, RunResult, Segment
from fos_agent.testing.factory.network import LinkSettings, SimNetwork

__all__ = [
    "AgentSettings", "CoordinatorSettings", "Factory", "FactorySettings", "LinkSettings",
    "Rng", "RunResult", "Scheduler", "Segment", "SimAgent", "SimCoordinator", "SimNetwork",
    "StageCode", "Trace", "View", "always_succeeds",
]
