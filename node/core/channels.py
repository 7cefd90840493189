"""The channels validators talk on, named once for the driver, the runtime and the transport.

A channel is a path below the chain's prefix; the MQTT transport turns it
into a topic (``posnet/<chain_id>/<channel>``), the simulator's network
delivers by it directly. The driver says *what* it sends on which channel,
so the names are part of the protocol, not of the transport.
"""

from __future__ import annotations

CONSENSUS = "consensus"
"""Proposals (with their blocks): every node hears them, and follows the chain by them."""
VOTES_PREFIX = "votes/"
"""Prevotes and precommits, a channel per committee: only its members listen (node.core.routes)."""
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


def votes_channel(committee_id: str) -> str:
    """The channel one committee's votes travel on (`committee_id`: its seats' digest, see node.core.routes)."""
    check_name("committee_id", committee_id)
    return VOTES_PREFIX + committee_id


def is_votes_channel(channel: str) -> bool:
    return channel.startswith(VOTES_PREFIX)


def channel_group(channel: str) -> str:
    """A channel without its node or epoch suffix (``status/v1`` -> ``status``), for per-channel counters."""
    for prefix in (STATUS_PREFIX, SYNC_RESP_PREFIX, VOTES_PREFIX):
        if channel.startswith(prefix):
            return prefix.rstrip("/")
    return channel
