"""A throwaway certificate authority for trials and tests (``python -m fos_raft.security.certs``).

    python -m fos_raft.security.certs --out certs/ fos-coordinator fosctl saw-1 frame-1 window-1

writes ``certs/ca.pem`` (+ ``ca.key``) and, for every NAME, ``NAME.pem`` + ``NAME.key``: a
certificate whose only name is NAME (one DNS subject alternative name, and the common name),
usable as both TLS server and client certificate. factoryOS identifies a process by that
name (docs/security.md): an agent's certificate carries its node id, every coordinator
replica carries the cluster's name (``fos-coordinator`` by default), operators carry an
admin name (``fosctl`` by default).

Keys are written unencrypted (mode 0600). For production, issue certificates from your own
PKI (docs/security.md shows the openssl commands); this module is for trying it out.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 365


@dataclass(frozen=True, slots=True)
class Issued:
    """PEM files of one certificate."""

    cert: Path
    key: Path


@dataclass(slots=True)
class CertAuthority:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, name: str = "factoryOS test CA") -> CertAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True,
                    content_commitment=False, key_encipherment=False, data_encipherment=False,
                    key_agreement=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    def write(self, out: Path) -> Path:
        """Write ``ca.pem`` and ``ca.key`` into ``out``; returns the certificate's path."""
        out.mkdir(parents=True, exist_ok=True)
        _write_key(out / "ca.key", self.key)
        path = out / "ca.pem"
        path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        return path

    def issue(self, name: str, out: Path, *, extra_names: Sequence[str] = (),
              file_stem: str | None = None) -> Issued:
        """A server+client certificate for ``name`` (DNS SAN and CN) signed by this CA,
        written to ``out/NAME.pem`` and ``out/NAME.key``. ``extra_names``: more SANs (DNS
        names, or IP addresses such as 127.0.0.1)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        sans: list[x509.GeneralName] = [x509.DNSName(name)]
        for extra in extra_names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(extra)))
            except ValueError:
                sans.append(x509.DNSName(extra))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        out.mkdir(parents=True, exist_ok=True)
        stem = file_stem or name
        key_path = out / f"{stem}.key"
        _write_key(key_path, key)
        cert_path = out / f"{stem}.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return Issued(cert_path, key_path)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fos_raft.security.certs",
        description="Make a throwaway CA and one certificate per NAME (for trials and tests).",
    )
    parser.add_argument("--out", required=True, type=Path, help="directory for the PEM files")
    parser.add_argument("names", nargs="+", metavar="NAME",
                        help="identities: node ids, the coordinator name, admin names")
    args = parser.parse_args(argv)
    ca = CertAuthority.create()
    print(f"CA: {ca.write(args.out)}")
    for name in args.names:
        issued = ca.issue(name, args.out)
        print(f"{name}: {issued.cert} {issued.key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
