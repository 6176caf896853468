"""The agent's peer-to-peer gRPC: service, client, outbox, protobuf conversion.

Owns `fos.v1.Agent` as served by an agent (`service`), calls to neighbours (`client`), the
delayed-confirmation outbox (`outbox`) and message <-> protobuf conversion (`pbconv`).
May import `fos_agent.protocol`, `fos_agent.core` and `fos_raft`'s security and runtime
packages; never `fos_agent.runtime` or `fos_agent.agent` (the service reaches the agent
through the small `PeerHost` protocol).
"""
