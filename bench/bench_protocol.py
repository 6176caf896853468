"""Protocol benchmark: trades through the pure state machine alone (no WAL, no gRPC).

    python -m bench.bench_protocol [--trades 20000] [--reps 7] [--check]

One trade is six ``Node.handle`` calls between a supplier S (wood) and a consumer C (frames
from wood), with immediate arrival: S Produce, C NewRequest, S RequestBatch, C BatchSent,
S DeliveryConfirmed, C Produce (consumes the wood). ``--check`` also applies every step's
writes to an in-memory `DurableState` through ``transitions.apply_writes``, the check the
LMDB WAL runs inside each transaction. Prints the median and p99 (bench.stats, nearest rank;
with few repetitions p99 is the worst one) over repetitions of microseconds per ``handle``
call, and trades/s: the CPU cost of the protocol layer, under bench_wal's and bench_trades'
figures.
"""

from __future__ import annotations

import argparse
import platform
import time

from bench.stats import sample_percentile
from fos_agent.protocol.machine import Node, NodeConfig
from fos_agent.protocol.messages import (
    BatchSent,
    DeliveryConfirmed,
    Effects,
    Event,
    FlowChanged,
    NewRequest,
    Produce,
    RequestBatch,
)
from fos_agent.protocol.records import DurableState
from fos_agent.protocol.transitions import apply_writes
from fos_raft.model import ItemReq

HANDLES_PER_TRADE = 6


def run_trades(trades: int, check: bool) -> float:
    """Seconds for ``trades`` trades between a fresh supplier and consumer."""
    s_store, c_store = DurableState("S"), DurableState("C")
    supplier, _ = Node.recover(NodeConfig("S", ItemReq("wood", 1)), s_store.copy())
    consumer, _ = Node.recover(
        NodeConfig("C", ItemReq("frame", 1), (ItemReq("wood", 1),), immediate_arrival=True),
        c_store.copy())
    supplier.handle(FlowChanged(1, frozenset({"C"})))

    def step(node: Node, store: DurableState, event: Event) -> Effects:
        effects = node.handle(event)
        if check and effects.writes:
            apply_writes(store, effects.writes)
        return effects

    t0 = time.perf_counter()
    for _ in range(trades):
        step(supplier, s_store, Produce())
        (request,) = step(consumer, c_store, NewRequest("S", "wood", flow_version=1)).messages
        assert isinstance(request, RequestBatch)
        sent = step(supplier, s_store, request).reply
        assert isinstance(sent, BatchSent)
        (confirm,) = step(consumer, c_store, sent).messages
        assert isinstance(confirm, DeliveryConfirmed)
        step(supplier, s_store, confirm)
        step(consumer, c_store, Produce((sent.batch.batch_id,)))
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--trades", type=int, default=20000, help="trades per repetition")
    parser.add_argument("--reps", type=int, default=7, help="repetitions")
    parser.add_argument("--check", action="store_true",
                        help="also check and apply every write group, as the WAL does")
    args = parser.parse_args()
    if args.trades < 1 or args.reps < 1:
        parser.error("--trades and --reps must be at least 1")
    print(f"python {platform.python_version()} on {platform.machine()}, "
          f"{args.trades} trades x {args.reps} reps, check={args.check}")
    rates = [args.trades / run_trades(args.trades, args.check) for _ in range(args.reps)]
    per_handle_us = [1e6 / (r * HANDLES_PER_TRADE) for r in rates]
    print(f"us/handle  median {sample_percentile(per_handle_us, 50):9.2f}   "
          f"p99 {sample_percentile(per_handle_us, 99):9.2f}")
    print(f"trades/s   median {sample_percentile(rates, 50):9.0f}   "
          f"worst {min(rates):9.0f}")


if __name__ == "__main__":
    main()
