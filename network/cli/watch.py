"""`posnet watch`: the command around the live view (network/testnet/live.py), which draws it without click."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from network.cli.errors import UserError
from network.cli.testnet import DIR_OPTION
from network.testnet.layout import Layout
from network.testnet.live import run_watch


@click.command("watch")
@DIR_OPTION
@click.option(
    "--interval", type=click.FloatRange(0.1), default=1.0, show_default=True, help="seconds between redraws"
)
@click.option("--once", is_flag=True, help="print one frame and exit (for scripts)")
def watch(directory: Path, interval: float, once: bool) -> None:
    """A live view of a testnet: per node height, round, finality latency, status; recent events.

    Status is online/paused/offline from the process and the node's log, plus
    jailed/tombstoned from penalty events. Ctrl-C quits (the testnet keeps running).
    """
    layout = Layout.of(directory)
    if not layout.state.exists() and not layout.logs.is_dir():
        raise UserError(
            f"{layout.root} has no testnet: start one with `posnet testnet up --dir {layout.root}`"
        )
    sys.exit(run_watch(layout, interval, once))
