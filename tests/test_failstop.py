"""Fail-stop: a replica whose snapshot cannot be loaded ends at once with a clear reason
instead of running on with state its applied index does not describe (fos_raft.replica.failstop)."""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys

from coord_util import WINDOW_FACTORY, register_all, wait_until

from fos_raft.cli.launcher import LocalCluster
from fos_raft.replica.failstop import EXIT_STATUS


def test_unloadable_snapshot_stops_the_replica(tmp_path):
    """A snapshot on disk that does not load ends the replica with the fail-stop status
    (checked before Raft starts; one received from the leader that fails to load part-way
    goes through the fail-stop handler, whose records are tested below)."""
    with LocalCluster(3, tmp_path) as cluster:
        leader = cluster.wait_ready()
        register_all(cluster, leader, WINDOW_FACTORY[:3])
        digest = cluster.wait_converged()
        victim = next(i for i in range(3) if i != leader)
        cluster.kill(victim)
        (cluster.data_dir(victim) / "raft.dump").write_bytes(b"not a gzip'd snapshot")
        # it may end before it serves gRPC: the exit status below is the point
        with contextlib.suppress(RuntimeError):
            cluster.restart(victim)
        proc = cluster.procs[victim]
        assert proc is not None
        wait_until(lambda: proc.poll() is not None, timeout=30,
                   what="the replica with an unloadable snapshot to exit")
        assert proc.returncode == EXIT_STATUS
        err = cluster.stderr_tail(victim, lines=60)
        # refused before Raft starts (fos_raft.replica.storage_check), in one line
        assert "raft.dump is damaged" in err and "Replacing a replica" in err, err
        # the other two carry on with the same state
        survivors = [i for i in range(3) if i != victim]
        assert cluster.wait_converged(survivors) == digest


def test_only_state_unknown_records_stop_the_process():
    # 'failed to connect' is logged and ignored; 'failed _onTick' ends the process with 70
    code = (
        "import logging, sys\n"
        "from fos_raft.replica import failstop\n"
        "failstop.install(); failstop.install()\n"
        "log = logging.getLogger(failstop.PYSYNCOBJ_LOGGER)\n"
        "log.error('failed to connect')\n"
        "assert sum(isinstance(h, failstop.FailStopHandler) for h in log.handlers) == 1\n"
        "try:\n"
        "    raise ValueError('boom')\n"
        "except ValueError:\n"
        "    log.exception('failed _onTick in _autoTickThread')\n"
        "sys.exit(0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == EXIT_STATUS, done.stderr
    assert "failed _onTick" in done.stderr and "ValueError: boom" in done.stderr
    assert logging.getLogger("pysyncobj.syncobj").handlers == []  # nothing leaked into pytest
