"""Real chains for the self-healing end-to-end tests (issue 3): ``fos-agent`` processes on
a real ``fos-coordinator`` cluster, driven and observed only through their public surfaces
(Stats RPC, the coordinator's ListNodes/GetFlow/ClusterStatus, ``fosctl``, signals).

    chain = Chain(cluster, tmp_path)
    chain.start("saw-1", "wood:1")                       # listen on port 0, --ready-file
    chain.start("frame-1", "frame:1", "wood:1", cycle_s=0.1)
    chain.wait_ready()
    with chain.sampling(["frame-1"]) as progress:         # Stats polled in the background
        ...event...
    assert progress.rose("frame-1", t0, t1) >= 2
    chain.stop_all(); chain.audit(["saw-1", "frame-1"])

Every process is ended by its own PID (agent_util.Procs), also when a test fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import grpc
from agent_util import Procs, agent_command, wait_until

from fos_agent.audit import AuditReport, audit
from fos_agent.storage.wal import read_wal, wal_path
from fos_pb import agent_pb2, agent_pb2_grpc
from fos_pb import coordinator_pb2 as cpb
from fos_raft.cli.launcher import LocalCluster

EdgeKey = tuple[str, str, str, int]  # supplier, consumer, item, rank


class Coordinators:
    """Synchronous reads of a LocalCluster: every running replica is asked and the newest
    answer wins, so a lagging follower never makes the flow seem to go backwards."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster

    def _newest(self, call: str, request: object, version: str = "flow_version",
                patience: float = 15.0) -> object:
        deadline = time.monotonic() + patience  # a loaded machine answers late sometimes
        while True:
            best = None
            for i in self.cluster.running():
                try:
                    reply = getattr(self.cluster.stub(i), call)(request, timeout=2.0)
                except grpc.RpcError:
                    continue
                if best is None or _version(reply, version) > _version(best, version):
                    best = reply
            if best is not None:
                return best
            if time.monotonic() > deadline:
                raise AssertionError(f"no coordinator replica answered {call}")
            time.sleep(0.1)

    def nodes(self) -> dict[str, cpb.NodeInfo]:
        reply = self._newest("ListNodes", cpb.ListNodesRequest())
        return {n.spec.node_id: n for n in reply.nodes}  # type: ignore[attr-defined]

    def flow(self) -> cpb.Flow:
        return self._newest("GetFlow", cpb.GetFlowRequest(), "flow.version").flow  # type: ignore[attr-defined]

    def edges(self) -> set[EdgeKey]:
        return {(e.supplier, e.consumer, e.item, e.rank) for e in self.flow().edges}

    def status(self) -> cpb.ClusterStatusReply:
        return self._newest("ClusterStatus", cpb.ClusterStatusRequest())  # type: ignore[return-value]

    def alive(self, node: str) -> bool:
        info = self.nodes().get(node)
        return info is not None and info.alive


def _version(reply: object, path: str) -> int:
    for part in path.split("."):
        reply = getattr(reply, part)
    return int(reply)  # type: ignore[call-overload]


def touching(edges: Iterable[EdgeKey], node: str) -> set[EdgeKey]:
    return {e for e in edges if node in (e[0], e[1])}


def suppliers_of(edges: Iterable[EdgeKey], consumer: str, item: str) -> list[str]:
    """``consumer``'s suppliers of ``item`` in rank order (primary first)."""
    return [e[0] for e in sorted(edges, key=lambda e: e[3]) if e[1] == consumer
            and e[2] == item]


class Progress:
    """Counters of some agents sampled every ``every`` s in a background thread."""

    def __init__(self, chain: Chain, nodes: Sequence[str], counter: str, every: float) -> None:
        self.chain, self.nodes, self.counter, self.every = chain, list(nodes), counter, every
        self.samples: dict[str, list[tuple[float, float]]] = {n: [] for n in self.nodes}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for node in self.nodes:
                value = self.chain.counter(node, self.counter)
                if value >= 0:
                    self.samples[node].append((time.monotonic(), value))
            self._stop.wait(self.every)

    def value_at(self, node: str, t: float) -> float:
        """The last sample taken at or before ``t`` (the first one if none)."""
        samples = self.samples[node]
        assert samples, f"no Stats sample of {node}"
        before = [v for at, v in samples if at <= t]
        return before[-1] if before else samples[0][1]

    def rose(self, node: str, t0: float, t1: float) -> float:
        """How much the counter grew between ``t0`` and ``t1`` (monotonic seconds)."""
        return self.value_at(node, t1) - self.value_at(node, t0)

    def window_end(self, t0: float, t1: float, at_least_s: float) -> float:
        """``t1``, or ``t0 + at_least_s`` if that is later, once every node has a sample
        taken after it. An event can be over in half a second, and with samples every 0.2 s
        and a cycle of 0.2 s a window that short measures sampling jitter, not progress."""
        end = max(t1, t0 + at_least_s)
        wait_until(lambda: all(s and s[-1][0] > end for s in self.samples.values()),
                   end - time.monotonic() + 20.0, "samples after the window")
        return end


class Chain:
    """Agent processes of one test on a shared coordinator cluster."""

    def __init__(self, cluster: LocalCluster, root: Path) -> None:
        self.cluster = cluster
        self.coord = Coordinators(cluster)
        self.root = root
        self.procs = Procs(root)
        self.argv: dict[str, list[str]] = {}
        self._addresses: dict[str, str] = {}

    # ---- processes ---------------------------------------------------------------------

    def data_dir(self, node: str) -> Path:
        return self.root / node

    def _ready_file(self, node: str) -> Path:
        return self.root / f"{node}.ready"

    def start(self, node: str, produces: str | None = None, requires: str = "",
              cycle_s: float = 0.2, extra: Sequence[str] = ()) -> None:
        """Start (or restart, on the same data dir) ``node``'s fos-agent on a fresh port."""
        if node not in self.argv or produces is not None:
            args = [*agent_command(), "--node-id", node, "--listen", "127.0.0.1:0",
                    "--coordinators", ",".join(self.cluster.grpc_addresses),
                    "--data-dir", str(self.data_dir(node)), "--cycle-s", f"{cycle_s:g}",
                    "--ready-file", str(self._ready_file(node)), *extra]
            if produces is not None:
                args += ["--produces", produces]
            if requires:
                args += ["--requires", requires]
            self.argv[node] = args
        self._ready_file(node).unlink(missing_ok=True)
        self._addresses.pop(node, None)
        self.procs.start(node, self.argv[node])

    def ready(self, node: str) -> bool:
        proc = self.procs.procs[node]
        assert proc.poll() is None, f"{node} exited {proc.returncode}: {self.procs.log_tail(node)}"
        return self._ready_file(node).exists()

    def wait_ready(self, nodes: Iterable[str] | None = None, timeout: float = 60.0) -> None:
        for node in list(nodes or self.argv):
            wait_until(lambda n=node: self.ready(n), timeout, f"{node} ready")

    def address(self, node: str) -> str:
        if node not in self._addresses:
            self._addresses[node] = self._ready_file(node).read_text().strip()
        return self._addresses[node]

    def pid(self, node: str) -> int:
        return self.procs.procs[node].pid

    def kill(self, node: str) -> None:
        self.procs.kill(node)

    def pause(self, node: str) -> None:
        os.kill(self.pid(node), signal.SIGSTOP)

    def resume(self, node: str) -> None:
        os.kill(self.pid(node), signal.SIGCONT)

    def stop(self, node: str) -> None:
        """SIGTERM: the agent's clean stop (exit 0)."""
        rc = self.procs.terminate(node)
        assert rc == 0, f"{node} exited {rc}: {self.procs.log_tail(node)}"

    def stop_in_order(self, nodes: Sequence[str]) -> None:
        """Clean stops, consumers before their suppliers (requests in flight answered)."""
        for node in nodes:
            if self.procs.procs[node].poll() is None:
                self.stop(node)

    def close(self) -> None:
        """Whatever is still running (a failed test): ended by PID, SIGCONT first."""
        for proc in self.procs.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGCONT)
        self.procs.stop_all()

    # ---- observation -------------------------------------------------------------------

    def stats(self, node: str) -> agent_pb2.StatsReply | None:
        if self.procs.procs[node].poll() is not None or not self._ready_file(node).exists():
            return None
        with grpc.insecure_channel(self.address(node)) as channel:
            try:
                return agent_pb2_grpc.AgentStub(channel).Stats(agent_pb2.StatsRequest(),
                                                               timeout=2.0)
            except grpc.RpcError:
                return None

    def counter(self, node: str, name: str) -> float:
        reply = self.stats(node)
        return reply.counters[name] if reply is not None else -1.0

    def wait_counter(self, node: str, name: str, at_least: float,
                     timeout: float = 30.0) -> float:
        return wait_until(lambda: (v := self.counter(node, name)) >= at_least and (v,),
                          timeout, f"{node} {name} >= {at_least:g}")[0]

    def wait_flow_version(self, nodes: Iterable[str], version: int,
                          timeout: float = 20.0) -> None:
        """Until each of ``nodes`` follows flow ``version`` or newer (its WatchFlow)."""
        for node in nodes:
            wait_until(lambda n=node: (s := self.stats(n)) is not None
                       and s.flow_version >= version, timeout, f"{node} at flow {version}")

    @contextlib.contextmanager
    def sampling(self, nodes: Sequence[str], counter: str = "successful_cycles",
                 every: float = 0.2) -> Iterator[Progress]:
        progress = Progress(self, nodes, counter, every)
        progress._thread.start()
        try:
            wait_until(lambda: all(progress.samples[n] for n in nodes), 20.0, "first samples")
            yield progress
        finally:
            progress._stop.set()
            progress._thread.join()

    def fosctl(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(Path(sys.executable).parent / "fosctl"), "--coordinators",
               ",".join(self.cluster.grpc_addresses), "--timeout", "15", *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if ok:
            assert done.returncode == 0, f"fosctl {args}: {done.stderr}"
        return done

    def audit(self, nodes: Iterable[str]) -> AuditReport:
        """The quiescent batch audit over these (stopped) agents' WALs: every batch exactly
        once, nothing left in transit between audited nodes."""
        nodes = list(nodes)
        report = audit({n: self.data_dir(n) for n in nodes}, quiescent=True)
        assert report.ok, report.summary()
        assert report.in_transit == [], report.summary() + self._story(report.in_transit, nodes)
        return report

    def _story(self, batch_ids: list[str], nodes: list[str]) -> str:
        """What each agent's log says of these batches: a failure to explain, not rerun."""
        out = []
        for batch in batch_ids[:3]:
            for node in nodes:
                wal = read_wal(wal_path(self.data_dir(node)), settled=True)
                for side, records in (("out", wal.outbound), ("in", wal.inbound)):
                    if batch in records:
                        out.append(f"{node} WAL {side}: {records[batch]}")
                path = self.root / f"{node}.log"
                named = re.compile(re.escape(batch) + r"(?!\d)")  # fa-1:1, not fa-1:10
                lines = [ln for ln in path.read_text(errors="replace").splitlines()
                         if named.search(ln)] if path.exists() else []
                out += [f"{node}: {ln}" for ln in lines[-8:]]
        return "\n" + "\n".join(out)
