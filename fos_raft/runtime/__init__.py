"""Process plumbing shared by every factoryOS process: logging, grpc.aio, stop reports.

Owns structlog setup (`logging`), the process-wide grpc.aio runtime reference
(`grpc_runtime`) and the report a hung stop writes (`stop_report`).
Imports only third-party libraries; nothing else of factoryOS.
"""
