"""One coordinator replica: the pure state replicated by pysyncobj, bridged to asyncio.

Owns the Raft node (`core`), the replicated object (`machine`), commit-and-retry of writes
(`commit`), the LMDB journal (`journal`), fail-stop on unknown state (`failstop`) and the
Raft-thread -> event-loop mailbox (`mailbox`).
May import `fos_raft.model`, `fos_raft.planner`, `fos_raft.state`; never `fos_raft.api`,
`fos_raft.cli`, `fos_agent` or `bench`.
"""
