"""Pure pieces of a fos-sim run's accounting: the bound over time, the audit, addresses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.sim_procs import free_ports
from bench.sim_topology import throughput_bound
from fos_raft.model import NodeSpec


@dataclass(frozen=True, slots=True)
class Segment:
    """From ``start_s`` until the next segment, these nodes were active with these specs."""

    start_s: float
    active: frozenset[str]
    specs: tuple[NodeSpec, ...]


BoundCache = dict[tuple[frozenset[str], tuple[NodeSpec, ...]], float]


def integrate_bound(
    segments: Sequence[Segment],
    end_s: float,
    cycle_s: float,
    start_s: float = 0.0,
    cache: BoundCache | None = None,
) -> float:
    """Final products the LP bound permits over [start_s, end_s], each segment at its own
    bound (dead and drained nodes left out): the yardstick for runs with failures.
    ``cache`` keeps LP results across calls (the live view asks twice a second)."""
    cache = {} if cache is None else cache
    total = 0.0
    for i, seg in enumerate(segments):
        seg_end = segments[i + 1].start_s if i + 1 < len(segments) else end_s
        lo, hi = max(seg.start_s, start_s), min(seg_end, end_s)
        if hi <= lo:
            continue
        key = (seg.active, seg.specs)
        if key not in cache:
            cache[key] = throughput_bound(seg.specs, cycle_s, seg.active).per_s
        total += cache[key] * (hi - lo)
    return total


def run_audit(wal_dirs: Sequence[Path]) -> tuple[dict[str, int] | None, str | None]:
    """fos_agent's batch audit over every WAL, as a dict; or why it could not run."""
    try:
        from fos_agent.audit import audit
    except ImportError as e:
        return None, f"fos_agent.audit is not available ({e})"
    try:
        report = audit([str(d) for d in wal_dirs])
    except Exception as e:  # a broken WAL must not hide the rest of the report
        return None, f"{type(e).__name__}: {e}"
    fields = getattr(report, "__dataclass_fields__", None)
    names = list(fields) if fields else [k for k in vars(report) if not k.startswith("_")]
    out: dict[str, int] = {}
    for name in names:
        value = getattr(report, name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = int(value)
        elif isinstance(value, list | tuple | set | frozenset | dict):
            out[name] = len(value)  # e.g. the ids of lost batches: their number
    return out, None


def assign_addresses(specs: Sequence[NodeSpec], host: str = "127.0.0.1") -> tuple[NodeSpec, ...]:
    """Give every node a free loopback port (catalog addresses are placeholders here)."""
    ports = free_ports(len(specs), host)
    return tuple(
        NodeSpec(s.node_id, f"{host}:{port}", s.produces, s.requires, s.capacity)
        for s, port in zip(specs, ports, strict=True)
    )
