"""Deliberate misbehaviour, for fault injection only.

An honest validator signs through `GuardedSigner` and can never equivocate.
A validator started with a Byzantine behaviour runs the same honest machine
but its driver passes every outgoing message through one of these:

- `silent`: sends no votes, proposals or evidence, and serves no blocks; it
  still listens and asks peers for blocks, so it follows the chain;
- `split` (simulator only): equivocate, but show each half of the honest
  nodes only one version (colluders agree which: the smaller block id goes
  to the first half), the split-brain attack that more than 1/3 of stake
  needs to break safety, and that honest nodes cannot detect;
- `equivocate`: besides each honest message it signs a conflicting twin,
  bypassing the signing record on purpose: a second block for its own
  proposals; for votes, the twin of the voted block when it has seen two
  proposals for that round (so colluding equivocators can split the
  network), otherwise nil for a block vote and a bogus block for a nil vote.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from node.codec import encode
from node.keys import Keypair
from node.messages import Block, Proposal, Vote, sha256, sign_item

BYZANTINE_MODES: tuple[str, ...] = ("equivocate", "silent")
SIM_BYZANTINE_MODES: tuple[str, ...] = (*BYZANTINE_MODES, "split")


def twin_block(block: Block) -> Block:
    """The conflicting block: a symmetric rule (flip the lowest timestamp bit), so a
    colluder seeing either version can compute the other."""
    return replace(block, timestamp_ms=block.timestamp_ms ^ 1)


@dataclass
class Equivocator:
    """Produces a signed conflicting twin for each message its validator signs."""

    chain_id: str
    keypair: Keypair
    proposals_seen: dict[tuple[int, int], list[bytes]] = field(default_factory=dict)

    def observe_proposal(self, proposal: Proposal, block: Block | None = None) -> None:
        """Remember the proposal and, from its block, the twin a colluding proposer would make."""
        seen = self.proposals_seen.setdefault((proposal.height, proposal.round), [])
        for block_id in (proposal.block_id, twin_block(block).hash if block is not None else None):
            if block_id is not None and block_id not in seen:
                seen.append(block_id)
        for old in [key for key in self.proposals_seen if key[0] < proposal.height - 2]:
            del self.proposals_seen[old]

    def twin(self, item: Vote | Proposal, block: Block | None) -> tuple[Vote | Proposal, Block | None]:
        """A signed message conflicting with `item` (and its block, for proposals)."""
        if isinstance(item, Proposal):
            assert block is not None
            other = twin_block(block)
            self.observe_proposal(item)
            twin_item: Vote | Proposal = replace(item, block_id=other.hash, pol_round=-1)
            self.observe_proposal(twin_item)  # type: ignore[arg-type]
            return replace(twin_item, signature=sign_item(self.chain_id, twin_item, self.keypair)), other
        twin_vote = replace(item, block_id=self._conflicting_id(item))
        return replace(twin_vote, signature=sign_item(self.chain_id, twin_vote, self.keypair)), None

    @staticmethod
    def split_order(
        a: tuple[Vote | Proposal, Block | None], b: tuple[Vote | Proposal, Block | None]
    ) -> tuple[tuple[Vote | Proposal, Block | None], tuple[Vote | Proposal, Block | None]]:
        """Which version goes to which half: a rule every colluder applies alike."""
        return (a, b) if (a[0].block_id or b"") <= (b[0].block_id or b"") else (b, a)

    def _conflicting_id(self, vote: Vote) -> bytes | None:
        seen = self.proposals_seen.get((vote.height, vote.round), [])
        others = [block_id for block_id in seen if block_id != vote.block_id]
        if others:
            return others[0]
        if vote.block_id is not None:
            return None
        return sha256(b"posnet-equivocation" + encode((vote.height, vote.round)))
