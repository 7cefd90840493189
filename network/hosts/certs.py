"""Every certificate an inventory needs, made once on one machine, laid out one directory per host.

``OUT/ca/`` holds the CA (its key stays on the machine that made it);
``OUT/<host>/certs/`` is what host ``<host>`` gets: the CA certificate, its
broker's server certificate and its bridge's client certificate (bridged
mode), the hub's server certificate (the hub's host), and one client
certificate per validator it runs, named after the validator (the broker's
username for it). Copy ``OUT/<host>/`` to the host and nothing else.
``OUT/clients/`` holds the inventory's clients' certificates (with the CA
certificate): each goes to whoever sends transactions under that name.

Running it again after editing the inventory keeps the CA and every
certificate already made (hosts already deployed keep working) and adds what
is missing; ``force`` re-issues all leaves under the same CA. A new CA (no
``OUT/ca/``) re-issues everything, since old leaves would no longer verify.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from network.hosts.brokers import (
    BRIDGE_CERT,
    BRIDGE_KEY,
    BROKER_CERT,
    BROKER_KEY,
    CA_CERT,
    HUB_CERT,
    HUB_KEY,
    broker_server_names,
    client_cert,
    hub_server_names,
    validator_cert,
)
from network.hosts.inventory import Inventory, bridge_user
from network.hosts.pki import Issued, issue, load_issued, make_ca

CA_DIR = "ca"
CA_KEY = "ca.key"


CLIENTS_DIR = "clients"


def clients_dir(out: Path) -> Path:
    """Where the clients' certificates go under ``out`` (with the CA certificate, to hand out with them)."""
    return Path(out) / CLIENTS_DIR


def host_certs_dir(out: Path, host: str) -> Path:
    """Where host ``host``'s certificates go under ``out``."""
    return Path(out) / host / "certs"


@dataclass(frozen=True)
class Leaf:
    """One certificate to make: its common name, server names (if a server), and file names."""

    cn: str
    cert: str
    key: str
    server_names: tuple[str, ...] = ()


def host_leaves(inventory: Inventory, host: str) -> list[Leaf]:
    """What host ``host`` needs, in a fixed order."""
    leaves = []
    if inventory.runs_broker(host):
        leaves.append(
            Leaf(f"broker-{host}", BROKER_CERT, BROKER_KEY, tuple(broker_server_names(inventory, host)))
        )
        leaves.append(Leaf(bridge_user(host), BRIDGE_CERT, BRIDGE_KEY))
    if host == inventory.hub_host:
        leaves.append(Leaf(f"hub-{host}", HUB_CERT, HUB_KEY, tuple(hub_server_names(inventory))))
    for validator in inventory.host(host).validators:
        cert, key = validator_cert(validator)
        leaves.append(Leaf(validator, cert, key))
    return leaves


@dataclass
class PkiReport:
    """What a run made and what it kept, as paths (for the CLI to print)."""

    made: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    new_ca: bool = False


def _ca(out: Path, report: PkiReport) -> Issued:
    cert, key = out / CA_DIR / CA_CERT, out / CA_DIR / CA_KEY
    if cert.exists() or key.exists():
        report.kept.append(cert)
        return load_issued(cert, key)
    ca = make_ca()
    ca.write(cert, key)
    report.made.append(cert)
    report.new_ca = True
    return ca


def make_inventory_pki(inventory: Inventory, out: Path, *, force: bool = False) -> PkiReport:
    """Make (or complete) the CA and every host's certificates under ``out``; see the module docstring."""
    out = Path(out)
    report = PkiReport()
    ca = _ca(out, report)
    ca_pem = (out / CA_DIR / CA_CERT).read_bytes()
    places = [(host_certs_dir(out, host.name), host_leaves(inventory, host.name)) for host in inventory.hosts]
    if inventory.clients:
        places.append((clients_dir(out), [Leaf(name, *client_cert(name)) for name in inventory.clients]))
    for certs, leaves in places:
        certs.mkdir(parents=True, exist_ok=True)
        (certs / CA_CERT).write_bytes(ca_pem)
        for leaf in leaves:
            cert_path, key_path = certs / leaf.cert, certs / leaf.key
            if cert_path.exists() and key_path.exists() and not (force or report.new_ca):
                report.kept.append(cert_path)
                continue
            issue(ca, leaf.cn, server_names=leaf.server_names, client=not leaf.server_names).write(
                cert_path, key_path
            )
            report.made.append(cert_path)
    return report
