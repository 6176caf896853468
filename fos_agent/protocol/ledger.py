"""One node's in-memory protocol state: its records, their indexes, the queries on them and
the bookkeeping every handler uses to change a record (docs/protocol.md, docs/architecture.md).

Pure. `Node` (fos_agent.protocol.machine) is a `NodeLedger` plus the handlers of
`fos_agent.protocol.supplier` and `fos_agent.protocol.consumer`. A handler never assigns a
record directly: it calls ``_put_out`` / ``_put_in``, which re-index the record in memory AND
append the matching write to the step's group, so memory and the WAL cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain

from fos_agent.protocol.compaction import NothingSettled, SettledLookup
from fos_agent.protocol.messages import Effects
from fos_agent.protocol.records import (
    Batch,
    DurableState,
    InboundRecord,
    InState,
    OutboundRecord,
    OutState,
    PutInbound,
    PutOutbound,
    SetNextSeq,
    Write,
)
from fos_agent.protocol.transitions import ProtocolError
from fos_raft.model import ItemReq

NO_EFFECTS = Effects()


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """What the protocol needs to know about its stage.

    ``immediate_arrival``: accept received batches straight into QUEUED (one durable step
    instead of IN_TRANSIT then QUEUED) for stages with no physical transit time.
    """

    node_id: str
    produces: ItemReq
    requires: tuple[ItemReq, ...] = ()
    immediate_arrival: bool = False
    verify_confirmations: bool = False


class NodeLedger:
    """One agent's protocol state, rebuilt from its durable records."""

    def __init__(self, config: NodeConfig, durable: DurableState,
                 settled: SettledLookup | None = None) -> None:
        if durable.node_id != config.node_id:
            raise ProtocolError(f"records of node {durable.node_id!r} given to "
                                f"node {config.node_id!r}")
        self.config = config
        self.node_id = config.node_id
        self._settled: SettledLookup = settled or NothingSettled()  # compacted records
        self._settled_out: dict[str, None] = {}  # settled in memory, not yet forgotten
        self._settled_in: dict[str, None] = {}
        self.incarnation = durable.incarnation
        self._next_seq = durable.next_seq
        self._out: dict[str, OutboundRecord] = {}
        self._queued_out: dict[str, None] = {}  # insertion order == seq order
        self._transit_out: dict[str, None] = {}
        self._in: dict[str, InboundRecord] = {}
        self._queued_in: dict[str, dict[str, None]] = {}  # item -> ids, oldest first
        self._transit_in: dict[str, None] = {}
        self._requests = dict(durable.requests)
        self._waiting: set[str] = set()  # IN_TRANSIT batches the consumer said it holds
        self._held: set[str] = set()
        self._request_counter = 0
        self.flow_version = 0
        self.flow_consumers: frozenset[str] = frozenset()
        for rec in sorted(durable.outbound.values(), key=lambda r: r.batch.seq):
            self._index_out(rec)
        for rec in sorted(durable.inbound.values(), key=lambda r: (r.supplier, r.batch.seq)):
            self._index_in(rec)

    # ---- queries ---------------------------------------------------------------------------

    @property
    def next_seq(self) -> int:
        return self._next_seq

    @property
    def queued_outbound_count(self) -> int:
        return len(self._queued_out)

    def outbound(self, batch_id: str) -> OutboundRecord | None:
        return self._out.get(batch_id)

    def inbound(self, batch_id: str) -> InboundRecord | None:
        return self._in.get(batch_id)

    def outbound_queued(self) -> list[Batch]:
        return [self._out[b].batch for b in self._queued_out]

    def outbound_in_transit(self) -> list[OutboundRecord]:
        return [self._out[b] for b in self._transit_out]

    def outbound_records(self) -> list[OutboundRecord]:
        return list(self._out.values())

    def inbound_records(self) -> list[InboundRecord]:
        return list(self._in.values())

    def inbound_queued(self, item: str | None = None) -> list[InboundRecord]:
        items = [item] if item is not None else list(self._queued_in)
        return [self._in[b] for it in items for b in self._queued_in.get(it, {})]

    def inbound_queued_counts(self) -> dict[str, int]:
        return {item: len(ids) for item, ids in self._queued_in.items() if ids}

    def inbound_in_transit(self) -> list[InboundRecord]:
        return [self._in[b] for b in self._transit_in]

    def is_waiting(self, batch_id: str) -> bool:
        """The consumer told us (WaitingForBatch / offer reply) it holds this batch IN_TRANSIT."""
        return batch_id in self._waiting

    # ---- input reservations for several workers of one stage ------------------------------

    @property
    def held(self) -> frozenset[str]:
        return frozenset(self._held)

    def hold_inputs(self) -> tuple[str, ...] | None:
        """Reserve the oldest unheld QUEUED batch of every required item, or None if some
        item has none. Source stages (no requires) get ``()``."""
        picked: list[str] = []
        for req in self.config.requires:
            ids = (b for b in self._queued_in.get(req.item, {}) if b not in self._held)
            first = next(ids, None)
            if first is None:
                return None
            picked.append(first)
        self._held.update(picked)
        return tuple(picked)

    def release(self, batch_ids: tuple[str, ...] | list[str]) -> None:
        self._held.difference_update(batch_ids)

    # ---- in-memory bookkeeping -------------------------------------------------------------

    def forget(self, outbound_ids: list[str], inbound_ids: list[str]) -> None:
        """Drop settled records from memory once their compaction is durable (the
        SettledLookup answers for them from then on; see fos_agent.protocol.compaction)."""
        gone = set(outbound_ids)
        for bid in outbound_ids:
            self._out.pop(bid, None)
            self._settled_out.pop(bid, None)
            self._waiting.discard(bid)
        if gone:
            self._requests = {k: v for k, v in self._requests.items() if v not in gone}
        for bid in inbound_ids:
            self._in.pop(bid, None)
            self._settled_in.pop(bid, None)

    def settled_ids(self) -> tuple[list[str], list[str]]:
        """(outbound, inbound) ids settled in memory and not forgotten yet: what the next
        compaction may move (only those already settled on disk), so it costs what settled
        since the last one, not the history."""
        return list(self._settled_out), list(self._settled_in)

    def _alloc_seq(self, writes: list[Write]) -> int:
        seq = self._next_seq
        self._next_seq += 1
        writes.append(SetNextSeq(self._next_seq))
        return seq

    def _index_out(self, rec: OutboundRecord) -> None:
        bid = rec.batch_id
        self._out[bid] = rec
        self._queued_out.pop(bid, None)
        self._transit_out.pop(bid, None)
        if rec.state is OutState.QUEUED:
            self._queued_out[bid] = None
        elif rec.state is OutState.IN_TRANSIT:
            self._transit_out[bid] = None
        else:
            self._waiting.discard(bid)
            self._settled_out[bid] = None

    def _put_out(self, rec: OutboundRecord, writes: list[Write]) -> None:
        self._index_out(rec)
        writes.append(PutOutbound(rec))

    def _index_in(self, rec: InboundRecord) -> None:
        bid = rec.batch_id
        self._in[bid] = rec
        self._transit_in.pop(bid, None)
        queue = self._queued_in.setdefault(rec.batch.item, {})
        queue.pop(bid, None)
        if rec.state is InState.QUEUED:
            queue[bid] = None
        elif rec.state is InState.IN_TRANSIT:
            self._transit_in[bid] = None
        else:
            self._settled_in[bid] = None

    def _put_in(self, rec: InboundRecord, writes: list[Write]) -> None:
        self._index_in(rec)
        writes.append(PutInbound(rec))


def seq_last(writes: list[Write]) -> tuple[Write, ...]:
    """One SetNextSeq at the end of the group (the counter's final value)."""
    seqs = [w for w in writes if isinstance(w, SetNextSeq)]
    rest = [w for w in writes if not isinstance(w, SetNextSeq)]
    return tuple(chain(rest, seqs[-1:]))
