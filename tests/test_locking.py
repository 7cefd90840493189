"""The locking rules of the propose step, pinned by hand and against the paper.

The hand-made case is the one a mutation audit found unpinned: the propose
step's proof-of-lock check (`lockedRound <= vr`, line 29 of Algorithm 1 in
Buchman, Kwon, Milosevic, "The latest gossip on BFT consensus") could be
replaced with `True` and every other test still passed. The property test
then feeds random inputs for one height to the machine and to a small
transcription of the paper's upon-rules, and compares what each signs.
"""

from __future__ import annotations

from node.core.consensus import Phase
from node.core.messages import Kind, Vote
from tests.support.chain import ADDR, prevote, proposal
from tests.test_consensus import (
    BLOCK_A,
    BLOCK_B,
    OTHERS,
    A,
    B,
    Node,
    precommits,
    prevotes,
    the_vote,
)


def locked_on_a_at_round_1_after_a_silent_round_0(node: Node) -> None:
    """Round 0: alice sees no proposal and prevotes nil; the others precommit nil; round 1 locks on A.

    Nobody's round-0 prevote reaches alice yet, so the round-0 polka for B
    that arrives later is one that honest validators could have sent: they
    prevoted B at round 0, precommitted nil (no precommit quorum for B in
    time) and prevoted A at round 1 (none of them was locked).
    """
    node.echo(node.start())
    node.echo(node.timeout(Phase.PROPOSE, 0))
    node.votes(precommits(OTHERS, 0, None))
    node.echo(node.timeout(Phase.PRECOMMIT, 0))
    assert node.m.round == 1
    node.echo(node.propose(proposal("bob", 1, 1, A), BLOCK_A))
    out = node.votes(prevotes(OTHERS, 1, A))
    assert the_vote(out, Kind.PRECOMMIT).block_id == A
    node.echo(out)
    assert node.m.locked_block == BLOCK_A and node.m.locked_round == 1


def test_locked_at_round_1_a_proposal_citing_an_older_round_0_polka_for_b_gets_a_nil_prevote() -> None:
    """Line 29: a proof of lock older than our lock does not unlock us (lockedRound 1 > vr 0)."""
    node = Node("alice")
    locked_on_a_at_round_1_after_a_silent_round_0(node)
    node.votes(prevotes(OTHERS, 0, B))  # a full round-0 polka for B, late
    node.votes(precommits(OTHERS, 1, None))
    node.echo(node.timeout(Phase.PRECOMMIT, 1))
    assert node.m.round == 2 and node.m.phase == Phase.PROPOSE
    out = node.propose(proposal("dave", 1, 2, B, pol_round=0), BLOCK_B)
    assert the_vote(out, Kind.PREVOTE) == Vote(Kind.PREVOTE, 1, 2, None, ADDR["alice"])
    assert node.m.locked_block == BLOCK_A and node.m.locked_round == 1


def test_locked_at_round_1_a_proposal_citing_a_round_1_polka_for_b_is_prevoted() -> None:
    """The control: a proof of lock as recent as our lock (vr 1 == lockedRound 1) is enough."""
    node = Node("alice")
    locked_on_a_at_round_1_after_a_silent_round_0(node)
    node.votes([prevote(name, 1, 1, B) for name in OTHERS])  # they equivocate: a polka for B at round 1
    node.votes(precommits(OTHERS, 1, None))
    node.echo(node.timeout(Phase.PRECOMMIT, 1))
    out = node.propose(proposal("dave", 1, 2, B, pol_round=1), BLOCK_B)
    assert the_vote(out, Kind.PREVOTE).block_id == B
