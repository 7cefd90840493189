"""Admission: from raw bytes off the wire to an authenticated, typed message.

Everything a node receives passes through `admit` before the state machine
sees it. Anything wrong (oversize, malformed, non-canonical, other version,
other chain, unknown sender, bad signature, stale or far-future height) comes
back as a `Rejected` with a short reason that the caller counts as a metric;
nothing rejected is stored or acted on. This function is pure, so the fuzz
tests and the simulator exercise exactly what a real node runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from node.core.codec import (
    MAX_MESSAGE_BYTES,
    DecodeError,
    decode,
    want_bytes,
    want_int,
    want_str,
    want_tuple,
)
from node.core.keys import ADDRESS_LEN, PUBLIC_KEY_LEN, verify
from node.core.messages import (
    Block,
    CommitCertificate,
    Envelope,
    Evidence,
    Kind,
    Proposal,
    Vote,
    parse_envelope,
    signer_of,
)
from node.core.signing_keys import KeyHistory, key_at, recent_keys

FUTURE_HEIGHTS = 100  # further ahead than this is far-future junk, not a peer we lag behind
MAX_SYNC_BLOCKS = 50
MAX_STATUS_VALIDATORS = 1024  # pools one node process may say it signs for

REJECT_REASONS = (
    "oversize",
    "malformed",
    "non_canonical",
    "version",
    "unknown_kind",
    "wrong_chain",
    "unknown_sender",
    "bad_signature",
    "stale",
    "future",
    "invalid",
    "unsolicited",  # a sync answer to no request of ours (node.core.syncguard)
    "replayed",  # a sync request or answer acted on once already
    "rate_limited",  # a sync request past its requester's allowance
)


@dataclass(frozen=True)
class Rejected:
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class ProposalMsg:
    proposal: Proposal
    block: Block


@dataclass(frozen=True)
class EvidenceMsg:
    sender: bytes
    evidence: Evidence


@dataclass(frozen=True)
class SyncRequest:
    sender: bytes
    from_height: int
    reply_to: str  # the requester's node id, for the reply topic
    nonce: int  # fresh per request (node.core.syncguard): a copy of it is answered once at most


@dataclass(frozen=True)
class SyncResponse:
    sender: bytes
    nonce: int  # the request's it answers: the requester takes only answers to its own
    blocks: tuple[tuple[Block, CommitCertificate], ...]


@dataclass(frozen=True)
class StatusMsg:
    sender: bytes
    node: str
    height: int
    round: int
    online: bool
    validators: tuple[bytes, ...] = ()  # the pools the node signs for (what a start gate counts as up)
    ts_ms: int = 0  # the sender's wall clock when it signed: a replayed old status is stale, not "online"


@dataclass(frozen=True)
class TxMsg:
    tx: bytes


Admitted = Vote | ProposalMsg | EvidenceMsg | SyncRequest | SyncResponse | StatusMsg | TxMsg


@dataclass(frozen=True)
class AdmissionContext:
    """What admission needs to know about the node's current view."""

    chain_id: str
    public_keys: Mapping[bytes, bytes]  # each validator's signing key now
    height: int  # the height the node is working on
    oldest_pending: int | None = None  # the oldest height still pending downtime judgement, if any
    max_size: int = MAX_MESSAGE_BYTES
    key_history: KeyHistory = ()  # signing keys rotated out recently (node.core.signing_keys)


AuthCache = dict[bytes, tuple[Mapping[bytes, bytes], KeyHistory, "Admitted | Rejected"]]


def admit(data: bytes, ctx: AdmissionContext, cache: AuthCache | None = None) -> Admitted | Rejected:
    """Authenticate and parse one message, or say why it is dropped.

    `cache` lets many nodes in one process (the simulator) share the result
    of authenticating identical bytes against the identical key set; the
    height check, which depends on the node, is always done afresh.
    """
    if len(data) > ctx.max_size:
        return Rejected("oversize", f"{len(data)} bytes")
    if cache is None:
        message = authenticate(data, ctx.chain_id, ctx.public_keys, ctx.key_history)
    else:
        hit = cache.get(data)
        if hit is None or hit[0] is not ctx.public_keys or hit[1] != ctx.key_history:
            if len(cache) > 100_000:
                cache.clear()
            result = authenticate(data, ctx.chain_id, ctx.public_keys, ctx.key_history)
            hit = cache[data] = (ctx.public_keys, ctx.key_history, result)
        message = hit[2]
    if isinstance(message, Rejected):
        return message
    return _height_problem(message, ctx) or message


def authenticate(
    data: bytes, chain_id: str, public_keys: Mapping[bytes, bytes], key_history: KeyHistory = ()
) -> Admitted | Rejected:
    """Everything about a message that does not depend on the receiver's height."""
    try:
        envelope = parse_envelope(data)
        if envelope.chain_id != chain_id:
            return Rejected("wrong_chain", envelope.chain_id[:64])
        if envelope.kind != Kind.TX and len(envelope.sender) != ADDRESS_LEN:
            return Rejected("unknown_sender", envelope.sender.hex()[:16])
        item = _signed_item(envelope)
        keys = _sender_keys(envelope, item, public_keys, key_history)
        if not keys:
            return Rejected("unknown_sender", envelope.sender.hex()[:16])
        signed = envelope.signed_bytes()
        if not any(verify(key, signed, envelope.signature) for key in keys):
            return Rejected("bad_signature", envelope.kind.name)
        if item is not None and signer_of(item) != envelope.sender:
            return Rejected("invalid", f"{envelope.kind.name.lower()} signer is not the sender")
        return item if isinstance(item, Vote) else _parse_body(envelope, item)
    except DecodeError as exc:
        return Rejected(exc.reason, exc.detail)


def _signed_item(envelope: Envelope) -> Vote | Proposal | None:
    """A vote's or proposal's body, read before its signature is checked: its height picks the key."""
    if envelope.kind in (Kind.PREVOTE, Kind.PRECOMMIT):
        if envelope.attachment:
            raise DecodeError("malformed", "attachment on a message that takes none")
        return Vote.from_body(envelope.kind, envelope.body, envelope.signature)
    if envelope.kind == Kind.PROPOSAL:
        return Proposal.from_body(envelope.body, envelope.signature)
    return None


def _sender_keys(
    envelope: Envelope, item: Vote | Proposal | None, public_keys: Mapping[bytes, bytes], history: KeyHistory
) -> tuple[bytes, ...]:
    """The keys the envelope may be signed with (none: unknown sender).

    A vote or proposal verifies only under the key in force at its height. A
    transaction's envelope names its own public key. Anything else a
    validator sends (sync, status, evidence) carries no height, and a node
    an epoch behind still signs with the key rotated out: any of the
    validator's recent keys will do, as such messages decide nothing alone.
    """
    if envelope.kind == Kind.TX:
        return (envelope.sender,) if len(envelope.sender) == PUBLIC_KEY_LEN else ()
    if item is not None:
        key = key_at(public_keys, history, envelope.sender, item.height)
        return (key,) if key else ()
    return recent_keys(public_keys, history, envelope.sender)


def _parse_body(envelope: Envelope, item: Proposal | None) -> Admitted:
    """The rest of an authenticated message (a vote is whole already)."""
    kind, body, sender = envelope.kind, envelope.body, envelope.sender
    if item is not None:
        return _parse_proposal(envelope, item)
    if envelope.attachment:
        raise DecodeError("malformed", "attachment on a message that takes none")
    if kind == Kind.EVIDENCE:
        return EvidenceMsg(sender, Evidence.from_wire(decode(body)))
    if kind == Kind.SYNC_REQUEST:
        from_height, reply_to, nonce = want_tuple(decode(body), "sync_request", 3)
        return SyncRequest(
            sender,
            want_int(from_height, "sync_request.from_height", 1),
            want_str(reply_to, "reply_to", 64),
            want_int(nonce, "sync_request.nonce"),
        )
    if kind == Kind.SYNC_RESPONSE:
        nonce, blocks = want_tuple(decode(body), "sync_response", 2)
        return SyncResponse(sender, want_int(nonce, "sync_response.nonce"), _parse_sync_blocks(blocks))
    if kind == Kind.STATUS:
        node, height, round_, online, validators, ts_ms = want_tuple(decode(body), "status", 6)
        if not isinstance(online, bool):
            raise DecodeError("malformed", "status.online: expected boolean")
        return StatusMsg(
            sender,
            want_str(node, "status.node", 64),
            want_int(height, "status.height"),
            want_int(round_, "status.round"),
            online,
            _status_validators(validators, sender),
            want_int(ts_ms, "status.ts_ms"),
        )
    if kind == Kind.TX:
        return TxMsg(body)
    raise DecodeError("unknown_kind", kind.name)


def _status_validators(obj: Any, sender: bytes) -> tuple[bytes, ...]:
    """The pools a status says its node signs for: distinct addresses, the signer's own among them."""
    items = want_tuple(obj, "status.validators")
    if len(items) > MAX_STATUS_VALIDATORS:
        raise DecodeError("malformed", f"status.validators: more than {MAX_STATUS_VALIDATORS}")
    addresses = tuple(want_bytes(a, "status.validators[]", ADDRESS_LEN) for a in items)
    if len(set(addresses)) != len(addresses) or sender not in addresses:
        raise DecodeError("invalid", "status.validators: repeated, or without the signer's own pool")
    return addresses


def _invalid(detail: str) -> Any:
    raise DecodeError("invalid", detail)


def _parse_proposal(envelope: Envelope, proposal: Proposal) -> ProposalMsg:
    block = Block.decode(envelope.attachment)
    if block.hash != proposal.block_id:
        _invalid("attached block does not match the proposal's block id")
    if block.height != proposal.height:
        _invalid("attached block is for another height")
    return ProposalMsg(proposal, block)


def _parse_sync_blocks(obj: Any) -> tuple[tuple[Block, CommitCertificate], ...]:
    items = want_tuple(obj, "sync_response.blocks")
    if len(items) > MAX_SYNC_BLOCKS:
        raise DecodeError("malformed", "sync_response: too many blocks")
    pairs = []
    for item in items:
        block_wire, cert_wire = want_tuple(item, "sync_response.item", 2)
        block, cert = Block.from_wire(block_wire), CommitCertificate.from_wire(cert_wire)
        if cert.height != block.height or cert.block_id != block.hash:
            raise DecodeError("invalid", "sync_response: certificate does not match its block")
        pairs.append((block, cert))
    return tuple(pairs)


def _message_height(message: Admitted) -> int | None:
    if isinstance(message, Vote):
        return message.height
    if isinstance(message, ProposalMsg):
        return message.proposal.height
    return None


def _height_problem(message: Admitted, ctx: AdmissionContext) -> Rejected | None:
    height = _message_height(message)
    if height is None:
        return None
    oldest = ctx.height - 1
    if isinstance(message, Vote) and message.kind == Kind.PRECOMMIT and ctx.oldest_pending is not None:
        oldest = min(oldest, ctx.oldest_pending)  # late precommits still count for downtime
    if height < oldest:
        return Rejected("stale", f"height {height} < {oldest}")
    if height > ctx.height + FUTURE_HEIGHTS:
        return Rejected("future", f"height {height} > {ctx.height + FUTURE_HEIGHTS}")
    return None
