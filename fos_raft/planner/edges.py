"""Flow edges in and out of the planner (pure): reading a previous flow back as item ->
consumer -> `Links`, and building the `Edge` records of a link (the hot loop of a full
plan, so it writes the records' slots directly when it safely can)."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence

from fos_raft.model import Edge
from fos_raft.planner.assign import Links


def previous_links(previous: Iterable[Edge]) -> dict[str, dict[str, Links]]:
    """Read a flow's edges back as item -> consumer -> Links (order of the edges is free)."""
    grouped: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for edge in previous:
        key = (edge.item, edge.consumer)
        ranked = grouped.get(key)
        if ranked is None:
            grouped[key] = [(edge.rank, edge.supplier)]
        else:
            ranked.append((edge.rank, edge.supplier))
    result: dict[str, dict[str, Links]] = {}
    for (item, consumer), ranked in grouped.items():
        if len(ranked) > 1:
            ranked.sort()
        first_rank, first = ranked[0]
        primary = first if first_rank == 0 else ""
        backups: list[str] = []
        for _, supplier in ranked:
            if supplier != primary and supplier not in backups:
                backups.append(supplier)
        per_item = result.get(item)
        if per_item is None:
            per_item = result[item] = {}
        per_item[consumer] = Links(primary, tuple(backups))
    return result


EdgeSink = Callable[[str, str, int, Sequence[str], defaultdict[str, list[Edge]]], None]


def link_edges_slow(
    consumer: str, item: str, qty: int, ranked: Sequence[str], into: defaultdict[str, list[Edge]]
) -> None:
    """Append the edges of one consumer's link for ``item`` (suppliers by rank) to ``into``."""
    for rank, supplier in enumerate(ranked):
        into[supplier].append(Edge(supplier, consumer, item, qty, rank))


def link_edges_builder() -> EdgeSink:
    """``link_edges_slow``, but writing the ``Edge`` slots directly.

    A frozen dataclass sets each field through ``object.__setattr__``; writing the slots
    builds the identical record (same fields, equality, hash, repr) in about 60% of the time,
    and a full 10k-node plan builds ~40k edges. Falls back to the slow version if ``Edge``
    ever changes shape (other fields, no slots, a ``__post_init__``).
    """
    names = ("supplier", "consumer", "item", "qty", "rank")
    if (
        tuple(f.name for f in dataclasses.fields(Edge)) != names
        or "__slots__" not in Edge.__dict__
        or hasattr(Edge, "__post_init__")
    ):
        return link_edges_slow
    set_supplier, set_consumer, set_item, set_qty, set_rank = (
        getattr(Edge, name).__set__ for name in names
    )
    new = object.__new__

    def link_edges(
        consumer: str,
        item: str,
        qty: int,
        ranked: Sequence[str],
        into: defaultdict[str, list[Edge]],
    ) -> None:
        for rank, supplier in enumerate(ranked):
            edge = new(Edge)
            set_supplier(edge, supplier)
            set_consumer(edge, consumer)
            set_item(edge, item)
            set_qty(edge, qty)
            set_rank(edge, rank)
            into[supplier].append(edge)

    return link_edges


link_edges = link_edges_builder()
