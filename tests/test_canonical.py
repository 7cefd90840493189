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
