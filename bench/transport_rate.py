"""Transport throughput: how many vote-sized messages per second reach each subscriber.

This is the ceiling the consensus benchmarks compare themselves against, so it is
measured the way nodes use the transport: MqttTransport on both ends, QoS 0, one
publisher fanning out to K subscribers through a real broker.

    python bench/transport_rate.py [--broker mosquitto|embedded|auto ...]
                                   [--messages N] [--size B] [--subscribers K ...]

Other benchmarks import ``measure_transport_rate`` (put the repo root on sys.path,
then ``from bench.transport_rate import measure_transport_rate``).

All endpoints share this process and its event loop, so the figure is a lower
bound for the broker and an honest figure for one Python node's client side.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

_REPO_ROOT = Path(__file__).resolve().parent.parent
if str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))

from network.transport.broker import start_broker  # noqa: E402 - needs the path set above
from network.transport.mqtt import MqttTransport, detect_protocol  # noqa: E402
from node.core.channels import CONSENSUS  # noqa: E402

CONNECT_TIMEOUT_S = 30.0
IDLE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class RateResult:
    """One measurement: per-subscriber deliveries and how long they took."""

    messages: int
    size: int
    protocol: int
    received: tuple[int, ...]
    seconds: tuple[float, ...]

    @property
    def rates(self) -> tuple[float, ...]:
        """Messages per second delivered to each subscriber."""
        return tuple(n / s if s > 0 else 0.0 for n, s in zip(self.received, self.seconds, strict=True))

    @property
    def rate(self) -> float:
        """The slowest subscriber's rate: what every subscriber is guaranteed."""
        return min(self.rates)

    @property
    def lost(self) -> int:
        """Messages that some subscriber never got (QoS 0 drops under overload)."""
        return self.messages * len(self.received) - sum(self.received)


async def _consume(transport: MqttTransport, expected: int, start: list[float]) -> tuple[int, float]:
    """Count deliveries until all arrived or none came for IDLE_TIMEOUT_S."""
    received = 0
    last = time.perf_counter()
    while received < expected:
        try:
            await asyncio.wait_for(transport.recv(), IDLE_TIMEOUT_S)
        except TimeoutError:
            break
        received += 1
        last = time.perf_counter()
    return received, max(last - start[0], 0.0)


def _transport(
    url: str, chain_id: str, node_id: str, protocol: Literal[5, 311], subscriptions: list[str], **queues: int
) -> MqttTransport:
    """A bench endpoint; queues sized so the bench measures the wire, not our bounds."""
    return MqttTransport(
        url,
        chain_id,
        node_id,
        subscriptions=subscriptions,
        offline_status=b"offline",
        protocol=protocol,
        **queues,
    )


async def _wait_connected(transports: list[MqttTransport]) -> None:
    waits = (t.connected.wait() for t in transports)
    await asyncio.wait_for(asyncio.gather(*waits), CONNECT_TIMEOUT_S)


async def run_transport_rate(
    url: str,
    chain_id: str,
    messages: int,
    size: int,
    subscribers: int,
    *,
    protocol: Literal[5, 311] | None = None,
) -> RateResult:
    """Publish ``messages`` payloads of ``size`` bytes and time their delivery to each subscriber."""
    if messages < 1 or subscribers < 1 or size < 1:
        raise ValueError("messages, size and subscribers must be >= 1")
    proto = protocol or await detect_protocol(url)
    subs = [
        _transport(url, chain_id, f"bench-sub-{i}", proto, [CONSENSUS], inbound_queue=messages + 16)
        for i in range(subscribers)
    ]
    pub = _transport(url, chain_id, "bench-pub", proto, [], outbound_queue=messages)
    runners = [asyncio.create_task(t.run()) for t in [*subs, pub]]
    try:
        await _wait_connected([*subs, pub])
        start = [time.perf_counter()]
        consumers = [asyncio.create_task(_consume(s, messages, start)) for s in subs]
        payload = os.urandom(size)
        for _ in range(messages):
            pub.publish(CONSENSUS, payload)
        outcomes = await asyncio.gather(*consumers)
    finally:
        await asyncio.gather(*(t.close() for t in [*subs, pub]))
        await asyncio.gather(*runners, return_exceptions=True)
    received, seconds = zip(*outcomes, strict=True)
    return RateResult(messages, size, proto, tuple(received), tuple(seconds))


async def measure_transport_rate(
    url: str, chain_id: str, messages: int, size: int, subscribers: int
) -> float:
    """Messages/s delivered to each of ``subscribers`` (the slowest one's rate).

    The MQTT version is detected from the broker (5 for mosquitto, 3.1.1 for amqtt).
    """
    result = await run_transport_rate(url, chain_id, messages, size, subscribers)
    return result.rate


def _row(broker: str, result: RateResult) -> str:
    k = len(result.received)
    total = sum(result.received) / max(result.seconds) if max(result.seconds) > 0 else 0.0
    return (
        f"{broker:<10} {'v5' if result.protocol == 5 else 'v3.1.1':<7} {k:>4} {result.messages:>9} "
        f"{result.size:>6} {result.rate:>12,.0f} {total:>14,.0f} {result.lost:>7}"
    )


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", nargs="+", default=["auto"], choices=["auto", "mosquitto", "embedded"])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=200, help="payload bytes (a signed vote is ~200)")
    parser.add_argument("--subscribers", type=int, nargs="+", default=[1])
    return parser.parse_args(argv)


async def _main(args: argparse.Namespace) -> None:
    print(
        f"{'broker':<10} {'mqtt':<7} {'subs':>4} {'messages':>9} {'bytes':>6} "
        f"{'msg/s/sub':>12} {'deliveries/s':>14} {'lost':>7}"
    )
    for kind in args.broker:
        with start_broker(kind) as broker:
            for k in args.subscribers:
                result = await run_transport_rate(broker.url, "bench", args.messages, args.size, k)
                print(_row(broker.kind, result), flush=True)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark from the command line and print the table."""
    asyncio.run(_main(_parse_args(argv)))


if __name__ == "__main__":
    main()
