"""Where a fos-sim run's first final product lost time: its critical path, hop by hop.

``python -m bench.first_product_path DIR`` on a run kept with ``fos-sim ... --keep DIR``
reads every agent's genealogy index (read-only, the agents stopped), takes the first
batch made by a node whose batches nobody used as input (a final producer), and walks back
along its latest-made input to a source. Each hop prints when the input was made and when
the output was made, relative to the run's start file: a hop much longer than one cycle
is time lost between stages (transfer, waiting for a scarce supplier's turn), a first
product later than the hops add up to is the harness's measurement (issue 14).
Bad input: one line on stderr, exit 2.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

from fos_raft.lineage.index import MadeEntry
from fos_raft.lineage.reader import LineageIndexError, open_offline


@dataclass(frozen=True, slots=True)
class Made:
    batch_id: str
    node: str
    made_s: float  # seconds after the run's start
    inputs: tuple[str, ...]  # batch ids


def critical_path(made: Iterable[Made]) -> list[Made]:
    """The first final product, then its latest-made input, and so on to a source (a
    batch with no inputs, or whose inputs are not known here). Empty if nothing was made."""
    by_id = {m.batch_id: m for m in made}
    used = {i for m in by_id.values() for i in m.inputs}
    used_nodes = {by_id[i].node for i in used if i in by_id}
    finals = [m for m in by_id.values() if m.node not in used_nodes]
    if not finals:
        return []
    path = [min(finals, key=lambda m: m.made_s)]
    while True:
        inputs = [by_id[i] for i in path[-1].inputs if i in by_id]
        if not inputs:
            return path
        path.append(max(inputs, key=lambda m: m.made_s))


def read_run(root: Path) -> list[Made]:
    start = (root / "start").stat().st_mtime
    out: list[Made] = []
    for data_dir in sorted((root / "agents").iterdir()):
        reader = open_offline(str(data_dir))
        try:
            for entry in reader.entries(0):
                if isinstance(entry, MadeEntry):
                    out.append(Made(entry.batch_id, entry.node, entry.made_at_ms / 1000 - start,
                                    tuple(batch for batch, _ in entry.inputs)))
        finally:
            reader.env.close()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print(__doc__.strip().splitlines()[0] + "\nusage: python -m bench.first_product_path DIR")
        return 0 if args and args[0] in ("-h", "--help") else 2
    root = Path(args[0])
    if not (root / "start").is_file() or not (root / "agents").is_dir():
        print(f"first_product_path: error: {root} is not a run kept by fos-sim --keep",
              file=sys.stderr)
        return 2
    try:
        path = critical_path(read_run(root))
    except (LineageIndexError, OSError) as exc:
        print(f"first_product_path: error: {exc}", file=sys.stderr)
        return 2
    if not path:
        print("no final product was made")
        return 0
    print(f"first final product {path[0].batch_id} made {path[0].made_s:.3f} s after start")
    for out, inp in pairwise(path):
        print(f"  {out.batch_id:>14} made {out.made_s:8.3f}   latest input {inp.batch_id:>14}"
              f" made {inp.made_s:8.3f}   hop {out.made_s - inp.made_s:6.3f} s")
    print(f"  source {path[-1].batch_id} made {path[-1].made_s:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
