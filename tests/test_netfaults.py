"""Network faults that are real on the wire: the relay between nodes and their broker.

Three layers, cheapest first:
- MQTT framing and the control file as pure functions;
- the relay (`network.testnet.relay.Relay`, in this process) between MQTT clients
  and a real mosquitto: delay is observable, drop 1.0 stops publishes while
  the session stays up, random-sized packets are never cut in half, and a
  partition really moves a client onto an island broker;
- end to end: `posnet testnet up` with real node processes, partitioned 2|2
  (finality stops, heal resumes it) and 3|1 (the three carry on, the one
  catches up to the same hashes), watched on the brokers themselves.

Timing is never asserted except as a lower bound (a delay must delay).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import pytest
from click.testing import CliRunner, Result

from network.cli import cli
from network.testnet import faultfile, logcheck
from network.testnet import relay as nf
from network.testnet.errors import TestnetError
from network.testnet.layout import (
    BrokerInfo,
    Layout,
    NodeProc,
    RelayInfo,
    TestnetState,
    locked_state,
    read_state,
    write_state,
)
from network.testnet.perturb import describe_link, with_behaviour
from network.testnet.processes import cmdline, process_state, stop_processes
from network.testnet.services import relay_processes
from network.transport import framing
from network.transport.broker import BrokerProcess, mosquitto_available
from network.transport.mqtt import MqttTransport
from node.core.codec import decode
from node.core.genesis import load_genesis
from node.core.keys import address_of
from node.core.messages import parse_envelope
from tests.support.waiting import wait_for, wait_until

REPO_ROOT = Path(__file__).resolve().parent.parent
CHAIN = "nf"
WAIT_S = 30.0
SLEEPER = [sys.executable, "-c", "import time; time.sleep(300)"]

needs_mosquitto = pytest.mark.skipif(not mosquitto_available(), reason="mosquitto not installed")


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


# ------------------------------------------------------------------ framing


def _packet(rng: random.Random, body_len: int) -> bytes:
    first = rng.choice([0x10, 0x20, 0x30, 0x32, 0x3B, 0x40, 0x82, 0x90, 0xC0, 0xD0, 0xE0])
    return framing.encode_packet(first, rng.randbytes(body_len))


def test_framer_returns_exactly_the_packets_whatever_the_chunking() -> None:
    rng = random.Random(5)
    edges = [0, 1, 2, 127, 128, 129, 16383, 16384, 16385, 2_097_151, 2_097_152]
    for trial in range(40):
        sizes = (
            [*edges]
            if trial == 0
            else [rng.choice([rng.randrange(64), rng.randrange(70_000)]) for _ in range(60)]
        )
        packets = [_packet(rng, n) for n in sizes]
        stream = b"".join(packets)
        framer, out, at = framing.MqttFramer(), [], 0
        while at < len(stream):
            step = rng.choice([1, 2, 3, rng.randrange(1, 5000), rng.randrange(1, 200_000)])
            out += framer.feed(stream[at : at + step])
            at += step
        assert out == packets
        assert framer.pending == 0


def test_framer_holds_an_incomplete_packet_and_rejects_a_five_byte_length() -> None:
    framer = framing.MqttFramer()
    packet = framing.encode_packet(0x30, b"\x00\x01t" + b"x" * 300)
    assert framer.feed(packet[:-1]) == []
    assert framer.pending == len(packet) - 1
    assert framer.feed(packet[-1:]) == [packet]
    with pytest.raises(framing.FramingError):
        framing.MqttFramer().feed(b"\x30\xff\xff\xff\xff\x01")


def test_publish_qos_and_puback() -> None:
    qos0 = framing.encode_packet(0x30, b"\x00\x01t" + b"payload")
    qos1 = framing.encode_packet(0x32, b"\x00\x03abc" + (513).to_bytes(2, "big") + b"payload")
    assert framing.publish_qos(qos0) == (0, None)
    assert framing.publish_qos(qos1) == (1, 513)
    assert framing.publish_qos(framing.encode_packet(0xC0, b"")) is None  # PINGREQ
    assert framing.puback(513) == b"\x40\x02\x02\x01"


def test_control_file_round_trip_and_groups(tmp_path: Path) -> None:
    assert faultfile.read_faults(tmp_path) == faultfile.NetworkFaults()
    faults = faultfile.NetworkFaults(
        generation=3,
        groups=[["v1", "v2"], ["v3"]],
        links={"v2": faultfile.LinkFaults(delay_ms=200, drop=0.5)},
    )
    faultfile.write_faults(tmp_path, faults)
    again = faultfile.read_faults(tmp_path)
    assert again == faults
    assert (again.group_of("v3"), again.group_of("v1"), again.group_of("v9")) == (1, 0, 0)
    assert describe_link(again, "v2") == "delay 200ms, drop 50%, group 1/2"
    assert describe_link(faultfile.NetworkFaults(), "v2") == "-"
    faultfile.faults_path(tmp_path).write_text('{"links": {"v1": {"drop": 2}}}')
    with pytest.raises(ValueError, match="drop"):
        faultfile.read_faults(tmp_path)


# ------------------------------------------------------------------ the relay against a real broker


@pytest.fixture
async def relay(tmp_path: Path, mosquitto: BrokerProcess) -> AsyncIterator[nf.Relay]:
    relay = nf.Relay(tmp_path, mosquitto.url, {"a": 0, "b": 0}, island_kind="mosquitto", seed=7)
    await relay.start()
    try:
        yield relay
    finally:
        await relay.close()


def transport(url: str, node: str, subscriptions: list[str]) -> MqttTransport:
    return MqttTransport(
        url, CHAIN, node, subscriptions=subscriptions, offline_status=b"off", protocol=5, backoff=(0.05, 0.5)
    )


@contextlib.asynccontextmanager
async def running(*transports: MqttTransport) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(t.run()) for t in transports]
    try:
        for t in transports:
            await wait_until(t.connected.is_set, f"{t.node_id} to connect")
        yield
    finally:
        for t in transports:
            await t.close()
        await asyncio.gather(*tasks, return_exceptions=True)


async def recv(t: MqttTransport, timeout: float = WAIT_S) -> bytes:
    return (await asyncio.wait_for(t.recv(), timeout)).payload


def drain(t: MqttTransport) -> list[bytes]:
    out = []
    while t.pending_inbound():
        out.append(t._inbound.get_nowait().payload)
    return out


@pytest.mark.integration
@pytest.mark.broker
async def test_delay_holds_traffic_both_ways_in_order(relay: nf.Relay, mosquitto: BrokerProcess) -> None:
    a = transport(relay.url("a"), "a", ["to-a"])
    direct = transport(mosquitto.url, "d", ["to-d"])
    async with running(a, direct):
        await relay.apply(
            faultfile.NetworkFaults(generation=1, links={"a": faultfile.LinkFaults(delay_ms=400)})
        )
        started = time.monotonic()
        for i in range(20):
            a.publish("to-d", str(i).encode())
        first = await recv(direct)
        assert time.monotonic() - started >= 0.39  # held on the way up
        rest = [await recv(direct) for _ in range(19)]
        assert [int(p) for p in [first, *rest]] == list(range(20))  # order kept
        started = time.monotonic()
        direct.publish("to-a", b"down")
        assert await recv(a) == b"down"
        assert time.monotonic() - started >= 0.39  # and on the way down
        assert a.stats["reconnects"] == 0


@pytest.mark.integration
@pytest.mark.broker
async def test_drop_all_stops_publishes_but_the_session_stays_up(
    relay: nf.Relay, mosquitto: BrokerProcess
) -> None:
    a = transport(relay.url("a"), "a", ["to-a"])
    direct = transport(mosquitto.url, "d", ["to-d", "st"])
    async with running(a, direct):
        await relay.apply(faultfile.NetworkFaults(generation=1, links={"a": faultfile.LinkFaults(drop=1.0)}))
        for i in range(20):
            a.publish("to-d", b"lost %d" % i)
            direct.publish("to-a", b"lost %d" % i)
        a.publish("st", b"retained, QoS 1", retain=True)  # its PUBACK is faked, or `a` would stall
        stats = relay.stats["a"]
        await wait_until(lambda: stats.up.dropped >= 21 and stats.down.dropped >= 20, "the relay to drop")
        await wait_until(lambda: a.stats["tx"] >= 21, "the QoS 1 publish to complete")
        await asyncio.sleep(0.3)
        assert drain(direct) == [] and drain(a) == []
        await relay.apply(faultfile.NetworkFaults(generation=2))
        a.publish("to-d", b"through")
        direct.publish("to-a", b"back")
        assert await recv(direct) == b"through"
        assert await recv(a) == b"back"
        assert a.stats["reconnects"] == 0 and a.stats["tx_failed"] == 0
        assert stats.connections == 1 and stats.cut == 0


@pytest.mark.integration
@pytest.mark.broker
async def test_random_sized_packets_are_never_cut_in_half(relay: nf.Relay, mosquitto: BrokerProcess) -> None:
    """Half a packet would desynchronise the broker's parser and it would drop the client."""
    rng = random.Random(11)
    a = transport(relay.url("a"), "a", [])
    direct = transport(mosquitto.url, "d", ["bulk"])
    count = 120
    async with running(a, direct):
        await relay.apply(faultfile.NetworkFaults(generation=1, links={"a": faultfile.LinkFaults(drop=0.5)}))
        for i in range(count):
            body = rng.randbytes(rng.choice([rng.randrange(100), rng.randrange(300_000)]))
            a.publish("bulk", i.to_bytes(4, "big") + hashlib.sha256(body).digest() + body)
        stats = relay.stats["a"]
        await wait_until(lambda: stats.up.publishes >= count, "the relay to see every publish", 60)
        await relay.apply(faultfile.NetworkFaults(generation=2))
        a.publish("bulk", b"end")
        got = []
        while (payload := await recv(direct)) != b"end":
            got.append(payload)
        indexes = [int.from_bytes(p[:4], "big") for p in got]
        assert all(hashlib.sha256(p[36:]).digest() == p[4:36] for p in got)
        assert indexes == sorted(indexes) and 0 < len(got) < count
        assert len(got) == count - stats.up.dropped
        assert a.stats["reconnects"] == 0 and stats.connections == 1


@pytest.mark.integration
@pytest.mark.broker
async def test_partition_moves_a_client_to_an_island_and_heal_brings_it_back(
    relay: nf.Relay, mosquitto: BrokerProcess
) -> None:
    a = transport(relay.url("a"), "a", ["ch"])
    b = transport(relay.url("b"), "b", ["ch"])
    main = transport(mosquitto.url, "main", ["ch"])
    async with running(a, b, main):
        await relay.apply(faultfile.NetworkFaults(generation=1, groups=[["a"], ["b"]]))
        island_url = relay.islands[1].broker.url
        await wait_until(lambda: b.stats["reconnects"] >= 1 and b.connected.is_set(), "b to reconnect")
        island = transport(island_url, "island", ["ch"])
        async with running(island):
            b.publish("ch", b"from b")
            assert await recv(island) == b"from b"
            a.publish("ch", b"from a")
            assert await recv(main) == b"from a"
            assert await recv(a) == b"from a"
            assert await recv(b) == b"from b"  # its own, back from the island
            await asyncio.sleep(0.3)
            assert drain(main) == [] and drain(island) == [] and drain(a) == [] and drain(b) == []
        assert a.stats["reconnects"] == 0  # the first group keeps its connections
        await relay.apply(faultfile.NetworkFaults(generation=2))
        assert relay.islands == {}
        await wait_until(lambda: b.stats["reconnects"] >= 2 and b.connected.is_set(), "b to come back")
        b.publish("ch", b"healed")
        assert await recv(main) == b"healed"
        assert await recv(a) == b"healed"
        assert relay.stats["b"].cut == 2


@pytest.mark.integration
@pytest.mark.broker
async def test_the_control_file_is_applied_and_acknowledged(tmp_path: Path, relay: nf.Relay) -> None:
    task = asyncio.create_task(relay.poll_control())

    async def applied(generation: int) -> dict[str, object]:
        await wait_until(
            lambda: (faultfile.read_applied(tmp_path) or {}).get("generation", -1) >= generation,
            f"gen {generation}",
        )
        return faultfile.read_applied(tmp_path) or {}

    try:
        faultfile.write_faults(
            tmp_path, faultfile.NetworkFaults(generation=1, links={"a": faultfile.LinkFaults(delay_ms=50)})
        )
        report = await applied(1)
        assert report["error"] is None and relay.faults.link("a").delay_ms == 50
        faultfile.write_faults(tmp_path, faultfile.NetworkFaults(generation=2, groups=[["a"], ["zz"]]))
        report = await applied(2)
        assert "unknown node zz" in str(report["error"])
        assert relay.faults.link("a").delay_ms == 50  # the bad request changed nothing
    finally:
        relay.request_stop()
        await task


# ------------------------------------------------------------------ commands without a network


@pytest.fixture
def fake_testnet(tmp_path: Path) -> Iterator[Layout]:
    """A recorded testnet whose orchestrator is this test process and whose relay is a sleeper."""
    layout = Layout.of(tmp_path / "net")
    layout.root.mkdir(parents=True)
    relay = subprocess.Popen(SLEEPER)
    state = TestnetState(
        chain_id="fake",
        broker=BrokerInfo(kind="external", url="mqtt://127.0.0.1:1"),
        nodes={n: NodeProc(name=n, command=SLEEPER, metrics_port=0) for n in ("v1", "v2", "v3")},
        relay=RelayInfo(pid=relay.pid, command=SLEEPER, ports={}, log=str(layout.relay_log)),
        supervisor_pid=os.getpid(),
        supervisor_command=cmdline(os.getpid()),
    )
    write_state(layout, state)
    yield layout
    relay.kill()
    relay.wait()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["partition", "v1,v2"], "at least two groups"),
        (["partition", "v1,v2", "v2,v3"], "v2 is named in two"),
        (["partition", "v1", "v9"], "unknown node 'v9'"),
        (["partition", "v1,", "v2"], "expected comma-separated node names"),
        (["delay", "v9", "100"], "unknown node 'v9'"),
        (["delay", "v1", "soon"], "whole number"),
        (["delay", "v1", "9999999"], "0..600000"),
        (["drop", "v1", "1.5"], "0..1"),
        (["drop", "v1", "lots"], "0..1"),
        (["drop", "v1", "nan"], "0..1"),
        (["behave", "v1", "evil"], "must be one of honest, equivocate, silent"),
    ],
)
def test_bad_fault_commands_fail_in_one_line(fake_testnet: Layout, args: list[str], needle: str) -> None:
    result = run("testnet", *args, "--dir", fake_testnet.root)
    assert result.exit_code == 2, result.output
    assert needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not fake_testnet.faults.exists()  # nothing was asked of the relay


def test_fault_commands_need_a_running_testnet_with_a_relay(fake_testnet: Layout, tmp_path: Path) -> None:
    missing = run("testnet", "heal", "--dir", tmp_path / "nowhere")
    assert missing.exit_code == 2 and "testnet up" in missing.stderr
    with locked_state(fake_testnet) as state:
        assert state.relay is not None
        state.relay.pid = None
    dead = run("testnet", "drop", "v1", "0.2", "--dir", fake_testnet.root)
    assert dead.exit_code == 2 and "relay" in dead.stderr and "not running" in dead.stderr
    with locked_state(fake_testnet) as state:
        state.relay = None
    direct = run("testnet", "delay", "v1", "10", "--dir", fake_testnet.root)
    assert direct.exit_code == 2 and "without the fault relay" in direct.stderr
    with locked_state(fake_testnet) as state:
        state.supervisor_pid = None
    stopped = run("testnet", "partition", "v1", "v2", "--dir", fake_testnet.root)
    assert stopped.exit_code == 2 and "not running" in stopped.stderr


def test_status_shows_the_partition_and_each_nodes_faults(fake_testnet: Layout) -> None:
    faults = faultfile.NetworkFaults(
        generation=2, groups=[["v1", "v2"], ["v3"]], links={"v2": faultfile.LinkFaults(delay_ms=20, drop=0.5)}
    )
    faultfile.write_faults(fake_testnet.root, faults)
    relay_pid = read_state(fake_testnet).relay.pid  # type: ignore[union-attr]
    stats = {"v2": {"up": {"dropped": 3}, "down": {"dropped": 4}}}
    islands = {"1": {"url": "mqtt://127.0.0.1:9", "pid": None, "command": None}}
    applied = {"pid": relay_pid, "generation": 2, "error": None, "islands": islands, "stats": stats}
    faultfile.write_json_atomic(faultfile.applied_path(fake_testnet.root), applied)
    result = run("status", "--dir", fake_testnet.root)
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.output.splitlines() if line.startswith("v")}
    assert rows["v1"].endswith("group 1/2")
    assert rows["v2"].endswith("delay 20ms, drop 50% (7 lost so far), group 1/2")
    assert rows["v3"].endswith("group 2/2")
    assert "partition v1,v2 | v3 (group 2 on mqtt://127.0.0.1:9)" in result.output
    assert "change pending" not in result.output
    faultfile.write_faults(fake_testnet.root, faultfile.NetworkFaults(generation=3))
    assert "change pending" in run("status", "--dir", fake_testnet.root).output
    faultfile.write_faults(fake_testnet.root, faults)
    with locked_state(fake_testnet) as state:
        state.relay.pid = None  # type: ignore[union-attr]  # the testnet stopped: nothing is in force
    stopped = run("status", "--dir", fake_testnet.root).output
    assert "relay not running" in stopped and "partition" not in stopped and "drop" not in stopped


def test_with_behaviour_replaces_or_adds_the_option() -> None:
    assert with_behaviour(["run", "--behaviour", "honest", "--x"], "silent") == [
        "run",
        "--behaviour",
        "silent",
        "--x",
    ]
    assert with_behaviour(["run"], "equivocate") == ["run", "--behaviour", "equivocate"]


# ------------------------------------------------------------------ end to end


def _posnet(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "network.cli", *map(str, args)]


ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


def _finalized(layout: Layout, name: str) -> dict[int, str]:
    events = logcheck.read_log(layout.log(name)).events
    return {e["height"]: e["hash"] for e in events if e.get("event") == "finalized"}


def _heights(layout: Layout) -> dict[str, int]:
    return {name: max(_finalized(layout, name), default=0) for name in ("v1", "v2", "v3", "v4")}


@dataclass
class Seen:
    """What one broker carried during an observation window."""

    status_from: set[str] = field(default_factory=set)  # nodes that published a live status there
    signed: list[tuple[str, int]] = field(default_factory=list)  # (signer, height) of consensus messages

    def heights(self) -> list[int]:
        return [height for _, height in self.signed]


async def _watch(url: str, chain_id: str, names: dict[bytes, str], seconds: float) -> Seen:
    """Subscribe to everything of the chain on the broker at `url` for `seconds`.

    An "online" status is published by the node its topic names (nobody
    relays it; a will says "offline"), so it says who is connected to this
    broker. Consensus messages can be
    relayed (a proof of lock carries others' prevotes), so for them only the
    signer and height are kept.
    """
    seen = Seen()
    host, port = url.removeprefix("mqtt://").split(":")
    async with aiomqtt.Client(host, int(port), identifier=f"observer-{os.getpid()}-{port}") as client:
        await client.subscribe(f"posnet/{chain_id}/#")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                async for message in client.messages:
                    channel = message.topic.value.split("/", 2)[2]
                    envelope = parse_envelope(bytes(message.payload))  # type: ignore[arg-type]
                    body = decode(envelope.body)
                    if channel.startswith("status/") and not message.retain and body[3]:  # online
                        seen.status_from.add(channel.removeprefix("status/"))
                    elif channel == "consensus":
                        seen.signed.append((names.get(envelope.sender, "?"), body[0]))
    return seen


def _observe(layout: Layout, urls: list[str], seconds: float = 6.0) -> list[Seen]:
    """Watch several brokers at once; 6 s covers a status refresh (5 s) of every node."""
    genesis = load_genesis(layout.genesis)
    names = {address_of(v.public_key): v.name for v in genesis.validators}

    async def all_of() -> list[Seen]:
        return list(await asyncio.gather(*(_watch(u, genesis.chain_id, names, seconds) for u in urls)))

    return asyncio.run(all_of())


def _island_clients(layout: Layout) -> set[str]:
    """Nodes that ever connected to island 1, from the island broker's own log."""
    log = (layout.broker_dir / "island-1" / "mosquitto.log").read_text()
    found = re.findall(r"New client connected from \S+ as posnet-\S+-(v\d+) ", log)
    return set(found)


def _brokers(layout: Layout) -> list[str]:
    applied = faultfile.read_applied(layout.root) or {}
    return [read_state(layout).broker.url, applied["islands"]["1"]["url"]]


@pytest.fixture
def testnet_up(tmp_path: Path) -> Iterator[tuple[Layout, subprocess.Popen[str]]]:
    """`posnet testnet up` (4 validators, 200 ms slots) in the background; every process gone afterwards."""
    directory = tmp_path / "net"
    args = ("--validators", "4", "--duration", "170", "--slot-ms", "200", "--quiet", "--dir", directory)
    up = subprocess.Popen(
        _posnet("testnet", "up", *args),
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    layout = Layout.of(directory)

    def diagnostics() -> str:
        exited = (
            "" if up.poll() is None else f"testnet up exited {up.returncode}: {up.communicate()[0][-2000:]}\n"
        )
        logs = {name: logcheck.read_log(layout.log(name)).events[-2:] for name in ("v1", "v2", "v3", "v4")}
        return f"{exited}heights {_heights(layout)}; last events {logs}"

    try:  # a loaded 2-core machine can take a while to start four nodes, a broker and the relay
        wait_for(
            lambda: min(_heights(layout).values()) >= 3, "all nodes at height 3", 120, diagnostics=diagnostics
        )
        yield layout, up
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                up.communicate(timeout=60)
        with contextlib.suppress(TestnetError):
            state = read_state(layout)
            procs = [(n.pid, n.command, None) for n in state.nodes.values()]
            procs += [(pid, cmd, None) for pid, cmd in relay_processes(layout, state)]
            stop_processes([*procs, (state.broker.pid, state.broker.command, None)], timeout=5)


def _stop(up: subprocess.Popen[str]) -> tuple[int, str]:
    up.send_signal(signal.SIGTERM)
    output, _ = up.communicate(timeout=60)
    return up.returncode, output


@pytest.mark.integration
@pytest.mark.broker
@needs_mosquitto
def test_two_two_partition_stops_finality_until_healed(
    testnet_up: tuple[Layout, subprocess.Popen[str]],
) -> None:
    layout, up = testnet_up
    split = run("testnet", "partition", "v1,v2", "v3,v4", "--dir", layout.root)
    assert split.exit_code == 0, split.output
    assert split.output.strip() == "partitioned: v1,v2 | v3,v4 (each group reaches only its own broker)"
    time.sleep(1)  # a height whose precommits were already delivered at the cut lands now
    frozen = _heights(layout)
    main, island = _observe(layout, _brokers(layout))
    # who is connected where: each broker hears live statuses from its own group only
    assert (main.status_from, island.status_from) == ({"v1", "v2"}, {"v3", "v4"})
    assert _island_clients(layout) == {"v3", "v4"}
    assert _heights(layout) == frozen, "a height was finalized without more than 2/3 of the stake"
    status = run("status", "--dir", layout.root)
    assert "partition v1,v2 | v3,v4" in status.output and "group 2/2" in status.output
    healed = run("testnet", "heal", "--dir", layout.root)
    assert healed.exit_code == 0 and "partition v1,v2 | v3,v4 ended" in healed.output
    top = max(frozen.values())
    wait_for(lambda: min(_heights(layout).values()) >= top + 3, f"all nodes past height {top + 3}")
    check = run("testnet", "check", "--dir", layout.root)
    assert check.exit_code == 0 and check.output.startswith("safety OK"), check.output
    code, output = _stop(up)
    assert code == 0 and "safety OK" in output, output[-3000:]
    assert faultfile.read_applied(layout.root)["islands"] == {}  # type: ignore[index]


@pytest.mark.integration
@pytest.mark.broker
@needs_mosquitto
def test_three_one_partition_the_one_stalls_then_catches_up(
    testnet_up: tuple[Layout, subprocess.Popen[str]],
) -> None:
    layout, up = testnet_up
    split = run("testnet", "partition", "v1", "v4", "--dir", layout.root)  # v2, v3 join the first group
    assert split.exit_code == 0 and "partitioned: v1,v2,v3 | v4" in split.output, split.output
    cut = max(_heights(layout).values())
    main, island = _observe(layout, _brokers(layout))
    assert (main.status_from, island.status_from) == ({"v1", "v2", "v3"}, {"v4"})
    assert _island_clients(layout) == {"v4"}
    # fresh heights go on on the main broker, and none of them reaches v4's island
    assert max(main.heights()) > cut + 1 and max(island.heights(), default=0) <= cut + 1
    wait_for(
        lambda: min(h for n, h in _heights(layout).items() if n != "v4") >= cut + 6, "the three to go on"
    )
    assert _heights(layout)["v4"] <= cut + 1  # at most the height in flight at the cut
    assert run("testnet", "heal", "--dir", layout.root).exit_code == 0
    target = max(_heights(layout).values())
    wait_for(lambda: _heights(layout)["v4"] >= target, f"v4 to catch up to height {target}")
    reference, caught_up = _finalized(layout, "v1"), _finalized(layout, "v4")
    assert all(caught_up[h] == reference[h] for h in range(1, target + 1))
    # a behaviour switched on a running node sticks across a restart
    silent = run("testnet", "behave", "v4", "silent", "--dir", layout.root)
    assert silent.exit_code == 0 and silent.output.startswith("v4 is now silent"), silent.output
    assert run("testnet", "restart", "v4", "--dir", layout.root).exit_code == 0
    v4 = read_state(layout).nodes["v4"]
    assert (v4.behaviour, v4.was_byzantine, v4.restarts) == ("silent", True, 2)
    assert process_state(v4.pid, v4.command) == "alive" and "silent" in v4.command
    code, output = _stop(up)
    assert code == 0 and "safety OK" in output, output[-3000:]
    assert "v4" in output and "byzantine: not checked" in output
    json.loads(layout.state.read_text())  # still a readable record
