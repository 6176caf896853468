"""Pure pieces of a fos-sim run's accounting: the bound over time, the audit, addresses."""

from __future__ import annotations

import contextlib
import os
import resource
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.sim.procs import free_ports
from bench.sim.topology import throughput_bound
from fos_raft.model import NodeSpec

if TYPE_CHECKING:
    from bench.sim.procs import AgentSupervisor


@dataclass(frozen=True, slots=True)
class Segment:
    """From ``start_s`` until the next segment, these nodes were active with these specs."""

    start_s: float
    active: frozenset[str]
    specs: tuple[NodeSpec, ...]


AUDIT_PROBLEMS_KEPT = 20
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


def bound_steps(segments: Sequence[Segment], cycle_s: float,
                cache: BoundCache | None = None) -> list[tuple[float, float]]:
    """The bound as a step function: (segment start, products/s) per segment."""
    cache = {} if cache is None else cache
    steps = []
    for seg in segments:
        key = (seg.active, seg.specs)
        if key not in cache:
            cache[key] = throughput_bound(seg.specs, cycle_s, seg.active).per_s
        steps.append((seg.start_s, cache[key]))
    return steps


def run_audit(wal_dirs: Sequence[Path]) -> tuple[dict[str, Any] | None, str | None]:
    """fos_agent's batch audit over every WAL, as JSON-ready figures; or why it could not run.

    Lists of batch ids (lost, duplicated, ...) become counts; the first problems found are
    kept as sentences."""
    try:
        from fos_agent.audit import audit
    except ImportError as e:
        return None, f"fos_agent.audit is not available ({e})"
    try:
        report = audit([str(d) for d in wal_dirs])
    except Exception as e:  # a broken WAL must not hide the rest of the report
        return None, f"{type(e).__name__}: {e}"
    out: dict[str, Any] = {}
    for name in ("produced", "consumed", "queued", "in_transit", "lost", "duplicated",
                 "inconsistent", "unverified", "delivered", "reclaimed", "nodes"):  # fmt: skip
        value = getattr(report, name, 0)
        out[name] = len(value) if isinstance(value, list | tuple | set) else int(value)
    out["ok"] = bool(getattr(report, "ok", not (out["lost"] or out["duplicated"])))
    out["produced_by"] = dict(getattr(report, "produced_by", {}))
    out["problems"] = list(getattr(report, "problems", []))[:AUDIT_PROBLEMS_KEPT]
    return out, None


def assign_addresses(specs: Sequence[NodeSpec], host: str = "127.0.0.1") -> tuple[NodeSpec, ...]:
    """Give every node a free loopback port (catalog addresses are placeholders here)."""
    ports = free_ports(len(specs), host)
    return tuple(
        NodeSpec(s.node_id, f"{host}:{port}", s.produces, s.requires, s.capacity)
        for s, port in zip(specs, ports, strict=True)
    )


def pss_kib(pid: int) -> int | None:
    """Proportional set size of a process (shared pages split among their users), in KiB."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def agent_memory(agents: AgentSupervisor) -> dict[str, float]:
    """PSS per agent (a host's PSS split over its agents), in MiB, of the running hosts."""
    per_agent: list[float] = []
    for host in agents.hosts.values():
        pid = host.pid if host.running() else None
        kib = pss_kib(pid) if pid is not None else None
        if kib is not None:
            per_agent += [kib / 1024 / len(host.node_ids)] * len(host.node_ids)
    if not per_agent:
        return {}
    return {
        "agents": len(per_agent),
        "pss_mib_mean": sum(per_agent) / len(per_agent),
        "pss_mib_max": max(per_agent),
        "pss_mib_total": sum(per_agent),
    }


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (agents, coordinator replicas)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _proc_stat(pid: str) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a live process from /proc, None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # the name may hold spaces and parens
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def tree_cpu_seconds() -> float:
    """``cpu_seconds`` plus the CPU time of the live descendants (from /proc; without
    /proc only ``cpu_seconds``): the whole run's CPU so far, at any moment."""
    total = cpu_seconds()
    procs: dict[int, tuple[int, float]] = {}
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if entry.isdigit() and (st := _proc_stat(entry)) is not None:
                procs[int(entry)] = st
    tree, frontier = set(), [os.getpid()]
    while frontier:  # descendants, breadth first
        parent = frontier.pop()
        kids = [pid for pid, (ppid, _) in procs.items() if ppid == parent and pid not in tree]
        tree.update(kids)
        frontier += kids
    return total + sum(procs[pid][1] for pid in tree)
