"""The transactions a validator holds for the blocks it will propose, and which ones it agrees to hold.

A collaborator of the consensus machine, not part of its rules: the machine
offers it what is gossiped, asks it for a block's worth when it proposes,
and tells it about every finalized block. Anyone can publish on the tx
channel, so nothing is kept before it is judged, and what is kept is
bounded in count and in bytes.

Judging a transaction has two parts:

- stateless, always and first, cheapest first: at most `MAX_TX_BYTES`,
  decodes to exactly one canonical transaction, its signature holds on
  this chain;
- stateful, against the state the node has finalized: the sender is not a
  pool's signing key and has an account, the nonce is not used yet and at
  most `NONCE_WINDOW` ahead of the account's next one (a sender's second
  transaction in flight is kept; a replay of an executed one is not), no
  other held transaction claims that nonce, and the balance covers what the
  transaction takes from it (`balance_spent`).

The ledger's other rules for a transaction type (pools, jails, stake,
redelegation periods) are left to the block that carries it, where
`ledger.tx_problem` judges it in order: they change with the epoch and
with the sender's own transactions in flight, so a node a block behind
the chain's head, or judging a sender's second transaction before its
first applied, would refuse what the block accepts. What they let through
is bounded all the same: only an account on chain can send, and at most
`NONCE_WINDOW` + 1 transactions each.

After each finalized block the pool is judged again against the new state
and whatever no longer passes (nonce used, funds gone) is evicted.
Refusals come back as a `Refusal` whose `reason` is a short code the node
counts; nothing refused is kept.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from node.core import ledger as L
from node.core.codec import MAX_MESSAGE_BYTES, DecodeError
from node.core.tx import MAX_TX_BYTES, Delegate, RegisterPool, SignedTx, Transfer, Tx, tx_id, tx_type_name

MEMPOOL_BLOCKS = 10
"""How many full blocks' worth of transactions (by count) the pool keeps; more are refused on arrival."""

MEMPOOL_MAX_BYTES = 8 * 1024 * 1024
"""What the pool may hold, in charged bytes: each entry is charged its wire bytes plus `ENTRY_OVERHEAD`.

8 MiB is about 3,700 transactions of the largest size (`MAX_TX_BYTES`) or
about 6,300 transfers (~130 wire bytes): a little more than one full
proposal's worth of transfers (a 1 MiB message carries ~7,500), and a few
MiB of a node's memory, per hosted key."""

ENTRY_OVERHEAD = 1200
"""The charge for what is kept with each transaction besides its wire bytes: the decoded transaction and
the index entries (measured with tracemalloc at ~1,060 bytes for a transfer)."""

NONCE_WINDOW = 32
"""How far ahead of its account's next nonce a transaction may be and still be kept."""

REFUSALS_REMEMBERED = 4096
"""Tx ids whose refusal was reported recently: a replayed refusal is counted again but reported once."""

REFUSAL_REASONS = (
    "oversize",
    "malformed",
    "bad_signature",
    "signing_key",
    "unknown_account",
    "nonce_used",
    "nonce_ahead",
    "nonce_taken",
    "unfunded",
    "duplicate",
    "full",
)


@dataclass(frozen=True)
class Refusal:
    """Why a transaction was not kept.

    `reason` is one of `REFUSAL_REASONS` (a metric label), `detail` says it
    in words (the ledger's own text where the ledger judged it). `report`
    is true when the sender deserves an answer in the node's log: the
    transaction is signed by an account on chain for a nonce it may still
    use, so only that account's key could have made it, and it was not
    reported already. Junk from fresh keys and replays are counted only.
    """

    reason: str
    detail: str = ""
    tx: bytes = b""
    signed: SignedTx | None = None
    report: bool = False


def refusal_log_fields(refusal: Refusal) -> dict[str, Any]:
    """A reported refusal as logged: the tx id, sender, type and nonce, the reason in words and its code."""
    signed = refusal.signed
    return {
        "tx": tx_id(refusal.tx).hex(),
        "account": None if signed is None else signed.sender.hex(),
        "type": "unknown" if signed is None else tx_type_name(signed.tx),
        "nonce": None if signed is None else signed.tx.nonce,
        "reason": refusal.detail,
        "code": refusal.reason,
    }


@dataclass(frozen=True)
class _Entry:
    signed: SignedTx
    charge: int


def charge_of(tx: bytes) -> int:
    """The bytes a held transaction is charged against `MEMPOOL_MAX_BYTES`."""
    return len(tx) + ENTRY_OVERHEAD


def encoded_cost(tx: bytes) -> int:
    """The bytes `tx` adds to an encoded block: its msgpack bin header and its bytes."""
    size = len(tx)
    return size + (2 if size < 1 << 8 else 3 if size < 1 << 16 else 5)


TXS_ARRAY_HEADER = 5
"""The most an encoded block's txs array header can grow past an empty one (msgpack array32)."""

PROPOSAL_ENVELOPE_MARGIN = 1024
"""Room for what a proposal's envelope adds to its block (version, kind, sender, the signed proposal,
signature: under 300 bytes) besides the chain id, which `block_tx_budget` adds on its own."""


def block_tx_budget(block_bytes: int, chain_id: str) -> int:
    """The bytes transactions may add to a block encoded at `block_bytes` without any.

    Peers refuse a message over `MAX_MESSAGE_BYTES` (and the transport will
    not even send it), and a proposal is its envelope with the whole block
    attached: evidence, the last commit and late precommits come first, the
    transactions get what is left. Negative when the block is too large
    already; the driver then reports the proposal it cannot send.
    """
    return MAX_MESSAGE_BYTES - block_bytes - PROPOSAL_ENVELOPE_MARGIN - len(chain_id.encode())


def stateless_problem(chain_id: str, tx: bytes) -> Refusal | SignedTx:
    """The decoded transaction, or why no state could make it valid: size, shape, signature."""
    if len(tx) > MAX_TX_BYTES:
        return Refusal("oversize", f"{len(tx)} bytes > {MAX_TX_BYTES}")
    try:
        signed, signature_ok = L.checked_tx(chain_id, tx)
    except DecodeError as exc:
        return Refusal("malformed", str(exc))
    if not signature_ok:
        return Refusal("bad_signature", "bad signature (wrong key or chain)", tx, signed)
    return signed


def stateful_problem(ledger: L.Ledger, signed: SignedTx) -> Refusal | None:
    """Why `signed` should not wait for a block on `ledger`, or None (see the module docstring)."""
    sender = signed.sender
    if sender in ledger.signing_accounts:
        return Refusal("signing_key", L.SIGNING_KEY_SENDS_NOTHING, signed=signed)
    account = ledger.accounts.get(sender)
    if account is None:
        return Refusal("unknown_account", "unknown account", signed=signed)
    nonce = signed.tx.nonce
    if nonce < account.nonce:
        return Refusal("nonce_used", f"nonce {nonce} used (next is {account.nonce})", signed=signed)
    if nonce > account.nonce + NONCE_WINDOW:
        return Refusal(
            "nonce_ahead", f"nonce {nonce} more than {NONCE_WINDOW} ahead of {account.nonce}", signed=signed
        )
    spends = balance_spent(signed.tx, ledger.liquid)
    if account.balance < spends:
        return Refusal("unfunded", f"insufficient balance: {account.balance} < {spends}", signed=signed)
    return None


def balance_spent(tx: Tx, liquid: bool) -> int:
    """What `tx` takes from its sender's liquid balance when it applies.

    Liquid delegation moves nothing (the whole balance is labelled), and
    undelegating, redelegating or moving shares spends stake, not balance:
    stake can come from the sender's own earlier transactions in flight.
    """
    if isinstance(tx, Transfer):
        return tx.amount
    if isinstance(tx, RegisterPool):
        return tx.pledge
    if isinstance(tx, Delegate) and not liquid:
        return tx.amount
    return 0


class Mempool:
    """Judged transactions, oldest first, bounded by count (per call) and by `max_bytes`."""

    def __init__(self, max_bytes: int = MEMPOOL_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._txs: dict[bytes, _Entry] = {}  # wire bytes -> entry, in arrival order
        self._slots: dict[tuple[bytes, int], bytes] = {}  # (sender, nonce) -> the tx holding it
        self._bytes = 0
        self._reported: OrderedDict[bytes, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._txs)

    def __contains__(self, tx: object) -> bool:
        return tx in self._txs

    def __iter__(self) -> Iterator[bytes]:
        """The held transactions, oldest first."""
        return iter(tuple(self._txs))

    @property
    def charged_bytes(self) -> int:
        """The bytes the held transactions are charged (see `charge_of`)."""
        return self._bytes

    def add(self, tx: bytes, ledger: L.Ledger, chain_id: str, max_block_txs: int) -> Refusal | None:
        """Keep `tx` for a later block if it is valid on `ledger` and fits; else say why not."""
        if tx in self._txs:
            return Refusal("duplicate", "already held")
        judged = stateless_problem(chain_id, tx)
        if isinstance(judged, Refusal):
            return judged
        refusal = stateful_problem(ledger, judged)
        if refusal is None:
            refusal = self._room_problem(tx, judged, max_block_txs)
        if refusal is not None:
            return self._refused(tx, refusal)
        self._keep(tx, judged)
        return None

    def _room_problem(self, tx: bytes, signed: SignedTx, max_block_txs: int) -> Refusal | None:
        if (signed.sender, signed.tx.nonce) in self._slots:
            return Refusal("nonce_taken", f"another held transaction has nonce {signed.tx.nonce}")
        if len(self._txs) >= MEMPOOL_BLOCKS * max_block_txs or self._bytes + charge_of(tx) > self.max_bytes:
            return Refusal("full", f"{len(self._txs)} transactions, {self._bytes} bytes held")
        return None

    def _refused(self, tx: bytes, refusal: Refusal) -> Refusal:
        """The refusal with its tx, marked for the log when its sender deserves an answer once."""
        reportable = refusal.reason in ("unfunded", "full", "nonce_taken")
        key = tx_id(tx)
        report = reportable and key not in self._reported
        if report:
            self._reported[key] = None
            if len(self._reported) > REFUSALS_REMEMBERED:
                self._reported.popitem(last=False)
        signed = refusal.signed
        return Refusal(refusal.reason, refusal.detail, tx, signed, report)

    def _keep(self, tx: bytes, signed: SignedTx) -> None:
        charge = charge_of(tx)
        self._txs[tx] = _Entry(signed, charge)
        self._slots[(signed.sender, signed.tx.nonce)] = tx
        self._bytes += charge

    def _forget(self, tx: bytes) -> None:
        entry = self._txs.pop(tx, None)
        if entry is None:
            return
        self._bytes -= entry.charge
        slot = (entry.signed.sender, entry.signed.tx.nonce)
        if self._slots.get(slot) == tx:
            del self._slots[slot]

    def take(self, ledger: L.Ledger, max_txs: int, max_bytes: int) -> tuple[bytes, ...]:
        """A block's transactions: oldest first, each sender's in nonce order, within both limits.

        A transaction whose nonce is ahead of what its sender's earlier ones
        reach waits (in this block) until they are in; one whose predecessor
        is missing stays out, since it would only be rejected. `max_bytes`
        bounds the transactions' share of the encoded block. They stay held
        until a finalized block includes them.
        """
        budget = max_bytes - TXS_ARRAY_HEADER
        chosen: list[bytes] = []
        next_nonce: dict[bytes, int] = {}
        waiting: dict[tuple[bytes, int], bytes] = {}
        for tx, entry in self._txs.items():
            if len(chosen) >= max_txs or budget < encoded_cost(b""):
                break
            if budget < encoded_cost(tx):
                continue  # a smaller one further on may still fit
            sender, nonce = entry.signed.sender, entry.signed.tx.nonce
            expected = next_nonce.get(sender)
            if expected is None:
                account = ledger.accounts.get(sender)
                expected = account.nonce if account is not None else 0
            if nonce != expected:
                if nonce > expected:
                    waiting[(sender, nonce)] = tx
                continue
            while tx is not None and len(chosen) < max_txs and budget >= encoded_cost(tx):
                chosen.append(tx)
                budget -= encoded_cost(tx)
                nonce += 1
                tx = waiting.pop((sender, nonce), None)
            next_nonce[sender] = nonce
        return tuple(chosen)

    def drop(self, included: Iterable[bytes]) -> None:
        """Forget the transactions a finalized block included."""
        for tx in included:
            self._forget(tx)

    def recheck(self, ledger: L.Ledger) -> int:
        """Evict what is no longer valid on `ledger` (the state after a finalized block); how many."""
        stale = [tx for tx, entry in self._txs.items() if stateful_problem(ledger, entry.signed)]
        for tx in stale:
            self._forget(tx)
        return len(stale)
