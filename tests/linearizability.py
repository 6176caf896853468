"""A linearizability checker for per-key histories (Wing & Gong's search with Lowe's
memoisation), written for issue 15. Pure: no clock, no I/O.

A history is a list of `Op`: each has an invocation time and, if its outcome is known, a
completion time. The checker looks for a total order that (1) respects real time - an op
that completed before another was invoked comes first - and (2) is legal for a sequential
model. Ops with an unknown outcome (the client timed out) may take effect at any point after
their invocation, or never: they are never required, and have no completion bound.

The model here is the coordinator's view of one node: a register holding the last written
value (a unique capacity per write, so a value names its write) with a version (the node's
``spec_version``). Operations:

* ``read`` -> the observed (value, version);
* ``cas(expected_version, value)`` -> ``ok`` with the new version, ``fail`` (the version did
  not match: FAILED_PRECONDITION, no effect) or ``unknown`` (timeout/UNAVAILABLE).

The version a write gets is decided by the cluster (a global counter); it is learnt from the
history (the write's own reply, or any read that saw its value). A write whose version nobody
ever saw matches no expected version - clients only ever expect versions they read.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

INF = float("inf")


@dataclass(frozen=True, slots=True)
class Op:
    """One client operation on one key.

    ``kind``: "read" or "cas". ``complete``: None when the outcome is unknown.
    read: ``value``/``version`` observed. cas: ``expected`` version, ``value`` written,
    ``outcome`` "ok" (``version`` = the new version), "fail" or "unknown"."""

    client: int
    key: str
    kind: str
    invoke: float
    complete: float | None
    value: int = 0
    version: int = 0
    expected: int = 0
    outcome: str = "ok"

    def __post_init__(self) -> None:
        if self.kind not in ("read", "cas"):
            raise ValueError(f"unknown op kind {self.kind!r}")
        if self.outcome not in ("ok", "fail", "unknown"):
            raise ValueError(f"unknown outcome {self.outcome!r}")
        if (self.complete is None) != (self.outcome == "unknown"):
            raise ValueError("an op has no completion exactly when its outcome is unknown")
        if self.kind == "read" and self.outcome != "ok":
            raise ValueError("a read without an answer tells nothing: leave it out")


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    key: str
    explored: int  # search states visited (a measure of the work done)
    detail: str = ""


def versions_seen(history: Iterable[Op]) -> dict[int, int]:
    """value -> version, from successful writes' replies and from reads."""
    out: dict[int, int] = {}
    for op in history:
        if op.outcome == "ok":
            out.setdefault(op.value, op.version)
    return out


def _step(state: int, op: Op, version_of: dict[int, int]) -> int | None:
    """The sequential model: the register's value after ``op``, or None if ``op`` could
    not have returned what it did from ``state``."""
    current_version = version_of.get(state)
    if op.kind == "read":
        if op.value != state or op.version != current_version:
            return None
        return state
    if op.outcome == "fail":
        return state if current_version != op.expected else None
    if current_version != op.expected or current_version is None:
        return None
    return op.value  # "ok" or an "unknown" that took effect


def check_key(
    key: str, initial: tuple[int, int], history: Sequence[Op], max_states: int = 500_000
) -> Verdict:
    """Is this one key's history linearizable from ``initial`` = (value, version)?"""
    ops = sorted((op for op in history if op.key == key), key=lambda o: o.invoke)
    version_of = versions_seen(ops)
    version_of.setdefault(initial[0], initial[1])
    if version_of[initial[0]] != initial[1]:
        return Verdict(False, key, 0, f"initial value {initial[0]} seen with another version")
    n = len(ops)
    complete = [INF if op.complete is None else op.complete for op in ops]
    required = 0
    for i, op in enumerate(ops):
        if op.complete is not None:
            required |= 1 << i
    seen: set[tuple[int, int]] = set()
    # Iterative DFS over (set of linearized ops, register value).
    stack: list[tuple[int, int]] = [(0, initial[0])]
    deepest = (0, initial[0])
    while stack:
        done, state = stack.pop()
        if (done, state) in seen:
            continue
        seen.add((done, state))
        if len(seen) > max_states:
            return Verdict(False, key, len(seen), "search too large: undecided")
        if done & required == required:
            return Verdict(True, key, len(seen))
        if bin(done).count("1") > bin(deepest[0]).count("1"):
            deepest = (done, state)
        # An op may go next only if it was invoked before every pending op's completion.
        horizon = min((complete[i] for i in range(n) if not done >> i & 1), default=INF)
        for i in reversed(range(n)):  # pushed last, popped first: earliest invocation first
            if done >> i & 1 or ops[i].invoke > horizon:
                continue
            after = _step(state, ops[i], version_of)
            if after is not None:
                stack.append((done | 1 << i, after))
    pending = [ops[i] for i in range(n) if not deepest[0] >> i & 1 and ops[i].complete]
    first = min(pending, key=lambda o: o.complete or INF) if pending else None
    return Verdict(False, key, len(seen),
                   f"no linearization; stuck at value {deepest[1]} before {first}")


def check(initial: dict[str, tuple[int, int]], history: Sequence[Op]) -> list[Verdict]:
    """Check every key separately (linearizability is compositional); one verdict per key."""
    by_key: dict[str, list[Op]] = defaultdict(list)
    for op in history:
        by_key[op.key].append(op)
    return [check_key(key, initial[key], ops) for key, ops in sorted(by_key.items())]
