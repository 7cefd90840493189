"""Non-myopic pool ranking: what a pool would pay once the market has settled, not what it pays today.

A myopic delegator compares today's quotes, and today an empty pool's quote
is 0 (its fixed cost eats a small pool's whole reward), so nobody ever tries
it and an over-saturated pool keeps its crowd beside identical empty ones.
Cardano's wallets rank pools the way Brunjes, Kiayias, Koutsoupias and
Stouka's "Reward Sharing Schemes for Stake Pools" (2020) argue a rational
delegator should, by what a pool would pay at saturation (cardano-ledger's
`desirability`, `getTopRankedPools`, `nonMyopicStake`, `nonMyopicMemberRew`;
the Shelley delegation design spec, section 5.6):

- a pool's *desirability* is what its members would share were it saturated:
  (f - c)(1 - m), f its potential reward at stake z0 = 1/k of the total
  with its pledge (the a0 term) and apparent performance, c its fixed cost,
  m its margin; 0 when f does not cover the cost;
- the k most desirable pools are expected to saturate: a delegator adding t
  to one of them expects it to hold max(sigma + t, z0); any other pool is
  expected to keep only its pledge and the delegator (s + t): the others
  will leave it for a top pool;
- a delegation's *non-myopic member reward* is what that pool would pay a
  member at that expected stake.

Every function here is pure integer and `Fraction` arithmetic over the
chain's own reward formula (`node.core.rewards.max_pool_share`), and rates
are in ppm per epoch like the pools view's yield quotes, so a switching cost
compares them the same way. Ties are broken by the smaller stake, then the
name, so a ranking never depends on the order the pools are listed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property, lru_cache
from typing import Protocol

from node.core.genesis import PPM, Params
from node.core.rewards import max_pool_share, saturation_point


class Offer(Protocol):
    """What the ranking reads of a pool (a `network.econ.policies.Quote` has it)."""

    @property
    def address(self) -> bytes: ...
    @property
    def name(self) -> str: ...
    @property
    def stake(self) -> int: ...
    @property
    def pledge(self) -> int: ...
    @property
    def fixed_cost(self) -> int: ...
    @property
    def margin_ppm(self) -> int: ...
    @property
    def performance_ppm(self) -> int: ...


@dataclass(frozen=True)
class Terms:
    """A pool's terms as a plain value: for tests, and for an operator weighing a pool it does not run yet."""

    address: bytes
    name: str
    stake: int
    pledge: int
    fixed_cost: int = 0
    margin_ppm: int = 0
    performance_ppm: int = PPM


@dataclass(frozen=True)
class Rules:
    """The chain's reward rules as the ranking needs them, with the stake total shares are of.

    `pot` is one payout's reward (a block's, or an epoch's when rewards are
    paid per epoch: the fixed cost comes off each payout) and `payouts` how
    many an epoch has, so a rate per payout becomes one per epoch.
    """

    pot: int
    payouts: int
    k: int
    a0_ppm: int
    total: int

    @classmethod
    def of(cls, params: Params, total: int) -> Rules:
        per_epoch = bool(params.epoch_rewards)
        blocks = params.epoch_length if per_epoch else 1
        payouts = 1 if per_epoch else params.epoch_length
        return cls(
            params.block_reward * blocks, payouts, params.saturation_k, params.pledge_influence_ppm, total
        )

    @cached_property
    def saturated_stake(self) -> Fraction:
        """z0 times the total: the stake a top pool is expected to reach (the whole total when k = 0)."""
        return saturation_point(self.k) * self.total


def potential_reward(rules: Rules, stake: Fraction | int, pledge: int, performance_ppm: int) -> Fraction:
    """What a pool holding `stake` would earn per payout: the chain's maxPool times apparent performance."""
    if rules.total <= 0 or stake <= 0:
        return Fraction(0)
    sigma = Fraction(stake) / rules.total
    pledge_share = Fraction(min(pledge, stake)) / rules.total
    shared = max_pool_share(sigma, pledge_share, saturation_point(rules.k), Fraction(rules.a0_ppm, PPM))
    return rules.pot * Fraction(performance_ppm, PPM) * shared


def desirability(rules: Rules, offer: Offer) -> Fraction:
    """(f - c)(1 - m) with f the pool's potential reward at saturation; 0 when f does not cover c."""
    return _desirability(rules, offer.pledge, offer.fixed_cost, offer.margin_ppm, offer.performance_ppm)


@lru_cache(maxsize=65_536)
def _desirability(
    rules: Rules, pledge: int, fixed_cost: int, margin_ppm: int, performance_ppm: int
) -> Fraction:
    reward = potential_reward(rules, rules.saturated_stake, pledge, performance_ppm)
    return (reward - fixed_cost) * Fraction(PPM - margin_ppm, PPM) if reward > fixed_cost else Fraction(0)


def rank_key(rules: Rules, offer: Offer) -> tuple[Fraction, int, str]:
    """Sort key of the ranking: most desirable first, then the larger stake, then the name."""
    return (-desirability(rules, offer), -offer.stake, offer.name)


def ranking(rules: Rules, offers: Iterable[Offer]) -> list[Offer]:
    """The pools, most desirable first (ties: the larger stake, whose members would stay, then the name)."""
    return sorted(offers, key=lambda offer: rank_key(rules, offer))


def top_pools(rules: Rules, offers: Iterable[Offer]) -> frozenset[bytes]:
    """The addresses of the k most desirable pools (every pool when k = 0: no saturation to expect)."""
    ranked = ranking(rules, offers)
    return frozenset(o.address for o in (ranked if rules.k <= 0 else ranked[: rules.k]))


def member_rate_ppm(rules: Rules, offer: Offer, stake: Fraction | int) -> int:
    """A member's reward per unit per epoch, in ppm, were the pool to hold `stake` (floored)."""
    return _member_rate(
        rules, Fraction(stake), offer.pledge, offer.fixed_cost, offer.margin_ppm, offer.performance_ppm
    )


@lru_cache(maxsize=262_144)
def _member_rate(
    rules: Rules, stake: Fraction, pledge: int, fixed_cost: int, margin_ppm: int, performance_ppm: int
) -> int:
    if stake <= 0:
        return 0
    reward = potential_reward(rules, stake, pledge, performance_ppm)
    if reward <= fixed_cost:
        return 0
    rate = (reward - fixed_cost) * (PPM - margin_ppm) * rules.payouts / stake  # ppm: (1 - m) * PPM
    return rate.numerator // rate.denominator


def nonmyopic_stake(rules: Rules, offer: Offer, added: int, top: bool) -> Fraction:
    """The stake a delegator adding `added` expects the pool to end with (cardano-ledger `nonMyopicStake`).

    A top pool fills to saturation (or beyond, if it already is, or the
    delegator's stake takes it there); any other pool is left with its pledge
    and the delegator, because everyone else will leave it for a top pool.
    """
    if not top:
        return Fraction(offer.pledge + added)
    return max(Fraction(offer.stake + added), rules.saturated_stake if rules.k > 0 else Fraction(0))


def move_rate_ppm(rules: Rules, offer: Offer, amount: int, top: bool) -> int:
    """The non-myopic member reward per unit (ppm per epoch) for `amount` joining the pool."""
    return member_rate_ppm(rules, offer, nonmyopic_stake(rules, offer, amount, top))


def held_rate_ppm(rules: Rules, offer: Offer, staked: int, top: bool) -> int:
    """The same for `staked` already in the pool (a top pool's stake holds it; any other keeps only it)."""
    return move_rate_ppm(rules, offer, 0 if top else staked, top)


def ceiling_rate_ppm(rules: Rules, offer: Offer) -> int:
    """The most the pool can pay a member per unit: at exactly saturation (below it the cost weighs more,
    above it the reward stops growing), so no amount joining it is quoted more than this."""
    return member_rate_ppm(rules, offer, rules.saturated_stake)


@dataclass(frozen=True)
class Outlook:
    """The open pools under the non-myopic rule: which k are expected to saturate, and where a delegation
    would earn the most."""

    rules: Rules
    offers: tuple[Offer, ...]

    @cached_property
    def top(self) -> frozenset[bytes]:
        return top_pools(self.rules, self.offers)

    @cached_property
    def by_address(self) -> Mapping[bytes, Offer]:
        return {o.address: o for o in self.offers}

    @cached_property
    def _by_ceiling(self) -> list[tuple[tuple[int, int, str], Offer]]:
        """Every pool by the most it can pay (then the smaller stake, then the name): `best_for` reads
        them in this order and stops once no later pool can beat what it found."""
        keyed = [((-ceiling_rate_ppm(self.rules, o), o.stake, o.name), o) for o in self.offers]
        return sorted(keyed, key=lambda item: item[0])

    @cached_property
    def bound_ppm(self) -> int:
        """No delegation of any size is quoted more than this by any open pool (0: none is open)."""
        top = self.top
        return max(
            (
                move_rate_ppm(self.rules, o, 1, True) if o.address in top else ceiling_rate_ppm(self.rules, o)
                for o in self.offers
            ),
            default=0,
        )

    def held(self, offer: Offer, staked: int) -> int:
        """What the pool is expected to pay a member holding `staked` in it, per unit, in ppm per epoch."""
        return held_rate_ppm(self.rules, offer, staked, offer.address in self.top)

    def best_for(self, amount: int, leaving: bytes | None = None) -> tuple[Offer, int] | None:
        """The pool paying `amount` the most once it joins (ties: the smaller stake, then the name), and
        that rate; `leaving` (the pool the amount comes from) is not a candidate.

        Pools are read in the order of the most they can pay; a pool with room
        below saturation pays exactly that, so the search usually stops at
        the first pool with room.
        """
        asked = (amount, leaving)
        if asked in self._found:
            return self._found[asked]
        best: tuple[tuple[int, int, str], Offer] | None = None
        top = self.top
        for bound, offer in self._by_ceiling:
            if best is not None and bound > best[0]:
                break  # neither this pool nor any after it can pay more, or as much from a smaller stake
            if offer.address == leaving:
                continue
            rate = move_rate_ppm(self.rules, offer, amount, offer.address in top)
            key = (-rate, offer.stake, offer.name)
            if best is None or key < best[0]:
                best = (key, offer)
        found = self._found[asked] = None if best is None else (best[1], -best[0][0])
        return found

    @cached_property
    def _found(self) -> dict[tuple[int, bytes | None], tuple[Offer, int] | None]:
        """What `best_for` answered, shared with the previous outlook when its pools and rules were the
        same: a settled market is quoted anew each epoch with equal quotes, and a holder too big for any
        pool's room (a whale) made every pool be read again each time, each epoch."""
        previous = _last_found[0]
        if previous is not None and previous[0] == self.rules and previous[1] == self.offers:
            found = previous[2]
        else:
            found = {}
        _last_found[0] = (self.rules, self.offers, found)
        return found


# The latest outlook's answers (see `Outlook._found`): a pure function's memo, so sharing it is safe.
_last_found: list[
    tuple[Rules, tuple[Offer, ...], dict[tuple[int, bytes | None], tuple[Offer, int] | None]] | None
] = [None]
