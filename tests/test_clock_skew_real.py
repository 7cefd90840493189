"""Real nodes over mosquitto: a proposer whose clock runs 30 s ahead cannot drag the chain's time with it.

Block times only go forward (each block is timed at least as late as the one
before), so before the prevote rule of `consensus._is_timely` one proposer
with a fast clock pushed every later block 28-30 s into the future. Now
honest nodes prevote nil on a fresh block timed more than
`CLOCK_PRECISION_MS` ahead of its arrival, and the round moves on to the
next proposer.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from network.transport.broker import BrokerProcess, mosquitto_available
from node.core.consensus import CLOCK_PRECISION_MS
from node.core.messages import Block
from node.runtime.store import Store
from node.runtime.testhooks import CLOCK_OFFSET_ENV
from tests.support.nodes import make_localnet, running, wait_until
from tests.test_runtime_mqtt import min_height

needs_mosquitto = pytest.mark.skipif(not mosquitto_available(), reason="mosquitto not installed")
AHEAD_MS = 30_000


@pytest.mark.slow
@pytest.mark.integration
@needs_mosquitto
@pytest.mark.broker
async def test_a_proposer_with_a_clock_30_s_ahead_leaves_block_times_within_the_precision(
    mosquitto: BrokerProcess, tmp_path: Path
) -> None:
    net = make_localnet(tmp_path / "net", mosquitto.url, 4)
    honest = ["v1", "v2", "v3"]
    for node in net.nodes.values():
        node.genesis_wait_s = 3  # v4's statuses look 30 s ahead, so not fresh: the gate would wait for it
    net.nodes["v4"].extra_env = {CLOCK_OFFSET_ENV: str(AHEAD_MS)}
    with running(net):
        await wait_until(lambda: min_height(net, honest) >= 16, what="sixteen heights", net=net)
    v1 = net.nodes["v1"]
    finalized_at = {e["height"]: round(e["ts"] * 1000) for e in v1.events("finalized")}
    with Store(v1.home / "node.sqlite3") as store:
        blocks = {h: Block.decode(store.finalized(h)[1]) for h in finalized_at if store.finalized(h)}  # type: ignore[index]
    ahead = {h: b.timestamp_ms - finalized_at[h] for h, b in blocks.items()}
    assert max(ahead.values()) <= CLOCK_PRECISION_MS, ahead
    v4 = net.keys["v4"].address  # its proposals are all 30 s ahead: none may make it into the chain
    assert all(b.proposer != v4 for b in blocks.values()), "a block timed 30 s ahead was finalized"
