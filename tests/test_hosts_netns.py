"""Acceptance of a testnet across hosts, for real: network namespaces stand for machines.

Five namespaces of this test's own (names ``posnet-<pid>-*``, removed after,
whatever happens): a "switch" holding a Linux bridge, and four hosts each
joined to it by one veth pair on the private subnet 10.231.0.0/24 — the
hub (10.231.0.10, only the hub broker: a fault domain of its own, and no
stake on it, so "more than 1/3 away" is about validators alone), alpha
(.11: v1, v2), beta (.12: v3) and gamma (.13: v4). Every host runs its own
TLS-only mosquitto, configured from the inventory exactly as on real
machines and bridged to the hub; its validators dial it with their own
certificates. Nothing outside these namespaces is touched.

Cutting a host's link is ``ip link set <its switch port> down`` in the
switch namespace: the cable pulled at the switch. Four equal stakes: gamma
away (1/4) stalls nobody else; alpha away (1/2) stops finality everywhere
(neither side holds more than 2/3), and bringing it back resumes it. Safety
is read from every node's log: no height ever has two different blocks.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from network.hosts.brokers import (
    CA_CERT,
    BrokerPaths,
    host_acl,
    host_broker_config,
    hub_acl,
    hub_broker_config,
    validator_cert,
)
from network.hosts.certs import host_certs_dir, make_inventory_pki
from network.hosts.inventory import Inventory, load_inventory
from network.testnet.processes import node_argv
from network.transport.broker import mosquitto_path
from tests.support.nodes import LocalNet, NodeProc, agree, make_localnet
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.integration]

PREFIX = f"posnet-{os.getpid()}"
SUBNET = "10.231.0"
HOSTS = {"hub": (10, []), "alpha": (11, ["v1", "v2"]), "beta": (12, ["v3"]), "gamma": (13, ["v4"])}
PORT = 8883
WAIT_S = 180.0  # a loaded 2-core machine running four brokers and four validators
STALL_WINDOW_S = 20.0  # several rounds at these timeouts (2 s, then 3 s, 4 s, ...)

INVENTORY = f"""\
mode = "bridged"

[hub]
host = "hub"
port = {PORT}
""" + "".join(
    f'\n[[hosts]]\nname = "{name}"\naddress = "{SUBNET}.{octet}"\nvalidators = {validators!r}\n'.replace(
        "'", '"'
    )
    for name, (octet, validators) in HOSTS.items()
)


def _netns_problem() -> str | None:
    """Why this machine cannot run the test, or None."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces and veth pairs"
    if shutil.which("ip") is None:
        return "needs iproute2's `ip`"
    if mosquitto_path() is None:
        return "needs mosquitto"
    probe = f"{PREFIX}-probe"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` is unavailable here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def ip(*args: str) -> None:
    """Run ``ip ARGS`` and fail loudly: a half-built lab would make every later check meaningless."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    assert done.returncode == 0, f"ip {' '.join(args)}: {done.stderr.strip()}"


@dataclass
class Lab:
    """The namespaces, the processes started in them, and how to cut and restore a host's link."""

    root: Path
    switch: str
    namespaces: dict[str, str]
    processes: list[subprocess.Popen[bytes]]

    def port(self, host: str) -> str:
        return f"sw-{host}"[:15]

    def cut(self, host: str) -> None:
        ip("-n", self.switch, "link", "set", self.port(host), "down")

    def restore(self, host: str) -> None:
        ip("-n", self.switch, "link", "set", self.port(host), "up")

    def spawn(self, host: str, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.namespaces[host], *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.processes.append(proc)
        return proc


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    problem = _netns_problem()
    if problem is not None:
        pytest.skip(problem)
    switch = f"{PREFIX}-sw"
    namespaces = {host: f"{PREFIX}-{host}" for host in HOSTS}
    made: list[str] = []
    the_lab = Lab(tmp_path, switch, namespaces, [])
    try:
        for ns in (switch, *namespaces.values()):
            ip("netns", "add", ns)
            made.append(ns)
        ip("-n", switch, "link", "add", "br0", "type", "bridge")
        ip("-n", switch, "link", "set", "br0", "up")
        for host, (octet, _) in HOSTS.items():
            ns, port = namespaces[host], the_lab.port(host)
            # Both ends are made inside our namespaces: the machine's own interfaces never change.
            ip("-n", switch, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
            ip("-n", switch, "link", "set", port, "master", "br0")
            ip("-n", switch, "link", "set", port, "up")
            ip("-n", ns, "addr", "add", f"{SUBNET}.{octet}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")
        yield the_lab
    finally:
        for proc in the_lab.processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in the_lab.processes:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for ns in reversed(made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@dataclass
class NetnsNode(NodeProc):
    """A ``posnet node run`` inside a host's namespace, dialling its broker over TLS with its certificate."""

    netns: str = ""
    certs: Path = Path()

    def argv(self) -> list[str]:
        cert, key = validator_cert(self.name)
        return [
            "ip",
            "netns",
            "exec",
            self.netns,
            *node_argv(
                home=self.home, genesis=self.genesis_path, broker_url=self.broker_url, log=self.log_path
            ),
            "--tls-ca",
            str(self.certs / CA_CERT),
            "--tls-cert",
            str(self.certs / cert),
            "--tls-key",
            str(self.certs / key),
        ]


def _start_brokers(lab: Lab, inventory: Inventory, pki: Path) -> dict[str, Path]:
    """Each host's broker (and the hub) from the inventory, as on real machines; their logs."""
    mosquitto = mosquitto_path()
    assert mosquitto is not None
    logs = {}
    for host in HOSTS:
        conf_dir = lab.root / "brokers" / host
        conf_dir.mkdir(parents=True)
        paths = BrokerPaths(certs=str(host_certs_dir(pki, host)), acl=str(conf_dir / "acl"))
        if host == inventory.hub_host:
            config, acl = hub_broker_config(inventory, paths), hub_acl(inventory)
        else:
            config, acl = host_broker_config(inventory, host, paths), host_acl(inventory, host)
        (conf_dir / "acl").write_text(acl)
        # As root mosquitto would drop to its own user, which cannot read our 0600 keys.
        (conf_dir / "mosquitto.conf").write_text(config + "user root\n")
        logs[host] = conf_dir / "mosquitto.log"
        lab.spawn(host, [mosquitto, "-c", str(conf_dir / "mosquitto.conf")], logs[host])
    return logs


def _log_has(path: Path, *needles: str) -> bool:
    text = path.read_text(errors="replace") if path.exists() else ""
    return all(needle in text for needle in needles)


def _heights(nodes: list[NodeProc]) -> dict[str, int]:
    return {node.name: node.height() for node in nodes}


def test_three_hosts_finalize_through_tls_brokers_and_stall_only_without_a_quorum(
    lab: Lab, tmp_path: Path
) -> None:
    inventory_file = tmp_path / "hosts.toml"
    inventory_file.write_text(INVENTORY)
    inventory = load_inventory(inventory_file)
    pki = tmp_path / "deploy"
    make_inventory_pki(inventory, pki)
    broker_logs = _start_brokers(lab, inventory, pki)
    bridges = [f"u'bridge-{host}'" for host in ("alpha", "beta", "gamma")]
    wait_for(
        lambda: _log_has(broker_logs["hub"], *bridges),
        "every host's broker bridged to the hub over TLS",
        WAIT_S,
        diagnostics=lambda: "\n".join(f"{h}: {p.read_text()[-800:]}" for h, p in broker_logs.items()),
    )

    net: LocalNet = make_localnet(tmp_path / "net", "unused", 4, chain_id="posnet-hosts")
    for name, node in list(net.nodes.items()):
        host = inventory.host_of(name)
        address, port = inventory.broker_for(host.name)
        net.nodes[name] = NetnsNode(
            name=name,
            home=node.home,
            log_path=node.log_path,
            genesis_path=node.genesis_path,
            broker_url=f"mqtts://{address}:{port}",
            netns=lab.namespaces[host.name],
            certs=host_certs_dir(pki, host.name),
        )
    nodes = list(net.nodes.values())
    survivors = [net.nodes[n] for n in ("v1", "v2", "v3")]
    diagnostics = net.diagnostics
    try:
        net.start()
        wait_for(
            lambda: all(h >= 3 for h in _heights(nodes).values()),
            "all four validators finalizing",
            WAIT_S,
            diagnostics=diagnostics,
        )
        assert all(node.events("broker_connected") for node in nodes)

        # gamma (v4, 1/4 of the stake) away: the other three go on, long enough for the hub to drop its bridge.
        at_cut = max(_heights(nodes).values())
        lab.cut("gamma")
        cut_at = time.monotonic()
        wait_for(
            lambda: (
                _log_has(broker_logs["hub"], "posnet-bridge-gamma has exceeded timeout")
                and all(h >= at_cut + 5 for h in _heights(survivors).values())
            ),
            "v1..v3 finalizing while gamma is cut off (and the hub seeing gamma's bridge gone)",
            WAIT_S,
            diagnostics=diagnostics,
        )
        isolated = net.nodes["v4"].height()
        assert isolated <= at_cut + 1, (
            f"v4 finalized {isolated} > {at_cut} + 1 while cut off: the cut did not cut"
        )
        print(
            f"gamma cut: v1..v3 went from {at_cut} to {min(_heights(survivors).values())} "
            f"in {time.monotonic() - cut_at:.1f} s; v4 stayed at {isolated}"
        )
        lab.restore("gamma")
        restored_at, target = time.monotonic(), max(_heights(survivors).values())
        wait_for(
            lambda: net.nodes["v4"].height() >= target,
            "v4 catching up after gamma's link is back",
            WAIT_S,
            diagnostics=diagnostics,
        )
        print(f"gamma restored: v4 caught up to height {target} in {time.monotonic() - restored_at:.1f} s")

        # alpha (v1, v2: half the stake) away: nobody has more than 2/3, finality stops everywhere.
        lab.cut("alpha")
        cut_at = time.monotonic()
        time.sleep(3.0)  # a height already decided may still be logged: let it land before the window
        before = _heights(nodes)
        deadline = time.monotonic() + STALL_WINDOW_S
        while time.monotonic() < deadline:
            grown = {n: h for n, h in _heights(nodes).items() if h > before[n]}
            assert not grown, f"finalized without a quorum while alpha was cut off: {before} -> {grown}"
            time.sleep(0.5)
        assert _log_has(broker_logs["hub"], "posnet-bridge-alpha has exceeded timeout")
        print(f"alpha cut: no node finalized for {time.monotonic() - cut_at - 3.0:.1f} s (heights {before})")

        lab.restore("alpha")
        restored_at, top = time.monotonic(), max(before.values())
        wait_for(
            lambda: max(_heights(nodes).values()) > top, "a first height after alpha's link is back", WAIT_S
        )
        first = time.monotonic() - restored_at
        wait_for(
            lambda: all(h >= top + 2 for h in _heights(nodes).values()),
            "finality resuming everywhere after alpha's link is back",
            WAIT_S,
            diagnostics=diagnostics,
        )
        print(
            f"alpha restored: first new height after {first:.1f} s, "
            f"all four at >= {top + 2} after {time.monotonic() - restored_at:.1f} s"
        )
    finally:
        net.stop()
    chain = agree(nodes)  # no height with two different blocks, on any node, at any time
    assert len(chain) >= max(before.values()) + 2
