"""Certificates for TLS tests, made with `cryptography`: a CA, server and client certificates it signs
(for localhost and 127.0.0.1), an expired server certificate, and a second, unrelated CA."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class Certs:
    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    expired_cert: str
    expired_key: str
    other_ca: str


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(folder: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None = None) -> tuple[str, str]:
    crt, pem = folder / f"{stem}.crt", folder / f"{stem}.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return str(crt), str(pem)


def _ca(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30)).add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def _leaf(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], cn: str, usage: x509.ObjectIdentifier,
          expired: bool = False) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    start, end = (now - dt.timedelta(days=10), now - dt.timedelta(days=1)) if expired else (now - dt.timedelta(days=1), now + dt.timedelta(days=30))
    sans = x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca[0].subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
            .add_extension(sans, critical=False).add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(ca[1], hashes.SHA256()))
    return cert, key


def make_certs(folder: Path) -> Certs:
    folder.mkdir(parents=True, exist_ok=True)
    ca, other = _ca("synthtune test CA"), _ca("some other CA")
    ca_path, _ = _write(folder, "ca", ca[0])
    other_path, _ = _write(folder, "other-ca", other[0])
    server = _write(folder, "server", *_leaf(ca, "synthtune-server", ExtendedKeyUsageOID.SERVER_AUTH))
    client = _write(folder, "client", *_leaf(ca, "synthtune-client", ExtendedKeyUsageOID.CLIENT_AUTH))
    expired = _write(folder, "expired", *_leaf(ca, "synthtune-expired", ExtendedKeyUsageOID.SERVER_AUTH, expired=True))
    return Certs(ca_path, *server, *client, *expired, other_path)
