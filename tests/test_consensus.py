"""The Tendermint state machine of one validator, driven by hand-made, really signed inputs.

Four validators of equal stake (alice, bob, carol, dave): any three are a
quorum, any two are more than a third. At height 1 the proposers of rounds
0, 1, 2, 3 are carol, bob, dave, alice (asserted below, since the tests rely
on it). Most tests drive alice's machine; whatever it asks to sign goes
through a real GuardedSigner and, where the test says so, is fed back.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from node.core.codec import decode, encode
from node.core.consensus import (
    BUFFER_AHEAD,
    CLOCK_PRECISION_MS,
    BroadcastEvidence,
    ConsensusMachine,
    Decided,
    Output,
    Phase,
    Rebroadcast,
    RequestSync,
    RoundTimedOut,
    ScheduleTimeout,
    Sign,
    Timeout,
)
from node.core.genesis import Params
from node.core.messages import (
    Block,
    CommitCertificate,
    Evidence,
    Kind,
    Proposal,
    Vote,
    make_certificate,
    make_evidence,
    signer_of,
)
from node.core.signer import GuardedSigner, MemoryRecord
from node.core.state import (
    ChainState,
    Seats,
    block_problem,
    certificate_problem,
    committee_for,
    evidence_problem,
)
from tests.support.chain import (
    ADDR,
    CHAIN_ID,
    KEYS,
    NAME_OF,
    OUTSIDER,
    certificate,
    finalize,
    make_block,
    precommit,
    prevote,
    proposal,
    proposer_name,
    state0,
    vote,
)

OTHERS = ("bob", "carol", "dave")


class Node:
    """One validator's machine, its guarded signer, and a virtual clock."""

    def __init__(
        self,
        name: str,
        state: ChainState | None = None,
        record: MemoryRecord | None = None,
        last_certificate: CommitCertificate | None = None,
    ) -> None:
        self.name = name
        self.state = state or state0()
        self.record = record if record is not None else MemoryRecord()
        self.signer = GuardedSigner(CHAIN_ID, KEYS[name], self.record)
        self.machine = ConsensusMachine(self.state, ADDR[name], last_certificate=last_certificate)
        self.now = 0

    @property
    def m(self) -> ConsensusMachine:
        return self.machine

    def start(self) -> list[Output]:
        return self.machine.start(self.now)

    def propose(self, item: Proposal, block: Block) -> list[Output]:
        self.now += 1
        return self.machine.on_proposal(item, block, self.now)

    def votes(self, items: list[Vote]) -> list[Output]:
        out: list[Output] = []
        for item in items:
            self.now += 1
            out += self.machine.on_vote(item, self.now)
        return out

    def timeout(self, phase: Phase, round_: int | None = None) -> list[Output]:
        self.now += 1
        height = self.machine.height
        return self.machine.on_timeout(
            Timeout(height, self.machine.round if round_ is None else round_, phase), self.now
        )

    def echo(self, out: list[Output]) -> list[Output]:
        """Sign what the machine asked for (through the signing record) and feed it back."""
        more: list[Output] = []
        for request in signs(out):
            item = self.signer.sign(request.item, request.block, request.justification)
            assert item is not None, f"signer refused {request.item}"
            if isinstance(item, Vote):
                more += self.votes([item])
            else:
                assert request.block is not None
                more += self.propose(item, request.block)
        return more


def signs(out: list[Output]) -> list[Sign]:
    return [o for o in out if isinstance(o, Sign)]


def the_sign(out: list[Output]) -> Sign:
    requests = signs(out)
    assert len(requests) == 1, f"expected one Sign, got {requests}"
    return requests[0]


def the_vote(out: list[Output], kind: Kind) -> Vote:
    item = the_sign(out).item
    assert isinstance(item, Vote) and item.kind == kind, item
    return item


def decisions(out: list[Output]) -> list[Decided]:
    return [o for o in out if isinstance(o, Decided)]


def evidences(out: list[Output]) -> list[Evidence]:
    return [o.evidence for o in out if isinstance(o, BroadcastEvidence)]


def prevotes(names: tuple[str, ...], round_: int, block_id: bytes | None, height: int = 1) -> list[Vote]:
    return [prevote(name, height, round_, block_id) for name in names]


def precommits(names: tuple[str, ...], round_: int, block_id: bytes | None, height: int = 1) -> list[Vote]:
    return [precommit(name, height, round_, block_id) for name in names]


STATE = state0()
BLOCK_A = make_block(STATE, "carol", txs=(b"tx-a",))
BLOCK_B = make_block(STATE, "bob", txs=(b"tx-b",))
A, B = BLOCK_A.hash, BLOCK_B.hash


def test_the_fixture_proposer_order_at_height_one() -> None:
    assert [proposer_name(STATE, r) for r in range(4)] == ["carol", "bob", "dave", "alice"]
    assert block_problem(STATE, BLOCK_A) is None and block_problem(STATE, BLOCK_B) is None


def locked_on_a_at_round_0(node: Node) -> None:
    """alice prevotes carol's A, sees a polka for A, locks on it and precommits it."""
    node.echo(node.start())
    out = node.propose(proposal("carol", 1, 0, A), BLOCK_A)
    assert the_vote(out, Kind.PREVOTE).block_id == A
    node.echo(out)
    out = node.votes(prevotes(OTHERS, 0, A))
    assert the_vote(out, Kind.PRECOMMIT).block_id == A
    node.echo(out)
    assert node.m.locked_block == BLOCK_A and node.m.locked_round == 0


def to_round_1_by_nil_precommits(node: Node) -> None:
    """+2/3 precommits (for nil) at round 0, then the precommit timeout: round 1 begins."""
    out = node.votes(precommits(OTHERS, 0, None))
    assert ScheduleTimeout(Timeout(1, 0, Phase.PRECOMMIT), node.m.params.timeout_ms("precommit", 0)) in out
    out = node.timeout(Phase.PRECOMMIT, 0)
    assert RoundTimedOut(1, 0, Phase.PRECOMMIT) in out
    assert node.m.round == 1 and node.m.phase == Phase.PROPOSE


# --------------------------------------------------------------- propose


def test_the_round_0_proposer_proposes_a_valid_block_for_the_next_height() -> None:
    node = Node("carol")
    request = the_sign(node.start())
    item = request.item
    assert isinstance(item, Proposal)
    assert (item.height, item.round, item.pol_round, item.proposer) == (1, 0, -1, ADDR["carol"])
    assert request.block is not None and request.block.hash == item.block_id
    assert request.block.height == 1 and block_problem(node.state, request.block) is None


def test_a_non_proposer_only_schedules_the_propose_timeout_at_start() -> None:
    out = Node("alice").start()
    assert signs(out) == []
    assert ScheduleTimeout(Timeout(1, 0, Phase.PROPOSE), 1000) in out


def test_the_proposer_at_height_two_carries_the_previous_certificate() -> None:
    state1, cert = finalize(STATE, BLOCK_A)
    name = proposer_name(state1, 0)
    node = Node(name, state=state1, last_certificate=cert)
    request = the_sign(node.start())
    assert request.block is not None
    assert request.block.height == 2 and request.block.last_commit == cert
    assert block_problem(state1, request.block) is None


def test_a_block_timed_further_ahead_of_our_clock_than_the_precision_gets_a_nil_prevote() -> None:
    """A proposer whose clock runs 30 s ahead cannot drag the chain's time with it (block times only go up)."""
    node = Node("alice")
    node.start()
    arrival = node.now + 1  # `propose` advances the clock by one before delivering
    ahead = make_block(STATE, "carol", timestamp_ms=arrival + 30_000)
    assert block_problem(STATE, ahead) is None  # valid: a node syncing it later must accept it
    assert the_vote(node.propose(proposal("carol", 1, 0, ahead.hash), ahead), Kind.PREVOTE).block_id is None


def test_a_block_timed_within_the_precision_ahead_is_prevoted() -> None:
    node = Node("alice")
    node.start()
    arrival = node.now + 1
    edge = make_block(STATE, "carol", timestamp_ms=arrival + CLOCK_PRECISION_MS)
    assert (
        the_vote(node.propose(proposal("carol", 1, 0, edge.hash), edge), Kind.PREVOTE).block_id == edge.hash
    )


def test_a_non_proposer_prevotes_a_valid_proposal_from_the_right_proposer() -> None:
    node = Node("alice")
    node.start()
    vote = the_vote(node.propose(proposal("carol", 1, 0, A), BLOCK_A), Kind.PREVOTE)
    assert (vote.height, vote.round, vote.block_id, vote.validator) == (1, 0, A, ADDR["alice"])
    assert node.m.phase == Phase.PREVOTE


@pytest.mark.parametrize(
    "bad",
    [
        make_block(STATE, "carol", prev_hash=b"\x09" * 32),
        replace(make_block(STATE, "carol"), proposer=b"\x05" * 20),
        make_block(STATE, "carol", last_commit=certificate(b"\x01" * 32, 1), height=2),
        make_block(STATE, "carol", txs=(b"x",) * (STATE.params.max_block_txs + 1)),
        make_block(STATE, "carol", state_hash=b"\x03" * 32),
    ],
    ids=["wrong-prev-hash", "unknown-proposer", "wrong-height", "too-many-txs", "wrong-state-hash"],
)
def test_a_non_proposer_prevotes_nil_for_an_invalid_block(bad: Block) -> None:
    node = Node("alice")
    node.start()
    assert block_problem(STATE, bad) is not None
    assert the_vote(node.propose(proposal("carol", 1, 0, bad.hash), bad), Kind.PREVOTE).block_id is None


def _height_two_cases() -> list[tuple[str, Block]]:
    state1, cert = finalize(STATE, BLOCK_A)
    name = proposer_name(state1, 0)
    forged = replace(cert, signatures=tuple((v, b"\x00" * 64) for v, _ in cert.signatures))
    short = certificate(A, 1, 0, ("bob", "carol"))
    return [
        ("backwards-time", make_block(state1, name, last_commit=cert, timestamp_ms=BLOCK_A.timestamp_ms - 1)),
        ("forged-last-commit", make_block(state1, name, last_commit=forged)),
        ("short-last-commit", make_block(state1, name, last_commit=short)),
        ("last-commit-for-b", make_block(state1, name, last_commit=certificate(B, 1))),
    ]


@pytest.mark.parametrize(
    "bad", [case[1] for case in _height_two_cases()], ids=[c[0] for c in _height_two_cases()]
)
def test_at_height_two_a_block_with_a_bad_time_or_last_commit_gets_a_nil_prevote(bad: Block) -> None:
    state1, cert = finalize(STATE, BLOCK_A)
    node = Node("alice", state=state1, last_certificate=cert)
    node.start()
    name = proposer_name(state1, 0)
    assert block_problem(state1, bad) is not None
    good = make_block(state1, name, last_commit=cert)
    assert block_problem(state1, good) is None
    assert the_vote(node.propose(proposal(name, 2, 0, bad.hash), bad), Kind.PREVOTE).block_id is None


@pytest.mark.parametrize("wrong", ["alice", "bob", "dave"])
def test_a_proposal_from_the_wrong_proposer_is_ignored(wrong: str) -> None:
    node = Node("alice")
    node.start()
    block = make_block(STATE, wrong)
    out = node.propose(proposal(wrong, 1, 0, block.hash), block)
    assert signs(out) == [] and node.m.phase == Phase.PROPOSE
    assert 0 not in node.m.proposals


def test_the_propose_timeout_makes_a_nil_prevote() -> None:
    node = Node("alice")
    node.start()
    out = node.timeout(Phase.PROPOSE, 0)
    assert RoundTimedOut(1, 0, Phase.PROPOSE) in out
    assert the_vote(out, Kind.PREVOTE).block_id is None


def test_a_stale_propose_timeout_is_ignored() -> None:
    node = Node("alice")
    node.start()
    node.propose(proposal("carol", 1, 0, A), BLOCK_A)
    assert signs(node.timeout(Phase.PROPOSE, 0)) == []  # already prevoted
    assert signs(node.m.on_timeout(Timeout(7, 0, Phase.PROPOSE), 10)) == []


# --------------------------------------------------------- prevote/precommit


def test_a_polka_for_the_proposed_block_locks_and_precommits_it() -> None:
    node = Node("alice")
    node.start()
    node.echo(node.propose(proposal("carol", 1, 0, A), BLOCK_A))
    out = node.votes(prevotes(("bob",), 0, A))
    assert signs(out) == []  # alice + bob: half the stake, no polka yet
    out = node.votes(prevotes(("carol",), 0, A))
    request = the_sign(out)
    assert isinstance(request.item, Vote) and request.item.kind == Kind.PRECOMMIT
    assert request.item.block_id == A and request.block == BLOCK_A
    assert node.m.locked_block == BLOCK_A and node.m.locked_round == 0
    assert node.m.valid_block == BLOCK_A and node.m.valid_round == 0


def test_a_polka_for_a_block_never_proposed_does_not_lock() -> None:
    node = Node("alice")
    node.start()
    node.echo(node.timeout(Phase.PROPOSE, 0))
    out = node.votes(prevotes(OTHERS, 0, A))
    assert ScheduleTimeout(Timeout(1, 0, Phase.PREVOTE), 500) in out
    assert signs(out) == [] and node.m.locked_block is None
    assert the_vote(node.timeout(Phase.PREVOTE, 0), Kind.PRECOMMIT).block_id is None


def test_a_nil_polka_makes_a_nil_precommit() -> None:
    node = Node("alice")
    node.start()
    node.echo(node.timeout(Phase.PROPOSE, 0))
    out = node.votes(prevotes(("bob", "carol"), 0, None))
    assert the_vote(out, Kind.PRECOMMIT).block_id is None
    assert node.m.locked_block is None


def test_mixed_prevotes_wait_for_the_prevote_timeout_then_precommit_nil() -> None:
    node = Node("alice")
    node.start()
    node.echo(node.propose(proposal("carol", 1, 0, A), BLOCK_A))
    out = node.votes([prevote("bob", 1, 0, None), prevote("carol", 1, 0, B)])
    assert signs(out) == []
    assert ScheduleTimeout(Timeout(1, 0, Phase.PREVOTE), 500) in out
    assert the_vote(node.timeout(Phase.PREVOTE, 0), Kind.PRECOMMIT).block_id is None


def test_a_quorum_of_precommits_decides_with_a_verifying_certificate() -> None:
    node = Node("alice")
    locked_on_a_at_round_0(node)
    out = node.votes(precommits(("bob", "carol"), 0, A))
    [decided] = decisions(out)
    assert decided.block == BLOCK_A and decided.round == 0 and not decided.via_sync
    assert decided.certificate.block_id == A and decided.certificate.height == 1
    assert decided.certificate.signers() == {ADDR["alice"], ADDR["bob"], ADDR["carol"]}
    assert certificate_problem(STATE, decided.certificate, STATE.committee, A) is None
    assert decided.state.height == 1 and decided.state.last_block_hash == A
    assert node.m.height == 2 and node.m.round == 0
    assert node.m.locked_block is None and node.m.locked_round == -1
    assert node.m.last_certificate == decided.certificate


def test_after_deciding_the_next_proposer_proposes_height_two_with_the_certificate() -> None:
    state1, _ = finalize(STATE, BLOCK_A)
    proposer = proposer_name(state1, 0)
    node = Node(proposer)
    node.start()
    node.propose(proposal("carol", 1, 0, A), BLOCK_A)
    out = node.votes(prevotes(OTHERS, 0, A) + precommits(OTHERS, 0, A))
    [decided] = decisions(out)
    assert not [s for s in signs(out) if isinstance(s.item, Proposal)], "height 2 starts on the clock"
    [start] = [o for o in out if isinstance(o, ScheduleTimeout) and o.timeout.phase == Phase.NEW_HEIGHT]
    assert start.timeout.height == 2 and start.delay_ms == 0
    out = node.timeout(Phase.NEW_HEIGHT, 0)
    proposals = [s for s in signs(out) if isinstance(s.item, Proposal)]
    assert len(proposals) == 1 and proposals[0].item.height == 2
    block = proposals[0].block
    assert block is not None and block.last_commit == decided.certificate
    assert block_problem(decided.state, block) is None


def test_precommits_for_a_block_without_its_proposal_ask_for_sync_instead_of_deciding() -> None:
    node = Node("alice")
    node.start()
    out = node.votes(precommits(OTHERS, 0, A))
    assert decisions(out) == [] and node.m.height == 1
    assert RequestSync(1) in out


def test_two_precommits_are_not_a_quorum() -> None:
    node = Node("alice")
    node.start()
    node.propose(proposal("carol", 1, 0, A), BLOCK_A)
    assert decisions(node.votes(precommits(("bob", "carol"), 0, A))) == []
    assert node.m.height == 1


# ------------------------------------------------------------- locking


def test_locked_on_a_a_fresh_proposal_of_b_gets_a_nil_prevote() -> None:
    node = Node("alice")
    locked_on_a_at_round_0(node)
    to_round_1_by_nil_precommits(node)
    out = node.propose(proposal("bob", 1, 1, B), BLOCK_B)
    assert the_vote(out, Kind.PREVOTE) == Vote(Kind.PREVOTE, 1, 1, None, ADDR["alice"])
    assert node.m.locked_block == BLOCK_A


def test_locked_on_a_a_later_polka_for_b_unlocks_and_b_is_prevoted() -> None:
    node = Node("alice")
    locked_on_a_at_round_0(node)
    to_round_1_by_nil_precommits(node)
    node.echo(node.propose(proposal("bob", 1, 1, B), BLOCK_B))  # prevote nil (locked on A)
    # dave's round-2 proposal and bob's round-2 prevote: more than 1/3 at round 2, alice joins it.
    out = node.propose(proposal("dave", 1, 2, B, pol_round=1), BLOCK_B)
    assert signs(out) == [] and node.m.round == 1
    out = node.votes([prevote("bob", 1, 2, B)])
    assert node.m.round == 2
    assert signs(out) == []  # the round-1 polka that justifies B has not arrived yet
    out = node.votes(prevotes(OTHERS, 1, B))
    assert the_vote(out, Kind.PREVOTE) == Vote(Kind.PREVOTE, 1, 2, B, ADDR["alice"])


def test_a_claimed_pol_round_without_the_polka_is_not_prevoted() -> None:
    node = Node("alice")
    locked_on_a_at_round_0(node)
    to_round_1_by_nil_precommits(node)
    node.echo(node.propose(proposal("bob", 1, 1, B), BLOCK_B))
    node.votes([prevote("bob", 1, 2, B), prevote("carol", 1, 2, B)])
    assert node.m.round == 2
    out = node.propose(proposal("dave", 1, 2, B, pol_round=1), BLOCK_B)
    out += node.votes(prevotes(("bob", "carol"), 1, B))  # only two of the three needed
    assert signs(out) == []
    assert the_vote(node.timeout(Phase.PROPOSE, 2), Kind.PREVOTE).block_id is None


def test_locked_on_a_a_re_proposal_of_a_with_its_pol_round_is_prevoted() -> None:
    node = Node("alice")
    locked_on_a_at_round_0(node)
    to_round_1_by_nil_precommits(node)
    out = node.propose(proposal("bob", 1, 1, A, pol_round=0), BLOCK_A)
    assert the_vote(out, Kind.PREVOTE) == Vote(Kind.PREVOTE, 1, 1, A, ADDR["alice"])


def test_a_polka_for_b_in_the_current_round_relocks_on_b() -> None:
    node = Node("alice")
    locked_on_a_at_round_0(node)
    to_round_1_by_nil_precommits(node)
    node.echo(node.propose(proposal("bob", 1, 1, B), BLOCK_B))  # nil prevote
    out = node.votes(prevotes(OTHERS, 1, B))
    assert the_vote(out, Kind.PRECOMMIT).block_id == B
    assert node.m.locked_block == BLOCK_B and node.m.locked_round == 1


def test_the_locked_proposer_re_proposes_its_valid_block_with_its_pol_round() -> None:
    node = Node("alice")  # alice proposes round 3
    locked_on_a_at_round_0(node)
    out = node.votes([prevote("bob", 1, 3, None), prevote("carol", 1, 3, None)])
    assert node.m.round == 3
    request = the_sign(out)
    assert request.item == Proposal(1, 3, A, 0, ADDR["alice"])
    assert request.block == BLOCK_A


# ----------------------------------------------------------- round skip


@pytest.mark.parametrize("kind", [Kind.PREVOTE, Kind.PRECOMMIT])
def test_more_than_a_third_at_a_higher_round_moves_the_machine_there(kind: Kind) -> None:
    node = Node("alice")
    node.start()
    node.votes([vote("bob", kind, 1, 2, None)])
    assert node.m.round == 0  # a quarter of the stake is not enough
    out = node.votes([vote("carol", kind, 1, 2, None)])
    assert node.m.round == 2 and node.m.phase == Phase.PROPOSE
    assert ScheduleTimeout(Timeout(1, 2, Phase.PROPOSE), 1000 + 500 * 2) in out


def test_a_round_skip_finds_the_proposal_already_received() -> None:
    node = Node("alice")
    node.start()
    node.propose(proposal("dave", 1, 2, B), BLOCK_B)
    out = node.votes([prevote("bob", 1, 2, B)])  # dave (proposal) + bob: more than 1/3
    assert node.m.round == 2
    assert the_vote(out, Kind.PREVOTE) == Vote(Kind.PREVOTE, 1, 2, B, ADDR["alice"])


def test_repeated_messages_from_one_validator_do_not_make_a_third() -> None:
    node = Node("alice")
    node.start()
    node.votes([prevote("bob", 1, 5, None), precommit("bob", 1, 5, None), prevote("bob", 1, 5, None)])
    assert node.m.round == 0


# ------------------------------------------------------------ evidence


@pytest.mark.parametrize("kind", [Kind.PREVOTE, Kind.PRECOMMIT])
@pytest.mark.parametrize(("first", "second"), [(A, B), (A, None), (None, B)], ids=["A-B", "A-nil", "nil-B"])
def test_two_votes_by_one_validator_at_one_step_are_broadcast_as_evidence(
    kind: Kind, first: bytes | None, second: bytes | None
) -> None:
    node = Node("alice")
    node.start()
    out = node.votes([vote("dave", kind, 1, 0, first), vote("dave", kind, 1, 0, second)])
    [evidence] = evidences(out)
    assert evidence.offender == ADDR["dave"]
    assert {evidence.first.block_id, evidence.second.block_id} == {first, second}
    assert evidence_problem(node.m.state, evidence) is None
    assert evidence.key() in node.m.evidence_pool


def test_an_equivocation_is_broadcast_once() -> None:
    node = Node("alice")
    node.start()
    out = node.votes([prevote("dave", 1, 0, A), prevote("dave", 1, 0, B), prevote("dave", 1, 0, None)])
    assert len(evidences(out)) == 1


def test_the_same_vote_twice_or_votes_at_other_steps_are_no_evidence() -> None:
    node = Node("alice")
    node.start()
    out = node.votes(
        [
            prevote("dave", 1, 0, A),
            prevote("dave", 1, 0, A),
            precommit("dave", 1, 0, B),
            prevote("dave", 1, 1, B),
        ]
    )
    assert evidences(out) == []


def test_two_proposals_by_the_proposer_at_one_round_are_broadcast_as_evidence() -> None:
    node = Node("alice")
    node.start()
    other = make_block(STATE, "carol", txs=(b"other",))
    out = node.propose(proposal("carol", 1, 0, A), BLOCK_A)
    out = node.propose(proposal("carol", 1, 0, other.hash), other)
    [evidence] = evidences(out)
    assert isinstance(evidence.first, Proposal) and evidence.offender == ADDR["carol"]
    assert evidence_problem(node.m.state, evidence) is None
    assert node.m.proposals[0][1] == BLOCK_A  # the first proposal stands


def test_the_proposer_includes_the_evidence_it_saw_in_a_valid_block() -> None:
    node = Node("alice")  # alice proposes round 3
    node.start()
    [evidence] = evidences(node.votes([prevote("dave", 1, 0, A), prevote("dave", 1, 0, B)]))
    out = node.votes([prevote("bob", 1, 3, None), prevote("carol", 1, 3, None)])
    assert node.m.round == 3
    request = the_sign(out)
    assert isinstance(request.item, Proposal) and request.block is not None
    assert request.block.evidence == (evidence,)
    assert block_problem(node.m.state, request.block) is None


def test_gossiped_evidence_is_kept_only_if_it_verifies() -> None:
    node = Node("alice")
    good = make_evidence(prevote("dave", 1, 0, A), prevote("dave", 1, 0, B))
    forged = make_evidence(
        prevote("dave", 1, 0, A), replace(prevote("dave", 1, 0, B), signature=b"\x00" * 64)
    )
    node.m.on_evidence(forged)
    assert node.m.evidence_pool == {}
    node.m.on_evidence(good)
    assert list(node.m.evidence_pool.values()) == [good]


# --------------------------------------------------------------- on_commit


def test_on_commit_with_a_valid_certificate_decides_via_sync() -> None:
    node = Node("alice")
    node.start()
    cert = certificate(A, 1, 0, ("bob", "carol", "dave"))
    out = node.m.on_commit(BLOCK_A, cert, 5)
    [decided] = decisions(out)
    assert decided.via_sync and decided.block == BLOCK_A and decided.certificate == cert
    assert node.m.height == 2


def _forged(cert: CommitCertificate) -> CommitCertificate:
    """dave's slot carries bob's signature: dave never signed."""
    pairs = dict(cert.signatures)
    pairs[ADDR["dave"]] = pairs[ADDR["bob"]]
    return replace(cert, signatures=tuple(sorted(pairs.items())))


@pytest.mark.parametrize(
    ("block", "cert"),
    [
        (BLOCK_A, certificate(A, 1, 0, ("bob", "carol"))),  # two of four: not a quorum
        (BLOCK_A, _forged(certificate(A, 1, 0, ("bob", "carol", "dave")))),
        (BLOCK_A, certificate(B, 1, 0, ("bob", "carol", "dave"))),  # for another block
        (BLOCK_A, replace(certificate(A, 1, 0, ("bob", "carol", "dave")), height=2)),
        (BLOCK_A, make_certificate([replace(v, signature=b"\x00" * 64) for v in precommits(OTHERS, 0, A)])),
        (  # a quorum for an invalid block
            make_block(STATE, "carol", prev_hash=b"\x07" * 32),
            certificate(make_block(STATE, "carol", prev_hash=b"\x07" * 32).hash, 1, 0, OTHERS),
        ),
    ],
    ids=["insufficient", "forged", "other-block", "other-height", "zero-signatures", "invalid-block"],
)
def test_on_commit_with_a_bad_certificate_does_nothing(block: Block, cert: CommitCertificate) -> None:
    node = Node("alice")
    node.start()
    assert node.m.on_commit(block, cert, 5) == []
    assert node.m.height == 1


def test_on_commit_with_precommits_by_an_outsider_does_nothing() -> None:
    node = Node("alice")
    node.start()
    outsider = OUTSIDER
    extra = replace(
        Vote(Kind.PRECOMMIT, 1, 0, A, outsider.address),
        signature=outsider.sign(b""),
    )
    cert = make_certificate([*precommits(("bob", "carol"), 0, A), extra])
    assert node.m.on_commit(BLOCK_A, cert, 5) == []
    assert node.m.height == 1


# ----------------------------------------------------------------- restore


def lock_on_a_at_round_1(node: Node) -> None:
    """Round 0 times out (nil); at round 1 bob proposes A, a polka follows, alice locks on A."""
    node.echo(node.start())
    node.echo(node.timeout(Phase.PROPOSE, 0))
    node.echo(node.votes(prevotes(("bob", "carol"), 0, None)))
    to_round_1_by_nil_precommits(node)
    node.echo(node.propose(proposal("bob", 1, 1, A), BLOCK_A))
    out = node.votes(prevotes(OTHERS, 1, A))
    assert the_vote(out, Kind.PRECOMMIT).block_id == A
    node.echo(out)
    assert node.m.locked_block == BLOCK_A and node.m.locked_round == 1


def restarted(node: Node) -> Node:
    """A new process: a fresh machine and signer over the same durable record."""
    again = Node(node.name, state=node.state, record=node.record)
    again.now = node.now + 1000
    again.machine.restore(again.signer.journal(again.m.height), again.now)
    return again


def test_restore_relocks_on_the_journaled_precommit() -> None:
    node = Node("alice")
    lock_on_a_at_round_1(node)
    again = restarted(node)
    assert again.m.locked_block == BLOCK_A and again.m.locked_round == 1
    assert again.m.valid_block == BLOCK_A and again.m.valid_round == 1


def test_after_restore_a_fresh_block_is_not_prevoted() -> None:
    node = Node("alice")
    lock_on_a_at_round_1(node)
    again = restarted(node)
    again.start()
    out = again.propose(proposal("dave", 1, 2, B), BLOCK_B)
    out += again.votes([prevote("bob", 1, 2, B)])  # dave + bob: join round 2
    assert again.m.round == 2
    vote = the_vote(out, Kind.PREVOTE)
    assert vote.block_id is None
    assert again.signer.sign(vote) is not None  # and the signing record allows that nil prevote


def test_after_restore_a_round_0_proposal_of_b_is_not_prevoted() -> None:
    node = Node("alice")
    lock_on_a_at_round_1(node)
    again = restarted(node)
    again.start()
    out = again.propose(proposal("carol", 1, 0, B), BLOCK_B)
    assert all(s.item.block_id != B for s in signs(out))


def test_without_restore_a_restarted_machine_would_prevote_b() -> None:
    """The control for the tests above: the journal is what keeps the lock."""
    node = Node("alice")
    lock_on_a_at_round_1(node)
    fresh = Node("alice", state=node.state, record=node.record)
    fresh.start()
    out = fresh.propose(proposal("carol", 1, 0, B), BLOCK_B)
    vote = the_vote(out, Kind.PREVOTE)
    assert vote.block_id == B
    assert fresh.signer.sign(vote) is None  # the signing record still refuses it (round 0 < 1)


def test_restore_re_sends_own_messages_on_the_heartbeat() -> None:
    node = Node("alice")
    lock_on_a_at_round_1(node)
    again = restarted(node)
    again.start()
    out = again.timeout(Phase.HEARTBEAT, 0)
    [rebroadcast] = [o for o in out if isinstance(o, Rebroadcast)]
    sent = {item for item, _ in rebroadcast.items}
    own = [item for item, _ in again.signer.journal(1) if signer_of(item) == ADDR["alice"]]
    assert own and all(item in sent for item in own)


def test_restore_recovers_the_polka_behind_the_lock_and_relays_it() -> None:
    """The lock's proof is journaled with the precommit: a restarted node can still show it."""
    node = Node("alice")
    lock_on_a_at_round_1(node)
    again = restarted(node)
    assert again.m.votes[(1, Kind.PREVOTE)].has_quorum_for(A)
    again.start()
    [rebroadcast] = [o for o in again.timeout(Phase.HEARTBEAT, 0) if isinstance(o, Rebroadcast)]
    relayed = {
        signer_of(item)
        for item, _ in rebroadcast.items
        if isinstance(item, Vote) and item.kind == Kind.PREVOTE and item.round == 1 and item.block_id == A
    }
    assert again.m.state.committee.is_quorum(sum(again.m.state.committee.power_of(v) for v in relayed))


def test_without_the_journaled_polka_a_restarted_node_holds_only_its_own_prevote() -> None:
    """The control: a journal without justifications (as before) loses the others' prevotes."""
    node = Node("alice")
    lock_on_a_at_round_1(node)
    own_only = MemoryRecord()
    own_only.marks = dict(node.record.marks)
    height, entries = node.record.entries[ADDR["alice"]]
    own_only.entries = {ADDR["alice"]: (height, [(_strip(item), block) for item, block in entries])}
    again = restarted(Node("alice", state=node.state, record=own_only))
    assert not again.m.votes[(1, Kind.PREVOTE)].has_quorum_for(A)


def _strip(journaled: bytes) -> bytes:
    """A journal entry as written before justifications existed: (tag, item)."""
    tag, wire, *_ = decode(journaled)
    return encode((tag, wire))


def test_the_heartbeat_relays_votes_received_from_others() -> None:
    node = Node("alice")
    node.start()
    node.votes([prevote("bob", 1, 0, A)])
    [rebroadcast] = [o for o in node.timeout(Phase.HEARTBEAT, 0) if isinstance(o, Rebroadcast)]
    assert prevote("bob", 1, 0, A) in [item for item, _ in rebroadcast.items]


def test_a_machine_that_leaves_relaying_to_a_co_hosted_key_re_sends_only_its_own() -> None:
    node = Node("alice")
    node.machine = ConsensusMachine(node.state, ADDR["alice"], relays_others=False)
    node.echo(node.start())
    node.echo(node.timeout(Phase.PROPOSE, 0))
    node.votes([prevote("bob", 1, 0, None)])
    [rebroadcast] = [o for o in node.timeout(Phase.HEARTBEAT, 0) if isinstance(o, Rebroadcast)]
    assert [item.validator for item, _ in rebroadcast.items] == [ADDR["alice"]]


def test_a_vote_received_many_times_is_relayed_once_per_heartbeat() -> None:
    node = Node("alice")
    node.echo(node.start())
    node.echo(node.timeout(Phase.PROPOSE, 0))
    node.votes([prevote("bob", 1, 0, None)] * 50)
    own = [s for s in node.m.votes[(0, Kind.PREVOTE)].votes_for(None) if s.validator == ADDR["alice"]]
    node.votes(own * 50)  # peers echo our own vote back to us
    [rebroadcast] = [o for o in node.timeout(Phase.HEARTBEAT, 0) if isinstance(o, Rebroadcast)]
    items = [item for item, _ in rebroadcast.items]
    assert len(items) == len(set(items)) == 2


def test_heartbeat_traffic_stays_bounded_however_many_rounds_a_height_takes() -> None:
    """A stall costs a constant per beat: only the rounds that can still matter are relayed."""
    node = Node("alice")
    node.echo(node.start())
    sizes = []
    for round_ in range(12):
        node.echo(node.timeout(Phase.PROPOSE, round_))
        node.echo(node.votes(prevotes(("bob", "carol"), round_, None)))
        node.echo(node.votes(precommits(("bob", "carol"), round_, None)))
        node.echo(node.timeout(Phase.PRECOMMIT, round_))
        [rebroadcast] = [o for o in node.timeout(Phase.HEARTBEAT, 0) if isinstance(o, Rebroadcast)]
        sizes.append(len(rebroadcast.items))
    assert node.m.round == 12
    assert max(sizes) <= 2 * 2 * 4 + 2  # two rounds, two kinds, four validators, two proposals


def test_after_restore_the_round_0_proposer_emits_only_well_formed_proposals() -> None:
    node = Node("carol")  # carol proposes round 0
    node.echo(node.start())  # carol proposes some block at round 0 ...
    node.echo(node.timeout(Phase.PROPOSE, 0))
    node.echo(node.votes(prevotes(("alice", "bob"), 0, None)))
    node.votes(precommits(("alice", "bob", "dave"), 0, None))
    node.timeout(Phase.PRECOMMIT, 0)
    node.echo(node.propose(proposal("bob", 1, 1, A), BLOCK_A))
    node.echo(node.votes(prevotes(("alice", "bob", "dave"), 1, A)))
    assert node.m.locked_round == 1
    again = restarted(node)
    proposals = [s.item for s in signs(again.start()) if isinstance(s.item, Proposal)]
    assert all(item.pol_round < item.round for item in proposals), proposals


def test_decided_names_the_proposer_in_the_block() -> None:
    node = Node("alice")
    locked_on_a_at_round_0(node)
    [decided] = decisions(node.votes(precommits(("bob", "carol"), 0, A)))
    assert NAME_OF[decided.block.proposer] == "carol"


# ------------------------------------------------- stake, committee, heights


def test_quorums_are_by_stake_not_by_head_count() -> None:
    """alice holds 5000 of 8000: bob, carol and dave together (3000) are no quorum, alice + bob are."""
    state = state0(stakes={"alice": 5000, "bob": 1000, "carol": 1000, "dave": 1000})
    node = Node("bob", state=state)
    node.start()
    node.echo(node.timeout(Phase.PROPOSE, 0))
    out = node.votes(prevotes(("carol", "dave"), 0, None))
    assert signs(out) == [] and node.m.phase == Phase.PREVOTE
    out = node.votes(prevotes(("alice",), 0, None))
    assert the_vote(out, Kind.PRECOMMIT).block_id is None


def test_more_than_a_third_is_by_stake() -> None:
    """With alice at 5000 of 8000, alice alone moves bob to her round; carol + dave (2000) do not."""
    state = state0(stakes={"alice": 5000, "bob": 1000, "carol": 1000, "dave": 1000})
    node = Node("bob", state=state)
    node.start()
    node.votes([prevote("carol", 1, 4, None), prevote("dave", 1, 4, None)])
    assert node.m.round == 0
    node.votes([prevote("alice", 1, 4, None)])
    assert node.m.round == 4


def committee_of_3(outsider: str = "dave") -> ChainState:
    """Four equal validators and three seats: one each for everyone but `outsider`.

    Set by hand: who the draw seats, and with how many seats each, depends on
    the seed, and these tests are about counting votes, not about the draw.
    """
    state = state0(Params(committee_size=3))
    seats = Seats(0, tuple(sorted((ADDR[name], 1) for name in ADDR if name != outsider)))
    return replace(state, seats=seats, committee=committee_for(1, seats, state.validator_set))


def test_votes_from_outside_the_committee_are_not_counted() -> None:
    state = committee_of_3()
    members = {NAME_OF[a] for a, _ in state.committee.members}
    (outsider,) = set(("alice", "bob", "carol", "dave")) - members
    inside = sorted(members - {"alice"})
    node = Node("alice", state=state)
    node.start()
    node.echo(node.timeout(Phase.PROPOSE, 0))
    out = node.votes(prevotes((inside[0], outsider), 0, None))
    assert signs(out) == []  # alice + one member: 2 of 3 seats is not more than 2/3
    out = node.votes(prevotes((inside[1],), 0, None))
    assert the_vote(out, Kind.PRECOMMIT).block_id is None


def test_a_validator_outside_the_committee_proposes_but_never_votes() -> None:
    state = committee_of_3()
    members = {NAME_OF[a] for a, _ in state.committee.members}
    (outsider,) = set(("alice", "bob", "carol", "dave")) - members
    node = Node(outsider, state=state)
    out = node.start()
    if proposer_name(state, 0) == outsider:
        request = the_sign(out)
        assert isinstance(request.item, Proposal)
        assert request.block is not None
        item, block = proposal(outsider, 1, 0, request.block.hash), request.block
    else:
        block = make_block(state, proposer_name(state, 0))
        item = proposal(proposer_name(state, 0), 1, 0, block.hash)
    out = node.propose(item, block)
    assert [s for s in signs(out) if isinstance(s.item, Vote)] == []
    out = node.votes(prevotes(tuple(sorted(members)), 0, block.hash))
    out += node.votes(precommits(tuple(sorted(members)), 0, block.hash))
    assert [s for s in signs(out) if isinstance(s.item, Vote)] == []
    [decided] = decisions(out)
    assert decided.block == block


def height_two_block(signers: tuple[str, ...] = ("alice", "bob", "carol")) -> tuple[str, Block]:
    """Height 2's round-0 proposer and its block, carrying a certificate for BLOCK_A signed by `signers`."""
    state1, _ = finalize(STATE, BLOCK_A)
    name = proposer_name(state1, 0)
    return name, make_block(state1, name, last_commit=certificate(A, 1, 0, signers))


def test_messages_for_the_next_height_are_kept_and_replayed_after_deciding() -> None:
    _, block2 = height_two_block()
    node = Node("dave")
    node.start()
    node.propose(proposal("carol", 1, 0, A), BLOCK_A)
    early = prevotes(("alice", "bob"), 0, block2.hash, height=2)
    assert signs(node.votes(early)) == []  # early: dave is still at height 1
    out = node.votes(prevotes(("alice", "bob", "carol"), 0, A) + precommits(("alice", "bob", "carol"), 0, A))
    assert len(decisions(out)) == 1 and node.m.height == 2
    assert node.m.votes[(0, Kind.PREVOTE)].power_for[block2.hash] > 0  # the early prevotes, replayed


def test_a_proposal_for_the_next_height_decides_ours_with_the_certificate_it_carries() -> None:
    """The proposer that decided height 1 never sends its precommits again; its next proposal proves the decision."""
    name, block2 = height_two_block()
    node = Node("dave")
    node.start()
    node.propose(proposal("carol", 1, 0, A), BLOCK_A)
    out = node.propose(proposal(name, 2, 0, block2.hash), block2)
    [decided] = decisions(out)
    assert decided.block == BLOCK_A and node.m.height == 2
    assert [s.item for s in signs(out)] == [
        Vote(Kind.PRECOMMIT, 1, 0, A, ADDR["dave"])
    ]  # counted late, not missed
    out = node.timeout(Phase.NEW_HEIGHT, 0)  # the buffered proposal is replayed when height 2 starts
    height_two = [s.item for s in signs(out) if isinstance(s.item, Vote) and s.item.height == 2]
    assert height_two == [Vote(Kind.PREVOTE, 2, 0, block2.hash, ADDR["dave"])]


def test_a_next_height_certificate_without_a_quorum_decides_nothing() -> None:
    name, block2 = height_two_block(signers=("alice", "bob"))
    node = Node("dave")
    node.start()
    node.propose(proposal("carol", 1, 0, A), BLOCK_A)
    out = node.propose(proposal(name, 2, 0, block2.hash), block2)
    assert decisions(out) == [] and node.m.height == 1


def test_a_next_height_certificate_for_a_block_never_received_asks_for_sync() -> None:
    name, block2 = height_two_block()
    node = Node("dave")
    node.start()
    out = node.propose(proposal(name, 2, 0, block2.hash), block2)
    assert decisions(out) == [] and RequestSync(1) in out


def test_a_proposal_two_heights_ahead_asks_for_sync() -> None:
    node = Node("alice")
    node.start()
    block3 = replace(make_block(STATE, "carol"), height=3)
    assert RequestSync(1) in node.propose(proposal("carol", 3, 0, block3.hash), block3)


def test_sync_is_asked_again_at_once_after_reaching_a_new_height() -> None:
    """A request sent the moment a node fell behind may find peers with nothing yet; the next height asks anew."""
    node = Node("dave")
    node.start()
    node.now = 5000
    far = 2 + BUFFER_AHEAD
    assert RequestSync(1) in node.votes([precommit("bob", far, 0, A)])
    node.propose(proposal("carol", 1, 0, A), BLOCK_A)
    out = node.votes(prevotes(("alice", "bob", "carol"), 0, A) + precommits(("alice", "bob", "carol"), 0, A))
    assert node.m.height == 2
    out = node.votes([precommit("bob", far + 1, 0, A)])
    assert RequestSync(2) in out


def test_messages_from_far_ahead_ask_for_sync() -> None:
    node = Node("alice")
    node.start()
    node.now = 5000
    far = 2 + BUFFER_AHEAD
    assert RequestSync(1) not in node.votes([precommit("bob", far - 1, 0, A)])  # kept, not synced
    out = node.votes([precommit("bob", far, 0, A)])
    assert RequestSync(1) in out
    out = node.votes([precommit("carol", far, 0, A)])
    assert RequestSync(1) not in out  # rate-limited


def test_slot_mode_waits_for_commit_wait_before_round_0() -> None:
    params = Params(commit_wait_ms=250)
    state = state0(params)
    block = make_block(state, "carol")
    state1, _ = finalize(state, block)
    proposer = proposer_name(state1, 0)
    node = Node(proposer, state=state)
    node.start()
    node.propose(proposal("carol", 1, 0, block.hash), block)
    others = tuple(n for n in ("alice", "bob", "carol", "dave") if n != proposer)
    out = node.votes(prevotes(others, 0, block.hash) + precommits(others, 0, block.hash))
    assert len(decisions(out)) == 1
    assert ScheduleTimeout(Timeout(2, 0, Phase.NEW_HEIGHT), 250) in out
    assert [s for s in signs(out) if isinstance(s.item, Proposal)] == []
    assert node.m.phase == Phase.NEW_HEIGHT
    out = node.timeout(Phase.NEW_HEIGHT, 0)
    request = the_sign(out)
    assert isinstance(request.item, Proposal) and request.item.height == 2


EXACT_THIRDS = {"alice": 2000, "bob": 1000, "carol": 1000, "dave": 2000}  # 6000 in all


def test_exactly_a_third_of_the_stake_does_not_move_the_round() -> None:
    node = Node("bob", state=state0(stakes=EXACT_THIRDS))
    node.start()
    node.votes([prevote("dave", 1, 4, None)])  # 2000 of 6000: a third, not more
    assert node.m.round == 0
    node.votes([prevote("carol", 1, 4, None)])
    assert node.m.round == 4


def test_exactly_two_thirds_of_the_stake_is_not_a_quorum() -> None:
    node = Node("bob", state=state0(stakes=EXACT_THIRDS))
    node.start()
    assert the_vote(node.timeout(Phase.PROPOSE, 0), Kind.PREVOTE).block_id is None  # not fed back
    out = node.votes(prevotes(("alice", "dave"), 0, None))  # 4000 of 6000: two thirds, not more
    assert signs(out) == [] and not [o for o in out if isinstance(o, ScheduleTimeout)]
    out = node.votes(prevotes(("carol",), 0, None))
    assert the_vote(out, Kind.PRECOMMIT).block_id is None
