"""A deterministic in-memory network in virtual time.

One event queue ordered by (time, sequence number); one seeded RNG for every
random choice (delays, drops, duplicates). No wall clock, no threads: the
same seed replays the same run, event for event. The model is a broker:
a broadcast reaches every node (the sender excepted), each copy with its
own delay; partitions and crashes are checked when a copy is sent and again
when it would arrive. Vote channels are the exception, as they are on the
real broker: a broadcast there reaches only the nodes listening to it (each
node says which, see `node.core.routes`).

With zones (`network.sim.zones`) each copy also travels its zones' one-way
latency (plus the file's jitter) on top of the plan's delay: the plan stands
for the broker hop and the machines, the zones for the distance between
them. Without zones no extra draw is made, so a run is what it always was.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable

from network.sim.plans import FaultPlan
from network.sim.trace import Trace
from network.sim.zones import Zones
from node.core.channels import is_votes_channel

Handler = Callable[[str, bytes], None]


class SimNetwork:
    """Virtual time and message delivery between named nodes."""

    def __init__(
        self,
        names: list[str],
        plan: FaultPlan,
        rng: random.Random,
        zones: Zones | None = None,
        placement: dict[str, str] | None = None,
    ) -> None:
        """`placement` gives every node in `names` a zone of `zones` (both or neither)."""
        self.names = list(names)
        self.plan = plan
        self.rng = rng
        self.now_ms = 0
        self._queue: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = 0
        self._handlers: dict[str, Handler] = {}
        self._index = {name: i for i, name in enumerate(self.names)}
        self._listening: dict[str, frozenset[str]] = {}  # node -> the vote channels it listens to
        self._listeners: dict[str, tuple[str, ...]] = {}  # vote channel -> its listeners, in `names` order
        self.down: set[str] = set()
        self.delivered = 0
        self.dropped = 0
        self.tracer: Trace | None = (
            None  # `posnet sim --trace`: every delivery and drop, written as it happens
        )
        self.zones = zones
        # node -> its row of one-way latencies by node index: one lookup a copy, not two name searches
        self._latency: dict[str, list[int]] = {}
        if zones is not None:
            assert placement is not None, "zones need a placement of every node"
            rows = {zone: zones.one_way[i] for i, zone in enumerate(zones.names)}
            column = [zones.names.index(placement[name]) for name in self.names]
            self._latency = {name: [rows[placement[name]][j] for j in column] for name in self.names}

    def attach(self, name: str, handler: Handler) -> None:
        self._handlers[name] = handler

    def schedule(self, delay_ms: int, action: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (self.now_ms + max(0, delay_ms), self._seq, action))

    def can_reach(self, a: str, b: str, t: int) -> bool:
        if a in self.down or b in self.down:
            return False
        return not self.plan.partitions or not any(p.separates(a, b, t) for p in self.plan.partitions)

    def listen(self, name: str, channels: frozenset[str]) -> None:
        """Set the vote channels `name` listens to (others' broadcasts on the rest do not reach it)."""
        before = self._listening.get(name, frozenset())
        if channels == before:
            return
        self._listening[name] = channels
        for channel in before ^ channels:
            members = [n for n in self._listeners.get(channel, ()) if n != name]
            if channel in channels:
                members.append(name)
            if members:
                self._listeners[channel] = tuple(sorted(members, key=self._index.__getitem__))
            else:
                self._listeners.pop(channel, None)

    def broadcast(self, sender: str, data: bytes, channel: str = "") -> None:
        """To every other node, or on a vote channel to those listening to it."""
        recipients = self._listeners.get(channel, ()) if is_votes_channel(channel) else self.names
        for name in recipients:
            if name != sender:
                self.send(sender, name, data)

    def send(self, sender: str, recipient: str, data: bytes) -> None:
        plan, rng = self.plan, self.rng
        if not self.can_reach(sender, recipient, self.now_ms) or (plan.drop and rng.random() < plan.drop):
            self.dropped += 1
            if self.tracer is not None:
                self.tracer.dropped(self.now_ms, sender, recipient, data, self._why(sender, recipient))
            return
        deliver = lambda: self._deliver(sender, recipient, data)  # noqa: E731
        self.schedule(self._delay() + self._distance(sender, recipient), deliver)
        if plan.dup and rng.random() < plan.dup:
            self.schedule(self._delay() + self._distance(sender, recipient), deliver)

    def latency_ms(self, sender: str, recipient: str) -> int:
        """The zones' one-way latency between two nodes (0 without zones): no copy arrives sooner."""
        if not self._latency:
            return 0
        return self._latency[sender][self._index[recipient]]

    def _distance(self, sender: str, recipient: str) -> int:
        """The zones' latency plus jitter for one copy; no draw at all without zones."""
        if not self._latency:
            return 0
        jitter = self.zones.jitter_ms if self.zones is not None else 0
        extra = int(self.rng.random() * (jitter + 1)) if jitter else 0
        return self._latency[sender][self._index[recipient]] + extra

    def _delay(self) -> int:
        lo, hi = self.plan.delay_ms
        delay = lo + int(self.rng.random() * (hi - lo + 1))
        if self.plan.reorder and self.rng.random() < self.plan.reorder:
            delay += int(self.rng.random() * 10 * max(hi, 1))
        return delay

    def _deliver(self, sender: str, recipient: str, data: bytes) -> None:
        if not self.can_reach(sender, recipient, self.now_ms):
            self.dropped += 1
            if self.tracer is not None:
                self.tracer.dropped(self.now_ms, sender, recipient, data, self._why(sender, recipient))
            return
        self.delivered += 1
        if self.tracer is not None:
            self.tracer.delivered(self.now_ms, sender, recipient, data)
        self._handlers[recipient](sender, data)

    def _why(self, sender: str, recipient: str) -> str:
        """Why a message between the two is lost now: a crashed end, a partition, or the plan's loss."""
        if sender in self.down or recipient in self.down:
            return "down"
        return "loss" if self.can_reach(sender, recipient, self.now_ms) else "partition"

    def run_until(self, done: Callable[[], bool], deadline_ms: int) -> None:
        """Process events in time order until `done()` or virtual time passes the deadline.

        `done` is asked after every event, so it must be cheap (the simulator's
        only re-examines the nodes after one of them finalized).
        """
        while self._queue and not done():
            at_ms, _, action = heapq.heappop(self._queue)
            if at_ms > deadline_ms:
                self.now_ms = deadline_ms
                return
            self.now_ms = at_ms
            action()
