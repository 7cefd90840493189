"""The soak benchmark (bench/soak.py): its double-sign detector, its coverage check, and short real runs.

The detector and the broker-log reading are tested on hand-made inputs, so
each can be shown to catch what it exists to catch (a detector that never
fires would pass every soak). The real runs start mosquitto, the fault
relay and node processes: one with every fault kind, judged by all the
soak's checks, and one with a real equivocator, which the raw subscriber
must catch signing twice over MQTT while the honest keys stay clean.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from bench.soak import (
    FAULT_KINDS,
    DoubleSignDetector,
    FaultBag,
    Soak,
    SoakConfig,
    broker_log_sessions,
    format_result,
    late_sessions,
    random_split,
)
from network.transport.broker import mosquitto_available
from node.core.envelopes import signed_item_bytes, status_bytes, sync_response_bytes
from node.core.keys import Keypair
from node.core.messages import (
    ZERO_HASH,
    Block,
    Kind,
    Vote,
    envelope_for,
    make_certificate,
    sha256,
    sign_item,
)

CHAIN = "soak-test"
KEYS = {name: Keypair.deterministic(f"soak-{name}") for name in ("v1", "v2", "v3", "v4")}


def detector(byzantine: tuple[str, ...] = ()) -> DoubleSignDetector:
    validators = {kp.address: (name, kp.public) for name, kp in KEYS.items()}
    return DoubleSignDetector(CHAIN, validators, [n for n in KEYS if n not in byzantine])


def vote(name: str, kind: Kind, height: int, round_: int, block_id: bytes | None) -> Vote:
    unsigned = Vote(kind, height, round_, block_id, KEYS[name].address)
    return Vote(kind, height, round_, block_id, KEYS[name].address, sign_item(CHAIN, unsigned, KEYS[name]))


def wire(item: Vote) -> bytes:
    return envelope_for(CHAIN, item).to_bytes()


# ------------------------------------------------------------------ the detector


def test_two_conflicting_signed_votes_by_an_honest_key_are_a_double_sign() -> None:
    d = detector()
    d.observe(wire(vote("v2", Kind.PREVOTE, 7, 1, sha256(b"a"))), "posnet/soak-test/consensus")
    d.observe(wire(vote("v2", Kind.PREVOTE, 7, 1, None)), "posnet/soak-test/consensus")
    assert [(x.signer, x.honest, x.height, x.round, x.step) for x in d.double_signs] == [
        ("v2", True, 7, 1, "prevote")
    ]
    assert d.honest_double_signs == d.double_signs
    assert "nil" in d.double_signs[0].describe()


def test_repeats_other_slots_and_other_signers_are_not_double_signs() -> None:
    d = detector()
    block = sha256(b"a")
    for _ in range(3):  # re-gossiped copies of one vote
        d.observe(wire(vote("v1", Kind.PREVOTE, 5, 0, block)))
    d.observe(wire(vote("v1", Kind.PRECOMMIT, 5, 0, None)))  # other step
    d.observe(wire(vote("v1", Kind.PREVOTE, 5, 1, None)))  # other round
    d.observe(wire(vote("v2", Kind.PREVOTE, 5, 0, None)))  # other signer
    d.observe(status_bytes(CHAIN, "v3", 5, 0, True, KEYS["v3"], ts_ms=0))
    assert d.double_signs == []
    assert d.messages == 7
    assert d.signed_items == 4
    assert d.by_kind["prevote"] == 5 and d.by_kind["StatusMsg"] == 1


def test_a_forged_vote_is_rejected_and_not_counted_as_a_double_sign() -> None:
    d = detector()
    d.observe(wire(vote("v1", Kind.PRECOMMIT, 3, 0, sha256(b"a"))))
    other = Vote(Kind.PRECOMMIT, 3, 0, sha256(b"b"), KEYS["v1"].address)
    forged = replace(other, signature=sign_item(CHAIN, other, KEYS["v2"]))  # v1's vote, v2's signature
    d.observe(wire(forged))
    d.observe(b"\x93garbage")
    d.observe(wire(vote("v1", Kind.PRECOMMIT, 3, 0, sha256(b"c"))).replace(CHAIN.encode(), b"soak-tesX"))
    assert d.double_signs == []
    assert d.rejected == {"bad_signature": 1, "malformed": 1, "wrong_chain": 1}


def test_a_double_sign_hidden_in_a_sync_certificate_is_found() -> None:
    """A precommit that only ever travels inside a commit certificate is checked too."""
    d = detector()
    block = Block(1, ZERO_HASH, KEYS["v1"].address, 0, (), (), None)
    certificate = make_certificate([vote(n, Kind.PRECOMMIT, 1, 0, block.hash) for n in ("v1", "v2", "v3")])
    d.observe(wire(vote("v3", Kind.PRECOMMIT, 1, 0, None)), "posnet/soak-test/consensus")
    d.observe(
        sync_response_bytes(CHAIN, 1, [(block, certificate)], KEYS["v4"]), "posnet/soak-test/sync/resp/v4"
    )
    assert [(x.signer, x.step) for x in d.double_signs] == [("v3", "precommit")]
    assert "certificate" in d.double_signs[0].seen_in[1]


def test_a_byzantine_double_sign_is_recorded_but_not_held_against_honest_keys() -> None:
    d = detector(byzantine=("v4",))
    proposal_block = Block(2, sha256(b"p"), KEYS["v4"].address, 0, (), (), None)
    d.observe(signed_item_bytes(CHAIN, vote("v4", Kind.PREVOTE, 2, 0, proposal_block.hash)))
    d.observe(signed_item_bytes(CHAIN, vote("v4", Kind.PREVOTE, 2, 0, sha256(b"twin"))))
    assert len(d.double_signs) == 1 and not d.double_signs[0].honest
    assert d.honest_double_signs == []


# ------------------------------------------------------------------ coverage and schedule


def test_broker_log_order_tells_whether_the_subscriber_was_first() -> None:
    log = "\n".join(
        [
            "1: mosquitto version 2.0.11 starting",
            "1: New client connected from 127.0.0.1:1 as soak-tap-island-1-aa (p5, c1, k30).",
            "1: New client connected from 127.0.0.1:2 as posnet-c-v2 (p5, c1, k10).",
            "2: mosquitto version 2.0.11 starting",
            "2: New client connected from 127.0.0.1:3 as posnet-probe-1 (p2, c1, k10).",
            "2: New client connected from 127.0.0.1:4 as posnet-c-v3 (p5, c1, k10).",
            "2: New client connected from 127.0.0.1:5 as soak-tap-island-1-bb (p5, c1, k30).",
        ]
    )
    sessions = broker_log_sessions(log)
    assert len(sessions) == 2
    assert late_sessions(sessions, ["posnet-c-v2", "posnet-c-v3"]) == [1]


def test_fault_schedule_covers_every_kind_per_round_and_splits_are_proper() -> None:
    import random

    rng = random.Random(5)
    bag = FaultBag(FAULT_KINDS, rng)
    for _ in range(4):
        assert sorted(bag.next() for _ in FAULT_KINDS) == sorted(FAULT_KINDS)
    for _ in range(50):
        groups = random_split(["v1", "v2", "v3", "v4"], rng)
        assert len(groups) == 2 and all(groups)
        assert sorted(groups[0] + groups[1]) == ["v1", "v2", "v3", "v4"]


# ------------------------------------------------------------------ real runs

needs_mosquitto = pytest.mark.skipif(not mosquitto_available(), reason="mosquitto not installed")


@pytest.mark.integration
@needs_mosquitto
@pytest.mark.broker
@pytest.mark.slow
async def test_short_soak_with_every_fault_kind_holds(tmp_path: Path) -> None:
    """About a minute on real processes: kills, pauses and partitions, and every check of the soak passes."""
    lines: list[str] = []
    config = SoakConfig(
        directory=tmp_path / "soak",
        duration=40,
        seed=4,  # its first partition is a 2|2 split: no side can finalize until the heal
        gap_s=(0.5, 2.0),
        hold_s=(1.0, 4.0),
        progress_every_s=60,
    )
    result = await Soak(config, echo=lines.append).run()
    report = "\n".join([*lines, *format_result(result)])
    assert result.ok, report
    kinds = {f.kind for f in result.faults}
    assert kinds == set(FAULT_KINDS), report
    assert "2|2" in result.summary["partition_shapes"], report
    assert result.summary["restarts_checked"] >= 1, report
    assert result.summary["messages_checked"] > 100, report
    assert result.summary["broker_sessions"] >= 2, report  # the main broker and at least one island


@pytest.mark.integration
@needs_mosquitto
@pytest.mark.broker
@pytest.mark.slow
async def test_the_subscriber_catches_a_real_equivocator_over_mqtt(tmp_path: Path) -> None:
    """v4 runs `--behaviour equivocate`: its twins reach the raw subscriber, the honest keys stay clean."""
    lines: list[str] = []
    config = SoakConfig(
        directory=tmp_path / "equivocate",
        duration=12,
        faults=(),
        behaviours={"v4": "equivocate"},
        progress_every_s=60,
    )
    result = await Soak(config, echo=lines.append).run()
    report = "\n".join([*lines, *format_result(result)])
    byzantine = [d for d in result.double_signs if not d.honest]
    assert byzantine, report
    assert {d.signer for d in byzantine} == {"v4"}, report
    assert result.summary["double_signs_honest"] == 0, report
    assert result.ok, report
