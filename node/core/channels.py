"""The channels validators talk on, named once for the driver, the runtime and the transport.

A channel is a path below the chain's prefix; the MQTT transport turns it
into a topic (``posnet/<chain_id>/<channel>``), the simulator's network
delivers by it directly. The driver says *what* it sends on which channel,
so the names are part of the protocol, not of the transport.
"""

from __future__ import annotations

CONSENSUS = "consensus"
EVIDENCE = "evidence"
TX = "tx"
SYNC_REQ = "sync/req"
STATUS_PREFIX = "status/"
SYNC_RESP_PREFIX = "sync/resp/"
STATUS_ANY = STATUS_PREFIX + "+"
"""Every node's status channel (an MQTT single-level wildcard)."""


def check_name(what: str, value: str) -> None:
    """Reject ids that would change the channel structure (separators, wildcards)."""
    if not value or any(c in value for c in "/+#\0"):
        raise ValueError(f"{what} must be non-empty without '/', '+', '#' or NUL: {value!r}")


def status_channel(node_id: str) -> str:
    """The retained liveness channel of one node."""
    check_name("node_id", node_id)
    return STATUS_PREFIX + node_id


def sync_resp_channel(node_id: str) -> str:
    """The channel on which one node receives sync answers."""
    check_name("node_id", node_id)
    return SYNC_RESP_PREFIX + node_id


def channel_group(channel: str) -> str:
    """A channel without its node suffix (``status/v1`` -> ``status``), for per-channel counters."""
    if channel.startswith(STATUS_PREFIX):
        return STATUS_PREFIX.rstrip("/")
    if channel.startswith(SYNC_RESP_PREFIX):
        return SYNC_RESP_PREFIX.rstrip("/")
    return channel
