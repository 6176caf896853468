"""Pure records of the coordinator: item requirements, node specs, liveness, flow edges.

No gRPC, no pysyncobj, no clock: the planner and the replicated state are built from these,
and the gRPC layer converts them to and from fos_pb messages at the edge.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields

MAX_ID_LEN = 128
MAX_ADDRESS_LEN = 256
# A batch quantity bound far below int64 (the wire type), so sums over a whole run of batches
# cannot overflow a counter and a typo of many digits is caught at the catalog, not on the wire.
MAX_QTY = 1_000_000_000
MAX_HOSTNAME_LEN = 253
MAX_REQUIRES = 32
# ':' is excluded because batch ids are "<producer>:<seq>". Used with fullmatch: "$" would
# also match before a trailing newline.
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
_LABEL_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_PORT_RE = re.compile(r"[0-9]{1,5}")
_OCTET_RE = re.compile(r"0|[1-9][0-9]{0,2}")


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
    if not _ID_RE.fullmatch(value):
        raise ModelError(
            ErrorCode.INVALID_ARGUMENT,
            f"{kind} {value!r} may only contain letters, digits, '_', '.', '-' "
            "and must start with a letter or digit",
        )


def _host_problem(host: str) -> str:
    """Why ``host`` is not a hostname, IPv4 dotted quad or bracketed IPv6 literal ("" when
    it is one)."""
    if host.startswith("["):
        inner = host[1:-1] if host.endswith("]") else ""
        if "%" in inner:
            return "an IPv6 zone id is not supported"
        try:
            ipaddress.IPv6Address(inner)
        except ValueError:
            return "the brackets hold no IPv6 address"
        return ""
    if not host:
        return "the host is empty"
    if len(host) > MAX_HOSTNAME_LEN:
        return f"the host is longer than {MAX_HOSTNAME_LEN} characters"
    labels = host.split(".")
    if all(label.isascii() and label.isdigit() for label in labels):
        # All-numeric: only a dotted quad (RFC 1123 2.1); no octal-looking leading zeros.
        if len(labels) != 4 or not all(
            _OCTET_RE.fullmatch(o) and int(o) <= 255 for o in labels
        ):
            return "it is not an IPv4 address (four numbers 0..255)"
        return ""
    if not all(_LABEL_RE.fullmatch(label) for label in labels):
        return ("a hostname is dot-separated labels of 1..63 letters, digits and '-', "
                "not starting or ending with '-' (IPv6: [addr]:port)")
    return ""


def address_problem(address: object, allow_port_zero: bool = False) -> str:
    """Why ``address`` is not ``HOST:PORT`` ("" when it is). HOST: a hostname (RFC 1123),
    an IPv4 dotted quad or a bracketed IPv6 literal; PORT: 1..65535 (0 too with
    ``allow_port_zero``, for addresses to bind, where 0 asks for any free port)."""
    if not isinstance(address, str):
        return "it is not a string"
    if not address or len(address) > MAX_ADDRESS_LEN:
        return f"it must be 1..{MAX_ADDRESS_LEN} characters"
    host, sep, port = address.rpartition(":")
    if not sep:
        return "it has no ':PORT'"
    if not _PORT_RE.fullmatch(port) or int(port) > 65535:
        return "the port is not a number 0..65535"
    if int(port) == 0 and not allow_port_zero:
        return "port 0 cannot be dialled"
    return _host_problem(host)


def check_address(kind: str, address: object, allow_port_zero: bool = False) -> None:
    """Raise ModelError(INVALID_ARGUMENT) unless ``address`` is ``HOST:PORT`` (see
    `address_problem`); ``kind`` names it in the message."""
    problem = address_problem(address, allow_port_zero)
    if problem:
        shown = repr(address) if not isinstance(address, str) or len(address) <= 80 \
            else repr(address[:80]) + "..."
        raise ModelError(ErrorCode.INVALID_ARGUMENT,
                         f"{kind} {shown} is not host:port: {problem}")


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
        check_address(f"node {self.node_id!r}: address", self.address)
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


def compat_setstate(obj: object, state: object) -> None:
    """``__setstate__`` of a frozen slots dataclass that accepts a pickle written before
    fields were added at the end: missing trailing fields take their defaults (journals and
    snapshots of an older version keep loading, with the meaning they had then)."""
    values = list(state) if isinstance(state, list | tuple) else []
    for index, f in enumerate(fields(obj)):  # type: ignore[arg-type]
        value = values[index] if index < len(values) else f.default
        object.__setattr__(obj, f.name, value)


def compat_getstate(obj: object) -> list[object]:
    return [getattr(obj, f.name) for f in fields(obj)]  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """Liveness and maintenance flags of a registered node.

    ``started``: its agent has registered or rejoined at least once. A node put in the
    catalog by an operator (``fosctl apply``) is ``NodeStatus(alive=False, started=False)``
    until then, so the planner never routes to an agent that never ran. The default True is
    what every node was before the field existed (old journals and snapshots load so)."""

    alive: bool = True
    drained: bool = False
    down_reason: str = ""
    started: bool = True

    __getstate__ = compat_getstate
    __setstate__ = compat_setstate

    @property
    def eligible(self) -> bool:
        """May take part in the flow at all (as supplier or consumer)."""
        return self.alive and self.started and not self.drained


NOT_STARTED = NodeStatus(alive=False, started=False)


class NodeState(enum.Enum):
    """The one vocabulary of node states: fosctl, the floor display, ``--json``, metrics
    and docs all use these words (``value``)."""

    NOT_STARTED = "not-started"
    IN_FLOW = "in-flow"
    STANDBY = "standby"
    DRAINED = "drained"
    DOWN = "down"
    STALE = "stale"

    @property
    def meaning(self) -> str:
        return NODE_STATE_MEANING[self]


NODE_STATE_MEANING: dict[NodeState, str] = {
    NodeState.NOT_STARTED: "in the catalog, but its agent never registered or rejoined; "
                           "nothing is routed to it",
    NodeState.IN_FLOW: "alive and in the flow: producing and trading with its neighbours",
    NodeState.STANDBY: "alive, but no flow edge uses it now (a spare, or an input is missing)",
    NodeState.DRAINED: "drained for maintenance: finishes what it owes, gets no new consumers",
    NodeState.DOWN: "confirmed unreachable, or stopped cleanly (see the reason); the flow "
                    "routes around it",
    NodeState.STALE: "counted alive, but its agent has not reported for longer than the "
                     "stale window: look at it",
}


STOPPED_REASON = "stopped"  # the down reason of a node whose agent stopped cleanly (Leave)
class LinkState(enum.Enum):
    """The words for a supplier -> consumer link beside a node's state word (``value``):
    shown as "link down SUPPLIER -> CONSUMER since T" in fosctl, ``--json``, the floor
    display and the ``fos_link_down`` metric."""

    UP = "up"
    DOWN = "down"

    @property
    def meaning(self) -> str:
        return LINK_STATE_MEANING[self]


LINK_STATE_MEANING: dict[LinkState, str] = {
    LinkState.UP: "both ends reach each other (the normal case: never shown)",
    LinkState.DOWN: "one end cannot reach the other although the coordinator reaches both "
                    "(its suspicion was refuted): a network fault between two live hosts; "
                    "the consumer buys from a backup meanwhile",
}


@dataclass(frozen=True, slots=True, order=True)
class LinkFault:
    """A link reported down by one of its ends, since ``since_unix`` (the reporter's clock)."""

    supplier: str
    consumer: str
    since_unix: float


def earliest_faults(faults: Iterable[LinkFault]) -> list[LinkFault]:
    """Each link once (both ends, and several replicas, may report it), with the earliest
    ``since`` any report gave it, sorted."""
    first: dict[tuple[str, str], float] = {}
    for f in faults:
        key = (f.supplier, f.consumer)
        first[key] = min(first.get(key, f.since_unix), f.since_unix)
    return [LinkFault(s, c, since) for (s, c), since in sorted(first.items())]


def node_state(status: NodeStatus, in_flow: bool, stale: bool = False) -> NodeState:
    """The state word of a node: not-started > down > drained > stale > in-flow >
    standby. ``stale`` is soft knowledge of the replica that answers (when it last heard
    from the agent), never part of the replicated state."""
    if not status.started:
        return NodeState.NOT_STARTED
    if not status.alive:
        return NodeState.DOWN
    if status.drained:
        return NodeState.DRAINED
    if stale:
        return NodeState.STALE
    return NodeState.IN_FLOW if in_flow else NodeState.STANDBY


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


# ---- batch ids: "<producer>:<seq>" -------------------------------------------------------

MAX_SEQ_DIGITS = 19  # an int64 seq
MAX_BATCH_ID_LEN = MAX_ID_LEN + 1 + MAX_SEQ_DIGITS
_SEQ_RE = re.compile(r"[1-9][0-9]*")


def clip(value: object, limit: int = 40) -> str:
    """A value for a message: its repr, cut to ``limit`` characters (a 1 MB id read from a
    peer or a damaged record stays one short line)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} chars)"


def split_batch_id(batch_id: object) -> tuple[str, int] | None:
    """(producer, seq) of a well-formed batch id (a node id, ':', a positive decimal seq of
    at most 19 digits), else None. Never raises: readers use it on whatever a record holds."""
    if not isinstance(batch_id, str) or len(batch_id) > MAX_BATCH_ID_LEN:
        return None
    producer, sep, seq = batch_id.rpartition(":")
    if (not sep or len(producer) > MAX_ID_LEN or not _ID_RE.fullmatch(producer)
            or len(seq) > MAX_SEQ_DIGITS or not _SEQ_RE.fullmatch(seq)):
        return None
    return producer, int(seq)
