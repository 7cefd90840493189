"""Which late precommits a proposer puts in its block: every one that can still count, whatever our certificate says.

Downtime is judged on the chain's record of who precommitted a height: the
next block's certificate plus late precommits carried by the blocks after it.
A precommit that reached a proposer before it built an eligible block must
be counted (issue 25): these pin the three ways one used to be lost.
"""

from __future__ import annotations

from dataclasses import replace

from node.core.codec import encode
from node.core.consensus.late import LatePrecommits, _opened_entry, _shared_key
from node.core.consensus.votes import VoteSet
from node.core.ledger import Participation
from node.core.memory import recalled_item
from node.core.state import opened_entry
from tests.support.chain import ADDR, finalize, make_block, precommit, state0

STATE0 = state0()
BLOCK1 = make_block(STATE0, txs=(b"one",))
STATE1, OURS = finalize(STATE0, BLOCK1, signers=("alice", "bob", "carol"))  # the certificate we made
_, THEIRS = finalize(STATE0, BLOCK1, signers=("bob", "carol", "dave"))  # the next proposer's


def included_signers(late: LatePrecommits, last_commit: object) -> set[str]:
    names = {address: name for name, address in ADDR.items()}
    return {names[v.validator] for v in late.to_include(STATE1, last_commit)}  # type: ignore[arg-type]


def test_a_precommit_in_our_certificate_but_not_the_chains_is_kept_for_a_later_block() -> None:
    late = LatePrecommits()
    late.add(precommit("alice", 1, 0, BLOCK1.hash), STATE1, OURS)  # "already counted" by OUR certificate
    assert included_signers(late, THEIRS) == {"alice"}  # the chain's certificate lacks it: include it


def test_our_own_precommit_the_certificate_lacks_goes_into_our_block() -> None:
    late = LatePrecommits()
    late.note_own(precommit("alice", 1, 0, BLOCK1.hash))
    assert included_signers(late, THEIRS) == {"alice"}


def test_a_nil_precommit_of_the_deciding_round_held_at_the_decision_is_carried_forward() -> None:
    held = VoteSet(STATE0.committee)
    for name in ("bob", "carol", "dave"):
        held.add(precommit(name, 1, 0, BLOCK1.hash))
    held.add(precommit("alice", 1, 0, None))  # online, but saw no polka in time
    late = LatePrecommits()
    late.carry(held, STATE1, THEIRS)
    assert included_signers(late, THEIRS) == {"alice"}


def test_nothing_already_on_chain_is_included_twice() -> None:
    late = LatePrecommits()
    for name in ("bob", "carol", "dave"):
        late.add(precommit(name, 1, 0, BLOCK1.hash), STATE1, THEIRS)
    assert included_signers(late, THEIRS) == set()


def test_kept_precommits_are_noted_each_with_its_own_encoding() -> None:
    """The encodings noted for the durable memory are remembered per process (`late.MAX_ENCODED`):
    only for the very vote and key. One signature altered, or another height, encodes afresh."""
    vote = precommit("dave", 1, 0, BLOCK1.hash)
    forged = replace(vote, signature=bytes(64))
    later = precommit("dave", 2, 0, BLOCK1.hash)
    notes = []
    for item in (vote, forged, later, vote):
        late = LatePrecommits()
        late.note_open(item)
        notes += late.changes()
    assert [recalled_item(kind, value) for kind, _, value in notes] == [vote, forged, later, vote]
    assert [key for _, key, _ in notes] == [
        encode([v.height, v.round, v.validator]) for v in (vote, forged, later, vote)
    ]
    assert notes[0][2] is notes[3][2]  # one bytes object for equal votes, whichever machine kept them


def test_a_record_weighed_without_its_signers_is_the_one_asked_about() -> None:
    """`carry` weighs many precommits against one record with nobody counted yet, made once per record:
    a precommit judged against another certificate's record (another round) is judged against that one."""
    late = LatePrecommits()
    late.add(precommit("alice", 1, 0, BLOCK1.hash), STATE1, OURS)
    _, round_1 = finalize(STATE0, BLOCK1, round_=1, signers=("bob", "carol", "dave"))
    late.add(precommit("bob", 1, 1, BLOCK1.hash), STATE1, round_1)
    kept = {(vote.validator, vote.round) for _, vote in late._late.items()}
    assert kept == {(ADDR["alice"], 0), (ADDR["bob"], 1)}


def test_the_record_a_certificate_opens_is_shared_only_for_the_same_state_and_an_equal_certificate() -> None:
    """`late._opened_entry` remembers its last answer for every machine of the process: asked with
    another certificate (other signers), or on another state (another block time), it answers afresh."""
    later = replace(STATE1, last_timestamp_ms=STATE1.last_timestamp_ms + 5)
    for state, cert in (
        (STATE1, OURS),
        (STATE1, THEIRS),
        (later, THEIRS),
        (STATE1, replace(OURS)),
        (STATE1, None),
    ):
        assert _opened_entry(state, cert) == opened_entry(state, cert)
    assert _opened_entry(STATE1, replace(OURS)) is _opened_entry(STATE1, OURS)


def test_machines_keeping_the_same_late_precommit_share_its_key_and_only_an_equal_one() -> None:
    """One (height, validator) tuple per process for every machine that keeps that precommit (`late._shared_key`)."""
    keys = []
    for name in ("dave", "dave", "carol"):
        late = LatePrecommits()
        late.add(precommit(name, 1, 0, BLOCK1.hash), STATE1, OURS)
        keys += list(late._late)
    assert keys == [(1, ADDR["dave"]), (1, ADDR["dave"]), (1, ADDR["carol"])]
    assert keys[0] is keys[1]
    assert _shared_key(2, ADDR["dave"]) == (2, ADDR["dave"]) and _shared_key(1, ADDR["carol"]) is keys[2]


def test_a_records_members_are_its_committee_and_a_changed_copy_has_its_own() -> None:
    """`Participation.members`, the set late precommits are checked against, is worked out per record."""
    entry = Participation(1, 0, BLOCK1.hash, 0, (ADDR["alice"], ADDR["bob"]), frozenset())
    assert entry.members == {ADDR["alice"], ADDR["bob"]}
    other = replace(entry, committee=(ADDR["carol"],))
    assert other.members == {ADDR["carol"]} and entry.members == {ADDR["alice"], ADDR["bob"]}
    assert other != entry and replace(other, committee=entry.committee) == entry  # fields only, as before
