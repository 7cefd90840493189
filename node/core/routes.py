"""Who hears what: the channel each signed message travels on, and the channels a node listens to.

A height's votes matter only to its committee, so they travel on a channel
that only the committee listens to; everyone else follows the chain by its
proposals, each carrying the previous height's commit certificate (see
`ConsensusMachine._learn_certificate`), verified once. At 1,000 validators
and a committee of 128, a node outside the committee no longer receives
the committee's few hundred votes per height one by one.

A committee's channel is named after its epoch's seat holders, so:
- subscriptions change at epoch boundaries, not per height (seats are
  fixed for an epoch; a member that leaves the validator set just stops
  listening), and not at all while the same validators keep their seats,
  as when everyone sits;
- a node listens to its current committee's channel while one of its keys
  sits on it, and to the next epoch's as soon as one of its keys holds a
  seat there. Nothing travels on the next one before the epoch's last
  height, whose votes go to both: the next epoch's first proposer may have
  sat in no earlier committee, and its block must carry that height's
  certificate;
- a precommit re-sent for an earlier height (a late one, for the downtime
  record) goes to the sender's current committee, whose proposers are the
  ones who may still include it.

Proposals stay on the consensus channel, which every node hears.
"""

from __future__ import annotations

from collections.abc import Iterable

from node.core.channels import CONSENSUS, votes_channel
from node.core.messages import Proposal, Vote
from node.core.state import ChainState, Seats, is_epoch_boundary


def seats_channel(seats: Seats) -> str:
    """The vote channel of the committee these seats make."""
    return votes_channel(seats.holders_digest)


def vote_channels(state: ChainState, vote_height: int) -> tuple[str, ...]:
    """Where a node working on `state.next_height` publishes a vote for `vote_height`."""
    current = seats_channel(state.seats)
    if vote_height == state.next_height and is_epoch_boundary(state, vote_height):
        following = seats_channel(state.next_seats)
        if following != current:
            return (current, following)
    return (current,)


def item_channels(item: Vote | Proposal, state: ChainState) -> tuple[str, ...]:
    """The channels a signed vote or proposal is published on by a node at `state`."""
    if isinstance(item, Proposal):
        return (CONSENSUS,)
    return vote_channels(state, item.height)


def listened_vote_channels(state: ChainState, validators: Iterable[bytes]) -> frozenset[str]:
    """The vote channels a node hosting `validators` listens to while it works on `state.next_height`."""
    hosted = frozenset(validators)
    channels: set[str] = set()
    if any(state.committee.power_of(v) for v in hosted):
        channels.add(seats_channel(state.seats))
    if not hosted.isdisjoint(state.next_seats.holders):
        channels.add(seats_channel(state.next_seats))
    return frozenset(channels)
