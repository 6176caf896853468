"""Cost of the coordinator's production figures: one ReportProduction recorded in the
replica's soft book, and one GetProduction document over a full hour of reports.

    .venv/bin/python -m bench.bench_production [--nodes 300]
"""

from __future__ import annotations

import argparse
import json
import time

from fos_pb import coordinator_pb2 as pb
from fos_raft.api.production import KEEP_S, REPORT_EVERY_S, ProductionBook


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=300)
    args = p.parse_args()
    clock = FakeClock()
    book = ProductionBook(clock)
    steps = int(KEEP_S / REPORT_EVERY_S)
    started = time.perf_counter()
    for step in range(steps):
        clock.now = step * REPORT_EVERY_S
        for i in range(args.nodes):
            book.record(pb.ProductionReport(
                node_id=f"n{i}", incarnation=1, produces="x", batches_produced=step,
                cycles_ok=step, cycles_waiting={"a": step // 3}, cycles_blocked=1))
    per_report = (time.perf_counter() - started) / (steps * args.nodes)
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        text = json.dumps(book.document(3600.0, "r0"))
        runs.append(time.perf_counter() - started)
    print(json.dumps({"nodes": args.nodes, "samples_per_node": steps,
                      "record_us": round(per_report * 1e6, 1),
                      "document_ms_median": round(sorted(runs)[2] * 1000, 1),
                      "document_bytes": len(text)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
