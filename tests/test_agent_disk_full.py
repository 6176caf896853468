"""An agent whose data dir fills up (issue 15), real processes: the supplier's WAL lives on
a small tmpfs (root and mount needed: skipped otherwise; unmounted even on failure). With
the disk full its WAL commits fail loudly ("wal commit failed" on its log) and it hands out
nothing it could not record: its consumer stops receiving. When space returns it carries on
without a restart, and the quiescent audit finds every batch exactly once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_util import wait_until
from chain_util import Chain
from test_disk_full import fill, tmpfs

from fos_raft.cli.launcher import LocalCluster

pytestmark = pytest.mark.slow


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


def test_supplier_with_a_full_disk_stops_handing_out_and_recovers(chain: Chain) -> None:
    with tmpfs(chain.data_dir("da-1"), "32m") as disk:
        chain.start("da-1", "da:1", cycle_s=0.05)
        chain.start("db-1", "db:1", "da:1", cycle_s=0.05)
        chain.wait_ready()
        chain.wait_counter("db-1", "successful_cycles", 3)
        filler = fill(disk)
        log = chain.root / "da-1.log"
        wait_until(lambda: "wal commit failed" in log.read_text(errors="replace"), 30,
                   "da-1 saying its WAL cannot be written")
        # Goods recorded before the disk filled may still arrive (prefetch); then nothing.
        settled = chain.wait_counter("db-1", "successful_cycles", 0)
        window_end = time.monotonic() + 1.5
        while time.monotonic() < window_end:
            assert chain.counter("db-1", "successful_cycles") <= settled + 3
            time.sleep(0.1)  # sampling an observation window, not synchronisation
        stalled = chain.counter("db-1", "successful_cycles")
        os.unlink(filler)
        chain.wait_counter("db-1", "successful_cycles", stalled + 5, timeout=30)
        assert chain.procs.procs["da-1"].poll() is None  # no restart was needed
        wait_until(lambda: (st := chain.stats("da-1")) is not None
                   and st.in_transit_outbound == 0, 30, "every delivery confirmed")
        chain.stop_in_order(["db-1", "da-1"])
        report = chain.audit(["da-1", "db-1"])  # before the tmpfs (and da-1's WAL) goes
    assert report.consumed > 0
