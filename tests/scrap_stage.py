"""A library program run as its own process by tests/test_scrap_e2e.py: a press that
scraps its first cycle and makes its second a batch of 3 with attributes, then stops when
a line comes on stdin (its consumer has the batch).

    python tests/scrap_stage.py COORDS DATA_DIR

Prints one JSON line: {"scrapped": [input ids], "made": batch id, "from": [input ids]}.
"""

from __future__ import annotations

import json
import sys

from fos_agent import ItemReq, SyncAgent

ATTRS = {"serial": "SN-0042", "width_mm": 801.5, "passes": 2}


def main(coords: str, data_dir: str) -> None:
    out: dict[str, object] = {}
    with SyncAgent("sa-press", ItemReq("sa-part", 1), [ItemReq("sa-raw", 1)],
                   coordinators=coords.split(","), data_dir=data_dir) as agent:
        for n, inputs in enumerate(agent.cycles(), 1):
            if n == 1:
                out["scrapped"] = list(inputs.ids)
                agent.scrap(inputs, "cracked at the edge")
                continue
            batch = agent.emit(inputs, qty=3, attrs=ATTRS)
            out["made"], out["from"] = batch.batch_id, list(inputs.ids)
            sys.stdin.readline()  # the test says when its sink has the batch
            break
        out["scrapped_total"] = agent.metrics["batches_scrapped"]
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
