"""The `posnet` command line.

click gives us subcommand groups, typed options and one-line usage errors
("Error: Invalid value for '--validators': ...") without hand-written parsing.
Each command group lives beside what it drives; this module only assembles them.
"""

from __future__ import annotations

import json
import sys
from typing import Any, cast

import click

from network.cli_testnet import status, testnet
from network.faults import FaultPlan, FaultSpecError, parse_fault_spec
from network.watch import watch
from node.byzantine import SIM_BYZANTINE_MODES
from node.cli_keys import genesis, keys
from node.cli_node import node
from node.cli_tx import query, tx


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="posnet")
def cli() -> None:
    """posnet: a proof-of-stake committee consensus testbed."""


def _fault_plan(_ctx: click.Context, _param: click.Parameter, value: str | None) -> FaultPlan | str:
    if value == "random":
        return value
    try:
        return parse_fault_spec(value or "")
    except FaultSpecError as exc:
        raise click.BadParameter(str(exc)) from None


@cli.command()
@click.option("--validators", type=click.IntRange(1, 5000), default=4, show_default=True)
@click.option("--heights", type=click.IntRange(1, 1_000_000), default=20, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--byzantine",
    type=click.IntRange(0, 5000),
    default=0,
    show_default=True,
    help="the last K validators misbehave",
)
@click.option(
    "--byzantine-mode", type=click.Choice(SIM_BYZANTINE_MODES), default="equivocate", show_default=True
)
@click.option("--committee-size", type=click.IntRange(1, 100_000), default=128, show_default=True)
@click.option(
    "--faults",
    callback=_fault_plan,
    default="",
    help="e.g. 'drop=0.05,delay=5-80,partition=v1+v2|v3+v4@2000-9000,crash=v2@3000-7000', "
    "or 'random' (drawn from each seed)",
)
@click.option(
    "--seeds",
    type=click.IntRange(1, 1_000_000),
    default=1,
    show_default=True,
    help="sweep: run seeds SEED..SEED+N-1 and report the ones that broke an invariant",
)
@click.option("--json", "as_json", is_flag=True, help="print one JSON object as the last line")
@click.option("--events", is_flag=True, help="print penalty events (JSON lines) before the summary")
def sim(
    validators: int,
    heights: int,
    seed: int,
    byzantine: int,
    byzantine_mode: str,
    committee_size: int,
    faults: FaultPlan | str,
    seeds: int,
    as_json: bool,
    events: bool,
) -> None:
    """Run the deterministic simulator: the real core over a simulated network, in virtual time.

    Exits 0 when safety, liveness and accountability held, 1 when one broke.
    """
    from network.faults import random_fault_plan
    from network.sim import SimConfig, run_simulation, validator_names

    if byzantine > validators:
        raise click.BadParameter(f"{byzantine} exceeds --validators {validators}", param_hint="--byzantine")
    names = validator_names(validators)
    protected = frozenset(names[validators - byzantine :]) if byzantine else frozenset()
    if isinstance(faults, FaultPlan):
        unknown = faults.names() - set(names)
        if unknown:
            raise click.BadParameter(
                f"names unknown validators: {', '.join(sorted(unknown))}", param_hint="--faults"
            )

    def config_for(run_seed: int) -> SimConfig:
        plan = random_fault_plan(run_seed, names, protected) if faults == "random" else faults
        assert isinstance(plan, FaultPlan)
        return SimConfig(
            validators=validators,
            heights=heights,
            seed=run_seed,
            byzantine=byzantine,
            byzantine_mode=byzantine_mode,
            committee_size=committee_size,
            faults=plan,
        )

    if seeds > 1:
        _sweep(run_simulation, config_for, range(seed, seed + seeds), as_json)
    config = config_for(seed)
    result = run_simulation(config)
    if events:
        for event in result.events:
            click.echo(json.dumps(event))
    summary = result.to_json()
    if as_json:
        click.echo(json.dumps(summary))
    else:
        _print_sim_summary(summary)
    sys.exit(0 if result.ok else 1)


def _sweep(run: Any, config_for: Any, seeds: range, as_json: bool) -> None:
    """Run many seeds; list the ones that broke an invariant, with what broke. Exits 1 if any did."""
    failed: list[dict[str, object]] = []
    lowest, wall = None, 0.0
    for run_seed in seeds:
        result = run(config_for(run_seed))
        wall += result.wall_s
        lowest = result.heights_finalized if lowest is None else min(lowest, result.heights_finalized)
        if not result.ok:
            failed.append({"seed": run_seed, "violations": result.to_json()["violations"]})
            if not as_json:
                click.echo(f"seed {run_seed}: {'; '.join(result.to_json()['violations'][:3])}")
    summary = {"seeds": len(seeds), "ok": len(seeds) - len(failed), "failed": failed, "lowest_height": lowest}
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(
            f"{len(seeds)} seeds ({seeds.start}..{seeds.stop - 1}): {summary['ok']} held every invariant, "
            f"{len(failed)} broke one; lowest finalized height {lowest}; {wall:.1f} s"
        )
    sys.exit(1 if failed else 0)


def _print_sim_summary(summary: dict[str, object]) -> None:
    verdict = "all invariants held" if summary["ok"] else "INVARIANT VIOLATED"
    click.echo(f"seed {summary['seed']}: {verdict}")
    click.echo(
        f"  finalized {summary['heights_finalized']} heights in {summary['virtual_ms']} virtual ms "
        f"({summary['wall_s']} s wall), {summary['round_timeouts']} round timeouts, "
        f"{summary['evidence']} evidence included"
    )
    click.echo(
        f"  messages: {summary['messages_delivered']} delivered, {summary['messages_dropped']} dropped; "
        f"rejected: {summary['rejected'] or 'none'}"
    )
    click.echo(f"  Nakamoto coefficient: {summary['nakamoto_coefficient']}{_largest_pools(summary)}")
    for name, info in summary["validators"].items():  # type: ignore[attr-defined]
        click.echo(f"  {name:>6}  stake {info['stake']:>8}  {info['status']}")
    for violation in summary["violations"]:  # type: ignore[attr-defined]
        click.echo(f"  violation: {violation}")
    if not summary["ok"]:
        click.echo(f"  replay with --seed {summary['seed']}")


def _largest_pools(summary: dict[str, object], shown: int = 5) -> str:
    """The largest pools' shares of active stake, e.g. " (v1 25.0%, v2 25.0%, ...)"."""
    distribution = cast(list[dict[str, Any]], summary.get("stake_distribution") or [])
    parts = [f"{d['pool']} {d['share_ppm'] / 10_000:.1f}%" for d in distribution[:shown]]
    more = ", ..." if len(distribution) > shown else ""
    return f" ({', '.join(parts)}{more})" if parts else ""


cli.add_command(keys)
cli.add_command(genesis)
cli.add_command(testnet)
cli.add_command(status)
cli.add_command(watch)
cli.add_command(node)
cli.add_command(tx)
cli.add_command(query)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
