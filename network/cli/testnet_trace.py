"""`posnet testnet trace`: a testnet's logs in the shapes `posnet sim --trace` writes, for one viewer of both."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from network.cli.errors import UserError
from network.cli.testnet import DIR_OPTION
from network.testnet.layout import Layout
from network.testnet.tracefile import testnet_trace, write_trace
from node.core.genesis import GenesisError, load_genesis


@click.command("trace")
@DIR_OPTION
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="[default: stdout]"
)
def trace(directory: Path, out: Path | None) -> None:
    """Merge every node's log into one trace (decisions, timeouts, starts and stops, penalties) in time order."""
    layout = Layout.of(directory)
    try:
        genesis = load_genesis(layout.genesis)
    except GenesisError as exc:
        raise UserError(f"{directory} is not a testnet directory: {exc}") from None
    lines = testnet_trace(layout, genesis)
    if out is None:
        write_trace(lines, sys.stdout)
        return
    try:
        with out.open("w") as handle:
            count = write_trace(lines, handle)
    except OSError as exc:
        raise UserError(f"{out}: cannot write ({exc.strerror or exc})") from None
    click.echo(f"wrote {out}: {count - 1} events from {directory}", err=True)
