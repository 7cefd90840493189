"""The deterministic simulator: N validators, the real core, virtual time.

Each simulated node runs the real `ConsensusMachine`, signs through the real
`GuardedSigner` (in-memory signing record that survives simulated crashes)
and receives real signed msgpack envelopes through the real admission path.
Only the network and the clock are simulated. A run is a pure function of
its configuration and seed, so any failure replays from the printed seed.

After every run the invariants are checked:
- safety: no two honest nodes finalized different blocks at one height;
- liveness: every honest node reaches the target height, and after the last
  fault heals each honest node finalizes again within a bounded number of rounds;
- accountability: every equivocation an honest node was shown, at the height
  it was working on, produced evidence.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from network.faults import FaultPlan
from network.simnet import SimNetwork
from node import ledger as L
from node.consensus import MAX_ROUND_AHEAD, ConsensusMachine, Decided
from node.driver import PENALTY_EVENTS, Driver
from node.genesis import Genesis, Params, make_genesis
from node.inbox import Admitted, AuthCache, ProposalMsg
from node.keys import Keypair
from node.messages import Block, CommitCertificate, Proposal, Vote, signed_kind, signer_of
from node.query import distribution_view
from node.signer import GuardedSigner, MemoryRecord
from node.state import ChainState, apply_block, block_problem, genesis_state, proposer_of, validator_summary

RESUME_ROUNDS = 10
DEADLINE_ROUNDS_PER_HEIGHT = 6  # lossy runs may need several rounds per height


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


@dataclass
class SimResult:
    config: SimConfig
    heights_finalized: int
    safety_violations: list[str]
    liveness_violations: list[str]
    accountability_violations: list[str]
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
    # active stake by pool, largest first, with shares in ppm (see node.query.distribution_view)
    stake_distribution: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.safety_violations or self.liveness_violations or self.accountability_violations)

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.config.seed,
            "ok": self.ok,
            "heights_finalized": self.heights_finalized,
            "safety_violations": len(self.safety_violations),
            "liveness_violations": len(self.liveness_violations),
            "accountability_violations": len(self.accountability_violations),
            "violations": self.safety_violations + self.liveness_violations + self.accountability_violations,
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
        }


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
    ) -> None:
        self.name = name
        self.net = net
        self.core = core
        self.genesis = genesis
        self.events = events
        self.record = MemoryRecord()
        self.chain: list[tuple[Block, CommitCertificate, ChainState]] = []
        self.finalized_at: list[tuple[int, int]] = []  # (virtual ms, height)
        self.offences_seen: dict[tuple[bytes, int, int, int], set[bytes | None]] = {}
        self.accountability_violations: list[str] = []
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
        self.net.broadcast(self.name, data)

    def send_to(self, node: str, data: bytes) -> None:
        self.net.send(self.name, node, data)

    def schedule(self, delay_ms: int, action: Callable[[], None]) -> None:
        self.net.schedule(delay_ms, action)

    def finalized(self, decided: Decided) -> None:
        self.chain.append((decided.block, decided.certificate, decided.state))
        self.finalized_at.append((self.net.now_ms, decided.block.height))
        self.core.finalizations += 1

    def chain_range(self, start: int, limit: int) -> list[tuple[Block, CommitCertificate]]:
        return [(block, cert) for block, cert, _ in self.chain[start - 1 : start - 1 + limit]]

    def log(self, event: dict[str, Any]) -> None:
        if event["event"] in PENALTY_EVENTS or event["event"] in ("crashed", "evidence"):
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
        if key not in machine.evidence_seen:
            self.accountability_violations.append(
                f"{self.name} saw equivocation by {key[0].hex()[:8]} at (h, r, step) {key[1:]} without evidence"
            )


# ------------------------------------------------------------------ running


def validator_names(n: int) -> list[str]:
    return [f"v{i}" for i in range(1, n + 1)]


def sim_genesis(config: SimConfig) -> tuple[Genesis, dict[str, Keypair]]:
    names = validator_names(config.validators)
    keys = {name: Keypair.deterministic(f"{config.chain_id}/{name}") for name in names}
    stakes = dict(zip(names, config.stakes, strict=True)) if config.stakes else None
    params = replace(config.params or Params(), committee_size=config.committee_size)
    return make_genesis(config.chain_id, keys, stakes=stakes, params=params), keys


def round_budget_ms(params: Params, rounds: int) -> int:
    """Worst-case virtual time for `rounds` consecutive failed rounds."""
    return sum(
        params.timeout_ms("propose", r) + params.timeout_ms("prevote", r) + params.timeout_ms("precommit", r)
        for r in range(rounds)
    )


def run_simulation(config: SimConfig) -> SimResult:
    """Run one seeded simulation and check its invariants."""
    started = time.perf_counter()
    genesis, keys = sim_genesis(config)
    state0 = genesis_state(genesis)
    names = validator_names(config.validators)
    byzantine = set(names[len(names) - config.byzantine :]) if config.byzantine else set()
    rng = random.Random(config.seed)
    net = SimNetwork(names, config.faults, rng)
    core = SharedCore()
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
        )
        for name in names
    }
    _schedule_crashes(net, nodes, config.faults)
    for node in nodes.values():
        node.boot()
    honest = [node for node in nodes.values() if node.behaviour is None]
    last_heal = config.faults.last_heal_ms()
    deadline = last_heal + (config.heights + 5) * round_budget_ms(genesis.params, DEADLINE_ROUNDS_PER_HEIGHT)

    seen_progress = [-1]

    def done() -> bool:
        """Costly over many nodes, so only re-evaluated after some node finalized."""
        if core.finalizations == seen_progress[0]:
            return False
        seen_progress[0] = core.finalizations
        if min(node.height for node in honest) < config.heights:
            return False
        return last_heal == 0 or all(_finalized_after(node, last_heal) is not None for node in honest)

    net.run_until(done, deadline)
    return _result(config, nodes, honest, net, events, last_heal, time.perf_counter() - started)


def _schedule_crashes(net: SimNetwork, nodes: dict[str, SimNode], plan: FaultPlan) -> None:
    for crash in plan.crashes:
        node = nodes.get(crash.node)
        if node is None:
            raise ValueError(f"crash names unknown node {crash.node!r}")
        net.schedule(crash.window.start_ms, node.crash)
        net.schedule(crash.window.end_ms, node.boot)


def _finalized_after(node: SimNode, t: int) -> int | None:
    return next((at for at, _ in node.finalized_at if at >= t), None)


def check_safety(honest: list[SimNode]) -> list[str]:
    """No two honest nodes finalized different blocks at one height."""
    violations = []
    top = max((node.height for node in honest), default=0)
    for height in range(1, top + 1):
        hashes = {node.chain[height - 1][0].hash for node in honest if node.height >= height}
        if len(hashes) > 1:
            violations.append(f"height {height}: honest nodes finalized {len(hashes)} different blocks")
    return violations


def check_liveness(config: SimConfig, honest: list[SimNode], last_heal: int, params: Params) -> list[str]:
    violations = []
    lowest = min(node.height for node in honest)
    if lowest < config.heights:
        stuck = sorted(node.name for node in honest if node.height == lowest)
        violations.append(
            f"stalled: honest nodes {','.join(stuck)} reached only height {lowest} of {config.heights}"
        )
    if last_heal:
        bound = last_heal + round_budget_ms(params, RESUME_ROUNDS)
        for node in honest:
            resumed = _finalized_after(node, last_heal)
            if resumed is None or resumed > bound:
                violations.append(
                    f"{node.name} did not finalize within {RESUME_ROUNDS} rounds of the last heal at {last_heal} ms"
                )
    return violations


def _result(
    config: SimConfig,
    nodes: dict[str, SimNode],
    honest: list[SimNode],
    net: SimNetwork,
    events: list[dict[str, Any]],
    last_heal: int,
    wall_s: float,
) -> SimResult:
    reference = min(honest, key=lambda node: node.height)
    state = reference.state
    rejected: Counter[str] = Counter()
    for node in nodes.values():
        rejected.update(node.driver.stats.rejected)
    return SimResult(
        config=config,
        heights_finalized=reference.height,
        safety_violations=check_safety(honest),
        liveness_violations=check_liveness(config, honest, last_heal, state.params),
        accountability_violations=[v for node in honest for v in node.accountability_violations],
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
    )
