"""A sweep of seeds: what each run contributes, and the summary, whatever executed the runs.

Deterministic simulation finds rare bugs by volume, so a sweep may run in
this process, in local worker processes or on a Dask cluster
(network.fleet). Each seed is a pure function of a picklable
`SweepSpec`, and each run comes back as a small `SeedOutcome`; the summary
is built from the outcomes sorted by seed, so it is the same however and
in whatever order they ran, and an interrupted sweep summarizes what it got.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from network.sim.config import SimConfig
from network.sim.plans import FaultPlan, random_fault_plan, random_setup
from network.sim.runner import run_simulation
from network.sim.zones import Zones
from node.core.genesis import parse_params, validator_names


@dataclass(frozen=True)
class SweepSpec:
    """Everything but the seed that decides a run of `posnet sim` (see `config`)."""

    validators: int
    heights: int
    byzantine: int = 0
    byzantine_mode: str = "equivocate"
    committee_size: int | None = None
    stakes: tuple[int, ...] | None = None
    params: tuple[tuple[str, int], ...] = ()
    scenario: str = "given"  # or "random": stakes, committee and downtime window drawn per seed
    faults: FaultPlan | str = field(default_factory=FaultPlan)  # or "random": drawn per seed
    zones: Zones | None = None  # a geography, the same for every seed
    grind_variants: int = 16  # `grind` mode: blocks tried at each boundary (see SimConfig)

    def config(self, seed: int) -> SimConfig:
        """The run of one seed: draws, where asked for, come from the seed alone."""
        names = validator_names(self.validators)
        protected = frozenset(names[self.validators - self.byzantine :]) if self.byzantine else frozenset()
        setup = random_setup(seed, self.validators, self.byzantine) if self.scenario == "random" else None
        plan = random_fault_plan(seed, names, protected) if self.faults == "random" else self.faults
        assert isinstance(plan, FaultPlan)
        drawn = dict(setup.params) if setup else {}
        return SimConfig(
            validators=self.validators,
            heights=self.heights,
            seed=seed,
            byzantine=self.byzantine,
            byzantine_mode=self.byzantine_mode,
            committee_size=self.committee_size or (setup.committee_size if setup else None) or 128,
            faults=plan,
            params=parse_params({**drawn, **dict(self.params)}),
            stakes=self.stakes or (setup.stakes if setup else None),
            zones=self.zones,
            grind_variants=self.grind_variants,
        )


@dataclass(frozen=True)
class SeedOutcome:
    """What one run contributes to a sweep: small, so it travels back from a worker cheaply."""

    seed: int
    ok: bool
    heights: int
    bound_exceeded: bool
    inside: tuple[str, ...]  # violations inside the 1/3 bound (a bug)
    replay: str
    state_hash: str  # equal runs agree on it: the check that two executors ran the same thing
    wall_s: float

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "ok": self.ok,
            "heights": self.heights,
            "bound_exceeded": self.bound_exceeded,
            "state_hash": self.state_hash,
        }


def run_seed(spec: SweepSpec, seed: int) -> SeedOutcome:
    """Run one seed of the sweep (what every executor calls)."""
    result = run_simulation(spec.config(seed))
    return SeedOutcome(
        seed=seed,
        ok=result.ok,
        heights=result.heights_finalized,
        bound_exceeded=bool(result.byzantine_share.exceeded_heights),
        inside=tuple(v.message for v in result.inside_bound),
        replay=result.replay,
        state_hash=result.state_hash,
        wall_s=result.wall_s,
    )


def summarize(outcomes: Iterable[SeedOutcome], seeds: range) -> dict[str, Any]:
    """The sweep's summary, in seed order: the same for the same outcomes however they were run.

    `runs` has one small line per seed that ran (its state hash included),
    so two sweeps can be compared run by run; `missing` counts seeds that
    did not run (an interrupted sweep).
    """
    done = sorted(outcomes, key=lambda outcome: outcome.seed)
    failed = [{"seed": o.seed, "violations": list(o.inside), "replay": o.replay} for o in done if not o.ok]
    return {
        "seeds": len(seeds),
        "ran": len(done),
        "missing": len(seeds) - len(done),
        "ok": sum(o.ok for o in done),
        "failed": failed,
        "bound_exceeded": sum(o.bound_exceeded for o in done),
        "lowest_height": min((o.heights for o in done), default=None),
        "runs": [o.to_json() for o in done],
    }
