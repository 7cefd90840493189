"""Downtime: each committee member's window of missed precommits, and jail past the allowed misses."""

from __future__ import annotations

from node.core.genesis import Params
from node.core.ledger.balances import set_pool
from node.core.ledger.slashing import burn, slash_stake
from node.core.ledger.values import (
    ACTIVE,
    JAILED,
    BlockContext,
    Ledger,
    LedgerEvent,
    Participation,
    Pool,
    replace,
)


def record_participation(pool: Pool, signed: bool, window: int) -> Pool:
    """Shift one committee participation into the pool's window (bit set = missed)."""
    missed = ((pool.missed << 1) | (0 if signed else 1)) & ((1 << window) - 1)
    return pool if missed == pool.missed else replace(pool, missed=missed)  # most heights change nothing


def missed_count(pool: Pool) -> int:
    return pool.missed.bit_count()


def jail_for_downtime(
    ledger: Ledger, address: bytes, epoch: int, params: Params
) -> tuple[Ledger, tuple[LedgerEvent, ...]]:
    """Jail, clear the window and burn a small pro-rata slash (no whistleblower: the chain saw it)."""
    misses = missed_count(ledger.pools[address])
    ledger, taken = slash_stake(ledger, address, params.slash_fraction_downtime_ppm)
    until = epoch + params.jail_epochs + 1
    ledger = set_pool(
        burn(ledger, taken), replace(ledger.pools[address], status=JAILED, jailed_until_epoch=until, missed=0)
    )
    reason = f"missed {misses} of the last {params.downtime_window} committee precommits"
    return ledger, (
        LedgerEvent("jailed", address, 0, f"{reason}; jailed until epoch {until}"),
        LedgerEvent("slashed", address, taken, "downtime"),
    )


def apply_downtime(
    ledger: Ledger, ctx: BlockContext, params: Params
) -> tuple[Ledger, tuple[LedgerEvent, ...]]:
    """Judge each height whose grace period ended with this block, oldest first.

    Not the certificate this block carries: that holds only the precommits
    its proposer had when it proposed (the first 2/3 in fast mode), so judging
    it would charge online validators for being slower than the rest.
    """
    events: tuple[LedgerEvent, ...] = ()
    for participation in ctx.judged:
        ledger, jailed = judge_participation(ledger, participation, ctx.epoch, params)
        events += jailed
    return ledger, events


def judge_participation(
    ledger: Ledger, participation: Participation, epoch: int, params: Params
) -> tuple[Ledger, tuple[LedgerEvent, ...]]:
    """Record one height's participation; jail active pools past the allowed misses, by address.

    One pass over the committee: every block judges a height, and most of
    them change no pool and jail nobody.
    """
    pools, signers = ledger.pools, participation.signers
    window, limit = params.downtime_window, params.max_missed_in_window
    changed: dict[bytes, Pool] = {}
    over: set[bytes] = set()
    for address in participation.committee:
        pool = pools.get(address)
        if pool is None or pool.status != ACTIVE:
            continue
        recorded = record_participation(pool, address in signers, window)
        if recorded is not pool:
            changed[address] = recorded
        if missed_count(recorded) > limit:
            over.add(address)
    ledger = replace(ledger, pools=pools.update(changed))
    events: tuple[LedgerEvent, ...] = ()
    for address in sorted(over):
        ledger, jailed = jail_for_downtime(ledger, address, epoch, params)
        events += jailed
    return ledger, events
