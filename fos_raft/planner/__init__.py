"""The planner: the flow as a pure function of catalog, liveness and the previous flow.

Owns the planner properties P1-P7 (docs/coordinator.md): viability, balanced assignment of
consumers to suppliers, backup ranks, edge building, incremental re-planning.
Pure: imports only the standard library and `fos_raft.model`; no gRPC, LMDB, pysyncobj,
asyncio or clock.
"""
