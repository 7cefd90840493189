"""Real nodes over mosquitto: a store wiped or restored, and a replayed status, change nothing they must not.

An attacker on the broker (or an operator's mistake) must not be able to
make an honest validator double-sign or start early:
- a node whose store is wiped (or a first start with an empty home on a
  running chain) used to believe it was at genesis and sign height 1 again;
- a store restored from an old copy signed again at heights it had signed;
- an old "online" status re-published for a validator whose node is down
  opened the others' start gate, and the late validator was jailed.

Every vote and proposal is read straight off the broker by a raw subscriber
and checked for two different messages at one (signer, height, round, step).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import aiomqtt
import pytest

from network.transport.broker import BrokerProcess, mosquitto_available, parse_broker_url
from network.transport.mqtt import topic
from node.core.channels import status_channel
from node.core.envelopes import status_bytes
from node.core.events import SIGNING_ENABLED
from node.core.startgate import ALL_ONLINE, DEADLINE
from tests.support.nodes import LocalNet, make_localnet, running, wait_until
from tests.test_runtime_mqtt import consensus_watcher, double_signs, min_height

needs_mosquitto = pytest.mark.skipif(not mosquitto_available(), reason="mosquitto not installed")
STORE_FILES = ("node.sqlite3", "node.sqlite3-wal", "node.sqlite3-shm")


def equivocation_penalties(net: LocalNet) -> list[dict[str, object]]:
    """Evidence and tombstones: what a double sign costs (downtime jailing for the restarts is fair)."""
    return [
        e
        for node in net.nodes.values()
        for e in node.events()
        if e.get("event") in ("evidence", "tombstoned")
    ]


def wipe(home: Path) -> None:
    for name in STORE_FILES:
        (home / name).unlink(missing_ok=True)


def copy_store(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in STORE_FILES:
        (target / name).unlink(missing_ok=True)
        if (source / name).exists():
            shutil.copy2(source / name, target / name)


@pytest.mark.slow
@pytest.mark.integration
@needs_mosquitto
@pytest.mark.broker
async def test_a_node_whose_store_was_wiped_syncs_first_and_signs_nothing_that_conflicts(
    mosquitto: BrokerProcess, tmp_path: Path
) -> None:
    net = make_localnet(tmp_path / "net", mosquitto.url, 4)
    v4 = net.nodes["v4"]
    async with consensus_watcher(mosquitto, net.chain_id) as seen:
        with running(net):
            await wait_until(lambda: min_height(net) >= 6, what="height 6", net=net)
            v4.kill()
            killed_at, opened_before = v4.height(), len(v4.events(SIGNING_ENABLED))
            wipe(v4.home)  # as a first start on a chain past genesis: an empty home with the key
            v4.start()
            await wait_until(
                lambda: len(v4.events(SIGNING_ENABLED)) > opened_before, what="v4 signing again", net=net
            )
            target = max(net.heights().values()) + 6
            await wait_until(lambda: min_height(net) >= target, what="six more heights with v4", net=net)
    assert double_signs(seen) == [], double_signs(seen)
    assert equivocation_penalties(net) == []
    opened = v4.events(SIGNING_ENABLED)[-1]
    assert opened["network_height"] >= killed_at and opened["height"] >= killed_at, opened
    restarted = v4.events("started")[-1]
    assert restarted["height"] == 0  # it really started from nothing


@pytest.mark.slow
@pytest.mark.integration
@needs_mosquitto
@pytest.mark.broker
async def test_a_node_whose_store_was_restored_from_an_old_copy_signs_nothing_that_conflicts(
    mosquitto: BrokerProcess, tmp_path: Path
) -> None:
    net = make_localnet(tmp_path / "net", mosquitto.url, 4)
    v4, backup = net.nodes["v4"], tmp_path / "backup"
    async with consensus_watcher(mosquitto, net.chain_id) as seen:
        with running(net):
            await wait_until(lambda: min_height(net) >= 4, what="height 4", net=net)
            v4.kill()
            copy_store(v4.home, backup)  # the operator's "backup"
            copied_at = v4.height()
            v4.start()
            await wait_until(lambda: len(v4.events(SIGNING_ENABLED)) == 2, what="v4 signing again", net=net)
            await wait_until(lambda: v4.height() >= copied_at + 8, what="v4 eight heights on", net=net)
            v4.kill()
            copy_store(backup, v4.home)  # ... restored over a newer store
            v4.start()
            await wait_until(lambda: len(v4.events(SIGNING_ENABLED)) == 3, what="v4 signing again", net=net)
            target = max(net.heights().values()) + 6
            await wait_until(lambda: min_height(net) >= target, what="six more heights with v4", net=net)
    assert double_signs(seen) == [], double_signs(seen)
    assert equivocation_penalties(net) == []
    assert (
        v4.events("started")[-1]["height"] == copied_at or v4.events("started")[-1]["height"] < copied_at + 8
    )


@pytest.mark.slow
@pytest.mark.integration
@needs_mosquitto
@pytest.mark.broker
async def test_an_old_online_status_replayed_for_a_validator_that_is_down_does_not_open_the_start_gate(
    mosquitto: BrokerProcess, tmp_path: Path
) -> None:
    """v4's node never starts; someone re-publishes (retained) its status captured a minute earlier."""
    net = make_localnet(tmp_path / "net", mosquitto.url, 4)
    captured = status_bytes(
        net.chain_id, "v4", 1, 0, True, net.keys["v4"], ts_ms=int(time.time() * 1000) - 60_000
    )
    host, port = parse_broker_url(mosquitto.url)
    async with aiomqtt.Client(host, port, identifier="posnet-test-replayer") as client:
        await client.publish(topic(net.chain_id, status_channel("v4")), captured, qos=1, retain=True)
    for name in ("v1", "v2", "v3"):
        net.nodes[name].genesis_wait_s = 6
    try:
        net.start(["v1", "v2", "v3"])  # v4's node stays down
        await wait_until(
            lambda: all(net.nodes[n].events("start_gate") for n in ("v1", "v2", "v3")),
            what="the three nodes through their start gate",
            net=net,
        )
    finally:
        net.stop()
    for name in ("v1", "v2", "v3"):
        (gate,) = net.nodes[name].events("start_gate")
        assert gate["reason"] != ALL_ONLINE and "v4" in gate["missing"], gate
        assert gate["reason"] == DEADLINE, gate
