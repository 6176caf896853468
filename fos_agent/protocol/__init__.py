"""The batch protocol as a pure, sans-I/O state machine.

Owns the durable records (`records`), events and effects (`messages`), the legal WAL
transitions and their check (`transitions`) and the per-node state machine (`machine`).
Pure: imports only the standard library and `fos_raft.model`; no gRPC, LMDB, pysyncobj,
asyncio or clock.
"""
