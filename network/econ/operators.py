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

from collections.abc import Iterable
from fractions import Fraction

from network.econ.nonmyopic import Offer, Rules, Terms, desirability, potential_reward
from node.core.genesis import PPM

MARGIN_STEP_PPM = 5_000  # a margin moves once its target is this far (0.5 points) from it


def pays(rules: Rules, offer: Offer) -> bool:
    """Whether the pool's expected reward at its stake now covers its fixed cost."""
    return potential_reward(rules, offer.stake, offer.pledge, offer.performance_ppm) >= offer.fixed_cost


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
    bare = desirability(rules, Terms(offer.address, offer.name, offer.stake, offer.pledge, offer.fixed_cost))
    if bare <= 0 or rival >= bare:
        return floor_ppm
    margin = (1 - rival / bare) * PPM
    return max(floor_ppm, min(PPM, margin.numerator // margin.denominator))


def new_margin_ppm(rules: Rules, offer: Offer, rival: Fraction, floor_ppm: int) -> int | None:
    """The margin to set now (`competitive_margin_ppm`), or None while it is within a step of today's."""
    target = competitive_margin_ppm(rules, offer, rival, floor_ppm)
    return target if abs(target - offer.margin_ppm) >= MARGIN_STEP_PPM else None
