"""Transactions: why one cannot be applied now (the *_problem functions), and applying one.

Each kind's check sits with the others, then each kind's step: a mempool,
a block and an economy's delegator all ask `tx_problem` first and apply
only what it passes, so the two halves must be read together.
"""

from __future__ import annotations

from functools import lru_cache

from node.core import shares as S
from node.core.codec import DecodeError
from node.core.genesis import Params
from node.core.keys import address_of
from node.core.ledger.balances import credit_accounts, debit_account, deposit, move_shares, set_pool, withdraw
from node.core.ledger.queries import account_of, member_stakes, stake_of
from node.core.ledger.values import (
    ACTIVE,
    JAILED,
    RETIRED,
    TOMBSTONED,
    Account,
    FrozenMap,
    Ledger,
    LedgerEvent,
    Pool,
    Redelegation,
    Redelegations,
    Unbonding,
    pool_power,
    replace,
)
from node.core.tx import (
    Delegate,
    Redelegate,
    RegisterPool,
    RetirePool,
    RotateKey,
    SignedTx,
    Transfer,
    TransferShares,
    Tx,
    Undelegate,
    Unjail,
    UpdatePool,
    decode_tx,
    tx_amount,
    tx_type_name,
    verify_tx,
)

SIGNING_KEY_SENDS_NOTHING = "signed by a pool's signing key: signing keys hold no funds and can move none"
SIGNING_KEY_HOLDS_NOTHING = "the recipient is a pool's signing key, which holds no funds"


def transfer_problem(ledger: Ledger, sender: bytes, tx: Transfer) -> str | None:
    if tx.to in ledger.signing_accounts:
        return SIGNING_KEY_HOLDS_NOTHING
    balance = account_of(ledger, sender).balance
    return f"insufficient balance: {balance} < {tx.amount}" if balance < tx.amount else None


def register_pool_problem(ledger: Ledger, sender: bytes, tx: RegisterPool) -> str | None:
    if sender in ledger.pools and ledger.pools[sender].status != RETIRED:
        return "already a pool operator"
    if tx.compounding and ledger.liquid:
        return "liquid delegation pays member rewards out: no compounding"
    balance = account_of(ledger, sender).balance
    return f"insufficient balance: {balance} < {tx.pledge}" if balance < tx.pledge else None


def leverage_problem(pool: Pool, added: int, params: Params) -> str | None:
    """Why `added` more stake would take the pool past `max_leverage` times its pledge, or None."""
    if params.max_leverage <= 0:
        return None
    cap = pool.pledge * params.max_leverage
    stake = pool_power(pool) + added
    return (
        f"leverage cap: stake {stake} > pledge {pool.pledge} x {params.max_leverage}" if stake > cap else None
    )


def delegate_problem(ledger: Ledger, sender: bytes, tx: Delegate, params: Params) -> str | None:
    pool = ledger.pools.get(tx.pool)
    if pool is None:
        return "unknown pool"
    closed = pool_closed_problem(pool, "pool")
    if closed:
        return closed
    balance = account_of(ledger, sender).balance
    if ledger.liquid and sender != pool.operator:  # a label on the whole balance: nothing moves now
        return leverage_problem(pool, balance, params)
    if balance < tx.amount:
        return f"insufficient balance: {balance} < {tx.amount}"
    if sender != pool.operator:
        if S.shares_for_deposit(tx.amount, pool.total_shares, pool.member_tokens) == 0:
            return "amount buys no share at the pool's exchange rate"
        return leverage_problem(pool, tx.amount, params)
    return None


def undelegate_problem(ledger: Ledger, sender: bytes, tx: Undelegate) -> str | None:
    pool = ledger.pools.get(tx.pool)
    if pool is None:
        return "unknown pool"
    if ledger.liquid and sender != pool.operator:
        return None if account_of(ledger, sender).delegated_to == tx.pool else "not delegated to this pool"
    staked = stake_of(pool, sender)
    return f"insufficient own stake in pool: {staked} < {tx.amount}" if staked < tx.amount else None


def pool_closed_problem(pool: Pool, role: str) -> str | None:
    """Why `pool` takes no new stake, or None."""
    if pool.status in (TOMBSTONED, RETIRED):
        return f"{role} is {pool.status}"
    if pool.retiring_epoch:
        return f"{role} retires at epoch {pool.retiring_epoch}"
    return None


LIQUID_HAS_NO_SHARES = (
    "liquid delegation holds no shares: delegate to the other pool (the label moves at once)"
)


def redelegate_problem(ledger: Ledger, sender: bytes, tx: Redelegate, params: Params) -> str | None:
    if ledger.liquid:
        return LIQUID_HAS_NO_SHARES
    source, target = ledger.pools.get(tx.source), ledger.pools.get(tx.target)
    if source is None or target is None:
        return "unknown source pool" if source is None else "unknown target pool"
    if tx.source == tx.target:
        return "source and target are the same pool"
    if sender == source.operator:
        return "an operator's pledge cannot be redelegated; undelegate it"
    if sender == target.operator:
        return "the target pool's operator holds its stake as pledge, not shares"
    closed = pool_closed_problem(target, "target pool")
    if closed:
        return closed
    staked = stake_of(source, sender)
    if staked < tx.amount:
        return f"insufficient own stake in source pool: {staked} < {tx.amount}"
    # Cosmos forbids this too: the hop would let stake outrun its first pool's slashing.
    until = Redelegations.of(ledger.redelegations).into.get((sender, tx.source))
    if until is not None:
        return f"stake redelegated into the source pool is slashable by its previous pool until epoch {until}"
    if S.shares_for_deposit(tx.amount, target.total_shares, target.member_tokens) == 0:
        return "amount buys no share at the target pool's exchange rate"
    return leverage_problem(target, tx.amount, params)


def retire_pool_problem(ledger: Ledger, sender: bytes, tx: RetirePool) -> str | None:
    pool = ledger.pools.get(sender)
    if pool is None:
        return "not a pool operator"
    if pool.status in (TOMBSTONED, RETIRED):
        return f"pool is {pool.status}"
    if tx.epoch <= ledger.epoch:
        return f"retirement epoch {tx.epoch} is not after the current epoch {ledger.epoch}"
    return None


def transfer_shares_problem(ledger: Ledger, sender: bytes, tx: TransferShares) -> str | None:
    if ledger.liquid:
        return LIQUID_HAS_NO_SHARES
    pool = ledger.pools.get(tx.pool)
    if pool is None:
        return "unknown pool"
    if tx.to == pool.operator:
        return "the pool's operator holds its stake as pledge, not shares"
    if tx.to in ledger.signing_accounts:
        return SIGNING_KEY_HOLDS_NOTHING
    held = pool.shares.get(sender, 0)
    return f"insufficient shares in pool: {held} < {tx.shares}" if held < tx.shares else None


def rotate_key_problem(ledger: Ledger, sender: bytes, tx: RotateKey) -> str | None:
    """Why the owner cannot make `tx.public_key` its pool's next signing key, or None.

    A new signing key must be fresh: never a signing key before (an old hot
    key may be in a thief's hands), no account on chain (a signing key holds
    no funds), and no other pool's owner. The owner's own key is allowed: it
    joins the two roles again, as a pool registered by transaction starts.
    """
    pool = ledger.pools.get(sender)
    if pool is None:
        return "not a pool owner"
    if pool.status in (TOMBSTONED, RETIRED):
        return f"pool is {pool.status}"
    key, address = tx.public_key, address_of(tx.public_key)
    if key == (pool.next_public_key or pool.public_key):
        return "already the pool's next signing key"
    if address == sender:
        return None
    if address in ledger.signing_accounts:
        return "key is or was a pool's signing key; generate a fresh one"
    if address in ledger.pools:
        return "key owns another pool"
    if address in ledger.accounts:
        return "key has an account on chain; a signing key must be fresh and hold no funds"
    return None


def update_pool_problem(ledger: Ledger, sender: bytes) -> str | None:
    pool = ledger.pools.get(sender)
    if pool is None:
        return "not a pool owner"
    return f"pool is {pool.status}" if pool.status in (TOMBSTONED, RETIRED) else None


def unjail_problem(ledger: Ledger, sender: bytes, tx: Unjail) -> str | None:
    pool = ledger.pools.get(sender)
    if pool is None:
        return "not a pool operator"
    if pool.status == TOMBSTONED:
        return "pool is tombstoned"
    if pool.status != JAILED:
        return "pool is not jailed"
    if ledger.epoch < pool.jailed_until_epoch:
        return f"jailed until epoch {pool.jailed_until_epoch} (now {ledger.epoch})"
    return None


def tx_type_problem(ledger: Ledger, sender: bytes, tx: Tx, params: Params) -> str | None:
    if isinstance(tx, Transfer):
        return transfer_problem(ledger, sender, tx)
    if isinstance(tx, RegisterPool):
        return register_pool_problem(ledger, sender, tx)
    if isinstance(tx, Delegate):
        return delegate_problem(ledger, sender, tx, params)
    if isinstance(tx, Undelegate):
        return undelegate_problem(ledger, sender, tx)
    if isinstance(tx, TransferShares):
        return transfer_shares_problem(ledger, sender, tx)
    if isinstance(tx, Redelegate):
        return redelegate_problem(ledger, sender, tx, params)
    if isinstance(tx, RetirePool):
        return retire_pool_problem(ledger, sender, tx)
    if isinstance(tx, RotateKey):
        return rotate_key_problem(ledger, sender, tx)
    if isinstance(tx, UpdatePool):
        return update_pool_problem(ledger, sender)
    return unjail_problem(ledger, sender, tx)


def signed_tx_problem(ledger: Ledger, chain_id: str, signed: SignedTx, params: Params) -> str | None:
    """Why a decoded transaction cannot be applied to `ledger` now, or None."""
    return _checked_tx_problem(ledger, signed, verify_tx(chain_id, signed), params)


def checked_tx(chain_id: str, tx: bytes) -> tuple[SignedTx, bool]:
    """`decode_tx(tx)` and whether its signature holds on `chain_id`: once per transaction, not per judgement.

    A transaction is judged when it is offered (a node's mempool, an
    economy's delegator deciding on the ledger it would leave) and again in
    the block that carries it; the Ed25519 check was the largest part of
    each. Both are functions of the bytes and the chain alone, so a bounded
    cache answers the second time. A malformed transaction raises
    DecodeError every time (exceptions are not cached); a buffer that is not
    `bytes` (unhashable) is judged afresh.
    """
    if isinstance(tx, bytes):
        return _checked_tx(chain_id, tx)
    signed = decode_tx(tx)
    return signed, verify_tx(chain_id, signed)


@lru_cache(maxsize=16_384)
def _checked_tx(chain_id: str, tx: bytes) -> tuple[SignedTx, bool]:
    signed = decode_tx(tx)
    return signed, verify_tx(chain_id, signed)


def _checked_tx_problem(ledger: Ledger, signed: SignedTx, signature_ok: bool, params: Params) -> str | None:
    """`signed_tx_problem` with the signature already judged."""
    if not signature_ok:
        return "bad signature (wrong key or chain)"
    if signed.sender in ledger.signing_accounts:
        return SIGNING_KEY_SENDS_NOTHING
    account = ledger.accounts.get(signed.sender)
    if account is None:
        return "unknown account"
    if signed.tx.nonce != account.nonce:
        return f"bad nonce: expected {account.nonce}, got {signed.tx.nonce}"
    return tx_type_problem(ledger, signed.sender, signed.tx, params)


def tx_problem(ledger: Ledger, chain_id: str, tx: bytes, params: Params) -> str | None:
    """Why `tx` would be rejected if applied next (for the mempool and for blocks), or None.

    Unjail is judged against `ledger.epoch`, the epoch of the last block
    applied; jails only end later, so nothing valid now becomes invalid.
    """
    try:
        signed, signature_ok = checked_tx(chain_id, tx)
    except DecodeError as exc:
        return f"malformed: {exc}"
    return _checked_tx_problem(ledger, signed, signature_ok, params)


def bump_nonce(ledger: Ledger, sender: bytes, public_key: bytes) -> Ledger:
    account = account_of(ledger, sender)
    bumped = Account(account.balance, account.nonce + 1, public_key, account.delegated_to)  # as `credited`
    return replace(ledger, accounts=ledger.accounts.set(sender, bumped))


def apply_transfer(ledger: Ledger, sender: bytes, tx: Transfer) -> Ledger:
    return credit_accounts(debit_account(ledger, sender, tx.amount), {tx.to: tx.amount})


def apply_register_pool(ledger: Ledger, sender: bytes, public_key: bytes, tx: RegisterPool) -> Ledger:
    pool = Pool(
        address=sender,
        name=f"pool-{sender.hex()[:8]}",
        public_key=public_key,
        operator=sender,
        pledge=tx.pledge,
        fixed_cost=tx.fixed_cost,
        margin_ppm=tx.margin_ppm,
        shares=FrozenMap(),
        compounding=tx.compounding,
    )
    return set_pool(debit_account(ledger, sender, tx.pledge), pool)


def apply_delegate(ledger: Ledger, sender: bytes, tx: Delegate) -> Ledger:
    if ledger.liquid and sender != ledger.pools[tx.pool].operator:
        return label(ledger, sender, tx.pool)
    return set_pool(
        debit_account(ledger, sender, tx.amount), deposit(ledger.pools[tx.pool], sender, tx.amount)
    )


def label(ledger: Ledger, holder: bytes, pool: bytes) -> Ledger:
    """Liquid delegation: the account's balance counts for `pool` from the next epoch's snapshot (b"": none)."""
    account = replace(account_of(ledger, holder), delegated_to=pool)
    return replace(ledger, accounts=ledger.accounts.set(holder, account))


def apply_undelegate(ledger: Ledger, sender: bytes, tx: Undelegate, params: Params) -> Ledger:
    if ledger.liquid and sender != ledger.pools[tx.pool].operator:
        return label(ledger, sender, b"")
    entry = Unbonding(sender, tx.pool, tx.amount, ledger.epoch + params.unbonding_epochs + 1)
    ledger = set_pool(ledger, withdraw(ledger.pools[tx.pool], sender, tx.amount))
    return replace(ledger, unbonding=(*ledger.unbonding, entry))


def apply_redelegate(ledger: Ledger, sender: bytes, tx: Redelegate, params: Params) -> Ledger:
    entry = Redelegation(sender, tx.source, tx.target, tx.amount, ledger.epoch + params.unbonding_epochs + 1)
    ledger = set_pool(ledger, withdraw(ledger.pools[tx.source], sender, tx.amount))
    ledger = set_pool(ledger, deposit(ledger.pools[tx.target], sender, tx.amount))
    return replace(ledger, redelegations=Redelegations.of(ledger.redelegations).appended(entry))


def apply_retire_pool(ledger: Ledger, sender: bytes, tx: RetirePool) -> Ledger:
    return set_pool(ledger, replace(ledger.pools[sender], retiring_epoch=tx.epoch))


def retire(ledger: Ledger, address: bytes, epoch: int, params: Params) -> tuple[Ledger, LedgerEvent]:
    """The pool leaves the set: every holder's stake and the pledge go to unbonding, still slashable.

    What the members' shares are worth goes to each holder; what their
    floors leave, with the pledge, to the operator.
    """
    pool = ledger.pools[address]
    release = epoch + params.unbonding_epochs + 1
    members = {} if ledger.liquid else member_stakes(pool)
    leftover = (
        0 if ledger.liquid else pool.member_tokens - sum(members.values())
    )  # liquid: members kept theirs
    owed = {**members, pool.operator: pool.pledge + leftover}
    entries = tuple(Unbonding(holder, address, amount, release) for holder, amount in owed.items() if amount)
    retired = replace(pool, pledge=0, shares=FrozenMap(), member_tokens=0, status=RETIRED, retiring_epoch=0)
    ledger = replace(set_pool(ledger, retired), unbonding=(*ledger.unbonding, *entries))
    total = sum(owed.values())
    return ledger, LedgerEvent(
        "retired", address, total, f"retired at epoch {epoch}; its stake unbonds until epoch {release}"
    )


def apply_transfer_shares(ledger: Ledger, sender: bytes, tx: TransferShares) -> Ledger:
    if tx.to not in ledger.accounts:  # the new holder must be able to sign an undelegate
        ledger = replace(ledger, accounts=ledger.accounts.set(tx.to, Account()))
    return set_pool(ledger, move_shares(ledger.pools[tx.pool], sender, tx.to, tx.shares))


def apply_rotate_key(ledger: Ledger, sender: bytes, tx: RotateKey) -> Ledger:
    """The key waits in the pool until the next epoch; its address can never hold funds from now on."""
    ledger = set_pool(ledger, replace(ledger.pools[sender], next_public_key=tx.public_key))
    address = address_of(tx.public_key)
    if address == sender:
        return ledger
    return replace(ledger, signing_accounts=ledger.signing_accounts | {address})


def rotate_keys(ledger: Ledger, epoch: int) -> tuple[Ledger, tuple[LedgerEvent, ...]]:
    """At an epoch start, every pool with a next signing key signs with it from now on."""
    rotated = {
        address: replace(pool, public_key=pool.next_public_key, next_public_key=b"")
        for address, pool in sorted(ledger.pools.items())
        if pool.next_public_key
    }
    events = tuple(
        LedgerEvent(
            "key_rotated", address, 0, f"signs with key {pool.public_key.hex()[:16]} from epoch {epoch}"
        )
        for address, pool in rotated.items()
    )
    return replace(ledger, pools=ledger.pools.update(rotated)), events


def apply_unjail(ledger: Ledger, sender: bytes) -> Ledger:
    return set_pool(ledger, replace(ledger.pools[sender], status=ACTIVE, missed=0))


def apply_tx(ledger: Ledger, signed: SignedTx, params: Params) -> Ledger:
    """Apply a transaction already known to be valid (see signed_tx_problem)."""
    ledger = bump_nonce(ledger, signed.sender, signed.public_key)
    sender, tx = signed.sender, signed.tx
    if isinstance(tx, Transfer):
        return apply_transfer(ledger, sender, tx)
    if isinstance(tx, RegisterPool):
        return apply_register_pool(ledger, sender, signed.public_key, tx)
    if isinstance(tx, Delegate):
        return apply_delegate(ledger, sender, tx)
    if isinstance(tx, Undelegate):
        return apply_undelegate(ledger, sender, tx, params)
    if isinstance(tx, TransferShares):
        return apply_transfer_shares(ledger, sender, tx)
    if isinstance(tx, Redelegate):
        return apply_redelegate(ledger, sender, tx, params)
    if isinstance(tx, RetirePool):
        return apply_retire_pool(ledger, sender, tx)
    if isinstance(tx, RotateKey):
        return apply_rotate_key(ledger, sender, tx)
    if isinstance(tx, UpdatePool):
        return set_pool(
            ledger, replace(ledger.pools[sender], fixed_cost=tx.fixed_cost, margin_ppm=tx.margin_ppm)
        )
    return apply_unjail(ledger, sender)


def tx_events(signed: SignedTx) -> tuple[LedgerEvent, ...]:
    applied = LedgerEvent("tx_applied", signed.sender, tx_amount(signed.tx), tx_type_name(signed.tx))
    if isinstance(signed.tx, Unjail):
        return (applied, LedgerEvent("unjailed", signed.sender, 0, "unjail transaction"))
    return (applied,)


def process_tx(
    ledger: Ledger, chain_id: str, tx: bytes, params: Params
) -> tuple[Ledger, tuple[LedgerEvent, ...]]:
    """Apply one transaction from a block, or leave the ledger untouched and say why not."""
    try:
        signed, signature_ok = checked_tx(chain_id, tx)
    except DecodeError as exc:
        return ledger, (LedgerEvent("tx_rejected", b"", 0, f"malformed: {exc}"),)
    problem = _checked_tx_problem(ledger, signed, signature_ok, params)
    if problem:
        return ledger, (LedgerEvent("tx_rejected", signed.sender, tx_amount(signed.tx), problem),)
    return apply_tx(ledger, signed, params), tx_events(signed)


def apply_txs(
    ledger: Ledger, txs: tuple[bytes, ...], params: Params, chain_id: str
) -> tuple[Ledger, tuple[LedgerEvent, ...]]:
    """Transactions in block order, each judged against the ledger the previous ones left."""
    events: tuple[LedgerEvent, ...] = ()
    for tx in txs:
        ledger, applied = process_tx(ledger, chain_id, tx, params)
        events += applied
    return ledger, events
