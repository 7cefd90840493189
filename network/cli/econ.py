"""`posnet econ`: run a staking economy from a file, sweep one parameter, draw a run.

    posnet econ run scenarios/economy/saturation.toml --fast --out run.jsonl
    posnet econ run scenarios/economy/saturation.toml --fast --sweep saturation_k=0,4,10
    posnet econ run scenarios/economy/equilibrium.toml --fast --sweep saturation_k=5,10,20
    posnet econ run scenarios/economy/equilibrium.toml --fast --policy yield --fixed-pools
    posnet econ report run.jsonl --out run.png
    posnet econ leverage scenarios/economy/attacker-leverage.toml --a0 0,300000 --k 5,10

Exit codes: 0 done, 1 the chain halted in the run, 2 a usage problem (a bad
file or option, named in one line).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from functools import partial
from pathlib import Path

import click

from network.cli.chain import with_options
from network.cli.errors import UserError
from network.cli.fleet_options import FLEET_OPTIONS
from network.cli.format import table
from network.cli.progress import BarProgress
from network.econ import runs
from network.econ.config import POLICIES, EconError, EconomyConfig, load_economy
from network.fleet.dask_sweep import Fleet, FleetError, map_on_dask
from network.testnet.extras import install_hint


@click.group()
def econ() -> None:
    """Staking economies: delegators with policies over many epochs, and the concentration they produce."""


def _load(path: Path) -> EconomyConfig:
    try:
        return load_economy(path)
    except EconError as exc:
        raise UserError(str(exc)) from None


@econ.command("run")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--seed", type=click.IntRange(0), default=None, help="[default: the file's run.seed]")
@click.option("--epochs", type=click.IntRange(1), default=None, help="[default: the file's run.epochs]")
@click.option(
    "--fast",
    is_flag=True,
    help="fast-forward: no messages, the same ledger and selection [default: every vote through the simulator]",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="the run's JSON lines, one per epoch [default: NAME.jsonl here]",
)
@click.option(
    "--sweep", "sweep_spec", default=None, metavar="NAME=V1,V2,...", help="one run per value of a parameter"
)
@click.option(
    "--policy",
    type=click.Choice(POLICIES),
    default=None,
    help="every delegator class on this policy [default: each class's own]",
)
@click.option(
    "--restake",
    is_flag=True,
    help="every delegator class delegates its rewards back to its pool each epoch, so its stake compounds",
)
@click.option(
    "--fixed-pools",
    is_flag=True,
    help="no operator acts: nobody registers a pool, nothing retires by choice (the file's [market] off)",
)
@with_options(FLEET_OPTIONS)
def econ_run(
    file: Path,
    seed: int | None,
    epochs: int | None,
    fast: bool,
    out: Path | None,
    sweep_spec: str | None,
    policy: str | None,
    restake: bool,
    fixed_pools: bool,
    workers: int,
    scheduler: str | None,
) -> None:
    """Run the economy in FILE and print where it ended (or one row per swept value)."""
    config = _load(file)
    if policy is not None:
        config = config.with_policy(policy)
    if fixed_pools:
        config = config.with_fixed_pools()
    if restake:
        config = config.with_restake()
    seed = config.seed if seed is None else seed
    epochs = config.epochs if epochs is None else epochs
    try:
        if sweep_spec is not None:
            fleet = None if workers == 1 and scheduler is None else Fleet(workers, scheduler)
            _sweep(config, seed, epochs, sweep_spec, fast, fleet)
            return
        if workers != 1 or scheduler is not None:
            raise UserError("--workers and --scheduler spread a sweep: give --sweep NAME=V1,V2,... too")
        target = out or Path(f"{config.name}.jsonl")
        with BarProgress(epochs, "epochs") as bar, target.open("w") as handle:
            lines = runs.epoch_lines(config, seed, epochs, lambda _n: bar.advance(), fast)
            records = runs.write_run(lines, handle)
    except EconError as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(f"{target}: cannot write ({exc.strerror or exc})") from None
    ran = sum(1 for record in records if record["epoch"] >= 0)
    click.echo(f"{config.name}, seed {seed}: {ran} epochs written to {target}")
    for line in runs.summary_lines(records):
        click.echo(f"  {line}")
    sys.exit(1 if "halted" in records[-1] else 0)


def _sweep(config: EconomyConfig, seed: int, epochs: int, spec: str, fast: bool, fleet: Fleet | None) -> None:
    """One run per value: in this process, or one value per Dask worker (the seed sweeps' path)."""
    name, values = runs.parse_sweep(spec)
    config.with_param(name, values[0])  # a bad name or value fails here, before any run
    where = "this process" if fleet is None else fleet.describe()
    click.echo(f"{config.name}, seed {seed}, {epochs} epochs, sweeping {name} on {where}:")
    if fleet is None:
        with BarProgress(epochs * len(values), f"{name} sweep") as bar:
            rows = list(runs.sweep(config, seed, epochs, name, values, lambda _n: bar.advance(), fast))
    else:
        task = partial(runs.sweep_row, config, seed, epochs, name, fast)
        with BarProgress(len(values), f"{name} sweep") as bar:
            try:
                rows, interrupted = map_on_dask(task, values, fleet, lambda _row: bar.advance())
            except FleetError as exc:
                raise UserError(str(exc)) from None
        if interrupted:
            click.echo(f"  interrupted: {len(rows)} of {len(values)} values ran")
        rows.sort(key=lambda row: values.index(row.value))
    cells = [row.cells() for row in rows]
    for line in table(runs.SWEEP_HEADER, cells, frozenset(range(len(runs.SWEEP_HEADER) - 1))):
        click.echo(f"  {line}")


def _ints(text: str, option: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise UserError(f"{option} {text!r}: expected integers V1,V2,...") from None
    if not values or min(values) < 0:
        raise UserError(f"{option} {text!r}: expected integers V1,V2,... of at least 0")
    return values


@econ.command("leverage")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--a0",
    "a0_spec",
    default="0,100000,300000,1000000",
    show_default=True,
    metavar="PPM,...",
    help="pledge influence values (ppm)",
)
@click.option(
    "--k", "k_spec", default="5,10,20", show_default=True, metavar="K,...", help="saturation k values"
)
@click.option("--seed", type=click.IntRange(0), default=None, help="[default: the file's run.seed]")
@click.option("--epochs", type=click.IntRange(1), default=None, help="[default: the file's run.epochs]")
@click.option(
    "--cost",
    type=click.IntRange(0),
    default=None,
    help="the fixed cost each attacker pool declares, in millionths [default: the file's attacker.fixed_cost]",
)
@click.option(
    "--within",
    "within_pct",
    type=click.IntRange(1, 100),
    default=20,
    show_default=True,
    metavar="PERCENT",
    help="bisect until the stake found is at most this much above the most that fell short",
)
def econ_leverage(
    file: Path,
    a0_spec: str,
    k_spec: str,
    seed: int | None,
    epochs: int | None,
    cost: int | None,
    within_pct: int,
) -> None:
    """The least own stake FILE's [attacker] needs to end with a third of the active stake, per a0 and k.

    Each value is bisected on whole economy runs (fast-forward); PREDICTED is
    the paper's equilibrium ranking on the same market (network/econ/attacker.py).
    """
    from network.econ.leverage import needed_stake

    config = _load(file)
    if config.attacker is None:
        raise UserError(f"{file}: no [attacker] table: nothing to measure")
    if cost is not None:
        config = replace(config, attacker=replace(config.attacker, fixed_cost=cost))
    seed = config.seed if seed is None else seed
    epochs = config.epochs if epochs is None else epochs
    cells = [(k, a0) for k in _ints(k_spec, "--k") for a0 in _ints(a0_spec, "--a0")]
    click.echo(
        f"{config.name}, seed {seed}, {epochs} epochs, the attacker's pools at cost "
        f"{runs.units(config.attacker.fixed_cost)} and margin {runs.pct(config.attacker.margin_ppm)}:"
    )
    rows = []
    with BarProgress(len(cells), "cells") as bar:
        for k, a0 in cells:
            try:
                cell = config.with_param("saturation_k", k).with_param("pledge_influence_ppm", a0)
                found = needed_stake(cell, seed, epochs, within_pct)
            except EconError as exc:
                raise UserError(str(exc)) from None
            bar.advance()
            needed = "> 33.3%" if found.needed_ppm is None else runs.pct(found.needed_ppm, 2)
            if found.needed_ppm is not None and not found.failed_ppm:
                needed = f"<= {needed}"  # nothing tried fell short: the least stake tried
            predicted = "> 33.3%" if found.predicted_ppm is None else runs.pct(found.predicted_ppm, 2)
            if found.predicted_ppm is not None and not found.predicted_failed_ppm:
                predicted = f"<= {predicted}"
            leverage = f"{found.share_ppm / found.needed_ppm:.0f}x" if found.needed_ppm else ""
            if leverage and not found.failed_ppm:
                leverage = f">= {leverage}"  # on the least stake tried: the true leverage is larger
            rows.append(
                (
                    k,
                    f"{a0 / 1_000_000:g}",
                    needed,
                    found.pools,
                    runs.pct(found.share_ppm, 1),
                    leverage,
                    predicted,
                    found.runs,
                )
            )
    header = ("K", "A0", "NEEDED", "POOLS", "SHARE", "LEVERAGE", "PREDICTED", "RUNS")
    for line in table(header, rows, frozenset(range(len(header)))):
        click.echo(f"  {line}")


@econ.command("report")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="[default: FILE.png]"
)
def econ_report(file: Path, out: Path | None) -> None:
    """Draw a run's JSON lines (from `posnet econ run`) as a PNG, with the timeline's events marked."""
    try:
        records = runs.read_run(file)
    except EconError as exc:
        raise UserError(str(exc)) from None
    try:
        from network.econ.plot import plot_run
    except ImportError:
        raise UserError(f"the PNG needs matplotlib: {install_hint('report')}") from None
    target = out or file.with_suffix(".png")
    plot_run(records, target, f"posnet economy: {file.stem}")
    click.echo(f"wrote {target}")
    for line in runs.summary_lines(records):
        click.echo(f"  {line}")
