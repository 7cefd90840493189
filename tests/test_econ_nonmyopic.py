"""The non-myopic ranking (`network.econ.nonmyopic`) and the `nonmyopic` policy, on numbers small enough
to work out by hand."""

from __future__ import annotations

import random
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from network.econ.config import DelegatorClass
from network.econ.nonmyopic import (
    Outlook,
    Rules,
    Terms,
    ceiling_rate_ppm,
    desirability,
    held_rate_ppm,
    move_rate_ppm,
    potential_reward,
    ranking,
    top_pools,
)
from network.econ.policies import Holding, Market, Quote, nonmyopic_policy
from node.core.genesis import PPM, Params

# k = 2 over a total of 1,000: saturation at 500; 100 to share per payout, one payout an epoch.
RULES = Rules(pot=100, payouts=1, k=2, a0_ppm=0, total=1000)
A = Terms(b"a", "a", stake=200, pledge=50, fixed_cost=10)
B = Terms(b"b", "b", stake=300, pledge=50, fixed_cost=20, margin_ppm=100_000)
C = Terms(b"c", "c", stake=400, pledge=50, fixed_cost=60)


def test_desirability_is_what_members_share_at_saturation() -> None:
    # f at saturation = 100 * 1/2 = 50
    assert desirability(RULES, A) == 40  # (50 - 10)
    assert desirability(RULES, B) == 27  # (50 - 20) * 0.9
    assert desirability(RULES, C) == 0  # the cost eats it all


def test_pledge_influence_raises_desirability_as_maxpool_says() -> None:
    rules = Rules(pot=100, payouts=1, k=2, a0_ppm=500_000, total=1000)
    pledged = Terms(b"p", "p", stake=100, pledge=100)
    # (z0 + p * a0) / (1 + a0) with z0 = 1/2, p = 1/10, a0 = 1/2: 0.55 / 1.5
    assert desirability(rules, pledged) == Fraction(110, 3)
    assert potential_reward(rules, 500, 100, PPM) == Fraction(110, 3)


def test_the_top_k_are_the_most_desirable_and_ties_go_to_the_larger_stake() -> None:
    assert [o.name for o in ranking(RULES, [C, B, A])] == ["a", "b", "c"]
    assert top_pools(RULES, [C, B, A]) == {b"a", b"b"}
    twin = Terms(b"t", "t", stake=250, pledge=50, fixed_cost=10)  # A's terms, more stake
    assert top_pools(RULES, [A, B, twin]) == {b"a", b"t"}
    assert top_pools(Rules(100, 1, 0, 0, 1000), [A, B, C]) == {b"a", b"b", b"c"}  # k = 0: no cut


def test_member_rewards_expect_top_pools_to_saturate_and_the_rest_to_empty() -> None:
    # a top pool below saturation: as if it held 500, (50 - 10) / 500 per unit = 80,000 ppm
    assert move_rate_ppm(RULES, A, 100, True) == 80_000
    assert ceiling_rate_ppm(RULES, A) == 80_000
    full = Terms(b"f", "f", stake=450, pledge=50, fixed_cost=10)
    assert move_rate_ppm(RULES, full, 100, True) == 72_727  # 550 earns no more than 500: 40 / 550
    assert held_rate_ppm(RULES, full, 100, True) == 80_000  # already in: 450 fills to 500
    # outside the top: only the pledge and the delegation stay, 150 earns 15 < 60
    assert move_rate_ppm(RULES, C, 100, False) == 0
    cheap = Terms(b"x", "x", stake=400, pledge=50, fixed_cost=5)
    assert move_rate_ppm(RULES, cheap, 100, False) == 66_666  # (15 - 5) / 150
    assert held_rate_ppm(RULES, cheap, 100, False) == 66_666


def test_rules_of_the_chain_count_a_payout_per_block_or_per_epoch() -> None:
    per_block = Params(block_reward=7, epoch_length=10, saturation_k=3)
    assert Rules.of(per_block, 99) == Rules(pot=7, payouts=10, k=3, a0_ppm=0, total=99)
    per_epoch = Params(block_reward=7, epoch_length=10, saturation_k=3, epoch_rewards=1)
    assert Rules.of(per_epoch, 99) == Rules(pot=70, payouts=1, k=3, a0_ppm=0, total=99)


def test_the_best_pool_for_a_delegation_is_one_with_room_for_it() -> None:
    full = Terms(b"f", "f", stake=450, pledge=50, fixed_cost=10)
    roomy = Terms(b"r", "r", stake=100, pledge=50, fixed_cost=10)
    outlook = Outlook(RULES, (full, roomy, C))
    assert outlook.top == {b"f", b"r"}
    assert outlook.best_for(100) == (roomy, 80_000)
    assert outlook.best_for(100, leaving=b"r") == (full, 72_727)
    assert outlook.bound_ppm == 80_000


def quote(name: str, stake: int, **terms: int) -> Quote:
    return Quote(name.encode(), name, True, stake, 0, PPM, **terms)


def test_the_policy_leaves_an_over_saturated_pool_for_an_empty_top_pool_quoted_0_today() -> None:
    big = quote("big", 700, pledge=50, fixed_cost=10)
    empty = quote("empty", 50, pledge=50, fixed_cost=10)  # today it earns 5 < 10: quoted 0
    spec = DelegatorClass("d", 1, "nonmyopic", "equal", switching_cost_ppm=20_000)
    market = Market((big, empty), RULES)
    rng = random.Random(0)
    assert nonmyopic_policy(Holding(b"big", 100, 0), market, spec, rng) == b"empty"
    assert nonmyopic_policy(Holding(None, 0, 100), market, spec, rng) == b"empty"
    assert nonmyopic_policy(Holding(b"big", 100, 0, locked_until=3), market, spec, rng) == b"big"
    settled = Market((quote("big", 480, pledge=50, fixed_cost=10), empty), RULES)
    assert nonmyopic_policy(Holding(b"big", 100, 0), settled, spec, rng) == b"big"  # at the ceiling already


terms = st.builds(
    Terms,
    address=st.binary(min_size=1, max_size=4),
    name=st.text("abcdef", min_size=1, max_size=3),
    stake=st.integers(0, 2_000),
    pledge=st.integers(0, 300),
    fixed_cost=st.integers(0, 80),
    margin_ppm=st.integers(0, PPM),
    performance_ppm=st.integers(0, PPM),
)
rules = st.builds(
    Rules,
    pot=st.integers(1, 500),
    payouts=st.integers(1, 3),
    k=st.integers(0, 6),
    a0_ppm=st.sampled_from([0, 300_000]),
    total=st.integers(1, 3_000),
)


@given(rules, st.lists(terms, max_size=8, unique_by=lambda t: (t.address, t.name)), st.randoms())
def test_the_ranking_does_not_depend_on_the_order_pools_are_listed_in(
    rules: Rules, offers: list[Terms], rnd: random.Random
) -> None:
    shuffled = list(offers)
    rnd.shuffle(shuffled)
    assert top_pools(rules, shuffled) == top_pools(rules, offers)
    assert Outlook(rules, tuple(shuffled)).best_for(50) == Outlook(rules, tuple(offers)).best_for(50)


@given(rules, terms, st.integers(0, 3_000), st.integers(1, 1_000))
def test_a_saturated_pool_never_beats_an_otherwise_identical_unsaturated_one_for_a_move(
    rules: Rules, offer: Terms, extra: int, amount: int
) -> None:
    rules = Rules(rules.pot, rules.payouts, max(rules.k, 2), rules.a0_ppm, rules.total)  # both in the top k
    room = int(rules.saturated_stake)
    lo = Terms(b"lo", "z", min(offer.stake, room), offer.pledge, offer.fixed_cost, offer.margin_ppm)
    hi = Terms(b"hi", "a", room + 1 + extra, offer.pledge, offer.fixed_cost, offer.margin_ppm)
    assert move_rate_ppm(rules, hi, amount, True) <= move_rate_ppm(rules, lo, amount, True)
    found = Outlook(rules, (hi, lo)).best_for(amount)
    assert found is not None and found[0] == lo
