"""The long-range attack, and the trusted checkpoint that defeats it, in the simulator (issue 29).

Three runs of the real core, one after the other:

1. **The real chain.** Validators v1..v(N+1) at genesis; the former ones
   v1..v(N-1) (together more than 2/3 of the stake) retire their pools by
   transaction at once and leave at epoch 1; their stake unbonds and is
   released `unbonding_epochs` later. The chain goes on with vN. v(N+1),
   with a token stake, is the late joiner: a validator, so its requests are
   answered (peers serve only keys of the chain), but offline until phase 3.
2. **The forged history.** The same genesis and the former validators
   alone (vN and v(N+1) silent): they held more than 2/3 then, so every
   certificate of the history they build from height 1 is valid for the
   genesis committee. Nothing in it is invalid; it is only not what happened.
3. **The late joiner.** v(N+1) starts with an empty store and syncs. The
   attacker serves the forged history and, for `eclipse_ms`, is the only
   peer it hears; then the real chain's node is reachable too. Without a
   checkpoint the joiner takes the forged history and can never leave it
   (finality is final). With `--trust HEIGHT:HASH` of the real chain it
   takes no block of the forged one, waits for the real chain and follows
   it.

Either way, once the joiner has certificates of both histories it derives
the double signs the former validators made at the heights where they
signed both (before they left), and broadcasts the evidence. Whether the
real chain can punish them is the weak subjectivity question: inside the
period (evidence young enough, stake still unbonding) they are slashed and
tombstoned; outside it the evidence is stale or there is nothing left to
slash. The summary says which it was.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Any

from network.sim.net import SimNetwork
from network.sim.node import SharedCore, SimNode
from network.sim.plans import FaultPlan, Partition, Window
from network.sim.runner import SimConfig, run_simulation, sim_genesis
from node.core.checkpoint import Checkpoint, TrustedPath, weak_subjectivity_heights
from node.core.envelopes import tx_bytes
from node.core.genesis import Params, validator_names
from node.core.keys import Keypair
from node.core.messages import Block
from node.core.state import ChainState, genesis_state
from node.core.tx import RetirePool, sign_tx

LATE, ATTACKER, REAL = "late", "attacker", "real"
STAKE, JOINER_STAKE = 1_000, 1
DEFAULT_PARAMS = Params(epoch_length=4, unbonding_epochs=10, evidence_max_age=40, commit_wait_ms=200)


@dataclass(frozen=True)
class LongRangeConfig:
    """One long-range run: the chain's length when the joiner arrives decides inside or outside."""

    validators: int = 4  # v1..v(N-1) are the former validators, vN stays, v(N+1) joins late
    heights: int = 12  # the real chain's height when the late node joins
    trust: bool = False  # the joiner trusts the real chain's block at `trust_height`
    trust_height: int = 8
    seed: int = 1
    eclipse_ms: int = 3_000  # the joiner hears only the attacker this long
    follow_ms: int = 15_000  # then both, this long
    params: Params = field(default_factory=lambda: DEFAULT_PARAMS)

    def sim(self, **changes: Any) -> SimConfig:
        stakes = (*(STAKE,) * self.validators, JOINER_STAKE)
        config = SimConfig(
            validators=self.validators + 1,
            heights=self.heights,
            seed=self.seed,
            params=self.params,
            stakes=stakes,
        )
        return replace(config, **changes)

    def names(self) -> tuple[list[str], str, str]:
        """(the former validators, the one that stays, the late joiner)."""
        names = validator_names(self.validators + 1)
        return names[:-2], names[-2], names[-1]


@dataclass
class LongRangeResult:
    config: LongRangeConfig
    real_height: int
    forged_height: int
    fork_height: int  # the first height the two histories differ at
    joiner_height: int
    joiner_history: str  # "real", "forged" or "none" (nothing taken)
    evidence: list[tuple[str, int]]  # (offender, height) of the evidence the joiner derived
    slashed: dict[str, int]  # on the real chain, after the joiner reported
    tombstoned: list[str]
    slashable: dict[str, int]  # what each former validator still had staked or unbonding, at the end
    evidence_max_age: int
    period: int  # the weak subjectivity period, heights

    @property
    def inside(self) -> bool:
        """Whether the former validators were punished: slashed for something and tombstoned."""
        return bool(self.tombstoned) and sum(self.slashed.values()) > 0

    def offenders(self) -> list[str]:
        return sorted({name for name, _ in self.evidence})

    def why_unpunished(self) -> list[str]:
        """What kept the real chain from punishing them, from the run's own figures."""
        reasons = []
        if not self.evidence:
            reasons.append("the new node, on the forged history, saw nothing to report")
        else:
            heights = [height for _, height in self.evidence]
            if self.real_height - max(heights) > self.evidence_max_age:
                reasons.append(
                    f"their double signs (heights {min(heights)}-{max(heights)}) are more than"
                    f" evidence_max_age {self.evidence_max_age} heights below the real chain's {self.real_height}"
                )
        if self.evidence and not any(self.slashable.values()):
            reasons.append("their stake had been released: nothing was left to slash")
        return reasons or ["the evidence was not included"]

    @property
    def within_period(self) -> bool:
        """Whether the joiner arrived within the weak subjectivity period of genesis, its only trusted point."""
        return self.config.heights <= self.period

    def summary(self) -> list[str]:
        c = self.config
        trusted = f"--trust {c.trust_height}:<real hash>" if c.trust else "no checkpoint"
        where = "inside" if self.within_period else "outside"
        lines = [
            f"long-range: {c.validators - 1} former validators (more than 2/3 at genesis) retired at epoch 1"
            f" and forged a history from genesis; it parts from the real chain at height {self.fork_height}",
            f"  a node joined at height {c.heights} of the real chain, {where} the weak subjectivity period"
            f" ({self.period} heights), with {trusted}",
            f"  it took the {self.joiner_history} history"
            + (f" (height {self.joiner_height})" if self.joiner_history != "none" else "")
            + f"; the real chain is at {self.real_height}, the forged one at {self.forged_height}",
            f"  it derived evidence against {', '.join(self.offenders()) or 'nobody'}",
        ]
        if self.inside:
            amounts = ", ".join(f"{name} {amount}" for name, amount in sorted(self.slashed.items()))
            lines.append(
                f"  the real chain slashed {amounts} and tombstoned {', '.join(sorted(self.tombstoned))}"
            )
        else:
            lines.append(f"  nobody was punished: {'; '.join(self.why_unpunished())}")
        return lines

    def to_json(self) -> dict[str, Any]:
        return {
            "trust": self.config.trust,
            "real_height": self.real_height,
            "forged_height": self.forged_height,
            "fork_height": self.fork_height,
            "joiner_height": self.joiner_height,
            "joiner_history": self.joiner_history,
            "evidence": self.offenders(),
            "slashed": self.slashed,
            "tombstoned": sorted(self.tombstoned),
            "slashable": self.slashable,
            "unpunished_because": [] if self.inside else self.why_unpunished(),
            "weak_subjectivity_heights": self.period,
            "within_period": self.within_period,
            "punished": self.inside,
        }


def retirements(config: LongRangeConfig) -> tuple[tuple[int, bytes], ...]:
    """Each former validator's RetirePool for epoch 1, published at the start."""
    chain_id = config.sim().chain_id
    names, _, _ = config.names()
    keys = {name: Keypair.deterministic(f"{chain_id}/{name}") for name in names}
    return tuple(
        (0, tx_bytes(chain_id, sign_tx(chain_id, RetirePool(0, 1), keys[name]), keys[name])) for name in names
    )


def chain_of(config: SimConfig, name: str) -> list[Any]:
    """Run `config` and return node `name`'s finalized chain: (block, certificate, state after) each."""
    kept: list[Any] = []
    run_simulation(config, inspect=lambda nodes: kept.extend(n.chain for n in nodes if n.name == name))
    if not kept:
        raise ValueError(f"{name} is not an honest node of the run")
    return list(kept[0])


def first_difference(first: list[Any], second: list[Any]) -> int:
    """The first height the two chains hold different blocks at (one past the shorter if none)."""
    for (a, _, _), (b, _, _) in zip(first, second, strict=False):
        if a.hash != b.hash:
            return int(a.height)
    return min(len(first), len(second)) + 1


def run_long_range(config: LongRangeConfig) -> LongRangeResult:
    """The three runs above; the joiner and the two servers meet on a network of their own."""
    former, stay, late = config.names()
    real = chain_of(config.sim(transactions=retirements(config), byzantine=1, byzantine_mode="silent"), stay)
    forged = chain_of(config.sim(heights=len(real) + 20, byzantine=2, byzantine_mode="silent"), former[0])
    genesis, keys = sim_genesis(config.sim())
    state0 = genesis_state(genesis)
    eclipse = Partition((frozenset({LATE, ATTACKER}), frozenset({REAL})), Window(0, config.eclipse_ms))
    net = SimNetwork([LATE, ATTACKER, REAL], FaultPlan(partitions=(eclipse,)), random.Random(config.seed))
    core, events = SharedCore(), []
    servers = {ATTACKER: (keys[former[0]], forged), REAL: (keys[stay], real)}
    net_nodes = {}
    for name, (key, chain) in servers.items():
        node = net_nodes[name] = SimNode(name, key, state0, net, core, None, events)
        node.chain = list(chain)
        node.boot()
    joiner = SimNode(LATE, keys[late], state0, net, core, None, events)
    if config.trust:
        joiner.driver.trust = TrustedPath(
            Checkpoint(config.trust_height, real[config.trust_height - 1][0].hash)
        )
    joiner.boot()
    net.run_until(lambda: False, config.eclipse_ms + config.follow_ms)
    final = net_nodes[REAL].state
    return LongRangeResult(
        config=config,
        real_height=net_nodes[REAL].height,
        forged_height=len(forged),
        fork_height=first_difference(real, forged),
        joiner_height=joiner.height,
        joiner_history=_history(joiner.chain, real, forged),
        evidence=[
            (e["offender"], e["height"]) for e in events if e["event"] == "evidence" and e["node"] == LATE
        ],
        slashed=_amounts(events, "slashed"),
        tombstoned=[e["validator"] for e in events if e["event"] == "tombstoned" and e["node"] == REAL],
        slashable={name: slashable(final, keys[name].address) for name in former},
        evidence_max_age=genesis.params.evidence_max_age,
        period=weak_subjectivity_heights(genesis.params),
    )


def slashable(state: ChainState, pool: bytes) -> int:
    """What a slash of the pool could still take: its stake and what is unbonding from it."""
    ledger = state.ledger
    staked = ledger.pools[pool]
    return staked.pledge + staked.member_tokens + sum(e.amount for e in ledger.unbonding if e.pool == pool)


def _history(taken: list[Any], real: list[Any], forged: list[Any]) -> str:
    if not taken:
        return "none"
    fork = first_difference(real, forged)
    if len(taken) < fork:
        return "shared"
    block: Block = taken[fork - 1][0]
    return "real" if block.hash == real[fork - 1][0].hash else "forged"


def _amounts(events: list[dict[str, Any]], kind: str) -> dict[str, int]:
    amounts: dict[str, int] = {}
    for event in events:
        if event["event"] == kind and event["node"] == REAL:
            amounts[event["validator"]] = amounts.get(event["validator"], 0) + int(event.get("amount", 0))
    return amounts
