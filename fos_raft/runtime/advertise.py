"""Bind and advertise, kept apart: the address a process announces to others.

A process binds one address (``--listen``/``--grpc``, possibly a wildcard such as
``0.0.0.0``) and announces another: the one its peers dial. Announcing a wildcard is never
right (a peer cannot dial ``0.0.0.0``), and announcing loopback is right only when everyone
who dials it runs on this host. "Everyone" is judged from the addresses this process
already knows of the cluster (an agent's coordinators, a replica's Raft peers): all
loopback means a one-machine setup (tests, fos-sim, the demo) where loopback is fine.

    host, port = split_host_port("10.0.0.7:7100")      # ("10.0.0.7", 7100)
    advertised_host(listen, advertise, cluster, flag="--advertise")  # raises AdvertiseError
    announce(host, advertise, bound_port)              # "10.0.0.7:7100"
    coordinator_grpc_address(args, bound_port)         # fos-coordinator's --advertise-grpc

Hostnames are taken as remote (no DNS lookup at start: the name "localhost" excepted),
so a cluster named by hostnames counts as multi-host.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
from collections.abc import Sequence

WILDCARDS = frozenset({"", "0.0.0.0", "::", "*"})


class AdvertiseError(ValueError):
    """The address this process would announce is one its peers cannot dial; the message
    names the setting to give."""


def split_host_port(text: str) -> tuple[str, int | None]:
    """``HOST[:PORT]`` (``[v6]:PORT`` or a bare v6 address too) -> (host, port or None).
    Raises AdvertiseError when the port is not a port."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise AdvertiseError(f"{text!r} is not HOST[:PORT]")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:  # no port, or a bare IPv6 address
        host, port = text, ""
    if not port:
        return host, None
    if not port.isdigit() or int(port) > 65535:
        raise AdvertiseError(f"{text!r} is not HOST[:PORT]")
    return host, int(port)


def is_wildcard(host: str) -> bool:
    return host.strip("[]") in WILDCARDS


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a hostname: taken as remote


def cluster_is_local(addresses: Sequence[str]) -> bool:
    """True when every address given is on loopback (a one-machine setup)."""
    return all(is_loopback(split_host_port(a)[0]) for a in addresses if a.strip())


def _machine_address() -> str | None:
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return None


def advertised_host(bind: str, advertise: str | None, cluster: Sequence[str], *,
                    flag: str, bind_flag: str, what: str = "peers") -> str:
    """The host to announce for a process bound at ``bind`` (HOST:PORT), given its
    ``advertise`` setting (HOST[:PORT] or None) and the addresses it knows of the cluster.
    ``flag``/``bind_flag`` name the settings in the error. Raises AdvertiseError."""
    local = cluster_is_local(cluster)
    if advertise:
        host, port = split_host_port(advertise)
        if port == 0:
            raise AdvertiseError(f"{flag} {advertise!r}: port 0 cannot be dialled (give the "
                                 f"port peers reach, or none for the bound one)")
        if is_wildcard(host):
            raise AdvertiseError(f"{flag} {advertise!r} is a wildcard, which {what} cannot "
                                 f"dial: give this host's address, e.g. {flag} 10.0.0.7")
        if is_loopback(host) and not local:
            raise AdvertiseError(f"{flag} {advertise!r} is loopback but the cluster "
                                 f"({', '.join(cluster)}) is on other hosts: give an "
                                 f"address they can reach")
        return host
    host, _ = split_host_port(bind)
    if is_wildcard(host):
        if local:
            return "127.0.0.1"  # a one-machine cluster dials loopback
        guess = _machine_address()
        if guess is None or is_loopback(guess) or is_wildcard(guess):
            raise AdvertiseError(
                f"{bind_flag} {bind!r} binds a wildcard and this host's name resolves to "
                f"{guess or 'nothing'}, which {what} on other hosts ({', '.join(cluster)}) "
                f"cannot dial: set {flag} HOST[:PORT]")
        return guess
    if is_loopback(host) and not local:
        raise AdvertiseError(
            f"{bind_flag} {bind!r} is loopback but the cluster ({', '.join(cluster)}) is on "
            f"other hosts: bind a reachable address, or set {flag} HOST[:PORT]")
    return host


def announce(host: str, advertise: str | None, bound_port: int) -> str:
    """HOST:PORT to announce: the port of ``advertise`` when it has one (NAT, port
    mapping), else the bound port."""
    port = split_host_port(advertise)[1] if advertise else None
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port or bound_port}"


def add_advertise_grpc_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--advertise-grpc", metavar="HOST[:PORT]", default=None,
        help="gRPC address announced to clients (ClusterStatus leader_grpc, redirects to "
             "the leader) instead of --grpc; its port, if given, replaces the bound one. "
             "Required when --grpc binds a wildcard (0.0.0.0)")


def coordinator_grpc_host(args: argparse.Namespace) -> str:
    """The host a replica announces for its gRPC service (``--grpc``, ``--advertise-grpc``),
    judged against its Raft cluster (``--raft``, ``--peers``). Unlike an agent, a replica
    never guesses its address from its host name: a wildcard ``--grpc`` needs
    ``--advertise-grpc``. Raises AdvertiseError."""
    grpc_bind: str = args.grpc
    advertise: str | None = getattr(args, "advertise_grpc", None)
    if not advertise and is_wildcard(split_host_port(grpc_bind)[0]):
        raise AdvertiseError(
            f"--grpc {grpc_bind!r} binds a wildcard, which clients cannot dial: set "
            f"--advertise-grpc HOST[:PORT] (the address clients reach this replica at)")
    cluster = [args.raft, *(getattr(args, "peers", None) or [])]
    return advertised_host(grpc_bind, advertise, cluster, flag="--advertise-grpc",
                           bind_flag="--grpc", what="clients")


def coordinator_grpc_address(args: argparse.Namespace, bound_port: int) -> str:
    """HOST:PORT a replica announces, once its gRPC port is bound (see above)."""
    return announce(coordinator_grpc_host(args), getattr(args, "advertise_grpc", None),
                    bound_port)


def add_advertise_raft_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--advertise-raft", metavar="HOST:PORT", default=None,
        help="this replica's Raft name: the address peers dial and --peers lists; --raft "
             "is then only bound (e.g. 0.0.0.0:7001). Default: --raft is both")


def coordinator_raft_addresses(args: argparse.Namespace) -> tuple[str, str | None]:
    """(name peers dial, address to bind or None for the name) of a replica, from
    ``--raft``, ``--advertise-raft`` and ``--raft-bind``. The name is the replica's identity
    in the Raft cluster (and what ``status`` reports as the leader), so it is never a
    wildcard. Raises AdvertiseError."""
    raft: str = args.raft
    advertise: str | None = getattr(args, "advertise_raft", None)
    bind: str | None = getattr(args, "raft_bind", None)
    if advertise and bind:
        raise AdvertiseError("--advertise-raft and --raft-bind both move the bound address "
                             "away from the name: give one of them")
    name, bound = (advertise, raft) if advertise else (raft, bind)
    host, port = split_host_port(name)
    if is_wildcard(host) or port is None:
        raise AdvertiseError(
            f"Raft name {name!r} is not an address peers can dial: bind the wildcard with "
            f"--raft {raft if is_wildcard(split_host_port(raft)[0]) else '0.0.0.0:PORT'} "
            f"and name this replica with --advertise-raft HOST:PORT (what --peers lists)")
    return name, bound
