"""The chain state: its digest (what every block commits to about the state it applies to) and its committee seats."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.core.genesis import Params, make_genesis
from node.core.keys import Keypair
from node.core.ledger import ACTIVE, RETIRED, Account, Participation
from node.core.messages import (
    ZERO_HASH,
    Block,
    Evidence,
    Kind,
    Vote,
    make_certificate,
    make_evidence,
    sha256,
    sign_item,
)
from node.core.query import validator_summary
from node.core.selection import committee_powers, increment_proposer_priority
from node.core.state import (
    ChainState,
    Committee,
    apply_block,
    block_context,
    block_problem,
    canonical,
    committee_seed,
    evidence_problem,
    genesis_seed,
    genesis_state,
    hashed_fields,
    is_mature,
    late_precommit_misfit,
    opened_participation,
    participation_after,
    proposer_of,
    signed_item_problem,
)
from node.core.tx import Undelegate, sign_tx
from tests.support.chain import (
    ADDR,
    CHAIN_ID,
    OUTSIDER,
    certificate,
    finalize,
    make_block,
    precommit,
    prevote,
    state0,
)

REPO = Path(__file__).resolve().parent.parent


def test_state_digest_changes_when_any_balance_changes() -> None:
    state = state0()
    ledger = state.ledger
    bumped = ledger.accounts.set(ADDR["bob"], replace(ledger.accounts.get(ADDR["bob"], Account()), balance=1))
    assert replace(state, ledger=replace(ledger, accounts=bumped)).digest != state.digest


def test_state_digest_ignores_committees_which_are_derived() -> None:
    state = state0()
    assert replace(state, recent_committees=(state.committee,)).digest == state.digest


def test_applying_a_block_changes_the_digest_and_the_next_block_must_carry_it() -> None:
    state = state0()
    block = make_block(state)
    after, cert = finalize(state, block)
    assert block.state_hash == state.digest and after.digest != state.digest
    following = make_block(after, last_commit=cert)
    assert following.state_hash == after.digest and block_problem(after, following) is None
    assert block_problem(after, replace(following, state_hash=state.digest)) is not None


@pytest.mark.integration
def test_state_digest_is_the_same_in_processes_with_different_hash_seeds() -> None:
    code = "from tests.support.chain import state0; print(state0().digest.hex())"
    digests = {
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO,
            env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2", "3")
    }
    assert len(digests) == 1 and len(digests.pop()) == 64


# ------------------------------------------------------------ committee seats

SEAT_KEYS = {f"v{i}": Keypair.deterministic(f"t/seats/v{i}") for i in range(7)}
SEAT_PARAMS = Params(committee_size=4, epoch_length=3)


def seat_state0() -> ChainState:
    """Seven validators of unequal stake and four seats, so seats are drawn."""
    stakes = {name: 1000 * (i + 1) for i, name in enumerate(SEAT_KEYS)}
    return genesis_state(make_genesis("posnet-seats", SEAT_KEYS, params=SEAT_PARAMS, stakes=stakes))


def name_of(address: bytes) -> str:
    return next(name for name, kp in SEAT_KEYS.items() if kp.address == address)


def next_block(
    state: ChainState, *, tick: int = 1, txs: tuple[bytes, ...] = (), evidence: tuple = ()
) -> ChainState:
    """Apply the next block (validity beyond what apply_block needs is not the point here)."""
    block = Block(
        height=state.next_height,
        prev_hash=state.last_block_hash,
        proposer=proposer_of(state, 0),
        timestamp_ms=state.last_timestamp_ms + tick,
        txs=txs,
        evidence=evidence,
        last_commit=None,
        state_hash=state.digest,
    )
    return apply_block(state, block)[0]


def equivocation(state: ChainState, name: str) -> Evidence:
    """Two conflicting prevotes by `name` at the last finalized height."""
    votes = [
        replace(vote, signature=sign_item(state.chain_id, vote, SEAT_KEYS[name]))
        for vote in (
            Vote(Kind.PREVOTE, state.height, 0, bytes([n]) * 32, SEAT_KEYS[name].address) for n in (1, 2)
        )
    ]
    return make_evidence(*votes)


def withdrawal(state: ChainState, name: str, amount: int) -> bytes:
    """The operator takes `amount` out of its own pledge (a stake change)."""
    address = SEAT_KEYS[name].address
    nonce = state.ledger.accounts.get(address, Account()).nonce
    return sign_tx(state.chain_id, Undelegate(nonce, address, amount), SEAT_KEYS[name])


def test_state_digest_covers_the_seats_which_are_not_derived() -> None:
    state = seat_state0()
    assert replace(state, seats=replace(state.seats, members=())).digest != state.digest
    assert replace(state, next_seats=replace(state.next_seats, members=())).digest != state.digest


def test_genesis_draws_epochs_0_and_1_from_the_genesis_set_with_separate_seeds() -> None:
    state = seat_state0()
    seed = genesis_seed("posnet-seats")
    assert committee_seed(seed, 0) != committee_seed(seed, 1)
    for seats, epoch in ((state.seats, 0), (state.next_seats, 1)):
        assert seats.epoch == epoch
        assert seats.members == committee_powers(state.validator_set, 4, committee_seed(seed, epoch))
        assert sum(power for _, power in seats.members) == 4  # seven validators, four seats of one vote
    assert state.committee.members == state.seats.members and state.committee.total == 4


def test_few_validators_all_sit_and_vote_with_their_stake() -> None:
    state = state0(stakes={"alice": 5000, "bob": 1000, "carol": 1000, "dave": 1000})
    assert state.seats.members == state.next_seats.members == state.validator_set
    assert state.committee.total == 8000


def test_the_seats_of_epoch_e_plus_1_are_drawn_at_the_boundary_that_starts_epoch_e() -> None:
    state = seat_state0()
    for _ in range(3 * SEAT_PARAMS.epoch_length):
        before, state = state, next_block(state)
        if state.epoch == before.epoch:
            assert (state.seats, state.next_seats) == (before.seats, before.next_seats)
            continue
        assert state.seats == before.next_seats and state.seats.epoch == state.epoch
        seed = committee_seed(state.epoch_seed, state.epoch + 1)
        assert state.next_seats.epoch == state.epoch + 1
        assert state.next_seats.members == committee_powers(state.validator_set, 4, seed)


# During epoch 1 (heights 4..6, its last block included), each height may
# tombstone one validator by equivocation evidence, withdraw stake from one,
# and move the clock (which changes the block hashes the seed mixes in).
epoch_1_events = st.lists(
    st.tuples(
        st.sampled_from([None, *SEAT_KEYS]),
        st.sampled_from([None, *SEAT_KEYS]),
        st.integers(min_value=1, max_value=10**6),
    ),
    min_size=3,
    max_size=3,
)


@given(epoch_1_events)
@settings(max_examples=15, deadline=None)
def test_nothing_done_during_an_epoch_changes_the_next_epochs_seats_or_other_members_seats(
    events: list[tuple[str | None, str | None, int]],
) -> None:
    state = seat_state0()
    while state.epoch < 1:
        state = next_block(state)
    epoch_2_seats = state.next_seats
    gone: set[bytes] = set()
    for offender, withdrawer, tick in events:
        evidence = ()
        if offender and SEAT_KEYS[offender].address not in gone:
            evidence = (equivocation(state, offender),)
            gone.add(SEAT_KEYS[offender].address)
        txs = (withdrawal(state, withdrawer, 500),) if withdrawer else ()
        state = next_block(state, tick=tick, txs=txs, evidence=evidence)
        if state.epoch == 1:
            # the penalized lose their seats at once; everyone else keeps exactly theirs
            kept = tuple((a, p) for a, p in state.seats.members if a not in gone)
            assert state.committee.members == (kept or state.validator_set)
    assert state.epoch == 2
    assert state.seats == epoch_2_seats
    # the penalized, and members whose withdrawals took them out of the set at the boundary, sit out
    in_set = {a for a, _ in state.validator_set}
    kept = tuple((a, p) for a, p in epoch_2_seats.members if a not in gone and a in in_set)
    assert state.committee.members == (kept or state.validator_set)
    assert not gone & {a for a, _ in state.committee.members}


def test_a_tombstoned_member_loses_its_seats_at_the_next_height_and_nobody_is_redrawn() -> None:
    state = next_block(seat_state0())
    offender = state.committee.members[0][0]
    after = next_block(state, evidence=(equivocation(state, name_of(offender)),))
    assert after.epoch == state.epoch and after.seats == state.seats
    assert after.committee.members == tuple(m for m in state.committee.members if m[0] != offender)
    assert after.committee.total == state.committee.total - state.committee.power_of(offender)


# ------------------------------------------------------------ canonical form and hashed fields


def test_a_field_added_later_is_hashed_only_once_set_and_every_other_field_always() -> None:
    # Account: balance, nonce, public_key always; delegated_to (added later) only when not b"".
    assert canonical(Account()) == (0, 0, b"")
    assert canonical(Account(delegated_to=b"pool")) == (0, 0, b"", b"pool")
    state = state0()
    every = [f.name for f in fields(ChainState)]
    later = ("key_history", "reveals")
    assert [f.name for f in hashed_fields(state)] == [name for name in every if name not in later]
    rotated = replace(state, key_history=((ADDR["bob"], 3, b"old key"),), reveals={})
    assert [f.name for f in hashed_fields(rotated)] == every
    assert rotated.digest != state.digest


def test_canonical_form_of_containers_keeps_keys_sorts_sets_and_maps_enums_to_ints() -> None:
    assert canonical({b"b": 2, b"a": (1, [Kind.PREVOTE])}) == ((b"a", (1, (2,))), (b"b", 2))
    assert canonical(frozenset({3, 1, 2})) == (1, 2, 3)
    member = canonical(Kind.PRECOMMIT)
    assert member == int(Kind.PRECOMMIT) and type(member) is int
    assert canonical(None) is None and canonical(True) is True and canonical("text") == "text"
    with pytest.raises(TypeError) as caught:
        canonical(1.5)
    assert str(caught.value) == "float has no canonical form"


# ------------------------------------------------------------ genesis and committee arithmetic


def test_genesis_state_starts_from_the_zero_hash_the_genesis_seed_and_the_genesis_names() -> None:
    state = state0()
    assert state.height == 0 and state.epoch == 0
    assert state.last_block_hash == ZERO_HASH
    assert state.epoch_seed == state.seed_accumulator == genesis_seed(state.chain_id)
    assert state.names == {address: name for name, address in ADDR.items()}


def test_genesis_without_stake_is_refused() -> None:
    with pytest.raises(ValueError) as caught:
        state0(stakes=dict.fromkeys(ADDR, 0))
    assert str(caught.value) == "genesis has no validator with stake"


def test_quorum_is_strictly_more_than_two_thirds_and_one_third_strictly_more_than_a_third() -> None:
    committee = Committee(1, ((b"a", 4), (b"b", 5)), 9)
    # 3 * 6 = 18 is not more than 2 * 9 = 18; 3 * 7 = 21 is.
    assert not committee.is_quorum(6) and committee.is_quorum(7)
    # 3 * 3 = 9 is not more than 9; 3 * 4 = 12 is.
    assert not committee.is_one_third(3) and committee.is_one_third(4)
    assert committee.power_of(b"b") == 5 and committee.power_of(b"z") == 0


# ------------------------------------------------------------ why a block is refused

OTHER_ID = b"\x07" * 32


def height_2(stakes: dict[str, int] | None = None, params: Params | None = None) -> tuple[ChainState, Block]:
    """The state after block 1, and a valid block 2 carrying alice, bob and carol's commit of block 1."""
    state = state0(params, stakes=stakes)
    after, cert = finalize(state, make_block(state))
    return after, make_block(after, last_commit=cert)


def outsider_precommit(height: int, block_id: bytes) -> Vote:
    item = Vote(Kind.PRECOMMIT, height, 0, block_id, OUTSIDER.address)
    return replace(item, signature=sign_item(CHAIN_ID, item, OUTSIDER))


def test_each_block_problem_is_named() -> None:
    state, block = height_2()
    assert block_problem(state, block) is None
    one = block.last_commit
    assert one is not None
    cases = {
        "prev_hash does not match the last finalized block": replace(block, prev_hash=OTHER_ID),
        "state_hash does not match the state after the previous block": replace(block, state_hash=OTHER_ID),
        "proposer is not in the validator set": replace(block, proposer=OUTSIDER.address),
        "timestamp goes backwards": replace(block, timestamp_ms=state.last_timestamp_ms - 1),
        "missing last commit": replace(block, last_commit=None),
        "last commit: certificate is for another block": replace(
            block, last_commit=certificate(OTHER_ID, 1, signers=("alice", "bob", "carol"))
        ),
        "last commit: certificate is for another height": replace(
            block, last_commit=certificate(state.last_block_hash, 2, signers=("alice", "bob", "carol"))
        ),
        "last commit: certificate signer outside the committee": replace(
            block, last_commit=make_certificate([*one.votes(), outsider_precommit(1, state.last_block_hash)])
        ),
        "last commit: certificate has a bad signature": replace(
            block,
            last_commit=make_certificate(
                [*one.votes(), replace(precommit("dave", 1, 0, state.last_block_hash), signature=bytes(64))]
            ),
        ),
        "last commit: certificate lacks more than 2/3 of committee stake": replace(
            block, last_commit=certificate(state.last_block_hash, 1, signers=("alice", "bob"))
        ),
    }
    for reason, bad in cases.items():
        assert block_problem(state, bad) == reason


def test_exactly_two_thirds_of_the_stake_is_not_a_commit() -> None:
    # Stakes 2000 + 1000 + 1000 + 2000 = 6000: alice and dave hold 4000, exactly 2/3, and
    # 3 * 4000 = 12000 is not more than 2 * 6000.
    state, block = height_2(stakes={"alice": 2000, "bob": 1000, "carol": 1000, "dave": 2000})
    exact = certificate(state.last_block_hash, 1, signers=("alice", "dave"))
    problem = block_problem(state, replace(block, last_commit=exact))
    assert problem == "last commit: certificate lacks more than 2/3 of committee stake"
    more = certificate(state.last_block_hash, 1, signers=("alice", "bob", "dave"))
    assert block_problem(state, replace(block, last_commit=more)) is None


def test_a_block_may_hold_max_block_txs_and_no_more() -> None:
    state = state0(Params(max_block_txs=2))
    assert block_problem(state, make_block(state, txs=(b"t1", b"t2"))) is None
    assert block_problem(state, make_block(state, txs=(b"t1", b"t2", b"t3"))) == "too many transactions"


def test_evidence_in_a_block_is_verified_and_not_repeated() -> None:
    state, block = height_2()
    evidence = make_evidence(prevote("bob", 1, 0, b"\x01" * 32), prevote("bob", 1, 0, b"\x02" * 32))
    assert block_problem(state, replace(block, evidence=(evidence,))) is None
    twice = replace(block, evidence=(evidence, evidence))
    assert block_problem(state, twice) == "evidence: duplicate in block"
    same_block = Evidence(evidence.first, evidence.first)
    assert (
        block_problem(state, replace(block, evidence=(same_block,))) == "evidence: items for the same block"
    )
    forged = make_evidence(
        *(replace(vote, signature=bytes(64)) for vote in (evidence.first, evidence.second))
    )
    assert block_problem(state, replace(block, evidence=(forged,))) == "evidence: bad signature"
    item = Vote(Kind.PREVOTE, 1, 0, b"\x01" * 32, OUTSIDER.address)
    unknown = make_evidence(item, replace(item, block_id=b"\x02" * 32))
    assert block_problem(state, replace(block, evidence=(unknown,))) == "evidence: unknown signer"
    # The shape is judged before the signatures: two signers is the problem, not carol's forged one.
    mixed = Evidence(evidence.first, replace(prevote("carol", 1, 0, b"\x02" * 32), signature=bytes(64)))
    assert block_problem(state, replace(block, evidence=(mixed,))) == "evidence: items by different signers"
    old = make_evidence(prevote("bob", 0, 0, b"\x01" * 32), prevote("bob", 0, 0, b"\x02" * 32))
    assert block_problem(state, replace(block, evidence=(old,))) == (
        "evidence: offender was not in the committee at that height (or it is too old)"
    )


def test_evidence_against_a_validator_without_a_seat_is_refused() -> None:
    state = next_block(seat_state0())
    seated = {address for address, _ in state.recent_committees[0].members}
    name = next(name for name, kp in SEAT_KEYS.items() if kp.address not in seated)
    assert evidence_problem(state, equivocation(state, name)) == (
        "offender was not in the committee at that height (or it is too old)"
    )
    member = next(name for name, kp in SEAT_KEYS.items() if kp.address in seated)
    assert evidence_problem(state, equivocation(state, member)) is None


# ------------------------------------------------------------ late precommits and participation

ENTRY = Participation(
    5, 1, b"\x05" * 32, 1000, (ADDR["alice"], ADDR["bob"], ADDR["carol"]), frozenset({ADDR["alice"]})
)


def test_each_late_precommit_misfit_is_named() -> None:
    def late(kind: Kind = Kind.PRECOMMIT, **change: object) -> Vote:
        return replace(Vote(kind, 5, 1, ENTRY.block_id, ADDR["bob"]), **change)

    assert late_precommit_misfit(ENTRY, late()) is None
    assert late_precommit_misfit(ENTRY, late(block_id=None)) is None  # nil at the decided round counts
    assert late_precommit_misfit(ENTRY, late(Kind.PREVOTE)) == "not a precommit"
    assert late_precommit_misfit(None, late()) == "height 5 is not pending"
    assert late_precommit_misfit(ENTRY, late(round=0)) == "not for the decided round's block or nil"
    assert late_precommit_misfit(ENTRY, late(block_id=OTHER_ID)) == "not for the decided round's block or nil"
    assert (
        late_precommit_misfit(ENTRY, late(validator=ADDR["dave"])) == "signer outside that height's committee"
    )
    assert late_precommit_misfit(ENTRY, late(validator=ADDR["alice"])) == "signer already counted"


def test_signed_items_need_a_known_signer_and_its_signature() -> None:
    state = state0()
    good = prevote("bob", 1, 0, OTHER_ID)
    assert signed_item_problem(state, good) is None
    assert signed_item_problem(state, replace(good, signature=bytes(64))) == "bad signature"
    assert signed_item_problem(state, outsider_precommit(1, OTHER_ID)) == "unknown signer"


def test_a_height_is_judged_late_precommit_heights_blocks_and_late_precommit_ms_after_its_block() -> None:
    state = state0()
    wait, blocks = state.params.late_precommit_ms, state.params.late_precommit_heights
    judged_at = ENTRY.height + blocks
    at = {
        (judged_at, ENTRY.timestamp_ms + wait): True,
        (judged_at - 1, ENTRY.timestamp_ms + wait): False,  # enough time, one block short
        (judged_at, ENTRY.timestamp_ms + wait - 1): False,  # enough blocks, a millisecond short
        (judged_at - 1, 10**9): False,  # a stall: any time at all, still one block short
    }
    for (height, timestamp), mature in at.items():
        assert (
            is_mature(ENTRY, make_block(state, height=height, timestamp_ms=timestamp), state.params) is mature
        )


def test_pending_heights_are_judged_oldest_first_only_when_mature_however_many() -> None:
    """No cap: 256 pending heights once judged the oldest early, shortening its grace period."""

    def pending(count: int, mature: int) -> ChainState:
        entries = tuple(
            replace(ENTRY, height=h, timestamp_ms=0 if h <= mature else 10**6) for h in range(1, count + 1)
        )
        return replace(state0(), height=count + 5, last_timestamp_ms=10**6, participation=entries)

    for count, mature, judged in ((256, 0, 0), (257, 0, 0), (600, 0, 0), (257, 3, 3), (600, 3, 3)):
        state = pending(count, mature)
        now, left = participation_after(state, make_block(state, timestamp_ms=10**6))
        assert (len(now), len(left)) == (judged, count - judged)
        assert now == state.participation[:judged]


def test_a_certificate_for_a_forgotten_height_opens_nothing() -> None:
    state = state0()
    assert opened_participation(state, certificate(OTHER_ID, 0)) == ()
    assert opened_participation(state, None) == ()


def test_block_context_names_the_previous_committee_and_signers_only_with_a_commit() -> None:
    state, block = height_2()
    ctx = block_context(state, block)
    assert (ctx.height, ctx.epoch, ctx.proposer) == (2, 0, block.proposer)
    assert ctx.prev_committee == state.recent_committees[0].members and state.recent_committees[0].height == 1
    assert ctx.prev_signers == frozenset(ADDR[name] for name in ("alice", "bob", "carol"))
    bare = block_context(state, replace(block, last_commit=None))
    assert (bare.prev_committee, bare.prev_signers) == ((), frozenset())


# ------------------------------------------------------------ the transition


def test_applying_a_block_records_its_time_seed_and_next_priorities() -> None:
    state = state0()
    block = make_block(state)
    after, _ = apply_block(state, block)
    assert after.height == 1 and after.last_block_hash == block.hash
    assert after.last_timestamp_ms == block.timestamp_ms
    assert after.seed_accumulator == sha256(state.seed_accumulator + block.hash)
    assert after.priorities == increment_proposer_priority(state.priorities, 1)


def test_recent_committees_reach_back_evidence_max_age_heights() -> None:
    state = state0(Params(evidence_max_age=2))
    for _ in range(5):
        state = next_block(state)
    # After height 5, keep_from = 5 - 2 = 3: the committees of heights 5 and 4, not 3.
    assert [c.height for c in state.recent_committees] == [5, 4]
    assert state.committee.height == 6


def test_a_tombstoned_validator_leaves_the_set_and_the_proposer_rotation_at_once() -> None:
    state = next_block(seat_state0())
    offender = state.committee.members[0][0]
    after = next_block(state, evidence=(equivocation(state, name_of(offender)),))
    assert offender in dict(state.validator_set) and offender not in dict(after.validator_set)
    assert [v.address for v in after.priorities.validators] == [a for a, _ in after.committee.members]


def test_stake_changes_enter_the_validator_set_at_the_epoch_boundary_only() -> None:
    state = seat_state0()  # epochs of 3 heights
    state = next_block(state, txs=(withdrawal(state, "v6", 2000),))
    assert dict(state.validator_set)[SEAT_KEYS["v6"].address] == 7000  # within the epoch: unchanged
    state = next_block(next_block(state))
    assert state.epoch == 1
    assert dict(state.validator_set)[SEAT_KEYS["v6"].address] == 5000


def test_a_pool_due_to_retire_leaves_at_the_boundary_with_the_blocks_own_events() -> None:
    state = seat_state0()
    address = SEAT_KEYS["v2"].address
    pools = state.ledger.pools
    state = replace(
        state,
        ledger=replace(state.ledger, pools=pools.set(address, replace(pools[address], retiring_epoch=1))),
    )
    state = next_block(next_block(state))
    last = Block(
        height=state.next_height,
        prev_hash=state.last_block_hash,
        proposer=proposer_of(state, 0),
        timestamp_ms=state.last_timestamp_ms + 1,
        txs=(withdrawal(state, "v6", 100),),
        evidence=(),
        last_commit=None,
        state_hash=state.digest,
    )
    after, events = apply_block(state, last)
    assert after.epoch == 1 and after.ledger.pools[address].status == RETIRED
    assert address not in dict(after.validator_set)
    kinds = {event.kind for event in events}
    assert "retired" in kinds and len(kinds) > 1


def test_validator_summary_lists_pools_by_name_length_then_name() -> None:
    state = state0(stakes={"alice": 4000, "bob": 1000, "carol": 2000, "dave": 3000})
    accounts = state.ledger.accounts.set(ADDR["dave"], Account(balance=7))  # dave operates its own pool
    summary = validator_summary(replace(state, ledger=replace(state.ledger, accounts=accounts)))
    assert list(summary) == ["bob", "dave", "alice", "carol"]
    assert summary["dave"] == {"stake": 3000, "status": ACTIVE, "balance": 7}
    assert summary["bob"] == {"stake": 1000, "status": ACTIVE, "balance": 0}


def test_a_rotated_out_key_is_kept_in_the_history_at_the_epoch_boundary() -> None:
    state = state0(Params(epoch_length=2))
    alice = ADDR["alice"]
    pools = state.ledger.pools
    waiting = replace(pools[alice], next_public_key=OUTSIDER.public)
    state = replace(state, ledger=replace(state.ledger, pools=pools.set(alice, waiting)))
    after = next_block(next_block(state))
    assert after.epoch == 1 and after.public_keys[alice] == OUTSIDER.public
    assert [(address, key) for address, _, key in after.key_history] == [(alice, state.public_keys[alice])]
