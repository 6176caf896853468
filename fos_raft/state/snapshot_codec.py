"""The backup file format of the replicated state, as plain fields. Pure.

The file is JSON: the state's canonical plain data (`CoordinatorState.canonical`, exactly
what the replicas' digest hashes), that digest, a format tag and free metadata. JSON,
never pickle: a backup file must not be able to run code when it is restored. The checksum
is checked by whoever builds the state from the fields (`fos_raft.state.snapshot.decode`,
and `apply` of a SeedState), by recomputing the digest.
"""

from __future__ import annotations

import json
from typing import Any

from fos_raft.model import Edge, ErrorCode, ItemReq, ModelError, NodeSpec, NodeStatus, Plan
from fos_raft.state.commands import Outcome
from fos_raft.state.entry import NodeEntry

FORMAT = "factoryos-snapshot/1"


class SnapshotError(ModelError):
    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.INVALID_ARGUMENT, message)


def document(canonical: dict[str, Any], digest: str, meta: dict[str, Any] | None) -> bytes:
    doc = {"format": FORMAT, "digest": digest, "flow_version": canonical["version"],
           "meta": meta or {}, "state": canonical}
    return (json.dumps(doc, sort_keys=True, indent=1) + "\n").encode()


def parse(blob: bytes) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """(CoordinatorState keyword arguments, recorded digest, meta); SnapshotError when the
    bytes are not a snapshot document."""
    try:
        doc = json.loads(blob)
    except (UnicodeDecodeError, ValueError) as exc:
        raise SnapshotError(f"not a factoryOS snapshot: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise SnapshotError(f"not a factoryOS snapshot (format {FORMAT} expected)")
    try:
        fields = _fields(doc["state"])
    except (KeyError, TypeError, ValueError) as exc:
        raise SnapshotError(f"damaged snapshot: {type(exc).__name__}: {exc}") from None
    meta = doc.get("meta")
    return fields, str(doc.get("digest")), meta if isinstance(meta, dict) else {}


def checksum_error(recorded: str, content: str) -> SnapshotError:
    return SnapshotError("checksum mismatch: the snapshot was changed or damaged "
                         f"(recorded {recorded[:16]}, content {content[:16]})")


def _spec(data: list[Any]) -> NodeSpec:
    node_id, address, (item, qty), requires, capacity = data
    return NodeSpec(node_id, address, ItemReq(item, qty),
                    tuple(ItemReq(i, q) for i, q in requires), capacity)


def _plan(data: list[Any]) -> Plan:
    members, edges = data
    return Plan(frozenset(members), tuple(Edge(s, c, i, q, r) for s, c, i, q, r in edges))


def _outcome(data: list[Any]) -> Outcome:
    version, changed, error, message = data
    return Outcome(version, changed, ErrorCode(error) if error else None, message)


def _fields(data: dict[str, Any]) -> dict[str, Any]:
    nodes = {}
    for node_id, spec, status, spec_version, changed_version in data["nodes"]:
        # three values: a file from before ``started`` existed (every node had started)
        alive, drained, reason, *rest = status
        if len(rest) > 1:
            raise ValueError(f"node {node_id!r}: status has {len(status)} values")
        started = bool(rest[0]) if rest else True
        nodes[node_id] = NodeEntry(_spec(spec), NodeStatus(alive, drained, reason, started),
                                   spec_version, changed_version)
    return {
        "version": data["version"], "nodes": nodes, "flow": _plan(data["flow"]),
        "history": tuple((v, _plan(p)) for v, p in data["history"]),
        "replicas": dict(data["replicas"]), "refuted": data["refuted"],
        "confirmed": data["confirmed"],
        "requests": {rid: _outcome(o) for rid, o in data["requests"]},
    }
