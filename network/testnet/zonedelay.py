"""Zones for the testnet's relay: hold each message for the latency between its sender's zone and its receiver's.

Every node reaches the broker through its own port of the relay, so the
relay sees each PUBLISH twice: going up from the node that published it, and
coming down, copied by the broker, to each subscriber. Neither leg alone
knows both ends, so the up leg notes who published what, keyed by topic and
payload (the bytes the broker copies unchanged), and the down leg looks the
publisher up and holds that copy for the zones' one-way latency (RTT/2,
plus the file's jitter). A message is never parsed past MQTT framing, as the
relay's other faults are not.

The same (topic, payload) may be published by several nodes: gossip re-sends
other nodes' votes. The broker hands each subscriber the copies in the order
it got them, so each subscriber takes the publishers of a key in that order.
A copy nobody was seen publishing (a will, a client outside the relay) gets
no zone delay. What is remembered is bounded: the oldest keys are forgotten.
"""

from __future__ import annotations

import argparse
import hashlib
import random
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from network.sim.zones import Zones, ZonesError, load_zones
from network.testnet.errors import TestnetError
from network.transport.framing import CONNECT, PUBLISH, FramingError

REMEMBERED = 100_000  # keys kept; a copy arrives within seconds of its publish, so the oldest can go


def _varint(packet: bytes, index: int) -> tuple[int, int]:
    """(value, index after it) of an MQTT variable byte integer at `index`."""
    value, multiplier = 0, 1
    for _ in range(4):
        if index >= len(packet):
            raise FramingError("packet cut inside a variable byte integer")
        byte = packet[index]
        index += 1
        value += (byte & 0x7F) * multiplier
        if not byte & 0x80:
            return value, index
        multiplier *= 128
    raise FramingError("variable byte integer longer than four bytes")


def protocol_level(packet: bytes) -> int | None:
    """The protocol level a CONNECT asks for (4: MQTT 3.1.1, 5: MQTT 5), or None for other packets."""
    if packet[0] >> 4 != CONNECT:
        return None
    _, at = _varint(packet, 1)
    name_length = int.from_bytes(packet[at : at + 2], "big")
    level_at = at + 2 + name_length
    return packet[level_at] if level_at < len(packet) else None


def publish_key(packet: bytes, level: int) -> bytes | None:
    """A digest of a PUBLISH's topic and payload (None for other packets): equal up and down."""
    if packet[0] >> 4 != PUBLISH:
        return None
    _, at = _varint(packet, 1)
    topic_end = at + 2 + int.from_bytes(packet[at : at + 2], "big")
    topic = packet[at + 2 : topic_end]
    at = topic_end + (2 if (packet[0] >> 1) & 0x03 else 0)  # the packet id of QoS 1 and 2
    if level >= 5:
        length, at = _varint(packet, at)  # MQTT 5 properties may differ up and down: skip them
        at += length
    if at > len(packet):
        raise FramingError("PUBLISH shorter than its header says")
    return hashlib.blake2b(topic + b"\0" + packet[at:], digest_size=16).digest()


@dataclass
class _Seen:
    publishers: list[str] = field(default_factory=list)
    taken: dict[str, int] = field(default_factory=dict)  # subscriber -> copies of this key it got


class ZoneDelays:
    """Who published each message, and how long a copy waits for the receiver it is going to."""

    def __init__(self, zones: Zones, placement: dict[str, str], rng: random.Random) -> None:
        self.zones = zones
        self.placement = dict(placement)
        self.rng = rng
        self._seen: OrderedDict[bytes, _Seen] = OrderedDict()
        self.delayed = 0  # copies held for a zone latency (counted for the applied file)

    def published(self, sender: str, key: bytes) -> None:
        seen = self._seen.get(key)
        if seen is None:
            seen = self._seen[key] = _Seen()
            if len(self._seen) > REMEMBERED:
                self._seen.popitem(last=False)
        seen.publishers.append(sender)

    def delay_ms(self, recipient: str, key: bytes) -> int:
        """The zones' one-way latency (plus jitter) from this copy's publisher to `recipient`."""
        seen = self._seen.get(key)
        if seen is None:
            return 0
        index = seen.taken.get(recipient, 0)
        seen.taken[recipient] = index + 1
        sender = seen.publishers[min(index, len(seen.publishers) - 1)]
        jitter = self.zones.jitter_ms
        self.delayed += 1
        return self.zones.one_way_ms(self.placement[sender], self.placement[recipient]) + (
            self.rng.randint(0, jitter) if jitter else 0
        )


class LinkZones:
    """One node connection's view: which MQTT version it speaks, and its two legs' hooks."""

    def __init__(self, delays: ZoneDelays, name: str) -> None:
        self.delays = delays
        self.name = name
        self.level = 4

    def up(self, packet: bytes) -> int | None:
        """A packet from the node: note a PUBLISH's publisher (a CONNECT's version); never delayed here."""
        level = protocol_level(packet)
        if level is not None:
            self.level = level
            return None
        key = publish_key(packet, self.level)
        if key is not None:
            self.delays.published(self.name, key)
        return None

    def down(self, packet: bytes) -> int | None:
        """A packet to the node: a PUBLISH's zone delay, or None for a packet that keeps its order."""
        key = publish_key(packet, self.level)
        if key is None:
            return None
        return self.delays.delay_ms(self.name, key)


def listen_zone(value: str) -> tuple[str, str]:
    """`--zone NODE=ZONE` for the relay's command line."""
    name, sep, zone = value.partition("=")
    if not sep or not name or not zone:
        raise argparse.ArgumentTypeError(f"{value!r}: expected NODE=ZONE")
    return name, zone


def zone_delays(
    path: Path | None, placement: dict[str, str], ports: dict[str, int], rng: random.Random
) -> ZoneDelays | None:
    """The zones file read again here (the orchestrator checked it), every port's node placed."""
    if path is None:
        return None
    zones = load_zones(path.read_text(), str(path))
    missing = sorted(set(ports) - set(placement))
    if missing:
        raise ZonesError(f"node {missing[0]} has no --zone")
    unknown = sorted(zone for zone in placement.values() if zone not in zones.names)
    if unknown:
        raise ZonesError(f"unknown zone {unknown[0]!r}")
    return ZoneDelays(zones, placement, rng)


def process_zones(zones: Zones, hosts: dict[str, list[str]]) -> tuple[dict[str, str], dict[str, str]]:
    """(validator -> zone, process -> zone): a process is in one place, so its validators must agree."""
    try:
        placement = zones.assign([v for hosted in hosts.values() for v in hosted])
    except ZonesError as exc:
        raise TestnetError(f"--zones {zones.path}: {exc}") from None
    by_process = {}
    for process, hosted in hosts.items():
        places = sorted({placement[v] for v in hosted})
        if len(places) > 1:
            raise TestnetError(
                f"--zones {zones.path}: process {process} hosts validators in {' and '.join(places)}; "
                "a process is in one place (place each process's block of validators in one zone: "
                "assign.rule = 'weights' or assign.validators)"
            )
        by_process[process] = places[0]
    return placement, by_process
