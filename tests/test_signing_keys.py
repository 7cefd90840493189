"""Key separation: an owner (cold) key that holds the funds, a signing (hot) key that signs, and rotation."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from network.sim.net import SimNetwork
from network.sim.node import SharedCore, SimNode
from network.sim.plans import FaultPlan
from network.testnet.layout import Layout
from network.testnet.setup import prepare
from node.core.accountability import DOUBLE_SIGN, Culprit, culprit_proof_problem
from node.core.admission import AdmissionContext, Rejected, admit
from node.core.envelopes import signed_item_bytes, sync_request_bytes, tx_bytes
from node.core.genesis import Genesis, Params, make_genesis
from node.core.keys import Keypair, key_file_kind, load_key_file
from node.core.ledger import (
    SIGNING_KEY_HOLDS_NOTHING,
    SIGNING_KEY_SENDS_NOTHING,
    Ledger,
    account_of,
    genesis_ledger,
    stake_of,
    start_epoch,
    supply_is_conserved,
)
from node.core.messages import Kind, Vote, sign_item, verify_signed
from node.core.query import single_pool_view
from node.core.signer import GuardedSigner, KeyRing
from node.core.signing_keys import key_at, rotate
from node.core.state import (
    ChainState,
    genesis_state,
    signed_item_problem,
    signing_key_at,
    signing_keys_at,
    validator_of_key,
)
from node.core.tx import (
    Delegate,
    Redelegate,
    RetirePool,
    RotateKey,
    Transfer,
    TransferShares,
    Tx,
    Undelegate,
    sign_tx,
)
from node.runtime.store import Store
from tests.test_ledger import ALICE, CHAIN, D1, D2, PARAMS, V1, V2, V3, block, make_test_genesis, signed

HOT3 = Keypair.deterministic("v3-hot")  # v3's signing key at genesis
NEXT = Keypair.deterministic("next-hot")
SPARE = Keypair.deterministic("spare-hot")


def separated_genesis() -> Genesis:
    """The ledger tests' genesis with v3 signing by a separate hot key."""
    genesis = make_test_genesis()
    validators = tuple(
        replace(v, signing_key=HOT3.public) if v.name == "v3" else v for v in genesis.validators
    )
    return replace(genesis, validators=validators)


@pytest.fixture
def ledger() -> Ledger:
    return genesis_ledger(separated_genesis())


def last_reason(events: tuple[Any, ...]) -> str:
    return events[-1].reason if events[-1].kind == "tx_rejected" else ""


# ------------------------------------------------------------------ ledger


def test_genesis_names_both_keys_and_the_pool_signs_with_the_hot_one(ledger: Ledger) -> None:
    pool = ledger.pools[V3.address]
    assert pool.public_key == HOT3.public and pool.operator == V3.address
    assert HOT3.address in ledger.signing_accounts and HOT3.address not in ledger.accounts
    assert genesis_state(separated_genesis()).public_keys[V3.address] == HOT3.public


def test_a_signing_key_can_move_no_funds_and_receive_none(ledger: Ledger) -> None:
    for tx in (Transfer(0, ALICE.address, 1), Delegate(0, V1.address, 1), RetirePool(0, 5)):
        _, events = block(ledger, signed(HOT3, tx))
        assert last_reason(events) == SIGNING_KEY_SENDS_NOTHING
    _, events = block(ledger, signed(ALICE, Transfer(0, HOT3.address, 10)))
    assert last_reason(events) == SIGNING_KEY_HOLDS_NOTHING
    _, events = block(ledger, signed(D1, TransferShares(0, V3.address, HOT3.address, 10)))
    assert last_reason(events) == SIGNING_KEY_HOLDS_NOTHING


def test_only_the_owner_rotates_and_the_new_key_signs_from_the_next_epoch(ledger: Ledger) -> None:
    _, events = block(ledger, signed(D1, RotateKey(0, NEXT.public)))
    assert last_reason(events) == "not a pool owner"
    _, events = block(ledger, signed(HOT3, RotateKey(0, NEXT.public)))
    assert last_reason(events) == SIGNING_KEY_SENDS_NOTHING
    rotated, events = block(ledger, signed(V3, RotateKey(0, NEXT.public)))
    assert events[-1].kind == "tx_applied"
    pool = rotated.pools[V3.address]
    assert (pool.public_key, pool.next_public_key) == (HOT3.public, NEXT.public)
    assert NEXT.address in rotated.signing_accounts
    after, epoch_events = start_epoch(rotated, 1, PARAMS)
    pool = after.pools[V3.address]
    assert (pool.public_key, pool.next_public_key) == (NEXT.public, b"")
    assert [e.kind for e in epoch_events][:1] == ["key_rotated"]
    _, events = block(after, signed(ALICE, Transfer(0, HOT3.address, 1)))
    assert last_reason(events) == SIGNING_KEY_HOLDS_NOTHING  # a key rotated out stays fundless


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        (HOT3, "already the pool's next signing key"),
        (ALICE, "key has an account on chain; a signing key must be fresh and hold no funds"),
        (V2, "key owns another pool"),
    ],
)
def test_a_new_signing_key_must_be_fresh(ledger: Ledger, key: Keypair, reason: str) -> None:
    _, events = block(ledger, signed(V3, RotateKey(0, key.public)))
    assert last_reason(events) == reason


def test_a_signing_key_used_before_cannot_come_back(ledger: Ledger) -> None:
    ledger, _ = block(ledger, signed(V3, RotateKey(0, NEXT.public)))
    ledger, _ = start_epoch(ledger, 1, PARAMS)
    _, events = block(ledger, signed(V3, RotateKey(1, HOT3.public)), epoch=1)
    assert last_reason(events) == "key is or was a pool's signing key; generate a fresh one"
    back, events = block(ledger, signed(V3, RotateKey(1, V3.public)), epoch=1)
    assert events[-1].kind == "tx_applied"  # the owner may sign again itself, as a registered pool starts
    assert back.pools[V3.address].next_public_key == V3.public


def test_the_pool_query_shows_owner_signing_and_next_keys(ledger: Ledger) -> None:
    ledger, _ = block(ledger, signed(V3, RotateKey(0, NEXT.public)))
    state = replace(genesis_state(separated_genesis()), ledger=ledger)
    view = single_pool_view(state, "v3")["pool"]
    assert view["owner"] == V3.address.hex()
    assert view["signing_key"] == HOT3.public.hex()
    assert view["next_signing_key"] == NEXT.public.hex()


# A small world for the property: owners, hot keys (current, next and spare) and delegators.
OWNERS = (V1, V2, V3)
HOT = (HOT3, NEXT, SPARE)
DELEGATORS = (D1, D2, ALICE)
SENDERS = OWNERS + HOT + DELEGATORS

tx_kind = st.sampled_from(
    ["transfer", "delegate", "undelegate", "transfer_shares", "redelegate", "rotate", "retire"]
)
tx_spec = st.tuples(
    tx_kind,
    st.integers(0, len(SENDERS) - 1),
    st.integers(0, len(SENDERS) - 1),
    st.integers(1, 3000),
    st.booleans(),  # an epoch starts after this transaction
)


def holdings(ledger: Ledger, keypair: Keypair) -> int:
    """All a delegator owns: balance, stake in every pool, and what is unbonding."""
    address = keypair.address
    staked = sum(stake_of(pool, address) for pool in ledger.pools.values())
    unbonding = sum(e.amount for e in ledger.unbonding if e.delegator == address)
    return account_of(ledger, address).balance + staked + unbonding


def make_tx(ledger: Ledger, spec: tuple[str, int, int, int, bool]) -> tuple[Keypair, bytes]:
    kind, sender_i, target_i, amount, _ = spec
    sender, target = SENDERS[sender_i], SENDERS[target_i]
    pool = OWNERS[target_i % len(OWNERS)].address
    n = account_of(ledger, sender.address).nonce
    txs: dict[str, Tx] = {
        "transfer": Transfer(n, target.address, amount),
        "delegate": Delegate(n, pool, amount),
        "undelegate": Undelegate(n, pool, amount),
        "transfer_shares": TransferShares(n, pool, target.address, amount),
        "redelegate": Redelegate(n, pool, OWNERS[(target_i + 1) % len(OWNERS)].address, amount),
        "rotate": RotateKey(n, target.public),
        "retire": RetirePool(n, ledger.epoch + 2),
    }
    return sender, sign_tx(CHAIN, txs[kind], sender)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(tx_spec, min_size=1, max_size=25))
def test_no_transaction_signed_by_a_signing_or_owner_key_moves_a_delegators_funds(specs: list) -> None:
    """Owners and hot keys may rotate, retire and spend their own, but never take a delegator's holdings."""
    ledger = genesis_ledger(separated_genesis())
    epoch = 0
    for spec in specs:
        sender, data = make_tx(ledger, spec)
        before = ledger
        ledger, events = block(ledger, data, epoch=epoch)
        if sender.address in before.signing_accounts:
            assert last_reason(events) == SIGNING_KEY_SENDS_NOTHING
        for delegator in DELEGATORS:
            if delegator is not sender:
                assert holdings(ledger, delegator) >= holdings(before, delegator), spec
        assert not any(address in ledger.accounts for address in ledger.signing_accounts)
        assert all(
            address not in pool.shares
            for pool in ledger.pools.values()
            for address in ledger.signing_accounts
        )
        if spec[-1]:
            epoch += 1
            ledger, _ = start_epoch(ledger, epoch, PARAMS)
        assert supply_is_conserved(ledger)


# ------------------------------------------------------------------ verification by height


def rotated_state() -> ChainState:
    """v3 signed up to height 4 with HOT3 and signs with NEXT from height 5."""
    state = genesis_state(separated_genesis())
    keys = {**state.public_keys, V3.address: NEXT.public}
    return replace(state, public_keys=keys, key_history=((V3.address, 4, HOT3.public),))


def vote(height: int, key: Keypair, validator: bytes = V3.address) -> Vote:
    item = Vote(Kind.PRECOMMIT, height, 0, b"\x11" * 32, validator)
    return replace(item, signature=sign_item(CHAIN, item, key))


def test_a_vote_verifies_only_under_the_key_in_force_at_its_height() -> None:
    state = rotated_state()
    assert signed_item_problem(state, vote(4, HOT3)) is None
    assert signed_item_problem(state, vote(4, NEXT)) == "bad signature"
    assert signed_item_problem(state, vote(5, NEXT)) is None
    assert signed_item_problem(state, vote(5, HOT3)) == "bad signature"  # a stolen old key signs nothing new
    assert signing_key_at(state, V3.address, 4) == HOT3.public
    assert validator_of_key(state, HOT3.public) == validator_of_key(state, NEXT.public) == V3.address


def test_admission_checks_a_vote_against_its_heights_key_and_other_messages_against_recent_keys() -> None:
    state = rotated_state()
    ctx = AdmissionContext(CHAIN, state.public_keys, 5, key_history=state.key_history)
    assert isinstance(admit(signed_item_bytes(CHAIN, vote(4, HOT3)), ctx), Vote)
    assert isinstance(admit(signed_item_bytes(CHAIN, vote(5, NEXT)), ctx), Vote)
    refused = admit(signed_item_bytes(CHAIN, vote(5, HOT3)), ctx)
    assert isinstance(refused, Rejected) and refused.reason == "bad_signature"
    for key in (HOT3, NEXT):  # a node an epoch behind still seals with the old key
        request = sync_request_bytes(CHAIN, 3, "v3", 1, key, sender=V3.address)
        assert not isinstance(admit(request, ctx), Rejected)
    stranger = admit(sync_request_bytes(CHAIN, 3, "v3", 1, SPARE, sender=V3.address), ctx)
    assert isinstance(stranger, Rejected) and stranger.reason == "bad_signature"


def test_key_history_records_each_rotation_and_forgets_heights_nobody_checks() -> None:
    a, b = b"a" * 20, b"b" * 20
    current, history = rotate({a: b"1"}, (), [(a, b"2"), (b, b"9")], 10, 0)
    assert current == {a: b"2", b: b"9"} and history == ((a, 10, b"1"),)
    current, history = rotate(current, history, [(a, b"3"), (b, b"9")], 20, 5)
    assert history == ((a, 10, b"1"), (a, 20, b"2"))
    assert [key_at(current, history, a, h) for h in (3, 10, 11, 20, 21)] == [b"1", b"1", b"2", b"2", b"3"]
    _, history = rotate(current, history, [(a, b"3")], 30, 15)
    assert history == ((a, 20, b"2"),)


# ------------------------------------------------------------------ the simulator, end to end

EPOCH = 4


def run_rotation(hold_new_key: bool, heights: int = 14) -> tuple[dict[str, SimNode], list[dict[str, Any]]]:
    """Four equal validators, v1 with separate keys; its owner rotates to NEXT in the first block."""
    owners = {name: Keypair.deterministic(f"rotation/{name}") for name in ("v1", "v2", "v3", "v4")}
    hot = V1_HOT
    params = Params(epoch_length=EPOCH, downtime_window=4, max_missed_in_window=2)
    genesis = make_genesis("rotation", owners, params=params, signing_keys={"v1": hot})
    state0 = genesis_state(genesis)
    net = SimNetwork(list(owners), FaultPlan(), random.Random(7))
    core, events = SharedCore(), []
    signing = {**owners, "v1": hot}
    nodes = {name: SimNode(name, signing[name], state0, net, core, None, events) for name in owners}
    if hold_new_key:
        nodes["v1"].driver.signer.ring.add(NEXT)
    rotation = tx_bytes(
        "rotation", sign_tx("rotation", RotateKey(0, NEXT.public), owners["v1"]), owners["v1"]
    )
    for node in nodes.values():
        node.boot()
        node.host.receive(rotation)
    net.run_until(lambda: min(n.height for n in nodes.values()) >= heights, 600_000)
    return nodes, events


V1_HOT = Keypair.deterministic("rotation/v1-hot")


def v1_signatures(node: SimNode) -> dict[int, bytes]:
    """Height -> the key v1's precommit in that height's certificate verifies under."""
    address = Keypair.deterministic("rotation/v1").address
    found: dict[int, bytes] = {}
    for finalized, cert, _ in node.chain:
        for item in cert.votes():
            for key in (V1_HOT, NEXT):
                if item.validator == address and verify_signed("rotation", item, key.public):
                    found[finalized.height] = key.public
    return found


def rotation_boundary(node: SimNode) -> int:
    """The epoch boundary after the block that carried the rotation: the new key signs after it."""
    carried = next(block.height for block, _, _ in node.chain if block.txs)
    return -(-carried // EPOCH) * EPOCH


def test_a_validator_signs_with_its_new_key_from_the_next_epoch() -> None:
    nodes, events = run_rotation(hold_new_key=True)
    assert len({tuple(b.hash for b, _, _ in node.chain[:14]) for node in nodes.values()}) == 1
    boundary = rotation_boundary(nodes["v2"])
    signed_with = v1_signatures(nodes["v2"])
    assert signed_with and all(key == V1_HOT.public for h, key in signed_with.items() if h <= boundary)
    assert all(key == NEXT.public for h, key in signed_with.items() if h > boundary)
    assert any(h > boundary for h in signed_with)
    switched = [e for e in events if e["event"] == "signing_key" and e["node"] == "v1"]
    assert switched and switched[0]["from_height"] == boundary + 1 and switched[0]["held"] is True
    assert nodes["v1"].driver.signer.key_missing == 0
    assert not any(e["event"] == "jailed" for e in events)
    assert not any(
        node.driver.stats.rejected for node in nodes.values()
    )  # old-key votes of old heights count


def test_a_validator_without_its_new_key_stops_signing_and_the_others_go_on() -> None:
    nodes, events = run_rotation(hold_new_key=False)
    assert min(node.height for node in nodes.values()) >= 14
    switched = [e for e in events if e["event"] == "signing_key" and e["node"] == "v1"]
    assert switched and switched[0]["held"] is False
    assert nodes["v1"].driver.signer.key_missing > 0
    assert not any(node.driver.stats.rejected for node in nodes.values())
    assert [h for h in v1_signatures(nodes["v2"]) if h >= switched[0]["from_height"]] == []


# ------------------------------------------------------------------ testnet keys


def test_cold_keys_put_owner_keys_outside_the_nodes(tmp_path: Path) -> None:
    layout = Layout.of(tmp_path / "cold")
    genesis = prepare(layout, 2, None, 0, cold_keys=True)
    for validator in genesis.validators:
        owner = load_key_file(layout.owner_key(validator.name))[1]
        signing = load_key_file(layout.key(validator.name))[1]
        assert (validator.public_key, validator.signing_key) == (owner.public, signing.public)
        assert key_file_kind(layout.owner_key(validator.name)) == "owner"
    assert prepare(layout, 2, None, 0) == genesis  # reused, checked against the signing keys


# ------------------------------------------------------------------ no double sign across a rotation


def test_a_rotated_in_key_inherits_the_signing_record_even_across_a_restart(tmp_path: Path) -> None:
    """The record is kept per validator, so the new key cannot sign what conflicts with the old key's votes."""
    ring = KeyRing([HOT3, NEXT])
    first = vote(7, HOT3)
    store = Store(tmp_path / "node.sqlite3")
    signer = GuardedSigner(CHAIN, HOT3, store, validator=V3.address, ring=ring)
    assert signer.sign(replace(first, signature=b""), public_key=HOT3.public) is not None
    store.close()  # a restart: only the disk is left
    store = Store(tmp_path / "node.sqlite3")
    signer = GuardedSigner(CHAIN, NEXT, store, validator=V3.address, ring=ring)
    conflicting = replace(first, block_id=b"\x22" * 32, signature=b"")
    assert signer.sign(conflicting, public_key=NEXT.public) is None and signer.refused == 1
    assert signer.sign(conflicting, public_key=SPARE.public) is None and signer.key_missing == 1
    store.close()


def test_a_culprits_proof_from_before_a_rotation_is_checked_with_the_key_of_its_height() -> None:
    """The simulator's accountability check hands the proof the keys of the fork's height, not today's."""
    state = rotated_state()
    other = replace(vote(4, HOT3), block_id=b"\x33" * 32)
    culprit = Culprit(
        V3.address, DOUBLE_SIGN, (vote(4, HOT3), replace(other, signature=sign_item(CHAIN, other, HOT3)))
    )
    assert culprit_proof_problem(culprit, CHAIN, signing_keys_at(state, 4)) is None
    assert culprit_proof_problem(culprit, CHAIN, state.public_keys) == "proof has a bad signature"
