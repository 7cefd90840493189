"""A process hosting many validator keys never double-signs for any of them across kill -9 (issue 27).

Seven validators over a real mosquitto: v1, v2, v3 one process each, and
one process hosting v4..v7 (4/7 of the stake: nothing is final without
it). That process is killed with SIGKILL three times, each time right after
its Nth signing record reached the disk (N drawn per run, so the kill
lands between a record and the signature it allows, for whichever key
signed last), and restarted. Every vote and proposal published on the
broker is read off it: no key may have signed two different things at one
(height, round, step), and every node must hold one chain.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from network.transport.broker import BrokerProcess, mosquitto_available
from node.runtime.testhooks import CRASH_AFTER_SIGN_RECORD_ENV
from tests.support.nodes import agree, make_localnet, wait_until
from tests.test_runtime_mqtt import consensus_watcher, double_signs

pytestmark = [
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.broker,
    pytest.mark.skipif(not mosquitto_available(), reason="mosquitto not installed"),
]

HOSTED = ("v4", "v5", "v6", "v7")
KILLS = 3


async def test_a_process_hosting_four_keys_never_double_signs_for_any_across_kill_9(
    mosquitto: BrokerProcess, tmp_path: Path
) -> None:
    net = make_localnet(tmp_path / "net", mosquitto.url, 7)
    host = net.nodes["v4"]
    host.key_files = [net.nodes[name].home / "key.json" for name in HOSTED]
    for name in HOSTED[1:]:
        del net.nodes[name]
    rng = random.Random(27)
    async with consensus_watcher(mosquitto, net.chain_id) as seen:
        try:
            net.start(["v1", "v2", "v3"])
            for kill in range(KILLS):
                records = rng.randint(8, 40)
                host.start(env={CRASH_AFTER_SIGN_RECORD_ENV: str(records)})
                await wait_until(lambda: not host.running, what=f"kill {kill + 1}: the host dying", net=net)
                assert host.process is not None and host.process.returncode == -9, host.stderr()
            host.start()
            before = max(net.heights().values())
            await wait_until(
                lambda: min(net.heights().values()) >= before + 5, what="finality after the kills", net=net
            )
        finally:
            net.stop()
    assert not double_signs(seen)
    signers = {key[0] for key in seen}
    assert {net.keys[name].address for name in HOSTED} <= signers  # every hosted key signed
    agree(list(net.nodes.values()))
