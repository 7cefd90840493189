"""Ceilings the benchmarks print beside their figures, measured on this machine in the same run."""

from __future__ import annotations

import os
import time

from node.core.keys import Keypair, verify_uncached


def ed25519_verifications_per_s(seconds: float = 2.0) -> float:
    """Uncached Ed25519 verifications per second on one core, of a vote-sized message."""
    keypair = Keypair.deterministic("bench")
    message = os.urandom(120)
    signature = keypair.sign(message)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(200):
            assert verify_uncached(keypair.public, message, signature)
        count += 200
    return count / (time.perf_counter() - start)
