"""One item's share of the flow: who is each consumer's primary and backup supplier (pure).

``assign_item`` implements steps 1-4 of the planner semantics documented in
``fos_raft.planner.plan`` (keep, place orphans, balance, backups). Both the full and the
incremental planner call it for every item whose suppliers or consumers changed, so they agree
by construction as long as they hand it the same inputs.
"""

from __future__ import annotations

import heapq
from bisect import insort
from collections.abc import Mapping, Sequence
from typing import NamedTuple

BACKUPS = 2
"""Backup suppliers per (consumer, item) besides the primary, when there are enough."""

SCAN_LIMIT = 8
"""Up to this many suppliers, linear scans replace heaps (same result, less overhead)."""


class Links(NamedTuple):
    """One consumer's suppliers of one item: the primary, then the backups in rank order.

    In a *previous* flow read back from edges, ``primary`` is ``""`` when no rank-0 edge was
    left (``""`` is never a node id). A named tuple: the planner makes tens of thousands.
    """

    primary: str
    backups: tuple[str, ...] = ()


def _valid_top(heap: list[tuple[float, str]], current: Mapping[str, float]) -> tuple[float, str]:
    """Drop stale entries (whose key is no longer the supplier's current key); return the top.

    An entry whose key equals the current one is correct even if it is a duplicate.
    """
    while True:
        key, supplier = heap[0]
        if key == current[supplier]:
            return key, supplier
        heapq.heappop(heap)


def assign_item(
    suppliers: Sequence[str],
    capacity: Mapping[str, int],
    consumers: Sequence[str],
    previous: Mapping[str, Links],
) -> dict[str, Links]:
    """Links of every consumer of one item.

    ``suppliers`` and ``consumers`` are the item's viable suppliers and consumers, sorted,
    ``suppliers`` non-empty; ``capacity`` maps each supplier to its capacity; ``previous``
    maps consumers to their links for this item in the previous flow (absent: none).
    """
    if len(suppliers) == 1:
        only = Links(suppliers[0])
        return dict.fromkeys(consumers, only)
    supplier_set = set(suppliers)
    load = dict.fromkeys(suppliers, 0)
    primary: dict[str, str] = {}
    orphans: list[str] = [] if previous else list(consumers)
    for consumer in consumers if previous else ():  # 1. keep a still-viable primary
        links = previous.get(consumer)
        if links is not None and links.primary in supplier_set:
            kept = links.primary
            primary[consumer] = kept
            load[kept] += 1
        else:
            orphans.append(consumer)

    after_add = {s: (load[s] + 1) / capacity[s] for s in suppliers}
    if orphans:  # 2. least (load + 1) / capacity, then own backup by rank, then id
        place = _place_orphans_scan if len(suppliers) <= SCAN_LIMIT else _place_orphans_heap
        place(suppliers, capacity, orphans, previous, primary, load, after_add)

    ratio = {s: load[s] / capacity[s] for s in suppliers}
    if max(ratio.values()) > min(after_add.values()):
        _balance(suppliers, capacity, primary, load, ratio, after_add)

    return _with_backups(suppliers, capacity, consumers, previous, primary, load)


def _place_orphans_heap(
    suppliers: Sequence[str],
    capacity: Mapping[str, int],
    orphans: Sequence[str],
    previous: Mapping[str, Links],
    primary: dict[str, str],
    load: dict[str, int],
    after_add: dict[str, float],
) -> None:
    heap = [(after_add[s], s) for s in suppliers]
    heapq.heapify(heap)
    for consumer in orphans:
        best, choice = _valid_top(heap, after_add)
        links = previous.get(consumer)
        if links is not None:
            for backup in links.backups:
                if after_add.get(backup) == best:
                    choice = backup
                    break
        primary[consumer] = choice
        load[choice] += 1
        after_add[choice] = (load[choice] + 1) / capacity[choice]
        heapq.heappush(heap, (after_add[choice], choice))


def _place_orphans_scan(
    suppliers: Sequence[str],
    capacity: Mapping[str, int],
    orphans: Sequence[str],
    previous: Mapping[str, Links],
    primary: dict[str, str],
    load: dict[str, int],
    after_add: dict[str, float],
) -> None:
    """``_place_orphans_heap`` for few suppliers, where a linear scan beats a heap."""
    for consumer in orphans:
        best = min(after_add.values())
        choice = ""
        links = previous.get(consumer)
        if links is not None:
            for backup in links.backups:
                if after_add.get(backup) == best:
                    choice = backup
                    break
        if not choice:
            for s in suppliers:
                if after_add[s] == best:
                    choice = s
                    break
        primary[consumer] = choice
        load[choice] += 1
        after_add[choice] = (load[choice] + 1) / capacity[choice]


def _balance(
    suppliers: Sequence[str],
    capacity: Mapping[str, int],
    primary: dict[str, str],
    load: dict[str, int],
    ratio: dict[str, float],
    after_add: dict[str, float],
) -> None:
    """3. the most over-loaded supplier (max load/cap; a heap of negated ratios) gives its
    largest consumer id to the most under-loaded one (min (load+1)/cap) while that helps."""
    served: dict[str, list[str]] = {s: [] for s in suppliers}
    for consumer in sorted(primary):
        served[primary[consumer]].append(consumer)
    neg_ratio = {s: -r for s, r in ratio.items()}
    over = [(neg_ratio[s], s) for s in suppliers]
    under = [(after_add[s], s) for s in suppliers]
    heapq.heapify(over)
    heapq.heapify(under)
    while True:
        neg_max, source = _valid_top(over, neg_ratio)
        min_after, target = _valid_top(under, after_add)
        if not -neg_max > min_after:
            return
        consumer = served[source].pop()
        insort(served[target], consumer)
        primary[consumer] = target
        for s, delta in ((source, -1), (target, 1)):
            load[s] += delta
            neg_ratio[s] = -load[s] / capacity[s]
            after_add[s] = (load[s] + 1) / capacity[s]
            heapq.heappush(over, (neg_ratio[s], s))
            heapq.heappush(under, (after_add[s], s))


def _with_backups(
    suppliers: Sequence[str],
    capacity: Mapping[str, int],
    consumers: Sequence[str],
    previous: Mapping[str, Links],
    primary: Mapping[str, str],
    load: Mapping[str, int],
) -> dict[str, Links]:
    """4. keep still-viable previous backups, fill the rest by least backup load."""
    want = min(BACKUPS, len(suppliers) - 1)
    supplier_set = set(suppliers)
    backup_load = dict.fromkeys(suppliers, 0)
    chosen: dict[str, list[str]] = {}
    short = not previous
    if short:
        chosen = {consumer: [] for consumer in consumers}
    for consumer in consumers if previous else ():
        kept: list[str] = []
        links = previous.get(consumer)
        if links is not None:
            mine = primary[consumer]
            for backup in links.backups:
                if backup in supplier_set and backup != mine and backup not in kept:
                    kept.append(backup)
                    backup_load[backup] += 1
                    if len(kept) == want:
                        break
        chosen[consumer] = kept
        if len(kept) < want:
            short = True
    if short:
        fill = _fill_backups_scan if len(suppliers) <= SCAN_LIMIT else _fill_backups_heap
        fill(suppliers, capacity, consumers, primary, load, want, backup_load, chosen)
    return {c: Links(primary[c], tuple(chosen[c])) for c in consumers}


def _fill_backups_heap(
    suppliers: Sequence[str],
    capacity: Mapping[str, int],
    consumers: Sequence[str],
    primary: Mapping[str, str],
    load: Mapping[str, int],
    want: int,
    backup_load: dict[str, int],
    chosen: dict[str, list[str]],
) -> None:
    key = {s: (backup_load[s] / capacity[s], load[s] / capacity[s]) for s in suppliers}
    heap = [(key[s], s) for s in suppliers]
    heapq.heapify(heap)
    for consumer in consumers:
        kept = chosen[consumer]
        if len(kept) == want:
            continue
        skipped: list[tuple[tuple[float, float], str]] = []
        while len(kept) < want:
            entry = heapq.heappop(heap)
            entry_key, s = entry
            if entry_key != key[s]:
                continue  # stale: a fresher entry for s is in the heap
            if s == primary[consumer] or s in kept:
                skipped.append(entry)
                continue
            kept.append(s)
            backup_load[s] += 1
            key[s] = (backup_load[s] / capacity[s], load[s] / capacity[s])
            heapq.heappush(heap, (key[s], s))
        for entry in skipped:
            heapq.heappush(heap, entry)


def _fill_backups_scan(
    suppliers: Sequence[str],
    capacity: Mapping[str, int],
    consumers: Sequence[str],
    primary: Mapping[str, str],
    load: Mapping[str, int],
    want: int,
    backup_load: dict[str, int],
    chosen: dict[str, list[str]],
) -> None:
    """``_fill_backups_heap`` for few suppliers. Within one consumer only the suppliers it
    picks change key, and they leave its candidates, so its picks are simply the candidates
    of least key; the stable sort keeps id order on equal keys, as the heap does."""
    key = {s: (backup_load[s] / capacity[s], load[s] / capacity[s]) for s in suppliers}
    for consumer in consumers:
        kept = chosen[consumer]
        need = want - len(kept)
        if not need:
            continue
        mine = primary[consumer]
        candidates = [s for s in suppliers if s != mine and s not in kept]
        candidates.sort(key=key.__getitem__)
        for s in candidates[:need]:
            kept.append(s)
            backup_load[s] += 1
            key[s] = (backup_load[s] / capacity[s], load[s] / capacity[s])
