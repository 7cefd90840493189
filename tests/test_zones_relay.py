"""Zones on the real testnet: the relay holds each copy for its publisher's zone to its receiver's.

First the relay alone against a real mosquitto (who published what is
learned on the way up, the copy is held on the way down, a near copy
overtakes a far one), then `posnet testnet up --zones` with 4 validators in
two zones 200 ms apart: no height finalizes faster than that round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from network.sim.zones import load_zones
from network.testnet import relay as nf
from network.testnet.errors import TestnetError
from network.testnet.layout import Layout, read_state
from network.testnet.logcheck import read_log
from network.testnet.processes import stop_processes
from network.testnet.services import relay_processes
from network.testnet.zonedelay import ZoneDelays, process_zones, protocol_level, publish_key
from network.transport import framing
from network.transport.broker import BrokerProcess
from network.transport.mqtt import MqttTransport
from tests.support.waiting import wait_for, wait_until

REPO_ROOT = Path(__file__).resolve().parent.parent
WAIT_S = 30.0

FAR = """
[rtt_ms]
east = { east = 0, west = 400 }
west = { west = 0 }
[assign]
validators = { a = "east", b = "east", c = "west" }
"""

TWO_ZONES_200 = """
[rtt_ms]
east = { east = 0, west = 200 }
west = { west = 0 }
[assign]
rule = "weights"
weights = { east = 1, west = 1 }
"""


def test_publish_keys_agree_up_and_down_whatever_the_qos_and_properties() -> None:
    topic = framing.mqtt_string("posnet/x/votes")
    qos0_v311 = framing.encode_packet(framing.PUBLISH << 4, topic + b"payload")
    qos1_v5 = framing.encode_packet(
        (framing.PUBLISH << 4) | 2, topic + b"\x00\x07" + b"\x02\x23\x01" + b"payload"
    )
    qos0_v5 = framing.encode_packet(framing.PUBLISH << 4, topic + b"\x00" + b"payload")
    assert publish_key(qos0_v311, 4) == publish_key(qos1_v5, 5) == publish_key(qos0_v5, 5) is not None
    assert publish_key(framing.puback(7), 5) is None
    connect = framing.encode_packet(framing.CONNECT << 4, framing.mqtt_string("MQTT") + bytes([5, 2, 0, 60]))
    assert protocol_level(connect) == 5 and protocol_level(qos0_v5) is None


def test_each_subscriber_takes_a_keys_publishers_in_order() -> None:
    """Gossip re-sends the same bytes: the second copy a node gets is the second publisher's."""
    zones = load_zones(FAR)
    delays = ZoneDelays(zones, {"a": "east", "b": "east", "c": "west"}, random.Random(1))
    delays.published("c", b"k")
    delays.published("a", b"k")
    assert [delays.delay_ms("b", b"k"), delays.delay_ms("b", b"k")] == [200, 0]
    assert delays.delay_ms("c", b"k") == 0  # its own copy, echoed back
    assert delays.delay_ms("b", b"unseen") == 0


@pytest.fixture
async def zoned_relay(tmp_path: Path, mosquitto: BrokerProcess) -> AsyncIterator[nf.Relay]:
    zones = load_zones(FAR, "far.toml")
    placement = zones.assign(["a", "b", "c"])
    delays = ZoneDelays(zones, placement, random.Random(3))
    relay = nf.Relay(tmp_path, mosquitto.url, {"a": 0, "b": 0, "c": 0}, island_kind="mosquitto", zones=delays)
    await relay.start()
    try:
        yield relay
    finally:
        await relay.close()


def _transport(url: str, node: str, subscriptions: list[str]) -> MqttTransport:
    return MqttTransport(
        url,
        "zones",
        node,
        subscriptions=subscriptions,
        offline_status=b"off",
        protocol=5,
        backoff=(0.05, 0.5),
    )


@pytest.mark.integration
@pytest.mark.broker
async def test_the_relay_holds_a_copy_for_its_zones_and_a_near_one_overtakes(zoned_relay: nf.Relay) -> None:
    a, b, c = (_transport(zoned_relay.url(n), n, ["t"]) for n in "abc")
    tasks = [asyncio.create_task(t.run()) for t in (a, b, c)]
    try:
        for t in (a, b, c):
            await wait_until(t.connected.is_set, f"{t.node_id} to connect")
        await asyncio.sleep(0.3)  # subscriptions settle
        started = time.monotonic()
        c.publish("t", b"from-west")
        await asyncio.sleep(0.02)
        a.publish("t", b"from-east")
        first = (await asyncio.wait_for(b.recv(), WAIT_S)).payload
        near_s = time.monotonic() - started
        second = (await asyncio.wait_for(b.recv(), WAIT_S)).payload
        far_s = time.monotonic() - started
        assert (first, second) == (
            b"from-east",
            b"from-west",
        )  # the near copy did not wait behind the far one
        assert near_s < 0.15 and far_s >= 0.195
        assert zoned_relay.zones is not None and zoned_relay.zones.delayed >= 2
    finally:
        for t in (a, b, c):
            await t.close()
        await asyncio.gather(*tasks, return_exceptions=True)


def _latencies(layout: Layout, names: list[str]) -> list[int]:
    return [
        int(e["latency_ms"])
        for name in names
        for e in read_log(layout.log(name)).events
        if e["event"] == "finalized" and not e.get("via_sync")
    ]


def _up(directory: Path, zones: Path | None) -> subprocess.Popen[str]:
    args = ["--validators", "4", "--duration", "60", "--slot-ms", "0", "--quiet", "--dir", str(directory)]
    if zones is not None:
        args += ["--zones", str(zones)]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "network.cli", "testnet", "up", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _stop(up: subprocess.Popen[str], layout: Layout) -> str:
    output = ""
    if up.poll() is None:
        up.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            output = up.communicate(timeout=60)[0]
    with contextlib.suppress(TestnetError):
        state = read_state(layout)
        procs = [(n.pid, n.command, None) for n in state.nodes.values()]
        procs += [(pid, cmd, None) for pid, cmd in relay_processes(layout, state)]
        stop_processes([*procs, (state.broker.pid, state.broker.command, None)], timeout=5)
    return output


@pytest.mark.integration
@pytest.mark.broker
def test_two_zones_200_ms_apart_finalize_no_faster_than_their_round_trip(
    tmp_path: Path, mosquitto: BrokerProcess
) -> None:
    """v1, v2 east and v3, v4 west: a quorum needs the other side, so every height crosses twice."""
    zones = tmp_path / "two.toml"
    zones.write_text(TWO_ZONES_200)
    directory = tmp_path / "net"
    layout = Layout.of(directory)
    names = ["v1", "v2", "v3", "v4"]
    up = _up(directory, zones)
    try:
        wait_for(lambda: len(_latencies(layout, names)) >= 4 * 12, "12 heights on every node", 120)
        applied = json.loads((directory / "faults.applied.json").read_text())
        assert applied["zones"]["placement"] == {"v1": "east", "v2": "east", "v3": "west", "v4": "west"}
        assert applied["zones"]["delayed"] > 0
    finally:
        output = _stop(up, layout)
    assert "zones " in output or up.returncode == 0, output[-2000:]
    latencies = sorted(_latencies(layout, names)[4:])  # height 1 waits for everyone to start
    assert statistics.median(latencies) >= 200, latencies


def test_a_process_is_in_one_zone() -> None:
    """With --processes, validators that share a process must share a zone, or the run is refused."""
    hosts = {"p1": ["v1", "v2"], "p2": ["v3", "v4"]}
    placement, by_process = process_zones(load_zones(TWO_ZONES_200, "two.toml"), hosts)
    assert by_process == {"p1": "east", "p2": "west"} and placement["v2"] == "east"
    spread = load_zones(
        TWO_ZONES_200.replace('rule = "weights"', 'rule = "round-robin"').replace(
            "weights = { east = 1, west = 1 }", ""
        ),
        "rr.toml",
    )
    with pytest.raises(TestnetError, match="process p1 hosts validators in east and west"):
        process_zones(spread, hosts)
