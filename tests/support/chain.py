"""A 4-validator test chain with real keys: signed votes, proposals, blocks and certificates.

Everything here is signed with the validators' real Ed25519 keys
(``Keypair.deterministic("t/<name>")``), exactly as a node signs, so the
tests exercise the same verification paths as production. Four validators of
equal stake make any three a quorum (3000 > 2/3 of 4000) and any two more
than a third (2000 > 4000/3).
"""

from __future__ import annotations

from dataclasses import replace

from node.core.genesis import Genesis, Params, make_genesis
from node.core.keys import Keypair
from node.core.messages import (
    Block,
    CommitCertificate,
    Envelope,
    Kind,
    Proposal,
    Vote,
    envelope_for,
    make_certificate,
    sign_item,
)
from node.core.state import ChainState, apply_block, genesis_state, proposer_of

CHAIN_ID = "posnet-test"
NAMES = ("alice", "bob", "carol", "dave")
KEYS: dict[str, Keypair] = {name: Keypair.deterministic(f"t/{name}") for name in NAMES}
ADDR: dict[str, bytes] = {name: kp.address for name, kp in KEYS.items()}
NAME_OF: dict[bytes, str] = {address: name for name, address in ADDR.items()}
OUTSIDER = Keypair.deterministic("t/outsider")  # a key that is not in the genesis


def genesis(
    params: Params | None = None, chain_id: str = CHAIN_ID, stakes: dict[str, int] | None = None
) -> Genesis:
    """The 4-validator genesis, equal stakes of 1000 unless `stakes` says otherwise."""
    return make_genesis(chain_id, KEYS, params=params, stakes=stakes)


def state0(params: Params | None = None, stakes: dict[str, int] | None = None) -> ChainState:
    """The state before height 1."""
    return genesis_state(genesis(params, stakes=stakes))


def proposer_name(state: ChainState, round_: int = 0) -> str:
    """Who proposes (state.next_height, round_)."""
    return NAME_OF[proposer_of(state, round_)]


def signed(item: Vote | Proposal, name: str, chain_id: str = CHAIN_ID) -> Vote | Proposal:
    """`item` with `name`'s real signature."""
    return replace(item, signature=sign_item(chain_id, item, KEYS[name]))


def vote(
    name: str,
    kind: Kind,
    height: int,
    round_: int,
    block_id: bytes | None,
    chain_id: str = CHAIN_ID,
) -> Vote:
    """A prevote or precommit signed by `name`."""
    item = Vote(kind, height, round_, block_id, ADDR[name])
    result = signed(item, name, chain_id)
    assert isinstance(result, Vote)
    return result


def prevote(name: str, height: int, round_: int, block_id: bytes | None) -> Vote:
    return vote(name, Kind.PREVOTE, height, round_, block_id)


def precommit(name: str, height: int, round_: int, block_id: bytes | None) -> Vote:
    return vote(name, Kind.PRECOMMIT, height, round_, block_id)


def proposal(
    name: str,
    height: int,
    round_: int,
    block_id: bytes,
    pol_round: int = -1,
    chain_id: str = CHAIN_ID,
) -> Proposal:
    """A proposal signed by `name`."""
    item = Proposal(height, round_, block_id, pol_round, ADDR[name])
    result = signed(item, name, chain_id)
    assert isinstance(result, Proposal)
    return result


def make_block(
    state: ChainState,
    proposer: str | None = None,
    *,
    txs: tuple[bytes, ...] = (),
    timestamp_ms: int | None = None,
    last_commit: CommitCertificate | None = None,
    prev_hash: bytes | None = None,
    height: int | None = None,
    state_hash: bytes | None = None,
) -> Block:
    """The next block on `state` (valid unless a field is overridden to something wrong).

    Above height 1 the caller passes the previous block's certificate.
    """
    return Block(
        height=state.next_height if height is None else height,
        prev_hash=state.last_block_hash if prev_hash is None else prev_hash,
        proposer=ADDR[proposer or proposer_name(state)],
        timestamp_ms=state.last_timestamp_ms + 1 if timestamp_ms is None else timestamp_ms,
        txs=txs,
        evidence=(),
        last_commit=last_commit,
        state_hash=state.digest if state_hash is None else state_hash,
    )


def certificate(
    block_id: bytes, height: int, round_: int = 0, signers: tuple[str, ...] = NAMES
) -> CommitCertificate:
    """A commit certificate made of real precommits by `signers`."""
    return make_certificate([precommit(name, height, round_, block_id) for name in signers])


def finalize(
    state: ChainState, block: Block, round_: int = 0, signers: tuple[str, ...] = ("alice", "bob", "carol")
) -> tuple[ChainState, CommitCertificate]:
    """Apply `block` as final with a certificate from `signers`; the new state and the certificate."""
    new_state, _events = apply_block(state, block)
    return new_state, certificate(block.hash, block.height, round_, signers)


def envelope(item: Vote | Proposal, block: Block | None = None) -> Envelope:
    """The wire envelope of a signed vote or proposal (the block attached to proposals)."""
    return envelope_for(CHAIN_ID, item, block.encoded if block is not None else b"")


def wire(item: Vote | Proposal, block: Block | None = None) -> bytes:
    """The exact bytes a node would publish for `item`."""
    return envelope(item, block).to_bytes()
