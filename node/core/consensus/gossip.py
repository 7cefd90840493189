"""What a heartbeat re-sends while a height stays open, and how often.

Tendermint's liveness assumes every honest message eventually reaches every
honest node; over a lossy broker that holds only if nodes send again. This
module answers the two questions of that re-sending, apart from the rules
that decide what to sign: which messages (`gossip_set`: ours and others',
bounded per beat however long the height lasts) and when (the heartbeat's
period, the beats that relay others' messages, the beats after which a node
is stuck and asks for blocks). It reads the machine's proposals and vote
sets and keeps no state but the beat counter.
"""

from __future__ import annotations

from dataclasses import dataclass

from node.core.consensus.votes import VoteSet
from node.core.genesis import Params
from node.core.messages import Block, Kind, Proposal, Vote

RELAY_EVERY_BEATS = 8

GossipItem = tuple[Vote | Proposal, Block | None]


def is_relay_beat(beat: int) -> bool:
    """Relay others' messages on beats 1, 2, 4, 8 of a round, then every 8th.

    Our own messages go out on every beat (a handful per round). Others' are
    many more, and a peer that missed one usually gets it from its sender
    soon; backing off keeps a long stall cheap while every message is still
    re-sent at a bounded interval, which is what eventual delivery needs.
    """
    return beat & (beat - 1) == 0 or beat % RELAY_EVERY_BEATS == 0


@dataclass
class Beats:
    """Heartbeats of the open height: all of them (to tell a stall) and this round's (to pace relaying)."""

    in_height: int = 0
    in_round: int = 0

    def tick(self) -> None:
        self.in_height += 1
        self.in_round += 1


def heartbeat_ms(params: Params) -> int:
    """The heartbeat's period: the precommit timeout, at least 100 ms."""
    return max(params.timeout_precommit_ms, 100)


def beats_before_stuck(params: Params, member: bool) -> int:
    """Heartbeats without a decision after which we ask peers for blocks.

    A committee member hears the votes and is stuck after two. A node
    outside the committee (a follower, see `node.core.routes`) decides a
    height only when the next height's proposal brings its certificate,
    which takes the committee's commit wait and a proposal longer; asking
    before that would send every follower's sync request every height.
    """
    if member:
        return 2
    beat = heartbeat_ms(params)
    wait = params.commit_wait_ms + params.timeout_ms("propose", 0)
    return 2 + -(-wait // beat)


def gossip_set(
    *,
    proposals: dict[int, tuple[Proposal, Block]],
    votes: dict[tuple[int, Kind], VoteSet],
    round_: int,
    valid_round: int,
    valid_block: Block | None,
    address: bytes,
    relay_others: bool,
) -> tuple[GossipItem, ...]:
    """What a heartbeat re-sends while the height stays open: ours and others' messages.

    Tendermint's liveness needs every honest message to reach every
    honest node eventually; relaying only our own would strand a vote
    that reached one peer and was lost on the way to the others. Each
    item is held once (vote sets are keyed by validator and block), and
    only the rounds that can still matter are sent, so a beat costs at
    most a constant times the committee however long the stall lasts:
    - proposals and votes of the current and the previous round (peers
      still there need them to catch up, and > 1/3 of them move a
      lagging node to our round);
    - the polka behind our valid block (so its re-proposal is accepted);
    - precommits of any round where a block has a quorum (a decision).
    Others' messages only on `relay_others` beats (see `is_relay_beat`).
    """
    rounds = {r for r in (round_ - 1, round_) if r >= 0}
    items: dict[bytes, GossipItem] = {}
    for r in sorted(rounds | {valid_round}):
        entry = proposals.get(r)
        if entry is not None and (relay_others or entry[0].proposer == address):
            items[entry[0].signature] = entry
    for (r, kind), vote_set in sorted(votes.items()):
        for vote in _votes_to_gossip(r, kind, vote_set, rounds, valid_round, valid_block):
            if relay_others or vote.validator == address:
                items[vote.signature] = (vote, None)
    return tuple(items.values())


def _votes_to_gossip(
    round_: int,
    kind: Kind,
    vote_set: VoteSet,
    rounds: set[int],
    valid_round: int,
    valid_block: Block | None,
) -> list[Vote]:
    if round_ in rounds:
        return [vote for voters in vote_set.by_block.values() for vote in voters.values()]
    if kind == Kind.PREVOTE and round_ == valid_round and valid_block is not None:
        return vote_set.votes_for(valid_block.hash)
    if kind == Kind.PRECOMMIT:
        decided = [b for b in vote_set.power_for if b is not None and vote_set.has_quorum_for(b)]
        return [vote for block_id in decided for vote in vote_set.votes_for(block_id)]
    return []
