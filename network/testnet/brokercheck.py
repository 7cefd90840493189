"""Before `up --broker mqtt://...` starts nodes: is another testnet of the same chain on that broker?

A node's MQTT client id is `posnet-<chain_id>-<node>` and its topics are
`posnet/<chain_id>/...`. Two testnets of one chain id (the default
`posnet-local`, say) on one broker therefore use the same client ids: the
broker drops the older connection whenever the newer one connects, and both
keep reconnecting, knocking each other off dozens of times a minute, while
each also hears the other's consensus traffic. Testnets of different chain
ids share nothing on a broker and may share it freely.

So `up` looks, before starting any node, for live retained statuses of its
own chain on an external broker (a local broker it starts is its own). A
live node keeps a retained `status/<node>` saying online, refreshed every
few seconds; its last will turns it to offline when it goes. Online and
recent (within `STATUS_FRESH_MS`) is a testnet that runs now. The statuses
are only read, never trusted: they are signed by keys of a genesis this
directory may not know, so their signatures cannot be checked here, and the
worst a forged one can do is make `up` refuse to start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time

import aiomqtt

from network.testnet.errors import TestnetError
from network.transport.mqtt import topic
from network.transport.tls import split_broker_url
from node.core.channels import STATUS_ANY
from node.core.codec import DecodeError, decode, want_tuple
from node.core.messages import Kind, parse_envelope
from node.core.startgate import STATUS_FRESH_MS

LISTEN_S = 1.0  # retained messages arrive right after the subscription is granted; this is ample
CONNECT_TIMEOUT_S = 5.0

log = logging.getLogger("posnet.testnet.brokercheck")


def live_node(payload: bytes, chain_id: str, now_ms: int) -> str | None:
    """The node a retained status names, if it says online and is recent; None otherwise (or unreadable)."""
    try:
        envelope = parse_envelope(payload)
        if envelope.kind != Kind.STATUS or envelope.chain_id != chain_id:
            return None
        node, _height, _round, online, _validators, ts_ms = want_tuple(decode(envelope.body), "status", 6)
    except (DecodeError, ValueError, TypeError):
        return None
    if online is not True or not isinstance(node, str) or not isinstance(ts_ms, int):
        return None
    return node if abs(now_ms - ts_ms) <= STATUS_FRESH_MS else None


async def _live_nodes(url: str, chain_id: str, listen_s: float) -> list[str]:
    host, port, _ = split_broker_url(url)
    client = aiomqtt.Client(
        host,
        port,
        identifier=f"posnet-check-{random.getrandbits(48):012x}",  # never a node's id: it knocks nobody off
        protocol=aiomqtt.ProtocolVersion.V311,  # mosquitto and the embedded broker both speak it
        timeout=CONNECT_TIMEOUT_S,
        logger=log,
    )
    found: set[str] = set()
    async with client:
        await client.subscribe(topic(chain_id, STATUS_ANY), qos=1)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(listen_s):
                async for message in client.messages:
                    if not message.retain or not isinstance(message.payload, bytes | bytearray):
                        continue
                    node = live_node(bytes(message.payload), chain_id, int(time.time() * 1000))
                    if node is not None:
                        found.add(node)
    return sorted(found)


def live_nodes_on_broker(url: str, chain_id: str, listen_s: float = LISTEN_S) -> list[str]:
    """Nodes of `chain_id` that the broker at `url` holds a live retained status for."""
    try:
        return asyncio.run(_live_nodes(url, chain_id, listen_s))
    except aiomqtt.MqttError as exc:
        raise TestnetError(f"cannot read statuses from the broker at {url}: {exc}") from None


def refuse_shared_broker(url: str, chain_id: str, listen_s: float = LISTEN_S) -> None:
    """TestnetError (one line) when another testnet of `chain_id` runs on the broker at `url`."""
    nodes = live_nodes_on_broker(url, chain_id, listen_s)
    if nodes:
        shown = ", ".join(nodes[:8]) + (", ..." if len(nodes) > 8 else "")
        raise TestnetError(
            f"the broker at {url} already carries a running testnet of chain {chain_id!r} "
            f"({shown} online); its nodes would be knocked off (same client ids): stop it, "
            "or use another broker, or a fresh --dir with another --chain-id"
        )
