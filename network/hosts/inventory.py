"""The inventory of a testnet spread over several machines: hosts, their validators, the hub.

One TOML file, written by the operator, from which everything per host is
made (certificates, broker configurations, compose files), so the hosts
cannot disagree about who runs where. Example::

    mode = "bridged"              # or "shared": one broker (the hub) for everyone

    [hub]
    host = "hub"                  # the host that runs the hub broker
    port = 8883                   # where the hub listens (TLS), default 8883

    [[hosts]]
    name = "alpha"                # a DNS label: also the compose project and the topic prefix
    address = "10.231.0.11"       # how other hosts reach it (IP or DNS name)
    validators = ["v1", "v2"]
    broker_port = 8883            # bridged only: its own broker's TLS port, default 8883

    [[hosts]]
    name = "hub"
    address = "10.231.0.10"

(``clients = ["wallet"]``, before the tables, names certificates that may
send transactions and read the chain, nothing else.)


Two modes, because they fail differently. ``shared``: every validator dials
the hub directly; the hub is the one broker (one fault domain for all).
``bridged``: every host with validators runs its own broker, bridged to the
hub; a host's validators keep talking to each other when the hub is away, and
the hub carries nothing but bridges.

Validation is strict (unknown keys, wrong types, duplicates, dangling
references) and every error is one line naming the field, as
``hosts[1].address: ...``. Standard library only: docker/gen-compose.py reads
inventories without posnet's dependencies installed.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.core.fields import FieldReader

MODES = ("bridged", "shared")
DEFAULT_TLS_PORT = 8883
RESERVED_HOST_NAMES = ("ca", "clients")
"""Directories of `posnet hosts pki`'s output beside the hosts' own: no host may be called so."""
BRIDGE_USER_PREFIX = "bridge-"
"""Common names ``bridge-<host>`` belong to brokers' bridges; no validator may take one."""

_HOST_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$")
_VALIDATOR_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_DNS_NAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


class InventoryError(ValueError):
    """An inventory that cannot be used; the message is one line starting with the field."""


@dataclass(frozen=True)
class Host:
    """One machine: how others reach it, which validators it runs, its broker's port (bridged)."""

    name: str
    address: str
    validators: tuple[str, ...]
    broker_port: int = DEFAULT_TLS_PORT


@dataclass(frozen=True)
class Inventory:
    """A validated inventory (see the module docstring for the file)."""

    mode: str
    hub_host: str
    hub_port: int
    hosts: tuple[Host, ...]
    clients: tuple[str, ...] = ()  # certificate names that may publish transactions and read the chain

    def host(self, name: str) -> Host:
        """The host called ``name``; InventoryError listing the known ones otherwise."""
        for host in self.hosts:
            if host.name == name:
                return host
        known = ", ".join(h.name for h in self.hosts)
        raise InventoryError(f"host {name!r} is not in the inventory (hosts: {known})")

    @property
    def hub(self) -> Host:
        return self.host(self.hub_host)

    @property
    def validators(self) -> tuple[str, ...]:
        """Every validator, in inventory order."""
        return tuple(v for host in self.hosts for v in host.validators)

    def validator_hosts(self) -> tuple[Host, ...]:
        """The hosts that run validators (in bridged mode: those that run a broker of their own)."""
        return tuple(h for h in self.hosts if h.validators)

    def host_of(self, validator: str) -> Host:
        for host in self.hosts:
            if validator in host.validators:
                return host
        raise InventoryError(f"validator {validator!r} is not in the inventory")

    def runs_broker(self, name: str) -> bool:
        """Whether host ``name`` runs a broker of its own (bridged mode, with validators)."""
        return self.mode == "bridged" and bool(self.host(name).validators)

    def broker_for(self, name: str) -> tuple[str, int]:
        """(address, port) that host ``name``'s validators dial: their own broker, or the hub when shared."""
        host = self.host(name)
        if self.runs_broker(name):
            return host.address, host.broker_port
        return self.hub.address, self.hub_port


def bridge_user(host: str) -> str:
    """The common name (hence broker username) of host ``host``'s bridge to the hub."""
    return BRIDGE_USER_PREFIX + host


def load_inventory(path: Path) -> Inventory:
    """Read and validate ``path``; InventoryError (one line, prefixed with the file) on any problem."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise InventoryError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise InventoryError(f"{path}: not valid TOML ({exc})") from None
    try:
        return parse_inventory(data)
    except InventoryError as exc:
        raise InventoryError(f"{path}: {exc}") from None


_read = FieldReader(InventoryError)


def _keys(where: str, table: Any, allowed: set[str], required: set[str]) -> dict[str, Any]:
    checked = _read.table(table, where, allowed)
    for key in sorted(required):
        if key not in checked:
            _read.fail(f"{where}.{key}", "missing")
    return dict(checked)


def _port(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise InventoryError(f"{where}: must be a port number in 1..65535, got {value!r}")
    return value


def _address(where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InventoryError(f"{where}: must be a string (an IP address or DNS name), got {value!r}")
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if not _DNS_NAME.match(value):
            raise InventoryError(f"{where}: {value!r} is neither an IP address nor a DNS name") from None
    return value


def _host(where: str, table: Any, mode: str) -> Host:
    allowed = {"name", "address", "validators"} | ({"broker_port"} if mode == "bridged" else set())
    if mode != "bridged" and isinstance(table, dict) and "broker_port" in table:
        raise InventoryError(
            f'{where}.broker_port: only in mode = "bridged" (shared: everyone dials the hub)'
        )
    table = _keys(where, table, allowed, {"name", "address"})
    name = table["name"]
    if not isinstance(name, str) or not _HOST_NAME.match(name):
        raise InventoryError(
            f"{where}.name: must be a DNS label (a-z, 0-9, '-', at most 32, not starting or ending with '-'), got {name!r}"
        )
    if name in RESERVED_HOST_NAMES:
        raise InventoryError(f"{where}.name: {name!r} is taken by the certificate layout (OUT/{name}/)")
    validators = table.get("validators", [])
    if not isinstance(validators, list):
        raise InventoryError(f"{where}.validators: must be a list of validator names")
    for i, validator in enumerate(validators):
        if not isinstance(validator, str) or not _VALIDATOR_NAME.match(validator):
            raise InventoryError(
                f"{where}.validators[{i}]: must be a name of letters, digits, '.', '_', '-', got {validator!r}"
            )
        if validator.startswith(BRIDGE_USER_PREFIX):
            raise InventoryError(
                f"{where}.validators[{i}]: names starting {BRIDGE_USER_PREFIX!r} are the bridges'"
            )
    return Host(
        name=name,
        address=_address(f"{where}.address", table["address"]),
        validators=tuple(validators),
        broker_port=_port(f"{where}.broker_port", table.get("broker_port", DEFAULT_TLS_PORT)),
    )


def parse_inventory(data: Any) -> Inventory:
    """Validate an inventory already read from TOML (a dict); InventoryError names the field."""
    data = _keys("inventory", data, {"mode", "hub", "hosts", "clients"}, {"hub", "hosts"})
    mode = data.get("mode", "bridged")
    if mode not in MODES:
        raise InventoryError(f"mode: must be one of {', '.join(MODES)}, got {mode!r}")
    hub = _keys("hub", data["hub"], {"host", "port"}, {"host"})
    hub_port = _port("hub.port", hub.get("port", DEFAULT_TLS_PORT))
    raw_hosts = data["hosts"]
    if not isinstance(raw_hosts, list) or not raw_hosts:
        raise InventoryError("hosts: must be a non-empty array of tables ([[hosts]])")
    hosts = tuple(_host(f"hosts[{i}]", table, mode) for i, table in enumerate(raw_hosts))
    seen_hosts: dict[str, int] = {}
    seen_validators: dict[str, int] = {}
    for i, host in enumerate(hosts):
        if host.name in seen_hosts:
            raise InventoryError(f"hosts[{i}].name: {host.name!r} is also hosts[{seen_hosts[host.name]}]")
        seen_hosts[host.name] = i
        for validator in host.validators:
            if validator in seen_validators:
                other = hosts[seen_validators[validator]].name
                raise InventoryError(f"hosts[{i}].validators: {validator!r} also runs on host {other!r}")
            seen_validators[validator] = i
    if not seen_validators:
        raise InventoryError("hosts: no host runs a validator")
    if not isinstance(hub["host"], str) or hub["host"] not in seen_hosts:
        raise InventoryError(f"hub.host: {hub['host']!r} is not one of the hosts ({', '.join(seen_hosts)})")
    hub_host = hosts[seen_hosts[hub["host"]]]
    if mode == "bridged" and hub_host.validators and hub_host.broker_port == hub_port:
        raise InventoryError(
            f"hub.port: {hub_port} is also the broker_port of host {hub_host.name!r}, "
            "which runs its own broker beside the hub"
        )
    clients = _clients(data.get("clients", []), set(seen_validators))
    return Inventory(mode=mode, hub_host=hub_host.name, hub_port=hub_port, hosts=hosts, clients=clients)


def _clients(raw: Any, validators: set[str]) -> tuple[str, ...]:
    """The client names: certificate common names like a validator's, but never one of theirs."""
    if not isinstance(raw, list):
        raise InventoryError("clients: must be a list of client names")
    seen: set[str] = set()
    for i, name in enumerate(raw):
        where = f"clients[{i}]"
        if not isinstance(name, str) or not _VALIDATOR_NAME.match(name):
            raise InventoryError(f"{where}: must be a name of letters, digits, '.', '_', '-', got {name!r}")
        if name.startswith(BRIDGE_USER_PREFIX):
            raise InventoryError(f"{where}: names starting {BRIDGE_USER_PREFIX!r} are the bridges'")
        if name in validators:
            raise InventoryError(
                f"{where}: {name!r} is a validator; a client certificate must not pass for one"
            )
        if name in seen:
            raise InventoryError(f"{where}: {name!r} is listed twice")
        seen.add(name)
    return tuple(raw)
