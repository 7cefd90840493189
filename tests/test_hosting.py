"""A node's keys behind one chain (node.core.hosting.Host): pipelined catch-up and co-hosted keys.

The same `Host` runs in the simulator and in the real process, so these are
tested here once, on the core alone, with effects that only record.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from network.sim.net import SimNetwork
from network.sim.node import SharedCore, SimNode
from network.sim.plans import FaultPlan
from node.core import admission
from node.core.channels import SYNC_REQ
from node.core.codec import decode
from node.core.consensus import Decided, RequestSync
from node.core.driver import SYNC_BATCH, Audience
from node.core.envelopes import sync_response_bytes
from node.core.genesis import make_genesis
from node.core.hosting import Host
from node.core.keys import Keypair
from node.core.messages import Block, CommitCertificate, Kind, Vote, envelope_for, parse_envelope, sign_item
from node.core.signer import GuardedSigner, MemoryRecord
from node.core.state import ChainState, genesis_state

CHAIN_ID = "posnet-hosting"
KEYS = {name: Keypair.deterministic(f"{CHAIN_ID}/{name}") for name in ("v1", "v2", "v3")}
GENESIS = make_genesis(CHAIN_ID, KEYS, stakes={"v1": 1000, "v2": 1, "v3": 1})  # v1 decides alone


class Recorder:
    """Effects that keep what the driver asks for; timers wait until the test fires them."""

    def __init__(self, timers: list[Callable[[], None]]) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.logs: list[dict[str, Any]] = []
        self.timers = timers

    def now_ms(self) -> int:
        return 0

    def broadcast(self, channel: str, data: bytes) -> None:
        self.sent.append((channel, data))

    def send_to(self, node: str, data: bytes) -> None:
        self.sent.append((f"to/{node}", data))

    def schedule(self, delay_ms: int, action: Callable[[], None]) -> None:
        if delay_ms == 0:
            self.timers.append(action)

    def finalized(self, decided: Decided) -> None:
        pass

    def chain_range(self, start: int, limit: int) -> list[tuple[Block, CommitCertificate]]:
        return []

    def log(self, event: dict[str, Any]) -> None:
        self.logs.append(event)

    def audience(self) -> Audience | None:
        return None


def finalized_chain(heights: int) -> list[tuple[Block, CommitCertificate, ChainState]]:
    """A chain v1 finalized alone in the simulator."""
    net = SimNetwork(["v1"], FaultPlan(), random.Random(0))
    node = SimNode("v1", KEYS["v1"], genesis_state(GENESIS), net, SharedCore(), None, [])
    node.boot()
    net.run_until(lambda: node.height >= heights, 10**9)
    return node.chain


def lagging_host(names: tuple[str, ...] = ("v2",)) -> tuple[Host, list[Recorder], list[dict[str, Any]]]:
    timers: list[Callable[[], None]] = []
    recorders = [Recorder(timers) for _ in names]
    node_log: list[dict[str, Any]] = []
    keys = [
        (GuardedSigner(CHAIN_ID, KEYS[n], MemoryRecord()), r) for n, r in zip(names, recorders, strict=True)
    ]
    host = Host(names[0], keys, None, log=node_log.append)
    host.boot(genesis_state(GENESIS), None)
    return host, recorders, node_log


def sync_requests(recorder: Recorder) -> list[int]:
    """The heights our sync requests ask from."""
    envelopes = [parse_envelope(data) for channel, data in recorder.sent if channel == SYNC_REQ]
    return [decode(e.body)[0] for e in envelopes if e.kind == Kind.SYNC_REQUEST]


CHAIN = finalized_chain(SYNC_BATCH + 5)


def answer(host: Host, recorder: Recorder, blocks: int) -> bytes:
    """v1's answer to a request the host makes now (an answer to nothing it asked is dropped)."""
    host.primary.request_blocks(1)
    channel, request = recorder.sent.pop()
    assert channel == SYNC_REQ
    nonce = decode(parse_envelope(request).body)[2]
    return sync_response_bytes(CHAIN_ID, nonce, [(b, c) for b, c, _ in CHAIN[:blocks]], KEYS["v1"])


def test_a_full_sync_batch_is_logged_once_and_followed_by_a_request_for_the_next() -> None:
    host, (recorder,), node_log = lagging_host()
    host.receive(answer(host, recorder, SYNC_BATCH))
    assert node_log == [{"event": "synced", "from_height": 1, "to_height": SYNC_BATCH, "blocks": SYNC_BATCH}]
    assert sync_requests(recorder) == [SYNC_BATCH + 1]


def test_a_short_sync_answer_is_logged_but_asks_for_nothing_more() -> None:
    host, (recorder,), node_log = lagging_host()
    host.receive(answer(host, recorder, SYNC_BATCH - 1))
    assert [e["blocks"] for e in node_log] == [SYNC_BATCH - 1]
    assert sync_requests(recorder) == []


def test_co_hosted_keys_admit_once_and_hear_each_others_broadcasts() -> None:
    host, (first, second), node_log = lagging_host(("v2", "v3"))
    host.receive(answer(host, first, 3))
    assert [d.machine.height for d in host.drivers if d.machine] == [4, 4]  # both keys followed
    assert [e["event"] for e in node_log] == ["synced"]  # the node's event, once
    assert [e["event"] for e in first.logs].count("finalized") == 3
    assert [e["event"] for e in second.logs].count("finalized") == 3
    timers = first.timers  # shared by both keys' effects
    timers.clear()
    host.primary.request_blocks(9)  # anything the first key broadcasts ...
    assert len(timers) == 1  # ... is handed to the other key through the scheduler
    timers.pop()()
    assert host.drivers[1].stats.rejected == {} and sync_requests(second) == []


def test_a_broadcast_handed_to_co_hosted_keys_is_verified_once_and_only_the_primary_relays(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A process with many keys must not pay a signature check (and a relay) per key per message."""
    host, recorders, _ = lagging_host(("v1", "v2", "v3"))
    assert [d.machine.relays_others for d in host.drivers if d.machine] == [True, False, False]
    checks: list[bytes] = []
    real = admission.authenticate
    monkeypatch.setattr(admission, "authenticate", lambda data, *a: checks.append(data) or real(data, *a))
    timers = recorders[0].timers
    timers.clear()
    host.primary.request_blocks(9)
    assert len(timers) == 2
    while timers:
        timers.pop()()
    assert len(checks) == 1
    assert all(d.stats.rejected == {} for d in host.drivers)


def test_a_gossiped_copy_reaches_only_the_primary_while_the_keys_are_at_the_same_height() -> None:
    """The primary takes every copy as a one-key node would; the other keys take a vote once per height."""
    host, _, _ = lagging_host(("v2", "v3"))
    taken: list[list[object]] = [[], []]
    for index, driver in enumerate(host.drivers):
        real = driver.dispatch
        driver.dispatch = lambda message, real=real, index=index: (
            taken[index].append(message) or real(message)
        )  # type: ignore[method-assign]
    item = Vote(Kind.PREVOTE, 1, 0, None, KEYS["v1"].address)
    signed = replace(item, signature=sign_item(CHAIN_ID, item, KEYS["v1"]))
    for _ in range(3):
        host.dispatch(signed)
    assert (len(taken[0]), len(taken[1]), host.duplicates) == (3, 1, 2)
    ahead = replace(item, height=5)
    ahead = replace(ahead, signature=sign_item(CHAIN_ID, ahead, KEYS["v1"]))
    host.dispatch(ahead)
    host.dispatch(ahead)  # a height still ahead is never taken as seen
    assert len(taken[1]) == 3


def test_only_the_primary_key_asks_peers_for_blocks() -> None:
    """Every key asking would multiply the requests, and every peer answers each one."""
    host, (first, second), _ = lagging_host(("v2", "v3"))
    for driver in host.drivers:
        driver.run([RequestSync(7)])
    assert sync_requests(first) == [7] and sync_requests(second) == []


def test_each_new_epoch_is_logged_with_its_stake_distribution() -> None:
    """The report and the live view read who holds the stake from these lines, without a running node."""
    host, (recorder,), _ = lagging_host()
    host.receive(answer(host, recorder, SYNC_BATCH))
    epochs = [event for event in recorder.logs if event["event"] == "epoch"]
    length = GENESIS.params.epoch_length
    assert [(e["epoch"], e["height"]) for e in epochs] == [
        (n, n * length) for n in range(1, SYNC_BATCH // length + 1)
    ]
    assert all(e["stake"] == {"v1": 1000, "v2": 1, "v3": 1} and e["nakamoto"] == 1 for e in epochs)


def test_admission_judges_by_the_state_the_driver_holds_now_not_the_one_it_last_made_a_context_for() -> None:
    """The driver keeps the admission context it made for one state and height: another state's keys
    (here v2's key rotated out, at the same height) are judged afresh."""
    driver = Host(
        "v1", [(GuardedSigner(CHAIN_ID, KEYS["v1"], MemoryRecord()), Recorder([]))], None, log=print
    ).primary
    state = genesis_state(GENESIS)
    rotated = replace(state, public_keys={**state.public_keys, KEYS["v2"].address: KEYS["v3"].public})
    vote = Vote(Kind.PREVOTE, 1, 0, None, KEYS["v2"].address)
    data = envelope_for(CHAIN_ID, replace(vote, signature=sign_item(CHAIN_ID, vote, KEYS["v2"]))).to_bytes()
    driver.await_boot(state)
    assert isinstance(driver.admit(data), Vote)
    driver.await_boot(rotated)
    assert driver.admit(data) == admission.Rejected("bad_signature", "PREVOTE")
    driver.await_boot(state)
    assert isinstance(driver.admit(data), Vote)
