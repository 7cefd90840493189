"""How often does a Byzantine stake share f hold at least 1/3 of a committee?

For 1,000 validators, with equal stakes and with Pareto (power-law) stakes,
each trial picks a random set of validators holding f of the stake (30% by
default) as Byzantine and a fresh committee seed. It then measures the
Byzantine part of the committee under two rules:

* OLD RULE (before committees had seats, reimplemented here for comparison
  only): ``committee_size`` distinct validators, visited in swap-or-not
  order and accepted with probability power / max_power, each voting with
  its full stake. Stake counts twice: once in the chance of a seat, once in
  the vote.
* NEW RULE (``node.core.selection.committee_powers``, called as the node calls
  it): ``committee_size`` seats drawn by stake, each worth one vote.

Beside them it prints the binomial tail P(Bin(k, f) >= k/3), the chance for
k independent stake-proportional seats. The new rule draws distinct stake
units, which is never less concentrated than independent draws, so its
measured rate should sit at or a little under that tail. It also prints the
largest pool's share of the stake and its mean share of committee votes
under each rule: linear influence means those two match.

    python bench/committee_bound.py                  # 1000 seeds: about 2 min of CPU
    python bench/committee_bound.py --seeds 2000     # tighter: about 3.5 min
    python bench/committee_bound.py --seeds 500 --byzantine 0.25 --alpha 1.16
"""

from __future__ import annotations

import argparse
import hashlib
import math
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from node.core.selection import committee_powers, seat_holders, shuffled_indices

Validators = list[tuple[bytes, int]]


# ----------------------------------------------------------------- OLD RULE
# The committee rule this change replaced, kept here only to measure it.


def old_rule_order(validators: Validators, committee_size: int, seed: bytes) -> list[int]:
    """OLD RULE: indices of distinct validators in the order they were seated.

    Candidates in swap-or-not shuffled order, each accepted when
    ``power * 65535 >= max_power * r`` with Electra's 16-bit ``r`` from
    ``sha256(seed + (i // 16) as 8 bytes)``. Seated validators are skipped.
    After 256 passes any seats left go to the largest unseated validators.
    The first k entries are the old committee of size k (the walk does not
    depend on the size it stops at).
    """
    total = len(validators)
    powers = [power for _, power in validators]
    max_power = max(powers)
    if total <= committee_size:
        return list(range(total))
    slots: list[int] = []
    seated: list[int] = []
    seen: set[int] = set()
    i = 0
    random_block, random_bytes = -1, b""
    while len(seated) < committee_size and i < total * 256:
        slot = i % total
        if slot >= len(slots):  # shuffle the next 128 slots at once
            chunk = range(len(slots), min(total, len(slots) + 128))
            slots.extend(shuffled_indices(chunk, total, seed))
        candidate = slots[slot]
        if candidate not in seen:
            if i // 16 != random_block:
                random_block = i // 16
                random_bytes = hashlib.sha256(seed + random_block.to_bytes(8, "little")).digest()
            offset = i % 16 * 2
            random_value = int.from_bytes(random_bytes[offset : offset + 2], "little")
            if powers[candidate] * 65535 >= max_power * random_value:
                seated.append(candidate)
                seen.add(candidate)
        i += 1
    if len(seated) < committee_size:
        if len(slots) < total:
            slots.extend(shuffled_indices(range(len(slots), total), total, seed))
        slot_of = {c: s for s, c in enumerate(slots)}
        rest = sorted((c for c in range(total) if c not in seen), key=lambda c: (-powers[c], slot_of[c]))
        seated.extend(rest[: committee_size - len(seated)])
    return seated


# ----------------------------------------------------------------- the bench


def equal_stakes(n: int) -> list[int]:
    return [1000] * n


def pareto_stakes(n: int, alpha: float, rng: random.Random) -> list[int]:
    """Stakes from Pareto(alpha) with a minimum of 1000."""
    return [int(1000 * rng.paretovariate(alpha)) for _ in range(n)]


def byzantine_set(stakes: Sequence[int], share: float, rng: random.Random) -> set[int]:
    """Validators in random order, each made Byzantine if it still fits under `share` of the stake."""
    budget = share * sum(stakes)
    chosen: set[int] = set()
    held = 0
    order = list(range(len(stakes)))
    rng.shuffle(order)
    for i in order:
        if held + stakes[i] <= budget:
            chosen.add(i)
            held += stakes[i]
    return chosen


def binomial_tail(k: int, f: float) -> float:
    """P(Bin(k, f) >= k/3), summed in log space so large committees do not overflow."""
    log_terms = (
        math.lgamma(k + 1)
        - math.lgamma(j + 1)
        - math.lgamma(k - j + 1)
        + j * math.log(f)
        + (k - j) * math.log1p(-f)
        for j in range(math.ceil(k / 3), k + 1)
    )
    return sum(math.exp(t) for t in log_terms)


def run(stakes: list[int], sizes: list[int], seeds: int, share: float) -> dict[str, object]:
    validators = [(i.to_bytes(4, "big"), stake) for i, stake in enumerate(stakes)]
    address_index = {address: i for i, (address, _) in enumerate(validators)}
    largest = max(range(len(stakes)), key=stakes.__getitem__)
    biggest = max(sizes)
    old_hits: Counter[int] = Counter()
    new_hits: Counter[int] = Counter()
    old_whale = dict.fromkeys(sizes, 0.0)
    new_whale = dict.fromkeys(sizes, 0.0)
    byzantine_share = 0.0
    for trial in range(seeds):
        seed = hashlib.sha256(b"committee-bound" + trial.to_bytes(8, "little")).digest()
        byzantine = byzantine_set(stakes, share, random.Random(trial))
        byzantine_share += sum(stakes[i] for i in byzantine) / sum(stakes)

        old = old_rule_order(validators, biggest, seed)
        holders = [address_index[a] for a in seat_holders(validators, biggest, seed)]
        if trial == 0:  # the prefixes measured here are the committees the node uses
            for k in sizes:
                by_address = Counter(validators[i][0] for i in holders[:k])
                assert dict(committee_powers(validators, k, seed)) == dict(by_address)
        for k in sizes:
            seated = old[:k]
            total = sum(stakes[i] for i in seated)
            bad = sum(stakes[i] for i in seated if i in byzantine)
            old_hits[k] += 3 * bad >= total
            old_whale[k] += stakes[largest] / total if largest in seated else 0.0
            seats = holders[:k]
            new_hits[k] += 3 * sum(i in byzantine for i in seats) >= k
            new_whale[k] += seats.count(largest) / k
    return {
        "old": {k: old_hits[k] / seeds for k in sizes},
        "new": {k: new_hits[k] / seeds for k in sizes},
        "old_whale": {k: old_whale[k] / seeds for k in sizes},
        "new_whale": {k: new_whale[k] / seeds for k in sizes},
        "largest_share": stakes[largest] / sum(stakes),
        "byzantine_share": byzantine_share / seeds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=1000, help="trials per stake distribution")
    parser.add_argument("--validators", type=int, default=1000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 64, 128], help="committee sizes")
    parser.add_argument("--byzantine", type=float, default=0.3, help="Byzantine share of the stake")
    parser.add_argument("--alpha", type=float, default=1.5, help="Pareto shape of the power-law stakes")
    parser.add_argument("--stake-seed", type=int, default=1, help="seed of the Pareto stakes")
    args = parser.parse_args()

    distributions = {
        "equal": equal_stakes(args.validators),
        f"pareto({args.alpha:g})": pareto_stakes(args.validators, args.alpha, random.Random(args.stake_seed)),
    }
    print(
        f"P(Byzantine >= 1/3 of the committee's votes), {args.validators} validators, "
        f"Byzantine = random {args.byzantine:.0%} of stake, {args.seeds} seeds per row"
    )
    print(
        f"{'stakes':<13} {'committee':>9} {'old rule':>9} {'new rule':>9} {'binomial':>9} "
        f"{'±95%':>6}   {'largest pool: stake':>19} {'old votes':>9} {'new votes':>9}"
    )
    for name, stakes in distributions.items():
        start = time.perf_counter()
        result = run(stakes, args.sizes, args.seeds, args.byzantine)
        for k in args.sizes:
            old, new = result["old"][k], result["new"][k]  # type: ignore[index]
            margin = 1.96 * math.sqrt(max(new * (1 - new), old * (1 - old), 1e-12) / args.seeds)
            print(
                f"{name:<13} {k:>9} {old:>9.4f} {new:>9.4f} {binomial_tail(k, args.byzantine):>9.4f} "
                f"{margin:>6.3f}   {result['largest_share']:>19.4f} "
                f"{result['old_whale'][k]:>9.4f} {result['new_whale'][k]:>9.4f}"  # type: ignore[index]
            )
        print(
            f"{'':<13} (mean Byzantine stake share {result['byzantine_share']:.4f}; "
            f"{time.perf_counter() - start:.0f} s)"
        )


if __name__ == "__main__":
    main()
