"""The rules of the batch protocol in one place: which record state may follow which, which
event makes which move, and the check of durable writes (docs/protocol.md, "States").

Laid out like h11's ``_state.py``: the tables first (``OUT_NEXT``, ``IN_NEXT``, the ranks,
``OUTBOUND_MOVES``, ``INBOUND_MOVES``), the check below them. The handlers that make the moves
live in fos_agent.protocol.supplier and fos_agent.protocol.consumer, dispatched by
fos_agent.protocol.machine.

Pure. Both stores use it before making anything durable: the LMDB WAL (fos_agent.storage.wal) inside
its write transaction, and the in-memory store of fos_agent.testing. A write that would move
a record backwards, change an immutable field, reuse a seq or split a cycle raises
`InvalidTransition` and nothing of that group is written.

Rules, per group of writes (one `Effects.writes`, i.e. one atomic step of the protocol):
- outbound: new -> QUEUED; QUEUED -> IN_TRANSIT(to); IN_TRANSIT -> DELIVERED | RECLAIMED.
  The batch, ``to``, ``request_id`` and ``reclaimed_from`` never change once set.
- inbound: new -> IN_TRANSIT | QUEUED; IN_TRANSIT -> QUEUED; QUEUED -> CONSUMED.
  The batch and ``supplier`` never change. ``scrapped`` (a reason) is set only on the move
  QUEUED -> CONSUMED of a scrap and never changes after.
- a new outbound batch carries a quantity in 1..MAX_QTY and attributes within
  fos_agent.protocol.limits.
- a new outbound batch is ``"<node>:<seq>"`` with seq >= the durable counter (I6), and the
  counter only grows (`SetNextSeq`).
- I5 (atomic cycle): the inbound batches a group consumes are exactly the lineages of the
  batches it produces (each consumed once), so no input is consumed without its output and
  no output exists without its inputs consumed; a scrapped input is in no lineage (it is
  consumed with no output). A reclaim copy has lineage
  ``(reclaimed_from,)`` and its original goes RECLAIMED in the same group.
- request ids: a (consumer, request_id) key is written once, for a batch IN_TRANSIT to that
  consumer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fos_agent.protocol.limits import LimitError, check_attrs, check_qty, check_reason
from fos_agent.protocol.messages import (
    Arrived,
    BatchSent,
    DeliveryConfirmed,
    Event,
    OfferBatch,
    OfferReply,
    Produce,
    Reclaim,
    RequestBatch,
    Scrap,
)
from fos_agent.protocol.records import (
    DurableState,
    InboundRecord,
    InState,
    OutboundRecord,
    OutState,
    PutInbound,
    PutOutbound,
    PutRequest,
    SetNextSeq,
    Write,
    batch_id_of,
)


class ProtocolError(Exception):
    """A local action that the protocol refuses (e.g. consuming a batch that is not QUEUED)."""


class InvalidTransition(ProtocolError):
    """A durable write that would break the pair order or an invariant; nothing was written."""


OUT_NEXT: dict[OutState | None, frozenset[OutState]] = {
    None: frozenset({OutState.QUEUED}),
    OutState.QUEUED: frozenset({OutState.IN_TRANSIT}),
    OutState.IN_TRANSIT: frozenset({OutState.DELIVERED, OutState.RECLAIMED}),
    OutState.DELIVERED: frozenset(),
    OutState.RECLAIMED: frozenset(),
}

IN_NEXT: dict[InState | None, frozenset[InState]] = {
    None: frozenset({InState.IN_TRANSIT, InState.QUEUED}),
    InState.IN_TRANSIT: frozenset({InState.QUEUED}),
    InState.QUEUED: frozenset({InState.CONSUMED}),
    InState.CONSUMED: frozenset(),
}

# Ranks for monotonicity checks (I4); RECLAIMED is terminal like DELIVERED.
OUT_RANK = {OutState.QUEUED: 0, OutState.IN_TRANSIT: 1, OutState.DELIVERED: 2,
            OutState.RECLAIMED: 2}
IN_RANK = {InState.IN_TRANSIT: 1, InState.QUEUED: 2, InState.CONSUMED: 3}

# Which event makes which move (old state, None = new record -> new state); an event not
# listed writes no record (Tick, FlowChanged, NewRequest, WaitingForBatch and the refusals
# only send messages or change memory). tests/test_protocol_tables.py checks the handlers
# make no other move.
OutMove = tuple[OutState | None, OutState]
InMove = tuple[InState | None, InState]

OUTBOUND_MOVES: dict[type[Event], frozenset[OutMove]] = {
    Produce: frozenset({(None, OutState.QUEUED)}),              # the cycle's output
    RequestBatch: frozenset({(OutState.QUEUED, OutState.IN_TRANSIT)}),
    DeliveryConfirmed: frozenset({(OutState.IN_TRANSIT, OutState.DELIVERED)}),
    OfferReply: frozenset({(OutState.IN_TRANSIT, OutState.DELIVERED)}),  # QUEUED/CONSUMED
    Reclaim: frozenset({(OutState.IN_TRANSIT, OutState.RECLAIMED),
                        (None, OutState.QUEUED)}),              # the original and its copy
}

INBOUND_MOVES: dict[type[Event], frozenset[InMove]] = {
    # QUEUED at once for stages with immediate arrival
    BatchSent: frozenset({(None, InState.IN_TRANSIT), (None, InState.QUEUED)}),
    OfferBatch: frozenset({(None, InState.IN_TRANSIT), (None, InState.QUEUED)}),
    Arrived: frozenset({(InState.IN_TRANSIT, InState.QUEUED)}),
    Produce: frozenset({(InState.QUEUED, InState.CONSUMED)}),   # the cycle's inputs
    Scrap: frozenset({(InState.QUEUED, InState.CONSUMED)}),     # consumed, no output
}

GetOutbound = Callable[[str], OutboundRecord | None]
GetInbound = Callable[[str], InboundRecord | None]
GetRequest = Callable[[str, str], str | None]


def _check_outbound(node_id: str, old: OutboundRecord | None, new: OutboundRecord,
                    next_seq: int) -> None:
    bid = new.batch_id
    if new.state not in OUT_NEXT[old.state if old else None]:
        was = old.state.value if old else "absent"
        raise InvalidTransition(f"outbound {bid}: {was} -> {new.state.value} is not allowed")
    if old is None:
        b = new.batch
        if b.producer != node_id or bid != batch_id_of(node_id, b.seq):
            raise InvalidTransition(f"outbound {bid}: node {node_id} may only queue its own "
                                    f"batches named '{node_id}:<seq>'")
        if b.seq < next_seq:
            raise InvalidTransition(f"outbound {bid}: seq {b.seq} is below the durable "
                                    f"counter {next_seq} (seq reuse, I6)")
        if new.to or new.request_id:
            raise InvalidTransition(f"outbound {bid}: a QUEUED batch has no consumer yet")
        try:
            check_qty(b.qty)
            check_attrs(b.attrs)
        except LimitError as e:
            raise InvalidTransition(f"outbound {bid}: {e}") from None
        return
    if new.batch != old.batch or new.reclaimed_from != old.reclaimed_from:
        raise InvalidTransition(f"outbound {bid}: the batch itself never changes")
    if new.state is OutState.IN_TRANSIT:
        if not new.to:
            raise InvalidTransition(f"outbound {bid}: IN_TRANSIT needs a consumer")
    elif new.to != old.to or new.request_id != old.request_id:
        raise InvalidTransition(f"outbound {bid}: consumer and request id never change")


def _check_inbound(old: InboundRecord | None, new: InboundRecord) -> None:
    bid = new.batch_id
    if new.state not in IN_NEXT[old.state if old else None]:
        was = old.state.value if old else "absent"
        raise InvalidTransition(f"inbound {bid}: {was} -> {new.state.value} is not allowed")
    if old is None:
        if new.batch.producer != new.supplier:
            raise InvalidTransition(f"inbound {bid}: supplier {new.supplier} is not its producer")
    elif new.batch != old.batch or new.supplier != old.supplier:
        raise InvalidTransition(f"inbound {bid}: batch and supplier never change")
    if new.scrapped != (old.scrapped if old else ""):
        if old is None or new.state is not InState.CONSUMED:
            raise InvalidTransition(f"inbound {bid}: only a scrap (QUEUED -> CONSUMED) "
                                    "records a scrap reason")
        try:
            check_reason(new.scrapped)
        except LimitError as e:
            raise InvalidTransition(f"inbound {bid}: {e}") from None


def check_writes(node_id: str, writes: Sequence[Write], *, get_outbound: GetOutbound,
                 get_inbound: GetInbound, get_request: GetRequest, next_seq: int) -> None:
    """Raise InvalidTransition unless ``writes`` (one atomic group) is legal on top of the
    durable state seen through the getters. Pure; reads only through the callables."""
    out: dict[str, OutboundRecord] = {}
    inb: dict[str, InboundRecord] = {}
    reqs: dict[tuple[str, str], str] = {}
    consumed: list[str] = []
    produced: list[OutboundRecord] = []
    reclaimed: set[str] = set()
    copies: list[OutboundRecord] = []
    seq = next_seq
    for write in writes:
        if isinstance(write, PutOutbound):
            new = write.record
            bid = new.batch_id
            old = out[bid] if bid in out else get_outbound(bid)
            _check_outbound(node_id, old, new, seq)
            out[bid] = new
            if old is None:
                (copies if new.reclaimed_from else produced).append(new)
            elif new.state is OutState.RECLAIMED:
                reclaimed.add(bid)
        elif isinstance(write, PutInbound):
            new_in = write.record
            bid = new_in.batch_id
            old_in = inb[bid] if bid in inb else get_inbound(bid)
            _check_inbound(old_in, new_in)
            inb[bid] = new_in
            if new_in.state is InState.CONSUMED and not new_in.scrapped:
                consumed.append(bid)  # a scrapped input goes into no output
        elif isinstance(write, PutRequest):
            key = (write.consumer, write.request_id)
            if key in reqs or get_request(*key) is not None:
                raise InvalidTransition(f"request {write.request_id} of {write.consumer} "
                                        "is already mapped to a batch")
            target = out.get(write.batch_id) or get_outbound(write.batch_id)
            if (target is None or target.state is not OutState.IN_TRANSIT
                    or target.to != write.consumer):
                raise InvalidTransition(f"request {write.request_id}: batch {write.batch_id} "
                                        f"is not IN_TRANSIT to {write.consumer}")
            reqs[key] = write.batch_id
        elif isinstance(write, SetNextSeq):
            if write.next_seq <= seq:
                raise InvalidTransition(f"seq counter may only grow: {seq} -> {write.next_seq}")
            seq = write.next_seq
        else:  # pragma: no cover - the Write union is closed
            raise InvalidTransition(f"unknown write {write!r}")
    for rec in produced + copies:
        if rec.batch.seq >= seq:
            raise InvalidTransition(f"outbound {rec.batch_id}: the seq counter must move past "
                                    f"{rec.batch.seq} in the same step (I6)")
    # I5: the inputs consumed in this group are exactly the lineages of the batches it
    # produces (several cycles may share a group when the I/O layer merges them).
    lineages = [src for rec in produced for src in rec.batch.lineage]
    if sorted(lineages) != sorted(consumed):
        raise InvalidTransition(f"outputs {[r.batch_id for r in produced]} with lineage "
                                f"{lineages} must be made from exactly the inputs consumed "
                                f"in the same step {consumed} (I5)")
    for copy in copies:
        if copy.batch.lineage != (copy.reclaimed_from,) or copy.reclaimed_from not in reclaimed:
            raise InvalidTransition(f"outbound {copy.batch_id}: a reclaim copy needs its "
                                    "original RECLAIMED in the same step")
    if len(copies) != len(reclaimed):
        raise InvalidTransition("every RECLAIMED batch is replaced by exactly one copy")


def apply_writes(state: DurableState, writes: Sequence[Write]) -> None:
    """Check ``writes`` against ``state`` and apply them all, or raise and apply none."""
    check_writes(
        state.node_id,
        writes,
        get_outbound=state.outbound.get,
        get_inbound=state.inbound.get,
        get_request=lambda consumer, rid: state.requests.get((consumer, rid)),
        next_seq=state.next_seq,
    )
    for write in writes:
        if isinstance(write, PutOutbound):
            state.outbound[write.record.batch_id] = write.record
        elif isinstance(write, PutInbound):
            state.inbound[write.record.batch_id] = write.record
        elif isinstance(write, PutRequest):
            state.requests[(write.consumer, write.request_id)] = write.batch_id
        else:
            state.next_seq = write.next_seq
