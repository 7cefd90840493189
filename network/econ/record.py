"""What an economy run writes for each epoch: one JSON-able record of where the stake stands.

Both modes (fast-forward and the message-level simulator) write the same
record from the same state, so it is built here, apart from how either mode
gets to that state: concentration (`network.econ.metrics`), each pool's
stake, quote and status, each delegator class's holdings and yield, the
ledger's totals and hash, and what the epoch's log saw happen.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from network.econ import metrics as M
from network.econ.digest import ledger_hash
from network.econ.policies import Market
from node.core import ledger as L
from node.core.genesis import PPM
from node.core.shares import share_value
from node.core.state import ChainState


@dataclass
class EpochLog:
    """What happened during one epoch, for its record."""

    moves: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    policy_misses: int = (
        0  # yield delegators left in a pool quoted worse than the best by more than their cost
    )
    events: list[str] = field(default_factory=list)  # the timeline's, as the file names them
    penalties: list[str] = field(default_factory=list)  # what the ledger did: jailed, tombstoned, unjailed
    operators: list[str] = field(default_factory=list)  # operators' choices: "NAME registers", "NAME retires"


def epoch_record(
    epoch: int,
    state: ChainState,
    market: Market,
    names: Mapping[bytes, str],
    classes: Iterable[str],
    log: EpochLog,
    before: Mapping[str, tuple[int, int]],
    after: Mapping[str, tuple[int, int]],
    since: ChainState | None = None,
) -> dict[str, Any]:
    """The record of `epoch` (-1: genesis), which ended in `state`, with `market` the pools quoted on it.

    `before` and `after` are each class's (holdings, staked value) at the
    epoch's start and end (`class_holdings`); a class's yield is what its
    holdings gained (its rewards, less any slash) over the stake that earned
    them (`yield_ppm`), not the growth of its holdings: rewards paid out and
    left in balances would otherwise dilute the rate epoch after epoch.
    `since`: the state the epoch started from, for the share of its possible
    rewards paid (what was minted, less what went into the reserve).
    """
    ledger = state.ledger
    active = [power for _, power in L.active_powers(ledger)]
    bonded, k = L.bonded_stake(ledger), state.params.saturation_k
    paid = 0
    if since is not None:
        minted = ledger.issued - since.ledger.issued
        paid = M.paid_ppm(
            minted - (ledger.reserve - since.ledger.reserve),
            state.height - since.height,
            state.params.block_reward,
        )
    quotes = market.by_address
    pools = {
        names.get(address, address.hex()[:8]): [L.pool_power(pool), quotes[address].yield_ppm, pool.status]
        for address, pool in sorted(ledger.pools.items(), key=lambda item: names.get(item[0], ""))
    }
    return {
        "epoch": epoch,
        "height": state.height,
        "ledger_hash": ledger_hash(ledger).hex(),
        "nakamoto": M.nakamoto(active),
        "gini_ppm": M.gini_ppm(active),
        "hhi_ppm": M.hhi_ppm(active),
        "top3_ppm": M.top_share_ppm(active),
        "saturated": M.saturated(active, bonded, k),
        "largest_of_saturation_ppm": M.largest_of_saturation_ppm(active, bonded, k),
        "half_saturated": M.half_saturated(active, bonded, k),
        "paid_ppm": paid,
        "active_pools": len(active),
        "reserve": ledger.reserve,
        "forgone": forgone(state),
        "block_reward": state.params.block_reward,
        "saturation_k": k,
        "pledge_influence_ppm": state.params.pledge_influence_ppm,
        "issued": ledger.issued,
        "slashed": ledger.slashed,
        "supply_conserved": L.supply_is_conserved(ledger),
        "pools": pools,
        "classes": {
            name: {
                "holdings": after.get(name, NOTHING)[0],
                "staked": after.get(name, NOTHING)[1],
                "yield_ppm": yield_ppm(before.get(name, NOTHING)[0], *after.get(name, NOTHING)),
            }
            for name in classes
        },
        "moves": log.moves,
        "policy_misses": log.policy_misses,
        "rejected": dict(sorted(log.rejected.items())),
        "events": log.events,
        "penalties": log.penalties,
        "operators": log.operators,
    }


def class_holdings(
    ledger: L.Ledger, members: Iterable[tuple[bytes, str]], where: Mapping[bytes, bytes]
) -> dict[str, tuple[int, int]]:
    """Each class's (holdings, staked value) over its (address, class) members.

    Holdings: balances, unbonding, and the stake each holds in the pool
    `where` says it is in; staked: that stake alone (locked delegation), or
    the balance of a delegated account (liquid: the balance is the stake).
    """
    unbonding: Counter[bytes] = Counter()
    for entry in ledger.unbonding:
        unbonding[entry.delegator] += entry.amount
    accounts, pools = ledger.accounts.plain(), ledger.pools.plain()  # C look-ups, 10,000 each
    worths: dict[bytes, dict[bytes, int]] = {}  # pool -> what each member's shares are worth, once
    totals: Counter[str] = Counter()
    staked: Counter[str] = Counter()
    liquid = ledger.liquid
    for address, cls in members:
        account = accounts.get(address, L.NO_ACCOUNT)
        held = account.balance + unbonding.get(address, 0)
        pool = None if liquid else pools.get(where.get(address, b""))
        stake = 0
        if pool is not None:
            if address == pool.operator:
                stake = pool.pledge
            else:
                worth = worths.get(pool.address)
                if worth is None:
                    worth = worths[pool.address] = member_worth(pool)
                stake = worth.get(address, 0)
        elif liquid and account.delegated_to:
            staked[cls] += account.balance
        totals[cls] += held + stake
        staked[cls] += stake
    return {cls: (total, staked[cls]) for cls, total in totals.items()}


def member_worth(pool: L.Pool) -> dict[bytes, int]:
    """`L.stake_of(pool, member)` for every member at once (the share total and tokens read once)."""
    total, tokens = pool.total_shares, pool.member_tokens
    return {member: share_value(count, total, tokens) for member, count in pool.shares.items()}


NOTHING = (0, 0)  # a class with no members: no holdings, nothing staked


def yield_ppm(before: int, after: int, staked: int) -> int:
    """What holdings gained in an epoch (rewards, less slashes) per unit staked at its end, in ppm.

    The stake at the end is the stake that was delegated through the epoch:
    moves and re-staking happen in its first blocks.
    """
    return (after - before) * PPM // staked if staked > 0 else 0


def forgone(state: ChainState) -> int:
    """Issuance forgone so far: what every block could have paid (its whole block reward) less what was
    paid, i.e. what saturation and pledge influence withheld (and floors' dust), summed over the chain.

    The reserve is not that: it pays later rewards before anything new is
    minted, so it rises and falls. Paid so far is what was minted less what
    sits in the reserve (genesis mints nothing and holds no reserve).
    """
    ledger = state.ledger
    return state.height * state.params.block_reward - (ledger.issued - ledger.reserve)
