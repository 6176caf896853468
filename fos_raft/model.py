"""Pure records of the coordinator: item requirements, node specs, liveness, flow edges.

No gRPC, no pysyncobj, no clock: the planner and the replicated state are built from these,
and the gRPC layer converts them to and from fos_pb messages at the edge.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

MAX_ID_LEN = 128
MAX_ADDRESS_LEN = 256
# A batch quantity bound far below int64 (the wire type), so sums over a whole run of batches
# cannot overflow a counter and a typo of many digits is caught at the catalog, not on the wire.
MAX_QTY = 1_000_000_000
MAX_REQUIRES = 32
# ':' is excluded because batch ids are "<producer>:<seq>".
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class ErrorCode(enum.Enum):
    """Why a command was refused; the gRPC layer maps these to status codes one to one."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"


class FosError(Exception):
    """The base of every error factoryOS raises on purpose (exported as fos_agent.FosError):
    ``except FosError`` catches refused commands, coordinator, TLS, WAL and agent errors."""


class ModelError(FosError, ValueError):
    """A refused command or spec. The message says what was wrong, for a human."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def check_id(kind: str, value: str) -> None:
    if not value:
        raise ModelError(ErrorCode.INVALID_ARGUMENT, f"{kind} must not be empty")
    if len(value) > MAX_ID_LEN:
        raise ModelError(
            ErrorCode.INVALID_ARGUMENT,
            f"{kind} {value[:20]!r}... is {len(value)} characters long; the limit is {MAX_ID_LEN}",
        )
    if not _ID_RE.match(value):
        raise ModelError(
            ErrorCode.INVALID_ARGUMENT,
            f"{kind} {value!r} may only contain letters, digits, '_', '.', '-' "
            "and must start with a letter or digit",
        )


@dataclass(frozen=True, slots=True, order=True)
class ItemReq:
    """An item type and a quantity: ``ItemReq("wood", 3)`` is 3 x wood."""

    item: str
    qty: int

    def validate(self, where: str) -> None:
        check_id(f"{where} item", self.item)
        if (
            isinstance(self.qty, bool) or not isinstance(self.qty, int)
            or not 1 <= self.qty <= MAX_QTY
        ):
            raise ModelError(
                ErrorCode.INVALID_ARGUMENT,
                f"{where} quantity of {self.item!r} must be a positive integer <= {MAX_QTY}, "
                f"got {self.qty!r}",
            )

    def __str__(self) -> str:
        return f"{self.qty}x{self.item}"


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """A stage: consumes one batch of every ``requires`` item per cycle, makes ``produces``."""

    node_id: str
    address: str
    produces: ItemReq
    requires: tuple[ItemReq, ...] = ()
    capacity: int = 1

    @property
    def required_items(self) -> frozenset[str]:
        return frozenset(r.item for r in self.requires)

    def validate(self) -> None:
        """Check the spec on its own (catalog-wide checks live in `check_catalog`)."""
        check_id("node id", self.node_id)
        if not self.address or len(self.address) > MAX_ADDRESS_LEN:
            raise ModelError(
                ErrorCode.INVALID_ARGUMENT,
                f"node {self.node_id!r}: address must be host:port, 1..{MAX_ADDRESS_LEN} chars",
            )
        host, sep, port = self.address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ModelError(
                ErrorCode.INVALID_ARGUMENT,
                f"node {self.node_id!r}: address {self.address!r} is not host:port",
            )
        self.produces.validate(f"node {self.node_id!r} produces")
        if len(self.requires) > MAX_REQUIRES:
            raise ModelError(
                ErrorCode.INVALID_ARGUMENT,
                f"node {self.node_id!r} requires {len(self.requires)} items; "
                f"the limit is {MAX_REQUIRES}",
            )
        seen: set[str] = set()
        for req in self.requires:
            req.validate(f"node {self.node_id!r} requires")
            if req.item in seen:
                raise ModelError(
                    ErrorCode.INVALID_ARGUMENT,
                    f"node {self.node_id!r} lists required item {req.item!r} twice",
                )
            seen.add(req.item)
        if self.produces.item in seen:
            raise ModelError(
                ErrorCode.INVALID_ARGUMENT,
                f"node {self.node_id!r} requires its own product {self.produces.item!r}",
            )
        if isinstance(self.capacity, bool) or not isinstance(self.capacity, int):
            raise ModelError(ErrorCode.INVALID_ARGUMENT, "capacity must be an integer")
        if not 1 <= self.capacity <= 1_000_000:
            raise ModelError(
                ErrorCode.INVALID_ARGUMENT,
                f"node {self.node_id!r}: capacity must be in 1..1000000, got {self.capacity}",
            )


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """Liveness and maintenance flags of a registered node."""

    alive: bool = True
    drained: bool = False
    down_reason: str = ""

    @property
    def eligible(self) -> bool:
        """May take part in the flow at all (as supplier or consumer)."""
        return self.alive and not self.drained


@dataclass(frozen=True, slots=True, order=True)
class Edge:
    """``supplier`` sends batches of ``item`` to ``consumer``; rank 0 is the primary."""

    supplier: str
    consumer: str
    item: str
    qty: int
    rank: int = 0


@dataclass(frozen=True, slots=True)
class Plan:
    """The planner's output: the nodes in the flow and the edges between them (sorted)."""

    members: frozenset[str] = field(default_factory=frozenset)
    edges: tuple[Edge, ...] = ()


def find_item_cycle(specs: Iterable[NodeSpec]) -> list[str] | None:
    """Return a cycle of item types (``[a, b, a]``) in the "made from" graph, or None.

    An edge item A -> item B exists when some node produces A and requires B. A cycle would
    let a flow feed itself, so catalogs with one are refused (planner property P3).
    """
    graph: dict[str, set[str]] = {}
    for spec in specs:
        graph.setdefault(spec.produces.item, set()).update(spec.required_items)
    white, grey, black = 0, 1, 2
    colour: dict[str, int] = {}
    for root in sorted(graph):
        if colour.get(root, white) != white:
            continue
        stack: list[tuple[str, list[str]]] = [(root, sorted(graph.get(root, ())))]
        path = [root]
        colour[root] = grey
        while stack:
            node, children = stack[-1]
            if not children:
                colour[node] = black
                stack.pop()
                path.pop()
                continue
            child = children.pop()
            state = colour.get(child, white)
            if state == grey:
                return [*path[path.index(child) :], child]
            if state == white:
                colour[child] = grey
                path.append(child)
                stack.append((child, sorted(graph.get(child, ()))))
    return None


def check_catalog_with(catalog: Mapping[str, NodeSpec], spec: NodeSpec) -> None:
    """Validate ``spec`` and that adding/replacing it keeps the item graph acyclic."""
    spec.validate()
    merged = dict(catalog)
    merged[spec.node_id] = spec
    cycle = find_item_cycle(merged.values())
    if cycle is not None:
        raise ModelError(
            ErrorCode.INVALID_ARGUMENT,
            f"node {spec.node_id!r} would make the item graph cyclic: {' -> '.join(cycle)}",
        )
