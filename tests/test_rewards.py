"""Reward sharing: the Cardano formula in exact arithmetic, the reserve, and the ledger that applies it.

The properties hold the promises node.core.rewards makes: with both
parameters off every pool is paid exactly what the ledger paid before reward
sharing existed (a copy of that code is the reference here), and inside a
pool each party the floor of its stated share (cardano-ledger's leaderRew
and memberRew, written out here from the spec);
supply (balances + stake + unbonding + reserve) is conserved by every block,
transaction and slash with sharing on; a saturated pool's extra stake earns
nothing; at or above half saturation more pledge never earns less; and a
pool's reward is split among its operator, members and the dust to the unit.
"""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.core import ledger as L
from node.core import rewards as R
from node.core import shares as S
from node.core.canonical import canonical
from node.core.envelopes import tx_bytes
from node.core.genesis import PPM, Delegation, Genesis, GenesisValidator, Params
from node.core.keys import Keypair, address_of
from node.core.ledger import (
    BlockContext,
    FrozenMap,
    Pool,
    active_powers,
    apply_block,
    genesis_ledger,
    pool_power,
    start_epoch,
    supply_is_conserved,
    total_supply,
)
from node.core.tx import TransferShares, sign_tx
from tests.test_ledger import (
    COMMITTEE,
    D1,
    D2,
    NEWCOMER,
    PARAMS,
    V1,
    V2,
    V3,
    assert_no_negative_holdings,
    balance,
    block,
    block_spec,
    equivocation,
    make_test_genesis,
    run_block,
)

SHARING = Params(saturation_k=4, pledge_influence_ppm=300_000)


@pytest.fixture(autouse=True)
def factors_computed_afresh() -> None:
    """Every test here computes the reward factors it checks instead of reading them from the cache.

    `_reward_factor` keeps its answers for the life of the process, so a test asking for a factor an
    earlier test (or an earlier run in the same process) already asked for would check that stored
    value, not the formula as it stands: a broken saturation point would go unseen.
    """
    R._reward_factor.cache_clear()


# ------------------------------------------------------------------ the reference: rewards before sharing


def old_block_pool_rewards(
    proposer: bytes | None, signers: tuple[tuple[bytes, int], ...], params: Params
) -> dict[bytes, int]:
    """The ledger's block_pool_rewards as it was before reward sharing, verbatim in its arithmetic."""
    proposer_share = (
        params.block_reward * params.proposer_reward_ppm // PPM if signers else params.block_reward
    )
    weight = sum(w for _, w in signers)
    shares = (
        tuple((k, (params.block_reward - proposer_share) * w // weight) for k, w in signers) if weight else ()
    )
    remainder = params.block_reward - proposer_share - sum(a for _, a in shares)
    merged: dict[bytes, int] = {}
    for key, amount in shares + (((proposer, proposer_share + remainder),) if proposer is not None else ()):
        merged[key] = merged.get(key, 0) + amount
    return {k: v for k, v in merged.items() if v > 0}


def cardano_split(pool: Pool, reward: int) -> tuple[int, dict[bytes, Fraction]]:
    """(the operator's pay, each member's stated share) by cardano-ledger's leaderRew and memberRew.

    Written from the spec in exact fractions: with f the reward, c the fixed cost, m the margin,
    s the pledge, sigma the stake, t a member's stake (its shares' exact worth), the operator gets
    c + floor((f - c)(m + (1 - m) s/sigma)) and a member floor((f - c)(1 - m) t/sigma); all to the
    operator when f <= c (or when the pool has no stake).
    """
    sigma = pool_power(pool)
    if reward <= pool.fixed_cost or sigma == 0:
        return reward, {}
    f_c, m = reward - pool.fixed_cost, Fraction(pool.margin_ppm, PPM)
    leader = pool.fixed_cost + (f_c * (m + (1 - m) * Fraction(min(pool.pledge, sigma), sigma))).__floor__()
    total = pool.total_shares
    stated = {
        holder: f_c * (1 - m) * Fraction(count * pool.member_tokens, total) / sigma
        for holder, count in pool.shares.items()
    }
    return leader, stated


# ------------------------------------------------------------------ strategies

ADDRESSES = [bytes([i]) * 20 for i in range(1, 9)]

pools = st.builds(
    lambda pledge, fixed, margin, shares, rate_ppm, compounding: Pool(
        address=ADDRESSES[0],
        name="p",
        public_key=b"",
        operator=ADDRESSES[0],
        pledge=pledge,
        fixed_cost=fixed,
        margin_ppm=margin,
        shares=FrozenMap(shares),
        member_tokens=sum(shares.values()) * rate_ppm // PPM,  # slashed (< 1) or compounded (> 1)
        compounding=compounding,
    ),
    st.integers(0, 10**9),
    st.integers(0, 1000),
    st.integers(0, PPM),
    st.dictionaries(st.sampled_from(ADDRESSES[1:]), st.integers(1, 10**9), max_size=6),
    st.integers(1, 3 * PPM),
    st.booleans(),
)
shares = st.fractions(min_value=0, max_value=1)
params_on = st.builds(
    lambda k, a0: Params(saturation_k=k, pledge_influence_ppm=a0),
    st.integers(0, 1000),
    st.integers(0, PPM),
)


# ------------------------------------------------------------------ the formula


def test_off_is_a_factor_of_exactly_one() -> None:
    assert not R.sharing_is_on(Params())
    assert R.reward_factor(600, 100, 12_000, Params()) == 1
    assert R.shared_reward(533, 600, 100, 12_000, Params()) == 533


def test_cardano_max_pool_on_mainnet_parameters() -> None:
    """k = 500, a0 = 0.3: a saturated, unpledged pool earns R*z0/(1+a0); a fully pledged one R*z0."""
    z0, a0 = R.saturation_point(500), Fraction(3, 10)
    assert R.max_pool_share(z0, Fraction(0), z0, a0) == z0 / (1 + a0)
    assert R.max_pool_share(z0, z0, z0, a0) == z0
    assert R.max_pool_share(2 * z0, Fraction(0), z0, a0) == z0 / (1 + a0)  # saturated: no more


def test_a_saturated_pools_factor_is_its_saturation_point_over_its_share() -> None:
    params = Params(saturation_k=4)
    assert R.reward_factor(6000, 1000, 12_000, params) == Fraction(1, 2)
    assert R.reward_factor(2000, 1000, 12_000, params) == 1
    assert R.saturation_ppm(6000, 12_000, 4) == 2 * PPM
    assert R.saturation_ppm(6000, 12_000, 0) is None


def test_below_half_saturation_more_pledge_can_earn_less() -> None:
    """Cardano's formula as published, kept as is: its pledge term peaks at p = sigma*z0/(2(z0-sigma)).

    So pledge influence rewards pledge only for pools at or above half the saturation point; a
    small fully pledged pool earns less than the same pool half pledged. README says so.
    """
    z0, a0, sigma = Fraction(1, 4), Fraction(3, 10), Fraction(1, 20)
    assert R.max_pool_share(sigma, sigma, z0, a0) < R.max_pool_share(sigma, sigma / 2, z0, a0)


def test_apparent_performance_counts_the_unfilled_window_as_signed() -> None:
    assert R.apparent_performance_ppm(0, 20) == PPM
    assert R.apparent_performance_ppm(2, 20) == 900_000  # 2 misses of 20 (a count, not the bit-int)
    assert R.apparent_performance_ppm(5, 0) == PPM


def test_apparent_performance_is_a_floor_in_ppm_down_to_zero_for_a_window_of_one() -> None:
    assert R.apparent_performance_ppm(1, 3) == 666_666  # 2/3 of PPM, floored to an integer
    assert R.apparent_performance_ppm(1, 1) == 0
    assert R.apparent_performance_ppm(0, 1) == PPM


def test_the_saturation_point_is_one_over_k_and_the_whole_stake_when_k_is_zero() -> None:
    assert R.saturation_point(4) == Fraction(1, 4)
    assert R.saturation_point(500) == Fraction(1, 500)
    assert R.saturation_point(0) == 1


def test_saturation_in_ppm_is_a_floor_of_stake_over_total_over_k() -> None:
    """Stake 1000 of 4500 with k = 4: 1000 * 4 / 4500 = 0.888...; with k = 1, 1500 of 4500 is a third."""
    assert R.saturation_ppm(1000, 4500, 4) == 888_888
    assert R.saturation_ppm(1500, 4500, 1) == 333_333
    assert R.saturation_ppm(1000, 0, 4) == 0  # nothing bonded at all: no pool is saturated


def test_the_smallest_saturation_or_pledge_setting_turns_sharing_on() -> None:
    """k = 1 caps a pool at the whole bonded stake; a0 = 1 ppm already pays pledge a little more."""
    assert R.sharing_is_on(Params(saturation_k=1))
    assert R.sharing_is_on(Params(pledge_influence_ppm=1))
    assert R.reward_factor(600, 0, 12_000, Params(pledge_influence_ppm=1)) == Fraction(PPM, PPM + 1)


def test_a_shared_reward_is_the_floor_of_the_share_times_the_cardano_factor() -> None:
    """k = 4, a0 = 0.3, stake 3000 of 12000 with pledge 1500: sigma = 1/4 = z0, p = 1/8.

    maxPool/R = (1/4 + 1/8 * 3/10 * (1/4 - 1/8 * 0 / (1/4)) / (1/4)) / (1 + 3/10) = (23/80) / (13/10)
    = 23/104, so the factor is (23/104) / (1/4) = 23/26 and a share of 1000 pays floor(23000/26) = 884.
    """
    assert R.max_pool_share(Fraction(1, 4), Fraction(1, 8), Fraction(1, 4), Fraction(3, 10)) == Fraction(
        23, 104
    )
    assert R.reward_factor(3000, 1500, 12_000, SHARING) == Fraction(23, 26)
    assert R.shared_reward(1000, 3000, 1500, 12_000, SHARING) == 884
    assert R.shared_rewards({ADDRESSES[1]: 1000}, {ADDRESSES[1]: (3000, 1500)}, 12_000, SHARING) == {
        ADDRESSES[1]: 884
    }


def test_a_pool_whose_shared_reward_floors_to_nothing_is_left_out_and_one_unit_is_paid() -> None:
    """k = 4: stake 6000 of 12000 is twice saturated, factor 1/2; shares 1 and 2 pay 0 (left out) and 1."""
    params = Params(saturation_k=4)
    stakes = {address: (6000, 1000) for address in ADDRESSES[1:3]}
    paid = R.shared_rewards({ADDRESSES[1]: 1, ADDRESSES[2]: 2}, stakes, 12_000, params)
    assert paid == {ADDRESSES[2]: 1}
    assert R.withheld({ADDRESSES[1]: 1, ADDRESSES[2]: 2}, paid) == 2


def test_nothing_is_split_by_weights_that_add_up_to_zero() -> None:
    assert R.split_by_weight(10, ((ADDRESSES[1], 0), (ADDRESSES[2], 0))) == ()
    assert R.split_by_weight(10, ()) == ()


def test_the_reserve_funds_the_payout_first_and_takes_what_was_withheld() -> None:
    """(minted, reserve after) for the saturated block of the ledger's tests and the one after it.

    Empty reserve, 733 paid, 267 withheld: all 733 minted plus the 267 kept, (1000, 267). Next block,
    same again: the 267 in the reserve fund part of the 733, so 733 - 267 + 267 = 733 are minted and
    the reserve is 267 - 267 + 267 = 267. A reserve larger than the payout mints nothing.
    """
    assert R.settle_reserve(0, 733, 267) == (1000, 267)
    assert R.settle_reserve(267, 733, 267) == (733, 267)
    assert R.settle_reserve(1000, 300, 0) == (0, 700)


@pytest.mark.parametrize("compounding", [False, True])
def test_a_pool_with_no_stake_pays_its_whole_reward_to_the_operator(compounding: bool) -> None:
    """Pledge and member tokens both 0 (everything slashed away): members hold nothing to be paid by."""
    pool = replace(quoted_pool(0, 0), shares=FrozenMap({ADDRESSES[1]: 5}), compounding=compounding)
    assert R.split_pool_reward(pool, 1000) == R.PoolPayout(1000, (), 0)


@given(shares, shares, params_on)
def test_the_factor_is_between_zero_and_one(sigma: Fraction, pledge: Fraction, params: Params) -> None:
    total = 10**6
    stake = max(1, int(sigma * total))
    factor = R.reward_factor(stake, int(pledge * stake), total, params)
    assert 0 <= factor <= 1


@given(st.integers(1, 10**6), st.integers(1, 10**6), st.integers(1, 1000), st.integers(0, PPM))
def test_stake_past_saturation_earns_nothing_more(stake: int, extra: int, k: int, a0_ppm: int) -> None:
    """What a pool can earn (factor * stake) stops growing at total/k, with its pledge held fixed."""
    params, total = Params(saturation_k=k, pledge_influence_ppm=a0_ppm), 10**7
    cap = Fraction(total, k)
    if stake < cap:
        return
    earned = R.reward_factor(stake, 0, total, params) * stake
    assert R.reward_factor(stake + extra, 0, total, params) * (stake + extra) == earned


@given(shares, shares, shares, st.integers(1, 1000), st.integers(1, PPM))
def test_more_pledge_never_earns_less_at_or_above_half_saturation(
    sigma: Fraction, low: Fraction, high: Fraction, k: int, a0_ppm: int
) -> None:
    z0, a0 = R.saturation_point(k), Fraction(a0_ppm, PPM)
    if min(sigma, z0) < z0 / 2:
        return
    p_low, p_high = sorted((low * sigma, high * sigma))  # pledge is part of the stake
    assert R.max_pool_share(sigma, p_low, z0, a0) <= R.max_pool_share(sigma, p_high, z0, a0)
    if p_low < p_high <= z0 and sigma >= z0:
        assert R.max_pool_share(sigma, p_low, z0, a0) < R.max_pool_share(sigma, p_high, z0, a0)


@given(pools, st.integers(0, 10**9))
def test_the_pool_reward_splits_by_cardanos_floors_and_the_dust_is_paid_to_no_one(
    pool: Pool, reward: int
) -> None:
    """Sum of payouts + dust == reward; each member gets at least (exactly) the floor of its stated share;
    the operator gets cost + the floor of its margin and own stake's part; the dust is under one unit
    per party paid (each floor leaves less than one)."""
    payout = R.split_pool_reward(pool, reward)
    assert payout.operator + sum(a for _, a in payout.members) + payout.compounded + payout.dust == reward
    assert payout.operator >= 0 and payout.dust >= 0 and all(amount > 0 for _, amount in payout.members)
    leader, stated = cardano_split(pool, reward)
    assert payout.operator == leader
    if pool.compounding:
        assert payout.members == () and payout.compounded == sum(stated.values(), Fraction(0)).__floor__()
        assert payout.dust <= 1
    else:
        assert payout.compounded == 0
        assert dict(payout.members) == {h: v.__floor__() for h, v in stated.items() if v >= 1}
        assert payout.dust <= len(stated)


def test_a_members_pay_is_the_floor_of_its_stated_share_and_the_dust_is_left_over() -> None:
    """Reward 1000, fixed cost 10, margin 10%, pledge 1000, members 1 and 2 holding 1000 each (sigma 3000):
    operator 10 + floor(990 * (0.1 + 0.9/3)) = 10 + floor(396) = 406; each member
    floor(990 * 0.9/3) = floor(297) = 297; dust 1000 - 406 - 594 = 0. With reward 1001: operator
    10 + floor(396.4) = 406, members floor(297.3) = 297 each, dust 1 (before: to the operator)."""
    members = FrozenMap({ADDRESSES[1]: 1000, ADDRESSES[2]: 1000})
    pool = replace(quoted_pool(1000, 2000, margin_ppm=100_000, fixed_cost=10), shares=members)
    assert R.split_pool_reward(pool, 1000) == R.PoolPayout(
        406, ((ADDRESSES[1], 297), (ADDRESSES[2], 297)), 0, 0
    )
    assert R.split_pool_reward(pool, 1001) == R.PoolPayout(
        406, ((ADDRESSES[1], 297), (ADDRESSES[2], 297)), 0, 1
    )
    assert R.split_pool_reward(pool, 10) == R.PoolPayout(10, (), 0)  # f <= c: all of it is the cost
    lone = replace(quoted_pool(0, 1), margin_ppm=100_000)  # a stake of one unit, a member's
    assert R.split_pool_reward(lone, 100) == R.PoolPayout(10, ((ADDRESSES[1], 90),), 0, 0)


# ------------------------------------------------------------------ the ledger


signer_sets = st.lists(
    st.tuples(st.sampled_from(ADDRESSES), st.integers(1, 10**6)), max_size=8, unique_by=lambda t: t[0]
)


@given(
    st.one_of(st.none(), st.sampled_from(ADDRESSES)), signer_sets, st.integers(0, 10**6), st.integers(0, PPM)
)
def test_block_shares_equal_the_old_rewards(
    proposer: bytes | None, signers: list[tuple[bytes, int]], reward: int, proposer_ppm: int
) -> None:
    params = Params(block_reward=reward, proposer_reward_ppm=proposer_ppm)
    got = R.block_shares(reward, proposer_ppm, proposer, tuple(signers))
    assert got == old_block_pool_rewards(proposer, tuple(signers), params)


def random_genesis(stakes: list[tuple[int, int, int, int]], params: Params) -> Genesis:
    """Pools (pledge, delegated, fixed cost, margin) with one delegator each, shared across two pools."""
    delegators = [Keypair.deterministic(f"d{i % 3}") for i in range(len(stakes))]
    validators = tuple(
        GenesisValidator(
            f"v{i}",
            Keypair.deterministic(f"v{i}").public,
            pledge=pledge,
            fixed_cost=fixed,
            margin_ppm=margin,
            delegations=(Delegation(delegators[i].public, delegated),) if delegated else (),
        )
        for i, (pledge, delegated, fixed, margin) in enumerate(stakes)
    )
    return Genesis("rewards-test", 0, params, validators)


pool_terms = st.tuples(st.integers(1, 10**6), st.integers(0, 10**6), st.integers(0, 50), st.integers(0, PPM))


@given(
    st.lists(pool_terms, min_size=1, max_size=6),
    st.lists(st.tuples(st.integers(0, 5), st.lists(st.booleans(), min_size=6, max_size=6)), max_size=6),
    st.integers(0, 10**6),
)
def test_with_sharing_off_every_pool_earns_what_it_did_before_split_by_cardanos_floors(
    terms: list[tuple[int, int, int, int]], blocks: list[tuple[int, list[bool]]], reward: int
) -> None:
    """Each pool's block share is the old one unit for unit; inside it, leaderRew and memberRew, and
    the dust is not minted (the reserve stays 0 with sharing off)."""
    params = replace(Params(), block_reward=reward)
    ledger = genesis_ledger(random_genesis(terms, params))
    addresses = sorted(ledger.pools)
    for height, (proposer_i, flags) in enumerate(blocks, start=2):
        committee = active_powers(ledger)
        signers = frozenset(a for a, signed in zip(addresses, flags, strict=False) if signed)
        proposer = addresses[proposer_i % len(addresses)]
        ctx = BlockContext(height, 0, proposer, committee, signers, ())
        after, _ = apply_block(ledger, ctx, (), params, "rewards-test")
        paid_signers = tuple((a, p) for a, p in committee if a in signers)
        expected: dict[bytes, int] = {}
        for address, amount in old_block_pool_rewards(proposer, paid_signers, params).items():
            leader, stated = cardano_split(ledger.pools[address], amount)
            for account, share in ((ledger.pools[address].operator, leader), *stated.items()):
                expected[account] = expected.get(account, 0) + share.__floor__()
        for account in set(after.accounts) | set(expected):
            before = ledger.accounts[account].balance if account in ledger.accounts else 0
            assert after.accounts[account].balance - before == expected.get(account, 0)
        assert after.reserve == 0 and after.issued - ledger.issued == sum(expected.values())
        ledger = after


@pytest.mark.parametrize("proposer", ["tombstoned", "not a pool"])
def test_a_proposer_that_cannot_be_paid_leaves_its_share_unminted(proposer: str) -> None:
    """v1 (4000) and v2 (2000) signed: 800 * 4000/6000 = 533 and 266 are paid; the proposer's 200 and
    the floor remainder 1 go to nobody, so 799 are issued instead of 1000, less the 2 units of dust
    v1's split leaves (test_ledger's hand-computed split: 179 + 235 + 117 of 533): 797."""
    ledger = genesis_ledger(make_test_genesis())
    if proposer == "tombstoned":
        ledger, _ = block(ledger, height=2, proposer=V2, evidence=(equivocation(V3),))
        assert ledger.pools[V3.address].status == L.TOMBSTONED
    key = V3 if proposer == "tombstoned" else NEWCOMER
    after, events = block(ledger, height=3, proposer=key, committee=COMMITTEE, signers=(V1, V2))
    assert {e.validator: e.amount for e in events if e.kind == "rewarded"} == {
        V1.address: 533,
        V2.address: 266,
    }
    assert after.issued - ledger.issued == 797 and balance(after, key) == balance(ledger, key)


def test_signers_with_a_committee_power_of_one_are_paid_by_it() -> None:
    """Three seats of power 1, v1 and v2 sign, v2 proposes: 800 split 400/400, v2 also takes its 200."""
    ledger = genesis_ledger(make_test_genesis())
    committee = tuple((key.address, 1) for key in (V1, V2, V3))
    _, events = block(ledger, height=2, proposer=V2, committee=committee, signers=(V1, V2))
    assert {e.validator: e.amount for e in events if e.kind == "rewarded"} == {
        V1.address: 400,
        V2.address: 600,
    }


def test_a_compounding_pools_members_part_is_added_to_its_member_tokens() -> None:
    """v3 (pledge 1000, d1's 1000, margin 5%) proposes height 1 and takes all 1000: margin 50, members'
    950 * 1000/2000 = 475 compounded (d1's stake 1000 -> 1475, its balance unchanged), operator 525."""
    ledger = genesis_ledger(make_test_genesis())
    pools = ledger.pools.update({V3.address: replace(ledger.pools[V3.address], compounding=True)})
    ledger = replace(ledger, pools=pools)
    after, _ = block(ledger, proposer=V3)
    v3 = after.pools[V3.address]
    assert (v3.member_tokens, v3.pledge, L.stake_of(v3, D1.address)) == (1475, 1000, 1475)
    assert balance(after, V3) - balance(ledger, V3) == 525 and balance(after, D1) == balance(ledger, D1)
    assert after.pools[V1.address] == ledger.pools[V1.address]
    assert supply_is_conserved(after) and total_supply(after) == total_supply(ledger) + 1000


def test_the_state_hash_leaves_out_sharing_and_the_reserve_while_unset() -> None:
    """So every chain that does not use reward sharing keeps the hashes it had (the golden runs too)."""
    assert len(canonical(Params())) == len(canonical(SHARING)) - 2
    ledger = genesis_ledger(make_test_genesis())
    assert len(canonical(replace(ledger, reserve=5))) == len(canonical(ledger)) + 1


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(block_spec, min_size=1, max_size=12), params_on, st.sampled_from([0, 1]))
def test_supply_with_the_reserve_is_conserved_by_every_block_tx_and_slash(
    specs: list, sharing: Params, epoch_rewards: int
) -> None:
    params = replace(
        PARAMS,
        saturation_k=sharing.saturation_k,
        pledge_influence_ppm=sharing.pledge_influence_ppm,
        epoch_rewards=epoch_rewards,
    )
    ledger = genesis_ledger(make_test_genesis(params))
    committee: tuple[tuple[bytes, int], ...] = ()
    epoch = 0
    for height, spec in enumerate(specs, start=1):
        before = ledger
        ledger, events = run_block(ledger, height, epoch, committee, spec, params)
        minted, burned = ledger.issued - before.issued, ledger.slashed - before.slashed
        paid = sum(e.amount for e in events if e.kind == "rewarded")
        assert total_supply(ledger) == total_supply(before) + minted - burned
        assert ledger.reserve >= 0 and paid <= params.block_reward
        # what was paid or kept, and nothing else: but for the splits' dust (under a unit per party),
        # which the reserve takes back with sharing on and is never minted with it off
        dust = paid + ledger.reserve - before.reserve - minted
        assert 0 <= dust <= sum(1 + len(p.shares) for p in before.pools.values())
        assert dust == 0 or not epoch_rewards  # accrued rewards are split at the epoch start
        assert_no_negative_holdings(ledger)
        assert supply_is_conserved(ledger)
        committee = active_powers(ledger)
        if spec[-1]:
            epoch += 1
            ledger, _ = start_epoch(ledger, epoch, params)
            assert supply_is_conserved(ledger)


# ------------------------------------------------------------------ paid per epoch


def test_epoch_rewards_accrue_in_the_pool_and_are_paid_at_the_epoch_start_with_one_fixed_cost() -> None:
    """The same blocks pay the same pools; per epoch the fixed cost comes off once instead of per block.

    The split's dust (not minted with sharing off) is left once per epoch instead of once per block, so
    less of what the pools earned goes unminted."""
    signers = (V1, V2, V3)
    committee = tuple((k.address, 1000) for k in signers)
    paid: dict[int, L.Ledger] = {}
    earned = {0: 0, 1: 0}
    for mode in (0, 1):
        params = replace(PARAMS, epoch_rewards=mode)
        ledger = genesis_ledger(make_test_genesis(params))
        for height in range(1, 6):
            ledger, events = block(ledger, params=params, height=height, committee=committee, signers=signers)
            earned[mode] += sum(e.amount for e in events if e.kind == "rewarded")
        if mode:
            assert sum(ledger.accrued.values()) == ledger.issued > 0  # nobody has been paid yet
            assert balance(ledger, D1) == balance(genesis_ledger(make_test_genesis(params)), D1)
        ledger, _ = start_epoch(ledger, 1, params)
        assert not ledger.accrued and supply_is_conserved(ledger)
        paid[mode] = ledger
    members = [balance(paid[m], D1) + balance(paid[m], D2) for m in (0, 1)]
    operator = [balance(paid[m], V1) for m in (0, 1)]
    assert earned[0] == earned[1] >= paid[1].issued > paid[0].issued
    assert operator[0] > operator[1] and members[1] > members[0]  # four fewer fixed costs come off


# ------------------------------------------------------------------ the simulator


def delegated_genesis(pools_terms: dict[str, tuple[int, int]], params: Params) -> Any:
    """A replacement for the simulator's genesis: pool name -> (pledge, delegated by its own delegator)."""

    def sim_genesis(config: Any) -> tuple[Genesis, dict[str, Keypair]]:
        keys = {name: Keypair.deterministic(f"{config.chain_id}/{name}") for name in pools_terms}
        validators = tuple(
            GenesisValidator(
                name,
                keys[name].public,
                pledge=pledge,
                margin_ppm=50_000,
                delegations=(Delegation(Keypair.deterministic(f"member-{name}").public, delegated),),
            )
            for name, (pledge, delegated) in pools_terms.items()
        )
        return Genesis(
            config.chain_id, 0, replace(params, committee_size=config.committee_size), validators
        ), keys

    return sim_genesis


def simulate(
    monkeypatch: pytest.MonkeyPatch,
    terms: dict[str, tuple[int, int]],
    params: Params,
    heights: int,
    **config: Any,
) -> Any:
    """Run the real simulator on `terms` (and SimConfig fields in `config`); the slowest honest node's final state."""
    from network.sim import runner
    from network.sim.config import SimConfig

    final: list[Any] = []
    summary = runner.validator_summary

    def keep(state: Any) -> Any:
        final.append(state)
        return summary(state)

    monkeypatch.setattr(runner, "sim_genesis", delegated_genesis(terms, params))
    monkeypatch.setattr(runner, "validator_summary", keep)
    result = runner.run_simulation(SimConfig(validators=len(terms), heights=heights, **{"seed": 1, **config}))
    assert result.ok, result.to_json()
    return final[0]


def member_yield_ppm(state: Any, name: str, delegated: int) -> int:
    """What the pool's one delegator earned per unit delegated, in ppm."""
    member = address_of(Keypair.deterministic(f"member-{name}").public)
    return state.ledger.accounts[member].balance * PPM // delegated


def pool_earned(state: Any, name: str) -> int:
    operator = address_of(Keypair.deterministic(f"posnet-sim/{name}").public)
    member = address_of(Keypair.deterministic(f"member-{name}").public)
    return state.ledger.accounts[operator].balance + state.ledger.accounts[member].balance


SATURATION_RUN = {"v1": (1000, 5000), "v2": (1000, 1000), "v3": (1000, 1000), "v4": (1000, 1000)}
PLEDGE_RUN = {"v1": (2500, 500), "v2": (500, 2500), "v3": (1500, 1500), "v4": (1500, 1500)}


@pytest.mark.sim
@pytest.mark.slow
def test_simulator_saturated_pool_pays_its_delegators_less_per_unit(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """v1 holds half the stake with k = 4 (200% saturated): its delegator earns about half per unit."""
    heights, params = 200, Params(block_reward=1000, saturation_k=4)
    state = simulate(monkeypatch, SATURATION_RUN, params, heights)
    yields = {name: member_yield_ppm(state, name, d) for name, (_, d) in SATURATION_RUN.items()}
    with capsys.disabled():
        print(
            f"\nsaturation run, {state.height} heights: member yield ppm {yields}, reserve {state.ledger.reserve}"
        )
        print(f"  issued {state.ledger.issued}, earned {[pool_earned(state, n) for n in SATURATION_RUN]}")
    assert yields["v1"] < min(yields["v2"], yields["v3"], yields["v4"])
    assert supply_is_conserved(state.ledger)


@pytest.mark.sim
@pytest.mark.slow
def test_simulator_high_pledge_pool_earns_more_than_an_equal_stake_low_pledge_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Four pools of 3000 (each exactly saturated with k = 4), a0 = 0.3: pledge 2500 beats pledge 500."""
    heights, params = 200, Params(block_reward=1000, saturation_k=4, pledge_influence_ppm=300_000)
    state = simulate(monkeypatch, PLEDGE_RUN, params, heights)
    earned = {name: pool_earned(state, name) for name in PLEDGE_RUN}
    with capsys.disabled():
        print(f"\npledge run, {state.height} heights: pool rewards {earned}, reserve {state.ledger.reserve}")
    assert earned["v1"] > earned["v2"]
    assert supply_is_conserved(state.ledger)


@pytest.mark.sim
@pytest.mark.slow
def test_simulator_slash_lowers_the_exchange_rate_for_every_holder_even_one_given_shares(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """v4 equivocates in the simulator after its delegator gave half its shares to carol by transaction."""
    terms = {"v1": (2000, 0), "v2": (2000, 0), "v3": (2000, 0), "v4": (1000, 2000)}
    params = Params(block_reward=0, slash_fraction_double_sign_ppm=50_000)
    member, carol = Keypair.deterministic("member-v4"), Keypair.deterministic("carol")
    v4 = address_of(Keypair.deterministic("posnet-sim/v4").public)
    gift = sign_tx("posnet-sim", TransferShares(0, v4, carol.address, 1000), member)
    published = ((0, tx_bytes("posnet-sim", gift, member)),)
    state = simulate(monkeypatch, terms, params, 30, seed=3, byzantine=1, transactions=published)
    pool = state.ledger.pools[v4]
    rate = S.exchange_rate_ppm(pool.total_shares, pool.member_tokens)
    holders = {name: pool.shares.get(key.address, 0) for name, key in (("member", member), ("carol", carol))}
    worth = {
        name: S.share_value(count, pool.total_shares, pool.member_tokens) for name, count in holders.items()
    }
    with capsys.disabled():
        print(
            f"\nslash run: v4 {pool.status}, exchange rate {rate / PPM:.6f}, shares {holders}, worth {worth}"
        )
    assert pool.status == "tombstoned" and holders == {"member": 1000, "carol": 1000}
    assert rate == PPM - 50_000 and worth == {"member": 950, "carol": 950}


# ------------------------------------------------------------------ what a delegator is quoted


def quoted_pool(pledge: int, members: int, margin_ppm: int = 0, fixed_cost: int = 0) -> Pool:
    return Pool(
        address=ADDRESSES[0],
        name="p",
        public_key=b"",
        operator=ADDRESSES[0],
        pledge=pledge,
        fixed_cost=fixed_cost,
        margin_ppm=margin_ppm,
        shares=FrozenMap({ADDRESSES[1]: members} if members else {}),
        member_tokens=members,
    )


def test_the_quoted_yield_is_the_proportional_reward_after_margin_with_sharing_off() -> None:
    params = Params(block_reward=1000, epoch_length=10)
    pool = quoted_pool(1000, 0, margin_ppm=100_000)
    # 1000 more makes the pool 2000 of 11000 active stake: 2/11 of 1000 per block, 90% to members, half to us
    assert R.expected_member_yield(pool, 1000, 10_000, 10_000, PPM, params) == 10 * 1000 * 2 * 9 // (
        11 * 10 * 2
    )


def test_a_saturated_pool_is_quoted_less_per_unit_than_an_unsaturated_one() -> None:
    params = Params(block_reward=1000, epoch_length=10, saturation_k=4)
    big, small = quoted_pool(1000, 5000), quoted_pool(1000, 500)  # 6000 and 1500 of 12000 bonded
    assert R.expected_member_yield(big, 1000, 12_000, 12_000, PPM, params) < R.expected_member_yield(
        small, 1000, 12_000, 12_000, PPM, params
    )
    off = replace(params, saturation_k=0)
    assert R.expected_member_yield(big, 1000, 12_000, 12_000, PPM, off) >= R.expected_member_yield(
        small, 1000, 12_000, 12_000, PPM, off
    )


def test_a_pool_that_misses_its_precommits_is_quoted_less() -> None:
    params = Params(block_reward=1000, epoch_length=10)
    pool = quoted_pool(1000, 1000)
    full = R.expected_member_yield(pool, 1000, 10_000, 10_000, PPM, params)
    assert R.expected_member_yield(pool, 1000, 10_000, 10_000, PPM // 2, params) == full // 2


def test_a_quote_for_no_added_stake_is_zero() -> None:
    """Nothing delegated earns nothing, however large the pool: the rate of 0 or less added is 0."""
    params = Params(block_reward=1000, epoch_length=10)
    pool = quoted_pool(1000, 1000)
    assert R.expected_member_rate(pool, 0, 10_000, 10_000, PPM, params) == 0
    assert R.expected_member_rate(pool, -5, 10_000, 10_000, PPM, params) == 0


def test_the_quoted_rate_is_the_block_reward_over_the_active_stake_after_margin() -> None:
    """Sharing off, no fixed cost: each unit earns block_reward * (1 - m) * epoch_length / (active + added).

    The pool's own stake cancels (its block share and the members' part both go by stake), so with
    block_reward 1000, m = 10%, 10 blocks an epoch: 9000 / (active + added) per unit.
    """
    params = Params(block_reward=1000, epoch_length=10)
    pool = quoted_pool(1000, 0, margin_ppm=100_000)
    assert R.expected_member_rate(pool, 1, 10_000, 10_000, PPM, params) == Fraction(9000, 10_001)
    assert (
        R.expected_member_rate(pool, 1000, 500, 500, PPM, params) == 6
    )  # 9000 / 1500: more added than active
    assert (
        R.expected_member_rate(pool, 1, 0, 0, PPM, params) == 9000
    )  # the first unit of stake takes every block


def test_a_quote_when_the_added_stake_would_be_all_the_active_stake_is_zero_not_a_division_by_zero() -> None:
    """Stake moving between pools is quoted over totals taken down by it: active + added can reach 0."""
    params = Params(block_reward=1000, epoch_length=10)
    assert R.expected_member_rate(quoted_pool(1000, 0), 1000, -1000, 0, PPM, params) == 0


def test_a_quote_with_sharing_on_applies_the_factor_of_the_pool_with_the_added_stake() -> None:
    """k = 4, a0 = 0.3; pledge 1500 + members 500 + 1000 added = 3000 of 12000 bonded (11000 + 1000).

    sigma = 1/4 = z0, p = 1500/12000 = 1/8: maxPool/R = (1/4 + 1/8 * 3/10 * (1/4 - 0) * 4) / (13/10)
    = (23/80) * (10/13) = 23/104, factor 23/104 / (1/4) = 23/26. Per unit: 1000/12000 a block, times
    23/26, times 10 blocks = 230/312 = 115/156 (no margin, no fixed cost).
    """
    params = Params(block_reward=1000, epoch_length=10, saturation_k=4, pledge_influence_ppm=300_000)
    pool = quoted_pool(1500, 500)
    assert R.expected_member_rate(pool, 1000, 11_000, 11_000, PPM, params) == Fraction(115, 156)


def test_the_fixed_cost_comes_off_each_blocks_share_or_once_an_epoch_with_epoch_rewards() -> None:
    """block_reward 1000, 10 blocks an epoch, m = 10%; pledge 1000 + 1000 added = 2000 of 11000 active.

    The pool's block share is 1000 * 2000/11000 = 2000/11 (about 182).
    Per block, cost 100: (2000/11 - 100) * 0.9 * 10 / 2000 = (900/11) * 9 / 2000 = 81/220 per unit;
    cost 500 is more than the block share: nothing is left for members, 0.
    Per epoch, cost 500 once: (20000/11 - 500) * 0.9 / 2000 = (14500/11) * 0.9 / 2000 = 261/440;
    cost 20000 is more than the epoch's share: 0.
    """
    params = Params(block_reward=1000, epoch_length=10)
    per_epoch = replace(params, epoch_rewards=1)

    def rate(fixed_cost: int, params: Params) -> Fraction:
        pool = quoted_pool(1000, 0, margin_ppm=100_000, fixed_cost=fixed_cost)
        return R.expected_member_rate(pool, 1000, 10_000, 10_000, PPM, params)

    assert rate(100, params) == Fraction(81, 220)
    assert rate(500, params) == 0
    assert rate(500, per_epoch) == Fraction(261, 440)
    assert rate(20_000, per_epoch) == 0
