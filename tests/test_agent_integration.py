"""Issue 5 end to end: a wood -> frame -> window chain, two suppliers per item type, each
agent a separate ``fos-agent`` process, on a real 3-replica coordinator cluster. One frame
supplier is SIGKILLed in the middle of trading and restarted on the same data dir; at the
end an audit over every WAL finds each batch exactly once and the windows got made.
"""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest
from agent_util import Procs, agent_command, wait_until

from fos_agent.audit import audit
from fos_pb import agent_pb2, agent_pb2_grpc
from fos_raft.cli.launcher import LocalCluster, free_port

CHAIN = [  # node, produces, requires
    ("wood-1", "wood:1", ""), ("wood-2", "wood:1", ""),
    ("frame-1", "frame:1", "wood:1"), ("frame-2", "frame:1", "wood:1"),
    ("window-1", "window:1", "frame:1"), ("window-2", "window:1", "frame:1"),
]
CYCLE_S = "0.2"


def stats(address: str) -> agent_pb2.StatsReply | None:
    with grpc.insecure_channel(address) as channel:
        try:
            return agent_pb2_grpc.AgentStub(channel).Stats(agent_pb2.StatsRequest(), timeout=2)
        except grpc.RpcError:
            return None


def counter(address: str, name: str) -> float:
    reply = stats(address)
    return reply.counters[name] if reply is not None else -1.0


@pytest.mark.slow
def test_chain_survives_sigkill_of_a_frame_supplier_with_a_clean_audit(tmp_path: Path):
    cluster = LocalCluster(3, tmp_path / "coord")
    procs = Procs(tmp_path)
    addresses = {node: f"127.0.0.1:{free_port()}" for node, _, _ in CHAIN}

    def argv(node: str, produces: str, requires: str) -> list[str]:
        args = [*agent_command(), "--node-id", node, "--listen", addresses[node],
                "--coordinators", ",".join(cluster.grpc_addresses),
                "--data-dir", str(tmp_path / node), "--produces", produces,
                "--cycle-s", CYCLE_S, "--ready-file", str(tmp_path / f"{node}.ready")]
        return args + (["--requires", requires] if requires else [])

    def start(node: str, produces: str, requires: str) -> None:
        (tmp_path / f"{node}.ready").unlink(missing_ok=True)
        procs.start(node, argv(node, produces, requires))

    def ready(node: str) -> bool:
        proc = procs.procs[node]
        assert proc.poll() is None, f"{node} exited: {procs.log_tail(node)}"
        return (tmp_path / f"{node}.ready").exists()

    try:
        cluster.start()
        cluster.wait_for_leader(timeout=30)
        for spec in CHAIN:
            start(*spec)
        for node, _, _ in CHAIN:
            wait_until(lambda n=node: ready(n), timeout=60, what=f"{node} ready")
        assert (tmp_path / "frame-1.ready").read_text().strip() == addresses["frame-1"]
        # trading: both frames receive wood, both windows get made
        for node in ("frame-1", "frame-2"):
            wait_until(lambda n=node: counter(addresses[n], "batches_received") >= 3,
                       what=f"{node} trading")
        wait_until(lambda: sum(counter(addresses[w], "successful_cycles")
                               for w in ("window-1", "window-2")) >= 4, what="windows")

        procs.kill("frame-1")  # SIGKILL mid-trade: no flush, no goodbye
        killed_at = time.monotonic()
        windows_at_kill = sum(counter(addresses[w], "successful_cycles")
                              for w in ("window-1", "window-2"))
        # the other frame keeps the windows going while frame-1 is dead
        wait_until(lambda: sum(counter(addresses[w], "successful_cycles")
                               for w in ("window-1", "window-2")) >= windows_at_kill + 3,
                   what="windows made while frame-1 is dead")
        time.sleep(max(0.0, 2.5 - (time.monotonic() - killed_at)))  # stay dead a while
        start("frame-1", "frame:1", "wood:1")
        wait_until(lambda: ready("frame-1"), timeout=60, what="frame-1 restarted")
        restarted = wait_until(lambda: stats(addresses["frame-1"]), what="frame-1 stats")
        assert restarted.incarnation == 2
        assert restarted.counters["wal_recovered_batches"] >= 0
        wait_until(lambda: counter(addresses["frame-1"], "batches_received") >= 3,
                   timeout=30, what="frame-1 trading again")
        wait_until(lambda: counter(addresses["frame-1"], "batches_delivered") >= 1,
                   timeout=30, what="frame-1 delivering again")
        # let the supplier-owned retries settle what the SIGKILL left in transit
        time.sleep(max(0.0, 20.0 - (time.monotonic() - killed_at)))
        made = sum(counter(addresses[w], "successful_cycles") for w in ("window-1", "window-2"))
        assert made > windows_at_kill
        # clean stop, final products first: every request in flight is answered
        for node in ("window-1", "window-2", "frame-1", "frame-2", "wood-1", "wood-2"):
            assert procs.terminate(node) == 0, procs.log_tail(node)
    finally:
        procs.stop_all()
        cluster.stop()

    # everything settled before the clean stop: a batch still in transit would be lost
    report = audit({node: tmp_path / node for node, _, _ in CHAIN}, quiescent=True)
    assert report.ok, report.summary()
    assert report.in_transit == [] and report.unverified == [], report.summary()
    assert report.consumed > 0 and report.delivered > 0
    windows = report.produced_by.get("window-1", 0) + report.produced_by.get("window-2", 0)
    assert windows >= made > 0
    assert report.produced_by.get("frame-1", 0) > 0
