"""Simulated heights per second of wall time, by validator count, with what bounds them.

Runs the deterministic simulator (the real core, real Ed25519 signatures,
real admission) with no faults and prints a table. Committee size 128, so
past 128 validators each height is voted on by a stake-sampled committee
whose votes only its members receive (the broker model's vote channels);
everyone else follows by the certificate the next proposal carries.

Beside each row: the wall time one height costs, how that cost grew against
the 128-validator row (a committee-bound design grows like the committee,
about 1x; one where every node follows every vote grows like n), the
deliveries per height, the commit certificates verified per height beside
the questions about them answered from the process's shared checks (each
follower asks once per height; see node/core/certificate_checks.py), and
the peak memory of the run (each size runs in its
own process, so the figure is that run's alone). The ceiling printed first is
the machine's own Ed25519 verification rate on one core, measured now.

    python bench/sim_scale.py                          # 4, 64, 128, 1000 validators
    python bench/sim_scale.py --validators 10000 --heights 1
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ceilings import ed25519_verifications_per_s
from network.sim.runner import SimConfig, run_simulation

DEFAULT_HEIGHTS = {4: 300, 64: 30, 128: 10, 1000: 3, 10000: 1}
REFERENCE = 128


def one_run(n: int, heights: int, committee: int, seed: int) -> dict[str, float]:
    """One simulation in this (child) process: its figures and its own peak memory."""
    start = time.perf_counter()
    result = run_simulation(SimConfig(validators=n, heights=heights, seed=seed, committee_size=committee))
    wall = time.perf_counter() - start
    return {
        "done": result.heights_finalized,
        "wall": wall,
        "delivered": result.delivered,
        "ok": float(result.ok),
        "certs_checked": result.certificate_checks[0],
        "certs_answered": result.certificate_checks[1],
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--validators", type=int, nargs="+", default=[4, 64, 128, 1000])
    parser.add_argument(
        "--heights", type=int, nargs="+", help="heights per validator count (default scales down)"
    )
    parser.add_argument("--committee-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    heights = args.heights or [DEFAULT_HEIGHTS.get(n, max(1, 3000 // n)) for n in args.validators]
    if len(heights) != len(args.validators):
        parser.error("--heights needs one count per --validators value")
    verifications = ed25519_verifications_per_s(1.0)
    print(f"ceiling: Ed25519 verifications/s on this machine (one core): {verifications:,.0f}")
    print(
        f"{'validators':>10} {'committee':>9} {'heights':>7} {'wall s':>8} {'heights/s':>10} "
        f"{'ms/height':>10} {'vs n=128':>9} {'deliveries/height':>18} {'certs checked/shared':>21} {'peak MB':>8}"
    )
    reference_ms: float | None = None
    context = multiprocessing.get_context("spawn")
    for n, h in zip(args.validators, heights, strict=True):
        with context.Pool(1) as pool:
            row = pool.apply(one_run, (n, h, args.committee_size, args.seed))
        done = max(int(row["done"]), 1)
        per_height_ms = row["wall"] * 1000 / done
        if n == REFERENCE:
            reference_ms = per_height_ms
        growth = f"{per_height_ms / reference_ms:>8.1f}x" if reference_ms and n >= REFERENCE else f"{'':>9}"
        flag = "" if row["ok"] else "  (INVARIANT VIOLATED)"
        shared = f"{row['certs_checked'] / done:.1f} / {row['certs_answered'] / done:,.0f}"
        print(
            f"{n:>10} {min(n, args.committee_size):>9} {int(row['done']):>7} {row['wall']:>8.2f} "
            f"{row['done'] / row['wall']:>10.2f} {per_height_ms:>10.0f} {growth} "
            f"{row['delivered'] / done:>18,.0f} {shared:>21} {row['peak_mb']:>8.0f}{flag}"
        )


if __name__ == "__main__":
    main()
