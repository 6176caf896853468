"""Durable storage of an agent: the LMDB write-ahead log and its group committer.

Owns the WAL file layout, its encoding, recovery, and batching of concurrent commits into
one fsync (`group_commit`).
May import `fos_agent.protocol`; never `fos_agent.net`, `fos_agent.runtime` or gRPC.
"""
