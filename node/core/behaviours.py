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
  network), otherwise nil for a block vote and a bogus block for a nil vote;
- `withhold` (simulator only): signs honestly but sends each of its own
  messages (first sends and re-sends alike) only to its colluders and to a
  seeded half of the honest nodes, a different half for each (height,
  round, step), so honest nodes hold different subsets of its votes and
  disagree about what they have seen. A broker broadcast cannot address a
  part of the network, so real nodes do not offer it (as with `split`);
- `late`: signs honestly but holds each message it signs until the timeout
  of the step it belongs to would fire (`late_delay_ms`), so its proposals
  come after the others gave up on them and its votes after they stopped
  waiting: the slowest a validator can be without being absent. It only
  delays, so real nodes offer it too;
- `amnesia`: locks honestly (precommits a block B on its polka) but
  forgets the lock: at a later round it prevotes the proposed block C != B
  where the honest rule would prevote nil or B (`amnesiac_prevote`), with
  no polka that would release the lock: the violation accountable safety
  has to prove across rounds. The signing record allows it (a later round), so it signs
  through the guarded signer; real nodes offer it too;
- `coordinated` (simulator only): a coalition that waits. Each member
  signs honestly, and so is never caught, until the first height from
  `STRIKE_FROM` on whose round-0 proposer is one of them; at that height
  they act as `split` (the proposer shows each half of the honest nodes one
  block, every member votes for each half's block to that half), and
  honestly again after it. `split` equivocates from height 1 and is
  tombstoned before a member ever proposes; a real coalition above 1/3
  strikes when it holds the proposal, which is the fork accountable safety
  must then pin on it;
- `twins` (simulator only): two copies of the validator run with the same
  key, each a complete honest node with its own signing record, on two
  network names (the second sits in the group after its original's in
  every partition that names the original).
  Each copy alone is honest; together they sign two different messages at
  one (height, round, step) whenever their views differ, the way a
  fail-over pair that both think they are primary equivocates. Real nodes
  run one process per key, so only the simulator offers it;
- `grind` (simulator only): signs honestly, but when it proposes a block
  that ends an epoch it tries `grind_variants` timestamps (each a valid
  block with another hash, so another seed for the seats of the epoch
  after next) and proposes the one that seats its coalition (every `grind`
  validator) most (node.core.grinding). It only chooses among valid
  blocks, so it is safe by construction; what it gains is seats.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from node.core.codec import encode
from node.core.genesis import Params
from node.core.keys import Keypair
from node.core.messages import Block, Kind, Proposal, Vote, sha256, sign_item

BYZANTINE_MODES: tuple[str, ...] = ("equivocate", "silent", "late", "amnesia")
"""The modes a real node offers (`posnet node run --behaviour`, `posnet testnet behave`)."""
SIM_BYZANTINE_MODES: tuple[str, ...] = (
    *BYZANTINE_MODES,
    "split",
    "withhold",
    "twins",
    "coordinated",
    "grind",
)
"""The simulator's modes: the real ones plus those that need to address nodes or clone a key."""
HONEST = "honest"
BEHAVIOURS: tuple[str, ...] = (HONEST, *BYZANTINE_MODES)
"""What a real node's ``--behaviour`` accepts."""
EQUIVOCATING_MODES = frozenset({"equivocate", "split", "coordinated"})
"""Modes that sign a conflicting twin (`coordinated` only at its strike height)."""
COLLUDING_MODES = frozenset({"split", "coordinated"})
"""Modes that address each half of the honest nodes apart and never report each other."""
STRIKE_FROM = 2
"""The earliest height `coordinated` forks at: a chain with a past, as a real attacker would wait."""
STEP_OF_KIND = {Kind.PROPOSAL: "propose", Kind.PREVOTE: "prevote", Kind.PRECOMMIT: "precommit"}


def is_strike_height(height: int, proposer: str | None, coalition: frozenset[str]) -> bool:
    """`coordinated`: whether the coalition forks at `height`, whose round-0 proposer is `proposer`.

    Every member reads the same chain up to here, so all of them name the
    same first height without a message between them.
    """
    return height >= STRIKE_FROM and proposer in coalition


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

    def twin(
        self, item: Vote | Proposal, block: Block | None, keypair: Keypair | None = None
    ) -> tuple[Vote | Proposal, Block | None]:
        """A signed message conflicting with `item` (and its block, for proposals), signed by `keypair`
        (default: this equivocator's key; a rotated validator passes the key in force)."""
        keypair = keypair or self.keypair
        if isinstance(item, Proposal):
            assert block is not None
            other = twin_block(block)
            self.observe_proposal(item)
            twin_item: Vote | Proposal = replace(item, block_id=other.hash, pol_round=-1)
            self.observe_proposal(twin_item)  # type: ignore[arg-type]
            return replace(twin_item, signature=sign_item(self.chain_id, twin_item, keypair)), other
        twin_vote = replace(item, block_id=self._conflicting_id(item))
        return replace(twin_vote, signature=sign_item(self.chain_id, twin_vote, keypair)), None

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


def withhold_recipients(item: Vote | Proposal, honest: tuple[str, ...]) -> tuple[str, ...]:
    """The honest nodes a withholding validator shows `item` to: a seeded half (at least one).

    The half is drawn by hashing (signer, height, round, step, node), so it
    changes from step to step (every honest node misses some of its votes,
    and two honest nodes rarely miss the same ones) yet every copy of one
    message, re-sends included, goes to the same nodes: the run stays a pure
    function of its configuration and re-sending does not undo the attack.
    """
    if not honest:
        return ()
    if isinstance(item, Proposal):
        key = (item.proposer, item.height, item.round, int(Kind.PROPOSAL))
    else:
        key = (item.validator, item.height, item.round, int(item.kind))
    ranked = sorted(honest, key=lambda node: sha256(b"posnet-withhold" + encode((*key, node))))
    return tuple(ranked[: max(1, len(honest) // 2)])


def late_delay_ms(item: Vote | Proposal, params: Params) -> int:
    """How long a late validator holds `item`: the timeout of its step at its round.

    A proposal then arrives when the others' propose timeout fires (they
    have prevoted nil, or are about to), a vote when their wait for it ends.
    """
    kind = Kind.PROPOSAL if isinstance(item, Proposal) else item.kind
    return params.timeout_ms(STEP_OF_KIND[kind], item.round)


def amnesiac_prevote(vote: Vote, locked: bytes | None, proposed: bytes | None) -> Vote:
    """The prevote an amnesiac validator signs instead of `vote`.

    `locked` is the block its machine is locked on (None when unlocked) and
    `proposed` the block proposed at the vote's round. Locked, and shown
    another block, it prevotes that block where the honest rule would have
    prevoted nil or the locked block: it forgets the lock without a polka
    that would release it. Anything else is left as the machine wanted, so
    the mode misbehaves only when there is a lock to break.
    """
    if (
        vote.kind != Kind.PREVOTE
        or locked is None
        or proposed is None
        or proposed == locked
        or vote.block_id not in (None, locked)
    ):
        return vote
    return replace(vote, block_id=proposed)
