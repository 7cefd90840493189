"""Paying a block's rewards: which pools are paid, into balances or compounded, now or at the epoch start.

How much each pool and member gets is node.core.rewards' arithmetic; this
module applies it to a ledger and keeps the reserve and the issued total.
"""

from __future__ import annotations

from collections.abc import Mapping

from node.core import rewards as R
from node.core.genesis import Params
from node.core.ledger.balances import credit_accounts
from node.core.ledger.queries import stake_snapshot
from node.core.ledger.values import (
    TOMBSTONED,
    BlockContext,
    FrozenMap,
    Ledger,
    LedgerEvent,
    Pool,
    StakeSnapshot,
    merge_amounts,
    replace,
)


def is_rewardable(ledger: Ledger, address: bytes) -> bool:
    pool = ledger.pools.get(address)
    return pool is not None and can_earn(pool)


def can_earn(pool: Pool) -> bool:
    """Whether a pool can still be paid: every status but tombstoned."""
    return pool.status != TOMBSTONED


def rewarded_signers(ledger: Ledger, ctx: BlockContext) -> tuple[tuple[bytes, int], ...]:
    """(address, committee power) of the previous certificate's signers that can be paid."""
    rewardable, signers = ledger.pools.derived(_rewardable), ctx.prev_signers
    return tuple(
        (address, power)
        for address, power in ctx.prev_committee
        if address in signers and power > 0 and address in rewardable
    )


def _rewardable(pools: FrozenMap[bytes, Pool]) -> frozenset[bytes]:
    """The pools `is_rewardable` says yes to, once per pool map: every block asks it of every signer."""
    return frozenset(address for address, pool in pools.items() if can_earn(pool))


def block_pool_rewards(ledger: Ledger, ctx: BlockContext, params: Params) -> dict[bytes, int]:
    """Each pool's share of the block reward before reward sharing (see `rewards.block_shares`)."""
    proposer = ctx.proposer if is_rewardable(ledger, ctx.proposer) else None
    signers = rewarded_signers(ledger, ctx)
    return R.block_shares(params.block_reward, params.proposer_reward_ppm, proposer, signers)


def apply_rewards(
    ledger: Ledger, ctx: BlockContext, params: Params
) -> tuple[Ledger, tuple[LedgerEvent, ...]]:
    """Pay the block's rewards into liquid balances of operators and delegators.

    With saturation or pledge influence on, the shares pass through reward
    sharing, the reserve funds the payout first and takes what was withheld
    (`rewards.settle_reserve`); off, the reserve stays 0 and the shares are paid as minted
    (less the floors' dust of each pool's split: `pay_pools`).
    Reward sharing reads the stake snapshot of the committee that earned the
    shares (`ctx.stake`), never the stake as this block finds it: stake moved
    since those seats were drawn changes neither the cap nor the pledge bonus.
    """
    shares = block_pool_rewards(ledger, ctx, params)
    rewards = shared(shares, ctx.stake or stake_snapshot(ledger, params), params)
    minted, reserve = R.settle_reserve(ledger.reserve, sum(rewards.values()), R.withheld(shares, rewards))
    ledger = replace(ledger, issued=ledger.issued + minted, reserve=reserve)
    if params.epoch_rewards:
        earned = {address: ledger.accrued.get(address, 0) + amount for address, amount in rewards.items()}
        ledger = replace(ledger, accrued=ledger.accrued.update(earned))
    else:
        ledger = pay_pools(ledger, rewards, params)
    return ledger, tuple(LedgerEvent("rewarded", a, rewards[a], "block reward") for a in sorted(rewards))


def shared(shares: dict[bytes, int], stake: StakeSnapshot | None, params: Params) -> dict[bytes, int]:
    """The shares after reward sharing by `stake` (None only when sharing is off: the shares as they are)."""
    if stake is None:
        return shares
    return R.shared_rewards(shares, stake.stakes, stake.total, params, stake.bonded)


def pay_pools(ledger: Ledger, rewards: Mapping[bytes, int], params: Params) -> Ledger:
    """Split each pool's reward (cost, margin, members by shares) into balances, or compound the members' part.

    The floors' dust (`rewards.split_pool_reward`) goes back to the reserve
    with reward sharing on, as Cardano's undistributed rewards do. With it
    off the reserve is kept at 0 (a chain without sharing keeps its state's
    shape) and the dust is simply not minted: `issued` counts only what was paid.
    """
    payouts = {
        address: R.split_pool_reward(ledger.pools[address], rewards[address]) for address in sorted(rewards)
    }
    credits = merge_amounts(
        pair
        for address, payout in payouts.items()
        for pair in ((ledger.pools[address].operator, payout.operator), *payout.members)
    )
    compounded = {
        address: replace(pool, member_tokens=pool.member_tokens + payout.compounded)
        for address, payout in payouts.items()
        if payout.compounded and (pool := ledger.pools[address])
    }
    ledger = replace(credit_accounts(ledger, credits), pools=ledger.pools.update(compounded))
    dust = sum(payout.dust for payout in payouts.values())
    if R.sharing_is_on(params):
        return replace(ledger, reserve=ledger.reserve + dust)
    return replace(ledger, issued=ledger.issued - dust)


def pay_accrued(ledger: Ledger, params: Params) -> Ledger:
    """epoch_rewards: what each pool earned during the epoch, paid out at its start by the shares then."""
    if not ledger.accrued:
        return ledger
    return pay_pools(replace(ledger, accrued=FrozenMap()), ledger.accrued, params)
