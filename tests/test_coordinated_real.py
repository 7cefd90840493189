"""A coordinated third forks real nodes over mosquitto, and is named and tombstoned (issue 29).

Seven real `posnet node run` processes behind the testnet's relay (in this
process, between each node and a real mosquitto). The coalition v5, v6, v7
holds 3/7 of the stake: more than 1/3, so accountable safety says it can
fork, and must be caught if it does. A broker broadcast cannot show each
half of the honest nodes a different message, so the coalition does what a
real one would: once the chain has a past, the relay partitions the honest
nodes 2 | 2 (v1, v2 on the main broker, v3, v4 on an island), and each
member runs a second copy of its key on the island, with no signing record
and no doppelganger wait. Each island then holds 5/7 of the stake, and both
finalize: two blocks at one height. The copies are stopped and the
partition healed; the honest nodes see each other's certificates, derive
the double signs, and the chain that goes on tombstones exactly the three
members.
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

COALITION = ("v5", "v6", "v7")
MAIN_SIDE = ("v1", "v2")
ISLAND_SIDE = ("v3", "v4")
PAST = 3  # heights the chain finalizes together before the coalition strikes


def twin_of(original: NodeProc, root: Path) -> NodeProc:
    """A second process with the original's key: own store, own client name, no doppelganger wait."""
    name = f"{original.name}b"
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


def forked_heights(first: NodeProc, second: NodeProc) -> list[int]:
    ours, theirs = first.finalized(), second.finalized()
    return sorted(h for h in ours.keys() & theirs.keys() if ours[h] != theirs[h])


def tombstoned(node: NodeProc) -> dict[str, int]:
    return {e["validator"]: e["height"] for e in node.events("tombstoned")}


async def test_three_of_seven_fork_real_nodes_and_are_tombstoned_on_the_chain_that_goes_on(
    mosquitto: BrokerProcess, tmp_path: Path
) -> None:
    net = make_localnet(tmp_path / "net", mosquitto.url, 7)
    names = [*net.nodes, *(f"{member}b" for member in COALITION)]
    relay = Relay(
        tmp_path / "relay", mosquitto.url, dict.fromkeys(names, 0), island_kind="mosquitto", seed=29
    )
    await relay.start()
    for node in net.nodes.values():
        node.broker_url = relay.url(node.name)
    twins = [twin_of(net.nodes[member], tmp_path / "net") for member in COALITION]
    for twin in twins:
        twin.broker_url = relay.url(twin.name)
    everyone = [*net.nodes.values(), *twins]
    try:
        net.start()
        await wait_until(lambda: min(net.heights().values()) >= PAST, what=f"all at height {PAST}", net=net)
        island = [*ISLAND_SIDE, *(twin.name for twin in twins)]
        await relay.apply(NetworkFaults(generation=1, groups=[[*MAIN_SIDE, *COALITION], island]))
        for twin in twins:
            twin.start()
        main_node, island_node = net.nodes["v1"], net.nodes["v3"]
        await wait_until(
            lambda: len(forked_heights(main_node, island_node)) >= 2,
            what="both islands finalizing their own blocks",
            net=net,
        )
        fork = forked_heights(main_node, island_node)[0]
        assert fork > PAST
        for twin in twins:
            twin.kill()
        await relay.apply(NetworkFaults(generation=2))  # healed: one broker again

        def coalition_tombstoned_on_the_main_chain() -> bool:
            return all(set(COALITION) <= tombstoned(net.nodes[name]).keys() for name in MAIN_SIDE)

        await wait_until(
            coalition_tombstoned_on_the_main_chain, what="v5, v6, v7 tombstoned on v1 and v2", net=net
        )
    finally:
        for node in everyone:
            node.kill()
        await relay.close()
    for name in MAIN_SIDE:
        jailed = tombstoned(net.nodes[name])
        assert set(jailed) == set(COALITION), (name, jailed)  # every member, and nobody honest
        assert min(jailed.values()) > fork, (name, jailed, fork)
        slashed = {e["validator"] for e in net.nodes[name].events("slashed") if e["amount"] > 0}
        assert slashed == set(COALITION), (name, slashed)
    honest = [net.nodes[name] for name in (*MAIN_SIDE, *ISLAND_SIDE)]
    accused = {e["offender"] for node in honest for e in node.events("evidence")}
    assert accused <= set(COALITION), accused
