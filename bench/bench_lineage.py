"""Lot genealogy and the bounded WAL (issue 10): trace speed, WAL size and recovery time
against history, and trades/s with the genealogy index on vs off.

    python -m bench.bench_lineage [--trace] [--wal 10000,1000000] [--trades] [--seconds 8]
                                [--reps 6]

- ``--trace``: a 20-deep chain of real WALs (fos_agent.testing.wal_chain); the back and
  forward trace of a final product, offline (``--data-dirs``: read-only LMDB) and online
  (each node's index served by a gRPC server with the agents' Lineage handler, over
  loopback, in one process). Goal < 1 s.
- ``--wal N,...``: a middle stage's WAL after N batches (each: received, consumed into an
  output, sent, confirmed), written through the WAL API in group-commit transactions
  (1000 groups each), compacted every 10,000 batches (the agent compacts every 5 s and at
  start): its file size, live records, history kept in the index and its recovery time
  (open + compact + load + Node.recover, best of 3), and the same without index or
  compaction for reference. Goal: flat.
- ``--trades``: the default pair of bench_trades (fos-agent processes, group commit,
  <= 16 batches per call) with the index on and off (``--no-lineage-index``), ``--reps``
  runs each (default 6) in ABBA order after an uncounted warm-up pair, so that the
  machine's drift hits both alike. Goal: within 10%.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import grpc.aio

from fos_agent.protocol.machine import Node, NodeConfig
from fos_agent.protocol.records import (
    Batch,
    InboundRecord,
    InState,
    OutboundRecord,
    OutState,
    PutInbound,
    PutOutbound,
    PutRequest,
    SetNextSeq,
    Write,
)
from fos_agent.storage.wal import Wal, wal_path
from fos_agent.testing.wal_chain import WalChain
from fos_pb import agent_pb2_grpc
from fos_raft.lineage.remote import IndexSources, views_to_pb
from fos_raft.lineage.trace import BACK, FORWARD, trace
from fos_raft.model import ItemReq


class _LineageOnly(agent_pb2_grpc.AgentServicer):
    """The agents' Lineage handler (fos_agent.net.service) over one WAL, nothing else."""

    def __init__(self, wal: Wal) -> None:
        self.wal = wal

    async def Lineage(self, request, context):  # type: ignore[no-untyped-def]
        return views_to_pb(self.wal.node_id, self.wal.lineage.lookup(list(request.batch_ids)))


async def _time_traces(sources: IndexSources, final: str, source: str,
                       reps: int) -> tuple[float, float]:
    back, fwd = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        b = await trace(final, BACK, sources.fetch)
        t1 = time.perf_counter()
        f = await trace(source, FORWARD, sources.fetch)
        t2 = time.perf_counter()
        assert b.complete and len(b.batches) == 20 and f.batches[-1].batch_id == final
        back.append(t1 - t0)
        fwd.append(t2 - t1)
    return statistics.median(back), statistics.median(fwd)


def bench_trace(base: Path, depth: int = 20, products: int = 50, reps: int = 20) -> None:
    chain = WalChain(base / "trace", depth)
    chain.final_products_fast(products)
    final = f"n{depth - 1}:{products // 2}"
    source = "n0:" + str(products // 2)
    chain.compact()
    chain.close()  # LMDB allows one environment per file per process: readers reopen

    async def run() -> None:
        offline = IndexSources({}, [chain.root])
        back, fwd = await _time_traces(offline, final, source, reps)
        await offline.aclose()
        print(f"trace, {depth}-deep chain, offline (--data-dirs): back {back * 1e3:.1f} ms, "
              f"forward {fwd * 1e3:.1f} ms (median of {reps})", flush=True)
        wals = {n: Wal.open(wal_path(chain.data_dir(n)), n) for n in chain.ids}
        servers, addresses = [], {}
        for node, wal in wals.items():
            server = grpc.aio.server()
            agent_pb2_grpc.add_AgentServicer_to_server(_LineageOnly(wal), server)
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            servers.append(server)
            addresses[node] = f"127.0.0.1:{port}"
        online = IndexSources(addresses)
        back, fwd = await _time_traces(online, final, source, reps)
        print(f"trace, {depth}-deep chain, online (Lineage RPC, loopback): back "
              f"{back * 1e3:.1f} ms, forward {fwd * 1e3:.1f} ms (median of {reps})", flush=True)
        await online.aclose()
        for server in servers:
            await server.stop(None)
        for wal in wals.values():
            wal.close()

    asyncio.run(run())


MIDDLE = NodeConfig("m", ItemReq("b", 1), (ItemReq("a", 1),), immediate_arrival=True)


def _middle_stage_groups(seq: int) -> list[list[Write]]:
    """The durable writes of one batch through a middle stage ``m`` (supplier ``s``,
    consumer ``c``), exactly as the protocol makes them: input received (immediate
    arrival), consumed into an output, output sent for a request, delivery confirmed."""
    src = Batch(f"s:{seq}", "a", 1, "s", seq)
    got = InboundRecord(src, InState.QUEUED, "s")
    out = OutboundRecord(Batch(f"m:{seq}", "b", 1, "m", seq, (src.batch_id,)), OutState.QUEUED)
    rid = f"c~1~{seq}"
    sent = replace(out, state=OutState.IN_TRANSIT, to="c", request_id=rid)
    return [[PutInbound(got)],
            [PutInbound(replace(got, state=InState.CONSUMED)), PutOutbound(out),
             SetNextSeq(seq + 1)],
            [PutOutbound(sent), PutRequest("c", rid, out.batch_id)],
            [PutOutbound(replace(sent, state=OutState.DELIVERED))]]


def _recovery_s(path: Path) -> float:
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        wal = Wal.open(path, "m")
        wal.compact()
        Node.recover(MIDDLE, wal.load(), wal.settled)
        best = min(best, time.perf_counter() - t0)
        wal.close()
    return best


def bench_wal(base: Path, counts: list[int], compact_every: int = 10_000,
              per_txn: int = 1000) -> None:
    """The middle stage's WAL after N batches written through the WAL API (each group
    checked by check_writes, ``per_txn`` groups per synced transaction, as group commit
    does under load), compacted every ``compact_every`` batches."""
    for n in counts:
        path = wal_path(base / f"wal{n}")
        wal = Wal.open(path, "m")
        t0 = time.perf_counter()
        groups: list[list[Write]] = []
        for seq in range(1, n + 1):
            groups += _middle_stage_groups(seq)
            if len(groups) >= per_txn:
                assert not any(wal.commit_groups(groups))
                groups = []
            if seq % compact_every == 0 or seq == n:
                if groups:
                    assert not any(wal.commit_groups(groups))
                    groups = []
                first = seq - (seq - 1) % compact_every
                ids = range(first, seq + 1)
                wal.compact(([f"m:{i}" for i in ids], [f"s:{i}" for i in ids]))
        build = time.perf_counter() - t0
        live = wal.load()
        full = wal.load(settled=True)
        wal.close()
        size = (path / "data.mdb").stat().st_size
        rec = _recovery_s(path)
        print(f"WAL after {n:>9,} batches (middle stage): live records "
              f"{len(live.outbound) + len(live.inbound)}, history {len(full.outbound):,} out / "
              f"{len(full.inbound):,} in, data.mdb {size / 2**20:.1f} MiB, recovery "
              f"{rec * 1e3:.1f} ms (built in {build:.0f} s)", flush=True)
        shutil.rmtree(base / f"wal{n}", ignore_errors=True)
    # reference: the same history without the index and compaction (the design before)
    n = min(counts)
    path = wal_path(base / "ref")
    wal = Wal.open(path, "m", lineage=False)
    groups = [g for seq in range(1, n + 1) for g in _middle_stage_groups(seq)]
    for i in range(0, len(groups), per_txn):
        assert not any(wal.commit_groups(groups[i:i + per_txn]))
    wal.close()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        wal = Wal.open(path, "m", lineage=False)
        Node.recover(MIDDLE, wal.load())
        best = min(best, time.perf_counter() - t0)
        wal.close()
    size = (path / "data.mdb").stat().st_size
    print(f"reference, no index/compaction, after {n:,} batches: live records {2 * n:,}, "
          f"data.mdb {size / 2**20:.1f} MiB, recovery {best * 1e3:.1f} ms", flush=True)


def ab_order(reps: int) -> list[str]:
    """on, off, off, on, on, off, ...: ABBA blocks, so a drift in the machine's speed hits
    both variants alike."""
    return [m for i in range(reps) for m in (("on", "off") if i % 2 == 0 else ("off", "on"))]


def bench_trades_ab(base: Path, seconds: float, warmup: float, reps: int) -> None:
    from bench.bench_trades import run_scenario
    from fos_raft.cli.launcher import LocalCluster

    results: dict[str, list[float]] = {"on": [], "off": []}
    cpu: dict[str, list[float]] = {"on": [], "off": []}
    with LocalCluster(1, base / "coord") as cluster:
        cluster.wait_for_leader(timeout=30)
        # not counted: the first pair of a fresh cluster runs slower (cold caches, the
        # coordinator's first flows), which biased the variant that always went first
        run_scenario("ab-warm", base, cluster.grpc_addresses, 1, [], 1.0, 2.0)
        for i, mode in enumerate(ab_order(reps)):
            extra = [] if mode == "on" else ["--no-lineage-index"]
            r = run_scenario(f"ab{i}-{mode}", base, cluster.grpc_addresses, 1, extra,
                             warmup, seconds)
            results[mode].append(r.trades_per_s)
            cpu[mode].append(r.cpu_ms_per_trade)
            print(f"pair, group commit, index {mode:3s}: {r.trades_per_s:7.0f} trades/s, "
                  f"{r.cpu_ms_per_trade:.3f} CPU ms per trade (both agents), load "
                  f"{os.getloadavg()[0]:.1f}", flush=True)
    on, off = statistics.mean(results["on"]), statistics.mean(results["off"])
    spread = {m: f"{min(v):.0f}-{max(v):.0f}" for m, v in results.items()}
    print(f"index on / off: {on:.0f} / {off:.0f} trades/s = {on / off:.3f} (mean of {reps} "
          f"each; runs spread on {spread['on']}, off {spread['off']})", flush=True)
    con, coff = statistics.mean(cpu["on"]), statistics.mean(cpu["off"])
    print(f"index on / off: {con:.3f} / {coff:.3f} CPU ms per trade = {con / coff:.3f}",
          flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench_lineage", description=__doc__.split("\n")[0])
    p.add_argument("--trace", action="store_true")
    p.add_argument("--wal", default="", metavar="N,...")
    p.add_argument("--trades", action="store_true")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--reps", type=int, default=6, help="runs of each variant (--trades)")
    args = p.parse_args(argv)
    if not (args.trace or args.wal or args.trades):
        args.trace, args.wal, args.trades = True, "10000,1000000", True
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; "
          f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; load avg {os.getloadavg()}",
          flush=True)
    base = Path(tempfile.mkdtemp(prefix="fos-bench-lineage-"))
    try:
        if args.trace:
            bench_trace(base)
        if args.wal:
            bench_wal(base, [int(x) for x in args.wal.split(",")])
        if args.trades:
            bench_trades_ab(base, args.seconds, args.warmup, args.reps)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
