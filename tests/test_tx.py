"""Signed transactions: round trips, signatures bound to key and chain, strict decoding."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.core.codec import DecodeError, encode
from node.core.genesis import PPM
from node.core.keys import Keypair
from node.core.messages import Kind, signing_bytes
from node.core.tx import (
    Delegate,
    Redelegate,
    RegisterPool,
    RetirePool,
    RotateKey,
    SignedTx,
    Transfer,
    TransferShares,
    Tx,
    TxType,
    Undelegate,
    Unjail,
    UpdatePool,
    decode_tx,
    sign_tx,
    tx_amount,
    tx_body,
    tx_id,
    tx_type_name,
    verify_tx,
)

CHAIN = "test-chain"
ALICE = Keypair.deterministic("alice")
BOB = Keypair.deterministic("bob")

u64 = st.integers(0, (1 << 64) - 1)
positive = st.integers(1, (1 << 64) - 1)
address = st.binary(min_size=20, max_size=20)
any_tx = st.one_of(
    st.builds(Transfer, u64, address, positive),
    st.builds(RegisterPool, u64, positive, u64, st.integers(0, PPM), st.booleans()),
    st.builds(Delegate, u64, address, positive),
    st.builds(Undelegate, u64, address, positive),
    st.builds(Unjail, u64),
    st.builds(TransferShares, u64, address, address, positive),
    st.builds(Redelegate, u64, address, address, positive),
    st.builds(RetirePool, u64, positive),
    st.builds(RotateKey, u64, st.binary(min_size=32, max_size=32)),
    st.builds(UpdatePool, u64, u64, st.integers(0, PPM)),
)


def wire(body: bytes, keypair: Keypair = ALICE, chain_id: str = CHAIN) -> bytes:
    """Sign raw body bytes, so malformed bodies can carry valid signatures."""
    return encode((body, keypair.public, keypair.sign(signing_bytes(chain_id, Kind.TX, body))))


@settings(max_examples=200, deadline=None)
@given(any_tx)
def test_every_transaction_survives_sign_decode_and_verifies(tx: Tx) -> None:
    signed = decode_tx(sign_tx(CHAIN, tx, ALICE))
    assert signed.tx == tx
    assert signed.sender == ALICE.address
    assert verify_tx(CHAIN, signed)


def test_signing_is_deterministic_so_a_transaction_has_one_id() -> None:
    tx = Transfer(0, BOB.address, 5)
    assert sign_tx(CHAIN, tx, ALICE) == sign_tx(CHAIN, tx, ALICE)
    assert tx_id(sign_tx(CHAIN, tx, ALICE)) != tx_id(sign_tx(CHAIN, Transfer(1, BOB.address, 5), ALICE))


def test_signature_for_another_chain_does_not_verify() -> None:
    signed = decode_tx(sign_tx("other-chain", Transfer(0, BOB.address, 5), ALICE))
    assert not verify_tx(CHAIN, signed)


def test_swapping_in_another_public_key_does_not_verify() -> None:
    signed = decode_tx(sign_tx(CHAIN, Transfer(0, BOB.address, 5), ALICE))
    forged = SignedTx(signed.tx, BOB.public, signed.signature, signed.body)
    assert not verify_tx(CHAIN, forged)


def test_tampered_body_does_not_verify() -> None:
    signed = decode_tx(sign_tx(CHAIN, Transfer(0, BOB.address, 5), ALICE))
    body = tx_body(Transfer(0, BOB.address, 500))
    assert not verify_tx(CHAIN, SignedTx(decode_tx(wire(body)).tx, ALICE.public, signed.signature, body))


def test_type_names_and_amounts_for_events() -> None:
    assert tx_type_name(RegisterPool(0, 7, 0, 0)) == "register_pool"
    assert tx_amount(RegisterPool(0, 7, 0, 0)) == 7
    assert tx_amount(Undelegate(0, BOB.address, 3)) == 3
    assert tx_amount(Unjail(0)) == 0
    assert tx_type_name(TransferShares(0, BOB.address, ALICE.address, 9)) == "transfer_shares"
    assert tx_amount(TransferShares(0, BOB.address, ALICE.address, 9)) == 9  # in shares


@pytest.mark.parametrize(
    "body",
    [
        encode((int(TxType.TRANSFER), 0, b"\x01" * 19, 5)),  # short address
        encode((int(TxType.TRANSFER), 0, b"\x01" * 20, 0)),  # zero amount
        encode((int(TxType.TRANSFER), 0, b"\x01" * 20, -1)),  # negative amount
        encode((int(TxType.TRANSFER), 0, b"\x01" * 20)),  # missing field
        encode((int(TxType.TRANSFER), 0, b"\x01" * 20, 5, 6)),  # extra field
        encode((int(TxType.REGISTER_POOL), 0, 10, 0, PPM + 1, 0)),  # margin above 100%
        encode((int(TxType.REGISTER_POOL), 0, 0, 0, 0, 0)),  # zero pledge
        encode((int(TxType.REGISTER_POOL), 0, 10, 0, 0)),  # no reward mode
        encode((int(TxType.REGISTER_POOL), 0, 10, 0, 0, 2)),  # reward mode neither 0 nor 1
        encode((int(TxType.TRANSFER_SHARES), 0, b"\x01" * 20, b"\x02" * 20, 0)),  # zero shares
        encode((int(TxType.TRANSFER_SHARES), 0, b"\x01" * 20, 5)),  # no recipient
        encode((int(TxType.REDELEGATE), 0, b"\x01" * 20, b"\x02" * 20)),  # no amount
        encode((int(TxType.RETIRE_POOL), 0, 0)),  # epoch 0
        encode((int(TxType.DELEGATE), 0, "pool", 5)),  # address as text
        encode((int(TxType.UNDELEGATE), 0, b"\x01" * 20, True)),  # boolean amount
        encode((int(TxType.UNJAIL), 0, 1)),  # unjail takes no fields
        encode((99, 0)),  # unknown type
        encode((int(TxType.UNJAIL),)),  # no nonce
        encode((int(TxType.UNJAIL), -1)),  # negative nonce
        encode(5),  # not an array
        b"\xc1",  # not msgpack
    ],
    ids=[
        "short-address",
        "zero-amount",
        "negative-amount",
        "missing-field",
        "extra-field",
        "margin-over-ppm",
        "zero-pledge",
        "no-reward-mode",
        "bad-reward-mode",
        "zero-shares",
        "shares-without-recipient",
        "redelegate-without-amount",
        "retire-at-epoch-0",
        "text-address",
        "bool-amount",
        "unjail-with-field",
        "unknown-type",
        "no-nonce",
        "negative-nonce",
        "not-array",
        "not-msgpack",
    ],
)
def test_malformed_body_is_refused_even_when_validly_signed(body: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_tx(wire(body))


def test_envelope_with_wrong_shape_is_refused() -> None:
    good = sign_tx(CHAIN, Unjail(0), ALICE)
    body, public, signature = (tx_body(Unjail(0)), ALICE.public, decode_tx(good).signature)
    for data in (
        encode((body, public)),
        encode((body, public, signature, b"")),
        encode((body, public[:31], signature)),
        encode((body, public, signature[:63])),
        encode(("text", public, signature)),
        good + b"\x00",
    ):
        with pytest.raises(DecodeError):
            decode_tx(data)


def test_non_canonical_encoding_is_refused() -> None:
    body = tx_body(Unjail(0))
    loose_body = b"\x92\xd0\x05\x00"  # [5, 0] with 5 as int8 instead of a fixint
    assert loose_body != body
    with pytest.raises(DecodeError):
        decode_tx(wire(loose_body))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_decode_or_raise_decode_error_only(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_tx(data)


@settings(max_examples=300, deadline=None)
@given(any_tx, st.integers(0, 10_000), st.integers(1, 255))
def test_a_corrupted_transaction_is_refused_or_fails_its_signature(tx: Tx, position: int, flip: int) -> None:
    data = bytearray(sign_tx(CHAIN, tx, ALICE))
    data[position % len(data)] ^= flip
    try:
        signed = decode_tx(bytes(data))
    except DecodeError:
        return
    assert not verify_tx(CHAIN, signed)
