"""The chain state: its digest (what every block commits to about the state it applies to) and its committee seats."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.core.genesis import Params, make_genesis
from node.core.keys import Keypair
from node.core.ledger import Account
from node.core.messages import Block, Evidence, Kind, Vote, make_evidence, sign_item
from node.core.selection import committee_powers
from node.core.state import (
    ChainState,
    apply_block,
    block_problem,
    committee_seed,
    genesis_seed,
    genesis_state,
    proposer_of,
)
from node.core.tx import Undelegate, sign_tx
from tests.support.chain import ADDR, finalize, make_block, state0

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
