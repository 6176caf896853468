"""The coordinator's replicated state: catalog, liveness, drain flags, flow and history.

Owns the commands (`commands`), their validation (`validate`), `apply` (`core`) the
canonical digest every replica must agree on (`digest`) and the backup file format
(`snapshot_codec`, `snapshot`).
Pure: imports only the standard library, `fos_raft.model` and `fos_raft.planner`; no gRPC,
LMDB, pysyncobj, asyncio or clock (timestamps travel inside commands).
"""
