"""RANDAO by hash onion: per-epoch values no proposer can choose, mixed into the seed (pure).

Why: on a chain whose seed accumulator mixes block hashes, the proposer of
an epoch's last block picks the seats of the epoch after next by picking
its block (`node.core.grinding`). Here each block instead mixes its
proposer's *reveal* for the block's epoch, a value fixed before the chain
began, so the only choice left to a proposer is to publish its block or
withhold it: one bit per proposer, as in Ethereum's RANDAO.

The reveal must be unique: if a proposer could produce two values that
both verify, it could grind again. Ed25519 signatures over the epoch are
not unique (RFC 8032 signing is deterministic, but a signer may pick any
nonce and verification accepts every one). RSA-FDH signatures are unique
only for honestly made keys (RFC 9381 calls that trusted uniqueness), and
no maintained Python library offers an ECVRF or BLS fast enough for a
simulator. A hash onion is unique unconditionally, from SHA-256 alone:

- a validator's secret s comes from its signing key's seed (domain
  separated: the key signs nothing with it); its commitment, in the
  genesis, is c = H^D(s) with D = `ONION_DEPTH`;
- its reveal for epoch e is r_e = H^(D-1-e)(s);
- the state keeps, per validator, the last reveal it accepted and its epoch
  (the commitment counts as the reveal of epoch -1); a reveal r for epoch
  e >= that epoch verifies iff hashing it (e - last epoch) times gives the
  kept value. Any other value that did would be a preimage of the kept
  value under an iterate of SHA-256.

A validator without a commitment (a pool registered after genesis:
registration carries none) proposes blocks without a reveal, and they mix
nothing: the accumulator passes them by, so it has no say in the seed at
all. Computing a reveal walks from the nearest of `ONION_DEPTH` /
`CHECKPOINT_EVERY` checkpoints, computed once per secret, so it costs at
most `CHECKPOINT_EVERY` hashes; a verifier hashes once per epoch since the
validator's last reveal.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import replace
from functools import lru_cache

from node.core.messages import Block, sha256

ONION_DEPTH = 1 << 20
"""Epochs an onion serves (epochs 0 to D - 1); walking it once costs about half a second."""
CHECKPOINT_EVERY = 1 << 10
SECRET_DOMAIN = b"posnet-randao-onion"

Reveals = Mapping[bytes, tuple[bytes, int]]
"""Per validator with a commitment: (the last reveal accepted, its epoch); the commitment is epoch -1's."""


def onion_secret(key_seed: bytes) -> bytes:
    """The onion's innermost value, from the seed of the key the validator signs with."""
    return sha256(SECRET_DOMAIN + key_seed)


def hash_times(value: bytes, times: int) -> bytes:
    """H^times(value)."""
    digest = hashlib.sha256
    for _ in range(times):
        value = digest(value).digest()
    return value


@lru_cache(maxsize=256)
def _checkpoints(secret: bytes) -> tuple[bytes, ...]:
    """H^(i * CHECKPOINT_EVERY)(secret) for i = 0 .. D / CHECKPOINT_EVERY: one walk of the onion."""
    points = [secret]
    for _ in range(ONION_DEPTH // CHECKPOINT_EVERY):
        points.append(hash_times(points[-1], CHECKPOINT_EVERY))
    return tuple(points)


def layer(secret: bytes, depth: int) -> bytes:
    """H^depth(secret), from the checkpoint at or below it."""
    point, extra = divmod(depth, CHECKPOINT_EVERY)
    return hash_times(_checkpoints(secret)[point], extra)


def commitment(key_seed: bytes) -> bytes:
    """What the genesis holds for a validator: H^D of its secret."""
    return layer(onion_secret(key_seed), ONION_DEPTH)


def reveal(key_seed: bytes, epoch: int) -> bytes:
    """The validator's one valid reveal for `epoch`: H^(D-1-epoch) of its secret."""
    if not 0 <= epoch < ONION_DEPTH:
        raise ValueError(f"the onion serves epochs 0 to {ONION_DEPTH - 1}, not {epoch}")
    return layer(onion_secret(key_seed), ONION_DEPTH - 1 - epoch)


def reveal_problem(kept: tuple[bytes, int], value: bytes, epoch: int) -> str | None:
    """Why `value` is not the reveal for `epoch` of the validator whose last accepted reveal is `kept`."""
    last, last_epoch = kept
    if not last_epoch <= epoch < ONION_DEPTH:
        return f"epoch {epoch} is before the last reveal's ({last_epoch}) or past the onion"
    if hash_times(value, epoch - last_epoch) != last:
        return "does not hash to the last reveal"
    return None


def block_reveal_problem(reveals: Reveals | None, epoch: int, block: Block) -> str | None:
    """Why `block`'s reveal is wrong for a chain whose reveals are `reveals` (None: a block-hash chain)."""
    kept = reveals.get(block.proposer) if reveals is not None else None
    if kept is None:
        return "a reveal from a proposer with no commitment" if block.reveal else None
    if not block.reveal:
        return "missing the proposer's reveal"
    return reveal_problem(kept, block.reveal, epoch)


def mixed(reveals: Reveals | None, accumulator: bytes, block: Block) -> bytes:
    """The accumulator once `block` is finalized: its hash folded in, or on a RANDAO chain its reveal.

    A block without a reveal on a RANDAO chain (its proposer has no
    commitment) leaves the accumulator as it is.
    """
    if reveals is None:
        return sha256(accumulator + block.hash)
    return sha256(accumulator + block.reveal) if block.reveal else accumulator


def reveals_after(reveals: Reveals | None, epoch: int, block: Block) -> Reveals | None:
    """`reveals` with `block`'s reveal kept as its proposer's last (a valid block's)."""
    if reveals is None or not block.reveal:
        return reveals
    return {**reveals, block.proposer: (block.reveal, epoch)}


def with_reveal(reveals: Reveals | None, epoch: int, block: Block, key_seed: bytes) -> Block:
    """`block` carrying its proposer's reveal for `epoch`, when the chain is RANDAO's and it committed."""
    if reveals is None or block.proposer not in reveals:
        return block
    return replace(block, reveal=reveal(key_seed, epoch))


def genesis_reveals(commitments: Mapping[bytes, bytes]) -> dict[bytes, tuple[bytes, int]]:
    """The reveals a RANDAO chain starts from: each commitment, as the reveal of epoch -1."""
    return {address: (value, -1) for address, value in commitments.items() if value}
