"""A started node signs nothing until it knows where the chain is and that no other copy of its key signs.

The pure rule (node.core.doppelganger) and a real `Host` driven by hand:
a wiped store learns its earlier copy's messages from the network and never
contradicts them, a node behind the network waits for it, and a message of
our key that we did not sign stops the key for good.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from node.core import doppelganger
from node.core.admission import StatusMsg, Vote, authenticate
from node.core.consensus import Decided
from node.core.driver import Audience
from node.core.envelopes import signed_item_bytes, status_bytes
from node.core.events import DOPPELGANGER, SIGNING_ENABLED
from node.core.hosting import Host
from node.core.messages import Block, CommitCertificate, Kind
from node.core.safety import SignMark, Step
from node.core.signer import GuardedSigner, MemoryRecord
from tests.support.chain import ADDR, CHAIN_ID, KEYS, NAMES, prevote, proposer_name, state0

STATE = state0()
QUIET = 1_000
T0 = 1_800_000_000_000


class Clocked:
    """Effects with a clock the test moves; timers wait until the test fires them."""

    def __init__(self) -> None:
        self.now = T0
        self.sent: list[bytes] = []
        self.logs: list[dict[str, Any]] = []
        self.timers: list[tuple[int, Callable[[], None]]] = []

    def now_ms(self) -> int:
        return self.now

    def broadcast(self, channel: str, data: bytes) -> None:
        self.sent.append(data)

    def send_to(self, node: str, data: bytes) -> None:
        self.sent.append(data)

    def schedule(self, delay_ms: int, action: Callable[[], None]) -> None:
        self.timers.append((self.now + delay_ms, action))

    def finalized(self, decided: Decided) -> None:
        pass

    def chain_range(self, start: int, limit: int) -> list[tuple[Block, CommitCertificate]]:
        return []

    def log(self, event: dict[str, Any]) -> None:
        self.logs.append(event)

    def audience(self) -> Audience | None:
        return None

    def advance(self, to_ms: int) -> None:
        """Move the clock, firing every timer due by then in order."""
        while True:
            due = sorted((t for t in self.timers if t[0] <= to_ms), key=lambda t: t[0])
            if not due:
                break
            self.timers.remove(due[0])
            self.now = max(self.now, due[0][0])
            due[0][1]()
        self.now = to_ms

    def votes_signed_by(self, name: str) -> list[Vote]:
        items = [authenticate(data, CHAIN_ID, STATE.public_keys) for data in self.sent]
        return [v for v in items if isinstance(v, Vote) and v.validator == ADDR[name]]


def listening_host(
    name: str = "alice", record: MemoryRecord | None = None, quiet: int = QUIET
) -> tuple[Host, Clocked]:
    effects = Clocked()
    signer = GuardedSigner(CHAIN_ID, KEYS[name], record if record is not None else MemoryRecord())
    host = Host(f"n-{name}", [(signer, effects)], None, log=effects.logs.append)
    host.listen_first(quiet)
    host.boot(STATE, None)
    return host, effects


def hear_statuses(host: Host, effects: Clocked, heights: dict[str, int]) -> None:
    for name, height in heights.items():
        host.receive(status_bytes(CHAIN_ID, f"n-{name}", height, 0, True, KEYS[name], ts_ms=effects.now))


def logged(effects: Clocked, event: str) -> list[dict[str, Any]]:
    return [e for e in effects.logs if e.get("event") == event]


NON_PROPOSER = next(n for n in NAMES if n != proposer_name(STATE))


# ------------------------------------------------------------------ the pure rule


def status(name: str, height: int, ts_ms: int = T0) -> StatusMsg:
    return StatusMsg(ADDR[name], f"n-{name}", height, 0, True, (ADDR[name],), ts_ms)


def test_the_network_height_is_what_more_than_a_third_of_the_stake_claims() -> None:
    statuses = [status("bob", 9), status("carol", 7), status("dave", 5)]
    assert doppelganger.network_height(STATE, statuses, T0, (ADDR["alice"],)) == 7


def test_one_validator_under_a_third_cannot_send_us_chasing_a_height_nobody_has() -> None:
    statuses = [status("bob", 10_000), status("carol", 3), status("dave", 3)]
    assert doppelganger.network_height(STATE, statuses, T0, (ADDR["alice"],)) == 3


def test_stale_statuses_say_nothing_about_where_the_network_is() -> None:
    old = T0 - 60_000
    statuses = [status("bob", 9, old), status("carol", 9, old), status("dave", 9)]
    assert doppelganger.network_height(STATE, statuses, T0, (ADDR["alice"],)) == 0


@given(
    heights=st.lists(st.integers(1, 1_000), min_size=3, max_size=3),
    liar=st.integers(0, 2),
    lie=st.integers(1, 10**9),
)
def test_a_single_liar_never_raises_the_network_height_above_every_honest_claim(
    heights: list[int], liar: int, lie: int
) -> None:
    names = ("bob", "carol", "dave")
    claims = [lie if i == liar else h for i, h in enumerate(heights)]
    honest = [h for i, h in enumerate(heights) if i != liar]
    statuses = [status(n, h) for n, h in zip(names, claims, strict=True)]
    assert doppelganger.network_height(STATE, statuses, T0, (ADDR["alice"],)) <= max(honest)


def test_the_quiet_period_is_a_relay_cycle_and_a_beat() -> None:
    beat = max(STATE.params.timeout_precommit_ms, 100)
    assert doppelganger.quiet_ms(STATE.params) == 9 * beat


# ------------------------------------------------------------------ a listening host


def test_a_listening_node_signs_nothing_before_the_quiet_period_even_as_proposer() -> None:
    proposer = proposer_name(STATE)
    host, effects = listening_host(proposer)
    hear_statuses(host, effects, {n: 1 for n in NAMES if n != proposer})
    effects.advance(T0 + QUIET - 1)
    assert effects.votes_signed_by(proposer) == [] and effects.sent == []
    assert host.primary.stats.withheld >= 1


def test_a_listening_node_opens_after_the_quiet_period_once_synced() -> None:
    host, effects = listening_host(NON_PROPOSER)
    hear_statuses(host, effects, {n: 1 for n in NAMES if n != NON_PROPOSER})
    effects.advance(T0 + QUIET + 5_000)  # the propose timeout fires past the quiet period: a nil prevote
    assert [v.block_id for v in effects.votes_signed_by(NON_PROPOSER)][:1] == [None]
    (opened,) = logged(effects, SIGNING_ENABLED)
    assert opened["network_height"] == 1 and opened["adopted"] == 0


def test_a_wiped_node_adopts_its_earlier_copys_vote_and_never_contradicts_it() -> None:
    """The earlier copy prevoted a block at (1, 0); the wiped node must not prevote nil there."""
    record = MemoryRecord()
    host, effects = listening_host(NON_PROPOSER, record)
    hear_statuses(host, effects, {n: 1 for n in NAMES if n != NON_PROPOSER})
    earlier = prevote(NON_PROPOSER, 1, 0, b"\x0a" * 32)
    host.receive(signed_item_bytes(CHAIN_ID, earlier))  # a peer re-sends what it holds of the open height
    assert record.last_signed(ADDR[NON_PROPOSER]) == SignMark(1, 0, Step.PREVOTE, b"\x0a" * 32)
    effects.advance(T0 + QUIET + 5_000)
    ours_at_1_0 = [v for v in effects.votes_signed_by(NON_PROPOSER) if (v.height, v.round) == (1, 0)]
    assert all(v.kind != Kind.PREVOTE or v.block_id == earlier.block_id for v in ours_at_1_0)
    assert host.primary.signer.refused >= 1  # the nil prevote the machine asked for was refused


def test_news_of_our_key_restarts_the_quiet_period() -> None:
    host, effects = listening_host(NON_PROPOSER)
    hear_statuses(host, effects, {n: 1 for n in NAMES if n != NON_PROPOSER})
    effects.advance(T0 + QUIET - 100)
    host.receive(signed_item_bytes(CHAIN_ID, prevote(NON_PROPOSER, 1, 0, None)))
    assert not doppelganger.may_open(host.primary.listening, 1, 1, effects.now + 200)  # type: ignore[arg-type]
    assert host.primary.listening is not None and host.primary.listening.adopted == 1


def test_a_node_behind_the_network_does_not_sign_until_it_caught_up() -> None:
    host, effects = listening_host(NON_PROPOSER)
    hear_statuses(host, effects, {n: 5 for n in NAMES if n != NON_PROPOSER})
    effects.advance(T0 + QUIET + 10_000)  # the statuses stay fresh all along
    assert effects.votes_signed_by(NON_PROPOSER) == []
    assert logged(effects, SIGNING_ENABLED) == [] and host.primary.listening is not None


def test_a_committee_that_all_listened_signs_the_step_it_withheld_once_the_wait_is_over() -> None:
    """Nobody prevoted while everyone listened, so no prevote timeout will ever ask again: the
    withheld nil prevote of round 0 must go out when the wait ends, or the chain never starts."""
    quiet = 3 * STATE.params.timeout_propose_ms
    host, effects = listening_host(NON_PROPOSER, quiet=quiet)
    hear_statuses(host, effects, {n: 1 for n in NAMES if n != NON_PROPOSER})
    effects.advance(T0 + quiet - 1)  # the propose timeout fired inside the wait: the prevote was withheld
    assert host.primary.stats.withheld >= 1 and effects.votes_signed_by(NON_PROPOSER) == []
    effects.advance(T0 + quiet + 300)  # no message arrives: only the listening check can act
    assert [(v.height, v.round, v.kind) for v in effects.votes_signed_by(NON_PROPOSER)][:1] == [
        (1, 0, Kind.PREVOTE)
    ]


def test_a_message_of_our_key_past_the_networks_height_is_a_doppelganger_and_stops_the_key() -> None:
    host, effects = listening_host(NON_PROPOSER)
    hear_statuses(host, effects, {n: 1 for n in NAMES if n != NON_PROPOSER})
    host.receive(signed_item_bytes(CHAIN_ID, prevote(NON_PROPOSER, 3, 0, None)))
    (event,) = logged(effects, DOPPELGANGER)
    assert event["height"] == 3 and host.primary.halted
    effects.advance(T0 + QUIET + 20_000)
    assert effects.votes_signed_by(NON_PROPOSER) == []


def test_a_signing_node_that_meets_a_message_of_its_key_it_did_not_sign_stops() -> None:
    host, effects = listening_host(NON_PROPOSER)
    hear_statuses(host, effects, {n: 1 for n in NAMES if n != NON_PROPOSER})
    effects.advance(T0 + QUIET + 5_000)
    assert logged(effects, SIGNING_ENABLED) and host.primary.listening is None
    signed_before = host.primary.stats.signed
    assert signed_before >= 1
    host.receive(signed_item_bytes(CHAIN_ID, prevote(NON_PROPOSER, 1, 7, b"\x0b" * 32)))  # not ours
    assert logged(effects, DOPPELGANGER) and host.primary.halted
    effects.advance(effects.now + 60_000)  # rounds go on: the key signs none of them
    assert host.primary.stats.signed == signed_before


def test_our_own_message_coming_back_is_not_a_doppelganger() -> None:
    host, effects = listening_host(NON_PROPOSER)
    hear_statuses(host, effects, {n: 1 for n in NAMES if n != NON_PROPOSER})
    effects.advance(T0 + QUIET + 5_000)
    for data in list(effects.sent):
        host.receive(data)  # a peer relays what we sent
    assert logged(effects, DOPPELGANGER) == [] and not host.primary.halted


def test_two_heights_of_our_committee_decided_without_news_of_our_key_end_the_wait_early() -> None:
    """On a running chain a restart costs a couple of heights, not the quiet period (22 heights at 200 ms
    slots, enough to jail every validator of a rolling restart)."""
    from node.core.messages import make_certificate
    from node.core.state import apply_block
    from tests.support.chain import make_block, precommit, proposal

    host, effects = listening_host(NON_PROPOSER, quiet=60_000)
    hear_statuses(host, effects, {n: 1 for n in NAMES if n != NON_PROPOSER})
    others = [n for n in NAMES if n != NON_PROPOSER]
    state, last_commit = STATE, None
    for height in (1, 2):
        proposer = proposer_name(state)
        block = make_block(state, proposer, last_commit=last_commit, timestamp_ms=T0 + height)
        host.receive(signed_item_bytes(CHAIN_ID, proposal(proposer, height, 0, block.hash), block))
        votes = [precommit(n, height, 0, block.hash) for n in others]
        for vote in votes:
            host.receive(signed_item_bytes(CHAIN_ID, vote))
        assert host.primary.machine is not None and host.primary.machine.height == height + 1
        state, _ = apply_block(state, block)
        last_commit = make_certificate(votes)
        hear_statuses(host, effects, {n: height + 1 for n in others})
        effects.advance(effects.now + 300)  # the listening check looks every 250 ms
        opened = logged(effects, SIGNING_ENABLED)
        assert bool(opened) == (height == 2), (height, opened)
    assert effects.now - T0 < 60_000 and host.primary.listening is None
