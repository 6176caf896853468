"""Route one item's flow around links that are down (pure, deterministic).

A link is down when its consumer cannot reach its supplier although the coordinator reaches
both (``fos_raft.model.LinkState.DOWN``). Neither end is dead, so viability does not change;
only the pairs do. ``route_around`` runs after ``assign_item`` and rewrites the links of the
consumers that have a down pair:

- a consumer with at least one reachable supplier never keeps a down supplier, neither as
  primary nor as backup; its new primary is its first reachable backup in rank order, else
  the reachable supplier of the item with the least primaries, then the smallest id;
- a consumer whose every supplier is down keeps its links unchanged (nothing better exists,
  and the link may heal);
- consumers without a down pair are left exactly as they were, so a link fault moves only
  the edges it touches.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence

from fos_raft.planner.assign import Links

DownPairs = Collection[tuple[str, str]]
"""(supplier, consumer) pairs whose link is down."""


def route_around(
    suppliers: Sequence[str],
    links: Mapping[str, Links],
    down: DownPairs,
) -> dict[str, Links]:
    """``links`` (consumer -> Links of one item) with down pairs avoided where possible."""
    result = dict(links)
    if not down:
        return result
    down_set = set(down)
    touched = sorted(c for c, lk in links.items()
                     if any((s, c) in down_set for s in (lk.primary, *lk.backups)))
    if not touched:
        return result
    primaries = Counter(lk.primary for lk in links.values())
    for consumer in touched:
        old = links[consumer]
        reachable = [s for s in suppliers if (s, consumer) not in down_set]
        if not reachable:
            continue
        kept = [s for s in (old.primary, *old.backups) if (s, consumer) not in down_set]
        primary = kept[0] if kept else min(reachable, key=lambda s: (primaries[s], s))
        primaries[old.primary] -= 1
        primaries[primary] += 1
        backups = tuple(s for s in kept if s != primary)
        result[consumer] = Links(primary, backups)
    return result
