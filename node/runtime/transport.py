"""What the node process needs from its transport, and what it tells one when it asks for it.

The runtime knows nothing of MQTT (``node/`` never imports ``network/``): the
composition root (``posnet node run``) picks the transport, and the runtime
asks it for one through a `TransportFactory`, handing over what only the
runtime knows (its node name, the channels it listens on, the signed
"offline" status a broker announces if the process dies). Anything that can
publish on a channel, hand back inbound messages and say whether it is
connected will do; the MQTT client is the one shipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol


class InboundMessage(Protocol):
    """A received message: its channel (below the chain's prefix) and its opaque payload."""

    @property
    def channel(self) -> str: ...

    @property
    def payload(self) -> bytes: ...


class Transport(Protocol):
    """A connection to the other validators, kept up (and re-established) by ``run``."""

    connected: asyncio.Event
    """Set while inbound messages can arrive; cleared on loss (the runtime logs both)."""

    @property
    def stats(self) -> Mapping[str, int]:
        """Counters; the runtime reports ``rx_dropped_*`` among its dropped messages."""
        ...

    async def run(self) -> None:
        """Connect and stay connected until ``close``."""

    def publish(self, channel: str, payload: bytes, *, retain: bool = False) -> bool:
        """Queue ``payload`` for ``channel`` without blocking; False when it was dropped."""
        ...

    async def recv(self) -> InboundMessage:
        """The next inbound message (waits for one): consensus traffic before status, sync, transactions."""
        ...

    def listen(self, channels: frozenset[str]) -> None:
        """Listen to exactly these channels besides the fixed ones (a committee's votes), from now on."""

    async def close(self, *, drain_timeout: float = 2.0) -> None:
        """Hand queued messages over (for up to ``drain_timeout`` s), then disconnect cleanly."""


@dataclass(frozen=True)
class TransportSpec:
    """What the runtime tells the factory: who it is and what it listens to."""

    chain_id: str
    node_id: str
    subscriptions: tuple[str, ...]
    offline_status: bytes  # the retained status the transport leaves behind if the process dies
    inbound_queue: int  # inbound messages kept waiting per channel group (a flood drops only its own)


TransportFactory = Callable[[TransportSpec], Transport]
