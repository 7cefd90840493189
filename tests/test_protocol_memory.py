"""What penalties depend on survives a validator's crash: late precommits, our own uncounted ones, evidence.

The machine notes each change (`memory_changes`), the environment keeps the
notes (a dict in the simulator, SQLite in a real node) and hands them back at
boot (`recall`), where each is checked again against the recovered state.
"""

from __future__ import annotations

from pathlib import Path

from network.sim.plans import parse_fault_spec
from network.sim.runner import run_simulation
from network.sim.sweep import SweepSpec
from node.core.codec import encode
from node.core.consensus import BroadcastEvidence, ConsensusMachine, Phase, ScheduleTimeout, Sign
from node.core.evidence_pool import EvidencePool
from node.core.memory import NOTE_EVIDENCE, NOTE_LATE, MemoryNotes
from node.core.messages import Block, CommitCertificate, Proposal, make_evidence
from node.runtime.store import Store
from tests.support.chain import ADDR, NAMES, finalize, make_block, precommit, prevote, proposer_name, state0

STATE0 = state0()
BLOCK1 = make_block(STATE0, txs=(b"one",))
PROPOSER2 = proposer_name(finalize(STATE0, BLOCK1)[0])  # who proposes height 2
OTHERS = tuple(name for name in NAMES if name != PROPOSER2)
STATE1, WITHOUT_PROPOSER = finalize(STATE0, BLOCK1, signers=OTHERS)  # lacks the next proposer
_, WITHOUT_ABSENT = finalize(STATE0, BLOCK1, signers=(PROPOSER2, *OTHERS[:2]))  # lacks OTHERS[2]


def machine_at_height_2(certificate: CommitCertificate = WITHOUT_PROPOSER) -> ConsensusMachine:
    return ConsensusMachine(STATE1, ADDR[PROPOSER2], last_certificate=certificate)


def restarted(memory: MemoryNotes, machine: ConsensusMachine) -> tuple[ConsensusMachine, list[object]]:
    """A fresh machine on the same chain, given back what `memory` kept of `machine`."""
    again = ConsensusMachine(machine.state, machine.address, last_certificate=machine.last_certificate)
    return again, list(again.recall(memory.notes(machine.address)))


def keep(memory: MemoryNotes, machine: ConsensusMachine) -> None:
    memory.keep_notes(machine.address, machine.memory_changes())


def proposed_block(machine: ConsensusMachine) -> Block:
    (block,) = [o.block for o in machine.start(0) if isinstance(o, Sign) and isinstance(o.item, Proposal)]
    assert block is not None
    return block


def test_a_late_precommit_the_proposer_holds_survives_its_restart() -> None:
    memory, machine = MemoryNotes(), machine_at_height_2(WITHOUT_ABSENT)
    machine.on_vote(precommit(OTHERS[2], 1, 0, None), 0)  # nil: online, counted only as a late precommit
    keep(memory, machine)
    again, _ = restarted(memory, machine)
    assert [v.validator for v in proposed_block(again).late_precommits] == [ADDR[OTHERS[2]]]


def test_our_own_uncounted_precommit_survives_our_restart() -> None:
    memory, machine = MemoryNotes(), machine_at_height_2()
    machine.on_vote(precommit(PROPOSER2, 1, 0, BLOCK1.hash), 0)  # ours, fed back after signing
    keep(memory, machine)
    again, _ = restarted(memory, machine)
    assert [v.validator for v in proposed_block(again).late_precommits] == [ADDR[PROPOSER2]]


def test_a_precommit_of_the_open_height_survives_a_crash_before_deciding_it() -> None:
    """Seed 941741: a proposer held a precommit of its open height, crashed, caught up by sync from a
    certificate without it and built the next block without it; its validator was jailed while online."""
    memory = MemoryNotes()
    machine = ConsensusMachine(STATE0, ADDR[PROPOSER2])  # height 1 open; it proposes height 2
    machine.on_vote(precommit(OTHERS[2], 1, 0, BLOCK1.hash), 0)
    keep(memory, machine)
    again, _ = restarted(memory, machine)
    out = again.on_commit(BLOCK1, WITHOUT_ABSENT, 100)  # caught up by sync: the certificate lacks OTHERS[2]
    keep(memory, again)
    (wait,) = [
        o.timeout for o in out if isinstance(o, ScheduleTimeout) and o.timeout.phase == Phase.NEW_HEIGHT
    ]
    (block,) = [
        o.block for o in again.on_timeout(wait, 200) if isinstance(o, Sign) and isinstance(o.item, Proposal)
    ]
    assert block is not None and [v.validator for v in block.late_precommits] == [ADDR[OTHERS[2]]]
    # once the height closed, the note moved from the open height's kind to the late precommits'
    assert {kind for kind, _, _ in memory.notes(machine.address)} == {NOTE_LATE}


def test_pending_evidence_survives_a_restart_and_is_gossiped_again() -> None:
    memory = MemoryNotes()
    machine = ConsensusMachine(STATE0, ADDR["alice"])
    machine.on_vote(prevote("bob", 1, 0, b"\x01" * 32), 0)
    machine.on_vote(prevote("bob", 1, 0, b"\x02" * 32), 0)  # a double sign: evidence
    keep(memory, machine)
    again, out = restarted(memory, machine)
    (evidence,) = again.evidence_pool.values()
    assert evidence.offender == ADDR["bob"]
    assert [o.evidence for o in out if isinstance(o, BroadcastEvidence)] == [evidence]


def test_a_recalled_note_that_does_not_check_out_is_dropped_and_forgotten() -> None:
    memory, machine = MemoryNotes(), machine_at_height_2(WITHOUT_ABSENT)
    genuine = precommit(OTHERS[2], 1, 0, None)
    forged = (*precommit(OTHERS[2], 1, 0, None).to_wire()[:-1], b"\x00" * 64)  # a bad signature
    memory.keep_notes(
        machine.address,
        [
            (NOTE_LATE, b"garbage", b"\xc1\xc1"),  # does not decode
            (NOTE_LATE, b"forged", encode(forged)),
            (NOTE_LATE, b"stale", encode(precommit(OTHERS[2], 7, 0, None).to_wire())),  # not pending
            (NOTE_EVIDENCE, b"junk", encode(genuine.to_wire())),  # a vote where evidence belongs
        ],
    )
    again, out = restarted(memory, machine)
    assert out == [] and proposed_block(again).late_precommits == ()
    memory.keep_notes(machine.address, again.memory_changes())
    assert memory.notes(machine.address) == []


def test_evidence_a_block_included_is_forgotten() -> None:
    pool = EvidencePool()
    evidence = make_evidence(prevote("bob", 1, 0, b"\x01" * 32), prevote("bob", 1, 0, b"\x02" * 32))
    assert pool.record(evidence, STATE0)
    assert [note[2] is not None for note in pool.changes()] == [True]
    pool.prune((evidence,), 2, STATE0.params.evidence_max_age)
    assert [note[2] for note in pool.changes()] == [None]


def test_the_store_keeps_notes_across_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    with Store(path) as store:
        store.keep_notes(
            b"v1", [(NOTE_LATE, b"a", b"1"), (NOTE_LATE, b"b", b"2"), (NOTE_EVIDENCE, b"e", b"3")]
        )
        store.keep_notes(b"v1", [(NOTE_LATE, b"a", None), (NOTE_LATE, b"b", b"22")])
        store.keep_notes(b"v2", [(NOTE_LATE, b"x", b"9")])
    with Store(path) as store:
        assert store.notes(b"v1") == [(NOTE_LATE, b"b", b"22"), (NOTE_EVIDENCE, b"e", b"3")]
        assert store.notes(b"v2") == [(NOTE_LATE, b"x", b"9")]


def test_issue_25_a_proposer_that_restarted_still_includes_the_precommits_it_held() -> None:
    """v1 held its own precommit of height 1 and v4's of height 2, crashed, restarted and built block 3
    without them: two class-A misses (`posnet sim --validators 5 --heights 10 --seed 11 --scenario random
    --faults random --byzantine 1 --byzantine-mode split`)."""
    spec = SweepSpec(
        validators=5, heights=10, byzantine=1, byzantine_mode="split", scenario="random", faults="random"
    )
    result = run_simulation(spec.config(11))
    assert result.ok and result.misses.class_a == 0, result.misses


def test_issue_25_evidence_of_a_fork_is_included_after_its_holders_restarted() -> None:
    """Issue 25, item 4: the evidence pool lived in memory; this run exits 0 with the culprits tombstoned."""
    spec = SweepSpec(
        validators=5,
        heights=30,
        byzantine=2,
        byzantine_mode="split",
        committee_size=4,
        stakes=(1000, 1000, 1000, 749, 749),
        params=(("downtime_window", 10), ("epoch_length", 2), ("max_missed_in_window", 6)),
        faults=parse_fault_spec(
            "drop=0.1,delay=15-315,dup=0.3,reorder=0.05,partition=v2+v5+v3+v4|v1@7605-8596,"
            "partition=v1|v3+v2|v5+v4@7138-12098,crash=v3@4750-6687,crash=v2@9102-14435,"
            "crash=v2@16408-17019,crash=v1@3849-5538"
        ),
    )
    result = run_simulation(spec.config(7000199))
    tombstoned = {e["validator"] for e in result.events if e["event"] == "tombstoned"}
    assert result.ok and result.accountability_violations == [], result.inside_bound
    assert {"v4", "v5"} <= tombstoned, tombstoned


def test_a_precommit_for_a_height_ahead_survives_a_crash_before_that_height_is_reached() -> None:
    """Sweep seed 6014569: v3's precommit for height 8 reached v2 while v2 was at height 7; v2 crashed,
    caught up by sync from certificates without it and built block 11 without it."""
    block2 = make_block(STATE1, last_commit=WITHOUT_PROPOSER, timestamp_ms=20)
    _, lacking = finalize(STATE1, block2, signers=(PROPOSER2, *OTHERS[:2]))  # lacks OTHERS[2]
    ahead = precommit(OTHERS[2], 2, 0, block2.hash)
    memory = MemoryNotes()
    machine = ConsensusMachine(STATE0, ADDR[PROPOSER2])  # height 1 open
    machine.on_vote(ahead, 0)
    keep(memory, machine)
    again, _ = restarted(memory, machine)
    again.on_commit(BLOCK1, WITHOUT_PROPOSER, 100)
    again.on_commit(block2, lacking, 110)
    keep(memory, again)
    assert again.height == 3
    assert ahead in again._build_block().late_precommits


def test_the_simulators_memory_hands_notes_back_by_kind_then_key_and_forgets_what_it_is_told() -> None:
    memory = MemoryNotes()
    memory.keep_notes(b"v", [(NOTE_LATE, b"b", b"2"), (NOTE_EVIDENCE, b"a", b"1"), (NOTE_LATE, b"a", b"3")])
    memory.keep_notes(b"v", [(NOTE_LATE, b"b", None), (NOTE_LATE, b"c", None), (NOTE_LATE, b"a", b"4")])
    assert memory.notes(b"v") == [(NOTE_LATE, b"a", b"4"), (NOTE_EVIDENCE, b"a", b"1")]
    assert memory.notes(b"w") == []
