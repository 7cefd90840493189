"""The long-range attack on real nodes over mosquitto, and the checkpoint that defeats it (issue 29).

Six validators at genesis: v1..v4 with 1,000 each, v5 and v6 with a token
stake of 1 (two nodes that will join late). v1, v2 and v3 hold 3/4 of the
stake: enough to sign a whole second history. The relay puts copies of
their keys (v1f, v2f, v3f: own stores, no doppelganger wait) on an island
broker from the start, where they forge a chain from genesis, while v1..v4
run the real chain on the main broker.

Then v5 and v6 start with empty stores on the island: all they can hear is
the forgers. v6, with no checkpoint, takes the forged history. v5, told
the real chain's block at height 8 (`--trust`), takes no block at all. The
forgers stop and the partition heals: v5 syncs the real chain through its
checkpoint, compares the forged certificates it held with its own, and
reports the double signs; the real chain slashes and tombstones v1, v2 and
v3 (inside the weak subjectivity period: their stake is still bonded).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from network.testnet.faultfile import NetworkFaults
from network.testnet.relay import Relay
from network.transport.broker import BrokerProcess, mosquitto_available
from tests.support.nodes import NodeProc, make_localnet, wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.broker,
    pytest.mark.skipif(not mosquitto_available(), reason="mosquitto not installed"),
]

FORMER = ("v1", "v2", "v3")
REAL = ("v1", "v2", "v3", "v4")
TRUSTED = 8


def forger(original: NodeProc, root: Path) -> NodeProc:
    """A copy of a former validator's key with its own store: it signs the forged history."""
    name = f"{original.name}f"
    home = root / name
    home.mkdir(parents=True)
    shutil.copy(original.home / "key.json", home / "key.json")
    return NodeProc(
        name=name,
        home=home,
        log_path=root / "logs" / f"{name}.jsonl",
        genesis_path=original.genesis_path,
        broker_url=original.broker_url,
        genesis_wait_s=0,
        extra_args=["--name", name, "--doppelganger-ms", "0"],
    )


def tombstoned(node: NodeProc) -> set[str]:
    return {e["validator"] for e in node.events("tombstoned")}


async def test_a_late_node_is_led_onto_a_forged_history_unless_it_trusts_a_checkpoint(
    mosquitto: BrokerProcess, tmp_path: Path
) -> None:
    stakes = {"v5": 1, "v6": 1}
    net = make_localnet(tmp_path / "net", mosquitto.url, 6, stakes=stakes)
    forgers = [forger(net.nodes[name], tmp_path / "net") for name in FORMER]
    late_trusting, late_fooled = net.nodes["v5"], net.nodes["v6"]
    names = [*net.nodes, *(f.name for f in forgers)]
    relay = Relay(tmp_path / "relay", mosquitto.url, dict.fromkeys(names, 0), island_kind="mosquitto", seed=1)
    await relay.start()
    for node in [*net.nodes.values(), *forgers]:
        node.broker_url = relay.url(node.name)
        node.genesis_wait_s = 0
    island = [*(f.name for f in forgers), "v5", "v6"]
    await relay.apply(NetworkFaults(generation=1, groups=[list(REAL), island]))
    real = [net.nodes[name] for name in REAL]
    everyone = [*net.nodes.values(), *forgers]
    try:
        for node in [*real, *forgers]:
            node.start()
        await wait_until(
            lambda: min(n.height() for n in [*real, *forgers]) >= TRUSTED + 4,
            what="both histories past the checkpoint",
            net=net,
        )
        real_hash, forged_hash = real[0].finalized()[TRUSTED], forgers[0].finalized()[TRUSTED]
        assert real_hash != forged_hash  # two histories, both certified by the genesis committee
        late_trusting.extra_args = ["--trust", f"{TRUSTED}:{real_hash}"]
        late_trusting.start()
        late_fooled.start()
        await wait_until(
            lambda: late_fooled.height() >= TRUSTED + 2, what="the fooled node taking the forgery", net=net
        )
        assert late_fooled.finalized()[TRUSTED] == forged_hash
        assert late_trusting.height() == 0  # held what it fetched: none of it leads to the checkpoint

        for node in forgers:
            node.kill()
        await relay.apply(NetworkFaults(generation=2))  # healed: the late nodes reach the real chain
        await wait_until(
            lambda: late_trusting.height() > TRUSTED and FORMER[0] in tombstoned(real[-1]),
            what="v5 on the real chain and the forgers punished on it",
            net=net,
        )
    finally:
        for node in everyone:
            node.kill()
        await relay.close()
    assert late_trusting.finalized()[TRUSTED] == real_hash
    assert {e["offender"] for e in late_trusting.events("evidence")} <= set(FORMER)
    assert tombstoned(real[-1]) <= set(FORMER) and tombstoned(real[-1])
    assert late_fooled.finalized()[TRUSTED] == forged_hash  # finality is final: it cannot leave
