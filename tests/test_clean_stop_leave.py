"""A clean stop tells the coordinator: real ``fos-agent`` processes on a real 3-replica
cluster. A consumer has two suppliers (a primary and a backup); the primary is SIGTERMed.
The coordinator lists it ``down`` with reason ``stopped`` within a fraction of the
suspicion time, no suspicion was reported or confirmed, the consumer's flow moves to the
backup and it keeps producing; restarted, the supplier rejoins and is in the flow again.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from agent_util import wait_until
from chain_util import Chain, suppliers_of

from fos_raft.cli.launcher import LocalCluster
from fos_raft.model import STOPPED_REASON, NodeState

# a crash is noticed after the neighbours' suspicion and the coordinator's probe (about
# 6 s with the defaults): a Leave must be far quicker than that
DOWN_WITHIN_S = 1.0


def test_sigterm_marks_the_node_down_at_once_and_its_consumer_moves_to_the_backup(
        tmp_path: Path) -> None:
    cluster = LocalCluster(3, tmp_path / "coord")
    chain = Chain(cluster, tmp_path / "agents")
    chain.root.mkdir()
    try:
        cluster.start()
        cluster.wait_ready(timeout=30)
        for node in ("lv-src-1", "lv-src-2"):
            chain.start(node, "lvx:1", cycle_s=0.1)
        chain.start("lv-con", "lvy:1", "lvx:1", cycle_s=0.1)
        chain.wait_ready()
        chain.wait_counter("lv-con", "successful_cycles", 2)
        wait_until(lambda: len(suppliers_of(chain.coord.edges(), "lv-con", "lvx")) == 2, 20,
                   "a primary and a backup")
        primary, backup = suppliers_of(chain.coord.edges(), "lv-con", "lvx")
        confirmed = chain.coord.status().confirmed_suspicions
        reported = chain.counter("lv-con", "suspicions_reported")
        assert reported >= 0

        sent = time.monotonic()
        os.kill(chain.pid(primary), signal.SIGTERM)
        wait_until(lambda: not chain.coord.nodes()[primary].alive, 10, f"{primary} down")
        took = time.monotonic() - sent
        info = chain.coord.nodes()[primary]
        assert info.state == NodeState.DOWN.value
        assert info.down_reason == STOPPED_REASON
        assert took < DOWN_WITHIN_S, f"marked down {took:.2f} s after SIGTERM"
        assert chain.procs.procs[primary].wait(30) == 0, chain.procs.log_tail(primary, 40)

        assert suppliers_of(chain.coord.edges(), "lv-con", "lvx") == [backup]
        cycles = chain.counter("lv-con", "successful_cycles")
        chain.wait_counter("lv-con", "successful_cycles", cycles + 3, timeout=15)
        assert chain.coord.status().confirmed_suspicions == confirmed
        assert chain.counter("lv-con", "suspicions_reported") == reported

        chain.start(primary)  # same data dir, a new port: it rejoins
        chain.wait_ready([primary])
        wait_until(lambda: chain.coord.nodes()[primary].state == NodeState.IN_FLOW.value,
                   20, f"{primary} in the flow again")
        wait_until(lambda: primary in suppliers_of(chain.coord.edges(), "lv-con", "lvx"),
                   20, f"{primary} supplies lv-con again")
        chain.stop_in_order(["lv-con", primary, backup])
    finally:
        chain.close()
        cluster.stop()
