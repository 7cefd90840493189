"""Shared helpers and fixtures for tests that need a real MQTT broker.

Import the fixtures into a test module by assignment (``broker = brokers.broker``)
so pytest finds them there. Every broker runs as its own subprocess on a free
loopback port with its config in the test's tmp dir; nothing is mocked.

Set POSNET_TEST_BROKER_LOG_LEVEL=DEBUG to keep amqtt's full log in each test's
tmp dir (``broker-embedded/embedded.log``) when chasing a flaky failure.

The ``mqtt_setup`` fixture is parametrized over (broker kind, MQTT version):
mosquitto with MQTT 5 and 3.1.1 (skipped when mosquitto is not installed), and the
embedded amqtt broker with MQTT 3.1.1 (the only version amqtt speaks).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import aiomqtt
import pytest

from network.transport.broker import BrokerProcess, mosquitto_available, parse_broker_url, start_broker
from network.transport.mqtt import Inbound, MqttTransport
from tests.support import waiting

REPO_ROOT = Path(__file__).resolve().parents[2]
CHAIN_ID = "testchain"
# Generous: the suite must pass on a loaded 2-core machine.
WAIT_S = 30.0

_needs_mosquitto = pytest.mark.skipif(not mosquitto_available(), reason="mosquitto not installed")


@dataclass(frozen=True)
class MqttSetup:
    """Which broker to start and which MQTT version clients speak to it."""

    kind: str
    protocol: Literal[5, 311]

    def __str__(self) -> str:
        return f"{self.kind}-v{self.protocol}"


SETUPS = [
    pytest.param(MqttSetup("mosquitto", 5), marks=_needs_mosquitto, id="mosquitto-v5"),
    pytest.param(MqttSetup("mosquitto", 311), marks=_needs_mosquitto, id="mosquitto-v311"),
    pytest.param(MqttSetup("embedded", 311), id="embedded-v311"),
]
KINDS = [
    pytest.param("mosquitto", marks=_needs_mosquitto, id="mosquitto"),
    pytest.param("embedded", id="embedded"),
]


def protocol_for(kind: str) -> Literal[5, 311]:
    """The MQTT version to use with a broker kind (amqtt has no MQTT 5)."""
    return 5 if kind == "mosquitto" else 311


@pytest.fixture(params=SETUPS)
def mqtt_setup(request: pytest.FixtureRequest) -> MqttSetup:
    """One (broker kind, protocol) combination per test instance."""
    return request.param


@pytest.fixture
def broker(mqtt_setup: MqttSetup, tmp_path: Path) -> Iterator[BrokerProcess]:
    """A fresh broker subprocess for this test; killed afterwards whatever happened."""
    proc = start_broker(
        mqtt_setup.kind,
        workdir=tmp_path / f"broker-{mqtt_setup.kind}",
        log_level=os.environ.get("POSNET_TEST_BROKER_LOG_LEVEL", "WARNING"),
    )
    try:
        yield proc
    finally:
        proc.stop(kill=True)


def make_transport(
    broker: BrokerProcess,
    node_id: str,
    subscriptions: list[str],
    *,
    protocol: Literal[5, 311] | None = None,
    chain_id: str = CHAIN_ID,
    **kwargs: Any,
) -> MqttTransport:
    """A transport to ``broker`` with test-friendly defaults (fast first retry)."""
    kwargs.setdefault("backoff", (0.1, 1.0))
    return MqttTransport(
        broker.url,
        chain_id,
        node_id,
        subscriptions=subscriptions,
        offline_status=b"offline",
        protocol=protocol or protocol_for(broker.kind),
        **kwargs,
    )


@asynccontextmanager
async def running(transport: MqttTransport, *, wait_connected: bool = True) -> AsyncIterator[None]:
    """Run the transport in a task for the block's duration, then close it cleanly."""
    task = asyncio.create_task(transport.run())
    try:
        if wait_connected:
            await wait_until(transport.connected.is_set, what=f"{transport.client_id} to connect")
        yield
    finally:
        await transport.close()
        await asyncio.wait_for(task, WAIT_S)


async def wait_until(
    predicate: Callable[[], bool], *, timeout: float = WAIT_S, what: str = "condition"
) -> None:
    """Poll ``predicate`` until true; fail the test with ``what`` after ``timeout``."""
    await waiting.wait_until(predicate, what, timeout)


async def recv_n(transport: MqttTransport, n: int, *, timeout: float = WAIT_S) -> list[Inbound]:
    """Receive exactly ``n`` messages, failing after ``timeout`` seconds overall."""
    got: list[Inbound] = []

    async def collect() -> None:
        while len(got) < n:
            got.append(await transport.recv())

    try:
        await asyncio.wait_for(collect(), timeout)
    except TimeoutError:
        raise AssertionError(
            f"{transport.client_id}: got {len(got)}/{n} messages in {timeout:.0f} s; stats {transport.stats}"
        ) from None
    return got


async def recv_matching(
    transport: MqttTransport,
    predicate: Callable[[Inbound], bool],
    *,
    timeout: float = WAIT_S,
    what: str = "a matching message",
) -> Inbound:
    """Receive until a message satisfies ``predicate`` (others are discarded)."""

    async def find() -> Inbound:
        while True:
            message = await transport.recv()
            if predicate(message):
                return message

    try:
        return await asyncio.wait_for(find(), timeout)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}") from None


# A validator stand-in for the last-will test: connects, announces itself online
# (retained), prints "online" once the broker has acknowledged that, then idles until
# it is killed.
STATUS_NODE_SCRIPT = """
import asyncio, sys
from network.transport.mqtt import MqttTransport
from node.core.channels import status_channel

async def main(url, chain_id, node_id, protocol):
    transport = MqttTransport(url, chain_id, node_id, subscriptions=[],
                              offline_status=b"offline", protocol=int(protocol))
    task = asyncio.create_task(transport.run())
    await transport.connected.wait()
    transport.publish(status_channel(node_id), b"online", retain=True)
    while transport.stats["tx"] < 1:
        await asyncio.sleep(0.01)
    print("online", flush=True)
    await task

asyncio.run(main(*sys.argv[1:]))
"""


def spawn_status_node(
    broker: BrokerProcess, node_id: str, protocol: Literal[5, 311]
) -> subprocess.Popen[str]:
    """Start the stand-in validator process (see STATUS_NODE_SCRIPT)."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    argv = [sys.executable, "-c", STATUS_NODE_SCRIPT, broker.url, CHAIN_ID, node_id, str(protocol)]
    return subprocess.Popen(
        argv, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@asynccontextmanager
async def consensus_tap(
    broker: BrokerProcess, chain_id: str, on_payload: Callable[[bytes], None], identifier: str
) -> AsyncIterator[None]:
    """A raw subscriber on the chain's consensus topic, straight off the broker, for the block's duration.

    Every payload published there goes to `on_payload` (the tests decode it
    themselves: this is the outside observer, not a node). Returns once
    subscribed, so nothing published afterwards is missed.
    """
    host, port = parse_broker_url(broker.url)
    ready = asyncio.Event()

    async def watch() -> None:
        async with aiomqtt.Client(host, port, identifier=identifier) as client:
            await client.subscribe([(f"posnet/{chain_id}/consensus", 0), (f"posnet/{chain_id}/votes/+", 0)])
            ready.set()
            async for message in client.messages:
                on_payload(bytes(message.payload))  # type: ignore[arg-type]

    task = asyncio.create_task(watch())
    try:
        await asyncio.wait_for(ready.wait(), 30)
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await task
