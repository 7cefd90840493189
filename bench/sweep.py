"""Sweep random seeds inside the 1/3 bound and count what broke.

Each seed draws a whole run (network.sim.config.random_run_config): 4-10
validators, a Byzantine minority whose stake is below 1/3 (every
simulator mode mixed, or those --modes names), stakes that are equal,
uneven, power-law or at the 1/3 edge, sometimes a committee smaller than
the set, a short downtime window, and a fault plan of loss, delay,
duplication, reordering, 2- and 3-way partitions and crashes that all heal.
Committee sampling can still give one height's committee 1/3 or more
Byzantine power; such runs are counted as outside the bound and their
violations there are not failures.

It prints, for each run that broke an invariant inside the bound, the one
`posnet sim` command line that replays it, then the counts: runs, runs with
safety / liveness / accountability / penalty violations inside the bound,
honest validators' downtime misses of class A (reached an eligible proposer
in time: each behind a jailing is a penalty violation) and class B (excused),
honest jailings, bound-exceeded runs and wall time. Exit status 1 if any run failed
or any honest validator had a class-A miss, jailed for it or not (each is listed).

    python bench/sweep.py --seeds 200
    python bench/sweep.py --seeds 10000 --start 0 --jobs 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from network.sim.checks import VIOLATION_KINDS
from network.sim.config import random_run_config
from network.sim.penalties import honest_jailings
from network.sim.runner import run_simulation
from node.core.behaviours import SIM_BYZANTINE_MODES

RUN_WALL_LIMIT_S = 60  # a run slower than this is reported: a sweep is only useful if it finishes


@dataclass(frozen=True)
class Outcome:
    """What one run contributes to the counts (small, so worker processes can send it back)."""

    seed: int
    inside: tuple[tuple[str, str], ...]  # (kind, message) of violations inside the bound
    bound_exceeded: bool
    honest_jailed: tuple[str, ...]  # honest validators jailed on an honest chain
    misses: tuple[int, int, int, int]  # class A, class B; of those, behind jailings: A, B
    wall_s: float
    replay: str


def run_one(seed: int, heights: int, modes: tuple[str, ...]) -> Outcome:
    config = random_run_config(seed, heights, modes)
    result = run_simulation(config)
    jailed = sorted({name for _, name, _ in honest_jailings(config, result.events)})
    tally = result.misses
    return Outcome(
        seed=seed,
        inside=tuple((v.kind, v.message) for v in result.inside_bound),
        bound_exceeded=bool(result.byzantine_share.exceeded_heights),
        honest_jailed=tuple(jailed),
        misses=(tally.class_a, tally.class_b, tally.jailing_a, tally.jailing_b),
        wall_s=result.wall_s,
        replay=result.replay,
    )


def _run_star(args: tuple[int, int, tuple[str, ...]]) -> Outcome:
    return run_one(*args)


def outcomes(seeds: range, heights: int, modes: tuple[str, ...], jobs: int) -> Iterator[Outcome]:
    """Run the seeds, in order, on `jobs` processes."""
    if jobs <= 1:
        yield from (run_one(seed, heights, modes) for seed in seeds)
        return
    with ProcessPoolExecutor(jobs) as pool:
        yield from pool.map(_run_star, ((seed, heights, modes) for seed in seeds), chunksize=4)


def _modes(text: str) -> tuple[str, ...]:
    modes = tuple(mode for mode in text.split(",") if mode)
    unknown = sorted(set(modes) - set(SIM_BYZANTINE_MODES))
    if not modes or unknown:
        raise argparse.ArgumentTypeError(f"choose from {','.join(SIM_BYZANTINE_MODES)}")
    return modes


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=200, help="how many seeds to run")
    parser.add_argument("--start", type=int, default=0, help="the first seed")
    parser.add_argument("--heights", type=int, default=10, help="heights each run must finalize")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument(
        "--modes",
        type=_modes,
        default=",".join(SIM_BYZANTINE_MODES),
        help="Byzantine modes to mix (default: %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="end with one JSON object of the counts")
    args = parser.parse_args()
    seeds = range(args.start, args.start + args.seeds)
    started = time.perf_counter()
    failing_runs: Counter[str] = Counter()
    failed: list[dict[str, object]] = []
    jailed_runs = jailed_validators = exceeded = 0
    misses = [0, 0, 0, 0]
    class_a_seeds: list[int] = []
    slowest = (0.0, -1)
    over_limit = 0
    for outcome in outcomes(seeds, args.heights, args.modes, args.jobs):
        exceeded += outcome.bound_exceeded
        slowest = max(slowest, (outcome.wall_s, outcome.seed))
        if outcome.wall_s > RUN_WALL_LIMIT_S:
            over_limit += 1
            print(f"seed {outcome.seed}: {outcome.wall_s:.1f} s of wall time (over {RUN_WALL_LIMIT_S} s)")
            print(f"  replay: {outcome.replay}", flush=True)
        misses = [total + add for total, add in zip(misses, outcome.misses, strict=True)]
        if outcome.misses[
            0
        ]:  # judged per miss: one that jailed nobody is still a miss the rule should not make
            class_a_seeds.append(outcome.seed)
            print(
                f"seed {outcome.seed}: {outcome.misses[0]} class-A miss(es), {outcome.misses[2]} behind a jailing"
            )
            print(f"  replay: {outcome.replay}", flush=True)
        if outcome.honest_jailed:
            jailed_runs += 1
            jailed_validators += len(outcome.honest_jailed)
        if outcome.inside:
            kinds = sorted({kind for kind, _ in outcome.inside})
            failing_runs.update(kinds)
            failed.append({"seed": outcome.seed, "kinds": kinds, "replay": outcome.replay})
            print(f"seed {outcome.seed}: {outcome.inside[0][1]} ({len(outcome.inside)} inside the bound)")
            print(f"  replay: {outcome.replay}", flush=True)
    wall = time.perf_counter() - started
    counts = {
        "runs": len(seeds),
        "failed_runs": len(failed),
        **{f"{kind}_violation_runs": failing_runs[kind] for kind in VIOLATION_KINDS},
        "honest_jailed_runs": jailed_runs,
        "honest_jailed_validators": jailed_validators,
        "misses_class_a": misses[0],
        "misses_class_b": misses[1],
        "jailing_misses_class_a": misses[2],
        "jailing_misses_class_b": misses[3],
        "bound_exceeded_runs": exceeded,
        f"runs_over_{RUN_WALL_LIMIT_S}_s": over_limit,
        "slowest_run_s": round(slowest[0], 1),
        "slowest_seed": slowest[1],
        "wall_s": round(wall, 1),
    }
    print(f"seeds {seeds.start}..{seeds.stop - 1}, {args.heights} heights each")
    width = max(len(name) for name in counts)
    for name, value in counts.items():
        print(f"  {name:<{width}}  {value}")
    if args.json:
        print(json.dumps({**counts, "failed": failed, "class_a_seeds": class_a_seeds}))
    sys.exit(1 if failed or class_a_seeds else 0)


if __name__ == "__main__":
    main()
