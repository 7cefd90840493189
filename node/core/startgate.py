"""When a node at genesis starts height 1: once every genesis validator is up, or the chain has begun.

Why a gate: the first validators to start finalize without the rest as soon
as they hold more than 2/3 of the stake, and every height the others miss
counts against them in the downtime window. On a loaded machine a process
can take seconds to boot, so without a gate a validator could be jailed for
the order in which its operator's machine happened to start processes:
a penalty made by the tooling, not by the protocol or an injected fault.
Real chains solve the same problem with a genesis time everybody is up
for; a testbed cannot know how long its processes take to boot, so its
nodes wait until they see each other instead.

The gate only ever delays a node's own start. It never changes what the
protocol accepts: a node that the gate lets through early (a deadline, or a
peer that claims too much in its status) is simply a validator that started
first, exactly as without the gate.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from node.core.admission import StatusMsg
from node.core.state import ChainState

ALL_ONLINE = "all validators online"
CHAIN_BEGAN = "a peer already started the chain"
DEADLINE = "deadline passed"


@dataclass(frozen=True)
class GateDecision:
    """Whether to start now, why, and who was still missing."""

    open: bool
    reason: str
    missing: tuple[bytes, ...]


def waits_at_genesis(state: ChainState, wait_ms: int) -> bool:
    """Only a node with no finalized block waits: a restart joins a running chain at once."""
    return wait_ms > 0 and state.height == 0


def online_validators(statuses: Iterable[StatusMsg]) -> frozenset[bytes]:
    """The pools whose node's latest status says online."""
    return frozenset(address for status in statuses if status.online for address in status.validators)


def missing_validators(
    state: ChainState, hosted: Iterable[bytes], statuses: Iterable[StatusMsg]
) -> tuple[bytes, ...]:
    """Validators with power at genesis that neither we host nor any online node says it signs for."""
    up = online_validators(statuses) | frozenset(hosted)
    return tuple(address for address, _ in state.validator_set if address not in up)


def decide(
    state: ChainState,
    hosted: Iterable[bytes],
    statuses: Iterable[StatusMsg],
    *,
    chain_began: bool,
    waited_ms: int,
    wait_ms: int,
) -> GateDecision:
    """Open when everybody is up, when someone already signs for height 1, or at the deadline."""
    missing = missing_validators(state, hosted, statuses)
    if not missing:
        return GateDecision(True, ALL_ONLINE, missing)
    if chain_began:
        return GateDecision(True, CHAIN_BEGAN, missing)
    if waited_ms >= wait_ms:
        return GateDecision(True, DEADLINE, missing)
    return GateDecision(False, "", missing)
