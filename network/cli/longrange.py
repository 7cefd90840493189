"""`posnet long-range`: the long-range attack on a late joiner, with and without a trusted checkpoint.

The run is `network.sim.longrange` (three runs of the real core); this
module checks the options and prints the summary. Exit status 1 when the
node trusted a checkpoint of the real chain and still did not follow it:
that would be the defence failing.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace

import click

from network.sim.longrange import LongRangeConfig, run_long_range

MIN_VALIDATORS = 4  # with equal stakes, N - 1 of N hold more than 2/3 only from N = 4


@click.command("long-range")
@click.option(
    "--validators",
    type=click.IntRange(min=MIN_VALIDATORS, max=50),
    default=4,
    show_default=True,
    help="validators at genesis with equal stakes; all but the last retire and forge",
)
@click.option(
    "--heights",
    type=click.IntRange(min=1, max=10_000),
    default=12,
    show_default=True,
    help="the real chain's height when the new node joins (past the weak subjectivity period, "
    "nobody can be punished)",
)
@click.option(
    "--trust",
    "trust_height",
    type=click.IntRange(min=1),
    default=None,
    metavar="HEIGHT",
    help="the new node trusts the real chain's block at HEIGHT (as --trust HEIGHT:HASH on a node)",
)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
def long_range(validators: int, heights: int, trust_height: int | None, seed: int, as_json: bool) -> None:
    """Former validators forge a history from genesis; a node joins late and syncs.

    They held more than 2/3 of the stake at genesis, retired and left; their
    keys still sign certificates the genesis committee accepts. The new node
    hears only them for a while. Without a checkpoint it takes their
    history; with --trust it takes none of it and follows the real chain,
    and reports their double signs, which the real chain can punish only
    inside the weak subjectivity period.
    """
    if trust_height is not None and trust_height > heights:
        raise click.BadParameter(
            f"{trust_height} is past the real chain's {heights} heights", param_hint="--trust"
        )
    config = LongRangeConfig(
        validators=validators, heights=heights, seed=seed, trust=trust_height is not None
    )
    if trust_height is not None:
        config = replace(config, trust_height=trust_height)
    result = run_long_range(config)
    if as_json:
        click.echo(json.dumps(result.to_json(), sort_keys=True))
    else:
        for line in result.summary():
            click.echo(line)
    if config.trust and result.joiner_history != "real":
        sys.exit(1)
