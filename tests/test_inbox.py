"""Admission: every class of bad input is rejected with its reason; fuzzed bytes never crash it."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.core.admission import (
    FUTURE_HEIGHTS,
    REJECT_REASONS,
    AdmissionContext,
    EvidenceMsg,
    ProposalMsg,
    Rejected,
    StatusMsg,
    SyncRequest,
    TxMsg,
    admit,
)
from node.core.codec import encode
from node.core.messages import PROTOCOL_VERSION, Envelope, Kind, Vote, make_evidence, seal, sign_item
from tests.support.chain import (
    ADDR,
    CHAIN_ID,
    KEYS,
    OUTSIDER,
    make_block,
    precommit,
    prevote,
    proposal,
    state0,
    vote,
    wire,
)

STATE = state0()
HEIGHT = 5
CTX = AdmissionContext(CHAIN_ID, STATE.public_keys, HEIGHT)
H = b"\x42" * 32
VOTE = prevote("alice", HEIGHT, 0, H)
BLOCK = make_block(STATE, "carol")
PROPOSAL = proposal("carol", 1, 0, BLOCK.hash)
CTX1 = AdmissionContext(CHAIN_ID, STATE.public_keys, 1)


def rejected(data: bytes, ctx: AdmissionContext = CTX) -> str:
    result = admit(data, ctx)
    assert isinstance(result, Rejected), result
    assert result.reason in REJECT_REASONS
    return result.reason


def fields(item: Vote, **changes: object) -> bytes:
    """A vote envelope with some of its seven fields replaced, canonically encoded."""
    values = {
        "version": PROTOCOL_VERSION,
        "chain_id": CHAIN_ID,
        "kind": int(item.kind),
        "sender": item.validator,
        "body": item.body(),
        "signature": item.signature,
        "attachment": b"",
    }
    values.update(changes)
    return encode(tuple(values.values()))


# ----------------------------------------------------------------- accepted


def test_a_valid_vote_is_admitted_as_itself() -> None:
    assert admit(wire(VOTE), CTX) == VOTE
    assert admit(fields(VOTE), CTX) == VOTE


@pytest.mark.parametrize(
    ("validators", "detail"),
    [
        ((), "without the signer's own pool"),
        ((b"\x01" * 20,), "without the signer's own pool"),
        (("bob",), "expected bytes"),
        ((b"\x01" * 19,), "expected 20 bytes"),
    ],
)
def test_a_status_must_name_distinct_pools_its_signer_among_them(
    validators: tuple[object, ...], detail: str
) -> None:
    status = seal(CHAIN_ID, Kind.STATUS, encode(("n1", 4, 2, True, validators, 0)), KEYS["bob"])
    rejected = admit(status.to_bytes(), CTX)
    assert isinstance(rejected, Rejected) and detail in rejected.detail, rejected


def test_a_status_repeating_a_pool_is_rejected() -> None:
    status = seal(CHAIN_ID, Kind.STATUS, encode(("n1", 4, 2, True, (ADDR["bob"], ADDR["bob"]))), KEYS["bob"])
    assert isinstance(admit(status.to_bytes(), CTX), Rejected)


def test_a_valid_proposal_is_admitted_with_its_block() -> None:
    assert admit(wire(PROPOSAL, BLOCK), CTX1) == ProposalMsg(PROPOSAL, BLOCK)


def test_other_message_kinds_are_admitted() -> None:
    evidence = make_evidence(prevote("dave", 1, 0, H), prevote("dave", 1, 0, None))
    signed = seal(CHAIN_ID, Kind.EVIDENCE, encode(evidence.to_wire()), KEYS["bob"])
    assert admit(signed.to_bytes(), CTX) == EvidenceMsg(ADDR["bob"], evidence)
    hosted = (ADDR["bob"], ADDR["carol"])
    status = seal(CHAIN_ID, Kind.STATUS, encode(("n1", 4, 2, True, hosted, 1_700_000_000_000)), KEYS["bob"])
    assert admit(status.to_bytes(), CTX) == StatusMsg(
        ADDR["bob"], "n1", 4, 2, True, hosted, 1_700_000_000_000
    )
    sync = seal(CHAIN_ID, Kind.SYNC_REQUEST, encode((3, "n1", 99)), KEYS["bob"])
    assert admit(sync.to_bytes(), CTX) == SyncRequest(ADDR["bob"], 3, "n1", 99)
    account = OUTSIDER
    tx = seal(CHAIN_ID, Kind.TX, b"payload", account)
    tx = replace(tx, sender=account.public)  # a transaction names its public key
    assert admit(tx.to_bytes(), CTX) == TxMsg(b"payload")


@pytest.mark.parametrize("height", [HEIGHT - 1, HEIGHT, HEIGHT + 1, HEIGHT + FUTURE_HEIGHTS])
def test_votes_from_the_previous_to_the_far_edge_of_future_heights_are_admitted(height: int) -> None:
    item = precommit("bob", height, 0, H)
    assert admit(wire(item), CTX) == item


# ----------------------------------------------------------------- rejected


def test_oversize() -> None:
    data = wire(VOTE)
    assert rejected(data, replace(CTX, max_size=len(data) - 1)) == "oversize"
    assert rejected(b"\x00" * (CTX.max_size + 1)) == "oversize"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        b"\x92\x01\x02",  # an array, but not an envelope
        wire(VOTE)[:-1],  # truncated
        wire(VOTE) + b"\x00",  # trailing byte
        encode((PROTOCOL_VERSION, CHAIN_ID, 2, ADDR["alice"], b"", b"\x00" * 64)),  # six fields
    ],
    ids=["empty", "reserved-byte", "short-array", "truncated", "trailing", "six-fields"],
)
def test_malformed_structure(data: bytes) -> None:
    assert rejected(data) == "malformed"


def test_malformed_body_even_with_a_valid_signature() -> None:
    for body in (b"garbage", encode((HEIGHT, 0, H)), encode((0, 0, H, ADDR["alice"]))):
        data = seal(CHAIN_ID, Kind.PREVOTE, body, KEYS["alice"]).to_bytes()
        assert rejected(data) == "malformed"


def test_malformed_attachment_on_a_vote() -> None:
    data = Envelope(CHAIN_ID, Kind.PREVOTE, ADDR["alice"], VOTE.body(), VOTE.signature, b"\x01").to_bytes()
    assert rejected(data) == "malformed"


def test_malformed_status_with_a_non_boolean_flag() -> None:
    data = seal(CHAIN_ID, Kind.STATUS, encode(("n1", 4, 2, 1)), KEYS["bob"]).to_bytes()
    assert rejected(data) == "malformed"


def test_non_canonical_envelope() -> None:
    data = wire(VOTE)
    assert data[:2] == b"\x97\x01"  # fixarray(7), version 1 as a positive fixint
    widened = b"\x97\xcc\x01" + data[2:]  # version as uint8: the same value, another encoding
    assert rejected(widened) == "non_canonical"


def test_non_canonical_body_inside_a_validly_signed_envelope() -> None:
    """The body is itself canonical msgpack; a widened body is refused even when its signature is good."""
    body = VOTE.body()
    assert body[:2] == b"\x94\x05"
    widened = b"\x94\xcc\x05" + body[2:]
    data = seal(CHAIN_ID, Kind.PREVOTE, widened, KEYS["alice"]).to_bytes()
    assert rejected(data) == "non_canonical"


@pytest.mark.parametrize("version", [0, 2])
def test_version(version: int) -> None:
    assert rejected(fields(VOTE, version=version)) == "version"


def test_unknown_kind() -> None:
    assert rejected(fields(VOTE, kind=42)) == "unknown_kind"


def test_wrong_chain() -> None:
    foreign = vote("alice", Kind.PREVOTE, HEIGHT, 0, H, chain_id="posnet-other")
    assert rejected(fields(foreign, chain_id="posnet-other")) == "wrong_chain"


def test_a_signature_for_another_chain_replayed_here_is_a_bad_signature() -> None:
    foreign = vote("alice", Kind.PREVOTE, HEIGHT, 0, H, chain_id="posnet-other")
    assert rejected(fields(foreign)) == "bad_signature"


def test_unknown_sender() -> None:
    item = replace(Vote(Kind.PREVOTE, HEIGHT, 0, H, OUTSIDER.address), signature=b"\x00" * 64)
    item = replace(item, signature=sign_item(CHAIN_ID, item, OUTSIDER))
    assert rejected(wire(item)) == "unknown_sender"
    assert rejected(fields(VOTE, sender=b"\x01" * 19)) == "unknown_sender"


@pytest.mark.parametrize(
    "data",
    [
        fields(VOTE, signature=bytes([VOTE.signature[0] ^ 1]) + VOTE.signature[1:]),
        fields(VOTE, kind=int(Kind.PRECOMMIT)),  # a prevote's signature presented as a precommit
        fields(VOTE, sender=ADDR["bob"]),  # alice's signature under bob's name
        fields(VOTE, body=replace(VOTE, round=1).body()),  # another body under the old signature
    ],
    ids=["flipped-bit", "other-kind", "other-sender", "other-body"],
)
def test_bad_signature(data: bytes) -> None:
    assert rejected(data) == "bad_signature"


def test_invalid_when_the_vote_names_another_signer_than_the_sender() -> None:
    inner = Vote(Kind.PREVOTE, HEIGHT, 0, H, ADDR["bob"])  # body names bob, alice signs the envelope
    data = seal(CHAIN_ID, Kind.PREVOTE, inner.body(), KEYS["alice"]).to_bytes()
    assert rejected(data) == "invalid"


@pytest.mark.parametrize("height", [1, HEIGHT - 2])
def test_stale(height: int) -> None:
    assert rejected(wire(prevote("alice", height, 0, H))) == "stale"


def test_stale_proposal() -> None:
    assert rejected(wire(PROPOSAL, BLOCK), replace(CTX1, height=3)) == "stale"


@pytest.mark.parametrize("height", [HEIGHT + FUTURE_HEIGHTS + 1, 2**63])
def test_future(height: int) -> None:
    assert rejected(wire(prevote("alice", height, 0, H))) == "future"


def test_the_auth_cache_gives_the_same_answers_and_checks_heights_afresh() -> None:
    cache: dict = {}
    data = wire(prevote("alice", 3, 0, H))
    assert admit(data, replace(CTX, height=3), cache) == admit(data, replace(CTX, height=3))
    assert rejected_with_cache(data, replace(CTX, height=10), cache) == "stale"
    other_keys = {**STATE.public_keys}
    del other_keys[ADDR["alice"]]
    assert (
        rejected_with_cache(data, replace(CTX, public_keys=other_keys, height=3), cache) == "unknown_sender"
    )


def rejected_with_cache(data: bytes, ctx: AdmissionContext, cache: dict) -> str:
    result = admit(data, ctx, cache)
    assert isinstance(result, Rejected)
    return result.reason


def test_deeply_nested_input_is_rejected_not_raised() -> None:
    rejected(b"\x91" * 1020 + b"\xc0")  # any listed reason, as long as it is a rejection


# ------------------------------------------------------------------ fuzzing

VALID = [
    (wire(VOTE), CTX, VOTE),
    (wire(PROPOSAL, BLOCK), CTX1, ProposalMsg(PROPOSAL, BLOCK)),
]


def signer_of_admitted(message: object) -> bytes | None:
    if isinstance(message, Vote):
        return message.validator
    if isinstance(message, ProposalMsg):
        return message.proposal.proposer
    return None


mutations = st.lists(
    st.one_of(
        st.tuples(st.just("flip"), st.integers(0, 10_000), st.integers(1, 255)),
        st.tuples(st.just("insert"), st.integers(0, 10_000), st.integers(0, 255)),
        st.tuples(st.just("delete"), st.integers(0, 10_000), st.just(0)),
    ),
    min_size=1,
    max_size=4,
)


def mutate(data: bytes, plan: list[tuple[str, int, int]]) -> bytes:
    out = bytearray(data)
    for op, index, value in plan:
        if not out:
            break
        i = index % len(out)
        if op == "flip":
            out[i] ^= value
        elif op == "insert":
            out.insert(i, value)
        else:
            del out[i]
    return bytes(out)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(st.sampled_from(range(len(VALID))), mutations)
def test_mutated_envelopes_never_raise_and_never_change_the_signer(which: int, plan: list) -> None:
    data, ctx, original = VALID[which]
    mutated = mutate(data, plan)
    result = admit(mutated, ctx)
    if isinstance(result, Rejected):
        assert result.reason in REJECT_REASONS
        return
    assert signer_of_admitted(result) == signer_of_admitted(original)
    assert result == original  # canonical encoding: nothing else can be admitted
    assert mutated == data


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_are_rejected_not_raised(data: bytes) -> None:
    assert isinstance(admit(data, CTX), Rejected)
