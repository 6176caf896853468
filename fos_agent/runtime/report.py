"""The agent's production report to the coordinator (``ReportProduction``): cumulative
counters of this incarnation, read from the metrics, and the links to neighbours its
detector finds down (a link fault: the coordinator reaches the neighbour, we do not). Sent
every few seconds by the coordinator side and once more when the agent stops; the
coordinator keeps it as soft state (docs/operations.md, "Production figures")."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from fos_agent.core.metrics import (
    CONSUMED_OF,
    CYCLES_BLOCKED,
    CYCLES_WAITING,
    SCRAPPED_ITEM,
    Metrics,
)
from fos_pb import coordinator_pb2 as cpb


def link_faults(node_id: str, down: Mapping[str, float],
                consumers: Collection[str]) -> list[cpb.LinkDown]:
    """The detector's down links (neighbour -> since, Unix seconds) as supplier -> consumer
    links: a neighbour that consumes from us is downstream, any other one upstream."""
    return [cpb.LinkDown(supplier=node_id, consumer=peer, since_unix=since)
            if peer in consumers else
            cpb.LinkDown(supplier=peer, consumer=node_id, since_unix=since)
            for peer, since in sorted(down.items())]


def production_report(node_id: str, incarnation: int, produces: str, metrics: Metrics,
                      cycle_s: float | None, final: bool = False,
                      links_down: Collection[cpb.LinkDown] = ()) -> cpb.ProductionReport:
    values = dict(metrics.items())
    ok = int(values.get("successful_cycles", 0))
    blocked = int(values.get(CYCLES_BLOCKED, 0))
    waiting = {k[len(CYCLES_WAITING):]: int(v) for k, v in values.items()
               if k.startswith(CYCLES_WAITING) and v}
    consumed = {k[len(CONSUMED_OF):]: int(v) for k, v in values.items()
                if k.startswith(CONSUMED_OF) and v}
    scrapped = {k[len(SCRAPPED_ITEM):]: int(v) for k, v in values.items()
                if k.startswith(SCRAPPED_ITEM) and v}
    # a skipped cycle that is neither blocked nor waiting: a step that failed
    failed = max(0, int(values.get("skipped_cycles", 0)) - blocked - sum(waiting.values()))
    return cpb.ProductionReport(
        node_id=node_id, incarnation=incarnation, produces=produces,
        batches_produced=int(values.get("batches_produced", 0)), consumed=consumed,
        scrapped=scrapped,
        cycles_ok=ok, cycles_blocked=blocked, cycles_waiting=waiting, cycles_failed=failed,
        final=final, cycle_s=float(cycle_s or 0.0), links_down=list(links_down))
