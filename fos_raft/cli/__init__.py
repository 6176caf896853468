"""The coordinator's command lines: fos-coordinator, fosctl, and their helpers.

Owns argument parsing (fosctl's commands in `fosctl_commands`, `fosctl_health`,
`fosctl_backup`), the TOML catalog reader (`catalog_file`, shared with fos-sim's
scenarios), table/DOT/SVG rendering (`render`) and `launcher` (local clusters of real
fos-coordinator processes for tests, benchmarks and fos-sim).
Top of `fos_raft`: may import every other `fos_raft` package; never `fos_agent` or `bench`.
"""
