"""The certificate checks many machines of one process share (node.core.certificate_checks).

A remembered verdict may be handed back only to the very question it
answered: the same certificate, every signature included, proving the same
block, for the same committee, on the same chain and keys. Each test below
asks one question, then a second that differs in one of those, and expects
the second answered afresh (its own verdict, one more check counted): a
cache keyed on less would hand back the first verdict and fail it.
"""

from __future__ import annotations

from dataclasses import replace

from node.core.certificate_checks import PLAIN_CHECKS, SharedCertificateChecks
from node.core.messages import CommitCertificate, make_certificate
from node.core.state import ChainState, Committee, certificate_problem
from tests.support.chain import ADDR, OUTSIDER, certificate, finalize, make_block, precommit, state0

OTHER_ID = b"\x07" * 32


def after_height_1() -> tuple[ChainState, CommitCertificate]:
    """The state after block 1, its committee's certificate (alice, bob, carol) and nothing else."""
    state = state0()
    return finalize(state, make_block(state))


def judged_twice(
    first: tuple[ChainState, CommitCertificate, Committee, bytes],
    second: tuple[ChainState, CommitCertificate, Committee, bytes],
) -> tuple[SharedCertificateChecks, str | None, str | None]:
    """Both questions asked of one shared memo: it, and its two answers."""
    checks = SharedCertificateChecks()
    return checks, checks.problem(*first), checks.problem(*second)


def test_a_certificate_is_verified_once_for_every_machine_that_asks() -> None:
    state, cert = after_height_1()
    committee = state.recent_committees[-1]
    question = (state, cert, committee, cert.block_id)
    checks = SharedCertificateChecks()
    assert [checks.problem(*question) for _ in range(5)] == [None] * 5
    assert (checks.checked, checks.answered) == (1, 4)
    assert PLAIN_CHECKS.problem(*question) is None


def test_a_certificate_with_one_signature_altered_is_checked_afresh() -> None:
    state, cert = after_height_1()
    committee = state.recent_committees[-1]
    forged = replace(cert, signatures=(*cert.signatures[:-1], (cert.signatures[-1][0], bytes(64))))
    checks, good, bad = judged_twice(
        (state, cert, committee, cert.block_id), (state, forged, committee, cert.block_id)
    )
    assert (good, bad) == (None, "certificate has a bad signature")
    assert checks.checked == 2


def test_a_certificate_with_another_signer_height_round_or_block_is_checked_afresh() -> None:
    state, cert = after_height_1()
    committee = state.recent_committees[-1]
    fewer = make_certificate([vote for vote in cert.votes() if vote.validator != ADDR["carol"]])
    # the same signatures in a certificate of another round or height: none of them signed that
    for other, verdict in (
        (fewer, "certificate lacks more than 2/3 of committee stake"),
        (replace(cert, round=1), "certificate has a bad signature"),
        (replace(cert, height=2), "certificate is for another height"),
        (replace(cert, block_id=OTHER_ID), "certificate is for another block"),
    ):
        checks, good, bad = judged_twice(
            (state, cert, committee, cert.block_id), (state, other, committee, cert.block_id)
        )
        assert (good, bad) == (None, verdict)
        assert checks.checked == 2


def test_a_certificate_asked_to_prove_another_block_is_checked_afresh() -> None:
    state, cert = after_height_1()
    committee = state.recent_committees[-1]
    _, good, bad = judged_twice((state, cert, committee, cert.block_id), (state, cert, committee, OTHER_ID))
    assert (good, bad) == (None, "certificate is for another block")
    # the same signatures claimed for another block, asked to prove that block
    other_block = replace(cert, block_id=OTHER_ID)
    _, good, bad = judged_twice(
        (state, cert, committee, cert.block_id), (state, other_block, committee, OTHER_ID)
    )
    assert (good, bad) == (None, "certificate has a bad signature")


def test_a_certificate_judged_against_another_key_set_is_checked_afresh() -> None:
    state, cert = after_height_1()
    committee = state.recent_committees[-1]
    carol_rotated = replace(state, public_keys={**state.public_keys, ADDR["carol"]: OUTSIDER.public})
    _, good, bad = judged_twice(
        (state, cert, committee, cert.block_id), (carol_rotated, cert, committee, cert.block_id)
    )
    assert (good, bad) == (None, "certificate has a bad signature")
    # and back: the first key set's verdict is not the rotated one's either
    _, bad, good = judged_twice(
        (carol_rotated, cert, committee, cert.block_id), (state, cert, committee, cert.block_id)
    )
    assert (bad, good) == ("certificate has a bad signature", None)


def test_a_certificate_judged_with_another_key_history_or_chain_is_checked_afresh() -> None:
    state, cert = after_height_1()
    committee = state.recent_committees[-1]
    # the same current-key mapping, but carol's key for heights up to 5 rotated out to another one
    history = replace(state, key_history=((ADDR["carol"], 5, OUTSIDER.public),))
    assert history.public_keys is state.public_keys
    other_chain = replace(state, chain_id="posnet-other")
    for other in (history, other_chain):
        _, good, bad = judged_twice(
            (state, cert, committee, cert.block_id), (other, cert, committee, cert.block_id)
        )
        assert (good, bad) == (None, "certificate has a bad signature")
        assert certificate_problem(other, cert, committee, cert.block_id) == bad


def test_a_certificate_judged_for_another_committee_is_checked_afresh() -> None:
    state, cert = after_height_1()
    committee = state.recent_committees[-1]
    without_carol = replace(
        committee, members=tuple(m for m in committee.members if m[0] != ADDR["carol"]), total=3000
    )
    _, good, bad = judged_twice(
        (state, cert, committee, cert.block_id), (state, cert, without_carol, cert.block_id)
    )
    assert (good, bad) == (None, "certificate signer outside the committee")


def test_a_certificates_precommits_are_built_once_and_are_its_own() -> None:
    _, cert = after_height_1()
    checks = SharedCertificateChecks()
    votes = checks.votes(cert)
    assert votes == cert.votes() and checks.votes(replace(cert)) is votes
    dave = certificate(cert.block_id, 1, signers=("alice", "bob", "dave"))
    assert checks.votes(dave) == dave.votes() != votes
    forged = replace(cert, signatures=(*cert.signatures[:-1], (cert.signatures[-1][0], bytes(64))))
    assert checks.votes(forged)[-1].signature == bytes(64)


def test_the_memo_forgets_everything_past_its_limit_and_still_answers_right() -> None:
    state, cert = after_height_1()
    committee = state.recent_committees[-1]
    checks = SharedCertificateChecks(limit=2)
    others = [certificate(cert.block_id, 1, round_, ("alice", "bob", "carol")) for round_ in (1, 2, 3)]
    for other in others:
        assert checks.problem(state, other, committee, cert.block_id) is None
    assert checks.problem(state, cert, committee, cert.block_id) is None
    assert checks.checked == 4
    assert precommit("alice", 1, 0, cert.block_id) in checks.votes(cert)
