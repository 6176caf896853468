"""Process plumbing shared by every factoryOS process: logging, grpc.aio, stop reports,
health, the metrics HTTP endpoint, settings and version.

Owns logging (`logging`: the libraries' stdlib loggers and the CLIs' setup), the
process-wide grpc.aio runtime reference (`grpc_runtime`), the report a hung stop writes
(`stop_report`), readiness published to grpc.health.v1 (`health`), /metrics + /healthz +
/readyz (`http`), flags from TOML files and FOS_* variables (`config`) and the build's
version (`version`).
Imports only third-party libraries; nothing else of factoryOS.
"""
