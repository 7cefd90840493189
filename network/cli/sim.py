"""`posnet sim`: the deterministic simulator from the command line, one run or a sweep of seeds.

The options are checked here (by the same parsers a genesis file and a fault
plan go through), so a bad value is one usage line and exit 2; the run
itself is `network.sim.runner`, and this module only prints its summary.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, cast

import click
from click.core import ParameterSource

from network.cli.chain import with_options
from network.cli.errors import UserError
from network.cli.fleet_options import FLEET_OPTIONS
from network.cli.progress import BarProgress
from network.sim.plans import FaultPlan, FaultSpecError, parse_fault_spec
from network.sim.zones import Zones, ZonesError, load_zones
from node.core.behaviours import SIM_BYZANTINE_MODES
from node.core.genesis import GenesisError, parse_params
from node.core.grinding import MAX_VARIANTS


def _fault_plan(_ctx: click.Context, _param: click.Parameter, value: str | None) -> FaultPlan | str:
    if value == "random":
        return value
    try:
        return parse_fault_spec(value or "")
    except FaultSpecError as exc:
        raise click.BadParameter(str(exc)) from None


def _stakes(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    """'605,896,2053' -> (605, 896, 2053): one pledge per validator, in order."""
    if value is None:
        return None
    try:
        stakes = tuple(int(part) for part in value.split(","))
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: expected comma-separated whole numbers, e.g. 605,896,2053"
        ) from None
    if any(stake < 1 for stake in stakes):
        raise click.BadParameter(f"{value!r}: every stake must be at least 1")
    return stakes


def _params(_ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]) -> dict[str, int]:
    """NAME=VALUE pairs, checked by the genesis parser, so a run takes exactly what a genesis file may."""
    raw: dict[str, Any] = {}
    for item in value:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r}: expected NAME=VALUE, e.g. downtime_window=8")
        try:
            raw[name] = int(text)
        except ValueError:
            raise click.BadParameter(f"params.{name}: expected an integer, got {text!r}") from None
    try:
        parse_params(raw)
    except GenesisError as exc:
        raise click.BadParameter(str(exc)) from None
    return raw


def read_zones(value: Path | None) -> Zones | None:
    """A zones file read and parsed, or a one-line usage error naming the file and what is wrong."""
    if value is None:
        return None
    try:
        text = value.read_text()
    except OSError as exc:
        raise click.BadParameter(
            f"{value}: cannot read ({exc.strerror or exc})", param_hint="--zones"
        ) from None
    except UnicodeDecodeError:
        raise click.BadParameter(f"{value}: not a text file", param_hint="--zones") from None
    try:
        return load_zones(text, str(value))
    except ZonesError as exc:
        raise click.BadParameter(f"{value}: {exc}", param_hint="--zones") from None


def _zones(_ctx: click.Context, _param: click.Parameter, value: Path | None) -> Zones | None:
    return read_zones(value)


SIM_EXIT_HELP = (
    "Exit status: 0 when every invariant held, or broke only at heights where Byzantine "
    "validators held 1/3 or more of the committee's power (outside the model: reported with a "
    "warning, not a failure); 1 when one broke inside that bound, which is a bug; 2 on a usage error."
)


@click.command(epilog=SIM_EXIT_HELP)
@click.option(
    "--validators",
    type=click.IntRange(1, 5000),
    default=4,
    show_default=True,
    help="(set by --stakes when not given)",
)
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
@click.option(
    "--grind-variants",
    type=click.IntRange(1, MAX_VARIANTS),
    default=16,
    show_default=True,
    help="--byzantine-mode grind: the blocks (timestamps) a grinder tries at each epoch boundary it "
    "proposes, keeping the one that seats the grinders most (1 = honest)",
)
@click.option(
    "--committee-size",
    type=click.IntRange(1, 100_000),
    default=None,
    help="committee seats per height  [default: 128]",
)
@click.option(
    "--stakes",
    callback=_stakes,
    metavar="S1,S2,...",
    help="each validator's stake, in order (default 1000 each); sets --validators when that is not given",
)
@click.option(
    "--param",
    "params",
    multiple=True,
    callback=_params,
    metavar="NAME=VALUE",
    help="a genesis parameter (any [params] field, same limits as a genesis file); repeatable",
)
@click.option(
    "--scenario",
    type=click.Choice(["given", "random"]),
    default="given",
    show_default=True,
    help="'random': draw per seed the stakes (equal, uneven, power-law, or Byzantine stake just under "
    "1/3), a committee smaller than the set (sometimes, with 6+ validators) and a short downtime "
    "window; --stakes, --param and --committee-size given explicitly win over the draw",
)
@click.option(
    "--faults",
    callback=_fault_plan,
    default="",
    help="e.g. 'drop=0.05,delay=5-80,partition=v1+v2|v3+v4@2000-9000,crash=v2@3000-7000', "
    "or 'random' (drawn from each seed: loss, delay, dup, reorder, 2- and 3-way partitions and "
    "crashes of honest nodes, all healed by 15 s)",
)
@click.option(
    "--zones",
    type=click.Path(dir_okay=False, path_type=Path),
    callback=_zones,
    default=None,
    metavar="FILE",
    help="a geography (TOML): round-trip times between zones and who sits where; each message also "
    "travels its zones' one-way latency (RTT/2) on top of --faults, and the summary gives finality "
    "p50/p99 (see scenarios/zones/)",
)
@click.option(
    "--seeds",
    type=click.IntRange(1, 1_000_000),
    default=1,
    show_default=True,
    help="sweep: run seeds SEED..SEED+N-1 and report the ones that broke an invariant inside the bound",
)
@with_options(FLEET_OPTIONS)
@click.option("--json", "as_json", is_flag=True, help="print one JSON object as the last line")
@click.option("--events", is_flag=True, help="print penalty events (JSON lines) before the summary")
@click.option(
    "--trace",
    "trace_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="write every event of the run (deliveries, drops, steps, locks, timeouts, decisions, faults, "
    "penalties) to FILE as JSON lines",
)
def sim(
    validators: int,
    heights: int,
    seed: int,
    byzantine: int,
    byzantine_mode: str,
    grind_variants: int,
    committee_size: int | None,
    stakes: tuple[int, ...] | None,
    params: dict[str, int],
    scenario: str,
    faults: FaultPlan | str,
    zones: Zones | None,
    seeds: int,
    workers: int,
    scheduler: str | None,
    as_json: bool,
    events: bool,
    trace_path: Path | None,
) -> None:
    """Run the deterministic simulator: the real core over a simulated network, in virtual time.

    Every run checks safety, liveness, accountability (fork culprits
    included) and that no honest validator is jailed without a fault; it
    also measures the Byzantine share of each height's committee power and
    warns where it reached 1/3. A run with a violation prints the one
    command line that replays it alone, drawn stakes and faults written out.
    """
    from network.sim.runner import run_simulation
    from network.sim.sweep import SweepSpec
    from node.core.genesis import validator_names

    ctx = click.get_current_context()
    if stakes is not None:
        if ctx.get_parameter_source("validators") is ParameterSource.DEFAULT:
            validators = len(stakes)
        elif len(stakes) != validators:
            raise click.BadParameter(
                f"{len(stakes)} stakes for --validators {validators}", param_hint="--stakes"
            )
    if "committee_size" in params:
        if committee_size is not None and committee_size != params["committee_size"]:
            raise click.BadParameter(
                f"committee_size={params['committee_size']} contradicts --committee-size {committee_size}",
                param_hint="--param",
            )
        committee_size = params.pop("committee_size")
    if byzantine > validators:
        raise click.BadParameter(f"{byzantine} exceeds --validators {validators}", param_hint="--byzantine")
    names = validator_names(validators)
    if isinstance(faults, FaultPlan):
        unknown = faults.names() - set(names)
        if unknown:
            raise click.BadParameter(
                f"names unknown validators: {', '.join(sorted(unknown))}", param_hint="--faults"
            )
    if zones is not None:
        try:
            zones.assign(names)
        except ZonesError as exc:
            raise click.BadParameter(f"{zones.path}: {exc}", param_hint="--zones") from None
    spec = SweepSpec(
        validators=validators,
        heights=heights,
        byzantine=byzantine,
        byzantine_mode=byzantine_mode,
        grind_variants=grind_variants,
        committee_size=committee_size,
        stakes=stakes,
        params=tuple(sorted(params.items())),
        scenario=scenario,
        faults=faults,
        zones=zones,
    )
    if seeds > 1:
        if trace_path is not None:
            raise click.BadParameter("a trace is of one run: drop --seeds", param_hint="--trace")
        _sweep(spec, range(seed, seed + seeds), workers, scheduler, as_json)
    if scheduler is not None or workers != 1:
        raise click.BadParameter("--workers and --scheduler spread a sweep: give --seeds N too")
    if trace_path is None:
        result = run_simulation(spec.config(seed))
    else:
        try:
            with trace_path.open("w") as trace:
                result = run_simulation(spec.config(seed), trace)
        except OSError as exc:
            raise UserError(f"--trace {trace_path}: cannot write ({exc.strerror or exc})") from None
    if events:
        for event in result.events:
            click.echo(json.dumps(event))
    summary = result.to_json()
    if as_json:
        click.echo(json.dumps(summary))
    else:
        _print_sim_summary(summary)
    sys.exit(0 if result.ok else 1)


def _sweep(spec: Any, seeds: range, workers: int, scheduler: str | None, as_json: bool) -> None:
    """Run many seeds; list the ones that broke an invariant inside the bound, each with its replay line.

    In this process by default, on local Dask workers with --workers, on a
    cluster with --scheduler: the summary is the same (outcomes sorted by
    seed). Failures print as they land; Ctrl-C keeps what has run. Exits 1
    if any seed failed. Seeds that ran outside the bound are counted, not failed.
    """
    from network.sim.sweep import SeedOutcome, run_seed, summarize

    started = time.perf_counter()
    progress = BarProgress(len(seeds), "seeds")

    def landed(outcome: SeedOutcome) -> None:
        progress.advance()
        if not outcome.ok and not as_json:
            progress.echo(f"seed {outcome.seed}: {'; '.join(outcome.inside[:3])}")
            progress.echo(f"  replay: {outcome.replay}")

    outcomes: list[SeedOutcome] = []
    interrupted = False
    executor = "this process"
    with progress:
        if scheduler is None and workers == 1:
            try:
                for run_seed_number in seeds:
                    outcomes.append(run_seed(spec, run_seed_number))
                    landed(outcomes[-1])
            except KeyboardInterrupt:
                interrupted = True
        else:
            from network.fleet.dask_sweep import Fleet, FleetError, run_on_dask

            fleet = Fleet(workers, scheduler)
            executor = fleet.describe()
            try:
                outcomes, interrupted = run_on_dask(spec, seeds, fleet, landed)
            except FleetError as exc:
                raise UserError(str(exc)) from None
    summary = summarize(outcomes, seeds)
    wall = time.perf_counter() - started
    if as_json:
        click.echo(json.dumps({**summary, "executor": executor, "wall_s": round(wall, 3)}))
    else:
        cut = f" (interrupted: {summary['missing']} seeds did not run)" if interrupted else ""
        click.echo(
            f"{summary['ran']} of {len(seeds)} seeds ({seeds.start}..{seeds.stop - 1}){cut}: {summary['ok']} held "
            f"every invariant inside the 1/3 bound, {len(summary['failed'])} broke one; "
            f"{summary['bound_exceeded']} ran outside the bound at some height; lowest finalized height "
            f"{summary['lowest_height']}; {wall:.1f} s on {executor}"
        )
    sys.exit(1 if summary["failed"] else 130 if interrupted else 0)


def _verdict(summary: dict[str, Any]) -> str:
    if not summary["ok"]:
        return "INVARIANT VIOLATED inside the 1/3 bound (a bug)"
    if summary["violations"]:
        return "violations only outside the 1/3 bound (expected)"
    return "all invariants held"


def _print_sim_summary(summary: dict[str, Any]) -> None:
    click.echo(f"seed {summary['seed']}: {_verdict(summary)}")
    click.echo(
        f"  finalized {summary['heights_finalized']} heights in {summary['virtual_ms']} virtual ms "
        f"({summary['wall_s']} s wall), {summary['round_timeouts']} round timeouts, "
        f"{summary['evidence']} evidence included"
    )
    if summary.get("zones"):
        click.echo(f"  zones ({summary['zones']['file']}): {summary['zones']['placement']}")
        finality = summary["finality_ms"]
        click.echo(
            f"  finality (proposal to decision): p50 {finality['p50']} ms, p99 {finality['p99']} ms, "
            f"max {finality['max']} ms over {finality['samples']} decisions"
        )
    if summary.get("past_target"):
        click.echo(f"  past the target height: {summary['past_target']}")
    click.echo(
        f"  messages: {summary['messages_delivered']} delivered, {summary['messages_dropped']} dropped; "
        f"rejected: {summary['rejected'] or 'none'}"
    )
    click.echo(f"  Nakamoto coefficient: {summary['nakamoto_coefficient']}{_largest_pools(summary)}")
    click.echo(
        f"  downtime misses of honest validators: {summary['misses_class_a']} class A (reached an eligible "
        f"proposer in time), {summary['misses_class_b']} class B (excused); behind jailings: "
        f"{summary['jailing_misses_class_a']} A, {summary['jailing_misses_class_b']} B"
    )
    for name, info in summary["validators"].items():
        click.echo(f"  {name:>6}  stake {info['stake']:>8}  earned {info['balance']:>8}  {info['status']}")
    if summary["bound_exceeded_count"]:
        heights = ", ".join(str(h) for h in summary["bound_exceeded_heights"])
        more = ", ..." if summary["bound_exceeded_count"] > len(summary["bound_exceeded_heights"]) else ""
        click.echo(
            f"  WARNING: Byzantine validators held 1/3 or more of the committee's power at "
            f"{summary['bound_exceeded_count']} heights ({heights}{more}): outside the model, "
            "violations there are expected"
        )
    for fork in summary["forks"]:
        click.echo(
            f"  fork at height {fork['height']}: culprits "
            f"{', '.join(f'{name} ({offence})' for name, offence in fork['culprits'].items()) or 'none'}, "
            f"{fork['culprit_power']} of {fork['committee_power']} committee power"
        )
    outside = set(summary["violations_outside_bound"])
    for violation in summary["violations"]:
        click.echo(f"  violation: {violation}{' (outside the bound)' if violation in outside else ''}")
    if summary["violations"]:
        click.echo(f"  replay: {summary['replay']}")


def _largest_pools(summary: dict[str, object], shown: int = 5) -> str:
    """The largest pools' shares of active stake, e.g. " (v1 25.0%, v2 25.0%, ...)"."""
    distribution = cast(list[dict[str, Any]], summary.get("stake_distribution") or [])
    parts = [f"{d['pool']} {d['share_ppm'] / 10_000:.1f}%" for d in distribution[:shown]]
    more = ", ..." if len(distribution) > shown else ""
    return f" ({', '.join(parts)}{more})" if parts else ""
