"""The only place an honest validator signs votes and proposals.

Every signature first passes the durable signing record (`may_sign` against
the last mark, written before the signature exists), so no crash, restart
or bug in the state machine can make the validator sign two conflicting
messages. The simulator uses an in-memory record with the same rule; the
real node uses the SQLite store, fsynced.

A proposal's mark carries the hash of its whole body (not only its block
id), so even two proposals for the same block with different `pol_round`
count as conflicting.

The record is kept per validator (its pool address), not per key: when the
owner rotates the signing key, the new key inherits the old key's marks, so
a rotation cannot open a window to sign twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Protocol

from node.core.codec import decode, encode
from node.core.keys import Keypair
from node.core.messages import Block, Proposal, Vote, sha256, sign_item
from node.core.safety import DoubleSignRefused, SigningRecordError, SignMark, Step, position, refusal_reason

JournalEntry = tuple[Vote | Proposal, Block | None]
"""A journaled message: ours, or a vote of a polka journaled with our precommit."""


class SigningRecord(Protocol):
    def record_signed(self, validator: bytes, mark: SignMark, height: int, item: bytes, block: bytes) -> None:
        """Durably record `mark` and keep the signed message of `height` (older heights may be forgotten),
        together or not at all; raise DoubleSignRefused (or another SigningRecordError) to refuse."""

    def journal(self, validator: bytes, height: int) -> list[tuple[bytes, bytes]]:
        """The signed messages kept for `height`, in signing order."""

    def last_signed(self, validator: bytes) -> SignMark | None:
        """The last mark recorded for `validator` (None: nothing signed here)."""


class MemoryRecord:
    """The signing record kept in memory: for the simulator, where 'disk' survives a simulated crash."""

    def __init__(self) -> None:
        self.marks: dict[bytes, SignMark] = {}
        self.entries: dict[bytes, tuple[int, list[tuple[bytes, bytes]]]] = {}

    def record_signed(self, validator: bytes, mark: SignMark, height: int, item: bytes, block: bytes) -> None:
        reason = refusal_reason(self.marks.get(validator), mark)
        if reason is not None:
            raise DoubleSignRefused(reason)
        self.marks[validator] = mark
        kept_height, items = self.entries.get(validator, (height, []))
        if kept_height != height:
            items = []
        self.entries[validator] = (height, [*items, (item, block)])

    def journal(self, validator: bytes, height: int) -> list[tuple[bytes, bytes]]:
        kept_height, items = self.entries.get(validator, (0, []))
        return list(items) if kept_height == height else []

    def last_signed(self, validator: bytes) -> SignMark | None:
        return self.marks.get(validator)


def mark_of(item: Vote | Proposal) -> SignMark:
    if isinstance(item, Vote):
        return SignMark(item.height, item.round, Step(int(item.kind)), item.block_id)
    return SignMark(item.height, item.round, Step.PROPOSAL, sha256(item.body()))


class KeyRing:
    """The signing keys a node holds, by public key.

    Shared by a node's validators, and it may grow while the node runs: the
    runtime adds a rotation's new key when its file appears, and the validator
    signs with it once the chain says the key is in force.
    """

    def __init__(self, keypairs: Iterable[Keypair] = ()) -> None:
        self._keys: dict[bytes, Keypair] = {}
        for keypair in keypairs:
            self.add(keypair)

    def add(self, keypair: Keypair) -> bool:
        """Hold `keypair`; False when it was held already."""
        if keypair.public in self._keys:
            return False
        self._keys[keypair.public] = keypair
        return True

    def get(self, public_key: bytes | None) -> Keypair | None:
        return self._keys.get(public_key) if public_key else None

    def __contains__(self, public_key: object) -> bool:
        return public_key in self._keys

    def __len__(self) -> int:
        return len(self._keys)


class GuardedSigner:
    """Signs as one validator, never twice in conflict.

    `validator` is the pool address the validator signs as (by default the
    address of `keypair`, a pool whose owner key also signs); `ring` holds
    every key it may sign with (by default `keypair` alone).
    """

    def __init__(
        self,
        chain_id: str,
        keypair: Keypair,
        record: SigningRecord,
        *,
        validator: bytes | None = None,
        ring: KeyRing | None = None,
    ) -> None:
        self.chain_id = chain_id
        self.keypair = keypair
        self.validator = keypair.address if validator is None else validator
        self.ring = KeyRing([keypair]) if ring is None else ring
        self.record = record
        self.refused = 0
        self.key_missing = 0  # signatures the chain asked of a key this node does not hold

    def sign(
        self,
        item: Vote | Proposal,
        block: Block | None = None,
        justification: tuple[Vote, ...] = (),
        public_key: bytes | None = None,
    ) -> Vote | Proposal | None:
        """The signed item, or None when the record forbids it (or cannot be written) or the key is missing.

        `public_key` is the key in force at the item's height (default: this
        signer's `keypair`). The signed message is journaled before it is
        returned, so a restarted validator can re-send it and re-derive its
        lock (its WAL). Its `justification` (the polka behind a precommit)
        goes into the same journal entry, so the lock and its proof survive
        together. The signature is made in memory first and the mark and the
        journal entry are written in one durable step before it is returned:
        a signature the record refuses, or one lost in a crash before the
        write, never left this process, so it binds nobody.
        """
        keypair = self.keypair if public_key is None else self.ring.get(public_key)
        if keypair is None:
            self.key_missing += 1
            return None
        signed = replace(item, signature=sign_item(self.chain_id, item, keypair))
        try:
            self.record.record_signed(
                self.validator,
                mark_of(item),
                item.height,
                encode(_item_wire(signed, justification)),
                block.encoded if block else b"",
            )
        except SigningRecordError:
            self.refused += 1
            return None
        return signed

    def adopt(self, item: Vote | Proposal, block: Block | None = None) -> bool:
        """Take a message our key signed elsewhere into the record; True when it moved the mark.

        For messages an earlier copy of this node signed and the network
        still holds (`node.core.doppelganger`): once adopted, the record
        refuses anything that conflicts with them, as if we had signed them
        here. The caller has verified the signature (admission did).
        """
        mark = mark_of(item)
        last = self.record.last_signed(self.validator)
        if last is not None and position(mark) <= position(last):
            return False
        try:
            self.record.record_signed(
                self.validator,
                mark,
                item.height,
                encode(_item_wire(item, ())),
                block.encoded if block else b"",
            )
        except SigningRecordError:
            return False
        return True

    def contradicts(self, item: Vote | Proposal) -> bool:
        """Whether a message of our key is one we did not sign: beyond our last mark, or beside it."""
        last = self.record.last_signed(self.validator)
        if last is None:
            return True
        mark = mark_of(item)
        return position(mark) > position(last) or (position(mark) == position(last) and mark != last)

    def journal(self, height: int) -> list[JournalEntry]:
        """The journal of `height`, decoded, for replay after a restart.

        Each message comes after the votes that justified it, in signing order.
        """
        entries: list[JournalEntry] = []
        for item, block in self.record.journal(self.validator, height):
            signed, justification = _item_from_wire(decode(item))
            entries += [(vote, None) for vote in justification]
            entries.append((signed, Block.decode(block) if block else None))
        return entries


def _item_wire(item: Vote | Proposal, justification: tuple[Vote, ...]) -> tuple[object, ...]:
    tag = 0 if isinstance(item, Vote) else 1
    return (tag, item.to_wire(), tuple(vote.to_wire() for vote in justification))


def _item_from_wire(obj: tuple[object, ...]) -> tuple[Vote | Proposal, tuple[Vote, ...]]:
    """Entries written before justifications existed have two fields; they still read."""
    tag, wire, *rest = obj
    item = Vote.from_wire(wire) if tag == 0 else Proposal.from_wire(wire)
    justification = tuple(Vote.from_wire(vote) for vote in rest[0]) if rest else ()
    return item, justification
