"""Process plumbing shared by every factoryOS process: logging, grpc.aio, stop reports.

Owns logging (`logging`: the libraries' stdlib loggers and the CLIs' setup), the
process-wide grpc.aio runtime reference (`grpc_runtime`) and the report a hung stop writes
(`stop_report`).
Imports only third-party libraries; nothing else of factoryOS.
"""
