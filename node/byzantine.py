"""Deliberate misbehaviour, for fault injection only.

An honest validator signs through `GuardedSigner` and can never equivocate.
A validator started with a Byzantine behaviour runs the same honest machine
but its driver passes every outgoing message through one of these:

- `silent`: sends nothing at all (it still listens and follows the chain);
- `equivocate`: besides each honest message it signs a conflicting twin,
  bypassing the signing record on purpose: a second block for its own
  proposals; for votes, the twin of the voted block when it has seen two
  proposals for that round (so colluding equivocators can split the
  network), otherwise nil for a block vote and a bogus block for a nil vote.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from node.codec import encode
from node.keys import Keypair
from node.messages import Block, Proposal, Vote, sha256, sign_item

ByzantineMode = Literal["equivocate", "silent"]
BYZANTINE_MODES: tuple[str, ...] = ("equivocate", "silent")


@dataclass
class Equivocator:
    """Produces a signed conflicting twin for each message its validator signs."""

    chain_id: str
    keypair: Keypair
    proposals_seen: dict[tuple[int, int], list[bytes]] = field(default_factory=dict)

    def observe_proposal(self, proposal: Proposal) -> None:
        seen = self.proposals_seen.setdefault((proposal.height, proposal.round), [])
        if proposal.block_id not in seen:
            seen.append(proposal.block_id)
        for old in [key for key in self.proposals_seen if key[0] < proposal.height - 2]:
            del self.proposals_seen[old]

    def twin(self, item: Vote | Proposal, block: Block | None) -> tuple[Vote | Proposal, Block | None]:
        """A signed message conflicting with `item` (and its block, for proposals)."""
        if isinstance(item, Proposal):
            assert block is not None
            other = replace(block, timestamp_ms=block.timestamp_ms + 1)
            self.observe_proposal(item)
            twin_item: Vote | Proposal = replace(item, block_id=other.hash, pol_round=-1)
            self.observe_proposal(twin_item)  # type: ignore[arg-type]
            return replace(twin_item, signature=sign_item(self.chain_id, twin_item, self.keypair)), other
        twin_vote = replace(item, block_id=self._conflicting_id(item))
        return replace(twin_vote, signature=sign_item(self.chain_id, twin_vote, self.keypair)), None

    def _conflicting_id(self, vote: Vote) -> bytes | None:
        seen = self.proposals_seen.get((vote.height, vote.round), [])
        others = [block_id for block_id in seen if block_id != vote.block_id]
        if others:
            return others[0]
        if vote.block_id is not None:
            return None
        return sha256(b"posnet-equivocation" + encode((vote.height, vote.round)))
