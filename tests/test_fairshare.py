"""A supplier's long-polls served round robin: fos_agent.core.fairshare (pure), and the
RequestBatch handler that uses it, over a real WAL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from agent_util import eventually
from hypothesis import given
from hypothesis import strategies as st

from bench.sim.topology import generate_topology, throughput_bound
from fos_agent.core.engine import Engine, Signal
from fos_agent.core.fairshare import FairShare
from fos_agent.core.metrics import Metrics
from fos_agent.net.service import PeerService
from fos_agent.protocol.machine import NodeConfig
from fos_agent.protocol.messages import FlowChanged, Produce
from fos_agent.rules.weights import (
    consumer_priorities,
    consumer_weights,
    item_heights,
    item_needs,
)
from fos_agent.runtime.shares import keep_weights
from fos_pb import agent_pb2
from fos_pb import coordinator_pb2 as cpb
from fos_raft.api.convert import spec_to_pb
from fos_raft.model import ItemReq, NodeSpec


def test_the_least_recently_served_waiting_consumer_goes_first():
    fair = FairShare()
    for c in ("a", "b", "c"):
        fair.enter(c)
    assert [fair.turn(c, 1) for c in "abc"] == [True, False, False]  # never served: by name
    fair.served("a")
    assert [fair.turn(c, 1) for c in "abc"] == [False, True, False]
    assert fair.turn("c", 2) and not fair.turn("a", 2)  # two batches: b and c
    fair.served("b")
    fair.served("c")
    assert fair.turn("a", 1)
    assert not any(fair.turn(c, 0) for c in "abc")  # nothing queued: nobody's turn
    fair.leave("a")  # a stopped waiting: the next one is b
    assert fair.turn("b", 1) and fair.waiting() == {"b": 1, "c": 1}


def test_a_consumer_with_two_requests_waiting_counts_once():
    fair = FairShare()
    fair.enter("a")
    fair.enter("a")
    fair.enter("b")
    fair.served("b")
    assert fair.turn("a", 1) and fair.ahead_of("b") == 1
    fair.leave("a")
    assert fair.waiting() == {"a": 1, "b": 1}
    fair.leave("a")
    assert fair.turn("b", 1)


def test_changes_wake_the_waiters():
    fair = FairShare()
    ticket = fair.changed.ticket()
    fair.enter("a")
    assert not ticket.is_set()  # entering changes nobody's turn
    fair.served("a")
    assert ticket.is_set()
    ticket = fair.changed.ticket()
    fair.leave("a")
    assert ticket.is_set()


@given(st.integers(2, 6), st.lists(st.integers(0, 5), min_size=1, max_size=200))
def test_consumers_that_always_wait_get_equal_shares(n, picks):
    # whoever asks, the batch goes to the one whose turn it is: shares differ by at most 1
    fair = FairShare()
    consumers = [f"c{i}" for i in range(n)]
    for c in consumers:
        fair.enter(c)
    got = dict.fromkeys(consumers, 0)
    for pick in picks:
        asking = consumers[pick % n]
        winner = asking if fair.turn(asking, 1) else next(c for c in consumers
                                                          if fair.turn(c, 1))
        fair.served(winner)
        got[winner] += 1
    assert max(got.values()) - min(got.values()) <= 1


def test_equal_start_tags_go_to_the_highest_priority_then_by_name():
    fair = FairShare()
    fair.set_weights({}, {"c": 9.0, "b": 2.0})
    for c in "abcd":
        fair.enter(c)
    order = []
    for _ in range(8):
        winner = next(c for c in "abcd" if fair.turn(c, 1))
        fair.served(winner)
        order.append(winner)
    # the first round by priority (a and d: 0, by name), then round robin in that order
    assert order == ["c", "b", "a", "d"] * 2
    fair.set_weights({"a": 2.0})  # weights alone leave the priorities as they were
    assert fair.priority("c") == 9.0


@given(st.lists(st.tuples(st.integers(1, 4), st.integers(0, 3)), min_size=2, max_size=6),
       st.integers(1, 120))
def test_priorities_do_not_change_the_fair_queueing_bound(consumers, services):
    # start-time fair queueing's guarantee, for any two consumers waiting all along:
    # |served_i / w_i - served_j / w_j| <= 1 / w_i + 1 / w_j, at every point; the
    # priorities only reorder equal start tags, so they cannot break it
    names = [f"c{i}" for i in range(len(consumers))]
    weight = {n: float(w) for n, (w, _) in zip(names, consumers, strict=True)}
    fair = FairShare()
    fair.set_weights(weight, {n: float(p) for n, (_, p) in zip(names, consumers, strict=True)})
    for n in names:
        fair.enter(n)
    got = dict.fromkeys(names, 0)
    for _ in range(services):
        winner = next(n for n in names if fair.turn(n, 1))
        fair.served(winner)
        got[winner] += 1
        for i in names:
            for j in names:
                lag = got[i] / weight[i] - got[j] / weight[j]
                assert lag <= 1 / weight[i] + 1 / weight[j] + 1e-9


# ---- the RequestBatch handler over a real WAL (no network): who gets a scarce batch ----


class _Aborted(Exception):
    pass


class _Context:
    async def abort(self, code: object, details: str = "", trailing_metadata: object = ()):
        raise _Aborted(f"{code}: {details}")


@pytest.fixture
async def supplier(tmp_path: Path) -> AsyncIterator[PeerService]:
    engine = Engine(tmp_path / "wal", NodeConfig("wood-1", ItemReq("wood", 1)),
                    Metrics("wood-1"))
    engine.open()
    await engine.step(FlowChanged(1, frozenset({"a", "b"})))
    agent = SimpleNamespace(
        node_id="wood-1", engine=engine, metrics=engine.metrics, tls=None, outbox=None,
        detector=SimpleNamespace(contact=lambda node, ok: None, hold=lambda node, held: None),
        loop_time=lambda: asyncio.get_running_loop().time())
    try:
        yield PeerService(agent)  # type: ignore[arg-type]
    finally:
        await engine.close()


def _ask(service: PeerService, consumer: str, rid: str, wait_ms: int) -> asyncio.Task:
    req = agent_pb2.RequestBatchRequest(request_id=rid, consumer=consumer, item="wood", qty=1,
                                        flow_version=1, wait_ms=wait_ms)
    return asyncio.ensure_future(service.RequestBatch(req, _Context()))


async def test_a_batch_goes_to_the_consumer_served_longest_ago_not_the_first_waiter(
        supplier: PeerService):
    engine = supplier.agent.engine
    a1 = _ask(supplier, "a", "a1", 10_000)
    await asyncio.sleep(0.05)
    b1 = _ask(supplier, "b", "b1", 300)  # b's long-poll expires before the next batch
    await asyncio.sleep(0.05)
    await engine.step(Produce())
    assert (await asyncio.wait_for(a1, 5)).HasField("sent")  # a waited first
    a2 = _ask(supplier, "a", "a2", 10_000)  # a asks again at once
    assert not (await asyncio.wait_for(b1, 5)).HasField("sent")  # b's poll expired
    b2 = _ask(supplier, "b", "b2", 10_000)  # b is now behind a in arrival order...
    await asyncio.sleep(0.05)
    await engine.step(Produce())
    # ...but a was served more recently: first-come would give a everything
    assert (await asyncio.wait_for(b2, 5)).HasField("sent")
    assert not a2.done()
    await engine.step(Produce())
    assert (await asyncio.wait_for(a2, 5)).HasField("sent")
    assert supplier.fair.waiting() == {}


# ---- weights: the consumers' shares of the catalog's need (fos_agent.rules.weights) ----


def _spec(node_id: str, produces: str, *requires: str) -> NodeSpec:
    return NodeSpec(node_id, "127.0.0.1:1", ItemReq(produces, 1),
                    tuple(ItemReq(r, 1) for r in requires))


def test_needs_count_batches_per_final_product_and_weights_split_them_over_producers():
    # glass feeds panes (2 per window: both frame and window need a pane) and windows
    specs = [_spec("g1", "glass"), _spec("p1", "pane", "glass"), _spec("p2", "pane", "glass"),
             _spec("f1", "frame", "pane"), _spec("w1", "window", "pane", "frame", "glass")]
    assert item_needs(specs) == {"window": 1, "frame": 1, "pane": 2, "glass": 3}
    everyone = {s.node_id for s in specs}
    # g1's consumers: each pane maker deserves 2/2, the window maker 1
    assert consumer_weights(specs, everyone, ["p1", "p2", "w1", "x"]) == {
        "p1": 1.0, "p2": 1.0, "w1": 1.0}
    # p2 is down: p1 carries the panes' whole need
    assert consumer_weights(specs, everyone - {"p2"}, ["p1", "w1"]) == {"p1": 2.0, "w1": 1.0}


def test_heights_count_stages_to_the_final_product_and_rank_consumers():
    specs = [_spec("g1", "glass"), _spec("p1", "pane", "glass"), _spec("p2", "pane", "glass"),
             _spec("f1", "frame", "pane"), _spec("w1", "window", "pane", "frame", "glass")]
    # glass -> pane -> frame -> window is the longest way: 3 stages
    assert item_heights(specs) == {"window": 0, "frame": 1, "pane": 2, "glass": 3}
    everyone = {s.node_id for s in specs}
    assert consumer_priorities(specs, everyone, ["p1", "w1", "x"]) == {"p1": 2.0, "w1": 0.0}
    # without the frame maker, panes go straight into windows
    assert consumer_priorities(specs, everyone - {"f1"}, ["p1"]) == {"p1": 1.0}


@given(st.integers(2, 30), st.integers(0, 10_000))
def test_heights_of_generated_chains_are_the_layers_seen_from_the_end(types, seed):
    # every item feeds the final product; an item's height plus the depth of the chain
    # below it never exceeds the final product's layer
    topo = generate_topology(types, 1, seed)
    height = item_heights(topo.specs)
    final_layer = topo.layer_of[topo.final_item]
    assert height[topo.final_item] == 0
    for item in topo.items:
        assert topo.layer_of[item] + height[item] <= final_layer
        for x in topo.requires_of[item]:
            assert height[x] >= height[item] + 1


@given(st.integers(2, 14), st.integers(1, 3), st.integers(0, 10_000))
def test_needs_give_the_throughput_bound_of_generated_chains(types, per_type, seed):
    # one recipe per item: the bound is the item whose producers cover its need least
    topo = generate_topology(types, per_type, seed)
    need = item_needs(topo.specs)
    by_need = min(per_type / need[item] for item in topo.items)
    assert throughput_bound(topo.specs, 1.0).per_s == pytest.approx(by_need, rel=1e-6)


def test_weighted_consumers_get_shares_in_proportion():
    fair = FairShare()
    fair.set_weights({"a": 4.0, "b": 2.0, "c": 1.0})
    for c in "abc":
        fair.enter(c)
    got = dict.fromkeys("abc", 0)
    for _ in range(70):
        winner = next(c for c in "abc" if fair.turn(c, 1))
        fair.served(winner)
        got[winner] += 1
    assert got == {"a": 40, "b": 20, "c": 10}
    # a consumer that stops waiting gets no credit for it when it comes back
    fair.leave("a")
    for _ in range(30):
        winner = next(c for c in "bc" if fair.turn(c, 1))
        fair.served(winner)
    fair.enter("a")
    got = dict.fromkeys("abc", 0)
    for _ in range(7):
        winner = next(c for c in "abc" if fair.turn(c, 1))
        fair.served(winner)
        got[winner] += 1
    assert got["a"] <= 5


async def test_weights_follow_the_flow_from_the_catalog():
    specs = [_spec("g1", "glass"), _spec("p1", "pane", "glass"), _spec("p2", "pane", "glass"),
             _spec("f1", "frame", "pane"), _spec("w1", "window", "pane", "frame", "glass")]
    reply = cpb.ListNodesReply(nodes=[cpb.NodeInfo(spec=spec_to_pb(s), alive=True)
                                      for s in specs])
    calls: list[int] = []

    async def list_nodes() -> cpb.ListNodesReply:
        calls.append(len(calls))
        return reply

    fair, changed = FairShare(), Signal()
    view = {"version": 1, "consumers": frozenset({"p1", "w1"})}
    task = asyncio.ensure_future(keep_weights(fair, lambda: view["consumers"],
                                              lambda: view["version"], changed, list_nodes,
                                              settle_s=0.05))
    try:
        await eventually(lambda: calls, what="the catalog asked")
        assert (fair.weight("p1"), fair.weight("w1")) == (1.0, 1.0)  # pane: 2 over 2
        assert (fair.priority("p1"), fair.priority("w1")) == (2.0, 0.0)  # pane: 2 to go
        reply.nodes[2].alive = False  # p2 is down: p1 carries the panes' whole need
        view["version"] = 2
        changed.notify()
        await eventually(lambda: fair.weight("p1") == 2.0, what="new weights")
        assert len(calls) == 2 and fair.weight("w1") == 1.0
        changed.notify()  # same version: not asked again
        await asyncio.sleep(0.05)
        assert len(calls) == 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_flow_that_keeps_moving_is_asked_about_once_it_settles():
    specs = [_spec("g1", "glass"), _spec("p1", "pane", "glass"), _spec("w1", "window", "glass")]
    reply = cpb.ListNodesReply(nodes=[cpb.NodeInfo(spec=spec_to_pb(s), alive=True)
                                      for s in specs])
    asked: list[int] = []
    view = {"version": 1}

    async def list_nodes() -> cpb.ListNodesReply:
        asked.append(view["version"])
        return reply

    changed = Signal()
    task = asyncio.ensure_future(keep_weights(
        FairShare(), lambda: frozenset({"p1", "w1"}), lambda: view["version"], changed,
        list_nodes, settle_s=0.2, max_delay_s=10.0))
    try:
        for version in range(2, 12):  # a chain coming up: the flow moves every 50 ms
            await asyncio.sleep(0.05)
            view["version"] = version
            changed.notify()
        await eventually(lambda: asked, what="the catalog asked")
        await asyncio.sleep(0.3)  # a second ask would have come by now
        assert asked == [11]  # once, for the settled flow
        # a flow that never settles is still asked about after max_delay_s
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        asked.clear()
        task = asyncio.ensure_future(keep_weights(
            FairShare(), lambda: frozenset({"p1", "w1"}), lambda: view["version"], changed,
            list_nodes, settle_s=0.2, max_delay_s=0.3))
        for version in range(12, 40):
            await asyncio.sleep(0.05)
            view["version"] = version
            changed.notify()
            if asked:
                break
        assert asked and asked[0] < 39
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

