"""agent.status(): why a stage waits, against real parts (a coordinator cluster of real
processes, two SyncAgents trading over loopback gRPC with LMDB WALs): not started, not in
the flow, waiting for an input no supplier has, working, output buffer full with nobody
buying, drained; and the INFO line once a wait has lasted. The words from plain facts are
checked too (`describe`)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from coord_util import running_cluster

from fos_agent import AgentSettings, ItemReq, StageStatus, SyncAgent
from fos_agent.runtime import status as st
from fos_agent.runtime.flowview import FlowView, Supplier
from fos_pb import agent_pb2, agent_pb2_grpc
from fos_raft.cli.launcher import LocalCluster


@pytest.fixture
def cluster(tmp_path: Path):
    with running_cluster(3, tmp_path / "coord") as cluster:
        yield cluster


def until(agent: SyncAgent, ok: Callable[[StageStatus], bool], what: str,
          timeout: float = 20.0) -> StageStatus:
    deadline = time.monotonic() + timeout
    last = agent.status()
    while not ok(last):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still {last.state}: {last.text}")
        time.sleep(0.05)
        last = agent.status()
    return last


def logged_wait(caplog: pytest.LogCaptureFixture, node: str, state: str,
                timeout: float = 20.0) -> dict:
    """The first 'stage waiting' line of ``node`` in ``state`` (polled until it comes)."""
    deadline = time.monotonic() + timeout
    while True:
        for r in caplog.records:
            m = r.msg
            if isinstance(m, dict) and m.get("event") == "stage waiting" \
                    and m.get("node") == node and m.get("state") == state:
                return m
        if time.monotonic() > deadline:
            raise AssertionError(f"no 'stage waiting' line of {node} in {state}")
        time.sleep(0.05)


def _cycle(agent: SyncAgent, limit: int, done: list[int]) -> None:
    for inputs in agent.cycles():
        agent.emit(inputs)
        done.append(1)
        if len(done) >= limit:
            return


def test_status_says_why_the_stage_waits(cluster: LocalCluster, tmp_path: Path,
                                         caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger="fos_agent")
    coords = cluster.grpc_addresses
    quick = AgentSettings(wait_log_s=0.5)
    consumer = SyncAgent("st-con", ItemReq("st-y", 1), [ItemReq("st-x", 1)],
                         coordinators=coords, data_dir=tmp_path / "con", settings=quick)
    supplier = SyncAgent("st-src", ItemReq("st-x", 1), coordinators=coords,
                         data_dir=tmp_path / "src", settings=quick)
    assert consumer.status().state == st.NOT_STARTED
    used: list[int] = []
    made: list[int] = []
    threads = [threading.Thread(target=_cycle, args=(consumer, 2, used), daemon=True),
               threading.Thread(target=_cycle, args=(supplier, 10, made), daemon=True)]
    try:
        consumer.start()
        threads[0].start()
        alone = until(consumer, lambda s: s.state == st.NOT_IN_FLOW, "no supplier yet")
        assert "not in flow" in alone.text
        supplier.start()
        wait = until(consumer, lambda s: s.state == st.WAITING_INPUT, "waiting for st-x")
        assert wait.item == "st-x" and [s.node_id for s in wait.suppliers] == ["st-src"]
        assert wait.text.startswith("waiting for input st-x")
        assert "no supplier has one for it: st-src (primary, alive, last batch never)" \
            in wait.text
        until(supplier, lambda s: s.state == st.IDLE, "in the flow, not asking for a cycle")
        line = logged_wait(caplog, "st-con", st.WAITING_INPUT)  # the wait passed 0.5 s
        assert line["item"] == "st-x" and line["waiting_s"] >= 0.5
        assert line["why"].startswith("waiting for input st-x")
        threads[1].start()  # the supplier makes batches; the consumer uses two, then stops
        threads[0].join(20)
        assert len(used) == 2
        # the consumer buys up to its prefetch and no more: the supplier's output fills
        full = until(supplier, lambda s: s.state == st.OUTPUT_FULL and not s.buying,
                     "supplier blocked")
        assert full.consumers == ("st-con",) and full.queued_outbound >= 1
        assert "output buffer full" in full.text and "no consumer buying" in full.text
        assert "output buffer full" in logged_wait(caplog, "st-src", st.OUTPUT_FULL)["why"]
        assert supplier.agent.gauges()["stage_waiting_seconds"] >= 0.5  # Prometheus too
        with grpc.insecure_channel(supplier.address) as channel:  # and the Stats RPC
            stats = agent_pb2_grpc.AgentStub(channel).Stats(agent_pb2.StatsRequest(),
                                                            timeout=5)
        assert stats.stage_state == st.OUTPUT_FULL and stats.stage_waiting_s >= 0.5
        assert stats.stage_status.startswith("output buffer full")
        assert consumer.agent.gauges()["stage_waiting_seconds"] == 0.0
        again = consumer.status()
        assert again.state == st.IDLE  # stopped asking: not waiting for anything
        supplier.drain()
        until(supplier, lambda s: s.state == st.DRAINED, "drained")
        logged = [r.msg for r in caplog.records
                  if isinstance(r.msg, dict) and r.msg.get("event") == "stage waiting"]
        assert all(m["waiting_s"] >= 0.5 and m["why"] for m in logged)
    finally:
        supplier.stop()
        consumer.stop()
        for t in threads:
            if t.is_alive():
                t.join(10)
    assert consumer.status().state == st.NOT_STARTED


def facts(**kw):
    base = dict(started=True, flow=FlowView("n", version=3, in_flow=True), cycling=True,
                waiting_s=None, cause="", queued_outbound=0, output_cap=1,
                suspected=frozenset(), last_received_at={}, buying={}, now_unix=100.0)
    return {**base, **kw}


def test_describe_names_the_input_the_suppliers_and_who_is_behind():
    flow = FlowView("frame-1", version=3, in_flow=True, consumers=frozenset({"win-1"}),
                    suppliers={"wood": (Supplier("saw-1", 0, True), Supplier("saw-2", 1, False))},
                    rank_for={"win-1": 1})
    s = st.describe(**facts(flow=flow, waiting_s=12.4, cause="cycles_waiting_for:wood",
                            last_received_at={"saw-1": 90.0}, suspected=frozenset({"saw-1"})))
    assert s.state == st.WAITING_INPUT and s.item == "wood"
    assert s.text == ("waiting for input wood for 12 s: every supplier is down or not "
                      "answering: saw-1 (primary, not answering, last batch 10 s ago), "
                      "saw-2 (backup 1, down, last batch never)")
    full = st.describe(**facts(flow=flow, waiting_s=3.0, cause="cycles_blocked",
                               queued_outbound=1))
    assert full.state == st.OUTPUT_FULL and full.backup_only
    assert "(1 of 1 unsold): no consumer buying: this node is only a backup" in full.text
    alone = st.describe(**facts(flow=FlowView("n", version=3, in_flow=True, suppliers={}),
                                waiting_s=1.0, cause="cycles_waiting_for:glass"))
    assert "no supplier of it in the flow" in alone.text
    assert st.describe(**facts(flow=FlowView("n", in_flow=True, drained=True))).state \
        == st.DRAINED
    assert st.describe(**facts(cycling=False)).state == st.IDLE
    assert st.describe(**facts()).state == st.WORKING


async def test_a_long_wait_is_logged_once_and_again_when_its_reason_changes():
    lines: list[dict] = []

    class Log:
        def info(self, event: str, **kw: object) -> None:
            lines.append({"event": event, **kw})

    now = {"t": 100.0}
    wait: dict = {"since": None, "state": st.WORKING, "item": None}

    def status() -> StageStatus:
        waiting = None if wait["since"] is None else now["t"] - wait["since"]
        return StageStatus(wait["state"], f"{wait['state']} {wait['item']}",
                           waiting_s=waiting, item=wait["item"])

    async def expect(count: int) -> None:
        deadline = time.monotonic() + 5.0
        while len(lines) < count:
            assert time.monotonic() < deadline, lines
            await asyncio.sleep(0.005)

    task = asyncio.ensure_future(st.log_long_waits(
        lambda: wait["since"], status, Log(), threshold_s=0.02, clock=lambda: now["t"]))
    try:
        await asyncio.sleep(0.1)  # nothing waits: nothing logged
        wait.update(since=99.99, state=st.WAITING_INPUT, item="wood")
        await asyncio.sleep(0.1)  # 10 ms old by the clock: under the threshold
        assert lines == []
        now["t"] = 102.0  # the wait is 2 s old
        await expect(1)
        await asyncio.sleep(0.1)  # the same wait, the same reason: not again
        wait.update(item="glass")  # the same wait, another input
        await expect(2)
        wait.update(since=101.0, state=st.OUTPUT_FULL, item=None)  # a new wait
        await expect(3)
        await asyncio.sleep(0.1)
    finally:
        task.cancel()
    assert [(x["state"], x["item"], x["waiting_s"]) for x in lines] == [
        (st.WAITING_INPUT, "wood", 2.0), (st.WAITING_INPUT, "glass", 2.0),
        (st.OUTPUT_FULL, None, 1.0)]
