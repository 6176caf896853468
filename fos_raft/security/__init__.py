"""Transport security: mutual TLS for every gRPC link and the certificates it needs.

Owns TLS options and credentials, the name-based `Authority` (`tls`) and the small CA used
by tests and `python -m fos_raft.security.certs` (`certs`).
May import `fos_raft.runtime` only; never `fos_raft.api`,
`fos_raft.replica`, `fos_raft.cli`, `fos_agent` or `bench`.
"""
