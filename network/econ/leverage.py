"""The leverage experiment: the smallest own stake that holds a third of the committee, by bisection.

Each try runs the whole economy (`network.econ.runs.epoch_lines`) with the
file's [attacker] at one stake and reads the share of active stake its
pools hold at the last epoch (`network.econ.attacker.share_ppm`: the
committee share, see there). Beside it the paper's prediction for the same
market (`network.econ.attacker.plan`), bisected the same way, so the table
shows where the dynamics (a crowd that moves a share at a time, operators
that enter and re-price) depart from the equilibrium argument.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from math import isqrt

from network.econ.attacker import THIRD_PPM, plan, resolve, share_ppm
from network.econ.config import EconomyConfig
from network.econ.runs import epoch_lines


@dataclass(frozen=True)
class Trial:
    """One run: the attacker's stake (ppm of all), its pools, the share it ended with and was predicted."""

    stake_ppm: int
    pools: int
    share_ppm: int
    predicted_ppm: int


def trial(config: EconomyConfig, seed: int, epochs: int, stake_ppm: int) -> Trial:
    """Run the economy with the attacker at `stake_ppm` and measure its pools' share at the last epoch."""
    at = config.with_attacker_stake(stake_ppm)
    chosen = plan(at, seed)
    resolved = resolve(at, seed, chosen)
    assert resolved.attacker is not None
    last = json.loads(list(epoch_lines(resolved, seed, epochs))[-1])
    measured = 0 if "halted" in last else share_ppm(last, resolved.attacker.names)
    return Trial(stake_ppm, resolved.attacker.pools, measured, chosen.expected_ppm)


LEAST_PPM = 100  # the least stake tried: 0.01% of all stake (below it, "any stake" is the answer)


def bisect_stake(
    reaches: Callable[[int], bool], within_pct: int, high_ppm: int = THIRD_PPM, low_ppm: int = LEAST_PPM
) -> tuple[int | None, int, int]:
    """The least stake (ppm) `reaches` says yes to, at most `within_pct` percent above the most it said
    no to; the number of tries; and that most (0 when even `low_ppm` reached: an upper bound then).

    Bisected on a log scale between `low_ppm` and `high_ppm` (a third of all
    stake, tried first: None when even that falls short), because the answers
    span 0.01% to 33%: halving the range in ppm would spend its tries on the
    upper half. Assumes more stake never hurts (the bisection's premise).
    """
    tries = 1
    if not reaches(high_ppm):
        return None, tries, high_ppm
    tries += 1
    if reaches(low_ppm):
        return low_ppm, tries, 0
    low, high = low_ppm, high_ppm
    while high * 100 > low * (100 + within_pct):
        middle = isqrt(low * high)
        tries += 1
        if reaches(middle):
            high = middle
        else:
            low = middle
    return high, tries, low


@dataclass(frozen=True)
class Leverage:
    """One (k, a0) cell: the smallest stake that held a third, measured and predicted."""

    k: int
    a0_ppm: int
    needed_ppm: int | None  # measured: None when a third of all stake was not enough
    failed_ppm: int  # the most stake that fell short (0: none did, `needed_ppm` is only an upper bound)
    pools: int  # at the measured stake
    share_ppm: int  # the share reached there
    predicted_ppm: int | None  # the paper's ranking on this market (`plan`), bisected the same way
    predicted_failed_ppm: int  # as `failed_ppm`, for the prediction
    runs: int


def needed_stake(config: EconomyConfig, seed: int, epochs: int, within_pct: int) -> Leverage:
    """Bisect the attacker's stake for a third of the active stake at the run's end, and the prediction."""
    found: dict[int, Trial] = {}

    def reaches(stake_ppm: int) -> bool:
        found[stake_ppm] = trial(config, seed, epochs, stake_ppm)
        return found[stake_ppm].share_ppm >= THIRD_PPM

    needed, runs, failed = bisect_stake(reaches, within_pct)
    predicted, _, predicted_failed = bisect_stake(
        lambda s: plan(config.with_attacker_stake(s), seed).expected_ppm >= THIRD_PPM, within_pct
    )
    at = found[needed if needed is not None else THIRD_PPM]
    return Leverage(
        config.params.saturation_k,
        config.params.pledge_influence_ppm,
        needed,
        failed,
        at.pools,
        at.share_ppm,
        predicted,
        predicted_failed,
        runs,
    )
