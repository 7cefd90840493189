"""What an economy run measures at each epoch, in integers (parts per million), so a run's JSON is exact.

Concentration of active pool stake: the Nakamoto coefficient (the fewest
pools holding more than 1/3: enough to halt the chain), the Gini
coefficient, the Herfindahl-Hirschman index (the sum of squared shares: 1
for one pool, 1/n for n equal ones) and the top three pools' share; and
how many pools sit at or past the saturation point; against the paper's
equilibrium (about k pools of about 1/k each), the largest pool as a share
of 1/k, how many pools hold at least half of it, and what share of the
rewards the blocks could pay was paid (the rest withheld by saturation or
pledge influence, into the reserve).
"""

from __future__ import annotations

from collections.abc import Sequence

from node.core.genesis import PPM


def gini_ppm(values: Sequence[int]) -> int:
    """The Gini coefficient of `values` in ppm (0: all equal; near 1,000,000: one holds all)."""
    n, total = len(values), sum(values)
    if n == 0 or total == 0:
        return 0
    ranked = sum(rank * value for rank, value in enumerate(sorted(values), start=1))
    return (2 * ranked * PPM) // (n * total) - ((n + 1) * PPM) // n


def hhi_ppm(values: Sequence[int]) -> int:
    """The Herfindahl-Hirschman index in ppm: the sum of squared shares."""
    total = sum(values)
    return sum(v * v for v in values) * PPM // (total * total) if total else 0


def top_share_ppm(values: Sequence[int], k: int = 3) -> int:
    """The share of the `k` largest, in ppm."""
    total = sum(values)
    return sum(sorted(values, reverse=True)[:k]) * PPM // total if total else 0


def nakamoto(values: Sequence[int]) -> int:
    """The fewest values that together hold more than 1/3 of the total (0 for none)."""
    total, held = sum(values), 0
    for count, value in enumerate(sorted(values, reverse=True), start=1):
        held += value
        if 3 * held > total:
            return count
    return 0


def saturated(values: Sequence[int], bonded_total: int, k: int) -> int:
    """How many stakes are at or past the saturation point bonded_total / k (0 when k = 0: no point)."""
    return sum(1 for v in values if v * k >= bonded_total) if k > 0 and bonded_total else 0


def largest_of_saturation_ppm(values: Sequence[int], bonded_total: int, k: int) -> int:
    """The largest stake as ppm of the saturation point bonded_total / k (0 when k = 0 or no stake)."""
    return max(values, default=0) * k * PPM // bonded_total if k > 0 and bonded_total else 0


def half_saturated(values: Sequence[int], bonded_total: int, k: int) -> int:
    """How many stakes hold at least half the saturation point (the paper's "about 1/k" pools)."""
    return sum(1 for v in values if 2 * v * k >= bonded_total) if k > 0 and bonded_total else 0


def paid_ppm(paid: int, blocks: int, block_reward: int) -> int:
    """What `blocks` paid to pools, as ppm of what they could have paid (each its whole block reward)."""
    possible = blocks * block_reward
    return paid * PPM // possible if possible > 0 else 0
