"""The start gate: a node at genesis holds height 1 until every validator is online.

Without it, the nodes that boot first finalize without the last one and the
downtime window charges it for heights missed while its process was still
starting: on a loaded machine that jailed an honest validator, and a later
kill of another then stalled the testnet (the CI failure this gate fixes).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from network.transport.broker import BrokerProcess, mosquitto_available
from node.core import startgate
from node.core.admission import Rejected, StatusMsg
from node.core.envelopes import status_bytes
from node.core.events import START_GATE
from node.core.hosting import Host
from node.core.signer import GuardedSigner, MemoryRecord
from tests.support.chain import ADDR, CHAIN_ID, KEYS, NAMES, prevote, state0, wire
from tests.support.nodes import TEST_PARAMS, LocalNet, agree, make_localnet, wait_until

STATE = state0()


NOW = 1_800_000_000_000  # the receiver's clock in these tests


def status(name: str, *hosted: str, online: bool = True, ts_ms: int = NOW) -> StatusMsg:
    pools = tuple(ADDR[h] for h in (hosted or (name,)))
    return StatusMsg(ADDR[name], f"n-{name}", 1, 0, online, pools, ts_ms)


def decide(
    statuses: list[StatusMsg], hosted: tuple[str, ...] = ("alice",), **kwargs: object
) -> startgate.GateDecision:
    options: dict[str, object] = {
        "chain_began": False,
        "waited_ms": 0,
        "wait_ms": 1000,
        "now_ms": NOW,
        **kwargs,
    }
    return startgate.decide(STATE, [ADDR[h] for h in hosted], statuses, **options)  # type: ignore[arg-type]


# ------------------------------------------------------------------ the pure rule


def test_the_gate_opens_when_every_validator_is_online() -> None:
    decision = decide([status("bob"), status("carol"), status("dave")])
    assert decision == startgate.GateDecision(True, startgate.ALL_ONLINE, ())


def test_the_gate_stays_shut_while_one_validator_is_missing() -> None:
    decision = decide([status("bob"), status("carol")])
    assert not decision.open and decision.missing == (ADDR["dave"],)


def test_a_node_saying_offline_counts_as_missing() -> None:
    decision = decide([status("bob"), status("carol"), status("dave", online=False)])
    assert not decision.open and decision.missing == (ADDR["dave"],)


def test_a_node_hosting_several_validators_brings_them_all_online() -> None:
    assert decide([status("bob", "bob", "carol", "dave")]).open


def test_the_gate_opens_once_the_chain_began_or_at_the_deadline() -> None:
    assert decide([status("bob")], chain_began=True).reason == startgate.CHAIN_BEGAN
    late = decide([status("bob")], waited_ms=1000)
    assert late.open and late.reason == startgate.DEADLINE
    assert set(late.missing) == {ADDR["carol"], ADDR["dave"]}
    assert not decide([status("bob")], waited_ms=999).open


def test_only_a_node_at_genesis_with_a_wait_waits() -> None:
    assert startgate.waits_at_genesis(STATE, 1000)
    assert not startgate.waits_at_genesis(STATE, 0)
    assert not startgate.waits_at_genesis(replace(STATE, height=5), 1000)  # a restart joins at once


@given(online=st.sets(st.sampled_from(NAMES)), hosted=st.sets(st.sampled_from(NAMES), min_size=1))
def test_the_gate_misses_exactly_the_validators_nobody_is_up_for(online: set[str], hosted: set[str]) -> None:
    statuses = [status(name) for name in sorted(online)]
    decision = decide(statuses, tuple(sorted(hosted)))
    assert {a for a in decision.missing} == {ADDR[n] for n in NAMES} - {ADDR[n] for n in online | hosted}
    assert decision.open == (not decision.missing)


# ------------------------------------------------------------------ a host awaiting boot


class Quiet:
    """Effects of a key that never gets to act: the gate is asked before the machine runs."""

    def now_ms(self) -> int:
        return NOW

    def broadcast(self, channel: str, data: bytes) -> None:
        raise AssertionError("a node awaiting boot sends nothing")

    send_to = broadcast

    def schedule(self, delay_ms: int, action: Callable[[], None]) -> None:
        raise AssertionError("a node awaiting boot schedules nothing")

    def finalized(self, decided: object) -> None:
        raise AssertionError("a node awaiting boot decides nothing")

    def chain_range(self, start: int, limit: int) -> list[Any]:
        return []

    def log(self, event: dict[str, Any]) -> None:
        pass

    def audience(self) -> None:
        return None


def awaiting(name: str = "alice") -> Host:
    host = Host(
        f"n-{name}",
        [(GuardedSigner(CHAIN_ID, KEYS[name], MemoryRecord()), Quiet())],
        None,
        log=lambda event: None,
    )
    host.await_boot(STATE)
    return host


def test_a_host_awaiting_boot_opens_once_it_heard_every_other_validator_online() -> None:
    host = awaiting()
    for name in ("bob", "carol"):
        host.receive(status_bytes(CHAIN_ID, f"n-{name}", 1, 0, True, KEYS[name], ts_ms=NOW))
    assert host.start_gate(0, 1000).missing == (ADDR["dave"],)
    host.receive(status_bytes(CHAIN_ID, "n-dave", 1, 0, True, KEYS["dave"], ts_ms=NOW))
    assert host.start_gate(0, 1000) == startgate.GateDecision(True, startgate.ALL_ONLINE, ())
    assert host.primary.machine is None  # the gate only decides; the runtime boots


def test_a_host_awaiting_boot_opens_when_a_vote_shows_the_chain_began() -> None:
    host = awaiting()
    assert not host.start_gate(999, 1000).open
    host.receive(wire(prevote("bob", 1, 0, None)))
    decision = host.start_gate(0, 1000)
    assert decision.open and decision.reason == startgate.CHAIN_BEGAN, decision


def test_a_stale_online_status_counts_as_missing() -> None:
    """An old status re-published after its node died (anyone on the broker can) is not a live validator."""
    stale = NOW - startgate.STATUS_FRESH_MS - 1
    decision = decide([status("bob"), status("carol"), status("dave", ts_ms=stale)])
    assert not decision.open and decision.missing == (ADDR["dave"],)


def test_a_status_signed_far_ahead_of_our_clock_is_not_fresh_either() -> None:
    ahead = NOW + startgate.STATUS_FRESH_MS + 1
    assert decide([status("bob"), status("carol"), status("dave", ts_ms=ahead)]).missing == (ADDR["dave"],)


def test_a_replayed_old_status_does_not_replace_a_newer_one() -> None:
    host = awaiting()
    for name in ("bob", "carol"):
        host.receive(status_bytes(CHAIN_ID, f"n-{name}", 1, 0, True, KEYS[name], ts_ms=NOW))
    dave_now = status_bytes(CHAIN_ID, "n-dave", 1, 0, False, KEYS["dave"], ts_ms=NOW)
    dave_before = status_bytes(CHAIN_ID, "n-dave", 1, 0, True, KEYS["dave"], ts_ms=NOW - 1000)
    host.receive(dave_now)
    host.receive(dave_before)  # a captured copy from a second earlier, replayed after the real one
    assert host.primary.peers["n-dave"].ts_ms == NOW and not host.primary.peers["n-dave"].online
    assert host.start_gate(0, 1000).missing == (ADDR["dave"],)


def test_a_replayed_status_from_an_earlier_run_does_not_open_the_gate() -> None:
    host = awaiting()
    for name in ("bob", "carol"):
        host.receive(status_bytes(CHAIN_ID, f"n-{name}", 1, 0, True, KEYS[name], ts_ms=NOW))
    host.receive(status_bytes(CHAIN_ID, "n-dave", 1, 0, True, KEYS["dave"], ts_ms=NOW - 60_000))
    decision = host.start_gate(0, 1000)
    assert not decision.open and decision.missing == (ADDR["dave"],)


def test_a_forged_vote_does_not_open_the_gate() -> None:
    host = awaiting()
    vote = prevote("bob", 1, 0, None)
    forged = replace(vote, signature=bytes(64))
    assert isinstance(host.receive(wire(forged)), Rejected)
    assert not host.start_gate(0, 1000).open


def test_a_host_that_was_not_told_to_await_boot_has_no_gate() -> None:
    host = Host(
        "n-alice",
        [(GuardedSigner(CHAIN_ID, KEYS["alice"], MemoryRecord()), Quiet())],
        None,
        log=lambda event: None,
    )
    with pytest.raises(RuntimeError):
        host.start_gate(0, 1000)


# ------------------------------------------------------------------ real nodes

STRICT = replace(TEST_PARAMS, downtime_window=10, max_missed_in_window=3)
needs_mosquitto = pytest.mark.skipif(not mosquitto_available(), reason="mosquitto not installed")


def _gate(net: LocalNet, name: str) -> list[dict[str, object]]:
    return net.nodes[name].events(START_GATE)


@pytest.mark.integration
@pytest.mark.broker
@needs_mosquitto
async def test_a_validator_booting_late_is_waited_for_and_never_jailed(
    mosquitto: BrokerProcess, tmp_path: Path
) -> None:
    """Three nodes up, the fourth seconds later: nobody finalizes before it, nobody is charged downtime.

    The window is short (more than 3 of 10 missed jails) so that the five
    seconds the fourth node is late cost it more than that: without the gate
    it is jailed (this test failed that way before the gate existed).
    """
    net = make_localnet(tmp_path / "net", mosquitto.url, 4, params=STRICT)
    for node in net.nodes.values():
        node.genesis_wait_s = 120
    try:
        net.start(["v1", "v2", "v3"])
        await wait_until(
            lambda: all(net.nodes[n].events("broker_connected") for n in ("v1", "v2", "v3")),
            what="three nodes connected",
            net=net,
        )
        time.sleep(5.0)
        assert net.heights() == dict.fromkeys(net.nodes, 0), net.diagnostics()
        assert not any(_gate(net, n) for n in net.nodes)
        net.start(["v4"])
        await wait_until(lambda: min(net.heights().values()) >= 30, what="all four at height 30", net=net)
    finally:
        net.stop()
    agree(list(net.nodes.values()))
    for name, node in net.nodes.items():
        (gate,) = _gate(net, name)
        assert gate["reason"] == startgate.ALL_ONLINE and gate["missing"] == [], gate
        assert not node.events("jailed"), node.events("jailed")
    assert int(_gate(net, "v1")[0]["waited_ms"]) >= 5000  # type: ignore[call-overload]


@pytest.mark.integration
@pytest.mark.broker
@needs_mosquitto
async def test_the_gate_gives_up_at_its_deadline_and_names_who_was_missing(
    mosquitto: BrokerProcess, tmp_path: Path
) -> None:
    net = make_localnet(tmp_path / "net", mosquitto.url, 4)
    for node in net.nodes.values():
        node.genesis_wait_s = 1
    try:
        net.start(["v1", "v2", "v3"])
        await wait_until(
            lambda: min(net.heights()[n] for n in ("v1", "v2", "v3")) >= 3, what="height 3", net=net
        )
    finally:
        net.stop()
    for name in ("v1", "v2", "v3"):
        (gate,) = _gate(net, name)
        assert gate["reason"] == startgate.DEADLINE and gate["missing"] == ["v4"], gate
