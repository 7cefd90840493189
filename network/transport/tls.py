"""TLS for MQTT clients: which files, checked up front, turned into an ``ssl.SSLContext``.

A node started with a missing or wrong certificate would otherwise retry its
broker forever with a TLS error buried in a reconnect log; here each file is
read once, before anything connects, and a bad one is one line naming it.

``mqtts://host:port`` says "this broker speaks TLS"; the CA file is then
required (posnet trusts its own CA, never the system store: the brokers'
certificates come from ``network.hosts.pki``). The client certificate and
key are optional for TLS itself but required by posnet's TLS-only brokers,
which take the certificate's common name as the username.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from network.transport.broker import parse_broker_url

SECURE_SCHEME = "mqtts"
DEFAULT_TLS_PORT = 8883


class TlsFileError(ValueError):
    """A TLS file that cannot be used; ``str()`` is one line naming it and why."""


@dataclass(frozen=True)
class TlsFiles:
    """The CA to trust, and optionally this client's certificate and key (both or neither)."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise TlsFileError("a client certificate and its key go together: give both or neither")


def _readable(what: str, path: Path) -> None:
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise TlsFileError(f"{what} {path}: cannot read ({exc.strerror or exc})") from None


def client_context(files: TlsFiles) -> ssl.SSLContext:
    """A TLS 1.2+ client context trusting ``files.ca`` only, with hostname checking, presenting our certificate.

    Raises TlsFileError naming the file that is missing, unreadable, or not what
    it should be (a CA that is not a certificate, a key that does not match).
    """
    _readable("CA file", files.ca)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_verify_locations(cafile=str(files.ca))
    except (ssl.SSLError, ValueError) as exc:
        raise TlsFileError(f"CA file {files.ca}: not a PEM certificate ({_reason(exc)})") from None
    if files.cert is not None and files.key is not None:
        _readable("certificate file", files.cert)
        _readable("key file", files.key)
        try:
            context.load_cert_chain(certfile=str(files.cert), keyfile=str(files.key))
        except (ssl.SSLError, ValueError) as exc:
            raise TlsFileError(
                f"certificate {files.cert} / key {files.key}: cannot be used together ({_reason(exc)})"
            ) from None
    return context


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason or exc).splitlines()[0]


def split_broker_url(url: str) -> tuple[str, int, bool]:
    """``(host, port, secure)`` of ``mqtt://host:port`` or ``mqtts://host:port``.

    The plain form is validated by ``parse_broker_url`` (one rule set for both);
    ``secure`` is True for ``mqtts``.
    """
    text = url.strip() if isinstance(url, str) else url
    if isinstance(text, str) and text.lower().startswith(SECURE_SCHEME + "://"):
        try:
            host, port = parse_broker_url("mqtt://" + text[len(SECURE_SCHEME) + 3 :])
        except ValueError as exc:
            raise ValueError(str(exc).replace("mqtt://", "mqtts://")) from None
        return host, port, True
    host, port = parse_broker_url(url)
    return host, port, False


def check_tls_matches_url(url: str, tls: object | None) -> None:
    """Refuse a TLS setting that contradicts the URL: mqtts needs one, mqtt must have none.

    Silently ignoring the CA on an ``mqtt://`` URL would send the traffic in
    the clear while the operator believes it is encrypted.
    """
    _, _, secure = split_broker_url(url)
    if secure and tls is None:
        raise ValueError(f"broker URL {url!r}: mqtts needs a CA file (--tls-ca)")
    if not secure and tls is not None:
        raise ValueError(f"broker URL {url!r}: TLS files given but the URL is not mqtts://")
