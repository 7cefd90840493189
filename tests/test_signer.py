"""GuardedSigner: never two signatures for conflicting items, across restarts over one record."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.core.messages import Kind, Proposal, Vote, verify_signed
from node.core.signer import GuardedSigner, MemoryRecord
from tests.support.chain import ADDR, CHAIN_ID, KEYS, make_block, state0

A = b"\xaa" * 32
B = b"\xbb" * 32
ME = "alice"


def signer(record: MemoryRecord | None = None) -> GuardedSigner:
    return GuardedSigner(CHAIN_ID, KEYS[ME], record if record is not None else MemoryRecord())


def pv(height: int, round_: int, block_id: bytes | None, kind: Kind = Kind.PREVOTE) -> Vote:
    return Vote(kind, height, round_, block_id, ADDR[ME])


def prop(height: int, round_: int, block_id: bytes, pol_round: int = -1) -> Proposal:
    return Proposal(height, round_, block_id, pol_round, ADDR[ME])


def test_a_signed_vote_carries_a_signature_that_verifies() -> None:
    signed = signer().sign(pv(1, 0, A))
    assert signed is not None and signed.signature
    assert verify_signed(CHAIN_ID, signed, KEYS[ME].public)
    assert replace(signed, signature=b"") == pv(1, 0, A)


@pytest.mark.parametrize("kind", [Kind.PREVOTE, Kind.PRECOMMIT])
@pytest.mark.parametrize(("first", "second"), [(A, B), (A, None), (None, A)], ids=["A-B", "A-nil", "nil-A"])
def test_a_conflicting_vote_is_refused(kind: Kind, first: bytes | None, second: bytes | None) -> None:
    guard = signer()
    assert guard.sign(pv(3, 1, first, kind)) is not None
    assert guard.sign(pv(3, 1, second, kind)) is None
    assert guard.refused == 1


def test_the_identical_vote_is_signed_again_with_the_identical_signature() -> None:
    guard = signer()
    one = guard.sign(pv(3, 1, A))
    two = guard.sign(pv(3, 1, A))
    assert one is not None and one == two


def test_a_fresh_signer_over_the_same_record_refuses_the_conflict() -> None:
    record = MemoryRecord()
    before = signer(record).sign(pv(3, 1, A))
    after_restart = signer(record)
    assert after_restart.sign(pv(3, 1, B)) is None
    assert after_restart.sign(pv(3, 1, None)) is None
    assert after_restart.sign(pv(3, 1, A)) == before  # the same message is fine


def test_going_back_is_refused_even_after_a_restart() -> None:
    record = MemoryRecord()
    assert signer(record).sign(pv(3, 2, A, Kind.PRECOMMIT)) is not None
    guard = signer(record)
    assert guard.sign(pv(3, 2, A)) is None  # prevote is an earlier step
    assert guard.sign(pv(3, 1, B, Kind.PRECOMMIT)) is None  # earlier round
    assert guard.sign(pv(2, 9, B)) is None  # earlier height
    assert guard.sign(pv(3, 3, B)) is not None  # later round: anything goes


def test_two_proposals_at_one_round_conflict_even_for_the_same_block() -> None:
    guard = signer()
    assert guard.sign(prop(4, 2, A, -1)) is not None
    assert guard.sign(prop(4, 2, B, -1)) is None
    assert guard.sign(prop(4, 2, A, 1)) is None  # same block, other pol_round: another body
    assert guard.sign(prop(4, 2, A, -1)) is not None  # identical body


def test_a_proposal_after_a_vote_of_the_same_round_is_refused() -> None:
    guard = signer()
    assert guard.sign(pv(4, 2, None)) is not None
    assert guard.sign(prop(4, 2, A)) is None


def test_the_journal_returns_signed_items_with_their_blocks_after_a_restart() -> None:
    record = MemoryRecord()
    block = make_block(state0(), ME)
    guard = signer(record)
    items = [
        guard.sign(prop(1, 3, block.hash), block),
        guard.sign(pv(1, 3, block.hash)),
        guard.sign(pv(1, 3, block.hash, Kind.PRECOMMIT), block),
    ]
    assert signer(record).journal(1) == [(items[0], block), (items[1], None), (items[2], block)]
    assert signer(record).journal(2) == []


def test_refused_items_are_not_journaled() -> None:
    record = MemoryRecord()
    guard = signer(record)
    guard.sign(pv(1, 0, A))
    guard.sign(pv(1, 0, B))
    assert [item.block_id for item, _ in guard.journal(1)] == [A]


# ----------------------------------------------------------- property

STEPS = (Kind.PROPOSAL, Kind.PREVOTE, Kind.PRECOMMIT)
requests = st.lists(
    st.one_of(
        st.tuples(
            st.integers(1, 3),
            st.integers(0, 2),
            st.sampled_from(STEPS),
            st.sampled_from([A, B, None]),
            st.integers(-1, 1),
        ),
        st.just("restart"),
    ),
    max_size=30,
)


def _request_item(height: int, round_: int, step: Kind, block_id: bytes | None, pol: int) -> Vote | Proposal:
    if step == Kind.PROPOSAL:
        return prop(height, round_, block_id or A, pol if pol < round_ else -1)
    return pv(height, round_, block_id, step)


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(requests)
def test_random_requests_never_yield_two_conflicting_signed_items(plan: list) -> None:
    record = MemoryRecord()
    guard = signer(record)
    signed: dict[tuple[int, int, int], set[bytes | None]] = {}
    for request in plan:
        if request == "restart":
            guard = signer(record)
            continue
        item = guard.sign(_request_item(*request))
        if item is None:
            continue
        assert verify_signed(CHAIN_ID, item, KEYS[ME].public)
        if isinstance(item, Proposal):
            key, what = (item.height, item.round, int(Kind.PROPOSAL)), item.body()
        else:
            key, what = (item.height, item.round, int(item.kind)), item.block_id
        signed.setdefault(key, set()).add(what)
    conflicts = {key: values for key, values in signed.items() if len(values) > 1}
    assert conflicts == {}
