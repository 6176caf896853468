"""SIGTERM stops a library program cleanly (its own default handling, no CLI): real
programs (tests/signal_stage.py) in a chain with a real 3-replica coordinator cluster.
The consumer is signalled mid-cycle: it exits 0 within the stop bound, the program goes on
after its agent's block, the held input is still QUEUED in its WAL (not consumed, not
lost), no suspicion of it was confirmed meanwhile, and its supplier has nothing left in
transit to it. Each
mode is a consumer once, with the other mode as its supplier."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path

import grpc
import pytest
from agent_util import Procs, wait_until

from fos_agent.protocol.records import InState
from fos_agent.runtime.settings import AgentSettings
from fos_agent.runtime.stop_signals import stop_bound_s
from fos_agent.storage.wal import read_wal, wal_path
from fos_pb import agent_pb2, agent_pb2_grpc
from fos_pb import coordinator_pb2 as cpb
from fos_pb import coordinator_pb2_grpc as cpb_grpc
from fos_raft.cli.launcher import LocalCluster

STAGE = str(Path(__file__).resolve().parent / "signal_stage.py")


def _stats(address: str) -> agent_pb2.StatsReply:
    with grpc.insecure_channel(address) as channel:
        return agent_pb2_grpc.AgentStub(channel).Stats(agent_pb2.StatsRequest(), timeout=5)


def _confirmed_suspicions(cluster: LocalCluster) -> int:
    seen = []
    for address in cluster.grpc_addresses:  # the newest answer: replicas may lag
        with grpc.insecure_channel(address) as channel, contextlib.suppress(grpc.RpcError):
            reply = cpb_grpc.CoordinatorStub(channel).ClusterStatus(
                cpb.ClusterStatusRequest(), timeout=5)
            seen.append((reply.applied_index, reply.confirmed_suspicions))
    return max(seen)[1]


@pytest.mark.parametrize("consumer_mode", ["sync", "async"])
def test_sigterm_mid_cycle_is_a_clean_stop(tmp_path: Path, consumer_mode: str):
    supplier_mode = "async" if consumer_mode == "sync" else "sync"
    cluster = LocalCluster(3, tmp_path / "coord")
    procs = Procs(tmp_path)
    tag = consumer_mode[0]
    src, con = f"sig{tag}-src", f"sig{tag}-con"
    marks = {n: tmp_path / f"{n}-marks" for n in (src, con)}
    for path in marks.values():
        path.mkdir()
    try:
        cluster.start()
        cluster.wait_for_leader(30)
        coords = ",".join(cluster.grpc_addresses)
        procs.start(src, [sys.executable, STAGE, supplier_mode, src, f"{tag}x", "-", coords,
                          str(tmp_path / src), str(marks[src])])
        procs.start(con, [sys.executable, STAGE, consumer_mode, con, f"{tag}y", f"{tag}x",
                          coords, str(tmp_path / con), str(marks[con])])
        wait_until(lambda: (marks[con] / "held").exists(), 60, "the consumer mid-cycle")
        held = json.loads((marks[con] / "held").read_text())
        assert len(held) == 1
        src_address = (marks[src] / "ready").read_text()
        downs = _confirmed_suspicions(cluster)

        started = time.monotonic()
        rc = procs.terminate(con, timeout=30)
        took = time.monotonic() - started
        assert rc == 0, procs.log_tail(con, 40)
        assert _confirmed_suspicions(cluster) == downs  # nobody suspected it while it stopped
        assert (marks[con] / "after").exists()  # the block ended, the program went on
        assert took < 10.0, f"the stop took {took:.1f} s"
        state = read_wal(wal_path(tmp_path / con))
        assert state.inbound[held[0]].state is InState.QUEUED  # back in the queue
        # its supplier was told: nothing is left in transit to it (its long-poll, if one
        # was open, was ended with EndWait; what it received was confirmed)
        wait_until(lambda: _stats(src_address).in_transit_outbound == 0, 10,
                   "nothing in transit at the supplier")
        assert procs.terminate(src, timeout=30) == 0, procs.log_tail(src, 40)
        assert (marks[src] / "after").exists()
    finally:
        procs.stop_all()
        cluster.stop()


@pytest.mark.parametrize("unit", ["fos-agent@.service", "fos-program@.service"])
def test_systemd_waits_out_the_stop_bound(unit: str):
    text = (Path(__file__).resolve().parent.parent / "deploy" / "systemd" / unit).read_text()
    assert "KillSignal=SIGTERM" in text
    timeout = float(text.split("TimeoutStopSec=")[1].split()[0])
    assert timeout > stop_bound_s(AgentSettings())  # else systemd SIGKILLs a slow clean stop
