"""Before a started node signs: know where the chain is, and that no other copy of our keys signs.

A node's only memory of what it signed is its store. Wiped, restored from an
old copy, or started for the first time on a chain already past genesis, the
store says less than the truth, and a node that trusted it would sign again
at heights it signed before: the double sign that slashes and tombstones an
honest pool (five of five such restarts did, before this rule). Ethereum's
clients answer with doppelganger detection (listen for the key's own recent
messages before signing) and a slashing-protection history that travels
with the key (EIP-3076, here ``posnet keys export-protection``); posnet
does both, and on every start, since a restored copy cannot be told from a
clean restart by looking at it.

The rule, per hosted key, from boot until it opens:

- sign nothing; follow the chain (sync, decide by others' certificates);
- every message signed by our key that reaches us is **adopted**: its mark
  goes into our signing record, so we never sign anything that conflicts
  with it (peers re-send the open height's messages, ours included, at
  least every `RELAY_EVERY_BEATS` heartbeats: that is how we hear them);
- open once we have reached the height that validators with more than 1/3
  of the stake say (in fresh statuses) they are at — at least one honest
  node is there — and no message of ours at a new position has arrived for
  a quiet period of `quiet_ms` (a relay cycle and a beat), or for
  `QUIET_HEIGHTS` heights that our key's committee decided by votes we
  heard: a copy of our key that is alive signs in every one of them, and a
  dead one's messages are of heights the chain has left behind. (On a
  running chain a restart then costs a couple of heights, not seconds: at
  200 ms slots the quiet period alone cost 22 heights, and jailed every
  validator of a rolling restart.);
- a message of ours for a height beyond what the network had reached when
  we started is being signed *now* by another running copy: a doppelganger.
  The node stops signing for good and says so; so does one that, while
  signing, meets a message of ours it did not sign.

What is left is a message our earlier copy signed that reached nobody, nor
will: it can be used against us by no one who does not hold it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from node.core.admission import StatusMsg
from node.core.consensus import RELAY_EVERY_BEATS
from node.core.genesis import Params
from node.core.messages import Block, Proposal, Vote
from node.core.signer import GuardedSigner
from node.core.startgate import is_fresh
from node.core.state import ChainState


def quiet_ms(params: Params) -> int:
    """One relay cycle and a beat: peers re-send the open height's messages at least every
    `RELAY_EVERY_BEATS` heartbeats (a heartbeat is the precommit timeout, at least 100 ms)."""
    return (RELAY_EVERY_BEATS + 1) * max(params.timeout_precommit_ms, 100)


def network_height(
    state: ChainState, statuses: Iterable[StatusMsg], now_ms: int, ours: Iterable[bytes]
) -> int:
    """The highest open height that validators holding more than 1/3 of the stake freshly claim (0: unknown).

    Fewer than 1/3 of the stake is Byzantine, so one honest node at least is
    there: a lying minority can neither hold us back nor send us chasing a
    height nobody has.
    """
    power = dict(state.validator_set)
    total = sum(power.values())
    excluded = frozenset(ours)
    claims = sorted(
        (
            (status.height, sum(power.get(a, 0) for a in status.validators if a not in excluded))
            for status in statuses
            if status.online and is_fresh(status, now_ms)
        ),
        reverse=True,
    )
    backing = 0
    for height, stake in claims:
        backing += stake
        if 3 * backing > total:
            return height
    return 0


@dataclass
class Listening:
    """One hosted key's wait before it signs (mutable: the driver updates it as messages arrive)."""

    started_ms: int
    quiet_ms: int
    horizon: int  # the highest open height known at the start: anything of ours above it is signed now
    last_new_ms: int  # when a message of ours at a new position last arrived
    adopted: int = 0  # messages of ours taken into the signing record
    quiet_heights: int = 0  # heights our committee decided by votes we heard, since the last news of ours


def begin(now_ms: int, quiet: int, our_height: int) -> Listening:
    return Listening(started_ms=now_ms, quiet_ms=quiet, horizon=our_height, last_new_ms=now_ms)


def learn_horizon(listening: Listening, network: int, now_ms: int) -> None:
    """During the first quiet period, raise the horizon to what the network says it has reached."""
    if now_ms - listening.started_ms <= listening.quiet_ms:
        listening.horizon = max(listening.horizon, network)


def is_twin(listening: Listening, height: int) -> bool:
    """A message of ours beyond the horizon (and the height after it, for statuses that lag)."""
    return height > listening.horizon + 1


QUIET_HEIGHTS = 2
"""Heights of our key's committee, decided by votes we heard without a message of ours, that end the wait."""


def note_adopted(listening: Listening, now_ms: int) -> None:
    listening.adopted += 1
    listening.last_new_ms = now_ms
    listening.quiet_heights = 0


def note_decided(listening: Listening, member: bool, via_sync: bool) -> None:
    """A height was decided while we listened: it counts as quiet if we sat on its committee and heard its
    votes (a height fetched by sync shows nobody's votes)."""
    if member and not via_sync:
        listening.quiet_heights += 1


def may_open(listening: Listening, our_height: int, network: int, now_ms: int) -> bool:
    """Synced to the network's height, and a quiet period (or `QUIET_HEIGHTS` heights) without news of ours."""
    quiet = listening.quiet_ms
    waited = now_ms - listening.started_ms >= quiet and now_ms - listening.last_new_ms >= quiet
    return our_height >= network and (waited or listening.quiet_heights >= QUIET_HEIGHTS)


def on_own_message(
    listening: Listening | None,
    signer: GuardedSigner,
    item: Vote | Proposal,
    block: Block | None,
    now_ms: int,
) -> str | None:
    """Act on a message signed by our key that reached us; returns why it shows a doppelganger, if it does.

    While listening it is adopted (or, past the horizon, a twin); once
    signing, any message of ours we did not sign is a twin.
    """
    if listening is None:
        return "a message of our key that this node did not sign" if signer.contradicts(item) else None
    if is_twin(listening, item.height):
        return f"signed for height {item.height}, past the network's {listening.horizon}"
    if signer.adopt(item, block):
        note_adopted(listening, now_ms)
    return None


def try_open(
    listening: Listening,
    state: ChainState,
    our_height: int,
    statuses: Iterable[StatusMsg],
    ours: Iterable[bytes],
    now_ms: int,
) -> dict[str, int] | None:
    """What to log when the wait ends now (None: keep waiting)."""
    network = network_height(state, statuses, now_ms, ours)
    learn_horizon(listening, network, now_ms)
    if not may_open(listening, our_height, network, now_ms):
        return None
    return {
        "height": our_height,
        "network_height": network,
        "waited_ms": now_ms - listening.started_ms,
        "adopted": listening.adopted,
    }
