"""Sync requests and answers cannot be replayed to effect (node.core.syncguard).

Anyone on the broker can copy a signed sync request or answer and publish it
again. These tests drive a real `Host` through in-memory effects: a copy of a
request is answered once, a requester's answers stay within its byte
allowance and each answer within the byte budget, and an answer the node did
not ask for (or took already) is dropped, counted, and changes nothing.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from network.sim.net import SimNetwork
from network.sim.node import SharedCore, SimNode
from network.sim.plans import FaultPlan
from node.core.admission import AdmissionContext, SyncResponse, admit
from node.core.channels import SYNC_REQ
from node.core.codec import MAX_MESSAGE_BYTES, decode
from node.core.consensus import Decided
from node.core.driver import SYNC_BATCH, Audience
from node.core.envelopes import sync_request_bytes, sync_response_bytes
from node.core.genesis import make_genesis
from node.core.hosting import Host
from node.core.keys import Keypair
from node.core.messages import Block, CommitCertificate, parse_envelope
from node.core.signer import GuardedSigner, MemoryRecord
from node.core.state import genesis_state
from node.core.syncguard import (
    ANSWER_BUDGET_BYTES,
    BUCKET_BYTES,
    REQUEST_MAX_AGE_MS,
    answer_batch,
)

CHAIN_ID = "posnet-syncguard"
KEYS = {name: Keypair.deterministic(f"{CHAIN_ID}/{name}") for name in ("v1", "v2", "v3")}
GENESIS = make_genesis(CHAIN_ID, KEYS, stakes={"v1": 1000, "v2": 1, "v3": 1})  # v1 decides alone
NOW = 5_000_000


class Effects:
    """In-memory effects: a clock the test sets, the chain it serves, and what the driver sent."""

    def __init__(self, chain: list[tuple[Block, CommitCertificate]] | None = None) -> None:
        self.clock = NOW
        self.chain = chain or []
        self.sent: list[tuple[str, bytes]] = []
        self.logs: list[dict[str, Any]] = []

    def now_ms(self) -> int:
        return self.clock

    def broadcast(self, channel: str, data: bytes) -> None:
        self.sent.append((channel, data))

    def send_to(self, node: str, data: bytes) -> None:
        self.sent.append((f"to/{node}", data))

    def schedule(self, delay_ms: int, action: Callable[[], None]) -> None:
        pass

    def finalized(self, decided: Decided) -> None:
        pass

    def chain_range(self, start: int, limit: int) -> list[tuple[Block, CommitCertificate]]:
        return self.chain[start - 1 : start - 1 + limit]

    def log(self, event: dict[str, Any]) -> None:
        self.logs.append(event)

    def audience(self) -> Audience | None:
        return None

    def answers(self) -> list[bytes]:
        return [data for channel, data in self.sent if channel.startswith("to/")]


def finalized_chain(heights: int) -> list[tuple[Block, CommitCertificate]]:
    """A chain v1 finalized alone in the simulator."""
    net = SimNetwork(["v1"], FaultPlan(), random.Random(0))
    node = SimNode("v1", KEYS["v1"], genesis_state(GENESIS), net, SharedCore(), None, [])
    node.boot()
    net.run_until(lambda: node.height >= heights, 10**9)
    return [(block, cert) for block, cert, _ in node.chain]


CHAIN = finalized_chain(SYNC_BATCH + 5)


def host(
    names: tuple[str, ...], chain: list[tuple[Block, CommitCertificate]] | None = None
) -> tuple[Host, Effects]:
    """A node hosting `names`, all keys acting through one set of effects, booted at genesis."""
    effects = Effects(chain)
    keys = [(GuardedSigner(CHAIN_ID, KEYS[n], MemoryRecord()), effects) for n in names]
    node = Host(names[0], keys, None, log=effects.logs.append)
    node.boot(genesis_state(GENESIS), None)
    effects.sent.clear()
    return node, effects


def request(nonce: int, from_height: int = 1) -> bytes:
    return sync_request_bytes(CHAIN_ID, from_height, "v2", nonce, KEYS["v2"])


def asked_nonce(effects: Effects) -> int:
    """The nonce of the last sync request the node broadcast."""
    data = [data for channel, data in effects.sent if channel == SYNC_REQ][-1]
    return int(decode(parse_envelope(data).body)[2])


def answer(nonce: int, blocks: int = 3) -> bytes:
    return sync_response_bytes(CHAIN_ID, nonce, CHAIN[:blocks], KEYS["v1"])


def big_block(height: int, size: int) -> tuple[Block, CommitCertificate]:
    """A block carrying one transaction of `size` bytes (the answer's size is all that matters here)."""
    block, cert = CHAIN[height - 1]
    big = replace(block, txs=(b"x" * size,))
    return big, replace(cert, block_id=big.hash)  # matches its block; its signatures are not checked here


# ------------------------------------------------------------------ answerer


def test_a_replayed_sync_request_is_answered_once() -> None:
    answerer, effects = host(("v1",), CHAIN)
    for _ in range(3_000):
        answerer.receive(request(NOW))
    assert len(effects.answers()) == 1
    assert answerer.primary.stats.rejected == {"replayed": 2_999}


def test_each_fresh_request_is_answered_and_echoes_its_nonce() -> None:
    answerer, effects = host(("v1",), CHAIN)
    answerer.receive(request(NOW))
    answerer.receive(request(NOW + 1))
    echoed = [decode(parse_envelope(data).body)[0] for data in effects.answers()]
    assert echoed == [NOW, NOW + 1]


def test_a_request_older_than_the_freshness_window_is_not_answered() -> None:
    """Older than the requester's newest request by its own clock: a copy the answerer may have forgotten."""
    answerer, effects = host(("v1",), CHAIN)
    answerer.receive(request(NOW))
    answerer.receive(request(NOW - REQUEST_MAX_AGE_MS - 1))
    answerer.receive(request(NOW - REQUEST_MAX_AGE_MS))  # just inside the window
    assert len(effects.answers()) == 2
    assert answerer.primary.stats.rejected == {"stale": 1}


def test_the_freshness_window_follows_the_requesters_clock_not_the_answerers() -> None:
    """Clock skew between hosts must not cost a node its sync answers."""
    answerer, effects = host(("v1",), CHAIN)
    answerer.receive(request(NOW - 10 * REQUEST_MAX_AGE_MS))
    assert len(effects.answers()) == 1 and answerer.primary.stats.rejected == {}


def test_requests_past_the_requesters_byte_allowance_are_not_answered_until_it_refills() -> None:
    answerer, effects = host(("v1",), CHAIN)
    for nonce in range(NOW, NOW + 300):  # distinct, validly signed requests all at one instant
        answerer.receive(request(nonce))
    answered = effects.answers()
    assert 0 < len(answered) < 300
    assert sum(len(data) for data in answered) <= BUCKET_BYTES
    assert answerer.primary.stats.rejected == {"rate_limited": 300 - len(answered)}
    effects.clock += 1_000  # a second later the requester may ask again
    answerer.receive(request(NOW + 1_000))
    assert len(effects.answers()) == len(answered) + 1


def test_a_sync_answer_stays_within_the_byte_budget_and_under_the_message_limit() -> None:
    chain = [big_block(height, 60_000) for height in range(1, SYNC_BATCH + 1)]  # 1.2 MB of blocks in all
    answerer, effects = host(("v1",), chain)
    answerer.receive(request(NOW))
    (data,) = effects.answers()
    assert len(data) <= ANSWER_BUDGET_BYTES
    ctx = AdmissionContext(CHAIN_ID, genesis_state(GENESIS).public_keys, 1)
    admitted = admit(data, ctx)
    assert isinstance(admitted, SyncResponse) and 0 < len(admitted.blocks) < SYNC_BATCH


def test_a_block_bigger_than_the_budget_is_still_sent_alone() -> None:
    """Otherwise a chain holding one could never be synced past it."""
    pairs = [big_block(1, ANSWER_BUDGET_BYTES), big_block(2, 10)]
    assert [block.height for block, _ in answer_batch(pairs)] == [1]
    assert answer_batch([big_block(1, MAX_MESSAGE_BYTES)]) == []


# ----------------------------------------------------------------- requester


def test_an_unsolicited_sync_answer_is_dropped_counted_and_changes_nothing() -> None:
    node, effects = host(("v2", "v3"))
    node.receive(answer(NOW))  # no request of ours carried this nonce
    assert [d.machine.height for d in node.drivers if d.machine] == [1, 1]
    assert node.primary.stats.rejected == {"unsolicited": 1}
    assert [e["event"] for e in effects.logs if e["event"] in ("synced", "finalized")] == []


def test_a_replayed_sync_answer_is_dropped_counted_and_not_acted_on() -> None:
    node, effects = host(("v2", "v3"))
    node.primary.request_blocks(1)
    nonce = asked_nonce(effects)
    node.receive(answer(nonce))
    assert [d.machine.height for d in node.drivers if d.machine] == [4, 4]  # both keys took it
    commits: list[int] = []
    for driver in node.drivers:
        machine = driver.machine
        assert machine is not None
        real = machine.on_commit
        machine.on_commit = lambda *a, real=real: commits.append(1) or real(*a)  # type: ignore[method-assign]
    node.receive(answer(nonce))
    assert commits == []
    assert node.primary.stats.rejected == {"replayed": 1}


def test_answers_from_each_peer_to_one_request_are_each_taken() -> None:
    node, effects = host(("v2",))
    node.primary.request_blocks(1)
    nonce = asked_nonce(effects)
    node.receive(answer(nonce, 2))
    node.receive(sync_response_bytes(CHAIN_ID, nonce, CHAIN[:4], KEYS["v3"]))
    assert node.primary.machine is not None and node.primary.machine.height == 5
    assert node.primary.stats.rejected == {}


def test_a_node_does_not_answer_its_own_sync_request() -> None:
    """A co-hosted key hears the primary's request; answering it would only echo our own blocks."""
    node, effects = host(("v2", "v3"), CHAIN)
    node.receive(sync_request_bytes(CHAIN_ID, 1, "v2", NOW, KEYS["v3"]))
    assert effects.answers() == []


def test_nonces_are_fresh_even_within_one_millisecond() -> None:
    node, effects = host(("v2",))
    for _ in range(3):
        node.primary.request_blocks(1)
    nonces = [int(decode(parse_envelope(d).body)[2]) for c, d in effects.sent if c == SYNC_REQ]
    assert nonces == [NOW, NOW + 1, NOW + 2]
