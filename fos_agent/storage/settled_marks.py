"""High-water marks of what compaction moved out: they let the dedup look-ups skip LMDB.

The protocol asks the WAL's SettledLookup about every new batch offered and every new
request (fos_agent.protocol.compaction): "did I consume and compact this batch?", "did I
settle a trade for this request?". Almost always the answer is no, because the id is new:
batch ids are ``<producer>:<seq>`` and request ids ``<consumer>~<incarnation>~<n>``, both
counting up. So the WAL keeps, per producer and per ``consumer~incarnation``, the highest
number compaction has moved out; an id above it cannot be in the index and needs no read
transaction.

The marks are written in the compaction's own transaction (``meta`` key
``settled_marks``), so they never lag the index on disk, and updated in memory before the
node forgets the ids (the node asks only about ids it no longer holds). A WAL compacted by
an agent that kept no marks has index entries but no marks: then nothing is skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import lmdb

MARKS_KEY = b"settled_marks"


def _split(ident: str, sep: str) -> tuple[str, int] | None:
    head, found, tail = ident.rpartition(sep)
    if not found or not head or not tail.isdigit():
        return None
    return head, int(tail)


class SettledMarks:
    """Per-stream high-water marks; ``known`` is False when they cannot be trusted."""

    def __init__(self, inbound: dict[str, int], requests: dict[str, int], known: bool) -> None:
        self.inbound = inbound
        self.requests = requests
        self.known = known

    @classmethod
    def load(cls, txn: lmdb.Transaction, meta: object, index_empty: bool) -> SettledMarks:
        data = txn.get(MARKS_KEY, db=meta)
        if data is None:  # a fresh WAL, or one compacted before the marks existed
            return cls({}, {}, known=index_empty)
        obj = json.loads(data)
        return cls(dict(obj["in"]), dict(obj["req"]), known=True)

    def may_hold_inbound(self, batch_id: str) -> bool:
        """False only if ``batch_id`` was certainly never compacted as an inbound batch."""
        split = _split(batch_id, ":")
        if not self.known or split is None:
            return True
        return split[1] <= self.inbound.get(split[0], 0)

    def may_hold_request(self, request_id: str) -> bool:
        split = _split(request_id, "~")
        if not self.known or split is None:
            return True
        return split[1] <= self.requests.get(split[0], 0)

    def raise_to(self, inbound_ids: Iterable[str], request_ids: Iterable[str]) -> bool:
        """Raise the marks to cover these compacted ids (True if any mark moved)."""
        moved = False
        for marks, ids, sep in ((self.inbound, inbound_ids, ":"),
                                (self.requests, request_ids, "~")):
            for ident in ids:
                split = _split(ident, sep)
                if split is not None and split[1] > marks.get(split[0], 0):
                    marks[split[0]] = split[1]
                    moved = True
        return moved

    def encode(self) -> bytes:
        return json.dumps({"in": self.inbound, "req": self.requests},
                          separators=(",", ":")).encode()
