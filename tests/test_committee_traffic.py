"""Committee-only vote traffic: votes reach the committee, everyone else follows by certificates.

The rules (node.core.routes) are checked alone and over whole chains whose
sampled committees change every few heights; then the simulator shows that
a run delivers no vote to a node outside its committees and still finalizes
everywhere; then real nodes over mosquitto do the same, and a node outside
the committee, given a forged or short certificate, decides nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import aiomqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from network.sim.config import SimConfig
from network.sim.runner import run_simulation
from network.transport.broker import BrokerProcess, mosquitto_available
from network.transport.mqtt import MqttTransport
from node.core.channels import CONSENSUS, VOTES_PREFIX, channel_group
from node.core.consensus import ConsensusMachine, Decided
from node.core.events import VOTE_CHANNELS
from node.core.genesis import Params, make_genesis
from node.core.keys import Keypair
from node.core.messages import (
    Block,
    CommitCertificate,
    Kind,
    Vote,
    make_certificate,
    parse_envelope,
    sign_item,
)
from node.core.routes import item_channels, listened_vote_channels, seats_channel, vote_channels
from node.core.state import ChainState, apply_block, genesis_state, is_epoch_boundary, proposer_of
from tests.support.chain import ADDR, KEYS, NAME_OF, make_block, precommit, proposal, state0
from tests.support.nodes import TEST_PARAMS, agree, make_localnet, wait_until

needs_mosquitto = pytest.mark.skipif(not mosquitto_available(), reason="mosquitto not installed")

# Four validators, two seats: carol and dave sit in epoch 0, alice and bob in epoch 1.
SAMPLED = replace(Params(), committee_size=2)


def _names(members: tuple[tuple[bytes, int], ...]) -> set[str]:
    return {NAME_OF[address] for address, _ in members}


# ------------------------------------------------------------------ the rules alone


def test_the_sampled_test_chain_seats_two_disjoint_committees() -> None:
    state = state0(SAMPLED)
    assert _names(state.committee.members) == {"carol", "dave"}
    assert _names(state.next_seats.members) == {"alice", "bob"}


def test_votes_go_to_the_committee_channel_and_proposals_to_everyone() -> None:
    state = state0(SAMPLED)
    vote = precommit("carol", 1, 0, b"\x01" * 32)
    assert item_channels(vote, state) == (seats_channel(state.seats),)
    assert item_channels(proposal("carol", 1, 0, b"\x01" * 32), state) == (CONSENSUS,)
    assert channel_group(seats_channel(state.seats)) == VOTES_PREFIX.rstrip("/")


def test_members_listen_to_their_committee_and_next_seat_holders_to_theirs() -> None:
    state = state0(SAMPLED)
    current, following = seats_channel(state.seats), seats_channel(state.next_seats)
    assert current != following
    assert listened_vote_channels(state, [ADDR["carol"]]) == {current}
    assert listened_vote_channels(state, [ADDR["alice"]]) == {following}
    assert listened_vote_channels(state, [ADDR["alice"], ADDR["dave"]]) == {current, following}


def test_the_last_height_of_an_epoch_is_voted_on_both_committees_channels() -> None:
    state = replace(state0(SAMPLED), height=SAMPLED.epoch_length - 1)  # working on the epoch's last height
    assert is_epoch_boundary(state, state.next_height)
    both = (seats_channel(state.seats), seats_channel(state.next_seats))
    assert vote_channels(state, state.next_height) == both
    assert vote_channels(state, state.next_height - 1) == both[:1]  # a late precommit: the current committee


def test_when_everyone_sits_the_channel_never_changes_and_nothing_is_sent_twice() -> None:
    state = replace(state0(), height=Params().epoch_length - 1)
    assert seats_channel(state.seats) == seats_channel(state.next_seats)
    assert vote_channels(state, state.next_height) == (seats_channel(state.seats),)


# ------------------------------------------------------------------ over whole chains


def _chain(keys: dict[str, Keypair], params: Params, heights: int) -> list[ChainState]:
    """States 0..heights of a chain whose every certificate is signed by its whole committee."""
    by_address = {kp.address: kp for kp in keys.values()}
    state = genesis_state(make_genesis("routes-test", keys, params=params))
    states, last_commit = [state], None
    for _ in range(heights):
        block = Block(
            height=state.next_height,
            prev_hash=state.last_block_hash,
            proposer=proposer_of(state, 0),
            timestamp_ms=state.last_timestamp_ms + 1,
            txs=(),
            evidence=(),
            last_commit=last_commit,
            state_hash=state.digest,
        )
        votes = []
        for address, _ in state.committee.members:
            unsigned = Vote(Kind.PRECOMMIT, block.height, 0, block.hash, address)
            votes.append(replace(unsigned, signature=sign_item("routes-test", unsigned, by_address[address])))
        last_commit = make_certificate(votes)
        state, _ = apply_block(state, block)
        states.append(state)
    return states


@settings(max_examples=15, deadline=None)
@given(
    validators=st.integers(2, 9),
    committee_size=st.integers(1, 6),
    epoch_length=st.integers(1, 4),
    seed=st.integers(0, 3),
)
def test_every_committee_member_and_the_next_proposer_hear_every_vote_and_nobody_else_does(
    validators: int, committee_size: int, epoch_length: int, seed: int
) -> None:
    keys = {f"p{i}": Keypair.deterministic(f"routes/{seed}/p{i}") for i in range(validators)}
    params = replace(Params(), committee_size=committee_size, epoch_length=epoch_length)
    states = _chain(keys, params, 12)
    for height in range(1, len(states) - 1):
        before, after = states[height - 1], states[height]  # working on `height`, then on height + 1
        sent_on = set(vote_channels(before, height))
        members = {address for address, _ in before.committee.members}
        next_proposer = proposer_of(after, 0)
        assert all(proposer_of(before, r) in members for r in range(4)), "a proposer outside its committee"
        for kp in keys.values():
            hears = bool(listened_vote_channels(before, [kp.address]) & sent_on)
            if kp.address in members or kp.address == next_proposer:
                assert hears, f"height {height}: {kp.address.hex()[:8]} must hear its votes"
            elif kp.address not in {address for address, _ in before.next_seats.members}:
                assert not hears, f"height {height}: a validator with no seat hears the votes"


# ------------------------------------------------------------------ a follower's verification


def _follower_at_height_one() -> tuple[ConsensusMachine, Block, ChainState]:
    """Alice outside epoch 0's committee, holding carol's proposal of height 1."""
    state = state0(SAMPLED)
    machine = ConsensusMachine(state, ADDR["alice"])
    machine.start(0)
    block = make_block(state, "carol")
    machine.on_proposal(proposal("carol", 1, 0, block.hash), block, 1)
    after, _ = apply_block(state, block)
    return machine, block, after


def _next_proposal(after: ChainState, cert: CommitCertificate) -> tuple[ConsensusMachine, list[Decided]]:
    """A fresh follower at height 1 handed the proposal of height 2 carrying `cert`: what it decided."""
    machine, _, _ = _follower_at_height_one()
    block2 = make_block(after, last_commit=cert)
    outputs = machine.on_proposal(proposal(NAME_OF[block2.proposer], 2, 0, block2.hash), block2, 2)
    return machine, [o for o in outputs if isinstance(o, Decided)]


def _forged(vote: Vote) -> Vote:
    return replace(vote, signature=sign_item("posnet-test", vote, KEYS["alice"]))  # alice signs as dave


@pytest.mark.parametrize(
    "case",
    ["short: carol alone", "forged: dave's precommit signed by alice", "outsider: carol and alice"],
)
def test_a_follower_given_a_forged_or_short_certificate_decides_nothing(case: str) -> None:
    _, block, after = _follower_at_height_one()
    carol = precommit("carol", 1, 0, block.hash)
    votes = {
        "short: carol alone": [carol],
        "forged: dave's precommit signed by alice": [carol, _forged(precommit("dave", 1, 0, block.hash))],
        "outsider: carol and alice": [carol, precommit("alice", 1, 0, block.hash)],
    }[case]
    machine, decided = _next_proposal(after, make_certificate(votes))
    assert decided == [] and machine.height == 1


def test_a_follower_decides_on_the_certificate_the_next_proposal_carries() -> None:
    _, block, after = _follower_at_height_one()
    cert = make_certificate([precommit(name, 1, 0, block.hash) for name in ("carol", "dave")])
    machine, (decided,) = _next_proposal(after, cert)
    assert decided.block.hash == block.hash and machine.height == 2
    assert not machine.in_committee()


# ------------------------------------------------------------------ the simulator


def _deliveries(config: SimConfig) -> tuple[dict[str, int], dict[int, set[str]], dict[tuple[str, int], int]]:
    """Run with a trace: (node heights, who sent votes of each height, vote deliveries per (node, height))."""
    trace = io.StringIO()
    result = run_simulation(config, trace)
    assert result.violations == [], result.violations
    assert result.round_timeouts == 0
    senders: dict[int, set[str]] = defaultdict(set)
    received: dict[tuple[str, int], int] = defaultdict(int)
    for line in trace.getvalue().splitlines():
        event = json.loads(line)
        if event.get("ev") == "deliver" and event.get("msg") in ("prevote", "precommit"):
            senders[event["h"]].add(event["from"])
            received[(event["to"], event["h"])] += 1
    return result.node_heights, senders, received


@pytest.mark.sim
@pytest.mark.parametrize("seed", range(3))
def test_simulated_votes_reach_only_the_committees_and_every_node_still_finalizes(seed: int) -> None:
    epoch_length = 4
    config = SimConfig(
        validators=24,
        heights=16,
        seed=seed,
        committee_size=5,
        params=replace(Params(), epoch_length=epoch_length),
    )
    heights, senders, received = _deliveries(config)
    assert min(heights.values()) >= config.heights
    # the last epoch's votes reach the next committee, which may not have voted before the run ended
    checked = [(node, height) for node, height in received if height <= config.heights - epoch_length]
    for node, height in checked:
        # its own committee, the next one (the epoch's last height), or the one sitting when a late
        # precommit of it was re-sent (within an epoch in this fault-free run)
        voters = set().union(*(senders.get(h, set()) for h in range(height, height + epoch_length + 1)))
        assert node in voters, f"{node} got votes of height {height} without sitting then or soon after"
    everyone = set(heights)
    never_voted = everyone - set().union(*senders.values())
    assert never_voted, "every validator sat at some point: the run shows nothing"
    assert not {node for node, _ in checked} & never_voted


# ------------------------------------------------------------------ real parts


@pytest.mark.integration
@pytest.mark.broker
@needs_mosquitto
async def test_the_transport_joins_and_leaves_a_channel_while_running(mosquitto: BrokerProcess) -> None:
    listener = MqttTransport(mosquitto.url, "c", "listener", subscriptions=[], offline_status=b"")
    talker = MqttTransport(mosquitto.url, "c", "talker", subscriptions=[], offline_status=b"")
    tasks = [asyncio.create_task(t.run()) for t in (listener, talker)]
    try:
        await asyncio.wait_for(asyncio.gather(listener.connected.wait(), talker.connected.wait()), 30)
        listener.listen(frozenset({"votes/a"}))
        got = None
        for _ in range(100):  # the SUBSCRIBE is on its way: publish until one arrives
            talker.publish("votes/a", b"one")
            with contextlib.suppress(TimeoutError):
                got = await asyncio.wait_for(listener.recv(), 0.2)
                break
        assert got is not None and got.channel == "votes/a"
        listener.listen(frozenset({"votes/b"}))
        await asyncio.sleep(1.0)
        while listener.pending_inbound():
            await listener.recv()
        talker.publish("votes/a", b"after leaving")
        talker.publish("votes/b", b"joined")
        message = await asyncio.wait_for(listener.recv(), 10)
        assert (message.channel, message.payload) == ("votes/b", b"joined")
    finally:
        for t in (listener, talker):
            await t.close()
        for task in tasks:
            task.cancel()


async def _kinds_on(broker: BrokerProcess, topic: str, kinds: set[Kind]) -> None:
    """A raw subscriber: the kinds of the signed messages published on `topic`, straight off the broker."""
    host, port = broker.url.removeprefix("mqtt://").split(":")
    async with aiomqtt.Client(host, int(port), identifier="committee-traffic-tap") as client:
        await client.subscribe(topic)
        async for message in client.messages:
            kinds.add(parse_envelope(bytes(message.payload)).kind)  # type: ignore[arg-type]


def _votes_received(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith("posnet_messages_received_total") and 'channel="votes"' in line:
            return float(line.split()[-1])
    return 0.0


@pytest.mark.integration
@pytest.mark.broker
@needs_mosquitto
async def test_real_nodes_outside_the_committee_receive_no_vote_and_follow_the_chain(
    mosquitto: BrokerProcess, tmp_path: Path
) -> None:
    params = replace(TEST_PARAMS, committee_size=2, epoch_length=100_000)
    net = make_localnet(tmp_path / "net", mosquitto.url, 5, params=params, metrics=True)
    state = genesis_state(make_genesis(net.chain_id, net.keys, params=params))
    seated = {a for a, _ in state.committee.members} | {a for a, _ in state.next_seats.members}
    outsiders = [name for name, kp in net.keys.items() if kp.address not in seated]
    members = [name for name, kp in net.keys.items() if state.committee.power_of(kp.address)]
    assert outsiders and members
    kinds_on_consensus: set[Kind] = set()
    tap = asyncio.create_task(_kinds_on(mosquitto, f"posnet/{net.chain_id}/{CONSENSUS}", kinds_on_consensus))
    try:
        net.start()
        await wait_until(lambda: min(net.heights().values()) >= 10, what="all five at height 10", net=net)
        counts = {name: _votes_received(node.metrics()) for name, node in net.nodes.items()}
    finally:
        net.stop()
        tap.cancel()
    agree(list(net.nodes.values()))
    assert all(counts[name] == 0 for name in outsiders), counts
    assert all(counts[name] > 0 for name in members), counts
    for name in outsiders:
        assert net.nodes[name].events(VOTE_CHANNELS)[0]["channels"] == []
    for name in members:
        assert seats_channel(state.seats) in net.nodes[name].events(VOTE_CHANNELS)[0]["channels"]
    assert kinds_on_consensus and kinds_on_consensus <= {Kind.PROPOSAL}, kinds_on_consensus
