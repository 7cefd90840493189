"""The ledger: accounts, stake pools, delegation, rewards and penalties.

Everything is a pure function over frozen values, in integers only: every
node must reach the same ledger from the same blocks, and floats or clocks
would let machines disagree. Each division is a floor; what a floor leaves
over is given to someone named (the proposer, for the block's split), put
in the reserve (a pool's split, with reward sharing on) or not minted at
all, so that at every step

    total_supply(ledger) == ledger.genesis_supply + ledger.issued - ledger.slashed

holds exactly (`slashed` counts what was burned; the supply counts the
reserve, where reward sharing puts what it withholds and the splits' dust).

Choices, documented because other modules depend on them:
- A delegation is a number of shares of its pool (node.core.shares): the pool
  holds the member tokens behind all shares, so a slash or a compounded
  reward changes every share's value in one step, and shares can be
  transferred like a receipt token. The operator's own stake is the pledge,
  never shares.
- Rewards are credited to liquid account balances, except a compounding
  pool's member part, which is added to its member tokens (the exchange
  rate rises). How much each pool and account gets is node.core.rewards'
  arithmetic; this module applies it.
- A pool's address is its operator's account address. For the operator,
  `delegate`/`undelegate` on its own pool add to / withdraw from the pledge;
  an operator never holds a delegation in its own pool.
- Jail: a pool jailed in epoch e may unjail from epoch `e + jail_epochs + 1`
  (the rest of epoch e plus `jail_epochs` whole epochs).
- Unbonding: stake undelegated in epoch e is released by `start_epoch` of
  epoch `e + unbonding_epochs + 1`, and is slashed with its pool until then.
- Downtime is tracked for active pools only; a jailed or tombstoned pool
  leaves the committee at the next height and is not penalised again for
  the heights still being judged.
- Tombstoned pools earn no rewards and accept no new delegations; their
  delegators (and operator) can still undelegate.

The package, one module per concern (arrows point up this list, never down):
- values: the persistent map, the records, `replace`;
- queries: stakes, supply, the validator set, concentration;
- balances: credits, debits, deposits into and withdrawals from pools;
- genesis: the ledger before height 1, the liquid stake snapshot;
- slashing: cutting a pool's stake, its unbonding and redelegated stake;
- evidence: judging and punishing equivocation;
- downtime: the missed-precommit window and jail;
- rewards: paying a block's rewards (node.core.rewards does the arithmetic);
- transactions: each kind's check (`tx_problem`) and its step (`apply_tx`);
- epochs: `apply_block` and `start_epoch`, the entry points from the chain.

Every public name of these modules is re-exported here, so callers keep
writing `from node.core import ledger as L` and `L.apply_tx`; the public
names are those below in `__all__` (everything without a leading
underscore but the type variables).
"""

from __future__ import annotations

from node.core.ledger.balances import (
    credit_accounts,
    credited,
    debit_account,
    deposit,
    move_shares,
    set_pool,
    withdraw,
)
from node.core.ledger.downtime import (
    apply_downtime,
    jail_for_downtime,
    judge_participation,
    missed_count,
    record_participation,
)
from node.core.ledger.epochs import (
    apply_block,
    start_epoch,
)
from node.core.ledger.evidence import (
    apply_evidence,
    evidence_problem,
    punish_equivocation,
    whistleblower_account,
)
from node.core.ledger.genesis import (
    genesis_ledger,
    genesis_pool,
    snapshot_liquid_stake,
)
from node.core.ledger.queries import (
    NO_ACCOUNT,
    account_of,
    active_powers,
    bonded_stake,
    circulating_supply,
    leverage_ppm,
    member_stakes,
    nakamoto_coefficient,
    pool_status,
    stake_distribution,
    stake_of,
    stake_snapshot,
    supply_is_conserved,
    total_supply,
)
from node.core.ledger.rewards import (
    apply_rewards,
    block_pool_rewards,
    can_earn,
    is_rewardable,
    pay_accrued,
    pay_pools,
    rewarded_signers,
)
from node.core.ledger.slashing import (
    burn,
    cut,
    slash_pool_stake,
    slash_redelegations,
    slash_stake,
    slash_unbonding,
)
from node.core.ledger.transactions import (
    LIQUID_HAS_NO_SHARES,
    SIGNING_KEY_HOLDS_NOTHING,
    SIGNING_KEY_SENDS_NOTHING,
    apply_delegate,
    apply_redelegate,
    apply_register_pool,
    apply_retire_pool,
    apply_rotate_key,
    apply_transfer,
    apply_transfer_shares,
    apply_tx,
    apply_txs,
    apply_undelegate,
    apply_unjail,
    bump_nonce,
    checked_tx,
    delegate_problem,
    label,
    leverage_problem,
    pool_closed_problem,
    process_tx,
    redelegate_problem,
    register_pool_problem,
    retire,
    retire_pool_problem,
    rotate_key_problem,
    rotate_keys,
    signed_tx_problem,
    transfer_problem,
    transfer_shares_problem,
    tx_events,
    tx_problem,
    tx_type_problem,
    undelegate_problem,
    unjail_problem,
    update_pool_problem,
)
from node.core.ledger.values import (
    ACTIVE,
    JAILED,
    RETIRED,
    TOMBSTONED,
    Account,
    BlockContext,
    EvidenceKey,
    FrozenMap,
    Ledger,
    LedgerEvent,
    Participation,
    Pool,
    PoolStatus,
    Redelegation,
    Redelegations,
    StakeSnapshot,
    Unbonding,
    merge_amounts,
    pool_power,
    replace,
)

__all__ = [
    "ACTIVE",
    "JAILED",
    "LIQUID_HAS_NO_SHARES",
    "NO_ACCOUNT",
    "RETIRED",
    "SIGNING_KEY_HOLDS_NOTHING",
    "SIGNING_KEY_SENDS_NOTHING",
    "TOMBSTONED",
    "Account",
    "BlockContext",
    "EvidenceKey",
    "FrozenMap",
    "Ledger",
    "LedgerEvent",
    "Participation",
    "Pool",
    "PoolStatus",
    "Redelegation",
    "Redelegations",
    "StakeSnapshot",
    "Unbonding",
    "account_of",
    "active_powers",
    "apply_block",
    "apply_delegate",
    "apply_downtime",
    "apply_evidence",
    "apply_redelegate",
    "apply_register_pool",
    "apply_retire_pool",
    "apply_rewards",
    "apply_rotate_key",
    "apply_transfer",
    "apply_transfer_shares",
    "apply_tx",
    "apply_txs",
    "apply_undelegate",
    "apply_unjail",
    "block_pool_rewards",
    "bonded_stake",
    "bump_nonce",
    "burn",
    "can_earn",
    "checked_tx",
    "circulating_supply",
    "credit_accounts",
    "credited",
    "cut",
    "debit_account",
    "delegate_problem",
    "deposit",
    "evidence_problem",
    "genesis_ledger",
    "genesis_pool",
    "is_rewardable",
    "jail_for_downtime",
    "judge_participation",
    "label",
    "leverage_ppm",
    "leverage_problem",
    "member_stakes",
    "merge_amounts",
    "missed_count",
    "move_shares",
    "nakamoto_coefficient",
    "pay_accrued",
    "pay_pools",
    "pool_closed_problem",
    "pool_power",
    "pool_status",
    "process_tx",
    "punish_equivocation",
    "record_participation",
    "redelegate_problem",
    "register_pool_problem",
    "replace",
    "retire",
    "retire_pool_problem",
    "rewarded_signers",
    "rotate_key_problem",
    "rotate_keys",
    "set_pool",
    "signed_tx_problem",
    "slash_pool_stake",
    "slash_redelegations",
    "slash_stake",
    "slash_unbonding",
    "snapshot_liquid_stake",
    "stake_distribution",
    "stake_of",
    "stake_snapshot",
    "start_epoch",
    "supply_is_conserved",
    "total_supply",
    "transfer_problem",
    "transfer_shares_problem",
    "tx_events",
    "tx_problem",
    "tx_type_problem",
    "undelegate_problem",
    "unjail_problem",
    "update_pool_problem",
    "whistleblower_account",
    "withdraw",
]
