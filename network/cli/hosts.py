"""``posnet hosts``: a testnet over several machines, made from one inventory file.

``check`` validates the inventory and says who runs where and who dials
what; ``pki`` makes the CA and every host's certificates once, one
directory per host to copy over (network/hosts/certs.py). The
compose files and broker configurations per host come from
``docker/gen-compose.py --host NAME`` (standard library only, so it runs
wherever the compose files are made).

Exit codes: 0 success, 2 for anything the user has to fix (one line naming it).
"""

from __future__ import annotations

from pathlib import Path

import click

from network.cli.errors import UserError
from network.hosts.brokers import host_prefix
from network.hosts.certs import CA_DIR, clients_dir, host_certs_dir, make_inventory_pki
from network.hosts.inventory import Inventory, InventoryError, load_inventory
from network.hosts.pki import PkiError

_INVENTORY = click.option(
    "--inventory",
    "inventory_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="the inventory TOML (hosts, their validators, the hub)",
)


def _load(path: Path) -> Inventory:
    try:
        return load_inventory(path)
    except InventoryError as exc:
        raise UserError(str(exc)) from None


@click.group()
def hosts() -> None:
    """A testnet across hosts: check the inventory, make its certificates."""


@hosts.command("check")
@_INVENTORY
def check(inventory_path: Path) -> None:
    """Validate the inventory; print each host's validators, brokers and topic prefix."""
    inventory = _load(inventory_path)
    click.echo(
        f"mode {inventory.mode}; hub on {inventory.hub_host} ({inventory.hub.address}:{inventory.hub_port})"
    )
    for host in inventory.hosts:
        address, port = inventory.broker_for(host.name)
        parts = [f"{host.name} ({host.address})"]
        if host.validators:
            parts.append(f"validators {' '.join(host.validators)} dial mqtts://{address}:{port}")
        if inventory.runs_broker(host.name):
            parts.append(f"own broker bridged to the hub below {host_prefix(host.name)}")
        if host.name == inventory.hub_host:
            parts.append("runs the hub")
        click.echo("  " + "; ".join(parts))


@hosts.command("pki")
@_INVENTORY
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="directory: OUT/ca/ holds the CA (keep it here), OUT/HOST/certs/ goes to HOST",
)
@click.option("--force", is_flag=True, help="re-issue every certificate (same CA)")
def pki(inventory_path: Path, out: Path, force: bool) -> None:
    """Make the CA and every host's TLS certificates (kept if already made).

    Each validator's client certificate is named after it: TLS-only brokers take
    that name as the username, and their ACLs let it publish only as itself.
    """
    inventory = _load(inventory_path)
    try:
        report = make_inventory_pki(inventory, out, force=force)
    except (PkiError, OSError) as exc:
        raise UserError(str(exc)) from None
    click.echo(f"{'made' if report.new_ca else 'kept'} the CA in {out / CA_DIR} (its key stays here)")
    click.echo(f"{len(report.made)} certificates made, {len(report.kept)} kept")
    for host in inventory.hosts:
        click.echo(f"  {host.name}: copy {host_certs_dir(out, host.name)}")
    if inventory.clients:
        click.echo(
            f"  clients ({', '.join(inventory.clients)}): hand out {clients_dir(out)}/NAME.crt and .key with ca.crt"
        )
