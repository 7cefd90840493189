"""What the consensus machine asks its caller to do, and the steps and timers it names.

The machine performs no I/O: every effect (sign and broadcast, schedule a
timer, persist a decision, ask peers for blocks, gossip evidence) leaves it
as one of these values, and the caller (the driver, in the simulator and in
a real process alike) carries it out. Kept apart from the machine so the
callers read the contract without the algorithm behind it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from node.core.ledger import LedgerEvent
from node.core.messages import Block, CommitCertificate, Evidence, Proposal, Vote
from node.core.state import ChainState


class Phase(IntEnum):
    NEW_HEIGHT = 0  # waiting out commit_wait (slot mode) before round 0
    PROPOSE = 1
    PREVOTE = 2
    PRECOMMIT = 3
    HEARTBEAT = 9  # not a step: the timer that re-sends our messages while a height stays open


@dataclass(frozen=True)
class Sign:
    """Sign `item` (after checking the signing record) and broadcast it, with `block` for proposals.

    `justification` rides along into the signing journal: for a precommit of a
    block it is the polka (the prevotes) that made us lock, so a restarted
    node can still prove its lock to the others (see `restore`).
    """

    item: Vote | Proposal
    block: Block | None = None
    justification: tuple[Vote, ...] = ()


@dataclass(frozen=True)
class Timeout:
    height: int
    round: int
    phase: Phase


@dataclass(frozen=True)
class ScheduleTimeout:
    timeout: Timeout
    delay_ms: int


@dataclass(frozen=True)
class BroadcastEvidence:
    evidence: Evidence


@dataclass(frozen=True)
class RequestSync:
    """Ask peers for finalized blocks from `from_height` on."""

    from_height: int


@dataclass(frozen=True)
class Decided:
    """A block is final: persist it (with its certificate) before anything else."""

    block: Block
    certificate: CommitCertificate
    round: int
    state: ChainState  # the state after applying the block
    events: tuple[LedgerEvent, ...]
    started_ms: int  # when this height began locally (for finality latency)
    via_sync: bool


@dataclass(frozen=True)
class Rebroadcast:
    """Send these already-signed messages again (no new signature is made).

    Tendermint assumes messages between honest nodes eventually arrive;
    over a lossy network, or after a partition heals, that only holds if
    they are sent again. CometBFT's reactor re-gossips votes; here every
    heartbeat of a height that stays open re-sends what `gossip_set` picks:
    our own messages and the votes we hold from others, bounded per beat.
    """

    items: tuple[tuple[Vote | Proposal, Block | None], ...]


@dataclass(frozen=True)
class RoundTimedOut:
    """A round ended without a decision (an event for logs and metrics)."""

    height: int
    round: int
    phase: Phase


Output = Sign | ScheduleTimeout | BroadcastEvidence | RequestSync | Decided | RoundTimedOut | Rebroadcast
