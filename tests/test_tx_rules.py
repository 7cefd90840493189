"""Transaction rules at their edges: exact rejection reasons, spending everything, pool updates and unjailing.

The ledger of tests/test_ledger.py: alice holds 10,000; d1 has 2,000 delegated to v1 and 1,000 to v3.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from node.core.keys import Keypair
from node.core.ledger import (
    JAILED,
    Ledger,
    account_of,
    apply_block,
    genesis_ledger,
    signed_tx_problem,
    tx_problem,
)
from node.core.tx import (
    Delegate,
    Redelegate,
    RegisterPool,
    Transfer,
    TransferShares,
    Tx,
    Undelegate,
    Unjail,
    UpdatePool,
    decode_tx,
    sign_tx,
)
from tests.test_ledger import ALICE, CHAIN, D1, NEWCOMER, PARAMS, V1, V2, V3, ctx, make_test_genesis

NOBODY = Keypair.deterministic("nobody")


@pytest.fixture
def ledger() -> Ledger:
    return genesis_ledger(make_test_genesis())


def problem(ledger: Ledger, sender: Keypair, tx: Tx) -> str | None:
    return tx_problem(ledger, CHAIN, sign_tx(CHAIN, tx, sender), PARAMS)


@pytest.mark.parametrize(
    ("sender", "tx", "reason"),
    [
        (ALICE, Transfer(0, D1.address, 10_001), "insufficient balance: 10000 < 10001"),
        (NOBODY, Transfer(0, D1.address, 1), "unknown account"),
        (V1, RegisterPool(0, 100, 0, 0), "already a pool operator"),
        (NEWCOMER, RegisterPool(0, 5001, 0, 0), "insufficient balance: 5000 < 5001"),
        (ALICE, Delegate(0, ALICE.address, 10), "unknown pool"),
        (ALICE, Undelegate(0, ALICE.address, 10), "unknown pool"),
        (ALICE, TransferShares(0, ALICE.address, D1.address, 1), "unknown pool"),
        (ALICE, Redelegate(0, ALICE.address, V1.address, 1), "unknown source pool"),
        (D1, Redelegate(0, V1.address, ALICE.address, 1), "unknown target pool"),
        (V1, Unjail(0), "pool is not jailed"),
        (ALICE, Unjail(0), "not a pool operator"),
        (ALICE, UpdatePool(0, 1, 1), "not a pool owner"),
    ],
)
def test_a_rejected_transaction_says_exactly_why(
    ledger: Ledger, sender: Keypair, tx: Tx, reason: str
) -> None:
    assert problem(ledger, sender, tx) == reason


def test_a_bad_signature_is_named(ledger: Ledger) -> None:
    data = sign_tx("another-chain", Transfer(0, D1.address, 1), ALICE)
    assert tx_problem(ledger, CHAIN, data, PARAMS) == "bad signature (wrong key or chain)"
    assert signed_tx_problem(ledger, CHAIN, decode_tx(data), PARAMS) == "bad signature (wrong key or chain)"
    good = decode_tx(sign_tx(CHAIN, Transfer(0, D1.address, 1), ALICE))
    assert signed_tx_problem(ledger, CHAIN, good, PARAMS) is None
    assert (
        signed_tx_problem(ledger, CHAIN, replace(good, nonce=0) if hasattr(good, "nonce") else good, PARAMS)
        is None
    )


def test_a_whole_balance_or_holding_may_be_spent(ledger: Ledger) -> None:
    assert problem(ledger, ALICE, Transfer(0, D1.address, 10_000)) is None
    assert problem(ledger, NEWCOMER, RegisterPool(0, 5000, 0, 0)) is None
    assert problem(ledger, ALICE, Delegate(0, V1.address, 10_000)) is None
    held = ledger.pools[V1.address].shares[D1.address]
    assert problem(ledger, D1, TransferShares(0, V1.address, ALICE.address, held)) is None
    assert problem(ledger, D1, Redelegate(0, V1.address, V3.address, 2000)) is None


def test_update_pool_sets_its_fees_and_needs_an_open_pool(ledger: Ledger) -> None:
    after, events = apply_block(
        ledger, ctx(), (sign_tx(CHAIN, UpdatePool(0, 77, 123_000), V2),), PARAMS, CHAIN
    )
    assert events[-1].kind == "tx_applied"
    assert (after.pools[V2.address].fixed_cost, after.pools[V2.address].margin_ppm) == (77, 123_000)
    assert account_of(after, V2.address).public_key == V2.public


def test_unjail_clears_the_missed_window_and_reports_it(ledger: Ledger) -> None:
    jailed = replace(ledger.pools[V2.address], status=JAILED, jailed_until_epoch=0, missed=0b101)
    ledger = replace(ledger, pools=ledger.pools.set(V2.address, jailed))
    after, events = apply_block(ledger, ctx(), (sign_tx(CHAIN, Unjail(0), V2),), PARAMS, CHAIN)
    assert after.pools[V2.address].missed == 0
    assert [(e.kind, e.validator, e.amount, e.reason) for e in events[-2:]][1] == (
        "unjailed",
        V2.address,
        0,
        "unjail transaction",
    )


def test_a_new_pool_is_named_after_its_address(ledger: Ledger) -> None:
    after, _ = apply_block(
        ledger, ctx(), (sign_tx(CHAIN, RegisterPool(0, 100, 0, 0), NEWCOMER),), PARAMS, CHAIN
    )
    assert after.pools[NEWCOMER.address].name == f"pool-{NEWCOMER.address.hex()[:8]}"


def test_a_malformed_or_rejected_transaction_is_reported_with_its_sender_and_amount(ledger: Ledger) -> None:
    _, events = apply_block(ledger, ctx(), (b"\x93\x01\x02",), PARAMS, CHAIN)
    assert (events[-1].kind, events[-1].validator, events[-1].amount) == ("tx_rejected", b"", 0)
    _, events = apply_block(
        ledger, ctx(), (sign_tx(CHAIN, Transfer(0, D1.address, 10_001), ALICE),), PARAMS, CHAIN
    )
    assert (events[-1].kind, events[-1].validator, events[-1].amount) == (
        "tx_rejected",
        ALICE.address,
        10_001,
    )
