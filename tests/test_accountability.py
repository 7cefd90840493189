"""Accountability: conflicting certificates name culprits with proofs anyone can check.

The property that matters is the accountable-safety theorem: whatever
votes were cast, two certificates for different blocks at one height
convict validators holding more than 1/3 of the committee's power, and
never someone who followed the rules.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.core.accountability import (
    AMNESIA,
    DOUBLE_SIGN,
    UNJUSTIFIED_PRECOMMIT,
    Culprit,
    certificate_conflict_evidence,
    culprit_proof_problem,
    fork_culprits,
    polkas,
)
from node.core.keys import Keypair
from node.core.messages import (
    CommitCertificate,
    Kind,
    Vote,
    evidence_shape_problem,
    make_certificate,
    sha256,
    sign_item,
    verify_signed,
)
from node.core.state import Committee

CHAIN = "posnet-accountability"
A = sha256(b"block A")
B = sha256(b"block B")
HEIGHT = 7


@cache
def key(i: int) -> Keypair:
    return Keypair.deterministic(f"{CHAIN}/v{i}")


def address(i: int) -> bytes:
    return key(i).address


def public_keys(n: int) -> dict[bytes, bytes]:
    return {address(i): key(i).public for i in range(n)}


def committee(powers: list[int]) -> Committee:
    members = tuple(sorted((address(i), power) for i, power in enumerate(powers)))
    return Committee(HEIGHT, members, sum(powers))


def vote(kind: Kind, i: int, round_: int, block_id: bytes | None, signed: bool = True) -> Vote:
    unsigned = Vote(kind, HEIGHT, round_, block_id, address(i))
    signature = sign_item(CHAIN, unsigned, key(i)) if signed else bytes(64)
    return replace(unsigned, signature=signature)


def certificate(signers: list[int], round_: int, block_id: bytes, signed: bool = True) -> CommitCertificate:
    return make_certificate([vote(Kind.PRECOMMIT, i, round_, block_id, signed) for i in signers])


# ------------------------------------------------------- evidence from certificates


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 7),
    data=st.data(),
    same_round=st.booleans(),
    same_block=st.booleans(),
)
def test_conflicting_certificates_of_one_round_give_evidence_against_exactly_those_in_both(
    n: int, data: st.DataObject, same_round: bool, same_block: bool
) -> None:
    signers_a = data.draw(st.lists(st.integers(0, n - 1), min_size=1, unique=True))
    signers_b = data.draw(st.lists(st.integers(0, n - 1), min_size=1, unique=True))
    a = certificate(signers_a, 2, A)
    b = certificate(signers_b, 2 if same_round else 3, A if same_block else B)
    evidence = certificate_conflict_evidence(a, b)
    if not same_round or same_block:
        assert evidence == ()
        return
    assert {ev.offender for ev in evidence} == {address(i) for i in set(signers_a) & set(signers_b)}
    assert [ev.offender for ev in evidence] == sorted(ev.offender for ev in evidence)
    assert certificate_conflict_evidence(b, a) == evidence  # the same offence has one encoding
    keys = public_keys(n)
    for ev in evidence:
        assert evidence_shape_problem(ev) is None
        assert all(verify_signed(CHAIN, item, keys[ev.offender]) for item in (ev.first, ev.second))


def test_certificates_of_different_heights_do_not_conflict() -> None:
    a = certificate([0, 1, 2], 0, A)
    b = replace(certificate([0, 1, 2], 0, B), height=HEIGHT + 1)
    assert certificate_conflict_evidence(a, b) == ()


# ------------------------------------------------------- the theorem, on any votes

VOTE_CHOICES = (None, "nil", "A", "B", "A+B")  # absent, nil, a block, or both blocks (equivocation)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_fork_convicts_more_than_a_third_of_the_committee(data: st.DataObject) -> None:
    """Whatever was voted, two quorum certificates for A and B convict > 1/3 of the power."""
    n = data.draw(st.integers(1, 7), label="validators")
    powers = data.draw(st.lists(st.integers(1, 10), min_size=n, max_size=n), label="powers")
    seats = committee(powers)
    rounds = data.draw(st.integers(1, 4), label="rounds")
    votes: list[Vote] = []
    for i in range(n):
        for round_ in range(rounds):
            for kind in (Kind.PREVOTE, Kind.PRECOMMIT):
                choice = data.draw(st.sampled_from(VOTE_CHOICES))
                ids = {None: [], "nil": [None], "A": [A], "B": [B], "A+B": [A, B]}[choice]
                votes += [vote(kind, i, round_, block_id, signed=False) for block_id in ids]

    def quorum(label: str) -> list[int]:
        order = data.draw(st.permutations(range(n)), label=label)
        chosen: list[int] = []
        for i in order:
            if seats.is_quorum(sum(powers[j] for j in chosen)):
                break
            chosen.append(i)
        return chosen

    r1 = data.draw(st.integers(0, rounds - 1), label="round of A")
    r2 = data.draw(st.integers(r1, rounds - 1), label="round of B")
    a = certificate(quorum("A signers"), r1, A, signed=False)
    b = certificate(quorum("B signers"), r2, B, signed=False)
    account = fork_culprits(a, b, votes, seats)
    assert account.covers_one_third, (account.power, account.total, account.culprits)
    assert fork_culprits(b, a, reversed(votes), seats).culprits == account.culprits  # order does not matter


# ------------------------------------------------------- each offence, by hand


def both_polkas() -> list[Vote]:
    """Prevotes for A by v0-v2 and for B by v1-v3 at round 0: v1 and v2 prevoted both."""
    return [vote(Kind.PREVOTE, i, 0, A) for i in (0, 1, 2)] + [vote(Kind.PREVOTE, i, 0, B) for i in (1, 2, 3)]


def test_one_round_fork_blames_the_double_signers_with_slashable_proofs() -> None:
    seats = committee([1, 1, 1, 1])
    a = certificate([0, 1, 2], 0, A)
    b = certificate([1, 2, 3], 0, B)
    account = fork_culprits(a, b, both_polkas(), seats)
    assert account.validators() == tuple(sorted((address(1), address(2))))
    assert all(c.offence == DOUBLE_SIGN for c in account.culprits)
    assert (account.power, account.total) == (2, 4) and account.covers_one_third
    for culprit in account.culprits:
        assert culprit_proof_problem(culprit, CHAIN, public_keys(4)) is None
        evidence = culprit.evidence()
        assert evidence is not None and evidence.offender == culprit.validator


def test_prevoting_away_from_a_precommitted_block_without_a_polka_is_amnesia() -> None:
    """v1 and v2 precommitted A at round 0, then prevoted B at round 1 where nothing had unlocked them."""
    seats = committee([1, 1, 1, 1])
    a = certificate([0, 1, 2], 0, A)
    polka_a = [vote(Kind.PREVOTE, i, 0, A) for i in (0, 1, 2)]
    polka_b = [vote(Kind.PREVOTE, i, 1, B) for i in (1, 2, 3)]
    b = certificate([1, 2, 3], 1, B)
    account = fork_culprits(a, b, [*polka_a, *polka_b], seats)
    assert {c.validator: c.offence for c in account.culprits} == {address(1): AMNESIA, address(2): AMNESIA}
    assert account.covers_one_third
    for culprit in account.culprits:
        lock, prevote = culprit.proof
        assert (lock.kind, lock.round, lock.block_id) == (Kind.PRECOMMIT, 0, A)
        assert (prevote.kind, prevote.round, prevote.block_id) == (Kind.PREVOTE, 1, B)
        assert culprit_proof_problem(culprit, CHAIN, public_keys(4)) is None
        assert culprit.evidence() is None  # not slashable by an equivocation evidence


def test_a_polka_between_the_rounds_unlocks_and_the_blame_moves_to_who_formed_it() -> None:
    """A polka for B at round 1 lets the round-2 prevoters off; its own prevoters had no excuse."""
    seats = committee([1, 1, 1, 1])
    a = certificate([0, 1, 2], 0, A)
    prevotes = [vote(Kind.PREVOTE, i, 0, A) for i in (0, 1, 2)]
    prevotes += [vote(Kind.PREVOTE, i, 1, B) for i in (1, 2, 3)]  # the polka at round 1
    prevotes += [vote(Kind.PREVOTE, i, 2, B) for i in (0, 1, 2, 3)]
    b = certificate([0, 1, 2, 3], 2, B)
    account = fork_culprits(a, b, prevotes, seats)
    assert address(0) not in account.validators()  # prevoted B only after the round-1 polka
    blamed = {c.validator: c for c in account.culprits}
    assert set(blamed) == {address(1), address(2)}
    assert all(c.offence == AMNESIA and c.proof[1].round == 1 for c in blamed.values())


def test_precommitting_a_block_without_its_polka_is_unjustified() -> None:
    seats = committee([1, 1, 1, 1])
    a = certificate([0, 1, 2], 0, A)
    b = certificate([1, 2, 3], 3, B)  # no prevotes at all
    account = fork_culprits(a, b, [vote(Kind.PREVOTE, i, 0, A) for i in (0, 1, 2)], seats)
    offences = {c.validator: c.offence for c in account.culprits}
    assert offences == {address(i): UNJUSTIFIED_PRECOMMIT for i in (1, 2, 3)}
    assert account.covers_one_third


def test_validators_who_kept_the_rules_are_not_blamed() -> None:
    """v0 precommitted A and kept to it; v3 never locked, so prevoting and precommitting B was its right."""
    seats = committee([1, 1, 1, 1])
    a = certificate([0, 1, 2], 0, A)
    votes = [vote(Kind.PREVOTE, i, 0, A) for i in (0, 1, 2)] + [vote(Kind.PRECOMMIT, 3, 0, None)]
    votes += [vote(Kind.PREVOTE, 0, 1, A), vote(Kind.PRECOMMIT, 0, 1, None)]
    votes += [vote(Kind.PREVOTE, i, 1, B) for i in (1, 2, 3)]
    b = certificate([1, 2, 3], 1, B)
    account = fork_culprits(a, b, votes, seats)
    assert set(account.validators()) == {address(1), address(2)}


def test_votes_of_other_heights_and_outside_the_committee_count_for_nothing() -> None:
    seats = committee([1, 1, 1, 1])
    outsider = vote(Kind.PRECOMMIT, 5, 0, A)
    other_height = replace(vote(Kind.PRECOMMIT, 3, 0, B), height=HEIGHT + 1)
    account = fork_culprits(
        certificate([0, 1, 2], 0, A), certificate([1, 2, 3], 0, B), [outsider, other_height], seats
    )
    assert address(5) not in account.validators()
    assert polkas([vote(Kind.PREVOTE, 5, 0, A)], seats) == {}


def test_a_tampered_proof_does_not_check() -> None:
    account = fork_culprits(
        certificate([0, 1, 2], 0, A), certificate([1, 2, 3], 0, B), both_polkas(), committee([1] * 4)
    )
    culprit = account.culprits[0]
    first, second = culprit.proof
    forged = Culprit(culprit.validator, culprit.offence, (first, replace(second, signature=first.signature)))
    assert culprit_proof_problem(forged, CHAIN, public_keys(4)) == "proof has a bad signature"
    framed = Culprit(address(0), DOUBLE_SIGN, culprit.proof)
    assert culprit_proof_problem(framed, CHAIN, public_keys(4)) == "proof has a vote by someone else"
    assert culprit_proof_problem(Culprit(culprit.validator, AMNESIA, culprit.proof), CHAIN, public_keys(4))
