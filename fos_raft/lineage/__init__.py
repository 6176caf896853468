"""Lot genealogy shared by the agents that write it and the tools that read it (docs/genealogy.md).

Agents (fos_agent.storage) keep a genealogy index in LMDB beside their WAL; ``fosctl trace``
and ``fos-agent export-lineage`` read it. It lives under fos_raft because fosctl (in
fos_raft) may not import fos_agent (tests/test_layering.py), while fos_agent may import
fos_raft:

- ``index``: the entries and their byte encoding, the sub-database names and keys (pure);
- ``trace``: the walk back to source batches / forward to final products (pure);
- ``reader``: a read-only reader of the index in an agent's data dir (LMDB, offline use);
- ``remote``: the same look-ups over the agents' ``Lineage`` RPC (online use).
"""
