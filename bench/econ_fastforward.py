"""Fast-forward economy speed: epochs per second at the issue's size, beside what bounds it.

Runs the fast-forward engine (`network.econ.engine`) on a generated economy
(200 pools, 10,000 Pareto-wealth delegators on the `nonmyopic` policy, 50
potential operators who enter, set margins and retire pools, epochs of 100
blocks, per-epoch reward payouts) for a few epochs, and prints, measured in the same
run, the ceilings it cannot beat: the chain's own `apply_block` over an
epoch of empty blocks, quoting every pool once, and the state hash an epoch
record carries. The goal is 1,000 epochs in under 5 minutes; the last line
says what this machine's rate makes of it: the epochs run, then the rest at
the median of the run's second half (the first epochs carry the crowd's first
moves). `--epochs 1000` runs the goal itself.

    python bench/econ_fastforward.py                       # 200 pools, 10,000 delegators, 20 epochs
    python bench/econ_fastforward.py --epochs 1000         # the goal, measured rather than projected
    python bench/econ_fastforward.py --delegators 2000 --epochs 30
    python bench/econ_fastforward.py --policy yield --operators 0   # the myopic crowd, a fixed pool set
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from network.econ.config import POLICIES, parse_economy
from network.econ.digest import ledger_hash
from network.econ.engine import FastForward
from network.econ.record import EpochLog
from node.core.query import pools_view

GOAL_EPOCHS, GOAL_S = 1000, 300.0
CEILING_TRIES = 3


def best_of(tries: int, work: Callable[[], object]) -> float:
    """The shortest of `tries` timings of `work`, in seconds."""
    times = []
    for _ in range(tries):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def economy(pools: int, delegators: int, epoch_length: int, policy: str, operators: int) -> dict[str, object]:
    unit = 1_000_000
    agents: dict[str, object] = {}
    if operators:
        agents = {
            "market": {"entry": True, "retire_after": 3},
            "operators": [{
                "name": "op", "count": operators, "wealth": "pareto", "alpha": 1.5,
                "total": 50_000 * unit * operators, "fixed_cost": 3 * unit, "fixed_cost_max": 8 * unit,
                "margin_ppm": 20_000,
            }],
        }  # fmt: skip
    return agents | {
        "run": {"epochs": 1000, "epoch_length": epoch_length, "seed": 1},
        "params": {
            "block_reward": 600 * unit, "saturation_k": max(1, pools * 3 // 4), "committee_size": 128,
            "unbonding_epochs": 1, "epoch_rewards": 1,
        },
        "pools": [{"name": "pool", "count": pools, "pledge": 50_000 * unit, "fixed_cost": 5 * unit, "margin_ppm": 20_000}],
        "delegators": [{
            "name": "crowd", "count": delegators, "policy": policy, "wealth": "pareto", "alpha": 1.16,
            "total": 5_000 * unit * delegators, "switching_cost_ppm": 20_000, "start": "random",
        }],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pools", type=int, default=200)
    parser.add_argument("--delegators", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--epoch-length", type=int, default=100)
    parser.add_argument("--policy", choices=POLICIES, default="nonmyopic")
    parser.add_argument("--operators", type=int, default=50, help="potential operators (0: a fixed pool set)")
    args = parser.parse_args()
    spec = economy(args.pools, args.delegators, args.epoch_length, args.policy, args.operators)
    config = parse_economy(spec, "bench", Path("."))

    started = time.perf_counter()
    engine = FastForward(config)
    build_s = time.perf_counter() - started
    print(
        f"economy: {args.pools} pools, {args.delegators} {args.policy} delegators, {args.operators} potential "
        f"operators, epochs of {args.epoch_length} blocks"
    )
    print(f"  build (keys, wealth, genesis): {build_s:.1f} s")

    times: list[float] = []
    moves: list[int] = []
    actions = 0
    started = time.perf_counter()
    for record in engine.run(args.epochs):
        now = time.perf_counter()
        if record["epoch"] >= 0:  # the first record is genesis, before any epoch ran
            times.append(now - started)
            moves.append(record["moves"])
            actions += len(record["operators"])
            last = record
        started = now
    run_s = sum(times)
    settled = times[len(times) // 2 :]  # the first epochs carry the crowd's first moves
    per_epoch = statistics.median(settled)
    print(
        f"  run: {len(times)} epochs in {run_s:.1f} s; {sum(moves)} moves, "
        f"{sum(moves[len(moves) // 2 :])} of them in the second half; {actions} operator actions"
    )
    print(
        f"  ended with {last['active_pools']} active pools, {last['half_saturated']} at half of 1/k or more, "
        f"the largest at {last['largest_of_saturation_ppm'] / 1e6:.2f} of 1/k, {last['paid_ppm'] / 1e4:.1f}% "
        f"of the last epoch's possible rewards paid"
    )
    print(
        f"  per epoch: first {times[0]:.2f} s ({moves[0]} moves), median of the second half "
        f"{per_epoch:.3f} s, slowest {max(settled):.3f} s"
    )

    # Ceilings, measured now on the same state, each the best of a few tries: one try may take a full
    # garbage collection of the whole process with it (tens of ms here), which is no part of the ceiling.
    state = engine.state
    probe = FastForward(config)

    def empty_epoch() -> None:
        probe.state, probe.last_cert = state, None  # as a fresh engine starts: no certificate yet
        for _ in range(args.epoch_length):
            probe._produce((), (), EpochLog())

    blocks_s = best_of(CEILING_TRIES, empty_epoch)
    quote_s = best_of(CEILING_TRIES, lambda: pools_view(state))
    digest_s = best_of(CEILING_TRIES, lambda: ledger_hash(probe.state.ledger))
    print(f"  ceilings in this run (per epoch, best of {CEILING_TRIES}):")
    print(f"    apply_block over {args.epoch_length} empty blocks: {blocks_s:.2f} s")
    print(f"    quoting all {args.pools} pools once:             {quote_s:.3f} s")
    print(f"    ledger hash of the epoch record:        {digest_s:.3f} s")
    projected = build_s + run_s + max(0, GOAL_EPOCHS - len(times)) * per_epoch
    verdict = "meets" if projected <= GOAL_S else "misses"
    how = "measured, with the build" if len(times) >= GOAL_EPOCHS else "at this rate, with the build"
    print(
        f"  {GOAL_EPOCHS} epochs {how}: {projected / 60:.1f} min ({verdict} the {GOAL_S / 60:.0f} min goal; "
        f"the chain alone would take {GOAL_EPOCHS * (blocks_s + digest_s) / 60:.1f} min)"
    )


if __name__ == "__main__":
    main()
