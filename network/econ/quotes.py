"""Requoting the market after one delegator's move, without quoting every pool again.

An economy's delegators move hundreds of times an epoch, and each move
changes the quotes the next delegator decides on. Quoting all pools after
each move (a pool view each) was most of a move's cost; this module quotes
again only what a move can have changed, and the tests hold it to the
from-scratch quotes at every move of a run.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

from network.econ.nonmyopic import Rules
from network.econ.policies import Market, Quote
from node.core import ledger as L
from node.core import rewards as R
from node.core.genesis import PPM
from node.core.query import YIELD_PROBE, SetView, name_of
from node.core.shares import exchange_rate_ppm
from node.core.state import ChainState


def requote(
    market: Market, context: SetView, state: ChainState, before: L.Ledger, touched: tuple[bytes | None, ...]
) -> tuple[Market, SetView]:
    """The market after a move to `state`, and the totals it is quoted on.

    Every quote depends on its pool and on the total stake (a pool's share
    of it); a redelegation moves stake between two pools and leaves the
    totals alone, so the other quotes stand. Anything else quotes afresh.
    The totals are those the market was quoted on, moved by what the changed
    pools changed (summing every pool twice a move cost more than the move);
    a pool changed that the move did not name also quotes every pool afresh.
    """
    after = state.ledger
    named = {address for address in touched if address}
    changed = _changed_pools(before, after)
    totals = (context.active_total, context.bonded_total)
    if (
        changed is None
        or not named.issuperset(changed)
        or _moved_totals(totals, before, after, changed) != totals
    ):
        context = SetView.of(state)
        return market_of(state, context), context
    fresh = {
        address: quote(state, after.pools[address], context) for address in named if address in after.pools
    }
    return market.requoted(fresh), context


def market_of(state: ChainState, context: SetView) -> Market:
    """Every pool quoted from scratch, with the reward rules and stake total the non-myopic rule reads."""
    return Market(
        tuple(quote(state, pool, context) for pool in state.ledger.pools.values()),
        Rules.of(state.params, context.bonded_total),
    )


def quote(state: ChainState, pool: L.Pool, context: SetView) -> Quote:
    """`Quote.of(pool_view(state, pool, context=context))`, without the rest of the view.

    The same fields from the same functions the view calls; a move requotes
    two pools, thousands of times an epoch, and the whole view was most of it.
    """
    performance = R.apparent_performance_ppm(L.missed_count(pool), state.params.downtime_window)
    return Quote(
        address=pool.address,
        name=name_of(state, pool.address),
        open=pool.status == L.ACTIVE and not pool.retiring_epoch,
        stake=L.pool_power(pool),
        yield_ppm=member_yield_ppm(state, pool, context),
        exchange_rate_ppm=exchange_rate_ppm(pool.total_shares, pool.member_tokens),
        pledge=pool.pledge,
        fixed_cost=pool.fixed_cost,
        margin_ppm=pool.margin_ppm,
        performance_ppm=performance,
        rate_for=partial(_yield_with, state, pool, context),
    )


def member_yield_ppm(state: ChainState, pool: L.Pool, context: SetView, added: int = YIELD_PROBE) -> int:
    """`(member_rate(state, pool, context) * PPM).__floor__()`, the floor taken in integers.

    The pools view's rate is a Fraction, and making it and scaling it cost
    two gcds of numbers of a hundred digits: most of a quote. `added`: the
    delegation quoted for (the view's probe by default).
    """
    if pool.status != L.ACTIVE or pool.retiring_epoch:
        return 0
    performance = R.apparent_performance_ppm(L.missed_count(pool), state.params.downtime_window)
    num, den = R.expected_member_rate_terms(
        pool, added, context.active_total, context.bonded_total, performance, state.params
    )
    return num * PPM // den


def _yield_with(state: ChainState, pool: L.Pool, context: SetView, amount: int, moving: bool) -> int:
    """The pool's member yield in ppm with `amount` more in it (`Quote.yield_for`).

    Stake that moves from another active pool leaves the totals as they were,
    so they are taken down by it first; the rate formula adds it back.
    """
    amount = max(amount, YIELD_PROBE)
    if moving:
        context = replace(
            context, active_total=context.active_total - amount, bonded_total=context.bonded_total - amount
        )
    return member_yield_ppm(state, pool, context, amount)


def _moved_totals(
    totals: tuple[int, int], before: L.Ledger, after: L.Ledger, changed: list[bytes]
) -> tuple[int, int]:
    """(active, bonded) stake totals after a step, from those before and the pools it changed."""
    active, bonded = totals
    for address in changed:
        active += _active_stake(after.pools[address]) - _active_stake(before.pools[address])
        bonded += _bonded_stake(after.pools[address]) - _bonded_stake(before.pools[address])
    return active, bonded


def _changed_pools(before: L.Ledger, after: L.Ledger) -> list[bytes] | None:
    """The pools `after` holds as other values than `before` (None: a pool came or went).

    Side by side in the maps' order, by identity: a ledger step copies its
    pool map and replaces only what it changes. Should the orders ever
    differ, more pools count as changed, which costs a full requote, never a
    wrong quote.
    """
    if len(before.pools) != len(after.pools):
        return None
    changed = [
        address
        for (address, pool), was in zip(after.pools.items(), before.pools.values(), strict=True)
        if pool is not was
    ]
    return changed if all(address in before.pools for address in changed) else None


def _active_stake(pool: L.Pool) -> int:
    """What `pool` adds to the active total the ledger's `active_total` sums."""
    return L.pool_power(pool) if pool.status == L.ACTIVE else 0


def _bonded_stake(pool: L.Pool) -> int:
    """What `pool` adds to the bonded total `ledger.bonded_stake` sums."""
    return L.pool_power(pool) if pool.status != L.TOMBSTONED else 0
