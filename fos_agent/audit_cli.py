"""``fos-audit``: the batch audit (fos_agent.audit) over agent data dirs, from the shell.

    fos-audit DIR... [--json] [--quiescent]
    python -m fos_agent.audit DIR...

Each DIR is an agent's data dir (holding ``wal/``), a WAL dir itself, or a folder of agent
data dirs (searched a few levels down, so ``fos-sim --keep DIR`` leaves a DIR that works as
is). WALs are opened read-only: running agents are fine, stopped ones give exact figures.

Prints the summary (batches produced, delivered, consumed, in flight, lost, duplicated,
inconsistent) and one line per bad batch naming it; ``--json`` prints the same as one JSON
object. Exit 0: nothing lost, duplicated, inconsistent or malformed; 1: something is;
2: bad usage, or a DIR that is missing, holds no WAL or cannot be read (one line on stderr).
A record that does not decode is reported as malformed (exit 1), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fos_agent.audit import AuditReport, audit
from fos_agent.storage.wal import wal_path
from fos_raft.runtime.config import OneLineParser
from fos_raft.runtime.version import add_version_argument

SEARCH_DEPTH = 3  # DIR/agents/NODE/wal: fos-sim's layout, with one level to spare
EXIT_OK, EXIT_BAD_BATCHES, EXIT_USAGE = 0, 1, 2


class AuditUsageError(Exception):
    """A DIR that cannot be audited (one line for stderr)."""


def _is_wal(path: Path) -> bool:
    return (path / "data.mdb").is_file()


def find_wals(root: Path, depth: int = SEARCH_DEPTH) -> list[Path]:
    """The WAL dirs under ``root``: itself, its ``wal/``, or agent data dirs below it."""
    if _is_wal(root):
        return [root]
    if _is_wal(wal_path(root)):
        return [wal_path(root)]
    if depth == 0:
        return []
    found: list[Path] = []
    try:
        children = sorted(p for p in root.iterdir() if p.is_dir())
    except OSError:
        return []
    for child in children:
        if child.name == "wal":  # a WAL dir without data: an agent that never started
            continue
        found += find_wals(child, depth - 1)
    return found


def collect(dirs: Sequence[str]) -> list[Path]:
    """Every WAL dir named by ``dirs``; AuditUsageError for a DIR with none."""
    wals: list[Path] = []
    for text in dirs:
        root = Path(text)
        if not root.exists():
            raise AuditUsageError(f"{text}: no such directory")
        if not root.is_dir():
            raise AuditUsageError(f"{text}: not a directory")
        found = find_wals(root)
        if not found:
            raise AuditUsageError(f"{text}: no agent WAL here (expected DIR/wal/data.mdb, "
                                  "or agent data dirs below DIR)")
        wals += [w for w in found if w not in wals]
    return wals


def report_json(report: AuditReport, wals: Sequence[Path]) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "wals": [str(w) for w in wals],
        "nodes": report.nodes,
        "produced": report.produced,
        "delivered": report.delivered,
        "consumed": report.consumed,
        "scrapped": report.scrapped,
        "queued": report.queued,
        "reclaimed": report.reclaimed,
        "in_flight": report.in_transit,
        "lost": report.lost,
        "duplicated": report.duplicated,
        "inconsistent": report.inconsistent,
        "unverified": report.unverified,
        "malformed": report.malformed,
        "produced_by": report.produced_by,
        "problems": report.problems,
    }


def report_text(report: AuditReport) -> str:
    lines = [report.summary()]
    for name, ids in (("lost", report.lost), ("duplicated", report.duplicated),
                      ("inconsistent", report.inconsistent)):
        if ids:
            lines.append(f"{name}: {', '.join(ids)}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="fos-audit", description="Audit every batch across the WALs of "
                      "a set of agents: lost, duplicated or inconsistent batches by name.")
    p.add_argument("dirs", nargs="+", metavar="DIR",
                   help="agent data dir, WAL dir, or a folder of agent data dirs")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quiescent", action="store_true",
                   help="the agents have settled (stopped after their retries): a batch "
                        "still IN_TRANSIT to an audited consumer counts as lost")
    add_version_argument(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        wals = collect(args.dirs)
        report = audit(wals, quiescent=args.quiescent)
    except AuditUsageError as exc:
        return _fail(str(exc))
    except Exception as exc:  # unreadable, foreign, two WALs of one node: one line
        return _fail(f"{type(exc).__name__}: {exc}".replace("\n", " "))
    if args.json:
        print(json.dumps(report_json(report, wals), indent=2, sort_keys=True))
    else:
        print(report_text(report))
    return EXIT_OK if report.ok else EXIT_BAD_BATCHES


def _fail(message: str) -> int:
    sys.stderr.write(f"fos-audit: {message}\n")
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
