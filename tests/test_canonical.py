"""The state digest's pending-participation part: one digest per height, remembered, never stale.

The digests are remembered per record object between blocks (a chain at the
timer floor has thousands of pending heights); these check that what is
remembered is exactly what hashing afresh gives, including for a record that
differs from a remembered one only in its signers, and after the memory is
emptied.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.core import canonical as C
from node.core.codec import encode
from node.core.ledger import Participation
from node.core.messages import sha256
from tests.support.chain import ADDR

ENTRY = Participation(5, 1, b"\x05" * 32, 1000, (ADDR["alice"], ADDR["bob"]), frozenset({ADDR["alice"]}))


def fresh(entry: Participation) -> bytes:
    return sha256(encode(C.canonical(entry)))


def test_each_pending_height_enters_as_the_digest_of_its_canonical_form() -> None:
    later = replace(ENTRY, height=6)
    assert C.participation_digests((ENTRY, later)) == (fresh(ENTRY), fresh(later))
    assert fresh(ENTRY) != fresh(later)


def test_a_record_changed_by_a_late_precommit_gets_its_own_digest() -> None:
    assert C.participation_digests((ENTRY,)) == (fresh(ENTRY),)  # remembered now
    grown = replace(ENTRY, signers=ENTRY.signers | {ADDR["bob"]})
    assert C.participation_digests((grown,)) == (fresh(grown),) and fresh(grown) != fresh(ENTRY)


def test_a_remembered_record_is_not_hashed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """The point of remembering: a record pending for many blocks is hashed once, not once per block."""
    first = C.participation_digests((ENTRY,))

    def hashing_again(value: object) -> object:
        raise AssertionError("a remembered record was hashed again")

    monkeypatch.setattr(C, "canonical", hashing_again)
    assert C.participation_digests((ENTRY,)) == first


def test_the_remembered_digests_are_bounded_and_still_right_after_they_are_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(C, "_MAX_DIGESTS", 8)
    C._DIGESTS.clear()
    C._HELD.clear()
    entries = tuple(replace(ENTRY, height=h) for h in range(9))
    assert C.participation_digests(entries) == tuple(fresh(e) for e in entries)
    assert len(C._DIGESTS) == len(C._HELD) == 1  # full at 8: dropped, then the ninth kept
    assert C.participation_digests(entries[:3]) == tuple(fresh(e) for e in entries[:3])


def test_a_record_dropped_by_its_chain_never_lends_its_digest_to_a_new_one() -> None:
    """Records are remembered by id(); a freed record's id is soon another record's, unless the memory holds it."""
    for height in range(200):
        entry = replace(ENTRY, height=height)
        assert C.participation_digests((entry,)) == (fresh(entry),)
        del entry


def test_no_pending_height_is_no_digest() -> None:
    assert C.participation_digests(()) == ()


def reference_digest(pending: tuple[Participation, ...]) -> bytes:
    """The two-level participation digest written out plainly, from nothing remembered."""
    runs: dict[int, list[bytes]] = {}
    for entry in pending:
        runs.setdefault(entry.height // C.RUN_HEIGHTS, []).append(fresh(entry))
    return sha256(b"".join(sha256(b"".join(digests)) for _, digests in sorted(runs.items())))


@settings(max_examples=60, deadline=None)
@given(
    heights=st.lists(st.integers(0, 400), unique=True, max_size=150).map(sorted),
    changed=st.lists(st.integers(0, 149), max_size=6),
    cut=st.integers(0, 150),
)
def test_the_participation_digest_is_its_plain_two_level_form_however_the_records_changed(
    heights: list[int], changed: list[int], cut: int
) -> None:
    """Remembered runs never stand in for changed ones: a block drops heights at the front, appends one,
    and replaces the records a late precommit grew; each time the digest is what it is from scratch."""
    pending = tuple(replace(ENTRY, height=h) for h in heights)
    assert C.participation_digest(pending) == reference_digest(pending)
    grown = list(pending)
    for index in changed:
        if index < len(grown):
            grown[index] = replace(grown[index], signers=grown[index].signers | {ADDR["bob"]})
    later = (*grown[cut:], replace(ENTRY, height=(heights[-1] + 1) if heights else 0))
    assert C.participation_digest(later) == reference_digest(later)


def test_a_late_precommit_in_the_middle_of_a_run_changes_the_digest() -> None:
    pending = tuple(replace(ENTRY, height=h) for h in range(200))
    before = C.participation_digest(pending)
    grown = (*pending[:100], replace(pending[100], signers=ENTRY.signers | {ADDR["bob"]}), *pending[101:])
    assert C.participation_digest(grown) != before
    assert C.participation_digest(pending) == before


def test_a_run_no_block_changed_is_not_hashed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """The point of the runs: a block costs the runs it changed, not a pass over every pending height."""
    pending = tuple(replace(ENTRY, height=h) for h in range(3 * C.RUN_HEIGHTS))
    first = C.participation_digest(pending)

    def hashing_again(run: object) -> object:
        raise AssertionError("an unchanged run was hashed again")

    monkeypatch.setattr(C, "participation_digests", hashing_again)
    assert C.participation_digest(pending) == first
