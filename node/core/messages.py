"""Protocol objects, their wire forms, and what exactly gets signed.

Every signature is over `signing_bytes(chain_id, kind, body)`: a canonical
tuple of a domain tag, the chain id, the message kind and the body. The chain
id stops replay across chains; the kind stops a prevote being passed off as
a precommit or a proposal. Votes and proposals carry their own signatures
(the envelope's signature *is* theirs), so they can be re-checked later when
they sit inside a commit certificate or an equivocation evidence.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import IntEnum
from functools import cached_property
from typing import Any

from node.core.codec import (
    DecodeError,
    decode,
    encode,
    want_bytes,
    want_int,
    want_str,
    want_tuple,
)
from node.core.keys import ADDRESS_LEN, SIGNATURE_LEN, Keypair, verify

PROTOCOL_VERSION = 1
SIGNING_DOMAIN = b"posnet-signature-v1"
HASH_LEN = 32
ZERO_HASH = bytes(HASH_LEN)
MAX_ROUND = 1 << 20
MAX_TXS_PER_BLOCK = 10_000
MAX_EVIDENCE_PER_BLOCK = 100
MAX_LATE_PRECOMMITS_PER_BLOCK = 16_384


class Kind(IntEnum):
    """Message kinds; PROPOSAL/PREVOTE/PRECOMMIT double as signing steps."""

    PROPOSAL = 1
    PREVOTE = 2
    PRECOMMIT = 3
    EVIDENCE = 4
    TX = 5
    SYNC_REQUEST = 6
    SYNC_RESPONSE = 7
    STATUS = 8


VOTE_KINDS = (Kind.PREVOTE, Kind.PRECOMMIT)


def signing_bytes(chain_id: str, kind: Kind, body: bytes) -> bytes:
    """The exact bytes a signature covers: domain, chain, kind and body."""
    return encode((SIGNING_DOMAIN, chain_id, int(kind), body))


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _want_kind(obj: Any, name: str, allowed: tuple[Kind, ...]) -> Kind:
    value = want_int(obj, name, 0, 255)
    if value not in allowed:
        raise DecodeError("malformed", f"{name}: kind {value} not allowed here")
    return Kind(value)


def _want_block_id(obj: Any, name: str, nil_ok: bool) -> bytes | None:
    if obj is None and nil_ok:
        return None
    return want_bytes(obj, name, HASH_LEN)


@dataclass(frozen=True, slots=True)
class Vote:
    """A prevote or precommit; `block_id` None is a vote for nil."""

    kind: Kind
    height: int
    round: int
    block_id: bytes | None
    validator: bytes
    signature: bytes = b""

    def body(self) -> bytes:
        return encode((self.height, self.round, self.block_id, self.validator))

    def to_wire(self) -> tuple[Any, ...]:
        return (int(self.kind), self.height, self.round, self.block_id, self.validator, self.signature)

    @classmethod
    def from_wire(cls, obj: Any) -> Vote:
        kind, height, round_, block_id, validator, signature = want_tuple(obj, "vote", 6)
        return cls(
            kind=_want_kind(kind, "vote.kind", VOTE_KINDS),
            height=want_int(height, "vote.height", 1),
            round=want_int(round_, "vote.round", 0, MAX_ROUND),
            block_id=_want_block_id(block_id, "vote.block_id", nil_ok=True),
            validator=want_bytes(validator, "vote.validator", ADDRESS_LEN),
            signature=want_bytes(signature, "vote.signature", SIGNATURE_LEN),
        )

    @classmethod
    def from_body(cls, kind: Kind, body: bytes, signature: bytes) -> Vote:
        height, round_, block_id, validator = want_tuple(decode(body), "vote", 4)
        return cls.from_wire((int(kind), height, round_, block_id, validator, signature))


@dataclass(frozen=True, slots=True)
class Proposal:
    """A proposer's signed claim: at (height, round) I propose `block_id`.

    `pol_round` is the round of the polka that justifies re-proposing a
    locked/valid block (-1 when the block is fresh), as in Tendermint.
    """

    height: int
    round: int
    block_id: bytes
    pol_round: int
    proposer: bytes
    signature: bytes = b""

    def body(self) -> bytes:
        return encode((self.height, self.round, self.block_id, self.pol_round, self.proposer))

    def to_wire(self) -> tuple[Any, ...]:
        return (self.height, self.round, self.block_id, self.pol_round, self.proposer, self.signature)

    @classmethod
    def from_wire(cls, obj: Any) -> Proposal:
        height, round_, block_id, pol_round, proposer, signature = want_tuple(obj, "proposal", 6)
        proposal = cls(
            height=want_int(height, "proposal.height", 1),
            round=want_int(round_, "proposal.round", 0, MAX_ROUND),
            block_id=want_bytes(block_id, "proposal.block_id", HASH_LEN),
            pol_round=want_int(pol_round, "proposal.pol_round", -1, MAX_ROUND),
            proposer=want_bytes(proposer, "proposal.proposer", ADDRESS_LEN),
            signature=want_bytes(signature, "proposal.signature", SIGNATURE_LEN),
        )
        if proposal.pol_round >= proposal.round:
            raise DecodeError("malformed", "proposal.pol_round must be below the round")
        return proposal

    @classmethod
    def from_body(cls, body: bytes, signature: bytes) -> Proposal:
        fields = want_tuple(decode(body), "proposal", 5)
        return cls.from_wire((*fields, signature))


def signed_kind(item: Vote | Proposal) -> Kind:
    return item.kind if isinstance(item, Vote) else Kind.PROPOSAL


def signer_of(item: Vote | Proposal) -> bytes:
    return item.validator if isinstance(item, Vote) else item.proposer


def verify_signed(chain_id: str, item: Vote | Proposal, public_key: bytes) -> bool:
    """Check a vote's or proposal's own signature."""
    return verify(public_key, signing_bytes(chain_id, signed_kind(item), item.body()), item.signature)


def sign_item(chain_id: str, item: Vote | Proposal, keypair: Keypair) -> bytes:
    """The signature for a vote or proposal (callers guard it with the signing record)."""
    return keypair.sign(signing_bytes(chain_id, signed_kind(item), item.body()))


@dataclass(frozen=True, slots=True)
class CommitCertificate:
    """Precommits for one block at one round, by more than 2/3 of committee stake."""

    height: int
    round: int
    block_id: bytes
    signatures: tuple[tuple[bytes, bytes], ...]  # (validator, signature), sorted by validator

    def votes(self) -> tuple[Vote, ...]:
        return tuple(
            Vote(Kind.PRECOMMIT, self.height, self.round, self.block_id, validator, signature)
            for validator, signature in self.signatures
        )

    def signers(self) -> frozenset[bytes]:
        return frozenset(validator for validator, _ in self.signatures)

    def to_wire(self) -> tuple[Any, ...]:
        return (self.height, self.round, self.block_id, self.signatures)

    @classmethod
    def from_wire(cls, obj: Any) -> CommitCertificate:
        height, round_, block_id, signatures = want_tuple(obj, "certificate", 4)
        pairs = tuple(
            (
                want_bytes(
                    want_tuple(pair, "certificate.signature", 2)[0], "certificate.validator", ADDRESS_LEN
                ),
                want_bytes(pair[1], "certificate.signature", SIGNATURE_LEN),
            )
            for pair in want_tuple(signatures, "certificate.signatures")
        )
        validators = [validator for validator, _ in pairs]
        if validators != sorted(set(validators)):
            raise DecodeError("malformed", "certificate.signatures: not sorted or has duplicates")
        return cls(
            height=want_int(height, "certificate.height", 1),
            round=want_int(round_, "certificate.round", 0, MAX_ROUND),
            block_id=want_bytes(block_id, "certificate.block_id", HASH_LEN),
            signatures=pairs,
        )


def make_certificate(votes: list[Vote]) -> CommitCertificate:
    """Bundle precommits for one (height, round, block) into a certificate."""
    first = votes[0]
    pairs = tuple(sorted((vote.validator, vote.signature) for vote in votes))
    return CommitCertificate(first.height, first.round, first.block_id or ZERO_HASH, pairs)


@dataclass(frozen=True, slots=True)
class Evidence:
    """Two conflicting signed messages by one validator: proof of equivocation.

    Either two votes of one kind for the same (height, round) and different
    block ids, or two proposals for the same (height, round) and different
    blocks. Stored in canonical order (smaller body first), so the same
    offence has exactly one encoding and duplicates are recognisable.
    """

    first: Vote | Proposal
    second: Vote | Proposal

    @property
    def offender(self) -> bytes:
        return signer_of(self.first)

    @property
    def height(self) -> int:
        return self.first.height

    def key(self) -> tuple[bytes, int, int, int]:
        """What identifies the offence, so one equivocation is punished once."""
        return (self.offender, self.first.height, self.first.round, int(signed_kind(self.first)))

    def to_wire(self) -> tuple[Any, ...]:
        tag = 0 if isinstance(self.first, Vote) else 1
        return (tag, self.first.to_wire(), self.second.to_wire())

    @classmethod
    def from_wire(cls, obj: Any) -> Evidence:
        tag, first, second = want_tuple(obj, "evidence", 3)
        tag = want_int(tag, "evidence.tag", 0, 1)
        parse = Vote.from_wire if tag == 0 else Proposal.from_wire
        evidence = cls(parse(first), parse(second))
        problem = evidence_shape_problem(evidence)
        if problem:
            raise DecodeError("malformed", f"evidence: {problem}")
        return evidence


def make_evidence(a: Vote | Proposal, b: Vote | Proposal) -> Evidence:
    first, second = sorted((a, b), key=lambda item: item.body())
    return Evidence(first, second)


def evidence_shape_problem(evidence: Evidence) -> str | None:
    """Why two signed items are not an equivocation, or None if they are (signatures aside)."""
    a, b = evidence.first, evidence.second
    if type(a) is not type(b):
        return "items of different types"
    if signer_of(a) != signer_of(b):
        return "items by different signers"
    if (a.height, a.round, signed_kind(a)) != (b.height, b.round, signed_kind(b)):
        return "items for different height, round or step"
    if a.block_id == b.block_id:
        return "items for the same block"
    if a.body() >= b.body():
        return "items not in canonical order"
    return None


@dataclass(frozen=True)
class Block:
    """A block: its place in the chain, its contents, the previous block's certificate,
    and the digest of the state it applies to (so honest nodes cannot silently
    disagree on stake or balances while agreeing on block hashes).

    `late_precommits` are precommits for recent finalized heights that their
    certificates missed (they arrived after the proposer had its quorum): on
    chain they count as participation, so an online validator is not charged
    downtime for being slower than the first 2/3.

    `reveal` is the proposer's RANDAO reveal for the block's epoch, on chains
    whose seed mixes reveals instead of block hashes (node.core.randao);
    empty elsewhere."""

    height: int
    prev_hash: bytes
    proposer: bytes
    timestamp_ms: int
    txs: tuple[bytes, ...]
    evidence: tuple[Evidence, ...]
    last_commit: CommitCertificate | None
    state_hash: bytes = ZERO_HASH  # digest of the state this block applies to (after height - 1)
    late_precommits: tuple[Vote, ...] = ()
    reveal: bytes = b""

    def to_wire(self) -> tuple[Any, ...]:
        """Eight fields, a ninth only when there are late precommits or a reveal, and a
        tenth (the reveal) only with a reveal: blocks without them keep the encoding (and
        hash) they had before the fields existed, so stores written by earlier versions
        still read."""
        late = (tuple(vote.to_wire() for vote in self.late_precommits),) if self.late_precommits else ()
        late = (*(late or ((),)), self.reveal) if self.reveal else late
        return (
            self.height,
            self.prev_hash,
            self.proposer,
            self.timestamp_ms,
            self.txs,
            tuple(ev.to_wire() for ev in self.evidence),
            None if self.last_commit is None else self.last_commit.to_wire(),
            self.state_hash,
            *late,
        )

    @cached_property
    def encoded(self) -> bytes:
        return encode(self.to_wire())

    @cached_property
    def hash(self) -> bytes:
        return sha256(self.encoded)

    @classmethod
    def from_wire(cls, obj: Any) -> Block:
        fields = want_tuple(obj, "block")
        if len(fields) not in (8, 9, 10):
            raise DecodeError("malformed", f"block: expected 8 to 10 items, got {len(fields)}")
        height, prev_hash, proposer, ts, txs, evidence, last_commit, state_hash, *rest = fields
        txs = want_tuple(txs, "block.txs")
        evidence = want_tuple(evidence, "block.evidence")
        late = want_tuple(rest[0], "block.late_precommits") if rest else ()
        if len(rest) == 1 and not late:
            raise DecodeError("non_canonical", "block.late_precommits: empty (omitted when there are none)")
        reveal = want_bytes(rest[1], "block.reveal", HASH_LEN) if len(rest) == 2 else b""
        if len(txs) > MAX_TXS_PER_BLOCK or len(evidence) > MAX_EVIDENCE_PER_BLOCK:
            raise DecodeError("malformed", "block: too many transactions or evidence items")
        if len(late) > MAX_LATE_PRECOMMITS_PER_BLOCK:
            raise DecodeError("malformed", "block: too many late precommits")
        block = cls(
            height=want_int(height, "block.height", 1),
            prev_hash=want_bytes(prev_hash, "block.prev_hash", HASH_LEN),
            proposer=want_bytes(proposer, "block.proposer", ADDRESS_LEN),
            timestamp_ms=want_int(ts, "block.timestamp_ms"),
            txs=tuple(want_bytes(tx, "block.tx", max_len=64 * 1024) for tx in txs),
            evidence=tuple(Evidence.from_wire(ev) for ev in evidence),
            last_commit=None if last_commit is None else CommitCertificate.from_wire(last_commit),
            state_hash=want_bytes(state_hash, "block.state_hash", HASH_LEN),
            late_precommits=tuple(Vote.from_wire(vote) for vote in late),
            reveal=reveal,
        )
        if (block.height == 1) != (block.last_commit is None):
            raise DecodeError("malformed", "block.last_commit: required above height 1 only")
        return block

    @classmethod
    def decode(cls, data: bytes) -> Block:
        return cls.from_wire(decode(data))


# ---------------------------------------------------------------- envelopes


@dataclass(frozen=True, slots=True)
class Envelope:
    """What travels on the wire: a signed body plus, for proposals, the block.

    The attachment is not signed by the envelope; for a proposal it is the
    block, bound to the signature through its hash (the proposal's block id).
    """

    chain_id: str
    kind: Kind
    sender: bytes
    body: bytes
    signature: bytes
    attachment: bytes = b""

    def to_bytes(self) -> bytes:
        return encode(
            (
                PROTOCOL_VERSION,
                self.chain_id,
                int(self.kind),
                self.sender,
                self.body,
                self.signature,
                self.attachment,
            )
        )

    def signed_bytes(self) -> bytes:
        return signing_bytes(self.chain_id, self.kind, self.body)


def seal(
    chain_id: str,
    kind: Kind,
    body: bytes,
    keypair: Keypair,
    attachment: bytes = b"",
    sender: bytes | None = None,
) -> Envelope:
    """Sign a body as `keypair` (not for votes/proposals, which are signed under the signing record).

    `sender` is the validator's address when its signing key is not its owner's.
    """
    signature = keypair.sign(signing_bytes(chain_id, kind, body))
    return Envelope(
        chain_id, kind, keypair.address if sender is None else sender, body, signature, attachment
    )


def envelope_for(chain_id: str, item: Vote | Proposal, attachment: bytes = b"") -> Envelope:
    """Wrap an already-signed vote or proposal for the wire."""
    return Envelope(chain_id, signed_kind(item), signer_of(item), item.body(), item.signature, attachment)


def parse_envelope(data: bytes) -> Envelope:
    """Decode an envelope's structure; signatures are checked by the admission layer."""
    fields = want_tuple(decode(data), "envelope", 7)
    version, chain_id, kind, sender, body, signature, attachment = fields
    if want_int(version, "envelope.version", 0, 255) != PROTOCOL_VERSION:
        raise DecodeError("version", f"protocol version {version} is not {PROTOCOL_VERSION}")
    kind_value = want_int(kind, "envelope.kind", 0, 255)
    if kind_value not in Kind._value2member_map_:
        raise DecodeError("unknown_kind", f"kind {kind_value}")
    return Envelope(
        chain_id=want_str(chain_id, "envelope.chain_id"),
        kind=Kind(kind_value),
        sender=want_bytes(sender, "envelope.sender", max_len=64),
        body=want_bytes(body, "envelope.body"),
        signature=want_bytes(signature, "envelope.signature", SIGNATURE_LEN),
        attachment=want_bytes(attachment, "envelope.attachment"),
    )
