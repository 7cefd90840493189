"""Moving units: credits and debits of liquid balances, deposits into and withdrawals from pools.

Slashing, rewards and transactions all move stake through these few steps,
so the share arithmetic (node.core.shares) is applied in one place.
"""

from __future__ import annotations

from collections.abc import Mapping

from node.core import shares as S
from node.core.ledger.queries import account_of
from node.core.ledger.values import Account, Ledger, Pool, replace


def credited(account: Account, amount: int) -> Account:
    return Account(account.balance + amount, account.nonce, account.public_key, account.delegated_to)


def credit_accounts(ledger: Ledger, credits: Mapping[bytes, int]) -> Ledger:
    """Add amounts to liquid balances (creating accounts as needed), one map copy for all."""
    changes = {
        address: credited(account_of(ledger, address), amount)
        for address, amount in credits.items()
        if amount
    }
    return replace(ledger, accounts=ledger.accounts.update(changes))


def debit_account(ledger: Ledger, address: bytes, amount: int) -> Ledger:
    """Take from a liquid balance; callers check it suffices (see the *_problem functions)."""
    return replace(
        ledger, accounts=ledger.accounts.set(address, credited(account_of(ledger, address), -amount))
    )


def set_pool(ledger: Ledger, pool: Pool) -> Ledger:
    return replace(ledger, pools=ledger.pools.set(pool.address, pool))


def deposit(pool: Pool, holder: bytes, amount: int) -> Pool:
    """The pool after `holder` adds `amount`: to the pledge for the operator, else as shares."""
    if holder == pool.operator:
        return replace(pool, pledge=pool.pledge + amount)
    minted = S.shares_for_deposit(amount, pool.total_shares, pool.member_tokens)
    shares = pool.shares.set(holder, pool.shares.get(holder, 0) + minted)
    return replace(pool, shares=shares, member_tokens=pool.member_tokens + amount)


def withdraw(pool: Pool, holder: bytes, amount: int) -> Pool:
    """The pool after `holder` takes `amount` out (callers check it holds that much).

    A member burns the ceiling of the shares the amount is worth. Once the
    last share is gone, the member tokens rounding left behind belong to
    nobody's shares: they join the pledge, so no token is stranded.
    """
    if holder == pool.operator:
        return replace(pool, pledge=pool.pledge - amount)
    burned = S.shares_to_burn(amount, pool.total_shares, pool.member_tokens)
    left = pool.shares.get(holder, 0) - burned
    shares = pool.shares.set(holder, left) if left else pool.shares.without(holder)
    pool = replace(pool, shares=shares, member_tokens=pool.member_tokens - amount)
    if not shares:
        pool = replace(pool, pledge=pool.pledge + pool.member_tokens, member_tokens=0)
    return pool


def move_shares(pool: Pool, sender: bytes, to: bytes, count: int) -> Pool:
    """`count` of the sender's shares now held by `to`: nothing is minted, burned or revalued."""
    left = pool.shares[sender] - count
    shares = pool.shares.set(sender, left) if left else pool.shares.without(sender)
    return replace(pool, shares=shares.set(to, shares.get(to, 0) + count))
