"""Inbound messages in lanes by channel group, served consensus first: votes are not queued behind junk.

One FIFO for everything serves a vote only after every message queued before
it, and anyone may publish on the transaction channel: a flood there delays
finality as much as it fills the queue, and a full queue drops votes as
readily as junk. So each lane has its own bound (a flood fills and drops
only its own lane) and the lanes are served in this order:

1. ``consensus``: proposals, committee votes and evidence. Finality waits on
   them, and the protocol bounds them (a committee's votes per step and
   round); evidence is rare and must reach the next proposer in time.
2. ``status``: one small signed message per node per change; the start gate
   and every node's view of who is online wait on them.
3. ``sync``: block requests and answers for nodes catching up; they come in
   bursts, cost store reads to answer, and a lagging node can wait a little.
4. ``tx``: anyone may publish transactions; the mempool is served last.

Strict priority alone would starve the lower lanes for as long as the upper
ones stay busy (a sync answer could wait for ever behind a vote storm), so
every ``fair_every``-th message taken while a lower lane also waits comes
from the lower lanes, in turn: under load the top lane still gets
``(fair_every - 1) / fair_every`` of the service, and no lane gets none.

Each lane is bounded in bytes as well as in count (`LANE_BYTES`): a lane of
2,500 transactions of up to 1 MiB each would otherwise hold 2.5 GB of junk
that anyone may publish (a node reached 196 MB in a burst of 200).

Pure bookkeeping plus one `asyncio.Event` for ``get``; the MQTT transport
fills it from its socket callback and the node takes from it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

from node.core.channels import CONSENSUS, EVIDENCE, STATUS_PREFIX, SYNC_REQ, SYNC_RESP_PREFIX, VOTES_PREFIX

T = TypeVar("T")

CONSENSUS_LANE, STATUS_LANE, SYNC_LANE, TX_LANE = "consensus", "status", "sync", "tx"
LANES = (CONSENSUS_LANE, STATUS_LANE, SYNC_LANE, TX_LANE)
"""Highest priority first."""

FAIR_EVERY = 8
"""One message in this many goes to a lower lane while a higher one is busy."""

MIB = 1 << 20
LANE_BYTES = {CONSENSUS_LANE: 64 * MIB, STATUS_LANE: 4 * MIB, SYNC_LANE: 32 * MIB, TX_LANE: 16 * MIB}
"""Payload bytes a lane may hold: consensus room for a few dozen full proposals, transactions for about
two mempools' worth of the largest valid ones (the mempool holds 8 MiB)."""


def lane_of(channel: str) -> str:
    """The lane a channel's messages wait in; a channel nobody named (none is subscribed) goes last."""
    if channel in (CONSENSUS, EVIDENCE) or channel.startswith(VOTES_PREFIX):
        return CONSENSUS_LANE
    if channel.startswith(STATUS_PREFIX):
        return STATUS_LANE
    if channel == SYNC_REQ or channel.startswith(SYNC_RESP_PREFIX):
        return SYNC_LANE
    return TX_LANE


class PriorityInbox(Generic[T]):
    """Bounded lanes served by priority with a fairness share (see the module docstring).

    ``put`` never blocks: a full lane drops the message and counts it in
    ``dropped[lane]``.
    """

    def __init__(
        self, capacity: int, fair_every: int = FAIR_EVERY, lane_bytes: dict[str, int] | None = None
    ) -> None:
        if capacity < 1 or fair_every < 2:
            raise ValueError("capacity must be >= 1 and fair_every >= 2")
        self.capacity = capacity
        self.fair_every = fair_every
        self.lane_bytes = dict(LANE_BYTES if lane_bytes is None else lane_bytes)
        self._lanes: dict[str, deque[tuple[int, T]]] = {lane: deque() for lane in LANES}
        self._bytes: dict[str, int] = dict.fromkeys(LANES, 0)
        self.dropped: dict[str, int] = dict.fromkeys(LANES, 0)
        self._size = 0
        self._busy_turns = 0  # takes from the top lane in a row while a lower lane waited
        self._next_lower = 1  # index into LANES where the next fair turn starts looking
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return self._size

    def waiting(self, lane: str) -> int:
        return len(self._lanes[lane])

    def put(self, channel: str, item: T, nbytes: int = 0) -> bool:
        """Queue ``item`` (of ``nbytes`` payload) in its channel's lane; False (and counted) when that
        lane is full, by count or by bytes."""
        lane = lane_of(channel)
        queue = self._lanes[lane]
        if len(queue) >= self.capacity or self._bytes[lane] + nbytes > self.lane_bytes[lane]:
            self.dropped[lane] += 1
            return False
        queue.append((nbytes, item))
        self._bytes[lane] += nbytes
        self._size += 1
        self._ready.set()
        return True

    def get_nowait(self) -> T | None:
        """The next item by priority and fairness, or None when every lane is empty."""
        if not self._size:
            return None
        waiting = [lane for lane in LANES if self._lanes[lane]]
        lane = waiting[0]
        if len(waiting) > 1:
            self._busy_turns += 1
            if self._busy_turns >= self.fair_every:
                self._busy_turns = 0
                lane = self._fair_turn(lane)
        self._size -= 1
        if not self._size:
            self._ready.clear()
        nbytes, item = self._lanes[lane].popleft()
        self._bytes[lane] -= nbytes
        return item

    async def get(self) -> T:
        """The next item (waits for one)."""
        while True:
            item = self.get_nowait()
            if item is not None:
                return item
            await self._ready.wait()

    def _fair_turn(self, top: str) -> str:
        """The next waiting lane below ``top``, taking the lower lanes in turn."""
        count = len(LANES)
        for step in range(count):
            index = (self._next_lower + step) % count
            lane = LANES[index]
            if lane != top and self._lanes[lane]:
                self._next_lower = index + 1
                return lane
        return top
