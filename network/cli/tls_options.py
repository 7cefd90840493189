"""The `--tls-*` options of every command that talks to a broker, and the TLS context they make.

A node, `posnet tx` and anything else that dials an ``mqtts://`` broker take
the same three files and refuse the same mistakes in one line: a certificate
without its key, TLS files with a plain ``mqtt://`` URL (traffic in the clear
while the user believes it encrypted), an ``mqtts://`` URL without a CA.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from network.cli.errors import UserError
from network.transport.tls import TlsFileError, TlsFiles, check_tls_matches_url, client_context

TLS_OPTIONS: list[Callable[[Any], Any]] = [
    click.option(
        "--tls-ca",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="CA certificate (PEM) that signed the broker's certificate; needs an mqtts:// broker URL",
    ),
    click.option(
        "--tls-cert",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="client certificate (PEM): a validator's or an inventory client's; TLS-only brokers take its name as the username",
    ),
    click.option(
        "--tls-key",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="the client certificate's private key (PEM)",
    ),
]


def tls_context(url: str, ca: Path | None, cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """The TLS context of ``--tls-*`` for a broker at `url`, or None; UserError (exit 2) names what is wrong."""
    context = None
    if ca is not None:
        try:
            context = client_context(TlsFiles(ca, cert, key))
        except TlsFileError as exc:
            raise UserError(str(exc)) from None
    elif cert is not None or key is not None:
        raise UserError(
            "--tls-cert and --tls-key need --tls-ca (the CA that signed the broker's certificate)"
        )
    try:
        check_tls_matches_url(url, context)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return context
