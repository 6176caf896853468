"""Reroute time: SIGKILL of a consumer's supplier -> its first batch from another supplier.

    python -m bench.bench_reroute [--reps 24] [--cycle-s 0.1]

Real processes: a 3-replica coordinator cluster and three ``fos-agent`` processes on
loopback, two suppliers of item ``w`` (``s1``, ``s2``) and one consumer ``c`` (a final
stage buying one ``w`` per cycle). Each repetition:

1. waits until ``c`` trades with its current supplier (a receipt from it in the last
   second) and the other supplier, its backup, has stock (Stats ``queued_outbound`` >= 1:
   it has goods to give, so the figure is the switch, not the backup's production rate);
2. SIGKILLs the supplier ``c`` is buying from, noting the wall clock just before the kill;
3. reroute = the first receipt at ``c`` from the backup (the agent's ``recent_receipts``
   ring: supplier, batch id, wall-clock ms when the inbound record became durable) minus
   the kill time. Also measured: kill -> the coordinator lists the supplier down (its
   neighbours' suspicion, the coordinator's probe, ``mark_down``) and -> the flow no longer
   names it (the reflow everybody follows);
4. restarts the killed supplier on its data dir and waits until it is back in the flow
   and ``c`` knows it as its backup.

The consumer does not wait for the coordinator: a killed supplier refuses connections at
once, and the consumer asks its next-ranked supplier (fos_agent.runtime.inputs). Prints every
repetition and p50 / p99 / max. Goal (issue 3): reroute p50 <= 0.5 s, p99 <= 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc

from bench.sim.procs import AgentSupervisor, free_ports
from bench.stats import sample_percentile
from fos_pb import agent_pb2, agent_pb2_grpc
from fos_pb import coordinator_pb2 as cpb
from fos_raft.cli.launcher import LocalCluster
from fos_raft.model import ItemReq, NodeSpec

SUPPLIERS = ("s1", "s2")
CONSUMER = "c"


@dataclass
class Rep:
    killed: str
    backup: str
    reroute_s: float
    marked_down_s: float
    reflowed_s: float
    backup_stock: int


def wait(cond, timeout: float, what: str, interval: float = 0.01):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


class Bench:
    def __init__(self, root: Path, cycle_s: float) -> None:
        self.cluster = LocalCluster(3, root / "coord")
        ports = free_ports(3)
        self.specs = {
            "s1": NodeSpec("s1", f"127.0.0.1:{ports[0]}", ItemReq("w", 1)),
            "s2": NodeSpec("s2", f"127.0.0.1:{ports[1]}", ItemReq("w", 1)),
            CONSUMER: NodeSpec(CONSUMER, f"127.0.0.1:{ports[2]}", ItemReq("f", 1),
                               (ItemReq("w", 1),)),
        }
        self.agents = AgentSupervisor(root, self.cluster.grpc_addresses, cycle_s)
        self._channels: dict[str, grpc.Channel] = {}

    def stats(self, node: str) -> agent_pb2.StatsReply | None:
        address = self.specs[node].address
        if address not in self._channels:
            self._channels[address] = grpc.insecure_channel(address)
        try:
            return agent_pb2_grpc.AgentStub(self._channels[address]).Stats(
                agent_pb2.StatsRequest(), timeout=1.0)
        except grpc.RpcError:
            return None

    def read(self, call: str, request: object) -> object | None:
        for i in self.cluster.running():
            try:
                return getattr(self.cluster.stub(i), call)(request, timeout=1.0)
            except grpc.RpcError:
                continue
        return None

    def alive(self, node: str) -> bool | None:
        reply = self.read("ListNodes", cpb.ListNodesRequest())
        if reply is None:
            return None
        return any(n.spec.node_id == node and n.alive for n in reply.nodes)  # type: ignore[attr-defined]

    def ranked(self) -> tuple[list[str], int]:
        """The consumer's suppliers of w by rank, and the flow version."""
        reply = self.read("GetFlow", cpb.GetFlowRequest())
        if reply is None:
            return [], 0
        flow = reply.flow  # type: ignore[attr-defined]
        edges = sorted((e.rank, e.supplier) for e in flow.edges if e.consumer == CONSUMER)
        return [s for _, s in edges], int(flow.version)

    def buying_from(self, within_s: float = 1.0) -> str | None:
        """The supplier the consumer received from last, if that was recent."""
        reply = self.stats(CONSUMER)
        if reply is None or not reply.recent_receipts:
            return None
        last = reply.recent_receipts[-1]
        return last.supplier if reply.unix_time * 1000 - last.unix_ms <= within_s * 1000 else None

    def steady(self) -> tuple[str, str, int] | None:
        """(current supplier, its backup, backup stock) once both are in the consumer's flow
        and the backup has goods; None until then."""
        ranked, version = self.ranked()
        current = self.buying_from()
        con = self.stats(CONSUMER)
        if len(ranked) != 2 or current not in ranked or con is None:
            return None
        if con.flow_version < version:
            return None  # the consumer does not know the backup's address yet
        backup = next(s for s in ranked if s != current)
        stock = self.stats(backup)
        if stock is None or stock.queued_outbound < 1 or stock.flow_version < version:
            return None  # no goods, or it does not know the consumer may buy from it yet
        return current, backup, stock.queued_outbound

    def start(self) -> None:
        self.cluster.start()
        self.cluster.wait_ready(30)
        for spec in self.specs.values():
            self.agents.start(spec)

    def rep(self) -> Rep:
        current, backup, stock = wait(self.steady, 60, "a steady consumer with a stocked backup")
        killed_at = time.time()
        self.agents.kill(current)
        t0 = time.monotonic()

        def first_from_backup() -> float | None:
            reply = self.stats(CONSUMER)
            if reply is None:
                return None
            for r in reply.recent_receipts:
                if r.supplier == backup and r.unix_ms >= killed_at * 1000:
                    return r.unix_ms / 1000 - killed_at
            return None

        reroute = wait(first_from_backup, 30, "the reroute")
        down = wait(lambda: self.alive(current) is False and time.monotonic(), 30,
                    "mark_down") - t0
        reflowed = wait(lambda: current not in self.ranked()[0] and time.monotonic(), 30,
                        "reflow") - t0
        self.agents.restart(current)
        wait(lambda: self.alive(current), 60, "rejoin")
        return Rep(current, backup, reroute, down, reflowed, stock)

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self.agents.stop_all()
        self.cluster.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=24)
    p.add_argument("--cycle-s", type=float, default=0.1, help="every stage's cycle")
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--keep", action="store_true", help="keep the run directory")
    args = p.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="fos-reroute-"))
    print(f"bench_reroute: {args.reps} SIGKILLs, cycle {args.cycle_s:g} s, "
          f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, "
          f"{time.strftime('%a %b %d %H:%M:%S %Z %Y')}")
    bench = Bench(root, args.cycle_s)
    reps: list[Rep] = []
    try:
        bench.start()
        for i in range(args.reps):
            rep = bench.rep()
            reps.append(rep)
            print(f"  {i + 1:2d} kill {rep.killed}: first batch from {rep.backup} "
                  f"(stock {rep.backup_stock}) after {rep.reroute_s * 1000:7.1f} ms; "
                  f"marked down {rep.marked_down_s:5.2f} s, reflow {rep.reflowed_s:5.2f} s",
                  flush=True)
    finally:
        bench.close()
        if args.keep:
            print(f"run directory kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    summary = {}
    for name in ("reroute_s", "marked_down_s", "reflowed_s"):
        values = [getattr(r, name) for r in reps]
        summary[name] = {"p50": sample_percentile(values, 50), "p99": sample_percentile(values, 99),
                         "max": max(values), "n": len(values)}
        ms = {k: summary[name][k] * 1000 for k in ("p50", "p99", "max")}
        print(f"{name:14s} p50 {ms['p50']:8.1f} ms   p99 {ms['p99']:8.1f} ms   "
              f"max {ms['max']:8.1f} ms   (n={len(values)})")
    print(f"load average at the end: {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary,
                                         "reps": [asdict(r) for r in reps]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
