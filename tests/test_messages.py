"""Protocol objects: wire round-trips, strict parsing, block hashing and signing domains."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.core.admission import AdmissionContext, Rejected, admit
from node.core.codec import DecodeError, decode, encode
from node.core.keys import verify
from node.core.messages import (
    MAX_ROUND,
    PROTOCOL_VERSION,
    Block,
    CommitCertificate,
    Envelope,
    Evidence,
    Kind,
    Proposal,
    Vote,
    evidence_shape_problem,
    make_evidence,
    parse_envelope,
    signing_bytes,
    verify_signed,
)
from tests.support.chain import ADDR, CHAIN_ID, KEYS, certificate, make_block, precommit, prevote, state0
from tests.support.chain import proposal as signed_proposal

U64_MAX = (1 << 64) - 1
H1 = b"\x11" * 32
H2 = b"\x22" * 32

addresses = st.binary(min_size=20, max_size=20)
hashes = st.binary(min_size=32, max_size=32)
signatures = st.binary(min_size=64, max_size=64)
heights = st.integers(1, U64_MAX)
rounds = st.integers(0, MAX_ROUND)
vote_kinds = st.sampled_from([Kind.PREVOTE, Kind.PRECOMMIT])

votes = st.builds(Vote, vote_kinds, heights, rounds, st.none() | hashes, addresses, signatures)


@st.composite
def proposals(draw: st.DrawFn) -> Proposal:
    round_ = draw(st.integers(0, MAX_ROUND))
    pol_round = draw(st.integers(-1, round_ - 1))
    return Proposal(draw(heights), round_, draw(hashes), pol_round, draw(addresses), draw(signatures))


@st.composite
def certificates(draw: st.DrawFn) -> CommitCertificate:
    signers = sorted(draw(st.lists(addresses, max_size=8, unique=True)))
    pairs = tuple((signer, draw(signatures)) for signer in signers)
    return CommitCertificate(draw(heights), draw(rounds), draw(hashes), pairs)


@st.composite
def evidences(draw: st.DrawFn) -> Evidence:
    if draw(st.booleans()):
        a = draw(votes)
        other = draw(st.none() | hashes.filter(lambda h: h != a.block_id))
        if other == a.block_id:  # both nil: make the second a block vote
            other = H1
        b = replace(a, block_id=other, signature=draw(signatures))
    else:
        a = draw(proposals())
        b = replace(a, block_id=draw(hashes.filter(lambda h: h != a.block_id)), signature=draw(signatures))
    return make_evidence(a, b)


@st.composite
def blocks(draw: st.DrawFn) -> Block:
    height = draw(heights)
    return Block(
        height=height,
        prev_hash=draw(hashes),
        proposer=draw(addresses),
        timestamp_ms=draw(st.integers(0, U64_MAX)),
        txs=tuple(draw(st.lists(st.binary(max_size=40), max_size=4))),
        evidence=tuple(draw(st.lists(evidences(), max_size=2))),
        last_commit=None if height == 1 else draw(certificates()),
    )


def over_the_wire(obj: Any) -> Any:
    """What the other side sees: canonical bytes decoded strictly."""
    return decode(encode(obj.to_wire()))


def malformed(parse: Any, wire: Any) -> str:
    with pytest.raises(DecodeError) as info:
        parse(wire)
    assert info.value.reason == "malformed"
    return str(info.value)


# ------------------------------------------------------------ round trips


@given(votes)
def test_vote_round_trips_through_the_wire(vote: Vote) -> None:
    assert Vote.from_wire(over_the_wire(vote)) == vote
    assert Vote.from_body(vote.kind, vote.body(), vote.signature) == vote


@given(proposals())
def test_proposal_round_trips_through_the_wire(item: Proposal) -> None:
    assert Proposal.from_wire(over_the_wire(item)) == item
    assert Proposal.from_body(item.body(), item.signature) == item


@pytest.mark.slow
@given(certificates())
def test_certificate_round_trips_through_the_wire(cert: CommitCertificate) -> None:
    assert CommitCertificate.from_wire(over_the_wire(cert)) == cert


@pytest.mark.slow
@given(evidences())
def test_evidence_round_trips_through_the_wire(evidence: Evidence) -> None:
    assert evidence_shape_problem(evidence) is None
    assert Evidence.from_wire(over_the_wire(evidence)) == evidence


@pytest.mark.slow
@settings(max_examples=50)
@given(blocks())
def test_block_round_trips_through_the_wire_with_the_same_hash(block: Block) -> None:
    again = Block.decode(block.encoded)
    assert again == block
    assert again.hash == block.hash


def test_make_evidence_is_independent_of_argument_order() -> None:
    a, b = prevote("alice", 1, 0, H1), prevote("alice", 1, 0, H2)
    assert make_evidence(a, b) == make_evidence(b, a)
    assert make_evidence(a, b).to_wire() == make_evidence(b, a).to_wire()


# ------------------------------------------------------------ rejections

VOTE = Vote(Kind.PREVOTE, 5, 2, H1, b"\x01" * 20, b"\x02" * 64)
PROPOSAL = Proposal(5, 2, H1, 1, b"\x01" * 20, b"\x02" * 64)


@pytest.mark.parametrize(
    "wire",
    [
        VOTE.to_wire()[:5],
        (*VOTE.to_wire(), b""),
        (int(Kind.PROPOSAL), *VOTE.to_wire()[1:]),  # a proposal kind in a vote
        (int(Kind.EVIDENCE), *VOTE.to_wire()[1:]),
        (2, 0, 2, H1, b"\x01" * 20, b"\x02" * 64),  # height 0
        (2, "5", 2, H1, b"\x01" * 20, b"\x02" * 64),  # height as text
        (2, True, 2, H1, b"\x01" * 20, b"\x02" * 64),  # height as a boolean
        (2, 5, MAX_ROUND + 1, H1, b"\x01" * 20, b"\x02" * 64),  # round too large
        (2, 5, -1, H1, b"\x01" * 20, b"\x02" * 64),  # negative round
        (2, 5, 2, H1[:31], b"\x01" * 20, b"\x02" * 64),  # short block id
        (2, 5, 2, b"", b"\x01" * 20, b"\x02" * 64),  # empty bytes is not nil
        (2, 5, 2, H1, b"\x01" * 19, b"\x02" * 64),  # short address
        (2, 5, 2, H1, b"\x01" * 20, b"\x02" * 63),  # short signature
        (2, 5, 2, H1, "\x01" * 20, b"\x02" * 64),  # address as text
        b"not a tuple",
    ],
)
def test_vote_from_wire_rejects_wrong_lengths_and_types(wire: Any) -> None:
    malformed(Vote.from_wire, wire)


@pytest.mark.parametrize(
    "wire",
    [
        PROPOSAL.to_wire()[:5],
        (*PROPOSAL.to_wire(), 0),
        (5, 2, None, 1, b"\x01" * 20, b"\x02" * 64),  # a proposal for nil
        (5, 2, H1, -2, b"\x01" * 20, b"\x02" * 64),  # pol_round below -1
        (0, 2, H1, 1, b"\x01" * 20, b"\x02" * 64),  # height 0
    ],
)
def test_proposal_from_wire_rejects_wrong_lengths_and_types(wire: Any) -> None:
    malformed(Proposal.from_wire, wire)


@pytest.mark.parametrize(("round_", "pol_round"), [(2, 2), (2, 3), (0, 0)])
def test_proposal_from_wire_rejects_pol_round_not_below_round(round_: int, pol_round: int) -> None:
    message = malformed(Proposal.from_wire, (5, round_, H1, pol_round, b"\x01" * 20, b"\x02" * 64))
    assert "pol_round" in message


@pytest.mark.parametrize(
    "signers",
    [
        (b"\x02" * 20, b"\x01" * 20),  # unsorted
        (b"\x01" * 20, b"\x01" * 20),  # duplicate
        (b"\x01" * 20, b"\x03" * 20, b"\x02" * 20),
    ],
    ids=["unsorted", "duplicate", "unsorted-tail"],
)
def test_certificate_from_wire_rejects_unsorted_or_duplicate_signers(signers: tuple[bytes, ...]) -> None:
    wire = (5, 0, H1, tuple((signer, b"\x09" * 64) for signer in signers))
    assert "sorted" in malformed(CommitCertificate.from_wire, wire)


@pytest.mark.parametrize(
    "wire",
    [
        (5, 0, H1, ((b"\x01" * 20,),)),  # a pair with one item
        (5, 0, H1, ((b"\x01" * 20, b"\x09" * 63),)),  # short signature
        (5, 0, None, ()),  # nil block id
        (0, 0, H1, ()),  # height 0
    ],
)
def test_certificate_from_wire_rejects_bad_fields(wire: Any) -> None:
    malformed(CommitCertificate.from_wire, wire)


def _vote_evidence_wire(a: Vote, b: Vote) -> tuple[Any, ...]:
    return (0, a.to_wire(), b.to_wire())


@pytest.mark.parametrize(
    ("a", "b", "why"),
    [
        (replace(VOTE, block_id=H1), replace(VOTE, block_id=H1, signature=b"\x03" * 64), "same block"),
        (VOTE, replace(VOTE, kind=Kind.PRECOMMIT, block_id=H2), "different height, round or step"),
        (VOTE, replace(VOTE, round=3, block_id=H2), "different height, round or step"),
        (VOTE, replace(VOTE, height=6, block_id=H2), "different height, round or step"),
        (VOTE, replace(VOTE, validator=b"\x07" * 20, block_id=H2), "different signers"),
    ],
    ids=["same-block", "different-steps", "different-rounds", "different-heights", "different-signers"],
)
def test_evidence_from_wire_rejects_items_that_are_no_equivocation(a: Vote, b: Vote, why: str) -> None:
    first, second = sorted((a, b), key=lambda item: item.body())
    assert why in malformed(Evidence.from_wire, _vote_evidence_wire(first, second))


def test_evidence_from_wire_rejects_non_canonical_order() -> None:
    evidence = make_evidence(VOTE, replace(VOTE, block_id=H2))
    wire = (0, evidence.second.to_wire(), evidence.first.to_wire())
    assert "canonical order" in malformed(Evidence.from_wire, wire)


def test_evidence_from_wire_rejects_proposals_for_the_same_block() -> None:
    other = replace(PROPOSAL, pol_round=0)  # same block, another body: not an equivocation of blocks
    first, second = sorted((PROPOSAL, other), key=lambda item: item.body())
    assert "same block" in malformed(Evidence.from_wire, (1, first.to_wire(), second.to_wire()))


def test_evidence_from_wire_rejects_a_proposal_parsed_as_a_vote() -> None:
    evidence = make_evidence(PROPOSAL, replace(PROPOSAL, block_id=H2))
    malformed(Evidence.from_wire, (0, evidence.first.to_wire(), evidence.second.to_wire()))
    malformed(Evidence.from_wire, (2, evidence.first.to_wire(), evidence.second.to_wire()))


def test_block_from_wire_requires_last_commit_above_height_one_only() -> None:
    state = state0()
    block = make_block(state)
    cert_wire = certificate(block.hash, 1).to_wire()
    height1_with_commit = (*block.to_wire()[:6], cert_wire, *block.to_wire()[7:])
    assert "last_commit" in malformed(Block.from_wire, height1_with_commit)
    height2_without = (2, *block.to_wire()[1:])
    assert "last_commit" in malformed(Block.from_wire, height2_without)


def test_block_from_wire_rejects_wrong_lengths_and_types() -> None:
    wire = make_block(state0()).to_wire()
    malformed(Block.from_wire, wire[:6])
    malformed(Block.from_wire, (*wire, None))
    malformed(Block.from_wire, (wire[0], wire[1][:31], *wire[2:]))  # short prev_hash
    malformed(Block.from_wire, (*wire[:4], ("tx",), *wire[5:]))  # a text transaction
    malformed(Block.from_wire, (*wire[:5], ((0, 1, 2),), wire[6]))  # junk evidence
    malformed(Block.from_wire, (*wire[:8], ((0, 1, 2),)))  # a junk late precommit
    malformed(Block.from_wire, (*wire[:8], (1,) * 16_385))  # more late precommits than a block may carry
    with pytest.raises(DecodeError, match="non_canonical"):
        Block.from_wire((*wire[:8], ()))  # an empty list is left out, so each block has one encoding


def test_a_block_without_late_precommits_keeps_its_eight_field_encoding_and_hash() -> None:
    """Stores written before late precommits existed decode to the same blocks and hashes."""
    block = make_block(state0())
    assert len(block.to_wire()) == 8
    assert Block.decode(block.encoded).hash == block.hash
    late = replace(block, late_precommits=(precommit("dave", 1, 0, None),))
    assert len(late.to_wire()) == 9 and Block.decode(late.encoded) == late


# ------------------------------------------------------------ block hash

BASE = Block(
    height=2,
    prev_hash=H1,
    proposer=b"\x01" * 20,
    timestamp_ms=1000,
    txs=(b"tx-a",),
    evidence=(),
    last_commit=CommitCertificate(1, 0, H1, ((b"\x05" * 20, b"\x06" * 64),)),
)


@pytest.mark.parametrize(
    "changes",
    [
        {"height": 3},
        {"prev_hash": H2},
        {"proposer": b"\x02" * 20},
        {"timestamp_ms": 1001},
        {"txs": (b"tx-b",)},
        {"txs": (b"tx-a", b"tx-a")},
        {"txs": ()},
        {"evidence": (make_evidence(VOTE, replace(VOTE, block_id=H2)),)},
        {"last_commit": CommitCertificate(1, 1, H1, ((b"\x05" * 20, b"\x06" * 64),))},
        {"last_commit": CommitCertificate(1, 0, H2, ((b"\x05" * 20, b"\x06" * 64),))},
        {"last_commit": CommitCertificate(1, 0, H1, ((b"\x05" * 20, b"\x07" * 64),))},
        {"last_commit": CommitCertificate(1, 0, H1, ())},
    ],
    ids=lambda changes: "-".join(changes),
)
def test_block_hash_changes_with_any_field(changes: dict[str, Any]) -> None:
    assert replace(BASE, **changes).hash != BASE.hash


def test_block_hash_is_sha256_of_the_canonical_encoding() -> None:
    assert BASE.hash == hashlib.sha256(encode(BASE.to_wire())).digest()
    assert Block.decode(BASE.encoded).hash == BASE.hash


# --------------------------------------------------------- signing domains


def test_a_signed_vote_verifies_as_itself() -> None:
    vote = prevote("alice", 3, 1, H1)
    assert verify_signed(CHAIN_ID, vote, KEYS["alice"].public)


def test_a_prevote_signature_does_not_verify_as_a_precommit_or_under_another_key() -> None:
    vote = prevote("alice", 3, 1, H1)
    assert not verify_signed(CHAIN_ID, replace(vote, kind=Kind.PRECOMMIT), KEYS["alice"].public)
    assert not verify_signed(CHAIN_ID, vote, KEYS["bob"].public)
    other = precommit("alice", 3, 1, H1)
    assert not verify_signed(CHAIN_ID, replace(other, kind=Kind.PREVOTE), KEYS["alice"].public)


@pytest.mark.parametrize("kind", [Kind.PREVOTE, Kind.PRECOMMIT])
def test_a_vote_signature_does_not_verify_as_a_proposal_of_the_same_bytes(kind: Kind) -> None:
    vote = prevote("alice", 3, 1, H1) if kind == Kind.PREVOTE else precommit("alice", 3, 1, H1)
    public = KEYS["alice"].public
    assert verify(public, signing_bytes(CHAIN_ID, kind, vote.body()), vote.signature)
    for other in {Kind.PROPOSAL, Kind.PREVOTE, Kind.PRECOMMIT, Kind.EVIDENCE} - {kind}:
        assert not verify(public, signing_bytes(CHAIN_ID, other, vote.body()), vote.signature)


def test_a_proposal_signature_does_not_verify_as_a_vote_of_the_same_bytes() -> None:
    item = signed_proposal("carol", 3, 1, H1, 0)
    public = KEYS["carol"].public
    assert verify_signed(CHAIN_ID, item, public)
    for kind in (Kind.PREVOTE, Kind.PRECOMMIT):
        assert not verify(public, signing_bytes(CHAIN_ID, kind, item.body()), item.signature)


@pytest.mark.parametrize("other_chain", ["posnet-other", "posnet-test ", "", "POSNET-TEST"])
def test_signatures_do_not_verify_under_another_chain_id(other_chain: str) -> None:
    vote = prevote("alice", 3, 1, H1)
    item = signed_proposal("carol", 3, 1, H1)
    assert not verify_signed(other_chain, vote, KEYS["alice"].public)
    assert not verify_signed(other_chain, item, KEYS["carol"].public)


def test_a_proposal_signature_does_not_cover_another_pol_round() -> None:
    item = signed_proposal("carol", 3, 2, H1, pol_round=-1)
    assert not verify_signed(CHAIN_ID, replace(item, pol_round=1), KEYS["carol"].public)


def test_signing_bytes_bind_domain_chain_kind_and_body() -> None:
    base = signing_bytes(CHAIN_ID, Kind.PREVOTE, b"body")
    assert decode(base) == (b"posnet-signature-v1", CHAIN_ID, int(Kind.PREVOTE), b"body")
    assert (
        len({base, signing_bytes("x", Kind.PREVOTE, b"body"), signing_bytes(CHAIN_ID, Kind.TX, b"body")}) == 3
    )


# --------------------------------------------------------------- envelopes


def _envelope_bytes(version: int = PROTOCOL_VERSION, kind: int = int(Kind.PREVOTE)) -> bytes:
    vote = prevote("alice", 1, 0, H1)
    return encode((version, CHAIN_ID, kind, ADDR["alice"], vote.body(), vote.signature, b""))


def test_parse_envelope_accepts_a_well_formed_envelope() -> None:
    envelope = parse_envelope(_envelope_bytes())
    assert envelope == Envelope(
        CHAIN_ID, Kind.PREVOTE, ADDR["alice"], prevote("alice", 1, 0, H1).body(), envelope.signature
    )


@pytest.mark.parametrize("version", [0, 2, 255])
def test_parse_envelope_rejects_other_protocol_versions(version: int) -> None:
    with pytest.raises(DecodeError) as info:
        parse_envelope(_envelope_bytes(version=version))
    assert info.value.reason == "version"


@pytest.mark.parametrize("kind", [0, 9, 99, 255])
def test_parse_envelope_rejects_unknown_kinds(kind: int) -> None:
    with pytest.raises(DecodeError) as info:
        parse_envelope(_envelope_bytes(kind=kind))
    assert info.value.reason == "unknown_kind"


@pytest.mark.parametrize(
    "data",
    [
        encode((PROTOCOL_VERSION, CHAIN_ID, 2, ADDR["alice"], b"", b"\x00" * 64)),  # 6 fields
        encode((PROTOCOL_VERSION, CHAIN_ID, 2, ADDR["alice"], b"", b"\x00" * 63, b"")),  # short signature
        encode((PROTOCOL_VERSION, b"chain", 2, ADDR["alice"], b"", b"\x00" * 64, b"")),  # chain id as bytes
        encode((PROTOCOL_VERSION, CHAIN_ID, 2, ADDR["alice"], "body", b"\x00" * 64, b"")),  # body as text
    ],
)
def test_parse_envelope_rejects_malformed_structure(data: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        parse_envelope(data)
    assert info.value.reason == "malformed"


def _ctx() -> AdmissionContext:
    state = state0()
    return AdmissionContext(CHAIN_ID, state.public_keys, 1)


def test_admit_rejects_a_proposal_whose_attached_block_does_not_match_its_block_id() -> None:
    state = state0()
    block = make_block(state, "carol")
    other = make_block(state, "carol", txs=(b"sneaky",))
    item = signed_proposal("carol", 1, 0, block.hash)
    data = Envelope(CHAIN_ID, Kind.PROPOSAL, ADDR["carol"], item.body(), item.signature, other.encoded)
    result = admit(data.to_bytes(), _ctx())
    assert isinstance(result, Rejected)
    assert result.reason == "invalid"
    assert "block id" in result.detail


def test_admit_rejects_a_proposal_whose_block_is_for_another_height() -> None:
    state = state0()
    block = make_block(state, "carol", height=2, last_commit=certificate(H1, 1))
    item = signed_proposal("carol", 1, 0, block.hash)
    data = Envelope(CHAIN_ID, Kind.PROPOSAL, ADDR["carol"], item.body(), item.signature, block.encoded)
    result = admit(data.to_bytes(), _ctx())
    assert isinstance(result, Rejected)
    assert result.reason == "invalid"


def test_admit_rejects_a_proposal_without_its_block() -> None:
    block = make_block(state0(), "carol")
    item = signed_proposal("carol", 1, 0, block.hash)
    data = Envelope(CHAIN_ID, Kind.PROPOSAL, ADDR["carol"], item.body(), item.signature, b"")
    result = admit(data.to_bytes(), _ctx())
    assert isinstance(result, Rejected)
    assert result.reason == "malformed"


def test_admit_accepts_a_proposal_with_its_own_block() -> None:
    block = make_block(state0(), "carol")
    item = signed_proposal("carol", 1, 0, block.hash)
    data = Envelope(CHAIN_ID, Kind.PROPOSAL, ADDR["carol"], item.body(), item.signature, block.encoded)
    result = admit(data.to_bytes(), _ctx())
    assert not isinstance(result, Rejected)
    assert result.proposal == item
    assert result.block == block


def test_admit_rejects_a_vote_relayed_under_another_sender() -> None:
    """A vote signed by alice in an envelope naming bob fails bob's key check."""
    vote = prevote("alice", 1, 0, H1)
    data = Envelope(CHAIN_ID, Kind.PREVOTE, ADDR["bob"], vote.body(), vote.signature).to_bytes()
    result = admit(data, _ctx())
    assert isinstance(result, Rejected)
    assert result.reason == "bad_signature"
