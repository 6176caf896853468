"""What "serving" means for an agent: its WAL takes writes and it has a flow to trade on.

An agent whose WAL cannot commit cannot acknowledge anything (every batch state change is
durable first), and one that has never seen a flow has nobody to trade with. Either way
the coordinator's suspicion probe, load balancers and ``fosctl health`` must hear
NOT_SERVING (fos_raft.runtime.health publishes the answer).
"""

from __future__ import annotations

import os
from typing import Any

from fos_raft.runtime.health import HealthPublisher, Readiness


def agent_readiness(agent: Any) -> Readiness:
    """``agent``: a started fos_agent.Agent (engine, flow)."""
    engine = agent.engine
    if engine is None or engine.wal is None:
        return Readiness(False, "WAL not open")
    if engine.commit_error:
        return Readiness(False, f"WAL not writable: {engine.commit_error}")
    if not os.access(engine.wal_dir, os.W_OK):
        return Readiness(False, f"WAL not writable: no write permission on {engine.wal_dir}")
    if getattr(agent, "unavailable_reason", ""):
        return Readiness(False, agent.unavailable_reason)
    if agent.flow.version == 0:
        return Readiness(False, "no flow yet")
    return Readiness(True)


def agent_health(agent: Any, servicer: Any) -> HealthPublisher:
    # Event-driven: a new flow (membership), a failed or recovered commit and the WAL
    # closing (engine.health_changed) poke it at once, so the poll only catches a WAL
    # directory that lost its write permission while nothing commits (its next commit
    # fails and pokes anyway). Every poll was an idle agent's wake-up: every 0.5 s before
    # issue 14, every 2 s after its first round, now every 10 s.
    return HealthPublisher(servicer, ("", "fos.v1.Agent"), lambda: agent_readiness(agent),
                           interval=10.0)
