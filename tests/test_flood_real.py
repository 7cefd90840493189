"""A real 4-validator testnet over mosquitto keeps finalizing while junk floods the transaction channel.

Each node's transport queues inbound messages in lanes by channel group and
serves consensus first (network/transport/inbox.py), so the votes a height
needs are not queued behind, or dropped for, the junk. The test asserts the
outcome only (heights grow while the flood is published and again while
the nodes still drain it; nothing crashes) and prints
the rates it saw, with and without the flood, for the record: no timing is
asserted on a loaded machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from pathlib import Path

import paho.mqtt.client as paho_mqtt
import pytest
from prometheus_client.parser import text_string_to_metric_families

from network.transport.broker import BrokerProcess, mosquitto_available, parse_broker_url
from tests.support.nodes import LocalNet, make_localnet, running, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.broker,
    pytest.mark.skipif(not mosquitto_available(), reason="mosquitto not installed"),
]

FLOOD = 50_000
QUIET_S = 10.0


def min_height(net: LocalNet) -> int:
    return min(net.heights().values())


def dropped(metrics_text: str) -> dict[str, float]:
    """posnet_messages_dropped by reason."""
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "posnet_messages_dropped_total":
                counts[sample.labels["reason"]] = sample.value
    return counts


def junk(rng: random.Random) -> bytes:
    return rng.randbytes(rng.randint(50, 300))


def flood(broker: BrokerProcess, chain_id: str, count: int) -> None:
    """Publish ``count`` junk messages on the transaction channel as fast as one client can write them."""
    host, port = parse_broker_url(broker.url)
    rng = random.Random(5)
    client = paho_mqtt.Client(paho_mqtt.CallbackAPIVersion.VERSION2, client_id="posnet-flooder")
    client.connect(host, port)
    client.loop_start()
    try:
        sent = [client.publish(f"posnet/{chain_id}/tx", junk(rng), qos=0) for _ in range(count)]
        sent[-1].wait_for_publish(timeout=300)
    finally:
        client.disconnect()
        client.loop_stop()


async def test_a_testnet_keeps_finalizing_through_a_flood_of_junk_transactions(
    mosquitto: BrokerProcess, tmp_path: Path
) -> None:
    net = make_localnet(tmp_path / "net", mosquitto.url, 4, metrics=True)
    with running(net):
        await wait_until(lambda: min_height(net) >= 3, what="height 3", net=net)
        quiet_start, quiet_from = time.monotonic(), min_height(net)
        await asyncio.sleep(QUIET_S)
        quiet_s, quiet_heights = time.monotonic() - quiet_start, min_height(net) - quiet_from

        flood_start, flood_from, flood_wall = time.monotonic(), min_height(net), time.time()
        await asyncio.to_thread(flood, mosquitto, net.chain_id, FLOOD)
        published_s, published_at = time.monotonic() - flood_start, min_height(net)

        def all_junk_handled() -> bool:  # every node received, rejected or dropped each junk message
            return all(sum(dropped(node.metrics()).values()) >= FLOOD for node in net.nodes.values())

        with contextlib.suppress(AssertionError):  # a broker may shed some: the count then never comes
            await wait_until(all_junk_handled, what="every node to handle the flood", net=net, interval=0.5)
        flood_s, flood_heights = time.monotonic() - flood_start, min_height(net) - flood_from
        timeouts = sum(1 for e in net.nodes["v1"].events("round_timeout") if e["ts"] >= flood_wall)

        await wait_until(
            lambda: min_height(net) >= flood_from + flood_heights + 3, what="finality after", net=net
        )
        drops = {name: dropped(node.metrics()) for name, node in net.nodes.items()}
        print(
            f"\nwithout flood: {quiet_heights} heights in {quiet_s:.1f} s ({quiet_heights / quiet_s:.2f}/s); "
            f"{FLOOD} junk tx published in {published_s:.1f} s, handled by all in {flood_s:.1f} s: "
            f"{flood_heights} heights ({flood_heights / flood_s:.2f}/s) meanwhile, v1 saw {timeouts} round timeouts"
        )
        for name, counts in drops.items():
            print(f"{name} dropped: {dict(sorted((k, int(v)) for k, v in counts.items()))}")
        for node in net.nodes.values():
            assert node.running, node.stderr()
            assert not node.events("fatal") and not node.events("error"), node.events()[-5:]
    # Growth in both parts of the flood: while it is published, and while the nodes still drain it.
    assert published_at > flood_from, "no height was finalized while the flood was published"
    assert flood_from + flood_heights > published_at, (
        "no height was finalized while the nodes drained the flood"
    )
