"""Delegations as pool shares: exchange rates, receipt tokens, compounding, leverage, redelegation, retirement."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from node.core import shares as S
from node.core.genesis import PPM
from node.core.keys import Keypair
from node.core.ledger import (
    FrozenMap,
    Ledger,
    Redelegation,
    active_powers,
    genesis_ledger,
    pool_power,
    stake_of,
    start_epoch,
    supply_is_conserved,
    withdraw,
)
from node.core.query import single_pool_view
from node.core.state import genesis_state
from node.core.tx import Delegate, Redelegate, RegisterPool, RetirePool, TransferShares, Undelegate
from tests.test_ledger import (
    ALICE,
    D1,
    D2,
    NEWCOMER,
    PARAMS,
    V1,
    V2,
    V3,
    balance,
    block,
    equivocation,
    make_test_genesis,
    pool,
    signed,
)

CAROL = Keypair.deterministic("carol")  # holds nothing until shares are given to her

amounts = st.integers(1, 10**12)


# ------------------------------------------------------------------ share arithmetic


@given(amounts, amounts, amounts)
def test_a_deposit_never_buys_shares_worth_more_than_it_paid(amount: int, total: int, tokens: int) -> None:
    minted = S.shares_for_deposit(amount, total, tokens)
    assert S.share_value(minted, total + minted, tokens + amount) <= amount


@given(amounts, amounts, amounts)
def test_a_deposit_never_lowers_what_the_other_shares_are_worth(amount: int, total: int, tokens: int) -> None:
    minted = S.shares_for_deposit(amount, total, tokens)
    assert S.share_value(total, total + minted, tokens + amount) >= S.share_value(total, total, tokens)


@given(st.data(), amounts, amounts)
def test_a_withdrawal_burns_at_least_the_shares_it_is_worth(
    data: st.DataObject, total: int, tokens: int
) -> None:
    held = data.draw(st.integers(1, total))
    amount = data.draw(st.integers(0, S.share_value(held, total, tokens)))
    burned = S.shares_to_burn(amount, total, tokens)
    assert burned <= held  # whoever holds the value can pay for it
    left_total, left_tokens = total - burned, tokens - amount
    others = total - held
    assert S.share_value(others, left_total, left_tokens) >= S.share_value(others, total, tokens)


def test_into_an_empty_pool_one_unit_buys_one_share() -> None:
    assert S.shares_for_deposit(700, 0, 0) == 700 and S.exchange_rate_ppm(0, 0) == PPM


def test_shares_worth_nothing_buy_nothing() -> None:
    assert S.shares_for_deposit(700, 100, 0) == 0


# ------------------------------------------------------------------ the ledger


def test_transferred_shares_move_the_stake_and_not_the_pool_power() -> None:
    ledger = genesis_ledger(make_test_genesis())
    after, events = block(ledger, signed(D1, TransferShares(0, V1.address, CAROL.address, 500)))
    assert events[-1].kind == "tx_applied" and events[-1].reason == "transfer_shares"
    p = pool(after, V1)
    assert (p.shares[D1.address], p.shares[CAROL.address]) == (1500, 500)
    assert pool_power(p) == pool_power(pool(ledger, V1)) and balance(after, D1) == balance(ledger, D1)


def test_the_new_holder_of_shares_can_undelegate_them() -> None:
    ledger = genesis_ledger(make_test_genesis())
    ledger, _ = block(ledger, signed(D1, TransferShares(0, V1.address, CAROL.address, 500)))
    after, events = block(ledger, signed(CAROL, Undelegate(0, V1.address, 500)), epoch=1)
    assert events[-1].kind == "tx_applied"
    assert CAROL.address not in pool(after, V1).shares
    assert after.unbonding[-1].delegator == CAROL.address and after.unbonding[-1].amount == 500


def test_a_slash_lowers_every_holders_exchange_rate_by_the_slash_fraction_transferee_included() -> None:
    ledger = genesis_ledger(make_test_genesis())
    ledger, _ = block(ledger, signed(D1, TransferShares(0, V1.address, CAROL.address, 1000)))
    before = pool(ledger, V1)
    after, _ = block(ledger, height=2, proposer=V2, evidence=(equivocation(V1),))
    slashed = pool(after, V1)
    rate_before = S.exchange_rate_ppm(before.total_shares, before.member_tokens)
    rate_after = S.exchange_rate_ppm(slashed.total_shares, slashed.member_tokens)
    assert rate_before == PPM and rate_after == PPM - PARAMS.slash_fraction_double_sign_ppm
    for holder in (D1, D2, CAROL):  # each holder's stake fell by 5%, the transferee's too
        assert stake_of(slashed, holder.address) == stake_of(before, holder.address) * 95 // 100
    assert slashed.shares == before.shares and supply_is_conserved(after)


def test_a_compounding_pool_keeps_member_rewards_and_its_exchange_rate_rises() -> None:
    genesis = make_test_genesis()
    v1 = replace(genesis.validators[0], compounding=True)
    ledger = genesis_ledger(replace(genesis, validators=(v1, *genesis.validators[1:])))
    committee = ((V1.address, 4000), (V2.address, 2000), (V3.address, 2000))
    after, _ = block(ledger, height=2, proposer=V2, committee=committee, signers=(V1, V2, V3))
    p = pool(after, V1)
    assert p.member_tokens > 3000 and p.total_shares == 3000  # the members' reward stayed in the pool
    assert balance(after, D2) == balance(ledger, D2)  # d2 is a member of v1 only
    assert balance(after, V1) > balance(ledger, V1)  # the operator is still paid cost and margin
    assert S.exchange_rate_ppm(p.total_shares, p.member_tokens) > PPM
    assert supply_is_conserved(after)


def test_register_pool_chooses_compounding_and_the_query_shows_it() -> None:
    ledger = genesis_ledger(make_test_genesis())
    after, events = block(ledger, signed(NEWCOMER, RegisterPool(0, 1000, 0, 0, compounding=True)))
    assert events[-1].kind == "tx_applied" and pool(after, NEWCOMER).compounding
    state = replace(genesis_state(make_test_genesis()), ledger=after)
    assert single_pool_view(state, NEWCOMER.address.hex())["pool"]["reward_mode"] == "compounding"


def test_past_the_leverage_cap_a_delegation_is_refused_with_its_reason() -> None:
    params = replace(PARAMS, max_leverage=3)  # v2: pledge 2000, so at most 6000 of stake
    ledger = genesis_ledger(make_test_genesis(params))
    ok, events = block(ledger, signed(ALICE, Delegate(0, V2.address, 4000)), params=params)
    assert events[-1].kind == "tx_applied" and pool_power(pool(ok, V2)) == 6000
    refused, events = block(ok, signed(ALICE, Delegate(1, V2.address, 1)), params=params)
    assert (
        events[-1].kind == "tx_rejected" and events[-1].reason == "leverage cap: stake 6001 > pledge 2000 x 3"
    )
    assert refused.pools == ok.pools


def test_shares_cannot_be_given_to_the_pools_operator_or_spent_twice() -> None:
    ledger = genesis_ledger(make_test_genesis())
    _, events = block(ledger, signed(D1, TransferShares(0, V1.address, V1.address, 10)))
    assert events[-1].reason == "the pool's operator holds its stake as pledge, not shares"
    _, events = block(ledger, signed(D1, TransferShares(0, V1.address, CAROL.address, 2001)))
    assert events[-1].reason == "insufficient shares in pool: 2000 < 2001"


def test_when_the_last_share_leaves_the_rounding_dust_joins_the_pledge() -> None:
    """One share worth 10 tokens: taking 9 burns the ceiling, the whole share, and 1 token has no holder left."""
    p = replace(
        pool(genesis_ledger(make_test_genesis()), V2), shares=FrozenMap({CAROL.address: 1}), member_tokens=10
    )
    assert stake_of(p, CAROL.address) == 10
    left = withdraw(p, CAROL.address, 9)
    assert not left.shares and left.member_tokens == 0 and left.pledge == p.pledge + 1
    assert pool_power(left) == pool_power(p) - 9


def test_the_pool_query_shows_shares_exchange_rate_and_leverage() -> None:
    state = genesis_state(make_test_genesis())
    view = single_pool_view(state, "v1")["pool"]
    assert (view["total_shares"], view["exchange_rate_ppm"], view["leverage_ppm"]) == (3000, PPM, 4 * PPM)
    assert view["delegations"][0] == {"account": D1.address.hex(), "shares": 2000, "amount": 2000}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["give", "back", "leave"]), st.integers(1, 1500)), max_size=8))
def test_moving_shares_around_never_changes_the_pools_stake_or_the_supply(
    moves: list[tuple[str, int]],
) -> None:
    ledger: Ledger = genesis_ledger(make_test_genesis())
    ledger, _ = block(ledger, height=2, proposer=V2, evidence=(equivocation(V1),))  # a rate below 1
    nonces = {D1.address: 0, CAROL.address: 0}
    for kind, count in moves:
        sender, to = (D1, CAROL) if kind != "back" else (CAROL, D1)
        tx = (
            TransferShares(nonces[sender.address], V1.address, to.address, count)
            if kind != "leave"
            else Undelegate(nonces[sender.address], V1.address, count)
        )
        before = ledger
        ledger, events = block(ledger, signed(sender, tx), epoch=1, height=3)
        if events[-1].kind == "tx_applied":
            nonces[sender.address] += 1
            if kind != "leave":
                assert pool_power(pool(ledger, V1)) == pool_power(pool(before, V1))
        assert supply_is_conserved(ledger)
        assert pool(ledger, V1).total_shares <= pool(before, V1).total_shares


# ------------------------------------------------------------------ redelegation


def test_redelegation_moves_stake_at_once_without_unbonding() -> None:
    ledger = genesis_ledger(make_test_genesis())
    after, events = block(ledger, signed(D1, Redelegate(0, V1.address, V2.address, 800)), epoch=1)
    assert events[-1].kind == "tx_applied" and events[-1].reason == "redelegate"
    assert (stake_of(pool(after, V1), D1.address), stake_of(pool(after, V2), D1.address)) == (1200, 800)
    assert after.unbonding == () and balance(after, D1) == balance(ledger, D1)
    assert after.redelegations == (
        Redelegation(D1.address, V1.address, V2.address, 800, 1 + PARAMS.unbonding_epochs + 1),
    )
    assert supply_is_conserved(after)


def test_redelegated_stake_is_still_slashed_by_the_pool_it_left() -> None:
    ledger = genesis_ledger(make_test_genesis())
    ledger, _ = block(ledger, signed(D1, Redelegate(0, V1.address, V2.address, 800)))
    after, events = block(ledger, height=2, proposer=V3, evidence=(equivocation(V1),))
    assert stake_of(pool(after, V2), D1.address) == 800 - 40  # 5% of what left v1, taken in v2
    assert stake_of(pool(after, V1), D1.address) == 1200 * 95 // 100
    slashed = next(e for e in events if e.kind == "slashed")
    assert slashed.amount == 50 + (1200 + 1000) * 5 // 100 + 40  # pledge, members still in v1, redelegated
    assert after.redelegations[0].amount == 760 and supply_is_conserved(after)


def test_redelegated_stake_is_free_of_its_old_pool_once_its_unbonding_would_have_ended() -> None:
    ledger = genesis_ledger(make_test_genesis())
    ledger, _ = block(ledger, signed(D1, Redelegate(0, V1.address, V2.address, 800)))
    release = ledger.redelegations[0].release_epoch
    ledger, _ = start_epoch(ledger, release, PARAMS)
    assert ledger.redelegations == ()
    after, _ = block(ledger, height=2, proposer=V3, evidence=(equivocation(V1),), epoch=release)
    assert stake_of(pool(after, V2), D1.address) == 800


def test_a_second_hop_before_the_first_matures_is_refused() -> None:
    ledger = genesis_ledger(make_test_genesis())
    ledger, _ = block(ledger, signed(D1, Redelegate(0, V1.address, V2.address, 800)))
    _, events = block(ledger, signed(D1, Redelegate(1, V2.address, V3.address, 100)))
    assert events[-1].kind == "tx_rejected"
    assert (
        events[-1].reason
        == "stake redelegated into the source pool is slashable by its previous pool until epoch 3"
    )


def test_redelegation_refusals_name_their_reason() -> None:
    ledger = genesis_ledger(make_test_genesis())
    cases = [
        (D1, Redelegate(0, V1.address, V1.address, 1), "source and target are the same pool"),
        (
            V1,
            Redelegate(0, V1.address, V2.address, 1),
            "an operator's pledge cannot be redelegated; undelegate it",
        ),
        (
            D1,
            Redelegate(0, V1.address, V2.address, 2001),
            "insufficient own stake in source pool: 2000 < 2001",
        ),
        (D1, Redelegate(0, V1.address, NEWCOMER.address, 1), "unknown target pool"),
    ]
    for sender, tx, reason in cases:
        _, events = block(ledger, signed(sender, tx))
        assert (events[-1].kind, events[-1].reason) == ("tx_rejected", reason)


# ------------------------------------------------------------------ retirement


def test_a_retired_pool_leaves_the_set_and_all_its_stake_unbonds() -> None:
    ledger = genesis_ledger(make_test_genesis())
    ledger, events = block(ledger, signed(V1, RetirePool(0, 2)))
    assert events[-1].kind == "tx_applied" and pool(ledger, V1).retiring_epoch == 2
    _, refused = block(ledger, signed(ALICE, Delegate(0, V1.address, 10)))
    assert refused[-1].reason == "pool retires at epoch 2"
    ledger, epoch_events = start_epoch(ledger, 2, PARAMS)
    [retired] = [e for e in epoch_events if e.kind == "retired"]
    assert retired.amount == 4000 and pool(ledger, V1).status == "retired"
    assert V1.address not in dict(active_powers(ledger)) and pool_power(pool(ledger, V1)) == 0
    release = 2 + PARAMS.unbonding_epochs + 1
    owed = {(e.delegator, e.amount, e.release_epoch) for e in ledger.unbonding}
    assert owed == {(D1.address, 2000, release), (D2.address, 1000, release), (V1.address, 1000, release)}
    assert supply_is_conserved(ledger)
    before = balance(ledger, V1)
    ledger, _ = start_epoch(ledger, release, PARAMS)
    assert balance(ledger, V1) == before + 1000  # the pledge is back with its owner


def test_retirement_must_be_in_a_later_epoch_and_by_an_operator() -> None:
    ledger = genesis_ledger(make_test_genesis())
    _, events = block(ledger, signed(V1, RetirePool(0, 3)), epoch=3)
    assert events[-1].reason == "retirement epoch 3 is not after the current epoch 3"
    _, events = block(ledger, signed(ALICE, RetirePool(0, 9)))
    assert events[-1].reason == "not a pool operator"


def test_a_retired_operator_may_register_a_new_pool() -> None:
    ledger = genesis_ledger(make_test_genesis())
    ledger, _ = block(ledger, signed(V2, RetirePool(0, 1)))
    ledger, _ = start_epoch(ledger, 1, PARAMS)
    ledger, _ = start_epoch(ledger, 1 + PARAMS.unbonding_epochs + 1, PARAMS)
    after, events = block(ledger, signed(V2, RegisterPool(1, 1500, 0, 0)), epoch=4)
    assert events[-1].kind == "tx_applied" and pool(after, V2).status == "active"
