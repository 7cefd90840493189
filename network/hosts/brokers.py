"""mosquitto configurations and ACLs for a testnet over several hosts, made from its inventory.

Every listener is TLS only and wants a client certificate; the certificate's
common name is the username (``use_identity_as_username``), and the ACL keys
on it. What "a validator can only publish as itself" means here:

- ``status/<name>`` (retained liveness, and the last will) carries the
  sender's name in the topic: only validator ``<name>`` may write it.
- ``consensus``, ``evidence``, ``tx``, ``sync/req`` and ``sync/resp/<node>``
  are shared channels (every validator relays others' votes, answers others'
  sync requests; the node subscribes to them by exact name). Only the
  validators of the inventory may write them at all, and each message inside
  is Ed25519-signed by its sender and checked against genesis on receipt, so
  a certified validator still cannot speak for another. Giving each validator
  its own publish prefix (``consensus/<name>``) would move that check into
  the broker too, but changes the protocol's channel layout in the core, the
  simulator and every node; signatures already bind identity, so the layout
  stays and the broker binds what the topic names.
- A client of the inventory (``clients``: a wallet, a load generator) may
  read the chain and write ``tx`` only: it can submit transactions, never
  speak in consensus.

Bridged mode, per host H with validators: a local broker the host's
validators dial, bridged to the hub as user ``bridge-H``. The bridge sends
everything under ``posnet/`` to the hub below ``hosts/H/`` and imports each
other host G's ``hosts/G/posnet/`` back to local ``posnet/``. A message
therefore exists on the hub exactly once, under its origin's prefix, and no
bridge imports its own prefix, so the hub never hands a host its own traffic
back; the hub ACL lets ``bridge-H`` write only ``hosts/H/#``. What a bridge
imported is not exported again because mosquitto subscribes a bridge's local
side with "no local" (a message is never sent back on the connection it came
from); the prefixes make the remaining echo (hub to origin) impossible by
construction rather than by that flag.

Standard library only (docker/gen-compose.py renders these without posnet's
dependencies; the broker module they share limits with is standard library
too); ``TOPIC_ROOT`` restates the MQTT transport's (a test checks).
"""

from __future__ import annotations

from dataclasses import dataclass

from network.hosts.inventory import Inventory, bridge_user
from network.transport.broker import MOSQUITTO_LIMITS_AND_LOGS

TOPIC_ROOT = "posnet"
HOSTS_ROOT = "hosts"
TX_CHANNEL = "tx"
SHARED_CHANNELS = ("consensus", "votes/+", "evidence", TX_CHANNEL, "sync/req", "sync/resp/+")
"""node/core/channels.py's channels any validator writes (a test checks they are all of them)."""
STATUS_CHANNEL = "status/{name}"
BRIDGE_KEEPALIVE_S = 5
"""A cut link stalls TCP without an error; the bridge notices within 1.5 keepalives, not the default minute."""

# File names in a host's certificate directory (network/cli/hosts.py writes them there).
CA_CERT = "ca.crt"
BROKER_CERT, BROKER_KEY = "broker.crt", "broker.key"
BRIDGE_CERT, BRIDGE_KEY = "bridge.crt", "bridge.key"
HUB_CERT, HUB_KEY = "hub.crt", "hub.key"
VALIDATORS_DIR = "validators"

BROKER_SERVICE = "broker"
HUB_SERVICE = "hub"
"""Compose service names, valid in the broker certificates too (containers dial them by these names)."""


def validator_cert(name: str) -> tuple[str, str]:
    """(certificate, key) of validator ``name``, relative to its host's certificate directory."""
    return f"{VALIDATORS_DIR}/{name}.crt", f"{VALIDATORS_DIR}/{name}.key"


def host_prefix(host: str) -> str:
    """Where host ``host``'s traffic lives on the hub: ``hosts/<host>/``."""
    return f"{HOSTS_ROOT}/{host}/"


def broker_server_names(inventory: Inventory, host: str) -> list[str]:
    """Names a host's own broker is dialled by: the host's name and address, the compose service, loopback."""
    entry = inventory.host(host)
    return [entry.name, entry.address, BROKER_SERVICE, "localhost", "127.0.0.1"]


def hub_server_names(inventory: Inventory) -> list[str]:
    """Names the hub is dialled by: its host's name and address, the compose service, loopback."""
    hub = inventory.hub
    return [hub.name, hub.address, HUB_SERVICE, "localhost", "127.0.0.1"]


@dataclass(frozen=True)
class BrokerPaths:
    """Where a broker finds its files, on its own filesystem (a container's mount points, or a directory)."""

    certs: str
    acl: str


def _common(port: int, cert: str, key: str, paths: BrokerPaths) -> list[str]:
    certs = paths.certs.rstrip("/")
    return [
        "per_listener_settings false",
        "allow_anonymous false",
        f"listener {port}",
        "protocol mqtt",
        f"cafile {certs}/{CA_CERT}",
        f"certfile {certs}/{cert}",
        f"keyfile {certs}/{key}",
        "require_certificate true",
        "use_identity_as_username true",
        f"acl_file {paths.acl}",
        *MOSQUITTO_LIMITS_AND_LOGS,
    ]


def host_broker_config(
    inventory: Inventory, host: str, paths: BrokerPaths, *, hub_address: str | None = None
) -> str:
    """mosquitto.conf of host ``host``'s own broker (bridged mode): its validators' TLS listener, the bridge.

    ``hub_address`` replaces the hub host's address in the bridge (a broker beside
    the hub dials it by its compose service name); it must be in the hub's certificate.
    """
    if not inventory.runs_broker(host):
        raise ValueError(f"host {host!r} runs no broker of its own (mode {inventory.mode}, or no validators)")
    entry = inventory.host(host)
    hub = inventory.hub
    certs = paths.certs.rstrip("/")
    lines = [
        f"# posnet broker of host {host}; generated from the inventory, do not edit",
        *_common(entry.broker_port, BROKER_CERT, BROKER_KEY, paths),
        "",
        f"# bridge to the hub: this host's traffic goes out below {host_prefix(host)},",
        "# every other host's comes back from below its own prefix (never ours: no loop)",
        f"connection posnet-{host}",
        f"address {hub_address or hub.address}:{inventory.hub_port}",
        f"remote_clientid posnet-bridge-{host}",
        f"bridge_cafile {certs}/{CA_CERT}",
        f"bridge_certfile {certs}/{BRIDGE_CERT}",
        f"bridge_keyfile {certs}/{BRIDGE_KEY}",
        "bridge_insecure false",
        "bridge_protocol_version mqttv311",
        "try_private true",
        "cleansession true",
        "notifications false",
        f"keepalive_interval {BRIDGE_KEEPALIVE_S}",
        "restart_timeout 1 5",
        "start_type automatic",
        f'topic {TOPIC_ROOT}/# out 1 "" {host_prefix(host)}',
    ]
    lines += [
        f'topic {TOPIC_ROOT}/# in 1 "" {host_prefix(other.name)}'
        for other in inventory.validator_hosts()
        if other.name != host
    ]
    return "\n".join(lines) + "\n"


def hub_broker_config(inventory: Inventory, paths: BrokerPaths) -> str:
    """mosquitto.conf of the hub: one TLS listener; bridges (bridged) or every validator (shared) dial it."""
    what = "bridges of every host" if inventory.mode == "bridged" else "every validator"
    lines = [
        f"# posnet hub on host {inventory.hub_host} ({inventory.mode}: {what}); generated, do not edit",
        *_common(inventory.hub_port, HUB_CERT, HUB_KEY, paths),
    ]
    return "\n".join(lines) + "\n"


def validator_acl(name: str) -> list[str]:
    """One validator's ACL block: read the chain, write the shared channels and its own status only."""
    root = f"{TOPIC_ROOT}/+"
    lines = [f"user {name}", f"topic read {TOPIC_ROOT}/#"]
    lines += [f"topic write {root}/{channel}" for channel in SHARED_CHANNELS]
    lines.append(f"topic write {root}/{STATUS_CHANNEL.format(name=name)}")
    return lines


def client_cert(name: str) -> tuple[str, str]:
    """(certificate, key) of client ``name``, relative to the clients' certificate directory."""
    return f"{name}.crt", f"{name}.key"


def client_acl(name: str) -> list[str]:
    """A client's ACL block: read the chain (to follow its transaction), write transactions only."""
    return [f"user {name}", f"topic read {TOPIC_ROOT}/#", f"topic write {TOPIC_ROOT}/+/{TX_CHANNEL}"]


def host_acl(inventory: Inventory, host: str) -> str:
    """ACL of host ``host``'s own broker: its validators (a validator of another host has no rights here) and the clients."""
    lines = [f"# posnet ACL of host {host}'s broker: usernames are certificate common names"]
    for validator in inventory.host(host).validators:
        lines += ["", *validator_acl(validator)]
    for client in inventory.clients:
        lines += ["", *client_acl(client)]
    return "\n".join(lines) + "\n"


def hub_acl(inventory: Inventory) -> str:
    """ACL of the hub: each host's bridge writes only below its own prefix (bridged), or the validators (shared)."""
    lines = [f"# posnet ACL of the hub ({inventory.mode}): usernames are certificate common names"]
    if inventory.mode == "shared":
        for validator in inventory.validators:
            lines += ["", *validator_acl(validator)]
        for client in inventory.clients:
            lines += ["", *client_acl(client)]
        return "\n".join(lines) + "\n"
    for host in inventory.validator_hosts():
        lines += [
            "",
            f"user {bridge_user(host.name)}",
            f"topic read {HOSTS_ROOT}/#",
            f"topic write {host_prefix(host.name)}#",
        ]
    return "\n".join(lines) + "\n"
