"""Transaction rules at their edges: exact rejection reasons, spending everything, pool updates and unjailing.

The ledger of tests/test_ledger.py: alice holds 10,000; d1 has 2,000 delegated to v1 and 1,000 to v3.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from node.core.keys import Keypair
from node.core.ledger import (
    JAILED,
    RETIRED,
    TOMBSTONED,
    Ledger,
    LedgerEvent,
    account_of,
    apply_block,
    checked_tx,
    genesis_ledger,
    retire,
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
from tests.test_ledger import ALICE, CHAIN, D1, D2, NEWCOMER, PARAMS, V1, V2, V3, ctx, make_test_genesis
from tests.test_liquid_delegation import LIQUID, liquid_genesis

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


def with_pool(ledger: Ledger, keypair: Keypair, **change: object) -> Ledger:
    return replace(
        ledger, pools=ledger.pools.set(keypair.address, replace(ledger.pools[keypair.address], **change))
    )


def test_stake_cannot_move_into_a_closed_pool_or_become_its_operators(ledger: Ledger) -> None:
    reason = "the target pool's operator holds its stake as pledge, not shares"
    assert problem(ledger, V2, Redelegate(0, V1.address, V2.address, 1)) == reason
    move = Redelegate(0, V1.address, V3.address, 1)
    assert problem(with_pool(ledger, V3, status=RETIRED), D1, move) == "target pool is retired"
    assert problem(with_pool(ledger, V3, retiring_epoch=5), D1, move) == "target pool retires at epoch 5"
    assert problem(with_pool(ledger, V2, status=TOMBSTONED), V2, UpdatePool(0, 1, 1)) == "pool is tombstoned"
    assert problem(ledger, ALICE, TransferShares(0, V1.address, D1.address, 1)) == (
        "insufficient shares in pool: 0 < 1"
    )


def test_a_deposit_must_buy_at_least_one_share(ledger: Ledger) -> None:
    # v3: 1000 shares worth 10**6 tokens, so a token buys 1000 / 10**6 of a share: 1000 tokens buy one.
    dear = with_pool(ledger, V3, member_tokens=10**6)
    assert (
        problem(dear, ALICE, Delegate(0, V3.address, 999))
        == "amount buys no share at the pool's exchange rate"
    )
    assert problem(dear, ALICE, Delegate(0, V3.address, 1000)) is None
    reason = "amount buys no share at the target pool's exchange rate"
    assert problem(dear, D1, Redelegate(0, V1.address, V3.address, 999)) == reason
    assert problem(dear, D1, Redelegate(0, V1.address, V3.address, 1000)) is None


def test_a_leverage_of_one_caps_stake_at_the_pledge(ledger: Ledger) -> None:
    params = replace(PARAMS, max_leverage=1)
    tx = sign_tx(CHAIN, Redelegate(0, V1.address, V2.address, 1), D1)
    assert tx_problem(ledger, CHAIN, tx, params) == "leverage cap: stake 2001 > pledge 2000 x 1"
    tx = sign_tx(CHAIN, Delegate(0, V2.address, 1), ALICE)
    assert tx_problem(ledger, CHAIN, tx, params) == "leverage cap: stake 2001 > pledge 2000 x 1"


def test_a_transaction_in_any_buffer_is_judged_like_its_bytes(ledger: Ledger) -> None:
    good = sign_tx(CHAIN, Transfer(0, D1.address, 1), ALICE)
    assert checked_tx(CHAIN, bytearray(good)) == checked_tx(CHAIN, good) == (decode_tx(good), True)
    other = sign_tx("another-chain", Transfer(0, D1.address, 1), ALICE)
    assert checked_tx(CHAIN, bytearray(other)) == (decode_tx(other), False)


def test_a_retiring_pool_hands_its_floors_leftover_to_the_operator(ledger: Ledger) -> None:
    # v1: pledge 1000; d1 2000 and d2 1000 shares backed by 3001 tokens. Floors: d1 2000 * 3001 // 3000 = 2000,
    # d2 1000 * 3001 // 3000 = 1000, so the operator gets 1000 + 1. Release at 3 + 2 unbonding epochs + 1 = 6.
    ledger = with_pool(ledger, V1, member_tokens=3001, retiring_epoch=3)
    after, event = retire(ledger, V1.address, 3, PARAMS)
    owed = {(e.delegator, e.amount, e.release_epoch) for e in after.unbonding}
    assert owed == {(V1.address, 1001, 6), (D1.address, 2000, 6), (D2.address, 1000, 6)}
    assert event == LedgerEvent(
        "retired", V1.address, 4001, "retired at epoch 3; its stake unbonds until epoch 6"
    )
    gone = after.pools[V1.address]
    assert (gone.pledge, dict(gone.shares), gone.member_tokens, gone.status, gone.retiring_epoch) == (
        0,
        {},
        0,
        RETIRED,
        0,
    )


def test_a_liquid_delegation_is_capped_by_the_whole_balance_it_labels() -> None:
    # Liquid: alice's whole balance of 10,000 is staked with v2, whatever the amount named:
    # 2000 (v2's pledge) + 10,000 = 12,000 > 2000 x 1.
    liquid = genesis_ledger(liquid_genesis())
    params = replace(LIQUID, max_leverage=1)
    tx = sign_tx(CHAIN, Delegate(0, V2.address, 1), ALICE)
    assert tx_problem(liquid, CHAIN, tx, params) == "leverage cap: stake 12000 > pledge 2000 x 1"
    assert (
        signed_tx_problem(liquid, CHAIN, decode_tx(tx), params)
        == "leverage cap: stake 12000 > pledge 2000 x 1"
    )


def test_a_retiring_liquid_pool_unbonds_only_its_pledge() -> None:
    # Liquid: d1 and d2's stake with v1 is a label on their balances, which they keep; only v1's own
    # 1000 pledge unbonds, released at 3 + 2 + 1 = 6.
    liquid = genesis_ledger(liquid_genesis())
    assert liquid.pools[V1.address].member_tokens > 0  # the labels' snapshot, which is not v1's to hand out
    after, event = retire(liquid, V1.address, 3, LIQUID)
    assert [(e.delegator, e.amount, e.release_epoch) for e in after.unbonding] == [(V1.address, 1000, 6)]
    assert event == LedgerEvent(
        "retired", V1.address, 1000, "retired at epoch 3; its stake unbonds until epoch 6"
    )
