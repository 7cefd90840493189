"""The ledger transition: transactions, evidence, downtime, rewards, epochs, and supply accounting."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.core.genesis import PPM, Delegation, Genesis, GenesisAccount, GenesisValidator, Params, make_genesis
from node.core.keys import Keypair
from node.core.ledger import (
    BlockContext,
    FrozenMap,
    Ledger,
    LedgerEvent,
    Participation,
    Pool,
    Unbonding,
    account_of,
    active_powers,
    apply_block,
    evidence_problem,
    genesis_ledger,
    nakamoto_coefficient,
    pool_power,
    pool_status,
    slash_stake,
    stake_distribution,
    stake_of,
    start_epoch,
    supply_is_conserved,
    total_supply,
    tx_problem,
)
from node.core.messages import Evidence, Kind, Vote, make_evidence, sign_item
from node.core.tx import (
    Delegate,
    Redelegate,
    RegisterPool,
    RetirePool,
    Transfer,
    TransferShares,
    Tx,
    Undelegate,
    Unjail,
    sign_tx,
)

CHAIN = "test-chain"
V1, V2, V3 = (Keypair.deterministic(f"v{i}") for i in (1, 2, 3))
D1, D2 = Keypair.deterministic("d1"), Keypair.deterministic("d2")
ALICE = Keypair.deterministic("alice")
NEWCOMER = Keypair.deterministic("newcomer")  # a funded account that is not a pool

PARAMS = Params(
    block_reward=1000,
    proposer_reward_ppm=200_000,
    slash_fraction_double_sign_ppm=50_000,
    whistleblower_reward_ppm=100_000,
    slash_fraction_downtime_ppm=10_000,
    downtime_window=4,
    max_missed_in_window=2,
    jail_epochs=2,
    unbonding_epochs=2,
    evidence_max_age=10,
)


def make_test_genesis(params: Params = PARAMS) -> Genesis:
    """v1: 1000 pledge + d1 2000 + d2 1000 (fee 10 + 10%); v2: 2000 pledge; v3: 1000 pledge + d1 1000."""
    return Genesis(
        chain_id=CHAIN,
        genesis_time_ms=0,
        params=params,
        validators=(
            GenesisValidator(
                "v1",
                V1.public,
                pledge=1000,
                fixed_cost=10,
                margin_ppm=100_000,
                delegations=(Delegation(D1.public, 2000), Delegation(D2.public, 1000)),
            ),
            GenesisValidator("v2", V2.public, pledge=2000),
            GenesisValidator(
                "v3", V3.public, pledge=1000, margin_ppm=50_000, delegations=(Delegation(D1.public, 1000),)
            ),
        ),
        accounts=(
            GenesisAccount(ALICE.public, 10_000),
            GenesisAccount(D1.public, 5000),
            GenesisAccount(D2.public, 5000),
            GenesisAccount(NEWCOMER.public, 5000),
            GenesisAccount(V1.public, 500),
        ),
    )


@pytest.fixture
def ledger() -> Ledger:
    return genesis_ledger(make_test_genesis())


def ctx(
    height: int = 1,
    epoch: int = 0,
    proposer: Keypair = V2,
    committee: tuple[tuple[bytes, int], ...] = (),
    signers: tuple[Keypair, ...] = (),
    evidence: tuple[Evidence, ...] = (),
) -> BlockContext:
    return BlockContext(
        height=height,
        epoch=epoch,
        proposer=proposer.address,
        prev_committee=committee,
        prev_signers=frozenset(k.address for k in signers),
        evidence=evidence,
        judged=judged_now(height, committee, frozenset(k.address for k in signers)),
    )


def judged_now(
    height: int, committee: tuple[tuple[bytes, int], ...], signers: frozenset[bytes]
) -> tuple[Participation, ...]:
    """Judge the previous height's participation in this block (its grace period left aside)."""
    if not committee:
        return ()
    members = tuple(address for address, _ in committee)
    return (Participation(height - 1, 0, bytes(32), 0, members, signers),)


def block(
    ledger: Ledger, *txs: bytes, params: Params = PARAMS, **context: object
) -> tuple[Ledger, tuple[LedgerEvent, ...]]:
    return apply_block(ledger, ctx(**context), tuple(txs), params, CHAIN)  # type: ignore[arg-type]


def signed(keypair: Keypair, tx: Tx, chain_id: str = CHAIN) -> bytes:
    return sign_tx(chain_id, tx, keypair)


def nonce(ledger: Ledger, keypair: Keypair) -> int:
    return account_of(ledger, keypair.address).nonce


def balance(ledger: Ledger, keypair: Keypair) -> int:
    return account_of(ledger, keypair.address).balance


def pool(ledger: Ledger, keypair: Keypair) -> Pool:
    return ledger.pools[keypair.address]


def kinds(events: tuple[LedgerEvent, ...]) -> list[str]:
    return [event.kind for event in events]


def equivocation(keypair: Keypair, height: int = 1, round_: int = 0) -> Evidence:
    """Two real precommits by `keypair` for different blocks at one (height, round)."""
    votes = [Vote(Kind.PRECOMMIT, height, round_, bytes([b]) * 32, keypair.address) for b in (1, 2)]
    return make_evidence(*(replace(v, signature=sign_item(CHAIN, v, keypair)) for v in votes))


def delegated_total(ledger: Ledger, delegator: bytes) -> int:
    return sum(stake_of(p, delegator) for p in ledger.pools.values() if p.operator != delegator)


# ------------------------------------------------------------------ genesis and queries


def test_genesis_ledger_has_pools_accounts_and_exact_supply(ledger: Ledger) -> None:
    assert [pool_power(pool(ledger, v)) for v in (V1, V2, V3)] == [4000, 2000, 2000]
    assert pool(ledger, V1).shares == {D1.address: 2000, D2.address: 1000}
    assert balance(ledger, V2) == 0 and V2.address in ledger.accounts
    assert ledger.genesis_supply == 8000 + 10_000 + 3 * 5000 + 500
    assert total_supply(ledger) == ledger.genesis_supply and supply_is_conserved(ledger)


def test_active_powers_are_sorted_by_address_and_skip_penalized_pools(ledger: Ledger) -> None:
    powers = active_powers(ledger)
    assert [a for a, _ in powers] == sorted(a for a, _ in powers)
    jailed = replace(ledger, pools=ledger.pools.set(V2.address, replace(pool(ledger, V2), status="jailed")))
    assert V2.address not in dict(active_powers(jailed))
    assert pool_status(jailed, V2.address) == "jailed"
    assert pool_status(jailed, ALICE.address) == "unknown"


def test_operator_delegation_in_genesis_is_folded_into_the_pledge() -> None:
    genesis = make_test_genesis()
    own = replace(genesis.validators[1], delegations=(Delegation(V2.public, 300),))
    ledger = genesis_ledger(replace(genesis, validators=(genesis.validators[0], own)))
    assert pool(ledger, V2).pledge == 2300 and not pool(ledger, V2).shares


def test_nakamoto_coefficient_on_known_distributions(ledger: Ledger) -> None:
    assert nakamoto_coefficient(ledger) == 1  # 4000 of 8000 is more than a third
    keys = {f"p{i}": Keypair.deterministic(f"p{i}") for i in range(10)}
    equal = genesis_ledger(make_genesis(CHAIN, keys, stakes=dict.fromkeys(keys, 100)))
    assert nakamoto_coefficient(equal) == 4  # 300 of 1000 is not more than a third, 400 is
    skewed = genesis_ledger(make_genesis(CHAIN, keys, stakes={"p0": 300, "p1": 250, "p2": 200}))
    # 300+250+200 + 7*1000 = 7750; the seven 1000s need three: 3000*3 > 7750
    assert nakamoto_coefficient(skewed) == 3


def test_stake_distribution_is_largest_first(ledger: Ledger) -> None:
    assert stake_distribution(ledger) == (("v1", 4000), ("v2", 2000), ("v3", 2000))


def test_frozen_map_changes_return_new_maps() -> None:
    original = FrozenMap({b"a": 1})
    changed = original.set(b"b", 2).without(b"a")
    assert dict(original) == {b"a": 1} and dict(changed) == {b"b": 2}
    assert FrozenMap({b"a": 1}) == original and hash(FrozenMap({b"a": 1})) == hash(original)


# ------------------------------------------------------------------ transactions


def test_transfer_moves_balance_and_bumps_nonce(ledger: Ledger) -> None:
    after, events = block(ledger, signed(ALICE, Transfer(0, D1.address, 700)))
    assert balance(after, ALICE) == 9300 and balance(after, D1) == 5700
    assert nonce(after, ALICE) == 1
    assert events[-1] == LedgerEvent("tx_applied", ALICE.address, 700, "transfer")


def test_transfer_to_a_new_address_creates_the_account(ledger: Ledger) -> None:
    fresh = Keypair.deterministic("fresh")
    after, _ = block(ledger, signed(ALICE, Transfer(0, fresh.address, 5)))
    assert balance(after, fresh) == 5 and nonce(after, fresh) == 0


def test_register_pool_moves_pledge_from_balance(ledger: Ledger) -> None:
    after, events = block(ledger, signed(NEWCOMER, RegisterPool(0, 3000, 5, 20_000)))
    new_pool = pool(after, NEWCOMER)
    assert (new_pool.pledge, new_pool.fixed_cost, new_pool.margin_ppm) == (3000, 5, 20_000)
    assert new_pool.public_key == NEWCOMER.public and new_pool.operator == NEWCOMER.address
    assert new_pool.status == "active" and balance(after, NEWCOMER) == 2000
    assert (NEWCOMER.address, 3000) in active_powers(after)
    assert kinds(events)[-1] == "tx_applied"


def test_delegate_moves_balance_into_the_pool(ledger: Ledger) -> None:
    after, _ = block(ledger, signed(ALICE, Delegate(0, V2.address, 1500)))
    assert pool(after, V2).shares == {ALICE.address: 1500}
    assert pool_power(pool(after, V2)) == 3500 and balance(after, ALICE) == 8500


def test_undelegate_moves_stake_into_an_unbonding_entry(ledger: Ledger) -> None:
    after, _ = block(ledger, signed(D1, Undelegate(0, V1.address, 500)), epoch=3)
    assert pool(after, V1).shares[D1.address] == 1500
    assert after.unbonding == (Unbonding(D1.address, V1.address, 500, 3 + PARAMS.unbonding_epochs + 1),)
    assert balance(after, D1) == 5000 and total_supply(after) == total_supply(ledger) + 1000


def test_undelegating_everything_removes_the_delegation(ledger: Ledger) -> None:
    after, _ = block(ledger, signed(D2, Undelegate(0, V1.address, 1000)))
    assert D2.address not in pool(after, V1).shares


def test_operator_delegate_and_undelegate_on_own_pool_change_the_pledge(ledger: Ledger) -> None:
    after, _ = block(
        ledger, signed(V1, Delegate(0, V1.address, 400)), signed(V1, Undelegate(1, V1.address, 900))
    )
    assert pool(after, V1).pledge == 500 and V1.address not in pool(after, V1).shares
    assert after.unbonding[0].delegator == V1.address and after.unbonding[0].amount == 900


@pytest.mark.parametrize(
    ("sender", "tx", "reason"),
    [
        (ALICE, Transfer(0, D1.address, 10_001), "insufficient balance"),
        (ALICE, Transfer(1, D1.address, 1), "bad nonce: expected 0, got 1"),
        (Keypair.deterministic("nobody"), Transfer(0, D1.address, 1), "unknown account"),
        (V1, RegisterPool(0, 100, 0, 0), "already a pool operator"),
        (NEWCOMER, RegisterPool(0, 5001, 0, 0), "insufficient balance"),
        (ALICE, Delegate(0, ALICE.address, 10), "unknown pool"),
        (ALICE, Delegate(0, V1.address, 10_001), "insufficient balance"),
        (ALICE, Undelegate(0, V1.address, 1), "insufficient own stake"),
        (D1, Undelegate(0, V1.address, 2001), "insufficient own stake"),
        (V1, Undelegate(0, V1.address, 1001), "insufficient own stake"),  # the pledge only, not delegations
        (V1, Unjail(0), "pool is not jailed"),
        (ALICE, Unjail(0), "not a pool operator"),
    ],
    ids=[
        "overdraft",
        "future-nonce",
        "unknown-account",
        "register-twice",
        "pledge-over-balance",
        "delegate-unknown-pool",
        "delegate-over-balance",
        "undelegate-nothing",
        "undelegate-too-much",
        "operator-takes-delegated-stake",
        "unjail-active-pool",
        "unjail-not-operator",
    ],
)
def test_invalid_transaction_is_rejected_with_its_reason_and_changes_nothing(
    ledger: Ledger, sender: Keypair, tx: Tx, reason: str
) -> None:
    data = signed(sender, tx)
    assert reason in (tx_problem(ledger, CHAIN, data, PARAMS) or "")
    baseline, _ = block(ledger)
    after, events = block(ledger, data)
    assert after == baseline
    assert events[-1].kind == "tx_rejected" and reason in events[-1].reason


def test_replayed_transaction_is_rejected_for_its_nonce(ledger: Ledger) -> None:
    data = signed(ALICE, Transfer(0, D1.address, 100))
    after, events = block(ledger, data, data)
    assert kinds(events)[-2:] == ["tx_applied", "tx_rejected"]
    assert "bad nonce" in events[-1].reason and balance(after, ALICE) == 9900
    assert tx_problem(after, CHAIN, data, PARAMS) == "bad nonce: expected 1, got 0"


def test_signature_for_another_chain_is_rejected(ledger: Ledger) -> None:
    data = signed(ALICE, Transfer(0, D1.address, 100), chain_id="other-chain")
    assert "bad signature" in (tx_problem(ledger, CHAIN, data, PARAMS) or "")


def test_garbage_transaction_is_rejected_as_malformed(ledger: Ledger) -> None:
    after, events = block(ledger, b"\x93\x01\x02")
    assert events[-1].kind == "tx_rejected" and events[-1].reason.startswith("malformed")
    assert after == block(ledger)[0]


def test_valid_transaction_has_no_problem(ledger: Ledger) -> None:
    assert tx_problem(ledger, CHAIN, signed(D2, Delegate(0, V3.address, 10)), PARAMS) is None


# ------------------------------------------------------------------ evidence


def test_equivocation_slashes_pro_rata_pays_whistleblower_burns_rest_and_tombstones(ledger: Ledger) -> None:
    ledger, _ = block(ledger, signed(D2, Undelegate(0, V1.address, 333)))
    before = total_supply(ledger)
    after, events = block(ledger, height=2, proposer=V2, evidence=(equivocation(V1),))
    p = pool(after, V1)
    # 5%: pledge 1000 -> 50, member tokens 2667 -> 133 (every share at once), unbonding 333 -> 16
    assert (p.pledge, p.member_tokens, p.shares[D1.address], p.shares[D2.address]) == (950, 2534, 2000, 667)
    assert (stake_of(p, D1.address), stake_of(p, D2.address)) == (1900, 633)
    assert after.unbonding[0].amount == 317
    assert events[:2] == (
        LedgerEvent("slashed", V1.address, 199, "double sign at height 1"),
        LedgerEvent("tombstoned", V1.address, 0, "double sign"),
    )
    whistle = 199 * 100_000 // PPM
    assert whistle == 19 and after.slashed - ledger.slashed == 199 - whistle
    assert balance(after, V2) == balance(block(ledger, height=2, proposer=V2)[0], V2) + whistle
    assert total_supply(after) == before + PARAMS.block_reward - (199 - whistle)
    assert p.status == "tombstoned" and V1.address not in dict(active_powers(after))


def test_duplicate_evidence_is_rejected(ledger: Ledger) -> None:
    evidence = equivocation(V3)
    after, _ = block(ledger, height=2, evidence=(evidence,))
    assert evidence_problem(after, evidence, 3, PARAMS) == "duplicate: offence already punished"
    again, events = block(after, height=3, evidence=(evidence,))
    assert events[0] == LedgerEvent("evidence_rejected", V3.address, 0, "duplicate: offence already punished")
    assert pool(again, V3) == pool(after, V3)


def test_second_offence_of_a_tombstoned_pool_is_a_duplicate(ledger: Ledger) -> None:
    _, events = block(ledger, height=3, evidence=(equivocation(V3, 1), equivocation(V3, 2)))
    assert kinds(events)[:3] == ["slashed", "tombstoned", "evidence_rejected"]
    assert events[2].reason == "duplicate: pool already tombstoned"


def test_stale_and_future_evidence_are_rejected(ledger: Ledger) -> None:
    evidence = equivocation(V3, height=5)
    assert evidence_problem(ledger, evidence, 5 + PARAMS.evidence_max_age, PARAMS) is None
    assert (evidence_problem(ledger, evidence, 6 + PARAMS.evidence_max_age, PARAMS) or "").startswith("stale")
    assert evidence_problem(ledger, evidence, 4, PARAMS) == "evidence from a future height"
    after, events = block(ledger, height=30, evidence=(evidence,))
    assert events[0].kind == "evidence_rejected" and pool(after, V3) == pool(ledger, V3)


def test_evidence_against_an_unknown_pool_is_rejected(ledger: Ledger) -> None:
    assert evidence_problem(ledger, equivocation(ALICE), 2, PARAMS) == "unknown pool"


def test_tombstoned_pool_never_returns_and_cannot_unjail(ledger: Ledger) -> None:
    ledger, _ = block(ledger, height=2, evidence=(equivocation(V3),))
    for epoch in range(1, 20):
        ledger, _ = start_epoch(ledger, epoch, PARAMS)
    assert tx_problem(ledger, CHAIN, signed(V3, Unjail(0)), PARAMS) == "pool is tombstoned"
    assert (
        tx_problem(ledger, CHAIN, signed(ALICE, Delegate(0, V3.address, 1)), PARAMS) == "pool is tombstoned"
    )
    committee = ((V3.address, 2000),)
    ledger, events = block(ledger, signed(V3, Unjail(0)), height=3, epoch=19, committee=committee)
    assert pool_status(ledger, V3.address) == "tombstoned"
    assert V3.address not in dict(active_powers(ledger))
    assert "rewarded" not in [e.kind for e in events if e.validator == V3.address]


def test_delegators_of_a_tombstoned_pool_can_still_leave(ledger: Ledger) -> None:
    ledger, _ = block(ledger, height=2, evidence=(equivocation(V3),))
    assert tx_problem(ledger, CHAIN, signed(D1, Undelegate(0, V3.address, 950)), PARAMS) is None


# ------------------------------------------------------------------ downtime and jail

COMMITTEE = ((V1.address, 4000), (V2.address, 2000), (V3.address, 2000))


def run_committee_blocks(ledger: Ledger, v3_signs: list[bool], epoch: int = 1) -> tuple[Ledger, list[str]]:
    """Blocks 2.. with the full committee; v1 and v2 always sign, v3 as given."""
    seen: list[str] = []
    for i, signs in enumerate(v3_signs):
        signers = (V1, V2, V3) if signs else (V1, V2)
        ledger, events = block(ledger, height=2 + i, epoch=epoch, committee=COMMITTEE, signers=signers)
        seen += [e.kind for e in events if e.validator == V3.address and e.kind != "rewarded"]
    return ledger, seen


def test_downtime_jails_after_the_threshold_not_before(ledger: Ledger) -> None:
    at_limit, seen = run_committee_blocks(ledger, [False, False])
    assert seen == [] and pool(at_limit, V3).status == "active" and pool(at_limit, V3).missed == 0b11
    jailed, events = block(at_limit, height=4, epoch=1, committee=COMMITTEE, signers=(V1, V2))
    p = pool(jailed, V3)
    assert (p.status, p.jailed_until_epoch, p.missed) == ("jailed", 1 + PARAMS.jail_epochs + 1, 0)
    assert [e for e in events if e.kind in ("jailed", "slashed")] == [
        LedgerEvent(
            "jailed", V3.address, 0, "missed 3 of the last 4 committee precommits; jailed until epoch 4"
        ),
        LedgerEvent("slashed", V3.address, 20, "downtime"),  # 1% of pledge 1000 and d1's 1000
    ]
    assert (p.pledge, stake_of(p, D1.address)) == (990, 990)
    assert jailed.slashed == at_limit.slashed + 20
    assert V3.address not in dict(active_powers(jailed))


def test_misses_that_slid_out_of_the_window_are_forgotten(ledger: Ledger) -> None:
    after, seen = run_committee_blocks(ledger, [False, False, True, True, True, False, False])
    assert seen == [] and pool(after, V3).status == "active"
    after, seen = run_committee_blocks(after, [False])
    assert seen == ["jailed", "slashed"]


def test_unjail_only_after_the_jail_ends(ledger: Ledger) -> None:
    jailed, _ = run_committee_blocks(ledger, [False, False, False], epoch=1)
    early, events = block(jailed, signed(V3, Unjail(0)), height=9, epoch=3)
    assert events[-1].reason == "jailed until epoch 4 (now 3)" and pool(early, V3).status == "jailed"
    freed, events = block(early, signed(V3, Unjail(0)), height=10, epoch=4)
    assert kinds(events)[-2:] == ["tx_applied", "unjailed"]
    assert pool(freed, V3).status == "active" and V3.address in dict(active_powers(freed))


def test_jailed_pool_in_a_lingering_committee_is_not_penalised_again(ledger: Ledger) -> None:
    jailed, _ = run_committee_blocks(ledger, [False, False, False])
    after, seen = run_committee_blocks(jailed, [False] * 6)
    assert seen == [] and pool(after, V3) == pool(jailed, V3)


# ------------------------------------------------------------------ unbonding and epochs


def test_unbonding_stake_is_slashable_and_released_after_unbonding_epochs(ledger: Ledger) -> None:
    ledger, _ = block(ledger, signed(D1, Undelegate(0, V3.address, 1000)), epoch=3)
    (entry,) = ledger.unbonding
    assert entry.release_epoch == 3 + PARAMS.unbonding_epochs + 1
    ledger, _ = block(ledger, height=2, epoch=3, evidence=(equivocation(V3),))
    assert ledger.unbonding[0].amount == 950
    kept, events = start_epoch(ledger, 5, PARAMS)
    assert events == () and kept.unbonding == ledger.unbonding
    released, events = start_epoch(kept, 6, PARAMS)
    assert released.unbonding == () and balance(released, D1) == balance(ledger, D1) + 950
    assert events == (LedgerEvent("released", D1.address, 950, f"unbonded from pool {V3.address.hex()[:8]}"),)
    assert total_supply(released) == total_supply(ledger) and released.epoch == 6


def test_an_epoch_start_retires_every_pool_due_and_names_the_epoch_of_each_key_rotation(
    ledger: Ledger,
) -> None:
    # v1 and v3 are due to retire at epoch 3; v2 waits to sign with a new key.
    pools = ledger.pools
    pools = pools.set(V1.address, replace(pools[V1.address], retiring_epoch=3))
    pools = pools.set(V3.address, replace(pools[V3.address], retiring_epoch=2))
    pools = pools.set(V2.address, replace(pools[V2.address], next_public_key=NEWCOMER.public))
    after, events = start_epoch(replace(ledger, pools=pools), 3, PARAMS)
    assert [(e.kind, e.validator) for e in events if e.kind == "retired"] == [
        ("retired", address) for address in sorted((V1.address, V3.address))
    ]
    (rotation,) = (e for e in events if e.kind == "key_rotated")
    assert rotation == LedgerEvent(
        "key_rotated", V2.address, 0, f"signs with key {NEWCOMER.public.hex()[:16]} from epoch 3"
    )
    assert pool(after, V2).public_key == NEWCOMER.public


# ------------------------------------------------------------------ rewards


def test_rewards_split_hand_computed(ledger: Ledger) -> None:
    """block_reward 1000, proposer 20%; v1 (4000) and v2 (2000) signed, v3 missed; v2 proposes.

    signers' 800: v1 800*4000/6000 = 533, v2 266, remainder 1 to the proposer
    -> v2: 200 + 266 + 1 = 467, v1: 533.
    v1 inside (cardano-ledger's leaderRew and memberRew), fixed 10, margin 10%, pledge 1000 of 4000:
    operator 10 + floor(523 * (0.1 + 0.9 * 1000/4000)) = 10 + floor(169.975) = 179,
    d1 floor(523 * 0.9 * 2000/4000) = floor(235.35) = 235, d2 floor(523 * 0.9 * 1000/4000) = 117;
    the dust 533 - 179 - 235 - 117 = 2 is paid to no one: with sharing off it is not minted (998 issued).
    """
    after, events = block(ledger, height=2, proposer=V2, committee=COMMITTEE, signers=(V1, V2))
    assert [e for e in events if e.kind == "rewarded"] == sorted(
        [
            LedgerEvent("rewarded", V1.address, 533, "block reward"),
            LedgerEvent("rewarded", V2.address, 467, "block reward"),
        ],
        key=lambda e: e.validator,
    )
    assert balance(after, V1) - balance(ledger, V1) == 179
    assert balance(after, D1) - balance(ledger, D1) == 235
    assert balance(after, D2) - balance(ledger, D2) == 117
    assert balance(after, V2) - balance(ledger, V2) == 467
    assert balance(after, V3) == balance(ledger, V3)
    assert (after.issued, after.reserve) == (998, 0) and total_supply(after) == total_supply(ledger) + 998
    assert pool(after, V1) == pool(ledger, V1)  # rewards are liquid: stake does not compound


def test_fixed_cost_is_capped_at_the_pool_reward(ledger: Ledger) -> None:
    params = replace(PARAMS, block_reward=7)
    after, _ = block(ledger, params=params, proposer=V1)
    assert balance(after, V1) - balance(ledger, V1) == 7 and balance(after, D1) == balance(ledger, D1)


def test_at_height_one_the_proposer_takes_the_whole_reward(ledger: Ledger) -> None:
    after, events = block(ledger, proposer=V3)
    assert [e for e in events if e.kind == "rewarded"] == [
        LedgerEvent("rewarded", V3.address, 1000, "block reward")
    ]
    # v3: margin 5% of 1000 = 50, members 950 over 2000: d1 475, operator 475 + 50
    assert balance(after, D1) - balance(ledger, D1) == 475 and balance(after, V3) == 525


def test_saturated_pool_is_paid_its_capped_share_and_the_rest_goes_to_the_reserve(ledger: Ledger) -> None:
    """saturation_k = 4: z0 = 1/4 of the bonded 8000 = 2000. v1 (4000) is capped at half its share.

    Shares as in the hand-computed split: v1 533, v2 467. v1 is paid floor(533 / 2) = 266, v2
    (2000, exactly saturated) all 467; the 267 withheld go to the reserve, which the supply counts.
    Inside v1, 266 splits as operator 10 + floor(256 * 0.325) = 93, d1 floor(256 * 0.45) = 115, d2
    floor(256 * 0.225) = 57: the dust 1 joins the reserve too (268). The next block's payout (733) is
    funded by the reserve first: 733 - 268 new, then 267 withheld and 1 dust again.
    """
    params = replace(PARAMS, saturation_k=4)
    after, events = block(ledger, params=params, height=2, proposer=V2, committee=COMMITTEE, signers=(V1, V2))
    assert {e.validator: e.amount for e in events if e.kind == "rewarded"} == {
        V1.address: 266,
        V2.address: 467,
    }
    assert (after.reserve, after.issued) == (268, 1000)
    assert balance(after, V1) - balance(ledger, V1) == 93 and balance(after, D2) - balance(ledger, D2) == 57
    assert supply_is_conserved(after) and total_supply(after) == total_supply(ledger) + 1000
    again, _ = block(after, params=params, height=3, proposer=V2, committee=COMMITTEE, signers=(V1, V2))
    assert (again.reserve, again.issued) == (268, 1000 + 733 - 268 + 267)
    assert supply_is_conserved(again)


def test_signer_outside_the_committee_earns_nothing(ledger: Ledger) -> None:
    committee = ((V2.address, 2000),)
    _, events = block(ledger, height=2, proposer=V2, committee=committee, signers=(V1, V2))
    assert {e.validator for e in events if e.kind == "rewarded"} == {V2.address}


# ------------------------------------------------------------------ properties

ACTORS = (V1, V2, V3, D1, D2, ALICE, NEWCOMER)
POOL_KEYS = (V1, V2, V3, NEWCOMER)

tx_spec = st.tuples(
    st.sampled_from(
        [
            "transfer",
            "register",
            "delegate",
            "undelegate",
            "transfer_shares",
            "unjail",
            "garbage",
            "wrong_chain",
        ]
    ),
    st.integers(0, len(ACTORS) - 1),  # sender
    st.integers(0, len(ACTORS) - 1),  # target
    st.one_of(st.integers(1, 300), st.integers(1, 6000)),  # amount: often small enough to succeed
    st.sampled_from([0, 0, 0, 0, 0, 1, -1]),  # nonce offset: mostly right, sometimes a replay or a gap
)


def build_tx(ledger: Ledger, spec: tuple[str, int, int, int, int], earlier: int = 0) -> bytes:
    """The tx `spec` describes, its nonce following `earlier` txs of the sender not yet applied."""
    kind, sender_i, target_i, amount, offset = spec
    sender, target = ACTORS[sender_i], ACTORS[target_i]
    n = max(0, nonce(ledger, sender) + earlier + offset)
    pool_address = POOL_KEYS[target_i % len(POOL_KEYS)].address
    txs: dict[str, Tx] = {
        "transfer": Transfer(n, target.address, amount),
        "register": RegisterPool(n, amount, amount % 50, amount * 97 % PPM),
        "delegate": Delegate(n, pool_address, amount),
        "undelegate": Undelegate(n, pool_address, amount),
        "transfer_shares": TransferShares(n, pool_address, target.address, amount),
        "redelegate": Redelegate(n, pool_address, POOL_KEYS[(target_i + 1) % len(POOL_KEYS)].address, amount),
        "retire": RetirePool(n, ledger.epoch + 1 + amount % 3),
        "unjail": Unjail(n),
        "wrong_chain": Transfer(n, target.address, amount),
    }
    if kind == "garbage":
        return bytes([amount % 256]) * (target_i + 1)
    return signed(sender, txs[kind], "other-chain" if kind == "wrong_chain" else CHAIN)


block_spec = st.tuples(
    st.integers(0, len(POOL_KEYS) - 1),  # proposer
    st.lists(st.booleans(), min_size=len(POOL_KEYS), max_size=len(POOL_KEYS)),  # who signed
    st.sampled_from([[]] * 6 + [[0], [1], [2], [3], [2, 2]]),  # equivocators (mostly none)
    st.lists(tx_spec, max_size=5),
    st.booleans(),  # next epoch after this block
)


def run_block(
    ledger: Ledger,
    height: int,
    epoch: int,
    committee: tuple[tuple[bytes, int], ...],
    spec: tuple,
    params: Params = PARAMS,
) -> tuple[Ledger, tuple[LedgerEvent, ...]]:
    proposer_i, signed_flags, equivocators, tx_specs, _ = spec
    signers = frozenset(k.address for k, s in zip(POOL_KEYS, signed_flags, strict=True) if s)
    evidence = tuple(equivocation(POOL_KEYS[i], height=max(1, height - 1)) for i in equivocators)
    context = BlockContext(
        height,
        epoch,
        POOL_KEYS[proposer_i].address,
        committee,
        signers,
        evidence,
        judged_now(height, committee, signers),
    )
    senders = [tx[1] for tx in tx_specs]
    txs = tuple(build_tx(ledger, tx, senders[:i].count(tx[1])) for i, tx in enumerate(tx_specs))
    return apply_block(ledger, context, txs, params, CHAIN)


def assert_no_negative_holdings(ledger: Ledger) -> None:
    assert all(a.balance >= 0 and a.nonce >= 0 for a in ledger.accounts.values())
    assert all(p.pledge >= 0 and all(v > 0 for v in p.shares.values()) for p in ledger.pools.values())
    assert all(p.member_tokens >= 0 and (p.member_tokens == 0 or p.shares) for p in ledger.pools.values())
    assert all(e.amount >= 0 for e in ledger.unbonding)


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(block_spec, min_size=1, max_size=12))
def test_supply_is_conserved_exactly_over_random_blocks(specs: list) -> None:
    ledger = genesis_ledger(make_test_genesis())
    committee: tuple[tuple[bytes, int], ...] = ()
    epoch = 0
    for height, spec in enumerate(specs, start=1):
        before = ledger
        ledger, events = run_block(ledger, height, epoch, committee, spec)
        minted = ledger.issued - before.issued
        burned = ledger.slashed - before.slashed
        assert total_supply(ledger) == total_supply(before) + minted - burned
        paid = sum(e.amount for e in events if e.kind == "rewarded")
        assert paid <= PARAMS.block_reward
        # what pools earned is minted but for the splits' dust (under a unit per party), never minted
        assert 0 <= paid - minted <= sum(1 + len(p.shares) for p in before.pools.values())
        assert burned <= sum(e.amount for e in events if e.kind == "slashed")
        assert_no_negative_holdings(ledger)
        committee = active_powers(ledger)
        if spec[-1]:
            epoch += 1
            before = ledger
            ledger, _ = start_epoch(ledger, epoch, PARAMS)
            assert total_supply(ledger) == total_supply(before)
        assert supply_is_conserved(ledger)


@pytest.mark.slow
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(tx_spec, min_size=1, max_size=30))
def test_no_transaction_lets_anyone_but_the_delegator_reduce_its_delegations(specs: list) -> None:
    ledger = genesis_ledger(make_test_genesis())
    delegators = [k.address for k in ACTORS]
    for spec in specs:
        data = build_tx(ledger, spec)
        before = ledger
        ledger, events = apply_block(ledger, ctx(), (data,), PARAMS, CHAIN)
        applied = events[-1].kind != "tx_rejected"
        sender = ACTORS[spec[1]].address
        for delegator in delegators:
            lost = delegated_total(before, delegator) - delegated_total(ledger, delegator)
            own_undelegation = applied and spec[0] == "undelegate" and sender == delegator
            own_transfer = applied and spec[0] in ("transfer_shares", "redelegate") and sender == delegator
            if own_undelegation and lost:
                assert lost == spec[3] and ledger.unbonding[-1].delegator == delegator
            elif own_transfer:
                pass  # a holder may give its own shares away
            else:
                assert lost <= 0, f"{spec} reduced another account's delegations"
        for address, p in before.pools.items():
            for delegator, count in p.shares.items():
                if delegator != sender:
                    assert ledger.pools[address].shares.get(delegator, 0) >= count


holding = st.integers(0, 10**12)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(
    pledge=holding,
    delegations=st.lists(holding, max_size=6),
    unbonding=st.lists(st.tuples(st.booleans(), holding), max_size=5),
    fraction=st.integers(0, PPM),
)
def test_slashing_cuts_every_holding_by_the_same_fraction(
    pledge: int, delegations: list[int], unbonding: list[tuple[bool, int]], fraction: int
) -> None:
    ledger = genesis_ledger(make_test_genesis())
    shares = FrozenMap((bytes([i]) * 20, amount) for i, amount in enumerate(delegations) if amount)
    target = replace(pool(ledger, V2), pledge=pledge, shares=shares, member_tokens=sum(shares.values()))
    entries = tuple(
        Unbonding(bytes([i]) * 20, V2.address if ours else V1.address, amount, 9)
        for i, (ours, amount) in enumerate(unbonding)
    )
    ledger = replace(ledger, pools=ledger.pools.set(V2.address, target), unbonding=entries)
    after, taken = slash_stake(ledger, V2.address, fraction)

    def within_one_unit(old: int, new: int) -> bool:
        exact = old * (PPM - fraction)  # new * PPM, were there no rounding
        return exact <= new * PPM < exact + PPM

    slashed_pool = pool(after, V2)
    assert within_one_unit(pledge, slashed_pool.pledge)
    assert within_one_unit(target.member_tokens, slashed_pool.member_tokens)
    assert slashed_pool.shares == target.shares  # the share count stays; what each is worth falls
    for delegator in target.shares:
        assert stake_of(slashed_pool, delegator) <= stake_of(target, delegator)
    for old, new in zip(entries, after.unbonding, strict=True):
        assert within_one_unit(old.amount, new.amount) if old.pool == V2.address else old == new
    assert taken == total_supply(ledger) - total_supply(after)
    assert pool(after, V1) == pool(ledger, V1)


def test_stake_totals_worked_out_once_are_never_carried_into_a_changed_ledger(ledger: Ledger) -> None:
    """active_powers, active_total and bonded_stake are cached on a ledger value; a
    ledger made from it by `replace` must work them out afresh."""
    assert active_powers(ledger)  # cached on `ledger` now
    first = next(iter(ledger.pools))
    grown = ledger.pools[first]
    grown = replace(grown, pledge=grown.pledge + 1_000)
    changed = replace(ledger, pools=ledger.pools.set(first, grown))
    assert dict(active_powers(changed))[first] == dict(active_powers(ledger))[first] + 1_000
    assert changed.active_total == ledger.active_total + 1_000
    assert changed.bonded_stake == ledger.bonded_stake + 1_000
    assert changed == replace(ledger, pools=ledger.pools.set(first, grown))  # the cache is not in equality


@given(st.dictionaries(st.integers(0, 20), st.integers(), max_size=10), st.integers(0, 20), st.integers())
def test_frozen_map_changes_leave_the_original_alone(items: dict[int, int], key: int, value: int) -> None:
    original = FrozenMap(items)
    assert dict(original.set(key, value)) == {**items, key: value}
    assert dict(original.without(key)) == {k: v for k, v in items.items() if k != key}
    assert dict(original) == items
