"""The agent's engine: the pure protocol driven over the WAL, and what the wire layer needs.

Owns `engine` (every protocol event goes through `Engine.step`: handle, then one durable
commit, then effects; `Signal` wake-ups), `metrics` (the agent's counters and histograms)
and `fairshare` (round robin of scarce items among waiting consumers).
May import `fos_agent.protocol`, `fos_agent.storage` and `fos_raft.runtime` (build info);
never `fos_agent.net`, `fos_agent.runtime`, `fos_agent.agent` or `bench`.
"""
