"""What a ledger holds, read without changing it: stakes, supply, the validator set, concentration."""

from __future__ import annotations

from node.core import rewards as R
from node.core import shares as S
from node.core.genesis import PPM, Params
from node.core.ledger.values import TOMBSTONED, Account, Ledger, Pool, StakeSnapshot, pool_power


def active_powers(ledger: Ledger) -> tuple[tuple[bytes, int], ...]:
    """The validator set the ledger would have now: active pools with stake, sorted by address."""
    return ledger.active_powers


def pool_status(ledger: Ledger, address: bytes) -> str:
    pool = ledger.pools.get(address)
    return "unknown" if pool is None else pool.status


NO_ACCOUNT = Account()
"""What an address never seen holds: one shared value (frozen), not a new one per look-up."""


def account_of(ledger: Ledger, address: bytes) -> Account:
    return ledger.accounts.get(address, NO_ACCOUNT)


def stake_of(pool: Pool, delegator: bytes) -> int:
    """What `delegator` has in `pool`: the pledge for the operator, else what its shares are worth."""
    if delegator == pool.operator:
        return pool.pledge
    return S.share_value(pool.shares.get(delegator, 0), pool.total_shares, pool.member_tokens)


def member_stakes(pool: Pool) -> dict[bytes, int]:
    """What every member's shares are worth, in holder order (the share total summed once, not per holder)."""
    total = pool.total_shares
    return {
        holder: S.share_value(count, total, pool.member_tokens)
        for holder, count in sorted(pool.shares.items())
    }


def leverage_ppm(pool: Pool) -> int | None:
    """The pool's stake over its pledge, in ppm (None without pledge: unbounded)."""
    return pool_power(pool) * PPM // pool.pledge if pool.pledge else None


def total_supply(ledger: Ledger) -> int:
    """Every unit in existence: balances, pledges, delegations, unbonding stake and the reserve.

    With liquid delegation the members' stake is a snapshot of balances,
    counted once, as balances.
    """
    balances = sum(account.balance for account in ledger.accounts.values())
    if ledger.liquid:
        staked = sum(pool.pledge for pool in ledger.pools.values())
    else:
        staked = sum(pool_power(pool) for pool in ledger.pools.values())
    accrued = sum(ledger.accrued.values())
    return balances + staked + accrued + sum(entry.amount for entry in ledger.unbonding) + ledger.reserve


def bonded_stake(ledger: Ledger) -> int:
    """Stake of every pool that can still earn (tombstoned ones cannot): reward sharing's sigma is of this."""
    return ledger.bonded_stake


def circulating_supply(ledger: Ledger) -> int:
    """Every unit but the reserve's: Cardano's total supply minus reserves, what its sigma is of."""
    return total_supply(ledger) - ledger.reserve


def stake_snapshot(ledger: Ledger, params: Params) -> StakeSnapshot | None:
    """What reward sharing will read of this ledger's stake: taken with each epoch's seats (node.core.state).

    Every pool that can still earn (all but the tombstoned: the pools the
    bonded stake sums), with its stake and pledge now. None while reward
    sharing is off: its factor is then exactly 1 whatever the stake, nothing
    reads a snapshot, and a chain without sharing keeps its state as it was.
    """
    if not R.sharing_is_on(params):
        return None
    pools = tuple(
        (address, (pool_power(pool), pool.pledge))
        for address, pool in sorted(ledger.pools.items())
        if pool.status != TOMBSTONED
    )
    bonded = bonded_stake(ledger)
    total = circulating_supply(ledger) if params.sigma_of_supply else bonded
    return StakeSnapshot(pools, total, bonded)


def supply_is_conserved(ledger: Ledger) -> bool:
    return total_supply(ledger) == ledger.genesis_supply + ledger.issued - ledger.slashed


def stake_distribution(ledger: Ledger) -> tuple[tuple[str, int], ...]:
    """(pool name, power) of the active pools, largest first (ties by name)."""
    named = ((ledger.pools[address].name, power) for address, power in active_powers(ledger))
    return tuple(sorted(named, key=lambda item: (-item[1], item[0])))


def nakamoto_coefficient(ledger: Ledger) -> int:
    """The fewest active pools that together hold more than 1/3 of active stake (can halt the chain)."""
    powers = [power for _, power in stake_distribution(ledger)]
    total, held = sum(powers), 0
    for count, power in enumerate(powers, start=1):
        held += power
        if 3 * held > total:
            return count
    return 0
