"""``fos-agent export-lineage --data-dir D [--since T] > file.jsonl``: archive an agent's
genealogy index as JSON lines (one made or used entry per line, oldest first), e.g. before
retention (``--lineage-retention-days``) prunes it. Reads the index read-only: works on a
stopped agent and beside a running one. Bad input: one line on stderr, exit 2."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Sequence

from fos_raft.lineage.index import MadeEntry, made_to_json, used_to_json
from fos_raft.lineage.reader import LineageIndexError, open_offline


def parse_since(text: str) -> int:
    """Unix ms of an ISO-8601 date/time (UTC unless it says otherwise) or unix seconds."""
    try:
        return int(float(text) * 1000)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO-8601 time (2026-12-01T08:00:00Z) or unix seconds, got {text!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


def main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="fos-agent export-lineage",
                                description="Write an agent's genealogy index as JSON lines.")
    p.add_argument("--data-dir", required=True, help="the agent's data dir (or its wal/)")
    p.add_argument("--since", type=parse_since, default=0, metavar="T",
                   help="only entries stamped at or after T (ISO-8601 or unix seconds)")
    args = p.parse_args(argv)
    try:
        reader = open_offline(args.data_dir)
    except LineageIndexError as exc:
        sys.stderr.write(f"fos-agent export-lineage: {exc}\n")
        return 2
    try:
        for entry in reader.entries(args.since):
            obj = made_to_json(entry) if isinstance(entry, MadeEntry) else used_to_json(entry)
            sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    except BrokenPipeError:
        return 0
    finally:
        reader.env.close()
    return 0
