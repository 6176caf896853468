"""Stress snapshot catch-up: kill replicas at awkward moments and check the replicas converge.

One 3-replica cluster (real processes, log compaction every ``--compaction`` entries) runs
``--rounds`` rounds. Each round writes, SIGKILLs one replica (a follower, or the leader with
``--scenario leader``), writes more than a compaction interval while it is down so only the
leader's snapshot can catch it up, restarts it and waits until every replica reports the same
applied index, flow version and state digest. Scenarios add the awkward moments:

* ``basic``        kill, write, restart, no writes during catch-up (the pytest scenario);
* ``busy``         keep writing from a thread while the replica restarts and catches up;
* ``twice``        kill the restarted replica again after a random 0-300 ms (mid transfer);
* ``compaction``   kill the replica right after it replaced its own raft.dump;
* ``leader``       kill the leader instead of a follower (elections + snapshots);
* ``pause``        while it catches up, SIGSTOP/SIGCONT random replicas for 50-800 ms
                   (a loaded machine's scheduling stalls: elections, stale messages);
* ``mix``          a random one of the above per round.

On divergence it prints each replica's status and leaves the cluster's directory in place
(``--dir``); exit status 1. Run: ``.venv/bin/python scripts/snapshot_stress.py --rounds 20``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from coord_util import WINDOW_FACTORY, register_all, retry_unavailable

from fos_pb import coordinator_pb2 as pb
from fos_raft.cli.launcher import LocalCluster

SCENARIOS = ("basic", "busy", "twice", "compaction", "leader", "pause")


class Toggler:
    """Drain/undrain one node through any replica; counts successful writes."""

    def __init__(self, cluster: LocalCluster, node: str = "saw-1") -> None:
        self.cluster = cluster
        self.node = node
        self.writes = 0
        self._k = 0

    def toggle(self, count: int, via: int | None = None) -> None:
        for _ in range(count):
            target = via if via is not None else random.choice(self.cluster.running())
            request = pb.NodeRequest(node_id=self.node)
            stub = self.cluster.stub(target)
            call = stub.Drain if self._k % 2 == 0 else stub.Undrain
            self._k += 1
            try:
                retry_unavailable(lambda call=call, request=request: call(request, timeout=5))
                self.writes += 1
            except (grpc.RpcError, ValueError):
                pass  # the target died under us (its channel closed): the next write goes elsewhere


def describe(cluster: LocalCluster) -> str:
    lines = []
    for i in range(cluster.n):
        if not cluster.is_running(i):
            lines.append(f"  r{i}: not running")
            continue
        try:
            st = cluster.status(i)
        except grpc.RpcError as exc:
            lines.append(f"  r{i}: {exc.code()}")
            continue
        lines.append(
            f"  r{i}: applied {st.applied_index} commit {st.commit_index} term {st.term} "
            f"leader {st.leader} version {st.flow_version} digest {st.state_digest[:12]}"
        )
    return "\n".join(lines)


def converged(cluster: LocalCluster, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            views = {
                (s.applied_index, s.flow_version, s.state_digest)
                for s in (cluster.status(i) for i in range(cluster.n))
            }
        except grpc.RpcError:
            views = set()
        if len(views) == 1:
            return True
        time.sleep(0.1)
    return False


def wait_dump_replaced(path: Path, timeout: float) -> bool:
    """True once ``path`` is a new file (its inode changed): the replica compacted."""
    before = path.stat().st_ino if path.exists() else None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if path.stat().st_ino != before:
                return True
        except FileNotFoundError:
            pass
        time.sleep(0.002)
    return False


class Pauser(threading.Thread):
    """SIGSTOP a random running replica for a random 50-800 ms, SIGCONT it, repeat until
    stopped. Only this cluster's own replica PIDs are signalled."""

    def __init__(self, cluster: LocalCluster) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.done = threading.Event()
        self.pauses = 0

    def run(self) -> None:
        while not self.done.is_set():
            running = self.cluster.running()
            pid = self.cluster.pid(random.choice(running)) if running else None
            if pid is None:
                time.sleep(0.05)
                continue
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                continue
            try:
                self.done.wait(random.uniform(0.05, 0.8))
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
            self.pauses += 1
            self.done.wait(random.uniform(0.0, 0.3))


def run_round(cluster: LocalCluster, toggler: Toggler, scenario: str, compaction: int) -> None:
    leader = cluster.wait_for_leader(timeout=20)
    toggler.toggle(random.randint(1, compaction))
    victim = leader if scenario == "leader" else random.choice(
        [i for i in range(cluster.n) if i != leader]
    )
    cluster.kill(victim)
    toggler.toggle(3 * compaction + random.randint(0, compaction))
    busy: threading.Thread | None = None
    if scenario == "busy":
        busy = threading.Thread(target=toggler.toggle, args=(2 * compaction,))
        busy.start()
    pauser: Pauser | None = None
    if scenario == "pause":
        pauser = Pauser(cluster)
        pauser.start()
        busy = threading.Thread(target=toggler.toggle, args=(2 * compaction,))
        busy.start()
    cluster.restart(victim)
    if scenario == "twice":
        time.sleep(random.uniform(0.0, 0.3))
        cluster.kill(victim)
        cluster.restart(victim)
    elif scenario == "compaction":
        dump = cluster.data_dir(victim) / "raft.dump"
        toggler.toggle(compaction // 2)
        writer = threading.Thread(target=toggler.toggle, args=(2 * compaction,))
        writer.start()
        if wait_dump_replaced(dump, timeout=10):
            cluster.kill(victim)
        writer.join()
        cluster.restart(victim)
    if busy is not None:
        busy.join()
    if pauser is not None:
        pauser.done.set()
        pauser.join()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--scenario", choices=(*SCENARIOS, "mix"), default="mix")
    parser.add_argument("--compaction", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=30.0, help="convergence deadline")
    parser.add_argument("--dir", type=Path, default=None, help="cluster dir (kept)")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    # SIGTERM ends the run like Ctrl-C: the cluster's replicas are stopped, not orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    random.seed(seed)
    base = args.dir or Path(tempfile.mkdtemp(prefix="snapshot-stress-"))
    print(f"seed {seed} dir {base}", flush=True)
    with LocalCluster(3, base, log_compaction_entries=args.compaction) as cluster:
        leader = cluster.wait_ready()
        register_all(cluster, leader, WINDOW_FACTORY[:4])
        toggler = Toggler(cluster)
        for n in range(1, args.rounds + 1):
            scenario = random.choice(SCENARIOS) if args.scenario == "mix" else args.scenario
            started = time.monotonic()
            run_round(cluster, toggler, scenario, args.compaction)
            ok = converged(cluster, args.timeout)
            took = time.monotonic() - started
            print(f"round {n} {scenario}: {'ok' if ok else 'DIVERGED'} ({took:.1f}s, "
                  f"{toggler.writes} writes)", flush=True)
            if not ok:
                print(describe(cluster), flush=True)
                print(f"kept {base}", flush=True)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
