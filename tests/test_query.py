"""The node's read-only query layer: pure views of a ChainState, the log lines of ledger events,
and the /query/ endpoint on the metrics port."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import replace

import pytest

from node.core.genesis import Delegation, Genesis, GenesisAccount, GenesisValidator, Params
from node.core.keys import Keypair
from node.core.ledger import LedgerEvent, total_supply
from node.core.messages import Block, CommitCertificate, Evidence, Kind, Vote, make_evidence, sign_item
from node.core.query import (
    QueryError,
    account_view,
    check_tx_view,
    delegations_view,
    ledger_event_logs,
    nakamoto_view,
    pools_view,
    route,
    single_pool_view,
    slash_breakdown,
    supply_view,
)
from node.core.state import ChainState, apply_block, genesis_state
from node.core.tx import Delegate, Transfer, Tx, Undelegate, sign_tx, tx_id
from node.runtime.metrics import NodeMetrics
from node.runtime.queryview import QueryView
from tests.support.chain import ADDR, CHAIN_ID, KEYS, certificate, make_block

DELEGATOR = Keypair.deterministic("q/delegator")  # 500 staked with alice at genesis, 2000 liquid
ERIN = Keypair.deterministic("q/erin")  # funded, stakes nothing
STRANGER = Keypair.deterministic("q/stranger")  # not in the genesis at all
PARAMS = Params(epoch_length=5, unbonding_epochs=1)


def make_genesis_doc() -> Genesis:
    validators = tuple(
        GenesisValidator(
            name,
            KEYS[name].public,
            pledge=1000,
            margin_ppm=50_000,
            delegations=(Delegation(DELEGATOR.public, 500),) if name == "alice" else (),
        )
        for name in ("alice", "bob", "carol", "dave")
    )
    accounts = (GenesisAccount(DELEGATOR.public, 2000), GenesisAccount(ERIN.public, 5000))
    return Genesis(CHAIN_ID, 0, PARAMS, validators, accounts)


@pytest.fixture
def state() -> ChainState:
    return genesis_state(make_genesis_doc())


def signed(keypair: Keypair, tx: Tx) -> bytes:
    return sign_tx(CHAIN_ID, tx, keypair)


def next_block(
    state: ChainState,
    cert: CommitCertificate | None,
    *,
    txs: tuple[bytes, ...] = (),
    evidence: tuple[Evidence, ...] = (),
) -> tuple[ChainState, tuple[LedgerEvent, ...], Block, CommitCertificate]:
    """Apply the next block (alice, bob and carol sign it): new state, events, block, its certificate."""
    block = replace(make_block(state, txs=txs, last_commit=cert), evidence=evidence)
    new_state, events = apply_block(state, block)
    return new_state, events, block, certificate(block.hash, block.height, signers=("alice", "bob", "carol"))


def equivocation(name: str, height: int) -> Evidence:
    votes = [Vote(Kind.PRECOMMIT, height, 0, bytes([b]) * 32, ADDR[name]) for b in (1, 2)]
    return make_evidence(*(replace(v, signature=sign_item(CHAIN_ID, v, KEYS[name])) for v in votes))


# ------------------------------------------------------------------ views


def test_pools_list_every_pool_with_stake_share_and_terms(state: ChainState) -> None:
    view = pools_view(state)
    assert view["height"] == 0 and view["chain_id"] == CHAIN_ID
    pools = {p["name"]: p for p in view["pools"]}
    assert view["pools"][0]["name"] == "alice"  # largest first
    alice = pools["alice"]
    assert (alice["stake"], alice["pledge"], alice["delegated"], alice["delegators"]) == (1500, 1000, 500, 1)
    assert alice["status"] == "active" and alice["voting_power"] == 1500
    assert alice["share_ppm"] == 1500 * 1_000_000 // 4500
    assert alice["address"] == ADDR["alice"].hex() and alice["margin_ppm"] == 50_000
    assert sum(p["stake"] for p in view["pools"]) == 4500


def test_pools_show_saturation_and_apparent_performance(state: ChainState) -> None:
    """Saturation is of total/k of the bonded stake (None without k); performance from the downtime window."""
    assert {p["saturation_ppm"] for p in pools_view(state)["pools"]} == {None}
    saturated = replace(state, params=replace(PARAMS, saturation_k=4))  # z0 = 4500 / 4 = 1125
    pools = {p["name"]: p for p in pools_view(saturated)["pools"]}
    assert pools["alice"]["saturation_ppm"] == 1500 * 4 * 1_000_000 // 4500  # 133%
    assert pools["bob"]["saturation_ppm"] == 1000 * 4 * 1_000_000 // 4500
    assert pools["alice"]["performance_ppm"] == 1_000_000
    alice = state.ledger.pools[ADDR["alice"]]
    missing = replace(
        state.ledger, pools=state.ledger.pools.set(alice.address, replace(alice, missed=0b1011))
    )
    view = single_pool_view(replace(state, ledger=missing), "alice")["pool"]
    window = PARAMS.downtime_window
    assert view["performance_ppm"] == (window - 3) * 1_000_000 // window and view["missed_in_window"] == 3


def test_a_pool_by_name_or_address_lists_its_delegations(state: ChainState) -> None:
    by_name = single_pool_view(state, "alice")["pool"]
    by_address = single_pool_view(state, ADDR["alice"].hex())["pool"]
    assert by_name == by_address
    assert by_name["delegations"] == [{"account": DELEGATOR.address.hex(), "shares": 500, "amount": 500}]
    assert (by_name["exchange_rate_ppm"], by_name["total_shares"], by_name["reward_mode"]) == (
        1_000_000,
        500,
        "paid_out",
    )
    assert by_name["leverage_ppm"] == by_name["stake"] * 1_000_000 // by_name["pledge"]
    assert by_name["unbonding"] == []
    with pytest.raises(QueryError) as err:
        single_pool_view(state, "nobody")
    assert err.value.status == 404


def test_account_shows_balance_nonce_stake_and_total(state: ChainState) -> None:
    view = account_view(state, DELEGATOR.address)
    assert view["known"] and view["balance"] == 2000 and view["nonce"] == 0
    assert view["delegations"] == [
        {
            "pool": ADDR["alice"].hex(),
            "pool_name": "alice",
            "amount": 500,
            "role": "delegation",
            "shares": 500,
            "pool_status": "active",
        }
    ]
    assert (view["staked"], view["unbonding_total"], view["total"]) == (500, 0, 2500)
    operator = account_view(state, ADDR["bob"])
    assert [(s["pool_name"], s["role"], s["amount"]) for s in operator["delegations"]] == [
        ("bob", "pledge", 1000)
    ]


def test_an_unknown_account_is_all_zeros_not_an_error(state: ChainState) -> None:
    view = account_view(state, STRANGER.address)
    assert not view["known"]
    assert (view["balance"], view["nonce"], view["total"], view["delegations"]) == (0, 0, 0, [])


def test_supply_accounts_for_every_unit_and_checks_conservation(state: ChainState) -> None:
    view = supply_view(state)
    assert view["total_supply"] == view["genesis_supply"] == 4 * 1000 + 500 + 2000 + 5000
    assert (view["issued"], view["slashed"], view["conserved"]) == (0, 0, True)
    state, _, _, cert = next_block(state, None)
    state, _, _, _ = next_block(state, cert, evidence=(equivocation("dave", 1),))
    view = supply_view(state)
    # the floors of alice's split (a member and a margin) leave 1 unit of dust a block, never minted
    assert view["issued"] == 2 * PARAMS.block_reward - 2 and view["slashed"] > 0
    assert view["total_supply"] == view["genesis_supply"] + view["issued"] - view["slashed"]
    assert view["total_supply"] == total_supply(state.ledger) == view["expected_supply"]
    assert view["liquid"] + view["staked"] + view["unbonding"] + view["reserve"] == view["total_supply"]
    assert view["conserved"] and view["reserve"] == 0


def test_nakamoto_coefficient_and_distribution(state: ChainState) -> None:
    view = nakamoto_view(state)
    # alice 1500 of 4500 is exactly 1/3, not more: it takes two pools to halt the chain
    assert view["nakamoto_coefficient"] == 2
    assert [(d["pool"], d["stake"]) for d in view["stake_distribution"]] == [
        ("alice", 1500),
        ("bob", 1000),
        ("carol", 1000),
        ("dave", 1000),
    ]
    assert view["active_stake"] == 4500 and view["active_pools"] == 4
    assert supply_view(state)["nakamoto_coefficient"] == 2


def test_delegate_and_undelegate_show_as_stake_and_unbonding(state: ChainState) -> None:
    txs = (
        signed(DELEGATOR, Delegate(0, ADDR["bob"], 300)),
        signed(DELEGATOR, Undelegate(1, ADDR["alice"], 200)),
    )
    state, _, _, _ = next_block(state, None, txs=txs)
    view = delegations_view(state, DELEGATOR.address)
    assert {(d["pool_name"], d["amount"]) for d in view["delegations"]} == {("alice", 300), ("bob", 300)}
    assert view["unbonding"] == [
        {
            "account": DELEGATOR.address.hex(),
            "pool": ADDR["alice"].hex(),
            "pool_name": "alice",
            "amount": 200,
            "release_epoch": PARAMS.unbonding_epochs + 1,
        }
    ]
    account = account_view(state, DELEGATOR.address)
    reward = account["balance"] - 1700  # height 1's reward reaches alice's delegator as liquid balance
    assert reward > 0 and account["nonce"] == 2 and account["total"] == 2500 + reward
    assert single_pool_view(state, "alice")["pool"]["unbonding"][0]["amount"] == 200


def test_every_view_is_plain_json(state: ChainState) -> None:
    state, _, _, _ = next_block(state, None, txs=(signed(DELEGATOR, Undelegate(0, ADDR["alice"], 100)),))
    for path in ("/query/status", "/query/pools", "/query/pool/alice", "/query/supply", "/query/nakamoto"):
        json.dumps(route(state, path))
    json.dumps(route(state, f"/query/account/{DELEGATOR.address.hex()}"))
    json.dumps(route(state, f"/query/delegations/{DELEGATOR.address.hex()}"))


# ------------------------------------------------------------------ dry-run check


def test_check_gives_the_ledgers_own_reason_for_a_doomed_tx(state: ChainState) -> None:
    too_much = signed(ERIN, Transfer(0, STRANGER.address, 5001))
    view = check_tx_view(state, too_much.hex())
    assert view["ok"] is False and view["problem"] == "insufficient balance: 5000 < 5001"
    assert view["type"] == "transfer" and view["account"] == ERIN.address.hex()
    assert view["tx"] == tx_id(too_much).hex()
    stale = check_tx_view(state, signed(ERIN, Transfer(3, STRANGER.address, 1)).hex())
    assert stale["problem"] == "bad nonce: expected 0, got 3" and stale["expected_nonce"] == 0
    fine = check_tx_view(state, signed(ERIN, Transfer(0, STRANGER.address, 5000)).hex())
    assert fine["ok"] is True and fine["problem"] is None


def test_check_refuses_non_hex_and_names_garbage_as_malformed(state: ChainState) -> None:
    with pytest.raises(QueryError) as err:
        check_tx_view(state, "zz")
    assert err.value.status == 400
    assert check_tx_view(state, "00ff")["problem"].startswith("malformed")


# ------------------------------------------------------------------ log lines


def test_slash_lines_say_who_lost_what_and_add_up() -> None:
    state = genesis_state(
        replace(
            make_genesis_doc(),
            validators=tuple(
                replace(v, delegations=(Delegation(DELEGATOR.public, 400), Delegation(ERIN.public, 600)))
                if v.name == "dave"
                else v
                for v in make_genesis_doc().validators
            ),
        )
    )
    state, _, _, cert = next_block(state, None)
    before = state
    after, events, block, _ = next_block(state, cert, evidence=(equivocation("dave", 1),))
    lines = ledger_event_logs(before, after, block, events)
    slashed = next(line for line in lines if line["event"] == "slashed")
    fraction = PARAMS.slash_fraction_double_sign_ppm
    assert slashed["validator"] == "dave" and slashed["height"] == 2
    assert slashed["reason"] == "double sign at height 1"
    assert slashed["operator_loss"] == 1000 * fraction // 1_000_000
    assert slashed["delegator_losses"] == {
        ERIN.address.hex(): 600 * fraction // 1_000_000,
        DELEGATOR.address.hex(): 400 * fraction // 1_000_000,
    }
    assert slashed["delegators"] == 2 and slashed["fraction_ppm"] == fraction
    assert (
        slashed["operator_loss"] + slashed["delegator_loss"] + slashed["unbonding_loss"] == slashed["amount"]
    )
    assert (
        before.ledger.slashed + slashed["amount"] > after.ledger.slashed
    )  # the whistleblower's cut is not burned
    assert any(line["event"] == "tombstoned" and line["validator"] == "dave" for line in lines)
    assert not any(line["event"] == "rewarded" for line in lines)


def test_slash_breakdown_is_left_out_when_it_does_not_add_up(state: ChainState) -> None:
    assert slash_breakdown(state.ledger, ADDR["dave"], 7, PARAMS, "downtime") == {}
    assert slash_breakdown(state.ledger, STRANGER.address, 0, PARAMS, "downtime") == {}
    downtime = slash_breakdown(state.ledger, ADDR["alice"], 15, PARAMS, "downtime")
    assert downtime["fraction_ppm"] == PARAMS.slash_fraction_downtime_ppm
    assert (downtime["operator_loss"], downtime["delegator_loss"]) == (10, 5)


def test_tx_outcome_lines_carry_the_tx_id_sender_and_reason(state: ChainState) -> None:
    good = signed(ERIN, Transfer(0, STRANGER.address, 10))
    broke = signed(DELEGATOR, Transfer(0, STRANGER.address, 999_999))
    junk = b"\x01\x02"
    after, events, block, _ = next_block(state, None, txs=(good, broke, junk))
    lines = [
        line for line in ledger_event_logs(state, after, block, events) if line["event"].startswith("tx_")
    ]
    assert [line["event"] for line in lines] == ["tx_applied", "tx_rejected", "tx_rejected"]
    applied, rejected, malformed = lines
    assert applied == {
        "event": "tx_applied",
        "height": 1,
        "tx": tx_id(good).hex(),
        "account": ERIN.address.hex(),
        "type": "transfer",
        "nonce": 0,
        "amount": 10,
        "reason": "transfer",
    }
    assert rejected["tx"] == tx_id(broke).hex() and rejected["reason"].startswith("insufficient balance")
    assert malformed["tx"] == tx_id(junk).hex() and malformed["type"] == "unknown"
    assert malformed["reason"].startswith("malformed")


# ------------------------------------------------------------------ routing and the node's view


def test_route_answers_known_paths_and_refuses_the_rest(state: ChainState) -> None:
    assert route(state, "/query/pool/" + ADDR["bob"].hex())["pool"]["name"] == "bob"
    assert route(state, "/query")["height"] == 0
    for path, status in (
        ("/query/nope", 404),
        ("/query/account/xyz", 400),
        ("/query/account/" + "ab" * 19, 400),
        ("/elsewhere", 404),
    ):
        with pytest.raises(QueryError) as err:
            route(state, path)
        assert err.value.status == status, path


def test_node_view_remembers_tx_outcomes_and_never_goes_back(state: ChainState) -> None:
    view = QueryView(state, keep=2)
    assert view.answer("/query/tx/" + "aa" * 32)[1]["status"] == "unknown"
    for i, kind in enumerate(("tx_applied", "tx_rejected", "tx_applied")):
        view.record({"event": kind, "tx": f"{i:02x}" * 32, "height": 5 + i, "reason": f"r{i}"})
    status, body = view.answer("/query/tx/" + "01" * 32)
    assert (
        status == 200 and body["status"] == "rejected" and body["reason"] == "r1" and body["tx_height"] == 6
    )
    assert view.answer("/query/tx/" + "00" * 32)[1]["status"] == "unknown"  # only the newest `keep` are kept
    later, _, _, _ = next_block(state, None)
    view.publish(later)
    view.publish(state)
    assert view.answer("/query/status")[1]["height"] == 1
    status, body = view.answer("/query/bad")
    assert status == 404 and "unknown query" in body["error"]


def test_the_metrics_port_serves_query_json_beside_metrics(state: ChainState) -> None:
    metrics = NodeMetrics("v1", CHAIN_ID, dropped=dict, signed=lambda: 0, refused=lambda: 0)
    view = QueryView(state)
    metrics.serve(0, "127.0.0.1", query=view.answer)
    try:
        base = f"http://127.0.0.1:{metrics.port}"
        with urllib.request.urlopen(f"{base}/query/supply", timeout=10) as response:
            assert response.headers["Content-Type"] == "application/json"
            assert json.load(response)["total_supply"] == supply_view(state)["total_supply"]
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
            assert b"posnet_height" in response.read()
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base}/query/account/nothex", timeout=10)
        assert err.value.code == 400 and "not an address" in json.load(err.value)["error"]
        post = urllib.request.Request(f"{base}/query/supply", data=b"x", method="POST")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(post, timeout=10)
        assert err.value.code == 405
    finally:
        metrics.close()


@pytest.mark.sim
def test_the_simulator_summary_carries_the_stake_distribution() -> None:
    from network.sim.runner import SimConfig, run_simulation

    summary = run_simulation(SimConfig(validators=4, heights=3, seed=1, byzantine=1)).to_json()
    distribution = summary["stake_distribution"]
    assert [d["pool"] for d in distribution] == ["v1", "v2", "v3"]  # the equivocator v4 is out
    assert summary["nakamoto_coefficient"] == 2 and sum(d["stake"] for d in distribution) == 3000
