"""Issue 3 end to end, real processes: the coordinator is off the data path. Killing the
coordinator leader, or the whole coordinator cluster for a while, does not stop agents
producing and trading on the flow they have; a supplier that dies during the outage is
bypassed locally, and the suspicion its consumer could not deliver reaches the cluster when
it is back (the supplier is marked down, the flow follows).

Its own cluster: the test kills it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from agent_util import wait_until
from chain_util import Chain, suppliers_of, touching

from fos_raft.cli.launcher import LocalCluster

pytestmark = pytest.mark.slow

STAGES = ["fa-1", "fa-2", "fb-1", "fc-1"]


@pytest.fixture
def cluster(tmp_path: Path):
    c = LocalCluster(3, tmp_path / "coord")
    try:
        c.start()
        c.wait_ready(timeout=30)
        yield c
    finally:
        c.stop()


@pytest.fixture
def chain(cluster: LocalCluster, tmp_path: Path):
    c = Chain(cluster, tmp_path / "agents")
    c.root.mkdir()
    try:
        yield c
    finally:
        c.close()


def received_from_since(chain: Chain, consumer: str, supplier: str, unix_s: float) -> int:
    reply = chain.stats(consumer)
    if reply is None:
        return 0
    return sum(1 for r in reply.recent_receipts
               if r.supplier == supplier and r.unix_ms >= unix_s * 1000)


def undelivered_report(chain: Chain, node: str, suspect: str) -> bool:
    """``node``'s log says a suspicion of ``suspect`` found no coordinator to take it."""
    log = (chain.root / f"{node}.log").read_text(errors="replace")
    return any("suspicion not delivered yet" in line and f'"suspect": "{suspect}"' in line
               for line in log.splitlines())


def test_agents_trade_through_leader_kill_and_full_outage_and_report_after(
        chain: Chain, cluster: LocalCluster):
    for node in ("fa-1", "fa-2"):
        chain.start(node, "fa:1", cycle_s=0.1)
    chain.start("fb-1", "fb:1", "fa:1", cycle_s=0.2)
    chain.start("fc-1", "fc:1", "fb:1", cycle_s=0.2)
    chain.wait_ready()
    chain.wait_counter("fc-1", "successful_cycles", 3)
    primary, backup = suppliers_of(chain.coord.edges(), "fb-1", "fa")
    version = chain.stats("fb-1").flow_version

    with chain.sampling(["fb-1", "fc-1", "fa-1", "fa-2"]) as progress:

        def producing(since: float) -> bool:
            """Both stages that buy, and the sources together (which of the two sells
            depends on who answered fb-1 first), made 3 cycles since ``since``."""
            now = time.monotonic()
            sources = progress.rose("fa-1", since, now) + progress.rose("fa-2", since, now)
            return (sources >= 3 and progress.rose("fb-1", since, now) >= 3
                    and progress.rose("fc-1", since, now) >= 3)

        # 1. the leader dies: a new one is elected; the agents do not even notice
        leader = cluster.wait_for_leader(10)
        t_kill = time.monotonic()
        cluster.kill(leader)
        assert cluster.wait_for_leader(30) != leader
        wait_until(lambda: producing(t_kill), 20, "production after the leader kill")
        cluster.restart(leader)

        # 2. the whole cluster dies; the chain goes on with the flow it has
        for i in cluster.running():
            cluster.kill(i)
        t_outage = time.monotonic()
        wait_until(lambda: producing(t_outage), 20, "production with no coordinator")
        # a supplier dies meanwhile: its consumer switches to the backup on its own ...
        killed_at = time.time()
        chain.kill(primary)
        t_dead = time.monotonic()
        wait_until(lambda: received_from_since(chain, "fb-1", backup, killed_at) >= 3, 20,
                   "fb-1 buying from the backup")
        wait_until(lambda: progress.rose("fc-1", t_dead, time.monotonic()) >= 3, 20,
                   "fc-1 producing")
        # ... and suspects it, but cannot tell anyone yet (its detector retries the report)
        wait_until(lambda: undelivered_report(chain, "fb-1", primary), 20,
                   "fb-1 trying to report the dead supplier")
        assert chain.counter("fb-1", "suspicions_reported") == 0
        assert chain.stats("fb-1").flow_version == version

        # 3. the cluster is back: the suspicion is delivered, the supplier marked down
        cluster.start()
        cluster.wait_for_leader(30)
        chain.wait_counter("fb-1", "suspicions_reported", 1)
        info = wait_until(lambda: (n := chain.coord.nodes()[primary]) and not n.alive
                          and n, 30, f"{primary} marked down")
        assert info.down_reason
        edges = wait_until(lambda: (e := chain.coord.edges()) and not touching(e, primary)
                           and e, 20, "the flow without it")
        assert suppliers_of(edges, "fb-1", "fa") == [backup]
        wait_until(lambda: chain.stats("fb-1").flow_version > version, 20,
                   "fb-1 following the new flow")
        t_after = time.monotonic()
        assert progress.rose("fc-1", t_outage, t_after) >= 6

    chain.start(primary)  # it comes back and rejoins
    chain.wait_ready([primary])
    wait_until(lambda: chain.coord.nodes()[primary].alive, 30, f"{primary} back")
    # what it had in transit when it was killed completes (re-offered from its WAL), and so
    # does what the backup sent as fb-1's long-poll was cut short by the rejoin's flow change
    # (re-offered too): a clean stop of fb-1 before that would leave it in transit
    for source in ("fa-1", "fa-2"):
        wait_until(lambda s=source: (r := chain.stats(s)) is not None
                   and r.in_transit_outbound == 0, 30, f"{source}'s batches in transit delivered")
    chain.stop_in_order(["fc-1", "fb-1", "fa-1", "fa-2"])
    chain.audit(STAGES)
