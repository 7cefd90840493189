"""The slashing-protection rule: move forward in (height, round, step), never sign two blocks at one."""

from __future__ import annotations

import re
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.core.safety import SignMark, Step, may_sign, position, refusal_reason

A = b"\xaa" * 32
B = b"\xbb" * 32


def mark(height: int, round_: int, step: Step, block_id: bytes | None = A) -> SignMark:
    return SignMark(height, round_, step, block_id)


def test_step_values_are_the_protocol_constants() -> None:
    assert (Step.PROPOSAL, Step.PREVOTE, Step.PRECOMMIT) == (1, 2, 3)


def test_anything_may_be_signed_when_nothing_was_signed_before() -> None:
    assert may_sign(None, mark(1, 0, Step.PROPOSAL))
    assert may_sign(None, mark(7, 3, Step.PRECOMMIT, None))


@pytest.mark.parametrize(
    "new",
    [
        mark(5, 1, Step.PRECOMMIT, B),  # higher step, other block
        mark(5, 1, Step.PRECOMMIT, None),  # higher step, nil
        mark(5, 2, Step.PROPOSAL, B),  # higher round, lower step
        mark(6, 0, Step.PROPOSAL, B),  # higher height, lower round and step
    ],
    ids=["higher-step", "higher-step-nil", "higher-round", "higher-height"],
)
def test_strictly_later_position_is_allowed_whatever_the_block(new: SignMark) -> None:
    assert may_sign(mark(5, 1, Step.PREVOTE, A), new)


@pytest.mark.parametrize("block_id", [A, None], ids=["block", "nil"])
def test_resigning_the_identical_mark_is_allowed(block_id: bytes | None) -> None:
    last = mark(5, 1, Step.PREVOTE, block_id)
    assert may_sign(last, mark(5, 1, Step.PREVOTE, block_id))


def test_other_block_at_the_same_position_is_refused() -> None:
    assert not may_sign(mark(5, 1, Step.PREVOTE, A), mark(5, 1, Step.PREVOTE, B))


@pytest.mark.parametrize(("old", "new"), [(A, None), (None, A)], ids=["block-then-nil", "nil-then-block"])
def test_nil_and_a_block_at_the_same_position_conflict(old: bytes | None, new: bytes | None) -> None:
    assert not may_sign(mark(5, 1, Step.PRECOMMIT, old), mark(5, 1, Step.PRECOMMIT, new))


@pytest.mark.parametrize(
    "new",
    [
        mark(5, 1, Step.PROPOSAL, A),  # lower step
        mark(5, 0, Step.PRECOMMIT, A),  # lower round
        mark(4, 9, Step.PRECOMMIT, A),  # lower height
    ],
    ids=["lower-step", "lower-round", "lower-height"],
)
def test_going_backward_is_refused_even_for_the_same_block(new: SignMark) -> None:
    assert not may_sign(mark(5, 1, Step.PREVOTE, A), new)


def test_refusal_reason_explains_the_refusal() -> None:
    behind = refusal_reason(mark(5, 1, Step.PREVOTE), mark(5, 0, Step.PREVOTE))
    conflict = refusal_reason(mark(5, 1, Step.PREVOTE, A), mark(5, 1, Step.PREVOTE, None))
    assert behind is not None and "behind" in behind
    assert conflict is not None and "nil" in conflict
    assert refusal_reason(None, mark(1, 0, Step.PROPOSAL)) is None


def test_a_conflict_names_the_block_signed_and_the_one_refused_by_their_first_8_bytes() -> None:
    """What an operator reads when a signer refuses: which block it holds and which it was asked for."""
    b = bytes(range(32))
    assert refusal_reason(mark(5, 1, Step.PREVOTE, A), mark(5, 1, Step.PREVOTE, b)) == (
        f"at (5, 1, 2) already signed {A[:8].hex()}, refusing 0001020304050607"
    )
    assert refusal_reason(mark(5, 1, Step.PREVOTE, None), mark(5, 1, Step.PREVOTE, b)) == (
        "at (5, 1, 2) already signed nil, refusing 0001020304050607"
    )


def test_marks_coerce_plain_int_steps_to_the_enum() -> None:
    assert mark(1, 0, 2).step is Step.PREVOTE  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        ((-1, 0, Step.PREVOTE, A), ValueError, "height must be >= 0, got -1"),
        ((1, -1, Step.PREVOTE, A), ValueError, "round must be >= 0, got -1"),
        ((1, 0, 4, A), ValueError, "4 is not a valid Step"),
        ((1, 0, Step.PREVOTE, b""), ValueError, "block_id must be non-empty bytes; use None for a nil vote"),
        ((1, 0, Step.PREVOTE, "ab"), TypeError, "block_id must be bytes or None, got str"),
        ((True, 0, Step.PREVOTE, A), TypeError, "height must be an int, got bool"),
        ((1.0, 0, Step.PREVOTE, A), TypeError, "height must be an int, got float"),
        ((1, False, Step.PREVOTE, A), TypeError, "round must be an int, got bool"),
        ((1, 0, True, A), TypeError, "step must be a Step, got bool"),
        ((1, 0, "2", A), TypeError, "step must be a Step, got str"),
    ],
    ids=[
        "negative-height",
        "negative-round",
        "unknown-step",
        "empty-block-id",
        "str-block-id",
        "bool",
        "float",
        "bool-round",
        "bool-step",
        "str-step",
    ],
)
def test_malformed_marks_are_rejected_at_construction_naming_the_field(
    args: tuple, error: type[Exception], message: str
) -> None:
    """A bool step would otherwise become Step(1), a proposal; the message says which field is wrong."""
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        SignMark(*args)


def test_mutable_block_ids_are_frozen_into_bytes() -> None:
    m = SignMark(1, 0, Step.PREVOTE, bytearray(A))
    assert type(m.block_id) is bytes and m == mark(1, 0, Step.PREVOTE, A)


# -- properties ---------------------------------------------------------------

# Small ranges on purpose: collisions on (height, round, step) are what matter.
marks = st.builds(
    SignMark,
    height=st.integers(0, 3),
    round=st.integers(0, 2),
    step=st.sampled_from(Step),
    block_id=st.sampled_from([None, A, B, b"\xcc"]),
)


def run(candidates: list[SignMark]) -> list[SignMark]:
    """Feed candidates to the rule as a signer would; return the accepted ones in order."""
    last: SignMark | None = None
    accepted: list[SignMark] = []
    for candidate in candidates:
        if may_sign(last, candidate):
            accepted.append(candidate)
            last = candidate
    return accepted


@pytest.mark.slow
@given(st.lists(marks, max_size=40))
def test_never_two_block_ids_accepted_at_one_position(candidates: list[SignMark]) -> None:
    signed: dict[tuple[int, int, int], bytes | None] = {}
    for m in run(candidates):
        assert signed.setdefault(position(m), m.block_id) == m.block_id


@pytest.mark.slow
@given(st.lists(marks, max_size=40))
def test_accepted_positions_never_decrease(candidates: list[SignMark]) -> None:
    accepted = run(candidates)
    for earlier, later in pairwise(accepted):
        assert position(earlier) < position(later) or earlier == later


@given(marks, marks)
def test_rule_is_exactly_forward_or_identical(last: SignMark, new: SignMark) -> None:
    expected = position(new) > position(last) or new == last
    assert may_sign(last, new) is expected


@pytest.mark.slow
@given(marks)
def test_first_mark_and_identical_resign_are_always_allowed(m: SignMark) -> None:
    assert may_sign(None, m)
    assert may_sign(m, m)
