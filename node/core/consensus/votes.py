"""Vote sets: the prevotes or precommits of one (height, round), tallied by block and by stake.

Every threshold the upon-rules test ("2f+1 prevotes for v", "2f+1 of any",
"f+1 at a higher round") is asked of these. Kept apart because how a vote
counts (once per validator toward the total, toward each of a few blocks an
equivocator voted for) is its own question, answered once here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from node.core.messages import Vote
from node.core.state import Committee

MAX_BLOCKS_PER_VOTER = 4  # conflicting votes counted per validator per (round, kind); more are only evidence


@dataclass
class VoteSet:
    """Votes of one kind at one (height, round), tallied by block id.

    A validator's vote counts toward every block it voted for (up to a few),
    not only the first one we happened to receive: otherwise an equivocator
    can show different honest nodes different "first" votes and keep them
    from ever seeing the same polka (CometBFT tracks conflicting votes for
    the same reason). This stays safe: two quorums of more than 2/3 still
    overlap in more than 1/3, which holds an honest validator, and honest
    validators vote once. `total` counts each validator once.
    """

    committee: Committee
    first: dict[bytes, Vote] = field(default_factory=dict)
    by_block: dict[bytes | None, dict[bytes, Vote]] = field(default_factory=dict)
    blocks_of: dict[bytes, int] = field(default_factory=dict)
    power_for: dict[bytes | None, int] = field(default_factory=dict)
    total: int = 0

    def add(self, vote: Vote) -> Vote | None:
        """Count `vote`; return an earlier conflicting vote if this is an equivocation."""
        power = self.committee.power_of(vote.validator)
        earlier = self.first.get(vote.validator)
        if earlier is None:
            self.first[vote.validator] = vote
            self.total += power
        voters = self.by_block.setdefault(vote.block_id, {})
        if vote.validator not in voters and self.blocks_of.get(vote.validator, 0) < MAX_BLOCKS_PER_VOTER:
            voters[vote.validator] = vote
            self.blocks_of[vote.validator] = self.blocks_of.get(vote.validator, 0) + 1
            self.power_for[vote.block_id] = self.power_for.get(vote.block_id, 0) + power
        return earlier if earlier is not None and earlier.block_id != vote.block_id else None

    def holds(self, vote: Vote) -> bool:
        """Whether `vote`'s validator is counted for its block already (`add` would change nothing)."""
        return vote.validator in self.by_block.get(vote.block_id, ())

    def has_quorum_for(self, block_id: bytes | None) -> bool:
        return self.committee.is_quorum(self.power_for.get(block_id, 0))

    def has_quorum_any(self) -> bool:
        return self.committee.is_quorum(self.total)

    def votes_for(self, block_id: bytes | None) -> list[Vote]:
        return list(self.by_block.get(block_id, {}).values())
