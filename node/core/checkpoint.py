"""A trusted checkpoint, and the weak subjectivity period that says how old it may be.

Validators who held more than 2/3 at some past height, and have since
withdrawn their stake, still hold keys that sign valid certificates for
another history from that height on, and nothing can slash stake they no
longer have: the long-range attack. A node syncing from genesis checks
every certificate, and both histories pass. What tells them apart is a
block the node trusts from outside the protocol (a friend, an explorer, its
own earlier run): `posnet node run --trust HEIGHT:HASH`, Ethereum's weak
subjectivity checkpoint, CometBFT's trusted header.

The node then takes no block at or below HEIGHT that is not an ancestor of
HASH (`TrustedPath`): blocks fetched below it are held until the chain of
their `prev_hash` links reaches from the node's tip to the trusted block,
and only then decided, in order. A block off that path is refused, live or
fetched, so the node cannot be led onto the other history even for a while.

How old may the checkpoint be? A history conflicting with the real one
after the checkpoint was signed by validators who still held stake then;
it can be punished while the evidence is young enough to be taken
(`evidence_max_age` heights) and the signers' stake has not left
(`unbonding_epochs` epochs). The weak subjectivity period is the smaller of
the two, in heights (`weak_subjectivity_heights`); a node whose newest
trusted point is further behind than that can be shown a history nobody
can be punished for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from node.core.events import TRUST
from node.core.genesis import Params
from node.core.messages import Block, CommitCertificate
from node.core.state import ChainState

HASH_HEX_LEN = 64
MAX_HELD = 100_000
"""Blocks held below a checkpoint at most (every branch peers offer): a joining node's memory bound."""

BlockCheck = Callable[[ChainState, Block], "str | None"]
OFF_PATH = "not on the path to the trusted checkpoint"


@dataclass(frozen=True)
class Checkpoint:
    """A block the node trusts from outside the protocol."""

    height: int
    block_hash: bytes

    def describe(self) -> str:
        return f"{self.height}:{self.block_hash.hex()}"


def parse_checkpoint(text: str) -> Checkpoint:
    """`HEIGHT:HASH` (a positive height, the block's 64 hex digits), or ValueError saying which part is wrong."""
    height_text, sep, hash_text = text.strip().partition(":")
    if not sep:
        raise ValueError(f"expected HEIGHT:HASH, got {text!r}")
    if not height_text.isdigit() or int(height_text) < 1:
        raise ValueError(f"height must be a positive integer, got {height_text!r}")
    if len(hash_text) != HASH_HEX_LEN:
        raise ValueError(f"hash must be {HASH_HEX_LEN} hex digits, got {len(hash_text)}")
    try:
        block_hash = bytes.fromhex(hash_text)
    except ValueError:
        raise ValueError(f"hash must be hex digits, got {hash_text!r}") from None
    return Checkpoint(int(height_text), block_hash)


def weak_subjectivity_heights(params: Params) -> int:
    """How far behind the head a trusted point may be and still only admit punishable forks."""
    return min(params.evidence_max_age, params.unbonding_epochs * params.epoch_length)


def stored_conflict(checkpoint: Checkpoint, stored_hash: bytes | None) -> str | None:
    """Why a store that already holds `stored_hash` at the checkpoint's height cannot run under it."""
    if stored_hash is None or stored_hash == checkpoint.block_hash:
        return None
    return (
        f"the store holds block {stored_hash.hex()[:16]} at height {checkpoint.height}, "
        f"not the trusted {checkpoint.block_hash.hex()[:16]}: this node followed another history"
    )


def trust_log(checkpoint: Checkpoint, reached: bool, params: Params) -> dict[str, object]:
    """The line a node logs at start under --trust: the block, whether its store has it, the period."""
    return {
        "event": TRUST,
        "height": checkpoint.height,
        "hash": checkpoint.block_hash.hex(),
        "reached": reached,
        "weak_subjectivity_heights": weak_subjectivity_heights(params),
    }


class TrustedPath:
    """Blocks fetched at or below the checkpoint, held until they link our tip to it.

    Peers may offer several branches (a long-range attacker serves its own);
    every offered block is held by hash, and `path_from` hands out the one
    chain that ends in the trusted block, once it is complete.
    """

    def __init__(self, checkpoint: Checkpoint, limit: int = MAX_HELD) -> None:
        self.checkpoint = checkpoint
        self.limit = limit
        self._held: dict[bytes, tuple[Block, CommitCertificate]] = {}
        self._heights: dict[int, set[bytes]] = {}
        self._chain: list[Block] = []  # the trusted block and the ancestors linked so far, newest first
        self._on_chain: set[bytes] = set()
        self._reported: set[bytes] = set()  # off-path blocks whose certificates were handed out
        self.refused = 0  # blocks offered at the checkpoint's height with another hash

    def active(self, next_height: int) -> bool:
        """Whether the node has yet to decide the trusted block (it decides `next_height` next)."""
        return next_height <= self.checkpoint.height

    def offer(self, block: Block, certificate: CommitCertificate) -> None:
        """Hold a fetched block (its certificate is checked when it is decided)."""
        top = self.checkpoint
        if block.height > top.height or block.hash in self._held or len(self._held) >= self.limit:
            return
        if block.height == top.height and block.hash != top.block_hash:
            self.refused += 1
            return
        self._held[block.hash] = (block, certificate)
        self._heights.setdefault(block.height, set()).add(block.hash)

    def ancestry(self) -> list[Block]:
        """The trusted block and its held ancestors, newest first, as far down as they link.

        Held blocks are only ever added, so the chain only grows downwards:
        each call extends it from its lowest block instead of walking again.
        """
        chain = self._chain
        wanted = chain[-1].prev_hash if chain else self.checkpoint.block_hash
        while (entry := self._held.get(wanted)) is not None:
            chain.append(entry[0])
            self._on_chain.add(entry[0].hash)
            wanted = entry[0].prev_hash
        return chain

    def path_from(self, tip_hash: bytes, next_height: int) -> list[tuple[Block, CommitCertificate]]:
        """The blocks from `next_height` up to the trusted one, oldest first, once they link to our tip."""
        chain = [block for block in self.ancestry() if block.height >= next_height]
        if not chain or chain[-1].height != next_height or chain[-1].prev_hash != tip_hash:
            return []
        return [self._held[block.hash] for block in reversed(chain)]

    def ask_from(self, next_height: int, batch: int) -> int:
        """The height to ask peers for blocks from: the trusted block first, then the gap below what links."""
        chain = self.ancestry()
        if not chain:
            empty = (h for h in range(next_height, self.checkpoint.height) if h not in self._heights)
            return next(empty, self.checkpoint.height)
        return max(next_height, chain[-1].height - batch)

    def strays(self, below: int) -> list[CommitCertificate]:
        """Once decided up to `below`, the certificates of held blocks off the path, each once.

        They finalize another history than ours at heights we hold: the
        driver compares them with our own, and the double signs of whoever
        signed both become evidence (the attacker's history reported).
        """
        self.ancestry()
        found = [
            cert
            for block_hash, (block, cert) in self._held.items()
            if block.height < below and block_hash not in self._on_chain and block_hash not in self._reported
        ]
        self._reported.update(cert.block_id for cert in found)
        return found

    def is_on_path(self, block: Block) -> bool:
        """Whether a block is above the checkpoint or one the trusted block descends from."""
        if block.height > self.checkpoint.height:
            return True
        self.ancestry()
        return block.hash in self._on_chain


def trusting(path: TrustedPath, check: BlockCheck) -> BlockCheck:
    """`check`, refusing besides every block at or below the checkpoint that is off its path."""

    def checked(state: ChainState, block: Block) -> str | None:
        if not path.is_on_path(block):
            return OFF_PATH
        return check(state, block)

    return checked
