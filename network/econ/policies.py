"""Delegator policies: small pure functions of what the chain shows.

Each policy sees what any user sees: the pools as `posnet query pools` shows
them (`node.core.query.pool_view`: stake, status, the yield a delegator is
quoted per 1,000, the exchange rate of its shares) and its own holding. It
answers with the pool it wants its stake in: the one it is in (stay),
another (move), or `LEAVE` (take the stake out). Chance comes only from the
generator it is handed, seeded by the run.

- `yield`: the best quoted yield among pools taking stake, unless it beats
  the current pool's by no more than the switching cost (relative, in ppm),
  so that delegators do not flap between two pools a hair apart (and not
  while stake it redelegated may not hop again: the ledger would refuse).
  The best pool is judged with the delegator's own stake in it: a quote is
  for a small delegation, and a holder bigger than a pool's room below
  saturation would otherwise chase a quote its own arrival ruins, leave the
  pool it just filled an epoch later, and drive the pool's other members out
  each time (a Pareto crowd has such holders: the oscillation the switching
  cost is there to stop);
- `nonmyopic`: Cardano's non-myopic rule (`network.econ.nonmyopic`): pools
  ranked by what they would pay at saturation, the top k expected to fill to
  it, any other to keep only its pledge; its pool judged by that, a move by
  what the best pool would pay with the delegator's own stake added, and
  only past the switching cost. Unlike `yield` it moves into an empty pool
  that is in the top k (whose quote today is 0) and out of an over-saturated
  one beside it;
- `loyal`: stays where it started, whatever happens to the pool;
- `random`: in an epoch, with probability `move_ppm`, any open pool;
- `largest`: the pool with the most stake (exchange customers, herding);
- `liquid-token`: holds a pool's receipt token while its exchange rate is
  at least what it paid; sells (leaves) once a slash pushed it below, and
  buys the best-quoted pool's token when it holds none.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from operator import attrgetter
from typing import Any, NamedTuple

from network.econ.config import DelegatorClass
from network.econ.nonmyopic import Outlook, Rules
from node.core.genesis import PPM

LEAVE = b""
"""The answer of a policy that takes its stake out of every pool."""


@dataclass(frozen=True)
class Quote:
    """One pool as a delegator sees it (from the pools query view)."""

    address: bytes
    name: str
    open: bool  # takes new stake: active and not retiring
    stake: int
    yield_ppm: int
    exchange_rate_ppm: int
    # The terms the non-myopic ranking reads (`network.econ.nonmyopic`), and its apparent performance.
    pledge: int = 0
    fixed_cost: int = 0
    margin_ppm: int = 0
    performance_ppm: int = PPM
    # (amount, moving) -> the yield in ppm quoted with `amount` more in the pool, by the chain's own
    # formula from the pool's terms (`network.econ.quotes.quote`); `moving`: the amount leaves another
    # pool, so the stake totals stay. None: the quote alone (a view has no totals to work it out with).
    rate_for: Callable[[int, bool], int] | None = field(default=None, compare=False, repr=False)

    def yield_for(self, amount: int, *, moving: bool) -> int:
        """The yield in ppm this pool would pay `amount` joining it, its own weight toward saturation counted."""
        return self.yield_ppm if self.rate_for is None else self.rate_for(amount, moving)

    @cached_property
    def rank(self) -> tuple[int, int, str]:
        """How `Market.best_yield` ranks open pools: yield, then the smaller pool, then the name.

        Worked out once per quote: a market keeps most quotes from one move to the next.
        """
        return (self.yield_ppm, -self.stake, self.name)

    @classmethod
    def of(cls, view: dict[str, Any]) -> Quote:
        return cls(
            address=bytes.fromhex(view["address"]),
            name=view["name"],
            open=view["status"] == "active" and not view["retiring_epoch"],
            stake=view["stake"],
            yield_ppm=view["yield_ppm_per_epoch"],
            exchange_rate_ppm=view["exchange_rate_ppm"],
            pledge=view["pledge"],
            fixed_cost=view["fixed_cost"],
            margin_ppm=view["margin_ppm"],
            performance_ppm=view["performance_ppm"],
        )


class Holding(NamedTuple):
    """What one delegator has: where its stake is, how much, and its liquid balance.

    A named tuple, not a frozen dataclass: every delegator gets one every
    epoch, and a frozen dataclass sets each field through `object.__setattr__`
    (two fifths of working out a holding at 10,000 delegators).
    """

    pool: bytes | None
    staked: int
    balance: int
    entry_rate_ppm: int = PPM  # the exchange rate when its shares were bought
    locked_until: int = 0  # arrived by redelegation: the ledger refuses another hop before this epoch


@dataclass(frozen=True)
class Market:
    """Every pool's quote at one moment, with what many delegators ask of it worked out once."""

    quotes: tuple[Quote, ...]
    rules: Rules | None = field(default=None, compare=False)  # the chain's reward rules and stake total

    @cached_property
    def outlook(self) -> Outlook | None:
        """The open pools under the non-myopic rule (None: a market quoted without the rules)."""
        return None if self.rules is None else Outlook(self.rules, self.open)

    @cached_property
    def by_address(self) -> dict[bytes, Quote]:
        return {q.address: q for q in self.quotes}

    @cached_property
    def open(self) -> tuple[Quote, ...]:
        """The pools taking stake, by name."""
        return tuple(sorted((q for q in self.quotes if q.open), key=lambda q: q.name))

    @cached_property
    def best_yield(self) -> Quote | None:
        """The open pool quoting the best yield; ties go to the smaller pool, then the name."""
        return max(self.open, key=_yield_rank, default=None)

    @cached_property
    def largest(self) -> Quote | None:
        return max(self.open, key=lambda q: (q.stake, q.name), default=None)

    def current(self, holding: Holding) -> Quote | None:
        return self.by_address.get(holding.pool) if holding.pool else None

    def holds(self, current: Quote, switching_cost_ppm: int) -> bool:
        """Whether, by the quotes alone, holders of `current` stay: no pool quotes better than it by
        more than the switching cost (or none quotes at all).

        The same answer for every holder of the pool, so a market works it out
        once per (pool, cost): all 10,000 delegators of an economy ask it.
        """
        key = (current.address, switching_cost_ppm)
        held = self._holds.get(key)
        if held is None:
            best = self.best_yield
            held = self._holds[key] = (
                best is None
                or best.address == current.address
                or not worth_switching(current.yield_ppm, best.yield_ppm, switching_cost_ppm)
            )
        return held

    def settled(self, current: Quote, switching_cost_ppm: int) -> bool:
        """Whether every non-myopic holder of `current` stays, whatever it holds: the pool is in the top k
        (so what it is expected to pay does not depend on the holding) and no pool could quote any
        delegation more than the switching cost above it. Worked out once per (pool, cost), like `holds`.
        """
        key = (current.address, -1 - switching_cost_ppm)  # apart from `holds`' keys in the same store
        settled = self._holds.get(key)
        if settled is None:
            outlook = self.outlook
            settled = self._holds[key] = (
                outlook is not None
                and current.address in outlook.top
                and not worth_switching(outlook.held(current, 0), outlook.bound_ppm, switching_cost_ppm)
            )
        return settled

    @cached_property
    def _holds(self) -> dict[tuple[bytes, int], bool]:
        """What `holds` worked out for this market (a requoted market is a new one, asked afresh)."""
        return {}

    @cached_property
    def places(self) -> dict[bytes, int]:
        """Where each pool's quote is in `quotes` (a requoted market keeps the places)."""
        return {q.address: i for i, q in enumerate(self.quotes)}

    @cached_property
    def open_places(self) -> dict[bytes, int]:
        """Where each open pool's quote is in `open`."""
        return {q.address: i for i, q in enumerate(self.open)}

    def requoted(self, fresh: Mapping[bytes, Quote]) -> Market:
        """This market with some pools quoted afresh: equal to a `Market` of the new quotes, built cheaper.

        A delegator's move requotes two pools of hundreds, thousands of times an
        epoch, so the new market carries over what the move cannot change: each
        pool's place, the name order of the open pools when no pool opened or
        closed, and the best yield when it was not requoted and no fresh quote
        beats it.
        """
        if any(address not in self.places for address in fresh):
            # a pool new to the market
            return Market(tuple(fresh.get(q.address, q) for q in self.quotes), self.rules)
        market = Market(_placed(self.quotes, self.places, fresh), self.rules)
        known = market.__dict__  # cached_property's own store: what is set here is not worked out again
        known["places"] = self.places
        known["by_address"] = {**self.by_address, **fresh}
        if all(q.open == self.by_address[address].open for address, q in fresh.items()):
            reopened = {address: q for address, q in fresh.items() if q.open}
            known["open"] = _placed(self.open, self.open_places, reopened)
            known["open_places"] = self.open_places
            best = self.best_yield
            if best is not None and best.address not in fresh:
                known["best_yield"] = max([best, *reopened.values()], key=_yield_rank)
        return market


def _placed(
    quotes: tuple[Quote, ...], places: Mapping[bytes, int], fresh: Mapping[bytes, Quote]
) -> tuple[Quote, ...]:
    """`quotes` with each fresh quote in its pool's place."""
    placed = list(quotes)
    for address, quote in fresh.items():
        placed[places[address]] = quote
    return tuple(placed)


_yield_rank = attrgetter("rank")  # read in C once a quote has worked its rank out


Policy = Callable[[Holding, Market, DelegatorClass, random.Random], bytes | None]
"""(holding, market, class, rng) -> the pool to hold stake in, LEAVE, or None (no stake, no wish)."""


def worth_switching(current: int, best: int, switching_cost_ppm: int) -> bool:
    """Whether `best` beats `current` by more than the switching cost (relative to `current`)."""
    return best * PPM > current * (PPM + switching_cost_ppm) if current > 0 else best > 0


def better_pool(holding: Holding, market: Market, switching_cost_ppm: int) -> Quote | None:
    """The best-quoted pool, if moving `holding` there beats staying by more than the switching cost.

    Judged twice: by the quotes, and then (only for a move the quotes call
    for, so a crowd of small holders costs one comparison each) by the yield
    with the holding's own stake in the best pool. Staying is judged by the
    current pool's quote, whose stake already holds the delegator's.
    """
    best, current = market.best_yield, market.current(holding)
    if best is None or current is None or market.holds(current, switching_cost_ppm):
        return None
    arriving = best.yield_for(holding.staked, moving=True)
    return best if worth_switching(current.yield_ppm, arriving, switching_cost_ppm) else None


def yield_policy(holding: Holding, market: Market, spec: DelegatorClass, rng: random.Random) -> bytes | None:
    best = market.best_yield
    if best is None or holding.locked_until:
        return holding.pool
    current = market.current(holding)
    if current is None or not current.open:
        return best.address
    better = better_pool(holding, market, spec.switching_cost_ppm)
    return current.address if better is None else better.address


def nonmyopic_better(holding: Holding, market: Market, switching_cost_ppm: int) -> bytes | None:
    """The pool a non-myopic delegator should move `holding` to, or None to stay.

    Its pool is judged by what it is expected to pay once the market has
    settled (`Outlook.held`: a top pool at saturation or beyond, any other
    with only its pledge and this holding left), the others by what they
    would pay with this holding added (`Outlook.best_for`), and the move is
    worth it only past the switching cost. When even the most any pool could
    quote (`Outlook.bound_ppm`) does not beat its pool by that much, the
    search is skipped: the same answer, and most turns of a settled market.
    """
    outlook, current = market.outlook, market.current(holding)
    if outlook is None or current is None:
        return None
    held = outlook.held(current, holding.staked)
    if not worth_switching(held, outlook.bound_ppm, switching_cost_ppm):
        return None
    found = outlook.best_for(holding.staked, leaving=current.address)
    if found is None or not worth_switching(held, found[1], switching_cost_ppm):
        return None
    return found[0].address


def nonmyopic_policy(
    holding: Holding, market: Market, spec: DelegatorClass, rng: random.Random
) -> bytes | None:
    """Cardano's non-myopic rule (`network.econ.nonmyopic`): where a delegation pays most once the top k
    pools have saturated, its own stake counted; a delegator with no stake in an open pool delegates its
    balance there."""
    outlook = market.outlook
    if outlook is None or holding.locked_until:
        return holding.pool
    current = market.current(holding)
    if current is None or not current.open:
        found = outlook.best_for(holding.staked or holding.balance)
        return holding.pool if found is None else found[0].address
    better = nonmyopic_better(holding, market, spec.switching_cost_ppm)
    return current.address if better is None else better


def loyal_policy(holding: Holding, market: Market, spec: DelegatorClass, rng: random.Random) -> bytes | None:
    return holding.pool


def random_policy(holding: Holding, market: Market, spec: DelegatorClass, rng: random.Random) -> bytes | None:
    if market.open and (holding.pool is None or rng.randrange(PPM) < spec.move_ppm):
        return rng.choice(market.open).address
    return holding.pool


def largest_policy(
    holding: Holding, market: Market, spec: DelegatorClass, rng: random.Random
) -> bytes | None:
    return holding.pool if market.largest is None else market.largest.address


def liquid_token_policy(
    holding: Holding, market: Market, spec: DelegatorClass, rng: random.Random
) -> bytes | None:
    current = market.current(holding)
    if holding.staked and current is not None and current.exchange_rate_ppm < holding.entry_rate_ppm:
        return LEAVE  # a slash cut the token below what was paid for it: sell
    if holding.staked:
        return holding.pool
    return None if market.best_yield is None else market.best_yield.address


SETTLING = (yield_policy, nonmyopic_policy)
"""The policies whose turns `settles` can decide for a whole pool's holders at once."""


def settles(policy: Policy, market: Market, current: Quote, switching_cost_ppm: int) -> bool:
    """Whether every holder of the open pool `current` on `policy` (one of `SETTLING`) stays, whatever it
    holds: `Market.holds` for `yield`, `Market.settled` for `nonmyopic`."""
    if policy is nonmyopic_policy:
        return market.settled(current, switching_cost_ppm)
    return market.holds(current, switching_cost_ppm)


def policy_miss(policy: Policy, holding: Holding, market: Market, switching_cost_ppm: int) -> int:
    """1 when, by the ledger's own quotes after its turn, a yield (or nonmyopic) delegator should not
    be where it is.

    The policy decides on quotes; the ledger then applies the move and
    quotes again. Where the two disagree (a policy that misreads the
    quotes, a move the ledger refused) this counts it, so a run cannot
    pass with its policy and its chain at odds.
    """
    if holding.pool is None or holding.locked_until or market.best_yield is None:
        return 0
    current = market.current(holding)
    if current is None or not current.open:
        return 1
    if policy is nonmyopic_policy:
        return int(nonmyopic_better(holding, market, switching_cost_ppm) is not None)
    return int(better_pool(holding, market, switching_cost_ppm) is not None)


POLICIES: dict[str, Policy] = {
    "yield": yield_policy,
    "nonmyopic": nonmyopic_policy,
    "loyal": loyal_policy,
    "random": random_policy,
    "largest": largest_policy,
    "liquid-token": liquid_token_policy,
}
