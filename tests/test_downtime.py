"""Downtime is judged fairly: on who was seen precommitting, after a grace period.

The certificate a block carries holds only the precommits its proposer had
when it proposed (the first 2/3 in fast mode). These tests check that a
precommit arriving later still counts when a later block carries it, that a
height is judged only after its grace period, that a block carrying a bogus
late precommit is invalid, and that a validator whose precommit never came
is still charged.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from node.core.consensus import ConsensusMachine, Decided, Output, Phase, Rebroadcast, Sign
from node.core.genesis import Params
from node.core.messages import Block, Kind, Proposal, Vote
from node.core.state import ChainState, apply_block, block_problem, participation_after
from tests.support.chain import ADDR, OUTSIDER, certificate, make_block, precommit, prevote, proposal, state0

PARAMS = Params(late_precommit_ms=1000, downtime_window=4, max_missed_in_window=1)
SLOW = "dave"  # always outside the first 2/3


def chain_of(
    heights: int, *, late_from: int | None = None, step_ms: int = 100, params: Params = PARAMS
) -> list[ChainState]:
    """States after heights 1..N; dave never makes a certificate, and from block `late_from` on,
    each block carries dave's late precommit for every pending height."""
    states = [state0(params)]
    cert = None
    for height in range(1, heights + 1):
        state = states[-1]
        block = make_block(state, last_commit=cert, timestamp_ms=height * step_ms)
        if late_from is not None and height >= late_from:
            pending = [p for p in participation_after(state, block)[1] if SLOW not in _names(p.signers)]
            late = tuple(precommit(SLOW, p.height, p.round, p.block_id) for p in pending)
            block = replace(block, late_precommits=late)
        assert block_problem(state, block) is None, block_problem(state, block)
        states.append(apply_block(state, block)[0])
        cert = certificate(block.hash, height, 0, QUORUM)
    return states


def _names(addresses: frozenset[bytes]) -> set[str]:
    return {name for name, address in ADDR.items() if address in addresses}


def status_of(state: ChainState, name: str) -> str:
    return state.ledger.pools[ADDR[name]].status


def test_a_validator_missing_from_every_certificate_is_jailed() -> None:
    """The control: dave's precommits never arrive anywhere, so dave is charged."""
    states = chain_of(40)
    assert status_of(states[-1], SLOW) == "jailed"


def test_late_precommits_carried_by_later_blocks_keep_an_online_validator_out_of_jail() -> None:
    states = chain_of(40, late_from=3)
    assert status_of(states[-1], SLOW) == "active"
    assert states[-1].ledger.pools[ADDR[SLOW]].missed == 0


def test_a_height_is_judged_only_after_its_grace_period() -> None:
    states = chain_of(12, step_ms=100)
    pending = states[-1].participation
    assert pending, "heights within late_precommit_ms of the last block are still pending"
    newest = states[-1].last_timestamp_ms
    assert all(newest - p.timestamp_ms < PARAMS.late_precommit_ms for p in pending)
    assert min(p.height for p in pending) > 1  # older ones were judged


@pytest.mark.parametrize(
    "bad",
    [
        lambda h, r, b: precommit(SLOW, h, r + 1, b),  # another round
        lambda h, r, b: precommit(SLOW, h, r, bytes(32)),  # another block
        lambda h, r, b: precommit("alice", h, r, b),  # already in the certificate
        lambda h, r, b: Vote(Kind.PREVOTE, h, r, b, ADDR[SLOW], b"\0" * 64),  # not a precommit
        lambda h, r, b: replace(precommit(SLOW, h, r, b), signature=b"\1" * 64),  # forged
        lambda h, r, b: Vote(Kind.PRECOMMIT, h, r, b, OUTSIDER.address, OUTSIDER.sign(b"x")),  # outsider
        lambda h, r, b: precommit(SLOW, h + 50, r, b),  # a height that is not pending
    ],
)
def test_a_block_with_a_bogus_late_precommit_is_invalid(bad: object) -> None:
    states = chain_of(3)
    state = states[-1]
    cert = certificate(state.last_block_hash, 3, 0, QUORUM)
    block = make_block(state, last_commit=cert, timestamp_ms=400)
    entry = participation_after(state, block)[1][0]
    late = bad(entry.height, entry.round, entry.block_id)  # type: ignore[operator]
    assert "late precommit" in (block_problem(state, replace(block, late_precommits=(late,))) or "")


def test_a_late_precommit_for_nil_at_the_decided_round_counts() -> None:
    states = chain_of(3)
    state = states[-1]
    cert = certificate(state.last_block_hash, 3, 0, QUORUM)
    block = make_block(state, last_commit=cert, timestamp_ms=400)
    entry = participation_after(state, block)[1][0]
    block = replace(block, late_precommits=(precommit(SLOW, entry.height, entry.round, None),))
    assert block_problem(state, block) is None
    after = apply_block(state, block)[0]
    assert any(ADDR[SLOW] in p.signers for p in after.participation if p.height == entry.height)


def test_the_same_late_precommit_twice_in_a_block_is_invalid() -> None:
    states = chain_of(3)
    state = states[-1]
    cert = certificate(state.last_block_hash, 3, 0, QUORUM)
    block = make_block(state, last_commit=cert, timestamp_ms=400)
    entry = participation_after(state, block)[1][0]
    late = precommit(SLOW, entry.height, entry.round, entry.block_id)
    assert block_problem(state, replace(block, late_precommits=(late, late))) == "late precommit: duplicate"


# ------------------------------------------------------------------ the machine


QUORUM = ("alice", "bob", "carol")


def shown_block_1(name: str) -> tuple[ConsensusMachine, Block]:
    """`name`'s machine at height 1 with carol's proposal of block 1 in hand."""
    state = state0(PARAMS)
    block = make_block(state, "carol", timestamp_ms=10)
    machine = ConsensusMachine(state, ADDR[name])
    machine.start(0)
    machine.on_proposal(proposal("carol", 1, 0, block.hash), block, 1)
    return machine, block


def votes(machine: ConsensusMachine, items: list[Vote], now_ms: int) -> list[Output]:
    return [output for vote in items for output in machine.on_vote(vote, now_ms)]


def drive_to_height_2(name: str) -> tuple[ConsensusMachine, Block]:
    """`name`'s machine decides block 1 on the others' precommits."""
    machine, block = shown_block_1(name)
    votes(machine, [precommit(voter, 1, 0, block.hash) for voter in QUORUM], 2)
    assert machine.height == 2
    return machine, block


def rebroadcast(out: list[Output]) -> list[Vote | Proposal]:
    return [item for o in out if isinstance(o, Rebroadcast) for item, _ in o.items]


def test_a_proposer_includes_late_precommits_it_received_for_an_earlier_height() -> None:
    machine, block1 = drive_to_height_2("alice")
    state1 = machine.state
    block2 = make_block(state1, last_commit=machine.last_certificate, timestamp_ms=20)
    state2 = apply_block(state1, block2)[0]
    cert2 = certificate(block2.hash, 2, 0, QUORUM)
    machine = ConsensusMachine(state2, ADDR["alice"], last_certificate=cert2)
    machine.on_vote(precommit(SLOW, 1, 0, block1.hash), 30)  # dave's precommit for height 1, late
    built = machine._build_block()
    assert built.late_precommits == (precommit(SLOW, 1, 0, block1.hash),)
    assert block_problem(state2, built) is None


def test_a_lagging_validator_precommits_a_block_it_sees_decided() -> None:
    """Deciding on the others' precommits before voting: it still signs its precommit."""
    machine, block = shown_block_1(SLOW)
    out = votes(machine, [precommit(voter, 1, 0, block.hash) for voter in QUORUM], 2)
    signs = [o.item for o in out if isinstance(o, Sign)]
    assert Vote(Kind.PRECOMMIT, 1, 0, block.hash, ADDR[SLOW]) in signs
    decided = [o for o in out if isinstance(o, Decided)]
    assert len(decided) == 1
    order = [type(o) for o in out]
    assert order.index(Sign) < order.index(Decided)  # signed while still at that height


def test_a_validator_that_precommitted_already_does_not_sign_again_on_deciding() -> None:
    machine, block = shown_block_1(SLOW)
    votes(machine, [prevote(voter, 1, 0, block.hash) for voter in QUORUM], 3)
    assert machine.phase == Phase.PRECOMMIT  # it precommitted on the polka
    out = votes(machine, [precommit(voter, 1, 0, block.hash) for voter in QUORUM], 4)
    assert machine.height == 2
    assert not [o for o in out if isinstance(o, Sign) and o.item.height == 1]


def test_a_late_precommit_for_the_last_certificate_survives_the_next_decision() -> None:
    """Folded into the next certificate only, it was lost when another proposer's block came first."""
    machine, block1 = drive_to_height_2("alice")
    machine.on_vote(precommit(SLOW, 1, 0, block1.hash), 25)  # late, but for the certificate we hold
    state1 = machine.state
    block2 = make_block(state1, last_commit=certificate(block1.hash, 1, 0, QUORUM), timestamp_ms=20)
    cert2 = certificate(block2.hash, 2, 0, QUORUM)
    machine.on_commit(block2, cert2, 30)  # someone else's block 2, without dave's precommit
    assert machine.height == 3
    assert precommit(SLOW, 1, 0, block1.hash) in machine._build_block().late_precommits


def test_a_validator_resends_its_precommit_until_a_block_counts_it() -> None:
    """Lost on the way to every proposer, it would be charged as downtime although we were online."""
    machine, block1 = shown_block_1(SLOW)
    votes(machine, [prevote(voter, 1, 0, block1.hash) for voter in QUORUM], 2)
    ours = precommit(SLOW, 1, 0, block1.hash)
    machine.on_vote(ours, 3)  # our own precommit, signed and fed back as the driver does
    votes(machine, [precommit(voter, 1, 0, block1.hash) for voter in QUORUM], 4)
    assert machine.height == 2
    cert1 = certificate(block1.hash, 1, 0, QUORUM)  # the proposer's, without ours
    block2 = make_block(machine.state, last_commit=cert1, timestamp_ms=20)
    out = machine.on_commit(block2, certificate(block2.hash, 2, 0, QUORUM), 30)
    assert ours in rebroadcast(out)
    counted = make_block(machine.state, last_commit=certificate(block2.hash, 2, 0, QUORUM), timestamp_ms=40)
    counted = replace(counted, late_precommits=(ours,))
    out = machine.on_commit(counted, certificate(counted.hash, 3, 0, QUORUM), 50)
    assert ours not in rebroadcast(out)


def test_an_uncounted_precommit_goes_out_at_every_height_of_the_grace_then_at_doubling_distances() -> None:
    """A fast chain keeps a height pending for many heights: re-sending at each one cost every height
    messages in proportion to the backlog; lost copies still get fresh chances, further apart."""
    machine, block1 = shown_block_1(SLOW)
    votes(machine, [prevote(voter, 1, 0, block1.hash) for voter in QUORUM], 2)
    ours = precommit(SLOW, 1, 0, block1.hash)
    machine.on_vote(ours, 3)
    votes(machine, [precommit(voter, 1, 0, block1.hash) for voter in QUORUM], 4)
    previous, resent_at = block1, []
    for height in range(2, 40):  # 1 ms apart: height 1 stays pending (late_precommit_ms 1000) throughout
        block = make_block(
            machine.state,
            last_commit=certificate(previous.hash, height - 1, 0, QUORUM),
            timestamp_ms=10 + height,
        )
        out = machine.on_commit(block, certificate(block.hash, height, 0, QUORUM), 10 + height)
        if ours in rebroadcast(out):
            resent_at.append(machine.height - 1)
        previous = block
    grace = machine.state.params.late_precommit_heights
    assert resent_at == [*range(2, grace + 1), *(d for d in (8, 16, 32) if d > grace)]  # 1: on deciding 1


# ------------------------------------------------------------------ how long a height stays pending


def test_after_a_stall_the_first_block_judges_only_heights_past_the_grace_in_blocks() -> None:
    """A stall lets block time run past every grace period at once; the block count holds the newest
    `late_precommit_heights` pending, so the proposers that follow still get to carry their precommits."""
    params = replace(PARAMS, late_precommit_heights=4)
    states = chain_of(8, params=params)  # blocks 100 ms apart: heights 1..8, a few pending
    state = states[-1]
    cert = certificate(state.last_block_hash, 8, 0, QUORUM)
    after_stall = make_block(state, last_commit=cert, timestamp_ms=60_000)  # a minute later
    judged, pending = participation_after(state, after_stall)
    assert [p.height for p in pending] == [6, 7, 8]  # 9 - 6 < 4 blocks: not judged yet
    assert max(p.height for p in judged) == 5


def test_no_cap_on_pending_heights_shortens_the_grace_period() -> None:
    """Blocks every millisecond (a lone supermajority at the timer floor): a height stays pending for
    the whole `late_precommit_ms` of block time, however many heights that is (a cap of 256 judged
    them after a quarter of a second)."""
    params = replace(PARAMS, late_precommit_ms=1000)
    states = chain_of(300, step_ms=1, params=params)
    assert [p.height for p in states[-1].participation] == list(range(1, 300))


def test_a_late_precommit_is_admitted_while_its_height_is_pending_however_old() -> None:
    """Admission drops precommits of heights no block can count any more, and only those: the oldest
    pending height, not a fixed number of heights back."""
    from node.core.admission import AdmissionContext, Rejected, admit
    from tests.support.chain import CHAIN_ID, KEYS, envelope

    keys = {ADDR[name]: KEYS[name].public for name in ADDR}
    late = envelope(precommit(SLOW, 3, 0, bytes(32))).to_bytes()
    pending = AdmissionContext(CHAIN_ID, keys, height=1000, oldest_pending=3)
    judged = AdmissionContext(CHAIN_ID, keys, height=1000, oldest_pending=4)
    assert not isinstance(admit(late, pending), Rejected)
    assert isinstance(refused := admit(late, judged), Rejected) and refused.reason == "stale"


def test_late_precommit_heights_below_two_is_refused() -> None:
    from node.core.genesis import GenesisError, parse_params

    with pytest.raises(GenesisError, match="late_precommit_heights"):
        parse_params({"late_precommit_heights": 1})
    assert parse_params({"late_precommit_heights": 2}).late_precommit_heights == 2


def test_pending_records_are_found_by_height_exactly_as_a_dict_of_them_would_find_them() -> None:
    """`pending_by_height` bisects the records, so it needs them in ascending height: the chain keeps them so."""
    from node.core.state import PendingByHeight

    states = chain_of(40, step_ms=1, params=replace(PARAMS, late_precommit_ms=30))
    for state in states:
        heights = [p.height for p in state.participation]
        assert heights == sorted(set(heights))
        by_dict = {p.height: p for p in state.participation}
        found = PendingByHeight(state.participation)
        assert dict(found) == by_dict and len(found) == len(by_dict)
        for height in range(-1, 45):
            assert found.get(height) is by_dict.get(height)
            assert (height in found) == (height in by_dict)


def test_precommits_from_far_ahead_count_once_sync_has_brought_us_past_their_heights() -> None:
    """Found by a sweep (seed 6011693): a lagging proposer got a precommit 35 heights ahead of it, dropped
    it, caught up by sync and built its block without it: a miss charged to a validator whose precommit
    had reached that proposer in time. Now such precommits are kept and counted as late ones."""
    from node.core.consensus.catchup import BUFFER_AHEAD

    params = replace(PARAMS, late_precommit_ms=100_000)  # every height stays pending here
    state, cert, synced = state0(params), None, []
    for height in range(1, BUFFER_AHEAD + 9):
        block = make_block(state, last_commit=cert, timestamp_ms=height * 10)
        state = apply_block(state, block)[0]
        cert = certificate(block.hash, height, 0, QUORUM)
        synced.append((block, cert))
    top = len(synced)
    machine = ConsensusMachine(state0(params), ADDR["alice"])
    machine.start(0)
    far = [precommit(SLOW, h, 0, synced[h - 1][0].hash) for h in (top - 2, top)]
    near = precommit(
        SLOW, BUFFER_AHEAD // 2, 0, synced[BUFFER_AHEAD // 2 - 1][0].hash
    )  # buffered, then passed
    for vote in (*far, near):
        machine.on_vote(vote, 1)
    assert all(vote.height > 1 + BUFFER_AHEAD for vote in far) and near.height <= 1 + BUFFER_AHEAD
    for block, certified in synced:
        machine.on_commit(block, certified, 500)
    assert machine.height == top + 1
    built = machine._build_block()
    assert {*far, near} <= set(built.late_precommits)
    assert block_problem(machine.state, built) is None
