"""A restarted node's chain state, rebuilt from its store: the newest usable snapshot, then the blocks after it.

Replaying every finalized block from genesis made a node's startup grow with
its chain (100,000 blocks took minutes). Every `SNAPSHOT_EVERY` blocks the
runtime now stores the state after the block, and a restart starts from the
newest snapshot that the chain vouches for:

- a block after it is stored, and that block's `state_hash` (agreed by the
  committee that finalized it) equals the snapshot's digest;
- the snapshot is of the stored block at its height (height and hash).

The blocks after the snapshot are then replayed exactly as before (hash
chain, certificate per block, the last certificate verified in full). A
snapshot that fails any check is passed over, and the reason is reported so
the node logs it; with none usable the node replays from genesis. A corrupt
block is still a corrupt store: the node refuses to start.
"""

from __future__ import annotations

from dataclasses import dataclass

from node.core.codec import DecodeError, decode
from node.core.messages import Block, CommitCertificate
from node.core.snapshot import SnapshotError, decode_state
from node.core.state import ChainState, apply_block, certificate_problem
from node.runtime.store import Store

SNAPSHOT_EVERY = 1000
"""Blocks between snapshots: a restart replays at most about this many (a few seconds at most)."""

REPLAY_BATCH = 256


class CorruptStore(Exception):
    """The stored chain cannot be trusted: a block or certificate that does not fit."""


@dataclass(frozen=True)
class Recovery:
    """What the store gave back, and how: for the node's `recovered` log event."""

    state: ChainState
    certificate: CommitCertificate | None  # of the last stored height (None: nothing stored)
    snapshot_height: int  # 0: replayed from genesis
    replayed: int  # blocks applied after the snapshot (or genesis)
    passed_over: tuple[str, ...] = ()  # why each newer snapshot was not used


def recover_chain(store: Store, genesis: ChainState) -> Recovery:
    """The state after the last stored block, from the newest usable snapshot (else genesis)."""
    start, snapshot_height, passed_over = genesis, 0, []
    for height, data in store.snapshots():
        problem = snapshot_problem(store, genesis, height, data)
        if problem is None:
            start, snapshot_height = decode_state(data), height
            break
        passed_over.append(f"snapshot of height {height}: {problem}")
    state, certificate = replay_chain(store, start)
    return Recovery(state, certificate, snapshot_height, state.height - snapshot_height, tuple(passed_over))


def snapshot_problem(store: Store, genesis: ChainState, height: int, data: bytes) -> str | None:
    """Why the snapshot of `height` cannot be started from, or None."""
    here, after = store.finalized(height), store.finalized(height + 1)
    if here is None:
        return "no stored block at its height"
    if after is None:
        return "no later block vouches for it yet"
    try:
        state = decode_state(data)
        next_block = Block.decode(after[1])
    except (SnapshotError, DecodeError) as exc:
        return f"unreadable ({exc})"
    if state.chain_id != genesis.chain_id or state.params != genesis.params:
        return "of another chain (chain id or parameters differ from the genesis)"
    if state.height != height or state.last_block_hash != here[0]:
        return "not the state after the stored block of its height"
    if next_block.state_hash != state.digest:
        return f"its digest is not the state hash block {height + 1} carries"
    return None


def replay_chain(store: Store, state: ChainState) -> tuple[ChainState, CommitCertificate | None]:
    """Apply the stored blocks after `state`; the state after the last, with that block's certificate.

    Each stored block must hash to its stored hash, extend the previous one,
    and carry a certificate for itself; the last certificate (the one our
    next proposal will carry) is verified in full. Anything else is a
    corrupt store, and the node refuses to start rather than run on it.
    """
    certificate: CommitCertificate | None = None
    committee = state.committee
    height = state.height + 1
    while rows := store.finalized_range(height, REPLAY_BATCH):
        for stored_height, block_hash, block_bytes, cert_bytes in rows:
            where = f"store: finalized height {stored_height}"
            try:
                block = Block.decode(block_bytes)
                certificate = CommitCertificate.from_wire(decode(cert_bytes))
            except DecodeError as exc:
                raise CorruptStore(f"{where}: undecodable ({exc})") from None
            if block.hash != block_hash or block.height != stored_height:
                raise CorruptStore(f"{where}: block does not match its stored hash")
            if block.prev_hash != state.last_block_hash:
                raise CorruptStore(f"{where}: block does not extend the previous stored block")
            if certificate.block_id != block.hash or certificate.height != stored_height:
                raise CorruptStore(f"{where}: certificate is for another block")
            committee = state.committee
            state, _ = apply_block(state, block)
        height = rows[-1][0] + 1
    if certificate is not None:
        problem = certificate_problem(state, certificate, committee, state.last_block_hash)
        if problem:
            raise CorruptStore(f"store: certificate of height {state.height}: {problem}")
    return state, certificate
