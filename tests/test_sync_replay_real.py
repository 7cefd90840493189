"""A captured sync request, replayed 3,000 times on a real broker, jails nobody and draws little.

Four real `posnet node run` processes over a real mosquitto, with a short
downtime window so a validator starved of CPU would be jailed quickly. v4 is
restarted (a clean stop and start) so that it asks its peers for the blocks
it missed; a raw MQTT client that holds no key copies that request
off the broker and publishes it again 3,000 times. Nobody may be jailed or
slashed, and the bytes of sync answers published meanwhile (counted by a
raw subscriber on the sync response topics) stay within what one honest
request draws from each peer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import pytest

from network.transport.broker import BrokerProcess, mosquitto_available, parse_broker_url
from node.core.codec import decode
from node.core.driver import SYNC_BATCH
from node.core.genesis import Params
from node.core.messages import Kind, parse_envelope
from node.core.syncguard import BUCKET_BYTES
from tests.support.nodes import agree, make_localnet, running, wait_until

REPLAYS = 3_000
PARAMS = Params(commit_wait_ms=1000, downtime_window=10, max_missed_in_window=5, epoch_length=20)
"""Jailed past 5 of 10 missed precommits: a validator starved for some seconds is jailed. Slots of
about a second let v4 restart (to ask for blocks) without missing that many itself."""

pytestmark = [
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.broker,
    pytest.mark.skipif(not mosquitto_available(), reason="mosquitto not installed"),
]


@dataclass
class SyncTraffic:
    """What a raw subscriber saw on the chain's sync topics: requests, and answer bytes per topic."""

    requests: list[bytes] = field(default_factory=list)
    answer_bytes: dict[str, int] = field(default_factory=dict)
    answers: int = 0

    def note(self, topic: str, payload: bytes) -> None:
        if topic.endswith("/sync/req"):
            self.requests.append(payload)
        else:
            self.answer_bytes[topic] = self.answer_bytes.get(topic, 0) + len(payload)
            self.answers += 1

    def total(self) -> int:
        return sum(self.answer_bytes.values())


@contextlib.asynccontextmanager
async def sync_tap(broker: BrokerProcess, chain_id: str) -> AsyncIterator[tuple[SyncTraffic, aiomqtt.Client]]:
    """A keyless client subscribed to every sync topic; it also publishes the replays."""
    host, port = parse_broker_url(broker.url)
    traffic = SyncTraffic()
    ready = asyncio.Event()
    client = aiomqtt.Client(host, port, identifier="posnet-test-sync-replayer")

    async def watch() -> None:
        await client.subscribe([(f"posnet/{chain_id}/sync/req", 0), (f"posnet/{chain_id}/sync/resp/+", 0)])
        ready.set()
        async for message in client.messages:
            traffic.note(str(message.topic), bytes(message.payload))  # type: ignore[arg-type]

    async with client:
        task = asyncio.create_task(watch())
        try:
            await asyncio.wait_for(ready.wait(), 30)
            yield traffic, client
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task


def request_from(traffic: SyncTraffic, sender: bytes, after: int) -> bytes | None:
    """The first sync request on the broker signed for `sender` after the first `after` requests."""
    for payload in traffic.requests[after:]:
        envelope = parse_envelope(payload)
        if envelope.kind == Kind.SYNC_REQUEST and envelope.sender == sender:
            return payload
    return None


async def test_a_sync_request_replayed_3000_times_jails_nobody_and_draws_bounded_answers(
    mosquitto: BrokerProcess, tmp_path: Path
) -> None:
    net = make_localnet(tmp_path / "net", mosquitto.url, 4, params=PARAMS)
    nodes = list(net.nodes.values())
    v4 = net.nodes["v4"]
    async with sync_tap(mosquitto, net.chain_id) as (traffic, client):
        with running(net):
            await wait_until(lambda: min(n.height() for n in nodes) >= 3, what="height 3 everywhere", net=net)
            seen = len(traffic.requests)
            v4.terminate()
            v4.start()  # it asks for the blocks finalized while it was down
            await wait_until(
                lambda: request_from(traffic, net.keys["v4"].address, seen) is not None,
                what="a sync request from v4 on the broker after its restart",
                net=net,
            )
            captured = request_from(traffic, net.keys["v4"].address, seen)
            assert captured is not None
            from_height = decode(parse_envelope(captured).body)[0]
            await wait_until(  # every copy could now draw a full batch of blocks from every peer
                lambda: min(n.height() for n in nodes) >= from_height + SYNC_BATCH,
                what="a full sync batch past the captured request",
                timeout=240,
                net=net,
            )
            before_bytes, before_answers = traffic.total(), traffic.answers
            for _ in range(REPLAYS):
                await client.publish(f"posnet/{net.chain_id}/sync/req", captured, qos=0)
            replayed_at = max(n.height() for n in nodes)
            # Long enough for a starved validator's misses to fill the window and be judged.
            await wait_until(
                lambda: min(n.height() for n in nodes) >= replayed_at + 3 * PARAMS.downtime_window,
                what="three downtime windows after the replay",
                timeout=300,
                net=net,
            )
            drawn_bytes = traffic.total() - before_bytes
            drawn_answers = traffic.answers - before_answers
    sent = REPLAYS * len(captured)
    print(
        f"\nreplayed {REPLAYS} x {len(captured)} B = {sent} B; sync answers meanwhile: {drawn_answers} "
        f"answers, {drawn_bytes} B (amplification {drawn_bytes / sent:.3f}x); "
        f"heights {replayed_at} -> {min(n.height() for n in nodes)}"
    )
    agree(nodes)
    penalties = [(n.name, e) for n in nodes for e in n.events() if e["event"] in ("jailed", "slashed")]
    assert penalties == []
    # Whatever was answered meanwhile (v4's own fresh requests included) stays within each answerer's
    # allowance for one requester: a full bucket, not one answer per copy.
    assert drawn_bytes <= 3 * BUCKET_BYTES
