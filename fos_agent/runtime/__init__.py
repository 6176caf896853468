"""The agent's moving parts around the engine: stage loop, inputs, coordinator side, detector.

Owns the stage loop (`stage`), input fetchers (`inputs`), the coordinator side
(`membership`), the failure detector (`detector`), the saved flow (`flowview`), fair shares
of outputs (`shares`), the settings (`settings`) and bounded stop steps (`stop_steps`).
May import `fos_agent.protocol`, `fos_agent.storage`, `fos_agent.core`, `fos_agent.net` and
`fos_raft`'s client; never `fos_agent.agent` or `bench`.
"""
