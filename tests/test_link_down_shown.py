"""A link fault is shown, real processes: a consumer is cut off from its primary supplier
only (a TCP proxy on the supplier's advertised address black-holes that one process's
connections; the coordinator still reaches the supplier). Its suspicion is refuted, the
consumer's next production report lists the link, and ``fosctl nodes --json`` shows
"link down SUPPLIER -> CONSUMER" until a report after the heal leaves it out; the
suspicion is not repeated every few seconds meanwhile.
"""

from __future__ import annotations

import json
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


def links_down(chain: Chain) -> list[tuple[str, str]]:
    doc = json.loads(chain.fosctl("--json", "nodes").stdout)
    return [(link["supplier"], link["consumer"]) for link in doc["links_down"]]


def test_a_cut_link_is_shown_down_until_it_heals(chain: Chain) -> None:
    ports = {node: free_port() for node in ("la-1", "la-2")}
    fronts = {node: f"{FRONT_HOST}:{port}" for node, port in ports.items()}
    proxy = ProcessCutProxy({fronts[n]: f"127.0.0.1:{ports[n]}" for n in ports})
    proxy.start()
    try:
        for node, port in ports.items():
            chain.start(node, "la:1", cycle_s=0.1,
                        extra=["--listen", f"127.0.0.1:{port}", "--advertise", FRONT_HOST])
        chain.start("lc-1", "lc:1", "la:1", cycle_s=0.1)
        chain.wait_ready()
        chain.wait_counter("lc-1", "successful_cycles", 3)
        primary, _backup = suppliers_of(chain.coord.edges(), "lc-1", "la")
        assert links_down(chain) == []

        proxy.cut_off(chain.pid("lc-1"), fronts[primary])
        cut_at = time.monotonic()
        wait_until(lambda: links_down(chain) == [(primary, "lc-1")], 40, "the link shown down")
        shown_after = time.monotonic() - cut_at
        doc = json.loads(chain.fosctl("--json", "nodes").stdout)
        assert doc["links_down"][0]["text"].startswith(f"link down {primary} -> lc-1 since ")
        table = chain.fosctl("nodes").stdout
        assert f"link down {primary} -> lc-1 since" in table
        assert chain.coord.alive(primary)  # refuted: no false death
        # the backoff: a cut link is not re-reported every couple of seconds
        reported = chain.counter("lc-1", "suspicions_reported")
        time.sleep(4.0)  # a span to count over, not a synchronisation
        assert chain.counter("lc-1", "suspicions_reported") <= reported + 1

        proxy.heal()
        wait_until(lambda: links_down(chain) == [], 30, "the link shown up again")
        assert shown_after < 30
    finally:
        proxy.heal()
        chain.stop_in_order([n for n in ("lc-1", "la-1", "la-2") if n in chain.procs.procs])
        proxy.stop()
