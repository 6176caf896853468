"""Optional mutual TLS for every factoryOS gRPC link, and identity from certificates.

One certificate per process, all signed by one CA (docs/security.md). A certificate's
*names* are its DNS subject alternative names, or its common name when it has none; a
process is who its names say:

- an agent's certificate carries its node id (``saw-1``);
- every coordinator replica carries the cluster's name (``fos-coordinator`` by default);
- operators (fosctl) carry an admin name (``fosctl`` by default, ``--admin-names``).

Servers require a client certificate from the CA. Clients check the *server's name*, not
its address: a channel to a coordinator replica expects the coordinator name, a channel to
a peer agent expects that peer's node id (``grpc.ssl_target_name_override``). So a
certificate needs no IP addresses or host names, and an agent that took over a dead peer's
port cannot pose as that peer.

This module only loads files, builds credentials and channels and reads the caller's names;
what a name may do is decided by the services (``Authority`` below for the coordinator).
"""

from __future__ import annotations

import argparse
import functools
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from fos_raft.model import FosError
from fos_raft.runtime.grpc_runtime import DEFAULT_CHANNEL_OPTIONS, keep_grpc_aio_running

COORDINATOR_NAME = "fos-coordinator"
DEFAULT_ADMIN_NAMES = ("fosctl",)
TARGET_NAME_OPTION = "grpc.ssl_target_name_override"
ENV_VARS = {"cert": "FOS_TLS_CERT", "key": "FOS_TLS_KEY", "ca": "FOS_TLS_CA",
            "coordinator_name": "FOS_TLS_COORDINATOR_NAME"}


class TlsError(FosError):
    """Unusable TLS settings (missing or unreadable file, incomplete flags, wrong name)."""


@dataclass(frozen=True)
class TlsConfig:
    """This process's certificate + key and the CA its peers must be signed by (PEM files).
    ``coordinator_name``: the name every coordinator replica's certificate carries."""

    cert: Path
    key: Path
    ca: Path
    coordinator_name: str = COORDINATOR_NAME
    _pem: dict[str, bytes] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("cert", "key", "ca"):
            object.__setattr__(self, name, Path(getattr(self, name)))
        if not self.coordinator_name:
            raise TlsError("the coordinator name must not be empty")

    def _read(self, which: str) -> bytes:
        data = self._pem.get(which)
        if data is None:
            path: Path = getattr(self, which)
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise TlsError(f"cannot read TLS {which} {path}: {exc.strerror}") from None
            if b"-----BEGIN" not in data:
                raise TlsError(f"TLS {which} {path} is not a PEM file")
            self._pem[which] = data
        return data

    def load(self) -> TlsConfig:
        """Read every file now (a start-up check); raises TlsError; returns self."""
        for which in ("cert", "key", "ca"):
            self._read(which)
        self.names  # noqa: B018 - parses the certificate
        return self

    @functools.cached_property
    def names(self) -> frozenset[str]:
        """This process's own names, by the same rule as a peer's."""
        return cert_names(self._read("cert"))

    def server_credentials(self) -> grpc.ServerCredentials:
        """Server side: our certificate; clients must present one signed by the CA."""
        return grpc.ssl_server_credentials(
            [(self._read("key"), self._read("cert"))],
            root_certificates=self._read("ca"),
            require_client_auth=True,
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self._read("ca"),
            private_key=self._read("key"),
            certificate_chain=self._read("cert"),
        )

    def require_name(self, name: str, what: str) -> None:
        """Raise TlsError unless our own certificate carries ``name``."""
        if name not in self.names:
            raise TlsError(
                f"TLS certificate {self.cert} names {sorted(self.names)}, "
                f"but {what} {name!r} must be one of them"
            )


def cert_names(pem: bytes) -> frozenset[str]:
    """Names of a PEM certificate: its DNS SANs, else its common name."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise TlsError(f"bad certificate: {exc}") from None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        dns = san.value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        dns = []
    if dns:
        return frozenset(dns)
    return frozenset(
        str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    )


# ---------------------------------------------------------------- channels and servers


def channel_options(tls: TlsConfig | None, server_name: str | None,
                    options: Iterable[tuple[str, Any]] = ()) -> list[tuple[str, Any]]:
    """``options`` plus, with TLS, the name the server's certificate must carry."""
    out = [o for o in options if o[0] != TARGET_NAME_OPTION]
    if tls is not None and server_name:
        out.append((TARGET_NAME_OPTION, server_name))
    return out


def aio_channel(address: str, tls: TlsConfig | None, server_name: str | None = None,
                options: Iterable[tuple[str, Any]] = ()) -> grpc.aio.Channel:
    """An asyncio channel: plaintext without TLS; with TLS, mutual TLS expecting the
    server to carry ``server_name`` (default: the coordinator name)."""
    keep_grpc_aio_running()
    if tls is None:
        return grpc.aio.insecure_channel(address, options=list(options))
    name = server_name or tls.coordinator_name
    return grpc.aio.secure_channel(address, tls.channel_credentials(),
                                   options=channel_options(tls, name, options))


def sync_channel(address: str, tls: TlsConfig | None, server_name: str | None = None,
                 options: Iterable[tuple[str, Any]] = ()) -> grpc.Channel:
    """The blocking twin of :func:`aio_channel` (tests, launchers, benchmarks)."""
    if tls is None:
        return grpc.insecure_channel(address, options=list(options))
    name = server_name or tls.coordinator_name
    return grpc.secure_channel(address, tls.channel_credentials(),
                               options=channel_options(tls, name, options))


def client_kwargs(tls: TlsConfig | None,
                  options: Iterable[tuple[str, Any]] | None = None) -> dict[str, Any]:
    """Keyword arguments that make a CoordinatorClient use mutual TLS (none without TLS):
    ``CoordinatorClient(addresses, **client_kwargs(tls))``."""
    if tls is None:
        return {}
    base = DEFAULT_CHANNEL_OPTIONS if options is None else options
    return {"credentials": tls.channel_credentials(),
            "channel_options": channel_options(tls, tls.coordinator_name, base)}


def add_port(server: grpc.aio.Server | grpc.Server, address: str,
             tls: TlsConfig | None) -> int:
    """Bind ``address`` (plaintext, or mutual TLS); returns the port (0: bind failed)."""
    if tls is None:
        return server.add_insecure_port(address)
    return server.add_secure_port(address, tls.server_credentials())


# ---------------------------------------------------------------- the caller's names


def peer_names(context: Any) -> frozenset[str]:
    """The calling peer's certificate names (DNS SANs, else CN); empty without TLS."""
    try:
        auth: Mapping[str, Sequence[bytes]] = context.auth_context() or {}
    except Exception:  # no auth context on this transport
        return frozenset()
    values = auth.get("peer_dns") or auth.get("x509_common_name") or ()
    return frozenset(v.decode(errors="replace") for v in values)


def describe(names: Iterable[str]) -> str:
    listed = sorted(names)
    if not listed:
        return "a caller without a certificate name"
    return "certificate " + "/".join(repr(n) for n in listed)


@dataclass(frozen=True, slots=True)
class Authority:
    """Who may do what on the coordinator (only when TLS is on).

    A node-scoped write for node X needs the name X, or an admin name. Admin-only writes
    (decommission, membership) need an admin name. The coordinator name counts as admin:
    replicas forward ReportSuspect to the leader under their own certificate."""

    admin_names: frozenset[str]
    coordinator_name: str = COORDINATOR_NAME

    def is_admin(self, names: frozenset[str]) -> bool:
        return bool(names & self.admin_names) or self.coordinator_name in names

    def may_act_for(self, names: frozenset[str], node: str) -> bool:
        return node in names or self.is_admin(names)

    def node_refusal(self, names: frozenset[str], node: str, what: str) -> str | None:
        """None when allowed, else the PERMISSION_DENIED message."""
        if self.may_act_for(names, node):
            return None
        return (f"{describe(names)} may not {what} node {node!r}: an agent acts only for "
                f"the node its certificate names (admin names: "
                f"{', '.join(sorted(self.admin_names)) or 'none'})")

    def admin_refusal(self, names: frozenset[str], what: str) -> str | None:
        if self.is_admin(names):
            return None
        return (f"{describe(names)} may not {what}: admin only (admin names: "
                f"{', '.join(sorted(self.admin_names)) or 'none'})")


def parse_names(text: str) -> frozenset[str]:
    return frozenset(n.strip() for n in text.split(",") if n.strip())


# ---------------------------------------------------------------- command lines


def add_tls_arguments(parser: argparse.ArgumentParser, *, env: bool = False) -> None:
    """``--tls-cert/--tls-key/--tls-ca/--tls-coordinator-name``; with ``env`` the
    defaults come from FOS_TLS_CERT, FOS_TLS_KEY, FOS_TLS_CA, FOS_TLS_COORDINATOR_NAME."""
    group = parser.add_argument_group(
        "mutual TLS (all three files, or none for plaintext; docs/security.md)")

    def default(which: str) -> str | None:
        if not env:
            return None
        return os.environ.get(ENV_VARS[which]) or None

    suffix = " (env {})" if env else ""
    group.add_argument("--tls-cert", metavar="PEM", default=default("cert"),
                       help="this process's certificate" + suffix.format(ENV_VARS["cert"]))
    group.add_argument("--tls-key", metavar="PEM", default=default("key"),
                       help="its private key" + suffix.format(ENV_VARS["key"]))
    group.add_argument("--tls-ca", metavar="PEM", default=default("ca"),
                       help="CA that signs every factoryOS certificate"
                       + suffix.format(ENV_VARS["ca"]))
    group.add_argument("--tls-coordinator-name", metavar="NAME",
                       default=default("coordinator_name") or COORDINATOR_NAME,
                       help="name every coordinator replica's certificate carries "
                       "(default %(default)s)" + suffix.format(ENV_VARS["coordinator_name"]))


def tls_from_args(args: argparse.Namespace) -> TlsConfig | None:
    """The TlsConfig the flags describe (files read and checked), or None for plaintext.
    Raises TlsError when only some of the three files are given or one is unusable."""
    given = {w: getattr(args, f"tls_{w}", None) for w in ("cert", "key", "ca")}
    if not any(given.values()):
        return None
    missing = [f"--tls-{w}" for w, v in given.items() if not v]
    if missing:
        raise TlsError(f"TLS needs --tls-cert, --tls-key and --tls-ca; missing {' '.join(missing)}")
    name = getattr(args, "tls_coordinator_name", None) or COORDINATOR_NAME
    return TlsConfig(Path(given["cert"]), Path(given["key"]), Path(given["ca"]), name).load()


def tls_from_mapping(data: Mapping[str, Any], where: str = "tls") -> TlsConfig | None:
    """A ``[tls]`` table of a config file: cert, key, ca, optional coordinator_name."""
    if not data:
        return None
    unknown = set(data) - {"cert", "key", "ca", "coordinator_name"}
    if unknown:
        raise TlsError(f"{where}: unknown keys {sorted(unknown)}")
    missing = [k for k in ("cert", "key", "ca") if not data.get(k)]
    if missing:
        raise TlsError(f"{where}: needs cert, key and ca; missing {', '.join(missing)}")
    return TlsConfig(Path(str(data["cert"])), Path(str(data["key"])), Path(str(data["ca"])),
                     str(data.get("coordinator_name") or COORDINATOR_NAME)).load()


def read_password_file(path: str | Path) -> str:
    """A Raft password from a file: first line, surrounding whitespace stripped."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise TlsError(f"cannot read raft password file {path}: {exc.strerror}") from None
    lines = text.splitlines()
    password = lines[0].strip() if lines else ""
    if not password:
        raise TlsError(f"raft password file {path} is empty")
    return password
