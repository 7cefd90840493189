"""TLS-only brokers made from an inventory, for real on loopback: who gets in, who may publish what.

Real mosquitto processes configured exactly as ``docker/gen-compose.py
--host`` configures them (only the certificate paths differ), real clients:

- no certificate: the TLS handshake is refused, no MQTT session ever starts;
- v1's own certificate: v1 may publish its status but not v2's; with MQTT 5
  the broker answers the forged publish with PUBACK "not authorized" and a
  subscriber never sees it, while v1's allowed publish in the same session
  arrives;
- a validator node started with ``--tls-*`` finalizes through such a broker;
- bridged brokers deliver a message to every host exactly once (no loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import paho.mqtt.client as paho
import pytest

from network.hosts.brokers import (
    CA_CERT,
    BrokerPaths,
    client_cert,
    host_acl,
    host_broker_config,
    hub_acl,
    hub_broker_config,
    validator_cert,
)
from network.hosts.certs import clients_dir, host_certs_dir, make_inventory_pki
from network.hosts.inventory import Inventory, parse_inventory
from network.hosts.pki import make_ca
from network.transport.broker import BrokerProcess, free_port, mosquitto_available, mosquitto_path
from network.transport.tls import TlsFiles, client_context
from tests.support.nodes import LocalNet, make_localnet, running, wait_until
from tests.support.waiting import wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.broker,
    pytest.mark.skipif(not mosquitto_available(), reason="needs mosquitto"),
]

REPO_ROOT = Path(__file__).resolve().parent.parent
CHAIN = "posnet-tls"
NOT_AUTHORIZED = 0x87


class TlsMosquitto(BrokerProcess):
    """A mosquitto started from a generated configuration; ready when a certified client gets a CONNACK."""

    def __init__(self, config: str, port: int, workdir: Path, probe: ssl.SSLContext) -> None:
        super().__init__("mosquitto", "127.0.0.1", port, workdir)
        self.config, self.probe = config, probe

    def command(self) -> list[str]:
        binary = mosquitto_path()
        assert binary is not None
        path = self.workdir / "mosquitto.conf"
        # As root mosquitto would drop to its own user, which cannot read the 0600 keys.
        path.write_text(self.config + "user root\n")
        return [binary, "-c", str(path)]

    def _wait_ready(self) -> None:
        wait_for(lambda: _mqtt_connack(self.port, self.probe) == 0, "a TLS broker accepting", 30)


def _mqtt_connack(port: int, context: ssl.SSLContext) -> int | None:
    """The CONNACK return code a TLS client gets, or None when no MQTT session starts at all."""
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
        ):
            sock.sendall(b"\x10\x11\x00\x04MQTT\x04\x02\x00\x0a\x00\x05probe")
            answer = sock.recv(4)
            return answer[3] if len(answer) == 4 and answer[0] == 0x20 else None
    except (OSError, ssl.SSLError):
        return None


def _inventory(mode: str, ports: dict[str, int], hub_port: int) -> Inventory:
    hosts = [
        {"name": "alpha", "address": "127.0.0.1", "validators": ["v1", "v2"]},
        {"name": "beta", "address": "127.0.0.1", "validators": ["v3"]},
        {"name": "gamma", "address": "127.0.0.1", "validators": ["v4"]},
        {"name": "hub", "address": "127.0.0.1"},
    ]
    if mode == "bridged":
        for host in hosts:
            if host["name"] in ports:
                host["broker_port"] = ports[str(host["name"])]
    return parse_inventory(
        {"mode": mode, "hub": {"host": "hub", "port": hub_port}, "hosts": hosts, "clients": ["wallet"]}
    )


def _client_files(pki: Path, host: str, validator: str | None) -> TlsFiles:
    certs = host_certs_dir(pki, host)
    if validator is None:
        return TlsFiles(certs / CA_CERT)
    cert, key = validator_cert(validator)
    return TlsFiles(certs / CA_CERT, certs / cert, certs / key)


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[tuple[Inventory, Path, TlsMosquitto]]:
    """One shared TLS-only broker (the hub) for v1..v4, as ``mode = "shared"`` deploys it."""
    inventory = _inventory("shared", {}, free_port())
    pki = tmp_path / "deploy"
    make_inventory_pki(inventory, pki)
    acl = tmp_path / "hub" / "acl"
    acl.parent.mkdir()
    acl.write_text(hub_acl(inventory))
    config = hub_broker_config(inventory, BrokerPaths(str(host_certs_dir(pki, "hub")), str(acl)))
    broker = TlsMosquitto(
        config, inventory.hub_port, tmp_path / "hub", client_context(_client_files(pki, "alpha", "v1"))
    )
    try:
        broker.start()
        yield inventory, pki, broker
    finally:
        broker.stop(kill=True)


def test_a_client_without_a_certificate_gets_no_session(shared: tuple[Inventory, Path, TlsMosquitto]) -> None:
    _, pki, broker = shared
    assert _mqtt_connack(broker.port, client_context(_client_files(pki, "alpha", "v1"))) == 0
    assert _mqtt_connack(broker.port, client_context(_client_files(pki, "alpha", None))) is None
    with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as plain:  # no TLS at all
        plain.settimeout(5)
        plain.sendall(b"\x10\x11\x00\x04MQTT\x04\x02\x00\x0a\x00\x05probe")
        with contextlib.suppress(OSError):
            assert plain.recv(4)[:1] != b"\x20"
    wait_for(
        lambda: "peer did not return a certificate" in broker.log_tail(50),
        "the broker logging the refusal",
        30,
    )


def _paho(files: TlsFiles, port: int, client_id: str) -> paho.Client:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    client.tls_set_context(client_context(files))
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    return client


def test_v1s_certificate_cannot_publish_as_v2(shared: tuple[Inventory, Path, TlsMosquitto]) -> None:
    _, pki, broker = shared
    received: list[tuple[str, bytes]] = []
    acks: dict[int, int] = {}
    subscribed = threading.Event()
    watcher = _paho(_client_files(pki, "beta", "v3"), broker.port, "watcher")
    watcher.on_message = lambda c, u, m: received.append((m.topic, m.payload))
    watcher.on_subscribe = lambda *args: subscribed.set()
    watcher.subscribe(f"posnet/{CHAIN}/#", qos=1)
    v1 = _paho(_client_files(pki, "alpha", "v1"), broker.port, "holder-of-v1")
    v1.on_publish = lambda c, u, mid, reason, props: acks.__setitem__(mid, reason.value)
    try:
        assert subscribed.wait(30)
        forged = v1.publish(f"posnet/{CHAIN}/status/v2", b"v2 is offline (forged)", qos=1)
        own = v1.publish(f"posnet/{CHAIN}/status/v1", b"v1 is online", qos=1)
        wait_for(lambda: {forged.mid, own.mid} <= set(acks), "both PUBACKs", 30)
        wait_for(lambda: (f"posnet/{CHAIN}/status/v1", b"v1 is online") in received, "v1's own status", 30)
        assert acks[forged.mid] == NOT_AUTHORIZED, (
            f"broker answered {acks[forged.mid]:#x} to the forged publish"
        )
        assert acks[own.mid] == 0
        # Same session, later message already delivered: the forged one is not merely slow.
        assert all(topic != f"posnet/{CHAIN}/status/v2" for topic, _ in received), received
    finally:
        for client in (v1, watcher):
            client.loop_stop()
            client.disconnect()


def _tls_localnet(pki: Path, broker: TlsMosquitto, root: Path, metrics: bool = False) -> LocalNet:
    """A one-validator chain whose node dials the TLS broker with v1's certificate."""
    net = make_localnet(root, f"mqtts://127.0.0.1:{broker.port}", 1, chain_id=CHAIN, metrics=metrics)
    files = _client_files(pki, "alpha", "v1")
    net.nodes["v1"].extra_args = [
        *("--tls-ca", str(files.ca), "--tls-cert", str(files.cert), "--tls-key", str(files.key))
    ]
    return net


async def test_a_node_with_its_certificate_finalizes_over_tls(
    shared: tuple[Inventory, Path, TlsMosquitto], tmp_path: Path
) -> None:
    _, pki, broker = shared
    net = _tls_localnet(pki, broker, tmp_path / "net")
    node = net.nodes["v1"]
    with running(net):
        await wait_until(lambda: node.height() >= 2, what="v1 finalizing through the TLS broker", net=net)
        assert "u'v1'" in broker.log_tail(200)  # the certificate's name is the broker username


def test_a_clients_certificate_sends_transactions_and_nothing_else(
    shared: tuple[Inventory, Path, TlsMosquitto],
) -> None:
    _, pki, broker = shared
    acks: dict[int, int] = {}
    wallet = _paho(_wallet_files(pki), broker.port, "wallet")
    wallet.on_publish = lambda c, u, mid, reason, props: acks.__setitem__(mid, reason.value)
    try:
        tx = wallet.publish(f"posnet/{CHAIN}/tx", b"a transaction", qos=1)
        vote = wallet.publish(f"posnet/{CHAIN}/consensus", b"a vote", qos=1)
        wait_for(lambda: {tx.mid, vote.mid} <= set(acks), "both PUBACKs", 30)
        assert acks[tx.mid] < 0x80, f"{acks[tx.mid]:#x}"  # success (0x10: no subscriber yet)
        assert acks[vote.mid] == NOT_AUTHORIZED
    finally:
        wallet.loop_stop()
        wallet.disconnect()


def _wallet_files(pki: Path) -> TlsFiles:
    cert, key = client_cert("wallet")
    return TlsFiles(clients_dir(pki) / CA_CERT, clients_dir(pki) / cert, clients_dir(pki) / key)


async def test_posnet_tx_reaches_the_chain_through_a_tls_broker_with_a_clients_certificate(
    shared: tuple[Inventory, Path, TlsMosquitto], tmp_path: Path
) -> None:
    _, pki, broker = shared
    url = f"mqtts://127.0.0.1:{broker.port}"
    net = _tls_localnet(pki, broker, tmp_path / "net", metrics=True)
    node = net.nodes["v1"]
    wallet = _wallet_files(pki)
    command = [
        sys.executable, "-m", "network.cli", "tx", "transfer", "v1", "1",
        "--key", str(node.home / "key.json"), "--broker", url, "--genesis", str(net.genesis_path),
        "--url", f"http://127.0.0.1:{node.metrics_port}", "--no-check", "--json", "--timeout", "60",
        "--tls-ca", str(wallet.ca), "--tls-cert", str(wallet.cert), "--tls-key", str(wallet.key),
    ]  # fmt: skip
    with running(net):
        await wait_until(lambda: node.height() >= 2, what="v1 finalizing through the TLS broker", net=net)
        done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
        outcome = json.loads(done.stdout.strip().splitlines()[-1])
        assert outcome["status"] in ("applied", "rejected") and outcome["stage"] == "chain", done
        assert outcome["height"] >= 2
        assert "u'wallet'" in broker.log_tail(200)
        plain = subprocess.run(command[:-6], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
        assert plain.returncode == 2 and "mqtts needs a CA file (--tls-ca)" in plain.stderr, plain


def test_bridged_brokers_deliver_everything_once_and_loop_nothing(tmp_path: Path) -> None:
    ports = {host: free_port() for host in ("alpha", "beta", "gamma")}
    inventory = _inventory("bridged", ports, free_port())
    pki = tmp_path / "deploy"
    make_inventory_pki(inventory, pki)
    brokers = []
    try:
        for host in ("hub", "alpha", "beta", "gamma"):
            acl = tmp_path / host / "acl"
            acl.parent.mkdir()
            paths = BrokerPaths(str(host_certs_dir(pki, host)), str(acl))
            if host == "hub":
                acl.write_text(hub_acl(inventory))
                config, port = hub_broker_config(inventory, paths), inventory.hub_port
                probe_files = TlsFiles(
                    host_certs_dir(pki, "alpha") / CA_CERT,
                    host_certs_dir(pki, "alpha") / "bridge.crt",
                    host_certs_dir(pki, "alpha") / "bridge.key",
                )
            else:
                acl.write_text(host_acl(inventory, host))
                config, port = host_broker_config(inventory, host, paths), ports[host]
                probe_files = _client_files(pki, host, inventory.host(host).validators[0])
            broker = TlsMosquitto(config, port, tmp_path / host, client_context(probe_files))
            brokers.append(broker)
            broker.start()
        wait_for(
            lambda: all(f"u'bridge-{h}'" in brokers[0].log_tail(100) for h in ports),
            "three bridges connected to the hub",
            60,
        )
        got = asyncio.run(_exchange(pki, ports))
    finally:
        for broker in brokers:
            broker.stop(kill=True)
    for who in ("v1", "v3", "v4"):
        for payload in (b"from-alpha", b"from-gamma"):
            assert got[(who, payload)] == 1, f"{who} got {payload!r} {got[(who, payload)]} times: {dict(got)}"


async def _exchange(pki: Path, ports: dict[str, int]) -> Counter[tuple[str, bytes]]:
    """One subscriber per host; one message from alpha and one from gamma; count what each sees."""
    got: Counter[tuple[str, bytes]] = Counter()
    ready = {host: asyncio.Event() for host in ports}
    subscribers = {"alpha": "v1", "beta": "v3", "gamma": "v4"}

    async def watch(host: str) -> None:
        context = client_context(_client_files(pki, host, subscribers[host]))
        async with aiomqtt.Client("127.0.0.1", ports[host], identifier=f"w-{host}", tls_context=context) as c:
            await c.subscribe(f"posnet/{CHAIN}/consensus", qos=1)
            ready[host].set()
            async for message in c.messages:
                got[(subscribers[host], bytes(message.payload))] += 1  # type: ignore[arg-type]

    async def send(host: str, validator: str, payload: bytes) -> None:
        context = client_context(_client_files(pki, host, validator))
        async with aiomqtt.Client("127.0.0.1", ports[host], identifier=f"s-{host}", tls_context=context) as c:
            await c.publish(f"posnet/{CHAIN}/consensus", payload, qos=1)

    tasks = [asyncio.create_task(watch(host)) for host in ports]
    try:
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in ready.values())), 30)
        await asyncio.sleep(1.0)  # the bridges' own subscriptions are not observable; give them a moment
        await send("alpha", "v2", b"from-alpha")
        await send("gamma", "v4", b"from-gamma")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(
            got[(v, p)] >= 1 for v in subscribers.values() for p in (b"from-alpha", b"from-gamma")
        ):
            await asyncio.sleep(0.1)
        await asyncio.sleep(3.0)  # a loop would show as more copies within a bridge round trip or two
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return got


def test_node_refuses_bad_tls_files_with_one_line(tmp_path: Path) -> None:
    net = make_localnet(tmp_path / "net", "mqtts://127.0.0.1:1", 1)
    base = ["--home", str(net.nodes["v1"].home), "--genesis", str(net.genesis_path)]
    missing = tmp_path / "nope.crt"
    junk = tmp_path / "junk.crt"
    junk.write_text("not a certificate\n")
    ca = tmp_path / "ca.crt"
    make_ca().write(ca, tmp_path / "ca.key")
    cases = {
        str(missing): ["--broker", "mqtts://127.0.0.1:1", "--tls-ca", str(missing)],
        str(junk): ["--broker", "mqtts://127.0.0.1:1", "--tls-ca", str(junk)],
        "mqtts needs a CA file": ["--broker", "mqtts://127.0.0.1:1"],
        "not mqtts": ["--broker", "mqtt://127.0.0.1:1", "--tls-ca", str(ca)],
        "--tls-cert and --tls-key need --tls-ca": ["--broker", "mqtt://127.0.0.1:1", "--tls-cert", str(ca)],
        "give both or neither": [
            "--broker",
            "mqtts://127.0.0.1:1",
            "--tls-ca",
            str(ca),
            "--tls-cert",
            str(ca),
        ],
    }
    for needle, args in cases.items():
        done = subprocess.run(
            [sys.executable, "-m", "network.cli", "node", "run", *base, *args],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and needle in lines[0], (needle, done.stderr)
