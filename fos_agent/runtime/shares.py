"""A supplier's weights for its consumers: their share of the catalog's need for its item.

A scarce item shared by several consumer types should go where the final products need
it: in a chain where ``t06`` feeds ``t07`` (4 batches per final product), ``t10`` (2) and
``t15`` (1), a supplier serving them round robin gives each a third until the
over-served branches fill their buffers and block, which takes long at low rates (a
20-type chain made 4 products in 60 s against a bound of 7). The catalog says how many
batches of each item one final product takes (its bill of materials, counted in batches:
a consumer takes one batch of each input per cycle):

    need(final item) = 1,   need(X) = sum of need(Y) over the item types Y that require X

A consumer node of type Y then deserves ``need(Y) / (active producers of Y)``: exactly
the node rates of the throughput bound when every item has one recipe (the generated
chains), a sound guess otherwise. Weights only matter while a supplier has fewer batches
than waiting consumers (fos_agent.core.fairshare); backpressure still stops a consumer that
cannot use its share. ``consumer_weights`` is pure; ``keep_weights`` refreshes them from
the coordinator's ListNodes when the flow changes (off the data path: without an answer
the last weights, or equal ones, stay).

Priorities break the ties between equal start tags (fos_agent.core.fairshare): a
consumer's priority is its item's height, the most stages a batch of it still passes
through before it is part of a final product (a final item: 0). In a filling chain a
stage of height h must produce by ``fill - h`` cycles for the first final product to come
at the fill, so the highest consumers are the ones to serve first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Iterable

from fos_agent.core.engine import Signal
from fos_agent.core.fairshare import FairShare
from fos_agent.rules.share import MAX_DELAY_S, SETTLE_S, settle_wait
from fos_pb import coordinator_pb2 as cpb
from fos_raft.api.convert import spec_from_pb
from fos_raft.model import NodeSpec
from fos_raft.runtime.logging import get_logger

log = get_logger("fos_agent.runtime.shares")



def item_needs(specs: Iterable[NodeSpec]) -> dict[str, float]:
    """Batches of each item one final product takes (items nobody requires: 1 each)."""
    specs = list(specs)
    requires: dict[str, set[str]] = {}  # item -> the items its producers require
    for s in specs:
        requires.setdefault(s.produces.item, set()).update(r.item for r in s.requires)
    users: dict[str, set[str]] = {}  # item -> the item types that require it
    for item, inputs in requires.items():
        for x in inputs:
            users.setdefault(x, set()).add(item)
    need: dict[str, float] = {}

    def need_of(item: str, path: frozenset[str]) -> float:
        if item in need:
            return need[item]
        if item in path:  # a cycle (the catalog refuses them): count it once
            return 0.0
        mine = users.get(item)
        value = (sum(need_of(u, path | {item}) for u in mine) if mine else 1.0)
        need[item] = value
        return value

    for item in requires:
        need_of(item, frozenset())
    return need


def item_heights(specs: Iterable[NodeSpec]) -> dict[str, int]:
    """Stages on the longest way from each item to a final product (items nobody
    requires: 0)."""
    users: dict[str, set[str]] = {}  # item -> the item types that require it
    items: set[str] = set()
    for s in specs:
        items.add(s.produces.item)
        for r in s.requires:
            users.setdefault(r.item, set()).add(s.produces.item)
    height: dict[str, int] = {}

    def height_of(item: str, path: frozenset[str]) -> int:
        if item in height:
            return height[item]
        if item in path:  # a cycle (the catalog refuses them): stop there
            return 0
        value = max((1 + height_of(u, path | {item}) for u in users.get(item, ())), default=0)
        height[item] = value
        return value

    for item in items:
        height_of(item, frozenset())
    return height


def consumer_priorities(specs: Iterable[NodeSpec], active: Collection[str],
                        consumers: Iterable[str]) -> dict[str, float]:
    """Priority of each of ``consumers``: its item's height over the ``active`` nodes'
    specs. Unknown consumers are left out (priority 0)."""
    live = [s for s in specs if s.node_id in active]
    height = item_heights(live)
    item_of = {s.node_id: s.produces.item for s in live}
    return {c: float(height[item_of[c]]) for c in consumers if c in item_of}


def consumer_weights(specs: Iterable[NodeSpec], active: Collection[str],
                     consumers: Iterable[str]) -> dict[str, float]:
    """Weight of each of ``consumers``: need(its item) / active producers of its item, over
    the ``active`` nodes' specs (alive, not drained). Unknown consumers are left out."""
    live = [s for s in specs if s.node_id in active]
    need = item_needs(live)
    item_of = {s.node_id: s.produces.item for s in live}
    producers: dict[str, int] = {}
    for s in live:
        producers[s.produces.item] = producers.get(s.produces.item, 0) + 1
    out: dict[str, float] = {}
    for c in consumers:
        item = item_of.get(c)
        if item is not None and need.get(item, 0.0) > 0:
            out[c] = need[item] / producers[item]
    return out


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
