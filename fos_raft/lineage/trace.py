"""Walk the genealogy: back from a batch to its source batches, or forward to the final
products it went into (docs/genealogy.md).

Pure: no I/O of its own. ``trace`` asks a ``Fetch`` -- one node's index, by batch ids --
and a node it cannot read (``Unreachable``) is reported in the result, never silently
skipped. The walk goes level by level, one question per node per level, so a 20-deep chain
costs about 20 round trips whatever its width.

A batch ``b`` is made at ``producer_of(b)``; its made entry names its inputs (back) and
the consumer it was delivered to, whose used entry names the output it went into (forward;
a reclaimed batch goes into its reclaim copy at its own producer). A batch its consumer
scrapped goes into nothing: the trace says where and why (a back trace asks the root's
consumer once for that, and does not count it as part of the walk).

A record naming something that is not a batch id (an input, an output; written by an agent
that did not check what it was offered) is a reported anomaly of the result
(``Trace.malformed``, which makes it partial), never an exception.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from fos_raft.lineage.index import AttrPairs, MadeEntry
from fos_raft.model import clip, split_batch_id

BACK = "back"
FORWARD = "forward"


class Unreachable(Exception):
    """The node's index cannot be read (down, refused, no data dir); the message says why."""


class UnknownBatch(Exception):
    """No node knows the batch asked for."""


@dataclass(frozen=True, slots=True)
class NodeAnswer:
    """What one node's index says of one batch id (either may be None)."""

    made: MadeEntry | None = None
    into: str | None = None  # consumed there into this output ("" if not yet recorded)
    scrapped: str = ""  # consumed there by a scrap, for this reason (into is then "")


Fetch = Callable[[str, list[str]], Awaitable[dict[str, NodeAnswer]]]


@dataclass
class TraceBatch:
    batch_id: str
    node: str
    item: str
    qty: int
    made_at_ms: int
    inputs: list[str]
    outputs: list[str] = field(default_factory=list)
    delivered_to: str | None = None
    attrs: AttrPairs = ()
    scrapped: str | None = None     # the reason, when its consumer scrapped it
    scrapped_at: str | None = None  # that consumer


@dataclass
class Trace:
    batch: str
    direction: str
    batches: list[TraceBatch] = field(default_factory=list)
    unreachable: list[tuple[str, str]] = field(default_factory=list)  # (node, reason)
    malformed: list[tuple[str, str]] = field(default_factory=list)  # (id, where it was named)

    @property
    def complete(self) -> bool:
        return not self.unreachable and not self.malformed


def _producer(batch_id: str) -> str | None:
    parts = split_batch_id(batch_id)
    return parts[0] if parts is not None else None


class _Walk:
    def __init__(self, fetch: Fetch) -> None:
        self.fetch = fetch
        self.down: dict[str, str] = {}  # node -> reason

    async def ask(self, by_node: dict[str, list[str]]) -> dict[tuple[str, str], NodeAnswer]:
        """(node, id) -> answer for every id each reachable node knows."""
        found: dict[tuple[str, str], NodeAnswer] = {}
        for node, ids in sorted(by_node.items()):
            if node in self.down:
                continue
            try:
                answers = await self.fetch(node, ids)
            except Unreachable as e:
                self.down[node] = str(e) or "unreachable"
                continue
            for bid, answer in answers.items():
                found[(node, bid)] = answer
        return found


def _group(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for node, bid in pairs:
        out.setdefault(node, []).append(bid)
    return out


async def trace(root: str, direction: str, fetch: Fetch, depth: int | None = None) -> Trace:
    """The trace of ``root``; raises UnknownBatch when its producer is reachable and has no
    record of it (or the id is not a batch id)."""
    if direction not in (BACK, FORWARD):
        raise ValueError(f"direction must be {BACK!r} or {FORWARD!r}")
    if _producer(root) is None:
        raise UnknownBatch(f"{clip(root)} is not a batch id (<producer>:<seq>)")
    walk = _Walk(fetch)
    result = Trace(root, direction)
    root_consumer = ""
    entries: dict[str, TraceBatch] = {}
    bad: dict[str, str] = {}  # malformed id -> where it was named

    def well_formed(bid: str, where: str) -> bool:
        if _producer(bid) is not None:
            return True
        bad.setdefault(clip(bid, 80), where)
        return False

    level, distance = [root], 0
    while level:
        found = await walk.ask(_group([(_producer(b) or "", b) for b in level]))
        made: list[MadeEntry] = []
        for bid in level:
            node = _producer(bid) or ""
            entry = found.get((node, bid), NodeAnswer()).made
            if entry is None:
                if node not in walk.down:
                    if bid == root:
                        raise UnknownBatch(f"no node knows batch {root!r} ({node} has no "
                                           "record of it)")
                    walk.down.setdefault(node, f"no record of {bid} (pruned or lost)")
                continue
            made.append(entry)
            if bid == root:
                root_consumer = entry.delivered_to or entry.to
            entries[bid] = TraceBatch(bid, entry.node, entry.item, entry.qty,
                                      entry.made_at_ms, list(entry.input_ids),
                                      delivered_to=entry.delivered_to or None,
                                      attrs=entry.attrs)
            result.batches.append(entries[bid])
        if depth is not None and distance >= depth:
            break
        distance += 1
        nxt: list[str] = []
        if direction == BACK:
            for entry in made:
                for src in entry.input_ids:
                    if (src not in entries and src not in nxt
                            and well_formed(src, f"input of {entry.batch_id}")):
                        nxt.append(src)
        else:
            # follow the goods: to the consumer they were sent to (delivered, or still
            # unconfirmed -- it may have consumed them already), or a reclaim copy here
            asks = [(e.node if e.state == "RECLAIMED" else e.delivered_to or e.to, e.batch_id)
                    for e in made if e.to or e.delivered_to or e.state == "RECLAIMED"]
            used = await walk.ask(_group(asks))
            for node, bid in asks:
                answer = used.get((node, bid))
                if answer is not None and answer.scrapped:
                    entries[bid].scrapped, entries[bid].scrapped_at = answer.scrapped, node
                if (answer is not None and answer.into and answer.into not in entries
                        and answer.into not in nxt
                        and well_formed(answer.into, f"output of {bid} at {node}")):
                    nxt.append(answer.into)
        level = nxt
    if direction == BACK and root in entries and root_consumer:
        await _root_fate(entries[root], root_consumer, fetch)
    for tb in result.batches:  # outputs: the reverse of the inputs seen in the trace
        for src in tb.inputs:
            if src in entries and tb.batch_id not in entries[src].outputs:
                entries[src].outputs.append(tb.batch_id)
    result.unreachable = sorted(walk.down.items())
    result.malformed = sorted(bad.items())
    return result


async def _root_fate(root: TraceBatch, consumer: str, fetch: Fetch) -> None:
    """Whether the root's consumer scrapped it: one question, best effort (a back trace
    is complete without it)."""
    try:
        answer = (await fetch(consumer, [root.batch_id])).get(root.batch_id)
    except Unreachable:
        return
    if answer is not None and answer.scrapped:
        root.scrapped, root.scrapped_at = answer.scrapped, consumer


def trace_to_json(t: Trace, made_at: Callable[[int], str]) -> dict[str, object]:
    """The JSON shape of ``fosctl trace --format json``; ``made_at`` renders a unix-ms time."""
    return {
        "batch": t.batch,
        "direction": t.direction,
        "batches": [{"batch_id": b.batch_id, "node": b.node, "item": b.item, "qty": b.qty,
                     "made_at": made_at(b.made_at_ms), "inputs": b.inputs,
                     "outputs": b.outputs, "delivered_to": b.delivered_to,
                     "attrs": dict(b.attrs), "scrapped": b.scrapped,
                     "scrapped_at": b.scrapped_at}
                    for b in t.batches],
        "unreachable": [{"node": n, "reason": r} for n, r in t.unreachable],
        "malformed": [{"id": i, "named_as": w} for i, w in t.malformed],
    }
