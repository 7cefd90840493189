"""Simulated heights per second of wall time, by validator count.

Runs the deterministic simulator (the real core, real Ed25519 signatures,
real admission) with no faults and prints a table. Committee size 128, so
with 1,000 validators each height is voted on by a stake-sampled committee
while all 1,000 nodes receive and follow every message (the broker model).

    python bench/sim_scale.py                 # 4, 64 and 1000 validators
    python bench/sim_scale.py --validators 4 64 --heights 200 40
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from network.sim.runner import SimConfig, run_simulation
from node.core.keys import Keypair, verify_uncached

DEFAULT_HEIGHTS = {4: 300, 64: 30, 1000: 3}


def ed25519_verifications_per_second(seconds: float = 1.0) -> float:
    """The signature library's own limit on this machine, measured now."""
    key = Keypair.deterministic("bench")
    message = b"x" * 120
    signature = key.sign(message)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(200):
            verify_uncached(key.public, message, signature)
        count += 200
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--validators", type=int, nargs="+", default=[4, 64, 1000])
    parser.add_argument(
        "--heights", type=int, nargs="+", help="heights per validator count (default scales down)"
    )
    parser.add_argument("--committee-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    heights = args.heights or [DEFAULT_HEIGHTS.get(n, max(3, 3000 // n)) for n in args.validators]
    verifications = ed25519_verifications_per_second()
    print(f"Ed25519 verifications/s on this machine (one core): {verifications:,.0f}")
    print(
        f"{'validators':>10} {'committee':>9} {'heights':>7} {'wall s':>8} {'heights/s':>10} {'msgs/height':>12} {'deliveries/s':>13}"
    )
    for n, h in zip(args.validators, heights, strict=True):
        start = time.perf_counter()
        result = run_simulation(
            SimConfig(validators=n, heights=h, seed=args.seed, committee_size=args.committee_size)
        )
        wall = time.perf_counter() - start
        done = result.heights_finalized
        ok = "" if result.ok else "  (INVARIANT VIOLATED)"
        print(
            f"{n:>10} {min(n, args.committee_size):>9} {done:>7} {wall:>8.2f} {done / wall:>10.2f} "
            f"{result.delivered / max(done, 1):>12,.0f} {result.delivered / wall:>13,.0f}{ok}"
        )


if __name__ == "__main__":
    main()
