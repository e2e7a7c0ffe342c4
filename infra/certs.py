"""A throwaway certificate authority for secured local services (tests, ``make cluster``).

    certs = make_certs(tmp_path / "tls")
    certs.ca            # CA certificate (PEM): what clients trust (CHAT_*_SSL_CA_FILE)
    certs.server_cert, certs.server_key    # PEM, for 127.0.0.1 and localhost (Redis)
    certs.server_p12    # the same key and certificate as a PKCS#12 keystore (Kafka, Cassandra)
    certs.client_cert, certs.client_key    # a client certificate signed by the same CA

Keys are EC P-256, valid for a day; the server certificate names 127.0.0.1 and localhost, so
clients verify host names as they would in production. Never for anything but loopback.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KEYSTORE_PASSWORD = "chat-local"  # Java keystores must have one; these never leave the machine


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    server_p12: Path
    client_cert: Path
    client_key: Path
    password: str = KEYSTORE_PASSWORD


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _sign(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, issuer_key: ec.EllipticCurvePrivateKey,
          *, ca: bool = False, usage: ExtendedKeyUsageOID | None = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                                        critical=True)
    else:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    os.chmod(path, 0o600)
    return path


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_certs(directory: str | os.PathLike[str]) -> Certs:
    """A new CA, a server and a client certificate signed by it, written under ``directory``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("chat local test CA")
    ca = _sign("chat local test CA", ca_key, ca_name, ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _sign("127.0.0.1", server_key, ca_name, ca_key, usage=ExtendedKeyUsageOID.SERVER_AUTH)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _sign("chat client", client_key, ca_name, ca_key, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    pem = serialization.Encoding.PEM
    p12 = pkcs12.serialize_key_and_certificates(
        b"server", server_key, server, [ca],
        serialization.BestAvailableEncryption(KEYSTORE_PASSWORD.encode()))
    return Certs(
        ca=_write(d / "ca.pem", ca.public_bytes(pem)),
        server_cert=_write(d / "server.pem", server.public_bytes(pem) + ca.public_bytes(pem)),
        server_key=_write(d / "server.key", _pem_key(server_key)),
        server_p12=_write(d / "server.p12", p12),
        client_cert=_write(d / "client.pem", client.public_bytes(pem)),
        client_key=_write(d / "client.key", _pem_key(client_key)),
    )
