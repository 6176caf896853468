from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InboundState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INBOUND_UNKNOWN: _ClassVar[InboundState]
    INBOUND_IN_TRANSIT: _ClassVar[InboundState]
    INBOUND_QUEUED: _ClassVar[InboundState]
    INBOUND_CONSUMED: _ClassVar[InboundState]
INBOUND_UNKNOWN: InboundState
INBOUND_IN_TRANSIT: InboundState
INBOUND_QUEUED: InboundState
INBOUND_CONSUMED: InboundState

class AttrValue(_message.Message):
    __slots__ = ("text", "integer", "number")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    INTEGER_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    text: str
    integer: int
    number: float
    def __init__(self, text: _Optional[str] = ..., integer: _Optional[int] = ..., number: _Optional[float] = ...) -> None: ...

class Batch(_message.Message):
    __slots__ = ("batch_id", "item", "qty", "lineage", "producer", "seq", "attrs")
    class AttrsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: AttrValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[AttrValue, _Mapping]] = ...) -> None: ...
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    QTY_FIELD_NUMBER: _ClassVar[int]
    LINEAGE_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ATTRS_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    item: str
    qty: int
    lineage: _containers.RepeatedScalarFieldContainer[str]
    producer: str
    seq: int
    attrs: _containers.MessageMap[str, AttrValue]
    def __init__(self, batch_id: _Optional[str] = ..., item: _Optional[str] = ..., qty: _Optional[int] = ..., lineage: _Optional[_Iterable[str]] = ..., producer: _Optional[str] = ..., seq: _Optional[int] = ..., attrs: _Optional[_Mapping[str, AttrValue]] = ...) -> None: ...

class RequestBatchRequest(_message.Message):
    __slots__ = ("request_id", "consumer", "item", "qty", "flow_version", "wait_ms", "delivered", "count")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    QTY_FIELD_NUMBER: _ClassVar[int]
    FLOW_VERSION_FIELD_NUMBER: _ClassVar[int]
    WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    consumer: str
    item: str
    qty: int
    flow_version: int
    wait_ms: int
    delivered: _containers.RepeatedScalarFieldContainer[str]
    count: int
    def __init__(self, request_id: _Optional[str] = ..., consumer: _Optional[str] = ..., item: _Optional[str] = ..., qty: _Optional[int] = ..., flow_version: _Optional[int] = ..., wait_ms: _Optional[int] = ..., delivered: _Optional[_Iterable[str]] = ..., count: _Optional[int] = ...) -> None: ...

class BatchUnavailable(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RequestBatchReply(_message.Message):
    __slots__ = ("sent", "unavailable", "flow_version", "also_sent")
    SENT_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_FIELD_NUMBER: _ClassVar[int]
    FLOW_VERSION_FIELD_NUMBER: _ClassVar[int]
    ALSO_SENT_FIELD_NUMBER: _ClassVar[int]
    sent: Batch
    unavailable: BatchUnavailable
    flow_version: int
    also_sent: _containers.RepeatedCompositeFieldContainer[Batch]
    def __init__(self, sent: _Optional[_Union[Batch, _Mapping]] = ..., unavailable: _Optional[_Union[BatchUnavailable, _Mapping]] = ..., flow_version: _Optional[int] = ..., also_sent: _Optional[_Iterable[_Union[Batch, _Mapping]]] = ...) -> None: ...

class BatchRef(_message.Message):
    __slots__ = ("batch_id", "supplier", "consumer")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    SUPPLIER_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    supplier: str
    consumer: str
    def __init__(self, batch_id: _Optional[str] = ..., supplier: _Optional[str] = ..., consumer: _Optional[str] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("flow_version",)
    FLOW_VERSION_FIELD_NUMBER: _ClassVar[int]
    flow_version: int
    def __init__(self, flow_version: _Optional[int] = ...) -> None: ...

class EndWaitRequest(_message.Message):
    __slots__ = ("consumer", "request_ids")
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    REQUEST_IDS_FIELD_NUMBER: _ClassVar[int]
    consumer: str
    request_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, consumer: _Optional[str] = ..., request_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class OfferBatchRequest(_message.Message):
    __slots__ = ("batch", "supplier", "consumer")
    BATCH_FIELD_NUMBER: _ClassVar[int]
    SUPPLIER_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    batch: Batch
    supplier: str
    consumer: str
    def __init__(self, batch: _Optional[_Union[Batch, _Mapping]] = ..., supplier: _Optional[str] = ..., consumer: _Optional[str] = ...) -> None: ...

class OfferBatchReply(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: InboundState
    def __init__(self, state: _Optional[_Union[InboundState, str]] = ...) -> None: ...

class PingRequest(_message.Message):
    __slots__ = ("from_node", "flow_version", "from_incarnation")
    FROM_NODE_FIELD_NUMBER: _ClassVar[int]
    FLOW_VERSION_FIELD_NUMBER: _ClassVar[int]
    FROM_INCARNATION_FIELD_NUMBER: _ClassVar[int]
    from_node: str
    flow_version: int
    from_incarnation: int
    def __init__(self, from_node: _Optional[str] = ..., flow_version: _Optional[int] = ..., from_incarnation: _Optional[int] = ...) -> None: ...

class PingReply(_message.Message):
    __slots__ = ("node_id", "flow_version", "incarnation")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    FLOW_VERSION_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    flow_version: int
    incarnation: int
    def __init__(self, node_id: _Optional[str] = ..., flow_version: _Optional[int] = ..., incarnation: _Optional[int] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Receipt(_message.Message):
    __slots__ = ("supplier", "item", "batch_id", "unix_ms")
    SUPPLIER_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    supplier: str
    item: str
    batch_id: str
    unix_ms: int
    def __init__(self, supplier: _Optional[str] = ..., item: _Optional[str] = ..., batch_id: _Optional[str] = ..., unix_ms: _Optional[int] = ...) -> None: ...

class StatsReply(_message.Message):
    __slots__ = ("node_id", "flow_version", "in_flow", "counters", "queued_outbound", "queued_inbound", "incarnation", "recent_receipts", "unix_time", "in_transit_outbound", "in_transit_inbound", "stage_state", "stage_status", "stage_waiting_s")
    class CountersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    FLOW_VERSION_FIELD_NUMBER: _ClassVar[int]
    IN_FLOW_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    QUEUED_OUTBOUND_FIELD_NUMBER: _ClassVar[int]
    QUEUED_INBOUND_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    RECENT_RECEIPTS_FIELD_NUMBER: _ClassVar[int]
    UNIX_TIME_FIELD_NUMBER: _ClassVar[int]
    IN_TRANSIT_OUTBOUND_FIELD_NUMBER: _ClassVar[int]
    IN_TRANSIT_INBOUND_FIELD_NUMBER: _ClassVar[int]
    STAGE_STATE_FIELD_NUMBER: _ClassVar[int]
    STAGE_STATUS_FIELD_NUMBER: _ClassVar[int]
    STAGE_WAITING_S_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    flow_version: int
    in_flow: bool
    counters: _containers.ScalarMap[str, float]
    queued_outbound: int
    queued_inbound: int
    incarnation: int
    recent_receipts: _containers.RepeatedCompositeFieldContainer[Receipt]
    unix_time: float
    in_transit_outbound: int
    in_transit_inbound: int
    stage_state: str
    stage_status: str
    stage_waiting_s: float
    def __init__(self, node_id: _Optional[str] = ..., flow_version: _Optional[int] = ..., in_flow: _Optional[bool] = ..., counters: _Optional[_Mapping[str, float]] = ..., queued_outbound: _Optional[int] = ..., queued_inbound: _Optional[int] = ..., incarnation: _Optional[int] = ..., recent_receipts: _Optional[_Iterable[_Union[Receipt, _Mapping]]] = ..., unix_time: _Optional[float] = ..., in_transit_outbound: _Optional[int] = ..., in_transit_inbound: _Optional[int] = ..., stage_state: _Optional[str] = ..., stage_status: _Optional[str] = ..., stage_waiting_s: _Optional[float] = ...) -> None: ...

class LineageRequest(_message.Message):
    __slots__ = ("batch_ids",)
    BATCH_IDS_FIELD_NUMBER: _ClassVar[int]
    batch_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, batch_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class LineageInput(_message.Message):
    __slots__ = ("batch_id", "supplier")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    SUPPLIER_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    supplier: str
    def __init__(self, batch_id: _Optional[str] = ..., supplier: _Optional[str] = ...) -> None: ...

class MadeBatch(_message.Message):
    __slots__ = ("batch_id", "item", "qty", "seq", "made_at_ms", "inputs", "delivered_to", "state", "reclaimed_from", "sent_to", "attrs")
    class AttrsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: AttrValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[AttrValue, _Mapping]] = ...) -> None: ...
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    QTY_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    MADE_AT_MS_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_TO_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RECLAIMED_FROM_FIELD_NUMBER: _ClassVar[int]
    SENT_TO_FIELD_NUMBER: _ClassVar[int]
    ATTRS_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    item: str
    qty: int
    seq: int
    made_at_ms: int
    inputs: _containers.RepeatedCompositeFieldContainer[LineageInput]
    delivered_to: str
    state: str
    reclaimed_from: str
    sent_to: str
    attrs: _containers.MessageMap[str, AttrValue]
    def __init__(self, batch_id: _Optional[str] = ..., item: _Optional[str] = ..., qty: _Optional[int] = ..., seq: _Optional[int] = ..., made_at_ms: _Optional[int] = ..., inputs: _Optional[_Iterable[_Union[LineageInput, _Mapping]]] = ..., delivered_to: _Optional[str] = ..., state: _Optional[str] = ..., reclaimed_from: _Optional[str] = ..., sent_to: _Optional[str] = ..., attrs: _Optional[_Mapping[str, AttrValue]] = ...) -> None: ...

class UsedBatch(_message.Message):
    __slots__ = ("batch_id", "supplier", "item", "qty", "into", "used_at_ms", "scrapped")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    SUPPLIER_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    QTY_FIELD_NUMBER: _ClassVar[int]
    INTO_FIELD_NUMBER: _ClassVar[int]
    USED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    SCRAPPED_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    supplier: str
    item: str
    qty: int
    into: str
    used_at_ms: int
    scrapped: str
    def __init__(self, batch_id: _Optional[str] = ..., supplier: _Optional[str] = ..., item: _Optional[str] = ..., qty: _Optional[int] = ..., into: _Optional[str] = ..., used_at_ms: _Optional[int] = ..., scrapped: _Optional[str] = ...) -> None: ...

class LineageReply(_message.Message):
    __slots__ = ("node_id", "made", "used")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    MADE_FIELD_NUMBER: _ClassVar[int]
    USED_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    made: _containers.RepeatedCompositeFieldContainer[MadeBatch]
    used: _containers.RepeatedCompositeFieldContainer[UsedBatch]
    def __init__(self, node_id: _Optional[str] = ..., made: _Optional[_Iterable[_Union[MadeBatch, _Mapping]]] = ..., used: _Optional[_Iterable[_Union[UsedBatch, _Mapping]]] = ...) -> None: ...
