"""The attacker's leverage: how little of its own stake buys a third of the committee (seed 002).

One holder splits its own stake S over n pools of pledge S/n each and asks
delegators to fill them. Brunjes, Kiayias, Koutsoupias and Stouka ("Reward
Sharing Schemes for Stake Pools", 2020) rank pools at equilibrium by their
potential profit at saturation, r(z0, lambda) - c with

    r(z0, lambda) = R / (1 + a0) * (z0 + a0 * lambda)          (lambda <= z0 = 1/k)

(the chain's `max_pool_share` at sigma = z0): the k best fill to z0 each,
any other keeps its pledge. With a0 = 0 the pledge lambda drops out, so an
attacker's pools out-rank honest ones on cost and margin alone: any stake
buys seats if its terms beat theirs, none if not; with a0 > 0 each of its
pools needs the pledge lambda* at which it out-ranks the honest pool it
displaces (`pledge_needed`):

    lambda* = ((D + c) (1 + a0) / R - z0) / a0,   S* = ceil(k/3) * lambda*

with D the desirability (`network.econ.nonmyopic.desirability`) of the
ceil(k/3)-th weakest honest pool of the top k, c the attacker's declared
cost (its margin 0). `plan` is that argument on this market's own pools
and operators (with the attacker's stake counted in the
total); `network.econ.leverage` measures the same thing with the economy
run, the crowd and the operators acting, by bisection on S.

Committee seats: with at most `committee_size` active pools every pool sits
with its stake as its vote (`node.core.selection.committee_powers`), so a
pool's stake share *is* its committee share; with more, seats are drawn by
stake units and a pool's expected seats are its stake share. Either way the
share of active stake the attacker's pools hold is what is measured.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from fractions import Fraction

from network.econ.config import ATTACKER, EVENT_KINDS, EconomyConfig, PoolSpec, TimelineEvent
from network.econ.nonmyopic import Rules, Terms, desirability
from network.econ.operators import pledge_for
from network.econ.world import World, build_world
from node.core.genesis import PPM

THIRD_PPM = (PPM + 2) // 3  # 333,334 ppm: at least one third of the stake


def total_stake(world: World) -> int:
    """All the stake of the world at genesis: balances, pledges and delegations."""
    genesis = world.genesis
    return sum(a.balance for a in genesis.accounts) + sum(
        v.pledge + sum(d.amount for d in v.delegations) for v in genesis.validators
    )


def attacker_amount(honest_total: int, stake_ppm: int) -> int:
    """S such that S / (honest_total + S) is `stake_ppm`: the attacker's stake is part of the total."""
    return honest_total * stake_ppm // (PPM - stake_ppm)


def honest_candidates(config: EconomyConfig, world: World, rules: Rules) -> list[Terms]:
    """Every honest pool the attacker's pools compete with for the top k, at its best terms.

    The file's pools at their terms, and (with free entry) every potential
    operator's pool as it would register it (`pledge_for`); margins at the
    file's, the lowest an owner goes (`network.econ.operators`): under
    attack an honest top pool competes down to it.
    """
    mine = config.attacker.names if config.attacker else frozenset()
    pools = [
        Terms(b"", p.name, p.pledge, p.pledge, p.fixed_cost, p.margin_ppm, p.performance_ppm)
        for p in config.pools
        if p.name not in mine
    ]
    if config.market is not None and config.market.entry:
        for operator in world.operators:
            pledge = pledge_for(rules, operator.pledge)
            if pledge:
                pools.append(
                    Terms(b"", operator.name, pledge, pledge, operator.fixed_cost, operator.margin_ppm)
                )
    return pools


def expected_stake(
    rules: Rules, rivals: Iterable[Fraction], stake: int, pools: int, cost: int, margin: int
) -> Fraction:
    """What `pools` attacker pools of pledge stake/pools expect to hold under the paper's ranking.

    `rivals`: the honest pools' desirabilities. Its pools beat an honest one
    only strictly (a tie goes to the larger stake: the incumbent); those of
    them in the top k fill to z0, the others keep their pledge.
    """
    pledge = stake // pools
    if pledge <= 0:
        return Fraction(0)
    mine = desirability(rules, Terms(b"", ATTACKER, pledge, pledge, cost, margin))
    best = sorted(rivals, reverse=True)[: rules.k] if rules.k > 0 else []
    slots = sum(1 for d in best if d < mine) + max(0, rules.k - len(best))
    seated = min(pools, slots)
    return seated * max(rules.saturated_stake, Fraction(pledge)) + (pools - seated) * pledge


def pledge_needed(rules: Rules, rival: Fraction, cost: int) -> Fraction | None:
    """lambda*, the pledge share at which a pool of cost `cost` and no margin is as desirable as `rival`.

    From r(z0, lambda) = R (z0 + a0 lambda) / (1 + a0) - c = D. 0 when even
    no pledge out-ranks the rival; None when no pledge up to z0 can (with
    a0 = 0 pledge counts for nothing, so that is whenever R z0 - c <= D).
    Outranking needs strictly more; a pledge just past lambda* has it.
    """
    z0, a0 = Fraction(1, rules.k) if rules.k > 0 else Fraction(1), Fraction(rules.a0_ppm, PPM)
    if a0 == 0:
        return Fraction(0) if rules.pot * z0 - cost > rival else None
    needed = ((rival + cost) * (1 + a0) / rules.pot - z0) / a0
    if needed > z0:
        return None
    return max(Fraction(0), needed)


def choose_pools(rules: Rules, rivals: list[Fraction], stake: int, cost: int, margin: int) -> int:
    """The number of pools that pays best: the most stake expected (ties: fewer pools), at most k."""
    most = max(1, rules.k)
    return max(range(1, most + 1), key=lambda n: (expected_stake(rules, rivals, stake, n, cost, margin), -n))


@dataclass(frozen=True)
class Plan:
    """What the attacker decides before its pools register: its stake, its pools, what it expects."""

    stake: int  # S, in the ledger's units
    pools: int
    total: int  # all the stake there is, S included
    expected_ppm: int  # the paper's prediction of the attacker's share of the stake


def plan(config: EconomyConfig, seed: int) -> Plan:
    """The attacker's stake and pool count for `config` (its [attacker] table), on the seed's world."""
    attacker = config.attacker
    if attacker is None:
        raise ValueError("no [attacker] in this economy")
    honest = build_world(replace(config, attacker=None), seed)
    honest_total = total_stake(honest)
    stake = attacker_amount(honest_total, attacker.stake_ppm)
    total = honest_total + stake
    rules = Rules.of(config.params, total)
    rivals = [desirability(rules, t) for t in honest_candidates(config, honest, rules)]
    pools = attacker.pools or choose_pools(rules, rivals, stake, attacker.fixed_cost, attacker.margin_ppm)
    expected = expected_stake(rules, rivals, stake, pools, attacker.fixed_cost, attacker.margin_ppm)
    share = min(Fraction(1), expected / total) * PPM
    return Plan(stake, pools, total, share.numerator // share.denominator)


def resolve(config: EconomyConfig, seed: int, chosen: Plan | None = None) -> EconomyConfig:
    """`config` with the attacker's pools in it (`chosen`, by default `plan`'s): registering at its
    epoch, funded at genesis. A config without an attacker, or already resolved, comes back as it is.
    """
    attacker = config.attacker
    if attacker is None or attacker.resolved:
        return config
    chosen = chosen or plan(config, seed)
    done = replace(attacker, pools=chosen.pools, resolved=True)
    pledge = chosen.stake // chosen.pools
    pools = tuple(
        PoolSpec(name, pledge, attacker.fixed_cost, attacker.margin_ppm, enters_epoch=attacker.epoch)
        for name in sorted(done.names, key=lambda n: (len(n), n))
    )
    events = config.events + tuple(TimelineEvent(attacker.epoch, "new_pool", p.name) for p in pools)
    return replace(
        config,
        pools=config.pools + pools,
        events=tuple(sorted(events, key=lambda e: (e.epoch, EVENT_KINDS.index(e.kind), e.pool))),
        attacker=done,
    )


def share_ppm(record: dict[str, object], names: frozenset[str]) -> int:
    """The share of active stake the pools in `names` hold in an epoch's record (their committee share)."""
    pools = record.get("pools", {})
    assert isinstance(pools, dict)
    active = {name: stake for name, (stake, _quote, status) in pools.items() if status == "active"}
    total = sum(active.values())
    return sum(stake for name, stake in active.items() if name in names) * PPM // total if total else 0
