"""Operators as agents: when a pool is worth registering, and when it is worth retiring.

The paper's equilibrium (Brunjes, Kiayias, Koutsoupias, Stouka 2020: about
k pools of about 1/k each) needs a pool set that moves: someone registers
a pool when it would pay and retires one that does not. Both rules read
the same non-myopic ranking delegators use (`network.econ.nonmyopic`), so
an operator expects what its would-be members expect:

- *entry*: a potential operator registers when its pool, with its own cost,
  margin and pledge (and full performance: nothing says otherwise yet),
  would rank among the top k by desirability, strictly above the k-th pool
  open now (an equal newcomer would not draw anyone from an incumbent that
  members already hold), and is desirable at all (pays more than its cost
  at saturation). Operators decide one at a time, each counting the pools
  registered before it at the same boundary, so a gap of three pools below
  k draws three entrants, not every operator at once;
- *pledge*: what the operator means to pledge, but at most half the
  saturation point: pledge past saturation earns nothing (maxPool caps the
  pledge share at 1/k too), and a pool its own pledge fills has no room for
  the members whose margin and fixed cost pay the operator;
- *margin*: an operator whose pool is in the top k sets the largest
  margin that keeps it at least as desirable as the best pool it competes
  with for the k-th place: the best open pool outside the top k, or the best
  potential operator's pool (the paper's equilibrium margins). A cheap
  operator so earns its lower cost as margin instead of drawing more
  members than its pool can pay at saturation; all top pools then pay
  members alike and fill to about 1/k each. Never below the operator's own
  margin, and changed only when the target moved by `MARGIN_STEP_PPM`, so
  the terms do not flicker with the last digit;
- *exit*: an operator whose pool's expected reward at the stake it holds
  (the chain's formula, its apparent performance counted) stays below its
  fixed cost for `retire_after` epochs running retires it at the next
  epoch. A new pool gets those epochs to draw its members.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import replace
from fractions import Fraction
from functools import lru_cache

from network.econ.config import EconomyConfig
from network.econ.nonmyopic import Offer, Rules, Terms, desirability, potential_reward, top_pools
from network.econ.policies import Market, Quote
from network.econ.record import EpochLog
from network.econ.world import Operator, World
from node.core import ledger as L
from node.core.genesis import PPM
from node.core.state import ChainState
from node.core.tx import RegisterPool, RetirePool, UpdatePool, sign_tx

MARGIN_STEP_PPM = 5_000  # a margin moves once its target is this far (0.5 points) from it


def pays(rules: Rules, offer: Offer) -> bool:
    """Whether the pool's expected reward at its stake now covers its fixed cost."""
    return _pays(rules, offer.stake, offer.pledge, offer.performance_ppm, offer.fixed_cost)


@lru_cache(maxsize=65_536)
def _pays(rules: Rules, stake: int, pledge: int, performance_ppm: int, fixed_cost: int) -> bool:
    """`pays` on plain values, remembered: a settled market asks the same of every pool each epoch."""
    return potential_reward(rules, stake, pledge, performance_ppm) >= fixed_cost


def pledge_for(rules: Rules, wanted: int) -> int:
    """What an operator pledges: `wanted`, at most half the saturation point (all of it when k = 0)."""
    if rules.k <= 0:
        return wanted
    return min(wanted, int(rules.saturated_stake / 2))


def would_enter(rules: Rules, candidate: Offer, incumbents: Iterable[Fraction]) -> bool:
    """Whether `candidate` would rank in the top k among open pools of the given desirabilities.

    k = 0 (no saturation) has no top k to join: nobody enters.
    """
    wanted = desirability(rules, candidate)
    if rules.k <= 0 or wanted <= 0:
        return False
    return sum(1 for d in incumbents if d >= wanted) < rules.k


def competitive_margin_ppm(rules: Rules, offer: Offer, rival: Fraction, floor_ppm: int) -> int:
    """The largest margin (ppm) at which the pool is still as desirable as `rival`, at least `floor_ppm`."""
    return _competitive(rules, offer.pledge, offer.fixed_cost, offer.performance_ppm, rival, floor_ppm)


@lru_cache(maxsize=65_536)
def _competitive(
    rules: Rules, pledge: int, fixed_cost: int, performance_ppm: int, rival: Fraction, floor_ppm: int
) -> int:
    """`competitive_margin_ppm` on plain values, remembered: the top pools ask it every epoch."""
    bare = desirability(rules, Terms(b"", "", pledge, pledge, fixed_cost, 0, performance_ppm))
    if bare <= 0 or rival >= bare:
        return floor_ppm
    margin = (1 - rival / bare) * PPM
    return max(floor_ppm, min(PPM, margin.numerator // margin.denominator))


def new_margin_ppm(rules: Rules, offer: Offer, rival: Fraction, floor_ppm: int) -> int | None:
    """The margin to set now (`competitive_margin_ppm`), or None while it is within a step of today's."""
    target = competitive_margin_ppm(rules, offer, rival, floor_ppm)
    return target if abs(target - offer.margin_ppm) >= MARGIN_STEP_PPM else None


class Operators:
    """The owners of an economy's pools and its potential operators, acting at each epoch boundary.

    Only with the file's [market]: retirements of pools that have not paid,
    margins of the top k, then registrations, each a signed transaction the
    engine puts in the epoch's first blocks before the delegators decide.
    """

    def __init__(
        self, config: EconomyConfig, world: World, names: Mapping[bytes, str], rng: random.Random
    ) -> None:
        """`rng` is the run's own generator: the operators' order is drawn from it as the run reaches it."""
        self.market = config.market
        self.world = world
        self.names = names
        self.rng = rng
        self.unpaid: dict[str, int] = {}  # pool -> epochs running its expected reward was below its cost
        # the margin no owner goes below: its pool's (or its own, for a potential operator) in the file
        self.floor_margin = {p.name: p.margin_ppm for p in config.pools}
        self.floor_margin.update((o.name, o.margin_ppm) for o in world.operators)
        # an attacker's pools (`network.econ.attacker`): it wants seats, not profit, so neither rule moves them
        self.unmanaged = config.attacker.names if config.attacker else frozenset()

    def act(self, state: ChainState, market: Market, log: EpochLog) -> list[bytes]:
        """Retirements of pools that have not paid, then the top k's margins, then registrations.

        Decided on the ledger as the boundary's earlier transactions leave it,
        every pool's owner judging its own pool (founding pools' owners too),
        the potential operators in a seeded order, each seeing the pools the
        ones before it registered. Nothing acts without the file's [market].
        `market`: every pool quoted on `state` (`network.econ.quotes.market_of`).
        """
        market_rules = self.market
        if market_rules is None or market.rules is None:
            return []
        ledger = state.ledger
        rules = market.rules
        txs: list[bytes] = []
        retiring: set[bytes] = set()
        if market_rules.retire_after:
            for quote in market.open:
                name = self.names[quote.address]
                if name in self.unmanaged:
                    continue
                below = 0 if pays(rules, quote) else self.unpaid.get(name, 0) + 1
                self.unpaid[name] = below
                if below >= market_rules.retire_after:
                    key = self.world.owners[name]
                    tx = RetirePool(L.account_of(ledger, key.address).nonce, ledger.epoch + 1)
                    txs.append(sign_tx(state.chain_id, tx, key))
                    log.operators.append(f"{name} retires")
                    retiring.add(quote.address)
                    self.unpaid.pop(name)
        staying = [q for q in market.open if q.address not in retiring]
        standing = self._margins(rules, staying, state, txs, log)
        if not market_rules.entry:
            return txs
        order = list(self.world.operators)
        self.rng.shuffle(order)
        for operator in order:
            address = operator.keypair.address
            if not idle(ledger, operator) or not operator.pledge:
                continue
            terms = self._would_run(rules, operator)
            if L.account_of(ledger, address).balance < terms.pledge:
                continue  # a retired pool's pledge still unbonding
            if not would_enter(rules, terms, standing):
                continue
            nonce = L.account_of(ledger, address).nonce
            tx = RegisterPool(nonce, terms.pledge, operator.fixed_cost, operator.margin_ppm)
            txs.append(sign_tx(state.chain_id, tx, operator.keypair))
            standing.append(desirability(rules, terms))
            log.operators.append(f"{operator.name} registers")
        return txs

    @staticmethod
    def _would_run(rules: Rules, operator: Operator) -> Terms:
        """The pool a potential operator would register now: its cost and margin, its pledge (`pledge_for`)."""
        pledge = pledge_for(rules, operator.pledge)
        address = operator.keypair.address
        return Terms(address, operator.name, pledge, pledge, operator.fixed_cost, operator.margin_ppm)

    def _margins(
        self, rules: Rules, staying: list[Quote], state: ChainState, txs: list[bytes], log: EpochLog
    ) -> list[Fraction]:
        """Top-k pools' owners set competitive margins (`network.econ.operators.new_margin_ppm`); each
        staying pool's desirability after that, for the entrants to rank against."""
        ledger = state.ledger
        top = top_pools(rules, staying)
        entry = self.market is not None and self.market.entry
        waiting = [
            desirability(rules, self._would_run(rules, operator))
            for operator in self.world.operators
            if entry and operator.pledge and idle(ledger, operator)
        ]
        rival = max(
            [desirability(rules, q) for q in staying if q.address not in top] + waiting, default=Fraction(0)
        )
        standing = []
        for quote in staying:
            name = self.names[quote.address]
            margin = None
            if quote.address in top and rival > 0 and name not in self.unmanaged:
                margin = new_margin_ppm(rules, quote, rival, self.floor_margin[name])
            if margin is not None:
                nonce = L.account_of(ledger, quote.address).nonce
                tx = UpdatePool(nonce, quote.fixed_cost, margin)
                txs.append(sign_tx(state.chain_id, tx, self.world.owners[name]))
                log.operators.append(f"{name} margin {margin}")
                quote = replace(quote, margin_ppm=margin)
            standing.append(desirability(rules, quote))
        return standing


def idle(ledger: L.Ledger, operator: Operator) -> bool:
    """Whether a potential operator runs no pool now (never registered, or its pool retired)."""
    pool = ledger.pools.get(operator.keypair.address)
    return pool is None or pool.status == L.RETIRED
