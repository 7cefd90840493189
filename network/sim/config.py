"""What one simulated run is: its configuration, the command line that replays it, and random draws of it.

A run is a pure function of its `SimConfig`; `replay_command` writes every
value that changes it out as one ``posnet sim`` command line, so a failure
found by a sweep (`random_run_config`) replays alone.
"""

from __future__ import annotations

import random
import shlex
from dataclasses import dataclass, field, fields

from network.sim.plans import FaultPlan, format_fault_spec, random_fault_plan, random_setup
from network.sim.zones import Zones
from node.core.behaviours import SIM_BYZANTINE_MODES
from node.core.genesis import Params, parse_params, validator_names


@dataclass(frozen=True)
class SimConfig:
    validators: int = 4
    heights: int = 20
    seed: int = 0
    byzantine: int = 0
    byzantine_mode: str = "equivocate"
    committee_size: int = 128
    faults: FaultPlan = field(default_factory=FaultPlan)
    params: Params | None = None
    stakes: tuple[int, ...] | None = None
    chain_id: str = "posnet-sim"
    # signed transaction envelopes a client publishes at a virtual time (ms): every node receives them
    # (runs built in code, such as the economy tests; a command line cannot carry them)
    transactions: tuple[tuple[int, bytes], ...] = ()
    # a geography (`--zones FILE`): each copy also travels its zones' one-way latency
    zones: Zones | None = None
    # `grind` mode: the block variants a grinder tries at each epoch boundary it proposes (1 = honest)
    grind_variants: int = 16

    def byzantine_names(self) -> list[str]:
        """The last `byzantine` validators misbehave (the CLI's and the sweeps' convention)."""
        names = validator_names(self.validators)
        return names[len(names) - self.byzantine :] if self.byzantine else []


def param_overrides(params: Params | None) -> list[tuple[str, int]]:
    """The genesis parameters that differ from the defaults (committee size aside: it has its own option)."""
    if params is None:
        return []
    default = Params()
    return [
        (f.name, getattr(params, f.name))
        for f in fields(Params)
        if f.name != "committee_size" and getattr(params, f.name) != getattr(default, f.name)
    ]


def replay_command(config: SimConfig) -> str:
    """The one `posnet sim` command line that runs exactly this configuration again, alone.

    Everything that changes the run is written out, drawn values included
    (stakes, parameters, the fault spec in full), so the line still replays
    the run after the random draws that produced it change.
    """
    args = ["posnet", "sim", "--validators", str(config.validators), "--heights", str(config.heights)]
    args += ["--seed", str(config.seed), "--committee-size", str(config.committee_size)]
    if config.byzantine:
        args += ["--byzantine", str(config.byzantine), "--byzantine-mode", config.byzantine_mode]
        if config.byzantine_mode == "grind":
            args += ["--grind-variants", str(config.grind_variants)]
    if config.stakes:
        args += ["--stakes", ",".join(str(stake) for stake in config.stakes)]
    for name, value in param_overrides(config.params):
        args += ["--param", f"{name}={value}"]
    spec = format_fault_spec(config.faults)
    if spec:
        args += ["--faults", spec]
    if config.zones is not None:
        args += ["--zones", config.zones.path]
    return shlex.join(args)


def random_run_config(
    seed: int, heights: int = 10, modes: tuple[str, ...] = SIM_BYZANTINE_MODES
) -> SimConfig:
    """A whole run drawn from `seed`: the space a sweep explores, inside the 1/3 bound by stake.

    4-10 validators; up to half of them Byzantine (one of `modes`) but with
    less than 1/3 of the stake (`random_setup` scales them down); stakes
    equal, uneven, power-law or at the 1/3 edge; sometimes a committee
    smaller than the set, which may still give one height's committee 1/3
    or more Byzantine power (the run then reports it); a short downtime
    window; and a random fault plan that heals. `replay_command` writes
    every drawn value out, so a run found this way replays alone.
    """
    rng = random.Random(f"run/{seed}")
    validators = rng.choice((4, 4, 5, 6, 7, 7, 10))
    byzantine = rng.randint(0, validators // 2)
    names = validator_names(validators)
    protected = frozenset(names[validators - byzantine :])
    setup = random_setup(seed, validators, byzantine)
    mode = rng.choice(modes)
    return SimConfig(
        validators=validators,
        heights=heights,
        seed=seed,
        byzantine=byzantine,
        byzantine_mode=mode
        if byzantine
        else SimConfig.byzantine_mode,  # no Byzantine: the mode means nothing
        committee_size=setup.committee_size or SimConfig.committee_size,
        faults=random_fault_plan(seed, names, protected),
        params=parse_params(dict(setup.params)),
        stakes=setup.stakes,
    )
