"""The batch protocol as a pure, sans-I/O state machine (docs/protocol.md).

Owns the durable records (`records`), events and effects (`messages`), the rules in one
place (`transitions`: legal record moves, which event makes which, the check of durable
writes), the in-memory state of a node (`ledger`), the handlers (`supplier` for outbound
batches, `consumer` for inbound ones and the production cycle) and the `Node` that
dispatches events to them (`machine`), and the bounds of a batch's quantity, attributes
and a scrap reason (`limits`).
Pure: imports only the standard library and `fos_raft.model`; no gRPC, LMDB, pysyncobj,
asyncio or clock.
"""
