"""Bounded storage: which records are settled, and how a node still dedups them afterwards.

Pure. A record is *settled* when nothing can change it any more: outbound DELIVERED (the
consumer confirmed) or RECLAIMED, inbound CONSUMED. Compaction moves settled records out of
the WAL's live state (their genealogy stays in the index, fos_raft.lineage.index), so
recovery time and WAL size follow the goods in flight, not the history.

Dedup must survive compaction (I1): a late or duplicated OfferBatch / BatchSent for a
consumed batch must be answered CONSUMED, never accepted as new; a retried RequestBatch
whose trade settled gets the same batch again, never a second one. The node asks a
`SettledLookup` (the WAL's index; a dict in the test kit) for ids it no longer holds.

Crash safety: compaction is one atomic transaction of the store; only after it is durable
does the node ``forget`` the ids in memory. A crash between the two, or before the
transaction, leaves a state recovery handles (the records are live, or settled in the
index): the hypothesis state machine crashes between any two steps, including these.
"""

from __future__ import annotations

from typing import Protocol

from fos_agent.protocol.records import (
    Batch,
    InboundRecord,
    InState,
    OutboundRecord,
    OutState,
)


class SettledLookup(Protocol):
    def settled_inbound(self, batch_id: str) -> str | None:
        """The supplier of a batch this node consumed and compacted, else None."""

    def settled_request(self, consumer: str, request_id: str) -> Batch | None:
        """The batch sent for (consumer, request_id) in a compacted trade, else None."""


class NothingSettled:
    """The lookup of a store that never compacts."""

    def settled_inbound(self, batch_id: str) -> str | None:
        return None

    def settled_request(self, consumer: str, request_id: str) -> Batch | None:
        return None


def outbound_settled(rec: OutboundRecord) -> bool:
    return rec.state in (OutState.DELIVERED, OutState.RECLAIMED)


def inbound_settled(rec: InboundRecord) -> bool:
    return rec.state is InState.CONSUMED
