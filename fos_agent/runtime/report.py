"""The agent's production report to the coordinator (``ReportProduction``): cumulative
counters of this incarnation, read from the metrics. Sent every few seconds by the
coordinator side and once more when the agent stops; the coordinator keeps it as soft
state (docs/operations.md, "Production figures")."""

from __future__ import annotations

from fos_agent.core.metrics import CONSUMED_OF, CYCLES_BLOCKED, CYCLES_WAITING, Metrics
from fos_pb import coordinator_pb2 as cpb


def production_report(node_id: str, incarnation: int, produces: str, metrics: Metrics,
                      cycle_s: float | None, final: bool = False) -> cpb.ProductionReport:
    values = dict(metrics.items())
    ok = int(values.get("successful_cycles", 0))
    blocked = int(values.get(CYCLES_BLOCKED, 0))
    waiting = {k[len(CYCLES_WAITING):]: int(v) for k, v in values.items()
               if k.startswith(CYCLES_WAITING) and v}
    consumed = {k[len(CONSUMED_OF):]: int(v) for k, v in values.items()
                if k.startswith(CONSUMED_OF) and v}
    # a skipped cycle that is neither blocked nor waiting: a step that failed
    failed = max(0, int(values.get("skipped_cycles", 0)) - blocked - sum(waiting.values()))
    return cpb.ProductionReport(
        node_id=node_id, incarnation=incarnation, produces=produces,
        batches_produced=int(values.get("batches_produced", 0)), consumed=consumed,
        cycles_ok=ok, cycles_blocked=blocked, cycles_waiting=waiting, cycles_failed=failed,
        final=final, cycle_s=float(cycle_s or 0.0))
