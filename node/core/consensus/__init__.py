"""Tendermint consensus for one validator, sans-I/O: the state machine and the parts it leans on.

One module per concern, each with the state it owns; arrows point down this
list and never up:
- `outputs`: what the machine asks its caller to do (Sign, ScheduleTimeout,
  Decided, ...), and the steps and timers it names (Phase, Timeout);
- `votes`: VoteSet, the tally of one (round, kind) by block and by stake;
- `gossip`: what a heartbeat re-sends, which beats relay others' messages,
  when a node counts as stuck;
- `late`: precommits that arrive after their height closed (folded into the
  next certificate or included in a later block) and ours re-sent until a
  block counts them;
- `catchup`: messages kept for heights ahead, certificates learned from
  them, the pace of sync requests, forks and the evidence they prove;
- `machine`: ConsensusMachine, Algorithm 1's upon-rules, steps and timeouts.

Everything callers import is re-exported here, so `from node.core.consensus
import X` names the contract, not the file it lives in.
"""

from node.core.consensus.catchup import BUFFER_AHEAD, FORK_LOOKBACK, MAX_BUFFERED_NEXT, SYNC_RETRY_MS
from node.core.consensus.gossip import RELAY_EVERY_BEATS, is_relay_beat
from node.core.consensus.late import MAX_LATE_KEPT
from node.core.consensus.machine import (
    CLOCK_PRECISION_MS,
    MAX_ROUND_AHEAD,
    BlockCheck,
    ConsensusMachine,
    Transition,
)
from node.core.consensus.outputs import (
    BroadcastEvidence,
    Decided,
    Output,
    Phase,
    Rebroadcast,
    RequestSync,
    RoundTimedOut,
    ScheduleTimeout,
    Sign,
    Timeout,
)
from node.core.consensus.votes import MAX_BLOCKS_PER_VOTER, VoteSet

__all__ = [
    "BUFFER_AHEAD",
    "CLOCK_PRECISION_MS",
    "FORK_LOOKBACK",
    "MAX_BLOCKS_PER_VOTER",
    "MAX_BUFFERED_NEXT",
    "MAX_LATE_KEPT",
    "MAX_ROUND_AHEAD",
    "RELAY_EVERY_BEATS",
    "SYNC_RETRY_MS",
    "BlockCheck",
    "BroadcastEvidence",
    "ConsensusMachine",
    "Decided",
    "Output",
    "Phase",
    "Rebroadcast",
    "RequestSync",
    "RoundTimedOut",
    "ScheduleTimeout",
    "Sign",
    "Timeout",
    "Transition",
    "VoteSet",
    "is_relay_beat",
]
