"""The MQTT transport against real brokers: delivery, status and will, reconnects, limits.

Each test starts its own broker subprocess on a free loopback port (see
tests/support/brokers.py); waits are bounded polls, never timing assertions.
"""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import sys
import time

import paho.mqtt.client as paho_mqtt
import pytest

from network.transport.broker import (
    BrokerProcess,
    BrokerStartError,
    free_port,
    mqtt_handshake_ok,
    parse_broker_url,
    start_broker,
)
from network.transport.mqtt import Inbound, MqttTransport, detect_protocol, topic
from network.transport.ports import ephemeral_port_range
from network.transport.split import SplitMqttTransport
from node.core.channels import CONSENSUS, TX, status_channel, sync_resp_channel
from tests.support import brokers
from tests.support.brokers import (
    WAIT_S,
    MqttSetup,
    make_transport,
    recv_matching,
    recv_n,
    running,
    spawn_status_node,
    wait_until,
)

pytestmark = [pytest.mark.broker, pytest.mark.integration]

# Fixtures from the shared helper module, made visible to pytest here.
mqtt_setup = brokers.mqtt_setup
broker = brokers.broker


def numbered(sender: str, i: int) -> bytes:
    """A small payload naming its sender and sequence number."""
    return f"{sender}:{i:06d}:".encode() + b"v" * 180


def sequence_from(sender: str, messages: list[Inbound]) -> list[int]:
    """Sequence numbers, in arrival order, of ``sender``'s messages."""
    prefix = f"{sender}:".encode()
    return [int(m.payload.split(b":")[1]) for m in messages if m.payload.startswith(prefix)]


# --- delivery -------------------------------------------------------------------------


async def test_two_transports_exchange_many_messages_in_order(
    broker: BrokerProcess, mqtt_setup: MqttSetup
) -> None:
    count = 2_000
    a = make_transport(broker, "alice", [CONSENSUS], protocol=mqtt_setup.protocol)
    b = make_transport(broker, "bob", [CONSENSUS], protocol=mqtt_setup.protocol)
    async with running(a), running(b):
        for i in range(count):
            assert a.publish(CONSENSUS, numbered("alice", i))
            assert b.publish(CONSENSUS, numbered("bob", i))
        # Each receives both streams: its own echoes back (no "no local" in 3.1.1).
        at_a = await recv_n(a, 2 * count)
        at_b = await recv_n(b, 2 * count)
    assert sequence_from("bob", at_a) == list(range(count))
    assert sequence_from("alice", at_b) == list(range(count))
    assert {m.channel for m in at_a + at_b} == {CONSENSUS}
    for t in (a, b):
        assert t.stats["tx"] == count
        assert t.stats["rx"] == 2 * count
        assert t.stats["rx_dropped_queue_full"] == t.stats["tx_dropped_queue_full"] == 0


async def test_channels_and_wildcards_route_with_prefix_stripped(
    broker: BrokerProcess, mqtt_setup: MqttSetup
) -> None:
    me = make_transport(
        broker, "carol", ["status/+", sync_resp_channel("carol")], protocol=mqtt_setup.protocol
    )
    other = make_transport(broker, "dave", [], protocol=mqtt_setup.protocol)
    elsewhere = make_transport(broker, "dave", [], protocol=mqtt_setup.protocol, chain_id="otherchain")
    async with running(me), running(other), running(elsewhere):
        assert elsewhere.publish(sync_resp_channel("carol"), b"wrong chain")
        assert other.publish(sync_resp_channel("erin"), b"not for carol")
        assert other.publish(sync_resp_channel("carol"), b"blocks")
        assert other.publish(status_channel("dave"), b"online", retain=True)
        got = await recv_n(me, 2)
    assert sorted((m.channel, m.payload) for m in got) == [
        ("status/dave", b"online"),
        ("sync/resp/carol", b"blocks"),
    ]


async def test_only_subscribed_channels_are_delivered(broker: BrokerProcess, mqtt_setup: MqttSetup) -> None:
    """amqtt pushes retained messages matching other clients' filters to new clients."""
    watcher = make_transport(broker, "watcher", ["status/+"], protocol=mqtt_setup.protocol)
    async with running(watcher):
        assert watcher.publish(status_channel("watcher"), b"online", retain=True)
        await recv_matching(watcher, lambda m: m.payload == b"online", what="own status")
        consensus_only = make_transport(broker, "voter", [CONSENSUS], protocol=mqtt_setup.protocol)
        async with running(consensus_only):
            assert watcher.publish(CONSENSUS, b"marker")
            first = await recv_matching(consensus_only, lambda m: True, what="the marker")
    assert first == Inbound(CONSENSUS, b"marker")


# --- retained status and last will ----------------------------------------------------------


async def test_killed_node_is_seen_offline_through_its_will(
    broker: BrokerProcess, mqtt_setup: MqttSetup
) -> None:
    watcher = make_transport(broker, "watcher", ["status/+"], protocol=mqtt_setup.protocol)
    async with running(watcher):
        node = spawn_status_node(broker, "victim", mqtt_setup.protocol)
        try:
            await recv_matching(
                watcher,
                lambda m: m == Inbound("status/victim", b"online"),
                what="the node to announce itself online",
            )
        finally:
            node.send_signal(signal.SIGKILL)
            node.wait(timeout=WAIT_S)
            diagnostics = node.stderr.read() if node.stderr else ""
            node.stdout and node.stdout.close()
            node.stderr and node.stderr.close()
        await recv_matching(
            watcher,
            lambda m: m == Inbound("status/victim", b"offline"),
            what=f"the will to mark the node offline (node stderr: {diagnostics[-2000:]})",
        )
    # Someone subscribing later still learns it from the retained status.
    late = make_transport(broker, "late", [status_channel("victim")], protocol=mqtt_setup.protocol)
    async with running(late):
        message = await recv_matching(late, lambda m: True, what="retained status")
    assert message == Inbound("status/victim", b"offline")


async def test_clean_close_does_not_fire_the_will(broker: BrokerProcess, mqtt_setup: MqttSetup) -> None:
    watcher = make_transport(broker, "watcher", ["status/+"], protocol=mqtt_setup.protocol)
    leaver = make_transport(broker, "leaver", [], protocol=mqtt_setup.protocol)
    async with running(watcher):
        async with running(leaver):
            assert leaver.publish(status_channel("leaver"), b"online", retain=True)
            await recv_matching(watcher, lambda m: m.payload == b"online", what="online status")
        # A marker published after the close: if a will had fired, it would come first.
        marker = make_transport(broker, "marker", [], protocol=mqtt_setup.protocol)
        async with running(marker):
            assert marker.publish(status_channel("marker"), b"marker", retain=True)
            after = await recv_matching(watcher, lambda m: m.channel != "status/watcher", what="the marker")
    assert after == Inbound("status/marker", b"marker")
    late = make_transport(broker, "late", [status_channel("leaver")], protocol=mqtt_setup.protocol)
    async with running(late):
        retained = await recv_matching(late, lambda m: True, what="retained status")
    assert retained == Inbound("status/leaver", b"online")


# --- reconnects -------------------------------------------------------------------------------


async def test_transports_reconnect_after_broker_kill_and_restart(
    broker: BrokerProcess, mqtt_setup: MqttSetup
) -> None:
    a = make_transport(broker, "alice", [CONSENSUS], protocol=mqtt_setup.protocol)
    b = make_transport(broker, "bob", [CONSENSUS, "status/+"], protocol=mqtt_setup.protocol)
    received: list[Inbound] = []
    sent = 0

    async def stream() -> None:
        nonlocal sent
        while True:
            if a.publish(CONSENSUS, numbered("alice", sent)):
                sent += 1
            await asyncio.sleep(0.005)

    async def collect() -> None:
        while True:
            received.append(await b.recv())

    def alice_seen() -> list[int]:
        return sequence_from("alice", received)

    async with running(a), running(b):
        assert a.publish(status_channel("alice"), b"online", retain=True)
        tasks = [asyncio.create_task(stream()), asyncio.create_task(collect())]
        try:
            await wait_until(lambda: len(alice_seen()) >= 50, what="the stream to flow")
            broker.stop(kill=True)
            await wait_until(
                lambda: not a.connected.is_set() and not b.connected.is_set(),
                what="both transports to notice the broker is gone",
            )
            await asyncio.to_thread(broker.start)
            restarted_at = sent
            await wait_until(lambda: a.connected.is_set() and b.connected.is_set(), what="both to reconnect")
            await wait_until(
                lambda: bool(alice_seen()) and alice_seen()[-1] > restarted_at + 20,
                what="messages published after the restart to arrive",
            )
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        # The other direction works too.
        assert b.publish(CONSENSUS, b"bob:after-restart")
        await recv_matching(a, lambda m: m.payload == b"bob:after-restart", what="bob -> alice")
    seen = alice_seen()
    assert seen == sorted(set(seen)), "QoS 0 over one connection: no duplicates, no reordering"
    assert a.stats["reconnects"] >= 1
    assert b.stats["reconnects"] >= 1
    # The restarted broker lost all retained state; alice re-announced herself.
    late = make_transport(broker, "late", [status_channel("alice")], protocol=mqtt_setup.protocol)
    async with running(late):
        status = await recv_matching(late, lambda m: True, what="re-published status")
    assert status == Inbound("status/alice", b"online")


# --- limits -----------------------------------------------------------------------------------


async def test_publish_beyond_outbound_bound_while_disconnected_is_refused_and_counted(
    broker: BrokerProcess, mqtt_setup: MqttSetup
) -> None:
    receiver = make_transport(broker, "receiver", [TX], protocol=mqtt_setup.protocol)
    sender = make_transport(broker, "sender", [], protocol=mqtt_setup.protocol, outbound_queue=10)
    async with running(receiver):
        accepted = [sender.publish(TX, b"tx-%d" % i) for i in range(15)]
        assert accepted == [True] * 10 + [False] * 5
        assert sender.stats["tx_dropped_queue_full"] == 5
        assert sender.pending_outbound() == 10
        async with running(sender):  # connecting flushes what was queued, in order
            got = await recv_n(receiver, 10)
    assert [m.payload for m in got] == [b"tx-%d" % i for i in range(10)]


async def test_outbound_queue_fills_during_outage_and_drains_after(
    broker: BrokerProcess, mqtt_setup: MqttSetup
) -> None:
    sender = make_transport(broker, "sender", [], protocol=mqtt_setup.protocol, outbound_queue=10)
    async with running(sender):
        broker.stop(kill=True)
        await wait_until(lambda: not sender.connected.is_set(), what="the disconnect")
        accepted = [sender.publish(TX, b"tx-%d" % i) for i in range(12)]
        assert accepted == [True] * 10 + [False] * 2
        assert sender.stats["tx_dropped_queue_full"] == 2
        tx_before = sender.stats["tx"]
        await asyncio.to_thread(broker.start)
        await wait_until(
            lambda: sender.pending_outbound() == 0 and sender.stats["tx"] >= tx_before + 10,
            what="the queue to drain after the reconnect",
        )


async def test_oversize_inbound_is_dropped_and_counted(broker: BrokerProcess, mqtt_setup: MqttSetup) -> None:
    receiver = make_transport(
        broker, "receiver", [CONSENSUS], protocol=mqtt_setup.protocol, max_payload=1_000
    )
    sender = make_transport(broker, "sender", [], protocol=mqtt_setup.protocol)
    async with running(receiver), running(sender):
        assert sender.publish(CONSENSUS, b"small-1")
        assert sender.publish(CONSENSUS, b"x" * 5_000)
        assert sender.publish(CONSENSUS, b"y" * 1_000)  # exactly the limit: accepted
        assert sender.publish(CONSENSUS, b"small-2")
        got = await recv_n(receiver, 3)
        assert [m.payload for m in got] == [b"small-1", b"y" * 1_000, b"small-2"]
        assert receiver.stats["rx_dropped_oversize"] == 1
        # A transport refuses to send what its own limit would not accept either.
        assert not receiver.publish(CONSENSUS, b"z" * 1_001)
        assert receiver.stats["tx_dropped_oversize"] == 1


async def test_full_inbound_queue_drops_and_counts(broker: BrokerProcess, mqtt_setup: MqttSetup) -> None:
    receiver = make_transport(broker, "receiver", [CONSENSUS], protocol=mqtt_setup.protocol, inbound_queue=5)
    sender = make_transport(broker, "sender", [], protocol=mqtt_setup.protocol)
    async with running(receiver), running(sender):
        for i in range(20):
            assert sender.publish(CONSENSUS, b"m-%d" % i)
        await wait_until(
            lambda: receiver.stats["rx"] + receiver.stats["rx_dropped_queue_full"] == 20,
            what="all 20 messages to be accepted or dropped",
        )
        assert receiver.stats["rx"] == 5
        assert receiver.stats["rx_dropped_queue_full"] == 15
        got = await recv_n(receiver, 5)
    assert [m.payload for m in got] == [b"m-%d" % i for i in range(5)]


async def test_a_vote_overtakes_a_transaction_flood_and_only_the_flooded_lane_drops(
    broker: BrokerProcess, mqtt_setup: MqttSetup
) -> None:
    receiver = make_transport(
        broker, "receiver", [CONSENSUS, TX], protocol=mqtt_setup.protocol, inbound_queue=50
    )
    sender = make_transport(broker, "sender", [], protocol=mqtt_setup.protocol)
    async with running(receiver), running(sender):
        for i in range(200):
            assert sender.publish(TX, b"junk-%d" % i)
        assert sender.publish(CONSENSUS, b"vote")
        await wait_until(
            lambda: receiver.stats["rx"] + receiver.stats["rx_dropped_queue_full"] == 201,
            what="the flood and the vote to be accepted or dropped",
        )
        assert receiver.stats["rx_dropped_queue_full_tx"] == 150
        assert receiver.stats["rx_dropped_queue_full_consensus"] == 0
        first = await recv_n(receiver, 1)
    assert first[0].payload == b"vote"


async def test_a_split_transport_hears_and_says_everything_over_its_two_connections(
    broker: BrokerProcess, mqtt_setup: MqttSetup
) -> None:
    node = SplitMqttTransport(
        broker.url,
        brokers.CHAIN_ID,
        "node",
        subscriptions=[CONSENSUS, TX],
        offline_status=b"offline",
        protocol=mqtt_setup.protocol,
        backoff=(0.1, 1.0),
    )
    peer = make_transport(broker, "peer", [CONSENSUS, TX], protocol=mqtt_setup.protocol)
    task = asyncio.create_task(node.run())
    try:
        async with running(peer):
            await wait_until(
                lambda: node.fast.connected.is_set() and node.bulk.connected.is_set(), what="both connections"
            )
            assert peer.publish(TX, b"their tx") and peer.publish(CONSENSUS, b"their vote")
            heard = {(m.channel, m.payload) for m in [await node.recv(), await node.recv()]}
            assert heard == {(TX, b"their tx"), (CONSENSUS, b"their vote")}
            assert node.publish(TX, b"my tx") and node.publish(CONSENSUS, b"my vote")
            said = {(m.channel, m.payload) for m in await recv_n(peer, 4)}  # its own two come back too
            assert {(TX, b"my tx"), (CONSENSUS, b"my vote")} <= said
            await wait_until(lambda: node.stats["rx"] == 4, what="its own two back too")  # no "no local"
            assert node.stats["tx"] == 2
    finally:
        await node.close()
        await asyncio.wait_for(task, WAIT_S)


def publish_flood_then(broker: BrokerProcess, protocol: int, junk: int, last: tuple[str, bytes]) -> None:
    """From another client: ``junk`` transactions, then one ``last`` message, all handed to the broker."""
    host, port = parse_broker_url(broker.url)
    version = paho_mqtt.MQTTv5 if protocol == 5 else paho_mqtt.MQTTv311
    client = paho_mqtt.Client(paho_mqtt.CallbackAPIVersion.VERSION2, client_id="flooder", protocol=version)
    client.connect(host, port)
    client.loop_start()
    try:
        for i in range(junk):
            client.publish(f"posnet/{brokers.CHAIN_ID}/{TX}", b"junk-%d" % i, qos=0)
        client.publish(f"posnet/{brokers.CHAIN_ID}/{last[0]}", last[1], qos=1).wait_for_publish(
            timeout=WAIT_S
        )
    finally:
        client.disconnect()
        client.loop_stop()


async def test_a_vote_overtakes_a_transaction_flood_already_queued_at_the_broker(
    broker: BrokerProcess, mqtt_setup: MqttSetup
) -> None:
    """The flood waits on the bulk connection; the vote arrives on the consensus one and is read at once."""
    node = SplitMqttTransport(
        broker.url,
        brokers.CHAIN_ID,
        "node",
        subscriptions=[CONSENSUS, TX],
        offline_status=b"offline",
        protocol=mqtt_setup.protocol,
        backoff=(0.1, 1.0),
    )
    task = asyncio.create_task(node.run())
    try:
        await wait_until(
            lambda: node.fast.connected.is_set() and node.bulk.connected.is_set(), what="connections"
        )
        # The node reads nothing while the flood and then the vote reach the broker (its loop is held).
        publish_flood_then(broker, mqtt_setup.protocol, 20_000, (CONSENSUS, b"vote"))
        time.sleep(1.0)
        first = await asyncio.wait_for(node.recv(), WAIT_S)
        assert first.payload == b"vote"
        assert node.bulk.stats["rx"] + node.bulk.stats["rx_dropped_queue_full"] < 20_000
    finally:
        await node.close()
        await asyncio.wait_for(task, WAIT_S)


async def test_publish_after_close_is_refused(broker: BrokerProcess, mqtt_setup: MqttSetup) -> None:
    transport = make_transport(broker, "closer", [], protocol=mqtt_setup.protocol)
    async with running(transport):
        pass
    assert not transport.publish(TX, b"late")
    assert transport.stats["tx_dropped_closed"] == 1
    await transport.run()  # returns at once once closed


# --- starting brokers -----------------------------------------------------------------------


def test_embedded_broker_starts_even_when_mosquitto_is_installed(tmp_path) -> None:
    with start_broker("embedded", workdir=tmp_path) as proc:
        assert proc.kind == "embedded"
        assert proc.process is not None
        assert "network.transport.broker" in proc.process.args
        assert mqtt_handshake_ok(proc.host, proc.port)
        proc.stop(kill=True)
        assert not proc.running
        proc.restart()
        assert mqtt_handshake_ok(proc.host, proc.port)


@pytest.mark.parametrize("kind", brokers.KINDS)
def test_restart_keeps_the_port(kind: str, tmp_path) -> None:
    with start_broker(kind, workdir=tmp_path) as proc:
        port = proc.port
        assert proc.url == f"mqtt://127.0.0.1:{port}"
        proc.stop(kill=True)
        assert not mqtt_handshake_ok(proc.host, port, timeout=0.5)
        proc.start()
        assert proc.port == port
        assert mqtt_handshake_ok(proc.host, port)


@pytest.mark.parametrize("kind", brokers.KINDS)
async def test_detect_protocol_picks_what_the_broker_speaks(kind: str, tmp_path) -> None:
    with start_broker(kind, workdir=tmp_path) as proc:
        assert await detect_protocol(proc.url) == brokers.protocol_for(kind)


async def test_rate_bench_is_importable_and_measures(tmp_path) -> None:
    from bench.transport_rate import measure_transport_rate, run_transport_rate

    with start_broker("auto", workdir=tmp_path) as proc:
        result = await run_transport_rate(proc.url, "benchtest", 300, 200, 2)
        assert result.received == (300, 300)
        assert result.rate > 0
        assert await measure_transport_rate(proc.url, "benchtest", 100, 200, 1) > 0


def test_auto_prefers_mosquitto_when_installed(tmp_path) -> None:
    with start_broker("auto", workdir=tmp_path) as proc:
        expected = "mosquitto" if brokers.mosquitto_available() else "embedded"
        assert proc.kind == expected


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("http://127.0.0.1:1883", "scheme"),
        ("127.0.0.1:1883", "scheme"),
        ("mqtt://127.0.0.1", "port is missing"),
        ("mqtt://127.0.0.1:notaport", "port must be an integer"),
        ("mqtt://127.0.0.1:70000", "port must be an integer"),
        ("mqtt://:1883", "host is missing"),
        ("mqtt://127.0.0.1:1883/topic", "path"),
        ("", "non-empty"),
    ],
)
def test_bad_broker_url_is_a_clear_error(url: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_broker_url(url)
    with pytest.raises(ValueError, match=complaint):
        start_broker("embedded", url=url)
    with pytest.raises(ValueError, match=complaint):
        MqttTransport(url, "c", "n", subscriptions=[], offline_status=b"")


def test_parse_broker_url_accepts_host_and_port() -> None:
    assert parse_broker_url("mqtt://127.0.0.1:1883") == ("127.0.0.1", 1883)
    assert parse_broker_url("mqtt://broker:18830/") == ("broker", 18830)


def test_unknown_broker_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="broker kind"):
        start_broker("rabbit")  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", brokers.KINDS)
def test_port_in_use_is_a_clear_error(kind: str, tmp_path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(BrokerStartError, match=f"{port} is already in use"):
            start_broker(kind, port=port, workdir=tmp_path)


def test_unusable_address_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(BrokerStartError, match=re.escape("cannot listen on 192.0.2.1:1883")):
        start_broker("embedded", host="192.0.2.1", port=1883, workdir=tmp_path)


class _CrashingBroker(BrokerProcess):
    """A "broker" whose process dies at once, to exercise the start-failure path."""

    def command(self) -> list[str]:
        return [sys.executable, "-c", "import sys; print('bad config line 3'); sys.exit(3)"]


def test_broker_that_exits_reports_code_and_log(tmp_path) -> None:
    proc = _CrashingBroker(kind="embedded", host="127.0.0.1", port=free_port(), workdir=tmp_path)
    with pytest.raises(BrokerStartError, match=r"(?s)exited with code 3.*bad config line 3"):
        proc.start()


def test_topics_are_namespaced_and_validated() -> None:
    assert topic("c1", "sync/resp/n1") == "posnet/c1/sync/resp/n1"
    assert topic("c1", "status/+") == "posnet/c1/status/+"
    for bad_chain in ("", "a/b", "a+", "#"):
        with pytest.raises(ValueError):
            topic(bad_chain, CONSENSUS)
    for bad_channel in ("", "/x", "x/", "a//b", "st+tus", "#/x"):
        with pytest.raises(ValueError):
            topic("c1", bad_channel)
    transport = MqttTransport(
        "mqtt://127.0.0.1:1", "c1", "n1", subscriptions=["status/+"], offline_status=b""
    )
    with pytest.raises(ValueError, match="wildcards"):
        transport.publish("status/+", b"x")


def test_picked_ports_avoid_the_ephemeral_range_so_outgoing_connections_cannot_take_them() -> None:
    """A metrics port picked by ``bind(0)`` was once handed to a node's outgoing
    connection before the node could listen on it ("address already in use")."""
    low, high = ephemeral_port_range()
    picked = [free_port() for _ in range(50)]
    assert all(not low <= port <= high for port in picked), picked
    assert len(set(picked)) == len(picked)
    for port in picked:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
