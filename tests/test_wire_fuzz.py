"""Bad input on the wire: a running network shrugs it off and counts it; admission never raises.

Two halves:
- against four real node processes over mosquitto, a raw MQTT client
  publishes garbage, oversize payloads, envelopes for another chain, from an
  unknown key, with broken signatures, replays of old messages and signed
  far-future votes; the nodes must keep finalizing one chain and their
  Prometheus endpoints must show each kind of drop under its reason;
- hypothesis throws random bytes and mutated valid envelopes of every kind
  at ``node.core.admission.admit``: it must return a Rejected or a well-formed
  message, never raise.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from network.transport.broker import (
    MAX_PAYLOAD_BYTES,
    BrokerProcess,
    parse_broker_url,
)
from node.core.admission import (
    AdmissionContext,
    EvidenceMsg,
    ProposalMsg,
    Rejected,
    StatusMsg,
    SyncRequest,
    SyncResponse,
    TxMsg,
    admit,
)
from node.core.codec import decode, encode
from node.core.envelopes import (
    evidence_bytes,
    signed_item_bytes,
    status_bytes,
    sync_request_bytes,
    sync_response_bytes,
    tx_bytes,
)
from node.core.genesis import make_genesis
from node.core.keys import Keypair
from node.core.messages import (
    PROTOCOL_VERSION,
    ZERO_HASH,
    Block,
    CommitCertificate,
    Kind,
    Proposal,
    Vote,
    envelope_for,
    make_certificate,
    make_evidence,
    parse_envelope,
    sha256,
    sign_item,
    verify_signed,
)
from node.core.state import genesis_state
from tests.support.nodes import LocalNet, agree, make_localnet, wait_until

# ------------------------------------------------------------- building payloads


def signed_vote(
    chain_id: str, keypair: Keypair, height: int, round_: int = 0, *, kind: Kind = Kind.PREVOTE
) -> Vote:
    block_id = sha256(b"fuzz %d %d" % (height, round_))
    vote = Vote(kind, height, round_, block_id, keypair.address)
    return Vote(kind, height, round_, block_id, keypair.address, sign_item(chain_id, vote, keypair))


def vote_bytes(chain_id: str, keypair: Keypair, height: int, *, sign_as: str | None = None) -> bytes:
    """A vote envelope for ``chain_id``, signed for ``sign_as`` (default: the same chain)."""
    vote = signed_vote(sign_as or chain_id, keypair, height)
    envelope = envelope_for(sign_as or chain_id, vote)
    if sign_as is not None:
        envelope = type(envelope)(chain_id, envelope.kind, envelope.sender, envelope.body, envelope.signature)
    return envelope.to_bytes()


def flip_bit(data: bytes, index: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[index] ^= 1 << bit
    return bytes(out)


def signature_offset(data: bytes) -> int:
    """Where the envelope's 64-byte signature starts (found, not assumed)."""
    signature = parse_envelope(data).signature
    return data.index(signature)


def bad_payloads(net: LocalNet, height: int) -> dict[str, list[bytes]]:
    """Every kind of bad input, keyed by the drop reason each must be counted under."""
    chain = net.chain_id
    keys = net.keys
    rng = random.Random(7)
    stranger = Keypair.deterministic("not in genesis")
    good = vote_bytes(chain, keys["v1"], height + 2)  # valid, but never sent as is
    sig_at = signature_offset(good)
    body = parse_envelope(good).body
    body_at = good.index(body)
    wrong_version = encode((PROTOCOL_VERSION + 1, *parse_envelope_fields(good)[1:]))
    return {
        "malformed": [
            b"",
            b"\xc1",  # a byte msgpack never uses
            bytes(rng.getrandbits(8) for _ in range(200)),
            encode(("not", "an", "envelope")),
            good[: len(good) // 2],  # truncated
        ],
        "non_canonical": [
            good[:1] + b"\xcc" + good[1:2] + good[2:]
        ],  # version 1 as uint8: valid msgpack, not canonical
        "version": [wrong_version],
        "oversize": [b"\x00" * (MAX_PAYLOAD_BYTES + 1)],
        "wrong_chain": [vote_bytes("other-chain", keys["v1"], height + 2)],
        "unknown_sender": [vote_bytes(chain, stranger, height + 2)],
        "bad_signature": [
            flip_bit(good, sig_at + 10),
            flip_bit(good, sig_at + 63, 7),
            flip_bit(
                good, body_at + len(body) - 3
            ),  # a bit of the block id: the signature no longer covers it
            vote_bytes(chain, keys["v2"], height + 2, sign_as="other-chain"),  # signed for another chain
        ],
        "stale": [vote_bytes(chain, keys[name], 1) for name in keys],
        "future": [vote_bytes(chain, keys[name], height + 100_000) for name in keys],
    }


def parse_envelope_fields(data: bytes) -> tuple[Any, ...]:
    return decode(data)  # type: ignore[no-any-return]


# ----------------------------------------------------------------- metrics


def dropped_by_reason(metrics_text: str) -> dict[str, float]:
    for family in text_string_to_metric_families(metrics_text):
        if family.name == "posnet_messages_dropped":
            return {
                sample.labels["reason"]: sample.value
                for sample in family.samples
                if sample.name.endswith("_total")
            }
    return {}


def metric_value(metrics_text: str, name: str) -> float:
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"no metric {name}")


# ------------------------------------------------------------- the live network


@contextlib.asynccontextmanager
async def raw_client(broker: BrokerProcess, name: str) -> AsyncIterator[aiomqtt.Client]:
    host, port = parse_broker_url(broker.url)
    async with aiomqtt.Client(host, port, identifier=name, max_queued_outgoing_messages=10_000) as client:
        yield client


@pytest.mark.integration
@pytest.mark.broker
async def test_a_network_under_wire_fuzz_keeps_finalizing_and_counts_every_drop_by_reason(
    mosquitto: BrokerProcess, tmp_path: Path
) -> None:
    net = make_localnet(tmp_path / "net", mosquitto.url, 4, metrics=True)
    prefix = f"posnet/{net.chain_id}"
    captured: list[bytes] = []  # real consensus traffic, replayed later
    try:
        async with raw_client(mosquitto, "posnet-fuzzer") as client:
            await client.subscribe(f"{prefix}/consensus")

            async def capture() -> None:
                async for message in client.messages:
                    if len(captured) < 200:
                        captured.append(bytes(message.payload))  # type: ignore[arg-type]

            capturing = asyncio.create_task(capture())
            net.start()
            await wait_until(lambda: min(net.heights().values()) >= 6, what="height 6", net=net)
            capturing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await capturing
            await client.unsubscribe(f"{prefix}/consensus")

            height = max(net.heights().values())
            payloads = bad_payloads(net, height)
            replays = captured[:40]
            assert replays, "captured no consensus traffic to replay"
            for _ in range(3):
                for batch in payloads.values():
                    for data in batch:
                        await client.publish(f"{prefix}/consensus", data, qos=1)
                for data in replays:
                    await client.publish(f"{prefix}/consensus", data, qos=1)
                # The other channels get garbage too; nodes must survive it there as well.
                for channel in ("evidence", "tx", "sync/req", "sync/resp/v1", "status/fuzzer"):
                    await client.publish(f"{prefix}/{channel}", payloads["malformed"][2], qos=1)
                    await client.publish(f"{prefix}/{channel}", payloads["bad_signature"][0], qos=1)

        resumed_from = max(net.heights().values())
        await wait_until(
            lambda: min(net.heights().values()) >= resumed_from + 5, what="finality after the fuzz", net=net
        )

        expected = set(payloads)
        for name, node in net.nodes.items():

            def counted(node: object = node) -> bool:
                drops = dropped_by_reason(node.metrics())  # type: ignore[attr-defined]
                return expected <= {reason for reason, count in drops.items() if count > 0}

            await wait_until(counted, what=f"{name} counting every kind of drop", net=net, interval=0.5)
            text = node.metrics()
            drops = dropped_by_reason(text)
            assert drops["malformed"] >= 3 * len(payloads["malformed"]), (name, drops)
            assert drops["bad_signature"] >= 3 * 3, (name, drops)
            assert drops["stale"] >= 3 * (len(net.keys) - 1), (name, drops)
            assert metric_value(text, "posnet_finalized_height") >= resumed_from
            assert not node.events("error"), node.events("error")
            assert node.running, node.stderr()
        agree(list(net.nodes.values()))
    finally:
        net.stop()


# ------------------------------------------------------ admission, directly


CHAIN = "fuzz-chain"
KEYS = {f"v{i}": Keypair.deterministic(f"{CHAIN}/v{i}") for i in range(1, 5)}
STATE = genesis_state(make_genesis(CHAIN, KEYS))
CTX = AdmissionContext(CHAIN, STATE.public_keys, 3)


def signed(item: Vote | Proposal, keypair: Keypair) -> Any:
    return replace(item, signature=sign_item(CHAIN, item, keypair))


def _valid_envelopes() -> list[bytes]:
    """One envelope of every kind a node receives; all but one pass admission as they are."""
    v1, v2 = KEYS["v1"], KEYS["v2"]
    prev = sha256(b"block 1")

    def certificate(height: int, block_id: bytes) -> CommitCertificate:
        return make_certificate(
            [signed(Vote(Kind.PRECOMMIT, height, 0, block_id, kp.address), kp) for kp in KEYS.values()]
        )

    block = Block(2, prev, v1.address, 1_000, (b"tx-1",), (), certificate(1, prev))
    cert = certificate(2, block.hash)
    proposal = signed(Proposal(2, 0, block.hash, -1, v1.address), v1)
    prevote = signed_vote(CHAIN, v2, 3)
    nil_prevote = signed(Vote(Kind.PREVOTE, 3, 0, None, v2.address), v2)
    height_one = Block(1, ZERO_HASH, v1.address, 1_000, (), (), None)
    return [
        signed_item_bytes(CHAIN, prevote),
        signed_item_bytes(CHAIN, signed_vote(CHAIN, v1, 3, kind=Kind.PRECOMMIT)),
        signed_item_bytes(CHAIN, proposal, block),
        evidence_bytes(CHAIN, make_evidence(prevote, nil_prevote), v1),
        sync_request_bytes(CHAIN, 1, "v1", 7, v2),
        sync_response_bytes(CHAIN, 7, [(block, cert)], v2),
        sync_response_bytes(CHAIN, 7, [(height_one, cert)], v2),  # cert/block mismatch: rejected as invalid
        status_bytes(CHAIN, "v1", 3, 0, True, v1, ts_ms=0),
        tx_bytes(CHAIN, b"a signed transaction", Keypair.deterministic("a user")),
    ]


VALID = _valid_envelopes()
ADMITTED_TYPES = (Vote, ProposalMsg, EvidenceMsg, SyncRequest, SyncResponse, StatusMsg, TxMsg)


def check_admitted(result: object) -> None:
    """Rejected with a known reason, or a message that is what it claims to be."""
    from node.core.admission import REJECT_REASONS

    if isinstance(result, Rejected):
        assert result.reason in REJECT_REASONS, result
        return
    assert isinstance(result, ADMITTED_TYPES), result
    if isinstance(result, Vote):
        assert verify_signed(CHAIN, result, STATE.public_keys[result.validator])
    elif isinstance(result, ProposalMsg):
        assert result.block.hash == result.proposal.block_id
        assert verify_signed(CHAIN, result.proposal, STATE.public_keys[result.proposal.proposer])
    elif isinstance(result, SyncResponse):
        assert all(cert.block_id == block.hash for block, cert in result.blocks)


def test_every_valid_envelope_in_the_corpus_is_admitted_or_rejected_for_its_stated_reason() -> None:
    results = [admit(data, CTX) for data in VALID]
    for result in results:
        check_admitted(result)
    rejected = [r for r in results if isinstance(r, Rejected)]
    assert [r.reason for r in rejected] == ["invalid"]  # only the deliberately mismatched sync response


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_random_bytes_are_rejected_without_raising(data: bytes) -> None:
    result = admit(data, CTX)
    assert isinstance(result, Rejected)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid envelope with a few bit flips, byte overwrites, insertions, deletions or truncation."""
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        else:
            del data[at:]
    return bytes(data)


@pytest.mark.slow
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_valid_envelopes_are_rejected_or_well_formed_never_raise(data: bytes) -> None:
    check_admitted(admit(data, CTX))


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(st.sampled_from(VALID), st.integers(0, 10**6))
def test_a_flipped_signature_bit_is_always_a_bad_signature(data: bytes, position: int) -> None:
    envelope = parse_envelope(data)
    at = data.index(envelope.signature) + position % 64
    result = admit(flip_bit(data, at, position % 8), CTX)
    assert isinstance(result, Rejected) and result.reason == "bad_signature", result
