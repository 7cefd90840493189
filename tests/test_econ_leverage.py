"""The attacker's leverage (seed 002): one holder's own stake split over many pools, measured by the economy."""

from __future__ import annotations

import tomllib
from fractions import Fraction
from pathlib import Path

import pytest

from network.econ.attacker import (
    THIRD_PPM,
    attacker_amount,
    choose_pools,
    expected_stake,
    plan,
    pledge_needed,
    resolve,
    share_ppm,
)
from network.econ.config import EconError, EconomyConfig, load_economy, parse_economy
from network.econ.engine import FastForward
from network.econ.leverage import bisect_stake, needed_stake
from network.econ.nonmyopic import Rules
from node.core.genesis import PPM

REPO_ROOT = Path(__file__).resolve().parent.parent

# Two founding pools, three potential operators, forty non-myopic delegators, k = 4; the attacker
# declares the cheapest operator's cost and no margin.
TINY = """
[run]
epochs = 8
epoch_length = 10
seed = 3

[params]
block_reward = 100000
saturation_k = 4
unbonding_epochs = 1
committee_size = 64
epoch_rewards = 1

[market]
retire_after = 2

[attacker]
stake_ppm = 50000
fixed_cost = 50000

[[pools]]
name = "old"
count = 2
pledge = 2000
fixed_cost = 150000

[[operators]]
name = "op"
count = 3
total = 30000
fixed_cost = 50000
fixed_cost_max = 100000

[[delegators]]
name = "seekers"
count = 40
policy = "nonmyopic"
wealth = "equal"
total = 60000
switching_cost_ppm = 20000
start = "random"
"""


def tiny(**params: int) -> EconomyConfig:
    raw = tomllib.loads(TINY)
    raw["params"] = {**raw["params"], **params}
    return parse_economy(raw, "tiny", Path("."))


def test_the_shipped_leverage_file_loads_with_its_attacker() -> None:
    config = load_economy(REPO_ROOT / "scenarios" / "economy" / "attacker-leverage.toml")
    assert config.attacker is not None and config.attacker.pools == 0 and not config.attacker.resolved


def test_an_attacker_table_is_read_strictly() -> None:
    raw = tomllib.loads(TINY)
    raw["attacker"]["stake"] = 5
    with pytest.raises(EconError, match="attacker"):
        parse_economy(raw, "tiny", Path("."))
    raw = tomllib.loads(TINY.replace('name = "old"', 'name = "attacker"'))
    with pytest.raises(EconError, match="already named"):
        parse_economy(raw, "tiny", Path("."))


def test_the_attackers_stake_is_its_share_of_a_total_that_includes_it() -> None:
    amount = attacker_amount(900, 100_000)
    assert amount == 100 and amount * PPM // (900 + amount) == 100_000


def test_without_pledge_influence_any_stake_fills_every_top_slot_that_it_out_ranks() -> None:
    """a0 = 0: pledge buys nothing, so k pools of 1/k pledge each expect k saturated pools (all of it)."""
    rules = Rules(pot=1_000_000, payouts=1, k=4, a0_ppm=0, total=100_000)
    rivals = [Fraction(100_000)] * 6  # honest pools less desirable than an attacker at cost 0
    assert choose_pools(rules, rivals, 40, 0, 0) == 4
    assert expected_stake(rules, rivals, 40, 4, 0, 0) == 4 * rules.saturated_stake
    # a rival it cannot beat keeps its slot
    strong = [Fraction(10**9), *rivals]
    assert expected_stake(rules, strong, 40, 4, 0, 0) == 3 * rules.saturated_stake + 10


def test_the_closed_form_pledge_is_where_an_attacker_pool_starts_to_out_rank_the_rival() -> None:
    """lambda* = ((D + c)(1 + a0)/R - z0)/a0: a pledge just above it out-ranks D, just below it does not."""
    rules = Rules(pot=1_000_000, payouts=1, k=4, a0_ppm=500_000, total=1_000_000)
    rival = Fraction(200_000)
    needed = pledge_needed(rules, rival, 10_000)
    assert needed == ((rival + 10_000) * Fraction(3, 2) / 1_000_000 - Fraction(1, 4)) / Fraction(1, 2)
    above, below = int(needed * rules.total) + 1, int(needed * rules.total) - 1
    full = [rival] * rules.k  # the top k taken: a slot only by out-ranking one of them
    assert expected_stake(rules, full, above, 1, 10_000, 0) == rules.saturated_stake
    assert expected_stake(rules, full, below, 1, 10_000, 0) == below  # left with its pledge
    flat = Rules(pot=1_000_000, payouts=1, k=4, a0_ppm=0, total=1_000_000)
    assert pledge_needed(flat, Fraction(200_000), 10_000) == 0  # 250,000 - 10,000 beats it without pledge
    assert pledge_needed(flat, Fraction(245_000), 10_000) is None  # and no pledge helps against this one


def test_resolving_adds_the_chosen_pools_registering_at_the_attackers_epoch() -> None:
    config = tiny()
    chosen = plan(config, config.seed)
    resolved = resolve(config, config.seed)
    assert resolved.attacker is not None and resolved.attacker.resolved
    mine = [p for p in resolved.pools if p.name in resolved.attacker.names]
    assert len(mine) == chosen.pools >= 1
    assert {p.pledge for p in mine} == {chosen.stake // chosen.pools}
    assert all(p.enters_epoch == 1 and p.fixed_cost == 50000 and p.margin_ppm == 0 for p in mine)
    assert sum(e.kind == "new_pool" for e in resolved.events) == len(mine)
    assert resolve(resolved, config.seed) is resolved


def test_operators_leave_the_attackers_pools_alone_and_its_share_is_read_from_the_record() -> None:
    config = resolve(tiny(), 3)
    assert config.attacker is not None
    records = list(FastForward(config).run())
    actions = [a for r in records for a in r["operators"]]
    assert not any(a.startswith("attacker") for a in actions)
    last = records[-1]
    mine = sum(stake for name, (stake, _, status) in last["pools"].items() if name in config.attacker.names)
    total = sum(stake for stake, _, status in last["pools"].values() if status == "active")
    assert share_ppm(last, config.attacker.names) == mine * PPM // total > 0


def test_bisection_finds_the_least_stake_that_reaches() -> None:
    needed, tries, failed = bisect_stake(lambda s: s >= 12_345, 10)
    assert needed is not None and 12_345 <= needed <= failed * 110 // 100 and failed < 12_345
    assert tries <= 2 + 7  # on a log scale: 0.01% to 33% (a factor 3,333) within 10% in seven halvings
    assert bisect_stake(lambda s: False, 10)[0] is None
    assert bisect_stake(lambda s: True, 10) == (100, 2, 0)  # even 0.01% reached: an upper bound


def test_more_pledge_influence_never_makes_the_attack_cheaper() -> None:
    """Measured on whole runs at a tiny size: the least own stake for a third of the active stake."""
    needed = []
    for a0 in (0, 300_000, 1_000_000):
        found = needed_stake(tiny(pledge_influence_ppm=a0), 3, 8, 50)
        needed.append(found.needed_ppm if found.needed_ppm is not None else PPM)
        if found.needed_ppm is not None:
            assert found.share_ppm >= THIRD_PPM
    assert needed == sorted(needed), needed
    assert needed[0] < needed[-1], needed  # and pledge influence does make it dearer here
