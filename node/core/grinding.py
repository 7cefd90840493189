"""Seed grinding: the `grind` adversary's choice of block at an epoch boundary (pure).

The seats of epoch e + 2 are drawn at the boundary that ends epoch e, from
the seed the accumulator holds once the boundary block is applied
(`node.core.state.apply_block`). On a chain whose accumulator mixes block
hashes, the proposer of that block picks the seed by picking its block:
every timestamp the validity and timeliness rules accept is another hash,
so another draw. A grinder builds `k` variants, works out for each the
seats it would draw exactly as every node will once the block is applied,
and proposes the one that seats its coalition most (the honest block on a
tie, so `k` = 1 is the honest proposer).

Nothing here is a shortcut an attacker could not take: the seats come from
the same transition and draw every node runs. Only one thing is saved: a
variant whose downtime judgement is the honest block's (the only way a
timestamp reaches the ledger) leaves the validator set as the honest
block's does, so the draw is made from that set and the variant's seed
without applying the block again.

On a RANDAO chain (`Params.randao`, node.core.randao) the seed mixes the
proposer's reveal, not the block hash: every variant draws the same seats,
and the grinder's one lever left is to withhold its block (`withholds`).
`finish_proposal` is where every proposer's fresh block gets its reveal.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace

from node.core import randao as R
from node.core.consensus.outputs import Sign
from node.core.messages import Block, Proposal
from node.core.state import (
    ChainState,
    Seats,
    apply_block,
    draw_epoch_seats,
    is_epoch_boundary,
    mix_seed,
    participation_after,
)

MAX_VARIANTS = 500
"""Variants are timestamps at most `k` - 1 ms past the honest one: half the 1 s clock precision that
prevoting nodes allow a block ahead of their clock (`consensus.machine.CLOCK_PRECISION_MS`), so every
variant is timely at a peer whose clock is right."""

# A grinder's one-off draws must not evict the one draw every node of a simulator shares.
_draw_uncached = draw_epoch_seats.__wrapped__


def timestamp_variants(state: ChainState, block: Block, k: int) -> tuple[Block, ...]:
    """`block` and `k` - 1 copies with other valid timestamps, the honest one first.

    The window is the `k` milliseconds that end at the honest timestamp when
    the previous block is that far back (no variant is then ahead of the
    proposer's clock), else the `k` that start at the previous block's time.
    """
    if not 1 <= k <= MAX_VARIANTS:
        raise ValueError(f"variants must be in [1, {MAX_VARIANTS}], got {k}")
    low = max(state.last_timestamp_ms, block.timestamp_ms - (k - 1))
    others = (t for t in range(low, low + k) if t != block.timestamp_ms)
    return (block, *(replace(block, timestamp_ms=t) for t in others))


def drawn_seats(state: ChainState, variants: tuple[Block, ...]) -> list[Seats]:
    """The seats of epoch `state.epoch` + 2 each boundary block of `variants` would draw."""
    after, _ = apply_block(state, variants[0])
    judged = participation_after(state, variants[0])[0]
    seats = [after.next_seats]
    for variant in variants[1:]:
        if participation_after(state, variant)[0] != judged:
            seats.append(apply_block(state, variant)[0].next_seats)  # another validator set: apply it all
            continue
        seed = mix_seed(state, variant)
        seats.append(_draw_uncached(after.epoch + 1, after.validator_set, state.params.committee_size, seed))
    return seats


def seats_of(seats: Seats, coalition: Collection[bytes]) -> int:
    """The voting power `coalition` holds in `seats`."""
    return sum(power for address, power in seats.members if address in coalition)


def ground_block(state: ChainState, block: Block, coalition: Collection[bytes], k: int) -> Block:
    """The block a grinder proposes instead of `block`: `block` itself unless it ends an epoch.

    Of `k` timestamp variants, the first that gives `coalition` the most
    seats in the epoch it draws.
    """
    if k <= 1 or state.reveals is not None or not is_epoch_boundary(state, block.height):
        return block  # a RANDAO chain's seed mixes the reveal: no variant draws another
    variants = timestamp_variants(state, block, k)
    held = [seats_of(seats, coalition) for seats in drawn_seats(state, variants)]
    return variants[held.index(max(held))]


def withholds(state: ChainState, block: Block, coalition: Collection[bytes]) -> bool:
    """On a RANDAO chain: whether a grinder withholds `block`, which ends an epoch.

    Its reveal is fixed, so its block draws one seed and nothing it varies
    changes it; what it can still do is not propose, and let the next
    round's proposer's reveal draw instead. It does so when its own draw
    gives the coalition fewer seats than its stake's expectation. Never
    when everyone sits (nothing is drawn).
    """
    after, _ = apply_block(state, block)
    size = state.params.committee_size
    if len(after.validator_set) <= size:
        return False
    stake = sum(power for address, power in after.validator_set if address in coalition)
    total = sum(power for _, power in after.validator_set)
    return seats_of(after.next_seats, coalition) * total < size * stake


@dataclass(frozen=True)
class Grinder:
    """A `grind` validator's setting: its colluders (by node name) and the blocks it tries per boundary."""

    colluders: tuple[str, ...]
    variants: int


def finish_proposal(output: Sign, state: ChainState, key_seed: bytes, grinder: Grinder | None) -> Sign | None:
    """Our fresh proposal as it goes out (None: withheld).

    On a RANDAO chain the block gets our reveal for its epoch (every
    proposer's, honest or not). A grinder then, at an epoch's last block,
    proposes the variant that seats its coalition most on a block-hash
    chain, or withholds on a RANDAO chain when its draw is below what its
    stake expects.
    """
    assert isinstance(output.item, Proposal) and output.block is not None
    block = R.with_reveal(state.reveals, state.epoch, output.block, key_seed)
    if grinder is not None and is_epoch_boundary(state, block.height):
        coalition = coalition_of(state, output.item.proposer, grinder.colluders)
        if state.reveals is not None and withholds(state, block, coalition):
            return None
        block = ground_block(state, block, coalition, grinder.variants)
    if block is output.block:
        return output
    return replace(output, item=replace(output.item, block_id=block.hash), block=block)


def coalition_of(state: ChainState, validator: bytes, colluders: Collection[str]) -> frozenset[bytes]:
    """The addresses of a grinder and its colluders (by node name): whose seats it grinds for."""
    return frozenset({validator, *(address for address, name in state.names.items() if name in colluders)})
