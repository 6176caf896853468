"""The coordinator's gRPC face: service, client with replica failover, conversions.

Owns `fos.v1.Coordinator` as served by every replica (`service`, `views`, `suspicion`,
`metrics`, `health`, `receipts`, `backup`) and the client side every agent and CLI uses
(`client`, `failover`, `policy`), plus model <-> protobuf conversion (`convert`).
May import the pure packages, `fos_raft.replica`, `fos_raft.security`, `fos_raft.runtime`;
never `fos_raft.cli`, `fos_agent` or `bench`.
"""
