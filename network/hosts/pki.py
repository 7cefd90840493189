"""A small certificate authority for brokers and validators that talk across a network.

On one machine the broker listens on loopback and a password is enough. Across
machines the MQTT traffic crosses wires the operator does not own, so it goes
over TLS, and each client proves who it is with a certificate instead of a
password: the broker takes the certificate's common name as the username
(mosquitto's ``use_identity_as_username``) and its ACL keys on that name. To
publish as validator v2 one then needs v2's private key, not just a string.

Everything is made once, on one machine, from one inventory; the CA key never
leaves that machine. Keys are ECDSA P-256 (small, fast, what every TLS stack
speaks); certificates carry the extensions OpenSSL checks: a CA with
``basicConstraints`` and ``keyUsage``, leaves with ``extendedKeyUsage`` for
their role and, for brokers, every name and address clients dial in
``subjectAltName`` (hostname checking stays on).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
LEAF_DAYS = 825  # the longest validity current TLS clients accept for a leaf
ORGANIZATION = "posnet"


class PkiError(ValueError):
    """A CA or certificate file that cannot be used; the message names the file."""


@dataclass(frozen=True)
class Issued:
    """A private key and its certificate, in memory."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def common_name(self) -> str:
        return common_name(self.cert)

    def write(self, cert_path: Path, key_path: Path) -> None:
        """Write both as PEM; the key readable by its owner only (it is the identity)."""
        cert_path.parent.mkdir(parents=True, exist_ok=True)
        key_path.parent.mkdir(parents=True, exist_ok=True)
        cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        _write_private(key_path, key_pem(self.key))


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """An unencrypted PKCS#8 PEM: brokers and nodes start unattended, nobody types a passphrase."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def common_name(cert: x509.Certificate) -> str:
    """The certificate's subject CN (the broker's username for it)."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _now() -> datetime.datetime:
    # Backdated an hour: a freshly made certificate must not be "not yet valid" on a
    # host whose clock runs a little behind the one that made it.
    return datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)


def _builder(
    cn: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, days: int, *, ca: bool
) -> x509.CertificateBuilder:
    """What a CA and a leaf certificate share: names, key, validity from now, and what the key may do."""
    start = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=not ca,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )


def make_ca(cn: str = "posnet CA", *, days: int = CA_DAYS) -> Issued:
    """A new CA: a key and a self-signed certificate allowed to sign leaves only."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(cn, _name(cn), key, days, ca=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(key, cert)


def _alt_names(names: Iterable[str]) -> list[x509.GeneralName]:
    """DNS names and IP addresses for subjectAltName, each once, in the order given."""
    seen: list[x509.GeneralName] = []
    for name in names:
        try:
            entry: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(name))
        except ValueError:
            entry = x509.DNSName(name)
        if entry not in seen:
            seen.append(entry)
    return seen


def issue(
    ca: Issued,
    cn: str,
    *,
    server_names: Iterable[str] = (),
    client: bool = True,
    days: int = LEAF_DAYS,
) -> Issued:
    """A leaf signed by ``ca``: a client certificate named ``cn``, and a server one too when given names.

    ``server_names`` are the DNS names and IP addresses clients dial; with any,
    the certificate is valid for TLS servers and lists them in subjectAltName.
    ``client`` makes it valid for TLS clients (validators, bridges).
    """
    if not cn:
        raise ValueError("a certificate needs a common name")
    names = _alt_names(server_names)
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if names else []) + (
        [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
    )
    if not usages:
        raise ValueError(f"certificate {cn!r}: neither a server (no names) nor a client")
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        _builder(cn, ca.cert.subject, key, days, ca=False)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return Issued(key, builder.sign(ca.key, hashes.SHA256()))


def load_issued(cert_path: Path, key_path: Path) -> Issued:
    """Read a certificate and its key back (the CA, to issue more later); PkiError names the bad file."""
    try:
        cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    except (OSError, ValueError) as exc:
        raise PkiError(f"{cert_path}: not a readable PEM certificate ({_why(exc)})") from None
    try:
        key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise PkiError(f"{key_path}: not a readable unencrypted PEM key ({_why(exc)})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{key_path}: not an EC private key")
    if key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
        raise PkiError(f"{key_path}: does not belong to the certificate {cert_path}")
    return Issued(key, cert)


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return str(exc.strerror or exc)
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
