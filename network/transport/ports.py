"""Ports for the processes posnet starts (brokers, relays, metrics, Prometheus), picked so nothing takes them first.

A port from ``bind(0)`` lies in the kernel's ephemeral range, so between our
pick and the listener's bind any outgoing connection (a node dialling the
broker) can be given the same port and the listener then fails with
"address in use" (CI saw a metrics port go that way). Picking below that
range, at random, and never the same port twice in one process closes that
window except against another program choosing ports the same way.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_PICKED_PORT = 10000
_handed_out: set[int] = set()


def ephemeral_port_range() -> tuple[int, int]:
    """The ports the kernel hands to outgoing connections and to ``bind(0)``."""
    try:
        low, high = (int(part) for part in EPHEMERAL_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``, outside the ephemeral range (see the module)."""
    rng = random.SystemRandom()
    for lowest, highest in _non_ephemeral_spans():
        for _ in range(200):
            port = rng.randint(lowest, highest)
            if port not in _handed_out and _bindable(host, port):
                _handed_out.add(port)
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _non_ephemeral_spans() -> list[tuple[int, int]]:
    """Port spans of at least 1,000 ports outside the ephemeral range, above 10,000."""
    low, high = ephemeral_port_range()
    spans = [(LOWEST_PICKED_PORT, low - 1), (max(high + 1, LOWEST_PICKED_PORT), 65535)]
    return [(a, b) for a, b in spans if b - a >= 1000]
