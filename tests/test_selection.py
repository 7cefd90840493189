"""Tests for node.core.selection.

Published vectors come from two places:

* CometBFT ``types/validator_set_test.go`` (TestProposerSelection1/2/3,
  TestAvgProposerPriority, TestAveragingInIncrementProposerPriority,
  TestAveragingInIncrementProposerPriorityWithVotingPower, TestSafeAddClip,
  TestSafeSubClip, and the update tests), re-expressed through this API.
* Ethereum ``consensus-spec-tests`` ``tests/{mainnet,minimal}/phase0/shuffling/
  core/shuffle/shuffle_<seed>_<count>/mapping.yaml``; ``mapping[i]`` is
  ``compute_shuffled_index(i, count, seed)``.  Mainnet uses 90 rounds,
  minimal 10.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.core import selection
from node.core.selection import (
    INT64_MAX,
    INT64_MIN,
    MAX_INCREMENT_TIMES,
    MAX_SHUFFLE_COUNT,
    MAX_TOTAL_VOTING_POWER,
    PRIORITY_WINDOW_SIZE_FACTOR,
    PrioritizedValidator,
    ProposerPriorities,
    clip_all_int64,
    committee_powers,
    compute_average_priority,
    compute_max_min_priority_diff,
    compute_shuffled_index,
    draw_seats,
    find_proposer,
    go_quotient,
    increment_priorities,
    increment_proposer_priority,
    new_priorities,
    proposer_for_round,
    proposer_schedule,
    reprioritized,
    rescale_priorities,
    safe_add_clip,
    safe_sub_clip,
    seat_holders,
    shift_by_average_priority,
    shuffle_list,
    shuffled_indices,
    update_validators,
    wrap_int64,
)

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def priorities_of(p: ProposerPriorities) -> dict[bytes, int]:
    return {v.address: v.priority for v in p.validators}


def powers_of(p: ProposerPriorities) -> dict[bytes, int]:
    return {v.address: v.power for v in p.validators}


def hand_built(entries: list[tuple[bytes, int, int]]) -> ProposerPriorities:
    """A set with chosen priorities, like CometBFT tests that build ValidatorSet{} literally."""
    return ProposerPriorities(
        validators=tuple(PrioritizedValidator(a, power, priority) for a, power, priority in entries),
        proposer=None,
    )


def assert_centred_and_scaled(p: ProposerPriorities) -> None:
    """CometBFT's verifyValidatorSet: priorities centred, spread within the window."""
    n = len(p.validators)
    total_priority = sum(v.priority for v in p.validators)
    assert -n < total_priority < n
    total_power = sum(v.power for v in p.validators)
    spread = compute_max_min_priority_diff([v.priority for v in p.validators])
    assert spread <= PRIORITY_WINDOW_SIZE_FACTOR * total_power


def seed_of(i: int) -> bytes:
    return hashlib.sha256(b"posnet-test-seed" + i.to_bytes(8, "little")).digest()


# ---------------------------------------------------------------------------
# CometBFT published cases
# ---------------------------------------------------------------------------

FOO_BAR_BAZ_EXPECTED = (
    "foo baz foo bar foo foo baz foo bar foo foo baz foo foo bar foo baz foo foo bar"
    " foo foo baz foo bar foo foo baz foo bar foo foo baz foo foo bar foo baz foo foo bar"
    " foo baz foo foo bar foo baz foo foo bar foo baz foo foo foo baz bar foo foo foo baz"
    " foo bar foo foo baz foo bar foo foo baz foo bar foo foo baz foo bar foo foo baz foo"
    " foo bar foo baz foo foo bar foo baz foo foo bar foo baz foo foo"
)


def test_foo_bar_baz_schedule_matches_cometbft_proposer_selection_1() -> None:
    schedule = proposer_schedule([(b"foo", 1000), (b"bar", 300), (b"baz", 330)], 99)
    assert " ".join(a.decode() for a in schedule) == FOO_BAR_BAZ_EXPECTED


def test_foo_bar_baz_schedule_does_not_depend_on_input_order() -> None:
    schedule = proposer_schedule([(b"baz", 330), (b"foo", 1000), (b"bar", 300)], 99)
    assert " ".join(a.decode() for a in schedule) == FOO_BAR_BAZ_EXPECTED


ADDR0 = bytes(19) + b"\x00"
ADDR1 = bytes(19) + b"\x01"
ADDR2 = bytes(19) + b"\x02"


def test_equal_power_validators_propose_in_address_order() -> None:
    schedule = proposer_schedule([(ADDR0, 100), (ADDR1, 100), (ADDR2, 100)], 15)
    assert schedule == [ADDR0, ADDR1, ADDR2] * 5


def test_validator_with_400_of_600_power_leads_but_does_not_propose_twice_in_a_row() -> None:
    schedule = proposer_schedule([(ADDR0, 100), (ADDR1, 100), (ADDR2, 400)], 2)
    assert schedule == [ADDR2, ADDR0]


def test_validator_with_401_of_601_power_proposes_twice_in_a_row() -> None:
    schedule = proposer_schedule([(ADDR0, 100), (ADDR1, 100), (ADDR2, 401)], 3)
    assert schedule == [ADDR2, ADDR2, ADDR0]


def test_proposer_counts_over_120_heights_are_exactly_proportional_to_4_5_3() -> None:
    counts = Counter(proposer_schedule([(ADDR0, 4), (ADDR1, 5), (ADDR2, 3)], 120))
    assert counts == {ADDR0: 40, ADDR1: 50, ADDR2: 30}


@pytest.mark.slow
def test_equal_power_rotation_survives_increments_of_several_rounds_at_once() -> None:
    # TestProposerSelection3, with CometBFT's distribution of `times` drawn
    # from a fixed-seed generator.
    vals = [
        (b"avalidator_address12", 1),
        (b"bvalidator_address12", 1),
        (b"cvalidator_address12", 1),
        (b"dvalidator_address12", 1),
    ]
    p = new_priorities(vals)
    order = []
    for _ in range(4):
        order.append(p.proposer)
        p = increment_proposer_priority(p, 1)
    assert sorted(order) == [a for a, _ in vals]

    rng = random.Random(3)
    j = 0
    for _ in range(10_000):
        assert p.proposer == order[j % 4]
        times = 1
        mod = rng.randrange(2**31) % 5 + 1
        if rng.randrange(2**31) % mod > 0:
            times = rng.randrange(2**31) % 4 + 1
        p = increment_proposer_priority(p, times)
        j += times


@pytest.mark.parametrize(
    ("priorities", "want"),
    [
        ([0, 0, 0], 0),
        ([INT64_MAX, 0, 0], INT64_MAX // 3),
        ([INT64_MAX, 0], INT64_MAX // 2),
        ([INT64_MAX, INT64_MAX], INT64_MAX),
        ([INT64_MIN, INT64_MIN], INT64_MIN),
    ],
)
def test_average_priority_matches_cometbft_table(priorities: list[int], want: int) -> None:
    assert compute_average_priority(priorities) == want


@pytest.mark.parametrize(
    ("start", "times", "avg"),
    [
        ((1, 2, 3), 1, 2),
        # Zero power: the average is taken once, before the 11 elections.
        ((10, -10, 1), 11, 0),
        ((100, -10, 1), 1, 91 // 3),
    ],
)
def test_increment_subtracts_the_average_once_from_zero_power_validators(
    start: tuple[int, int, int], times: int, avg: int
) -> None:
    # TestAveragingInIncrementProposerPriority.
    p = hand_built([(b"a", 0, start[0]), (b"b", 0, start[1]), (b"c", 0, start[2])])
    after = increment_proposer_priority(p, times)
    assert [v.priority for v in after.validators] == [s - avg for s in start]


def _averaging_with_voting_power_cases() -> list[tuple[int, list[int], bytes]]:
    vp0, vp1, vp2 = 10, 1, 1
    total = vp0 + vp1 + vp2
    avg = (vp0 + vp1 + vp2 - total) // 3
    a0, a1, a2 = b"\x00", b"\x01", b"\x02"
    return [
        (1, [0 + vp0 - total - avg, 0 + vp1, 0 + vp2], a0),
        (2, [(0 + vp0 - total) + vp0 - total - avg, (0 + vp1) + vp1, (0 + vp2) + vp2], a0),
        (3, [0 + 3 * (vp0 - total) - avg, 0 + 3 * vp1, 0 + 3 * vp2], a0),
        (4, [0 + 4 * (vp0 - total), 0 + 4 * vp1, 0 + 4 * vp2], a0),
        (5, [0 + 4 * (vp0 - total) + vp0, 0 + 5 * vp1 - total, 0 + 5 * vp2], a1),
        (6, [0 + 6 * vp0 - 5 * total, 0 + 6 * vp1 - total, 0 + 6 * vp2], a0),
        (7, [0 + 7 * vp0 - 6 * total, 0 + 7 * vp1 - total, 0 + 7 * vp2], a0),
        (8, [0 + 8 * vp0 - 7 * total, 0 + 8 * vp1 - total, 0 + 8 * vp2], a0),
        (9, [0 + 9 * vp0 - 7 * total, 0 + 9 * vp1 - total, 0 + 9 * vp2 - total], a2),
        (10, [0 + 10 * vp0 - 8 * total, 0 + 10 * vp1 - total, 0 + 10 * vp2 - total], a0),
        (11, [0 + 11 * vp0 - 9 * total, 0 + 11 * vp1 - total, 0 + 11 * vp2 - total], a0),
    ]


@pytest.mark.parametrize(("times", "want", "proposer"), _averaging_with_voting_power_cases())
def test_priorities_after_n_elections_match_cometbft_voting_power_table(
    times: int, want: list[int], proposer: bytes
) -> None:
    # TestAveragingInIncrementProposerPriorityWithVotingPower.
    p = hand_built([(b"\x00", 10, 0), (b"\x01", 1, 0), (b"\x02", 1, 0)])
    after = increment_proposer_priority(p, times)
    assert after.proposer == proposer
    assert [v.priority for v in after.validators] == want


def test_safe_add_clip_saturates_like_cometbft() -> None:
    assert safe_add_clip(INT64_MAX, 10) == INT64_MAX
    assert safe_add_clip(INT64_MAX, INT64_MAX) == INT64_MAX
    assert safe_add_clip(INT64_MIN, -10) == INT64_MIN


def test_safe_sub_clip_saturates_like_cometbft() -> None:
    assert safe_sub_clip(INT64_MIN, 10) == INT64_MIN
    assert safe_sub_clip(INT64_MIN, INT64_MIN) == 0
    assert safe_sub_clip(INT64_MIN, INT64_MAX) == INT64_MIN
    assert safe_sub_clip(INT64_MAX, -10) == INT64_MAX


def test_increment_rejects_non_positive_times() -> None:
    p = new_priorities([(b"foo", 1000), (b"bar", 300), (b"baz", 330)])
    with pytest.raises(ValueError):
        increment_proposer_priority(p, 0)
    with pytest.raises(ValueError):
        increment_proposer_priority(p, -1)
    increment_proposer_priority(p, 1)


@pytest.mark.parametrize(
    "validators",
    [
        [],
        [(b"v1", 100), (b"v1", 123), (b"v1", 234)],
        [(b"v1", 0), (b"v2", 22), (b"v3", 33)],
        [(b"v1", 10), (b"v2", -20), (b"v3", 30)],
        [(b"a", INT64_MAX), (b"b", INT64_MAX), (b"c", INT64_MAX)],
        [(b"a", MAX_TOTAL_VOTING_POWER), (b"b", 1)],
    ],
    ids=["empty", "duplicates", "zero-power", "negative-power", "int64-overflow", "over-max-total"],
)
def test_new_set_rejects_invalid_validators(validators: list[tuple[bytes, int]]) -> None:
    with pytest.raises(ValueError):
        new_priorities(validators)


def test_new_set_is_centred_and_its_first_proposer_has_the_most_power() -> None:
    p = new_priorities([(b"v1", 100), (b"v2", 100)])
    assert_centred_and_scaled(p)
    assert p.proposer == b"v1"
    p = new_priorities([(b"small", 5), (b"big", 6)])
    assert p.proposer == b"big"


@pytest.mark.parametrize(
    ("start", "new_map"),
    [
        ([(b"v1", 10), (b"v2", 10)], [(b"v1", 10), (b"v2", 10)]),
        ([(b"v1", 10), (b"v2", 10)], [(b"v2", 22), (b"v1", 11)]),
        ([(b"v2", 20), (b"v1", 10)], [(b"v4", 40), (b"v3", 30), (b"v2", 20), (b"v1", 10)]),
        ([(b"v3", 20), (b"v1", 10)], [(b"v2", 30), (b"v3", 20), (b"v1", 10)]),
        ([(b"v3", 20), (b"v2", 10)], [(b"v1", 30), (b"v3", 20), (b"v2", 10)]),
        ([(b"v3", 30), (b"v2", 20), (b"v1", 10)], [(b"v3", 30), (b"v1", 10)]),
    ],
    ids=["no-change", "power-change", "add", "add-middle", "add-beginning", "delete"],
)
def test_update_yields_exactly_the_new_power_map_centred_and_scaled(
    start: list[tuple[bytes, int]], new_map: list[tuple[bytes, int]]
) -> None:
    # TestValSetUpdatesBasicTestsExecute.
    updated = update_validators(new_priorities(start), new_map)
    assert powers_of(updated) == dict(new_map)
    assert_centred_and_scaled(updated)


def test_update_keeps_priority_of_a_validator_whose_power_changes() -> None:
    # TestValidatorSetBasic "update": with no rescale or shift needed, the
    # re-powered validator's priority is carried over unchanged.
    p = new_priorities([(b"a", 10), (b"b", 10)])
    updated = update_validators(p, [(b"a", 12), (b"b", 8)])
    assert priorities_of(updated) == priorities_of(p)


@pytest.mark.parametrize(
    ("start", "new_map", "added"),
    [
        ([(b"v3", 1000), (b"v1", 1), (b"v2", 1)], [(b"v1", 1), (b"v2", 1)], []),
        ([(b"v3", 1000), (b"v2", 10), (b"v1", 1)], [(b"v2", 10), (b"v1", 1)], []),
        (
            [(b"v3", 1000), (b"v2", 2), (b"v1", 1)],
            [(b"v2", 1), (b"v5", 50), (b"v4", 40), (b"v1", 1)],
            [b"v4", b"v5"],
        ),
    ],
)
@pytest.mark.parametrize("elections", [1, 7, 123, 4999])
def test_added_validators_start_with_the_lowest_equal_priority(
    start: list[tuple[bytes, int]], new_map: list[tuple[bytes, int]], added: list[bytes], elections: int
) -> None:
    # TestValSetUpdatePriorityOrderTests, cases 0-2.
    p = increment_proposer_priority(new_priorities(start), elections)
    updated = update_validators(p, new_map)
    assert powers_of(updated) == dict(new_map)
    assert_centred_and_scaled(updated)
    if added:
        by_priority = sorted(updated.validators, key=lambda v: (v.priority, v.address))
        lowest = by_priority[: len(added)]
        assert sorted(v.address for v in lowest) == added
        assert len({v.priority for v in lowest}) == 1


def test_newcomer_priority_uses_total_before_removals_then_floor_average() -> None:
    # a, b at power 10: creation gives a = -10, b = 10 (a elected).  Replacing
    # b by c: T = 20 new + 10 removed = 30, so c starts at -(30 + 30 >> 3) = -33.
    # Window 40 > spread 23, no rescale.  Average floor(-43 / 2) = -22.
    p = new_priorities([(b"a", 10), (b"b", 10)])
    assert priorities_of(p) == {b"a": -10, b"b": 10}
    updated = update_validators(p, [(b"a", 10), (b"c", 10)])
    assert priorities_of(updated) == {b"a": 12, b"c": -11}
    assert updated.proposer == b"a"


def test_update_rescales_with_truncating_division_and_drops_a_removed_proposer() -> None:
    # Creation: a = 1, b = -1 (b elected).  Replacing b by c: T = 2 + 100 = 102,
    # c = -(102 + 12) = -114.  Window 4 < spread 115: ratio ceil(115 / 4) = 29,
    # a = 1 / 29 = 0, c = -114 / 29 = -3 (truncated, not -4).  Average
    # floor(-3 / 2) = -2 (not -1), so a = 2, c = -1.
    p = new_priorities([(b"a", 1), (b"b", 100)])
    assert priorities_of(p) == {b"a": 1, b"b": -1}
    assert p.proposer == b"b"
    updated = update_validators(p, [(b"a", 1), (b"c", 1)])
    assert priorities_of(updated) == {b"a": 2, b"c": -1}
    assert updated.proposer is None
    assert proposer_for_round(updated, 0) == b"a"


@pytest.mark.parametrize(
    ("start", "new_map"),
    [
        (
            [(b"v2", MAX_TOTAL_VOTING_POWER - 1), (b"v1", 1)],
            [(b"v1", MAX_TOTAL_VOTING_POWER - 1), (b"v2", 1)],
        ),
        (
            [(b"v2", MAX_TOTAL_VOTING_POWER - 1), (b"v1", 1)],
            [(b"v1", MAX_TOTAL_VOTING_POWER // 2 - 1), (b"v2", MAX_TOTAL_VOTING_POWER // 2)],
        ),
        (
            [(b"v1", MAX_TOTAL_VOTING_POWER - 2), (b"v2", 1), (b"v3", 1)],
            [(b"v4", MAX_TOTAL_VOTING_POWER - 2), (b"v2", 1), (b"v3", 1)],
        ),
        (
            [(b"v1", MAX_TOTAL_VOTING_POWER // 4)]
            + [(b"v%d" % i, MAX_TOTAL_VOTING_POWER // 4) for i in (2, 3, 4)],
            [
                (b"v1", MAX_TOTAL_VOTING_POWER // 2 - 2),
                (b"v3", MAX_TOTAL_VOTING_POWER // 2 - 3),
                (b"v5", 3),
                (b"v4", 2),
            ],
        ),
    ],
)
def test_updates_near_max_total_power_do_not_overflow(
    start: list[tuple[bytes, int]], new_map: list[tuple[bytes, int]]
) -> None:
    # TestValSetUpdateOverflowRelated, cases 1-4.
    updated = update_validators(new_priorities(start), new_map)
    assert powers_of(updated) == dict(new_map)
    assert_centred_and_scaled(updated)
    increment_proposer_priority(updated, 3)


def test_update_rejects_a_power_map_over_the_maximum_total() -> None:
    # TestValSetUpdateOverflowRelated, case 5.
    p = new_priorities([(b"v%d" % i, 1) for i in range(1, 10)])
    with pytest.raises(ValueError):
        update_validators(p, [(b"v%d" % i, MAX_TOTAL_VOTING_POWER) for i in range(1, 9)] + [(b"v9", 8)])


def test_update_rejects_empty_zero_power_and_duplicate_maps() -> None:
    p = new_priorities([(b"v1", 10), (b"v2", 10)])
    for bad in ([], [(b"v1", 0)], [(b"v1", 1), (b"v1", 2)]):
        with pytest.raises(ValueError):
            update_validators(p, bad)


# ---------------------------------------------------------------------------
# Rescaling and centring arithmetic
# ---------------------------------------------------------------------------


def test_rescale_divides_by_ceiling_ratio_truncating_toward_zero() -> None:
    # Spread 17 over window 4: ratio ceil(17 / 4) = 5; -7 / 5 truncates to -1.
    assert rescale_priorities([-7, 0, 10], 4) == (-1, 0, 2)


def test_rescale_leaves_priorities_within_the_window_alone() -> None:
    assert rescale_priorities([-2, 0, 2], 4) == (-2, 0, 2)
    assert rescale_priorities([-100, 100], 0) == (-100, 100)


def test_average_rounds_down_for_negative_sums() -> None:
    assert compute_average_priority([-1, 0, 0]) == -1
    assert shift_by_average_priority([-1, 0, 0]) == (0, 1, 1)


# ---------------------------------------------------------------------------
# Rounds within a height
# ---------------------------------------------------------------------------


def test_round_zero_proposer_is_the_heights_proposer() -> None:
    p = new_priorities([(b"foo", 1000), (b"bar", 300), (b"baz", 330)])
    assert proposer_for_round(p, 0) == p.proposer


def test_later_rounds_elect_on_a_copy_incremented_round_times() -> None:
    p = new_priorities([(b"foo", 1000), (b"bar", 300), (b"baz", 330)])
    expected = FOO_BAR_BAZ_EXPECTED.split()
    for r in range(1, 20):
        assert proposer_for_round(p, r) == increment_proposer_priority(p, r).proposer
        assert proposer_for_round(p, r).decode() == expected[r]
    # The height's own priorities are untouched by looking ahead.
    assert proposer_for_round(p, 0) == b"foo"
    assert increment_proposer_priority(p, 1).proposer == b"baz"


def test_negative_round_is_rejected() -> None:
    p = new_priorities([(b"a", 1)])
    with pytest.raises(ValueError):
        proposer_for_round(p, -1)


def test_find_proposer_picks_highest_priority_and_smaller_address_on_ties() -> None:
    assert find_proposer(hand_built([(b"a", 1, 5), (b"b", 1, 5), (b"c", 1, 4)])) == b"a"
    assert find_proposer(hand_built([(b"a", 1, 5), (b"b", 1, 6)])) == b"b"


def test_hand_built_sets_must_be_sorted_and_unique() -> None:
    with pytest.raises(ValueError):
        hand_built([(b"b", 1, 0), (b"a", 1, 0)])
    with pytest.raises(ValueError):
        hand_built([(b"a", 1, 0), (b"a", 1, 0)])
    with pytest.raises(ValueError):
        ProposerPriorities(validators=(PrioritizedValidator(b"a", 1, 0),), proposer=b"z")


# ---------------------------------------------------------------------------
# Proposer-selection properties
# ---------------------------------------------------------------------------

small_power_maps = st.dictionaries(
    keys=st.binary(min_size=1, max_size=4),
    values=st.integers(min_value=1, max_value=12),
    min_size=1,
    max_size=7,
)


@pytest.mark.slow
@given(small_power_maps, st.integers(min_value=1, max_value=3))
@settings(max_examples=150, deadline=None)
def test_every_validator_proposes_power_times_per_total_power_heights_within_one(
    power_map: dict[bytes, int], windows: int
) -> None:
    total = sum(power_map.values())
    schedule = proposer_schedule(list(power_map.items()), windows * total)
    for start in range(0, len(schedule) - total + 1, max(1, total // 2)):
        counts = Counter(schedule[start : start + total])
        for address, power in power_map.items():
            assert abs(counts[address] - power) <= 1


@pytest.mark.slow
@given(
    small_power_maps,
    st.integers(min_value=1, max_value=40),
    st.dictionaries(
        keys=st.binary(min_size=1, max_size=4),
        values=st.integers(min_value=1, max_value=1000),
        min_size=1,
        max_size=7,
    ),
)
@settings(max_examples=150, deadline=None)
def test_update_always_leaves_priorities_centred_within_the_window(
    start: dict[bytes, int], elections: int, new_map: dict[bytes, int]
) -> None:
    p = increment_proposer_priority(new_priorities(list(start.items())), elections)
    updated = update_validators(p, list(new_map.items()))
    assert powers_of(updated) == new_map
    assert_centred_and_scaled(updated)
    assert [v.address for v in updated.validators] == sorted(new_map)


@pytest.mark.slow
@given(small_power_maps, st.integers(min_value=1, max_value=50))
@settings(max_examples=100, deadline=None)
def test_elections_preserve_the_sum_of_priorities(power_map: dict[bytes, int], elections: int) -> None:
    p = new_priorities(list(power_map.items()))
    before = sum(v.priority for v in p.validators)
    after = increment_proposer_priority(p, elections)
    assert sum(v.priority for v in after.validators) == before


# ---------------------------------------------------------------------------
# Ethereum shuffling vectors (consensus-spec-tests, phase0 shuffling/core)
# ---------------------------------------------------------------------------

SEED_01B4 = bytes.fromhex("01b4f6bd5d6a06a7b74a8565ceb4f845afe0ae96a0ac05cf5e86066bf7b538ec")
SEED_0623 = bytes.fromhex("0623ccb9b1619bd388284a438034d8cb6431964ba727d8b1c450303105735488")


def _mapping(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split())


# mainnet/.../shuffle_0x01b4f6bd..._10
MAINNET_01B4_10 = _mapping("2 7 8 5 4 1 6 0 9 3")

# mainnet/.../shuffle_0x01b4f6bd..._33
MAINNET_01B4_33 = _mapping(
    """10 17 5 14 27 31 3 23 2 26 28 11 32 20 9 16 24 4 1 21
    7 22 18 15 29 6 19 13 0 30 12 8 25"""
)

# minimal/.../shuffle_0x01b4f6bd..._33 (10 rounds)
MINIMAL_01B4_33 = _mapping(
    """5 16 30 22 23 27 24 26 15 3 25 14 31 20 4 7 1 17 12 13
    11 21 10 28 9 18 0 2 8 19 6 29 32"""
)

# mainnet/.../shuffle_0x0623ccb9..._100
MAINNET_0623_100 = _mapping(
    """71 59 72 41 54 57 5 94 35 32 12 84 95 81 18 8 27 76 98
    91 1 62 75 10 17 3 64 89 14 30 39 80 42 96 31 51 82 87 16 67
    4 7 48 93 38 26 6 85 33 34 97 24 49 83 52 69 50 0 78 79 88
    43 36 23 21 25 2 9 11 47 65 74 77 45 40 44 58 86 61 13 29 53
    60 70 46 56 90 20 15 68 92 55 19 73 28 99 22 37 66 63"""
)

# mainnet/.../shuffle_0x01b4f6bd..._1000: more than 256 positions, so it
# exercises the position // 256 block index.
MAINNET_01B4_1000 = _mapping(
    """333 473 646 222 287 239 79 845 771 459 71 608 188 130 995
    530 493 206 691 874 35 419 325 884 167 200 61 555 866 440 551 64
    193 257 495 645 185 271 483 447 475 821 797 232 842 399 448 545
    799 769 685 110 540 601 433 252 961 779 303 731 594 864 878 959
    692 352 148 760 371 468 914 841 377 702 34 861 716 99 123 899 391
    697 883 133 415 813 965 241 693 177 144 40 966 916 15 640 279 32
    404 575 51 420 579 759 584 42 857 688 277 224 221 172 154 374 529
    605 758 260 951 283 748 298 48 84 255 586 817 642 389 556 929 982
    12 248 720 3 247 469 496 754 624 840 227 58 326 651 262 481 304
    408 957 753 406 233 801 839 928 744 882 192 906 938 944 203 526
    795 537 568 578 209 237 1 169 105 57 955 953 531 975 923 633 315
    55 954 891 403 235 45 664 214 119 859 18 792 747 334 917 489 774
    92 178 107 718 643 781 867 358 737 946 150 983 278 668 592 678 56
    820 613 949 176 26 444 563 2 353 621 6 573 458 571 786 363 179
    269 132 95 60 669 217 190 652 24 0 756 31 518 985 47 712 339 993
    138 117 173 713 143 945 851 365 128 805 70 960 809 868 762 348 783
    11 662 707 827 802 806 386 629 44 302 989 572 974 911 698 275 316
    308 120 96 124 717 238 557 68 510 41 223 242 927 375 775 108 118
    208 622 952 449 244 385 616 467 663 976 436 319 935 328 69 266 925
    507 570 682 742 139 361 763 350 285 400 852 9 499 726 158 305 648
    873 971 732 527 39 746 265 785 837 492 142 872 516 367 524 625 272
    683 80 435 149 137 549 941 340 72 730 656 895 553 900 828 405 515
    19 409 777 354 764 225 286 710 994 576 739 17 293 341 343 170 442
    647 860 470 723 886 347 301 659 423 654 666 741 768 159 426 844
    979 413 888 182 810 184 709 81 113 484 342 297 59 397 657 401 320
    427 381 514 396 784 478 145 457 43 677 525 635 740 703 249 728 932
    78 808 700 421 793 503 909 627 439 984 75 480 561 773 474 560 680
    163 362 194 307 611 388 288 471 520 268 91 460 65 443 267 114 450
    109 329 38 711 186 376 508 921 434 918 818 364 131 936 803 322 670
    23 486 750 615 270 165 830 311 22 604 390 336 129 263 424 494 295
    981 532 796 317 903 462 650 535 620 956 931 804 220 100 245 344
    402 164 667 155 13 359 890 636 933 567 569 183 962 509 787 313 54
    438 141 751 276 292 215 512 29 755 112 612 791 157 73 360 197 595
    147 831 736 446 690 151 218 454 761 816 464 174 90 8 502 660 309
    606 602 382 835 977 856 290 908 521 251 630 943 987 126 204 902
    807 649 310 963 898 848 729 476 243 715 479 574 675 587 180 904
    366 349 590 205 306 735 430 67 357 626 162 924 766 565 950 542 862
    679 533 504 969 93 631 674 833 407 330 915 166 541 528 76 887 789
    998 671 477 195 757 461 672 919 824 98 877 770 538 431 428 300 990
    930 639 425 970 999 387 843 196 588 488 850 28 591 628 466 907 201
    422 940 33 558 610 687 219 876 490 312 948 273 264 497 794 655 37
    485 780 892 160 370 695 52 152 641 472 681 889 49 894 356 378 550
    617 289 20 412 135 314 27 236 234 733 229 947 102 291 596 116 111
    637 187 198 825 863 546 912 901 913 552 210 582 355 63 25 832 749
    506 991 498 487 822 934 978 332 829 853 455 368 103 967 536 619
    920 745 250 603 653 418 140 10 767 577 554 82 705 395 88 772 414
    452 871 922 939 261 335 881 398 62 21 4 511 547 776 581 689 722
    562 115 790 988 597 684 788 16 937 589 500 609 331 865 410 327 814
    926 972 89 501 53 699 441 213 127 599 676 121 299 522 296 686 384
    632 838 815 854 517 274 451 383 74 607 661 714 880 539 598 564 997
    885 834 85 724 618 706 992 171 97 282 373 583 523 146 372 136 849
    199 721 614 879 66 253 986 482 600 665 351 323 14 392 153 337 417
    585 211 858 996 432 905 701 743 696 122 513 7 94 644 559 778 897
    973 416 782 346 566 694 958 189 534 321 212 543 727 258 942 593
    673 580 175 5 725 77 46 765 836 394 847 280 345 393 544 230 318
    704 284 505 708 491 202 634 281 156 125 294 738 161 101 453 456
    869 811 369 910 429 228 870 411 226 338 254 980 819 463 181 964
    896 638 231 50 380 846 823 379 83 324 216 855 875 134 752 812 30
    104 240 86 800 519 445 437 106 798 87 465 191 658 968 719 256 36
    734 893 207 259 623 246 548 168 826"""
)

SHUFFLE_VECTORS = [
    pytest.param(SEED_01B4, 90, MAINNET_01B4_10, id="mainnet-01b4-10"),
    pytest.param(SEED_01B4, 90, MAINNET_01B4_33, id="mainnet-01b4-33"),
    pytest.param(SEED_01B4, 10, MINIMAL_01B4_33, id="minimal-01b4-33"),
    pytest.param(SEED_0623, 90, MAINNET_0623_100, id="mainnet-0623-100"),
    pytest.param(SEED_01B4, 90, MAINNET_01B4_1000, id="mainnet-01b4-1000"),
]


@pytest.mark.parametrize(("seed", "rounds", "mapping"), SHUFFLE_VECTORS)
def test_compute_shuffled_index_matches_consensus_spec_vector(
    seed: bytes, rounds: int, mapping: tuple[int, ...]
) -> None:
    count = len(mapping)
    assert [compute_shuffled_index(i, count, seed, rounds) for i in range(count)] == list(mapping)


@pytest.mark.parametrize(("seed", "rounds", "mapping"), SHUFFLE_VECTORS)
def test_shuffle_list_matches_consensus_spec_vector(
    seed: bytes, rounds: int, mapping: tuple[int, ...]
) -> None:
    assert shuffle_list(len(mapping), seed, rounds) == mapping


def test_shuffle_of_nothing_is_empty_and_out_of_range_index_is_rejected() -> None:
    assert shuffle_list(0, SEED_01B4) == ()
    with pytest.raises(ValueError):
        compute_shuffled_index(10, 10, SEED_01B4)
    with pytest.raises(ValueError):
        compute_shuffled_index(0, 0, SEED_01B4)


def test_zero_rounds_is_the_identity() -> None:
    assert shuffle_list(7, SEED_01B4, rounds=0) == tuple(range(7))


@pytest.mark.slow
@given(
    count=st.integers(min_value=1, max_value=600),
    seed=st.binary(min_size=32, max_size=32),
    rounds=st.integers(min_value=0, max_value=90),
)
@settings(max_examples=60, deadline=None)
def test_shuffle_is_a_permutation_agreeing_with_per_index_shuffle(
    count: int, seed: bytes, rounds: int
) -> None:
    permutation = shuffle_list(count, seed, rounds)
    assert sorted(permutation) == list(range(count))
    for i in {0, count // 2, count - 1}:
        assert compute_shuffled_index(i, count, seed, rounds) == permutation[i]


# ---------------------------------------------------------------------------
# Committee seats
# ---------------------------------------------------------------------------


@pytest.mark.slow
@given(
    count=st.integers(min_value=1, max_value=2**40),
    seed=st.binary(min_size=32, max_size=32),
    picks=st.lists(st.integers(min_value=0, max_value=2**40), max_size=20),
)
@settings(max_examples=60, deadline=None)
def test_shuffled_indices_agree_with_compute_shuffled_index(
    count: int, seed: bytes, picks: list[int]
) -> None:
    indices = [pick % count for pick in picks]
    assert shuffled_indices(indices, count, seed) == tuple(
        compute_shuffled_index(i, count, seed) for i in indices
    )


def test_shuffled_indices_reject_an_index_outside_the_list() -> None:
    with pytest.raises(ValueError):
        shuffled_indices([0, 5], 5, SEED_01B4)


def unit_owner(validators: list[tuple[bytes, int]], unit: int) -> bytes:
    """Who owns stake unit ``unit`` when units are numbered in address order (the reference rule)."""
    for address, power in sorted(validators):
        if unit < power:
            return address
        unit -= power
    raise AssertionError("unit beyond the total stake")


seat_inputs = st.dictionaries(
    keys=st.binary(min_size=1, max_size=6),
    values=st.integers(min_value=1, max_value=10**9),
    min_size=1,
    max_size=40,
)


@pytest.mark.slow
@given(
    st.dictionaries(st.binary(min_size=1, max_size=4), st.integers(1, 300), min_size=1, max_size=8),
    st.integers(min_value=1, max_value=30),
    st.binary(min_size=32, max_size=32),
)
@settings(max_examples=60, deadline=None)
def test_seat_k_belongs_to_the_owner_of_shuffled_stake_unit_k(
    power_map: dict[bytes, int], seat_count: int, seed: bytes
) -> None:
    validators = list(power_map.items())
    total = sum(power_map.values())
    expected = tuple(
        unit_owner(validators, compute_shuffled_index(k % total, total, seed)) for k in range(seat_count)
    )
    assert seat_holders(validators, seat_count, seed) == expected


@pytest.mark.slow
@given(seat_inputs, st.integers(min_value=1, max_value=80), st.binary(min_size=32, max_size=32), st.randoms())
@settings(max_examples=60, deadline=None)
def test_seat_counts_sum_to_the_seat_count_are_deterministic_and_ignore_input_order(
    power_map: dict[bytes, int], seat_count: int, seed: bytes, rnd: random.Random
) -> None:
    entries = list(power_map.items())
    seats = draw_seats(entries, seat_count, seed)
    assert sum(count for _, count in seats) == seat_count
    assert all(count > 0 and address in power_map for address, count in seats)
    assert [address for address, _ in seats] == sorted(power_map.keys() & dict(seats).keys())
    assert draw_seats(entries, seat_count, seed) == seats
    rnd.shuffle(entries)
    assert draw_seats(entries, seat_count, seed) == seats


@pytest.mark.slow
@given(seat_inputs, st.integers(min_value=1, max_value=60), st.binary(min_size=32, max_size=32), st.randoms())
@settings(max_examples=60, deadline=None)
def test_committee_is_everyone_by_stake_when_few_else_committee_size_seats(
    power_map: dict[bytes, int], committee_size: int, seed: bytes, rnd: random.Random
) -> None:
    entries = list(power_map.items())
    rnd.shuffle(entries)
    committee = committee_powers(entries, committee_size, seed)
    if len(power_map) <= committee_size:
        assert committee == tuple(sorted(power_map.items()))  # nothing sampled: votes weigh stake
    else:
        assert committee == draw_seats(entries, committee_size, seed)  # sampled: a seat is one vote
        assert sum(power for _, power in committee) == committee_size


def test_a_smaller_committee_is_the_first_seats_of_a_larger_one() -> None:
    validators = [(b"val-%03d" % i, 1 + i % 7) for i in range(40)]
    seed = seed_of(2)
    holders = seat_holders(validators, 64, seed)
    for size in (1, 16, 33):
        assert seat_holders(validators, size, seed) == holders[:size]


def test_as_many_seats_as_stake_units_gives_every_validator_exactly_its_stake() -> None:
    validators = [(b"a", 1), (b"b", 2), (b"c", 3), (b"d", 4)]
    assert draw_seats(validators, 10, seed_of(0)) == tuple(validators)
    assert draw_seats(validators, 20, seed_of(1)) == tuple((a, 2 * p) for a, p in validators)


@pytest.mark.slow
@given(
    st.lists(st.integers(min_value=1, max_value=50), min_size=2, max_size=8),
    st.integers(min_value=1, max_value=2**31),
)
@settings(max_examples=5, deadline=None, derandomize=True)
def test_seat_frequencies_converge_to_stake_shares(stakes: list[int], salt: int) -> None:
    """Linear influence: a validator's seats per draw approach its share of the stake.

    300 seeds of 16 seats is 4800 seats; a share's standard error is at most
    0.0073 (less, as seats are distinct units), so 0.04 is over 5 sigma.
    Examples are derandomized, so the test cannot flake.
    """
    validators = [(b"v%02d" % i, stake) for i, stake in enumerate(stakes)]
    seats: Counter[bytes] = Counter()
    draws = 300
    for i in range(draws):
        seats.update(dict(draw_seats(validators, 16, seed_of(salt + i))))
    total = sum(stakes)
    for address, stake in validators:
        assert abs(seats[address] / (16 * draws) - stake / total) < 0.04


@pytest.mark.slow
def test_the_largest_pool_wins_its_share_and_no_more() -> None:
    # The accept-by-stake walk this replaced gave the largest of 1..4 about
    # 0.456 of single seats; here it is 0.4 up to sampling noise.
    validators = [(b"p%d" % power, power) for power in (1, 2, 3, 4)]
    draws = 2500
    seats = Counter(seat_holders(validators, 1, seed_of(i))[0] for i in range(draws))
    for address, power in validators:
        assert abs(seats[address] / draws - power / 10) < 0.035  # sigma <= 0.01; fixed seeds


def test_different_seeds_give_different_seats() -> None:
    validators = [(b"val-%03d" % i, 10) for i in range(100)]
    assert len({draw_seats(validators, 10, seed_of(i)) for i in range(20)}) == 20


def test_stakes_beyond_the_shuffle_limit_are_counted_in_coarser_units() -> None:
    whale, shrimp = 3 * MAX_SHUFFLE_COUNT, 1
    validators = [(b"whale", whale), (b"orca", MAX_SHUFFLE_COUNT), (b"shrimp", shrimp)]
    seats = dict(draw_seats(validators, 400, seed_of(3)))
    assert sum(seats.values()) == 400
    assert 240 < seats[b"whale"] < 360 and b"shrimp" not in seats


@pytest.mark.parametrize(
    ("validators", "committee_size"),
    [
        ([], 3),
        ([(b"a", 0), (b"b", 1)], 1),
        ([(b"a", -5), (b"b", 1)], 1),
        ([(b"a", 1), (b"a", 2), (b"b", 1)], 1),
        ([(b"a", 1), (b"b", 1)], 0),
    ],
    ids=["empty", "zero-power", "negative-power", "duplicate", "zero-size"],
)
def test_seats_reject_invalid_input(validators: list[tuple[bytes, int]], committee_size: int) -> None:
    with pytest.raises(ValueError):
        draw_seats(validators, committee_size, seed_of(0))
    with pytest.raises(ValueError):
        committee_powers(validators, committee_size, seed_of(0))


# ---------------------------------------------------------------------------
# Go int64 arithmetic and the rescale window at their edges
# ---------------------------------------------------------------------------


def test_wrap_int64_wraps_like_twos_complement() -> None:
    assert wrap_int64(INT64_MAX + 1) == INT64_MIN
    assert wrap_int64(INT64_MIN - 1) == INT64_MAX
    assert wrap_int64(2**64 - 1) == -1
    assert wrap_int64(-5) == -5


@pytest.mark.parametrize(("a", "b", "want"), [(7, 2, 3), (-7, 2, -3), (7, -2, -3), (-7, -2, 3), (5, 1, 5)])
def test_go_quotient_truncates_toward_zero_for_every_sign(a: int, b: int, want: int) -> None:
    # Python's -7 // 2 is -4; Go's -7 / 2 is -3.
    assert go_quotient(a, b) == want


def test_go_quotient_wraps_the_one_overflowing_case() -> None:
    # INT64_MIN / -1 = 2**63 does not fit: Go wraps it back to INT64_MIN.
    assert go_quotient(INT64_MIN, -1) == INT64_MIN


def test_clip_all_int64_clips_one_value_out_of_range_and_passes_empty_lists() -> None:
    assert clip_all_int64([INT64_MAX + 5, 0]) == [INT64_MAX, 0]
    assert clip_all_int64([0, INT64_MIN - 5]) == [0, INT64_MIN]
    assert clip_all_int64([INT64_MIN, INT64_MAX]) == [INT64_MIN, INT64_MAX]
    assert clip_all_int64([]) == []


def test_max_min_priority_diff_takes_the_wrapped_spread_back_to_positive() -> None:
    # INT64_MAX - INT64_MIN = 2**64 - 1 wraps to -1, and CometBFT negates it: 1.
    assert compute_max_min_priority_diff([INT64_MIN, INT64_MAX]) == 1
    # 0 - INT64_MIN = 2**63 wraps to INT64_MIN, whose negation wraps to itself.
    assert compute_max_min_priority_diff([INT64_MIN, 0]) == INT64_MIN
    assert compute_max_min_priority_diff([-3, 4]) == 7


@pytest.mark.parametrize(
    ("priorities", "diff_max", "want"),
    [
        ([0, 8], 4, (0, 4)),  # spread 8: ratio ceil(8 / 4) = (8 + 3) // 4 = 2
        ([0, 9], 4, (0, 3)),  # spread 9: ratio ceil(9 / 4) = (9 + 3) // 4 = 3
        ([0, 3], 1, (0, 1)),  # a window of 1 still rescales: ratio 3
        ([0, 4], 4, (0, 4)),  # spread equal to the window: left alone
    ],
)
def test_rescale_ratio_is_the_ceiling_of_spread_over_window(
    priorities: list[int], diff_max: int, want: tuple[int, ...]
) -> None:
    assert rescale_priorities(priorities, diff_max) == want


def test_increment_accepts_the_largest_int32_times(monkeypatch: pytest.MonkeyPatch) -> None:
    """``times`` up to 2**31 - 1 passes the check; running that many elections is too slow, so stop at the first."""

    class FirstElection(Exception):
        pass

    def first_election(powers: object, priorities: object) -> None:
        raise FirstElection

    with pytest.raises(ValueError):
        increment_priorities([1], [0], MAX_INCREMENT_TIMES + 1)
    monkeypatch.setattr(selection, "increment_once", first_election)
    with pytest.raises(FirstElection):
        increment_priorities([1], [0], MAX_INCREMENT_TIMES)


def test_increment_rejects_powers_and_priorities_of_different_lengths() -> None:
    with pytest.raises(ValueError):
        increment_priorities([1, 1], [0, 0, 0], 1)
    v = PrioritizedValidator(b"a", 1, 0)
    with pytest.raises(ValueError):
        reprioritized([v], [0, 0])


def test_priority_and_power_bounds_are_inclusive() -> None:
    PrioritizedValidator(b"a", MAX_TOTAL_VOTING_POWER, INT64_MIN)
    PrioritizedValidator(b"a", 0, INT64_MAX)
    for power, priority in ((MAX_TOTAL_VOTING_POWER + 1, 0), (0, INT64_MAX + 1), (0, INT64_MIN - 1)):
        with pytest.raises(ValueError):
            PrioritizedValidator(b"a", power, priority)


def test_schedule_of_zero_heights_is_empty() -> None:
    assert proposer_schedule([(b"a", 1)], 0) == []


@pytest.mark.parametrize("power", [True, 1.5])
def test_power_must_be_a_plain_int(power: object) -> None:
    with pytest.raises(TypeError):
        new_priorities([(b"a", power)])  # type: ignore[list-item]


# ---------------------------------------------------------------------------
# Every rejection says what was wrong
# ---------------------------------------------------------------------------

REJECTIONS = [
    pytest.param(lambda: new_priorities([]), "a validator set cannot be empty", id="empty-map"),
    pytest.param(lambda: new_priorities([("a", 1)]), "address must be bytes, got str", id="address-type"),
    pytest.param(lambda: new_priorities([(b"a", 1.5)]), "power must be an int, got float", id="power-type"),
    pytest.param(
        lambda: new_priorities([(b"a", 0)]), "validator b'a' has non-positive power 0", id="zero-power"
    ),
    pytest.param(lambda: new_priorities([(b"a", 1), (b"a", 2)]), "duplicate validator b'a'", id="duplicate"),
    pytest.param(
        lambda: new_priorities([(b"a", INT64_MAX), (b"b", INT64_MAX)]),
        f"total voting power exceeds {MAX_TOTAL_VOTING_POWER}",
        id="map-total",
    ),
    pytest.param(lambda: compute_average_priority([]), "empty validator set", id="average-empty"),
    pytest.param(lambda: compute_max_min_priority_diff([]), "empty validator set", id="diff-empty"),
    pytest.param(lambda: rescale_priorities([], 4), "empty validator set", id="rescale-empty"),
    pytest.param(lambda: increment_priorities([], [], 1), "empty validator set", id="increment-empty"),
    pytest.param(
        lambda: increment_priorities([1], [0], 0),
        f"times must be in [1, {MAX_INCREMENT_TIMES}], got 0",
        id="times",
    ),
    pytest.param(lambda: go_quotient(1, 0), "integer divide by zero", id="divide-by-zero"),
    pytest.param(
        lambda: proposer_for_round(new_priorities([(b"a", 1)]), -1),
        "round must be non-negative, got -1",
        id="round",
    ),
    pytest.param(
        lambda: proposer_schedule([(b"a", 1)], -1), "n must be non-negative, got -1", id="schedule-n"
    ),
    pytest.param(lambda: PrioritizedValidator("a", 1, 0), "address must be bytes", id="record-address"),  # type: ignore[arg-type]
    pytest.param(
        lambda: PrioritizedValidator(b"a", -1, 0),
        f"power -1 outside [0, {MAX_TOTAL_VOTING_POWER}]",
        id="record-power",
    ),
    pytest.param(
        lambda: PrioritizedValidator(b"a", 1, INT64_MAX + 1),
        f"priority {INT64_MAX + 1} does not fit in int64",
        id="record-priority",
    ),
    pytest.param(
        lambda: ProposerPriorities(validators=(), proposer=None),
        "a validator set cannot be empty",
        id="set-empty",
    ),
    pytest.param(
        lambda: hand_built([(b"b", 1, 0), (b"a", 1, 0)]),
        "validators must be sorted by address without duplicates",
        id="set-order",
    ),
    pytest.param(
        lambda: hand_built([(b"a", MAX_TOTAL_VOTING_POWER, 0), (b"b", 1, 0)]),
        f"total voting power exceeds {MAX_TOTAL_VOTING_POWER}",
        id="set-total",
    ),
    pytest.param(
        lambda: ProposerPriorities(validators=(PrioritizedValidator(b"a", 1, 0),), proposer=b"z"),
        "proposer is not a member of the validator set",
        id="set-proposer",
    ),
    pytest.param(lambda: shuffle_list(3, "seed"), "seed must be bytes", id="shuffle-seed"),  # type: ignore[arg-type]
    pytest.param(
        lambda: shuffle_list(MAX_SHUFFLE_COUNT + 1, SEED_01B4),
        f"count must be in [0, {MAX_SHUFFLE_COUNT}], got {MAX_SHUFFLE_COUNT + 1}",
        id="shuffle-count",
    ),
    pytest.param(
        lambda: shuffle_list(3, SEED_01B4, 257), "rounds must be in [0, 256], got 257", id="shuffle-rounds"
    ),
    pytest.param(lambda: compute_shuffled_index(10, 10, SEED_01B4), "index 10 outside [0, 10)", id="index"),
    pytest.param(lambda: shuffled_indices([0, 5], 5, SEED_01B4), "index 5 outside [0, 5)", id="indices"),
    pytest.param(
        lambda: committee_powers([(b"a", 1)], 1.0, SEED_01B4), "committee_size must be an int", id="size-type"
    ),  # type: ignore[arg-type]
    pytest.param(
        lambda: committee_powers([(b"a", 1)], 0, SEED_01B4),
        "committee_size must be positive, got 0",
        id="size",
    ),
    pytest.param(lambda: committee_powers([(b"a", 1)], 1, "seed"), "seed must be bytes", id="committee-seed"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("call", "message"), REJECTIONS)
def test_rejection_message_names_the_problem(call: Callable[[], object], message: str) -> None:
    with pytest.raises((ValueError, TypeError, ZeroDivisionError)) as caught:
        call()
    assert str(caught.value) == message


# ---------------------------------------------------------------------------
# Shuffle and seat edges, fast versions of the slow properties above
# ---------------------------------------------------------------------------


def test_shuffle_round_and_count_limits_are_inclusive() -> None:
    assert sorted(shuffle_list(5, SEED_01B4, 256)) == list(range(5))
    assert shuffle_list(5, SEED_01B4, 256) == tuple(
        compute_shuffled_index(i, 5, SEED_01B4, 256) for i in range(5)
    )
    assert 0 <= compute_shuffled_index(0, MAX_SHUFFLE_COUNT, SEED_01B4, rounds=2) < MAX_SHUFFLE_COUNT


@pytest.mark.parametrize("count", [257, 513])
def test_shuffle_list_covers_a_last_partial_block_of_one_position(count: int) -> None:
    # 257 positions need two 256-bit source blocks, the second for position 256 alone.
    assert shuffle_list(count, SEED_0623) == tuple(
        compute_shuffled_index(i, count, SEED_0623) for i in range(count)
    )


@pytest.mark.parametrize(("seed", "rounds", "mapping"), SHUFFLE_VECTORS)
def test_shuffled_indices_match_consensus_spec_vector(
    seed: bytes, rounds: int, mapping: tuple[int, ...]
) -> None:
    count = len(mapping)
    picks = [*range(count), count - 1, 0]  # repeated indices share a source block
    assert shuffled_indices(picks, count, seed, rounds) == tuple(mapping[i] for i in picks)


def test_committee_samples_seats_only_with_more_validators_than_seats() -> None:
    validators = [(b"c", 5), (b"a", 3), (b"b", 2)]
    assert committee_powers(validators, 3, SEED_01B4) == ((b"a", 3), (b"b", 2), (b"c", 5))
    sampled = committee_powers(validators, 2, SEED_01B4)
    assert sampled == draw_seats(validators, 2, SEED_01B4)
    assert sum(seats for _, seats in sampled) == 2


def test_committee_size_must_not_be_a_bool() -> None:
    with pytest.raises(TypeError):
        committee_powers([(b"a", 1), (b"b", 1)], True, SEED_01B4)


@pytest.mark.parametrize(
    ("validators", "units"),
    [
        # 2**40 units fit the shuffle: counted one by one.
        ([(b"a", 2**39), (b"b", 2**39)], [(b"a", 2**39), (b"b", 2**39)]),
        # 2**40 + 1 do not: units of 2, each stake rounded down ((2**39 + 1) >> 1 = 2**38).
        ([(b"a", 2**39 + 1), (b"b", 2**39)], [(b"a", 2**38), (b"b", 2**38)]),
    ],
)
def test_stake_units_are_single_up_to_the_shuffle_limit_and_doubled_just_past_it(
    validators: list[tuple[bytes, int]], units: list[tuple[bytes, int]]
) -> None:
    total = sum(power for _, power in units)
    expected = tuple(unit_owner(units, compute_shuffled_index(k, total, SEED_01B4)) for k in range(24))
    assert seat_holders(validators, 24, SEED_01B4) == expected
