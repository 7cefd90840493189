"""Liquid delegation (Cardano's): a label on the account, the balance at each epoch start is the stake.

The seeds argue both sides: locked delegation makes delegators share the
pool's penalties (they chose the operator), liquid delegation keeps funds
spendable and only the operator's pledge at stake. posnet runs either,
chosen by `params.liquid_delegation`, and these tests show what differs.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.core.genesis import Genesis, GenesisError, parse_genesis
from node.core.ledger import (
    Ledger,
    active_powers,
    genesis_ledger,
    start_epoch,
    supply_is_conserved,
    total_supply,
)
from node.core.query import account_view, slash_breakdown
from node.core.state import genesis_state
from node.core.tx import Delegate, Redelegate, RegisterPool, Transfer, TransferShares, Undelegate
from tests.test_genesis import raw_genesis
from tests.test_ledger import (
    ALICE,
    D1,
    D2,
    PARAMS,
    V1,
    V2,
    V3,
    balance,
    block,
    block_spec,
    equivocation,
    make_test_genesis,
    pool,
    run_block,
    signed,
)

LIQUID = replace(PARAMS, liquid_delegation=1)


def liquid_genesis(params: object = LIQUID) -> Genesis:
    """The ledger tests' genesis with d1 delegating to v1 only (one pool per account when liquid)."""
    genesis = make_test_genesis(params)  # type: ignore[arg-type]
    v3 = replace(genesis.validators[2], delegations=())
    return replace(genesis, validators=(*genesis.validators[:2], v3))


@pytest.fixture
def ledger() -> Ledger:
    return genesis_ledger(liquid_genesis())


def test_a_genesis_delegation_stays_in_the_balance_and_the_whole_balance_is_the_stake(ledger: Ledger) -> None:
    assert balance(ledger, D1) == 5000 + 2000 and ledger.accounts[D1.address].delegated_to == V1.address
    assert pool(ledger, V1).member_tokens == 7000 + 6000  # d1's and d2's whole balances
    assert dict(active_powers(ledger))[V1.address] == 1000 + 13_000
    assert total_supply(ledger) == ledger.genesis_supply and supply_is_conserved(ledger)


def test_spending_moves_the_stake_only_at_the_next_epoch_snapshot(ledger: Ledger) -> None:
    after, _ = block(ledger, signed(D1, Transfer(0, ALICE.address, 3000)), params=LIQUID)
    assert pool(after, V1).member_tokens == 13_000  # this epoch's stake stays what the snapshot said
    after, _ = start_epoch(after, 1, LIQUID)
    assert pool(after, V1).member_tokens == 10_000 and supply_is_conserved(after)


def test_an_equivocation_costs_liquid_delegators_nothing_and_locked_ones_the_slash_fraction() -> None:
    costs = {}
    for name, params in (("locked", PARAMS), ("liquid", LIQUID)):
        ledger = genesis_ledger(liquid_genesis(params))
        wealth = {
            d: account_view(replace(genesis_state(liquid_genesis(params)), ledger=ledger), d.address)["total"]
            for d in (D1, D2)
        }
        after, events = block(ledger, height=2, proposer=V2, evidence=(equivocation(V1),), params=params)
        state = replace(genesis_state(liquid_genesis(params)), ledger=after)
        costs[name] = {d: wealth[d] - account_view(state, d.address)["total"] for d in (D1, D2)}
        assert pool(after, V1).pledge == 950 and supply_is_conserved(after)
        slashed = next(e for e in events if e.kind == "slashed")
        logged = slash_breakdown(ledger, V1.address, slashed.amount, params, slashed.reason)
        assert (logged["operator_loss"], logged["delegator_loss"]) == (50, costs[name][D1] + costs[name][D2])
    assert costs["locked"] == {D1: 100, D2: 50}  # 5% of the 2000 and 1000 they had delegated
    assert costs["liquid"] == {D1: 0, D2: 0}


def test_delegating_labels_the_account_and_undelegating_clears_it_without_unbonding(ledger: Ledger) -> None:
    after, events = block(ledger, signed(ALICE, Delegate(0, V2.address, 1)), params=LIQUID)
    assert events[-1].kind == "tx_applied" and after.accounts[ALICE.address].delegated_to == V2.address
    assert balance(after, ALICE) == 10_000 and pool(after, V2).member_tokens == 0  # nothing moved yet
    after, _ = start_epoch(after, 1, LIQUID)
    assert pool(after, V2).member_tokens == 10_000
    after, events = block(after, signed(ALICE, Undelegate(1, V2.address, 1)), params=LIQUID, epoch=1)
    assert events[-1].kind == "tx_applied" and after.accounts[ALICE.address].delegated_to == b""
    assert after.unbonding == () and balance(after, ALICE) > 10_000  # earned as a member, never locked


def test_share_moves_and_compounding_are_refused_with_liquid_delegation(ledger: Ledger) -> None:
    reason = "liquid delegation holds no shares: delegate to the other pool (the label moves at once)"
    for sender, tx in (
        (D1, TransferShares(0, V1.address, ALICE.address, 5)),
        (D1, Redelegate(0, V1.address, V2.address, 5)),
    ):
        _, events = block(ledger, signed(sender, tx), params=LIQUID)
        assert (events[-1].kind, events[-1].reason) == ("tx_rejected", reason)
    _, events = block(ledger, signed(ALICE, RegisterPool(0, 100, 0, 0, compounding=True)), params=LIQUID)
    assert events[-1].reason == "liquid delegation pays member rewards out: no compounding"
    _, events = block(ledger, signed(D2, Undelegate(0, V3.address, 1)), params=LIQUID)
    assert events[-1].reason == "not delegated to this pool"


def test_a_liquid_genesis_refuses_one_account_in_two_pools_and_compounding_pools() -> None:
    raw = raw_genesis()
    raw["params"]["liquid_delegation"] = 1
    del raw["validators"][0]["compounding"]
    raw["validators"][1]["delegations"] = raw["validators"][0]["delegations"]
    with pytest.raises(GenesisError, match=r"validators\[1\]\.delegations\[0\]: with liquid delegation"):
        parse_genesis(raw)
    raw = raw_genesis()
    raw["params"]["liquid_delegation"] = 1
    with pytest.raises(GenesisError, match=r"validators\[0\]\.compounding: liquid delegation pays"):
        parse_genesis(raw)


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(block_spec, min_size=1, max_size=12))
def test_supply_is_conserved_exactly_with_liquid_delegation(specs: list) -> None:
    ledger = genesis_ledger(liquid_genesis())
    committee: tuple[tuple[bytes, int], ...] = ()
    epoch = 0
    for height, spec in enumerate(specs, start=1):
        ledger, _ = run_block(ledger, height, epoch, committee, spec, LIQUID)
        assert supply_is_conserved(ledger)
        assert all(account.balance >= 0 for account in ledger.accounts.values())
        committee = active_powers(ledger)
        if spec[-1]:
            epoch += 1
            ledger, _ = start_epoch(ledger, epoch, LIQUID)
            assert supply_is_conserved(ledger)
        for (
            address,
            p,
        ) in ledger.pools.items():  # members are exactly the labelled balances of the last snapshot
            assert all(ledger.accounts[h].delegated_to == address for h in p.shares) or not spec[-1]
