"""Production figures for people: finished products per final item, rate against target,
per-stage cycle outcomes and the bottleneck in words. Pure (no I/O, no clock): built from
the replicas' ``GetProduction`` documents (fos_raft.api.production) and the catalog.

A *final item* is one no catalog node requires (it leaves the factory); its *finished*
count is the batches its producers made in the window, the audit's unit. Several replicas
each hold the reports they received: for each node the freshest report wins.

The bottleneck: the stage (all nodes making one item) that spent the largest share of its
cycle slots working; stages around it wait for it (downstream) or are blocked by it
(upstream). With no cycle counted yet there is none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fos_raft.model import NodeSpec


def merge(documents: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """One document from several replicas': per node, the freshest report."""
    merged: dict[str, Any] = {"nodes": {}, "now_unix": 0.0, "since_s": 0.0, "replicas": []}
    for doc in documents:
        merged["now_unix"] = max(merged["now_unix"], float(doc.get("now_unix", 0.0)))
        merged["since_s"] = max(merged["since_s"], float(doc.get("since_s", 0.0)))
        merged["replicas"].append(doc.get("replica", ""))
        for node_id, fig in doc.get("nodes", {}).items():
            old = merged["nodes"].get(node_id)
            if old is None or fig["last_report_unix"] > old["last_report_unix"]:
                merged["nodes"][node_id] = fig
    return merged


def final_items(specs: Sequence[NodeSpec]) -> list[str]:
    required = {r.item for s in specs for r in s.requires}
    return sorted({s.produces.item for s in specs} - required)


def _per_hour(count: int, seconds: float) -> float:
    return round(count * 3600.0 / seconds, 1) if seconds > 0 else 0.0


def summary(doc: Mapping[str, Any], specs: Sequence[NodeSpec],
            targets: Mapping[str, float] | None = None) -> dict[str, Any]:
    """The ``fosctl production --json`` document (docs/fosctl.md)."""
    targets = targets or {}
    nodes: Mapping[str, Any] = doc.get("nodes", {})
    by_item: dict[str, list[NodeSpec]] = {}
    for spec in specs:
        by_item.setdefault(spec.produces.item, []).append(spec)
    items = []
    for item in final_items(specs):
        figs = [nodes[s.node_id] for s in by_item.get(item, ()) if s.node_id in nodes]
        finished = sum(int(f["produced"]) for f in figs)
        observed = max((float(f["observed_s"]) for f in figs), default=0.0)
        trend = [sum(col) for col in zip(*(f["trend"] for f in figs), strict=True)] \
            if figs else []
        last = max((float(f["last_finished_unix"]) for f in figs), default=0.0)
        target = targets.get(item)
        rate = _per_hour(finished, observed)
        items.append({
            "item": item, "finished": finished,
            "finished_total": sum(int(f["produced_total"]) for f in figs),
            "rate_per_hour": rate, "observed_s": observed, "target_per_hour": target,
            "of_target": round(rate / target, 3) if target else None,
            "last_finished_unix": last or None, "trend": trend,
            "producers": sorted(s.node_id for s in by_item.get(item, ())),
        })
    stages = []
    for spec in sorted(specs, key=lambda s: s.node_id):
        f = nodes.get(spec.node_id)
        if f is None:
            stages.append({"node_id": spec.node_id, "item": spec.produces.item,
                           "reported": False})
            continue
        stages.append({
            "node_id": spec.node_id, "item": spec.produces.item, "reported": True,
            "produced": int(f["produced"]), "cycles_ok": int(f["cycles_ok"]),
            "cycles_waiting": dict(f["cycles_waiting"]),
            "cycles_blocked": int(f["cycles_blocked"]), "cycles_failed": int(f["cycles_failed"]),
            "down_s": float(f["down_s"]), "last_report_unix": float(f["last_report_unix"]),
            # since the agent started (a replica older than the field sends none)
            "scrapped_total": {k: int(v) for k, v in f.get("scrapped_total", {}).items()},
        })
    return {"now_unix": doc.get("now_unix", 0.0), "since_s": doc.get("since_s", 0.0),
            "final_items": items, "stages": stages, "bottleneck": bottleneck(stages)}


def bottleneck(stages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The busiest stage (by item) and a sentence saying so."""
    work: dict[str, list[int]] = {}  # item -> [ok, waiting, blocked]
    members: dict[str, list[str]] = {}
    for s in stages:
        if not s.get("reported"):
            continue
        row = work.setdefault(s["item"], [0, 0, 0])
        row[0] += s["cycles_ok"]
        row[1] += sum(s["cycles_waiting"].values())
        row[2] += s["cycles_blocked"]
        members.setdefault(s["item"], []).append(s["node_id"])
    scored = [(ok / (ok + wait + blocked), item) for item, (ok, wait, blocked) in work.items()
              if ok + wait + blocked > 0]
    if not scored:
        return {"item": None, "nodes": [], "busy": None,
                "text": "no cycles reported yet: no bottleneck to name"}
    busy, item = max(scored, key=lambda x: (x[0], -work[x[1]][2], x[1]))
    names = ", ".join(sorted(members[item]))
    text = (f"the {item} stage ({names}) is the bottleneck: it worked {busy:.0%} of its "
            "cycles; the stages before it are held up by it, the ones after wait for it")
    return {"item": item, "nodes": sorted(members[item]), "busy": round(busy, 3), "text": text}


def outcome_words(stage: Mapping[str, Any]) -> str:
    """A stage's cycles in words (no "skipped": what happened instead)."""
    if not stage.get("reported"):
        return "no report from its agent"
    parts = [f"{stage['cycles_ok']} made a batch"]
    for item, n in sorted(stage["cycles_waiting"].items()):
        if n:  # "?": the wait ended as the slot did, with every input there
            parts.append(f"{n} waiting for {'an input' if item == '?' else item}")
    if stage["cycles_blocked"]:
        parts.append(f"{stage['cycles_blocked']} blocked (output full, nobody took it)")
    if stage["cycles_failed"]:
        parts.append(f"{stage['cycles_failed']} failed or given back")
    for item, n in sorted(stage.get("scrapped_total", {}).items()):
        if n:
            parts.append(f"{n} {item} scrapped since start")
    if stage["down_s"]:
        parts.append(f"{stage['down_s']:.0f} s without reports")
    return ", ".join(parts)
