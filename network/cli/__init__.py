"""The `posnet` command line.

click gives us subcommand groups, typed options and one-line usage errors
("Error: Invalid value for '--validators': ...") without hand-written parsing.
Each command group lives beside what it drives; this module only assembles them.
"""

from __future__ import annotations

import click

from network.cli.econ import econ
from network.cli.hosts import hosts
from network.cli.keys import genesis, keys
from network.cli.load import load
from network.cli.longrange import long_range
from network.cli.node import node
from network.cli.protection import export_protection, import_protection
from network.cli.query import query
from network.cli.sim import sim
from network.cli.testnet import status, testnet
from network.cli.testnet_trace import trace
from network.cli.tx import tx
from network.cli.view import view
from network.cli.watch import watch


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="posnet")
def cli() -> None:
    """posnet: a proof-of-stake committee consensus testbed."""


cli.add_command(sim)
cli.add_command(long_range)
keys.add_command(export_protection)
keys.add_command(import_protection)
cli.add_command(keys)
cli.add_command(genesis)
cli.add_command(testnet)
cli.add_command(status)
cli.add_command(watch)
cli.add_command(node)
cli.add_command(tx)
cli.add_command(query)
cli.add_command(econ)
cli.add_command(hosts)
cli.add_command(view)
testnet.add_command(load)
testnet.add_command(trace)


def main() -> None:
    cli()
