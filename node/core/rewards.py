"""Reward sharing: how a block's reward is divided among pools, and inside a pool.

Pure arithmetic over integers and exact fractions, nothing else: every node
must pay the same units to the same accounts, so no float ever enters, and
each division is a floor whose remainder is placed explicitly by the caller
(node.core.ledger, which imports this module; this module imports no ledger).

Two steps, both per block:

1. The block's shares (`block_shares`): the proposer gets
   `proposer_reward_ppm` of `block_reward`, the signers of the previous
   certificate the rest by committee power. A pool is paid only for the
   certificates that counted its precommit, so over an epoch it earns its
   share of the reward times its *apparent performance* (counted precommits
   over expected ones) with no separate performance factor.

2. Cardano's reward sharing (cardano-ledger `maxPool'`) scales each pool's
   share: with z0 = 1/k, sigma' = min(sigma, z0), p' = min(pledge share, z0),

       maxPool = R/(1+a0) * [sigma' + p'*a0*(sigma' - p'*(z0-sigma')/z0)/z0]

   and the pool receives its share times maxPool / (R*sigma) (`reward_factor`),
   which is at most 1. Stake above 1/k earns nothing more (saturation), and
   with a0 > 0 pledge earns more than the same stake delegated. k = 0 and
   a0 = 0 (the defaults) make the factor exactly 1: today's rewards, unit for
   unit. What the factor withholds is not paid to anyone: the ledger puts it
   in its reserve, which pays later rewards before anything new is minted.

Inside a pool (`split_pool_reward`) the operator gets the fixed cost c, then
the margin m of the rest, then the rest pro rata to stake with its pledge
counted as stake: c + floor((f-c)(m + (1-m)s/sigma)) for the operator and
floor((f-c)(1-m)t/sigma) for a member holding t (cardano-ledger's leaderRew
and memberRew); what the floors leave is paid to no one (the ledger returns
it to the reserve, or with reward sharing off does not mint it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Protocol

from node.core.genesis import PPM, Params

Weights = tuple[tuple[bytes, int], ...]

NO_SATURATION = Fraction(1)  # z0 when k = 0: no pool can hold more than all the stake
NO_STAKE = (0, 0)  # (stake, pledge) of a pool a stake snapshot does not hold


class PoolTerms(Protocol):
    """What reward sharing reads of a pool: node.core.ledger.Pool has it, and no import is needed."""

    @property
    def operator(self) -> bytes: ...
    @property
    def pledge(self) -> int: ...
    @property
    def fixed_cost(self) -> int: ...
    @property
    def margin_ppm(self) -> int: ...
    @property
    def shares(self) -> Mapping[bytes, int]: ...
    @property
    def member_tokens(self) -> int: ...
    @property
    def compounding(self) -> bool: ...


def pool_stake(pool: PoolTerms) -> int:
    """The pledge plus the members' tokens: a pool's voting power and its reward-sharing stake."""
    return pool.pledge + pool.member_tokens


# ------------------------------------------------------------------ the block's shares


def split_by_weight(total: int, weights: Weights) -> Weights:
    """Floor shares of `total` proportional to the weights; the caller places the remainder."""
    weight = sum(w for _, w in weights)
    return tuple((key, total * w // weight) for key, w in weights) if weight else ()


def merge_amounts(pairs: Iterable[tuple[bytes, int]]) -> dict[bytes, int]:
    """Sum amounts per key (a fresh dict the caller owns)."""
    merged: dict[bytes, int] = {}
    for key, amount in pairs:
        merged[key] = merged.get(key, 0) + amount
    return merged


def block_shares(
    block_reward: int, proposer_ppm: int, proposer: bytes | None, signers: Weights
) -> dict[bytes, int]:
    """Each pool's share of one block's reward, before reward sharing.

    The proposer gets `proposer_ppm`, signers the rest by committee power, the
    proposer also the floor remainder of that split. With no signers (height
    1) the proposer gets everything. `proposer` is None when it cannot be paid
    (unknown or tombstoned): its share is then simply not minted.
    """
    proposer_share = block_reward * proposer_ppm // PPM if signers else block_reward
    signer_shares = split_by_weight(block_reward - proposer_share, signers)
    remainder = block_reward - proposer_share - sum(amount for _, amount in signer_shares)
    paid_proposer = ((proposer, proposer_share + remainder),) if proposer is not None else ()
    return {k: v for k, v in merge_amounts(signer_shares + paid_proposer).items() if v > 0}


# ------------------------------------------------------------------ reward sharing


def sharing_is_on(params: Params) -> bool:
    """Whether saturation or pledge influence changes anything (both off reproduces plain shares)."""
    return params.saturation_k > 0 or params.pledge_influence_ppm > 0


def saturation_point(k: int) -> Fraction:
    """z0 = 1/k, the stake share past which a pool earns no more; 1 (no cap) when k = 0."""
    return Fraction(1, k) if k > 0 else NO_SATURATION


def max_pool_share(sigma: Fraction, pledge_share: Fraction, z0: Fraction, a0: Fraction) -> Fraction:
    """Cardano's maxPool / R: the most of the reward a pool with these shares can earn.

    Capping both shares at z0 is what makes a saturated pool's extra stake
    earn nothing; the a0 term pays pledge, and grows with sigma' as well so a
    pool cannot collect the pledge bonus without attracting stake.
    """
    s, p = min(sigma, z0), min(pledge_share, z0)
    return (s + p * a0 * (s - p * (z0 - s) / z0) / z0) / (1 + a0)


def reward_factor(stake: int, pledge: int, total: int, params: Params, bonded: int | None = None) -> Fraction:
    """maxPool / (R * stake/bonded): what part of its proportional reward a pool receives (0 to 1).

    Sigma and the pledge share are of `total`; the pool's proportional
    reward is its part of `bonded` (the stake the block shares are in
    proportion to), which is `total` unless sigma is measured against the
    supply (`params.sigma_of_supply`). Then a pool below saturation receives
    bonded/total of its share, as in Cardano, where maxPool is paid in full
    only for the stake part of the supply: the rest goes to the reserve.
    `bonded` never exceeds `total` (the supply holds every bonded unit), so
    the factor stays at most 1.

    A pool with no stake left (it can still sign for an epoch whose seats were
    drawn earlier) gets the limit of the factor as its stake tends to zero,
    1/(1+a0): exactly 1 with pledge influence off, as today.
    """
    return _reward_factor(
        stake,
        pledge,
        total,
        total if bonded is None else bonded,
        params.saturation_k,
        params.pledge_influence_ppm,
    )


# Cached on the two parameters it reads, not on `params`: hashing every parameter of the chain for
# each signer of each block cost more than the factor itself.
@lru_cache(maxsize=65_536)
def _reward_factor(
    stake: int, pledge: int, total: int, bonded: int, k: int, pledge_influence_ppm: int
) -> Fraction:
    a0 = Fraction(pledge_influence_ppm, PPM)
    if stake <= 0 or total <= 0:
        return 1 / (1 + a0)
    sigma = Fraction(stake, total)
    if not pledge_influence_ppm:  # a0 = 0: maxPool is min(sigma, z0), the same value in three steps
        return min(sigma, saturation_point(k)) / sigma * Fraction(bonded, total)
    pledge_share = Fraction(min(pledge, stake), total)
    return max_pool_share(sigma, pledge_share, saturation_point(k), a0) / sigma * Fraction(bonded, total)


def shared_reward(share: int, stake: int, pledge: int, total: int, params: Params) -> int:
    """The pool's block share after saturation and pledge influence, floored (the rest is withheld).

    The floor of share * n/d taken as integers: exactly `(share * factor).__floor__()`
    (d > 0), without building a Fraction per signer per block.
    """
    factor = reward_factor(stake, pledge, total, params)
    return share * factor.numerator // factor.denominator


def shared_rewards(
    shares: Mapping[bytes, int],
    stakes: Mapping[bytes, tuple[int, int]],
    total: int,
    params: Params,
    bonded: int | None = None,
) -> dict[bytes, int]:
    """Every pool's share after saturation and pledge influence.

    `stakes`: (stake, pledge) by pool, from the snapshot the shares' committee
    was drawn with (a pool missing from it is measured as having no stake);
    `total`: what sigma is of; `bonded`: what the shares are in proportion
    to (`reward_factor`). `shared_reward` for each pool, written out: it runs
    for every signer of every block, and the calls and parameter look-ups
    were most of it.
    """
    k, pledge_influence_ppm = params.saturation_k, params.pledge_influence_ppm
    bonded = total if bonded is None else bonded
    paid = {}
    for address, share in shares.items():
        stake, pledge = stakes.get(address, NO_STAKE)
        factor = _reward_factor(stake, pledge, total, bonded, k, pledge_influence_ppm)
        amount = share * factor.numerator // factor.denominator
        if amount > 0:
            paid[address] = amount
    return paid


def withheld(shares: Mapping[bytes, int], paid: Mapping[bytes, int]) -> int:
    """What reward sharing kept back from the block's shares: it goes to the reserve, not to anyone."""
    return sum(shares.values()) - sum(paid.values())


def settle_reserve(reserve: int, paid: int, kept_back: int) -> tuple[int, int]:
    """(minted, reserve after): the reserve funds the payout first, then takes what was kept back.

    So withheld units are not added to circulation: they wait in the reserve
    and stand in for fresh minting at the next payout. The supply grows by
    exactly `minted` (payout plus the reserve's change), never by a float.
    """
    drawn = min(reserve, paid)
    return paid - drawn + kept_back, reserve - drawn + kept_back


# ------------------------------------------------------------------ inside a pool


@dataclass(frozen=True)
class PoolPayout:
    """Where one pool's reward goes: the operator's balance, members' balances, back into the pool, or nowhere."""

    operator: int
    members: Weights  # (holder, amount) paid out; empty for a compounding pool
    compounded: int  # added to the member tokens (every share's value rises)
    dust: int = 0  # what the floors left: paid to no one (node.core.ledger.pay_pools says where it goes)


def split_pool_reward(pool: PoolTerms, reward: int) -> PoolPayout:
    """cardano-ledger's leaderRew and memberRew: each party gets the floor of its stated share.

    With f the pool's reward, c its fixed cost, m its margin, s its pledge,
    sigma its stake and t a member's stake (the exact value of its shares):

        operator (leaderRew): f if f <= c, else c + floor((f - c) * (m + (1 - m) * s / sigma))
        member   (memberRew): 0 if f <= c, else floor((f - c) * (1 - m) * t / sigma)

    (Shelley ledger spec, reward splitting; cardano-ledger's Rewards module).
    What the floors leave, the dust (less than one unit per party), goes to
    no one: Cardano returns undistributed rewards to the reserve, and so
    does the ledger here with reward sharing on (off, it is not minted).
    So no member is paid less than the floor of its
    stated share, and the operator, who states its own terms, gains nothing
    from rounding. A compounding pool's members' part is one floor, added to
    the pool. A pool with no stake pays the whole reward to its operator.
    """
    stake = pool_stake(pool)
    if reward <= pool.fixed_cost or stake <= 0:
        return PoolPayout(reward, (), 0)
    after_cost, kept_ppm = reward - pool.fixed_cost, PPM - pool.margin_ppm
    operator_part = pool.margin_ppm * stake + kept_ppm * min(pool.pledge, stake)
    operator = pool.fixed_cost + after_cost * operator_part // (PPM * stake)
    members_num = after_cost * kept_ppm * pool.member_tokens  # members' stated part, over PPM * stake
    if pool.compounding:
        compounded = members_num // (PPM * stake)
        return PoolPayout(operator, (), compounded, reward - operator - compounded)
    total_shares = sum(pool.shares.values())
    den = PPM * stake * total_shares
    paid = tuple(
        (holder, amount)
        for holder, count in sorted(pool.shares.items())
        if (amount := members_num * count // den) > 0
    )
    return PoolPayout(operator, paid, 0, reward - operator - sum(amount for _, amount in paid))


# ------------------------------------------------------------------ views


def expected_member_yield(
    pool: PoolTerms, added: int, active_total: int, bonded_total: int, performance_ppm: int, params: Params
) -> int:
    """What `added` more delegated stake would earn in one epoch, in expectation (floored).

    The pool's expected block share is its part of the active stake times the
    block reward (proposing and signing both go by stake), times its apparent
    performance; then reward sharing with the stake it would have; then fixed
    cost and margin come off each block's reward, and the delegation gets its
    part of what members receive. An estimate for choosing a pool, not a
    promise: proposer luck and the committee draw move the real figure.
    """
    return (
        expected_member_rate(pool, added, active_total, bonded_total, performance_ppm, params) * added
    ).__floor__()


def expected_member_rate(
    pool: PoolTerms, added: int, active_total: int, bonded_total: int, performance_ppm: int, params: Params
) -> Fraction:
    """`expected_member_yield` per unit of `added`, exact: what a delegator compares pools by."""
    return Fraction(
        *expected_member_rate_terms(pool, added, active_total, bonded_total, performance_ppm, params)
    )


def expected_member_rate_terms(
    pool: PoolTerms, added: int, active_total: int, bonded_total: int, performance_ppm: int, params: Params
) -> tuple[int, int]:
    """`expected_member_rate` as a numerator and a denominator, not reduced.

    The block's expected share is kept as a numerator over a denominator
    (both integers, the denominator positive) and made a Fraction, if at
    all, once at the end: an economy quotes pools thousands of times an
    epoch, each Fraction step reduces by a gcd, and a quote only needs the
    floor of the rate in ppm (`numerator * PPM // denominator`).
    """
    stake = pool_stake(pool) + added
    if added <= 0 or active_total + added <= 0:
        return 0, 1
    num = params.block_reward * stake * performance_ppm  # the block's share, num / den
    den = (active_total + added) * PPM
    if sharing_is_on(params):
        factor = reward_factor(stake, pool.pledge, bonded_total + added, params)
        num, den = num * factor.numerator, den * factor.denominator
    kept = PPM - pool.margin_ppm
    if params.epoch_rewards:  # one payout per epoch: the fixed cost comes off once
        after_cost = max(num * params.epoch_length - pool.fixed_cost * den, 0)
        return after_cost * kept, den * PPM * stake
    after_cost = max(num - pool.fixed_cost * den, 0)
    return after_cost * kept * params.epoch_length, den * PPM * stake


def saturation_ppm(stake: int, total: int, k: int) -> int | None:
    """The pool's stake as parts per million of the saturation point total/k (None when k = 0: no cap)."""
    if k <= 0:
        return None
    return stake * k * PPM // total if total else 0


def apparent_performance_ppm(missed: int, window: int) -> int:
    """Counted precommits over expected ones in the downtime window, in ppm.

    The window keeps only misses, so the part of a young window not yet
    filled counts as signed: a new pool starts at 100%, as in Cardano, where
    apparent performance is also 1 until evidence says otherwise.
    """
    return (window - min(missed, window)) * PPM // window if window > 0 else PPM
