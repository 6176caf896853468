"""The agent's moving parts around the engine: stage loop, inputs, coordinator side, detector.

Owns the stage loop (`stage`), input fetchers (`inputs`), the coordinator side
(`membership`), the failure detector (`detector`), the saved flow (`flowview`), fair shares
of outputs (`shares`), the first-article plan (`fillplan`, pure), the settings
(`settings`), bounded stop steps (`stop_steps`) and what "serving" means for an agent
(`health`).
May import `fos_agent.protocol`, `fos_agent.storage`, `fos_agent.core`, `fos_agent.net`,
`fos_raft`'s client and its runtime plumbing; never `fos_agent.agent` or `bench`.
"""
