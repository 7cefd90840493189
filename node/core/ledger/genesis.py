"""The ledger before height 1, and the liquid-delegation stake snapshot that genesis takes first."""

from __future__ import annotations

from node.core.genesis import Genesis, GenesisValidator
from node.core.keys import address_of
from node.core.ledger.queries import total_supply
from node.core.ledger.values import ACTIVE, JAILED, Account, FrozenMap, Ledger, Pool, merge_amounts, replace


def genesis_pool(validator: GenesisValidator) -> Pool:
    """A genesis validator as a pool; a delegation from its own key is folded into the pledge."""
    stakes = merge_amounts((address_of(d.account), d.amount) for d in validator.delegations)
    own = stakes.pop(validator.address, 0)
    return Pool(
        address=validator.address,
        name=validator.name,
        public_key=validator.signing_public_key,
        operator=validator.address,
        pledge=validator.pledge + own,
        fixed_cost=validator.fixed_cost,
        margin_ppm=validator.margin_ppm,
        shares=FrozenMap(stakes),  # one share per unit at genesis
        member_tokens=sum(stakes.values()),
        compounding=validator.compounding,
    )


def _genesis_accounts(genesis: Genesis) -> FrozenMap[bytes, Account]:
    """Funded accounts, plus empty ones for every operator and delegator key named."""
    keys = [v.public_key for v in genesis.validators]
    keys += [d.account for v in genesis.validators for d in v.delegations]
    accounts = {address_of(key): Account(public_key=key) for key in keys}
    for account in genesis.accounts:
        previous = accounts.get(account.address, Account())
        accounts[account.address] = Account(previous.balance + account.balance, 0, account.public_key)
    return FrozenMap(accounts)


def _liquid_genesis_accounts(genesis: Genesis) -> FrozenMap[bytes, Account]:
    """With liquid delegation a genesis delegation stays in the delegator's balance, labelled with its pool."""
    accounts = dict(_genesis_accounts(genesis))
    for validator in genesis.validators:
        for delegation in validator.delegations:
            address = address_of(delegation.account)
            if address != validator.address:
                account = accounts[address]
                accounts[address] = replace(
                    account, balance=account.balance + delegation.amount, delegated_to=validator.address
                )
    return FrozenMap(accounts)


def genesis_ledger(genesis: Genesis) -> Ledger:
    """The ledger before height 1; its total supply is the genesis supply.

    With liquid delegation a genesis delegation stays in the delegator's
    balance, labelled with its pool, and the first stake snapshot is taken here.
    """
    liquid = bool(genesis.params.liquid_delegation)
    validators = genesis.validators
    if liquid:  # only an operator's own delegation (folded into its pledge) leaves a balance
        validators = tuple(
            replace(v, delegations=tuple(d for d in v.delegations if address_of(d.account) == v.address))
            for v in validators
        )
    ledger = Ledger(
        accounts=_liquid_genesis_accounts(genesis) if liquid else _genesis_accounts(genesis),
        pools=FrozenMap((v.address, genesis_pool(v)) for v in validators),
        unbonding=(),
        slashed_evidence=frozenset(),
        issued=0,
        slashed=0,
        genesis_supply=0,
        liquid=liquid,
        signing_accounts=frozenset(
            address_of(v.signing_key) for v in genesis.validators if v.signing_key not in (b"", v.public_key)
        ),
    )
    if liquid:
        ledger = snapshot_liquid_stake(ledger)
    return replace(ledger, genesis_supply=total_supply(ledger))


def snapshot_liquid_stake(ledger: Ledger) -> Ledger:
    """Liquid delegation: each pool's members are the accounts labelled with it, at their balances now.

    Taken at genesis and at each epoch start: the stake of an epoch is what
    the labelled balances held when it began, and spending in between moves
    it only at the next snapshot (Cardano's stake snapshot).
    """
    members: dict[bytes, dict[bytes, int]] = {address: {} for address in ledger.pools}
    open_pools = {address for address, pool in ledger.pools.items() if pool.status in (ACTIVE, JAILED)}
    for holder, account in ledger.accounts.items():
        if account.delegated_to in open_pools and account.balance > 0:
            members[account.delegated_to][holder] = account.balance
    pools = {
        address: replace(ledger.pools[address], shares=FrozenMap(held), member_tokens=sum(held.values()))
        for address, held in members.items()
    }
    return replace(ledger, pools=ledger.pools.update(pools))
