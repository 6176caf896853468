"""fos-sim: the paper's experiments with real processes on one machine (docs/experiments.md).

Owns the command line (`cli`), scenarios (`scenario`), topologies and their LP bound
(`topology`), event schedules (`events`), the process supervisor (`procs`), polling (`poll`),
one run (`run`), metrics, results, the report and the live view.
May import `fos_raft` and `fos_agent`; nothing in them may import this package.
"""
