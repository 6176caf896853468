"""fos_raft.security.tls without processes: names from certificates, settings from flags and config
tables, the authorisation rule, password files."""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fos_raft.security.certs import CertAuthority
from fos_raft.security.tls import (
    Authority,
    TlsError,
    add_tls_arguments,
    cert_names,
    parse_names,
    read_password_file,
    tls_from_args,
    tls_from_mapping,
)


def _cn_only_cert(name: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def test_names_are_dns_sans_else_the_common_name(tmp_path: Path) -> None:
    ca = CertAuthority.create()
    issued = ca.issue("saw-1", tmp_path, extra_names=["saw-1.plant", "127.0.0.1"])
    assert cert_names(issued.cert.read_bytes()) == {"saw-1", "saw-1.plant"}  # no IPs
    assert cert_names(_cn_only_cert("ops")) == {"ops"}
    with pytest.raises(TlsError, match="bad certificate"):
        cert_names(b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")


def test_settings_from_flags_and_tables(tmp_path: Path) -> None:
    ca = CertAuthority.create()
    ca_pem = ca.write(tmp_path)
    issued = ca.issue("a", tmp_path)
    parser = argparse.ArgumentParser()
    add_tls_arguments(parser)
    assert tls_from_args(parser.parse_args([])) is None
    with pytest.raises(TlsError, match="missing --tls-ca"):
        tls_from_args(parser.parse_args(["--tls-cert", "x", "--tls-key", "y"]))
    with pytest.raises(TlsError, match="cannot read TLS cert"):
        tls_from_args(parser.parse_args(["--tls-cert", str(tmp_path / "none.pem"),
                                         "--tls-key", str(issued.key), "--tls-ca", str(ca_pem)]))
    tls = tls_from_args(parser.parse_args(["--tls-cert", str(issued.cert), "--tls-key",
                                           str(issued.key), "--tls-ca", str(ca_pem)]))
    assert tls is not None and tls.names == {"a"} and tls.coordinator_name == "fos-coordinator"
    tls.require_name("a", "the node id")
    with pytest.raises(TlsError, match="the node id 'b'"):
        tls.require_name("b", "the node id")
    assert tls_from_mapping({}) is None
    with pytest.raises(TlsError, match="unknown keys"):
        tls_from_mapping({"cert": "x", "key": "y", "ca": "z", "crt": "w"})
    table = tls_from_mapping({"cert": str(issued.cert), "key": str(issued.key),
                              "ca": str(ca_pem), "coordinator_name": "plant-coord"})
    assert table is not None and table.coordinator_name == "plant-coord"


def test_authority_a_node_acts_for_itself_admins_for_all() -> None:
    authority = Authority(parse_names(" fosctl, ops ,"))
    assert authority.admin_names == {"fosctl", "ops"}
    assert authority.node_refusal(frozenset({"a"}), "a", "drain") is None
    refusal = authority.node_refusal(frozenset({"a"}), "b", "drain")
    assert refusal is not None and "'a' may not drain node 'b'" in refusal
    assert authority.node_refusal(frozenset({"ops"}), "b", "drain") is None
    assert authority.node_refusal(frozenset(), "b", "drain") is not None
    assert authority.admin_refusal(frozenset({"a"}), "decommission") is not None
    assert authority.admin_refusal(frozenset({"fos-coordinator"}), "forward") is None


def test_password_file(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text("  s3cret  \nignored\n")
    assert read_password_file(path) == "s3cret"
    path.write_text("\n")
    with pytest.raises(TlsError, match="is empty"):
        read_password_file(path)
    with pytest.raises(TlsError, match="cannot read"):
        read_password_file(tmp_path / "missing")
