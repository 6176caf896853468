"""Agent-to-agent partition (issue 15), real processes: a consumer is cut off from its
primary supplier only (a TCP proxy on the supplier's advertised address black-holes that
one process's connections; the coordinator and everybody else still reach the supplier).
The consumer buys from its backup supplier, keeps producing, and after healing and a clean
stop the batch audit finds every batch exactly once: nothing lost, nothing duplicated.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_util import wait_until
from chain_util import Chain, suppliers_of
from faultproxy import ProcessCutProxy

from fos_raft.cli.launcher import LocalCluster, free_port

pytestmark = pytest.mark.slow
FRONT_HOST = "127.0.0.2"  # loopback alias the suppliers advertise; the proxy listens there


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    cluster = LocalCluster(3, tmp_path / "coord")
    try:
        cluster.start()
        cluster.wait_ready(timeout=30)
        (tmp_path / "agents").mkdir()
        c = Chain(cluster, tmp_path / "agents")
        try:
            yield c
        finally:
            c.close()
    finally:
        cluster.stop()


def test_consumer_cut_off_from_its_supplier_reroutes_and_loses_nothing(chain: Chain) -> None:
    ports = {node: free_port() for node in ("pa-1", "pa-2")}
    fronts = {node: f"{FRONT_HOST}:{port}" for node, port in ports.items()}
    proxy = ProcessCutProxy({fronts[n]: f"127.0.0.1:{ports[n]}" for n in ports})
    proxy.start()
    try:
        for node, port in ports.items():
            chain.start(node, "pa:1", cycle_s=0.1,
                        extra=["--listen", f"127.0.0.1:{port}", "--advertise", FRONT_HOST])
        chain.start("pc-1", "pc:1", "pa:1", cycle_s=0.1)
        chain.wait_ready()
        chain.wait_counter("pc-1", "successful_cycles", 3)
        primary, backup = suppliers_of(chain.coord.edges(), "pc-1", "pa")
        assert chain.coord.nodes()[primary].spec.address == fronts[primary]

        cut_at = time.time()
        proxy.cut_off(chain.pid("pc-1"), fronts[primary])
        before = chain.counter("pc-1", "successful_cycles")
        wait_until(lambda: any(r.supplier == backup and r.unix_ms >= cut_at * 1000
                               for r in chain.stats("pc-1").recent_receipts), 30,
                   "pc-1 buying from its backup")
        chain.wait_counter("pc-1", "successful_cycles", before + 5, timeout=30)
        assert proxy.held >= 1  # the consumer did try the cut link
        # Only pc-1 is cut off: the coordinator still reaches the primary (refutes, or
        # never hears a suspicion), so nobody else loses it.
        assert chain.coord.alive(primary)

        proxy.heal()
        chain.wait_counter("pc-1", "successful_cycles", before + 8, timeout=30)
        # Confirmations pc-1 could not send across the cut reach the supplier once healed.
        wait_until(lambda: all((st := chain.stats(n)) is not None and st.in_transit_outbound == 0
                               for n in ("pa-1", "pa-2")), 30, "every delivery confirmed")
    finally:
        proxy.heal()
        chain.stop_in_order([n for n in ("pc-1", "pa-1", "pa-2") if n in chain.procs.procs])
        proxy.stop()
    report = chain.audit(["pa-1", "pa-2", "pc-1"])
    assert report.consumed > 0
