from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReadConsistency(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    READ_CONSISTENCY_UNSPECIFIED: _ClassVar[ReadConsistency]
    SERIALIZABLE: _ClassVar[ReadConsistency]
    LINEARIZABLE: _ClassVar[ReadConsistency]
READ_CONSISTENCY_UNSPECIFIED: ReadConsistency
SERIALIZABLE: ReadConsistency
LINEARIZABLE: ReadConsistency

class ItemReq(_message.Message):
    __slots__ = ("item", "qty")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    QTY_FIELD_NUMBER: _ClassVar[int]
    item: str
    qty: int
    def __init__(self, item: _Optional[str] = ..., qty: _Optional[int] = ...) -> None: ...

class NodeSpec(_message.Message):
    __slots__ = ("node_id", "address", "produces", "requires", "capacity")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PRODUCES_FIELD_NUMBER: _ClassVar[int]
    REQUIRES_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    address: str
    produces: ItemReq
    requires: _containers.RepeatedCompositeFieldContainer[ItemReq]
    capacity: int
    def __init__(self, node_id: _Optional[str] = ..., address: _Optional[str] = ..., produces: _Optional[_Union[ItemReq, _Mapping]] = ..., requires: _Optional[_Iterable[_Union[ItemReq, _Mapping]]] = ..., capacity: _Optional[int] = ...) -> None: ...

class NodeInfo(_message.Message):
    __slots__ = ("spec", "alive", "drained", "in_flow", "down_reason", "spec_version", "changed_version", "state", "started", "contact_age_s", "links_down")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    ALIVE_FIELD_NUMBER: _ClassVar[int]
    DRAINED_FIELD_NUMBER: _ClassVar[int]
    IN_FLOW_FIELD_NUMBER: _ClassVar[int]
    DOWN_REASON_FIELD_NUMBER: _ClassVar[int]
    SPEC_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHANGED_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    CONTACT_AGE_S_FIELD_NUMBER: _ClassVar[int]
    LINKS_DOWN_FIELD_NUMBER: _ClassVar[int]
    spec: NodeSpec
    alive: bool
    drained: bool
    in_flow: bool
    down_reason: str
    spec_version: int
    changed_version: int
    state: str
    started: bool
    contact_age_s: float
    links_down: _containers.RepeatedCompositeFieldContainer[LinkDown]
    def __init__(self, spec: _Optional[_Union[NodeSpec, _Mapping]] = ..., alive: _Optional[bool] = ..., drained: _Optional[bool] = ..., in_flow: _Optional[bool] = ..., down_reason: _Optional[str] = ..., spec_version: _Optional[int] = ..., changed_version: _Optional[int] = ..., state: _Optional[str] = ..., started: _Optional[bool] = ..., contact_age_s: _Optional[float] = ..., links_down: _Optional[_Iterable[_Union[LinkDown, _Mapping]]] = ...) -> None: ...

class Edge(_message.Message):
    __slots__ = ("supplier", "consumer", "item", "qty", "rank")
    SUPPLIER_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    QTY_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    supplier: str
    consumer: str
    item: str
    qty: int
    rank: int
    def __init__(self, supplier: _Optional[str] = ..., consumer: _Optional[str] = ..., item: _Optional[str] = ..., qty: _Optional[int] = ..., rank: _Optional[int] = ...) -> None: ...

class Flow(_message.Message):
    __slots__ = ("version", "edges", "members")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    version: int
    edges: _containers.RepeatedCompositeFieldContainer[Edge]
    members: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, version: _Optional[int] = ..., edges: _Optional[_Iterable[_Union[Edge, _Mapping]]] = ..., members: _Optional[_Iterable[str]] = ...) -> None: ...

class Neighbour(_message.Message):
    __slots__ = ("node_id", "address", "alive")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ALIVE_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    address: str
    alive: bool
    def __init__(self, node_id: _Optional[str] = ..., address: _Optional[str] = ..., alive: _Optional[bool] = ...) -> None: ...

class Neighbourhood(_message.Message):
    __slots__ = ("version", "node_id", "known", "in_flow", "alive", "drained", "edges", "neighbours", "spec")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    IN_FLOW_FIELD_NUMBER: _ClassVar[int]
    ALIVE_FIELD_NUMBER: _ClassVar[int]
    DRAINED_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    NEIGHBOURS_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    version: int
    node_id: str
    known: bool
    in_flow: bool
    alive: bool
    drained: bool
    edges: _containers.RepeatedCompositeFieldContainer[Edge]
    neighbours: _containers.RepeatedCompositeFieldContainer[Neighbour]
    spec: NodeSpec
    def __init__(self, version: _Optional[int] = ..., node_id: _Optional[str] = ..., known: _Optional[bool] = ..., in_flow: _Optional[bool] = ..., alive: _Optional[bool] = ..., drained: _Optional[bool] = ..., edges: _Optional[_Iterable[_Union[Edge, _Mapping]]] = ..., neighbours: _Optional[_Iterable[_Union[Neighbour, _Mapping]]] = ..., spec: _Optional[_Union[NodeSpec, _Mapping]] = ...) -> None: ...

class RegisterRequest(_message.Message):
    __slots__ = ("spec", "incarnation", "from_agent")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    FROM_AGENT_FIELD_NUMBER: _ClassVar[int]
    spec: NodeSpec
    incarnation: int
    from_agent: bool
    def __init__(self, spec: _Optional[_Union[NodeSpec, _Mapping]] = ..., incarnation: _Optional[int] = ..., from_agent: _Optional[bool] = ...) -> None: ...

class UpdateSpecRequest(_message.Message):
    __slots__ = ("spec", "expected_version")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    spec: NodeSpec
    expected_version: int
    def __init__(self, spec: _Optional[_Union[NodeSpec, _Mapping]] = ..., expected_version: _Optional[int] = ...) -> None: ...

class NodeRequest(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    def __init__(self, node_id: _Optional[str] = ...) -> None: ...

class RejoinRequest(_message.Message):
    __slots__ = ("node_id", "address", "incarnation")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    address: str
    incarnation: int
    def __init__(self, node_id: _Optional[str] = ..., address: _Optional[str] = ..., incarnation: _Optional[int] = ...) -> None: ...

class LeaveRequest(_message.Message):
    __slots__ = ("node_id", "incarnation")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    incarnation: int
    def __init__(self, node_id: _Optional[str] = ..., incarnation: _Optional[int] = ...) -> None: ...

class WriteReply(_message.Message):
    __slots__ = ("flow_version", "leader")
    FLOW_VERSION_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    flow_version: int
    leader: str
    def __init__(self, flow_version: _Optional[int] = ..., leader: _Optional[str] = ...) -> None: ...

class ReportSuspectRequest(_message.Message):
    __slots__ = ("reporter", "suspect", "reason")
    REPORTER_FIELD_NUMBER: _ClassVar[int]
    SUSPECT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    reporter: str
    suspect: str
    reason: str
    def __init__(self, reporter: _Optional[str] = ..., suspect: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ReportSuspectReply(_message.Message):
    __slots__ = ("outcome", "flow_version")
    class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OUTCOME_UNSPECIFIED: _ClassVar[ReportSuspectReply.Outcome]
        MARKED_DOWN: _ClassVar[ReportSuspectReply.Outcome]
        REFUTED: _ClassVar[ReportSuspectReply.Outcome]
        ALREADY_DOWN: _ClassVar[ReportSuspectReply.Outcome]
    OUTCOME_UNSPECIFIED: ReportSuspectReply.Outcome
    MARKED_DOWN: ReportSuspectReply.Outcome
    REFUTED: ReportSuspectReply.Outcome
    ALREADY_DOWN: ReportSuspectReply.Outcome
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    FLOW_VERSION_FIELD_NUMBER: _ClassVar[int]
    outcome: ReportSuspectReply.Outcome
    flow_version: int
    def __init__(self, outcome: _Optional[_Union[ReportSuspectReply.Outcome, str]] = ..., flow_version: _Optional[int] = ...) -> None: ...

class GetFlowRequest(_message.Message):
    __slots__ = ("node_id", "at_version", "min_version", "consistency")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    AT_VERSION_FIELD_NUMBER: _ClassVar[int]
    MIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    at_version: int
    min_version: int
    consistency: ReadConsistency
    def __init__(self, node_id: _Optional[str] = ..., at_version: _Optional[int] = ..., min_version: _Optional[int] = ..., consistency: _Optional[_Union[ReadConsistency, str]] = ...) -> None: ...

class GetFlowReply(_message.Message):
    __slots__ = ("flow", "neighbourhood")
    FLOW_FIELD_NUMBER: _ClassVar[int]
    NEIGHBOURHOOD_FIELD_NUMBER: _ClassVar[int]
    flow: Flow
    neighbourhood: Neighbourhood
    def __init__(self, flow: _Optional[_Union[Flow, _Mapping]] = ..., neighbourhood: _Optional[_Union[Neighbourhood, _Mapping]] = ...) -> None: ...

class WatchFlowRequest(_message.Message):
    __slots__ = ("node_id", "min_version")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    MIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    min_version: int
    def __init__(self, node_id: _Optional[str] = ..., min_version: _Optional[int] = ...) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ("consistency",)
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    consistency: ReadConsistency
    def __init__(self, consistency: _Optional[_Union[ReadConsistency, str]] = ...) -> None: ...

class ListNodesReply(_message.Message):
    __slots__ = ("flow_version", "nodes")
    FLOW_VERSION_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    flow_version: int
    nodes: _containers.RepeatedCompositeFieldContainer[NodeInfo]
    def __init__(self, flow_version: _Optional[int] = ..., nodes: _Optional[_Iterable[_Union[NodeInfo, _Mapping]]] = ...) -> None: ...

class ClusterStatusRequest(_message.Message):
    __slots__ = ("consistency",)
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    consistency: ReadConsistency
    def __init__(self, consistency: _Optional[_Union[ReadConsistency, str]] = ...) -> None: ...

class ReplicaStatus(_message.Message):
    __slots__ = ("raft_address", "grpc_address", "is_self", "is_leader", "connected")
    RAFT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    GRPC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    IS_SELF_FIELD_NUMBER: _ClassVar[int]
    IS_LEADER_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    raft_address: str
    grpc_address: str
    is_self: bool
    is_leader: bool
    connected: bool
    def __init__(self, raft_address: _Optional[str] = ..., grpc_address: _Optional[str] = ..., is_self: _Optional[bool] = ..., is_leader: _Optional[bool] = ..., connected: _Optional[bool] = ...) -> None: ...

class ClusterStatusReply(_message.Message):
    __slots__ = ("replica_id", "raft_address", "grpc_address", "leader", "leader_grpc", "term", "commit_index", "applied_index", "flow_version", "nodes_total", "nodes_alive", "nodes_in_flow", "nodes_drained", "edges", "refuted_suspicions", "confirmed_suspicions", "state_digest", "replicas", "has_quorum")
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    RAFT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    GRPC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    LEADER_GRPC_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    FLOW_VERSION_FIELD_NUMBER: _ClassVar[int]
    NODES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    NODES_ALIVE_FIELD_NUMBER: _ClassVar[int]
    NODES_IN_FLOW_FIELD_NUMBER: _ClassVar[int]
    NODES_DRAINED_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    REFUTED_SUSPICIONS_FIELD_NUMBER: _ClassVar[int]
    CONFIRMED_SUSPICIONS_FIELD_NUMBER: _ClassVar[int]
    STATE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    HAS_QUORUM_FIELD_NUMBER: _ClassVar[int]
    replica_id: str
    raft_address: str
    grpc_address: str
    leader: str
    leader_grpc: str
    term: int
    commit_index: int
    applied_index: int
    flow_version: int
    nodes_total: int
    nodes_alive: int
    nodes_in_flow: int
    nodes_drained: int
    edges: int
    refuted_suspicions: int
    confirmed_suspicions: int
    state_digest: str
    replicas: _containers.RepeatedCompositeFieldContainer[ReplicaStatus]
    has_quorum: bool
    def __init__(self, replica_id: _Optional[str] = ..., raft_address: _Optional[str] = ..., grpc_address: _Optional[str] = ..., leader: _Optional[str] = ..., leader_grpc: _Optional[str] = ..., term: _Optional[int] = ..., commit_index: _Optional[int] = ..., applied_index: _Optional[int] = ..., flow_version: _Optional[int] = ..., nodes_total: _Optional[int] = ..., nodes_alive: _Optional[int] = ..., nodes_in_flow: _Optional[int] = ..., nodes_drained: _Optional[int] = ..., edges: _Optional[int] = ..., refuted_suspicions: _Optional[int] = ..., confirmed_suspicions: _Optional[int] = ..., state_digest: _Optional[str] = ..., replicas: _Optional[_Iterable[_Union[ReplicaStatus, _Mapping]]] = ..., has_quorum: _Optional[bool] = ...) -> None: ...

class MemberRequest(_message.Message):
    __slots__ = ("raft_address", "grpc_address")
    RAFT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    GRPC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    raft_address: str
    grpc_address: str
    def __init__(self, raft_address: _Optional[str] = ..., grpc_address: _Optional[str] = ...) -> None: ...

class MembersReply(_message.Message):
    __slots__ = ("replicas",)
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    replicas: _containers.RepeatedCompositeFieldContainer[ReplicaStatus]
    def __init__(self, replicas: _Optional[_Iterable[_Union[ReplicaStatus, _Mapping]]] = ...) -> None: ...

class SnapshotRequest(_message.Message):
    __slots__ = ("min_version",)
    MIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    min_version: int
    def __init__(self, min_version: _Optional[int] = ...) -> None: ...

class SnapshotReply(_message.Message):
    __slots__ = ("snapshot", "flow_version", "digest", "replica_id", "from_leader", "has_quorum", "applied_index")
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    FLOW_VERSION_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_LEADER_FIELD_NUMBER: _ClassVar[int]
    HAS_QUORUM_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    snapshot: bytes
    flow_version: int
    digest: str
    replica_id: str
    from_leader: bool
    has_quorum: bool
    applied_index: int
    def __init__(self, snapshot: _Optional[bytes] = ..., flow_version: _Optional[int] = ..., digest: _Optional[str] = ..., replica_id: _Optional[str] = ..., from_leader: _Optional[bool] = ..., has_quorum: _Optional[bool] = ..., applied_index: _Optional[int] = ...) -> None: ...

class ProductionReport(_message.Message):
    __slots__ = ("node_id", "incarnation", "produces", "batches_produced", "consumed", "cycles_ok", "cycles_blocked", "cycles_waiting", "cycles_failed", "final", "cycle_s", "links_down", "scrapped")
    class ConsumedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class CyclesWaitingEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class ScrappedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    PRODUCES_FIELD_NUMBER: _ClassVar[int]
    BATCHES_PRODUCED_FIELD_NUMBER: _ClassVar[int]
    CONSUMED_FIELD_NUMBER: _ClassVar[int]
    CYCLES_OK_FIELD_NUMBER: _ClassVar[int]
    CYCLES_BLOCKED_FIELD_NUMBER: _ClassVar[int]
    CYCLES_WAITING_FIELD_NUMBER: _ClassVar[int]
    CYCLES_FAILED_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    CYCLE_S_FIELD_NUMBER: _ClassVar[int]
    LINKS_DOWN_FIELD_NUMBER: _ClassVar[int]
    SCRAPPED_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    incarnation: int
    produces: str
    batches_produced: int
    consumed: _containers.ScalarMap[str, int]
    cycles_ok: int
    cycles_blocked: int
    cycles_waiting: _containers.ScalarMap[str, int]
    cycles_failed: int
    final: bool
    cycle_s: float
    links_down: _containers.RepeatedCompositeFieldContainer[LinkDown]
    scrapped: _containers.ScalarMap[str, int]
    def __init__(self, node_id: _Optional[str] = ..., incarnation: _Optional[int] = ..., produces: _Optional[str] = ..., batches_produced: _Optional[int] = ..., consumed: _Optional[_Mapping[str, int]] = ..., cycles_ok: _Optional[int] = ..., cycles_blocked: _Optional[int] = ..., cycles_waiting: _Optional[_Mapping[str, int]] = ..., cycles_failed: _Optional[int] = ..., final: _Optional[bool] = ..., cycle_s: _Optional[float] = ..., links_down: _Optional[_Iterable[_Union[LinkDown, _Mapping]]] = ..., scrapped: _Optional[_Mapping[str, int]] = ...) -> None: ...

class LinkDown(_message.Message):
    __slots__ = ("supplier", "consumer", "since_unix")
    SUPPLIER_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    SINCE_UNIX_FIELD_NUMBER: _ClassVar[int]
    supplier: str
    consumer: str
    since_unix: float
    def __init__(self, supplier: _Optional[str] = ..., consumer: _Optional[str] = ..., since_unix: _Optional[float] = ...) -> None: ...

class ProductionAck(_message.Message):
    __slots__ = ("flow_version",)
    FLOW_VERSION_FIELD_NUMBER: _ClassVar[int]
    flow_version: int
    def __init__(self, flow_version: _Optional[int] = ...) -> None: ...

class ProductionRequest(_message.Message):
    __slots__ = ("since_s",)
    SINCE_S_FIELD_NUMBER: _ClassVar[int]
    since_s: float
    def __init__(self, since_s: _Optional[float] = ...) -> None: ...

class ProductionReply(_message.Message):
    __slots__ = ("document", "replica_id")
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    document: str
    replica_id: str
    def __init__(self, document: _Optional[str] = ..., replica_id: _Optional[str] = ...) -> None: ...
