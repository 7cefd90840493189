"""The mempool: what a node agrees to hold for its blocks, how much of it, and the blocks it builds from it.

Anyone can publish on the tx channel. One oversize transaction from a fresh
key used to sit at the head of every proposer's mempool, so every proposal
carried it and every peer refused the block: the chain never moved again.
These tests hold the pool to its rules: nothing invalid enters, it stays
within its count and byte bounds whatever arrives, a finalized block evicts
what it made invalid, and a block built from it always fits the message
every peer accepts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.core.channels import CONSENSUS
from node.core.codec import MAX_MESSAGE_BYTES, encode
from node.core.consensus import ConsensusMachine, Decided
from node.core.driver import Audience, Driver
from node.core.envelopes import signed_item_bytes, tx_bytes
from node.core.events import PROPOSAL_UNSENT, TX_REFUSED
from node.core.genesis import GenesisAccount, Params
from node.core.keys import Keypair
from node.core.mempool import (
    MEMPOOL_BLOCKS,
    Mempool,
    charge_of,
    encoded_cost,
    stateful_problem,
    stateless_problem,
)
from node.core.messages import Block, CommitCertificate, Kind, Proposal, signing_bytes
from node.core.signer import GuardedSigner, MemoryRecord
from node.core.state import ChainState, apply_block, genesis_state
from node.core.tx import MAX_TX_BYTES, Transfer, sign_tx
from tests.support.chain import ADDR, CHAIN_ID, KEYS, certificate, genesis, make_block

FUNDED = tuple(Keypair.deterministic(f"t/funded{i}") for i in range(4))
FRESH = Keypair.deterministic("t/fresh")  # no account on chain
BALANCE = 1000


def funded_state(accounts: tuple[Keypair, ...] = FUNDED, params: Params | None = None) -> ChainState:
    """The 4-validator test chain plus funded accounts, before height 1."""
    base = genesis(params)
    funded = tuple(GenesisAccount(kp.public, BALANCE) for kp in accounts)
    return genesis_state(replace(base, accounts=funded))


STATE = funded_state()


def transfer(sender: Keypair, nonce: int, amount: int = 1, chain_id: str = CHAIN_ID) -> bytes:
    to = FUNDED[0].address if sender is not FUNDED[0] else FUNDED[1].address
    return sign_tx(chain_id, Transfer(nonce, to, amount), sender)


def signed_junk(size: int, key: Keypair = FRESH) -> bytes:
    """`size` bytes of body, signed like a transaction by a fresh key: shaped right, valid for nothing."""
    body = b"\x00" * size
    return encode((body, key.public, key.sign(signing_bytes(CHAIN_ID, Kind.TX, body))))


def machine(state: ChainState = STATE) -> ConsensusMachine:
    return ConsensusMachine(state, ADDR["alice"])


def after_block(state: ChainState, *txs: bytes) -> ChainState:
    return apply_block(state, make_block(state, txs=txs))[0]


JUNK: dict[str, Callable[[], tuple[ChainState, bytes]]] = {
    "oversize (70,000 signed bytes)": lambda: (STATE, signed_junk(70_000)),
    "just over the tx limit": lambda: (STATE, signed_junk(MAX_TX_BYTES)),
    "undecodable": lambda: (STATE, b"\xc1 not msgpack"),
    "bad signature (another chain)": lambda: (STATE, transfer(FUNDED[0], 0, chain_id="other-chain")),
    "unfunded fresh key": lambda: (STATE, transfer(FRESH, 0)),
    "spends more than the balance": lambda: (STATE, transfer(FUNDED[0], 0, amount=BALANCE + 1)),
    "nonce far ahead": lambda: (STATE, transfer(FUNDED[0], 1000)),
    "replay of an executed tx": lambda: (after_block(STATE, transfer(FUNDED[0], 0)), transfer(FUNDED[0], 0)),
}


@pytest.mark.parametrize("kind", sorted(JUNK))
def test_an_invalid_transaction_never_enters_the_mempool_nor_a_block(kind: str) -> None:
    state, junk = JUNK[kind]()
    node = machine(state)
    node.on_tx(junk)
    assert junk not in node.mempool
    assert junk not in node._build_block().txs


def test_a_senders_next_transactions_in_flight_are_kept_and_proposed_in_nonce_order() -> None:
    node = machine()
    second, first = transfer(FUNDED[0], 1), transfer(FUNDED[0], 0)
    other = transfer(FUNDED[1], 0)
    for tx in (second, other, first):
        node.on_tx(tx)
    assert node._build_block().txs == (other, first, second)


def test_a_second_transaction_for_a_nonce_already_held_is_refused() -> None:
    node = machine()
    node.on_tx(transfer(FUNDED[0], 0, amount=1))
    refusal = node.on_tx(transfer(FUNDED[0], 0, amount=2))
    assert refusal is not None and refusal.reason == "nonce_taken"
    assert len(node.mempool) == 1


def _commit(node: ConsensusMachine, *txs: bytes) -> None:
    block = make_block(node.state, "bob", txs=txs)
    node.on_commit(block, certificate(block.hash, block.height), 0)
    assert node.height == block.height + 1


def test_a_finalized_block_evicts_the_transactions_it_made_invalid() -> None:
    node = machine()
    rival = transfer(FUNDED[0], 0, amount=2)  # loses nonce 0 to the block's transfer
    spender = transfer(FUNDED[1], 1, amount=900)  # its funds go in the block's transfer
    kept = transfer(FUNDED[2], 0)
    for tx in (rival, spender, kept):
        assert node.on_tx(tx) is None
    _commit(node, transfer(FUNDED[0], 0, amount=1), transfer(FUNDED[1], 0, amount=500))
    assert list(node.mempool) == [kept]


def test_what_a_block_included_leaves_the_mempool() -> None:
    node = machine()
    tx = transfer(FUNDED[0], 0)
    node.on_tx(tx)
    _commit(node, tx)
    assert tx not in node.mempool and node.on_tx(tx) is not None  # and its replay is refused


# ----------------------------------------------------------------- properties

KEYS_USED = (*FUNDED, FRESH)
txs = st.one_of(
    st.builds(
        lambda key, nonce, amount: transfer(KEYS_USED[key], nonce, amount),
        st.integers(0, len(KEYS_USED) - 1),
        st.integers(0, 40),
        st.integers(1, BALANCE + 10),
    ),
    st.builds(signed_junk, st.integers(0, 70_000)),
    st.binary(max_size=2000),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(txs, max_size=60), st.integers(1, 20), st.integers(2_000, 40_000))
def test_the_mempool_stays_within_its_bounds_and_holds_only_valid_transactions(
    arrivals: list[bytes], max_block_txs: int, max_bytes: int
) -> None:
    pool = Mempool(max_bytes)
    ledger = STATE.ledger
    for tx in arrivals:
        pool.add(tx, ledger, CHAIN_ID, max_block_txs)
        held = list(pool)
        assert len(held) <= MEMPOOL_BLOCKS * max_block_txs
        assert pool.charged_bytes == sum(charge_of(t) for t in held) <= max_bytes
    for tx in pool:
        signed = stateless_problem(CHAIN_ID, tx)
        assert not hasattr(signed, "reason"), signed
        assert stateful_problem(ledger, signed) is None  # type: ignore[arg-type]
    senders_nonces = [(s.sender, s.tx.nonce) for s in (stateless_problem(CHAIN_ID, t) for t in pool)]  # type: ignore[union-attr]
    assert len(senders_nonces) == len(set(senders_nonces))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(txs, max_size=60), st.integers(0, 30), st.integers(0, 3_000))
def test_a_blocks_transactions_stay_within_the_count_and_bytes_asked(
    arrivals: list[bytes], max_txs: int, max_bytes: int
) -> None:
    pool = Mempool()
    for tx in arrivals:
        pool.add(tx, STATE.ledger, CHAIN_ID, 100)
    chosen = pool.take(STATE.ledger, max_txs, max_bytes)
    assert len(chosen) <= max_txs
    assert sum(encoded_cost(tx) for tx in chosen) + 5 <= max(max_bytes, 5)
    assert all(tx in pool and len(tx) <= MAX_TX_BYTES for tx in chosen)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.builds(signed_junk, st.integers(0, 70_000)), max_size=40), st.integers(1, 10_000))
def test_a_proposal_built_from_whatever_arrived_fits_a_message(junk: list[bytes], max_block_txs: int) -> None:
    state = funded_state(params=Params(max_block_txs=max_block_txs))
    node = machine(state)
    for tx in (*junk, transfer(FUNDED[0], 0)):
        node.on_tx(tx)
    block = node._build_block()
    assert len(block.txs) <= max_block_txs and all(len(tx) <= MAX_TX_BYTES for tx in block.txs)
    proposal = Proposal(block.height, 0, block.hash, -1, ADDR["alice"], b"\0" * 64)
    assert len(signed_item_bytes(CHAIN_ID, proposal, block)) <= MAX_MESSAGE_BYTES


def test_a_block_from_a_mempool_fuller_than_a_message_is_cut_to_fit() -> None:
    """Valid transfers of ~130 bytes: 9,900 in one block would be 1.3 MB, past the 1 MiB message limit."""
    accounts = tuple(Keypair.deterministic(f"t/many{i}") for i in range(300))
    node = machine(funded_state(accounts, Params(max_block_txs=10_000)))
    node.mempool = Mempool(max_bytes=64 << 20)  # more than the default holds: 8 MiB is about one such block
    for nonce in range(33):
        for key in accounts:
            node.on_tx(transfer(key, nonce))
    block = node._build_block()
    proposal = Proposal(block.height, 0, block.hash, -1, ADDR["alice"], b"\0" * 64)
    size = len(signed_item_bytes(CHAIN_ID, proposal, block))
    assert size <= MAX_MESSAGE_BYTES
    assert 0 < len(block.txs) < len(node.mempool)  # cut by bytes, not by count
    assert size > MAX_MESSAGE_BYTES - 4096  # and filled to the limit, not far short


# --------------------------------------------------------------------- driver


class Recorder:
    """Effects that keep what the driver sends and logs."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.logs: list[dict[str, Any]] = []

    def now_ms(self) -> int:
        return 0

    def broadcast(self, channel: str, data: bytes) -> None:
        self.sent.append((channel, data))

    def send_to(self, node: str, data: bytes) -> None:
        self.sent.append((node, data))

    def schedule(self, delay_ms: int, action: Callable[[], None]) -> None:
        pass

    def finalized(self, decided: Decided) -> None:
        pass

    def chain_range(self, start: int, limit: int) -> list[tuple[Block, CommitCertificate]]:
        return []

    def log(self, event: dict[str, Any]) -> None:
        self.logs.append(event)

    def audience(self) -> Audience | None:
        return None


def driver(state: ChainState = STATE) -> tuple[Driver, Recorder]:
    recorder = Recorder()
    node = Driver("alice", KEYS["alice"], GuardedSigner(CHAIN_ID, KEYS["alice"], MemoryRecord()), recorder)
    node.await_boot(state)
    node.machine = ConsensusMachine(state, ADDR["alice"])
    return node, recorder


def test_refused_transactions_are_counted_by_reason_and_an_accounts_own_refusal_is_logged_once() -> None:
    node, recorder = driver()
    overspend = transfer(FUNDED[0], 0, amount=BALANCE + 1)
    for tx in (signed_junk(70_000), transfer(FRESH, 0), overspend, overspend):
        node.receive(tx_bytes(CHAIN_ID, tx, FRESH))
    assert node.stats.rejected == {"tx_oversize": 1, "tx_unknown_account": 1, "tx_unfunded": 2}
    refused = [event for event in recorder.logs if event["event"] == TX_REFUSED]
    assert [(e["code"], e["reason"]) for e in refused] == [
        ("unfunded", f"insufficient balance: {BALANCE} < 1001")
    ]


def test_a_proposal_too_large_for_a_message_is_logged_and_counted_not_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Block building keeps within the limit; should a proposal pass it anyway, it is not dropped silently."""
    node, recorder = driver()
    assert node.machine is not None
    junk = tuple(signed_junk(60_000, Keypair.deterministic(f"t/junk{i}")) for i in range(20))
    huge = make_block(STATE, "alice", txs=junk)
    monkeypatch.setattr(node.machine, "_build_block", lambda: huge)
    out: list[Any] = []
    node.machine._propose(out)
    node.run(out)
    unsent = [event for event in recorder.logs if event["event"] == PROPOSAL_UNSENT]
    assert len(unsent) == 1 and unsent[0]["bytes"] > MAX_MESSAGE_BYTES and unsent[0]["txs"] == len(junk)
    assert node.stats.unsent_proposals == 1
    assert not [channel for channel, _ in recorder.sent if channel == CONSENSUS]
