"""`posnet node run --trust HEIGHT:HASH` over a real mosquitto (issue 29, weak subjectivity).

Three of four real nodes run the chain; the fourth joins late with an empty
store. Told to trust a block the network does not have, it takes no block
at all (a history that does not pass through the checkpoint is refused from
its first height, not only at the checkpoint) while the chain goes on; told
the network's real block, it syncs through it and logs reaching it; and
once its store holds the real history, a start under another checkpoint is
refused in one line.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from network.transport.broker import BrokerProcess, mosquitto_available
from tests.support.nodes import REPO_ROOT, make_localnet, wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.broker,
    pytest.mark.skipif(not mosquitto_available(), reason="mosquitto not installed"),
]

TRUSTED_HEIGHT = 8


async def test_a_late_node_takes_only_the_history_through_the_block_it_trusts(
    mosquitto: BrokerProcess, tmp_path: Path
) -> None:
    net = make_localnet(tmp_path / "net", mosquitto.url, 4)
    running = [net.nodes[name] for name in ("v1", "v2", "v3")]
    late = net.nodes["v4"]
    for node in net.nodes.values():
        node.genesis_wait_s = 0
    try:
        for node in running:
            node.start()
        await wait_until(lambda: running[0].height() >= TRUSTED_HEIGHT + 4, what="the chain past 12", net=net)
        real = running[0].finalized()[TRUSTED_HEIGHT]

        late.extra_args = ["--trust", f"{TRUSTED_HEIGHT}:{'ab' * 32}"]
        late.start()
        await wait_until(lambda: bool(late.events("trust")), what="v4 logging its checkpoint", net=net)
        before = running[0].height()
        await wait_until(lambda: running[0].height() >= before + 10, what="ten more heights", net=net)
        await asyncio.sleep(1.0)  # sync answers are rounds of 20 blocks: give a few a chance
        assert late.height() == 0, late.finalized()  # not even the blocks below the checkpoint
        (trusted,) = late.events("trust")
        assert trusted["weak_subjectivity_heights"] > 0 and trusted["reached"] is False
        late.terminate()

        late.extra_args = ["--trust", f"{TRUSTED_HEIGHT}:{real}"]
        late.start()
        await wait_until(
            lambda: late.height() >= running[0].height() - 2 > TRUSTED_HEIGHT, what="v4 synced", net=net
        )
        assert late.finalized()[TRUSTED_HEIGHT] == real
        assert [e["height"] for e in late.events("checkpoint")] == [TRUSTED_HEIGHT]
        late.terminate()
    finally:
        net.stop()

    late.extra_args = ["--trust", f"{TRUSTED_HEIGHT}:{'cd' * 32}"]
    refused = subprocess.run(late.argv(), capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert refused.returncode == 2, refused
    assert len(refused.stderr.strip().splitlines()) == 1 and "another history" in refused.stderr
