"""Signed transactions: what they say, how they are signed, and strict decoding.

A transaction is signed by its sender's account key over
`signing_bytes(chain_id, Kind.TX, body)`, so it cannot be replayed on
another chain or passed off as another message kind; the per-account nonce
inside the body stops replay on the same chain. The sender is not a field:
it is the address of the public key that signed, so nobody can name someone
else as the sender.

Wire form: `encode((body, public_key, signature))` with
`body = encode((tx_type, nonce, *fields))`. Decoding is strict: one valid
encoding per transaction, exact field counts, sizes and ranges.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from functools import cached_property
from typing import Any

from node.core.codec import DecodeError, decode, encode, want_bytes, want_int, want_tuple
from node.core.genesis import PPM
from node.core.keys import ADDRESS_LEN, PUBLIC_KEY_LEN, SIGNATURE_LEN, Keypair, address_of, verify
from node.core.messages import Kind, sha256, signing_bytes

MAX_TX_BYTES = 1024


class TxType(IntEnum):
    TRANSFER = 1
    REGISTER_POOL = 2
    DELEGATE = 3
    UNDELEGATE = 4
    UNJAIL = 5
    TRANSFER_SHARES = 6
    REDELEGATE = 7
    RETIRE_POOL = 8
    ROTATE_KEY = 9
    UPDATE_POOL = 10


@dataclass(frozen=True)
class Transfer:
    """Move `amount` of the sender's liquid balance to the account `to`."""

    nonce: int
    to: bytes
    amount: int


@dataclass(frozen=True)
class RegisterPool:
    """Make the sender a pool operator; the pool's address is the sender's, `pledge` leaves the balance.

    `compounding`: members' rewards stay in the pool and raise every share's
    value (wstETH-style) instead of being paid to their balances.
    """

    nonce: int
    pledge: int
    fixed_cost: int
    margin_ppm: int
    compounding: bool = False


@dataclass(frozen=True)
class Delegate:
    """Stake `amount` of the sender's balance with `pool` (custody stays with the sender)."""

    nonce: int
    pool: bytes
    amount: int


@dataclass(frozen=True)
class Undelegate:
    """Withdraw `amount` of the sender's own stake in `pool` into an unbonding entry."""

    nonce: int
    pool: bytes
    amount: int


@dataclass(frozen=True)
class TransferShares:
    """Give `shares` of the sender's delegation to `pool` to the account `to`: a receipt token changing hands.

    The shares keep their pool and their exchange rate; the new holder can
    undelegate them like any delegation.
    """

    nonce: int
    pool: bytes
    to: bytes
    shares: int


@dataclass(frozen=True)
class Redelegate:
    """Move `amount` of the sender's stake from pool `source` to pool `target` at once, without unbonding.

    The moved stake stays slashable by `source` until its unbonding would
    have ended (Cosmos x/staking's rule): a slash of `source` for an
    offence before then also takes from the stake now in `target`.
    """

    nonce: int
    source: bytes
    target: bytes
    amount: int


@dataclass(frozen=True)
class RetirePool:
    """The operator retires its pool at the start of `epoch`: all its stake goes to unbonding then."""

    nonce: int
    epoch: int


@dataclass(frozen=True)
class RotateKey:
    """The owner names its pool's next signing key; it signs from the start of the next epoch.

    Only the owner (cold) key can send this: the signing (hot) key lives on
    the validator's machine, so whoever steals it can sign votes until the
    next epoch but can neither move funds nor keep the pool.
    """

    nonce: int
    public_key: bytes


@dataclass(frozen=True)
class UpdatePool:
    """The owner sets its pool's terms: the fixed cost and margin taken from its rewards, from the next block on."""

    nonce: int
    fixed_cost: int
    margin_ppm: int


@dataclass(frozen=True)
class Unjail:
    """The operator asks for its jailed pool back once the jail has ended."""

    nonce: int


Tx = (
    Transfer
    | RegisterPool
    | Delegate
    | Undelegate
    | Unjail
    | TransferShares
    | Redelegate
    | RetirePool
    | RotateKey
    | UpdatePool
)

TX_TYPES: dict[type[Any], TxType] = {
    Transfer: TxType.TRANSFER,
    RegisterPool: TxType.REGISTER_POOL,
    Delegate: TxType.DELEGATE,
    Undelegate: TxType.UNDELEGATE,
    Unjail: TxType.UNJAIL,
    TransferShares: TxType.TRANSFER_SHARES,
    Redelegate: TxType.REDELEGATE,
    RetirePool: TxType.RETIRE_POOL,
    RotateKey: TxType.ROTATE_KEY,
    UpdatePool: TxType.UPDATE_POOL,
}


@dataclass(frozen=True)
class SignedTx:
    """A decoded transaction with the exact body bytes its signature covers."""

    tx: Tx
    public_key: bytes
    signature: bytes
    body: bytes

    @cached_property
    def sender(self) -> bytes:
        """Hashed once per transaction: judging and applying it ask several times."""
        return address_of(self.public_key)


def tx_type_name(tx: Tx) -> str:
    return TX_TYPES[type(tx)].name.lower()


def tx_amount(tx: Tx) -> int:
    """The units a transaction moves (shares for transfer-shares, 0 for unjail, retire and rotate), for events and logs."""
    if isinstance(tx, RegisterPool):
        return tx.pledge
    if isinstance(tx, Unjail | RetirePool | RotateKey | UpdatePool):
        return 0
    if isinstance(tx, TransferShares):
        return tx.shares
    return tx.amount


def tx_fields(tx: Tx) -> tuple[Any, ...]:
    """The type-specific fields in wire order."""
    if isinstance(tx, Transfer):
        return (tx.to, tx.amount)
    if isinstance(tx, RegisterPool):
        return (tx.pledge, tx.fixed_cost, tx.margin_ppm, int(tx.compounding))
    if isinstance(tx, Delegate | Undelegate):
        return (tx.pool, tx.amount)
    if isinstance(tx, TransferShares):
        return (tx.pool, tx.to, tx.shares)
    if isinstance(tx, Redelegate):
        return (tx.source, tx.target, tx.amount)
    if isinstance(tx, RetirePool):
        return (tx.epoch,)
    if isinstance(tx, RotateKey):
        return (tx.public_key,)
    if isinstance(tx, UpdatePool):
        return (tx.fixed_cost, tx.margin_ppm)
    return ()


def tx_body(tx: Tx) -> bytes:
    return encode((int(TX_TYPES[type(tx)]), tx.nonce, *tx_fields(tx)))


def sign_tx(chain_id: str, tx: Tx, keypair: Keypair) -> bytes:
    """The wire bytes of `tx` signed by `keypair` for `chain_id`."""
    body = tx_body(tx)
    signature = keypair.sign(signing_bytes(chain_id, Kind.TX, body))
    return encode((body, keypair.public, signature))


def tx_id(data: bytes) -> bytes:
    """A transaction's identity: the hash of its (unique, canonical) wire bytes."""
    return sha256(data)


def _amount(obj: Any, name: str) -> int:
    return want_int(obj, name, 1)


def _parse_fields(tx_type: TxType, nonce: int, fields: tuple[Any, ...]) -> Tx:
    if tx_type is TxType.TRANSFER:
        to, amount = want_tuple(fields, "transfer", 2)
        return Transfer(nonce, want_bytes(to, "transfer.to", ADDRESS_LEN), _amount(amount, "transfer.amount"))
    if tx_type is TxType.REGISTER_POOL:
        pledge, fixed_cost, margin, compounding = want_tuple(fields, "register_pool", 4)
        return RegisterPool(
            nonce,
            _amount(pledge, "register_pool.pledge"),
            want_int(fixed_cost, "register_pool.fixed_cost"),
            want_int(margin, "register_pool.margin_ppm", 0, PPM),
            bool(want_int(compounding, "register_pool.compounding", 0, 1)),
        )
    if tx_type in (TxType.DELEGATE, TxType.UNDELEGATE):
        name = tx_type.name.lower()
        pool, amount = want_tuple(fields, name, 2)
        cls = Delegate if tx_type is TxType.DELEGATE else Undelegate
        return cls(nonce, want_bytes(pool, f"{name}.pool", ADDRESS_LEN), _amount(amount, f"{name}.amount"))
    if tx_type is TxType.TRANSFER_SHARES:
        pool, to, shares = want_tuple(fields, "transfer_shares", 3)
        return TransferShares(
            nonce,
            want_bytes(pool, "transfer_shares.pool", ADDRESS_LEN),
            want_bytes(to, "transfer_shares.to", ADDRESS_LEN),
            _amount(shares, "transfer_shares.shares"),
        )
    if tx_type is TxType.REDELEGATE:
        source, target, amount = want_tuple(fields, "redelegate", 3)
        return Redelegate(
            nonce,
            want_bytes(source, "redelegate.source", ADDRESS_LEN),
            want_bytes(target, "redelegate.target", ADDRESS_LEN),
            _amount(amount, "redelegate.amount"),
        )
    if tx_type is TxType.RETIRE_POOL:
        (epoch,) = want_tuple(fields, "retire_pool", 1)
        return RetirePool(nonce, _amount(epoch, "retire_pool.epoch"))
    if tx_type is TxType.ROTATE_KEY:
        (public_key,) = want_tuple(fields, "rotate_key", 1)
        return RotateKey(nonce, want_bytes(public_key, "rotate_key.public_key", PUBLIC_KEY_LEN))
    if tx_type is TxType.UPDATE_POOL:
        fixed_cost, margin = want_tuple(fields, "update_pool", 2)
        return UpdatePool(
            nonce,
            want_int(fixed_cost, "update_pool.fixed_cost"),
            want_int(margin, "update_pool.margin_ppm", 0, PPM),
        )
    want_tuple(fields, "unjail", 0)
    return Unjail(nonce)


def decode_tx_body(body: bytes) -> Tx:
    """Parse a transaction body; DecodeError on anything but one exact, canonical shape."""
    items = want_tuple(decode(body), "tx.body")
    if len(items) < 2:
        raise DecodeError("malformed", "tx.body: expected type and nonce")
    type_value = want_int(items[0], "tx.type", 0, 255)
    if type_value not in TxType._value2member_map_:
        raise DecodeError("malformed", f"tx.type: unknown type {type_value}")
    return _parse_fields(TxType(type_value), want_int(items[1], "tx.nonce"), items[2:])


def decode_tx(data: bytes) -> SignedTx:
    """Parse a signed transaction's wire bytes (signature not checked: see verify_tx)."""
    body, public_key, signature = want_tuple(decode(data, MAX_TX_BYTES), "tx", 3)
    body = want_bytes(body, "tx.body", max_len=MAX_TX_BYTES)
    return SignedTx(
        tx=decode_tx_body(body),
        public_key=want_bytes(public_key, "tx.public_key", PUBLIC_KEY_LEN),
        signature=want_bytes(signature, "tx.signature", SIGNATURE_LEN),
        body=body,
    )


def verify_tx(chain_id: str, signed: SignedTx) -> bool:
    """True iff the sender's key signed this body for this chain."""
    return verify(signed.public_key, signing_bytes(chain_id, Kind.TX, signed.body), signed.signature)
