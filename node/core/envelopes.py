"""Building the envelopes a node sends: one small function per message kind."""

from __future__ import annotations

from collections.abc import Sequence

from node.core.codec import encode
from node.core.keys import Keypair
from node.core.messages import Block, CommitCertificate, Evidence, Kind, Proposal, Vote, envelope_for, seal


def signed_item_bytes(chain_id: str, item: Vote | Proposal, block: Block | None = None) -> bytes:
    """A signed vote, or a signed proposal with its block attached."""
    attachment = block.encoded if isinstance(item, Proposal) and block is not None else b""
    return envelope_for(chain_id, item, attachment).to_bytes()


# `sender`: the validator's address, when the key that seals is its signing key and not its owner's.


def evidence_bytes(chain_id: str, evidence: Evidence, keypair: Keypair, sender: bytes | None = None) -> bytes:
    return seal(chain_id, Kind.EVIDENCE, encode(evidence.to_wire()), keypair, sender=sender).to_bytes()


def sync_request_bytes(
    chain_id: str, from_height: int, reply_to: str, nonce: int, keypair: Keypair, sender: bytes | None = None
) -> bytes:
    """A request for blocks from `from_height` on; `nonce` is fresh (node.core.syncguard)."""
    body = encode((from_height, reply_to, nonce))
    return seal(chain_id, Kind.SYNC_REQUEST, body, keypair, sender=sender).to_bytes()


def sync_response_bytes(
    chain_id: str,
    nonce: int,
    blocks: Sequence[tuple[Block, CommitCertificate]],
    keypair: Keypair,
    sender: bytes | None = None,
) -> bytes:
    """An answer to the request that carried `nonce`, signed with it."""
    body = encode((nonce, tuple((block.to_wire(), cert.to_wire()) for block, cert in blocks)))
    return seal(chain_id, Kind.SYNC_RESPONSE, body, keypair, sender=sender).to_bytes()


def status_bytes(
    chain_id: str,
    node: str,
    height: int,
    round_: int,
    online: bool,
    keypair: Keypair,
    sender: bytes | None = None,
    validators: tuple[bytes, ...] = (),
    *,
    ts_ms: int,
) -> bytes:
    """A node's status; `validators` (default: the signer's own pool) are the pools it signs for.

    `ts_ms` is the signer's wall clock: a status carries no nonce a receiver
    could check, so its time is what makes a replayed copy worthless once it
    is older than `node.core.startgate.STATUS_FRESH_MS`.
    """
    pools = validators or (sender if sender is not None else keypair.address,)
    body = encode((node, height, round_, online, tuple(pools), ts_ms))
    return seal(chain_id, Kind.STATUS, body, keypair, sender=sender).to_bytes()


def tx_bytes(chain_id: str, signed_tx: bytes, keypair: Keypair) -> bytes:
    """A transaction envelope: its sender field is the submitter's public key."""
    envelope = seal(chain_id, Kind.TX, signed_tx, keypair)
    return type(envelope)(chain_id, Kind.TX, keypair.public, envelope.body, envelope.signature).to_bytes()
