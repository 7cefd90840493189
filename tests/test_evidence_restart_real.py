"""Evidence survives kill -9 and restart of every honest node that held it (issue 25), over a real mosquitto.

Four real `posnet node run` processes, v4 with ``--behaviour equivocate``.
Each honest node runs with a test hook that SIGKILLs it the moment evidence
first reaches its protocol memory on disk: after it learned of the
equivocation and before any block could include it. Then v4 is killed too
and never comes back, so nothing can produce that evidence again; the three
honest nodes (3/4 of the stake, a quorum) restart without the hook, and the
culprit must still be tombstoned, in a block after the crash.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from network.transport.broker import BrokerProcess, mosquitto_available
from node.runtime.records import CRASH_AFTER_EVIDENCE_KEPT_ENV
from tests.support.nodes import agree, make_localnet, wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.broker,
    pytest.mark.skipif(not mosquitto_available(), reason="mosquitto not installed"),
]

HONEST = ("v1", "v2", "v3")


async def test_evidence_survives_kill_9_of_every_honest_holder_and_the_culprit_is_tombstoned(
    mosquitto: BrokerProcess, tmp_path: Path
) -> None:
    net = make_localnet(tmp_path / "net", mosquitto.url, 4)
    net.nodes["v4"].behaviour = "equivocate"
    honest = [net.nodes[name] for name in HONEST]
    try:
        for node in honest:
            node.start(env={CRASH_AFTER_EVIDENCE_KEPT_ENV: "1"})
        net.nodes["v4"].start()
        await wait_until(
            lambda: not any(node.running for node in honest),
            what="every honest node killed right after keeping evidence",
            net=net,
        )
        assert all(node.process is not None and node.process.returncode == -9 for node in honest)
        net.nodes["v4"].kill()  # the culprit stays down: nobody can see it equivocate again
        assert not any(e["validator"] == "v4" for node in honest for e in node.events("tombstoned"))
        crashed_at = max(node.height() for node in honest)

        for node in honest:
            node.start()

        def tombstoned_everywhere() -> bool:
            return all(any(e["validator"] == "v4" for e in node.events("tombstoned")) for node in honest)

        await wait_until(tombstoned_everywhere, what="v4 tombstoned on every restarted honest node", net=net)
    finally:
        net.stop()
    for node in honest:
        (event,) = [e for e in node.events("tombstoned") if e["validator"] == "v4"]
        assert event["height"] > crashed_at, (node.name, event, crashed_at)
    agree(honest)
