"""The transport's inbound lanes (consensus first, a fair share for the rest, drops counted per lane)
and the node's two broker connections (consensus apart from the bulk)."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from network.transport.inbox import FAIR_EVERY, LANES, PriorityInbox, lane_of
from network.transport.split import SplitMqttTransport, is_fast
from node.core.channels import (
    CONSENSUS,
    EVIDENCE,
    STATUS_ANY,
    SYNC_REQ,
    TX,
    status_channel,
    sync_resp_channel,
    votes_channel,
)

CHANNEL = {"consensus": CONSENSUS, "status": status_channel("v1"), "sync": SYNC_REQ, "tx": TX}


@pytest.mark.parametrize(
    ("channel", "lane"),
    [
        (CONSENSUS, "consensus"),
        (votes_channel("c0ffee"), "consensus"),
        (EVIDENCE, "consensus"),
        (status_channel("v2"), "status"),
        (SYNC_REQ, "sync"),
        (sync_resp_channel("v3"), "sync"),
        (TX, "tx"),
        ("something/else", "tx"),
    ],
)
def test_each_channel_waits_in_its_groups_lane(channel: str, lane: str) -> None:
    assert lane_of(channel) == lane


def test_lanes_are_served_consensus_then_status_then_sync_then_transactions() -> None:
    inbox: PriorityInbox[str] = PriorityInbox(10)
    for lane in reversed(LANES):
        inbox.put(CHANNEL[lane], lane)
    assert [inbox.get_nowait() for _ in LANES] == list(LANES)
    assert inbox.get_nowait() is None and len(inbox) == 0


def test_a_vote_queued_after_a_flood_of_transactions_is_taken_first() -> None:
    inbox: PriorityInbox[str] = PriorityInbox(1000)
    for i in range(500):
        inbox.put(TX, f"junk-{i}")
    inbox.put(votes_channel("c0ffee"), "vote")
    assert inbox.get_nowait() == "vote"
    assert inbox.get_nowait() == "junk-0"  # first in, first out within a lane


def test_a_full_lane_drops_and_counts_only_its_own_messages() -> None:
    inbox: PriorityInbox[str] = PriorityInbox(3)
    accepted = [inbox.put(TX, f"junk-{i}") for i in range(5)]
    assert accepted == [True, True, True, False, False]
    assert inbox.put(CONSENSUS, "proposal") and inbox.put(status_channel("v1"), "status")
    assert inbox.dropped == {"consensus": 0, "status": 0, "sync": 0, "tx": 2}
    assert len(inbox) == 5


def test_a_lane_is_bounded_in_bytes_too_and_taking_frees_its_room() -> None:
    """2,500 junk transactions of 1 MiB each would be 2.5 GB: a lane holds at most its byte budget."""
    inbox: PriorityInbox[str] = PriorityInbox(2500, lane_bytes=dict.fromkeys(LANES, 3_000))
    accepted = [inbox.put(TX, f"junk-{i}", 1_000) for i in range(5)]
    assert accepted == [True, True, True, False, False] and inbox.dropped["tx"] == 2
    assert inbox.put(CONSENSUS, "proposal", 3_000)  # another lane's budget is its own
    assert not inbox.put(CONSENSUS, "one byte more", 1)
    assert inbox.get_nowait() == "proposal" and inbox.put(CONSENSUS, "now it fits", 3_000)
    assert inbox.get_nowait() == "now it fits" and inbox.get_nowait() == "junk-0"
    assert inbox.put(TX, "room again", 1_000)


def test_the_default_lane_budgets_hold_two_mempools_of_transactions_at_most() -> None:
    inbox: PriorityInbox[str] = PriorityInbox(100_000)
    taken = sum(inbox.put(TX, "junk", 1 << 20) for _ in range(200))
    assert taken == 16 and inbox.dropped["tx"] == 184


def test_lower_lanes_get_a_fair_share_while_consensus_stays_busy() -> None:
    inbox: PriorityInbox[str] = PriorityInbox(1000)
    for _ in range(400):
        inbox.put(CONSENSUS, "vote")
        inbox.put(TX, "tx")
    taken = Counter(inbox.get_nowait() for _ in range(400))
    assert taken["tx"] == 400 // FAIR_EVERY
    assert taken["vote"] == 400 - 400 // FAIR_EVERY


def test_fair_turns_go_round_the_lower_lanes() -> None:
    inbox: PriorityInbox[str] = PriorityInbox(1000)
    for _ in range(100):
        for lane in LANES:
            inbox.put(CHANNEL[lane], lane)
    taken = [inbox.get_nowait() for _ in range(3 * FAIR_EVERY)]
    lower = [lane for lane in taken if lane != "consensus"]
    assert lower == ["status", "sync", "tx"]


def test_without_competition_a_lower_lane_is_served_at_full_rate() -> None:
    inbox: PriorityInbox[str] = PriorityInbox(100)
    for i in range(50):
        inbox.put(SYNC_REQ, f"req-{i}")
    assert [inbox.get_nowait() for _ in range(50)] == [f"req-{i}" for i in range(50)]


async def test_get_waits_for_a_message_and_wakes_when_one_arrives() -> None:
    inbox: PriorityInbox[str] = PriorityInbox(10)
    waiter = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    assert not waiter.done()
    inbox.put(TX, "tx")
    assert await asyncio.wait_for(waiter, 10) == "tx"


def test_sizes_are_checked() -> None:
    with pytest.raises(ValueError):
        PriorityInbox(0)
    with pytest.raises(ValueError):
        PriorityInbox(10, fair_every=1)


# ------------------------------------------------------- the node's two connections


def test_consensus_and_status_travel_on_one_connection_transactions_and_sync_on_the_other() -> None:
    transport = SplitMqttTransport(
        "mqtt://127.0.0.1:1883",
        "chain",
        "v1",
        subscriptions=(CONSENSUS, EVIDENCE, TX, SYNC_REQ, sync_resp_channel("v1"), STATUS_ANY),
        offline_status=b"offline",
    )
    assert transport.fast.subscriptions == (CONSENSUS, EVIDENCE, STATUS_ANY)
    assert transport.bulk.subscriptions == (TX, SYNC_REQ, sync_resp_channel("v1"))
    assert (transport.fast.client_id, transport.bulk.client_id) == ("posnet-chain-v1", "posnet-chain-v1-bulk")
    assert transport.fast.offline_status == b"offline" and transport.bulk.offline_status is None  # one will
    assert transport.connected is transport.fast.connected
    assert [is_fast(c) for c in (votes_channel("c0ffee"), TX, sync_resp_channel("v2"))] == [
        True,
        False,
        False,
    ]
