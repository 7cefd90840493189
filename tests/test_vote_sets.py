"""A vote set's tally: what counts toward a block, what is an equivocation, and its bound per voter."""

from __future__ import annotations

from node.core.consensus import MAX_BLOCKS_PER_VOTER, VoteSet
from node.core.messages import Kind
from node.core.state import Committee
from tests.support.chain import ADDR, prevote

BLOCKS = [bytes([n]) * 32 for n in range(1, MAX_BLOCKS_PER_VOTER + 2)]


def four_equal() -> VoteSet:
    members = tuple(sorted((ADDR[name], 1) for name in ("alice", "bob", "carol", "dave")))
    return VoteSet(Committee(1, members, 4))


def test_an_equivocator_counts_toward_its_first_four_blocks_and_no_more() -> None:
    """Up to MAX_BLOCKS_PER_VOTER blocks, so no honest node misses a polka; past it, memory stays bounded."""
    votes = four_equal()
    for block_id in BLOCKS:
        votes.add(prevote("bob", 1, 0, block_id))
    counted = [votes.power_for.get(block_id, 0) for block_id in BLOCKS]
    assert counted == [1] * MAX_BLOCKS_PER_VOTER + [0]
    assert votes.votes_for(BLOCKS[-1]) == [] and votes.total == 1


def test_a_second_block_by_one_voter_returns_the_first_vote_as_evidence() -> None:
    votes = four_equal()
    first = prevote("bob", 1, 0, BLOCKS[0])
    assert votes.add(first) is None
    assert votes.add(prevote("bob", 1, 0, BLOCKS[1])) == first


def test_the_same_vote_again_is_no_equivocation_and_counts_once() -> None:
    votes = four_equal()
    vote = prevote("bob", 1, 0, BLOCKS[0])
    assert votes.add(vote) is None
    assert votes.add(vote) is None
    assert votes.power_for[BLOCKS[0]] == 1 and votes.total == 1


def test_a_block_nobody_voted_for_has_no_votes_and_no_quorum_even_in_a_one_seat_committee() -> None:
    """Seats weigh one each: with a single seat, one phantom unit of power would be a quorum."""
    votes = VoteSet(Committee(1, ((ADDR["alice"], 1),), 1))
    assert votes.votes_for(BLOCKS[0]) == []
    assert not votes.has_quorum_for(BLOCKS[0]) and not votes.has_quorum_for(None)
    votes.add(prevote("alice", 1, 0, BLOCKS[0]))
    assert votes.has_quorum_for(BLOCKS[0]) and votes.votes_for(BLOCKS[0])[0].kind == Kind.PREVOTE


def test_a_vote_set_holds_a_vote_only_once_its_validator_counts_for_its_block() -> None:
    """`holds` says when `add` would change nothing (late precommits skip the call then)."""
    votes = four_equal()
    first = prevote("bob", 1, 0, BLOCKS[0])
    assert not votes.holds(first)
    votes.add(first)
    assert votes.holds(first) and votes.holds(prevote("bob", 1, 0, BLOCKS[0]))
    assert not votes.holds(prevote("bob", 1, 0, BLOCKS[1])) and not votes.holds(
        prevote("carol", 1, 0, BLOCKS[0])
    )
    before = (
        dict(votes.first),
        {b: dict(v) for b, v in votes.by_block.items()},
        dict(votes.power_for),
        votes.total,
    )
    votes.add(first)
    assert before == (
        dict(votes.first),
        {b: dict(v) for b, v in votes.by_block.items()},
        dict(votes.power_for),
        votes.total,
    )
