"""Proposer and committee selection.

Two independent mechanisms live here, each a faithful port of a reference
protocol so that its published test vectors apply unchanged:

* **Proposer selection** is CometBFT's weighted round-robin over *proposer
  priorities* (``types/validator_set.go``).  It is deterministic, needs no
  randomness, and over ``T`` heights (``T`` = total power) gives each validator
  very nearly ``power`` turns.  All arithmetic mimics Go's ``int64``: additions
  and subtractions clip at the bounds (CometBFT's ``safeAddClip`` /
  ``safeSubClip``), rescaling divides with Go's truncating ``/`` and the
  average is taken with ``big.Int.Div`` (Euclidean, i.e. floor for a positive
  divisor).  The two roundings differ for negative numbers, and a port that
  uses one for both drifts from CometBFT after a few hundred heights.

* **Committee sampling** is built on the Ethereum consensus specs' swap-or-not
  shuffle (``compute_shuffled_index``) plus the stake-weighted rejection
  sampling of Electra's ``compute_proposer_index`` /
  ``get_next_sync_committee_indices``, changed to sample *without*
  replacement, because a committee member holds one seat whatever its stake
  (votes are weighed by stake separately).

Every function is pure: values in, values out, no I/O, no clock, no
randomness except what is derived from the given seed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise

# ---------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

# CometBFT bounds the total so that priority arithmetic cannot clip in
# practice and ``diff + diff_max - 1`` in the rescale cannot overflow.
MAX_TOTAL_VOTING_POWER = INT64_MAX // 8

# Spread of priorities allowed, in multiples of the total power, before they
# are scaled down (CometBFT's ``PriorityWindowSizeFactor``).
PRIORITY_WINDOW_SIZE_FACTOR = 2

# CometBFT passes ``times`` as an int32.
MAX_INCREMENT_TIMES = 2**31 - 1

# Ethereum mainnet preset; the minimal preset uses 10.
SHUFFLE_ROUND_COUNT = 90

# ``position // 256`` is hashed as a uint32, which caps the list length.
MAX_SHUFFLE_COUNT = 2**40

# Electra widened the acceptance draw from one byte to two, so a validator's
# chance of acceptance is quantised in steps of 1/65535 rather than 1/255.
MAX_RANDOM_VALUE = 2**16 - 1

# How many full passes over the shuffled validator list committee sampling
# makes before it stops drawing and fills the remaining seats by stake.  Only
# reachable when some validators' stake is a tiny fraction of the largest.
MAX_COMMITTEE_SAMPLING_PASSES = 256


# ---------------------------------------------------------------------------
# Containers
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PrioritizedValidator:
    """One validator's voting power and its current proposer priority.

    ``power`` may be zero here (CometBFT's own averaging tests build such
    sets by hand); the constructors ``new_priorities`` and
    ``update_validators`` refuse zero power in their input.
    """

    address: bytes
    power: int
    priority: int

    def __post_init__(self) -> None:
        if not isinstance(self.address, bytes):
            raise TypeError("address must be bytes")
        if not 0 <= self.power <= MAX_TOTAL_VOTING_POWER:
            raise ValueError(f"power {self.power} outside [0, {MAX_TOTAL_VOTING_POWER}]")
        if not INT64_MIN <= self.priority <= INT64_MAX:
            raise ValueError(f"priority {self.priority} does not fit in int64")


@dataclass(frozen=True)
class ProposerPriorities:
    """A validator set's priorities and the proposer chosen by the last increment.

    ``validators`` is sorted by address; that order is also the tie-break
    order, so the first validator holding the highest priority wins.
    ``proposer`` is None when it is not known: a set built by hand, or an
    update that removed the previous proposer.  ``get_proposer`` then falls
    back to the current priority leader, as CometBFT's ``GetProposer`` does.
    """

    validators: tuple[PrioritizedValidator, ...]
    proposer: bytes | None

    def __post_init__(self) -> None:
        if not self.validators:
            raise ValueError("a validator set cannot be empty")
        addresses = [v.address for v in self.validators]
        if any(a >= b for a, b in pairwise(addresses)):
            raise ValueError("validators must be sorted by address without duplicates")
        if sum(v.power for v in self.validators) > MAX_TOTAL_VOTING_POWER:
            raise ValueError(f"total voting power exceeds {MAX_TOTAL_VOTING_POWER}")
        if self.proposer is not None and self.proposer not in addresses:
            raise ValueError("proposer is not a member of the validator set")


# ---------------------------------------------------------------------------
# Go int64 arithmetic
# ---------------------------------------------------------------------------


def wrap_int64(value: int) -> int:
    """Two's-complement wrap-around, as Go's unchecked int64 operators do."""
    return (value - INT64_MIN) % 2**64 + INT64_MIN


def clip_int64(value: int) -> int:
    """Saturate to the int64 range."""
    return max(INT64_MIN, min(INT64_MAX, value))


def safe_add_clip(a: int, b: int) -> int:
    """CometBFT's ``safeAddClip``: ``a + b`` saturated at the int64 bounds."""
    return clip_int64(a + b)


def safe_sub_clip(a: int, b: int) -> int:
    """CometBFT's ``safeSubClip``: ``a - b`` saturated at the int64 bounds."""
    return clip_int64(a - b)


def go_quotient(a: int, b: int) -> int:
    """Go's int64 ``a / b``: rounds toward zero (Python's ``//`` floors)."""
    if b == 0:
        raise ZeroDivisionError("integer divide by zero")
    quotient = abs(a) // abs(b)
    return wrap_int64(quotient if (a < 0) == (b < 0) else -quotient)


# ---------------------------------------------------------------------------
# CometBFT proposer priorities: steps over plain priority lists
# ---------------------------------------------------------------------------


def compute_max_min_priority_diff(priorities: Sequence[int]) -> int:
    """Spread of the priorities, computed with int64 wrap-around like CometBFT."""
    if not priorities:
        raise ValueError("empty validator set")
    diff = wrap_int64(max(priorities) - min(priorities))
    return wrap_int64(-diff) if diff < 0 else diff


def rescale_priorities(priorities: Sequence[int], diff_max: int) -> tuple[int, ...]:
    """Divide all priorities by ``ceil(spread / diff_max)`` if the spread exceeds it.

    Keeping the spread within a window proportional to the total power bounds
    how long a validator that just joined (or was just penalised) can be kept
    from proposing.  The division truncates toward zero, as in Go.
    """
    if not priorities:
        raise ValueError("empty validator set")
    if diff_max <= 0:
        return tuple(priorities)
    diff = compute_max_min_priority_diff(priorities)
    ratio = go_quotient(wrap_int64(diff + diff_max - 1), diff_max)
    if diff > diff_max:
        return tuple(go_quotient(p, ratio) for p in priorities)
    return tuple(priorities)


def compute_average_priority(priorities: Sequence[int]) -> int:
    """Average priority, rounded down (``big.Int.Div`` with a positive divisor)."""
    if not priorities:
        raise ValueError("empty validator set")
    return sum(priorities) // len(priorities)


def shift_by_average_priority(priorities: Sequence[int]) -> tuple[int, ...]:
    """Centre priorities on zero so they cannot drift toward the int64 bounds."""
    average = compute_average_priority(priorities)
    return tuple(safe_sub_clip(p, average) for p in priorities)


def _index_of_highest_priority(priorities: Sequence[int]) -> int:
    # Callers keep validators sorted by address, and ``max`` returns the first
    # of equal maxima, so ties go to the smaller address as in CometBFT.
    return max(range(len(priorities)), key=priorities.__getitem__)


def increment_once(powers: Sequence[int], priorities: Sequence[int]) -> tuple[tuple[int, ...], int]:
    """One election: everyone gains their power, the leader pays the total.

    Returns the new priorities and the index of the elected proposer.  The
    total subtracted equals the total added, so the sum of priorities is
    invariant and the schedule is a weighted round-robin.
    """
    total = sum(powers)
    raised = [safe_add_clip(priority, power) for priority, power in zip(priorities, powers, strict=True)]
    chosen = _index_of_highest_priority(raised)
    raised[chosen] = safe_sub_clip(raised[chosen], total)
    return tuple(raised), chosen


def increment_priorities(
    powers: Sequence[int], priorities: Sequence[int], times: int
) -> tuple[tuple[int, ...], int]:
    """CometBFT's ``IncrementProposerPriority(times)`` on plain lists.

    Rescaling and centring happen once, before the ``times`` elections, which
    is why incrementing ``times`` at once is not always the same as
    incrementing once ``times`` over.
    """
    if not priorities:
        raise ValueError("empty validator set")
    if not 1 <= times <= MAX_INCREMENT_TIMES:
        raise ValueError(f"times must be in [1, {MAX_INCREMENT_TIMES}], got {times}")
    diff_max = PRIORITY_WINDOW_SIZE_FACTOR * sum(powers)
    current = shift_by_average_priority(rescale_priorities(priorities, diff_max))
    chosen = -1
    for _ in range(times):
        current, chosen = increment_once(powers, current)
    return current, chosen


# ---------------------------------------------------------------------------
# CometBFT proposer priorities: the public API
# ---------------------------------------------------------------------------


def _sorted_power_map(
    validators: Sequence[tuple[bytes, int]], max_total: int | None
) -> tuple[tuple[bytes, int], ...]:
    """Validate ``(address, power)`` pairs and sort them by address."""
    if not validators:
        raise ValueError("a validator set cannot be empty")
    ordered = tuple(sorted(validators, key=lambda entry: entry[0]))
    for address, power in ordered:
        if not isinstance(address, bytes):
            raise TypeError(f"address must be bytes, got {type(address).__name__}")
        if isinstance(power, bool) or not isinstance(power, int):
            raise TypeError(f"power must be an int, got {type(power).__name__}")
        if power <= 0:
            raise ValueError(f"validator {address!r} has non-positive power {power}")
    for (previous, _), (current, _) in pairwise(ordered):
        if previous == current:
            raise ValueError(f"duplicate validator {current!r}")
    if max_total is not None and sum(power for _, power in ordered) > max_total:
        raise ValueError(f"total voting power exceeds {max_total}")
    return ordered


def _apply_power_map(
    current: Sequence[PrioritizedValidator], validators: Sequence[tuple[bytes, int]]
) -> tuple[PrioritizedValidator, ...]:
    """CometBFT's ``updateWithChangeSet`` with the whole new power map as the change set.

    Kept validators keep their priority whatever their new power.  Newcomers
    start at ``-(T + T >> 3)``: behind everybody, so leaving and re-joining
    cannot be used to wipe out a negative priority.  As in CometBFT, ``T`` is
    the total *after updates but before removals* (the new total plus the
    power of removed validators).  Then priorities are rescaled to the new
    window and centred; no election takes place.
    """
    ordered = _sorted_power_map(validators, MAX_TOTAL_VOTING_POWER)
    new_addresses = {address for address, _ in ordered}
    previous = {v.address: v.priority for v in current}
    removed_power = sum(v.power for v in current if v.address not in new_addresses)
    new_total = sum(power for _, power in ordered)
    total_before_removals = new_total + removed_power
    newcomer_priority = -(total_before_removals + (total_before_removals >> 3))
    priorities = [previous.get(address, newcomer_priority) for address, _ in ordered]
    priorities = shift_by_average_priority(
        rescale_priorities(priorities, PRIORITY_WINDOW_SIZE_FACTOR * new_total)
    )
    return tuple(
        PrioritizedValidator(address=address, power=power, priority=priority)
        for (address, power), priority in zip(ordered, priorities, strict=True)
    )


def increment_proposer_priority(p: ProposerPriorities, times: int) -> ProposerPriorities:
    """Run ``times`` elections and record the last proposer (``times`` >= 1)."""
    powers = [v.power for v in p.validators]
    priorities, chosen = increment_priorities(powers, [v.priority for v in p.validators], times)
    validators = tuple(
        PrioritizedValidator(address=v.address, power=v.power, priority=priority)
        for v, priority in zip(p.validators, priorities, strict=True)
    )
    return ProposerPriorities(validators=validators, proposer=validators[chosen].address)


def new_priorities(validators: Sequence[tuple[bytes, int]]) -> ProposerPriorities:
    """A fresh set, as ``NewValidatorSet``: everyone joins, then one election.

    The election at creation means the genesis height's proposer is already
    known, and it is the validator with the most power (smallest address on
    a tie).
    """
    return increment_proposer_priority(
        ProposerPriorities(validators=_apply_power_map((), validators), proposer=None), 1
    )


def update_validators(p: ProposerPriorities, validators: Sequence[tuple[bytes, int]]) -> ProposerPriorities:
    """Replace the power map: drop the absent, re-power the kept, add the new.

    No election runs (CometBFT increments separately when it moves to the next
    height).  The recorded proposer is kept if it is still a member, as
    CometBFT leaves it untouched; if it was removed it becomes None rather
    than naming a non-member.
    """
    updated = _apply_power_map(p.validators, validators)
    members = {v.address for v in updated}
    proposer = p.proposer if p.proposer in members else None
    return ProposerPriorities(validators=updated, proposer=proposer)


def find_proposer(p: ProposerPriorities) -> bytes:
    """The validator with the highest priority (CometBFT's ``findProposer``)."""
    return p.validators[_index_of_highest_priority([v.priority for v in p.validators])].address


def get_proposer(p: ProposerPriorities) -> bytes:
    """The recorded proposer, or the current priority leader if none is recorded."""
    return p.proposer if p.proposer is not None else find_proposer(p)


def proposer_for_round(p: ProposerPriorities, round: int) -> bytes:
    """Proposer of ``round`` within the height whose priorities are ``p``.

    Rounds after the first elect on a copy incremented ``round`` times, so a
    failed round never shifts the schedule of later heights (CometBFT's
    ``enterNewRound``).  A node stepping through the rounds one by one
    increments the copy once per round; that gives the same proposer unless a
    rescale falls in between, which the window makes rare.
    """
    if round < 0:
        raise ValueError(f"round must be non-negative, got {round}")
    if round == 0:
        return get_proposer(p)
    return get_proposer(increment_proposer_priority(p, round))


def proposer_schedule(validators: Sequence[tuple[bytes, int]], n: int) -> list[bytes]:
    """Round-0 proposers of the first ``n`` heights from genesis."""
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    schedule: list[bytes] = []
    p = new_priorities(validators)
    for _ in range(n):
        schedule.append(get_proposer(p))
        p = increment_proposer_priority(p, 1)
    return schedule


# ---------------------------------------------------------------------------
# Ethereum swap-or-not shuffle
# ---------------------------------------------------------------------------


def sha256(data: bytes) -> bytes:
    """The consensus specs' ``hash``."""
    return hashlib.sha256(data).digest()


def uint_to_bytes(value: int, length: int) -> bytes:
    """Little-endian unsigned encoding of ``length`` bytes (SSZ style)."""
    return value.to_bytes(length, "little")


def bytes_to_uint64(data: bytes) -> int:
    """Little-endian decoding (the specs' ``bytes_to_uint64``)."""
    return int.from_bytes(data, "little")


def _check_shuffle_args(count: int, seed: bytes, rounds: int) -> None:
    if not isinstance(seed, bytes):
        raise TypeError("seed must be bytes")
    if not 0 <= count <= MAX_SHUFFLE_COUNT:
        raise ValueError(f"count must be in [0, {MAX_SHUFFLE_COUNT}], got {count}")
    if not 0 <= rounds <= 256:
        raise ValueError(f"rounds must be in [0, 256], got {rounds}")


# Pivots and source blocks depend only on (seed, round[, block]), not on the
# index being shuffled, so caching them turns the ~180 hashes per index into
# ~90 cheap look-ups once a committee's seed is warm.
@lru_cache(maxsize=1 << 15)
def _pivot_word(seed: bytes, current_round: int) -> int:
    return bytes_to_uint64(sha256(seed + uint_to_bytes(current_round, 1))[0:8])


@lru_cache(maxsize=1 << 15)
def _source_block(seed: bytes, current_round: int, block: int) -> bytes:
    return sha256(seed + uint_to_bytes(current_round, 1) + uint_to_bytes(block, 4))


def compute_shuffled_index(index: int, count: int, seed: bytes, rounds: int = SHUFFLE_ROUND_COUNT) -> int:
    """Where ``index`` lands in the swap-or-not shuffle of ``range(count)``.

    Each round pairs every position with its mirror around a seed-derived
    pivot and swaps the pair if a seed-derived bit says so.  Any single index
    can be followed without computing the whole permutation, which is what
    lets committee sampling stop as soon as its seats are filled.
    """
    _check_shuffle_args(count, seed, rounds)
    if not 0 <= index < count:
        raise ValueError(f"index {index} outside [0, {count})")
    for current_round in range(rounds):
        pivot = _pivot_word(seed, current_round) % count
        flip = (pivot + count - index) % count
        position = max(index, flip)
        source = _source_block(seed, current_round, position // 256)
        byte = source[(position % 256) // 8]
        bit = (byte >> (position % 8)) % 2
        index = flip if bit else index
    return index


def shuffle_list(count: int, seed: bytes, rounds: int = SHUFFLE_ROUND_COUNT) -> tuple[int, ...]:
    """The whole permutation: element ``i`` is ``compute_shuffled_index(i, count, seed)``.

    Runs the rounds over all indices together so each round's pivot and bit
    string are hashed once, instead of once per index.
    """
    _check_shuffle_args(count, seed, rounds)
    indices = list(range(count))
    if count == 0:
        return ()
    blocks = (count + 255) // 256
    for current_round in range(rounds):
        round_byte = uint_to_bytes(current_round, 1)
        pivot = bytes_to_uint64(sha256(seed + round_byte)[0:8]) % count
        # Blocks of 256 bits laid end to end, so bit ``position`` is at byte
        # ``position // 8``.
        bits = b"".join(sha256(seed + round_byte + uint_to_bytes(b, 4)) for b in range(blocks))
        for lane, index in enumerate(indices):
            flip = (pivot + count - index) % count
            position = max(index, flip)
            if (bits[position >> 3] >> (position & 7)) & 1:
                indices[lane] = flip
    return tuple(indices)


# ---------------------------------------------------------------------------
# Stake-weighted committee sampling
# ---------------------------------------------------------------------------


def acceptance_random_value(seed: bytes, i: int) -> int:
    """The 16-bit draw for candidate ``i``, as in Electra's ``compute_proposer_index``."""
    random_bytes = sha256(seed + uint_to_bytes(i // 16, 8))
    offset = i % 16 * 2
    return bytes_to_uint64(random_bytes[offset : offset + 2])


def is_accepted(power: int, max_power: int, random_value: int) -> bool:
    """Accept with probability ~ ``power / max_power`` (exactly, up to 16-bit steps)."""
    return power * MAX_RANDOM_VALUE >= max_power * random_value


def select_committee(
    validators: Sequence[tuple[bytes, int]], committee_size: int, seed: bytes
) -> tuple[bytes, ...]:
    """Sample ``committee_size`` distinct validators, favouring stake.

    Candidates are visited in swap-or-not shuffled order (cycling through the
    list again if needed); candidate number ``i`` is accepted when
    ``power * 65535 >= max_power * r_i``, ``r_i`` being the 16-bit value
    Electra derives from ``sha256(seed + uint_to_bytes(i // 16, 8))``.  This
    is Electra's sync-committee sampling except that a validator already
    seated is skipped, so nobody holds two seats.

    A seat's probability rises with stake but is only close to proportional
    when the set is much larger than the committee: each pass visits every
    validator once, so on small sets the largest (always accepted on sight)
    win more than their share.

    With at most ``committee_size`` validators everyone sits.  If
    ``MAX_COMMITTEE_SAMPLING_PASSES`` passes leave seats empty (only when
    some stakes are a minute fraction of the largest), the rest go to the
    unseated validators with the most stake, earlier in the shuffle first,
    so the function always terminates.

    The input order does not matter; the result is sorted by address.
    """
    if isinstance(committee_size, bool) or not isinstance(committee_size, int):
        raise TypeError("committee_size must be an int")
    if committee_size < 1:
        raise ValueError(f"committee_size must be positive, got {committee_size}")
    if not isinstance(seed, bytes):
        raise TypeError("seed must be bytes")
    ordered = _sorted_power_map(validators, None)
    if len(ordered) <= committee_size:
        return tuple(address for address, _ in ordered)

    total = len(ordered)
    powers = [power for _, power in ordered]
    max_power = max(powers)
    shuffled: dict[int, int] = {}
    seated: set[int] = set()
    random_block = -1
    random_bytes = b""

    def candidate_at(slot: int) -> int:
        if slot not in shuffled:
            shuffled[slot] = compute_shuffled_index(slot, total, seed)
        return shuffled[slot]

    i = 0
    while len(seated) < committee_size and i < total * MAX_COMMITTEE_SAMPLING_PASSES:
        candidate = candidate_at(i % total)
        if candidate not in seated:
            if i // 16 != random_block:
                random_block = i // 16
                random_bytes = sha256(seed + uint_to_bytes(random_block, 8))
            offset = i % 16 * 2
            random_value = bytes_to_uint64(random_bytes[offset : offset + 2])
            if is_accepted(powers[candidate], max_power, random_value):
                seated.add(candidate)
        i += 1

    if len(seated) < committee_size:
        slot_of = {candidate_at(slot): slot for slot in range(total)}
        unseated = sorted(
            (c for c in range(total) if c not in seated),
            key=lambda c: (-powers[c], slot_of[c]),
        )
        seated.update(unseated[: committee_size - len(seated)])

    return tuple(ordered[c][0] for c in sorted(seated))
