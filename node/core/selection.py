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

* **Committee seats** are drawn from the Ethereum consensus specs' swap-or-not
  shuffle (``compute_shuffled_index``) applied to *units of stake*: seat
  ``k`` belongs to whoever owns stake unit ``compute_shuffled_index(k, ...)``,
  and every seat is worth one vote.  ``draw_seats`` explains why this rule and
  not Electra's accept-by-stake walk.

Every function is pure: values in, values out, no I/O, no clock, no
randomness except what is derived from the given seed.

One module past 500 lines: CometBFT's proposer priorities and Ethereum's
shuffle each need a page of exact integer rules to match their published
vectors, and both answer the one question of who acts at a height.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate, pairwise
from typing import Any, TypeVar

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

# ---------------------------------------------------------------------------
# Containers
# ---------------------------------------------------------------------------

_Record = TypeVar("_Record")


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


def clip_all_int64(values: list[int]) -> list[int]:
    """Each value saturated to the int64 range, as ``clip_int64`` one by one.

    Priorities almost never leave the range, so the values are checked in
    one pass and clipped only when one did: every block increments the
    priorities of the whole set.
    """
    if values and (min(values) < INT64_MIN or max(values) > INT64_MAX):
        return [clip_int64(value) for value in values]
    return values


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
    return tuple(clip_all_int64([p - average for p in priorities]))  # safe_sub_clip, each


def _index_of_highest_priority(priorities: Sequence[int]) -> int:
    # Callers keep validators sorted by address, and ``index`` finds the first
    # of equal maxima, so ties go to the smaller address as in CometBFT.
    return priorities.index(max(priorities))


def increment_once(powers: Sequence[int], priorities: Sequence[int]) -> tuple[tuple[int, ...], int]:
    """One election: everyone gains their power, the leader pays the total.

    Returns the new priorities and the index of the elected proposer.  The
    total subtracted equals the total added, so the sum of priorities is
    invariant and the schedule is a weighted round-robin.
    """
    total = sum(powers)
    raised = clip_all_int64([priority + power for priority, power in zip(priorities, powers, strict=True)])
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
    """Run ``times`` elections and record the last proposer (``times`` >= 1).

    The result is built without the constructors' checks (``reprioritized``):
    every block increments the committee's priorities, and those checks were
    most of its cost while they cannot fail here. Addresses, order and powers
    are the checked set's own, every priority is clipped to int64 by the
    election, and the proposer is one of the members.
    """
    powers = [v.power for v in p.validators]
    priorities, chosen = increment_priorities(powers, [v.priority for v in p.validators], times)
    validators = reprioritized(p.validators, priorities)
    return _unchecked(ProposerPriorities, {"validators": validators, "proposer": validators[chosen].address})


def reprioritized(
    validators: Sequence[PrioritizedValidator], priorities: Sequence[int]
) -> tuple[PrioritizedValidator, ...]:
    """The validators with these priorities, in order; each priority must already fit in int64."""
    return tuple(
        _unchecked(PrioritizedValidator, {"address": v.address, "power": v.power, "priority": priority})
        for v, priority in zip(validators, priorities, strict=True)
    )


def _unchecked(cls: type[_Record], values: dict[str, Any]) -> _Record:
    """An instance of the frozen dataclass `cls` holding `values` (every field), its ``__post_init__`` skipped.

    The same value the constructor makes, as its fields are all it holds;
    only for values whose checks are known to pass.
    """
    record = object.__new__(cls)
    object.__setattr__(record, "__dict__", values)
    return record


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


def shuffled_indices(
    indices: Sequence[int], count: int, seed: bytes, rounds: int = SHUFFLE_ROUND_COUNT
) -> tuple[int, ...]:
    """``compute_shuffled_index`` of each of ``indices``, following them through the rounds together.

    Each round's pivot is hashed once, and each 256-position source block at
    most once however many indices need it.  That keeps drawing a
    committee's seats from a list of a million stake units cheap.  The inner
    loop calls ``hashlib`` and ``int.to_bytes`` directly (``sha256`` and
    ``uint_to_bytes`` without their wrappers): a draw of 128 seats from
    stakes of 10**12 units hashes a source block per seat per round.
    """
    _check_shuffle_args(count, seed, rounds)
    current = list(indices)
    for index in current:
        if not 0 <= index < count:
            raise ValueError(f"index {index} outside [0, {count})")
    digest = hashlib.sha256
    for current_round in range(rounds):
        prefix = seed + uint_to_bytes(current_round, 1)
        mirror = bytes_to_uint64(sha256(prefix)[0:8]) % count + count  # pivot + count
        sources: dict[int, bytes] = {}  # position // 256 -> its source block
        for lane, index in enumerate(current):
            flip = (mirror - index) % count
            position = index if index > flip else flip
            block = position >> 8
            source = sources.get(block)
            if source is None:
                source = sources[block] = digest(prefix + block.to_bytes(4, "little")).digest()
            if (source[(position & 255) >> 3] >> (position & 7)) & 1:
                current[lane] = flip
    return tuple(current)


# ---------------------------------------------------------------------------
# Committee seats
# ---------------------------------------------------------------------------


def _check_committee_args(committee_size: int, seed: bytes) -> None:
    if isinstance(committee_size, bool) or not isinstance(committee_size, int):
        raise TypeError("committee_size must be an int")
    if committee_size < 1:
        raise ValueError(f"committee_size must be positive, got {committee_size}")
    if not isinstance(seed, bytes):
        raise TypeError("seed must be bytes")


def seat_holders(validators: Sequence[tuple[bytes, int]], seat_count: int, seed: bytes) -> tuple[bytes, ...]:
    """Who holds each of ``seat_count`` seats drawn by stake, in seat order.

    Stake is cut into units, numbered in address order (validator ``j`` owns
    the units from the total of the stakes before it up to that total plus its
    own stake).  Seat ``k`` goes to the owner of unit
    ``compute_shuffled_index(k, total_units, seed)``.  A validator may hold
    several seats, and each seat is one vote.

    Why this is sound: a seat's chance follows stake and its weight does not,
    so stake counts once and a pool's expected voting power is linear in its
    stake (``seat_count * stake / total``).  Choosing members by stake and
    then weighing their votes by stake again, as the rule before this one
    did, grows a large pool's influence roughly with the square of its stake.

    Why every unit has the same chance: the shuffle is a permutation fixed by
    the seed, so unit ``shuffled(k)`` is a uniformly random unit for every
    ``k``, and the seat goes to validator ``j`` with probability exactly
    ``stake_j / total``.  The seats are distinct *units*, so the seats won
    by any group holding ``B`` of ``S`` units follow the hypergeometric law
    (``seat_count`` draws without replacement).  With far more units than
    seats that is the binomial law of independent draws.  It is never less
    concentrated (Hoeffding, 1963), so Chernoff-style bounds on the binomial
    tail hold for it too.

    Why not Electra's ``compute_proposer_index`` once per seat (visit
    validators in shuffled order, accept with ``power / max_power``): it
    visits each validator at most once per pass over the list, so the
    largest pool, accepted whenever it is visited, wins more than its share.
    For one sample of Pareto(1.5) stakes the largest pool won about 14% more
    than its share among 20 validators and about 3% more among 200.  That
    bias points the same way as the flaw this rule removes.  Its 16-bit
    acceptance also rounds small pools' chances up.  Here a seat costs
    one shuffled index and a bisection, and nothing is rounded.

    Units: if the total stake exceeds ``MAX_SHUFFLE_COUNT`` (2**40, the
    shuffle's limit), stakes are counted in units of ``2**shift`` for the
    smallest shift that fits, each rounded down.  A validator's share then
    moves by less than ``2**-39``.

    Seat ``k`` does not depend on ``seat_count``, so a smaller committee's
    seats are the first seats of a larger one.  With more seats than units
    the shuffle is walked again from its start, so each full pass gives every
    unit one seat (``committee_powers`` never asks for that).  The input order
    does not matter.
    """
    _check_committee_args(seat_count, seed)
    ordered = _sorted_power_map(validators, None)
    total_stake = sum(power for _, power in ordered)
    shift = max(0, (total_stake - 1).bit_length() - (MAX_SHUFFLE_COUNT.bit_length() - 1))
    upper_bounds = list(accumulate(power >> shift for _, power in ordered))
    total_units = upper_bounds[-1]
    units = shuffled_indices([seat % total_units for seat in range(seat_count)], total_units, seed)
    return tuple(ordered[bisect_right(upper_bounds, unit)][0] for unit in units)


def draw_seats(
    validators: Sequence[tuple[bytes, int]], seat_count: int, seed: bytes
) -> tuple[tuple[bytes, int], ...]:
    """``(address, seats held)`` for every holder of a seat, sorted by address (see ``seat_holders``)."""
    return tuple(sorted(Counter(seat_holders(validators, seat_count, seed)).items()))


def committee_powers(
    validators: Sequence[tuple[bytes, int]], committee_size: int, seed: bytes
) -> tuple[tuple[bytes, int], ...]:
    """Each committee member's voting power: ``(address, power)`` sorted by address.

    With at most ``committee_size`` validators everyone sits and votes with
    its stake.  Nothing is sampled, so stake counts once.  With more, the
    committee is ``committee_size`` seats from ``draw_seats`` and a member's
    power is its number of seats.

    Either way the committee and its total are fixed before the height
    starts, so any two sets holding more than 2/3 of the total share more
    than 1/3 of it.
    """
    _check_committee_args(committee_size, seed)
    ordered = _sorted_power_map(validators, None)
    if len(ordered) <= committee_size:
        return ordered
    return draw_seats(ordered, committee_size, seed)
