"""Keeping a supplier's weights for its consumers fresh: ``keep_weights`` reads the
coordinator's catalog (ListNodes) when the flow changes and hands the consumers' weights
and priorities to the fair share (off the data path: without an answer the last weights,
or equal ones, stay).

What the weights are (each consumer's share of the catalog's need for the item, the
priorities by item height) is pure and lives in fos_agent.rules.weights, shared with the
simulated factory; its names are re-exported here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from fos_agent.core.engine import Signal
from fos_agent.core.fairshare import FairShare
from fos_agent.rules.share import MAX_DELAY_S, SETTLE_S, settle_wait
from fos_agent.rules.weights import (
    consumer_priorities,
    consumer_weights,
    item_heights,
    item_needs,
)
from fos_pb import coordinator_pb2 as cpb
from fos_raft.api.convert import spec_from_pb
from fos_raft.model import NodeSpec
from fos_raft.runtime.logging import get_logger

log = get_logger("fos_agent.runtime.shares")

__all__ = ["consumer_priorities", "consumer_weights", "item_heights", "item_needs",
           "keep_weights"]


async def keep_weights(fair: FairShare, consumers: Callable[[], frozenset[str]],
                       version: Callable[[], int], flow_changed: Signal,
                       list_nodes: Callable[[], Awaitable[cpb.ListNodesReply]],
                       retry_s: float = 5.0, settle_s: float = SETTLE_S,
                       max_delay_s: float = MAX_DELAY_S, *,
                       want_catalog: Callable[[], bool] = lambda: False,
                       on_catalog: Callable[[list[NodeSpec], set[str]], None]
                       = lambda specs, active: None) -> None:
    """Refresh ``fair``'s weights and priorities whenever the flow version moves and we
    have two or more consumers (one consumer needs no weights), and hand the catalog's
    specs and active nodes to ``on_catalog`` on each read (also read, even for fewer
    consumers, while ``want_catalog()``: the agent's first-article plan,
    fos_agent.runtime.fillplan). ``list_nodes`` is the coordinator's ListNodes call (a
    ``ListNodesReply``). Runs until cancelled.

    A moved flow is asked about once it has been quiet for ``settle_s``, and at most
    ``max_delay_s`` after it first moved (fos_agent.rules.share.settle_wait)."""
    done_for = -1

    def wanted() -> bool:
        return len(consumers()) >= 2 or want_catalog()

    while True:
        ticket = flow_changed.ticket()
        if version() == done_for or not wanted():
            await ticket.wait()
            continue
        await _settled(flow_changed, settle_s, max_delay_s)
        current, mine = version(), consumers()
        if not wanted():
            continue
        ticket = flow_changed.ticket()
        try:
            reply = await list_nodes()
            specs = [spec_from_pb(n.spec) for n in reply.nodes]
            active = {n.spec.node_id for n in reply.nodes if n.alive and not n.drained}
            if len(mine) >= 2:
                weights = consumer_weights(specs, active, mine)
                priorities = consumer_priorities(specs, active, mine)
                fair.set_weights(weights, priorities)
                log.debug("consumer weights", version=current, weights=weights,
                          priorities=priorities)
            on_catalog(specs, active)
            done_for = current
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # coordinator unreachable: keep the last weights
            log.info("consumer weights not refreshed", error=str(exc))
            await Signal.wait_ticket(ticket, retry_s)


async def _settled(changed: Signal, settle_s: float, max_delay_s: float) -> None:
    """Return once ``changed`` has not fired for ``settle_s``, or after ``max_delay_s``."""
    loop = asyncio.get_running_loop()
    moved_at = loop.time()
    while (wait := settle_wait(moved_at, loop.time(), settle_s, max_delay_s)) is not None:
        if not await changed.wait(wait):
            return
