"""A finalized block's steps in order, and an epoch's start: the ledger's two entry points from the chain."""

from __future__ import annotations

from node.core.genesis import Params
from node.core.ledger.balances import credit_accounts
from node.core.ledger.downtime import apply_downtime
from node.core.ledger.evidence import apply_evidence
from node.core.ledger.genesis import snapshot_liquid_stake
from node.core.ledger.rewards import apply_rewards, pay_accrued
from node.core.ledger.transactions import apply_txs, retire, rotate_keys
from node.core.ledger.values import (
    RETIRED,
    TOMBSTONED,
    BlockContext,
    Ledger,
    LedgerEvent,
    Redelegations,
    merge_amounts,
    replace,
)


def apply_block(
    ledger: Ledger, ctx: BlockContext, txs: tuple[bytes, ...], params: Params, chain_id: str
) -> tuple[Ledger, tuple[LedgerEvent, ...]]:
    """The ledger after a finalized block: evidence, downtime, rewards, then transactions."""
    ledger = replace(ledger, epoch=ctx.epoch)
    ledger, evidence_events = apply_evidence(ledger, ctx, params)
    ledger, downtime_events = apply_downtime(ledger, ctx, params)
    ledger, reward_events = apply_rewards(ledger, ctx, params)
    ledger, transaction_events = apply_txs(ledger, txs, params, chain_id)
    return ledger, evidence_events + downtime_events + reward_events + transaction_events


def start_epoch(ledger: Ledger, epoch: int, params: Params) -> tuple[Ledger, tuple[LedgerEvent, ...]]:
    """Enter `epoch`: pools due retire, rotated signing keys take over, unbonding entries due
    return to their owners' balances, and redelegations past their slashable period are forgotten."""
    ledger = pay_accrued(ledger, params)
    ledger, rotated = rotate_keys(ledger, epoch)
    retired: tuple[LedgerEvent, ...] = ()
    for address in sorted(ledger.pools):
        pool = ledger.pools[address]
        if pool.retiring_epoch and pool.retiring_epoch <= epoch and pool.status not in (TOMBSTONED, RETIRED):
            ledger, event = retire(ledger, address, epoch, params)
            retired += (event,)
    slashable = Redelegations(e for e in ledger.redelegations if e.release_epoch > epoch)
    ledger = replace(ledger, redelegations=slashable)
    due = tuple(e for e in ledger.unbonding if e.release_epoch <= epoch)
    kept = tuple(e for e in ledger.unbonding if e.release_epoch > epoch)
    ledger = credit_accounts(ledger, merge_amounts((e.delegator, e.amount) for e in due))
    if ledger.liquid:
        ledger = snapshot_liquid_stake(ledger)
    events = tuple(
        LedgerEvent("released", e.delegator, e.amount, f"unbonded from pool {e.pool.hex()[:8]}") for e in due
    )
    return replace(ledger, unbonding=kept, epoch=epoch), rotated + retired + events
