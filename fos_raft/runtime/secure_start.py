"""Refusals at start-up that make ``fos-coordinator`` secure by default (docs/security.md).

The Raft port unpickles what it receives: without a password anyone who can reach it can
run code in the replica. So a Raft bind that is not a loopback address needs a password,
unless the operator says ``--insecure-raft`` (then every start logs a WARNING and the
ready line says so). A password file must be private (no group/other permission bits)
and long enough to resist guessing: pysyncobj derives its key from the password alone.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import stat
from pathlib import Path

from fos_raft.runtime.config import ConfigError

MIN_PASSWORD_BYTES = 16
PASSWORD_HINT = "head -c 32 /dev/urandom | base64 > raft.pw && chmod 600 raft.pw"


def is_loopback_host(host: str) -> bool:
    """True when every address ``host`` names is a loopback one (127.0.0.0/8, ::1).
    A wildcard, a name that does not resolve, or one that resolves anywhere else: False."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(
        ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addresses)


def read_private_password(path: Path) -> str:
    """The password in ``path`` (first line, whitespace stripped), refused unless the file
    is readable by its owner only and the password has at least MIN_PASSWORD_BYTES bytes.
    Raises ConfigError with a one-line reason."""
    where = f"--raft-password-file {path}"
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise ConfigError(f"{where}: {exc.strerror or exc}") from None
    try:
        # checked on the open file: no window for a swap between the check and the read
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ConfigError(f"{where}: not a regular file")
        if mode & 0o077:
            raise ConfigError(
                f"{where}: mode {stat.S_IMODE(mode):04o} lets group/others read it; "
                f"run chmod 600 {path}")
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(64 * 1024)
    finally:
        os.close(fd)
    try:
        lines = data.decode().splitlines()
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: not UTF-8 text") from None
    password = lines[0].strip() if lines else ""
    if len(password.encode()) < MIN_PASSWORD_BYTES:
        raise ConfigError(
            f"{where}: the password has {len(password.encode())} bytes, at least "
            f"{MIN_PASSWORD_BYTES} are needed; generate one: {PASSWORD_HINT}")
    return password


def check_raft_exposure(bind: str, has_password: bool, insecure: bool) -> bool:
    """Raise ConfigError when Raft would listen off loopback without a password and
    without ``--insecure-raft``; returns True when the start is explicitly insecure
    (off loopback, no password, allowed)."""
    host = bind.rpartition(":")[0]
    if has_password or is_loopback_host(host):
        return False
    if insecure:
        return True
    raise ConfigError(
        f"Raft bind {bind} is not a loopback address and no --raft-password-file is set: "
        f"anyone who reaches it can run code in this replica; generate a password "
        f"({PASSWORD_HINT}) or pass --insecure-raft")
