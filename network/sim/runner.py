"""The deterministic simulator: N validators, the real core, virtual time.

Each simulated node runs the real `ConsensusMachine`, signs through the real
`GuardedSigner` (in-memory signing record that survives simulated crashes)
and receives real signed msgpack envelopes through the real admission path.
Only the network and the clock are simulated. A run is a pure function of
its configuration, so any failure replays from the one command line
`replay_command` prints (stakes, parameters and faults written out).

After every run the invariants are checked:
- safety: no two honest nodes finalized different blocks at one height;
- liveness: every honest node reaches the target height, and after the last
  fault heals each honest node finalizes again within a bounded number of rounds;
- accountability: every equivocation an honest node was shown, at the height
  it was working on, produced evidence; and when honest nodes finalized
  conflicting blocks, the signed votes a global observer saw convict more
  than 1/3 of that height's committee power (accountable safety), and every
  validator whose precommit is in both certificates ends tombstoned on the
  honest chains that ran on long enough to include the evidence;
- penalties: in a run without crashes or partitions no honest validator is jailed.

The guarantees hold only while Byzantine validators hold less than 1/3 of
each height's committee power. The run measures that share per height and
sorts every violation into inside the bound (a bug) or outside it (expected,
reported, not a failure); the accountable-safety checks are bugs whatever the
share, since they are exactly what must hold when the bound does not.

One module past 500 lines for now: the run's configuration and replay line,
the simulated node, the runner and the invariant checks. The checks read the
simulated nodes' histories directly; they move to a module of their own
when the simulator becomes a package (runner, network, faults, checks).
"""

from __future__ import annotations

import random
import shlex
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from itertools import combinations
from typing import Any

from network.sim.net import SimNetwork
from network.sim.plans import FaultPlan, format_fault_spec, random_fault_plan, random_setup
from node.core import ledger as L
from node.core.accountability import (
    ForkAccount,
    certificate_conflict_evidence,
    culprit_proof_problem,
    fork_culprits,
)
from node.core.admission import Admitted, AuthCache, ProposalMsg
from node.core.behaviours import SIM_BYZANTINE_MODES
from node.core.codec import DecodeError
from node.core.consensus import MAX_ROUND_AHEAD, ConsensusMachine, Decided
from node.core.driver import Driver
from node.core.events import EVIDENCE, LEDGER_PENALTIES
from node.core.genesis import PPM, Genesis, Params, make_genesis, parse_params, validator_names
from node.core.keys import Keypair
from node.core.messages import (
    VOTE_KINDS,
    Block,
    CommitCertificate,
    Proposal,
    Vote,
    parse_envelope,
    signed_kind,
    signer_of,
)
from node.core.query import distribution_view
from node.core.signer import GuardedSigner, MemoryRecord
from node.core.state import (
    ChainState,
    apply_block,
    block_problem,
    genesis_state,
    proposer_of,
    validator_summary,
)
from node.core.verdicts import conflicting_finality

RESUME_ROUNDS = 10
DEADLINE_ROUNDS_PER_HEIGHT = 6  # lossy runs may need several rounds per height
EVIDENCE_INCLUSION_HEIGHTS = 5  # a chain this far past a fork has had time to include its evidence
SHOWN_HEIGHTS = 20  # bound-exceeded heights listed in the JSON (all are counted)
VIOLATION_KINDS = ("safety", "liveness", "accountability", "penalty")


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
    if config.stakes:
        args += ["--stakes", ",".join(str(stake) for stake in config.stakes)]
    for name, value in param_overrides(config.params):
        args += ["--param", f"{name}={value}"]
    spec = format_fault_spec(config.faults)
    if spec:
        args += ["--faults", spec]
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


@dataclass(frozen=True)
class Violation:
    """One broken invariant, and whether the run was inside the model where it broke.

    `height` is the height whose committee judges it: when Byzantine
    validators held 1/3 or more of that committee's power the protocol
    promises nothing there, so the violation is expected (`outside_bound`).
    None means a bug whatever the Byzantine share (accountable safety).
    """

    kind: str  # one of VIOLATION_KINDS
    message: str
    height: int | None = None
    outside_bound: bool = False


@dataclass(frozen=True)
class ByzantineShare:
    """How much of each height's committee power the Byzantine validators held."""

    exceeded_heights: tuple[int, ...]  # heights where it was 1/3 or more: outside the model
    max_share_ppm: int
    forked_outside: int | None = None  # honest chains parted here, outside the bound

    def exceeded(self, height: int | None) -> bool:
        """Outside the model at `height`: too much Byzantine power there, or past a fork it caused.

        Once honest nodes finalized different blocks outside the bound they
        sit on different chains, each with too few honest voters to go on:
        the stall that follows is the fork's consequence, not a new bug.
        """
        if height is None:
            return False
        return height in self.exceeded_heights or (
            self.forked_outside is not None and height > self.forked_outside
        )


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
            "state_hash": self.state_hash,
            "replay": self.replay,
        }


class VoteObserver:
    """Every signed vote sent on the network, as a raw subscriber on the broker would see them.

    The fork check needs all votes of a height, not only those some node
    happened to receive. It stays cheap: each distinct message is decoded
    once, and heights every honest node finalized alike are dropped (no
    fork can appear there any more).
    """

    def __init__(self) -> None:
        self.votes: dict[int, set[Vote]] = {}
        self.settled = 0  # heights up to here are final and equal on every honest node
        self._seen: set[bytes] = set()

    def observe(self, data: bytes) -> None:
        if data in self._seen:
            return
        self._seen.add(data)
        try:
            envelope = parse_envelope(data)
            if envelope.kind not in VOTE_KINDS:
                return
            vote = Vote.from_body(envelope.kind, envelope.body, envelope.signature)
        except DecodeError:
            return
        if vote.height > self.settled:
            self.votes.setdefault(vote.height, set()).add(vote)

    def settle(self, height: int) -> None:
        """Forget the votes of heights up to `height`: every honest node finalized them alike."""
        if height <= self.settled:
            return
        for done in range(self.settled + 1, height + 1):
            self.votes.pop(done, None)
        self.settled = height
        self._seen.clear()

    def at(self, height: int) -> set[Vote]:
        return self.votes.get(height, set())


class SharedCore:
    """Memoised pure functions shared by all simulated nodes.

    Every honest node applies the same blocks to equal states; computing the
    transition once per (state, block) instead of once per node is what lets
    a thousand nodes run in one process. The functions are pure, so sharing
    results cannot change any outcome.
    """

    def __init__(self) -> None:
        self._applied: dict[tuple[int, bytes], tuple[ChainState, Any]] = {}
        self._checked: dict[tuple[int, bytes], tuple[ChainState, str | None]] = {}
        self.auth_cache: AuthCache = {}
        self.finalizations = 0  # bumped by every node; lets the run loop skip its costly done check
        self.honest_progress_ms = 0  # when an honest node last finalized a block

    def transition(self, state: ChainState, block: Block) -> tuple[ChainState, tuple[L.LedgerEvent, ...]]:
        key = (id(state), block.hash)
        hit = self._applied.get(key)
        if hit is None or hit[0] is not state:
            hit = self._applied[key] = (state, apply_block(state, block))
        return hit[1]

    def check(self, state: ChainState, block: Block) -> str | None:
        key = (id(state), block.hash)
        hit = self._checked.get(key)
        if hit is None or hit[0] is not state:
            hit = self._checked[key] = (state, block_problem(state, block))
        return hit[1]


class SimNode:
    """One simulated validator process: the shared driver plus a simulated 'disk'.

    It implements the driver's `Effects` over the simulated network and keeps
    what a real node keeps on disk (finalized chain, signing record and
    journal), which survives a simulated crash while everything else is lost.
    """

    def __init__(
        self,
        name: str,
        keypair: Keypair,
        genesis: ChainState,
        net: SimNetwork,
        core: SharedCore,
        behaviour: str | None,
        events: list[dict[str, Any]],
        audience: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]] | None = None,
        observer: VoteObserver | None = None,
    ) -> None:
        self.name = name
        self.observer = observer
        self.net = net
        self.core = core
        self.genesis = genesis
        self.events = events
        self.record = MemoryRecord()
        self.chain: list[tuple[Block, CommitCertificate, ChainState]] = []
        self.finalized_at: list[tuple[int, int]] = []  # (virtual ms, height)
        self.offences_seen: dict[tuple[bytes, int, int, int], set[bytes | None]] = {}
        self.accountability_violations: list[Violation] = []
        self._pending_offence: tuple[bytes, int, int, int] | None = None
        signer = GuardedSigner(genesis.chain_id, keypair, self.record)
        self.driver = Driver(
            name,
            keypair,
            signer,
            self,
            behaviour,
            on_admitted=self._watch_offence,
            auth_cache=core.auth_cache,
            audience=audience,
        )
        self.driver.after_outputs = self._check_offence_caught
        net.attach(name, lambda _sender, data: self.driver.receive(data))

    @property
    def behaviour(self) -> str | None:
        return self.driver.behaviour

    @property
    def machine(self) -> ConsensusMachine | None:
        return self.driver.machine

    @property
    def height(self) -> int:
        return len(self.chain)

    @property
    def state(self) -> ChainState:
        return self.chain[-1][2] if self.chain else self.genesis

    def boot(self) -> None:
        self.net.down.discard(self.name)
        last_cert = self.chain[-1][1] if self.chain else None
        self.driver.boot(self.state, last_cert, transition=self.core.transition, check_block=self.core.check)

    def crash(self) -> None:
        self.driver.stop()
        self.offences_seen.clear()  # memory is lost; the restarted machine starts afresh
        self.net.down.add(self.name)
        self.log({"event": "crashed"})

    # --------------------------------------------------------------- effects

    def now_ms(self) -> int:
        return self.net.now_ms

    def broadcast(self, channel: str, data: bytes) -> None:
        if self.observer is not None:
            self.observer.observe(data)
        self.net.broadcast(self.name, data)

    def send_to(self, node: str, data: bytes) -> None:
        if self.observer is not None:
            self.observer.observe(data)
        self.net.send(self.name, node, data)

    def schedule(self, delay_ms: int, action: Callable[[], None]) -> None:
        """A timer fires at least 1 ms later: work takes time, so a validator that
        decides alone (more than 2/3 of the stake) cannot freeze virtual time."""
        self.net.schedule(max(1, delay_ms), action)

    def finalized(self, decided: Decided) -> None:
        self.chain.append((decided.block, decided.certificate, decided.state))
        self.finalized_at.append((self.net.now_ms, decided.block.height))
        self.core.finalizations += 1
        if self.behaviour is None:
            self.core.honest_progress_ms = self.net.now_ms

    def chain_range(self, start: int, limit: int) -> list[tuple[Block, CommitCertificate]]:
        return [(block, cert) for block, cert, _ in self.chain[start - 1 : start - 1 + limit]]

    def log(self, event: dict[str, Any]) -> None:
        if event["event"] in LEDGER_PENALTIES or event["event"] in ("crashed", EVIDENCE):
            self.events.append({**event, "node": self.name, "t_ms": self.net.now_ms})

    # ---------------------------------------------------- accountability check

    def _watch_offence(self, message: Admitted, machine: ConsensusMachine) -> None:
        """Record conflicting messages shown to an honest node at its current height."""
        item = message.proposal if isinstance(message, ProposalMsg) else message
        if (
            self.behaviour is not None
            or not isinstance(item, Vote | Proposal)
            or item.height != machine.height
        ):
            return
        if isinstance(item, Vote) and machine.state.committee.power_of(item.validator) == 0:
            return
        if isinstance(item, Proposal) and proposer_of(machine.state, item.round) != item.proposer:
            return
        key = (signer_of(item), item.height, item.round, int(signed_kind(item)))
        ids = self.offences_seen.setdefault(key, set())
        ids.add(item.block_id)
        if len(ids) > 1 and item.round <= machine.round + MAX_ROUND_AHEAD:
            self._pending_offence = key

    def _check_offence_caught(self) -> None:
        """The machine must have produced evidence for what it was just shown."""
        key, self._pending_offence = self._pending_offence, None
        machine = self.machine
        if key is None or machine is None or machine.height != key[1]:
            return
        if key not in machine.evidence_pool.seen:
            offender = machine.state.names.get(key[0], key[0].hex()[:8])
            self.accountability_violations.append(
                Violation(
                    "accountability",
                    f"{self.name} saw equivocation by {offender} at (h, r, step) {key[1:]} without evidence",
                    key[1],
                )
            )


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


def run_simulation(config: SimConfig) -> SimResult:
    """Run one seeded simulation and check its invariants."""
    started = time.perf_counter()
    genesis, keys = sim_genesis(config)
    state0 = genesis_state(genesis)
    names = validator_names(config.validators)
    byzantine = set(config.byzantine_names())
    rng = random.Random(config.seed)
    twins = twin_names(byzantine) if config.byzantine_mode == "twins" else {}
    net = SimNetwork([*names, *twins], with_twins(config.faults, twins), rng)
    core = SharedCore()
    observer = VoteObserver()
    events: list[dict[str, Any]] = []
    honest_names = [name for name in names if name not in byzantine]
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
            (*halves, tuple(sorted(byzantine - {name}))),
            observer,
        )
        for name in names
    }
    for twin, original in twins.items():  # twins mode: a second honest copy of each Byzantine key
        nodes[twin] = SimNode(twin, keys[original], state0, net, core, "twins", events, None, observer)
    _schedule_crashes(net, nodes, config.faults)
    for node in nodes.values():
        node.boot()
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
        observer.settle(_agreed_height(honest, observer.settled))
        if min(node.height for node in honest) < config.heights:
            return False
        return last_heal == 0 or all(_finalized_after(node, last_heal) is not None for node in honest)

    net.run_until(done, deadline)
    wall_s = time.perf_counter() - started
    return _result(config, nodes, honest, net, events, last_heal, observer, wall_s, deadline)


def _agreed_height(honest: list[SimNode], since: int) -> int:
    """The highest height every honest node finalized, with the same block at each (from `since` on)."""
    top = min(node.height for node in honest)
    height = since
    while height < top and len({node.chain[height][0].hash for node in honest}) == 1:
        height += 1
    return height


def _schedule_crashes(net: SimNetwork, nodes: dict[str, SimNode], plan: FaultPlan) -> None:
    for crash in plan.crashes:
        node = nodes.get(crash.node)
        if node is None:
            raise ValueError(f"crash names unknown node {crash.node!r}")
        net.schedule(crash.window.start_ms, node.crash)
        net.schedule(crash.window.end_ms, node.boot)


def _finalized_after(node: SimNode, t: int) -> int | None:
    return next((at for at, _ in node.finalized_at if at >= t), None)


def _height_at(node: SimNode, t: int) -> int:
    """The height `node` was working on at virtual time `t`."""
    return 1 + sum(1 for at, _ in node.finalized_at if at < t)


def _states_before(node: SimNode) -> Iterable[ChainState]:
    """The states `node` voted from: before each height it finalized, and before the open one."""
    yield node.genesis
    for _, _, state in node.chain:
        yield state


# ------------------------------------------------------------------ checks


def byzantine_share(honest: list[SimNode], byzantine: Iterable[bytes]) -> ByzantineShare:
    """The Byzantine share of each height's committee power, over every honest node's chain.

    The committee of height h comes from the state after h-1 (`committee`
    is the next height's), so the open height counts too. Equal states are
    one object (the shared core memoises transitions), so each is weighed once.
    """
    addresses = tuple(byzantine)
    exceeded: set[int] = set()
    highest = 0
    weighed: set[int] = set()
    for node in honest:
        for state in _states_before(node):
            if id(state) in weighed:
                continue
            weighed.add(id(state))
            committee = state.committee
            power = sum(committee.power_of(address) for address in addresses)
            if committee.total:
                highest = max(highest, power * PPM // committee.total)
            if 3 * power >= committee.total:
                exceeded.add(committee.height)
    return ByzantineShare(tuple(sorted(exceeded)), highest)


def check_safety(honest: list[SimNode]) -> list[Violation]:
    """No two honest nodes finalized different blocks at one height."""
    finalized = {
        node.name: {h: (block.hash,) for h, (block, *_) in enumerate(node.chain, 1)} for node in honest
    }
    return [
        Violation("safety", f"height {height}: honest nodes finalized {len(blocks)} different blocks", height)
        for height, blocks in conflicting_finality(finalized).items()
    ]


def check_liveness(
    config: SimConfig, honest: list[SimNode], last_heal: int, params: Params, stopped_early: bool = False
) -> list[Violation]:
    violations = []
    lowest = min(node.height for node in honest)
    if lowest < config.heights:
        stuck = sorted(node.name for node in honest if node.height == lowest)
        why = f" (no honest node finalized for {RESUME_ROUNDS} rounds)" if stopped_early else ""
        violations.append(
            Violation(
                "liveness",
                f"stalled: honest nodes {','.join(stuck)} reached only height {lowest} of {config.heights}{why}",
                lowest + 1,
            )
        )
    if last_heal:
        bound = last_heal + params.failed_rounds_ms(RESUME_ROUNDS)
        for node in honest:
            resumed = _finalized_after(node, last_heal)
            if resumed is None or resumed > bound:
                violations.append(
                    Violation(
                        "liveness",
                        f"{node.name} did not finalize within {RESUME_ROUNDS} rounds of the last heal at {last_heal} ms",
                        _height_at(node, last_heal),
                    )
                )
    return violations


def check_penalties(config: SimConfig, events: list[dict[str, Any]]) -> list[Violation]:
    """With no crash and no partition, an honest validator has no excuse to miss votes: jailing one is a bug.

    Loss, delay, duplication and reordering do not count as excuses: gossip
    re-sends votes until they arrive, so downtime accounting must not
    mistake a slow honest validator for an absent one.
    """
    if config.faults.crashes or config.faults.partitions:
        return []
    byzantine = set(config.byzantine_names())
    jailed = sorted(
        {
            (int(event["height"]), str(event["validator"]))
            for event in events
            if event["event"] == "jailed" and event.get("validator") not in byzantine
        }
    )
    return [
        Violation("penalty", f"honest validator {name} jailed without a fault at height {height}", height)
        for height, name in jailed
    ]


def find_forks(honest: list[SimNode], observer: VoteObserver) -> list[tuple[ChainState, ForkAccount]]:
    """Every pair of conflicting certificates on a common parent, with its culprits.

    Only the first height where two chains part is a fork in the theorem's
    sense (one committee, two certificates); the heights after it belong
    to different chains. Returns (the state both voted from, the account).
    """
    forks = []
    top = max((node.height for node in honest), default=0)
    for height in range(max(1, observer.settled + 1), top + 1):
        finalized: dict[bytes, tuple[Block, CommitCertificate, ChainState]] = {}
        for node in honest:
            if node.height >= height:
                block, cert, _ = node.chain[height - 1]
                before = node.chain[height - 2][2] if height > 1 else node.genesis
                finalized.setdefault(block.hash, (block, cert, before))
        for (block_a, cert_a, before), (block_b, cert_b, _) in combinations(
            sorted(finalized.values(), key=lambda f: f[0].hash), 2
        ):
            if block_a.prev_hash == block_b.prev_hash:
                forks.append((before, fork_culprits(cert_a, cert_b, observer.at(height), before.committee)))
    return forks


def check_forks(
    honest: list[SimNode], forks: list[tuple[ChainState, ForkAccount]]
) -> tuple[list[Violation], list[dict[str, Any]]]:
    """Accountable safety: each fork's culprits are proven, all Byzantine, cover > 1/3, and the provable ones slashed.

    These are bugs whatever the Byzantine share (height None): the theorem
    is what must still hold when the 1/3 bound does not. An honest culprit
    means an honest node broke a rule (or the rules here are wrong).
    """
    honest_addresses = {node.driver.keypair.address for node in honest}
    violations: list[Violation] = []
    reports: list[dict[str, Any]] = []
    for before, account in forks:
        names = before.names
        where = f"fork at height {account.height} (rounds {account.rounds[0]} and {account.rounds[1]})"
        for culprit in account.culprits:
            problem = culprit_proof_problem(culprit, before.chain_id, before.public_keys)
            if problem:
                violations.append(
                    Violation(
                        "accountability",
                        f"{where}: the proof against {names[culprit.validator]} fails: {problem}",
                    )
                )
            if culprit.validator in honest_addresses:
                violations.append(
                    Violation(
                        "accountability",
                        f"{where}: honest {names[culprit.validator]} convicted of {culprit.offence}",
                    )
                )
        if not account.covers_one_third:
            violations.append(
                Violation(
                    "accountability",
                    f"{where}: culprits hold only {account.power} of {account.total} committee power, "
                    "accountable safety needs more than 1/3",
                )
            )
        violations += _unslashed(honest, account, names, where)
        reports.append(
            {
                "height": account.height,
                "rounds": list(account.rounds),
                "culprits": {names[c.validator]: c.offence for c in account.culprits},
                "culprit_power": account.power,
                "committee_power": account.total,
            }
        )
    return violations, reports


def _knows_offence(node: SimNode, offender: bytes, height: int) -> bool:
    """`offender` is tombstoned on the node's chain, or the node holds evidence of an equivocation
    by it at `height` or later (any one tombstones it: a validator is punished once, for good)."""
    if L.pool_status(node.state.ledger, offender) == L.TOMBSTONED:
        return True
    machine = node.machine
    return machine is not None and any(
        key[0] == offender and key[1] >= height for key in machine.evidence_pool.seen
    )


def _unslashed(
    honest: list[SimNode], account: ForkAccount, names: dict[bytes, str] | Any, where: str
) -> list[Violation]:
    """Validators whose precommits are in both certificates must not get away with it.

    Those two precommits are ordinary equivocation evidence, which a node
    can derive as soon as it sees the other certificate, then gossip,
    include and slash like any other. So: some honest node must hold the
    evidence (or have tombstoned the offender) even when every chain
    stalled at the fork, and every honest chain that ran on
    EVIDENCE_INCLUSION_HEIGHTS past the fork must have tombstoned it.
    """
    height = account.height
    certs = {node.chain[height - 1][1] for node in honest if node.height >= height}
    pair = [c for c in certs if c.block_id in account.block_ids]
    offenders = sorted(
        {ev.offender for a, b in combinations(pair, 2) for ev in certificate_conflict_evidence(a, b)}
    )
    long_enough = [node for node in honest if node.height >= height + EVIDENCE_INCLUSION_HEIGHTS]
    violations = []
    for offender in offenders:
        if not any(_knows_offence(node, offender, height) for node in honest):
            violations.append(
                Violation(
                    "accountability",
                    f"{where}: {names[offender]} precommitted in both certificates, "
                    "yet no honest node holds evidence against it",
                )
            )
        spared = [node for node in long_enough if L.pool_status(node.state.ledger, offender) != L.TOMBSTONED]
        if spared:
            violations.append(
                Violation(
                    "accountability",
                    f"{where}: {names[offender]} precommitted in both certificates but is still "
                    f"{L.pool_status(spared[0].state.ledger, offender)} on the chains of "
                    f"{','.join(node.name for node in spared)}",
                )
            )
    return violations


def classify(violations: list[Violation], share: ByzantineShare) -> list[Violation]:
    """Mark each violation outside the bound when its height's committee was 1/3 or more Byzantine."""
    return [replace(v, outside_bound=share.exceeded(v.height)) for v in violations]


def _result(
    config: SimConfig,
    nodes: dict[str, SimNode],
    honest: list[SimNode],
    net: SimNetwork,
    events: list[dict[str, Any]],
    last_heal: int,
    observer: VoteObserver,
    wall_s: float,
    deadline: int,
) -> SimResult:
    reference = min(honest, key=lambda node: node.height)
    state = reference.state
    rejected: Counter[str] = Counter()
    for node in nodes.values():
        rejected.update(node.driver.stats.rejected)
    share = byzantine_share(honest, (nodes[name].driver.keypair.address for name in config.byzantine_names()))
    fork_violations, fork_reports = check_forks(honest, find_forks(honest, observer))
    safety = check_safety(honest)
    if safety and share.exceeded(safety[0].height):
        share = replace(share, forked_outside=safety[0].height)
    violations = [
        *safety,
        *check_liveness(config, honest, last_heal, state.params, stopped_early=net.now_ms < deadline),
        *(v for node in honest for v in node.accountability_violations),
        *fork_violations,
        *check_penalties(config, events),
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
    )
