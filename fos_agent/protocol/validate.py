"""What a peer message must look like before the protocol lets it near the WAL (pure).

A node trusts nothing it receives: a batch offered or sent to it, a request, a
confirmation. Each check here returns a `Refusal` (a reason, the metric label, and a detail
for a human) or None; the handlers of `fos_agent.protocol.supplier` / `consumer` call them
first and answer a refusal with no write (``Effects.refusal``), which the gRPC layer maps to
INVALID_ARGUMENT and the engine counts (``fos_agent_refused_total{reason}``).

The rules are about form and the node's own spec, never about the flow: the flow may lag
(a consumer follows a newer or older version than its supplier), and goods already sent
must not be lost, so an offer from a node that is not, or no longer, our flow supplier is
still taken when it is well formed. What "well formed" means:

- a batch id is ``<producer>:<seq>``, ``producer`` a node id (fos_raft.model.check_id's
  grammar) equal to the batch's producer and to the node it came from, ``seq`` a positive
  decimal equal to the batch's seq;
- its item is one this node requires, its qty within 1..``MAX_QTY`` (every spec's bound);
- its attributes within fos_agent.protocol.limits' bounds (keys, lengths, bytes);
- its lineage at most ``MAX_LINEAGE_IDS`` ids (a cycle consumes one batch of each of at
  most ``MAX_REQUIRES`` items; a reclaimed copy names one) and ``MAX_LINEAGE_BYTES`` bytes,
  each a batch id;
- a request id at most ``MAX_REQUEST_ID_LEN`` printable characters;
- a confirmation names a batch this node produced (``<me>:<seq>``, seq already allocated)
  and sent to the consumer that confirms it.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from fos_agent.protocol.limits import LimitError, check_attrs
from fos_agent.protocol.records import Batch, OutboundRecord
from fos_raft.model import (
    MAX_BATCH_ID_LEN,
    MAX_ID_LEN,
    MAX_QTY,
    MAX_REQUIRES,
    clip,
    split_batch_id,
)

__all__ = ["MAX_BATCH_ID_LEN", "MAX_LINEAGE_BYTES", "MAX_LINEAGE_IDS", "MAX_REQUEST_ID_LEN",
           "Refusal", "check_batch", "check_batch_id", "check_confirmation", "check_request",
           "clip", "split_batch_id"]

MAX_LINEAGE_IDS = 2 * MAX_REQUIRES  # margin over the largest legal cycle (MAX_REQUIRES)
MAX_LINEAGE_BYTES = MAX_LINEAGE_IDS * (MAX_BATCH_ID_LEN + 1)
MAX_REQUEST_ID_LEN = 2 * MAX_ID_LEN + 64  # "<consumer>~<incarnation>~<n>[.<i>]" with room

_NODE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
_PRINTABLE_RE = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a message was refused: ``reason`` is the metric label (a few fixed words),
    ``detail`` names the offending value (clipped) for the log and the gRPC status."""

    reason: str
    detail: str


def node_id_problem(node: str) -> str:
    if not node:
        return "empty node id"
    if not isinstance(node, str) or len(node) > MAX_ID_LEN or not _NODE_RE.fullmatch(node):
        return f"node id {clip(node)} is not a node id"
    return ""


def check_batch_id(batch_id: str, producer: str | None = None) -> Refusal | None:
    parts = split_batch_id(batch_id)
    if parts is None:
        return Refusal("batch_id", f"batch id {clip(batch_id)} is not <producer>:<seq>")
    if producer is not None and parts[0] != producer:
        return Refusal("batch_id", f"batch id {clip(batch_id)} is not one of {clip(producer)}")
    return None


def check_batch(batch: Batch, supplier: str, required: Collection[str]) -> Refusal | None:
    """An offered or sent batch, from ``supplier``, to a node requiring ``required``."""
    if batch.producer != supplier:
        return Refusal("producer", f"batch {clip(batch.batch_id)} of {clip(batch.producer)} "
                                   f"came from {clip(supplier)}")
    problem = check_batch_id(batch.batch_id, supplier)
    if problem is not None:
        return problem
    parts = split_batch_id(batch.batch_id)
    if parts is None or parts[1] != batch.seq:
        return Refusal("batch_id", f"batch id {clip(batch.batch_id)} has seq {batch.seq}")
    if batch.item not in required:
        return Refusal("item", f"batch {batch.batch_id} is {clip(batch.item)}; this node "
                               f"takes {sorted(required)}")
    if isinstance(batch.qty, bool) or not 1 <= batch.qty <= MAX_QTY:
        return Refusal("qty", f"batch {batch.batch_id} has qty {clip(batch.qty)}; a batch "
                              f"holds 1..{MAX_QTY}")
    lineage = batch.lineage
    if len(lineage) > MAX_LINEAGE_IDS:
        return Refusal("lineage", f"batch {batch.batch_id} names {len(lineage)} inputs; "
                                  f"the limit is {MAX_LINEAGE_IDS}")
    size = sum(len(x) for x in lineage)
    if size > MAX_LINEAGE_BYTES:
        return Refusal("lineage", f"batch {batch.batch_id} has {size} bytes of lineage; "
                                  f"the limit is {MAX_LINEAGE_BYTES}")
    bad = next((x for x in lineage if split_batch_id(x) is None), None)
    if bad is not None:
        return Refusal("lineage", f"batch {batch.batch_id} names input {clip(bad)}, "
                                  "not a batch id")
    if len(set(lineage)) != len(lineage):
        return Refusal("lineage", f"batch {batch.batch_id} names an input twice")
    try:
        check_attrs(batch.attrs)
    except LimitError as exc:
        return Refusal("attrs", f"batch {batch.batch_id}: {clip(str(exc))}")
    return None


def check_request_id(request_id: str) -> Refusal | None:
    if (not request_id or len(request_id) > MAX_REQUEST_ID_LEN
            or not _PRINTABLE_RE.fullmatch(request_id)):
        return Refusal("request_id", f"request id {clip(request_id)} is empty, too long or "
                                     "not printable")
    return None


def check_request(consumer: str, request_id: str, qty: int, flow_version: int,
                  wait_ms: int) -> Refusal | None:
    """A RequestBatch's own fields (whether this node may serve it is the supplier's)."""
    problem = node_id_problem(consumer)
    if problem:
        return Refusal("node_id", f"consumer: {problem}")
    refusal = check_request_id(request_id)
    if refusal is not None:
        return refusal
    # qty 0 is "unspecified" on the wire; the supplier sends what it makes either way
    if isinstance(qty, bool) or not 0 <= qty <= MAX_QTY:
        return Refusal("qty", f"request {clip(request_id)} asks for qty {clip(qty)}")
    if flow_version < 0 or wait_ms < 0:
        return Refusal("request", f"request {clip(request_id)} has a negative flow version "
                                  "or wait")
    return None


def check_confirmation(me: str, next_seq: int, consumer: str, batch_id: str,
                       record: OutboundRecord | None) -> Refusal | None:
    """A DeliveryConfirmed (or WaitingForBatch) from ``consumer`` for ``batch_id``.
    ``record`` is our live outbound record of it (None: never ours, or settled and
    compacted, which a late repeat of a confirmation may legitimately name)."""
    problem = node_id_problem(consumer)
    if problem:
        return Refusal("node_id", f"consumer: {problem}")
    parts = split_batch_id(batch_id)
    if parts is None or parts[0] != me or parts[1] >= next_seq:
        return Refusal("not_sent", f"{clip(batch_id)} is not a batch {me} made")
    if record is not None and record.to != consumer:
        return Refusal("not_sent", f"{batch_id} was not sent to {clip(consumer)}")
    return None
