"""Audit of every batch across the WALs of a set of agents: found exactly once, or not?

    report = audit({"wood-1": data_dir_1, ...})   # or audit([dir_1, dir_2, ...])
    print(report.summary()); assert report.ok

Each path is a WAL directory (``wal_path(data_dir)``) or an agent data dir containing one.
WALs are opened read-only (fos_agent.storage.wal.read_wal): nothing is written, so it works on
compacted WALs too (the settled records are rebuilt from the genealogy index, until its
retention prunes them), on
stopped agents and also while agents run (each WAL is then a consistent snapshot of its
own, but the snapshots of different agents are not taken at one instant, so run it at
quiescence for exact figures).

Definitions (a batch ``b`` is produced by supplier ``P``, i.e. in P's outbound WAL; its
consumer ``C`` is the ``to`` of P's record; "C audited" means C's WAL is among the paths):

- produced: outbound records made by a cycle (reclaim copies are not new production);
  ``produced_by`` splits them per node.
- consumed: inbound CONSUMED records, scrapped ones included (a scrapped input is
  consumed, not lost); scrapped: those consumed by a scrap (a reason, no output).
  delivered: outbound DELIVERED. reclaimed: outbound RECLAIMED. queued: outbound QUEUED
  + inbound QUEUED (goods waiting at some stage).
- in_transit: ids with P at IN_TRANSIT, or C at IN_TRANSIT (a trade still under way:
  not lost, the supplier's retries finish it) -- unless ``quiescent=True``, see lost.
- lost: P says DELIVERED to C, C audited, and C has no QUEUED/CONSUMED record of b; with
  ``quiescent=True`` (all agents settled, retries done) also P IN_TRANSIT to C, C audited
  and C has no QUEUED/CONSUMED record.
- duplicated: b in more than one inbound WAL; or b in the lineage of more than one
  produced batch (consumed twice); or C holds b while P's record is QUEUED, names another
  consumer, or is RECLAIMED (then the reclaim copy duplicates the goods).
- inconsistent: records that contradict the protocol without being a loss or duplicate:
  C holds b but P (audited) has no record of it; an inbound CONSUMED that is in no output's
  lineage at that node (and not scrapped), or a lineage entry not CONSUMED there (a split
  cycle, I5), or a scrapped input that is also in an output's lineage.
- unverified: b sent to a node whose WAL is not audited (e.g. decommissioned).
- malformed: WAL records that do not decode, and records naming an id that is not a batch
  id (``<producer>:<seq>``) as their own or in their lineage (named by node and key; the
  rest of that WAL is still audited). A malformed record fails the audit like an
  inconsistency.

The command line (fos_agent.audit_cli): ``fos-audit DIR...`` or ``python -m fos_agent.audit``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fos_agent.protocol.records import DurableState, InState, OutState
from fos_agent.storage.wal import read_wal, wal_path
from fos_raft.model import clip, split_batch_id


@dataclass
class AuditReport:
    nodes: int = 0
    produced: int = 0
    consumed: int = 0
    scrapped: int = 0
    queued: int = 0
    delivered: int = 0
    reclaimed: int = 0
    in_transit: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    inconsistent: list[str] = field(default_factory=list)
    unverified: list[str] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)  # "node: what" per undecodable record
    produced_by: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # one human sentence per finding

    @property
    def ok(self) -> bool:
        """No batch lost, duplicated or inconsistent."""
        return not (self.lost or self.duplicated or self.inconsistent or self.malformed)

    def summary(self) -> str:
        lines = [
            f"audit of {self.nodes} WALs: produced {self.produced}, consumed {self.consumed}"
            + (f" (scrapped {self.scrapped})" if self.scrapped else "") + ", "
            f"queued {self.queued}, in transit {len(self.in_transit)}, delivered "
            f"{self.delivered}, reclaimed {self.reclaimed}, unverified {len(self.unverified)}",
            f"lost {len(self.lost)}, duplicated {len(self.duplicated)}, "
            f"inconsistent {len(self.inconsistent)}"
            + (f", malformed {len(self.malformed)}" if self.malformed else "")
            + f": {'OK' if self.ok else 'FAILED'}",
        ]
        lines += [f"  {p}" for p in self.problems[:50]]
        if len(self.problems) > 50:
            lines.append(f"  ... and {len(self.problems) - 50} more")
        return "\n".join(lines)


def _resolve(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if not (path / "data.mdb").exists() and (wal_path(path) / "data.mdb").exists():
        return wal_path(path)
    return path


def load_wals(wal_dirs: Mapping[str, str | os.PathLike[str]]
              | Iterable[str | os.PathLike[str]],
              malformed: list[str] | None = None) -> dict[str, DurableState]:
    """Read every WAL read-only, keyed by the node id recorded in it. ``malformed``: collect
    undecodable records there ("node: what") instead of raising."""
    states: dict[str, DurableState] = {}
    items = (wal_dirs.items() if isinstance(wal_dirs, Mapping)
             else ((None, p) for p in wal_dirs))
    for expected, path in items:
        bad: list[str] | None = [] if malformed is not None else None
        # settled: the compacted records too, rebuilt from the index
        state = read_wal(_resolve(path), settled=True, malformed=bad)
        if malformed is not None and bad:
            malformed.extend(f"{state.node_id}: {what}" for what in bad)
        if expected is not None and state.node_id != expected:
            raise ValueError(f"{path} is the WAL of {state.node_id!r}, not {expected!r}")
        if state.node_id in states:
            raise ValueError(f"two WALs of node {state.node_id!r} ({path})")
        states[state.node_id] = state
    return states


def audit(wal_dirs: Mapping[str, str | os.PathLike[str]] | Iterable[str | os.PathLike[str]],
          *, quiescent: bool = False) -> AuditReport:
    """Audit the WALs at ``wal_dirs`` (node id -> path, or just paths). See the module doc."""
    malformed: list[str] = []
    states = load_wals(wal_dirs, malformed)
    malformed.extend(malformed_ids(states))
    report = audit_states(states, quiescent=quiescent)
    report.malformed = malformed
    report.problems[:0] = [f"malformed {what}" for what in malformed]
    return report


def malformed_ids(states: Mapping[str, DurableState]) -> list[str]:
    """Records holding an id that is not a batch id (``<producer>:<seq>``): taken by an
    agent that did not check what it was offered. Named ("node: what"), never raised."""
    found: list[str] = []
    for node_id, d in sorted(states.items()):
        records = [("outbound", r.batch) for r in d.outbound.values()]
        records += [("inbound", r.batch) for r in d.inbound.values()]
        for side, batch in records:
            if split_batch_id(batch.batch_id) is None:
                found.append(f"{node_id}: {side} record {clip(batch.batch_id)}: "
                             "not a batch id")
            bad = [x for x in batch.lineage if split_batch_id(x) is None]
            if bad:
                found.append(f"{node_id}: {side} record {clip(batch.batch_id)} names "
                             f"{clip(bad[0])} in its lineage: not a batch id")
    return found


def audit_states(states: Mapping[str, DurableState], *, quiescent: bool = False) -> AuditReport:
    """The audit over already loaded durable states (pure)."""
    report = AuditReport(nodes=len(states))
    lost: set[str] = set()
    dup: set[str] = set()
    odd: set[str] = set()
    transit: set[str] = set()
    unverified: set[str] = set()

    def flag(bucket: set[str], bid: str, why: str) -> None:
        bucket.add(bid)
        report.problems.append(f"{bid}: {why}")

    holders: dict[str, list[str]] = {}
    consumed_into: dict[str, list[str]] = {}
    for node_id, d in sorted(states.items()):
        lineage_here: set[str] = set()
        for rec in d.outbound.values():
            if rec.state is OutState.QUEUED:
                report.queued += 1
            elif rec.state is OutState.DELIVERED:
                report.delivered += 1
            elif rec.state is OutState.RECLAIMED:
                report.reclaimed += 1
            if rec.reclaimed_from:
                continue
            report.produced += 1
            report.produced_by[node_id] = report.produced_by.get(node_id, 0) + 1
            for src in rec.batch.lineage:
                consumed_into.setdefault(src, []).append(rec.batch_id)
                lineage_here.add(src)
                inb = d.inbound.get(src)
                if inb is None or inb.state is not InState.CONSUMED:
                    flag(odd, src, f"in the lineage of {rec.batch_id} but not CONSUMED at "
                                   f"{node_id}")
                elif inb.scrapped:
                    flag(odd, src, f"in the lineage of {rec.batch_id} but scrapped at "
                                   f"{node_id}")
        for bid, inb in d.inbound.items():
            holders.setdefault(bid, []).append(node_id)
            if inb.state is InState.QUEUED:
                report.queued += 1
            elif inb.state is InState.CONSUMED:
                report.consumed += 1
                if inb.scrapped:
                    report.scrapped += 1
                elif bid not in lineage_here:
                    flag(odd, bid, f"CONSUMED at {node_id} without an output (I5)")
            else:
                transit.add(bid)

    for bid, nodes in holders.items():
        if len(nodes) > 1:
            flag(dup, bid, f"in the inbound WALs of {', '.join(nodes)}")
    for bid, outputs in consumed_into.items():
        if len(outputs) > 1:
            flag(dup, bid, f"consumed into {', '.join(outputs)}")

    for node_id, d in sorted(states.items()):
        for bid, inb in d.inbound.items():
            sup = states.get(inb.supplier)
            if sup is None:
                continue
            out = sup.outbound.get(bid)
            if out is None:
                flag(odd, bid, f"held by {node_id} but unknown to its supplier {inb.supplier}")
            elif out.state is OutState.QUEUED or out.to != node_id:
                flag(dup, bid, f"held by {node_id} while {inb.supplier} has it "
                               f"{out.state.value} (to {out.to or 'nobody'})")
            elif out.state is OutState.RECLAIMED:
                flag(dup, bid, f"held by {node_id} ({inb.state.value}) but reclaimed by "
                               f"{inb.supplier}")
        for bid, out in d.outbound.items():
            if out.state not in (OutState.IN_TRANSIT, OutState.DELIVERED):
                continue
            if out.state is OutState.IN_TRANSIT:
                transit.add(bid)
            consumer = states.get(out.to)
            if consumer is None:
                unverified.add(bid)
                continue
            inb = consumer.inbound.get(bid)
            arrived = inb is not None and inb.state in (InState.QUEUED, InState.CONSUMED)
            if out.state is OutState.DELIVERED and not arrived:
                flag(lost, bid, f"DELIVERED by {node_id} but {out.to} has "
                                f"{inb.state.value if inb else 'no record'}")
            elif out.state is OutState.IN_TRANSIT and quiescent and not arrived:
                flag(lost, bid, f"still IN_TRANSIT from {node_id} at quiescence; {out.to} "
                                f"has {inb.state.value if inb else 'no record'}")

    report.lost = sorted(lost)
    report.duplicated = sorted(dup)
    report.inconsistent = sorted(odd)
    report.in_transit = sorted(transit - lost)
    report.unverified = sorted(unverified)
    return report


if __name__ == "__main__":  # python -m fos_agent.audit DIR...: the CLI lives apart, and is
    # run by name so that this library module does not import its own command line
    import runpy

    runpy.run_module("fos_agent.audit_cli", run_name="__main__")
