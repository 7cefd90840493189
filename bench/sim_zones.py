"""Simulated finality across a geography: the same run with and without zones, side by side.

Runs the deterministic simulator (the real core, real Ed25519 signatures)
with 128 validators and the default committee, once on the plain network
(the fault plan's 1-20 ms) and once spread round-robin over the five regions
of scenarios/zones/five-regions.toml (measured inter-region round trips).
Each row: heights per second of wall time (what the machine bounds) and
finality p50/p99 from a block's proposal to each honest node's decision,
in virtual ms (what the geography bounds: a height needs a proposal and two
vote rounds to cross the farthest pair a quorum spans). The ceiling printed
first is the machine's own Ed25519 verification rate on one core, measured
now, as bench/sim_scale.py prints it.

    python bench/sim_zones.py                      # 128 validators, 10 heights
    python bench/sim_zones.py --validators 16 --heights 40 --zones FILE
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ceilings import ed25519_verifications_per_s
from network.sim.runner import SimConfig, run_simulation
from network.sim.zones import load_zones

FIVE_REGIONS = Path(__file__).resolve().parent.parent / "scenarios" / "zones" / "five-regions.toml"


def one_run(n: int, heights: int, committee: int, seed: int, zones_path: str | None) -> dict[str, float]:
    """One simulation in this (child) process: heights, wall time, finality percentiles."""
    zones = load_zones(Path(zones_path).read_text(), zones_path) if zones_path else None
    start = time.perf_counter()
    result = run_simulation(
        SimConfig(validators=n, heights=heights, seed=seed, committee_size=committee, zones=zones)
    )
    wall = time.perf_counter() - start
    return {
        "done": result.heights_finalized,
        "wall": wall,
        "virtual_ms": result.virtual_ms,
        "p50": result.finality.p50_ms,
        "p99": result.finality.p99_ms,
        "timeouts": result.round_timeouts,
        "ok": float(result.ok),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--validators", type=int, default=128)
    parser.add_argument("--heights", type=int, default=10)
    parser.add_argument("--committee-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--zones", type=Path, default=FIVE_REGIONS, help="zones file for the second row")
    args = parser.parse_args()
    verifications = ed25519_verifications_per_s(1.0)
    print(f"ceiling: Ed25519 verifications/s on this machine (one core): {verifications:,.0f}")
    print(
        f"{'network':>14} {'validators':>10} {'committee':>9} {'heights':>7} {'wall s':>8} {'heights/s':>10} "
        f"{'virtual ms/height':>18} {'finality p50':>13} {'p99':>7} {'timeouts':>8}"
    )
    context = multiprocessing.get_context("spawn")
    for label, zones in (("plain", None), (args.zones.stem, str(args.zones))):
        with context.Pool(1) as pool:
            row = pool.apply(one_run, (args.validators, args.heights, args.committee_size, args.seed, zones))
        done = max(int(row["done"]), 1)
        flag = "" if row["ok"] else "  (INVARIANT VIOLATED)"
        print(
            f"{label:>14} {args.validators:>10} {min(args.validators, args.committee_size):>9} "
            f"{int(row['done']):>7} {row['wall']:>8.2f} {row['done'] / row['wall']:>10.2f} "
            f"{row['virtual_ms'] / done:>18,.0f} {int(row['p50']):>10} ms {int(row['p99']):>4} ms "
            f"{int(row['timeouts']):>8}{flag}"
        )


if __name__ == "__main__":
    main()
