"""Slashing: cutting a pool's stake pro rata, with what is unbonding or redelegated away from it.

Evidence (equivocation) and downtime decide when and how much; this module
decides from whom, and reports what it took so the caller says where it goes.
"""

from __future__ import annotations

from node.core.genesis import PPM
from node.core.ledger.balances import set_pool, withdraw
from node.core.ledger.queries import stake_of
from node.core.ledger.values import Ledger, Pool, Redelegations, Unbonding, replace


def cut(amount: int, fraction_ppm: int) -> int:
    """The floor of `fraction_ppm` of `amount`: what a slash takes from one holding."""
    return amount * fraction_ppm // PPM


def slash_pool_stake(pool: Pool, fraction_ppm: int, liquid: bool = False) -> tuple[Pool, int]:
    """Cut the pledge and the member tokens by the same fraction (every share at once); the pool and the cut.

    With liquid delegation the members' stake is their spendable balance,
    so only the pledge is at stake.
    """
    pledge_cut = cut(pool.pledge, fraction_ppm)
    members_cut = 0 if liquid else cut(pool.member_tokens, fraction_ppm)
    slashed = replace(pool, pledge=pool.pledge - pledge_cut, member_tokens=pool.member_tokens - members_cut)
    return slashed, pledge_cut + members_cut


def slash_unbonding(
    entries: tuple[Unbonding, ...], pool: bytes, fraction_ppm: int
) -> tuple[tuple[Unbonding, ...], int]:
    """Cut the pool's unbonding entries by the same fraction: leaving does not escape the penalty."""
    slashed = tuple(
        replace(e, amount=e.amount - cut(e.amount, fraction_ppm)) if e.pool == pool else e for e in entries
    )
    return slashed, sum(e.amount for e in entries) - sum(e.amount for e in slashed)


def slash_redelegations(ledger: Ledger, source: bytes, fraction_ppm: int) -> tuple[Ledger, int]:
    """Cut what left `source` by redelegation and is still slashable, from the pools it went to.

    Each entry loses the fraction of its amount, taken from the delegator's
    stake in the target pool (as much of it as is still there: stake moved
    on again, or undelegated, escapes only what it no longer is).
    """
    taken, entries = 0, []
    for entry in ledger.redelegations:
        if entry.source != source:
            entries.append(entry)
            continue
        due = cut(entry.amount, fraction_ppm)
        target = ledger.pools[entry.target]
        take = min(due, stake_of(target, entry.delegator))
        if take:
            ledger = set_pool(ledger, withdraw(target, entry.delegator, take))
        taken += take
        entries.append(replace(entry, amount=entry.amount - due))
    return replace(ledger, redelegations=Redelegations(entries)), taken


def slash_stake(ledger: Ledger, address: bytes, fraction_ppm: int) -> tuple[Ledger, int]:
    """Slash everything staked with a pool, pro rata; the caller decides where the cut goes.

    Like unbonding stake, stake redelegated away is slashed for any offence
    punished before it matures (a conservative simplification of Cosmos,
    which spares stake that left before the offence's height).
    """
    pool, from_pool = slash_pool_stake(ledger.pools[address], fraction_ppm, ledger.liquid)
    unbonding, from_unbonding = slash_unbonding(ledger.unbonding, address, fraction_ppm)
    slashed = replace(ledger, pools=ledger.pools.set(address, pool), unbonding=unbonding)
    slashed, from_redelegations = slash_redelegations(slashed, address, fraction_ppm)
    return slashed, from_pool + from_unbonding + from_redelegations


def burn(ledger: Ledger, amount: int) -> Ledger:
    return replace(ledger, slashed=ledger.slashed + amount)
