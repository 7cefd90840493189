"""Seed grinding: how many seats does a grinder win over its stake share?

Each run is the real simulator (`posnet sim`) with one `grind` validator
holding a share s of the stake among 10 validators, a committee of 8 seats
(fewer than the validators, so seats are sampled) and short epochs, for a
few hundred epochs. At every epoch boundary it proposes, the grinder tries
K blocks (timestamps) and proposes the one whose seed seats it most in the
epoch after next (node.core.grinding); K = 1 is the honest proposer.

For each K it prints, over every epoch whose seats were drawn in the run:
the grinder's mean share of the seats with its standard error (batch means
over 10 epochs, since a grinder with more seats proposes more boundaries and
so grinds more: epochs are not independent), the share of boundaries it
proposed and its seat share in the epochs it ground; beside them the
ceiling without grinding, measured in the same units: the expected seat
share, which is the stake share exactly (seats are drawn by stake unit),
and its standard error over as many independent draws.

    python bench/seed_grinding.py                           # s = 10% and 25%, K = 1, 16, 256
    python bench/seed_grinding.py --shares 25 --variants 1,256 --epochs 200
    python bench/seed_grinding.py --randomness randao       # the defence: honest, and withholding

On a RANDAO chain (`--randomness randao`, node.core.randao) the seed mixes
each proposer's reveal, so no variant draws another seed; a grinder's one
lever is to withhold a boundary block whose draw seats it below its stake's
expectation (the next round's proposer's reveal then draws). The rows are
then the same validator honest and withholding.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from network.sim.config import SimConfig
from network.sim.node import SimNode
from network.sim.runner import run_simulation
from node.core.genesis import Params
from node.core.grinding import seats_of

BATCH = 10  # epochs per batch for the standard error


@dataclass(frozen=True)
class Drawn:
    """One boundary of a run: the grinder's seats in the epoch it drew, and whether the grinder proposed it."""

    seats: int
    ground: bool


def stakes_for(share: float, validators: int) -> tuple[int, ...]:
    """Every honest validator 1000, the last (the grinder) as much as makes its share `share`."""
    grinder = round(1000 * (validators - 1) * share / (1 - share))
    return (*([1000] * (validators - 1)), grinder)


def boundaries(honest: list[SimNode]) -> list[Drawn]:
    """Each epoch boundary of the chain the honest nodes agree on, as the grinder saw it."""
    node = min(honest, key=lambda n: n.height)
    grinder = {
        address for address, name in node.genesis.names.items() if name == f"v{len(node.genesis.names)}"
    }
    drawn = []
    for block, _, state in node.chain:
        if state.epoch != 0 and block.height % state.params.epoch_length == 0:
            drawn.append(Drawn(seats_of(state.next_seats, grinder), block.proposer in grinder))
    return drawn


def run_row(
    args: argparse.Namespace, share: float, variants: int, randao: int, byzantine: int = 1
) -> tuple[list[Drawn], bool, float]:
    """Every seed's boundaries for one (share, K); whether every run kept its invariants; wall seconds."""
    started = time.perf_counter()
    drawn: list[Drawn] = []
    ok = True
    for seed in range(args.seed, args.seed + args.seeds):
        config = SimConfig(
            validators=args.validators,
            heights=args.epochs * args.epoch_length,
            seed=seed,
            byzantine=byzantine,
            byzantine_mode="grind",
            committee_size=args.committee_size,
            params=Params(epoch_length=args.epoch_length, randao=randao),
            stakes=stakes_for(share, args.validators),
            grind_variants=variants,
        )
        seen: list[list[SimNode]] = []
        result = run_simulation(config, inspect=seen.append)
        ok = ok and result.ok
        drawn += boundaries(seen[0])
    return drawn, ok, time.perf_counter() - started


def batch_se(values: Sequence[float]) -> float:
    """Standard error of the mean from the means of consecutive batches of `BATCH`."""
    means = [statistics.fmean(values[i : i + BATCH]) for i in range(0, len(values) - BATCH + 1, BATCH)]
    return statistics.stdev(means) / math.sqrt(len(means)) if len(means) > 1 else float("nan")


def table(args: argparse.Namespace, share: float, randao: int) -> None:
    size = args.committee_size
    print(
        f"\ngrinder with {share:.0%} of the stake: {args.validators} validators, {size} seats, "
        f"epochs of {args.epoch_length} heights, {args.epochs} epochs x {args.seeds} seeds"
    )
    print(
        f"{'grinder' if randao else 'K':>6} {'seat share':>11} {'+- se':>7} {'boundaries':>11} {'ground-epoch share':>19} {'ok':>4} {'wall'}"
    )
    expected_se = None
    # On a RANDAO chain no variant draws another seed: the rows are the validator honest and withholding.
    rows = [("honest", 1, 0), ("grind", 1, 1)] if randao else [(str(k), k, 1) for k in args.variants]
    for label, variants, byzantine in rows:
        drawn, ok, wall = run_row(args, share, variants, randao, byzantine)
        shares = [d.seats / size for d in drawn]
        ground = [d.seats / size for d in drawn if d.ground]
        proposed = sum(d.ground for d in drawn) / len(drawn)
        expected_se = math.sqrt(share * (1 - share) / size / len(drawn))
        print(
            f"{label:>6} {statistics.fmean(shares):>11.4f} {batch_se(shares):>7.4f} {proposed:>11.3f} "
            f"{statistics.fmean(ground) if ground else float('nan'):>19.4f} {'yes' if ok else 'NO':>4} {wall:.1f}s"
        )
    print(
        f"  no grinding: expected seat share {share:.4f} (the stake share), se {expected_se:.4f} over as many epochs"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shares", default="10,25", help="the grinder's stake shares, in percent")
    parser.add_argument("--variants", default="1,16,256", help="K, the blocks tried per boundary")
    parser.add_argument("--validators", type=int, default=10)
    parser.add_argument("--committee-size", type=int, default=8)
    parser.add_argument("--epoch-length", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--randomness", choices=("block-hash", "randao"), default="block-hash")
    args = parser.parse_args(argv)
    args.variants = [int(v) for v in args.variants.split(",")]
    randao = int(args.randomness == "randao")
    print(f"seed from {args.randomness}")
    for share in (int(s) / 100 for s in args.shares.split(",")):
        table(args, share, randao)


if __name__ == "__main__":
    main()
