"""Stronger adversaries: withhold, late, amnesia and twins.

For each mode two things are shown. Inside the bound (Byzantine stake below
1/3) the simulator's invariants hold: safety, liveness and accountability.
And the mode really misbehaves, judged from the wire, not from the code that
misbehaves: a spy records every message sent and delivered in the simulated
network and when each was signed, the view of a raw broker subscriber.
A mode that silently behaved honestly would pass the first check and fail
the second. One real-process test runs `late` over a real mosquitto.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from network.cli import cli
from network.sim.net import SimNetwork
from network.sim.plans import parse_fault_spec
from network.sim.runner import SimConfig, SimResult, run_simulation, sim_genesis, twin_names, with_twins
from network.transport.broker import BrokerProcess, mosquitto_available
from node.core.behaviours import (
    BEHAVIOURS,
    BYZANTINE_MODES,
    SIM_BYZANTINE_MODES,
    amnesiac_prevote,
    late_delay_ms,
    withhold_recipients,
)
from node.core.codec import DecodeError
from node.core.genesis import Params
from node.core.messages import Kind, Proposal, Vote, parse_envelope, sha256, signer_of
from node.core.signer import GuardedSigner
from tests.support.brokers import consensus_tap
from tests.support.nodes import agree, make_localnet, running, wait_until

NEW_MODES = ("withhold", "late", "amnesia", "twins")
WITHIN_BOUND = ((4, 1), (7, 2))  # (validators, Byzantine): 1/4 and 2/7 of the stake


# ------------------------------------------------------------------ the wire spy


@dataclass
class Wire:
    """Everything the simulated network carried: who sent what to whom, when, and when it was signed."""

    sent: list[tuple[int, str, str, bytes]] = field(default_factory=list)  # (ms, sender, recipient, data)
    delivered: list[tuple[int, str, bytes]] = field(default_factory=list)  # (ms, recipient, data)
    signed_at: dict[bytes, int] = field(default_factory=dict)  # signature -> ms
    net: SimNetwork | None = None

    def items(self) -> dict[bytes, Vote | Proposal]:
        """Every distinct signed vote and proposal sent, by signature."""
        found: dict[bytes, Vote | Proposal] = {}
        for _, _, _, data in self.sent:
            item = signed_item(data)
            if item is not None:
                found[item.signature] = item
        return found

    def by(self, address: bytes) -> list[Vote | Proposal]:
        return [item for item in self.items().values() if signer_of(item) == address]


def signed_item(data: bytes) -> Vote | Proposal | None:
    try:
        envelope = parse_envelope(data)
        if envelope.kind in (Kind.PREVOTE, Kind.PRECOMMIT):
            return Vote.from_body(envelope.kind, envelope.body, envelope.signature)
        if envelope.kind == Kind.PROPOSAL:
            return Proposal.from_body(envelope.body, envelope.signature)
    except DecodeError:
        return None
    return None


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> Wire:
    """Record the simulated network's traffic and every signature's time (the run itself is unchanged)."""
    spy = Wire()
    send, attach, sign = SimNetwork.send, SimNetwork.attach, GuardedSigner.sign

    def spy_send(self: SimNetwork, sender: str, recipient: str, data: bytes) -> None:
        spy.sent.append((self.now_ms, sender, recipient, data))
        send(self, sender, recipient, data)

    def spy_attach(self: SimNetwork, name: str, handler: Callable[[str, bytes], None]) -> None:
        spy.net = self

        def receive(sender: str, data: bytes) -> None:
            spy.delivered.append((self.now_ms, name, data))
            handler(sender, data)

        attach(self, name, receive)

    def spy_sign(self: GuardedSigner, *args: Any, **kwargs: Any) -> Vote | Proposal | None:
        signed = sign(self, *args, **kwargs)
        if signed is not None and spy.net is not None:
            spy.signed_at.setdefault(signed.signature, spy.net.now_ms)
        return signed

    monkeypatch.setattr(SimNetwork, "send", spy_send)
    monkeypatch.setattr(SimNetwork, "attach", spy_attach)
    monkeypatch.setattr(GuardedSigner, "sign", spy_sign)
    return spy


def address_of(config: SimConfig, name: str) -> bytes:
    return sim_genesis(config)[1][name].address


def assert_within_bound_ok(result: SimResult) -> None:
    """Safety, liveness and accountability all held, and the run was inside the bound throughout."""
    report = result.to_json()
    assert result.ok, report["violations_inside_bound"]
    assert report["violations"] == [], report["violations"]
    assert report["bound_exceeded_count"] == 0
    assert result.heights_finalized >= result.config.heights


# ------------------------------------------------------------------ one definition


def test_every_mode_is_defined_once_and_offered_where_it_works() -> None:
    assert set(NEW_MODES) <= set(SIM_BYZANTINE_MODES)
    assert set(BYZANTINE_MODES) <= set(SIM_BYZANTINE_MODES)
    assert {"late", "amnesia"} <= set(BYZANTINE_MODES)  # they only delay or vote: real nodes can
    assert not {"withhold", "twins", "split"} & set(BYZANTINE_MODES)  # they address nodes or clone a key
    assert ("honest", *BYZANTINE_MODES) == BEHAVIOURS


@pytest.mark.parametrize("mode", NEW_MODES)
def test_posnet_sim_accepts_each_new_mode(mode: str) -> None:
    args = ["sim", "--validators", "4", "--heights", "3", "--byzantine", "1", "--byzantine-mode", mode]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("mode", ("late", "amnesia"))
def test_real_node_commands_accept_the_modes_that_work_on_real_nodes(mode: str) -> None:
    assert mode in CliRunner().invoke(cli, ["node", "run", "--help"]).output
    assert mode in CliRunner().invoke(cli, ["testnet", "up", "--help"]).output


# ------------------------------------------------------------------ the pure rules


def test_withhold_shows_each_message_to_a_fixed_half_that_changes_from_step_to_step() -> None:
    honest = ("v1", "v2", "v3", "v4", "v5", "v6")
    votes = [Vote(Kind.PREVOTE, 3, round_, b"b" * 32, b"a" * 20) for round_ in range(8)]
    halves = [withhold_recipients(vote, honest) for vote in votes]
    assert all(len(half) == 3 and set(half) <= set(honest) for half in halves)
    assert halves[0] == withhold_recipients(votes[0], honest)  # re-sends go to the same nodes
    assert len(set(map(frozenset, halves))) > 1  # another step, another half
    assert withhold_recipients(votes[0], ("v1",)) == ("v1",)


def test_late_holds_each_message_for_its_steps_timeout_at_its_round() -> None:
    params = Params()
    vote = Vote(Kind.PRECOMMIT, 2, 3, None, b"a" * 20)
    proposal = Proposal(2, 1, b"b" * 32, -1, b"a" * 20)
    assert late_delay_ms(vote, params) == params.timeout_ms("precommit", 3)
    assert late_delay_ms(proposal, params) == params.timeout_ms("propose", 1)


def test_amnesia_breaks_a_lock_only_where_there_is_one_to_break() -> None:
    locked, other = sha256(b"B"), sha256(b"C")
    nil = Vote(Kind.PREVOTE, 5, 2, None, b"a" * 20)
    assert amnesiac_prevote(nil, locked, other).block_id == other
    assert amnesiac_prevote(Vote(Kind.PREVOTE, 5, 2, locked, b"a" * 20), locked, other).block_id == other
    assert amnesiac_prevote(nil, None, other) is nil  # not locked: nothing to forget
    assert amnesiac_prevote(nil, locked, locked) is nil  # the locked block proposed again
    assert amnesiac_prevote(nil, locked, None) is nil  # nothing proposed
    precommit = Vote(Kind.PRECOMMIT, 5, 2, None, b"a" * 20)
    assert amnesiac_prevote(precommit, locked, other) is precommit


# ------------------------------------------------------------------ inside the bound


@pytest.mark.sim
@pytest.mark.parametrize("mode", NEW_MODES)
@pytest.mark.parametrize(("validators", "byzantine"), WITHIN_BOUND)
def test_each_mode_inside_the_bound_keeps_safety_liveness_and_accountability(
    mode: str, validators: int, byzantine: int
) -> None:
    for seed in range(2):
        config = SimConfig(validators, heights=12, seed=seed, byzantine=byzantine, byzantine_mode=mode)
        assert_within_bound_ok(run_simulation(config))


@pytest.mark.sim
@pytest.mark.parametrize("mode", NEW_MODES)
def test_each_mode_inside_the_bound_keeps_the_invariants_under_loss_delay_and_a_partition(mode: str) -> None:
    faults = parse_fault_spec("drop=0.1,delay=5-80,partition=v1+v2+v3|v4+v5+v6+v7@1000-5000")
    config = SimConfig(7, heights=12, seed=3, byzantine=2, byzantine_mode=mode, faults=faults)
    assert_within_bound_ok(run_simulation(config))


# ------------------------------------------------------------------ it really misbehaves


@pytest.mark.sim
def test_withhold_leaves_some_honest_nodes_without_some_of_its_messages(wire: Wire) -> None:
    config = SimConfig(7, heights=10, seed=1, byzantine=2, byzantine_mode="withhold")
    assert_within_bound_ok(run_simulation(config))
    honest = {"v1", "v2", "v3", "v4", "v5"}
    got: dict[bytes, set[str]] = {}
    for _, node, data in wire.delivered:
        item = signed_item(data)
        if item is not None and node in honest:
            got.setdefault(item.signature, set()).add(node)
    for name in ("v6", "v7"):
        mine = wire.by(address_of(config, name))
        assert len(mine) >= 20
        missed = [item for item in mine if got.get(item.signature, set()) != honest]
        # most of its messages never reached every honest node, not even through their relays
        assert len(missed) > len(mine) // 2, (name, len(missed), len(mine))
        # it sent each message to a part of the network only (never a broadcast to all honest)
        recipients = {
            (item.signature, r) for _, s, r, d in wire.sent if s == name and (item := signed_item(d))
        }
        for item in mine:
            assert {r for sig, r in recipients if sig == item.signature} & honest != honest


@pytest.mark.sim
def test_late_sends_each_message_only_after_its_steps_timeout(wire: Wire) -> None:
    config = SimConfig(4, heights=8, seed=2, byzantine=1, byzantine_mode="late")
    assert_within_bound_ok(run_simulation(config))
    params = sim_genesis(config)[0].params
    late, honest = address_of(config, "v4"), address_of(config, "v1")
    first_sent: dict[bytes, int] = {}
    for at, _, _, data in wire.sent:
        item = signed_item(data)
        if item is not None:
            first_sent.setdefault(item.signature, at)
    arrived: dict[bytes, int] = {}
    for at, _, data in wire.delivered:
        item = signed_item(data)
        if item is not None:
            arrived.setdefault(item.signature, at)
    mine = wire.by(late)
    assert len(mine) >= 16 and any(isinstance(item, Proposal) for item in mine)
    for item in mine:
        due = wire.signed_at[item.signature] + late_delay_ms(item, params)
        assert first_sent[item.signature] >= due, item
        assert arrived[item.signature] > due, item
    # the contrast: an honest validator sends what it signs at once
    assert all(first_sent[i.signature] == wire.signed_at[i.signature] for i in wire.by(honest))


@pytest.mark.sim
@pytest.mark.slow
def test_amnesia_precommits_one_block_and_later_prevotes_another_without_a_polka(wire: Wire) -> None:
    """Under heavy loss a lock and a later round with a fresh proposal happen on some seeds; on
    those the amnesiac prevotes the new block, and the invariants still hold (1 of 4 Byzantine)."""
    broken = []
    for seed in range(12):
        wire.sent.clear()
        wire.delivered.clear()
        config = SimConfig(
            4,
            heights=15,
            seed=seed,
            byzantine=1,
            byzantine_mode="amnesia",
            faults=parse_fault_spec("drop=0.5"),
        )
        result = run_simulation(config)
        assert result.ok, (seed, result.to_json()["violations_inside_bound"])
        mine = [item for item in wire.by(address_of(config, "v4")) if isinstance(item, Vote)]
        precommits = [v for v in mine if v.kind == Kind.PRECOMMIT and v.block_id is not None]
        prevotes = [v for v in mine if v.kind == Kind.PREVOTE and v.block_id is not None]
        polkas = polka_rounds(wire, config)
        broken += [
            (seed, b.height, b.round, c.round)
            for b in precommits
            for c in prevotes
            if c.height == b.height
            and c.round > b.round
            and c.block_id != b.block_id
            and not any(b.round <= r < c.round for r in polkas.get((c.height, c.block_id), ()))
        ]
    assert broken, "the amnesiac never prevoted another block after precommitting one"


def polka_rounds(wire: Wire, config: SimConfig) -> dict[tuple[int, bytes | None], set[int]]:
    """(height, block) -> the rounds where prevotes for it from > 2/3 of the validators went out."""
    voters: dict[tuple[int, int, bytes | None], set[bytes]] = {}
    for item in wire.items().values():
        if isinstance(item, Vote) and item.kind == Kind.PREVOTE:
            voters.setdefault((item.height, item.round, item.block_id), set()).add(item.validator)
    out: dict[tuple[int, bytes | None], set[int]] = {}
    for (height, round_, block_id), who in voters.items():
        if 3 * len(who) > 2 * config.validators:  # equal stakes
            out.setdefault((height, block_id), set()).add(round_)
    return out


def test_twins_place_the_second_copy_on_the_other_side_of_every_partition() -> None:
    twins = twin_names({"v4", "v10"})
    assert twins == {"v4-twin": "v4", "v10-twin": "v10"}
    plan = with_twins(parse_fault_spec("partition=v1+v2|v3+v4@0-100,partition=v1|v2|v4@200-300"), twins)
    assert plan.partitions[0].groups == (frozenset({"v1", "v2", "v4-twin"}), frozenset({"v3", "v4"}))
    assert plan.partitions[1].groups == (frozenset({"v1", "v4-twin"}), frozenset({"v2"}), frozenset({"v4"}))


@pytest.mark.sim
def test_twins_sign_two_votes_at_one_step_and_are_tombstoned_inside_the_bound(wire: Wire) -> None:
    faults = parse_fault_spec("partition=v1+v2|v3+v4@100-6000")
    config = SimConfig(4, heights=10, seed=0, byzantine=1, byzantine_mode="twins", faults=faults)
    result = run_simulation(config)
    assert_within_bound_ok(result)
    seen: dict[tuple[int, int, int], set[bytes | None]] = {}
    for item in wire.by(address_of(config, "v4")):
        if isinstance(item, Vote):
            seen.setdefault((item.height, item.round, int(item.kind)), set()).add(item.block_id)
    assert any(len(ids) > 1 for ids in seen.values()), "the twins never signed two votes at one step"
    assert set(result.node_heights) >= {"v4", "v4-twin"}
    assert result.validators["v4"]["status"] == "tombstoned"  # accountability: the pair is caught


@pytest.mark.sim
@pytest.mark.slow
def test_twins_holding_a_third_or_more_can_fork_a_partitioned_network_outside_the_bound() -> None:
    """Two twin pairs (half the stake) with one honest node on each side: each side has 3/4."""
    forked = []
    for seed in range(12):  # whether a given seed forks depends on timing; most of these do
        faults = parse_fault_spec("partition=v1+v3+v4|v2@100-8000")
        config = SimConfig(4, heights=10, seed=seed, byzantine=2, byzantine_mode="twins", faults=faults)
        result = run_simulation(config)
        assert result.ok, result.to_json()["violations_inside_bound"]  # all outside: expected, not a bug
        if result.safety_violations:
            assert all(v.outside_bound for v in result.violations)
            assert set(result.fork_culprits()) <= {"v3", "v4"}
            forked.append(seed)
            if len(forked) == 2:
                break
    assert forked, "no seed forked"


# ------------------------------------------------------------------ a real late node over MQTT


PrevoteTimes = dict[tuple[int, int], dict[bytes, tuple[float, bytes | None]]]
"""(height, round) -> validator -> (when its prevote first appeared on the broker, its block);
under the key (height, -1 - round), the proposer of that round (time 0, its address as block)."""


@contextlib.asynccontextmanager
async def prevote_times(broker: BrokerProcess, chain_id: str) -> AsyncIterator[PrevoteTimes]:
    """Every prevote and proposal published on the chain's consensus topic, as `PrevoteTimes`."""
    seen: PrevoteTimes = {}

    def note(payload: bytes) -> None:
        item = signed_item(payload)
        if isinstance(item, Vote) and item.kind == Kind.PREVOTE:
            by = seen.setdefault((item.height, item.round), {})
            by.setdefault(item.validator, (time.monotonic(), item.block_id))
        elif isinstance(item, Proposal):
            seen[(item.height, -1 - item.round)] = {item.proposer: (0.0, item.proposer)}

    async with consensus_tap(broker, chain_id, note, "posnet-test-late-watcher"):
        yield seen


@pytest.mark.integration
@pytest.mark.broker
@pytest.mark.skipif(not mosquitto_available(), reason="mosquitto not installed")
async def test_a_real_late_node_publishes_its_prevotes_a_timeout_after_the_others(
    mosquitto: BrokerProcess, tmp_path: Path
) -> None:
    net = make_localnet(tmp_path / "net", mosquitto.url, 4)
    net.nodes["v4"].behaviour = "late"
    honest = [net.nodes[name] for name in ("v1", "v2", "v3")]
    late = net.keys["v4"].address
    timeout_s = Params().timeout_ms("prevote", 0) / 1000

    async with prevote_times(mosquitto, net.chain_id) as seen:

        def late_prevotes() -> list[float]:
            """How long after the first honest prevote for the same block v4's arrived, per step.

            Rounds v4 proposed are left out: it prevotes its own proposal at
            once (sent half a timeout later), the others only when the late
            proposal reaches them, a propose timeout later.
            """
            gaps = []
            for (height, round_), by in list(seen.items()):
                if round_ < 0 or late not in by or len(by) < 3 or late in seen.get((height, -1 - round_), {}):
                    continue
                at, block_id = by[late]
                first, first_id = min((v for who, v in by.items() if who != late), key=lambda v: v[0])
                if block_id == first_id:
                    gaps.append(at - first)
            return gaps

        with running(net):
            await wait_until(lambda: len(late_prevotes()) >= 5, what="five of v4's prevotes", net=net)
            await wait_until(lambda: min(n.height() for n in honest) >= 6, what="height 6", net=net)
    agree(honest)
    gaps = late_prevotes()
    # honest prevotes of one step go out within a few ms of each other; v4's a prevote timeout later
    assert all(gap >= 0.8 * timeout_s for gap in gaps), gaps
