"""A node's transport as two MQTT connections: consensus and status on one, transactions and sync on the other.

Lanes inside the node (network/transport/inbox.py) order what has been read,
but a broker writes each client's messages to one TCP stream in arrival
order: behind 50,000 junk transactions in that stream, a vote waits until
every one of them has been read, however it is served afterwards. Measured
on a 4-validator testnet over mosquitto (tests/test_flood_real.py, a loaded
2-core machine): with one connection finality fell from 6-7 heights/s to
0.03-0.15 while such a flood drained (0.25 with the lanes alone); with two
it kept 4.3-5.2. Two connections give the broker two queues: the consensus
connection's stream carries only what finality needs, and the node reads
both sockets in turn, so a flood on the bulk connection costs the consensus
one at most every other read.

Both connections fill one shared `PriorityInbox`; the node takes from it.
Each channel is published on the connection of its lane too, so our own
votes do not queue behind the sync answers we send. Only the consensus
connection carries the node's retained status and its last will, and its
``connected`` is the node's: without it the node cannot take part at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from network.transport.inbox import CONSENSUS_LANE, STATUS_LANE, PriorityInbox, lane_of
from network.transport.mqtt import Inbound, MqttTransport

BULK_SUFFIX = "bulk"
"""The bulk connection's client id is the node's with this suffix."""

_FAST_LANES = (CONSENSUS_LANE, STATUS_LANE)


def is_fast(channel: str) -> bool:
    """Whether ``channel`` travels on the consensus connection."""
    return lane_of(channel) in _FAST_LANES


class SplitMqttTransport:
    """The node's `Transport` over two `MqttTransport` connections (see the module docstring).

    ``options`` go to both connections (protocol, TLS, credentials, bounds).
    """

    def __init__(
        self,
        url: str,
        chain_id: str,
        node_id: str,
        *,
        subscriptions: Sequence[str],
        offline_status: bytes,
        inbound_queue: int = 10_000,
        **options: Any,
    ) -> None:
        self._inbox: PriorityInbox[Inbound] = PriorityInbox(inbound_queue)
        fast = [channel for channel in subscriptions if is_fast(channel)]
        bulk = [channel for channel in subscriptions if not is_fast(channel)]
        self.fast = MqttTransport(
            url,
            chain_id,
            node_id,
            subscriptions=fast,
            offline_status=offline_status,
            inbox=self._inbox,
            **options,
        )
        self.bulk = MqttTransport(
            url,
            chain_id,
            node_id,
            subscriptions=bulk,
            offline_status=None,
            inbox=self._inbox,
            client_suffix=BULK_SUFFIX,
            **options,
        )
        self.connected = self.fast.connected

    @property
    def stats(self) -> dict[str, int]:
        """Both connections' counters, summed."""
        fast, bulk = self.fast.stats, self.bulk.stats
        return {key: fast.get(key, 0) + bulk.get(key, 0) for key in fast.keys() | bulk.keys()}

    async def run(self) -> None:
        await asyncio.gather(self.fast.run(), self.bulk.run())

    def publish(self, channel: str, payload: bytes, *, retain: bool = False) -> bool:
        connection = self.fast if retain or is_fast(channel) else self.bulk
        return connection.publish(channel, payload, retain=retain)

    async def recv(self) -> Inbound:
        return await self._inbox.get()

    def listen(self, channels: frozenset[str]) -> None:
        """Committee vote channels: consensus traffic, on the consensus connection."""
        self.fast.listen(channels)

    def pending_inbound(self) -> int:
        return len(self._inbox)

    async def close(self, *, drain_timeout: float = 2.0) -> None:
        await asyncio.gather(
            self.fast.close(drain_timeout=drain_timeout), self.bulk.close(drain_timeout=drain_timeout)
        )
