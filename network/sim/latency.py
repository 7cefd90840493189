"""Finality latency of a simulated run: how long a block took from its proposal to each decision.

A geography slows consensus by its round trips, and this is where that
shows: for every height an honest node finalized, the virtual time from the
block's first proposal being sent (as the delivery record saw it) to that
node's decision. Blocks proposed by a Byzantine node are not seen built and
are left out; so is nothing else, so a node that caught up by sync after a
crash counts its wait (that is finality as it saw it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from network.sim.deliveries import DeliveryRecord
from network.sim.node import SimNode


@dataclass(frozen=True)
class Finality:
    """Percentiles of proposal-to-decision time, in virtual ms, over `samples` decisions."""

    samples: int
    p50_ms: int
    p99_ms: int
    max_ms: int

    def to_json(self) -> dict[str, int]:
        return {"samples": self.samples, "p50": self.p50_ms, "p99": self.p99_ms, "max": self.max_ms}

    def line(self) -> str:
        return (
            f"finality (proposal to decision): p50 {self.p50_ms} ms, p99 {self.p99_ms} ms, "
            f"max {self.max_ms} ms over {self.samples} decisions"
        )


def percentile(ordered: Sequence[int], fraction: float) -> int:
    """Nearest-rank percentile of an ascending sequence (0 when empty): a value that occurred."""
    if not ordered:
        return 0
    rank = max(1, -(-int(fraction * 1000) * len(ordered) // 1000))  # ceil without floats drifting
    return ordered[min(rank, len(ordered)) - 1]


def finality_samples(honest: Iterable[SimNode], deliveries: DeliveryRecord) -> list[int]:
    """Proposal-to-decision ms of every decision of every honest node whose block was seen built."""
    out: list[int] = []
    for node in honest:
        for at_ms, height in node.finalized_at:
            built = deliveries.built_ms(node.chain[height - 1][0].hash)
            if built is not None:
                out.append(at_ms - built)
    return out


def summarize(samples: Iterable[int]) -> Finality:
    ordered = sorted(samples)
    return Finality(
        samples=len(ordered),
        p50_ms=percentile(ordered, 0.5),
        p99_ms=percentile(ordered, 0.99),
        max_ms=ordered[-1] if ordered else 0,
    )
