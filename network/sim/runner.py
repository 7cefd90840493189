"""The deterministic simulator: N validators, the real core, virtual time.

Each simulated node (`network.sim.node.SimNode`) runs the real node core
(`Host`, `Driver`, `ConsensusMachine`), signs through the real
`GuardedSigner` (in-memory signing record that survives simulated crashes)
and receives real signed msgpack envelopes through the real admission path.
Only the network and the clock are simulated (`network.sim.net`). A run is a
pure function of its configuration (`network.sim.config`), so any failure
replays from the one command line `replay_command` prints.

This module runs one: it builds the nodes, schedules the faults, runs
virtual time until every honest node reached the target height (or the run
can no longer pass), and checks the invariants (`network.sim.checks`) into
a `SimResult`.

Past 500 lines: building a run's nodes, running them and reading the
result are one sequence, read top to bottom; what each step checks or
draws lives in its own module (checks, penalties, plans, config).
"""

from __future__ import annotations

import gc
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, TextIO

from network.sim.checks import (
    RESUME_ROUNDS,
    ByzantineShare,
    Violation,
    VoteObserver,
    byzantine_share,
    check_forks,
    check_liveness,
    check_safety,
    classify,
    finalized_after,
    find_forks,
)
from network.sim.config import SimConfig, replay_command
from network.sim.deliveries import DeliveryRecord
from network.sim.latency import Finality, finality_samples, summarize
from network.sim.net import SimNetwork
from network.sim.node import SharedCore, SimNode
from network.sim.penalties import MissTally, check_penalties
from network.sim.plans import FaultPlan, format_fault_spec
from network.sim.trace import Trace
from network.sim.zones import describe as describe_zones
from node.core import ledger as L
from node.core.driver import Audience
from node.core.genesis import Genesis, Params, make_genesis, validator_names
from node.core.keys import Keypair
from node.core.query import distribution_view, validator_summary
from node.core.state import genesis_state

DEADLINE_ROUNDS_PER_HEIGHT = 6  # lossy runs may need several rounds per height
SHOWN_HEIGHTS = 20  # bound-exceeded heights listed in the JSON (all are counted)


@dataclass
class SimResult:
    config: SimConfig
    heights_finalized: int
    violations: list[Violation]
    evidence: int
    validators: dict[str, dict[str, object]]
    virtual_ms: int
    wall_s: float
    delivered: int
    dropped: int
    rejected: dict[str, int]
    round_timeouts: int
    nakamoto_coefficient: int
    events: list[dict[str, Any]]
    node_heights: dict[str, int] = field(default_factory=dict)
    state_hash: str = ""  # digest of the reference node's final state: equal runs agree on all of it
    finalized_at: dict[str, list[tuple[int, int]]] = field(
        default_factory=dict
    )  # node -> (virtual ms, height)
    # active stake by pool, largest first, with shares in ppm (see node.core.query.distribution_view)
    stake_distribution: list[dict[str, Any]] = field(default_factory=list)
    byzantine_share: ByzantineShare = field(default_factory=lambda: ByzantineShare((), 0))
    forks: list[dict[str, Any]] = field(default_factory=list)
    misses: MissTally = field(default_factory=MissTally)  # honest validators' misses, class A and B
    past_target: str | None = None  # why some node finalized more than `--heights`, when one did
    finality: Finality = field(default_factory=lambda: summarize(()))  # proposal to decision, honest nodes
    placement: dict[str, str] = field(default_factory=dict)  # validator -> zone (with --zones)
    # certificates verified, and questions about them answered from memory, for all nodes (not in JSON)
    certificate_checks: tuple[int, int] = (0, 0)

    def messages(self, kind: str, *, inside_only: bool = False) -> list[str]:
        return [
            v.message for v in self.violations if v.kind == kind and not (inside_only and v.outside_bound)
        ]

    @property
    def safety_violations(self) -> list[str]:
        return self.messages("safety")

    @property
    def liveness_violations(self) -> list[str]:
        return self.messages("liveness")

    @property
    def accountability_violations(self) -> list[str]:
        return self.messages("accountability")

    @property
    def penalty_violations(self) -> list[str]:
        return self.messages("penalty")

    @property
    def inside_bound(self) -> list[Violation]:
        """Violations where the model held: each one is a bug."""
        return [v for v in self.violations if not v.outside_bound]

    @property
    def outside_bound(self) -> list[Violation]:
        """Violations at heights with 1/3 or more Byzantine committee power: expected, reported."""
        return [v for v in self.violations if v.outside_bound]

    @property
    def ok(self) -> bool:
        """No violation inside the bound (those outside it are reported, not failures)."""
        return not self.inside_bound

    @property
    def replay(self) -> str:
        return replay_command(self.config)

    def fork_culprits(self) -> list[str]:
        return sorted({name for fork in self.forks for name in fork["culprits"]}, key=lambda n: (len(n), n))

    def to_json(self) -> dict[str, Any]:
        share = self.byzantine_share
        return {
            "seed": self.config.seed,
            "ok": self.ok,
            "heights_finalized": self.heights_finalized,
            "safety_violations": len(self.safety_violations),
            "liveness_violations": len(self.liveness_violations),
            "accountability_violations": len(self.accountability_violations),
            "penalty_violations": len(self.penalty_violations),
            **self.misses.to_json(),
            "violations": [v.message for v in self.violations],
            "violations_inside_bound": [v.message for v in self.inside_bound],
            "violations_outside_bound": [v.message for v in self.outside_bound],
            "bound_exceeded_count": len(share.exceeded_heights),
            "bound_exceeded_heights": list(share.exceeded_heights[:SHOWN_HEIGHTS]),
            "max_byzantine_share_ppm": share.max_share_ppm,
            "fork_culprits": self.fork_culprits(),
            "forks": self.forks,
            "evidence": self.evidence,
            "validators": self.validators,
            "nakamoto_coefficient": self.nakamoto_coefficient,
            "stake_distribution": self.stake_distribution,
            "virtual_ms": self.virtual_ms,
            "wall_s": round(self.wall_s, 3),
            "messages_delivered": self.delivered,
            "messages_dropped": self.dropped,
            "rejected": self.rejected,
            "round_timeouts": self.round_timeouts,
            "node_heights": self.node_heights,
            "past_target": self.past_target,
            "state_hash": self.state_hash,
            "replay": self.replay,
            **self._geography(),
        }

    def _geography(self) -> dict[str, Any]:
        """With zones only: the placement by zone and finality's percentiles (runs without stay as recorded)."""
        zones = self.config.zones
        if zones is None:
            return {}
        return {
            "zones": {
                "file": zones.path,
                "digest": zones.digest,
                "placement": describe_zones(zones, self.placement),
            },
            "finality_ms": self.finality.to_json(),
        }


# ------------------------------------------------------------------ running


def twin_names(byzantine: Iterable[str]) -> dict[str, str]:
    """Twins mode: the network name of each Byzantine validator's second copy (copy -> original)."""
    return {f"{name}-twin": name for name in sorted(byzantine, key=lambda n: (len(n), n))}


def with_twins(plan: FaultPlan, twins: dict[str, str]) -> FaultPlan:
    """`plan` with each twin in the group after its original's in every partition that holds it.

    Twins are most dangerous split: each copy votes with the honest nodes on
    its side, so each side may see a quorum. A twin its original's
    partitions do not name could reach both sides, which is a different
    (weaker) attack, so the copy is placed rather than left out.
    """
    if not twins:
        return plan
    partitions = []
    for partition in plan.partitions:
        groups = [set(group) for group in partition.groups]
        for twin, original in twins.items():
            at = next((i for i, group in enumerate(groups) if original in group), None)
            if at is not None and len(groups) > 1:
                groups[(at + 1) % len(groups)].add(twin)
        partitions.append(replace(partition, groups=tuple(frozenset(group) for group in groups)))
    return replace(plan, partitions=tuple(partitions))


def sim_genesis(config: SimConfig) -> tuple[Genesis, dict[str, Keypair]]:
    names = validator_names(config.validators)
    keys = {name: Keypair.deterministic(f"{config.chain_id}/{name}") for name in names}
    stakes = dict(zip(names, config.stakes, strict=True)) if config.stakes else None
    params = replace(config.params or Params(), committee_size=config.committee_size)
    return make_genesis(config.chain_id, keys, stakes=stakes, params=params), keys


def stake_balanced_halves(stakes: dict[str, int]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The honest nodes in two halves of stake as near equal as a greedy split makes them.

    A coalition forks only if each half with the coalition's stake passes
    2/3, so an attacker splits by stake, not by count: with 34% it needs
    halves within 1% of the stake of each other.
    """
    halves: tuple[list[str], list[str]] = ([], [])
    weight = [0, 0]
    for name in sorted(stakes, key=lambda n: (-stakes[n], n)):
        lighter = 0 if weight[0] <= weight[1] else 1
        halves[lighter].append(name)
        weight[lighter] += stakes[name]
    return tuple(sorted(halves[0])), tuple(sorted(halves[1]))


def run_simulation(
    config: SimConfig, trace: TextIO | None = None, inspect: Callable[[list[SimNode]], None] | None = None
) -> SimResult:
    """Run one seeded simulation and check its invariants; `trace` gets every event as a JSON line.

    `inspect`, when given, is shown the honest nodes once the run ends (a
    bench reads their chains: every finalized block with the state after it).
    """
    with _collector_paused():
        return _run(config, trace, inspect)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while a run lasts; reference counting frees what dies as ever.

    A run builds millions of objects that live as long as it does (every
    node's machine, chain, kept precommits and notes) and almost no cycles
    (a 10,000-validator run: a few hundred objects collected in all), yet each
    full collection walked all of them again: a third of such a run's time.
    What cycles a run leaves are collected once it is over.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _run(
    config: SimConfig, trace: TextIO | None, inspect: Callable[[list[SimNode]], None] | None
) -> SimResult:
    started = time.perf_counter()
    genesis, keys = sim_genesis(config)
    state0 = genesis_state(genesis)
    names = validator_names(config.validators)
    byzantine = set(config.byzantine_names())
    rng = random.Random(config.seed)
    twins = twin_names(byzantine) if config.byzantine_mode == "twins" else {}
    placement = config.zones.assign(names) if config.zones is not None else {}
    on_network = {**placement, **{twin: placement[original] for twin, original in twins.items() if placement}}
    net = SimNetwork(
        [*names, *twins], with_twins(config.faults, twins), rng, config.zones, on_network or None
    )
    if trace is not None:
        net.tracer = Trace(trace)
        net.tracer.header(
            seed=config.seed,
            validators=[{"name": v.name, "stake": v.stake} for v in genesis.validators],
            byzantine={name: config.byzantine_mode for name in sorted(byzantine)},
            faults=format_fault_spec(config.faults),
            committee_size=config.committee_size,
            epoch_length=genesis.params.epoch_length,
            replay=replay_command(config),
            **({"zones": _zones_header(config, placement)} if config.zones is not None else {}),
        )
    core = SharedCore()
    observer = VoteObserver()
    deliveries = DeliveryRecord()
    events: list[dict[str, Any]] = []
    honest_names = [name for name in names if name not in byzantine]
    if config.byzantine_mode == "coordinated":
        halves = stake_balanced_halves(
            {v.name: v.stake for v in genesis.validators if v.name in honest_names}
        )
    else:
        half = (len(honest_names) + 1) // 2
        halves = (tuple(honest_names[:half]), tuple(honest_names[half:]))
    nodes = {
        name: SimNode(
            name,
            keys[name],
            state0,
            net,
            core,
            config.byzantine_mode if name in byzantine else None,
            events,
            Audience(*halves, tuple(sorted(byzantine - {name}))),
            observer,
            None if name in byzantine else deliveries,
        )
        for name in names
    }
    for node in nodes.values():
        node.driver.grind_variants = config.grind_variants if node.behaviour == "grind" else 1
    for twin, original in twins.items():  # twins mode: a second honest copy of each Byzantine key
        nodes[twin] = SimNode(twin, keys[original], state0, net, core, "twins", events, None, observer)
    _schedule_crashes(net, nodes, config.faults)
    for node in nodes.values():
        node.boot()
    for at_ms, envelope in config.transactions:
        net.schedule(at_ms, _publishing(nodes, envelope))
    honest = [node for node in nodes.values() if node.behaviour is None]
    last_heal = config.faults.last_heal_ms()
    deadline = last_heal + (config.heights + 5) * genesis.params.failed_rounds_ms(DEADLINE_ROUNDS_PER_HEIGHT)

    seen_progress = [-1]
    stall_ms = genesis.params.failed_rounds_ms(RESUME_ROUNDS)

    def done() -> bool:
        """Costly over many nodes, so only re-evaluated after some node finalized.

        A run also ends once no honest node finalized anything for RESUME_ROUNDS
        rounds after the last heal: the liveness verdict can no longer change
        to a pass (finality did not resume in bounded rounds), and a stalled
        run would otherwise spend most of a sweep's time waiting for its deadline.
        """
        if core.finalizations == seen_progress[0]:
            return net.now_ms > max(last_heal, core.honest_progress_ms) + stall_ms
        seen_progress[0] = core.finalizations
        lowest = core.lowest_honest_height(len(honest))
        if lowest > observer.settled:
            settled = observer.settled
            observer.settle(_agreed_height(honest, settled, lowest))
            _forget_counted(deliveries, honest[0], settled, observer.settled)
        if lowest < config.heights:
            return False
        return last_heal == 0 or all(finalized_after(node, last_heal) is not None for node in honest)

    net.run_until(done, deadline)
    wall_s = time.perf_counter() - started
    result = _result(config, nodes, honest, net, events, last_heal, observer, deliveries, wall_s, deadline)
    result.finality = summarize(finality_samples(honest, deliveries))
    result.placement = placement
    result.certificate_checks = (core.certificates.checked, core.certificates.answered)
    if inspect is not None:
        inspect(honest)
    return result


def _zones_header(config: SimConfig, placement: dict[str, str]) -> dict[str, Any]:
    """The trace header's geography: which file (and its digest), the one-way matrix, who sits where."""
    zones = config.zones
    assert zones is not None
    return {
        "file": zones.path,
        "digest": zones.digest,
        "jitter_ms": zones.jitter_ms,
        "one_way_ms": {
            a: dict(zip(zones.names, row, strict=True))
            for a, row in zip(zones.names, zones.one_way, strict=True)
        },
        "placement": placement,
    }


def _publishing(nodes: dict[str, SimNode], envelope: bytes) -> Callable[[], None]:
    """A client's transaction reaching every running node, as a broker delivers it."""

    def publish() -> None:
        for node in nodes.values():
            node.host.receive(envelope)

    return publish


def _agreed_height(honest: list[SimNode], since: int, top: int) -> int:
    """The highest height up to `top` (every honest node finalized it) with the same block at each."""
    height = since
    while height < top and len({node.chain[height][0].hash for node in honest}) == 1:
        height += 1
    return height


def past_target(config: SimConfig, honest: list[SimNode], last_heal: int) -> str | None:
    """Why a node finalized more than `config.heights`, or None when none did.

    The run stops once every honest node reached the target and, after a
    fault, finalized again after the last heal; until then the others go
    on. A pool with more than 2/3 of the committee power decides alone at
    the timer floor meanwhile, and a node catching up may pass the target
    in one sync answer. Nodes are not halted at the target: the liveness
    check needs each one to finalize after the last heal.
    """
    top = max(honest, key=lambda node: node.height)
    if top.height <= config.heights:
        return None

    def done_at(node: SimNode) -> int:
        """When the node met the stop condition (or the end, if it never did)."""
        reached = next((at for at, height in node.finalized_at if height >= config.heights), None)
        resumed = finalized_after(node, last_heal) if last_heal else 0
        if reached is None or resumed is None:
            return 1 << 62
        return max(reached, resumed)

    slowest = max(honest, key=done_at)
    why = f"reach height {config.heights}" + (
        f" and finalize after the last heal at {last_heal} ms" if last_heal else ""
    )
    return f"{top.name} reached height {top.height} while the run waited for {slowest.name} to {why}"


def _forget_counted(deliveries: DeliveryRecord, node: SimNode, since: int, settled: int) -> None:
    """Blocks every honest node finalized alike, up to `settled`: the precommits they counted
    can be no honest validator's miss, so their receipts are dropped."""
    for block, _, _ in node.chain[since:settled]:
        if block.last_commit is not None:
            deliveries.counted(block.last_commit.height, block.last_commit.signers())
        for vote in block.late_precommits:
            deliveries.counted(vote.height, (vote.validator,))


def _schedule_crashes(net: SimNetwork, nodes: dict[str, SimNode], plan: FaultPlan) -> None:
    for crash in plan.crashes:
        node = nodes.get(crash.node)
        if node is None:
            raise ValueError(f"crash names unknown node {crash.node!r}")
        net.schedule(crash.window.start_ms, node.crash)
        net.schedule(crash.window.end_ms, node.boot)


def _result(
    config: SimConfig,
    nodes: dict[str, SimNode],
    honest: list[SimNode],
    net: SimNetwork,
    events: list[dict[str, Any]],
    last_heal: int,
    observer: VoteObserver,
    deliveries: DeliveryRecord,
    wall_s: float,
    deadline: int,
) -> SimResult:
    reference = min(honest, key=lambda node: node.height)
    state = reference.state
    rejected: Counter[str] = Counter()
    for node in nodes.values():
        rejected.update(node.driver.stats.rejected)
    share = byzantine_share(honest, (nodes[name].driver.validator for name in config.byzantine_names()))
    fork_violations, fork_reports = check_forks(honest, find_forks(honest, observer))
    safety = check_safety(honest)
    if safety and share.exceeded(safety[0].height):
        share = replace(share, forked_outside=safety[0].height)
    penalties, misses = check_penalties(config, honest, events, deliveries)
    violations = [
        *safety,
        *check_liveness(config, honest, last_heal, state.params, stopped_early=net.now_ms < deadline),
        *(v for node in honest if node.watch is not None for v in node.watch.violations),
        *fork_violations,
        *penalties,
    ]
    return SimResult(
        config=config,
        heights_finalized=reference.height,
        violations=classify(violations, share),
        evidence=sum(len(block.evidence) for block, _, _ in reference.chain),
        validators=validator_summary(state),
        virtual_ms=net.now_ms,
        wall_s=wall_s,
        delivered=net.delivered,
        dropped=net.dropped,
        rejected=dict(sorted(rejected.items())),
        round_timeouts=sum(node.driver.stats.round_timeouts for node in honest),
        nakamoto_coefficient=L.nakamoto_coefficient(state.ledger),
        events=events,
        node_heights={name: node.height for name, node in nodes.items()},
        state_hash=state.digest.hex(),
        finalized_at={name: list(node.finalized_at) for name, node in nodes.items()},
        stake_distribution=distribution_view(state),
        byzantine_share=share,
        forks=fork_reports,
        misses=misses,
        past_target=past_target(config, honest, last_heal),
    )
