"""What every command that talks to a running chain shares: where the chain is, and its errors.

`posnet query` and `posnet tx` find the chain the same way: ``--dir DIR`` (a
`posnet testnet up` directory, default ./testnet) or the explicit
``--url``/``--broker``/``--genesis``. The client modules they drive
(`network.testnet.target`, `.client`, `.submit`) know nothing of click and raise
plain `ClientError`s; `ChainGroup` prints those as the CLI's one-line UserError.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from network.cli.errors import UserError
from network.testnet.target import ClientError, Target, genesis_names, target_from_dir
from network.transport.tls import split_broker_url
from node.core.genesis import GenesisError, load_genesis

DEFAULT_DIR = "testnet"


def resolve_target(
    directory: Path | None,
    node_name: str | None,
    url: str | None,
    broker: str | None = None,
    genesis_path: Path | None = None,
) -> Target:
    """``--dir`` (default ./testnet) or the explicit ``--url``/``--broker``/``--genesis``; never a mix."""
    explicit = url is not None or broker is not None or genesis_path is not None
    if explicit and (directory is not None or node_name is not None):
        raise UserError("use --dir [--node] or --url/--broker/--genesis, not both")
    if not explicit:
        return target_from_dir(directory or Path(DEFAULT_DIR), node_name)
    genesis = None
    if genesis_path is not None:
        try:
            genesis = load_genesis(genesis_path)
        except GenesisError as exc:
            raise UserError(str(exc)) from None
    if broker is not None:
        try:
            split_broker_url(broker)
        except ValueError as exc:
            raise UserError(f"--broker: {exc}") from None
    query_url = url.rstrip("/") if url else None
    if query_url is not None and not query_url.startswith(("http://", "https://")):
        raise UserError(f"--url {url!r}: expected http://HOST:PORT (a node's metrics port)")
    return Target(query_url, query_url or "the chain", genesis, broker, None, None, genesis_names(genesis))


class ChainGroup(click.Group):
    """A command group whose commands talk to a running chain.

    The client modules they drive raise plain `ClientError`s (they know
    nothing of click); this prints each as the CLI's one-line UserError.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ClientError as exc:
            raise UserError(str(exc)) from None


TARGET_OPTIONS: list[Callable[[Any], Any]] = [
    click.option(
        "--dir",
        "directory",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help=f"a `posnet testnet up` directory [default: ./{DEFAULT_DIR} unless --url is given]",
    ),
    click.option(
        "--node", "node_name", default=None, help="which node of --dir to ask [default: the first running]"
    ),
    click.option("--url", default=None, help="a node's query endpoint: http://HOST:METRICS_PORT"),
]


def with_options(options: list[Callable[[Any], Any]]) -> Callable[[Any], Any]:
    def decorate(function: Any) -> Any:
        for option in reversed(options):
            function = option(function)
        return function

    return decorate
