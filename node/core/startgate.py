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

Only fresh statuses count (signed within `STATUS_FRESH_MS` of the
receiver's clock): a status is signed but carries no nonce, so anyone on
the broker can re-publish an old "online" one after its node died. Counting
a validator as up only while it has *recently* signed that it is up makes
such a replay worthless: it says nothing the original did not say while it
was still fresh. "Offline" statuses (the broker's last will, signed when the
node connected) are left to the displays: the gate never needs them, since
a dead node's statuses go stale on their own.

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

STATUS_FRESH_MS = 15_000
"""How long a status counts: three of a node's 5 s refreshes, plus the clocks' disagreement."""


def is_fresh(status: StatusMsg, now_ms: int) -> bool:
    """Signed within `STATUS_FRESH_MS` of our clock (either way: a clock ahead is not a licence)."""
    return abs(now_ms - status.ts_ms) <= STATUS_FRESH_MS


def newer(kept: StatusMsg | None, arrived: StatusMsg) -> bool:
    """Whether `arrived` replaces the status kept for its node: only a later one does (no replay goes back)."""
    return kept is None or arrived.ts_ms > kept.ts_ms


@dataclass(frozen=True)
class GateDecision:
    """Whether to start now, why, and who was still missing."""

    open: bool
    reason: str
    missing: tuple[bytes, ...]


def waits_at_genesis(state: ChainState, wait_ms: int) -> bool:
    """Only a node with no finalized block waits: a restart joins a running chain at once."""
    return wait_ms > 0 and state.height == 0


def online_validators(statuses: Iterable[StatusMsg], now_ms: int) -> frozenset[bytes]:
    """The pools whose node's latest status says online, and said so recently."""
    return frozenset(
        address
        for status in statuses
        if status.online and is_fresh(status, now_ms)
        for address in status.validators
    )


def missing_validators(
    state: ChainState, hosted: Iterable[bytes], statuses: Iterable[StatusMsg], now_ms: int
) -> tuple[bytes, ...]:
    """Validators with power at genesis that neither we host nor any freshly online node says it signs for."""
    up = online_validators(statuses, now_ms) | frozenset(hosted)
    return tuple(address for address, _ in state.validator_set if address not in up)


def decide(
    state: ChainState,
    hosted: Iterable[bytes],
    statuses: Iterable[StatusMsg],
    *,
    chain_began: bool,
    waited_ms: int,
    wait_ms: int,
    now_ms: int,
) -> GateDecision:
    """Open when everybody is up, when someone already signs for height 1, or at the deadline."""
    missing = missing_validators(state, hosted, statuses, now_ms)
    if not missing:
        return GateDecision(True, ALL_ONLINE, missing)
    if chain_began:
        return GateDecision(True, CHAIN_BEGAN, missing)
    if waited_ms >= wait_ms:
        return GateDecision(True, DEADLINE, missing)
    return GateDecision(False, "", missing)
