"""Signed junk leaves nothing behind: what a node keeps per message it judged is bounded, whatever its size.

Anyone can sign with a fresh key. The signature memo once kept every
verified message whole, so a burst of 200 signed 1 MB transactions on the
tx channel pinned 200 MB in each node for good, though every one of them
was refused.
"""

from __future__ import annotations

import gc
import tracemalloc

from node.core.keys import Keypair, verify
from tests.test_mempool import driver
from tests.test_tx_flood_real import signed_junk

MB = 1 << 20


def _kept_after(action: object) -> int:
    """Bytes still allocated after `action()` ran and its garbage was collected."""
    gc.collect()
    tracemalloc.start()
    try:
        action()  # type: ignore[operator]
        gc.collect()
        return tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()


def test_verified_signatures_are_remembered_without_their_messages() -> None:
    key = Keypair.deterministic("t/flood")

    def verify_large() -> None:
        for i in range(20):
            message = i.to_bytes(4, "big") + b"\x00" * MB
            assert verify(key.public, message, key.sign(message))

    assert _kept_after(verify_large) < MB


def test_a_burst_of_signed_1mb_transactions_is_refused_and_forgotten() -> None:
    node, _ = driver()

    def flood() -> None:
        for i in range(30):
            node.receive(signed_junk("posnet-test", MB - 512, i))

    assert _kept_after(flood) < 2 * MB
    assert node.stats.rejected["tx_oversize"] == 30
